"""Reranker speed and fidelity: the same weights scored by `rankdistill.Reranker`, by
`sentence_transformers.CrossEncoder.predict` (its defaults: batch 32, fp32, length-sorted) and by plain
transformers fp32 (batches of 32 in input order), in one run, on real scifact pairs (query + BM25 top-100).

Each method runs in its own worker process (so its peak memory is its own) with the same thread count;
the parent sends the queries round-robin, one at a time, rotating which method goes first, so load from
other processes on the machine falls on every method alike. Reported per method: pairs/s, p50/p95
latency per query (all its k documents), peak RSS, the largest score difference to plain transformers
fp32 (the reference) and the share of queries whose top-10 is the same (same ids in the same order).

`reranker` is the default `Reranker.load(model)`: on a bf16 CPU it scores all pairs in bf16 and rescores
in fp32 the documents that could be in the top-10 (`rerank(query, docs)`); its fidelity is judged on
the top-10 (order and the largest score difference among the reference's top-10), which is what the
hybrid keeps exact, while documents below keep bf16 scores. `reranker-bf16` is pure bf16 (no rescoring).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reranker_speed.py --queries 20
    # JSON: benchmarks/results/reranker_speed.json

Scores are compared as logits (sentence-transformers is called with an identity activation; its default
sigmoid costs nothing and would only squash differences).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import build_probe_model, scifact_pairs  # noqa: E402

MARK = "@@bench "
DEFAULT_METHODS = ["reranker", "sentence-transformers", "transformers-fp32"]
ALL_METHODS = [*DEFAULT_METHODS, "reranker-bf16", "reranker-fp32", "reranker-onnx", "reranker-onnx-int8"]
REFERENCE = "transformers-fp32"


def _rss_mb() -> float:
    """Peak resident memory of this process (VmHWM). Not ru_maxrss: Linux carries that over from the
    parent across fork + exec, so every worker would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _emit(obj) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _scorer(method: str, model: str, max_length: int, threads: int, batch_size: int):
    """A function (query, [doc texts]) -> [float] for one method, a description of its setup and a
    function returning extra statistics (the hybrid's rescored share)."""
    import torch

    torch.set_num_threads(threads)
    if method.startswith("reranker"):
        from rankdistill.inference.reranker import Reranker

        backend = {"reranker-onnx": "onnx", "reranker-onnx-int8": "onnx-int8"}.get(method, "auto")
        dtype = {"reranker-fp32": "fp32", "reranker-bf16": "bf16"}.get(method, "auto")
        rr = Reranker.load(
            model, backend=backend, dtype=dtype, threads=threads, batch_size=batch_size, max_length=max_length
        )

        def rr_score(q, docs):
            # rerank (not score): the path where the default hybrid rescores the top-10 in fp32
            out = [0.0] * len(docs)
            for r in rr.rerank(q, docs):
                out[r.index] = r.score
            return out

        def stats():
            s = dict(rr.rescore_stats)
            return {**s, "rescored_share": round(s["rescored"] / s["pairs"], 4) if s["pairs"] else None}

        return rr_score, rr.info(), stats
    if method == "sentence-transformers":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(model, max_length=max_length, device="cpu")
        identity = torch.nn.Identity()

        def st_score(q, docs):
            out = np.asarray(ce.predict([(q, d) for d in docs], activation_fn=identity))
            return (out if out.ndim == 1 else out[:, 1] - out[:, 0]).tolist()

        return st_score, {"batch_size": 32, "dtype": "float32", "max_length": max_length}, dict
    if method == "transformers-fp32":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model)
        hf = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32).eval()

        @torch.inference_mode()
        def hf_score(q, docs):
            out = []
            for i in range(0, len(docs), 32):
                enc = tok(
                    [q] * len(docs[i : i + 32]),
                    docs[i : i + 32],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                logits = hf(**enc).logits.float()
                out += (logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]).tolist()
            return out

        return hf_score, {"batch_size": 32, "dtype": "float32", "max_length": max_length}, dict
    raise SystemExit(f"unknown method {method!r}; expected one of {ALL_METHODS}")


