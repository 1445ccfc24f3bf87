"""GPU check: the quick-start student trained with the library's own trainer on a GPU, then scored there.

What it does, all through rankdistill's own code (no loop of its own), on one device:
1. scifact (from $RANKDISTILL_DATA_DIR, else ../shared/data): BM25 top-`depth` of `--train-queries`
   training queries, labelled by the quick-start teacher `bm25+minilm` (its MiniLM on the device) through
   a label store (resumable), sampled into rows as the quick start does (the teacher's top 3 + 5 others);
2. trains the quick-start student (configs/quickstart.yaml: MiniLM-L6 cross-encoder, max length 128,
   MarginMSE + the Term Control Layer, batch 16, lr 2e-4) with `rankdistill.training.run.train_from_config`
   on the device;
3. loads it with `Reranker.load(device=...)`, reranks BM25's top 30 of the scifact test queries, and
   measures pairs per second (after a warm-up) at two batch sizes and nDCG@10 with ir_measures, beside
   BM25's nDCG@10 on the same candidates.

Writes benchmarks/results/gpu_check.json with the GPU's name, torch's and CUDA's versions. It stops with a
clear message when torch sees no CUDA device, unless `--allow-cpu` (then it runs the same code path on
the CPU and writes runs/gpu_check/gpu_check_cpu.json, not a result). `--tiny` shrinks every size so that
the CPU path takes about a minute:

    benchmarks/gpu_check.sh                        # on a GPU machine, under 10 minutes
    benchmarks/gpu_check.sh --allow-cpu --tiny     # the same path on a CPU, to check the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))


def environment() -> dict:
    """What this machine has, printed first (and kept in the result)."""
    import torch

    found = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        import onnxruntime

        found["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        found["onnxruntime_providers"] = None
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU when torch sees no GPU")
    ap.add_argument(
        "--tiny", action="store_true", help="tiny sizes: the same path in about a minute on a CPU"
    )
    ap.add_argument("--train-queries", type=int, default=None, help="training queries labelled (default 100)")
    ap.add_argument("--eval-queries", type=int, default=None, help="test queries evaluated (default all 300)")
    ap.add_argument("--depth", type=int, default=30, help="BM25 candidates labelled and reranked per query")
    ap.add_argument("--work-dir", type=Path, default=REPO / "runs" / "gpu_check")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default: see the module docstring)")
    args = ap.parse_args()
    t_start = time.perf_counter()

    found = environment()
    print("gpu_check: " + json.dumps(found), flush=True)
    if not found["cuda_available"] and not args.allow_cpu:
        print(
            "gpu_check: torch.cuda.is_available() is False "
            + (
                f"(torch {found['torch']} is built for CUDA {found['torch_cuda_build']}: no GPU or driver is "
                "visible to it)"
                if found["torch_cuda_build"]
                else f"(torch {found['torch']} is a CPU-only build: install a CUDA build of torch)"
            )
            + "; nothing was run. Pass --allow-cpu --tiny to check the script on a CPU.",
            file=sys.stderr,
        )
        return 2

    import torch

    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.types import Qrels, Run
    from rankdistill.evaluation import evaluate
    from rankdistill.hardware import device_summary, resolve_device
    from rankdistill.inference.reranker import Reranker
    from rankdistill.labels.pointwise import label_run
    from rankdistill.retrieval.bm25 import BM25Retriever
    from rankdistill.teachers import BEST_OFFLINE, load_teacher
    from rankdistill.training.config import parse_config
    from rankdistill.training.data import pairs_from_teacher_run, write_pairs_jsonl
    from rankdistill.training.run import train_from_config

    device = resolve_device("cuda" if found["cuda_available"] else "cpu", "gpu_check device")
    where = device_summary(device)
    print(f"gpu_check: running on {json.dumps(where)}", flush=True)
    tiny = args.tiny
    n_train = args.train_queries or (12 if tiny else 100)
    n_eval = args.eval_queries or (8 if tiny else None)
    depth = min(args.depth, 10) if tiny else args.depth
    work = args.work_dir / ("tiny" if tiny else "full") / device.type
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or (
        REPO / "benchmarks" / "results" / "gpu_check.json"
        if device.type == "cuda"
        else args.work_dir / "gpu_check_cpu.json"
    )
    timings: dict[str, float] = {}

    # 1. teacher labels of the training queries' BM25 candidates, through a label store
    t0 = time.perf_counter()
    ds = load_dataset("scifact", data_dir=DATA_DIR, download=False)
    bm25 = BM25Retriever.from_corpus(ds.corpus)
    train_queries = ds.split_queries("train")
    train_queries = train_queries.subset(sorted(train_queries)[:n_train])
    train_run = bm25.retrieve(train_queries, k=depth)
    teacher = load_teacher(BEST_OFFLINE, device=str(device))
    teacher_run = label_run(
        teacher,
        train_queries,
        ds.corpus,
        train_run,
        depth=depth,
        store=work / "labels.sqlite",
        show_progress=False,
    )
    teacher.close()
    documents = {d: ds.corpus[d].full_text for q in teacher_run.query_ids for d in teacher_run[q]}
    rows = pairs_from_teacher_run(train_queries, teacher_run, documents, per_query=8, top=3, seed=13)
    write_pairs_jsonl(work / "rows.jsonl", rows)
    timings["label_s"] = time.perf_counter() - t0
    print(f"gpu_check: {len(rows)} teacher-labelled rows of {len(train_queries)} queries", flush=True)

    # 2. the quick-start student, trained by the library's trainer on the device
    cfg = parse_config(
        {
            "output_dir": str(work / "train"),
            "seed": 13,
            "device": str(device),
            "student": {"base": "minilm", "max_length": 128, **({"num_layers": 2} if tiny else {})},
            "losses": [{"name": "margin_mse", "weight": 1.0}, {"name": "term_control", "weight": 0.5}],
            "phases": [{"name": "train_queries", "data": {"jsonl": str(work / "rows.jsonl")}}],
            "training": {
                "batch_size": 16,
                "learning_rate": 2.0e-4,
                "warmup_ratio": 0.1,
                "epochs": 1.5,
                "save_steps": 10_000,
                "logging_steps": 10,
                "resume": False,
            },
        },
        "gpu_check",
    )
    train_dir = work / "train"
    if train_dir.exists():  # a fresh training each time: the timing is part of the check
        import shutil

        shutil.rmtree(train_dir)
    t0 = time.perf_counter()
    final = train_from_config(cfg)
    timings["train_s"] = time.perf_counter() - t0
    if device.type == "cuda":
        timings["train_peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    history = json.loads((work / "train" / "train_queries" / "phase_done.json").read_text(encoding="utf-8"))
    print(f"gpu_check: trained {history['steps']} steps in {timings['train_s']:.1f}s -> {final}", flush=True)

    # 3. rerank BM25's top-`depth` of the test queries on the device; nDCG@10 beside BM25's
    test_queries = ds.split_queries("test")
    qrels = ds.qrels("test")
    qids = sorted(q for q in test_queries if q in qrels)
    if n_eval:
        qids = qids[:n_eval]
    test_queries = test_queries.subset(qids)
    qrels = Qrels({q: qrels[q] for q in qids}, name=qrels.name)  # only the queries evaluated count
    candidates = bm25.retrieve(test_queries, k=depth)
    keys = [(q, d) for q in candidates.query_ids for d, _ in candidates.ranked(q)]
    pairs = [(test_queries[q], ds.corpus[d].full_text) for q, d in keys]
    reranker = Reranker.load(final, device=device)
    info = reranker.info()
    speed = {}
    for batch_size in (64, 256):
        reranker.score(pairs[: min(len(pairs), batch_size * 2)], batch_size=batch_size)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        scores = reranker.score(pairs, batch_size=batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        speed[str(batch_size)] = round(len(pairs) / (time.perf_counter() - t0), 1)
    student_run = Run({}, name="student")
    for (q, d), s in zip(keys, scores, strict=True):
        student_run.scores.setdefault(q, {})[d] = float(s)
    measures = ["nDCG@10", "RR@10"]
    bm25_metrics = evaluate(candidates, qrels, measures)
    student_metrics = evaluate(student_run, qrels, measures)

    result = {
        "check": "gpu_check" + (" --tiny" if tiny else ""),
        "device": where,
        "gpu": where.get("name") if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "environment": found,
        "train": {
            "queries": len(train_queries),
            "rows": len(rows),
            "teacher": BEST_OFFLINE,
            "steps": history["steps"],
            "train_loss": history.get("train_loss"),
            "seconds": round(timings["train_s"], 2),
            "rows_per_s_with_setup": round(len(rows) * 1.5 / timings["train_s"], 1),
            **(
                {"peak_gpu_gib": round(timings["train_peak_gpu_gib"], 2)}
                if "train_peak_gpu_gib" in timings
                else {}
            ),
        },
        "label_seconds": round(timings["label_s"], 2),
        "evaluate": {
            "queries": len(qids),
            "candidates": f"BM25 top-{depth} of scifact test",
            "pairs": len(pairs),
            "student": {
                **{m: round(float(student_metrics[m]), 4) for m in measures},
                "pairs_per_s_by_batch_size": speed,
                "backend": info["backend"],
                "device": info["device"],
                "dtype": info["dtype"],
            },
            "bm25": {m: round(float(bm25_metrics[m]), 4) for m in measures},
        },
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["evaluate"], indent=1))
    print(f"gpu_check: wrote {out} in {result['seconds']}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
