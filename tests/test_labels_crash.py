"""kill -9 a labelling process at random points, resume, and compare with an uninterrupted run.

The child process labels pairs through the real store and runner with a real (lexical) teacher; the
full version against `rankdistill label` with real models is benchmarks/crash_test.py."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = r"""
import hashlib, sys, time
from rankdistill.data.types import Corpus, Document, Queries, Run
from rankdistill.labels import label_run
from rankdistill.teachers import PointwiseLabel, PointwiseTeacher

class Lexical(PointwiseTeacher):
    name = "lexical"
    batch_size = 8
    def identity(self):
        return {"teacher": "lexical", "v": 1}
    def score(self, pairs):
        out = []
        for q, d in pairs:
            qw, dw = set(q.split()), set(d.split())
            # some work per pair (a fixed pause, like a model call, so the timing does not depend on how
            # busy the machine is), so a kill lands inside a batch
            time.sleep(0.02)
            h = hashlib.sha256((q + d).encode())
            for _ in range(5000):
                h = hashlib.sha256(h.digest())
            noise = int.from_bytes(h.digest()[:4], "big") / 2**32
            out.append(PointwiseLabel(len(qw & dw) / len(qw) + 1e-3 * noise, [noise, -noise]))
        return out

words = [f"w{i}" for i in range(60)]
docs = [Document(f"d{i}", " ".join(words[(i * 7 + j) % 60] for j in range(12))) for i in range(40)]
queries = Queries({f"q{i}": " ".join(words[(i * 5 + j) % 60] for j in range(4)) for i in range(12)})
run = Run({q: {d.id: float(-k) for k, d in enumerate(docs[i % 10: i % 10 + 20])} for i, q in enumerate(queries)})
label_run(Lexical(), queries, Corpus(docs), run, depth=20, store=sys.argv[1], batch_size=8, show_progress=False)
print("done")
"""


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _records(path: Path) -> dict:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT key, kind, teacher, query_id, doc_ids, value FROM labels").fetchall()
    finally:
        conn.close()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.slow
def test_kill_9_and_resume_gives_the_uninterrupted_labels(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "RANKDISTILL_PROGRESS": "0"}
    ref = tmp_path / "ref.sqlite"
    subprocess.run([sys.executable, str(script), str(ref)], check=True, env=env, capture_output=True)
    expected = _records(ref)
    assert len(expected) == 240

    store = tmp_path / "crashed.sqlite"
    rng = random.Random(0)
    kills = 0
    for i in range(8):  # kill 4 times, stopping early only when too little work is left to interrupt
        before = _count(store)
        if kills >= 4 or (i > 0 and 240 - before < 8):
            break
        proc = subprocess.Popen([sys.executable, str(script), str(store)], env=env, stdout=subprocess.DEVNULL)
        if i == 0:
            time.sleep(rng.uniform(0.05, 1.0))  # during startup, before or at the first commits
        else:
            # just after a random number of new labels is committed, plus a random delay: mid-batch
            target = before + rng.randint(1, max(1, (240 - before) // 3))
            while _count(store) < target and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        got = _records(store) if store.exists() else {}
        # whatever moment it died, what it left is a subset of the right answer, whole batches only
        assert all(expected[k] == v for k, v in got.items())
        assert len(got) % 8 == 0
    assert kills >= 3
    subprocess.run([sys.executable, str(script), str(store)], check=True, env=env, capture_output=True)
    assert _records(store) == expected
