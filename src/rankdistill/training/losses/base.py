"""The loss interface every rankdistill loss follows (the one sentence-transformers' CrossEncoder losses use).

A loss is an `nn.Module` built with the model it trains (`loss = SomeLoss(model, ...)`, kept as
`loss.model`) and called with one batch: `loss(inputs, labels) -> scalar tensor`, where `inputs` is the
list of text columns of the dataset (for pairs: `[queries, documents]`) and `labels` the label column as a
tensor. Any such module plugs into `DistillationTrainer` and into `CombinedLoss` (weighted sums).

Losses defined here also expose `compute(forward, labels)`, working from a `PairForward`: one forward
pass of the encoder that several losses share inside `CombinedLoss`, so adding the Term Control Layer's
auxiliary loss to the ranking loss costs no second pass over the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rankdistill.registry import Registry

#: losses by the name training configs use (`losses: [{name: margin_mse}]`): each registers its class at
#: the bottom of its module; sentence-transformers' own register lazily in this package's __init__. What a
#: loss trains on is registered with it (checked by `loss_problem` in this package, before training):
#: `labels`, the LABELS kinds it takes; `num_labels`, the student outputs it takes (default 1 and 2);
#: `student`, the student type it trains (default "encoder"); `columns`, text columns other than the
#: (query, document) pair rows training configs give. A loss registered without them is not checked.
LOSSES = Registry(
    "loss",
    modules=tuple(
        f"rankdistill.training.losses.{m}"
        for m in (
            "inranker_mse",
            "listnet",
            "margin_mse",
            "plistmle",
            "ranknet",
            "soft_bce",
            "term_control",
            "joint",
        )
    ),
)


#: what a training row's label can be: "score" takes any number, so it takes probabilities too
LABELS = {
    "probability": "probabilities in [0, 1]",
    "score": "scores (numbers)",
    "logits": "[false, true] logit pairs",
}


@dataclass
class PairForward:
    """One forward pass of a cross-encoder over (query, document) pairs."""

    queries: list[str]
    documents: list[str]
    encoding: Any  # the tokenizer's BatchEncoding (with offsets when hidden states were asked for)
    logits: torch.Tensor  # (batch, num_labels)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # per layer, (batch, seq, dim); None unless asked
    cache: dict[str, Any] = field(default_factory=dict)  # per-batch values losses share (e.g. TCL's mask)
    group_sizes: list[int] | None = None  # grouped batches: consecutive pairs per query (listwise losses)

    @property
    def scores(self) -> torch.Tensor:
        """The ranking score of each pair: the logit (1 label) or logit(true) - logit(false) (2 labels)."""
        return logits_to_scores(self.logits)


def logits_to_scores(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[-1] == 1:
        return logits[..., 0]
    if logits.shape[-1] == 2:
        return logits[..., 1] - logits[..., 0]
    raise ValueError(f"expected 1 or 2 output labels (score, or false/true logits), got {logits.shape[-1]}")


def stack_labels(labels: torch.Tensor | Sequence[torch.Tensor] | None) -> torch.Tensor:
    """The collator gives a tensor for scalar labels and a list of tensors for list labels."""
    if labels is None:
        raise ValueError("this loss needs a 'label' column (teacher scores) in the training data")
    if isinstance(labels, torch.Tensor):
        return labels.float()
    return torch.stack([torch.as_tensor(x) for x in labels]).float()


def labels_to_probability(labels: torch.Tensor) -> torch.Tensor:
    """Teacher relevance as a probability: a (false, true) logit pair goes through a softmax, a scalar
    is taken as a probability and must lie in [0, 1]."""
    if labels.dim() == 2 and labels.shape[1] == 2:
        return torch.softmax(labels.float(), dim=-1)[:, 1]
    labels = labels.float().view(-1)
    if labels.numel() and (labels.min() < 0 or labels.max() > 1):
        raise ValueError(
            "expected teacher probabilities in [0, 1] or (false, true) logit pairs as labels, "
            f"got values in [{labels.min().item():.3g}, {labels.max().item():.3g}]"
        )
    return labels


def split_first_stage(inputs: Sequence[Sequence[Any]]) -> tuple[Sequence[Sequence[Any]], torch.Tensor | None]:
    """A batch's text columns and, for a hybrid student's rows (a third column, `first_stage`), the
    normalised first-stage score of each pair (groups flattened like their documents)."""
    if len(inputs) != 3:
        return inputs, None
    column = list(inputs[2])
    if column and isinstance(column[0], (list, tuple, torch.Tensor)):
        column = [float(x) for group in column for x in group]
    return inputs[:2], torch.as_tensor([float(x) for x in column], dtype=torch.float32)


def apply_first_stage(model, fwd: PairForward, features: torch.Tensor | None) -> PairForward:
    """`fwd` with a hybrid student's first-stage term in its logits (`rankdistill.students.hybrid`);
    rows and student must agree on being hybrid."""
    from rankdistill.students.hybrid import COLUMN, mix_of

    mix = mix_of(unwrap_model(model))
    if mix is None and features is None:
        return fwd
    if mix is None:
        raise ValueError(
            f"the training rows have a {COLUMN!r} column but the student is not hybrid (student.hybrid)"
        )
    if features is None:
        raise ValueError(
            f"a hybrid student trains on rows with a {COLUMN!r} value (the normalised first-stage score of "
            "each pair); these rows have none"
        )
    if features.numel() != fwd.logits.shape[0]:
        raise ValueError(f"got {features.numel()} first-stage scores for {fwd.logits.shape[0]} pairs")
    fwd.logits = mix(fwd.logits, features)
    return fwd


def register_mix(loss: nn.Module, model) -> None:
    """A loss owns a hybrid student's mix as a submodule: the optimizer is built from the loss's
    parameters and checkpoints hold the loss's own state (see `students.hybrid.attach_mix`)."""
    from rankdistill.students.hybrid import mix_of

    mix = mix_of(unwrap_model(model))
    if mix is not None:
        loss.first_stage_mix = mix


