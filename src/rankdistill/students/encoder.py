"""Encoder student: a cross-encoder built from any local Hugging Face encoder folder.

The student is a sentence-transformers `CrossEncoder` over `AutoModelForSequenceClassification`. Saved, it
is a plain Hugging Face folder (config.json, model.safetensors, tokenizer files) that loads unchanged
with `sentence_transformers.CrossEncoder(path)` and `AutoModelForSequenceClassification.from_pretrained`,
plus `rankdistill.json`, the metadata `rankdistill.inference.Reranker.load` reads.

Scores: with `num_labels=1` (the default) the score of a pair is the single logit (log-odds of
relevance; `sigmoid(logit)` is the probability); with `num_labels=2` the logits are (false, true) as
InRanker's monoT5 and the score is `logit[1] - logit[0]`. `score_pairs` is the one place pairs become
scores, in training (dev metrics) and in `rankdistill.inference.Reranker` alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankdistill.errors import RankdistillError
from rankdistill.hardware import resolve_device
from rankdistill.models import resolve_model
from rankdistill.students.hybrid import METADATA_KEY as HYBRID_KEY
from rankdistill.students.hybrid import attach_mix, mix_from_metadata, mix_of, normalise_grouped
from rankdistill.students.metadata import STUDENT_TYPES, read_metadata, write_metadata
from rankdistill.utils import batched, progress

log = logging.getLogger(__name__)


def _default_base() -> str:
    return resolve_model("minilm")


def load_encoder_student(
    base: str | Path | None = None,
    num_layers: int | None = None,
    num_labels: int = 1,
    max_length: int = 256,
    device: Any = "auto",
    seed: int | None = None,
    layers: list[int] | None = None,
):
    """A fresh cross-encoder student on top of an encoder (default: all-MiniLM-L6-v2, packaged locally).

    `num_layers` keeps only the first N transformer layers of the encoder (a faster, smaller student);
    `layers` keeps the listed ones instead, e.g. `[0, 5]`. Measured on all-MiniLM-L6-v2 (trained with mean
    pooling): [CLS] after layer 2 is nearly the same for every document (its spread across documents is
    about 100x smaller than after layer 6), so a first-two-layers student starts with a constant [CLS];
    keeping the last layer does not fix training by itself (README, "The distillation experiment").
    The classification head is new (seeded by `seed`). A folder that already holds a trained
    cross-encoder (with a sequence-classification head) is loaded with its head. `device`: see
    `rankdistill.hardware.resolve_device` ("auto": a GPU when there is one).
    """
    from sentence_transformers import CrossEncoder
    from sentence_transformers.base.modules import Transformer
    from transformers import AutoConfig

    if layers is not None and num_layers is not None:
        raise ValueError("give num_layers (the first N layers) or layers (which ones), not both")
    if num_labels not in (1, 2):
        raise ValueError(f"num_labels must be 1 (score) or 2 (false/true logits), got {num_labels}")
    if seed is not None:
        from rankdistill.utils import set_seed

        set_seed(seed)
    path = resolve_model(base) if base is not None else _default_base()
    config = AutoConfig.from_pretrained(path)
    total = getattr(config, "num_hidden_layers", None)
    config_kwargs: dict[str, Any] = {"num_labels": num_labels}
    if num_layers is not None:
        if total is None:
            raise RankdistillError(
                f"{path}: the config has no num_hidden_layers; cannot keep {num_layers} layers"
            )
        if not 1 <= num_layers <= total:
            raise RankdistillError(f"num_layers must be between 1 and {total} for {path}, got {num_layers}")
        # from_pretrained builds N layers and loads the first N from the checkpoint; the rest is ignored
        config_kwargs["num_hidden_layers"] = num_layers
    transformer = Transformer(
        str(path),
        transformer_task="sequence-classification",
        config_kwargs=config_kwargs,
        max_seq_length=max_length,
    )
    model = CrossEncoder(modules=[transformer], device=str(resolve_device(device)))
    model.max_seq_length = max_length
    if layers is not None:
        _keep_layers(model.model, list(layers), path)
    return model


def _keep_layers(hf_model, layers: list[int], path) -> None:
    """Keep the listed transformer layers (in order); the saved config says how many remain."""
    import torch

    encoder = getattr(hf_model.base_model, "encoder", None)
    blocks = getattr(encoder, "layer", None)
    if blocks is None:
        raise RankdistillError(
            f"{path}: cannot select layers of a {type(hf_model).__name__} (no encoder.layer)"
        )
    if not layers or any(not 0 <= i < len(blocks) for i in layers) or len(set(layers)) != len(layers):
        raise RankdistillError(f"layers must be distinct indices in [0, {len(blocks) - 1}], got {layers}")
    encoder.layer = torch.nn.ModuleList([blocks[i] for i in layers])
    hf_model.config.num_hidden_layers = len(layers)


def save_student(model, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Save a trained encoder student as a plain HF folder plus `rankdistill.json`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    cfg = model.model.config
    meta = {
        "student_type": "encoder",
        "num_labels": int(cfg.num_labels),
        "score": "logit" if cfg.num_labels == 1 else "logit_true_minus_false",
        "max_length": int(model.max_seq_length),
        "num_layers": int(getattr(cfg, "num_hidden_layers", 0) or 0),
        "architecture": (cfg.architectures or [type(model.model).__name__])[0],
    }
    mix = mix_of(model)
    if mix is not None:  # a hybrid student: its score adds the first-stage term (students.hybrid)
        meta[HYBRID_KEY] = mix.metadata()
    meta.update(metadata or {})
    write_metadata(path, meta)
    return path


def load_student(path: str | Path, device: Any = "auto", max_length: int | None = None):
    """Load a saved encoder student (or any HF cross-encoder folder) as a `CrossEncoder` on `device`
    (see `rankdistill.hardware.resolve_device`)."""
    from sentence_transformers import CrossEncoder

    path = Path(path)
    if not (path / "config.json").exists():
        raise RankdistillError(f"{path}: no config.json; expected a saved student folder")
    meta = read_metadata(path)
    if meta and meta.get("student_type", "encoder") != "encoder":
        raise RankdistillError(f"{path}: student_type is {meta['student_type']!r}; expected 'encoder'")
    model = CrossEncoder(str(path), device=str(resolve_device(device)), local_files_only=True)
    model.max_seq_length = max_length or int(meta.get("max_length", model.max_seq_length or 512))
    mix = mix_from_metadata(meta, path / "rankdistill.json")
    if mix is not None:
        attach_mix(model, mix)
    return model


#: what to do with a pair longer than the window: cut it, or score the document's best passage (MaxP)
LONG_DOC_POLICIES = ("truncate", "maxp")


def score_pairs(
    forward: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray],
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    max_length: int,
    batch_size: int = 32,
    long_docs: str = "truncate",
    passage_stride: int = 64,
    show_progress: bool = False,
) -> np.ndarray:
    """Ranking scores of (query, document text) pairs with a cross-encoder run by `forward` (token ids,
    attention mask, token type ids or None in; logits out: a torch model, ONNX Runtime, ...).

    The one scoring path of encoder students: the training dev evaluator (`student_scores`) and
    `rankdistill.inference.Reranker` both call it, so dev and test metrics score a model identically
    (same truncation, padding and score). Scores are raw logits (1 output) or true - false (2 outputs):
    a sigmoid would squash large scores into ties at 1.0.
    `long_docs`: "truncate" cuts the pair to `max_length` tokens, the document losing tokens first (the
    query only when it alone is over half the window); "maxp" splits the document into overlapping
    passages that fit beside the query (`passage_stride` tokens of overlap) and keeps the best passage.
    """
    if long_docs not in LONG_DOC_POLICIES:
        raise ValueError(f"long_docs must be one of {LONG_DOC_POLICIES}, got {long_docs!r}")
    if not pairs:
        return np.zeros(0, dtype=np.float64)
    encoded, owner = _tokenize(
        tokenizer, [q for q, _ in pairs], [d for _, d in pairs], max_length, long_docs, passage_stride
    )
    logits = _run_batches(forward, tokenizer, encoded, batch_size, show_progress)
    if logits.shape[1] not in (1, 2):
        raise RankdistillError(
            f"the model has {logits.shape[1]} outputs; a reranker needs 1 (a relevance logit) "
            "or 2 (false/true logits, InRanker style)"
        )
    scores = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
    if owner is None:
        return scores.astype(np.float64)
    best = np.full(len(pairs), -np.inf)
    np.maximum.at(best, owner, scores)  # MaxP: a document scores as its best passage
    return best


def _tokenize(tokenizer, queries: list[str], docs: list[str], max_length: int, policy: str, stride: int):
    """Token ids of every pair in one batched tokenizer call, and for "maxp" the pair each passage
    belongs to. No padding here: batches are padded later, each to its own longest member."""
    common = {
        "add_special_tokens": True,
        "return_attention_mask": False,
        "return_token_type_ids": _uses_token_types(tokenizer),
    }
    if policy == "truncate":
        return tokenizer(queries, docs, truncation="longest_first", max_length=max_length, **common), None
    # MaxP: the document overflows into passages; the query must leave room, so cut long queries first.
    limit = max(1, max_length // 2)
    q_ids = tokenizer(queries, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    queries = [
        q if len(ids) <= limit else tokenizer.decode(ids[:limit])
        for q, ids in zip(queries, q_ids, strict=True)
    ]
    enc = tokenizer(
        queries,
        docs,
        truncation="only_second",
        max_length=max_length,
        stride=min(stride, limit // 2),
        return_overflowing_tokens=True,
        **common,
    )
    return enc, np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)


def _uses_token_types(tokenizer) -> bool:
    return "token_type_ids" in getattr(tokenizer, "model_input_names", ())


def _run_batches(forward, tokenizer, encoded, batch_size: int, show_progress: bool) -> np.ndarray:
    """Logits of every encoded pair, longest first (memory peaks early), each batch padded to its own
    longest pair."""
    ids: list[list[int]] = encoded["input_ids"]
    types = encoded.get("token_type_ids") if _uses_token_types(tokenizer) else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = np.argsort([len(x) for x in ids], kind="stable")[::-1]
    out: np.ndarray | None = None
    batches = list(batched(order.tolist(), batch_size))
    bar = progress(batches, total=len(batches), desc="scoring", unit="batch", disable=not show_progress)
    for idx in bar:
        width = len(ids[idx[0]])
        input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        token_types = np.zeros((len(idx), width), dtype=np.int64) if types is not None else None
        for row, i in enumerate(idx):
            n = len(ids[i])
            input_ids[row, :n] = ids[i]
            mask[row, :n] = 1
            if token_types is not None:
                token_types[row, :n] = types[i]
        logits = np.asarray(forward(input_ids, mask, token_types), dtype=np.float32)
        if out is None:
            out = np.empty((len(ids), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    assert out is not None
    return out


class TorchForward:
    """`score_pairs`'s `forward` for a transformers sequence-classification model held in memory."""

    def __init__(self, model: Any, device: Any = None):
        import torch

        self.torch = torch
        self.model = model
        self.device = device if device is not None else next(model.parameters()).device

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None):
        torch = self.torch
        feeds = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        if token_type_ids is not None:
            feeds["token_type_ids"] = torch.from_numpy(token_type_ids)
        with torch.inference_mode():
            feeds = {k: v.to(self.device) for k, v in feeds.items()}
            logits = self.model(**feeds).logits
        return logits.float().cpu().numpy()


