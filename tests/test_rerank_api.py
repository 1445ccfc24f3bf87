"""Rerank endpoints, on real components: our server's standard `POST /v1/rerank` (a real uvicorn on
127.0.0.1 with a real MiniLM cross-encoder), the `rerank-api` teacher labelling through it (directly and
into a label store through `rankdistill label`), and the TEI and vLLM /score shapes and the failure modes
(retries, malformed answers) against small real HTTP servers on 127.0.0.1 that score with the same model."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from http_helpers import ThreadedServer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from http_helpers import UvicornServer  # noqa: E402
from rankdistill.inference.reranker import Reranker  # noqa: E402
from rankdistill.server.app import create_app  # noqa: E402
from rankdistill.teachers import RerankAPIError, RerankAPITeacher, load_teacher, teacher_config  # noqa: E402
from test_server import DOCS, QUERY  # noqa: E402

KEY = "sk-rerank-test-secret"
QUERY2 = "what causes ocean tides"
PAIRS = [(QUERY, d) for d in DOCS] + [(QUERY2, d) for d in DOCS] + [(QUERY, "Vitamin C is in oranges.")]


@pytest.fixture(scope="module")
def reranker(cross_encoder_dir):
    return Reranker.load(cross_encoder_dir, dtype="fp32")


@pytest.fixture(scope="module")
def base_url(reranker):
    with UvicornServer(create_app(reranker, api_key=KEY, max_documents=8, max_wait_ms=5)) as url:
        yield url


@pytest.fixture()
def client(base_url):
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


def fast(url: str, **kw) -> RerankAPITeacher:
    """A teacher that backs off for milliseconds, not seconds."""
    kw.setdefault("max_retries", 2)
    return RerankAPITeacher(url, backoff=0.01, max_backoff=0.05, **kw)


# ---------------------------------------------------------------------------------- our /v1/rerank
def test_v1_rerank_answers_the_standard_shape_best_first(client, reranker):
    docs = [DOCS[0], {"text": DOCS[1]}, DOCS[2]]
    r = client.post(
        "/v1/rerank",
        json={"model": "anything", "query": QUERY, "documents": docs, "top_n": 2, "return_documents": True},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    expected = reranker.score([(QUERY, d) for d in DOCS])
    order = sorted(range(3), key=lambda i: -expected[i])[:2]
    assert [x["index"] for x in body["results"]] == order
    assert [x["relevance_score"] for x in body["results"]] == pytest.approx(
        [expected[i] for i in order], abs=1e-4
    )
    assert [x["document"] for x in body["results"]] == [{"text": DOCS[i]} for i in order]
    assert body["model"] and body["id"].startswith("rerank-") and body["usage"] == {"documents": 3}

    r = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})  # all, no documents echoed
    results = r.json()["results"]
    assert sorted(x["index"] for x in results) == [0, 1, 2] and all("document" not in x for x in results)
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    # the same scores as the server's own /rerank (one scoring path)
    own = client.post("/rerank", json={"query": QUERY, "documents": DOCS}).json()["results"]
    assert {x["index"]: x["score"] for x in own} == {x["index"]: x["relevance_score"] for x in results}


def test_v1_rerank_refuses_bad_requests_with_the_field_at_fault(client, base_url):
    def message(body):
        r = client.post("/v1/rerank", json=body)
        assert r.status_code == 422, r.text
        return r.json()["message"]

    assert "body.documents: List should have at least 1 item" in message({"query": QUERY, "documents": []})
    assert "body.top_n: Input should be greater than or equal to 1" in message(
        {"query": QUERY, "documents": DOCS, "top_n": 0}
    )
    assert "body.query: Field required" in message({"documents": DOCS})
    assert "body.query: String should have at least 1 character" in message({"query": "", "documents": DOCS})
    assert "body.documents.0" in message({"query": QUERY, "documents": [{"txt": "typo"}]})
    assert "top_k: Extra inputs are not permitted" in message({"query": QUERY, "documents": DOCS, "top_k": 1})
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS * 3})
    assert r.status_code == 413 and "too many documents: 9; the limit is 8" in r.json()["detail"]
    assert httpx.post(f"{base_url}/v1/rerank", json={"query": QUERY, "documents": DOCS}).status_code == 401
    assert "/v1/rerank" in httpx.get(f"{base_url}/openapi.json").json()["paths"]


# ------------------------------------------------------------------ the teacher, through our server
def test_teacher_scores_equal_the_servers_and_the_rerankers(base_url, reranker):
    spec = f"rerank-api:{base_url}/v1/rerank"
    assert teacher_config(spec) == {"type": "rerank-api", "url": f"{base_url}/v1/rerank"}
    teacher = load_teacher(spec, api_key=KEY, batch_size=2, concurrency=3)
    try:
        labels = teacher.score(PAIRS)
        assert [lab.score for lab in labels] == pytest.approx(reranker.score(PAIRS), abs=1e-4)
        assert all(lab.logits is None for lab in labels)
        assert teacher.batch_size == 6  # the runner hands it enough pairs to fill 3 requests of 2
        identity = teacher.identity()
        assert identity == {
            "teacher": "rerank-api",
            "version": 1,
            "url": f"{base_url}/v1/rerank",
            "api": "cohere",
            "model": None,
        }
        assert KEY not in repr(teacher) and KEY not in json.dumps(identity)
        # concurrency, timeout, batch size and key do not change the label key
        other = RerankAPITeacher(
            f"{base_url}/v1/rerank", api_key="other", concurrency=1, timeout=5, batch_size=9
        )
        assert other.identity() == identity
        assert RerankAPITeacher(base_url, model="m").identity()["model"] == "m"
        assert RerankAPITeacher(base_url).url == f"{base_url}/v1/rerank"  # no path: the format's usual one
        from rankdistill.pipeline.stages.common import teacher_parameters

        assert teacher.parameters() is None and teacher_parameters(teacher) is None  # unknown, not 0
    finally:
        teacher.close()


def test_a_wrong_key_is_a_clear_error_that_does_not_show_the_key(base_url, caplog):
    teacher = fast(f"{base_url}/v1/rerank", api_key="sk-wrong-secret")
    with caplog.at_level(logging.DEBUG), pytest.raises(RerankAPIError) as info:
        teacher.score(PAIRS[:2])
    message = str(info.value)
    assert f"rerank request (api=cohere) to {base_url}/v1/rerank answered HTTP 401" in message
    assert "sk-wrong-secret" not in message and "sk-wrong-secret" not in caplog.text


def test_rankdistill_label_writes_rows_through_the_endpoint(base_url, reranker, tmp_path, monkeypatch):
    """`rankdistill label --teacher rerank-api:URL` with the key from $RERANK_API_KEY: real rows in the
    store, the endpoint's scores; a second run computes nothing; the key is nowhere in the store."""
    from typer.testing import CliRunner

    from rankdistill.cli import app

    docs = {f"d{i}": d for i, d in enumerate(DOCS)} | {"d3": "Oranges and lemons are rich in vitamin C."}
    queries = {"q1": QUERY, "q2": QUERY2}
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items())
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items())
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td1\t1\n")
    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RANKDISTILL_PROGRESS", "0")
    monkeypatch.setenv("RERANK_API_KEY", KEY)
    store = tmp_path / "labels.sqlite"
    args = ["label", "-d", str(folder), "-t", f"rerank-api:{base_url}/v1/rerank", "-k", "3", "-s", str(store)]
    args += ["--export", str(tmp_path / "labels.jsonl")]

    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout[first.stdout.index("{") :])
    n = out["pairs"]
    assert n >= 4 and out["per_teacher"]["rerank-api"]["computed"] == n and out["store"]["labels"] == n
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == n and {r["teacher"] for r in rows} == {"rerank-api"}
    expected = reranker.score([(r["query"], r["doc"]) for r in rows])
    assert [r["label"] for r in rows] == pytest.approx(expected, abs=1e-4)

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    out2 = json.loads(again.stdout[again.stdout.index("{") :])
    assert (
        out2["per_teacher"]["rerank-api"]["computed"] == 0
        and out2["per_teacher"]["rerank-api"]["cached"] == n
    )
    assert KEY.encode() not in store.read_bytes()


