"""Small helpers shared by every layer: hashing, seeding, progress bars, batching.

What depends on the machine (CPU features, dtypes, threads) lives in `rankdistill.hardware`."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
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
