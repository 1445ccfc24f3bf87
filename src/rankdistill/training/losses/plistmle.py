"""Position-aware ListMLE (PListMLE, Lan et al. 2014): the Plackett-Luce likelihood of the teacher's
permutation, with the top positions weighted most.

ListMLE asks the student to pick the teacher's first document among all, then its second among the rest,
and so on; a mistake at the top costs as much as one at the bottom. Here position r is weighted by nDCG's
discount 1 / log2(r + 1), normalised (the paper's 2^(n-r) - 1 makes the first position outweigh the
other 19 of a 20-document list by 2^19 and trains on little else). Documents with tied targets at the bottom (the one
pass's left-out hard negatives, all at target 0) are not ordered among themselves: the likelihood stops
before the tied tail, whose documents still sit in every earlier denominator, i.e. must score below every
document the teacher placed.
"""

from __future__ import annotations

import torch

from rankdistill.training.losses.base import LOSSES, GroupedLoss


def plistmle(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted negative Plackett-Luce log-likelihood of each padded group's teacher order
    [groups, size], averaged over groups with a strict order at the top."""
    losses = []
    for s, t, m in zip(scores, targets, mask, strict=True):
        s, t = s[m], t[m]
        if s.numel() < 2:
            continue
        order = torch.sort(t, descending=True, stable=True).indices
        s, t = s[order], t[order]
        # positions before the tied tail: the tail's documents are only ever in denominators
        lowest = t[-1]
        placed = int((t > lowest).sum()) if bool((t > lowest).any()) else 0
        if placed == 0:
            continue
        # log sum_{k >= r} exp(s_k), computed from the end (reverse logcumsumexp)
        tail_lse = torch.logcumsumexp(s.flip(0), dim=0).flip(0)
        nll = tail_lse[:placed] - s[:placed]
        ranks = torch.arange(1, placed + 1, dtype=s.dtype, device=s.device)
        weights = 1.0 / torch.log2(ranks + 1.0)
        losses.append((weights * nll).sum() / weights.sum())
    if not losses:
        return scores.sum() * 0.0
    return torch.stack(losses).mean()


class PListMLELoss(GroupedLoss):
    """`plistmle` over each query's candidates (only the targets' order matters; temperature unused)."""

    def group_loss(self, scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return plistmle(scores[None], teacher[None], torch.ones_like(scores, dtype=torch.bool)[None])


LOSSES.register("plistmle", PListMLELoss, labels=("score",))
