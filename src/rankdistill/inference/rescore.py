"""Exact top-k from reduced-precision scores: rescore in fp32 only what could be in the top-k.

Every pair is scored in bf16 first. If every bf16 score is within e of its fp32 value, the fp32 top-k
lies among the documents whose bf16 score is within 2e of the k-th best bf16 score (the fp32 k-th best is
at least the bf16 k-th best minus e). So only those are rescored in fp32, and the top-k then carries fp32
scores in fp32 order. The margin starts at the caller's (about 4x the largest bf16 error measured on
scifact); the error observed on the rescored documents checks it, and when it says the margin was too
small the margin is widened and the newly admitted documents rescored too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def rescore_top_k(
    scores: list[float],
    sizes: list[int],
    ks: list[int],
    exact: Callable[[list[int]], list[float]],
    *,
    margin: float,
    stats: dict[str, Any] | None = None,
    max_rounds: int = 4,
) -> list[float]:
    """`scores` (requests laid end to end, `sizes[i]` documents each) with `exact(indices)` scores for
    every document that could be in its request's top `ks[i]`. `stats` (optional) accumulates "pairs",
    "rescored" and "widened" counts."""
    approx = np.asarray(scores, dtype=np.float64)
    out = approx.copy()
    done = np.zeros(len(approx), dtype=bool)
    bounds, start = [], 0
    for n, k in zip(sizes, ks, strict=True):
        s = approx[start : start + n]
        bounds.append((start, n, np.sort(s)[::-1][min(k, n) - 1] if n else 0.0))
        start += n
    stats = stats if stats is not None else {}
    for _ in range(max_rounds):
        todo = np.zeros(len(approx), dtype=bool)
        for start, n, kth in bounds:
            todo[start : start + n] = approx[start : start + n] >= kth - margin
        todo &= ~done
        if not todo.any():
            break
        idx = np.flatnonzero(todo)
        out[idx] = exact(idx.tolist())
        done[idx] = True
        stats["rescored"] = stats.get("rescored", 0) + len(idx)
        err = float(np.max(np.abs(out[done] - approx[done])))
        if 2 * err <= margin:
            break
        margin = 4 * err
        stats["widened"] = stats.get("widened", 0) + 1
    stats["pairs"] = stats.get("pairs", 0) + len(approx)
    return out.tolist()
