"""The decoder student's joint loss: a ranking loss on teacher scores plus the LM loss of teacher reasoning.

RRA-GPT (RRADistill) and ReasoningRank train one causal LM to rank and to explain at once. Both signals
come out of a single forward pass here: the ranking head reads the hidden state of the prompt's last
token, and the reasoning tokens come after it, so (causal attention) the score never sees the
reasoning it is trained next to, and at inference the score of the prompt alone is exactly the score
that was trained.

    loss = rank_weight * rank_loss(student scores, teacher scores) + lm_weight * LM loss(reasoning)
           + comparison_weight * LM loss(comparison reasoning)

The ranking loss works on groups: one query and its candidates, padded to the longest group of the
batch and masked. Pairs without reasoning text still count for ranking; they add nothing to the LM
term (their target tokens are all -100). Comparison reasoning (ReasoningRank: why document A is more
relevant than B) has a prompt of its own with two documents and no score, so it is a second, LM-only
forward pass over the batch's `comparison_*` rows (see `rankdistill.training.decoder.DecoderCollator`);
a batch may hold groups, comparisons or both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rankdistill.training.losses.base import LOSSES
from rankdistill.training.losses.listnet import listnet
from rankdistill.training.losses.plistmle import plistmle
from rankdistill.training.losses.ranknet import ranknet

RankLossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def pointwise_mse(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between student and teacher scores (InRanker-style regression on the logit)."""
    diff = (scores - targets)[mask]
    return (diff * diff).mean()


def _listnet(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ListNet at temperature 1 (JointRankLMLoss passes its own temperature)."""
    return listnet(scores, targets, mask, 1.0)


RANK_LOSSES: dict[str, RankLossFn] = {
    "mse": pointwise_mse,
    "ranknet": ranknet,
    "listnet": _listnet,
    "plistmle": plistmle,
}


class JointRankLMLoss(nn.Module):
    """Ranking loss on the head's scores plus the language-model loss of the reasoning text, weighted.

    Args:
        model: a `rankdistill.students.decoder.DecoderStudent`.
        rank_loss: "mse" (pointwise), "ranknet" (pairwise), "listnet" or "plistmle" (listwise), or a callable
            `(scores[G, N], teacher[G, N], mask[G, N]) -> scalar`.
        rank_weight, lm_weight: weights of the two terms; `lm_weight=0` trains a ranker only.
        comparison_weight: weight of the comparison reasoning's LM loss (batches without comparisons
            have no such term).
        temperature: divides teacher scores before ListNet's softmax; 1 by default, since the decoder
            learns raw teacher scores (log-odds), not the [0, 1] labels of `ListNetLoss` (0.1).
    """

    def __init__(
        self,
        model: nn.Module,
        rank_loss: str | RankLossFn = "listnet",
        rank_weight: float = 1.0,
        lm_weight: float = 0.5,
        temperature: float = 1.0,
        comparison_weight: float = 0.5,
    ):
        super().__init__()
        if isinstance(rank_loss, str):
            if rank_loss not in RANK_LOSSES:
                raise ValueError(
                    f"unknown rank_loss {rank_loss!r}; expected one of {sorted(RANK_LOSSES)} or a callable"
                )
            self.rank_loss_name = rank_loss
            fn = RANK_LOSSES[rank_loss]
            self.rank_fn: RankLossFn = (
                (lambda s, t, m: listnet(s, t, m, temperature)) if rank_loss == "listnet" else fn
            )
        else:
            self.rank_loss_name = getattr(rank_loss, "__name__", "custom")
            self.rank_fn = rank_loss
        if rank_weight < 0 or lm_weight < 0 or comparison_weight < 0 or rank_weight + lm_weight == 0:
            raise ValueError(
                f"weights must be >= 0 and rank, lm not both 0, got rank={rank_weight}, lm={lm_weight}, "
                f"comparison={comparison_weight}"
            )
        self.model = model
        self.rank_weight = rank_weight
        self.lm_weight = lm_weight
        self.comparison_weight = comparison_weight
        self.temperature = temperature
        #: the last batch's terms, for logging
        self.last_terms: dict[str, float] = {}

    def forward(self, features: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """features: a `DecoderCollator` batch; labels: teacher scores [groups, max group size]."""
        loss, terms = None, {}
        if "input_ids" in features:
            mask = features["group_mask"]
            with_lm = self.lm_weight > 0 and bool((features["lm_labels"] != -100).any())
            out = self.model(
                input_ids=features["input_ids"],
                attention_mask=features["attention_mask"],
                score_index=features["score_index"],
                lm_labels=features["lm_labels"] if with_lm else None,
            )
            # flat pair scores back into [groups, size] in the collator's order
            scores = out.scores.float()
            grouped = scores.new_zeros(mask.shape).masked_scatter(mask, scores)
            rank = self.rank_fn(grouped, labels.float(), mask)
            loss = self.rank_weight * rank
            terms["rank_loss"] = float(rank.detach())
            if with_lm:
                loss = loss + self.lm_weight * out.lm_loss
                terms["lm_loss"] = float(out.lm_loss.detach())
        if "comparison_input_ids" in features and self.comparison_weight > 0:
            out = self.model(
                input_ids=features["comparison_input_ids"],
                attention_mask=features["comparison_attention_mask"],
                score_index=features["comparison_score_index"],
                lm_labels=features["comparison_lm_labels"],
            )
            term = self.comparison_weight * out.lm_loss
            loss = term if loss is None else loss + term
            terms["comparison_loss"] = float(out.lm_loss.detach())
        if loss is None:
            raise ValueError(
                "the batch has neither ranking groups nor comparisons (with comparison_weight > 0)"
            )
        self.last_terms = terms
        return loss

    def get_config_dict(self) -> dict:
        return {
            "rank_loss": self.rank_loss_name,
            "rank_weight": self.rank_weight,
            "lm_weight": self.lm_weight,
            "comparison_weight": self.comparison_weight,
            "temperature": self.temperature,
        }


LOSSES.register("joint", JointRankLMLoss, student="decoder")