# ------------------------------------------------- other servers' shapes, and failures, on 127.0.0.1
class StandIn(ThreadedServer):
    """A threaded HTTP server on 127.0.0.1 standing in for a remote rerank server: `respond(path, body)`
    returns (status, JSON-able answer or raw bytes), or None to drop the connection without answering."""

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with stand_in.lock:
                    stand_in.requests.append(
                        (self.path, body, {k.lower(): v for k, v in self.headers.items()})
                    )
                answer = stand_in.respond(self.path, body)
                if answer is None:  # the connection drops mid-request
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, payload = answer
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.serve(Handler)


def test_tei_shape(reranker):
    """TEI's /rerank: texts in, [{index, score}] out sorted by score (not in request order)."""

    def tei(path, body):
        assert path == "/rerank" and set(body) == {"query", "texts", "raw_scores", "truncate", "return_text"}
        scores = reranker.score([(body["query"], t) for t in body["texts"]])
        return 200, sorted(
            ({"index": i, "score": s} for i, s in enumerate(scores)), key=lambda x: -x["score"]
        )

    with StandIn(tei) as server:
        teacher = fast(server.url, api="tei", raw_scores=True, batch_size=3)  # no path: /rerank
        labels = teacher.score(PAIRS)
        assert [lab.score for lab in labels] == pytest.approx(reranker.score(PAIRS), abs=1e-4)
        assert len(server.requests) == 3  # by query, 3 documents a request: 3 + 1 and 3
        assert server.requests[0][1]["raw_scores"] is True and "authorization" not in server.requests[0][2]
        assert teacher.identity()["raw_scores"] is True and teacher.identity()["api"] == "tei"
        # the same teacher from a spec string with options (the CLI's --teacher)
        spec = f"rerank-api:{server.url}?api=tei&raw_scores=true&batch_size=3&backoff=0.01"
        from_spec = load_teacher(spec)
        assert from_spec.identity() == teacher.identity() and from_spec.request_size == 3
        assert [lab.score for lab in from_spec.score(PAIRS[:2])] == pytest.approx(
            [lab.score for lab in labels[:2]]
        )


