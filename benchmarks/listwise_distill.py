r"""Listwise vs pointwise vs both, for the encoder student, through `rankdistill run` itself.

    nice .venv/bin/python benchmarks/listwise_distill.py --suite choose     # the loss, on nfcorpus *dev*
    nice .venv/bin/python benchmarks/listwise_distill.py --suite scifact --loss ranknet
    nice .venv/bin/python benchmarks/listwise_distill.py --suite nfcorpus --loss ranknet
    nice .venv/bin/python benchmarks/listwise_distill.py --suite gemma    # configs/listwise.yaml + sliding window

Every variant of a suite is one pipeline run (its own run folder under --work) on the same training
queries, the same BM25 candidates and the same test queries, so BM25, the teacher and each student are
compared on the same candidates. The runs share one label store (a symlink), so the pointwise teacher and
the LLM label each (query, list) once. Variants:

- pointwise: InRanker's labels (teacher scores, per query the top 3 + 17 random of the BM25 top 30),
  MarginMSE (the quick start's loss);
- listwise-teacher: permutations of the same top-10 + bottom-10 lists ordered by the pointwise teacher
  (bm25+minilm), trained with the listwise loss (`--loss`);
- both: those rank targets mixed half and half with the teacher's min-max scores;
- gemma-one-pass: configs/listwise.yaml as it is (Gemma 3 270M's permutations, RRADistill's one pass: one
  call a query over the top 10 + bottom 10 of the BM25 top 30, left-out documents as hard negatives);
- gemma-sliding: the same with RankGPT's sliding window (window 10, step 5) over the BM25 top 20.

`--suite choose` picks the listwise loss on nfcorpus's *dev* queries (never the test queries reported).
Results: benchmarks/results/listwise_distill_<suite>.json (nDCG@10, RR@10, R@100, label cost, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_common import DATA_DIR, machine_info  # noqa: E402


def base_config(dataset: str, eval_split: str, train_queries: int, seed: int) -> dict:
    return {
        "seed": seed,
        "threads": 2,
        "dataset": {"name": dataset, "data_dir": str(DATA_DIR), "eval_split": eval_split},
        "bm25": {"k": 100},
        "train_queries": {"split": "train", "max_queries": train_queries},
        "queries": {"method": "none"},
        "labels": {"teacher": "bm25+minilm", "depth": 30},
        "train": {
            # all 6 layers: the first 2 alone stay at the initial plateau (README, GPU sweep: 0.044 at 48k pairs)
            "student": {"base": "minilm", "max_length": 128},
            "training": {
                "batch_size": 20,
                "learning_rate": 2.0e-4,
                "warmup_ratio": 0.1,
                "epochs": 2,
                "save_steps": 200,
            },
        },
        "evaluate": {
            "measures": ["nDCG@10", "RR@10", "R@100"],
            "depth": 30,
            "batch_size": 64,
            "fuse_student": None,
        },
    }


LISTS = {"top_k": 10, "bottom_k": 10}


def variants(suite: str, loss: str) -> dict[str, dict]:
    pointwise = {"labels": {"per_query": 20, "top": 3}, "train": {"losses": [{"name": "margin_mse"}]}}
    teacher = {
        "labels": {"kind": "listwise", "listwise": {"ranker": "teacher", **LISTS}},
        "train": {"losses": [{"name": loss}]},
    }
    both = {
        "labels": {"kind": "listwise", "listwise": {"ranker": "teacher", **LISTS}, "pointwise_weight": 0.5},
        "train": {"losses": [{"name": loss}]},
    }
    if suite == "choose":
        return {
            f"listwise-teacher-{name}": {**teacher, "train": {"losses": [{"name": name}]}}
            for name in ("ranknet", "listnet", "plistmle")
        }
    if suite in ("scifact", "nfcorpus"):
        return {"pointwise": pointwise, "listwise-teacher": teacher, "both": both}
    # configs/listwise.yaml as it is (the base of this suite), and RankGPT's sliding window over its lists
    return {
        "gemma-one-pass": {},
        "gemma-sliding": {
            "labels": {
                "depth": 20,
                "listwise": {"method": "sliding_window", "window": 10, "step": 5},
            },
        },
    }


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=("choose", "scifact", "nfcorpus", "gemma"), required=True)
    ap.add_argument("--loss", default="ranknet", help="the listwise loss (pick it with --suite choose)")
    ap.add_argument("--train-queries", type=int, default=150, help="(gemma: default the config's own)")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--eval-queries", type=int, default=None, help="at most this many evaluation queries")
    ap.add_argument("--only", nargs="*", help="run only these variants")
    ap.add_argument(
        "--tag", default="", help="suffix of the results file and run folders (e.g. a smaller rerun)"
    )
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "listwise_distill")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()

    from rankdistill.pipeline.config import parse_config
    from rankdistill.pipeline.stages import run_pipeline

    dataset, split = {
        "choose": ("nfcorpus", "dev"),
        "scifact": ("scifact", "test"),
        "nfcorpus": ("nfcorpus", "test"),
    }.get(args.suite, ("scifact", "test"))
    if args.suite == "gemma":
        from rankdistill.pipeline.config import read_config_data

        base = read_config_data(ROOT / "configs" / "listwise.yaml")
        base["dataset"]["data_dir"] = str(DATA_DIR)
        if args.train_queries != 150:  # a smaller comparison than the config's own run
            base["train_queries"]["max_queries"] = args.train_queries
    else:
        base = base_config(dataset, split, args.train_queries, args.seed)
        base["train"]["training"]["epochs"] = args.epochs
    if args.eval_queries:
        base["dataset"]["max_eval_queries"] = args.eval_queries
    store = args.work / f"{dataset}-labels.sqlite"
    store.parent.mkdir(parents=True, exist_ok=True)
    suite = args.suite + (f"_{args.tag}" if args.tag else "")
    out_path = ROOT / "benchmarks" / "results" / f"listwise_distill_{suite}.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results.update(
        {
            "command": "benchmarks/listwise_distill.py " + " ".join(sys.argv[1:]),
            "machine": machine_info(),
            "dataset": dataset,
            "eval_split": split,
            "train_queries": args.train_queries,
            "base_config": base,
        }
    )
    results.setdefault("variants", {})
    for name, over in variants(args.suite, args.loss).items():
        if args.only and name not in args.only:
            continue
        cfg = parse_config(merge({**base, "name": f"{suite}-{name}"}, over))
        run_dir = args.work / f"{suite}-{name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        link = run_dir / "labels.sqlite"
        if not link.exists():
            os.symlink(store.resolve(), link)
        t0 = time.perf_counter()
        stages = {r.name: r for r in run_pipeline(cfg, run_dir=run_dir)}
        metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
        systems = {s["role"]: {k: round(v, 4) for k, v in s["metrics"].items()} for s in metrics["systems"]}
        labels = stages["labels"].summary or json.loads(
            (run_dir / "labels" / "manifest.json").read_text()
        ).get("summary", {})
        results["variants"][name] = {
            "overrides": over,
            "systems": systems,
            "labels": labels.get("train_queries", labels),
            "train_seconds": (stages["train"].summary or {}).get("seconds"),
            "wall_seconds": round(time.perf_counter() - t0, 1),
        }
        print(name, json.dumps(systems), flush=True)
        out_path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
