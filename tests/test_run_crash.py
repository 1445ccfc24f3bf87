"""`rankdistill run` when native code kills the process: the stage and the signal are named, the exit status
is non-zero, and the next run resumes after the stages that finished.

The signals are real: the test sends them to the process that runs the stages, as the kernel would (an
illegal instruction is SIGILL, the OOM killer's is SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rankdistill.cli.supervise import describe_death
from rankdistill.pipeline.runner import read_status, running_stage

pytestmark = [pytest.mark.slow, pytest.mark.data]


def test_death_descriptions():
    assert describe_death(0) is None and describe_death(1) is None
    assert describe_death(-signal.SIGILL).startswith("SIGILL (illegal instruction")
    assert "out-of-memory" in describe_death(-signal.SIGKILL)
    assert describe_death(-signal.SIGSEGV).startswith("SIGSEGV (segmentation fault")


def _start(config: Path, run_dir: Path, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rankdistill", "run", str(config), "--run-dir", str(run_dir)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _running_pid(run_dir: Path, stage: str) -> int | None:
    for row in read_status(run_dir):
        if row["name"] == stage and row["status"] == "running":
            return int(row["reason"].split()[-1])
    return None


@pytest.mark.parametrize("sig", [signal.SIGILL, signal.SIGKILL], ids=["illegal-instruction", "oom-killer"])
def test_a_stage_killed_by_a_signal_is_named_and_the_run_resumes(
    tmp_path: Path, data_dir: Path, minilm_dir: Path, tiny_pipeline: dict, sig: signal.Signals
) -> None:
    env = {**os.environ, "RANKDISTILL_DATA_DIR": str(data_dir), "RANKDISTILL_CACHE": str(tmp_path / "c")}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_pipeline))
    run_dir = tmp_path / "run"
    proc = _start(config, run_dir, env)
    deadline = time.monotonic() + 300
    pid = None
    while pid is None and proc.poll() is None and time.monotonic() < deadline:
        pid = _running_pid(run_dir, "labels")  # loads MiniLM and labels: seconds long
        time.sleep(0.05)
    assert pid is not None and pid != proc.pid, "the stages must run in a child process"
    os.kill(pid, sig)
    out, err = proc.communicate(timeout=120)
    died_in = running_stage(run_dir)
    assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
    assert died_in in ("labels", "train")  # the kill may land just as labels hands over to train
    assert f"error: stage {died_in!r} died of {sig.name}" in err
    assert "run the same command again to resume" in err
    if sig == signal.SIGILL:
        assert "Fatal Python error: Illegal instruction" in err  # the fault handler's traceback
    finished = {r["name"] for r in read_status(run_dir) if r["status"] in ("done", "skipped")}
    assert {"data", "bm25", "queries"} <= finished

    if sig != signal.SIGILL:
        return  # resuming does not depend on which signal killed the stage: checked once, for SIGILL

    # the next run resumes: the stages that finished are skipped, the rest run, exit 0
    proc = _start(config, run_dir, env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    status = {r["name"]: r["status"] for r in read_status(run_dir)}
    assert status["data"] == status["bm25"] == status["queries"] == "skipped"
    assert status[died_in] == "done" and status["report"] == "done"
    assert json.loads((run_dir / "evaluate" / "metrics.json").read_text())["queries"] == 6
