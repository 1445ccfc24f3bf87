"""Pairs per second of encoder students by depth (2 vs 6 layers of all-MiniLM-L6-v2), same pairs, same process.

Speed does not depend on the trained weights, so fresh students measure it; the rounds alternate between
the models so that a change in machine load hits both alike (the machine this ran on was shared).

    nice -n 10 .venv/bin/python benchmarks/student_speed.py --pairs 256 --max-length 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from rankdistill.data.datasets import load_dataset  # noqa: E402
from rankdistill.hardware import cpu_supports_bf16  # noqa: E402
from rankdistill.retrieval.bm25 import BM25Retriever  # noqa: E402
from rankdistill.students import load_encoder_student, student_scores  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--layers", type=int, nargs="+", default=[6, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(
        args.dataset, data_dir=os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data")
    )
    queries = ds.split_queries("test")
    run = BM25Retriever.from_corpus(ds.corpus).retrieve(
        queries.subset(list(queries)[:10]), k=args.pairs // 10 + 1
    )
    pairs = [(queries[q], ds.corpus[d].full_text) for q in run.query_ids for d, _ in run.ranked(q)][
        : args.pairs
    ]
    bf16 = cpu_supports_bf16()
    models = {}
    for n in args.layers:
        m = load_encoder_student(num_layers=n, max_length=args.max_length, seed=0).eval()
        models[n] = m.to(torch.bfloat16) if bf16 else m
        student_scores(models[n], pairs[:32])  # warm-up
    rates: dict[int, list[float]] = {n: [] for n in args.layers}
    for _ in range(args.rounds):
        for n, m in models.items():
            start = time.perf_counter()
            student_scores(m, pairs, batch_size=32)
            rates[n].append(len(pairs) / (time.perf_counter() - start))
    result = {
        "dataset": args.dataset,
        "pairs": len(pairs),
        "max_length": args.max_length,
        "bf16": bf16,
        "threads": args.threads,
        "load_average_1min": os.getloadavg()[0],
        "pairs_per_s_median": {f"{n}_layers": round(statistics.median(r), 1) for n, r in rates.items()},
        "pairs_per_s_rounds": {f"{n}_layers": [round(x, 1) for x in r] for n, r in rates.items()},
    }
    if 6 in rates and 2 in rates:
        result["speedup_2_vs_6"] = round(statistics.median(rates[2]) / statistics.median(rates[6]), 2)
    out = REPO / "benchmarks" / "results" / "student_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
