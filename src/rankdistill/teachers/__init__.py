"""Teachers: what a label is. Pointwise teachers score (query, document) pairs; `load_teacher` builds one
from a short spec string (CLI) or a dict (config files).

Spec strings:

- ``truefalse:<llm spec>`` (alias ``monot5:``): InRanker's [false, true] logit pair of the monoT5 prompt
- ``yesno:<llm spec>``: the same with the yes/no prompt
- ``qlm:<llm spec>`` (alias ``query-likelihood:``, ``upr:``): UPR's mean log P(query | document)
- ``cross-encoder:<model folder or hub name>``
- ``bi-encoder[:<model>]`` (``minilm`` alone means ``bi-encoder:minilm``)
- ``bm25`` / ``first-stage``: the first-stage scores of the run being reranked (ensembles only)
- ``A+B+...``: an ensemble of members, each optionally weighted as ``0.3*A``; fusion ``minmax`` unless
  given (``load_teacher(spec, fusion="rrf")`` or ``--fusion`` on the CLI). ``bm25+minilm`` is the best
  offline teacher (no LLM needed).

``<llm spec>`` is whatever `rankdistill.llm.load_llm` takes (e.g. ``llamacpp:gemma3-270m``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.teachers.base import (
    Candidate,
    PairScorer,
    PointwiseLabel,
    PointwiseTeacher,
    direct_scorer,
    rerank_run,
    run_candidates,
)
from rankdistill.teachers.encoders import BiEncoderTeacher, CrossEncoderTeacher
from rankdistill.teachers.ensemble import FUSIONS, EnsembleTeacher, FirstStageTeacher
from rankdistill.teachers.pointwise import QueryLikelihoodTeacher, TrueFalseTeacher

#: the best teacher that needs no LLM: BM25 fused with all-MiniLM-L6-v2 cosine, per-query min-max
BEST_OFFLINE = "bm25+minilm"

_LLM_TYPES = {
    "truefalse": "truefalse",
    "true-false": "truefalse",
    "monot5": "truefalse",
    "yesno": "yesno",
    "yes-no": "yesno",
    "qlm": "qlm",
    "query-likelihood": "qlm",
    "upr": "qlm",
}
_ENCODER_TYPES = {
    "cross-encoder": "cross-encoder",
    "crossencoder": "cross-encoder",
    "ce": "cross-encoder",
    "bi-encoder": "bi-encoder",
    "biencoder": "bi-encoder",
    "dense": "bi-encoder",
}
_FIRST_STAGE = {"bm25", "first-stage", "firststage"}


def _load_llm(spec: Any):
    from rankdistill.llm.base import LLM

    if isinstance(spec, LLM):
        return spec
    try:
        from rankdistill.llm import load_llm
    except ImportError:
        raise RankdistillError("rankdistill.llm.load_llm is not available in this installation") from None
    return load_llm(spec)


def _split_weight(part: str) -> tuple[float, str]:
    head, star, tail = part.partition("*")
    if star:
        try:
            return float(head), tail.strip()
        except ValueError:
            pass
    return 1.0, part.strip()


def teacher_config(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """Parse a spec string into the dict form (`{"type": ..., ...}`); dicts pass through."""
    if isinstance(spec, Mapping):
        if "type" not in spec:
            raise ValueError(f"teacher config needs a 'type' field, got {dict(spec)}")
        return dict(spec)
    text = str(spec).strip()
    if not text:
        raise ValueError("empty teacher spec")
    # '+' separates ensemble members unless it sits inside a member's LLM spec (none of ours use it)
    parts = [p for p in text.split("+") if p.strip()]
    if len(parts) > 1:
        members, weights = [], []
        for p in parts:
            w, member = _split_weight(p)
            members.append(teacher_config(member))
            weights.append(w)
        return {"type": "ensemble", "members": members, "weights": weights}
    kind, _, rest = text.partition(":")
    kind_l = kind.strip().lower()
    rest = rest.strip()
    if kind_l in _FIRST_STAGE:
        return {"type": "first-stage", "source": kind_l if kind_l == "bm25" else (rest or "run")}
    if kind_l == "minilm":
        return {"type": "bi-encoder", "model": "minilm"}
    if kind_l in _LLM_TYPES:
        if not rest:
            raise ValueError(
                f"teacher spec {text!r} needs an LLM: {kind_l}:<llm spec>, e.g. {kind_l}:llamacpp:gemma3-270m"
            )
        return {"type": _LLM_TYPES[kind_l], "llm": rest}
    if kind_l in _ENCODER_TYPES:
        etype = _ENCODER_TYPES[kind_l]
        if etype == "cross-encoder" and not rest:
            raise ValueError("cross-encoder teacher spec needs a model: cross-encoder:<folder or hub name>")
        return {"type": etype, "model": rest or "minilm"}
    known = sorted({*_LLM_TYPES, *_ENCODER_TYPES, *_FIRST_STAGE, "minilm"})
    raise ValueError(
        f"unknown teacher {kind!r} in spec {text!r}; expected one of {known} or A+B for an ensemble"
    )


def load_teacher(spec: str | Mapping[str, Any] | PointwiseTeacher, **overrides: Any) -> PointwiseTeacher:
    """Build a pointwise teacher from a spec string or config dict; `overrides` set constructor options
    (e.g. ``batch_size=8``, ``fusion="rrf"``, ``max_doc_words=200``)."""
    if isinstance(spec, PointwiseTeacher):
        return spec
    cfg = {**teacher_config(spec), **{k: v for k, v in overrides.items() if v is not None}}
    kind = cfg.pop("type")
    if kind == "ensemble":
        members = [load_teacher(m) for m in cfg.pop("members")]
        return EnsembleTeacher(members, cfg.pop("weights", None), **cfg)
    cfg.pop("fusion", None)  # only ensembles fuse
    if kind == "first-stage":
        return FirstStageTeacher(cfg.get("source", "bm25"))
    if kind == "truefalse":
        return TrueFalseTeacher(_load_llm(cfg.pop("llm")), **cfg)
    if kind == "yesno":
        return TrueFalseTeacher(_load_llm(cfg.pop("llm")), **{"prompt": "yes-no", **cfg})
    if kind == "qlm":
        return QueryLikelihoodTeacher(_load_llm(cfg.pop("llm")), **cfg)
    if kind == "cross-encoder":
        return CrossEncoderTeacher(cfg.pop("model"), **cfg)
    if kind == "bi-encoder":
        return BiEncoderTeacher(cfg.pop("model", "minilm"), **cfg)
    raise ValueError(f"unknown teacher type {kind!r}")


__all__ = [
    "BEST_OFFLINE",
    "FUSIONS",
    "BiEncoderTeacher",
    "Candidate",
    "CrossEncoderTeacher",
    "EnsembleTeacher",
    "FirstStageTeacher",
    "PairScorer",
    "PointwiseLabel",
    "PointwiseTeacher",
    "QueryLikelihoodTeacher",
    "TrueFalseTeacher",
    "direct_scorer",
    "load_teacher",
    "rerank_run",
    "run_candidates",
    "teacher_config",
]
