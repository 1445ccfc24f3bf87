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

Teacher types live in the `TEACHERS` registry: each registers itself at the bottom of its module with
what its spec syntax is (see `rankdistill.teachers.base.TEACHERS`), so this module names none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rankdistill.llm import load_llm
from rankdistill.registry import UnknownNameError
from rankdistill.teachers.base import (
    MISSING_DOCS,
    TEACHERS,
    Candidate,
    PairScorer,
    PointwiseLabel,
    PointwiseTeacher,
    RequestScorer,
    direct_scorer,
    rerank_run,
    run_candidates,
)
from rankdistill.teachers.encoders import BiEncoderTeacher, CrossEncoderTeacher
from rankdistill.teachers.ensemble import FUSIONS, EnsembleTeacher, FirstStageTeacher
from rankdistill.teachers.pointwise import QueryLikelihoodTeacher, TrueFalseTeacher

#: the best teacher that needs no LLM: BM25 fused with all-MiniLM-L6-v2 cosine, per-query min-max
BEST_OFFLINE = "bm25+minilm"


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
    try:
        entry = TEACHERS.entry(kind_l)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc}, or A+B for an ensemble (in spec {text!r})") from None
    info = entry.info
    if "parse" in info:
        return {"type": entry.name, **info["parse"](kind_l, rest)}
    if "arg" not in info:
        return {"type": entry.name}
    value = rest or info.get("default")
    if not value:
        example = f", e.g. {kind_l}:{info['example']}" if "example" in info else ""
        raise ValueError(
            f"teacher spec {text!r} needs {info.get('arg_help', info['arg'])}: {kind_l}:<{info['arg']}>{example}"
        )
    return {"type": entry.name, info["arg"]: value}


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
    entry = TEACHERS.entry(kind)
    cfg = {**entry.info.get("options", {}), **cfg}
    if "llm" in cfg:
        cfg["llm"] = load_llm(cfg["llm"])  # an LLM passes through
    return TEACHERS.get(entry.name)(**cfg)


__all__ = [
    "BEST_OFFLINE",
    "FUSIONS",
    "BiEncoderTeacher",
    "Candidate",
    "CrossEncoderTeacher",
    "EnsembleTeacher",
    "FirstStageTeacher",
    "MISSING_DOCS",
    "PairScorer",
    "PointwiseLabel",
    "PointwiseTeacher",
    "QueryLikelihoodTeacher",
    "RequestScorer",
    "TEACHERS",
    "TrueFalseTeacher",
    "direct_scorer",
    "load_teacher",
    "rerank_run",
    "run_candidates",
    "teacher_config",
]
