"""Binary cross-entropy against the teacher's probability of relevance (soft labels, not 0/1)."""

from __future__ import annotations

import torch
from torch import nn

from rankdistill.training.losses.base import (
    LOSSES,
    DistillationLoss,
    PairForward,
    labels_to_probability,
    stack_labels,
)


class SoftBCELoss(DistillationLoss):
    """BCE(sigmoid(student score), teacher probability).

    Labels: a probability in [0, 1] per row, or a (false, true) logit pair (turned into p(true) by a
    softmax). `temperature` divides the student score before the sigmoid (1 keeps the score as log-odds).
    Unlike sentence-transformers' BinaryCrossEntropyLoss, it accepts logit pairs and works on a shared
    forward pass inside `CombinedLoss`.
    """

    def __init__(self, model, temperature: float = 1.0):
        super().__init__(model)
        self.temperature = temperature
        self.bce = nn.BCEWithLogitsLoss()

    def compute(self, fwd: PairForward, labels) -> torch.Tensor:
        target = labels_to_probability(stack_labels(labels)).to(fwd.logits.device)
        return self.bce(fwd.scores / self.temperature, target)

    def get_config_dict(self):
        return {"temperature": self.temperature}


LOSSES.register("soft_bce", SoftBCELoss, labels=("probability", "logits"))
