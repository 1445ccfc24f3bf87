"""The `rankdistill` command as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def rd(*args, env_extra=None, check=True):
    env = {**os.environ, "RANKDISTILL_PROGRESS": "0", "COLUMNS": "200", **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "rankdistill", *args], capture_output=True, text=True, env=env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"rankdistill {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def test_help_lists_commands():
    out = rd("--help").stdout
    for cmd in ("datasets", "retrieve", "evaluate"):
        assert cmd in out


def test_bad_input_is_one_clear_line(tmp_path):
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1 x t\n")
    (tmp_path / "q.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    proc = rd(
        "evaluate", "--run", str(tmp_path / "bad.trec"), "--qrels", str(tmp_path / "q.tsv"), check=False
    )
    assert proc.returncode == 2
    assert "bad.trec:1: score 'x' is not a number" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.data
def test_datasets_retrieve_evaluate(data_dir, tmp_path):
    env = {"RANKDISTILL_DATA_DIR": str(data_dir), "RANKDISTILL_CACHE": str(tmp_path / "cache")}
    listing = rd("datasets", env_extra=env).stdout
    assert "scifact" in listing and "5,183" in listing and "trec-dl-2019" in listing
    run = tmp_path / "scifact.trec"
    out = rd("retrieve", "--dataset", "scifact", "--out", str(run), "-k", "100", env_extra=env).stdout
    assert "nDCG@10" in out and run.exists()
    assert len({line.split()[0] for line in run.read_text().splitlines()}) == 300
    res = tmp_path / "m.json"
    rd(
        "evaluate",
        "--dataset",
        "scifact",
        "--run",
        str(run),
        "-m",
        "nDCG@10",
        "-m",
        "P@5",
        "--out",
        str(res),
        env_extra=env,
    )
    metrics = json.loads(res.read_text())["scifact.trec"]
    assert metrics["nDCG@10"] == pytest.approx(0.6863, abs=1e-3) and "P@5" in metrics
    dl = rd(
        "evaluate",
        "--dataset",
        "trec-dl-2019",
        "--run",
        str(data_dir / "trec-dl-2019/runs/bm25_top100.trec"),
        env_extra=env,
    ).stdout
    assert "0.5058" in dl
