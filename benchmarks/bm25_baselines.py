"""BM25 (bm25s) full-corpus retrieval on the shared collections, plus the provided TREC DL 2019 run.

    .venv/bin/python benchmarks/bm25_baselines.py [--data-dir ../shared/data]

Writes benchmarks/results/bm25_baselines.json: nDCG@10, RR@10, R@100 per collection (test split),
index and retrieval time, and the published reference beside each.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from rankdistill.data import load_dataset
from rankdistill.evaluation import evaluate
from rankdistill.retrieval import BM25Retriever

REFERENCE = {"scifact": 0.665, "nfcorpus": 0.325, "trec-dl-2019": 0.506}  # BEIR paper / pyserini


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bm25_baselines.json"))
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        for name in ("scifact", "nfcorpus", "cranfield", "medline-glasgow", "vaswani-npl"):
            ds = load_dataset(name, args.data_dir)
            split = "test" if "test" in ds.splits else ds.splits[0]
            t0 = time.perf_counter()
            retriever = BM25Retriever(ds.corpus, cache_dir=cache, show_progress=False)
            t1 = time.perf_counter()
            run = retriever.retrieve(ds.split_queries(split), k=100)
            t2 = time.perf_counter()
            res = evaluate(run, ds.qrels(split))
            results[name] = {
                **res,
                "split": split,
                "documents": len(ds.corpus),
                "index_s": round(t1 - t0, 2),
                "retrieve_s": round(t2 - t1, 2),
                "reference_nDCG@10": REFERENCE.get(name),
            }
            print(name, json.dumps(results[name]), flush=True)
    dl = load_dataset("trec-dl-2019", args.data_dir)
    results["trec-dl-2019 (runs/bm25_top100.trec)"] = {
        **evaluate(dl.run("bm25_top100"), dl.qrels("test", on_unknown_doc="ignore")),
        "reference_nDCG@10": REFERENCE["trec-dl-2019"],
    }
    print("trec-dl-2019", json.dumps(results["trec-dl-2019 (runs/bm25_top100.trec)"]))
    out = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "settings": {
            "k1": 1.5,
            "b": 0.75,
            "method": "lucene",
            "stemmer": "snowball english",
            "stopwords": "en",
        },
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
