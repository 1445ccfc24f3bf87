"""Labelling throughput through the label store against the bare backend call, and a cached re-run.

The same scifact (query, BM25 candidate) pairs are scored, batch by batch, two ways in one process:
  bare:      the backend call alone (`llm.next_token_logits` on pre-rendered prompts, or
             `llm.score_continuations` for query likelihood): the floor any labelling tool pays;
  labelled:  the whole path a user runs: teacher (prompt rendering, truncation, label building) + runner
             (content-hash keys, store lookup, one SQLite transaction per batch).
The two alternate per batch (bare first on even batches, labelled first on odd ones) so that the load of
a shared machine hits both alike. Then every pair is labelled again: all of it comes from the store.

    nice -n 10 .venv/bin/python benchmarks/labelling.py --llm llamacpp:gemma3-270m --pairs 48
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", default="llamacpp:gemma3-270m")
    ap.add_argument("--teacher", default="truefalse", choices=["truefalse", "yesno", "qlm"])
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--per-query", type=int, default=12, help="BM25 candidates per query")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "labelling.json"))
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from rankdistill.data.datasets import load_dataset
    from rankdistill.labels import LabelStore, StoreScorer
    from rankdistill.llm import load_llm
    from rankdistill.retrieval.bm25 import BM25Retriever
    from rankdistill.teachers import load_teacher, run_candidates
    from rankdistill.utils import batched

    ds = load_dataset("scifact", data_dir=DATA_DIR)
    queries = ds.split_queries("test")
    n_queries = -(-args.pairs // args.per_query)
    queries = queries.subset(list(queries)[:n_queries])
    run = BM25Retriever.from_corpus(ds.corpus).retrieve(queries, k=args.per_query)
    candidates = run_candidates(queries, ds.corpus, run, args.per_query)[: args.pairs]

    t0 = time.perf_counter()
    llm = load_llm(args.llm)
    load_s = time.perf_counter() - t0
    teacher = load_teacher({"type": args.teacher, "llm": llm})

    def bare(chunk) -> float:
        prompts = [teacher.render(c.query, c.doc) for c in chunk]  # rendered outside the timer
        t = time.perf_counter()
        if args.teacher == "qlm":
            llm.score_continuations([(p, " " + c.query) for p, c in zip(prompts, chunk, strict=True)])
        else:
            llm.next_token_logits(prompts, list(teacher.candidates))
        return time.perf_counter() - t

    store_path = Path(tempfile.mkdtemp(prefix="rankdistill-bench-")) / "labels.sqlite"
    store = LabelStore(store_path)
    scorer = StoreScorer(store, args.batch_size, show_progress=False)

    def labelled(chunk) -> tuple[float, float]:
        t = time.perf_counter()
        scorer(teacher, chunk)
        s = scorer.stats[teacher.name]
        return time.perf_counter() - t, s.seconds - s.compute_seconds

    chunks = list(batched(candidates, args.batch_size))
    bare(chunks[0])  # warm-up (first-call allocations), not counted
    bare_s = labelled_s = bookkeeping_s = 0.0
    per_batch = []
    for i, chunk in enumerate(chunks):
        if i % 2 == 0:
            b = bare(chunk)
            lab, book = labelled(chunk)
        else:
            lab, book = labelled(chunk)
            b = bare(chunk)
        bare_s += b
        labelled_s += lab
        bookkeeping_s += book
        per_batch.append({"bare_s": round(b, 3), "labelled_s": round(lab, 3), "store_s": round(book, 4)})
        print(
            f"batch {i + 1}/{len(chunks)}: bare {b:.2f}s  labelled {lab:.2f}s  store {book * 1000:.1f}ms",
            flush=True,
        )

    assert len(store) == len(candidates)
    t = time.perf_counter()
    again = StoreScorer(store, args.batch_size, show_progress=False)
    again(teacher, candidates)
    cached_s = time.perf_counter() - t
    stats = again.stats[teacher.name]
    assert stats.computed == 0 and stats.cached == len(candidates)

    result = {
        "benchmark": "labelling",
        "command": f"nice -n 10 .venv/bin/python benchmarks/labelling.py --llm {args.llm} --teacher {args.teacher} "
        f"--pairs {args.pairs} --batch-size {args.batch_size}",
        "llm": llm.identity(),
        "teacher": teacher.name,
        "pairs": len(candidates),
        "batch_size": args.batch_size,
        "model_load_s": round(load_s, 2),
        "bare_backend_s": round(bare_s, 3),
        "labelled_s": round(labelled_s, 3),
        "bare_pairs_per_s": round(len(candidates) / bare_s, 3),
        "labelled_pairs_per_s": round(len(candidates) / labelled_s, 3),
        "overhead": round(labelled_s / bare_s - 1, 4),
        "store_and_keys_s": round(bookkeeping_s, 4),
        "store_and_keys_share": round(bookkeeping_s / labelled_s, 5),
        "cached_rerun_s": round(cached_s, 4),
        "cached_speedup": round(labelled_s / cached_s, 1),
        "per_batch": per_batch,
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "load_avg": os.getloadavg()},
    }
    store.close()
    llm.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_batch"}, indent=2))


if __name__ == "__main__":
    main()
