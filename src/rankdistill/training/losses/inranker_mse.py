"""InRanker's distillation loss (Laitz et al., 2024): MSE between the student's and the teacher's
(false, true) logit pairs."""

from __future__ import annotations

import torch
from torch import nn

from rankdistill.training.losses.base import LOSSES, DistillationLoss, PairForward, stack_labels


class InRankerMSELoss(DistillationLoss):
    """MSE on the (false, true) logit pair.

    Labels: the teacher's pair `[logit_false, logit_true]` per row (e.g. monoT5-style "false"/"true" token
    logits from a pointwise LLM teacher).

    - A student with 2 output labels is compared as is: exactly InRanker's loss.
    - A student with 1 output label (a plain cross-encoder) has one log-odds score s; a softmax over a pair
      only sees its difference, so both pairs are centred first: the student's becomes (-s/2, s/2) and
      the teacher's (f - m, t - m) with m their mean. The loss is then MSE between log-odds, halved.
    """

    def __init__(self, model, center: bool | None = None):
        super().__init__(model)
        self.center = center
        self.mse = nn.MSELoss()

    def compute(self, fwd: PairForward, labels) -> torch.Tensor:
        target = stack_labels(labels)
        if target.dim() != 2 or target.shape[1] != 2:
            raise ValueError(
                f"InRankerMSELoss expects (false, true) logit pairs as labels, got shape {tuple(target.shape)}"
            )
        target = target.to(fwd.logits.device)
        logits = fwd.logits
        center = self.center if self.center is not None else logits.shape[1] == 1
        if logits.shape[1] == 1:
            s = logits[:, 0]
            logits = torch.stack([-s / 2, s / 2], dim=1)
        if center:
            target = target - target.mean(dim=1, keepdim=True)
        return self.mse(logits, target)

    def get_config_dict(self):
        return {"center": self.center}


LOSSES.register("inranker_mse", InRankerMSELoss, labels=("logits",))
