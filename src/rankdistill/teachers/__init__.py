"""Teachers: what a label is. Pointwise teachers score (query, document) pairs; `load_teacher` builds one
from a short spec string (CLI) or a dict (config files).

Spec strings:

- ``truefalse:<llm spec>`` (alias ``monot5:``): InRanker's [false, true] logit pair of the monoT5 prompt
- ``yesno:<llm spec>``: the same with the yes/no prompt
- ``qlm:<llm spec>`` (alias ``query-likelihood:``, ``upr:``): UPR's mean log P(query | document)
- ``cross-encoder:<model folder or hub name>``
- ``bi-encoder[:<model>]`` (``minilm`` alone means ``bi-encoder:minilm``)
- ``bm25`` / ``first-stage``: the first-stage scores of the run being reranked (ensembles only)
- ``rerank-api:<URL>`` (alias ``rerank:``): a rerank endpoint (Cohere, Jina, vLLM, TEI, `rankdistill
  serve`'s /v1/rerank); options api, model, api_key, batch_size, ... (see `RerankAPITeacher`)
- ``A+B+...``: an ensemble of members, each optionally weighted as ``0.3*A``; fusion ``minmax`` unless
  given (``load_teacher(spec, fusion="rrf")`` or ``--fusion`` on the CLI). ``bm25+minilm`` is the best
  offline teacher (no LLM needed).

``<llm spec>`` is whatever `rankdistill.llm.load_llm` takes (e.g. ``llamacpp:gemma3-270m``).

Options: ``<spec>?key=value&...`` (the grammar of `rankdistill.llm.factory`: after the last ``?``, typed
by the constructor, unknown keys refused). They go to the innermost spec they are written in: after an LLM
spec (``qlm:openai:<url>#<model>?concurrency=8``) they are the LLM's; a teacher without an LLM takes its
own (``minilm?batch_size=16``, ``cross-encoder:<folder>?max_length=256``); in ``A+B`` each member its own.
An LLM teacher's own options and an ensemble's go in the dict form, whose fields get the same checks.

Teacher types live in the `TEACHERS` registry: each registers itself at the bottom of its module with
what its spec syntax is (see `rankdistill.teachers.base.TEACHERS`), so this module names none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.llm import LLM, load_llm
from rankdistill.llm.factory import llm_config
from rankdistill.registry import SpecError, UnknownNameError, parameters_of, split_options, typed_options
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
from rankdistill.teachers.rerank_api import RerankAPIError, RerankAPITeacher

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
    """Parse a spec string into the dict form (`{"type": ..., ...}`), options typed; a dict's fields are
    checked and typed the same way (an unknown one is a SpecError naming it). Loads no model: an LLM
    spec inside is only parsed (`rankdistill.llm.factory.llm_config`)."""
    if isinstance(spec, Mapping):
        if "type" not in spec:
            raise ValueError(f"teacher config needs a 'type' field, got {dict(spec)}")
        return _checked_dict(dict(spec))
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
    body, options = split_options(text)
    kind, _, rest = body.partition(":")
    kind_l = kind.strip().lower()
    rest = rest.strip()
    try:
        entry = TEACHERS.entry(kind_l)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc}, or A+B for an ensemble (in spec {text!r})") from None
    info = entry.info
    if info.get("arg") == "llm":
        # options belong to the innermost spec they are written in: here the LLM's
        rest = text.partition(":")[2].strip()
        options = {}
    if "parse" in info:
        cfg = {"type": entry.name, **info["parse"](kind_l, rest)}
    elif "arg" not in info:
        cfg = {"type": entry.name}
    else:
        value = rest or info.get("default")
        if not value:
            example = f", e.g. {kind_l}:{info['example']}" if "example" in info else ""
            raise ValueError(
                f"teacher spec {text!r} needs {info.get('arg_help', info['arg'])}: {kind_l}:<{info['arg']}>{example}"
            )
        cfg = {"type": entry.name, info["arg"]: value}
    if "llm" in cfg:
        _check_llm(cfg["llm"], f"teacher spec {text!r}")
    typed = _typed(entry.name, options, f"teacher spec {text!r}")
    for key in typed:
        if key in cfg and key != "type" and not (key == info.get("arg") and not rest):
            raise SpecError(
                f"teacher spec {text!r}: {key!r} is given twice ({cfg[key]!r} and {typed[key]!r})"
            )
    return {**cfg, **typed}


def _typed(kind: str, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A teacher's options checked and typed against its constructor (an ensemble's: EnsembleTeacher's);
    an LLM teacher's `llm` and an ensemble's `members` pass as they are (checked by their own parsers)."""
    if not options:
        return {}
    target = EnsembleTeacher if kind == "ensemble" else TEACHERS.get(kind)
    parameters, open_ = parameters_of(target)
    own = [k for k in ("llm", "members") if parameters.pop(k, None) is not None]
    given = {k: v for k, v in options.items() if k not in own}
    typed = typed_options(given, parameters, where=where, what=f"the {kind} teacher", open_=open_)
    return {**{k: options[k] for k in own if k in options}, **typed}


