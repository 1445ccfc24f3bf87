"""Reasoning teacher (ReasoningRank, Ji et al. 2024): the LLM explains its relevance judgements.

- explicit reasoning: for one (query, document), how the document does or does not address the query,
  with a relevance grade;
- comparison reasoning: for a window of documents in the order a listwise teacher ranked them, why each
  is ranked above the next (so the reasons are tied to that permutation, pair by pair).

Answers are JSON objects checked against pydantic schemas. An invalid answer is sent back to the model
with the validation error, at most `max_retries` times; what is still invalid is recorded as a failure
(with every attempt), never dropped. Stored values carry the prompt versions, ready to be training
targets for a reasoning student (`rankdistill.labels.reasoning.reasoning_targets`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from rankdistill.llm.base import LLM
from rankdistill.teachers.listwise import supports_json_schema
from rankdistill.teachers.parsing import parse_structured
from rankdistill.teachers.prompts import get_prompt, truncate_words
from rankdistill.teachers.prompts.listwise import render_passages

log = logging.getLogger(__name__)

# 2: a refused answer's retry prompt gives pydantic errors without the 'Value error, ' prefix
VERSION = 2

_WORD = re.compile(r"[^\W\d_]{2,}")


def _real_text(value: str) -> str:
    value = " ".join(value.split())
    if len(_WORD.findall(value)) < 3:
        raise ValueError("write at least a short sentence (three words or more), not a placeholder")
    # small models loop; a reason that says one sentence three times is no training target
    sentences = Counter(s.strip().lower() for s in re.split(r"[.!?;]+", value) if len(s.split()) >= 3)
    if sentences and max(sentences.values()) >= 3:
        raise ValueError("the text repeats the same sentence; say it once")
    return value


class ExplicitReasoning(BaseModel):
    """How one document does or does not address the query, and a relevance grade 0-2."""

    model_config = ConfigDict(extra="ignore")

    reasoning: str = Field(max_length=3000)
    relevance: int = Field(ge=0, le=2)

    @field_validator("reasoning")
    @classmethod
    def _text(cls, value: str) -> str:
        return _real_text(value)


class Comparison(BaseModel):
    model_config = ConfigDict(extra="ignore")

    higher: int
    lower: int
    reason: str = Field(max_length=3000)

    @field_validator("reason")
    @classmethod
    def _text(cls, value: str) -> str:
        return _real_text(value)


class ComparisonReasoning(BaseModel):
    """Why each passage of a ranked window is above the next. Validated against context["pairs"], the
    (higher, lower) identifier pairs of the permutation, in order."""

    model_config = ConfigDict(extra="ignore")

    comparisons: list[Comparison]

    @model_validator(mode="after")
    def _follows_permutation(self, info: ValidationInfo) -> ComparisonReasoning:
        pairs = (info.context or {}).get("pairs")
        if pairs is None:
            return self
        if len(self.comparisons) != len(pairs):
            raise ValueError(
                f"expected exactly {len(pairs)} comparisons (one per pair {_pairs_text(pairs)}), "
                f"got {len(self.comparisons)}"
            )
        for i, (c, (hi, lo)) in enumerate(zip(self.comparisons, pairs, strict=True), start=1):
            if (c.higher, c.lower) != (hi, lo):
                raise ValueError(
                    f"comparison {i} must have higher={hi} and lower={lo}, got higher={c.higher} "
                    f"and lower={c.lower}"
                )
        return self


def _pairs_text(pairs: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"[{a}] above [{b}]" for a, b in pairs)


def explicit_schema() -> dict:
    """JSON schema handed to backends that constrain output (the pydantic model checks the rest)."""
    return {
        "type": "object",
        "properties": {"reasoning": {"type": "string"}, "relevance": {"type": "integer", "enum": [0, 1, 2]}},
        "required": ["reasoning", "relevance"],
    }


def comparison_schema(pairs: Sequence[tuple[int, int]]) -> dict:
    """JSON schema of a comparison answer: one item per pair, in order, with the pair's identifiers
    fixed, so a constrained backend only writes the reasons."""
    items = [
        {
            "type": "object",
            "properties": {"higher": {"const": hi}, "lower": {"const": lo}, "reason": {"type": "string"}},
            "required": ["higher", "lower", "reason"],
        }
        for hi, lo in pairs
    ]
    return {
        "type": "object",
        "properties": {"comparisons": {"type": "array", "prefixItems": items, "items": False}},
        "required": ["comparisons"],
    }


@dataclass
class Attempt:
    raw: str
    error: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class ReasoningResult:
    """One reasoning answer: the validated value, or a failure, with every attempt that led there."""

    type: str  # "explicit" or "comparison"
    value: dict[str, Any] | None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"

    @property
    def error(self) -> str | None:
        return None if self.ok or not self.attempts else self.attempts[-1].error

    def to_value(self, **extra: Any) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            **(self.value or {}),
            "error": self.error,
            "attempts": [asdict(a) for a in self.attempts],
            "llm_calls": len(self.attempts),
            "prompt_tokens": sum(a.prompt_tokens for a in self.attempts),
            "completion_tokens": sum(a.completion_tokens for a in self.attempts),
            **extra,
        }


class ReasoningTeacher:
    """Explicit and comparison reasoning from an LLM, schema-checked, with bounded retries.

    >>> teacher = ReasoningTeacher(load_llm("gemma3-270m"), max_retries=2)
    >>> [r.status for r in teacher.explain([("what is bm25", "BM25 is a ranking function ...")])]
    """

    name = "reasoning"

    def __init__(
        self,
        llm: LLM,
        *,
        max_retries: int = 2,
        max_passage_words: int | None = 150,
        constrained: bool | None = None,
        max_tokens: int = 160,  # per explicit answer, and per pair of a comparison answer
        retry_temperature: float = 0.7,
        seed: int = 0,
    ):
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.llm = llm
        self.max_retries = max_retries
        self.max_passage_words = max_passage_words
        self.constrained = supports_json_schema(llm) if constrained is None else constrained
        self.max_tokens = max_tokens
        self.retry_temperature = retry_temperature
        self.seed = seed
        self.explicit_prompt = get_prompt("reasoning-explicit")
        self.comparison_prompt = get_prompt("reasoning-comparison")
        self.retry_prompt = get_prompt("reasoning-retry")

    def identity(self) -> dict[str, Any]:
        return {
            "teacher": self.name,
            "version": VERSION,
            "llm": self.llm.identity(),
            "settings": {
                "max_retries": self.max_retries,
                "max_passage_words": self.max_passage_words,
                "constrained": self.constrained,
                "max_tokens": self.max_tokens,
                "seed": self.seed,
                "retry_temperature": self.retry_temperature,
            },
            "retry_prompt": self.retry_prompt.identity(),
        }

    def prompts(self) -> dict[str, dict[str, str]]:
        return {
            p.name: p.identity() for p in (self.explicit_prompt, self.comparison_prompt, self.retry_prompt)
        }

    # -- the two kinds of reasoning ---------------------------------------------------------------------
    def explain(self, items: Sequence[tuple[str, str]]) -> list[ReasoningResult]:
        """Explicit reasoning for (query, document text) pairs."""
        prompts = [
            self.explicit_prompt.render(query=q, document=truncate_words(d, self.max_passage_words))
            for q, d in items
        ]
        schema = explicit_schema()
        n = len(items)
        return self._solve(
            "explicit", prompts, ExplicitReasoning, [None] * n, [schema] * n, [self.max_tokens] * n
        )

    def compare(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[ReasoningResult]:
        """Comparison reasoning for (query, passage texts best first): shown as [1]..[k] in that order,
        one reason per adjacent pair ([1] above [2], [2] above [3], ...)."""
        prompts, contexts, schemas, budgets = [], [], [], []
        for query, texts in items:
            pairs = [(i, i + 1) for i in range(1, len(texts))]
            shown = [truncate_words(t, self.max_passage_words) for t in texts]
            prompts.append(
                self.comparison_prompt.render(
                    query=query,
                    num=str(len(texts)),
                    passages=render_passages(shown),
                    pairs=_pairs_text(pairs),
                    num_pairs=str(len(pairs)),
                )
            )
            contexts.append({"pairs": pairs})
            schemas.append(comparison_schema(pairs))
            budgets.append(self.max_tokens * max(1, len(pairs)))  # max_tokens per reason
        return self._solve("comparison", prompts, ComparisonReasoning, contexts, schemas, budgets)

    # -- ask, check, retry ------------------------------------------------------------------------------
    def _solve(
        self,
        kind: str,
        prompts: list[str],
        model: type[BaseModel],
        contexts: list[dict | None],
        schemas: list[dict],
        budgets: list[int],
    ) -> list[ReasoningResult]:
        results = [ReasoningResult(kind, None) for _ in prompts]
        pending = list(range(len(prompts)))
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            asked = []
            for i in pending:
                if attempt == 0:
                    asked.append(prompts[i])
                else:  # show the model its last answer and why it was rejected
                    last = results[i].attempts[-1]
                    asked.append(
                        self.retry_prompt.render(
                            prompt=prompts[i],
                            answer=last.raw.strip() or "(empty)",
                            error=last.error or "invalid",
                        )
                    )
            # one backend call per distinct schema and budget (windows of one size share theirs)
            groups: dict[tuple[str, int], list[int]] = {}
            for j, i in enumerate(pending):
                groups.setdefault((json.dumps(schemas[i], sort_keys=True), budgets[i]), []).append(j)
            still = []
            for (schema_key, budget), js in groups.items():
                gens = self.llm.generate(
                    [asked[j] for j in js],
                    max_tokens=budget,
                    # greedy first; a retry samples, since greedy decoding tends to repeat the same mistake
                    temperature=0.0 if attempt == 0 else self.retry_temperature,
                    seed=self.seed + attempt,
                    json_schema=json.loads(schema_key) if self.constrained else None,
                )
                for j, gen in zip(js, gens, strict=True):
                    i = pending[j]
                    parsed = parse_structured(gen.text, model, context=contexts[i])
                    error = parsed.error
                    if not parsed.ok and gen.finish_reason == "length":
                        error = f"{error} (the answer was cut off at {budget} tokens: write it shorter)"
                    results[i].attempts.append(
                        Attempt(
                            gen.text,
                            error,
                            gen.finish_reason,
                            gen.prompt_tokens or self.llm.count_tokens(asked[j]),
                            gen.n_tokens,
                        )
                    )
                    if parsed.ok:
                        results[i].value = parsed.value.model_dump()
                    else:
                        still.append(i)
            pending = sorted(still)
        return results


# -- labelling into the store ---------------------------------------------------------------------------


def comparison_windows(n: int, size: int) -> list[tuple[int, int]]:
    """Windows over the first n ranks that overlap by one, so every adjacent pair is explained once:
    n=10, size=5 gives (0,5), (4,9), (8,10)."""
    if size < 2:
        raise ValueError(f"comparison window must hold at least 2 documents, got {size}")
    spans, start = [], 0
    while start < n - 1:
        end = min(n, start + size)
        spans.append((start, end))
        start = end - 1
    return spans
