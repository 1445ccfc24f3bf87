"""Model identity by content: what keys every label a model makes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from rankdistill.fingerprint import file_fingerprint, folder_fingerprint, model_fingerprint


@pytest.fixture()
def two_runs(minilm_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two runs' `train/student`: the same architecture, folder name, config and file sizes, one weight
    changed (what a second training run gives)."""
    a, b = tmp_path / "run1" / "student", tmp_path / "run2" / "student"
    shutil.copytree(minilm_dir, a)
    shutil.copytree(minilm_dir, b)
    weights = load_file(str(b / "model.safetensors"))
    name = sorted(weights)[len(weights) // 2]  # a tensor in the middle of the file
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1e-3
    save_file(weights, str(b / "model.safetensors"), metadata={"format": "pt"})
    assert (a / "model.safetensors").stat().st_size == (b / "model.safetensors").stat().st_size
    return a, b


def test_same_shape_checkpoints_differ(two_runs):
    a, b = two_runs
    assert model_fingerprint(a) != model_fingerprint(b)
    assert file_fingerprint(a / "model.safetensors") != file_fingerprint(b / "model.safetensors")


def test_moving_or_renaming_keeps_the_identity(two_runs, tmp_path):
    a, _ = two_runs
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(a, moved)
    assert model_fingerprint(moved) == model_fingerprint(a)


def test_what_counts_in_a_folder(two_runs):
    a, _ = two_runs
    before = folder_fingerprint(a)
    (a / "README.md").write_text("notes")  # documentation does not change the model
    assert folder_fingerprint(a) == before
    (a / "config.json").write_text((a / "config.json").read_text().replace("}", ', "x": 1}', 1))
    assert folder_fingerprint(a) != before
    assert model_fingerprint("org/some-hub-model") == {"name": "org/some-hub-model"}
