"""InPars query generation with a real model: Gemma 3 270M (GGUF) through llama.cpp, on scifact documents.

Tiny settings (a handful of documents, short documents and queries) keep this to seconds of generation;
Gemma 270M writes poor queries, so the assertions are about the mechanics, not the quality. One llama.cpp
thread: on a shared 2-core machine two spinning threads are several times slower than one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rankdistill.teachers.querygen import (
    QueryGenConfig,
    QueryGenerator,
    generate_synthetic_queries,
    sample_documents,
)

pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.data]

SETTINGS = {"n_docs": 4, "max_doc_words": 30, "max_tokens": 16, "batch_size": 2, "negatives": 5, "seed": 3}


@pytest.fixture(scope="module")
def llm(gemma_gguf):
    pytest.importorskip("llama_cpp")
    from rankdistill.llm.llamacpp import LlamaCppLLM

    model = LlamaCppLLM(gemma_gguf, n_ctx=1024, n_threads=1)
    yield model
    model.close()


@pytest.fixture(scope="module")
def scifact(data_dir):
    from rankdistill.data.datasets import load_dataset

    return load_dataset(data_dir / "scifact")


@pytest.fixture(scope="module")
def retriever(scifact, tmp_path_factory):
    from rankdistill.retrieval.bm25 import BM25Retriever

    return BM25Retriever.from_corpus(
        scifact.corpus, cache_dir=tmp_path_factory.mktemp("bm25"), show_progress=False
    )


@pytest.fixture(scope="module")
def uninterrupted(llm, scifact, retriever, tmp_path_factory):
    out = tmp_path_factory.mktemp("vanilla")
    config = QueryGenConfig(method="vanilla", filter="logprob", keep_share=0.75, **SETTINGS)
    return generate_synthetic_queries(
        scifact.corpus, config, llm=llm, out_dir=out, retriever=retriever, show_progress=False
    )


def test_vanilla_queries_with_gemma(uninterrupted, scifact):
    result = uninterrupted
    s = result.stats
    assert s["sampled_documents"] == 4 and s["raw_queries"] == 4
    assert s["generation"]["generations"] == 4 and s["generation"]["queries_per_second"] > 0
    journal = (result.path / "generations.jsonl").read_text().splitlines()
    assert len(journal) == 5 and json.loads(journal[0])["identity"]["prompt"]["name"] == "inpars-vanilla"
    kept = result.queries
    assert 1 <= len(kept) == min(s["after_dedup"], -(-3 * s["after_dedup"] // 4))
    for q in kept:
        assert q.method == "inpars-vanilla" and q.source_doc_id in scifact.corpus
        assert q.logprob < 0 and q.n_tokens > 0 and q.mean_logprob == pytest.approx(q.logprob / q.n_tokens)
        assert "\n" not in q.text and len(q.text.split()) >= 3
        assert q.source_doc_id not in q.candidates and len(q.candidates) == 5
    # the logprob filter keeps the best mean log-probabilities
    raw = [json.loads(line) for line in journal[1:]]
    assert all(g["generations"][0]["logprob"] < 0 for g in raw)
    lines = (result.path / "qrels" / "synthetic.tsv").read_text().splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore" and len(lines) == len(kept) + 1


def test_rerun_generates_nothing(uninterrupted, llm, scifact, retriever):
    config = QueryGenConfig(method="vanilla", filter="logprob", keep_share=0.75, **SETTINGS)
    t0 = time.perf_counter()
    again = generate_synthetic_queries(
        scifact.corpus, config, llm=llm, out_dir=uninterrupted.path, retriever=retriever, show_progress=False
    )
    assert again.stats["generation"]["generations"] == 0
    assert again.stats["generation"]["resumed_documents"] == 4
    assert again.queries == uninterrupted.queries
    assert time.perf_counter() - t0 < 5


def test_other_settings_refuse_the_journal(uninterrupted, llm, scifact):
    from rankdistill.errors import RankdistillError

    config = QueryGenConfig(method="vanilla", **{**SETTINGS, "max_tokens": 8})
    with pytest.raises(RankdistillError, match="other settings.*max_tokens"):
        generate_synthetic_queries(
            scifact.corpus, config, llm=llm, out_dir=uninterrupted.path, show_progress=False
        )


def test_gbq_samples_several_distinct_queries_per_document(llm, scifact):
    docs = sample_documents(scifact.corpus, 1, seed=11)
    gen = QueryGenerator(
        llm, prompt="gbq", n_per_doc=3, temperature=1.0, max_tokens=10, max_doc_words=30, seed=5
    )
    raw, stats = gen.run(docs, show_progress=False)
    assert stats.generations == 3 and gen.identity()["prompt"]["name"] == "inpars-gbq"
    samples = raw[docs[0].id]
    # three samples at temperature 1, each with its own seed, are not all the same text
    assert len({g.text for g in samples}) > 1
    assert all(g.logprob < 0 for g in samples if g.text)


def test_killed_run_resumes_to_the_uninterrupted_result(
    uninterrupted, scifact, gemma_gguf, data_dir, tmp_path
):
    """kill -9 a generating process after its first journalled batch, run again: the result equals the
    uninterrupted run's (greedy decoding; batch size 1 so the kill lands between many small writes)."""
    out = tmp_path / "killed"
    script = f"""
import sys
from rankdistill.data.datasets import load_dataset
from rankdistill.llm.llamacpp import LlamaCppLLM
from rankdistill.teachers.querygen import QueryGenConfig, generate_synthetic_queries
ds = load_dataset({str(data_dir / "scifact")!r})
llm = LlamaCppLLM({str(gemma_gguf)!r}, n_ctx=1024, n_threads=1)
config = QueryGenConfig(method="vanilla", filter="logprob", keep_share=0.75, **{{**{SETTINGS!r}, "batch_size": 1}})
generate_synthetic_queries(ds.corpus, config, llm=llm, out_dir={str(out)!r}, show_progress=False)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "RANKDISTILL_PROGRESS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    journal = out / "generations.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_bytes().splitlines()) >= 2:  # header + one document
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "synthetic.jsonl").exists()
    n_before = len(journal.read_bytes().splitlines()) - 1
    assert 1 <= n_before < 4

    from rankdistill.llm.llamacpp import LlamaCppLLM

    llm = LlamaCppLLM(gemma_gguf, n_ctx=1024, n_threads=1)
    try:
        config = QueryGenConfig(
            method="vanilla", filter="logprob", keep_share=0.75, **{**SETTINGS, "batch_size": 1}
        )
        resumed = generate_synthetic_queries(
            scifact.corpus, config, llm=llm, out_dir=out, show_progress=False
        )
    finally:
        llm.close()
    assert resumed.stats["generation"]["resumed_documents"] == n_before
    assert resumed.stats["generation"]["generations"] == 4 - n_before
    strip = ("candidates", "source_rank")  # this run had no retriever
    assert [{k: v for k, v in q.to_dict().items() if k not in strip} for q in resumed.queries] == [
        {k: v for k, v in q.to_dict().items() if k not in strip} for q in uninterrupted.queries
    ]


def test_cli_with_an_llm_spec(data_dir, tmp_path, monkeypatch):
    """`rankdistill generate-queries --llm llamacpp:gemma3-270m` end to end: LLM spec, logprob filter, files."""
    from typer.testing import CliRunner

    from rankdistill.cli import app
    from rankdistill.teachers.querygen import read_synthetic

    monkeypatch.setenv("RANKDISTILL_THREADS", "1")
    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "gbq"
    args = [
        "generate-queries",
        "-d",
        str(data_dir / "scifact"),
        "-o",
        str(out),
        "--method",
        "gbq",
        "--llm",
        "llamacpp:gemma3-270m",
        "--n-docs",
        "3",
        "--max-doc-words",
        "25",
        "--max-tokens",
        "12",
        "--filter",
        "logprob",
        "--keep-top-k",
        "2",
        "--negatives",
        "3",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "queries/s" in res.output
    queries = read_synthetic(out / "synthetic.jsonl")
    assert 1 <= len(queries) <= 2 and all(
        q.method == "inpars-gbq" and len(q.candidates) == 3 for q in queries
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["generation"]["generations"] == 3 and stats["generator"]["llm"]["backend"] == "llamacpp"
