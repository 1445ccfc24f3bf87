"""LLM teachers that label one (query, document) pair at a time, through any `LLM` backend.

- `TrueFalseTeacher`: the monoT5 prompt and its next-token logits for "false"/"true", stored as InRanker
  does (`[false_logit, true_logit]`); the yes/no variant asks in words. Works with causal and seq2seq
  models alike: the backend decides where "the next token" is (after the prompt, or the decoder's first).
- `QueryLikelihoodTeacher`: UPR's mean log P(query | document).
"""

from __future__ import annotations

from typing import Any

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

    def prompt_identity(self) -> dict[str, Any]:
        return self.prompt.identity()

    def render(self, query: str, document: str) -> str:
        return self.prompt.render(query=query, document=truncate_words(document, self.max_doc_words))

    def close(self) -> None:
        self.llm.close()


class TrueFalseTeacher(_LLMTeacher):
    """monoT5-style relevance: logits of the next token being `candidates[0]` (no) or `candidates[1]` (yes).

    The score is `true_logit - false_logit`, the log-odds of "true" over "false" (rank-equivalent to
    InRanker's softmax probability, without its ties at saturation); `logits` keeps the pair.
    """

    name = "truefalse"

    def __init__(
        self,
        llm: LLM,
        *,
        prompt: str | PromptTemplate = "monot5",
        candidates: tuple[str, str] | list[str] | None = None,
        max_doc_words: int | None = 256,
        batch_size: int = 16,
        name: str | None = None,
    ):
        super().__init__(llm, prompt, max_doc_words, batch_size, name)
        if name is None and self.prompt.name.startswith("yes"):
            self.name = "yesno"  # a distinct name in store counts and exports (keys differ anyway)
        if candidates is None:
            candidates = default_candidates(self.prompt.name, llm)
        if len(candidates) != 2:
            raise ValueError(f"candidates must be two strings (false, true), got {candidates!r}")
        self.candidates = (str(candidates[0]), str(candidates[1]))

    def identity(self) -> dict[str, Any]:
        return {
            "teacher": "truefalse",
            "version": VERSION,
            "llm": self.llm.identity(),
            "candidates": list(self.candidates),
            "max_doc_words": self.max_doc_words,
        }

    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        if not pairs:
            return []
        prompts = [self.render(q, d) for q, d in pairs]
        rows = self.llm.next_token_logits(prompts, list(self.candidates))
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

    def identity(self) -> dict[str, Any]:
        return {
            "teacher": "query-likelihood",
            "version": VERSION,
            "llm": self.llm.identity(),
            "max_doc_words": self.max_doc_words,
        }

    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        if not pairs:
            return []
        seq2seq = bool(getattr(self.llm, "is_seq2seq", False))
        items = [(self.render(q, d), q.strip() if seq2seq else " " + q.strip()) for q, d in pairs]
        return [PointwiseLabel(float(s.mean_logprob)) for s in self.llm.score_continuations(items)]


_LLM_SPEC = {"arg": "llm", "arg_help": "an LLM", "example": "llamacpp:gemma3-270m"}
TEACHERS.register("truefalse", TrueFalseTeacher, aliases=("true-false", "monot5"), **_LLM_SPEC)
TEACHERS.register("yesno", TrueFalseTeacher, aliases=("yes-no",), options={"prompt": "yes-no"}, **_LLM_SPEC)
TEACHERS.register("qlm", QueryLikelihoodTeacher, aliases=("query-likelihood", "upr"), **_LLM_SPEC)
