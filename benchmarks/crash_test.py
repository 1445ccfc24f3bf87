"""Crash test of resumable labelling: kill -9 `rankdistill label` at random points, resume, and compare
the store with the one an uninterrupted run writes.

1. An uninterrupted run labels scifact test queries into a reference store.
2. The same command runs against a second store and is killed with SIGKILL several times: at random
   moments (startup included) and just after a random number of labels has been committed (mid-batch).
3. The command runs once more to completion.
4. Both stores must hold exactly the same labels: same keys, same values (bit for bit), none missing,
   none duplicated, and the SQLite file must pass `PRAGMA integrity_check`.

Each run has its own cache folder, so the bi-encoder's embedding cache is rebuilt rather than shared.

    nice -n 10 .venv/bin/python benchmarks/crash_test.py --teacher minilm --queries 20 --kills 6
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))


def label_command(store: Path, args) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from rankdistill.cli import main; main()",
        "label",
        "--dataset",
        "scifact",
        "--split",
        "test",
        "--teacher",
        args.teacher,
        "--depth",
        str(args.depth),
        "--max-queries",
        str(args.queries),
        "--batch-size",
        str(args.batch_size),
        "--store",
        str(store),
        "--no-evaluate",
    ]


def env_for(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RANKDISTILL_CACHE=str(cache),
        RANKDISTILL_DATA_DIR=str(DATA_DIR),
        HF_HUB_OFFLINE="1",
        RANKDISTILL_PROGRESS="0",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"),
    )
    return env


def count_labels(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return 0


def records(store: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(store)
    try:
        rows = conn.execute("SELECT key, kind, teacher, query_id, doc_ids, value FROM labels").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"{store} failed integrity_check"
    finally:
        conn.close()
    out = {r[0]: r[1:] for r in rows}
    assert len(out) == len(rows)
    return out


def run_to_end(cmd, env) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"labelling failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, json.loads(proc.stdout)


def crash_test(args) -> dict:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="rankdistill-crash-"))
    ref_store, crash_store = work / "reference.sqlite", work / "crashed.sqlite"
    ref_env, crash_env = env_for(work / "cache-ref"), env_for(work / "cache-crash")

    ref_seconds, ref_summary = run_to_end(label_command(ref_store, args), ref_env)
    total = ref_summary["store"]["labels"]
    pairs = ref_summary[
        "pairs"
    ]  # labels computed pair by pair (an ensemble adds its fused labels at the end)
    kills = []
    cmd = label_command(crash_store, args)
    for i in range(args.kills):
        before = count_labels(crash_store)
        if before >= pairs:  # nothing left to interrupt but the last transaction
            break
        proc = subprocess.Popen(cmd, env=crash_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        if i % 2 == 0:
            # at a random moment of a run as long as the reference (startup and model load included)
            mode, target = "random time", None
            deadline = t0 + rng.uniform(0.2, ref_seconds * (1 - before / pairs) + 0.2 * ref_seconds)
            while time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(0.01)
        else:
            # just after a random number of new labels is committed, plus a random delay: mid-batch
            mode = "after commit"
            target = min(pairs - 1, before + rng.randint(1, max(1, (pairs - before) // 2)))
            while count_labels(crash_store) < target and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(
            {
                "mode": mode,
                "after_s": round(time.perf_counter() - t0, 2),
                "labels_before": before,
                "labels_after": count_labels(crash_store),
                "finished_before_kill": finished,
            }
        )
        print(f"kill {i + 1}: {kills[-1]}", flush=True)
    resume_seconds, resume_summary = run_to_end(cmd, crash_env)
    # a finished job computes nothing when run again
    again_seconds, again_summary = run_to_end(cmd, crash_env)

    ref, crashed = records(ref_store), records(crash_store)
    missing = sorted(set(ref) - set(crashed))
    extra = sorted(set(crashed) - set(ref))
    differ = [k for k in set(ref) & set(crashed) if ref[k] != crashed[k]]
    max_diff = 0.0
    for k in differ:
        a, b = json.loads(ref[k][4]), json.loads(crashed[k][4])
        max_diff = max(max_diff, abs(a.get("score", 0.0) - b.get("score", 0.0)))
    return {
        "benchmark": "crash_test",
        "command": f"nice -n 10 .venv/bin/python benchmarks/crash_test.py --teacher {args.teacher} "
        f"--queries {args.queries} --depth {args.depth} --batch-size {args.batch_size} --kills {args.kills} "
        f"--seed {args.seed}",
        "teacher": args.teacher,
        "labels": total,
        "reference_seconds": round(ref_seconds, 1),
        "kills": kills,
        "killed_mid_run": sum(not k["finished_before_kill"] for k in kills),
        "resume": {"seconds": round(resume_seconds, 1), "per_teacher": resume_summary.get("per_teacher")},
        "rerun_after_finish": {
            "seconds": round(again_seconds, 1),
            "per_teacher": again_summary.get("per_teacher"),
        },
        "labels_reference": len(ref),
        "labels_crashed": len(crashed),
        "missing": len(missing),
        "extra": len(extra),
        "values_differ": len(differ),
        "max_abs_score_diff": max_diff,
        "identical": not missing and not extra and not differ,
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--teacher", default="minilm", help="teacher spec, e.g. minilm, truefalse:llamacpp:gemma3-270m"
    )
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "crash_test.json"))
    args = ap.parse_args()
    result = crash_test(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prev = json.loads(out.read_text()) if out.exists() else {}
    if not isinstance(prev, dict) or "runs" not in prev:
        prev = {"benchmark": "crash_test", "runs": {}}
    prev["runs"][args.teacher] = result
    out.write_text(json.dumps(prev, indent=2))
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["identical"] else 1)


if __name__ == "__main__":
    main()
