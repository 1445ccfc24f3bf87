"""Encoder student: a cross-encoder built from any local Hugging Face encoder folder.

The student is a sentence-transformers `CrossEncoder` over `AutoModelForSequenceClassification`. Saved, it
is a plain Hugging Face folder (config.json, model.safetensors, tokenizer files) that loads unchanged
with `sentence_transformers.CrossEncoder(path)` and `AutoModelForSequenceClassification.from_pretrained`,
plus `rankdistill.json`, the metadata `rankdistill.inference.Reranker.load` reads.

Scores: with `num_labels=1` (the default) the score of a pair is the single logit (log-odds of
relevance; `sigmoid(logit)` is the probability); with `num_labels=2` the logits are (false, true) as
InRanker's monoT5 and the score is `logit[1] - logit[0]`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.models import resolve_model
from rankdistill.students.metadata import STUDENT_TYPES, read_metadata, write_metadata

log = logging.getLogger(__name__)


def _default_base() -> str:
    return resolve_model("minilm")


def load_encoder_student(
    base: str | Path | None = None,
    num_layers: int | None = None,
    num_labels: int = 1,
    max_length: int = 256,
    device: str | None = "cpu",
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
    cross-encoder (with a sequence-classification head) is loaded with its head.
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
    model = CrossEncoder(modules=[transformer], device=device)
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
    meta.update(metadata or {})
    write_metadata(path, meta)
    return path


def load_student(path: str | Path, device: str | None = "cpu", max_length: int | None = None):
    """Load a saved encoder student (or any HF cross-encoder folder) as a `CrossEncoder`."""
    from sentence_transformers import CrossEncoder

    path = Path(path)
    if not (path / "config.json").exists():
        raise RankdistillError(f"{path}: no config.json; expected a saved student folder")
    meta = read_metadata(path)
    if meta and meta.get("student_type", "encoder") != "encoder":
        raise RankdistillError(f"{path}: student_type is {meta['student_type']!r}; expected 'encoder'")
    model = CrossEncoder(str(path), device=device, local_files_only=True)
    model.max_seq_length = max_length or int(meta.get("max_length", model.max_seq_length or 512))
    return model


def student_scores(model, pairs: list[tuple[str, str]], batch_size: int = 64, show_progress: bool = False):
    """Ranking scores of (query, document) pairs: raw logits (1 label) or true - false (2 labels)."""
    import numpy as np
    from torch import nn

    # raw logits: a sigmoid would squash large scores into ties at 1.0
    logits = model.predict(
        pairs,
        batch_size=batch_size,
        activation_fn=nn.Identity(),
        apply_softmax=False,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
    )
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim == 1:
        return logits
    return logits[:, 1] - logits[:, 0]


STUDENT_TYPES.register(
    "encoder", load_student, create=load_encoder_student, save=save_student, cross_encoder=True
)
