"""Listwise teacher: an LLM ranks a list of passages; its answer is stored as a permutation plus the
pairwise preferences derived from it.

Two ways to spend the LLM:

- sliding window (RankGPT, Sun et al. 2023): rank the top `depth` candidates in windows of `window`
  passages, moving up by `step` from the bottom, so good passages bubble to the top; about
  (depth - window) / step + 1 calls a query.
- one pass (RRADistill, Choi et al. 2024): the pre-ranker's top-k and bottom-k candidates in one list,
  ranked once with no window; passages the LLM leaves out of its answer are recorded as hard negatives
  ("missing"). One call a query.
- first (FIRST, Reddy et al. 2024): the sliding window's windows, each ranked by the logits of the first
  token of the answer over the passage identifiers, one forward pass and no generated permutation. The
  answer's opening bracket is given ("[", a prefill) so that token is an identifier; identifiers are
  single tokens (numbers 1..9, else letters A..T). A server must return at least a window's worth of top
  log-probabilities (`Capabilities.first_token_method`); identifiers missing from them rank after the
  ones present, in input order, and are counted as missing.

Prompts (`prompt`): "plain" (this package's own, the default), "rankgpt" (RankGPT's chat turns: each
passage a user turn the assistant acknowledges) or "rankzephyr" (RankZephyr's system prompt and one user
message); sent as chat turns (`messages`: "auto", where the backend applies a chat template or talks to
/chat/completions) or as one text. A preset's name and version, and whether it went as turns, are part of
the label key; the plain prompt sent as one text keeps the keys it always had.

Queries of a batch advance window by window in lockstep, so every backend call carries one prompt per
query and backends can batch them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rankdistill.data.types import Document
from rankdistill.errors import RankdistillError
from rankdistill.llm.base import LLM, Generation, Prompt, is_messages
from rankdistill.teachers.parsing import PermutationParse, parse_permutation, sum_repairs
from rankdistill.teachers.prompts import PromptTemplate, get_prompt, truncate_words
from rankdistill.teachers.prompts.listwise import (
    IDENTIFIER_KINDS,
    PRESETS,
    ListwisePreset,
    passage_identifiers,
    ranking_schema,
    render_marked,
)
from rankdistill.utils import stable_hash

log = logging.getLogger(__name__)

METHODS = ("sliding_window", "one_pass", "first")
PARSER_VERSION = "1"  # bump when parse_permutation changes what it makes of an answer
#: what FIRST gives as the start of the answer, so its first generated token is an identifier
FIRST_PREFILL = "["


def supports_json_schema(llm: LLM) -> bool:
    """Whether the backend can constrain its output to a JSON schema (llama.cpp grammars, OpenAI
    `response_format`): the backend's own `supports_json_schema` attribute, never its name."""
    return bool(getattr(llm, "supports_json_schema", False))


@dataclass
class ListwiseItem:
    """One query's list for the teacher: documents in the pre-ranker's order (as shown to the LLM)."""

    query_id: str
    query: str
    doc_ids: list[str]
    texts: list[str]

    def __post_init__(self) -> None:
        if len(self.doc_ids) != len(self.texts):
            raise ValueError(
                f"query {self.query_id}: {len(self.doc_ids)} doc ids but {len(self.texts)} texts"
            )
        if len(set(self.doc_ids)) != len(self.doc_ids):
            raise ValueError(f"query {self.query_id}: a document id appears twice in the candidate list")


@dataclass
class WindowAnswer:
    """One LLM call: the window it saw (input order), what it answered and what the parser made of it."""

    doc_ids: list[str]
    order: list[str]  # the window after the answer: answered ids, then missing ones in input order
    missing: list[str]
    raw: str
    format: str
    repairs: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    # FIRST: each passage's identifier logit (input order; None where a server did not return it)
    scores: list[float | None] | None = None