def test_vllm_score_shape(reranker, monkeypatch):
    monkeypatch.setenv("RANKDISTILL_RERANK_API_KEY", "sk-env-key")

    def score(path, body):
        assert path == "/score" and body["model"] == "my-reranker"
        scores = reranker.score([(body["text_1"], t) for t in body["text_2"]])
        return 200, {"data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]}

    with StandIn(score) as server:
        teacher = fast(f"{server.url}/score", api="vllm-score", model="my-reranker")
        assert [lab.score for lab in teacher.score(PAIRS)] == pytest.approx(reranker.score(PAIRS), abs=1e-4)
        assert server.requests[0][2]["authorization"] == "Bearer sk-env-key"
        assert "sk-env-key" not in json.dumps(teacher.identity())


def cohere_answer(reranker, body) -> dict:
    scores = reranker.score([(body["query"], d) for d in body["documents"]])
    return {"results": [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]}


def test_500_then_200_and_a_dropped_connection_are_retried(reranker):
    calls = {"n": 0}

    def flaky(path, body):
        calls["n"] += 1
        if calls["n"] == 1:
            return 500, {"error": "overloaded"}
        if calls["n"] == 2:
            return None  # connection dropped
        return 200, cohere_answer(reranker, body)

    with StandIn(flaky) as server:
        teacher = fast(f"{server.url}/v1/rerank", model="rerank-v3.5")
        labels = teacher.score(PAIRS[:3])
        assert [lab.score for lab in labels] == pytest.approx(reranker.score(PAIRS[:3]), abs=1e-4)
        assert calls["n"] == 3
        body = server.requests[-1][1]
        assert body == {
            "model": "rerank-v3.5",
            "query": QUERY,
            "documents": DOCS,
            "top_n": 3,
            "return_documents": False,
        }


def test_a_server_that_keeps_failing_is_named_after_the_retries():
    with StandIn(lambda p, b: (503, {"error": "down"})) as server:
        teacher = fast(f"{server.url}/v1/rerank", max_retries=2)
        with pytest.raises(
            RerankAPIError,
            match=r"rerank request \(api=cohere\) to http://127\.0\.0\.1:\d+/v1/rerank "
            r"failed after 3 attempts; last error: HTTP 503",
        ):
            teacher.score(PAIRS[:2])
        assert len(server.requests) == 3
    with StandIn(lambda p, b: (400, {"error": "model not found"})) as server:
        with pytest.raises(RerankAPIError, match=r"answered HTTP 400: .*model not found"):
            fast(f"{server.url}/v1/rerank").score(PAIRS[:2])
        assert len(server.requests) == 1  # a client error is not retried


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b'{"results": [{"index": 0, "relevance', "a body that is not JSON"),
        ({"data": [{"index": 0, "score": 1.0}]}, "the answer is an object with keys ['data']"),
        ({"results": [{"index": 0, "relevance_score": 0.5}]}, "no score for index 1"),
        (
            {"results": [{"index": 0, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.1}]},
            "index 0 appears twice",
        ),
        (
            {"results": [{"index": 0, "relevance_score": 0.5}, {"index": 7, "relevance_score": 0.1}]},
            "entry 1 has index 7",
        ),
        (
            {"results": [{"index": 0, "relevance_score": "high"}, {"index": 1, "relevance_score": 0.1}]},
            "'high', not a finite number",
        ),
    ],
)
def test_a_malformed_answer_is_a_clear_error_naming_the_url(answer, why):
    with StandIn(lambda p, b: (200, answer)) as server:
        teacher = fast(f"{server.url}/v1/rerank")
        with pytest.raises(RerankAPIError) as info:
            teacher.score(PAIRS[:2])
        message = str(info.value)
        assert f"rerank request (api=cohere) to {server.url}/v1/rerank" in message
        assert why in message, message
        shape = 'expected {"results": [{"index", "relevance_score"}, ...]} with one entry for each of the 2'
        assert "not JSON" in why or shape in message
        assert len(server.requests) == 1  # the same answer would come again: not retried


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="api must be one of cohere, tei, vllm-score"):
        RerankAPITeacher("http://127.0.0.1:1/v1/rerank", api="openai")
    with pytest.raises(ValueError, match="needs an http"):
        RerankAPITeacher("127.0.0.1:8000")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        RerankAPITeacher("http://127.0.0.1:1", batch_size=0)
    with pytest.raises(ValueError, match=r"rerank-api:<url>, e\.g\. rerank-api:http://"):
        teacher_config("rerank-api")
