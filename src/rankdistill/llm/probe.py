"""What an LLM backend can do, found out once per backend instance: `capabilities(llm)`, also
`llm.capabilities()`, returns a `Capabilities`.

- A server (the `openai` backend: vLLM, llama.cpp's servers, Ollama, OpenAI) is asked with a handful of
  one-token requests, each retried quietly at most twice: `/models` (the model, and its context length where the
  server says: vLLM's ``max_model_len``, llama.cpp's ``meta.n_ctx_train`` and ``/props``); `/completions`
  with ``logprobs`` (how many top tokens come back), with ``echo`` + ``logprobs`` (log-probabilities of the
  prompt's own tokens) and with vLLM's ``prompt_logprobs``; `/chat/completions` with ``logprobs`` and
  ``top_logprobs``; and a short generation with each way of asking for JSON (``response_format``,
  ``grammar``, ``guided_json``) whose output is checked against the schema: a server that ignores the
  field (llama-cpp-python's /completions ignores ``response_format``) is caught.
- A local backend (llama.cpp, transformers) answers from what it loaded: it has every logit, so every
  method works; its context window, whether it has a chat template and whether it applies it.

Teachers pick their method from the same object and record it in their identity (label keys), so labels
of two methods never share a key: `continuation_method` (query likelihood: echo log-probabilities, then
vLLM's prompt_logprobs), `next_token_method` (true/false, yes/no: the top log-probabilities of
/completions, then of /chat/completions), `json_mode` (listwise, reasoning). Where nothing works they raise
a `CapabilityError` whose one line names the server and what is missing. `rankdistill doctor --llm SPEC`
prints `rows()` and each teacher's choice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.llm._common import looks_instruct


class CapabilityError(RankdistillError):
    """No method a teacher needs works on this backend (the message names the server and what is missing)."""


#: the JSON modes of the `openai` backend, in the order they are tried
JSON_MODES = ("response_format", "grammar", "guided_json")

#: prompts of the probe requests: short (llama-cpp-python sorts the whole vocabulary for every token of
#: log-probabilities it returns) and likely to be continued
_TEXT = "The capital of France is"
_ECHO = "Paris is"
_CHAT = (_TEXT, "Name one colour.")
_SCHEMA = {
    "type": "object",
    "properties": {"probe": {"type": "string", "enum": ["rankdistill-probe"]}},
    "required": ["probe"],
    "additionalProperties": False,
}
_SCHEMA_ANSWER = {"probe": "rankdistill-probe"}


@dataclass(frozen=True)
class Capabilities:
    """What one backend instance can do (see the module's docstring for how each field is found).

    Counts of top log-probabilities are what came back for `top_logprobs_asked` asked (a local backend
    has the whole vocabulary: -1); None where unknown (the model stopped at once, with no token to give
    log-probabilities for). `details` says, per field, why something does not work (an HTTP error, a
    field ignored) or how it was found.
    """

    backend: str
    where: str  # the server's URL (no credentials) or the model file / folder
    model: str | None
    local: bool  # every logit in-process
    endpoint: str  # "completions" or "chat" (servers: what the backend generates with); "local"
    completions: bool = True
    completion_top_logprobs: int | None = -1
    generation_logprobs: bool = True
    echo_logprobs: bool = True
    prompt_logprobs: bool = False
    chat: bool = False  # chat completions work (a server), or prompts go through a chat template (local)
    chat_logprobs: bool = False
    chat_top_logprobs: int | None = None
    json_modes: tuple[str, ...] = ()
    context_length: int | None = None
    context_source: str | None = None
    chat_template: str | None = None  # where the template comes from: "gguf", "tokenizer", "given", "server"
    chat_applied: bool = False  # prompts go through a chat template (local chat on, or endpoint=chat)
    instruct: bool | None = None
    top_logprobs_asked: int = 0
    details: Mapping[str, str] = field(default_factory=dict)

    # -- the choices teachers make -------------------------------------------------------------------------
    @property
    def default_continuation_method(self) -> str:
        """The method the backend's identity implies for continuation scoring (not recorded in keys)."""
        return "logits" if self.local else "echo"

    @property
    def default_next_token_method(self) -> str:
        """The method the backend's identity implies for next-token scores (not recorded in keys)."""
        return "logits" if self.local else self.endpoint

    def _server(self) -> str:
        return f"{self.where}{f' ({self.model})' if self.model else ''}"

    def continuation_method(self) -> str:
        """How log P(continuation | prompt) is computed: "logits" (local), "echo" (/completions with
        echo and logprobs), "prompt_logprobs" (vLLM); a CapabilityError where none works."""
        if self.local:
            return "logits"
        if self.endpoint == "chat":
            raise CapabilityError(
                f"{self._server()}: query likelihood scores a given text, which /chat/completions cannot; "
                "use the backend with endpoint=completions (the server's /completions with echo or "
                "prompt_logprobs)"
            )
        if self.echo_logprobs:
            return "echo"
        if self.prompt_logprobs:
            return "prompt_logprobs"
        raise CapabilityError(
            f"{self._server()} gives no log-probabilities of a prompt's tokens (/completions with echo=true "
            f"and logprobs: {self.details.get('echo_logprobs', 'no')}; vLLM's prompt_logprobs: "
            f"{self.details.get('prompt_logprobs', 'no')}): query likelihood needs one of them (vLLM and "
            "llama.cpp servers have them) or a local backend"
        )

    def next_token_method(self) -> str:
        """How the scores of a next token's candidates are read: "logits" (local), "completions" (top
        log-probabilities of /completions), "chat" (top log-probabilities of /chat/completions). With
        endpoint=completions, /completions first, then chat; with endpoint=chat, chat only."""
        if self.local:
            return "logits"
        order = ("chat",) if self.endpoint == "chat" else ("completions", "chat")
        for method in order:
            if method == "completions" and (self.completion_top_logprobs or 0) >= 2:
                return method
            if (
                method == "chat"
                and self.chat_logprobs
                and (self.chat_top_logprobs is None or self.chat_top_logprobs >= 2)
            ):
                return method
        k = self.top_logprobs_asked
        tried = (
            [f"/completions logprobs={k}: {self.details.get('completion_top_logprobs', 'no')}"]
            if len(order) > 1
            else []
        )
        tried.append(
            f"/chat/completions logprobs=true, top_logprobs={k}: {self.details.get('chat_top_logprobs', 'no')}"
        )
        raise CapabilityError(
            f"{self._server()} gives no top log-probabilities of a next token ({'; '.join(tried)}): the "
            "true/false and yes/no teachers need them (vLLM, llama.cpp servers and OpenAI chat give them)"
            + ("; endpoint=completions would also try /completions" if len(order) == 1 else "")
        )

    def first_token_method(self, n: int, chat: bool = False) -> str:
        """How FIRST's listwise ranking reads the `n` passage identifiers off one generated token: "logits"
        (local: every identifier's logit); "completions" or "chat" (a server's top log-probabilities of that
        endpoint, which must return at least `n` tokens). ``chat``: the prompt is chat turns, so only
        /chat/completions can take it. With endpoint=completions /completions first, then chat. A
        CapabilityError, one line naming the server and what is missing, where neither returns enough."""
        if self.local:
            return "logits"
        order = ("chat",) if chat or self.endpoint == "chat" else ("completions", "chat")
        for method in order:
            if method == "completions" and (self.completion_top_logprobs or 0) >= n:
                return method
            if (
                method == "chat"
                and self.chat_logprobs
                and (self.chat_top_logprobs is None or self.chat_top_logprobs >= n)
            ):
                return method
        k = self.top_logprobs_asked
        tried = []
        if "completions" in order:
            got = self.completion_top_logprobs or 0
            tried.append(
                f"/completions returned {got} of logprobs={k}"
                + ("" if got else f" ({self.details.get('completion_top_logprobs', 'none')})")
            )
        chat_got = self.chat_top_logprobs if self.chat_logprobs else 0
        tried.append(
            f"/chat/completions returned {chat_got} of top_logprobs={k}"
            + ("" if chat_got else f" ({self.details.get('chat_top_logprobs', 'none')})")
        )
        raise CapabilityError(
            f"{self._server()}: listwise method 'first' reads all {n} passage identifiers from the top "
            f"log-probabilities of one token, and {'; '.join(tried)}: raise the backend's top_logprobs to "
            f"{n} or more (vLLM: --max-logprobs), show fewer passages a window, or use one_pass/sliding_window"
        )

    def json_mode(self) -> str | None:
        """The first way of asking for schema-constrained JSON that worked, or None (free text, parsed)."""
        return self.json_modes[0] if self.json_modes else None

    # -- for people ------------------------------------------------------------------------------------------
    def rows(self) -> list[tuple[str, str, str]]:
        """(capability, "yes"/"no"/"?", detail) lines, as `rankdistill doctor` prints them."""

        def yn(flag: bool | None) -> str:
            return "?" if flag is None else ("yes" if flag else "no")

        def top(n: int | None, why: str) -> tuple[str, str]:
            if n is None:
                return "?", self.details.get(why, "unknown")
            if n < 0:
                return "yes", "the whole vocabulary (local)"
            return yn(n >= 2), f"{n} of {self.top_logprobs_asked} asked" + (
                f"; {self.details[why]}" if why in self.details and n < 2 else ""
            )

        d = self.details
        ctp, ctd = top(self.completion_top_logprobs, "completion_top_logprobs")
        chp, chd = top(self.chat_top_logprobs if self.chat_logprobs or self.local else 0, "chat_top_logprobs")
        if not self.local and not self.chat_logprobs:
            chp, chd = "no", d.get("chat_top_logprobs", "no log-probabilities")
        if self.local:
            chp, chd = "yes", "the whole vocabulary (local)"
        json_detail = ", ".join(self.json_modes) if self.json_modes else "none works"
        tried = [
            f"{m}: {d[f'json:{m}']}" for m in JSON_MODES if f"json:{m}" in d and m not in self.json_modes
        ]
        if tried:
            json_detail += f" ({'; '.join(tried)})"
        ctx = (
            f"{self.context_length} ({self.context_source})"
            if self.context_length
            else d.get("context_length", "the server does not say")
        )
        template = {
            "gguf": "from the GGUF metadata",
            "tokenizer": "from the tokenizer",
            "given": "given (chat_template)",
            "server": "the server's",
        }.get(self.chat_template or "", "none")
        applied = "applied" if self.chat_applied else "not applied"
        kind = {True: "instruct", False: "base", None: "unknown"}[self.instruct]
        return [
            ("completions", yn(self.completions), d.get("completions", "")),
            ("top log-probabilities (completions)", ctp, ctd),
            ("generation log-probabilities", yn(self.generation_logprobs), d.get("generation_logprobs", "")),
            ("echo log-probabilities (prompt)", yn(self.echo_logprobs), d.get("echo_logprobs", "")),
            ("vLLM prompt_logprobs", yn(self.prompt_logprobs), d.get("prompt_logprobs", "")),
            ("chat completions", yn(self.chat), d.get("chat", "")),
            ("top log-probabilities (chat)", chp, chd),
            ("JSON schema output", yn(bool(self.json_modes)), json_detail),
            ("context length", "yes" if self.context_length else "?", ctx),
            ("chat template", yn(self.chat_template is not None), f"{template}; {applied}; model: {kind}"),
        ]


def capabilities(llm: Any) -> Capabilities:
    """The capabilities of `llm`, probed on the first call and kept on the instance (one probe each)."""
    caps = llm.__dict__.get("_capabilities")
    if caps is not None:
        return caps
    with _lock:
        caps = llm.__dict__.get("_capabilities")
        if caps is None:
            caps = probe_server(llm) if callable(getattr(llm, "probe_request", None)) else probe_local(llm)
            llm.__dict__["_capabilities"] = caps
    return caps


_lock = threading.Lock()


def probe_local(llm: Any) -> Capabilities:
    """A local backend's capabilities, from what it loaded (no model call)."""
    ident = llm.identity()
    n_ctx = getattr(llm, "n_ctx", None)
    trained = getattr(llm, "n_ctx_train", None)
    source = "n_ctx" + (f"; the model was trained for {trained}" if trained else "")
    json_modes = (
        (getattr(llm, "json_method", "grammar"),) if getattr(llm, "supports_json_schema", False) else ()
    )
    return Capabilities(
        backend=str(getattr(llm, "backend", "?")),
        where=str(getattr(llm, "path", None) or ident.get("model") or getattr(llm, "backend", "?")),
        model=ident.get("model"),
        local=True,
        endpoint="local",
        chat=bool(getattr(llm, "chat", False)),
        json_modes=json_modes,
        context_length=n_ctx if isinstance(n_ctx, int) else None,
        context_source=source if isinstance(n_ctx, int) else None,
        chat_template=getattr(llm, "chat_template_source", None),
        chat_applied=bool(getattr(llm, "chat", False)),
        instruct=getattr(llm, "instruct", None),
        details={
            "completions": "in-process",
            "echo_logprobs": "every logit (in-process)",
            "prompt_logprobs": "not needed: every logit in-process",
            "chat": "prompts go through the chat template" if getattr(llm, "chat", False) else "raw prompts",
        },
    )


def _short(exc: Exception) -> str:
    """An error in one short line, without the URL it names (the report names it once)."""
    text = str(exc).replace("\n", " ")
    for marker in ("last error: ", " answered "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return text if len(text) <= 160 else text[:157] + "..."


def probe_server(llm: Any) -> Capabilities:
    """Ask an OpenAI-compatible server what it can do (see the module's docstring). Raises the backend's
    error, one line, when no server answers at its URL."""
    from rankdistill.http_json import redact_url

    where = redact_url(llm.base_url)
    details: dict[str, str] = {}

    def ask(path: str, payload: dict | None = None) -> tuple[dict | None, str | None]:
        try:
            data = llm.probe_request("POST" if payload is not None else "GET", path, payload)
        except RankdistillError as exc:
            if getattr(exc, "status", 0) is None:  # no answer at all: the server went away
                raise
            return None, _short(exc)
        return (
            (data, None)
            if isinstance(data, dict)
            else (None, f"answered {type(data).__name__}, not an object")
        )

    # the model and, where the server says, its context length
    try:
        listing = llm.probe_request("GET", "models", None)
    except RankdistillError as exc:
        if getattr(exc, "status", 0) is None or not llm.configured_model:
            raise type(exc)(f"no OpenAI-compatible server answers at {where}/models: {_short(exc)}") from None
        listing, details["context_length"] = {}, f"/models: {_short(exc)}"
    entries = [m for m in (listing or {}).get("data", []) or [] if isinstance(m, dict)]
    model = llm.configured_model or next((m.get("id") for m in entries if m.get("id")), None)
    if not model:
        raise CapabilityError(f"{where}/models lists no model; name one (openai:<url>#<model>)")
    context, source = _context_from_models(entries, model)
    if where.endswith("/v1"):  # llama.cpp's server: the context it was started with
        props, _ = ask(llm.base_url[: -len("/v1")] + "/props")
        n = ((props or {}).get("default_generation_settings") or {}).get("n_ctx")
        if isinstance(n, int) and n > 0:
            context, source = n, "/props n_ctx"
    if context is None:
        details.setdefault("context_length", "the server does not say (/models has no max_model_len)")

    k = int(llm.top_logprobs)
    base = {"model": model, "max_tokens": 1, "temperature": 0.0}

    # /completions and its top log-probabilities
    data, err = ask("completions", {**base, "prompt": _TEXT, "logprobs": k})
    completions, completion_top, completion_lps = data is not None, 0, False
    if data is None:
        details["completion_top_logprobs"] = err or ""
        plain, err2 = ask("completions", {**base, "prompt": _TEXT})
        completions = plain is not None
        details["completions"] = "works without logprobs" if completions else err2 or ""
    else:
        lp = _choice(data).get("logprobs") or {}
        tops = lp.get("top_logprobs") or []
        completion_top = len(tops[0]) if tops and isinstance(tops[0], dict) else 0
        completion_lps = bool(lp.get("token_logprobs"))
        if not completion_top:
            details["completion_top_logprobs"] = "answered without top_logprobs"
        elif completion_top < 2:
            details["completion_top_logprobs"] = f"{completion_top} came back; 2 or more are needed"

    # echo: log-probabilities of the prompt's own tokens
    echo = False
    if completions:
        data, err = ask("completions", {**base, "prompt": _ECHO, "echo": True, "logprobs": 0})
        if data is None:
            details["echo_logprobs"] = err or ""
        else:
            lp = _choice(data).get("logprobs") or {}
            offsets, values = lp.get("text_offset") or [], lp.get("token_logprobs") or []
            echo = any(o < len(_ECHO) and v is not None for o, v in zip(offsets, values, strict=False))
            if not echo:
                details["echo_logprobs"] = "answered without the prompt's log-probabilities"
    else:
        details["echo_logprobs"] = "no /completions"

    # vLLM's prompt_logprobs
    prompt_lps = False
    if completions:
        data, err = ask("completions", {**base, "prompt": _ECHO, "prompt_logprobs": 0})
        if data is None:
            details["prompt_logprobs"] = err or ""
        else:
            entries_lp = _choice(data).get("prompt_logprobs") or data.get("prompt_logprobs")
            prompt_lps = isinstance(entries_lp, list) and any(isinstance(e, dict) and e for e in entries_lp)
            if not prompt_lps:
                details["prompt_logprobs"] = "answered without prompt_logprobs (field ignored)"
    else:
        details["prompt_logprobs"] = "no /completions"

    # /chat/completions and its top log-probabilities
    chat, chat_lps, chat_top = False, False, None
    for content in _CHAT:
        payload = {**base, "messages": [{"role": "user", "content": content}]}
        data, err = ask("chat/completions", {**payload, "logprobs": True, "top_logprobs": k})
        if data is None:
            details["chat_top_logprobs"] = err or ""
            plain, err2 = ask("chat/completions", payload)
            chat = plain is not None
            details["chat"] = "works without logprobs" if chat else err2 or ""
            break
        chat = True
        lp = _choice(data).get("logprobs")
        chat_lps = isinstance(lp, dict) and "content" in lp
        tokens = (lp.get("content") or []) if isinstance(lp, dict) else []
        if not chat_lps:
            details["chat_top_logprobs"] = "answered without log-probabilities"
            break
        if tokens:
            chat_top = len(tokens[0].get("top_logprobs") or [])
            if chat_top < 2:
                details["chat_top_logprobs"] = (
                    f"{chat_top} came back; 2 or more are needed"
                    if chat_top
                    else "answered without top_logprobs"
                )
            break
        details["chat_top_logprobs"] = "unknown: the model stopped at once (no token to show)"

    # JSON: each way of asking, the output checked against the schema
    json_modes: list[str] = []
    for mode in JSON_MODES:
        try:
            fields = llm.json_fields(_SCHEMA, mode)
        except RankdistillError as exc:
            details[f"json:{mode}"] = f"not tried: {_short(exc)}"
            continue
        gen = {**base, "max_tokens": 24, **fields}
        if llm.endpoint == "chat":
            data, err = ask(
                "chat/completions", {**gen, "messages": [{"role": "user", "content": "Reply in JSON."}]}
            )
            text = ((_choice(data).get("message") or {}).get("content") or "") if data else ""
        else:
            data, err = ask("completions", {**gen, "prompt": "Reply in JSON:"})
            text = (_choice(data).get("text") or "") if data else ""
        if data is None:
            details[f"json:{mode}"] = err or ""
        elif _parses_to(text, _SCHEMA_ANSWER):
            json_modes.append(mode)
        else:
            details[f"json:{mode}"] = "ignored: the output did not follow the schema"

    via = "chat" if llm.endpoint == "chat" else "completions"
    generation_lps = chat_lps if via == "chat" else completion_lps
    return Capabilities(
        backend=str(llm.backend),
        where=where,
        model=model,
        local=False,
        endpoint=llm.endpoint,
        completions=completions,
        completion_top_logprobs=completion_top,
        generation_logprobs=generation_lps,
        echo_logprobs=echo,
        prompt_logprobs=prompt_lps,
        chat=chat,
        chat_logprobs=chat_lps,
        chat_top_logprobs=chat_top if chat_lps else 0,
        json_modes=tuple(json_modes),
        context_length=context,
        context_source=source,
        chat_template="server" if chat else None,
        chat_applied=llm.endpoint == "chat",
        instruct=True if looks_instruct([model]) else None,
        top_logprobs_asked=k,
        details=details,
    )


def _choice(data: dict | None) -> dict:
    choices = (data or {}).get("choices") or [{}]
    return choices[0] if isinstance(choices[0], dict) else {}


def _parses_to(text: str, expected: dict) -> bool:
    try:
        return json.loads(text) == expected
    except (json.JSONDecodeError, TypeError):
        return False


def _context_from_models(entries: list[dict], model: str) -> tuple[int | None, str | None]:
    """A model's context length from a /models listing: vLLM's max_model_len, llama.cpp's
    meta.n_ctx_train, or a context_length / context_window field."""
    entry = next((m for m in entries if m.get("id") == model), entries[0] if len(entries) == 1 else {})
    for key, source in (
        ("max_model_len", "/models max_model_len"),
        ("context_length", "/models context_length"),
        ("context_window", "/models context_window"),
    ):
        if isinstance(entry.get(key), int) and entry[key] > 0:
            return entry[key], source
    n = (entry.get("meta") or {}).get("n_ctx_train") if isinstance(entry.get("meta"), dict) else None
    if isinstance(n, int) and n > 0:
        return n, "/models meta.n_ctx_train (the training context)"
    return None, None
