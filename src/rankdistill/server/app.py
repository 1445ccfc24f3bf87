"""The HTTP API: `POST /rerank`, `POST /explain`, `GET /health`, OpenAPI docs at `/docs`; and the standard
`POST /v1/rerank` (the Cohere/Jina shape that vLLM serves too), so rerank clients and the `rerank-api`
teacher can call it.

Build it with `create_app(reranker, ...)` (the `rankdistill serve` command does, then runs uvicorn).
Every scoring request goes through one `MicroBatcher`, so concurrent clients share model passes.
Limits answer 413 (too many documents or characters, a document or query too long, a body too large,
chunked or not), a body that takes longer than `body_timeout_s` to arrive 408; a body that is not JSON,
not the expected shape, or text that is not valid Unicode answers 422 with the field at fault; a wrong
or missing API key answers 401. A client that goes away has its queued model work dropped. An error
inside the model answers 500 for that request only, with an error id (the detail goes to the log, not
to the client): the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import uuid
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

from rankdistill.errors import require

log = logging.getLogger(__name__)

require("fastapi", "server", "rankdistill serve")

from fastapi import Depends, FastAPI, HTTPException, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from rankdistill.server.batching import MicroBatcher  # noqa: E402

API_KEY_ENV = "RANKDISTILL_API_KEY"


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="Your id for the document; defaults to its position.")
    text: str = Field(..., description="The document text.")
    title: str | None = Field(None, description="Optional title, scored as 'title text'.")
    score: float | None = Field(
        None, description="The document's first-stage (e.g. BM25) score; a hybrid student needs it."
    )


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(..., min_length=1, description="The query.")
    documents: list[str | DocumentIn] = Field(..., description="Strings, or objects with id/text/title.")
    top_k: int | None = Field(None, ge=1, description="Return only the best k documents.")
    explain: bool = Field(False, description="Add an explanation to each result.")
    return_text: bool = Field(False, description="Echo each document's text in the results.")
    long_docs: Literal["truncate", "maxp"] | None = Field(
        None, description="Long documents: truncate, or split into passages and keep the best (maxp)."
    )


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(..., min_length=1)
    documents: list[str | DocumentIn] = Field(..., description="Documents to explain, in your order.")
    long_docs: Literal["truncate", "maxp"] | None = None


class Result(BaseModel):
    id: str
    index: int = Field(..., description="Position of the document in the request.")
    score: float
    rank: int = Field(..., description="1 for the best document.")
    text: str | None = None
    explanation: dict[str, Any] | None = None


class RerankResponse(BaseModel):
    model: str
    results: list[Result]


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., description="The document text.")
    score: float | None = Field(
        None, description="Not in Cohere's API: the first-stage score a hybrid student needs."
    )


class StandardRerankRequest(BaseModel):
    """`POST /v1/rerank`, as Cohere, Jina and vLLM take it."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="Accepted and ignored: the server has one model.")
    query: str = Field(..., min_length=1, description="The query.")
    documents: list[str | TextDocument] = Field(
        ..., min_length=1, description='Strings, or objects {"text": ...}; at least one.'
    )
    top_n: int | None = Field(None, ge=1, description="Return only the best n documents (default: all).")
    return_documents: bool = Field(False, description="Echo each document's text in its result.")


class StandardResult(BaseModel):
    index: int = Field(..., description="Position of the document in the request.")
    relevance_score: float
    document: TextDocument | None = None


class StandardRerankResponse(BaseModel):
    id: str
    model: str
    results: list[StandardResult] = Field(..., description="Best first.")
    usage: dict[str, int]


class HealthResponse(BaseModel):
    status: str
    model: dict[str, Any]
    limits: dict[str, Any]
    batching: dict[str, Any]


class _BodyGuard:
    """ASGI middleware: reads the whole body before the app sees it, refusing one over `max_bytes` (by
    Content-Length at once, or as its chunks arrive: a chunked body declares no length) and one that does
    not arrive within `timeout_s` (a slow client would otherwise hold its connection and memory)."""

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def _refuse(self, scope, receive, send, status: int, message: str) -> None:
        await JSONResponse({"detail": message}, status_code=status)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                size = int(value) if value.isdigit() else 0
                if size > self.max_bytes:
                    msg = f"request body is {size} bytes; the limit is {self.max_bytes} bytes"
                    await self._refuse(scope, receive, send, 413, msg)
                    return
                break
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > self.max_bytes:
                        msg = f"request body is over the limit of {self.max_bytes} bytes"
                        await self._refuse(scope, receive, send, 413, msg)
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            msg = f"the request body did not arrive within {self.timeout_s:g} s"
            await self._refuse(scope, receive, send, 408, msg)
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: waits for the client to disconnect
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


