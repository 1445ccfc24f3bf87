"""Hybrid student: the cross-encoder's score plus a learned weight times the first-stage score.

Why: the offline teacher is BM25 fused with a dense model, and a cross-encoder student has to rebuild
BM25's term matching from teacher labels, which takes tens of thousands of pairs on a 2-core CPU (README,
"The distillation experiment"). The first stage's score is already there at inference, for free: a
student whose score is `logit + w * f(first-stage score)` only has to learn what the first stage misses.
It is the simplest form of the term-matching signal RRADistill's Term Control Layer injects, and the
published "BM25 score into the cross-encoder" rerankers (Askari et al., ECIR 2023) show the gain; here
the score is added to the output instead of written into the input text, so the encoder and its exports
stay a plain Hugging Face cross-encoder (loaded alone it gives the residual score).

`f` is a per-query min-max over the query's best `depth` first-stage scores (the depth the teacher's
labels covered, saved with the student): the teacher fuses min-max scaled scores over exactly those
candidates, and taking the minimum over the top `depth` (not over whatever list a request brings) gives
the same `f` whether 30 or 100 candidates are reranked; scores below the depth-th go below 0, linearly.
Min-max also makes the feature blind to the scale of the user's BM25 (Lucene, Pyserini, ours).

`w` starts at the least-squares fit of the teacher's group-centred labels on the group-centred feature
(in the loss's units: labels over its temperature) and is trained with the student; it is one number in
`rankdistill.json`, applied by `rankdistill.inference.Reranker` and the dev evaluator alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rankdistill.errors import RankdistillError

#: the key of `rankdistill.json` (and of a phase's `first_stage.json`) that makes a student hybrid
METADATA_KEY = "first_stage"
MIX_FILE = "first_stage.json"
#: the training row / dataset column that carries the normalised first-stage score
COLUMN = "first_stage"
_ATTR = "first_stage_mix"


def normalise_first_stage(scores: Sequence[float], depth: int) -> np.ndarray:
    """One query's first-stage scores as the hybrid student's feature: (s - m) / (max - m), m the
    `depth`-th best score (the lowest when there are fewer). All equal: zeros."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    if not np.all(np.isfinite(s)):
        raise RankdistillError(
            f"first-stage scores must be finite numbers, got {s[~np.isfinite(s)][:3].tolist()}"
        )
    top = np.sort(s)[::-1][: max(1, int(depth))]
    hi, lo = top[0], top[-1]
    if hi - lo <= 0:
        return np.zeros_like(s)
    return (s - lo) / (hi - lo)


def normalise_grouped(queries: Sequence[str], scores: Sequence[float], depth: int) -> np.ndarray:
    """`normalise_first_stage` per query over pairs of several queries (grouped by query text)."""
    if len(queries) != len(scores):
        raise ValueError(f"got {len(scores)} first-stage scores for {len(queries)} pairs")
    out = np.zeros(len(scores), dtype=np.float64)
    by_query: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_query.setdefault(q, []).append(i)
    values = np.asarray(scores, dtype=np.float64)
    for idx in by_query.values():
        out[idx] = normalise_first_stage(values[idx], depth)
    return out


def least_squares_weight(groups: Iterable[Sequence[Sequence[float]]], scale: float = 1.0) -> float:
    """The `w` minimising sum over groups of ||centred(labels * scale - encoder) - w * centred(features)||^2
    (MarginMSE's objective in `w` alone). `groups`: (labels, features) of each query's rows, or (labels,
    features, encoder scores): without encoder scores it is the start of the mix, so the encoder learns
    the residual from step one; with them, the best weight for a trained encoder."""
    num = den = 0.0
    for group in groups:
        labels, feats = group[0], group[1]
        y = np.asarray(labels, dtype=np.float64) * scale
        if len(group) > 2:
            y = y - np.asarray(group[2], dtype=np.float64)
        x = np.asarray(feats, dtype=np.float64)
        if y.size < 2:
            continue
        x, y = x - x.mean(), y - y.mean()
        num += float(x @ y)
        den += float(x @ x)
    return num / den if den > 0 else 0.0


class FirstStageMix(nn.Module):
    """`score + weight * feature`: the trained part of a hybrid student besides the encoder."""

    def __init__(self, weight: float = 0.0, depth: int = 30):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.weight = nn.Parameter(torch.tensor(float(weight)))
        self.depth = int(depth)

    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Logits with the first-stage term added to the score: to the single logit, or to the 'true'
        logit of a (false, true) pair (the score is true - false)."""
        add = self.weight.to(logits.dtype) * features.to(logits.device, logits.dtype)
        if logits.shape[-1] == 1:
            return logits + add.unsqueeze(-1)
        return torch.stack([logits[..., 0], logits[..., 1] + add], dim=-1)

    def metadata(self) -> dict[str, Any]:
        return {"normalise": "minmax_top", "depth": self.depth, "weight": float(self.weight.detach())}


def attach_mix(model: Any, mix: FirstStageMix) -> FirstStageMix:
    """Make `model` (a CrossEncoder student) hybrid. The mix is kept beside the model's modules, not among
    them: a CrossEncoder runs its modules in sequence, and its saved folder must stay a plain HF
    cross-encoder; the losses register the mix as theirs (so the optimizer trains it and checkpoints hold
    it), `save_mix` / `rankdistill.json` keep it between phases and in the saved student."""
    model.__dict__[_ATTR] = mix.to(_device_of(model))
    return mix


def mix_of(model: Any) -> FirstStageMix | None:
    """The first-stage mix of a hybrid student (through training wrappers), None for a plain one."""
    for m in (model, getattr(model, "module", None), getattr(model, "_orig_mod", None)):
        if m is not None and _ATTR in getattr(m, "__dict__", {}):
            return m.__dict__[_ATTR]
    return None


def _device_of(model: Any):
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def mix_from_metadata(meta: Mapping[str, Any], where: Any = "rankdistill.json") -> FirstStageMix | None:
    """The mix a saved student's metadata describes (None for a plain student); a malformed entry is an
    error naming the file and key."""
    entry = meta.get(METADATA_KEY)
    if entry is None:
        return None
    try:
        weight, depth = float(entry["weight"]), int(entry["depth"])
        if entry.get("normalise", "minmax_top") != "minmax_top" or not math.isfinite(weight) or depth < 1:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise RankdistillError(
            f"{where}: key {METADATA_KEY!r} must be {{'normalise': 'minmax_top', 'depth': int >= 1, "
            f"'weight': number}}, got {entry!r}"
        ) from None
    return FirstStageMix(weight, depth)


def save_mix(model: Any, folder: str | Path) -> None:
    """Write a hybrid student's mix beside a phase's saved model (a plain student writes nothing)."""
    mix = mix_of(model)
    if mix is not None:
        Path(folder, MIX_FILE).write_text(json.dumps({METADATA_KEY: mix.metadata()}) + "\n", encoding="utf-8")


def load_mix(model: Any, folder: str | Path) -> None:
    """Restore the mix `save_mix` wrote into the hybrid `model` (a done phase, loaded instead of retrained)."""
    mix, path = mix_of(model), Path(folder, MIX_FILE)
    if mix is None:
        return
    if not path.exists():
        raise RankdistillError(f"{path}: missing; the phase's model was saved by a plain student")
    saved = mix_from_metadata(json.loads(path.read_text(encoding="utf-8")), path)
    assert saved is not None
    with torch.no_grad():
        mix.weight.copy_(saved.weight)
    mix.depth = saved.depth
