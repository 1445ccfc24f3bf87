"""Parsers for teacher answers that never crash: a permutation out of a listwise answer, a schema-checked
object out of a reasoning answer.

LLMs (small ones most of all) repeat identifiers, invent ones that were not offered, leave some out and
wrap the answer in chatter. The permutation parser repairs all of that and counts each repair, so a
labelling run can report how often the teacher's raw answer was unusable as is.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from rankdistill.validation import validation_error_lines

REPAIR_KINDS = ("duplicate", "unknown", "missing", "free_text", "no_answer")

_BRACKET_ID = re.compile(r"\[\s*([+-]?\d+)\s*\]")
_BARE_NUMBER = re.compile(r"(?<![\w.])([+-]?\d+)(?![\w]|\.\d)")
# What may sit between identifiers of a well-formed answer ("[2] > [1], [3]") without counting as free text.
_SEPARATORS = re.compile(r"[\s>,;|\[\]]+")
_MAX_JSON_STARTS = 256  # bounds the work on adversarial text full of braces


@dataclass
class PermutationParse:
    """A listwise answer read as a permutation of the n offered passages (0-based indices).

    `order` is always a full permutation of range(n): the identifiers the model gave, deduplicated and
    valid, then the ones it left out in their input order.
    """

    n: int
    answered: list[int]
    missing: list[int]
    duplicates: int = 0
    unknown: list[str] = field(default_factory=list)
    free_text: bool = False
    format: str = "none"  # "json", "brackets", "numbers" or "none"

    @property
    def order(self) -> list[int]:
        return self.answered + self.missing

    @property
    def repairs(self) -> dict[str, int]:
        """How many times each kind of repair was needed (0 when the answer was clean)."""
        return {
            "duplicate": self.duplicates,
            "unknown": len(self.unknown),
            "missing": len(self.missing),
            "free_text": int(self.free_text),
            "no_answer": int(self.n > 0 and not self.answered),
        }

    @property
    def repaired(self) -> bool:
        return any(self.repairs.values())


def _as_identifier(item: Any) -> int | None:
    """An identifier from a JSON item: 3, "3" or "[3]"; anything else is not one."""
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return item
    if isinstance(item, float) and item.is_integer() and abs(item) < 2**53:
        return int(item)
    if isinstance(item, str):
        m = re.fullmatch(r"\s*\[?\s*([+-]?\d+)\s*\]?\s*", item)
        if m:
            return int(m.group(1))
    return None


def _find_json(text: str, want: type) -> tuple[Any, int, int] | None:
    """The first JSON value of type `want` (dict or list) in the text, with its span."""
    decoder = json.JSONDecoder()
    opener = "{" if want is dict else "["
    start = text.find(opener)
    tries = 0
    while start != -1 and tries < _MAX_JSON_STARTS:
        tries += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            value, end = None, start
        if isinstance(value, want):
            return value, start, end
        start = text.find(opener, start + 1)
    return None


def _ranking_from_object(obj: dict) -> list | None:
    if isinstance(obj.get("ranking"), list):
        return obj["ranking"]
    for value in obj.values():  # tolerate another key name ("order", "permutation")
        if isinstance(value, list):
            return value
    return None


def parse_permutation(text: str, n: int) -> PermutationParse:
    """Read a ranking of passages [1]..[n] out of any text; never raises.

    Accepts a JSON object ({"ranking": [2, 1, 3]}), bracketed identifiers ("[2] > [1] > [3]") or, failing
    both, bare numbers ("2, 1, 3"). Duplicates are dropped (first mention wins), identifiers outside
    1..n are ignored and recorded, missing ones are recorded and appended in input order.
    """
    text = text if isinstance(text, str) else str(text)
    raw: list[Any] = []
    fmt = "none"
    free_text = False

    found = _find_json(text, dict)
    items = _ranking_from_object(found[0]) if found else None
    if found and items is not None:
        fmt = "json"
        raw = items
        _, start, end = found
        free_text = bool(text[:start].strip() or text[end:].strip())
    else:
        for name, pattern in (("brackets", _BRACKET_ID), ("numbers", _BARE_NUMBER)):
            matches = list(pattern.finditer(text))
            if matches:
                fmt = name
                raw = [m.group(1) for m in matches]
                rest = pattern.sub(" ", text)
                free_text = bool(_SEPARATORS.sub("", rest))
                break
        else:
            free_text = bool(text.strip())

    seen: set[int] = set()
    answered: list[int] = []
    unknown: list[str] = []
    duplicates = 0
    for item in raw:
        ident = _as_identifier(item)
        if ident is None or not 1 <= ident <= n:
            unknown.append(str(item)[:32])
            continue
        if ident - 1 in seen:
            duplicates += 1
            continue
        seen.add(ident - 1)
        answered.append(ident - 1)
    missing = [i for i in range(n) if i not in seen]
    return PermutationParse(n, answered, missing, duplicates, unknown, free_text, fmt)


def sum_repairs(parses: list[PermutationParse]) -> dict[str, int]:
    """Repairs summed over many answers, plus how many answers needed at least one."""
    total: Counter[str] = Counter({k: 0 for k in REPAIR_KINDS})
    for p in parses:
        total.update(p.repairs)
    out = dict(total)
    out["answers"] = len(parses)
    out["answers_repaired"] = sum(p.repaired for p in parses)
    return out


# --- structured (JSON + pydantic) answers -------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


@dataclass
class StructuredParse(Generic[M]):
    """A JSON answer checked against a pydantic model: `value` when valid, else `error` says why."""

    value: M | None
    error: str | None
    free_text: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None


def parse_structured(text: str, model: type[M], context: dict | None = None) -> StructuredParse[M]:
    """The first JSON object in the text validated as `model` (context goes to its validators); never raises.

    Text around the object (code fences, "Sure! Here is...") is tolerated and flagged as free text.
    """
    text = text if isinstance(text, str) else str(text)
    found = _find_json(text, dict)
    if found is None:
        return StructuredParse(None, "no JSON object found in the answer", bool(text.strip()))
    obj, start, end = found
    around = (text[:start] + text[end:]).replace("```json", "").replace("```", "")
    free_text = bool(around.strip())
    try:
        value = model.model_validate(obj, context=context)
    except ValidationError as exc:
        return StructuredParse(None, "; ".join(validation_error_lines(exc, "answer", 5)), free_text)
    except Exception as exc:  # a validator that raised something else is still just an invalid answer
        return StructuredParse(None, f"{type(exc).__name__}: {exc}", free_text)
    return StructuredParse(value, None, free_text)
