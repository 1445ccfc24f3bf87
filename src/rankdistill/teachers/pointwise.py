"""LLM teachers that label one (query, document) pair at a time, through any `LLM` backend.

- `TrueFalseTeacher`: the monoT5 prompt and its next-token logits for "false"/"true", stored as InRanker
  does (`[false_logit, true_logit]`); the yes/no variant asks in words. Works with causal and seq2seq
  models alike: the backend decides where "the next token" is (after the prompt, or the decoder's first).
- `QueryLikelihoodTeacher`: UPR's mean log P(query | document).

How a label is computed depends on what the backend can do (`LLM.capabilities()`, probed once): each
teacher picks its method from it (`plan()`) and records it in `identity()` when it is not the one the
backend's own identity implies (in-process logits; a server's echo or its endpoint's top
log-probabilities), so labels of two methods never share a key and labels of the usual method keep theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rankdistill.llm.base import LLM
from rankdistill.teachers.base import TEACHERS, PointwiseLabel, PointwiseTeacher
from rankdistill.teachers.prompts import PromptTemplate, get_prompt, truncate_words

# 2: documents are always whitespace-flattened (prompts.truncate_words); were kept as-is when short
VERSION = 2


def _prompt(prompt: str | PromptTemplate) -> PromptTemplate:
    return prompt if isinstance(prompt, PromptTemplate) else get_prompt(prompt)


class _LLMTeacher(PointwiseTeacher):
    def __init__(
        self,
        llm: LLM,
        prompt: str | PromptTemplate,
        max_doc_words: int | None,
        batch_size: int,
        name: str | None,
    ):
        if not isinstance(llm, LLM):
            raise TypeError(
                f"{type(self).__name__} needs an rankdistill.llm.LLM backend, got {type(llm).__name__}"
            )
        self.llm = llm
        self.prompt = _prompt(prompt)
        self.max_doc_words = max_doc_words
        self.batch_size = batch_size
        if name:
            self.name = name

    @property
    def io_bound(self) -> bool:  # type: ignore[override]
        """As the LLM backend: a server's teacher waits on it."""
        return bool(getattr(self.llm, "io_bound", False))

    def prompt_identity(self) -> dict[str, Any]:
        return self.prompt.identity()

    def render(self, query: str, document: str) -> str:
        return self.prompt.render(query=query, document=truncate_words(document, self.max_doc_words))

    def close(self) -> None:
        self.llm.close()


def spellings(word: str) -> tuple[str, ...]:
    """How a model may write an answer word as its first token: lower case, capitalised and upper case,
    each bare and after a space ("true", " true", "True", " True", "TRUE", " TRUE")."""
    forms = (word.lower(), word.capitalize(), word.upper())
    return tuple(dict.fromkeys(f for w in forms for f in (w, " " + w)))


@dataclass(frozen=True)
class Plan:
    """How a teacher computes its labels on its backend: the method (see `rankdistill.llm.probe`), what
    goes in the label key, and the keyword the backend is called with."""

    method: str
    candidates: tuple = ()
    route: dict[str, str] = field(default_factory=dict)
    recorded: dict[str, Any] = field(default_factory=dict)


class TrueFalseTeacher(_LLMTeacher):
    """monoT5-style relevance: logits of the next token being `candidates[0]` (no) or `candidates[1]` (yes).

    The score is `true_logit - false_logit`, the log-odds of "true" over "false" (rank-equivalent to
    InRanker's softmax probability, without its ties at saturation); `logits` keeps the pair.

    `candidates`: two strings (the logit of each one's first token), or
    - "variants": each answer word in every spelling (`spellings`: " true", "true", "True", ...), the
      probability mass of those the model has as one token (local) or returns among its top tokens (a
      server) summed: log-sum-exp, so the pair stays a pair of log-probabilities up to one constant;
    - "auto" (the default): "variants" where the prompt goes through a chat template (the backend's
      ``chat`` option, or a server's /chat/completions, where an answer starts a turn: "True", "Yes"),
      else InRanker's single pair (" false", " true"; "false", "true" for seq2seq models).
    The method comes from the backend's capabilities: in-process logits; else the top log-probabilities of
    /completions, then of /chat/completions (`Capabilities.next_token_method`).
    """

    name = "truefalse"

    def __init__(
        self,
        llm: LLM,
        *,
        prompt: str | PromptTemplate = "monot5",
        candidates: Literal["auto", "variants"] | tuple[str, str] | list[str] | None = None,
        max_doc_words: int | None = 256,
        batch_size: int = 16,
        name: str | None = None,
    ):
        super().__init__(llm, prompt, max_doc_words, batch_size, name)
        if name is None and self.prompt.name.startswith("yes"):
            self.name = "yesno"  # a distinct name in store counts and exports (keys differ anyway)
        candidates = "auto" if candidates is None else candidates
        if isinstance(candidates, str):
            if candidates not in ("auto", "variants"):
                raise ValueError(f"candidates must be 'auto', 'variants' or two strings, got {candidates!r}")
            self.candidate_mode, self._given = candidates, None
        else:
            if len(candidates) != 2:
                raise ValueError(f"candidates must be two strings (false, true), got {candidates!r}")
            self.candidate_mode, self._given = "given", (str(candidates[0]), str(candidates[1]))
        self._plan: Plan | None = None

    @property
    def words(self) -> tuple[str, str]:
        return ("no", "yes") if self.prompt.name.startswith("yes") else ("false", "true")

    def plan(self) -> Plan:
        """The method and candidates on this backend (asks `LLM.capabilities()` once; a server is probed
        then). Raises a CapabilityError, one line, where the backend has no method."""
        if self._plan is None:
            caps = self.llm.capabilities()
            method = caps.next_token_method()
            chat = caps.chat_applied or method == "chat"
            if self._given is not None:
                cands: tuple = self._given
            elif self.candidate_mode == "variants" or chat:
                groups = []
                for word in self.words:
                    forms = spellings(word)
                    if caps.local:  # the vocabulary says which spellings are one token
                        forms = tuple(f for f in forms if self.llm.count_tokens(f) == 1)
                    if not forms:
                        raise ValueError(f"no spelling of {word!r} is one token of {caps.where}")
                    groups.append(forms)
                cands = tuple(groups)
            else:
                cands = default_candidates(self.prompt.name, self.llm)
            if all(isinstance(c, str) for c in cands):
                shown: Any = list(cands)
            else:
                shown = {"false": list(cands[0]), "true": list(cands[1]), "mass": "sum"}
            recorded: dict[str, Any] = {"candidates": shown}
            route: dict[str, str] = {}
            if method != caps.default_next_token_method:
                recorded["method"] = route["method"] = method
            self._plan = Plan(method, cands, route, recorded)
        return self._plan

    @property
    def candidates(self) -> tuple:
        """(false, true): strings, or tuples of spellings whose probability mass is summed."""
        return self.plan().candidates

    def identity(self) -> dict[str, Any]:
        return {
            "teacher": "truefalse",
            "version": VERSION,
            "llm": self.llm.identity(),
            **self.plan().recorded,
            "max_doc_words": self.max_doc_words,
        }

    def describe_method(self) -> str:
        """One line: how labels are computed on this backend (`rankdistill doctor`)."""
        plan = self.plan()
        where = {
            "logits": "in-process logits",
            "completions": "top log-probabilities of /completions",
            "chat": "top log-probabilities of /chat/completions",
        }[plan.method]
        if all(isinstance(c, str) for c in plan.candidates):
            return f"{where}; candidates {plan.candidates[0]!r} / {plan.candidates[1]!r}"
        return (
            f"{where}; probability mass of {', '.join(map(repr, plan.candidates[0]))} / "
            f"{', '.join(map(repr, plan.candidates[1]))}"
        )

    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        if not pairs:
            return []
        plan = self.plan()
        prompts = [self.render(q, d) for q, d in pairs]
        rows = self.llm.next_token_logits(prompts, list(plan.candidates), **plan.route)
        labels = []
        for row in rows:
            false_logit, true_logit = float(row[0]), float(row[1])
            labels.append(PointwiseLabel(true_logit - false_logit, [false_logit, true_logit]))
        return labels