T = TypeVar("T")


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or 499 once the client disconnects: cancelling `work` drops its queued model
    passes, so an abandoned request stops holding the model thread."""

    async def client_left() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            await asyncio.sleep(0.05)  # a server that answers at once instead of waiting: poll

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if not task.cancelled() and task.done():
        return task.result()
    log.info("client left before %s %s was answered; its work was dropped", request.method, request.url.path)
    raise HTTPException(499, "the client closed the connection")


def _unicode_error(text: str) -> str | None:
    """Why `text` cannot be encoded (JSON allows a lone UTF-16 surrogate such as \\ud800, UTF-8 and
    the tokenizer do not), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"character {exc.start} is an unpaired surrogate (U+{ord(text[exc.start]):04X}); "
            "expected valid Unicode text"
        )
    return None


def _text(doc: str | DocumentIn) -> str:
    if isinstance(doc, str):
        return doc
    return f"{doc.title} {doc.text}" if doc.title and doc.text else (doc.title or doc.text)


def _ids(docs: list[str | DocumentIn]) -> list[str]:
    return [d.id if isinstance(d, DocumentIn) and d.id is not None else str(i) for i, d in enumerate(docs)]


def create_app(
    reranker: Any,
    *,
    api_key: str | None = None,
    max_documents: int = 1000,
    max_chars: int = 20_000,
    max_query_chars: int = 2_000,
    max_request_chars: int = 1_000_000,
    max_batch_pairs: int = 64,
    max_wait_ms: float = 2.0,
    body_timeout_s: float = 30.0,
) -> FastAPI:
    """The FastAPI app serving `reranker`. `api_key` (or $RANKDISTILL_API_KEY) makes `X-API-Key: KEY`
    or `Authorization: Bearer KEY` required on /rerank and /explain (/health stays open for probes).
    `max_request_chars` bounds the work one request may queue (the document characters it sends: with
    `long_docs="maxp"` the pairs scored grow with them, not with the number of documents)."""
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    batcher = MicroBatcher(reranker, max_batch_pairs=max_batch_pairs, max_wait_ms=max_wait_ms)
    limits = {
        "max_documents": max_documents,
        "max_chars_per_document": max_chars,
        "max_query_chars": max_query_chars,
        "max_request_chars": max_request_chars,
        "body_timeout_s": body_timeout_s,
        "api_key_required": api_key is not None,
    }
    model_name = os.path.basename(os.path.normpath(str(getattr(reranker, "path", "model"))))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="rankdistill reranker",
        version="1",
        description="Rerank documents for a query with a distilled student; explanations on request.",
        lifespan=lifespan,
    )
    # JSON of max_documents x max_chars, escaped, plus room for ids and titles.
    app.add_middleware(
        _BodyGuard,
        max_bytes=max_documents * (max_chars * 2 + 256) + max_query_chars * 2 + 65536,
        timeout_s=body_timeout_s,
    )
    app.state.batcher = batcher
    app.state.reranker = reranker

    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The server's API key.")
    bearer = HTTPBearer(auto_error=False, description="The server's API key as a bearer token.")

    async def check_key(
        x_api_key: str | None = Depends(key_header),
        auth: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> None:
        if api_key is None:
            return
        given = x_api_key or (auth.credentials if auth is not None else None)
        if given is None:
            raise HTTPException(
                401, "missing API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'"
            )
        if not hmac.compare_digest(given.encode("utf-8"), api_key.encode("utf-8")):
            raise HTTPException(401, "wrong API key")

    def invalid(loc: tuple, msg: str) -> RequestValidationError:
        return RequestValidationError([{"loc": ("body", *loc), "msg": msg, "type": "value_error"}])

    def hybrid_offsets(query: str, documents: list) -> list[float] | None:
        """A hybrid student's first-stage terms of a request (each document's 'score'), None otherwise."""
        if getattr(reranker, "first_stage", None) is None:
            return None
        missing = [i for i, d in enumerate(documents) if isinstance(d, str) or d.score is None]
        if missing:
            raise HTTPException(
                400,
                f"documents[{missing[0]}] has no 'score': this server's student is hybrid (its score adds "
                "the first-stage score), so each document must be an object with 'text' and 'score' "
                "(its BM25 or other first-stage score)",
            )
        return reranker.first_stage_terms(
            [query] * len(documents), [d.score for d in documents], [len(documents)]
        )

    def check_limits(query: str, documents: list[str | DocumentIn]) -> list[str]:
        if len(documents) > max_documents:
            raise HTTPException(
                413, f"too many documents: {len(documents)}; the limit is {max_documents} per request"
            )
        if len(query) > max_query_chars:
            raise HTTPException(413, f"query has {len(query)} characters; the limit is {max_query_chars}")
        if problem := _unicode_error(query):
            raise invalid(("query",), problem)
        texts = [_text(d) for d in documents]
        for i, (t, d) in enumerate(zip(texts, documents, strict=True)):
            if len(t) > max_chars:
                raise HTTPException(
                    413, f"documents[{i}] has {len(t)} characters; the limit is {max_chars} per document"
                )
            fields = (
                {(i,): d} if isinstance(d, str) else {(i, k): getattr(d, k) for k in ("id", "title", "text")}
            )
            for loc, value in fields.items():
                if value is not None and (problem := _unicode_error(value)):
                    raise invalid(("documents", *loc), problem)
        total = sum(len(t) for t in texts)
        if total > max_request_chars:
            raise HTTPException(
                413,
                f"the documents have {total} characters in all; the limit is {max_request_chars} per "
                "request (send them in several requests)",
            )
        return texts

    async def explain_docs(query: str, texts: list[str]) -> list[Any]:
        # Term matches (encoder) take microseconds: inline. Generated reasoning (decoder) needs the model
        # thread, between scoring batches.
        if getattr(reranker, "explains_with_model", False):
            return await batcher.run_exclusive(reranker.explain, query, texts)
        return reranker.explain(query, texts)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # One readable line first ("body.documents.0: Field required"), then where and what for each
        # error. The input is not echoed: it may be huge, or NaN, which JSON cannot carry.
        errors = exc.errors()
        lines = []
        for e in errors[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()))
            msg = "body is not valid JSON" if e.get("type") == "json_invalid" else e.get("msg", "invalid")
            lines.append(f"{where}: {msg}")
        detail = [
            {
                "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg")),
                "type": str(e.get("type")),
            }
            for e in errors[:20]
        ]
        return JSONResponse(
            {"message": "; ".join(lines) or "invalid request", "detail": detail}, status_code=422
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        error_id = uuid.uuid4().hex[:12]
        log.error(
            "request %s %s failed (error id %s)", request.method, request.url.path, error_id, exc_info=exc
        )
        return JSONResponse(
            {
                "detail": f"internal error (error id {error_id}; the server log has the details)",
                "error_id": error_id,
            },
            status_code=500,
        )

    @app.get("/health", response_model=HealthResponse, summary="Liveness, model and batching statistics")
    async def health() -> HealthResponse:
        info = reranker.info() if hasattr(reranker, "info") else {}
        info = {**info, "model": model_name}
        return HealthResponse(status="ok", model=info, limits=limits, batching=batcher.stats.to_dict())

    @app.post(
        "/rerank",
        response_model=RerankResponse,
        response_model_exclude_none=True,
        dependencies=[Depends(check_key)],
        summary="Rank documents for a query, best first",
    )
    async def rerank(req: RerankRequest, request: Request) -> RerankResponse:
        return await _unless_client_leaves(request, _rerank(req))

    async def _rerank(req: RerankRequest) -> RerankResponse:
        texts = check_limits(req.query, req.documents)
        offsets = hybrid_offsets(req.query, req.documents)
        scores = await batcher.score(req.query, texts, req.long_docs, req.top_k, offsets)
        ids = _ids(req.documents)
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
        if req.top_k is not None:
            order = order[: req.top_k]
        explanations: list[Any] = [None] * len(order)
        if req.explain and order:
            explanations = await explain_docs(req.query, [texts[i] for i in order])
        results = [
            Result(
                id=ids[i],
                index=i,
                score=scores[i],
                rank=r,
                text=texts[i] if req.return_text else None,
                explanation=explanations[r - 1],
            )
            for r, i in enumerate(order, 1)
        ]
        return RerankResponse(model=model_name, results=results)

    @app.post(
        "/explain",
        response_model=RerankResponse,
        response_model_exclude_none=True,
        dependencies=[Depends(check_key)],
        summary="Score and explain each document, in the order given",
    )
    async def explain(req: ExplainRequest, request: Request) -> RerankResponse:
        return await _unless_client_leaves(request, _explain(req))

    @app.post(
        "/v1/rerank",
        response_model=StandardRerankResponse,
        response_model_exclude_none=True,
        dependencies=[Depends(check_key)],
        summary="Rank documents for a query, best first (the Cohere/Jina/vLLM request and response)",
    )
    async def standard_rerank(req: StandardRerankRequest, request: Request) -> StandardRerankResponse:
        return await _unless_client_leaves(request, _standard_rerank(req))

    async def _standard_rerank(req: StandardRerankRequest) -> StandardRerankResponse:
        docs = [d if isinstance(d, str) else d.text for d in req.documents]
        texts = check_limits(req.query, docs)
        offsets = hybrid_offsets(req.query, req.documents)
        scores = await batcher.score(req.query, texts, None, req.top_n, offsets)
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
        if req.top_n is not None:
            order = order[: req.top_n]
        results = [
            StandardResult(
                index=i,
                relevance_score=scores[i],
                document=TextDocument(text=texts[i]) if req.return_documents else None,
            )
            for i in order
        ]
        return StandardRerankResponse(
            id=f"rerank-{uuid.uuid4().hex}",
            model=model_name,
            results=results,
            usage={"documents": len(texts)},
        )

    async def _explain(req: ExplainRequest) -> RerankResponse:
        texts = check_limits(req.query, req.documents)
        scores = await batcher.score(
            req.query, texts, req.long_docs, offsets=hybrid_offsets(req.query, req.documents)
        )
        explanations = await explain_docs(req.query, texts) if texts else []
        ids = _ids(req.documents)
        ranks = {i: r for r, i in enumerate(sorted(range(len(texts)), key=lambda i: (-scores[i], i)), 1)}
        results = [
            Result(id=ids[i], index=i, score=scores[i], rank=ranks[i], explanation=explanations[i])
            for i in range(len(texts))
        ]
        return RerankResponse(model=model_name, results=results)

    return app
