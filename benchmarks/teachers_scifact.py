"""nDCG@10 on scifact test of each pointwise teacher reranking BM25's top-20, beside BM25 itself.

Encoder teachers and ensembles run on all 300 test queries; the Gemma 3 270M teachers (through the
transformers backend by default, the faster one for batched scoring) on a seeded sample of queries,
with BM25 and the encoder teachers re-scored on the same sample so the rows compare. Every label goes
through a label store, so a killed run resumes. Writes benchmarks/results/teachers_scifact.json after
every teacher.

    nice -n 10 .venv/bin/python benchmarks/teachers_scifact.py --llm hf:gemma3-270m --llm-queries 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))
OUT = REPO / "benchmarks" / "results" / "teachers_scifact.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=20, help="BM25 candidates reranked per query")
    ap.add_argument(
        "--llm", default="hf:gemma3-270m", help="LLM spec for the Gemma teachers ('' to skip them)"
    )
    ap.add_argument("--llm-queries", type=int, default=10, help="test queries the LLM teachers label")
    ap.add_argument("--llm-teachers", default="qlm,truefalse,yesno")
    ap.add_argument("--skip-encoders", action="store_true", help="only the LLM teachers (and BM25)")
    ap.add_argument("--merge", help="results JSON of a --skip-encoders run whose sample rows to merge in")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--store", default="/tmp/rankdistill-bench/teachers_scifact.sqlite")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.types import Qrels
    from rankdistill.evaluation.metrics import evaluate
    from rankdistill.labels import LabelStore, label_run
    from rankdistill.retrieval.bm25 import BM25Retriever
    from rankdistill.teachers import load_teacher
    from rankdistill.utils import set_seed

    set_seed(args.seed)
    ds = load_dataset("scifact", data_dir=DATA_DIR)
    queries, qrels, corpus = ds.split_queries("test"), ds.qrels("test"), ds.corpus
    run = BM25Retriever.from_corpus(corpus).retrieve(queries, k=100).top_k(args.depth)
    sample = sorted(queries)
    random.Random(args.seed).shuffle(sample)
    sample = sample[: args.llm_queries]
    sub_q, sub_run = queries.subset(sample), run.subset(sample)
    sub_qrels = Qrels({q: qrels[q] for q in sample if q in qrels})

    out_path = Path(args.out)
    prev = json.loads(out_path.read_text()) if out_path.exists() else {}
    results = {
        "benchmark": "teachers_scifact",
        "command": "nice -n 10 .venv/bin/python benchmarks/teachers_scifact.py "
        f"--llm {args.llm or chr(39) * 2} --llm-queries {args.llm_queries}",
        "settings": {
            "depth": args.depth,
            "seed": args.seed,
            "threads": args.threads,
            "llm": args.llm,
            "llm_queries": len(sample),
            "measure": "nDCG@10",
            "split": "test",
        },
        "machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()},
        "all_queries": prev.get("all_queries", {}),
        "sample": prev.get("sample", {}),
    }

    def save() -> None:
        results["machine"]["load_avg_end"] = os.getloadavg()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2))

    def ndcg(r, judged) -> float:
        return round(evaluate(r, judged, ["nDCG@10"])["nDCG@10"], 4)

    results["all_queries"]["bm25"] = {"nDCG@10": ndcg(run, qrels), "queries": len(queries)}
    results["sample"]["bm25"] = {"nDCG@10": ndcg(sub_run, sub_qrels), "queries": len(sample)}
    save()
    store = LabelStore(args.store)

    def measure(spec: str, qs, r, judged, where: str, **overrides) -> None:
        name = spec + (f" ({overrides['fusion']})" if "fusion" in overrides else "")
        teacher = load_teacher(spec, **overrides)
        t0 = time.perf_counter()
        reranked = label_run(teacher, qs, corpus, r, depth=args.depth, store=store)
        secs = time.perf_counter() - t0
        results[where][name] = {
            "nDCG@10": ndcg(reranked, judged),
            "queries": len(qs),
            "seconds": round(secs, 1),
        }
        print(
            f"{where:12s} {name:40s} nDCG@10={results[where][name]['nDCG@10']:.4f}  ({secs:.0f}s)", flush=True
        )
        save()

    encoders = [] if args.skip_encoders else ["minilm", "bm25+minilm"]
    for spec in encoders:
        measure(spec, queries, run, qrels, "all_queries")
    for fusion in ("zscore", "rrf") if encoders else ():
        measure("bm25+minilm", queries, run, qrels, "all_queries", fusion=fusion)
    for spec in encoders:
        measure(spec, sub_q, sub_run, sub_qrels, "sample")

    if args.llm:
        from rankdistill.llm import load_llm

        llm = load_llm(args.llm)
        results["settings"]["llm_identity"] = llm.identity()
        for kind in [t for t in args.llm_teachers.split(",") if t]:
            teacher = load_teacher({"type": kind, "llm": llm})
            measure_teacher = teacher  # the same LLM object serves every teacher
            t0 = time.perf_counter()
            reranked = label_run(measure_teacher, sub_q, corpus, sub_run, depth=args.depth, store=store)
            secs = time.perf_counter() - t0
            name = f"{kind}:{args.llm}"
            results["sample"][name] = {
                "nDCG@10": ndcg(reranked, sub_qrels),
                "queries": len(sample),
                "seconds": round(secs, 1),
            }
            print(
                f"sample       {name:40s} nDCG@10={results['sample'][name]['nDCG@10']:.4f}  ({secs:.0f}s)",
                flush=True,
            )
            save()
            # the weak LLM fused with BM25 (its labels are read back from the store, not recomputed)
            from rankdistill.teachers import EnsembleTeacher, FirstStageTeacher

            ens = EnsembleTeacher([FirstStageTeacher(), teacher])
            reranked = label_run(ens, sub_q, corpus, sub_run, depth=args.depth, store=store)
            results["sample"][f"bm25+{name}"] = {"nDCG@10": ndcg(reranked, sub_qrels), "queries": len(sample)}
            save()
        llm.close()
    if args.merge:
        other = json.loads(Path(args.merge).read_text())
        for name, row in other.get("sample", {}).items():
            results["sample"].setdefault(name, row)
        for key in ("llm_identity",):
            if key in other.get("settings", {}):
                results["settings"][key] = other["settings"][key]
        results["merged_from"] = other.get("command")
        save()
    store.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
