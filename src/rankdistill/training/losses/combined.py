"""Weighted sums of losses, with one shared forward pass for the losses that can share it."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from rankdistill.training.losses.base import (
    apply_first_stage,
    encode_pairs,
    flatten_groups,
    flatten_labels,
    register_mix,
    split_first_stage,
)


class CombinedLoss(nn.Module):
    """`sum(weight * loss(inputs, labels))` over named losses.

    Losses with a `compute(forward, labels)` method (rankdistill's pair losses) share one encoder forward
    pass, with hidden states if any of them needs them; any other loss (sentence-transformers' losses,
    the decoder's joint loss) is called on the batch as usual. Returns a dict of weighted components: the
    trainer sums them and logs each one separately.
    """

    def __init__(self, model, losses: Mapping[str, tuple[nn.Module, float]]):
        super().__init__()
        if not losses:
            raise ValueError("CombinedLoss needs at least one loss")
        self.model = model
        self.losses = nn.ModuleDict({name: loss for name, (loss, _) in losses.items()})
        self.weights = {name: float(w) for name, (_, w) in losses.items()}
        register_mix(self, model)

    def forward(
        self, inputs, labels, prompt: str | None = None, task: str | None = None
    ) -> dict[str, torch.Tensor]:
        shared = [n for n, loss in self.losses.items() if hasattr(loss, "compute")]
        fwd = flat = None
        if shared:
            texts, features = split_first_stage(inputs)
            queries, documents, sizes = flatten_groups(texts)
            hidden = any(getattr(self.losses[n], "needs_hidden_states", False) for n in shared)
            fwd = apply_first_stage(
                self.model, encode_pairs(self.model, queries, documents, hidden, sizes), features
            )
            flat = flatten_labels(labels, sizes)
        out: dict[str, torch.Tensor] = {}
        for name, loss in self.losses.items():
            value = loss.compute(fwd, flat) if name in shared else loss(inputs, labels)
            out[name] = self.weights[name] * value
        return out

    @property
    def needs_groups(self) -> bool:
        return any(getattr(loss, "needs_groups", False) for loss in self.losses.values())

    def get_config_dict(self):
        return {"weights": self.weights}
