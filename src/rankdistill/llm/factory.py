"""`load_llm`: one entry point from a config (dict, pydantic model, YAML-friendly) or a short string.

load_llm("llamacpp:gemma3-270m")
load_llm("hf:/models/flan-t5-base")
load_llm("openai:http://127.0.0.1:8080/v1")          # model from the server's /models
load_llm("openai:http://127.0.0.1:8080/v1#gemma")   # ... or named after '#'
load_llm({"backend": "llamacpp", "model": "gemma3-270m", "n_ctx": 2048, "n_threads": 2})
load_llm("/path/model.gguf")  # backend guessed: .gguf -> llamacpp, folder -> hf, http(s) -> openai

A backend is an `LLM` subclass registered at the bottom of its module
(``LLM_BACKENDS.register("llamacpp", LlamaCppLLM, aliases=(...))``); its `spec_options`, `claims` and
`from_config` say how a spec becomes one, so this module names no backend.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rankdistill.errors import RankdistillError
from rankdistill.llm.base import LLM, LLM_BACKENDS


class LLMConfig(BaseModel):
    """Which backend and model; every other field goes to the backend's constructor unchanged
    (e.g. n_ctx, n_threads for llamacpp; dtype, batch_size, device for hf; base_url, api_key,
    concurrency, max_retries, timeout, endpoint for openai)."""

    model_config = ConfigDict(extra="allow")

    backend: str
    model: str | None = None

    @field_validator("backend")
    @classmethod
    def _registered(cls, backend: str) -> str:
        """An alias ("vllm", "transformers") becomes its backend's name; an unknown one lists the known."""
        return LLM_BACKENDS.canonical(str(backend).lower())

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def parse_llm_spec(spec: str) -> LLMConfig:
    """A short string to a config: "backend:model", or a path / URL whose backend is obvious."""
    head, sep, rest = spec.partition(":")
    # "http://..." is a URL, not the backend "http" with the model "//..."
    name = head.lower() if sep and head.lower() in LLM_BACKENDS and not rest.startswith("//") else None
    if name is None:
        name = next((n for n in LLM_BACKENDS.names() if LLM_BACKENDS.get(n).claims(spec)), None)
        if name is None:
            hints = [f"'{LLM_BACKENDS.get(n).spec_hint}'" for n in LLM_BACKENDS.names()]
            raise RankdistillError(
                f"cannot tell which backend serves {spec!r}; write it as "
                f"{', '.join(hints[:-1])}{' or ' if len(hints) > 1 else ''}{hints[-1]}"
            )
        rest = spec
    backend = LLM_BACKENDS.get(name)
    options = backend.spec_options(rest)
    if backend.requires_model and not options.get("model"):
        raise RankdistillError(f"{spec!r} names no model after '{head}:'")
    return LLMConfig(backend=name, **options)


def llm_config(spec: str | dict | LLMConfig) -> LLMConfig:
    """The config a spec stands for, checked without loading anything (what `run --check` can afford)."""
    if isinstance(spec, LLMConfig):
        return spec
    if isinstance(spec, str):
        return parse_llm_spec(spec)
    if isinstance(spec, dict):
        try:
            return LLMConfig.model_validate(spec)
        except ValidationError as exc:
            raise RankdistillError(
                f"invalid LLM config {spec!r}: expected 'backend' one of {', '.join(LLM_BACKENDS.names())} "
                f"and a 'model'; {exc}"
            ) from None
    raise TypeError(f"an LLM spec is a string, dict or LLMConfig, not {type(spec).__name__}")


def context_window(spec: str | dict | LLMConfig) -> int | None:
    """The context window (tokens) a spec will load with, when it can be known without loading: the
    spec's own `n_ctx` or `max_length`, else the backend's default `n_ctx`. None when only the model
    knows (transformers' position limit, a server's setting)."""
    import inspect

    cfg = llm_config(spec)
    options = cfg.options()
    for key in ("n_ctx", "max_length"):
        if isinstance(options.get(key), int):
            return int(options[key])
    default = inspect.signature(LLM_BACKENDS.get(cfg.backend).__init__).parameters.get("n_ctx")
    return default.default if default is not None and isinstance(default.default, int) else None


def load_llm(spec: str | dict | LLMConfig | LLM, **overrides: Any) -> LLM:
    """Build an LLM from a spec; keyword overrides win over the spec's options. An LLM passes through."""
    if isinstance(spec, LLM):
        return spec
    if not isinstance(spec, (str, dict, LLMConfig)):
        raise TypeError(f"load_llm takes a string, dict, LLMConfig or LLM, not {type(spec).__name__}")
    cfg = llm_config(spec)
    return LLM_BACKENDS.get(cfg.backend).from_config(cfg.model, **{**cfg.options(), **overrides})
