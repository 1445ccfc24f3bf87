"""Keeping a remote model busy across batches: ordered look-ahead over batches, and request slots that
every batch in flight shares.

Labelling and query generation work batch by batch: compute a batch, commit it (one SQLite transaction,
one journal write), next. Against a server that leaves it idle while a batch is committed and the next
one prepared, and at each batch's tail, when fewer requests than the client's concurrency are left.
`run_ahead(fn, items, lookahead)` computes up to `lookahead` further items (batches) in background threads
while the current one is computed and then handled by the caller, and still hands results back in input
order: commits stay batch by batch and in order, and a killed run loses at most the batches in flight.

The requests of all batches in flight share one HTTP client's `concurrency` (`RequestSlots`, used by
`rankdistill.http_json.JSONClient`): a free slot goes to the waiting request of the oldest batch first
(each batch's index is its priority, carried by a `Ticket` in a context variable), so the batch about to
be committed is not slowed by those behind it, and they only fill the slots it leaves idle. Results do not
depend on any of this: each batch is computed by the same function on the same inputs; only the order in
which requests reach the server changes (as it already did within a batch with concurrency > 1).

Only work that waits on I/O gains: an in-process model (llama.cpp, transformers) would compete with itself
for the same cores, so it keeps `lookahead=0`, which is the plain loop in the caller's thread.
`lookahead_for(x)` is the look-ahead for things that declare `io_bound = True` (the OpenAI-compatible LLM
backend, the rerank-API teacher, teachers over such a backend), else 0; `RANKDISTILL_LOOKAHEAD` sets it
(0 turns look-ahead off).
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rankdistill.errors import RankdistillError

T = TypeVar("T")
R = TypeVar("R")

#: batches computed ahead of the oldest unfinished one, for I/O-bound work (so 2 batches in flight)
DEFAULT_LOOKAHEAD = 1
LOOKAHEAD_ENV = "RANKDISTILL_LOOKAHEAD"


def default_lookahead() -> int:
    """`RANKDISTILL_LOOKAHEAD` when set (an integer >= 0), else `DEFAULT_LOOKAHEAD`."""
    raw = os.environ.get(LOOKAHEAD_ENV, "").strip()
    if not raw:
        return DEFAULT_LOOKAHEAD
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise RankdistillError(
            f"{LOOKAHEAD_ENV} must be an integer >= 0 (batches computed ahead), got {raw!r}"
        )
    return n


def is_io_bound(*things: Any) -> bool:
    """Whether any of `things` (LLM backends, teachers) declares `io_bound = True`: its calls wait on a
    server rather than compute in this process."""
    return any(bool(getattr(t, "io_bound", False)) for t in things)


def lookahead_for(*things: Any) -> int:
    """The look-ahead for work done by `things`: `default_lookahead()` when one is I/O-bound, else 0."""
    return default_lookahead() if is_io_bound(*things) else 0


class Cancelled(RankdistillError):
    """The work this request belonged to was called off (an earlier batch failed, or the run stopped)."""


@dataclass(frozen=True)
class Ticket:
    """What a request knows of the batch it serves: its priority (lower goes first) and whether the batch
    was called off."""

    priority: int
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False)

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled(f"batch {self.priority} was called off")


_TICKET: ContextVar[Ticket | None] = ContextVar("rankdistill_ticket", default=None)


def current_ticket() -> Ticket | None:
    """The ticket of the batch this thread works for (None outside `run_ahead`'s look-ahead)."""
    return _TICKET.get()


@contextmanager
def using_ticket(ticket: Ticket | None) -> Iterator[None]:
    """Work for `ticket`'s batch in this thread (a worker thread of a pool does not inherit it)."""
    token = _TICKET.set(ticket)
    try:
        yield
    finally:
        _TICKET.reset(token)


def carry_ticket(fn: Callable[[T], R]) -> Callable[[T], R]:
    """`fn` run under the caller's ticket, whatever thread runs it (for thread pools)."""
    ticket = current_ticket()
    if ticket is None:
        return fn

    def call(item: T) -> R:
        with using_ticket(ticket):
            ticket.check()
            return fn(item)

    return call


class RequestSlots:
    """At most `n` holders at once; a freed slot goes to the waiter with the lowest (priority, arrival).

    Work that will ask for slots can say so (`expect(ticket, n)`: n items, each `done()` when finished): a
    free slot is then not given to a later batch while an earlier batch has an item between two requests
    (it released a slot and is about to ask again), so an earlier batch's items never wait behind a later
    batch's requests; the later batches only take the slots the earlier ones leave idle.

    A waiter whose ticket is cancelled raises `Cancelled` (checked every 50 ms). `in_flight` is the number
    of slots held now."""

    def __init__(self, n: int):
        self.n = max(1, int(n))
        self.in_flight = 0
        self._cond = threading.Condition()
        self._queue: list[tuple[int, int]] = []
        self._arrivals = itertools.count()
        # by priority: items expected and not finished, slots held, requests waiting
        self._pending: dict[int, int] = {}
        self._held: dict[int, int] = {}
        self._waiting: dict[int, int] = {}

    def _busy_below(self, priority: int) -> bool:
        """Whether an earlier batch has an item that is neither holding nor waiting for a slot (between two
        requests, or not started): it keeps its claim on the next free slot."""
        return any(
            p < priority and count > self._held.get(p, 0) + self._waiting.get(p, 0)
            for p, count in self._pending.items()
        )

    @staticmethod
    def _add(counts: dict[int, int], key: int, delta: int) -> None:
        value = counts.get(key, 0) + delta
        if value:
            counts[key] = value
        else:
            counts.pop(key, None)

    def acquire(self, ticket: Ticket | None = None) -> None:
        priority = ticket.priority if ticket is not None else 0
        with self._cond:
            me = (priority, next(self._arrivals))
            heapq.heappush(self._queue, me)
            self._add(self._waiting, priority, 1)
            try:
                while self.in_flight >= self.n or self._queue[0] != me or self._busy_below(priority):
                    if ticket is not None:
                        ticket.check()
                    self._cond.wait(0.05)
                if ticket is not None:
                    ticket.check()
            except BaseException:
                self._queue.remove(me)
                heapq.heapify(self._queue)
                self._add(self._waiting, priority, -1)
                self._cond.notify_all()
                raise
            heapq.heappop(self._queue)
            self._add(self._waiting, priority, -1)
            self._add(self._held, priority, 1)
            self.in_flight += 1
            self._cond.notify_all()  # the next waiter may take another free slot

    def release(self, ticket: Ticket | None = None) -> None:
        with self._cond:
            self.in_flight -= 1
            self._add(self._held, ticket.priority if ticket is not None else 0, -1)
            self._cond.notify_all()

    @contextmanager
    def hold(self, ticket: Ticket | None = None) -> Iterator[None]:
        self.acquire(ticket)
        try:
            yield
        finally:
            self.release(ticket)

    @contextmanager
    def expect(self, ticket: Ticket | None, n: int) -> Iterator[Callable[[], None]]:
        """Announce `n` items of `ticket`'s batch that will ask for slots; yields `done()`, to call as each
        finishes (those not done are forgotten on exit). Nothing is announced without a ticket."""
        if ticket is None or n <= 0:
            yield lambda: None
            return
        left = [n]

        def done() -> None:
            with self._cond:
                if left[0] > 0:
                    left[0] -= 1
                    self._add(self._pending, ticket.priority, -1)
                    self._cond.notify_all()

        with self._cond:
            self._add(self._pending, ticket.priority, n)
        try:
            yield done
        finally:
            with self._cond:
                self._add(self._pending, ticket.priority, -left[0])
                left[0] = 0
                self._cond.notify_all()


class ItemFailed(Exception):
    """`fn` raised `cause` on item `index` (raised by `run_ahead` when that item's turn comes)."""

    def __init__(self, index: int, cause: BaseException):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.index, self.cause = index, cause


def run_ahead(fn: Callable[[T], R], items: Sequence[T], lookahead: int = 0) -> Iterator[tuple[int, R, float]]:
    """`fn` over `items`, yielding `(index, result, seconds in fn)` in input order.

    With `lookahead` 0, each item is computed in this thread when the caller asks for it (the plain loop).
    With `lookahead` L > 0, item i+1..i+L are computed in background threads while item i is, each under
    the `Ticket` of its index; when item i is done, item i+L+1 starts before i is handed to the caller, so
    whatever the caller does with it (a commit) overlaps with the work. At most L+1 items are computed at
    once. A failure of item i raises `ItemFailed(i, cause)` when item i's turn comes (the items before it
    were all yielded). Closing the generator (or an error) cancels the tickets of the items still under
    way, so their waiting requests give up, and waits for their threads."""
    if lookahead <= 0:
        for i, item in enumerate(items):
            t0 = time.perf_counter()
            try:
                out = fn(item)
            except Exception as exc:
                raise ItemFailed(i, exc) from exc
            yield i, out, time.perf_counter() - t0
        return

    tickets = [Ticket(i) for i in range(len(items))]

    def work(i: int) -> tuple[R, float]:
        with using_ticket(tickets[i]):
            t0 = time.perf_counter()
            return fn(items[i]), time.perf_counter() - t0

    pool = ThreadPoolExecutor(max_workers=lookahead + 1, thread_name_prefix="rankdistill-ahead")
    futures: dict[int, Future] = {}
    started = 0

    def start(upto: int) -> None:
        nonlocal started
        while started < min(upto, len(items)):
            futures[started] = pool.submit(work, started)
            started += 1

    try:
        start(lookahead + 1)
        for i in range(len(items)):
            try:
                out, seconds = futures.pop(i).result()
            except Exception as exc:
                raise ItemFailed(i, exc) from exc
            start(i + lookahead + 2)
            yield i, out, seconds
    finally:
        for ticket in tickets[:started]:
            ticket.cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
