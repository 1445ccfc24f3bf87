"""A pointwise teacher behind a rerank endpoint: Cohere, Jina, vLLM, Hugging Face TEI, or `rankdistill
serve` itself. No LLM and no local model: each (query, documents) batch is one POST.

Request and response shapes, chosen by `api`:

- ``cohere`` (default; also Jina, vLLM's ``/v1/rerank`` and ``/rerank``, and rankdistill's own
  ``/v1/rerank``): ``{"model", "query", "documents": [str], "top_n", "return_documents": false}`` ->
  ``{"results": [{"index", "relevance_score"}]}``.
- ``tei`` (text-embeddings-inference's ``/rerank``): ``{"query", "texts": [str], "raw_scores",
  "truncate"}`` -> ``[{"index", "score"}]``.
- ``vllm-score`` (vLLM's ``/score``, or ``/v1/score``): ``{"model", "text_1": query, "text_2": [str]}``
  -> ``{"data": [{"index", "score"}]}``.

The URL is the endpoint itself (``http://host:8000/v1/rerank``); a URL with no path gets the format's
usual one (``/v1/rerank``, ``/rerank``, ``/score``). A failed request is retried (HTTP 408/409/425/429/5xx,
refused, reset or dropped connections, timeouts) by `rankdistill.http_json.JSONClient`, then fails with a
`RerankAPIError` that names the URL, the request and what was expected; so does a 200 answer that is
not JSON or not the format's shape (a wrong `api`, a missing or repeated index), at once: a server that
answers the wrong shape answers it again.

The label key holds the URL (without credentials or query string), the format, the model and the
settings that change scores (TEI's `raw_scores` and `truncate`), never the API key, the concurrency,
the timeout or the batch size. The teacher's size is unknown: it runs no local model, so its parameter
count is None (reported as unknown, not as 0).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rankdistill.errors import RankdistillError
from rankdistill.http_json import JSONClient, env_first, redact_url
from rankdistill.teachers.base import TEACHERS, PointwiseLabel, PointwiseTeacher

#: request/response formats, and the endpoint path a URL without one gets
API_PATHS = {"cohere": "/v1/rerank", "tei": "/rerank", "vllm-score": "/score"}
#: environment variables the API key is read from when none is given, first set wins
API_KEY_ENV = ("RANKDISTILL_RERANK_API_KEY", "RERANK_API_KEY")
# 1: first version
VERSION = 1


class RerankAPIError(RankdistillError):
    """A rerank endpoint failed, refused, or answered something that is not the expected shape."""


def endpoint_url(url: str, api: str) -> str:
    """`url` with the format's usual path when it has none (``http://host:8080`` -> ``.../rerank``)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"rerank-api teacher needs an http(s) URL, e.g. http://127.0.0.1:8000/v1/rerank; got {url!r}"
        )
    path = parts.path if parts.path.strip("/") else API_PATHS[api]
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class RerankAPITeacher(PointwiseTeacher):
    """Scores pairs by POSTing each query's documents to a rerank endpoint.

    Args:
        url: the endpoint, e.g. ``http://127.0.0.1:8000/v1/rerank`` (see the module for formats).
        api: ``cohere`` (also Jina and vLLM's /v1/rerank), ``tei`` or ``vllm-score``.
        model: the model name sent with each request (Cohere and Jina need one; vLLM checks it against
            the model it serves; TEI takes none). Part of the label key.
        api_key: sent as ``Authorization: Bearer KEY``; default $RANKDISTILL_RERANK_API_KEY, then
            $RERANK_API_KEY. Never in the label key, the logs or error messages.
        batch_size: documents per request (the documents of one query; a query with more is split).
        concurrency: requests in flight at once.
        timeout: seconds to wait for one answer; max_retries, backoff, max_backoff: see `JSONClient`.
        raw_scores: TEI only: ask for the model's raw logits instead of sigmoid probabilities.
        truncate: TEI only: let the server truncate documents longer than the model takes (else it
            refuses them).
        headers: more headers to send (e.g. a gateway's own key header); not in the label key.

    `self.batch_size`, the pairs the label runner hands to `score` at once, is `batch_size` x
    `concurrency`, so one call keeps every connection busy.
    """

    name = "rerank-api"
    io_bound = True  # the next batch's requests go out while one is committed (rankdistill.pipelining)

    def __init__(
        self,
        url: str,
        *,
        api: str = "cohere",
        model: str | None = None,
        api_key: str | None = None,
        batch_size: int = 32,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        raw_scores: bool = False,
        truncate: bool = True,
        headers: dict[str, str] | None = None,
        name: str | None = None,
    ):
        api = str(api).strip().lower()
        if api not in API_PATHS:
            raise ValueError(f"rerank-api teacher: api must be one of {', '.join(API_PATHS)}, got {api!r}")
        if int(batch_size) < 1:
            raise ValueError(f"rerank-api teacher: batch_size must be >= 1, got {batch_size}")
        if int(concurrency) < 1:
            raise ValueError(f"rerank-api teacher: concurrency must be >= 1, got {concurrency}")
        self.api = api
        self.url = endpoint_url(str(url), api)
        self.model = model or None
        self.request_size = int(batch_size)
        self.concurrency = int(concurrency)
        self.batch_size = self.request_size * self.concurrency
        self.raw_scores = bool(raw_scores)
        self.truncate = bool(truncate)
        if name:
            self.name = name
        self._http = JSONClient(
            self.url,
            headers=headers,
            api_key=api_key or env_first(*API_KEY_ENV),
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            concurrency=self.concurrency,
            error=RerankAPIError,
        )
        self._what = f"rerank request (api={self.api})"

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "teacher": "rerank-api",
            "version": VERSION,
            "url": redact_url(self.url),
            "api": self.api,
            "model": self.model,
        }
        if self.api == "tei":
            out.update(raw_scores=self.raw_scores, truncate=self.truncate)
        return out

    def parameters(self) -> int | None:
        """Unknown: the model is behind an API."""
        return None

    # ------------------------------------------------------------------ requests
    def payload(self, query: str, documents: list[str]) -> dict[str, Any]:
        """The JSON body of one request in this teacher's format."""
        if self.api == "tei":
            return {
                "query": query,
                "texts": documents,
                "raw_scores": self.raw_scores,
                "truncate": self.truncate,
                "return_text": False,
            }
        model = {"model": self.model} if self.model else {}
        if self.api == "vllm-score":
            return {**model, "text_1": query, "text_2": documents}
        return {
            **model,
            "query": query,
            "documents": documents,
            "top_n": len(documents),
            "return_documents": False,
        }

    def parse(self, data: Any, n: int) -> list[float]:
        """One score per document, in request order, from an answer to a request of `n` documents."""
        if self.api == "tei":
            rows, field, shape = data, "score", '[{"index", "score"}, ...]'
        elif self.api == "vllm-score":
            rows = data.get("data") if isinstance(data, dict) else None
            field, shape = "score", '{"data": [{"index", "score"}, ...]}'
        else:
            rows = data.get("results") if isinstance(data, dict) else None
            field, shape = "relevance_score", '{"results": [{"index", "relevance_score"}, ...]}'
        expected = f"expected {shape} with one entry for each of the {n} documents (index 0..{n - 1})"

        def bad(why: str) -> RerankAPIError:
            return RerankAPIError(f"{self._what} to {redact_url(self.url)}: {why}; {expected}")

        if not isinstance(rows, list):
            got = (
                type(data).__name__
                if not isinstance(data, dict)
                else f"an object with keys {sorted(data)[:8]}"
            )
            raise bad(f"the answer is {got}")
        scores: list[float | None] = [None] * n
        for pos, row in enumerate(rows):
            index = row.get("index") if isinstance(row, dict) else None
            value = row.get(field) if isinstance(row, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
                raise bad(f"entry {pos} has index {index!r}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise bad(f"entry {pos} (index {index}) has {field} {value!r}, not a finite number")
            if scores[index] is not None:
                raise bad(f"index {index} appears twice")
            scores[index] = float(value)
        missing = [i for i, s in enumerate(scores) if s is None]
        if missing:
            raise bad(
                f"no score for index {', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''}"
            )
        return scores  # type: ignore[return-value]

    def score_documents(self, query: str, documents: list[str]) -> list[float]:
        """Scores of one request: `query` against at most `batch_size` documents."""
        if not documents:
            return []
        data = self._http.request("POST", "", self.payload(query, documents), what=self._what)
        return self.parse(data, len(documents))

    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        if not pairs:
            return []
        by_query: dict[str, list[int]] = {}
        for i, (query, _) in enumerate(pairs):
            by_query.setdefault(query, []).append(i)
        requests: list[tuple[str, list[int]]] = []
        for query, positions in by_query.items():
            for start in range(0, len(positions), self.request_size):
                requests.append((query, positions[start : start + self.request_size]))
        answers = self._http.map(
            lambda req: self.score_documents(req[0], [pairs[i][1] for i in req[1]]), requests
        )
        scores: list[float] = [0.0] * len(pairs)
        for (_, positions), values in zip(requests, answers, strict=True):
            for i, value in zip(positions, values, strict=True):
                scores[i] = value
        return [PointwiseLabel(s) for s in scores]

    def close(self) -> None:
        self._http.close()


TEACHERS.register(
    "rerank-api",
    RerankAPITeacher,
    aliases=("rerank",),
    arg="url",
    arg_help="the rerank endpoint's URL",
    example="http://127.0.0.1:8000/v1/rerank",
)