def default_candidates(prompt_name: str, llm: LLM) -> tuple[str, str]:
    """The (false, true) next tokens a prompt expects. Causal tokenizers (GPT-2/Llama/Gemma style) spell
    the word after "Relevant:" with a leading space; seq2seq decoders (T5) start with the bare word."""
    seq2seq = bool(getattr(llm, "is_seq2seq", False))
    words = ("no", "yes") if prompt_name.startswith("yes") else ("false", "true")
    return words if seq2seq else (f" {words[0]}", f" {words[1]}")


class QueryLikelihoodTeacher(_LLMTeacher):
    """UPR: the mean log-probability of the query's tokens given a prompt holding the document."""

    name = "query-likelihood"

    def __init__(
        self,
        llm: LLM,
        *,
        prompt: str | PromptTemplate = "upr",
        max_doc_words: int | None = 256,
        batch_size: int = 16,
        name: str | None = None,
    ):
        super().__init__(llm, prompt, max_doc_words, batch_size, name)
        self._plan: Plan | None = None

    def plan(self) -> Plan:
        """The method on this backend: in-process logits; else a server's echo log-probabilities, then
        vLLM's prompt_logprobs (`Capabilities.continuation_method`); a CapabilityError, one line, where
        neither works."""
        if self._plan is None:
            caps = self.llm.capabilities()
            method = caps.continuation_method()
            recorded: dict[str, Any] = {}
            route: dict[str, str] = {}
            if method != caps.default_continuation_method:
                recorded["method"] = route["method"] = method
            # the query starts the model's answer in a chat turn, else it continues "Question:" after a space
            bare = bool(getattr(self.llm, "is_seq2seq", False)) or caps.chat_applied
            self._plan = Plan(method, ("bare",) if bare else ("space",), route, recorded)
        return self._plan

    def identity(self) -> dict[str, Any]:
        return {
            "teacher": "query-likelihood",
            "version": VERSION,
            "llm": self.llm.identity(),
            **self.plan().recorded,
            "max_doc_words": self.max_doc_words,
        }

    def describe_method(self) -> str:
        """One line: how labels are computed on this backend (`rankdistill doctor`)."""
        return {
            "logits": "in-process log-probabilities of the query",
            "echo": "echo log-probabilities of /completions (echo=true, logprobs)",
            "prompt_logprobs": "vLLM prompt_logprobs of /completions",
        }[self.plan().method]

    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        if not pairs:
            return []
        plan = self.plan()
        lead = "" if plan.candidates == ("bare",) else " "
        items = [(self.render(q, d), lead + q.strip()) for q, d in pairs]
        scores = self.llm.score_continuations(items, **plan.route)
        return [PointwiseLabel(float(s.mean_logprob)) for s in scores]


_LLM_SPEC = {"arg": "llm", "arg_help": "an LLM", "example": "llamacpp:gemma3-270m"}
TEACHERS.register("truefalse", TrueFalseTeacher, aliases=("true-false", "monot5"), **_LLM_SPEC)
TEACHERS.register("yesno", TrueFalseTeacher, aliases=("yes-no",), options={"prompt": "yes-no"}, **_LLM_SPEC)
TEACHERS.register("qlm", QueryLikelihoodTeacher, aliases=("query-likelihood", "upr"), **_LLM_SPEC)
