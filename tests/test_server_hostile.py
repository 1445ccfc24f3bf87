"""The HTTP API against hostile and broken clients, on a real uvicorn server (127.0.0.1) with a real model:
text that cannot be encoded, NaN in numbers, chunked and slow bodies, requests too large, clients that
leave, and a model failure that must not leak internals."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from http_helpers import UvicornServer  # noqa: E402
from rankdistill.inference.reranker import Reranker  # noqa: E402
from rankdistill.server.app import create_app  # noqa: E402
from rankdistill.server.batching import MicroBatcher  # noqa: E402
from test_server import DOCS, QUERY  # noqa: E402

LIMITS = dict(
    max_documents=400,
    max_chars=2000,
    max_query_chars=200,
    max_request_chars=200_000,
    max_batch_pairs=8,
    max_wait_ms=20,
    body_timeout_s=1.0,
)
BODY_CAP = 400 * (2000 * 2 + 256) + 200 * 2 + 65536  # what create_app derives from LIMITS


@pytest.fixture(scope="module")
def reranker(cross_encoder_dir):
    return Reranker.load(cross_encoder_dir, dtype="fp32")


@pytest.fixture(scope="module")
def server(reranker):
    with UvicornServer(create_app(reranker, **LIMITS)) as url:
        yield url


def _post_raw(url: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/rerank", content=body, headers={"Content-Type": "application/json"}, timeout=60)


def _connect(url: str, timeout: float = 15.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def _read_status(sock: socket.socket) -> str:
    """The status line of the response, or '' when none comes before the socket's timeout."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def test_a_lone_surrogate_answers_422_naming_the_field_and_fails_no_one_else(server, reranker):
    bad_bodies = {
        b'{"query": "q", "documents": ["fine", "a\\ud800b"]}': "body.documents.1",
        b'{"query": "q\\udc00", "documents": ["fine"]}': "body.query",
        b'{"query": "q", "documents": [{"id": "\\ud800", "text": "x"}]}': "body.documents.0.id",
        b'{"query": "q", "documents": [{"title": "t\\udfff", "text": "x"}]}': "body.documents.0.title",
    }

    def good(i):
        return httpx.post(f"{server}/rerank", json={"query": f"{QUERY} {i}", "documents": DOCS}, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        goods = [pool.submit(good, i) for i in range(4)]
        bads = {pool.submit(_post_raw, server, body): where for body, where in bad_bodies.items()}
        for future, where in bads.items():
            r = future.result()
            assert r.status_code == 422, r.text
            message = r.json()["message"]  # pydantic itself refuses some fields, rankdistill the rest
            assert message.startswith(f"{where}: ") and (
                "unpaired surrogate" in message or "unicode" in message
            )
        for i, future in enumerate(goods):
            r = future.result()
            assert r.status_code == 200, r.text
            expected = reranker.rerank(f"{QUERY} {i}", DOCS)
            assert [x["score"] for x in r.json()["results"]] == pytest.approx(
                [e.score for e in expected], abs=1e-4
            )


def test_a_failing_batch_is_rescored_one_by_one(reranker):
    """Real tokenizer, real failure: the lone surrogate reaches the model thread (no HTTP validation
    here); the two good requests batched with it still get their scores."""

    async def main():
        batcher = MicroBatcher(reranker, max_batch_pairs=64, max_wait_ms=200)
        await batcher.start()
        try:
            results = await asyncio.gather(
                batcher.score(QUERY, DOCS),
                batcher.score("q", ["a\ud800b"]),
                batcher.score("another query", DOCS[:2]),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()
        return results, batcher.stats

    (first, bad, third), stats = asyncio.run(main())
    assert isinstance(bad, Exception)
    assert first == pytest.approx(reranker.score([(QUERY, d) for d in DOCS]), abs=1e-5)
    assert third == pytest.approx(reranker.score([("another query", d) for d in DOCS[:2]]), abs=1e-5)
    assert stats.errors == 1 and stats.requests == 2


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_or_infinity_in_a_number_answers_422(server, number):
    r = _post_raw(server, f'{{"query": "q", "documents": ["d"], "top_k": {number}}}'.encode())
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith("body.top_k: ")
    assert "NaN" not in r.text and "Infinity" not in r.text


def test_the_work_one_request_may_queue_is_bounded(server):
    docs = ["word " * 300] * 200  # 1500 characters each, 300000 in all
    r = httpx.post(
        f"{server}/rerank", json={"query": "q", "documents": docs, "long_docs": "maxp"}, timeout=60
    )
    assert r.status_code == 413
    assert "300000 characters in all; the limit is 200000 per request" in r.json()["detail"]


def test_a_chunked_body_over_the_cap_is_refused_before_it_ends(server):
    sock = _connect(server)
    with sock:
        sock.sendall(
            b"POST /rerank HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b'{"query": "' + b"q" * 65536
        sent = 0
        try:
            while sent <= BODY_CAP + 2 * len(chunk):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                chunk = b"q" * 65536
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we want
        # never the last chunk: a server that waits for the whole body never answers
        assert _read_status(sock).startswith("HTTP/1.1 413 ")


def test_a_chunked_body_under_the_cap_is_served(server):
    def body():
        yield b'{"query": "vitamin C", '
        yield b'"documents": ["Scurvy is a lack of vitamin C.", "Tides and the moon."]}'

    r = httpx.post(
        f"{server}/rerank", content=body(), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert r.status_code == 200 and len(r.json()["results"]) == 2


def test_a_body_that_arrives_too_slowly_answers_408(server):
    sock = _connect(server)
    with sock:
        sock.sendall(
            b"POST /rerank HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"query": "'
        )
        t0 = time.monotonic()
        assert _read_status(sock).startswith("HTTP/1.1 408 ")
        assert time.monotonic() - t0 < 10
    assert httpx.get(f"{server}/health").status_code == 200


def test_an_abandoned_request_stops_holding_the_model(server, reranker):
    """400 documents in slices of 8: once the first slice is scored, the client leaves. The slices it
    had not reached are never scored, and the next request is answered."""

    def pairs() -> int:
        return httpx.get(f"{server}/health").json()["batching"]["pairs"]

    before = pairs()
    docs = [
        f"Document number {i} talks about vitamin C, scurvy, sailors and long voyages." * 4
        for i in range(400)
    ]
    body = json.dumps({"query": QUERY, "documents": docs}).encode()
    sock = _connect(server)
    sock.sendall(
        b"POST /rerank HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    deadline = time.monotonic() + 60
    while pairs() == before and time.monotonic() < deadline:
        time.sleep(0.01)
    sock.close()  # the client goes away with its request half scored
    r = httpx.post(f"{server}/rerank", json={"query": QUERY, "documents": DOCS}, timeout=60)
    assert r.status_code == 200
    time.sleep(0.5)  # let a slice that was on the model thread finish and be counted
    scored_for_the_abandoned = pairs() - before - len(DOCS)
    assert 0 < scored_for_the_abandoned <= 100, scored_for_the_abandoned  # 400 if it kept going


def test_a_500_carries_an_error_id_and_the_detail_goes_to_the_log(cross_encoder_dir, caplog):
    closed = Reranker.load(cross_encoder_dir, dtype="fp32")
    closed.close()  # a real fault: the model is gone, scoring raises inside the model thread
    caplog.set_level(logging.ERROR, logger="rankdistill")
    with UvicornServer(create_app(closed, max_wait_ms=0)) as url:
        r = httpx.post(f"{url}/rerank", json={"query": "q", "documents": ["d"]}, timeout=60)
        assert r.status_code == 500
        error_id = r.json()["error_id"]
        assert r.json()["detail"] == f"internal error (error id {error_id}; the server log has the details)"
        assert "NoneType" not in r.text and "Traceback" not in r.text
        r = httpx.post(f"{url}/rerank", json={"query": "q", "documents": []}, timeout=60)
        assert r.status_code == 200  # still serving
    logged = [rec for rec in caplog.records if error_id in rec.getMessage()]
    assert logged and logged[0].exc_info is not None