def _check_llm(llm: Any, where: str) -> None:
    """An LLM spec inside a teacher's is parsed (not loaded) so `run --check` and the CLI refuse a bad one
    before any work; an LLM object passes."""
    if isinstance(llm, LLM):
        return
    try:
        llm_config(llm)
    except ValueError:
        raise
    except (RankdistillError, TypeError) as exc:
        raise SpecError(f"{where}: {exc}") from None


def _checked_dict(cfg: dict[str, Any]) -> dict[str, Any]:
    """A teacher config dict with its fields checked and typed (members of an ensemble each in turn)."""
    where = f"teacher config {cfg!r}"
    kind = str(cfg.pop("type"))
    if kind == "ensemble":
        members = cfg.get("members")
        if not isinstance(members, (list, tuple)) or not members:
            raise ValueError(f"{where}: an ensemble needs a list of 'members'")
        for member in members:
            if not isinstance(member, PointwiseTeacher):
                teacher_config(member)
        return {"type": kind, **_typed(kind, cfg, where)}
    try:
        name = TEACHERS.entry(kind.lower()).name
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} (in {where})") from None
    if "llm" in cfg:
        _check_llm(cfg["llm"], where)
    return {"type": kind, **_typed(name, cfg, where)}


def load_teacher(
    spec: str | Mapping[str, Any] | PointwiseTeacher, *, device: str | None = None, **overrides: Any
) -> PointwiseTeacher:
    """Build a pointwise teacher from a spec string or config dict; `overrides` set constructor options
    (e.g. ``batch_size=8``, ``fusion="rrf"``, ``max_doc_words=200``). `device` (e.g. "cuda", "cpu";
    None: each teacher's default, "auto") goes to every teacher, ensemble members included, that runs a
    model in process (the encoder teachers) and whose spec does not name its own (``minilm?device=cpu``);
    an LLM teacher's model runs where its LLM backend puts it (its own ``?device=`` option)."""
    if isinstance(spec, PointwiseTeacher):
        return spec
    cfg = {**teacher_config(spec), **{k: v for k, v in overrides.items() if v is not None}}
    kind = cfg.pop("type")
    if kind == "ensemble":
        members = [load_teacher(m, device=device) for m in cfg.pop("members")]
        return EnsembleTeacher(members, cfg.pop("weights", None), **cfg)
    cfg.pop("fusion", None)  # only ensembles fuse
    entry = TEACHERS.entry(kind)
    cfg = {**entry.info.get("options", {}), **cfg}
    if (
        device is not None
        and cfg.get("device") is None
        and "device" in parameters_of(TEACHERS.get(entry.name))[0]
    ):
        cfg["device"] = device
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
    "RerankAPIError",
    "RerankAPITeacher",
    "TEACHERS",
    "TrueFalseTeacher",
    "direct_scorer",
    "load_teacher",
    "rerank_run",
    "run_candidates",
    "teacher_config",
]
