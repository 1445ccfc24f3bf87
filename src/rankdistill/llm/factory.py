"""`load_llm`: one entry point from a config (dict, pydantic model, YAML-friendly) or a short string.

load_llm("llamacpp:gemma3-270m")
load_llm("hf:/models/flan-t5-base")
load_llm("openai:http://127.0.0.1:8080/v1")          # model from the server's /models
load_llm("openai:http://127.0.0.1:8080/v1#gemma")   # ... or named after '#'
load_llm({"backend": "llamacpp", "model": "gemma3-270m", "n_ctx": 2048, "n_threads": 2})
load_llm("/path/model.gguf")  # backend guessed: .gguf -> llamacpp, folder -> hf, http(s) -> openai

Options in a spec string: ``<spec>?key=value&key2=value2``, the same keys a config dict takes:

load_llm("llamacpp:gemma3-270m?n_ctx=2048&n_threads=2")  # = the dict above
load_llm("openai:http://127.0.0.1:8000/v1#gemma?concurrency=64&timeout=600")
load_llm("openai:http://127.0.0.1:8000/v1?model=gemma&endpoint=chat")

- The options are what follows the *last* ``?``, so they come after everything else, ``#<model>``
  included (``<url>?k=v#model`` is refused with that advice). A body that itself holds a ``?`` (a base
  URL with its own query string) ends with a ``?`` when no options follow (``<url>?api-version=1?``), or
  goes in a dict (``base_url:``).
- Keys are the backend constructor's keyword parameters (for llamacpp also llama_cpp.Llama's); an unknown
  key is an error naming the spec, the key and the accepted keys. ``model`` (and openai's ``base_url``)
  may be options too, but not given twice.
- Values are typed by the constructor's annotations: int, float, bool (true/false/1/0/yes/no), none/null
  where None is allowed, a Literal's values (checked); percent-decoded (``%26`` for ``&``, ``%2B`` for
  ``+``, which separates ensemble members in teacher specs, ``%23`` for ``#``).
- A dict's (YAML's) other fields are the same options with the same checks; a string value there is typed
  as in a spec string.
- Label keys come from the backend's `identity()`, not from the spec: options that change outputs (model,
  endpoint, dtype; n_ctx through the listwise teacher) change keys, options that do not (concurrency,
  timeout, max_retries, api_key, n_threads) do not.

The grammar is `rankdistill.registry.split_options` and `typed_options`, shared with teacher specs.

A backend is an `LLM` subclass registered at the bottom of its module
(``LLM_BACKENDS.register("llamacpp", LlamaCppLLM, aliases=(...))``); its `spec_options`,
`spec_parameters`, `claims` and `from_config` say how a spec becomes one, so this module names no backend.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rankdistill.errors import RankdistillError
from rankdistill.llm.base import LLM, LLM_BACKENDS
from rankdistill.registry import SpecError, split_options, typed_options


class LLMConfig(BaseModel):
    """Which backend and model; every other field goes to the backend's constructor (e.g. n_ctx,
    n_threads for llamacpp; dtype, batch_size, device for hf; base_url, api_key, concurrency, max_retries,
    timeout, endpoint for openai), checked and typed by `llm_config` as a spec string's options are."""

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
    """A short string to a config: "backend:model", or a path / URL whose backend is obvious, with
    options after the last '?' (see the module's docstring)."""
    body, query = split_options(spec)
    head, sep, rest = body.partition(":")
    # "http://..." is a URL, not the backend "http" with the model "//..."
    name = head.lower() if sep and head.lower() in LLM_BACKENDS and not rest.startswith("//") else None
    if name is None:
        name = next((n for n in LLM_BACKENDS.names() if LLM_BACKENDS.get(n).claims(body)), None)
        if name is None:
            hints = [f"'{LLM_BACKENDS.get(n).spec_hint}'" for n in LLM_BACKENDS.names()]
            raise RankdistillError(
                f"cannot tell which backend serves {spec!r}; write it as "
                f"{', '.join(hints[:-1])}{' or ' if len(hints) > 1 else ''}{hints[-1]}"
            )
        rest = body
    backend = LLM_BACKENDS.get(name)
    fields = backend.spec_options(rest)
    try:
        options = _typed(name, query, f"LLM spec {spec!r}")
    except SpecError as exc:
        if "://" in body and "unknown option" in str(exc):  # perhaps the URL's own query string
            raise SpecError(
                f"{exc} (a base URL with its own query string ends with '?' when no options follow: "
                f"{body}?{'&'.join(f'{k}={v}' for k, v in query.items())}?)"
            ) from None
        raise
    for key, value in options.items():
        if fields.get(key) is not None:
            raise SpecError(f"LLM spec {spec!r}: {key!r} is given twice ({fields[key]!r} and {value!r})")
    fields = {**fields, **options}
    if backend.requires_model and not fields.get("model"):
        raise RankdistillError(f"{spec!r} names no model after '{head}:'")
    return LLMConfig(backend=name, **fields)


def _typed(backend: str, options: dict[str, Any], where: str) -> dict[str, Any]:
    """A backend's options checked and typed against its constructor (`LLM.spec_parameters`)."""
    if not options:
        return {}
    parameters, open_ = LLM_BACKENDS.get(backend).spec_parameters()
    return typed_options(options, parameters, where=where, what=f"the {backend} backend", open_=open_)


def llm_config(spec: str | dict | LLMConfig) -> LLMConfig:
    """The config a spec stands for, checked without loading anything (what `run --check` can afford):
    a string's options and a dict's (or LLMConfig's) other fields are the backend's constructor options,
    typed by it; an unknown one is a SpecError naming it."""
    if isinstance(spec, str):
        return parse_llm_spec(spec)
    if isinstance(spec, dict):
        try:
            cfg = LLMConfig.model_validate(spec)
        except ValidationError as exc:
            raise RankdistillError(
                f"invalid LLM config {spec!r}: expected 'backend' one of {', '.join(LLM_BACKENDS.names())} "
                f"and a 'model'; {exc}"
            ) from None
    elif isinstance(spec, LLMConfig):
        cfg = spec
    else:
        raise TypeError(f"an LLM spec is a string, dict or LLMConfig, not {type(spec).__name__}")
    where = f"LLM config {spec if isinstance(spec, dict) else spec.model_dump()!r}"
    return LLMConfig(backend=cfg.backend, model=cfg.model, **_typed(cfg.backend, cfg.options(), where))


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
