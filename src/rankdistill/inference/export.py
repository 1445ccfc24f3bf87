"""ONNX export of an encoder student, and the measurement that tells `Reranker` which backend to use.

`export_onnx(model_dir)` writes `model_dir/onnx/model.onnx` (fp32), optionally `model_int8.onnx`
(dynamic int8 quantisation of the weights), then times every backend on the same pairs on this
machine and records the result in `model_dir/onnx/backend.json`. `Reranker.load(backend="auto")`
reads that file and uses the fastest backend whose scores stay within `tolerance` of fp32 torch,
so ONNX is used only where it is both faster and faithful; int8 is then usually left to an explicit
`backend="onnx-int8"`, since quantisation moves scores by more than the default tolerance.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rankdistill.errors import RankdistillError, require
from rankdistill.hardware import cpu_info
from rankdistill.inference.backends import BACKEND_CHOICE, FP32_FILE, INT8_FILE, ONNX_DIR
from rankdistill.students.metadata import STUDENT_TYPES, read_metadata

log = logging.getLogger(__name__)


def _export_graph(model_dir: Path, out_file: Path, opset: int) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    # The "eager" attention traces to plain ops every ONNX Runtime version runs.
    if hasattr(model, "set_attn_implementation"):
        with contextlib.suppress(Exception):  # older models without the switch export as they are
            model.set_attn_implementation("eager")
    sample = tokenizer(
        ["a short query", "another query"],
        ["a document", "a somewhat longer document text"],
        padding=True,
        return_tensors="pt",
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    args = tuple(sample[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}

    class _Logits(torch.nn.Module):
        # Positional inputs in a fixed order and a single tensor out: what the exporter handles best.
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs, strict=True))).logits

    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter warns that it is legacy; it handles these models fully and needs no
        # onnxscript, while the dynamo exporter would
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            _Logits(model),
            args,
            str(out_file),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _calibration_pairs(tokenizer: Any, n: int = 96, seed: int = 0) -> list[tuple[str, str]]:
    """Pairs of realistic lengths (queries of 4-12 words, documents of 30-200) made of vocabulary words;
    used to time the backends and compare their scores when no real pairs are given."""
    rng = random.Random(seed)
    vocab = [w for w in tokenizer.get_vocab() if w.isalpha() and len(w) > 2 and w.isascii()]
    vocab.sort()
    if not vocab:
        raise RankdistillError("the tokenizer vocabulary has no plain words to build calibration pairs from")
    pairs = []
    for _ in range(n):
        q = " ".join(rng.choices(vocab, k=rng.randint(4, 12)))
        d = " ".join(rng.choices(vocab, k=rng.randint(30, 200)))
        pairs.append((q, d))
    return pairs


def measure_backends(
    model_dir: str | Path,
    backends: list[str],
    pairs: list[tuple[str, str]] | None = None,
    threads: int | None = None,
    repeats: int = 2,
    n_pairs: int = 96,
) -> dict[str, dict[str, Any]]:
    """Pairs per second of each backend on the same pairs, and the largest score difference to
    fp32 torch (the reference every backend is compared with)."""
    from rankdistill.inference.reranker import Reranker

    # on the CPU: the choice recorded is the CPU's (`measured_backend` uses it only there)
    reference = Reranker.load(model_dir, backend="torch", device="cpu", dtype="fp32", threads=threads)
    pairs = pairs or _calibration_pairs(reference.tokenizer, n=n_pairs)
    ref_scores = np.asarray(reference.score(pairs))
    out: dict[str, dict[str, Any]] = {}
    for name in backends:
        # score() speed only: no fp32 copy for rerank's top-k rescoring
        rr = Reranker.load(model_dir, backend=name, device="cpu", threads=threads, rescore=False)
        rr.score(pairs[:16])  # warm-up: first calls allocate and pick kernels
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            scores = np.asarray(rr.score(pairs))
            best = min(best, time.perf_counter() - t0)
        out[name] = {
            "pairs_per_s": round(len(pairs) / best, 2),
            "dtype": rr.info().get("dtype"),
            "max_abs_diff_vs_torch_fp32": round(float(np.max(np.abs(scores - ref_scores))), 5),
        }
        log.info("%s: %.1f pairs/s", name, out[name]["pairs_per_s"])
    return out


def export_onnx(
    model_dir: str | Path,
    *,
    int8: bool = False,
    opset: int = 17,
    measure: bool = True,
    pairs: list[tuple[str, str]] | None = None,
    threads: int | None = None,
    tolerance: float = 0.02,
    n_pairs: int = 96,
) -> dict[str, Any]:
    """Export an encoder student / cross-encoder folder to `model_dir/onnx/` and record which backend is
    fastest here (see the module docstring). Returns what was written to `backend.json`."""
    require("onnx", "onnx", "ONNX export")
    require("onnxruntime", "onnx", "ONNX export")

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise RankdistillError(f"{model_dir}: not a model folder (no config.json)")
    student_type = read_metadata(model_dir).get("student_type", "encoder")
    if not STUDENT_TYPES.info(student_type).get("cross_encoder"):
        raise RankdistillError(
            f"{model_dir}: ONNX export supports encoder students only; this is a {student_type} student"
        )
    out_dir = model_dir / ONNX_DIR
    out_dir.mkdir(exist_ok=True)
    fp32 = out_dir / FP32_FILE
    _export_graph(model_dir, fp32, opset)
    files = [FP32_FILE]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(out_dir / INT8_FILE), weight_type=QuantType.QInt8)
        files.append(INT8_FILE)
    elif (out_dir / INT8_FILE).exists():
        (out_dir / INT8_FILE).unlink()  # a stale int8 file from an older export would not match the weights
    record: dict[str, Any] = {
        "files": files,
        "opset": opset,
        # the choice holds only for the CPU it was measured on (see `backends.measured_backend`)
        "cpu": cpu_info().summary(),
        "cpu_count": os.cpu_count(),
        "tolerance": tolerance,
        "auto": "torch",
    }
    if measure:
        names = ["torch", "onnx"] + (["onnx-int8"] if int8 else [])
        measured = measure_backends(model_dir, names, pairs=pairs, threads=threads, n_pairs=n_pairs)
        record["measured"] = measured
        eligible = [
            n for n in names if n == "torch" or measured[n]["max_abs_diff_vs_torch_fp32"] <= tolerance
        ]
        record["auto"] = max(eligible, key=lambda n: measured[n]["pairs_per_s"])
    (out_dir / BACKEND_CHOICE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
