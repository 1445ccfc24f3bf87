"""JSON over HTTP with retries: the one client every HTTP-backed component uses (the OpenAI-compatible LLM
backend, the rerank-API teacher).

`JSONClient.request` retries a 408/409/425/429/5xx answer and a transport error (refused, reset, dropped
connection, timed out) with exponential backoff (`backoff` * 2^attempt seconds, jittered, at most
`max_backoff`; a Retry-After header in seconds wins); any other answer that is not 200 fails at once, as
does a 200 whose body is not JSON (a server bug that a retry would only repeat). Errors name the URL
(without credentials) and, when the caller says so, what the request was for. `JSONClient.map` runs a
function over items with its requests in parallel.

At most `concurrency` requests of one client are in flight, whoever sends them: several `map` calls at
once (the batches a labelling run computes ahead, `rankdistill.pipelining`) share the client's slots, the
oldest batch's requests first.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from rankdistill.errors import RankdistillError
from rankdistill.pipelining import Cancelled, RequestSlots, carry_ticket, current_ticket

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: answers worth asking again: timeouts, conflicts, rate limits, server errors
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def env_first(*names: str) -> str | None:
    """The value of the first of these environment variables that is set and not empty."""
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def redact_url(url: str) -> str:
    """`url` without user:password@ and without its query string (either may carry a key), for messages
    and label keys."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds; None when absent or an HTTP date (exponential backoff then)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class JSONClient:
    """A pooled HTTP client for one server that sends and receives JSON, with retries and backoff.

    Args:
        base_url: prefix of every request path (``request("POST", "completions")`` goes to
            ``{base_url}/completions``; an empty path to `base_url` itself).
        headers: sent with every request (never logged).
        api_key: sent as ``Authorization: Bearer <api_key>`` when given (never logged).
        timeout: seconds to wait for a response (connect timeout is min(timeout, 10)).
        max_retries: retries after a retryable answer or a transport error.
        backoff, max_backoff: exponential backoff, in seconds.
        concurrency: connections kept, and requests in flight at once (`slots`), across every thread and
            `map` call that uses this client.
        error: the RankdistillError subclass raised.
        log_retries: log a warning before each retry (off for probes, whose failures are expected).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        concurrency: int = 4,
        error: type[RankdistillError] = RankdistillError,
        log_retries: bool = True,
    ):
        import httpx

        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_url(self.base_url)
        self.max_retries = int(max_retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = max(1, int(concurrency))
        self.error = error
        self.log_retries = log_retries
        self._httpx = httpx
        #: the `concurrency` request slots every request of this client takes, oldest batch first
        self.slots = RequestSlots(self.concurrency)
        headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )

    def url(self, path: str = "") -> str:
        """`base_url` joined with `path`; a `path` that is itself a URL (http:// or https://) as it is."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def request(self, method: str, path: str = "", payload: Any = None, *, what: str | None = None) -> Any:
        """The decoded JSON of a 200 answer to one call, retried as the module says. `what` (e.g. "rerank
        request (format tei)") starts every error message and log line about it. The error raised has
        `status`: the last HTTP status, or None when no answer came (refused, dropped, timed out)."""
        url = self.url(path)
        shown = redact_url(url)
        prefix = f"{what} to " if what else ""
        last = ""
        status: int | None = None
        ticket = current_ticket()  # the batch this request serves, when batches run ahead
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                with self.slots.hold(ticket):
                    resp = self._client.request(method, url, json=payload)
            except self._httpx.TransportError as exc:  # refused, reset, dropped, timed out
                last = f"{type(exc).__name__}: {exc}"
                status = None
            else:
                status = resp.status_code
                if resp.status_code == 200:
                    try:
                        return resp.json()
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        raise self.error(
                            f"{prefix}{shown} answered 200 with a body that is not JSON: {resp.text[:300]!r}"
                        ) from None
                body = resp.text[:500]
                if resp.status_code not in RETRY_STATUS:
                    raise self._error(f"{prefix}{shown} answered HTTP {resp.status_code}: {body}", status)
                last = f"HTTP {resp.status_code}: {body}"
                retry_after = retry_after_seconds(resp.headers.get("retry-after"))
            if attempt == self.max_retries:
                break
            delay = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = min(self.max_backoff, retry_after)
            (logger.warning if self.log_retries else logger.debug)(
                "%s%s failed (%s); retry %d/%d in %.1fs",
                prefix,
                shown,
                last,
                attempt + 1,
                self.max_retries,
                delay,
            )
            if ticket is None:
                time.sleep(delay)
            elif ticket.cancelled.wait(delay):
                raise Cancelled(f"{prefix}{shown}: not retried, its batch was called off")
        raise self._error(
            f"{prefix}{shown} failed after {self.max_retries + 1} attempts; last error: {last}", status
        )

    def _error(self, message: str, status: int | None) -> RankdistillError:
        err = self.error(message)
        err.status = status  # type: ignore[attr-defined]
        return err

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """fn over items, `concurrency` at a time (their requests take the client's slots), results in
        input order. An error is raised once the calls under way have ended."""
        ticket = current_ticket()
        with self.slots.expect(ticket, len(items)) as done:  # this batch's claim on the slots it frees

            def one(item: T) -> R:
                try:
                    return fn(item)
                finally:
                    done()

            if len(items) <= 1 or self.concurrency == 1:
                return [one(x) for x in items]
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
                return list(pool.map(carry_ticket(one), items))

    def close(self) -> None:
        self._client.close()