@dataclass
class ListwiseLabel:
    """A query's listwise label: the permutation of its candidates and how it was obtained."""

    query_id: str
    query: str
    method: str
    doc_ids: list[str]  # candidates in input order
    order: list[int]  # permutation as indices into doc_ids, best first
    missing: list[int]  # indices the LLM never placed in any window (hard negatives in one-pass)
    windows: list[WindowAnswer] = field(default_factory=list)
    compute_ms: float = 0.0

    @property
    def permutation(self) -> list[str]:
        return [self.doc_ids[i] for i in self.order]

    @property
    def missing_ids(self) -> list[str]:
        return [self.doc_ids[i] for i in self.missing]

    @property
    def llm_calls(self) -> int:
        return len(self.windows)

    @property
    def prompt_tokens(self) -> int:
        return sum(w.prompt_tokens for w in self.windows)

    @property
    def completion_tokens(self) -> int:
        return sum(w.completion_tokens for w in self.windows)

    def repairs(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for w in self.windows:
            for k, v in w.repairs.items():
                total[k] = total.get(k, 0) + v
        total["answers"] = len(self.windows)
        total["answers_repaired"] = sum(any(w.repairs.values()) for w in self.windows)
        return total

    def preferences(self) -> list[tuple[str, str]]:
        """(better, worse) document id pairs implied by the permutation. Pairs of two missing documents
        are left out: their relative order is the input order, not the teacher's judgement."""
        missing = set(self.missing)
        out = []
        for a_pos, a in enumerate(self.order):
            for b in self.order[a_pos + 1 :]:
                if a in missing and b in missing:
                    continue
                out.append((self.doc_ids[a], self.doc_ids[b]))
        return out

    def scores(self) -> dict[str, float]:
        """Rank-based scores (n for the first, 1 for the last): the permutation as a run entry."""
        n = len(self.order)
        return {self.doc_ids[i]: float(n - r) for r, i in enumerate(self.order)}

    def to_value(self) -> dict[str, Any]:
        """The JSON value stored in the label store."""
        return {
            "method": self.method,
            "order": self.order,
            "permutation": self.permutation,
            "missing": self.missing_ids,
            "missing_index": self.missing,
            "preferences": [list(p) for p in self.preferences()],
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "repairs": self.repairs(),
            "windows": [_window_value(w) for w in self.windows],
            "compute_ms": self.compute_ms,
        }

    @classmethod
    def from_value(
        cls, query_id: str, query: str, doc_ids: Sequence[str], value: Mapping[str, Any]
    ) -> ListwiseLabel:
        """Rebuild a label from the store. The order is kept as indices, so it maps onto `doc_ids` even
        when the same texts were first labelled under other ids."""
        order = [int(i) for i in value["order"]]
        missing = [int(i) for i in value.get("missing_index", [])]
        windows = [WindowAnswer(**w) for w in value.get("windows", [])]
        return cls(
            query_id,
            query,
            value.get("method", ""),
            list(doc_ids),
            order,
            missing,
            windows,
            float(value.get("compute_ms", 0.0)),
        )


def _window_value(w: WindowAnswer) -> dict[str, Any]:
    value = asdict(w)
    if value["scores"] is None:  # generated answers store what they always stored
        del value["scores"]
    return value


@dataclass(frozen=True)
class FirstPlan:
    """How FIRST runs on a backend: where the identifier scores come from ("logits", or a server's
    "completions" / "chat" top log-probabilities), the identifiers, whether a text prompt is wrapped as
    a user turn (to give the answer's start after it), the keywords of `next_token_logits`, and what goes
    in the label key."""

    method: str
    identifiers: str
    wrap: bool
    route: dict[str, Any] = field(default_factory=dict)
    recorded: dict[str, Any] = field(default_factory=dict)


class ListwiseTeacher:
    """Ranks candidate lists with an LLM: by sliding window, in one pass, or by FIRST's first-token
    logits over sliding windows.

    >>> teacher = ListwiseTeacher(load_llm("gemma3-270m"), method="one_pass", top_k=10, bottom_k=10)
    >>> item = teacher.select("q1", "what is bm25", run.ranked("q1"), corpus)
    >>> label = teacher.rank([item])[0]
    >>> label.permutation, label.missing_ids, label.preferences()[:3]
    """

    name = "listwise"

    def __init__(
        self,
        llm: LLM,
        *,
        method: str = "sliding_window",
        window: int = 20,
        step: int = 10,
        depth: int = 100,
        top_k: int = 10,
        bottom_k: int = 10,
        max_passage_words: int | None = 100,
        constrained: bool | None = None,
        max_tokens: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        prompt: str | PromptTemplate | None = None,
        messages: bool | Literal["auto"] = "auto",
        identifiers: Literal["auto", "numbers", "letters"] = "auto",
    ):
        """`prompt`: "plain" (the default), "rankgpt", "rankzephyr", or a plain-form `PromptTemplate`
        (fields num, passages, query). `messages`: send the prompt as chat turns: "auto" (where the backend
        applies a chat template, a local one with ``chat`` on or a server with endpoint=chat; the plain
        prompt then goes as one user turn, as the backend wraps any text), true (an error where the
        backend has no chat template or /chat/completions) or false. `identifiers` (method "first"):
        "numbers" 1..n, "letters" A.., or "auto" (numbers where each is one token: a local vocabulary
        says, a server is assumed to have 1..9, else letters)."""
        if method not in METHODS:
            raise ValueError(f"listwise method {method!r}; expected one of {METHODS}")
        if window < 2 or step < 1 or step >= window:
            raise ValueError(
                f"sliding window needs window >= 2 and 1 <= step < window (got window={window}, step={step})"
            )
        if depth < 1 or top_k < 1 or bottom_k < 0:
            raise ValueError(
                f"depth and top_k must be positive, bottom_k >= 0 (got {depth}, {top_k}, {bottom_k})"
            )
        if isinstance(prompt, PromptTemplate) or prompt is None:
            preset_name = "plain"
        elif prompt in PRESETS:
            preset_name = prompt
        else:
            raise ValueError(
                f"listwise prompt {prompt!r}; expected one of {tuple(PRESETS)} or a PromptTemplate"
            )
        if messages not in ("auto", True, False, "true", "false"):
            raise ValueError(f"messages must be 'auto', true or false, not {messages!r}")
        if identifiers != "auto" and identifiers not in IDENTIFIER_KINDS:
            raise ValueError(f"identifiers must be 'auto' or one of {IDENTIFIER_KINDS}, not {identifiers!r}")
        if identifiers == "letters" and method != "first":
            raise ValueError("identifiers=letters is for method 'first'; answers are parsed as numbers")
        if method == "first" and window > 26:
            raise ValueError(
                f"method 'first' needs single-token identifiers, at most 26 a window (got window={window})"
            )
        self.llm = llm
        self.method = method
        self.window, self.step, self.depth = window, step, depth
        self.top_k, self.bottom_k = top_k, bottom_k
        self.max_passage_words = max_passage_words
        #: the prompt preset's name, and the preset (None for the plain prompt)
        self.preset_name = preset_name
        self.preset: ListwisePreset | None = PRESETS[preset_name]
        generates = method != "first"
        if constrained and not generates:
            raise ValueError("constrained is for the generating methods; method 'first' generates nothing")
        if constrained and self.preset is not None:
            raise ValueError(
                f"prompt {preset_name!r} asks for '[] > []' as its answer; constrained JSON output goes with "
                "prompt 'plain'"
            )
        if constrained is None:
            constrained = generates and self.preset is None and supports_json_schema(llm)
        self.constrained = bool(constrained)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.messages = {"true": True, "false": False}.get(messages, messages)  # type: ignore[arg-type]
        self.identifiers = identifiers
        #: the plain prompt's template (numbered passages; `_template` picks the letters one for FIRST)
        self.prompt: PromptTemplate | None = (
            prompt
            if isinstance(prompt, PromptTemplate)
            else (
                get_prompt("listwise-json" if self.constrained else "listwise")
                if self.preset is None
                else None
            )
        )
        self._custom = isinstance(prompt, PromptTemplate)
        self._turns_resolved: bool | None = None
        self._first: FirstPlan | None = None

    def identity(self) -> dict[str, Any]:
        """Everything that makes this teacher's labels what they are (part of every label key)."""
        settings: dict[str, Any] = {
            "method": self.method,
            "max_passage_words": self.max_passage_words,
            "constrained": self.constrained,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "parser": PARSER_VERSION,
        }
        if self.method in ("sliding_window", "first"):
            settings.update(window=self.window, step=self.step, depth=self.depth)
        else:
            settings.update(top_k=self.top_k, bottom_k=self.bottom_k, depth=self.depth, shuffle=self.shuffle)
        if self.method == "first":
            settings["first"] = self.first_plan().recorded
        if self.preset is not None or self.messages is True:
            # also in the prompt's identity; here too so a Ray worker that would send otherwise than the
            # driver keys is caught by the identity check
            settings["prompt"], settings["messages"] = self.preset_name, self._turns()
        n_ctx = getattr(self.llm, "n_ctx", None)
        if isinstance(n_ctx, int):
            settings["n_ctx"] = n_ctx  # passages are shortened further when a prompt would not fit
        return {"teacher": self.name, "llm": self.llm.identity(), "settings": settings}

    def prompt_identity(self) -> dict[str, Any]:
        """The prompt's part of every label key: the plain prompt's template identity (exactly what it
        always was when sent as one text), or the preset's name, version and hash; whether it went as
        chat turns, and with which identifiers when not numbers."""
        kind = self._identifier_kind()
        if self.preset is None:
            out: dict[str, Any] = dict(self._template(kind).identity())
            if self._turns():
                out["messages"] = True
        else:
            out = {**self.preset.identity(), "messages": self._turns()}
            if kind != "numbers":
                out["identifiers"] = kind
        if self._turns():
            template = getattr(self.llm, "chat_template", None)
            if template and "chat_template" not in self.llm.identity():
                # turns rendered with a template the backend's identity leaves out (its chat is off)
                out["chat_template"] = stable_hash(template, 16)
        return out

    # -- how the prompt goes to the backend --------------------------------------------------------------
    def _turns(self) -> bool:
        """Whether windows go as chat turns (see `messages`). Asks the backend's capabilities once where
        it must: messages=true is checked there, messages=auto on a preset follows the backend."""
        if self._turns_resolved is None:
            if self.messages is False or (self.messages == "auto" and self.preset is None):
                self._turns_resolved = False
            else:
                caps = self.llm.capabilities()
                if self.messages is True:
                    if caps.local and not getattr(self.llm, "chat_template", None):
                        raise RankdistillError(
                            f"messages=true, but {caps.where} has no chat template to render turns with: "
                            "pass the backend chat_template=<Jinja file>, or use messages=false"
                        )
                    if not caps.local and not caps.chat:
                        from rankdistill.llm.probe import CapabilityError

                        raise CapabilityError(
                            f"messages=true, but {caps.where} has no working /chat/completions "
                            f"({caps.details.get('chat', 'no')}); use messages=false"
                        )
                    self._turns_resolved = True
                else:
                    self._turns_resolved = bool(caps.chat_applied)
        return self._turns_resolved

    def _identifier_kind(self) -> str:
        return self.first_plan().identifiers if self.method == "first" else "numbers"

    def _template(self, kind: str) -> PromptTemplate:
        """The plain prompt's template for the identifier kind (letters: FIRST only)."""
        if kind == "letters":
            if self._custom:
                raise ValueError(
                    "a custom listwise PromptTemplate marks passages with numbers; use identifiers=numbers"
                )
            return get_prompt("listwise-letters")
        assert self.prompt is not None
        return self.prompt

    def first_plan(self) -> FirstPlan:
        """How FIRST runs on this backend (asks `LLM.capabilities()` once; a server is probed then). Raises
        a CapabilityError, one line, where a server returns too few top log-probabilities, and a
        ValueError where an identifier is not one token of a local model's vocabulary."""
        if self.method != "first":
            raise ValueError(f"first_plan is for method 'first', not {self.method!r}")
        if self._first is None:
            caps = self.llm.capabilities()
            n = min(self.window, self.depth)
            kind = self.identifiers
            if kind == "auto":
                # a local vocabulary says; on a server, 10.. are two tokens in many (Gemma, Llama 2, Qwen)
                numbers = passage_identifiers("numbers", n)
                one_token = all(self.llm.count_tokens(i) == 1 for i in numbers) if caps.local else n <= 9
                kind = "numbers" if one_token else "letters"
            ids = passage_identifiers(kind, n)
            if caps.local:
                bad = [i for i in ids if self.llm.count_tokens(i) != 1]
                if bad:
                    raise ValueError(
                        f"listwise method 'first' reads each identifier as one token, and {bad[:5]} are not "
                        f"one token of {caps.where}; use identifiers=letters or a window of at most 9"
                    )
            turns = self._turns()
            method = caps.first_token_method(n, chat=turns)
            wrap = turns or caps.chat_applied or method == "chat"
            recorded: dict[str, Any] = {"identifiers": kind, "prefill": FIRST_PREFILL}
            route: dict[str, Any] = {}
            if not caps.local:
                route = {"method": method, "missing": "nan"}
                if method != caps.default_next_token_method:
                    recorded["route"] = method
            self._first = FirstPlan(method, kind, wrap, route, recorded)
        return self._first

    def describe_method(self) -> str:
        """One line: how this teacher ranks on its backend (`rankdistill doctor`)."""
        if self.method != "first":
            how = "JSON constrained by the schema" if self.constrained else "free text, parsed leniently"
            return f"{self.method}: generation; {how}"
        plan = self.first_plan()
        where = {
            "logits": "in-process logits",
            "completions": "top log-probabilities of /completions",
            "chat": "top log-probabilities of /chat/completions",
        }[plan.method]
        return f"first: {where}, {plan.identifiers} as identifiers, one token a window"

    # -- choosing what the LLM sees ---------------------------------------------------------------------
    def select(
        self,
        query_id: str,
        query: str,
        ranked: Sequence[str | tuple[str, float]],
        corpus: Mapping[str, Document],
    ) -> ListwiseItem:
        """The candidate list of one query from the pre-ranker's ranking (best first): its top `depth`
        for the sliding window; its top_k and bottom_k (of the top `depth`) for the one-pass pipeline."""
        ids = [r if isinstance(r, str) else r[0] for r in ranked]
        ids = [d for d in dict.fromkeys(ids) if d in corpus][: self.depth]
        if self.method == "one_pass" and len(ids) > self.top_k + self.bottom_k:
            ids = ids[: self.top_k] + (ids[-self.bottom_k :] if self.bottom_k else [])
        if self.method == "one_pass" and self.shuffle:
            # position bias: a fixed, query-dependent shuffle so labels repeat across runs
            random.Random(f"{self.seed}:{query_id}").shuffle(ids)
        texts = [truncate_words(corpus[d].full_text, self.max_passage_words) for d in ids]
        return ListwiseItem(query_id, query, ids, texts)

    # -- ranking ----------------------------------------------------------------------------------------
    def _max_tokens(self, n: int) -> int:
        if self.method == "first":
            return 1
        if self.max_tokens is not None:
            return self.max_tokens
        # "[12] > " is about 5 tokens, "12, " about 3; leave room for a short preamble
        return 6 * n + 24

    def _min_items(self, n: int) -> int:
        # A sliding window must place every passage; the one-pass pipeline lets the LLM leave passages out
        # (they become hard negatives), but an empty list is no answer.
        return n if self.method == "sliding_window" else 1

    def _build(self, query: str, texts: list[str], ids: list[str], kind: str) -> Prompt:
        """One window's prompt: a text, or chat turns (`messages`)."""
        if self.preset is None:
            text = self._template(kind).render(
                num=str(len(texts)), passages=render_marked(texts, ids), query=query
            )
            return [{"role": "user", "content": text}] if self._turns() else text
        if self._turns():
            return self.preset.messages(query, texts, ids, kind)
        return self.preset.text(query, texts, ids, kind)

    def render(self, query: str, texts: list[str]) -> Prompt:
        """The prompt of one window as the backend gets it (FIRST's with the answer's start given), its
        passages shortened evenly when it would not fit the context."""
        kind = self._identifier_kind()
        ids = passage_identifiers(kind, len(texts))
        prompt = self._build(query, texts, ids, kind)
        n_ctx = getattr(self.llm, "n_ctx", None)
        if isinstance(n_ctx, int):
            budget = n_ctx - self._max_tokens(len(texts)) - 8
            n_tokens = self.llm.count_prompt_tokens(prompt)
            words = max(len(t.split()) for t in texts)
            while n_tokens > budget and words > 8:
                words = max(8, int(words * 0.9 * budget / n_tokens))
                short = [truncate_words(t, words) for t in texts]
                prompt = self._build(query, short, ids, kind)
                n_tokens = self.llm.count_prompt_tokens(prompt)
        if self.method == "first":
            prompt = self._prefill(prompt)
        return prompt

    def _prefill(self, prompt: Prompt) -> Prompt:
        """FIRST's prompt: the answer's opening bracket given, as the start of the assistant's turn (chat
        turns, or a text the backend puts in a turn) or after the text."""
        if is_messages(prompt):
            return [*prompt, {"role": "assistant", "content": FIRST_PREFILL}]
        if self.first_plan().wrap:
            return [{"role": "user", "content": prompt}, {"role": "assistant", "content": FIRST_PREFILL}]
        return prompt + (" " if prompt.endswith(":") else "\n") + FIRST_PREFILL

    def _ask(
        self, requests: list[tuple[str, list[str]]]
    ) -> list[tuple[PermutationParse, Generation, Prompt, list[float | None] | None]]:
        """One LLM call per (query, window texts); calls of equal window size go to the backend together."""
        if self.method == "first":
            return self._ask_first(requests)
        prompts = [self.render(query, texts) for query, texts in requests]
        out: list[Any] = [None] * len(requests)
        by_size: dict[int, list[int]] = {}
        for i, (_, texts) in enumerate(requests):
            by_size.setdefault(len(texts), []).append(i)
        # a base model tends to go on with another prompt after its answer
        stop = (
            ["Search query:", "I will give you"]
            if self.preset is None
            else ["Search Query:", "I will provide you"]
        )
        for n, idx in by_size.items():
            gens = self.llm.generate(
                [prompts[i] for i in idx],
                max_tokens=self._max_tokens(n),
                temperature=0.0,
                seed=self.seed,
                json_schema=ranking_schema(n, self._min_items(n)) if self.constrained else None,
                stop=None if self.constrained else stop,
            )
            for i, gen in zip(idx, gens, strict=True):
                out[i] = (parse_permutation(gen.text, n), gen, prompts[i], None)
        return out

    def _ask_first(
        self, requests: list[tuple[str, list[str]]]
    ) -> list[tuple[PermutationParse, Generation, Prompt, list[float | None]]]:
        """FIRST: one next-token call per window, the identifiers ordered by their logits (ties: input
        order); those a server did not return go last, in input order, counted as missing."""
        plan = self.first_plan()
        prompts = [self.render(query, texts) for query, texts in requests]
        out: list[Any] = [None] * len(requests)
        by_size: dict[int, list[int]] = {}
        for i, (_, texts) in enumerate(requests):
            by_size.setdefault(len(texts), []).append(i)
        for n, idx in by_size.items():
            ids = passage_identifiers(plan.identifiers, n)
            rows = self.llm.next_token_logits([prompts[i] for i in idx], ids, **plan.route)
            for i, row in zip(idx, rows, strict=True):
                scores = [float(v) if v is not None and math.isfinite(v) else None for v in row]
                present = [j for j in range(n) if scores[j] is not None]
                answered = sorted(present, key=lambda j: (-scores[j], j))  # type: ignore[operator]
                parsed = PermutationParse(
                    n=n, answered=answered, missing=[j for j in range(n) if scores[j] is None], format="first"
                )
                text = " > ".join(f"[{ids[j]}]" for j in answered)
                gen = Generation(
                    text=text,
                    n_tokens=1,
                    finish_reason="first_token",
                    prompt_tokens=self.llm.count_prompt_tokens(prompts[i]),
                )
                out[i] = (parsed, gen, prompts[i], scores)
        return out

    def _window_answer(
        self,
        ids: list[str],
        parsed: PermutationParse,
        gen: Generation,
        prompt: Prompt,
        scores: list[float | None] | None = None,
    ) -> WindowAnswer:
        return WindowAnswer(
            doc_ids=list(ids),
            order=[ids[i] for i in parsed.order],
            missing=[ids[i] for i in parsed.missing],
            raw=gen.text,
            format=parsed.format,
            repairs=parsed.repairs,
            prompt_tokens=gen.prompt_tokens or self.llm.count_prompt_tokens(prompt),
            completion_tokens=gen.n_tokens or (self.llm.count_tokens(gen.text) if gen.text else 0),
            finish_reason=gen.finish_reason,
            scores=scores,
        )

    def rank(self, items: Sequence[ListwiseItem]) -> list[ListwiseLabel]:
        """Rank every item's list; queries advance in lockstep (one backend call per round)."""
        start = time.perf_counter()
        states = []
        for item in items:
            n = len(item.doc_ids)
            windows = [(0, n)] if self.method == "one_pass" else sliding_windows(n, self.window, self.step)
            states.append(
                {"item": item, "ranking": list(range(n)), "windows": windows, "answers": [], "placed": set()}
            )
        rounds = max((len(s["windows"]) for s in states), default=0)
        for r in range(rounds):
            active = [s for s in states if r < len(s["windows"]) and len(s["item"].doc_ids) > 1]
            if not active:
                continue
            requests = []
            for s in active:
                lo, hi = s["windows"][r]
                requests.append((s["item"].query, [s["item"].texts[i] for i in s["ranking"][lo:hi]]))
            try:
                results = self._ask(requests)
            except Exception as exc:
                qids = [s["item"].query_id for s in active]
                raise RankdistillError(f"listwise teacher failed on queries {qids[:10]}: {exc}") from exc
            for s, (parsed, gen, prompt, scores) in zip(active, results, strict=True):
                lo, hi = s["windows"][r]
                window_idx = s["ranking"][lo:hi]
                s["ranking"][lo:hi] = [window_idx[i] for i in parsed.order]
                s["placed"].update(window_idx[i] for i in parsed.answered)
                ids = [s["item"].doc_ids[i] for i in window_idx]
                s["answers"].append(self._window_answer(ids, parsed, gen, prompt, scores))
        per_query_ms = (time.perf_counter() - start) * 1000 / max(len(items), 1)
        labels = []
        for s in states:
            item = s["item"]
            missing = [i for i in range(len(item.doc_ids)) if i not in s["placed"]] if s["answers"] else []
            labels.append(
                ListwiseLabel(
                    item.query_id,
                    item.query,
                    self.method,
                    list(item.doc_ids),
                    s["ranking"],
                    missing,
                    s["answers"],
                    per_query_ms,
                )
            )
        return labels


def sliding_windows(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """RankGPT's windows over n candidates, bottom first: [(n-w, n), (n-w-s, n-s), ..., (0, ...)]."""
    if n <= 0:
        return []
    spans = []
    end = n
    while True:
        lo = max(0, end - window)
        spans.append((lo, end))
        if lo == 0:
            return spans
        end -= step


def summarize(labels: Sequence[ListwiseLabel]) -> dict[str, Any]:
    """Per-query cost and parse-repair rates of a set of labels."""
    n = max(len(labels), 1)
    windows = [w for lab in labels for w in lab.windows]
    repairs = sum_repairs([])  # zeroed counters
    for w in windows:
        for k, v in w.repairs.items():
            repairs[k] = repairs.get(k, 0) + v
    repairs["answers"] = len(windows)
    repairs["answers_repaired"] = sum(any(w.repairs.values()) for w in windows)
    docs_shown = sum(len(w.doc_ids) for w in windows)
    return {
        "queries": len(labels),
        "llm_calls_per_query": sum(lab.llm_calls for lab in labels) / n,
        "prompt_tokens_per_query": sum(lab.prompt_tokens for lab in labels) / n,
        "completion_tokens_per_query": sum(lab.completion_tokens for lab in labels) / n,
        "seconds_per_query": sum(lab.compute_ms for lab in labels) / 1000 / n,
        "repairs": repairs,
        "repair_rate": repairs["answers_repaired"] / max(len(windows), 1),
        "missing_rate": repairs.get("missing", 0) / max(docs_shown, 1),
        "duplicate_rate": repairs.get("duplicate", 0) / max(docs_shown, 1),
        "unknown_per_answer": repairs.get("unknown", 0) / max(len(windows), 1),
        "free_text_rate": repairs.get("free_text", 0) / max(len(windows), 1),
        "no_answer_rate": repairs.get("no_answer", 0) / max(len(windows), 1),
        "truncated_rate": sum(w.finish_reason == "length" for w in windows) / max(len(windows), 1),
    }
