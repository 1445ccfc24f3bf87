"""MarginMSE (Hofstätter et al. 2020) over every pair of documents in each query's group.

The student's score margins between a query's documents should equal the teacher's margins (labels divided
by a temperature, so that [0, 1] per-query labels become margins a cross-encoder logit can reach). Summed
over all ordered pairs of a group of n, the pairwise squared error is 2 n^2 times the mean squared error
between the group-centred scores and the group-centred teacher labels, which is what is computed: one
pass, no pairs materialised. For a group of two it is Hofstätter's loss up to that constant factor.

Why it replaces ListNet as rankdistill's default: ListNet's softmax target puts nearly all its weight on
the teacher's top document, so the other documents of a group teach little; MarginMSE asks for the whole
spacing of the teacher's scores. Measured on SciFact (MiniLM-L6 cross-encoder, the BM25 + MiniLM teacher's
labels of BM25 top-30, groups of 8 documents, 16 pairs a step, 48k training pairs; benchmarks/explore/
gpu_sweep.py): test nDCG@10 0.688 with MarginMSE, 0.678 RankNet, 0.658 ListNet (BM25 0.686).

sentence-transformers' CrossEncoder `MarginMSELoss` wants (query, positive, negative...) columns; this one
trains on rankdistill's grouped rows (`training.data.group_rows`), and registers under the same name.
"""

from __future__ import annotations

import torch

from rankdistill.training.losses.base import LOSSES, GroupedLoss


class MarginMSELoss(GroupedLoss):
    """Mean over groups of the mean squared error between centred student scores and centred
    `label / temperature`."""

    def group_loss(self, scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return ((scores - scores.mean()) - (teacher - teacher.mean())).pow(2).mean()


LOSSES.register("margin_mse", MarginMSELoss, labels=("score",))
