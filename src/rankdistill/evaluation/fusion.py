"""Score fusion of runs: per-query min-max scaling, then a weighted sum (the teacher's `bm25+minilm`
fusion, applied to any runs, e.g. a student with its first stage)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from rankdistill.data.types import Run

K = TypeVar("K", bound=Hashable)


def minmax(scores: Mapping[K, float]) -> dict[K, float]:
    """Per-query min-max scaling to [0, 1]; all equal -> 0.5, the midpoint (no preference is not
    "all irrelevant"). The one min-max of rankdistill: fusion, ensemble teachers, training targets."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo <= 1e-12:
        return dict.fromkeys(scores, 0.5)
    return {d: (s - lo) / (hi - lo) for d, s in scores.items()}


def fuse_minmax(runs: Sequence[Run], weights: Sequence[float] | None = None, name: str | None = None) -> Run:
    """Per query, each run's scores min-max scaled to [0, 1], times its weight, summed. A document missing
    from a run gets 0 from it. Default weights are equal."""
    if not runs:
        raise ValueError("fuse_minmax needs at least one run")
    weights = list(weights) if weights is not None else [1.0] * len(runs)
    if len(weights) != len(runs):
        raise ValueError(f"got {len(weights)} weights for {len(runs)} runs")
    out: dict[str, dict[str, float]] = {}
    for run, w in zip(runs, weights, strict=True):
        for q in run.query_ids:
            fused = out.setdefault(q, {})
            for d, s in minmax(run[q]).items():
                fused[d] = fused.get(d, 0.0) + w * s
    return Run(out, name=name or "+".join(r.name or "run" for r in runs))
