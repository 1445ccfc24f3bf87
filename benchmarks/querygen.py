"""Synthetic query generation on scifact: speed against the bare backend, resume cost, and query quality
proxies of every method (InPars vanilla and GBQ with Gemma 3 270M through llama.cpp; LLM-free sentence,
sentence-removed and title pseudo-queries) on the same sampled documents.

Speed: `QueryGenerator.run` (prompt rendering, journal with fsync, token counting) against calling
`llm.generate` on the same prompts in the same batches, in the same process, alternating batch by batch;
on a shared, loaded machine that difference is noisy (a few percent either way), so the time our code
spends outside the backend is also measured directly. Then the same run again on its finished journal
(the resume path: nothing to generate).

Quality proxies (no labels needed): queries surviving cleanup, copies of the document, duplicates, words
per query, and how BM25 ranks the source document for its query (rank 1 share, share in the top 21).
A query BM25 always finds first is easy; one whose source BM25 never finds may be off topic.

    nice -n 10 .venv/bin/python benchmarks/querygen.py --docs 16 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results" / "querygen.json"


def quality(queries, corpus, retriever, n_docs: int) -> dict:
    from rankdistill.teachers.querygen import add_bm25_negatives

    if not queries:
        return {"queries": 0}
    add_bm25_negatives(queries, retriever, k=20)
    ranks = [q.source_rank for q in queries]
    return {
        "queries": len(queries),
        "queries_per_document": round(len(queries) / n_docs, 3),
        "mean_words": round(statistics.mean(len(q.text.split()) for q in queries), 2),
        "bm25_source_at_1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
        "bm25_source_in_top21": round(sum(r is not None for r in ranks) / len(ranks), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=16, help="scifact documents to sample")
    ap.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads (1 is fastest on a busy 2-core box)"
    )
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-doc-words", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from rankdistill.data.datasets import load_dataset
    from rankdistill.llm.llamacpp import LlamaCppLLM
    from rankdistill.retrieval.bm25 import BM25Retriever
    from rankdistill.teachers.querygen import (
        QueryGenerator,
        SyntheticQuery,
        dedupe,
        drop_copied,
        drop_ungrounded,
        pseudo_queries,
        sample_documents,
    )
    from rankdistill.teachers.querygen.text import clean_query

    ds = load_dataset("scifact", data_dir=DATA_DIR)
    corpus = ds.corpus
    retriever = BM25Retriever.from_corpus(corpus, show_progress=False)
    docs = sample_documents(corpus, args.docs, seed=args.seed)
    llm = LlamaCppLLM("gemma3-270m", n_ctx=2048, n_threads=args.threads)
    result: dict = {
        "benchmark": "querygen",
        "dataset": "scifact",
        "documents": len(docs),
        "model": llm.identity(),
        "settings": {
            k: getattr(args, k) for k in ("threads", "max_tokens", "max_doc_words", "batch_size", "seed")
        },
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]},
        "methods": {},
        "examples": {},
    }

    for style in ("vanilla", "gbq"):
        gen = QueryGenerator(
            llm,
            prompt=style,
            max_tokens=args.max_tokens,
            max_doc_words=args.max_doc_words,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        prompts = [gen.render(d) for d in docs]
        # warm up (first-call allocations) and leave the few-shot prefix in the KV cache for both contenders
        llm.generate(prompts[:1], max_tokens=1)
        # Baseline and ours batch by batch, alternating which goes first, so both meet the same load on a
        # shared machine. Ours grows the document list one batch at a time over one journal: each call
        # reads the journal back and generates only the new batch (the resume path, so this is pessimistic).
        t_bare = t_ours = 0.0
        # time spent inside the backend during our runs: what is left of t_ours is our own work
        in_backend = [0.0]
        backend_generate = llm.generate

        def timed_generate(*a, _inner=backend_generate, _acc=in_backend, **kw):
            t = time.perf_counter()
            try:
                return _inner(*a, **kw)
            finally:
                _acc[0] += time.perf_counter() - t

        bare = []
        with tempfile.TemporaryDirectory() as tmp:
            journal = Path(tmp) / "generations.jsonl"
            for b, i in enumerate(range(0, len(prompts), args.batch_size)):
                for turn in (0, 1) if b % 2 == 0 else (1, 0):
                    t0 = time.perf_counter()
                    if turn == 0:
                        bare += llm.generate(
                            prompts[i : i + args.batch_size],
                            max_tokens=args.max_tokens,
                            temperature=0.0,
                            top_p=gen.top_p,
                            seed=0,
                            stop=["\n"],
                        )
                        t_bare += time.perf_counter() - t0
                    else:
                        llm.generate = timed_generate
                        try:
                            gen.run(docs[: i + args.batch_size], journal, show_progress=False)
                        finally:
                            del llm.generate  # back to the class's method
                        t_ours += time.perf_counter() - t0
            t0 = time.perf_counter()
            raw, _ = gen.run(docs, journal, show_progress=False)
            t_resume = time.perf_counter() - t0
            again, rstats = gen.run(docs, journal, show_progress=False)
        assert rstats.generations == 0 and again == raw
        same_text = sum(b.text == raw[d.id][0].text for b, d in zip(bare, docs, strict=True))
        queries, invalid = [], 0
        for d in docs:
            text = clean_query(raw[d.id][0].text)
            if text is None:
                invalid += 1
                continue
            g = raw[d.id][0]
            queries.append(
                SyntheticQuery(
                    f"{style}-{d.id}",
                    text,
                    d.id,
                    gen.method,
                    g.logprob,
                    g.logprob / max(g.n_tokens, 1),
                    g.n_tokens,
                )
            )
        kept, copied = drop_copied(queries, corpus)
        kept, ungrounded = drop_ungrounded(kept, corpus)
        kept, dups = dedupe(kept)
        entry = {
            "speed": {
                "bare_backend_queries_per_s": round(len(docs) / t_bare, 4),
                "querygen_queries_per_s": round(len(docs) / t_ours, 4),
                "overhead_percent": round(100 * (t_ours - t_bare) / t_bare, 2),
                # deterministic part: our own work (render, journal + fsync, token counts) over backend time
                "own_work_seconds": round(t_ours - in_backend[0], 4),
                "own_work_percent_of_backend": round(100 * (t_ours - in_backend[0]) / in_backend[0], 3),
                "resume_seconds": round(t_resume, 4),
                "resume_speedup": round(t_ours / max(t_resume, 1e-9), 1),
                "same_text_as_bare_call": f"{same_text}/{len(docs)}",
            },
            "invalid_after_cleanup": invalid,
            "copied_from_document": copied,
            "ungrounded": ungrounded,
            **dups,
            **quality(kept, corpus, retriever, len(docs)),
        }
        result["methods"][f"inpars-{style}"] = entry
        result["examples"][f"inpars-{style}-dropped"] = [
            {"doc_id": q.source_doc_id, "title": corpus[q.source_doc_id].title, "query": q.text}
            for q in queries
            if q not in kept
        ]
        result["examples"][f"inpars-{style}"] = [
            {
                "doc_id": q.source_doc_id,
                "title": corpus[q.source_doc_id].title,
                "query": q.text,
                "mean_logprob": round(q.mean_logprob, 3),
            }
            for q in kept[:6]
        ]
        print(style, json.dumps(entry), file=sys.stderr)

    # (sentence-removed has the same queries as sentence; only the positive text the student sees differs)
    for name in ("sentence", "title"):
        t0 = time.perf_counter()
        qs = pseudo_queries(docs, name, seed=args.seed)
        seconds = time.perf_counter() - t0
        qs, dups = dedupe(qs)
        entry = {
            "speed": {"queries_per_s": round(len(qs) / max(seconds, 1e-9), 1)},
            **dups,
            **quality(qs, corpus, retriever, len(docs)),
        }
        result["methods"][name] = entry
        result["examples"][name] = [{"doc_id": q.source_doc_id, "query": q.text} for q in qs[:3]]
        print(name, json.dumps(entry), file=sys.stderr)

    llm.close()
    result["machine"]["load_average_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
