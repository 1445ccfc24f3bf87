"""Training losses, one module each, all with the same interface (see `base.py`):
`loss = Loss(model, **args)`; `loss(inputs, labels) -> scalar`; combine with `CombinedLoss` or `build_loss`.

rankdistill adds what sentence-transformers lacks (InRanker's logit-pair MSE, soft BCE on teacher
probabilities, the Term Control Layer's auxiliary loss, and on grouped batches (one query's candidates a
row) ListNet and MarginMSE with a teacher temperature, RankNet and PListMLE on the teacher's order) and
exposes sentence-transformers' own pair-row CrossEncoder losses (MSE, BCE, MarginMSE as `st_margin_mse`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from rankdistill.training.losses.base import (
    LOSSES,
    DistillationLoss,
    PairForward,
    encode_pairs,
    labels_to_probability,
    logits_to_scores,
    stack_labels,
)
from rankdistill.training.losses.combined import CombinedLoss
from rankdistill.training.losses.inranker_mse import InRankerMSELoss
from rankdistill.training.losses.listnet import ListNetLoss
from rankdistill.training.losses.margin_mse import MarginMSELoss
from rankdistill.training.losses.plistmle import PListMLELoss
from rankdistill.training.losses.ranknet import RankNetLoss
from rankdistill.training.losses.soft_bce import SoftBCELoss
from rankdistill.training.losses.term_control import TermControlLoss

LossFactory = Callable[..., nn.Module]

# sentence-transformers' CrossEncoder losses, imported on first use so importing this package stays cheap
for _name, _cls in {
    "mse": "MSELoss",
    "st_margin_mse": "MarginMSELoss",  # (query, positive, negative...) columns
    "bce": "BinaryCrossEntropyLoss",
}.items():
    LOSSES.register(_name, f"sentence_transformers.cross_encoder.losses:{_cls}")
del _name, _cls


def register_loss(name: str, factory: LossFactory) -> None:
    """Make a loss available by name to `build_loss` and to training configs (`losses: [{name: ...}]`);
    the same as ``LOSSES.register(name, factory)``."""
    LOSSES.register(name, factory)


def loss_names() -> list[str]:
    return sorted(LOSSES.names())


def get_loss(name: str) -> LossFactory:
    """The loss registered as `name`; an unknown one raises an error (a KeyError too) listing the known."""
    return LOSSES.get(name)


def needs_groups(loss: nn.Module) -> bool:
    """Whether a loss trains on grouped rows (one query and its documents per row)."""
    return bool(getattr(loss, "needs_groups", False))


def build_loss(model, specs: Sequence[Mapping[str, Any]] | Mapping[str, float]) -> nn.Module:
    """One loss, or a `CombinedLoss` when several are given.

    `specs` is a list of `{"name": ..., "weight": 1.0, "args": {...}}` or a mapping name -> weight.
    """
    if isinstance(specs, Mapping):
        specs = [{"name": n, "weight": w} for n, w in specs.items()]
    built: dict[str, tuple[nn.Module, float]] = {}
    for spec in specs:
        name = spec["name"]
        key = name if name not in built else f"{name}_{len(built)}"
        built[key] = (get_loss(name)(model, **dict(spec.get("args") or {})), float(spec.get("weight", 1.0)))
    if len(built) == 1:
        ((loss, weight),) = built.values()
        if weight == 1.0:
            return loss
    return CombinedLoss(model, built)


__all__ = [
    "CombinedLoss",
    "DistillationLoss",
    "InRankerMSELoss",
    "LOSSES",
    "ListNetLoss",
    "MarginMSELoss",
    "PListMLELoss",
    "PairForward",
    "RankNetLoss",
    "SoftBCELoss",
    "TermControlLoss",
    "build_loss",
    "encode_pairs",
    "get_loss",
    "labels_to_probability",
    "logits_to_scores",
    "loss_names",
    "needs_groups",
    "register_loss",
    "stack_labels",
]
