"""RankNet (Burges et al. 2005) on the preferences a teacher's order implies, for grouped rows.

A listwise teacher gives an order, not calibrated scores: "d1 above d2" is all a permutation says. RankNet
learns exactly that, -log sigmoid(s_i - s_j) for each pair the teacher orders i above j, and is blind to
the targets' scale, so rank targets (`training.data.rank_targets`), min-max teacher scores and raw
log-odds train the same way. Tied targets (e.g. two one-pass documents the LLM left out, whose relative
order the teacher never judged) give no pair.

Replaces sentence-transformers' RankNetLoss under the name `ranknet`: that one needs one document list
per row with graded labels, which pair rows from a label store never are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rankdistill.training.losses.base import LOSSES, GroupedLoss


def ranknet(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(s_i - s_j) over every pair of a padded group [groups, size] whose teacher
    target orders i above j; 0 (with a gradient path) when all targets of every group are tied."""
    prefer = (targets.unsqueeze(2) > targets.unsqueeze(1)) & mask.unsqueeze(2) & mask.unsqueeze(1)
    if not prefer.any():
        return scores.sum() * 0.0
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)
    return F.softplus(-diff[prefer]).mean()


class RankNetLoss(GroupedLoss):
    """`ranknet` over each query's candidates (the temperature does not change an order, so it is unused)."""

    def group_loss(self, scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return ranknet(scores[None], teacher[None], torch.ones_like(scores, dtype=torch.bool)[None])


LOSSES.register("ranknet", RankNetLoss, labels=("score",))
