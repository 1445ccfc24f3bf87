"""`rankdistill rerank` on real scifact data and `rankdistill serve` as a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rankdistill.cli import app
from rankdistill.data.trec import read_run, write_run
from rankdistill.data.types import Run
from rankdistill.inference.reranker import Reranker

pytestmark = pytest.mark.data


def test_rerank_command_rescores_a_trec_run(cross_encoder_dir, data_dir, tmp_path):
    from rankdistill.data.datasets import load_dataset

    ds = load_dataset("scifact", data_dir=data_dir)
    qids = list(ds.split_queries("test"))[:3]
    doc_ids = list(ds.corpus)[:6]
    first = Run({q: {d: float(10 - i) for i, d in enumerate(doc_ids)} for q in qids}, name="first")
    first.scores["no-such-query"] = {doc_ids[0]: 1.0}
    first.scores[qids[0]]["no-such-doc"] = 0.5
    run_in = write_run(first, tmp_path / "in.trec", tag="bm25")
    out = tmp_path / "out.trec"
    args = [
        "rerank",
        "--model",
        str(cross_encoder_dir),
        "--dataset",
        "scifact",
        "--data-dir",
        str(data_dir),
        "--run",
        str(run_in),
        "--out",
        str(out),
        "--top-k",
        "5",
        "--tag",
        "student",
        "--dtype",
        "fp32",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "reranked 3 queries (15 pairs)" in result.output
    assert "skipped 1 queries" in result.output

    reranked = read_run(out)
    assert set(reranked.query_ids) == set(qids)
    rr = Reranker.load(cross_encoder_dir, dtype="fp32")
    for q in qids:
        top5 = [d for d, _ in first.ranked(q, 5) if d in ds.corpus]
        expected = rr.score([(ds.queries[q], ds.corpus[d]) for d in top5])
        assert set(reranked[q]) == set(top5)
        got = [reranked[q][d] for d in top5]
        assert got == pytest.approx(expected, abs=1e-4)
        assert [d for d, _ in reranked.ranked(q)] == [
            d for _, d in sorted(zip(expected, top5, strict=True), key=lambda x: -x[0])
        ]
    assert out.read_text().split("\n")[0].endswith(" student")


def test_rerank_command_refuses_a_run_of_another_corpus(cross_encoder_dir, data_dir, tmp_path):
    """Unknown document ids are skipped one by one, but a run none of whose documents is in the corpus
    was made on another corpus: an error naming one, not an empty run and exit status 0."""
    from rankdistill.data.datasets import load_dataset

    qids = list(load_dataset("scifact", data_dir=data_dir).split_queries("test"))[:2]
    first = Run({q: {"MED-1": 2.0, "MED-2": 1.0} for q in qids}, name="nfcorpus")
    run_in = write_run(first, tmp_path / "nfcorpus.trec", tag="bm25")
    out = tmp_path / "out.trec"
    args = ["rerank", "--model", str(cross_encoder_dir), "--dataset", "scifact", "--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, [*args, "--run", str(run_in), "--out", str(out), "--dtype", "fp32"])
    assert result.exit_code != 0
    message = str(result.exception)
    assert "not in the corpus" in message and f"query {qids[0]!r} doc 'MED-1'" in message
    assert "another corpus" in message
    assert not out.exists()


def test_rerank_command_reports_a_bad_run_file(cross_encoder_dir, data_dir, tmp_path):
    bad = tmp_path / "bad.trec"
    bad.write_text("1 Q0 doc 1\n")
    args = [
        "rerank",
        "--model",
        str(cross_encoder_dir),
        "--dataset",
        "scifact",
        "--data-dir",
        str(data_dir),
        "--run",
        str(bad),
        "--out",
        str(tmp_path / "o.trec"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "bad.trec:1: expected 6 columns" in str(result.exception)


@pytest.mark.slow
def test_serve_command_runs_a_real_server(cross_encoder_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("rankdistill")
    env = {**os.environ, "RANKDISTILL_API_KEY": "k"}
    cmd = [str(exe), "serve", "--model", str(cross_encoder_dir), "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.HTTPError:
                assert time.time() < deadline, "server did not start"
                time.sleep(0.3)
        assert health.json()["limits"]["api_key_required"] is True
        body = {"query": "scurvy", "documents": ["vitamin C and scurvy", "moon"]}
        assert httpx.post(f"http://127.0.0.1:{port}/rerank", json=body).status_code == 401
        r = httpx.post(f"http://127.0.0.1:{port}/rerank", json=body, headers={"X-API-Key": "k"}, timeout=60)
        assert r.status_code == 200 and len(r.json()["results"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
