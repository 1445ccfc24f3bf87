"""Training under faults: SIGKILL at random points (mid-checkpoint included), then resume; NaN labels.

The kills are real SIGKILLs of a real `rankdistill train` process, as the OOM killer would send them.
What a resumed run guarantees, and what the crash test asserts: on the same machine and thread count,
a run killed any number of times and started again ends with bit-identical weights and the identical
per-step loss curve of a run that was never killed (resume restores model, optimizer, scheduler, RNG
state, data position and the Term Control Layer from the newest complete checkpoint).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml

from rankdistill.errors import DataError, RankdistillError
from rankdistill.students import load_encoder_student
from rankdistill.training import TrainSettings, read_pairs_jsonl, train, write_pairs_jsonl
from rankdistill.training.losses import build_loss
from rankdistill.training.trainer import CHECKPOINT_DONE_FILE, checkpoint_is_complete

ROWS = [
    {"query": "protein folding", "document": "Proteins fold into structures.", "label": 0.9},
    {"query": "protein folding", "document": "The weather is sunny today.", "label": 0.1},
    {"query": "capital of france", "document": "Paris is the capital of France.", "label": 0.95},
    {"query": "capital of france", "document": "Berlin is in Germany.", "label": 0.2},
] * 4


def _config(tmp_path: Path, minilm_dir: Path, out: Path) -> Path:
    rows = tmp_path / "rows.jsonl"
    if not rows.exists():
        write_pairs_jsonl(rows, ROWS)
    cfg = {
        "output_dir": str(out),
        "seed": 5,
        "student": {"base": str(minilm_dir), "num_layers": 1, "max_length": 32},
        "losses": [{"name": "soft_bce"}, {"name": "term_control", "weight": 0.5}],
        "phases": [
            {"name": "phase1", "data": {"jsonl": str(rows)}, "training": {"max_steps": 4}},
            {"name": "phase2", "data": {"jsonl": str(rows)}, "training": {"max_steps": 4}},
        ],
        "training": {
            "batch_size": 4,
            "save_steps": 1,
            "save_total_limit": 2,
            "logging_steps": 1,
            "learning_rate": 1e-4,
            "bf16": False,
        },
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    # one thread and no GPU: the same arithmetic in every process, so resumed runs can match exactly
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "RANKDISTILL_PROGRESS": "0",
    }


def _start(config: Path, stderr) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rankdistill", "-v", "train", str(config)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=_env())


def _checkpoints(out: Path) -> list[Path]:
    return [d for phase in ("phase1", "phase2") for d in (out / phase).glob("checkpoint-*") if d.is_dir()]


def _being_written(out: Path, before: set[Path], need: str | None = None) -> bool:
    """A checkpoint folder this run made exists without its completion marker (and, if given, with
    file `need`)."""
    for d in set(_checkpoints(out)) - before:
        try:
            names = set(os.listdir(d))
        except FileNotFoundError:  # rotated away while we looked
            continue
        if CHECKPOINT_DONE_FILE not in names and (need is None or need in names):
            return True
    return False


def _kill_when(config: Path, out: Path, ready, delay: float, deadline: float) -> tuple[int, str]:
    """Start a run, wait until `ready(out, checkpoints before it)`, wait `delay` seconds more, SIGKILL it;
    (exit status, stderr)."""
    before = set(_checkpoints(out))  # e.g. the half-written one the last kill left: not this run's
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a full pipe would stall the run
        proc = _start(config, stderr)
        while proc.poll() is None and time.monotonic() < deadline and not ready(out, before):
            time.sleep(0.0005)
        if delay and proc.poll() is None:
            time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=120)
        stderr.seek(0)
        return proc.returncode, stderr.read().decode("utf-8", "replace")


def _final(out: Path) -> tuple[dict[str, torch.Tensor], list[list[float]]]:
    from safetensors.torch import load_file

    weights = load_file(str(out / "final" / "model.safetensors"))
    curves = [
        [
            h["loss"]
            for h in json.loads((out / p / "phase_done.json").read_text())["log_history"]
            if "loss" in h
        ]
        for p in ("phase1", "phase2")
    ]
    return weights, curves


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path, minilm_dir):
    ref_out = tmp_path / "reference"
    ref = subprocess.run(
        [sys.executable, "-m", "rankdistill", "train", str(_config(tmp_path, minilm_dir, ref_out))],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref_weights, ref_curves = _final(ref_out)
    assert [len(c) for c in ref_curves] == [4, 4]

    out = tmp_path / "crashed"
    config = _config(tmp_path, minilm_dir, out)
    rng = random.Random(20240518)
    deadline = time.monotonic() + 420
    plan = [
        (lambda o, b: (o / "phase1" / "checkpoint-2").is_dir(), 0.0),  # the moment its folder appears
        (lambda o, b: _being_written(o, b, "trainer_state.json"), 0.0),  # HF state on disk, TCL's not yet
        (lambda o, b: _being_written(o, b), rng.uniform(0.0, 2.0)),  # anywhere in the next steps
        (lambda o, b: _being_written(o, b), rng.uniform(0.0, 2.0)),
    ]
    statuses, logs = [], []
    for ready, delay in plan:
        status, err = _kill_when(config, out, ready, delay, deadline)
        statuses.append(status)
        logs.append(err)
        assert status in (-signal.SIGKILL, 0), err[-3000:]
        if status == 0:  # it finished before this kill: nothing left to interrupt
            break
    assert statuses[0] == -signal.SIGKILL
    assert time.monotonic() < deadline, "the kills took too long"

    final = subprocess.run(
        [sys.executable, "-m", "rankdistill", "-v", "train", str(config)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    logs.append(final.stderr)
    assert final.returncode == 0, final.stderr[-3000:]
    # the first kill left a half-written checkpoint: the next run said so, removed it and resumed
    assert "is incomplete (the run was killed while writing it); removing it" in logs[1]
    assert "resuming from" in "".join(logs[1:])
    assert all(checkpoint_is_complete(d) for d in _checkpoints(out))

    weights, curves = _final(out)
    assert curves == ref_curves
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)


def test_non_finite_labels_are_refused_with_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    for bad in ("NaN", "Infinity", "-Infinity", "[0.5, NaN]"):
        path.write_text(
            '{"query": "q", "document": "d", "label": 0.5}\n'
            f'{{"query": "q", "document": "d", "label": {bad}}}\n'
        )
        with pytest.raises(DataError, match=r"rows\.jsonl:2: 'label' must be a finite number"):
            read_pairs_jsonl(path)


def test_train_command_refuses_a_nan_label_and_saves_nothing(tmp_path, minilm_dir):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"query": "q", "document": "d", "label": 0.5}\n'
        '{"query": "q", "document": "e", "label": 0.1}\n'
        '{"query": "q", "document": "f", "label": NaN}\n'
    )
    cfg = {
        "output_dir": str(tmp_path / "out"),
        "student": {"base": str(minilm_dir), "num_layers": 1, "max_length": 32},
        "phases": [{"name": "p1", "data": {"jsonl": str(rows)}, "training": {"max_steps": 2}}],
        "training": {"batch_size": 2, "bf16": False},
    }
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "rankdistill", "train", str(config)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert res.returncode == 2, res.stderr[-3000:]
    assert f"error: {rows}:3: 'label' must be a finite number, got nan" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out" / "final").exists() and not (tmp_path / "out" / "p1").exists()


def test_a_non_finite_loss_stops_training_before_nan_weights_exist(tmp_path, minilm_dir):
    """Rows given from Python skip the file checks: the loss itself must catch what gets through."""
    torch.set_num_threads(2)
    rows = [dict(r) for r in ROWS]
    rows[5]["label"] = float("nan")
    model = load_encoder_student(minilm_dir, num_layers=1, max_length=32, seed=0)
    loss = build_loss(model, [{"name": "soft_bce"}, {"name": "term_control", "weight": 0.5}])
    settings = TrainSettings(
        max_steps=4, batch_size=4, save_steps=1, logging_steps=1, learning_rate=1e-4, seed=7, bf16=False
    )
    with pytest.raises(
        RankdistillError, match=r"the training loss became nan at step [1-4]; check the labels"
    ):
        train(model, loss, rows, tmp_path / "run", settings)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    from safetensors.torch import load_file

    for ckpt in (tmp_path / "run").glob("checkpoint-*"):  # the steps before the bad batch, all sound
        assert checkpoint_is_complete(ckpt)
        assert all(torch.isfinite(t).all() for t in load_file(str(ckpt / "model.safetensors")).values())
