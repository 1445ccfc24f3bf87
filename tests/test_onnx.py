"""ONNX export through the real CLI, ONNX Runtime scores against torch fp32, backend=auto from the record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.slow  # exports a real model (~15 s on an idle 2-core machine)

from typer.testing import CliRunner  # noqa: E402

from rankdistill.cli import app  # noqa: E402
from rankdistill.inference.reranker import Reranker  # noqa: E402

QUERY = "vitamin C deficiency causes scurvy"
DOCS = [
    "Scurvy is a disease resulting from a lack of vitamin C.",
    "The tides are caused by the gravitational pull of the moon.",
    "Sailors suffered from scurvy on long voyages because of vitamin deficiencies. " * 4,
    "Python is a programming language.",
]


@pytest.fixture(scope="module")
def exported(cross_encoder_dir, tmp_path_factory):
    # a copy: backend.json changes what backend=auto picks, which other tests must not see
    path = tmp_path_factory.mktemp("onnx_student") / "student"
    shutil.copytree(cross_encoder_dir, path)
    result = CliRunner().invoke(app, ["export", str(path), "--onnx", "--int8", "--pairs", "8"])
    assert result.exit_code == 0, result.output
    assert "backend=auto uses" in result.output
    return path


def test_export_writes_models_and_measured_choice(exported):
    record = json.loads((exported / "onnx" / "backend.json").read_text())
    assert record["files"] == ["model.onnx", "model_int8.onnx"]
    assert set(record["measured"]) == {"torch", "onnx", "onnx-int8"}
    assert record["measured"]["onnx"]["max_abs_diff_vs_torch_fp32"] < 1e-3
    fastest_faithful = max(
        (n for n, m in record["measured"].items() if n == "torch" or m["max_abs_diff_vs_torch_fp32"] <= 0.02),
        key=lambda n: record["measured"][n]["pairs_per_s"],
    )
    assert record["auto"] == fastest_faithful
    assert Reranker.load(exported).info()["backend"] == record["auto"]


def test_a_choice_measured_on_another_cpu_is_not_trusted(exported, tmp_path, caplog):
    """backend=auto follows the measurement only on the CPU it was made on; elsewhere it falls back to torch."""
    from rankdistill.hardware import cpu_info

    moved = tmp_path / "moved"
    shutil.copytree(exported, moved)
    choice = moved / "onnx" / "backend.json"
    record = json.loads(choice.read_text())
    assert record["cpu"] == cpu_info().summary()
    record["auto"] = "onnx"
    choice.write_text(json.dumps(record))
    assert Reranker.load(moved).info()["backend"] == "onnx"  # same CPU: the measured choice
    record["cpu"] = {**record["cpu"], "model": "AMD EPYC 7B13", "native_bf16": False}
    choice.write_text(json.dumps(record))
    with caplog.at_level("WARNING"):
        assert Reranker.load(moved).info()["backend"] == "torch"
    assert "measured on another CPU" in caplog.text and "AMD EPYC 7B13" in caplog.text


def test_onnx_scores_match_torch_fp32(exported):
    pairs = [(QUERY, d) for d in DOCS]
    ref = np.asarray(Reranker.load(exported, backend="torch", dtype="fp32").score(pairs))
    onnx = Reranker.load(exported, backend="onnx", threads=1, batch_size=2)
    assert onnx.info()["backend"] == "onnx" and onnx.info()["dtype"] == "float32"
    np.testing.assert_allclose(onnx.score(pairs), ref, atol=1e-4)
    int8 = Reranker.load(exported, backend="onnx-int8")
    np.testing.assert_allclose(int8.score(pairs), ref, atol=0.05)  # quantised: close, not equal
    ranked = onnx.rerank(QUERY, DOCS, explain=True)
    assert [r.index for r in ranked] == list(np.argsort(-ref, kind="stable"))
    assert ranked[0].explanation["type"] == "terms"


def test_missing_onnx_model_is_a_clear_error(cross_encoder_dir):
    from rankdistill.errors import RankdistillError

    with pytest.raises(RankdistillError, match="rankdistill export --onnx"):
        Reranker.load(cross_encoder_dir, backend="onnx")


def test_export_needs_a_format(cross_encoder_dir):
    result = CliRunner().invoke(app, ["export", str(cross_encoder_dir)])
    assert result.exit_code != 0 and "--onnx" in result.output
