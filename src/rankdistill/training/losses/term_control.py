"""The Term Control Layer's auxiliary loss (RRADistill). The loss owns the layer, as sentence-transformers'
SoftmaxLoss owns its classifier: the optimizer trains it (the trainer collects the loss's parameters),
checkpoints keep it for resuming, and the saved student never contains it."""

from __future__ import annotations

import torch
from torch import nn

from rankdistill.students.term_control import TermControlLayer, TermMatcher
from rankdistill.training.losses.base import (
    LOSSES,
    DistillationLoss,
    PairForward,
    labels_to_probability,
    stack_labels,
    unwrap_model,
)


class TermControlLoss(DistillationLoss):
    """BCE between the TCL's score (from the hidden states of query-matching document tokens) and the
    teacher's probability, averaged over the pairs that have at least one matching token.

    Use it next to a ranking loss in `CombinedLoss`, e.g. `{"soft_bce": 1.0, "term_control": 0.5}`.
    `layer` picks the hidden layer the TCL reads (-1: the last, the one the [CLS] head reads too).
    """

    needs_hidden_states = True

    def __init__(self, model, layer: int = -1, dropout: float = 0.1, language: str = "english"):
        super().__init__(model)
        self.layer = layer
        self.matcher = TermMatcher(language=language)
        student = unwrap_model(model)
        hidden_size = student.model.config.hidden_size
        self.term_control = TermControlLayer(hidden_size, dropout=dropout).to(student.device)
        self.bce = nn.BCEWithLogitsLoss(reduction="none")

    def tcl_scores(self, fwd: PairForward) -> tuple[torch.Tensor, torch.Tensor]:
        if fwd.hidden_states is None or "offset_mapping" not in fwd.encoding:
            raise ValueError("TermControlLoss needs a forward pass with hidden states and offsets")
        mask = fwd.cache.get("tcl_mask")
        if mask is None:
            mask = fwd.cache["tcl_mask"] = self.matcher.select(fwd.encoding, fwd.queries, fwd.documents)
        hidden = fwd.hidden_states[self.layer]
        return self.term_control(hidden, mask)

    def compute(self, fwd: PairForward, labels) -> torch.Tensor:
        target = labels_to_probability(stack_labels(labels))
        scores, has_match = self.tcl_scores(fwd)
        target = target.to(scores.device)
        per_pair = self.bce(scores.float(), target)
        weight = has_match.float()
        # mean over pairs with a match; 0 (still attached to the graph) when no pair in the batch has one
        return (per_pair * weight).sum() / weight.sum().clamp(min=1.0)

    def get_config_dict(self):
        return {"layer": self.layer, "language": self.matcher.language}


LOSSES.register("term_control", TermControlLoss, labels=("probability", "logits"))
