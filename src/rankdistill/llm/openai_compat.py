"""Any OpenAI-compatible HTTP server: vLLM, Ollama, llama.cpp's servers, OpenAI itself.

Log-probabilities come from the legacy `/completions` endpoint: continuation scoring sends prompt +
continuation with `echo` and `logprobs` and reads the continuation's tokens by `text_offset` (or, on vLLM,
with `prompt_logprobs`: ``method="prompt_logprobs"``); next-token "logits" are the top log-probabilities
of one generated token (log-probabilities differ from logits by a per-prompt constant, so differences and
softmaxes over candidates are the same). Servers that cannot echo (OpenAI's chat models) can still
generate and give top log-probabilities through `/chat/completions` (``method="chat"``).

A prompt given as chat messages always goes to `/chat/completions` as it is; a last assistant message
is sent for the model to continue (vLLM's ``continue_final_message``; servers that ignore the field open a
new turn instead).

What the server can do is probed once (`capabilities()`, `rankdistill.llm.probe`); teachers pick their
method from it and pass it on as ``method=``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from rankdistill.errors import RankdistillError
from rankdistill.http_json import JSONClient, env_first
from rankdistill.llm._common import check_messages, cut_at_stop, is_messages, logsumexp
from rankdistill.llm.base import LLM, LLM_BACKENDS, ContinuationScore, Generation, Prompt

T = TypeVar("T")
R = TypeVar("R")


class LLMServerError(RankdistillError):
    """The server failed, refused, or cannot give what was asked (e.g. log-probabilities)."""


class OpenAICompatLLM(LLM):
    """A model behind an OpenAI-compatible HTTP API.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``; default $RANKDISTILL_LLM_BASE_URL, then $OPENAI_BASE_URL.
        model: model name sent with each request; default $RANKDISTILL_LLM_MODEL, else the first model
            the server lists under /models.
        api_key: default $RANKDISTILL_LLM_API_KEY, then $OPENAI_API_KEY (sent as a Bearer token).
        endpoint: "completions" (base models; needed for continuation scoring) or "chat".
        timeout: seconds to wait for a response (connect timeout is min(timeout, 10)).
        max_retries: retries after a 408/409/425/429/5xx answer or a connection error, with exponential
            backoff (`backoff` * 2^attempt seconds, jittered, at most `max_backoff`; Retry-After wins):
            `rankdistill.http_json.JSONClient`.
        concurrency: requests in flight at once (also across the batches a labelling run keeps in flight).
        top_logprobs: how many top tokens to ask for in `next_token_logits` (OpenAI allows 5 on
            completions and 20 on chat; vLLM 20 unless raised with --max-logprobs).
        json_mode: how `json_schema` is sent: "auto" (the first of the three below that the probe saw
            the server obey, else none), "response_format" (OpenAI, vLLM, Ollama, llama.cpp's C++
            server), "grammar" (llama-cpp-python's server: the schema is turned into a GBNF grammar
            here), "guided_json" (older vLLM), or "none".
        missing_candidate: what `next_token_logits` does when a candidate is not among the top tokens
            and it cannot be echoed (the chat route): "error", or "floor" (use the lowest returned
            log-probability, an upper bound of the true value).
        generation_logprobs: ask for the log-probabilities of generated tokens (`Generation.logprob`;
            NaN when the server gives none).
    """

    backend = "openai"
    requires_model = False  # the server's first model otherwise
    io_bound = True  # the next batch's requests go out while one is committed (rankdistill.pipelining)
    spec_hint = "openai:<base url>[#model]"

    @property
    def supports_json_schema(self) -> bool:  # type: ignore[override]
        """Unless the server was declared unable to take a schema (json_mode="none"); with "auto", whether
        the probe saw one way of asking for JSON obeyed."""
        if self.json_mode == "auto":
            return self.capabilities().json_mode() is not None
        return self.json_mode != "none"

    @classmethod
    def spec_options(cls, rest: str) -> dict[str, Any]:
        """``<base url>[#model]``."""
        url, _, model = rest.partition("#")
        return {"model": model or None, "base_url": url or None}

    @classmethod
    def claims(cls, spec: str) -> bool:
        return spec.startswith(("http://", "https://"))

    @classmethod
    def from_config(cls, model: str | None, **options: Any) -> OpenAICompatLLM:
        return cls(options.pop("base_url", None), model, **options)

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        *,
        api_key: str | None = None,
        endpoint: Literal["completions", "chat"] = "completions",
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        concurrency: int = 4,
        top_logprobs: int = 20,
        json_mode: Literal["auto", "response_format", "grammar", "guided_json", "none"] = "auto",
        missing_candidate: Literal["error", "floor"] = "error",
        generation_logprobs: bool = True,
        headers: dict[str, str] | None = None,
    ):
        base_url = base_url or env_first("RANKDISTILL_LLM_BASE_URL", "OPENAI_BASE_URL")
        if not base_url:
            raise RankdistillError(
                "the OpenAI-compatible backend needs a base URL (e.g. http://127.0.0.1:8000/v1): pass "
                "base_url or set RANKDISTILL_LLM_BASE_URL / OPENAI_BASE_URL"
            )
        if endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint must be 'completions' or 'chat', not {endpoint!r}")
        self.base_url = base_url.rstrip("/")
        self.endpoint = endpoint
        self.max_retries = max_retries
        self.concurrency = max(1, concurrency)
        self.top_logprobs = top_logprobs
        self.json_mode = json_mode
        self.missing_candidate = missing_candidate
        self.generation_logprobs = generation_logprobs
        api_key = api_key or env_first("RANKDISTILL_LLM_API_KEY", "OPENAI_API_KEY")
        self._http = JSONClient(
            self.base_url,
            headers=headers,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            concurrency=self.concurrency,
            error=LLMServerError,
        )
        self._model = model or env_first("RANKDISTILL_LLM_MODEL")
        self._model_lock = threading.Lock()
        # the probe's requests: few quiet retries, short backoff (a missing feature answers an error)
        self._probe_http = JSONClient(
            self.base_url,
            headers=headers,
            api_key=api_key,
            timeout=timeout,
            max_retries=min(2, max_retries),
            backoff=0.25,
            max_backoff=1.0,
            concurrency=1,
            error=LLMServerError,
            log_retries=False,
        )
        #: candidates of `next_token_logits` that were outside the top tokens and scored by echo instead
        self.echo_fallbacks = 0

    # ------------------------------------------------------------------ plumbing
    @property
    def model(self) -> str:
        """The model name; asks the server's /models once when none was given."""
        with self._model_lock:
            if self._model is None:
                data = self._request("GET", "models")
                models = [m.get("id") for m in data.get("data", []) if m.get("id")]
                if not models:
                    raise LLMServerError(f"{self.base_url}/models lists no model; pass model=...")
                self._model = models[0]
            return self._model

    @property
    def configured_model(self) -> str | None:
        """The model named in the config or environment (None: the server's first, asked on first use)."""
        return self._model

    def probe_request(self, method: str, path: str, payload: dict | None = None) -> Any:
        """One request for the capability probe: retried at most twice, quietly, not `max_retries` times (a
        missing feature answers an error; a dead server should say so at once). `path` may be a whole URL."""
        return self._probe_http.request(method, path, payload)

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        """One call with retries on 408/409/425/429/5xx and connection errors, exponential backoff."""
        return self._http.request(method, path, payload)

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """fn over items with at most `concurrency` requests in flight, results in input order."""
        return self._http.map(fn, items)

    def json_fields(self, schema: dict | None, mode: str | None = None) -> dict:
        """The request fields that ask for output following `schema`, the `mode` way (default: the
        backend's `json_mode`; "auto" is the probe's choice, nothing where no way works)."""
        mode = mode or self.json_mode
        if mode == "auto" and schema is not None:
            mode = self.capabilities().json_mode() or "none"
        if schema is None or mode == "none":
            return {}
        if mode == "response_format":
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": True},
                }
            }
        if mode == "guided_json":
            return {"guided_json": schema}
        if mode == "grammar":
            from rankdistill.errors import require

            require("llama_cpp", "llm", "json_mode='grammar' (JSON schema to GBNF)")
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            return {"grammar": json_schema_to_gbnf(json.dumps(schema))}
        raise ValueError(f"unknown json_mode {mode!r}")

    # ------------------------------------------------------------------ LLM interface
    def identity(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "base_url": self.base_url,
            "endpoint": self.endpoint,
        }

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
        """Prompt i is sent with seed `seed + i` (servers that honour seeds then repeat exactly). Chat
        messages go to /chat/completions whatever the endpoint."""
        model = self.model
        extra = self.json_fields(json_schema)

        def one(item: tuple[int, Prompt]) -> Generation:
            i, prompt = item
            payload: dict[str, Any] = {
                "model": model,
                "max_tokens": max_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "seed": seed + i,
                **extra,
            }
            if stop:
                payload["stop"] = list(stop)
            if self.endpoint == "chat" or is_messages(prompt):
                payload.update(chat_fields(prompt))
                if self.generation_logprobs:
                    payload["logprobs"] = True
                data = self._request("POST", "chat/completions", payload)
                choice = _first_choice(data, self.base_url)
                text = (choice.get("message") or {}).get("content") or ""
                content = (choice.get("logprobs") or {}).get("content") or []
                lps = [t.get("logprob") for t in content]
            else:
                payload["prompt"] = prompt
                if self.generation_logprobs:
                    payload["logprobs"] = 0
                data = self._request("POST", "completions", payload)
                choice = _first_choice(data, self.base_url)
                text = choice.get("text") or ""
                lps = list((choice.get("logprobs") or {}).get("token_logprobs") or [])
            text, _ = cut_at_stop(text, stop)  # some servers leave the stop string in
            usage = data.get("usage") or {}
            n_tokens = usage.get("completion_tokens") or len(lps)
            logprob = float(sum(lps)) if lps and all(x is not None for x in lps) else math.nan
            return Generation(
                text=text,
                logprob=logprob,
                n_tokens=int(n_tokens),
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
            )

        return self._map(one, list(enumerate(prompts)))

    def _echo(self, prompt: str, continuation: str) -> ContinuationScore:
        """Score a continuation by echoing prompt + continuation with per-token log-probabilities."""
        if self.endpoint == "chat":
            raise LLMServerError(
                "continuation scoring needs the /completions endpoint with echo and logprobs; "
                "this backend was configured with endpoint='chat'"
            )
        full = prompt + continuation
        data = self._request(
            "POST",
            "completions",
            {
                "model": self.model,
                "prompt": full,
                "max_tokens": 1,
                "temperature": 0.0,
                "echo": True,
                "logprobs": 0,
            },
        )
        choice = _first_choice(data, self.base_url)
        lp = choice.get("logprobs") or {}
        offsets, token_lps = lp.get("text_offset"), lp.get("token_logprobs")
        if not offsets or token_lps is None:
            raise LLMServerError(
                f"{self.base_url} returned no log-probabilities for echo=True, logprobs=0; it cannot score "
                "continuations (vLLM and llama.cpp servers can; OpenAI chat models cannot)"
            )
        if not continuation:
            return ContinuationScore(logprob=0.0, n_tokens=0, token_logprobs=[])
        p, n = len(prompt), len(full)
        ends = list(offsets[1:]) + [n]
        picked = [i for i, (a, b) in enumerate(zip(offsets, ends, strict=True)) if a < n and b > p]
        if not picked:
            raise LLMServerError(
                f"{self.base_url} did not echo the prompt's tokens (text_offset starts at {offsets[0]}); "
                "it cannot score continuations"
            )
        values = [token_lps[i] for i in picked]
        if any(v is None for v in values):
            raise LLMServerError(
                f"{self.base_url} gave no log-probability for the first token of the text; "
                "continuations need a non-empty prompt"
            )
        values = [float(v) for v in values]
        return ContinuationScore(logprob=float(sum(values)), n_tokens=len(values), token_logprobs=values)

    def _prompt_logprobs(self, prompt: str, continuation: str) -> ContinuationScore:
        """Score a continuation with vLLM's `prompt_logprobs` (for servers that cannot echo)."""
        full = prompt + continuation
        data = self._request(
            "POST",
            "completions",
            {"model": self.model, "prompt": full, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0},
        )
        entries = _first_choice(data, self.base_url).get("prompt_logprobs") or data.get("prompt_logprobs")
        if not isinstance(entries, list) or not entries:
            raise LLMServerError(
                f"{self.base_url} returned no prompt_logprobs (a vLLM extension); it cannot score "
                "continuations this way"
            )
        values = continuation_from_prompt_logprobs(entries, len(continuation))
        if values is None:
            raise LLMServerError(
                f"{self.base_url}: the prompt_logprobs of {full[:60]!r} do not cover its last "
                f"{len(continuation)} characters"
            )
        return ContinuationScore(logprob=float(sum(values)), n_tokens=len(values), token_logprobs=values)

    def score_continuations(
        self, pairs: list[tuple[str, str]], *, method: str | None = None
    ) -> list[ContinuationScore]:
        """log P(continuation | prompt) by `method`: "echo" (the default: /completions with echo and
        logprobs) or "prompt_logprobs" (vLLM)."""
        if method in (None, "echo"):
            return self._map(lambda pc: self._echo(*pc), list(pairs))
        if method == "prompt_logprobs":
            return self._map(lambda pc: self._prompt_logprobs(*pc), list(pairs))
        raise ValueError(f"continuation method must be 'echo' or 'prompt_logprobs', not {method!r}")

    def _top_logprobs(self, prompt: Prompt, via: str | None = None) -> dict[str, float]:
        via = "chat" if is_messages(prompt) else via or self.endpoint
        payload: dict[str, Any] = {"model": self.model, "max_tokens": 1, "temperature": 0.0}
        if via == "chat":
            payload.update(chat_fields(prompt), logprobs=True, top_logprobs=self.top_logprobs)
            choice = _first_choice(self._request("POST", "chat/completions", payload), self.base_url)
            content = (choice.get("logprobs") or {}).get("content") or []
            if not content or not content[0].get("top_logprobs"):
                raise LLMServerError(
                    f"{self.base_url} returned no top_logprobs for a chat completion"
                    + ("" if content else " (the model answered no token)")
                )
            top = {t["token"]: float(t["logprob"]) for t in content[0]["top_logprobs"]}
            top.setdefault(content[0]["token"], float(content[0]["logprob"]))
            return top
        payload.update(prompt=prompt, logprobs=self.top_logprobs)
        choice = _first_choice(self._request("POST", "completions", payload), self.base_url)
        tops = (choice.get("logprobs") or {}).get("top_logprobs")
        if not tops or not tops[0]:
            raise LLMServerError(
                f"{self.base_url} returned no top log-probabilities (asked logprobs={self.top_logprobs}); "
                "the server does not support logprobs"
            )
        return {k: float(v) for k, v in tops[0].items()}

    def top_next_tokens(self, prompts: list[Prompt], *, via: str | None = None) -> list[dict[str, float]]:
        """The server's top `top_logprobs` next tokens after each prompt (token text -> log-probability),
        from /completions or, with ``via="chat"``, from /chat/completions (the prompt as a user message;
        chat messages always there)."""
        return self._map(lambda p: self._top_logprobs(p, via), list(prompts))

    def next_token_logits(
        self,
        prompts: list[Prompt],
        candidates: list,
        *,
        method: str | None = None,
        missing: Literal["error", "floor", "nan"] | None = None,
    ) -> list[list[float]]:
        """Log-probabilities (logits up to a per-prompt constant) of each candidate's first token, read from
        the top tokens of /completions or (``method="chat"``, or endpoint=chat) /chat/completions.

        A candidate is a string, or a group of spellings (tuple or list: " true", "True", ...) whose
        probability mass is summed (log-sum-exp over the ones among the top tokens). One outside the top
        tokens is scored exactly by echo on /completions; on the chat route it is an error, or with
        missing_candidate="floor" the lowest returned log-probability (an upper bound). ``missing="nan"``
        (FIRST's listwise identifiers): NaN for a candidate outside the top tokens, with no further
        request; "error" and "floor" override `missing_candidate` for this call. Chat messages always go
        to /chat/completions."""
        method_via = method or self.endpoint
        if method_via not in ("completions", "chat"):
            raise ValueError(f"next-token method must be 'completions' or 'chat', not {method!r}")
        if missing not in (None, "error", "floor", "nan"):
            raise ValueError(f"missing must be 'error', 'floor' or 'nan', not {missing!r}")
        on_missing = missing or self.missing_candidate

        def echoed(prompt: str, spelling: str) -> float | None:
            with self._model_lock:
                self.echo_fallbacks += 1
            first = self._echo(prompt, spelling).token_logprobs
            return first[0] if len(first) == 1 else None

        def one(prompt: Prompt) -> list[float]:
            via = "chat" if is_messages(prompt) else method_via
            top = self._top_logprobs(prompt, via)
            # some servers (llama-cpp-python) detokenise each top token alone, dropping its leading space:
            # when no returned token starts with a space, match candidates without theirs
            stripped = not any(k.startswith(" ") for k in top)
            row: list[float] = []
            for c in candidates:
                if isinstance(c, str):
                    if c in top:
                        row.append(top[c])
                        continue
                    if stripped and c.lstrip() != c and c.lstrip() in top:
                        row.append(top[c.lstrip()])
                        continue
                    if on_missing == "nan":
                        row.append(math.nan)
                        continue
                    if via == "completions" and self.endpoint == "completions":
                        with self._model_lock:
                            self.echo_fallbacks += 1
                        first = self._echo(prompt, c).token_logprobs
                        row.append(first[0] if first else math.nan)
                        continue
                    spellings: list[str] = [c]
                else:
                    spellings = list(dict.fromkeys(str(x) for x in c))
                    keys = dict.fromkeys(x.lstrip() if stripped else x for x in spellings)
                    found = [top[k] for k in keys if k in top]
                    if found:
                        row.append(logsumexp(found))
                        continue
                    if on_missing == "nan":
                        row.append(math.nan)
                        continue
                    if via == "completions" and self.endpoint == "completions":
                        exact = [v for v in (echoed(prompt, x) for x in spellings) if v is not None]
                        if exact:
                            row.append(logsumexp(exact))
                            continue
                if on_missing == "floor":
                    row.append(min(top.values()))
                    continue
                shown = spellings[0] if len(spellings) == 1 else spellings
                raise LLMServerError(
                    f"candidate {shown!r} is not among the server's top {len(top)} tokens for a prompt "
                    f"starting {_opening(prompt)!r}, and the {via} route cannot echo; raise top_logprobs or "
                    "use missing_candidate='floor'"
                )
            return row

        return self._map(one, list(prompts))

    def close(self) -> None:
        self._http.close()
        self._probe_http.close()


