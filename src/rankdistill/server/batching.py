"""Micro-batching: requests from concurrent clients are scored together in one model pass.

One worker thread owns the model (a CPU forward pass already uses every intra-op thread, so two at
once only contend). While it computes a batch, new requests queue up; when it is free it takes
everything waiting (up to `max_batch_pairs` pairs, waiting at most `max_wait_ms` for company when
the queue is short) and scores it as one list of pairs, sorted by length and padded per batch by the
`Reranker`. Each request gets back only its own scores; an error fails only the requests of that batch.
On CPU a few model batches' worth of pairs (the default 64) already keeps the cores busy: a larger cap
only makes every request in the batch wait for the slowest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Job:
    pairs: list[tuple[str, str]]
    long_docs: str | None
    future: asyncio.Future


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    pairs: int = 0
    busy_s: float = 0.0
    largest_batch_requests: int = 0
    errors: int = 0
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "pairs": self.pairs,
            "mean_requests_per_batch": round(self.requests / self.batches, 3) if self.batches else 0.0,
            "largest_batch_requests": self.largest_batch_requests,
            "model_busy_s": round(self.busy_s, 3),
            "errors": self.errors,
            "uptime_s": round(time.time() - self.started, 1),
        }


class MicroBatcher:
    """Collects scoring jobs from many coroutines and runs them through `reranker.score` together."""

    def __init__(self, reranker: Any, max_batch_pairs: int = 64, max_wait_ms: float = 2.0):
        self.reranker = reranker
        self.max_batch_pairs = max(1, int(max_batch_pairs))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rankdistill-model")
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="rankdistill-microbatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=True)

    async def score(self, pairs: list[tuple[str, str]], long_docs: str | None = None) -> list[float]:
        """Scores of `pairs`, computed in a batch with whatever other requests are waiting."""
        if not pairs:
            return []
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(pairs, long_docs, future))
        return await future

    async def run_exclusive(self, fn, *args, **kwargs):
        """Run other model work (the decoder's generation) on the model thread, between batches."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def _take_batch(self) -> list[_Job]:
        assert self._queue is not None
        jobs = [await self._queue.get()]
        size = len(jobs[0].pairs)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch_pairs:
            if self._queue.empty():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                job = self._queue.get_nowait()
            jobs.append(job)
            size += len(job.pairs)
        return jobs

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._take_batch()
            jobs = [j for j in jobs if not j.future.cancelled()]  # client went away while queued
            by_policy: dict[str | None, list[_Job]] = {}
            for job in jobs:
                by_policy.setdefault(job.long_docs, []).append(job)
            for policy, group in by_policy.items():
                pairs = [p for job in group for p in job.pairs]
                t0 = time.perf_counter()
                try:
                    scores = await loop.run_in_executor(
                        self.executor, lambda p=pairs, ld=policy: self.reranker.score(p, long_docs=ld)
                    )
                except Exception as exc:  # noqa: BLE001 - fail these requests, keep serving
                    log.exception("scoring a batch of %d requests failed", len(group))
                    self.stats.errors += len(group)
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                finally:
                    self.stats.busy_s += time.perf_counter() - t0
                self.stats.batches += 1
                self.stats.requests += len(group)
                self.stats.pairs += len(pairs)
                self.stats.largest_batch_requests = max(self.stats.largest_batch_requests, len(group))
                start = 0
                for job in group:
                    n = len(job.pairs)
                    if not job.future.done():
                        job.future.set_result(scores[start : start + n])
                    start += n
