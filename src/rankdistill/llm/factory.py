"""`load_llm`: one entry point from a config (dict, pydantic model, YAML-friendly) or a short string.

load_llm("llamacpp:gemma3-270m")
load_llm("hf:/models/flan-t5-base")
load_llm("openai:http://127.0.0.1:8080/v1")          # model from the server's /models
load_llm("openai:http://127.0.0.1:8080/v1#gemma")   # ... or named after '#'
load_llm({"backend": "llamacpp", "model": "gemma3-270m", "n_ctx": 2048, "n_threads": 2})
load_llm("/path/model.gguf")  # backend guessed: .gguf -> llamacpp, folder -> hf, http(s) -> openai
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from rankdistill.errors import RankdistillError
from rankdistill.llm.base import LLM
from rankdistill.models import resolve_model

BACKENDS = ("llamacpp", "hf", "openai")
_BACKEND_ALIASES = {
    "llamacpp": "llamacpp",
    "llama.cpp": "llamacpp",
    "llama_cpp": "llamacpp",
    "gguf": "llamacpp",
    "hf": "hf",
    "transformers": "hf",
    "huggingface": "hf",
    "openai": "openai",
    "http": "openai",
    "vllm": "openai",
    "ollama": "openai",
}


class LLMConfig(BaseModel):
    """Which backend and model; every other field goes to the backend's constructor unchanged
    (e.g. n_ctx, n_threads for llamacpp; dtype, batch_size, device for hf; base_url, api_key,
    concurrency, max_retries, timeout, endpoint for openai)."""

    model_config = ConfigDict(extra="allow")

    backend: Literal["llamacpp", "hf", "openai"]
    model: str | None = None

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def parse_llm_spec(spec: str) -> LLMConfig:
    """A short string to a config: "backend:model", or a path / URL whose backend is obvious."""
    head, sep, rest = spec.partition(":")
    backend = _BACKEND_ALIASES.get(head.lower()) if sep else None
    if backend is None:  # no backend prefix ("http://..." has one: "http" means openai below)
        if spec.startswith(("http://", "https://")):
            backend, rest = "openai", spec
        else:
            p = Path(resolve_model(spec))
            if p.suffix.lower() == ".gguf":
                backend = "llamacpp"
            elif p.is_dir():
                backend = "hf"
            else:
                raise RankdistillError(
                    f"cannot tell which backend serves {spec!r}; write it as 'llamacpp:<gguf or alias>', "
                    f"'hf:<folder or hub name>' or 'openai:<base url>[#model]'"
                )
            rest = spec
    elif head.lower() == "http":  # "http://host:port/v1" split at the scheme
        rest = spec
    if backend == "openai":
        url, _, model = rest.partition("#")
        return LLMConfig(backend="openai", model=model or None, base_url=url or None)
    if not rest:
        raise RankdistillError(f"{spec!r} names no model after '{head}:'")
    return LLMConfig(backend=backend, model=rest)


def load_llm(spec: str | dict | LLMConfig | LLM, **overrides: Any) -> LLM:
    """Build an LLM from a spec; keyword overrides win over the spec's options. An LLM passes through."""
    if isinstance(spec, LLM):
        return spec
    if isinstance(spec, str):
        cfg = parse_llm_spec(spec)
    elif isinstance(spec, LLMConfig):
        cfg = spec
    elif isinstance(spec, dict):
        data = dict(spec)
        if "backend" in data:
            data["backend"] = _BACKEND_ALIASES.get(str(data["backend"]).lower(), data["backend"])
        try:
            cfg = LLMConfig.model_validate(data)
        except ValidationError as exc:
            raise RankdistillError(
                f"invalid LLM config {spec!r}: expected 'backend' one of {', '.join(BACKENDS)} and a 'model'; {exc}"
            ) from None
    else:
        raise TypeError(f"load_llm takes a string, dict, LLMConfig or LLM, not {type(spec).__name__}")
    opts = {**cfg.options(), **overrides}
    if cfg.backend == "llamacpp":
        from rankdistill.llm.llamacpp import LlamaCppLLM

        if not cfg.model:
            raise RankdistillError("the llamacpp backend needs 'model' (a GGUF path or alias)")
        return LlamaCppLLM(cfg.model, **opts)
    if cfg.backend == "hf":
        from rankdistill.llm.hf import HFLLM

        if not cfg.model:
            raise RankdistillError("the hf backend needs 'model' (a model folder, GGUF file or hub name)")
        return HFLLM(cfg.model, **opts)
    from rankdistill.llm.openai_compat import OpenAICompatLLM

    base_url = opts.pop("base_url", None)
    return OpenAICompatLLM(base_url, cfg.model, **opts)
