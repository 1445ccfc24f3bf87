"""GGUF files as transformers folders: the one converter for the HF LLM backend and the decoder student.

transformers can load a GGUF file itself (it dequantises every tensor and rebuilds the 262k-entry
tokenizer), but does so on every load, which takes minutes on a small CPU. `gguf_as_folder` does it once
and caches a plain folder (config, safetensors, tokenizer) keyed by the file's content and the dtype, so
the LLM teacher and the decoder student built from "the same" Gemma are the same model: the folder's
weights equal, tensor by tensor, what transformers' own GGUF loading gives (tests/test_gguf.py).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from rankdistill.data.datasets import cache_dir
from rankdistill.errors import require
from rankdistill.fingerprint import file_fingerprint

log = logging.getLogger(__name__)


def save_causal_lm(model: Any, folder: Path) -> None:
    """config + generation config + model.safetensors of a causal LM, also one loaded from GGUF (which
    `save_pretrained` refuses: it carries a quantizer record, though its weights are plain tensors)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    # the record would make transformers treat the folder as packed GGUF blocks again
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"))  # de-duplicates tied embeddings


def gguf_as_folder(gguf: str | Path, dtype: Any = None) -> Path:
    """The transformers folder converted once from a GGUF file, in `dtype` (default fp32: dequantised
    Q4 weights are exact in fp32), cached under the cache root."""
    torch = require("torch", "llm", "Loading GGUF files with transformers")
    transformers = require("transformers", "llm", "Loading GGUF files with transformers")
    gguf = Path(gguf)
    dtype = dtype or torch.float32
    tag = str(dtype).replace("torch.", "")
    out = cache_dir() / "gguf-hf" / f"{gguf.stem}-{file_fingerprint(gguf)}-{tag}"
    if (out / "model.safetensors").is_file():
        return out
    require("gguf", "llm", "Loading GGUF files with transformers")
    log.warning("converting %s to a transformers folder (once) at %s", gguf.name, out)
    kw = {"gguf_file": gguf.name}
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=dtype, **kw)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        save_causal_lm(model, tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)  # atomic: a reader sees no folder or a complete one
    except OSError:
        if not (out / "model.safetensors").is_file():  # not a concurrent conversion that won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
