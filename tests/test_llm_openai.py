"""The OpenAI-compatible backend's HTTP behaviour against small real servers on 127.0.0.1: retries with
backoff, clear errors, bounded concurrency, request fields. (Against a real model: test_llm_server.py.)"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from http_helpers import ThreadedServer
from rankdistill.llm import LLMServerError, OpenAICompatLLM, load_llm


class Stub(ThreadedServer):
    """A threaded HTTP server whose answers come from `respond(path, body) -> (status, dict, headers)`."""

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[tuple[str, dict]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _answer(self, body: dict):
                with stub.lock:
                    stub.requests.append((self.path, body))
                    stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    status, payload, headers = stub.respond(self.path, body)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer({})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self._answer(json.loads(self.rfile.read(n) or b"{}"))

        self.serve(Handler, "/v1")


def completion(text: str, logprobs: dict | None = None) -> dict:
    return {
        "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }


def fast(url: str, **kw) -> OpenAICompatLLM:
    kw.setdefault("max_retries", 3)
    return OpenAICompatLLM(url, "stub-model", backoff=0.01, max_backoff=0.05, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_retries_503_then_succeeds():
    calls = {"n": 0}

    def respond(path, body):
        calls["n"] += 1
        if calls["n"] <= 2:
            return 503, {"error": "loading model"}, {}
        return 200, completion(" hello", {"token_logprobs": [-0.5, -0.25], "tokens": [" hel", "lo"]}), {}

    with Stub(respond) as stub:
        llm = fast(stub.url)
        (gen,) = llm.generate(["Say hi:"], max_tokens=5, seed=7, stop=["\n"])
        assert gen.text == " hello"
        assert gen.logprob == pytest.approx(-0.75)
        assert calls["n"] == 3
        path, body = stub.requests[-1]
        assert path == "/v1/completions"
        assert body["model"] == "stub-model" and body["seed"] == 7 and body["stop"] == ["\n"]
        assert body["max_tokens"] == 5 and body["prompt"] == "Say hi:"


def test_retry_after_header_and_429():
    times: list[float] = []

    def respond(path, body):
        times.append(time.monotonic())
        if len(times) == 1:
            return 429, {"error": "rate limited"}, {"Retry-After": "0.3"}
        return 200, completion("ok"), {}

    with Stub(respond) as stub:
        llm = OpenAICompatLLM(stub.url, "m", backoff=0.01, max_backoff=5.0)
        assert llm.generate(["x"])[0].text == "ok"
    assert times[1] - times[0] >= 0.25  # waited as the server asked, not the 10 ms backoff


def test_gives_up_with_clear_error_after_retries():
    with Stub(lambda p, b: (500, {"error": "boom"}, {})) as stub:
        llm = fast(stub.url, max_retries=2)
        with pytest.raises(LLMServerError, match=r"failed after 3 attempts; last error: HTTP 500"):
            llm.generate(["x"])
        assert len(stub.requests) == 3


def test_client_error_is_not_retried():
    with Stub(lambda p, b: (400, {"error": {"message": "unknown field 'echo'"}}, {})) as stub:
        llm = fast(stub.url)
        with pytest.raises(LLMServerError, match=r"HTTP 400: .*unknown field"):
            llm.score_continuations([("a", " b")])
        assert len(stub.requests) == 1


def test_dead_port_connection_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = fast(url, max_retries=2)
    t0 = time.monotonic()
    with pytest.raises(LLMServerError, match=r"failed after 3 attempts; last error: ConnectError"):
        llm.generate(["x"])
    assert time.monotonic() - t0 < 5


def test_missing_logprobs_is_a_clear_error():
    # a server that ignores echo/logprobs (answers like a chat-only model would)
    with Stub(lambda p, b: (200, completion(" b"), {})) as stub:
        llm = fast(stub.url)
        with pytest.raises(LLMServerError, match="returned no log-probabilities for echo"):
            llm.score_continuations([("a", " b")])
        with pytest.raises(LLMServerError, match="does not support logprobs"):
            llm.next_token_logits(["a"], ["true"])
        # generation still works; its log-probability is unknown, not zero
        (gen,) = llm.generate(["a"])
        assert gen.text == " b" and gen.logprob != gen.logprob  # NaN


def test_echo_scoring_selects_continuation_by_text_offset():
    # prompt "Q: hi" + continuation " there": tokens "Q", ":", " hi", " there", then one generated token
    def respond(path, body):
        assert body["echo"] is True and body["prompt"] == "Q: hi there"
        lp = {
            "tokens": ["Q", ":", " hi", " there", "!"],
            "text_offset": [0, 1, 2, 5, 11],
            "token_logprobs": [None, -1.0, -2.0, -3.0, -0.1],
        }
        return 200, completion("Q: hi there!", lp), {}

    with Stub(respond) as stub:
        (s,) = fast(stub.url).score_continuations([("Q: hi", " there")])
    assert s.n_tokens == 1 and s.logprob == pytest.approx(-3.0)


def test_next_token_top_logprobs_and_echo_fallback():
    def respond(path, body):
        if body.get("echo"):  # fallback for a candidate outside the top tokens
            lp = {
                "tokens": ["Rel", ":", " maybe", "x"],
                "text_offset": [0, 3, 4, 10],
                "token_logprobs": [None, -1, -7.5, -1],
            }
            return 200, completion(body["prompt"] + "x", lp), {}
        assert body["logprobs"] == 5 and body["max_tokens"] == 1
        lp = {
            "tokens": [" yes"],
            "text_offset": [4],
            "token_logprobs": [-0.2],
            "top_logprobs": [{" yes": -0.2, " no": -1.9}],
        }
        return 200, completion(" yes", lp), {}

    with Stub(respond) as stub:
        llm = fast(stub.url, top_logprobs=5)
        (row,) = llm.next_token_logits(["Rel:"], [" no", " yes", " maybe"])
    assert row == pytest.approx([-1.9, -0.2, -7.5])


def test_bounded_concurrency_keeps_order():
    def respond(path, body):
        time.sleep(0.15)
        return 200, completion(body["prompt"].upper()), {}

    with Stub(respond) as stub:
        llm = fast(stub.url, concurrency=3)
        prompts = [f"p{i}" for i in range(9)]
        t0 = time.monotonic()
        out = llm.generate(prompts)
        elapsed = time.monotonic() - t0
    assert [g.text for g in out] == [p.upper() for p in prompts]
    assert stub.max_in_flight == 3
    assert elapsed < 9 * 0.15  # ran in parallel
    assert [b["seed"] for _, b in stub.requests] != [0] * 9  # prompt i gets seed + i


def test_chat_endpoint_json_schema_and_model_discovery(monkeypatch):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}

    def respond(path, body):
        if path == "/v1/models":
            return 200, {"data": [{"id": "served-model"}]}, {}
        assert path == "/v1/chat/completions"
        assert body["model"] == "served-model"
        assert body["response_format"]["json_schema"]["schema"] == schema
        assert body["messages"] == [{"role": "user", "content": "Q?"}]
        content = [{"token": '{"', "logprob": -0.1}, {"token": "answer", "logprob": -0.2}]
        msg = {"role": "assistant", "content": '{"answer": "4"}'}
        return (
            200,
            {"choices": [{"message": msg, "logprobs": {"content": content}, "finish_reason": "stop"}]},
            {},
        )

    with Stub(respond) as stub:
        monkeypatch.setenv("RANKDISTILL_LLM_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        llm = load_llm(
            {"backend": "openai", "endpoint": "chat", "backoff": 0.01, "json_mode": "response_format"}
        )
        (gen,) = llm.generate(["Q?"], json_schema=schema)
    assert json.loads(gen.text) == {"answer": "4"}
    assert gen.logprob == pytest.approx(-0.3)
    assert llm.identity()["model"] == "served-model"


def test_api_key_sent_as_bearer():
    with Stub(lambda p, b: (200, completion("ok"), {})) as stub:
        llm = OpenAICompatLLM(stub.url, "m", api_key="sk-abc")
        assert llm.generate(["x"])[0].text == "ok"
    assert stub.headers[-1]["authorization"] == "Bearer sk-abc"


def test_needs_a_base_url(monkeypatch):
    for name in ("RANKDISTILL_LLM_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Exception, match="needs a base URL"):
        OpenAICompatLLM()