def student_scores(
    model,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 64,
    show_progress: bool = False,
    first_stage: Sequence[float] | None = None,
    encoder_only: bool = False,
) -> np.ndarray:
    """Scores of (query, document) pairs with an in-memory student (a `CrossEncoder`, e.g. during
    training), through `score_pairs` like a saved student's `Reranker`; the model's train/eval mode is
    restored afterwards (dropout is off while scoring). A hybrid student needs `first_stage`, each pair's
    raw first-stage score (normalised here per query, `students.hybrid`), unless `encoder_only` asks
    for the encoder's part of the score alone."""
    mix = None if encoder_only else mix_of(model)
    if mix is not None and first_stage is None:
        raise RankdistillError(
            "a hybrid student scores with each pair's first-stage score (e.g. BM25's); none was given"
        )
    was_training = model.training
    model.eval()
    try:
        scores = score_pairs(
            TorchForward(model.model),
            model.tokenizer,
            pairs,
            max_length=int(model.max_seq_length),
            batch_size=batch_size,
            show_progress=show_progress,
        )
    finally:
        model.train(was_training)
    if mix is None:
        return scores
    feats = normalise_grouped([q for q, _ in pairs], list(first_stage or []), mix.depth)
    return scores + float(mix.weight.detach()) * feats


STUDENT_TYPES.register(
    "encoder", load_student, create=load_encoder_student, save=save_student, cross_encoder=True
)