def worker(args) -> None:
    data = json.loads(Path(args.data).read_text())
    score, setup, stats = _scorer(args.worker, args.model, args.max_length, args.threads, args.batch_size)
    q, docs = data[0][1], [d for _, d in data[0][2]][:8]
    score(q, docs)  # warm-up: first calls allocate buffers and pick kernels
    warm = stats()
    _emit({"ready": True, "setup": setup, "rss_after_load_mb": round(_rss_mb(), 1)})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        _, q, docs = data[cmd["query"]]
        t0, c0 = time.perf_counter(), time.process_time()
        scores = score(q, [d for _, d in docs])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        _emit({"seconds": wall, "cpu_seconds": cpu, "scores": [float(s) for s in scores]})
    final = stats()
    if final:  # counted over the timed queries only
        final = {k: final[k] - warm.get(k, 0) for k in ("pairs", "rescored", "widened")}
        final["rescored_share"] = round(final["rescored"] / final["pairs"], 4) if final["pairs"] else None
    _emit({"peak_rss_mb": round(_rss_mb(), 1), "stats": final})


class Worker:
    def __init__(self, method: str, args, data_file: str):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            method,
            "--model",
            args.model,
            "--data",
            data_file,
            "--threads",
            str(args.threads),
            "--batch-size",
            str(args.batch_size),
            "--max-length",
            str(args.max_length),
        ]
        self.method = method
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        raise RuntimeError(f"worker {self.method} exited with {self.proc.wait()}")

    def send(self, obj) -> dict:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        return self.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="Student / cross-encoder folder (default: the MiniLM probe model).")
    ap.add_argument("--queries", type=int, default=20, help="scifact test queries (default 20).")
    ap.add_argument("--k", type=int, default=100, help="BM25 documents per query (default 100).")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {ALL_METHODS}")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=0, help="Tokens per pair (default: the model's).")
    ap.add_argument("--out", default=str(HERE / "results" / "reranker_speed.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        worker(args)
        return

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if REFERENCE not in methods:
        methods.append(REFERENCE)
    from rankdistill.data.datasets import cache_dir
    from rankdistill.inference.reranker import Reranker
    from rankdistill.students.metadata import read_metadata

    model_note = "given"
    if not args.model:
        args.model = str(build_probe_model(cache_dir() / "bench" / "minilm-scifact-probe"))
        model_note = read_metadata(args.model).get("note", "")
    if (
        any(m.startswith("reranker-onnx") for m in methods)
        and not (Path(args.model) / "onnx" / "model_int8.onnx").exists()
    ):
        from rankdistill.inference.export import export_onnx

        export_onnx(args.model, int8=True, measure=False)
    if not args.max_length:
        args.max_length = Reranker.load(args.model, backend="torch", dtype="fp32").max_length

    load_start = round(os.getloadavg()[0], 2)
    t_data = time.perf_counter()
    data = scifact_pairs(args.queries, k=args.k)
    print(
        f"{len(data)} queries, {sum(len(d) for _, _, d in data)} pairs ({time.perf_counter() - t_data:.1f}s)"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(data, fh)
        data_file = fh.name
    workers = {m: Worker(m, args, data_file) for m in methods}
    setups = {m: w.read() for m, w in workers.items()}  # all loaded before any timing starts
    results = {m: {"seconds": [], "cpu_seconds": [], "scores": []} for m in methods}
    t_run = time.perf_counter()
    for i in range(len(data)):
        order = methods[i % len(methods) :] + methods[: i % len(methods)]  # rotate who goes first
        for m in order:
            r = workers[m].send({"query": i})
            results[m]["seconds"].append(r["seconds"])
            results[m]["cpu_seconds"].append(r["cpu_seconds"])
            results[m]["scores"].append(r["scores"])
        if (i + 1) % 5 == 0 or i + 1 == len(data):
            print(f"  {i + 1}/{len(data)} queries ({time.perf_counter() - t_run:.0f}s)", flush=True)
    peaks = {m: w.send({"quit": True}) for m, w in workers.items()}
    for w in workers.values():
        w.proc.wait(timeout=60)
    os.unlink(data_file)

    n_pairs = sum(len(d) for _, _, d in data)
    ref = results[REFERENCE]["scores"]
    doc_ids = [[d for d, _ in docs] for _, _, docs in data]

    def top10_idx(scores):
        return sorted(range(len(scores)), key=lambda j: (-scores[j], j))[:10]

    def top10(scores, ids):
        order = sorted(range(len(ids)), key=lambda j: (-scores[j], j))[:10]
        return [ids[j] for j in order]

    report = {}
    for m in methods:
        secs = np.asarray(results[m]["seconds"])
        diffs = [
            np.abs(np.asarray(a) - np.asarray(b)).max()
            for a, b in zip(results[m]["scores"], ref, strict=True)
        ]
        same_top10 = [
            top10(a, ids) == top10(b, ids)
            for a, b, ids in zip(results[m]["scores"], ref, doc_ids, strict=True)
        ]
        same_set = [
            set(top10(a, ids)) == set(top10(b, ids))
            for a, b, ids in zip(results[m]["scores"], ref, doc_ids, strict=True)
        ]
        top_diffs = [
            max(abs(a[j] - b[j]) for j in top10_idx(b))
            for a, b in zip(results[m]["scores"], ref, strict=True)
        ]
        report[m] = {
            "setup": setups[m]["setup"],
            "pairs_per_s": round(n_pairs / secs.sum(), 2),
            # CPU seconds of the worker (all its threads): robust to other load on a shared machine
            "pairs_per_cpu_s": round(n_pairs / sum(results[m]["cpu_seconds"]), 2),
            "latency_per_query_ms": {
                "p50": round(float(np.percentile(secs, 50)) * 1000, 1),
                "p95": round(float(np.percentile(secs, 95)) * 1000, 1),
            },
            "peak_rss_mb": peaks[m]["peak_rss_mb"],
            "rss_after_load_mb": setups[m]["rss_after_load_mb"],
            "max_abs_score_diff_vs_fp32": round(float(max(diffs)), 5),
            "max_abs_score_diff_top10_vs_fp32": round(float(max(top_diffs)), 5),
            "same_top10_order_share": round(float(np.mean(same_top10)), 4),
            "same_top10_set_share": round(float(np.mean(same_set)), 4),
        }
        if peaks[m].get("stats"):
            report[m]["rescore"] = peaks[m]["stats"]
    base = report.get("sentence-transformers", {}).get("pairs_per_s")
    for m in methods:
        if base:
            report[m]["speedup_vs_sentence_transformers"] = round(report[m]["pairs_per_s"] / base, 2)
            st_cpu = report["sentence-transformers"]["pairs_per_cpu_s"]
            report[m]["cpu_speedup_vs_sentence_transformers"] = round(
                report[m]["pairs_per_cpu_s"] / st_cpu, 2
            )
    import torch

    from rankdistill.hardware import cpu_supports_bf16

    out = {
        "benchmark": "reranker_speed",
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reranker_speed.py " + " ".join(sys.argv[1:]),
        "dataset": "scifact test",
        "queries": len(data),
        "pairs": n_pairs,
        "k": args.k,
        "model": {
            "path": args.model if model_note == "given" else "minilm-scifact-probe",
            "note": model_note,
        },
        "max_length": args.max_length,
        "threads": args.threads,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpu_bf16": cpu_supports_bf16(),
            "load_avg_1m_at_start": load_start,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "torch": torch.__version__,
        },
        "reference": REFERENCE,
        "methods": report,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