def continuation_from_prompt_logprobs(entries: list, n_chars: int) -> list[float] | None:
    """The log-probabilities of the tokens covering the last `n_chars` characters of a prompt, from vLLM's
    `prompt_logprobs` (one entry per prompt token: None for the first, else {token id: {"logprob",
    "rank", "decoded_token"}}; asked with prompt_logprobs=0, the entry holds the prompt's token first).
    Tokens are walked back from the end by the length of their decoded text, so a leading BOS never
    matters; a token that straddles the boundary counts as continuation (the echo route's rule). None
    when the entries run out first."""
    if n_chars <= 0:
        return []
    values: list[float] = []
    covered = 0
    for entry in reversed(entries):
        if not isinstance(entry, dict) or not entry:
            return None
        info = next(iter(entry.values()))
        if not isinstance(info, dict) or info.get("logprob") is None:
            return None
        values.append(float(info["logprob"]))
        covered += len(info.get("decoded_token") or "")
        if covered >= n_chars:
            return values[::-1]
    return None


def _opening(prompt: Prompt) -> str:
    """A prompt's first 60 characters (of its last message, for chat messages), for error messages."""
    return (prompt[-1].get("content", "") if is_messages(prompt) else prompt)[:60]


def chat_fields(prompt: Prompt) -> dict[str, Any]:
    """The /chat/completions fields of a prompt: a text as one user message, chat messages as they are;
    a last assistant message is the start of the answer, continued (vLLM's ``continue_final_message``,
    with no generation prompt added)."""
    if not is_messages(prompt):
        return {"messages": [{"role": "user", "content": prompt}]}
    messages = check_messages(prompt)
    if messages[-1]["role"] == "assistant":
        return {"messages": messages, "continue_final_message": True, "add_generation_prompt": False}
    return {"messages": messages}


def _first_choice(data: dict, where: str) -> dict:
    choices = data.get("choices")
    if not choices:
        raise LLMServerError(f"{where} answered without choices: {json.dumps(data)[:300]}")
    return choices[0]


LLM_BACKENDS.register("openai", OpenAICompatLLM, aliases=("http", "vllm", "ollama"))
