"""The engines a `Reranker` runs a model with, each called the same way: token ids in, logits out.

- `TorchBackend`: a transformers sequence-classification model in fp32, bf16 or fp16 on CPU or GPU;
- `OnnxBackend`: the model exported by `rankdistill export --onnx`, run by ONNX Runtime (fp32 or int8),
  on CUDA (CUDAExecutionProvider) when the device is a CUDA GPU and the installed onnxruntime has that
  provider, else on the CPU (`onnx_providers`).

Both take a device resolved by `rankdistill.hardware.resolve_device`. `measured_backend` reads which of
them `rankdistill export --onnx` measured fastest for a model folder, and trusts it only on the CPU it was
measured on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from rankdistill.errors import RankdistillError, require
from rankdistill.hardware import cpu_info, pick_dtype, resolve_device
from rankdistill.students.encoder import TorchForward

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
BACKEND_CHOICE = "backend.json"  # written by `rankdistill export --onnx`: measured speed of each backend


class TorchBackend:
    """A transformers sequence-classification model on CPU or GPU, in the chosen dtype."""

    name = "torch"

    def __init__(self, path: str, device: Any, dtype: str | None):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.torch = torch
        self.device = resolve_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        if self.dtype != torch.float32:
            head_in_fp32(model)
        self.num_labels = int(model.config.num_labels)
        self._forward = TorchForward(self.model, self.device)
        self.dtype_name = str(self.dtype).replace("torch.", "")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None):
        return self._forward(input_ids, attention_mask, token_type_ids)


def head_in_fp32(model: Any) -> None:
    """Run the pooler and classification head in fp32 on top of a bf16/fp16 encoder: they are a tiny share
    of the compute, and a large head weight would otherwise amplify the rounding of its bf16 input."""
    import torch

    def to_fp32(module, args):
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    base = getattr(model, "base_model", None)
    heads = [getattr(base, "pooler", None)] + [
        getattr(model, n, None) for n in ("classifier", "score", "head")
    ]
    for head in heads:
        if isinstance(head, torch.nn.Module) and head is not base:
            head.float()
            head.register_forward_pre_hook(to_fp32)


CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def onnx_providers(device: Any, available: list[str]) -> list[Any]:
    """ONNX Runtime execution providers for a resolved device, given the providers the installed
    onnxruntime has (`onnxruntime.get_available_providers()`): CUDA first (on the device's index) when the
    device is a CUDA GPU and the CUDA provider is there, the CPU provider always (ops CUDA lacks fall back
    to it); the CPU provider alone otherwise."""
    kind, _, index = str(device).partition(":")
    if kind == "cuda" and CUDA_PROVIDER in available:
        return [(CUDA_PROVIDER, {"device_id": int(index or 0)}), CPU_PROVIDER]
    return [CPU_PROVIDER]


class OnnxBackend:
    """An exported model run by ONNX Runtime (see `onnx_providers`); same call contract as the torch
    backend."""

    def __init__(
        self, model_file: str | Path, num_labels: int, threads: int | None = None, device: Any = "cpu"
    ):
        ort = require("onnxruntime", "onnx", "The ONNX Runtime backend")
        model_file = Path(model_file)
        if not model_file.is_file():
            raise RankdistillError(f"{model_file}: no ONNX model; create it with `rankdistill export --onnx`")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        self.device = resolve_device(device)
        providers = onnx_providers(self.device, ort.get_available_providers())
        if self.device.type != "cpu" and providers == [CPU_PROVIDER]:
            log.warning(
                "%s: the installed onnxruntime has no %s (it has %s); ONNX runs on the CPU, not on %s. "
                "Install onnxruntime-gpu, or use the torch backend on the GPU",
                model_file,
                CUDA_PROVIDER,
                ", ".join(ort.get_available_providers()),
                self.device,
            )
        self.session = ort.InferenceSession(str(model_file), opts, providers=providers)
        self.provider = self.session.get_providers()[0]
        if self.provider != CUDA_PROVIDER:
            self.device = resolve_device("cpu")  # where it really runs
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.num_labels = int(num_labels)
        self.threads = threads
        self.int8 = model_file.name == INT8_FILE
        self.name = "onnx-int8" if self.int8 else "onnx"
        self.dtype_name = "int8" if self.int8 else "float32"
        self.model_file = model_file

    @classmethod
    def from_model_dir(
        cls, model_dir: str | Path, int8: bool = False, threads: int | None = None, device: Any = "cpu"
    ) -> OnnxBackend:
        model_dir = Path(model_dir)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        return cls(
            model_dir / ONNX_DIR / (INT8_FILE if int8 else FP32_FILE),
            config.get("num_labels", 1),
            threads,
            device,
        )

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None):
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = (
                token_type_ids if token_type_ids is not None else np.zeros_like(input_ids)
            )
        return self.session.run(["logits"], feeds)[0].astype(np.float32, copy=False)


def measured_backend(path: str, device: Any) -> str:
    """The backend `rankdistill export --onnx` measured fastest here (torch if none was exported, on a
    device other than the CPU, where the measurement was made, or when onnxruntime is not installed)."""
    choice = Path(path) / ONNX_DIR / BACKEND_CHOICE
    if str(device) != "cpu" or not choice.is_file():
        return "torch"
    try:
        data = json.loads(choice.read_text(encoding="utf-8"))
        best = data.get("auto", "torch")
    except (OSError, json.JSONDecodeError):
        return "torch"
    if best.startswith("onnx"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch"
        here = cpu_info().summary()
        if data.get("cpu") != here or data.get("cpu_count") != os.cpu_count():
            # a speed ranking of backends does not carry over to another CPU (bf16, VNNI, core count)
            log.warning(
                "%s: the backend choice (%s) was measured on another CPU (%s); using torch here. "
                "Run `rankdistill export --onnx` on this machine to measure it here (%s)",
                choice,
                best,
                data.get("cpu"),
                here.get("model"),
            )
            return "torch"
    return best
