"""What a language model must offer teachers and the query generator: text out, log-probabilities in.

Backends (llama.cpp, transformers, OpenAI-compatible HTTP) implement this; teachers only see it.

A prompt is a text, or chat messages: a list of ``{"role": "system" | "user" | "assistant", "content":
text}`` (`Prompt`). Messages go to a server's /chat/completions as they are; a local backend renders
them with its chat template (`rankdistill.llm._common.render_turns`, the one place that does), the
template's special tokens parsed and the contents never. A last assistant message is the start of the
answer, which the model continues (a prefill: a server is asked with vLLM's ``continue_final_message``).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rankdistill.errors import RankdistillError
from rankdistill.llm._common import Messages, is_messages
from rankdistill.registry import Registry, parameters_of

if TYPE_CHECKING:
    from rankdistill.llm.probe import Capabilities

#: backends by name: each registers its class at the bottom of its module (`load_llm` looks them up)
LLM_BACKENDS = Registry(
    "LLM backend",
    modules=("rankdistill.llm.llamacpp", "rankdistill.llm.hf", "rankdistill.llm.openai_compat"),
)


#: what `generate` and `next_token_logits` take for each prompt: a text, or chat messages
Prompt = str | Messages


@dataclass
class Generation:
    text: str
    logprob: float = 0.0  # sum of the generated tokens' log-probabilities
    n_tokens: int = 0
    finish_reason: str = "stop"
    prompt_tokens: int = 0


@dataclass
class ContinuationScore:
    logprob: float  # sum over the continuation's tokens of log P(token | prompt, earlier tokens)
    n_tokens: int
    token_logprobs: list[float] = field(default_factory=list)

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(self.n_tokens, 1)


class LLM(ABC):
    """A model that writes text and gives log-probabilities. Implementations batch internally."""

    #: short backend name, e.g. "llamacpp", "hf", "openai"
    backend: str = "base"
    #: whether `generate(json_schema=...)` constrains the output to the schema (teachers then ask for JSON)
    supports_json_schema: bool = False
    #: whether a config must name a model (a server may pick its own)
    requires_model: bool = True
    #: what `model` is, for error messages
    model_hint: str = "a model name"
    #: how a short spec for this backend looks, for error messages
    spec_hint: str = "<backend>:<model>"
    #: whether calls wait on a server rather than compute in this process: labelling and query generation
    #: then compute the next batch while one is committed (`rankdistill.pipelining`); in-process backends
    #: would only compete with themselves for the cores
    io_bound: bool = False

    @classmethod
    def spec_options(cls, rest: str) -> dict[str, Any]:
        """The config fields of a short spec's part after "backend:" (by default, the model)."""
        return {"model": rest or None}

    @classmethod
    def spec_parameters(cls) -> tuple[dict[str, inspect.Parameter], bool]:
        """The options a spec string (``?key=value``) or config dict may set: the constructor's keyword
        parameters, typed by their annotations; and whether any other key is taken too (a ``**kwargs`` the
        backend cannot list). A backend whose constructor passes ``**kwargs`` on lists them here."""
        return parameters_of(cls)

    @classmethod
    def claims(cls, spec: str) -> bool:
        """Whether a spec without a backend prefix (a path, a URL) is obviously for this backend."""
        return False

    @classmethod
    def from_config(cls, model: str | None, **options: Any) -> LLM:
        """Build the backend from a config's model and its other fields (constructor keywords)."""
        if cls.requires_model and not model:
            raise RankdistillError(f"the {cls.backend} backend needs 'model' ({cls.model_hint})")
        return cls(model, **options)

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What makes this model's outputs what they are (model file/name, backend, precision); part of label keys."""

    @abstractmethod
    def generate(
        self,
        prompts: list[Prompt],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
    ) -> list[Generation]:
        """One completion per prompt (a text, or chat messages). `json_schema` constrains the output where
        the backend can."""

    @abstractmethod
    def score_continuations(self, pairs: list[tuple[str, str]]) -> list[ContinuationScore]:
        """log P(continuation | prompt) for each (prompt, continuation) pair."""

    @abstractmethod
    def next_token_logits(self, prompts: list[Prompt], candidates: list[str]) -> list[list[float]]:
        """Logit of the first token of each candidate string as the next token after each prompt (a text,
        or chat messages, whose last assistant message the next token continues)
        (e.g. candidates ["false", "true"] gives InRanker's logit pair). A candidate may also be a group
        of spellings (a tuple: (" true", "true", "True", ...)): the log-sum-exp of the logits of those
        that are one token, i.e. their probability mass summed (up to the same per-prompt constant)."""

    def capabilities(self) -> Capabilities:
        """What this backend can do (log-probabilities, chat, JSON output, context length), probed once
        and kept: `rankdistill.llm.probe`. Teachers pick their method from it."""
        from rankdistill.llm.probe import capabilities

        return capabilities(self)

    def count_tokens(self, text: str) -> int:  # backends override with their tokenizer
        return max(1, len(text) // 4)

    def count_prompt_tokens(self, prompt: Prompt) -> int:
        """The tokens of a prompt: `count_tokens` of a text; of chat messages, what the backend reads
        (local backends: the rendered template) or an estimate (the contents plus a few tokens a turn)."""
        if is_messages(prompt):
            return sum(self.count_tokens(m["content"]) + 4 for m in prompt)
        return self.count_tokens(prompt)

    def close(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing to free)
        """Free resources (files, connections, server processes)."""
