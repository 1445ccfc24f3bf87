"""The HTTP API on a real uvicorn server (127.0.0.1, free port), called with httpx."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from http_helpers import UvicornServer  # noqa: E402
from rankdistill.inference.reranker import Reranker  # noqa: E402
from rankdistill.server.app import create_app  # noqa: E402

KEY = "s3cret-key"
QUERY = "vitamin C deficiency causes scurvy"
DOCS = [
    "Scurvy is a disease resulting from a lack of vitamin C.",
    "The tides are caused by the gravitational pull of the moon.",
    "Sailors suffered from scurvy on long voyages because of vitamin deficiencies.",
]


@pytest.fixture(scope="module")
def reranker(cross_encoder_dir):
    return Reranker.load(cross_encoder_dir, dtype="fp32")


@pytest.fixture(scope="module")
def base_url(reranker):
    app = create_app(
        reranker, api_key=KEY, max_documents=5, max_chars=300, max_query_chars=100, max_wait_ms=20
    )
    with UvicornServer(app) as url:
        yield url


@pytest.fixture()
def client(base_url):
    with httpx.Client(base_url=base_url, headers={"X-API-Key": KEY}, timeout=60) as c:
        yield c


def test_rerank_matches_the_python_reranker(client, reranker):
    body = {
        "query": QUERY,
        "documents": [{"id": "a", "text": DOCS[0]}, DOCS[1], {"text": DOCS[2], "id": "c"}],
    }
    r = client.post("/rerank", json={**body, "top_k": 2, "return_text": True})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    expected = reranker.rerank(QUERY, DOCS, ids=["a", "1", "c"], top_k=2)
    assert [x["id"] for x in results] == [e.id for e in expected]
    assert [x["score"] for x in results] == pytest.approx([e.score for e in expected], abs=1e-4)
    assert [x["rank"] for x in results] == [1, 2]
    assert results[0]["text"] == DOCS[expected[0].index]
    assert "explanation" not in results[0]


def test_explain_returns_term_matches_in_input_order(client):
    r = client.post("/explain", json={"query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [0, 1, 2]
    assert sorted(x["rank"] for x in results) == [1, 2, 3]
    terms = {m["term"] for m in results[0]["explanation"]["matched_terms"]}
    assert {"vitamin", "scurvy", "deficiency"} - terms == {"deficiency"}
    stems = {m["term"]: m["match"] for m in results[2]["explanation"]["matched_terms"]}
    assert stems["deficiency"] == "stem"
    r = client.post("/rerank", json={"query": QUERY, "documents": DOCS, "explain": True, "top_k": 1})
    assert r.json()["results"][0]["explanation"]["type"] == "terms"


def test_api_key_is_required(base_url):
    body = {"query": QUERY, "documents": DOCS}
    assert httpx.post(f"{base_url}/rerank", json=body).status_code == 401
    r = httpx.post(f"{base_url}/rerank", json=body, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and "wrong API key" in r.json()["detail"]
    r = httpx.post(f"{base_url}/rerank", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    health = httpx.get(f"{base_url}/health").json()  # open for load-balancer probes
    assert health["status"] == "ok" and health["limits"]["api_key_required"] is True


def test_limits_and_malformed_requests(client):
    r = client.post("/rerank", json={"query": QUERY, "documents": DOCS * 2})
    assert r.status_code == 413 and "too many documents: 6; the limit is 5" in r.json()["detail"]
    r = client.post("/rerank", json={"query": QUERY, "documents": ["ok", "x" * 301]})
    assert r.status_code == 413 and "documents[1] has 301 characters" in r.json()["detail"]
    r = client.post("/rerank", json={"query": "q" * 101, "documents": ["ok"]})
    assert r.status_code == 413 and "query has 101 characters" in r.json()["detail"]
    big = client.post("/rerank", content=b'{"query": "' + b"q" * 3_000_000 + b'"}')
    assert big.status_code == 413 and "request body" in big.json()["detail"]
    r = client.post(
        "/rerank", content=b'{"query": "x", "documents": [', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "not valid JSON" in r.json()["message"]
    r = client.post("/rerank", json={"documents": DOCS})
    assert r.status_code == 422 and "body.query: Field required" in r.json()["message"]
    r = client.post("/rerank", json={"query": QUERY, "documents": [{"title": "no text"}]})
    assert r.status_code == 422 and "documents" in r.json()["message"]
    r = client.post("/rerank", json={"query": QUERY, "documents": DOCS, "top_k": 0})
    assert r.status_code == 422 and "top_k" in r.json()["message"]
    r = client.post("/rerank", json={"query": QUERY, "documents": DOCS, "long_docs": "middle"})
    assert r.status_code == 422
    # after all that, the server still answers
    assert client.post("/rerank", json={"query": QUERY, "documents": []}).json()["results"] == []
    assert client.get("/health").status_code == 200


def test_concurrent_requests_are_micro_batched(client, base_url, reranker):
    before = client.get("/health").json()["batching"]

    def call(i):
        with httpx.Client(base_url=base_url, headers={"X-API-Key": KEY}, timeout=60) as c:
            return c.post("/rerank", json={"query": f"{QUERY} {i}", "documents": DOCS}).json()["results"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(16)))
    after = client.get("/health").json()["batching"]
    requests = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert requests == 16
    assert batches < requests  # several requests shared a model pass
    assert after["largest_batch_requests"] > 1
    # batching with other requests does not change a request's scores
    alone = reranker.rerank(f"{QUERY} 3", DOCS)
    assert [x["score"] for x in answers[3]] == pytest.approx([a.score for a in alone], abs=1e-4)


def test_openapi_docs(base_url):
    spec = httpx.get(f"{base_url}/openapi.json").json()
    assert {"/rerank", "/explain", "/health"} <= set(spec["paths"])
    assert httpx.get(f"{base_url}/docs").status_code == 200


def test_a_failing_model_answers_500_and_the_server_survives(reranker):
    class Flaky:
        path = "flaky"
        calls = 0

        def score(self, pairs, long_docs=None):
            Flaky.calls += 1
            if any("boom" in d for _, d in pairs):
                raise RuntimeError("model exploded")
            return reranker.score(pairs)

        def explain(self, query, docs):
            return reranker.explain(query, docs)

    with UvicornServer(create_app(Flaky(), max_wait_ms=0)) as url:
        r = httpx.post(f"{url}/rerank", json={"query": "q", "documents": ["boom"]}, timeout=60)
        assert r.status_code == 500 and "model exploded" not in r.text  # internals stay in the log
        assert r.json()["error_id"] in r.json()["detail"]
        r = httpx.post(f"{url}/rerank", json={"query": "q", "documents": ["fine"]}, timeout=60)
        assert r.status_code == 200 and len(r.json()["results"]) == 1
        assert httpx.get(f"{url}/health").json()["batching"]["errors"] == 1


def test_served_top_k_carries_the_rescored_scores_of_the_python_reranker(cross_encoder_dir, monkeypatch):
    """With the default dtype (bf16 + fp32 rescoring of the top-k where the CPU has bf16, forced here on
    every CPU), the server's top-k scores are the ones `Reranker.rerank` returns, also when requests share
    a batch, and they are the fp32 model's."""
    from rankdistill.hardware import BF16_ENV

    monkeypatch.setenv(BF16_ENV, "1")
    auto = Reranker.load(cross_encoder_dir)
    assert auto.rescore_backend is not None
    docs = DOCS + [f"{d} Extra words number {i}." for i, d in enumerate(DOCS)]
    with UvicornServer(create_app(auto, max_wait_ms=30)) as url:

        def call(i):
            body = {"query": f"{QUERY} {i}", "documents": docs, "top_k": 2}
            return httpx.post(f"{url}/rerank", json=body, timeout=60).json()["results"]

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(call, range(6)))
    for i, got in enumerate(answers):
        expected = auto.rerank(f"{QUERY} {i}", docs, top_k=2)
        assert [x["index"] for x in got] == [e.index for e in expected]
        assert [x["score"] for x in got] == pytest.approx([e.score for e in expected], abs=1e-5)
    exact = Reranker.load(cross_encoder_dir, dtype="fp32")
    for i, got in enumerate(answers):
        ref = exact.rerank(f"{QUERY} {i}", docs, top_k=2)
        assert [x["score"] for x in got] == pytest.approx([e.score for e in ref], abs=1e-4)