def flatten_groups(inputs: Sequence[Sequence[Any]]) -> tuple[list[str], list[str], list[int] | None]:
    """(queries, documents, group sizes) of a batch. Pair batches (one document per row) give no group
    sizes; grouped batches (a list of documents per query, see `training.data.group_rows`) are
    flattened into consecutive pairs, one group per query."""
    if len(inputs) != 2:
        raise ValueError(
            f"expected a dataset with two text columns (query, document) before the label, got {len(inputs)}"
        )
    queries, documents = list(inputs[0]), list(inputs[1])
    if not documents or isinstance(documents[0], str):
        return queries, documents, None
    sizes = [len(docs) for docs in documents]
    flat_q = [q for q, n in zip(queries, sizes, strict=True) for _ in range(n)]
    return flat_q, [d for docs in documents for d in docs], sizes


def flatten_labels(labels: Any, group_sizes: list[int] | None) -> Any:
    """Per-group label lists (one tensor per query) as one tensor aligned with the flattened pairs."""
    if group_sizes is None or labels is None:
        return labels
    parts = [torch.as_tensor(x).float() for x in labels]
    if [len(x) for x in parts] != group_sizes:
        raise ValueError("each query's label list must have one label per document")
    return torch.cat(parts)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The student inside the wrappers the Trainer may put around it for training: DistributedDataParallel
    (`accelerate launch`, `torchrun`), FSDP, DeepSpeed, `torch.compile`. Such a wrapper exposes only
    `forward`, not the student's tokenizer, inner model or config; a model that is no wrapper is returned
    as it is."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_torch_compile=False)


def encode_pairs(
    model,
    queries: list[str],
    documents: list[str],
    hidden_states: bool = False,
    group_sizes: list[int] | None = None,
) -> PairForward:
    """Tokenize (query, document) pairs the way CrossEncoder does (longest-first truncation to the
    model's max length) and run the student once.

    `model` is the CrossEncoder student or a wrapper around it (see `unwrap_model`; sentence-transformers'
    trainer puts the wrapped model into `loss.model`). The tokenizer, maximum length and device come from
    the student inside; the forward pass is the model's own, called as given, since
    DistributedDataParallel averages the gradients of a forward pass it ran itself and of no other. Its
    output: "scores" (the logits) and, with `hidden_states`, "all_layer_embeddings", which the student's
    Transformer module adds while its config asks for hidden states (set for this call only)."""
    encoder = unwrap_model(model)
    encoding = encoder.tokenizer(
        queries,
        documents,
        padding=True,
        truncation="longest_first",
        max_length=encoder.max_seq_length,
        return_tensors="pt",
        return_offsets_mapping=hidden_states,
    )
    features: dict[str, Any] = {k: v.to(encoder.device) for k, v in encoding.items() if k != "offset_mapping"}
    config = encoder.model.config
    asked = config.output_hidden_states
    config.output_hidden_states = hidden_states
    try:
        out = model({**features, "output_hidden_states": hidden_states})
    finally:
        config.output_hidden_states = asked
    if hidden_states and "all_layer_embeddings" not in out:
        raise RuntimeError(f"{type(encoder).__name__} gave no hidden states (all_layer_embeddings)")
    return PairForward(
        queries=queries,
        documents=documents,
        encoding=encoding,
        logits=out["scores"].float(),
        hidden_states=tuple(out["all_layer_embeddings"]) if hidden_states else None,
        group_sizes=group_sizes,
    )


class DistillationLoss(nn.Module):
    """Base of rankdistill's pair losses: `forward` encodes the batch, `compute` holds the loss itself."""

    needs_hidden_states = False
    needs_groups = False  # listwise losses: train on one row per query (see `training.data.group_rows`)

    def __init__(self, model):
        super().__init__()
        self.model = model
        register_mix(self, model)

    def forward(self, inputs, labels, prompt: str | None = None, task: str | None = None) -> torch.Tensor:
        inputs, features = split_first_stage(inputs)
        queries, documents, sizes = flatten_groups(inputs)
        fwd = encode_pairs(self.model, queries, documents, self.needs_hidden_states, sizes)
        fwd = apply_first_stage(self.model, fwd, features)
        return self.compute(fwd, flatten_labels(labels, sizes))

    def compute(self, fwd: PairForward, labels) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        return {}


class GroupedLoss(DistillationLoss):
    """Base of listwise losses: a teacher temperature and each query's (student scores, teacher labels)."""

    needs_groups = True

    def __init__(self, model, temperature: float = 0.1):
        super().__init__(model)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def compute(self, fwd: PairForward, labels) -> torch.Tensor:
        name = type(self).__name__
        if fwd.group_sizes is None:
            raise ValueError(
                f"{name} needs grouped rows (one query with its documents per row); "
                "train through rankdistill.training.train, which groups pair rows by query"
            )
        target = stack_labels(labels).view(-1).to(fwd.scores.device)
        if target.numel() != fwd.scores.numel():
            raise ValueError(f"{name} needs one scalar teacher score per document")
        groups = zip(
            torch.split(fwd.scores.float(), fwd.group_sizes),
            torch.split(target / self.temperature, fwd.group_sizes),
            strict=True,
        )
        return torch.stack([self.group_loss(scores, teacher) for scores, teacher in groups]).mean()

    def group_loss(self, scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """One query's loss from its student scores and its teacher labels divided by the temperature."""
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
