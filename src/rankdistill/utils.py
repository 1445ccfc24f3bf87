"""Small helpers shared by every layer: hashing, seeding, numeric precision, progress bars."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
from functools import lru_cache
from typing import Any


def stable_hash(obj: Any, length: int = 32) -> str:
    """Content hash of any JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (when installed) so runs repeat on the same machine."""
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 beats fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def pick_dtype(device: str = "cpu", dtype: str | None = "auto"):
    """Resolve a dtype name ('auto', 'bf16', 'fp16', 'fp32') to a torch dtype for the device."""
    import torch

    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if dtype not in (None, "auto"):
        try:
            return names[str(dtype).lower()]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of auto, {', '.join(names)}") from None
    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool | None = None,
):
    """A tqdm progress bar (rate and time left), silent when not on a terminal unless forced by env."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = os.environ.get("RANKDISTILL_PROGRESS", "auto") == "0"
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, mininterval=0.5
    )


def batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def split_sizes(items: list, sizes: list[int]) -> list[list]:
    """`items` cut into consecutive lists of the given sizes (e.g. flat scores back per request)."""
    out, start = [], 0
    for n in sizes:
        out.append(list(items[start : start + n]))
        start += n
    return out
