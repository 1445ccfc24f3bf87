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
    LABELS,
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
for _name, _cls, _info in (
    ("mse", "MSELoss", {"labels": ("score",), "num_labels": (1,)}),
    ("st_margin_mse", "MarginMSELoss", {"columns": "(query, positive, negative...)", "num_labels": (1,)}),
    ("bce", "BinaryCrossEntropyLoss", {"labels": ("probability",), "num_labels": (1,)}),
):
    LOSSES.register(_name, f"sentence_transformers.cross_encoder.losses:{_cls}", **_info)
del _name, _cls, _info


def register_loss(name: str, factory: LossFactory) -> None:
    """Make a loss available by name to `build_loss` and to training configs (`losses: [{name: ...}]`);
    the same as ``LOSSES.register(name, factory)``."""
    LOSSES.register(name, factory)


def loss_names() -> list[str]:
    return sorted(LOSSES.names())


def get_loss(name: str) -> LossFactory:
    """The loss registered as `name`; an unknown one raises an error (a KeyError too) listing the known."""
    return LOSSES.get(name)


def loss_problem(
    name: str, *, student_type: str = "encoder", num_labels: int = 1, labels: str | None = None
) -> str | None:
    """Why loss `name` cannot train a `student_type` student with `num_labels` outputs on (query,
    document) pair rows whose labels are of kind `labels` (a `LABELS` key, or "scalar": a number whose
    range is not known yet; None: not known at all); None when nothing registered with the loss says it
    cannot. Training configs refuse what this names; `rankdistill train` checks read rows with it."""
    info = LOSSES.info(name)
    trains = info.get("student", "encoder")
    if trains != student_type:
        return f"loss {name!r} trains the {trains} student, not the {student_type} student"
    if "columns" in info:
        return (
            f"loss {name!r} needs {info['columns']} columns, and training configs give (query, document, "
            "label) rows"
        )
    if num_labels not in info.get("num_labels", (1, 2)):
        n = " or ".join(map(str, info["num_labels"]))
        label = "label" if tuple(info["num_labels"]) == (1,) else "labels"
        return (
            f"loss {name!r} needs a student with {n} output {label}, and student.num_labels is {num_labels}"
        )
    if labels is None or "labels" not in info:
        return None
    accepted = set(info["labels"])
    if "score" in accepted:
        accepted.add("probability")
    if accepted & {"probability", "score"}:
        accepted.add("scalar")  # its range is checked once the rows are read
    if labels in accepted:
        return None
    return f"loss {name!r} trains on {' or '.join(LABELS[k] for k in info['labels'])}"


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
    "LABELS",
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
    "loss_problem",
    "needs_groups",
    "register_loss",
    "stack_labels",
]
