"""Micro-batching: requests from concurrent clients are scored together in one model pass.

Each request keeps its query and top-k, so the `Reranker` rescores in fp32 the documents that could be in
each request's top-k, exactly as `Reranker.rerank` does. One worker thread owns the model (a CPU forward
pass already uses every intra-op thread, so two at once only contend). While it computes a batch, new requests queue up; when it is free it takes
everything waiting (up to `max_batch_pairs` pairs, waiting at most `max_wait_ms` for company when
the queue is short) and scores all its pairs in one pass, sorted by length and padded per batch by the
`Reranker`. Each request gets back only its own scores; when a batch fails, its requests are scored
again one by one, so only the request at fault fails.
On CPU a few model batches' worth of pairs (the default 64) already keeps the cores busy: a larger cap
only makes every request in the batch wait for the slowest.
A request larger than `max_batch_pairs` is queued one slice at a time, the next once the last is
scored: requests that arrive meanwhile take turns with it instead of waiting for all of it, and when its
client goes away (the caller cancels `score`) the slices not yet scored are never computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rankdistill.utils import split_sizes

log = logging.getLogger(__name__)


@dataclass
class _Job:
    query: str
    documents: list[str]
    long_docs: str | None
    top_k: int | None
    future: asyncio.Future
    offsets: list[float] | None = None  # a hybrid student's first-stage terms (Reranker.first_stage_terms)


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0  # jobs: a request larger than max_batch_pairs counts once per slice
    pairs: int = 0
    busy_s: float = 0.0
    largest_batch_requests: int = 0
    errors: int = 0
    dropped: int = 0  # queued jobs whose client went away before the model got to them
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
            "dropped": self.dropped,
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

    async def score(
        self,
        query: str,
        documents: list[str],
        long_docs: str | None = None,
        top_k: int | None = None,
        offsets: list[float] | None = None,
    ) -> list[float]:
        """Scores of one request's documents, computed in a batch with whatever other requests are waiting.
        With a rescoring `Reranker` (bf16 + fp32), every document that could be in the top `top_k`
        (default: the reranker's `rescore_top_k`) carries its fp32 score, as `Reranker.rerank` gives.
        `offsets`: what a hybrid student adds to each document's score, computed over the whole request
        (its first-stage scores are normalised per request, so not per slice)."""
        if not documents:
            return []
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        loop = asyncio.get_running_loop()
        scores: list[float] = []
        # The whole request's top-k is within the union of its slices' top-k, so slicing keeps the
        # fp32 rescoring of every document that can be in the request's top-k.
        for start in range(0, len(documents), self.max_batch_pairs):
            future = loop.create_future()
            part = list(documents[start : start + self.max_batch_pairs])
            part_offsets = None if offsets is None else list(offsets[start : start + self.max_batch_pairs])
            await self._queue.put(_Job(query, part, long_docs, top_k, future, part_offsets))
            scores.extend(await future)
        return scores

    async def run_exclusive(self, fn, *args, **kwargs):
        """Run other model work (the decoder's generation) on the model thread, between batches."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def _take_batch(self) -> list[_Job]:
        assert self._queue is not None
        jobs: list[_Job] = []
        while not jobs:
            jobs = self._live([await self._queue.get()])
        size = len(jobs[0].documents)
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
            if self._live([job]):
                jobs.append(job)
                size += len(job.documents)
        return jobs

    def _live(self, jobs: list[_Job]) -> list[_Job]:
        """The jobs whose client still waits; the others are dropped, never scored."""
        live = [j for j in jobs if not j.future.done()]
        self.stats.dropped += len(jobs) - len(live)
        return live

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = self._live(await self._take_batch())  # a client may have gone while the batch formed
            by_policy: dict[str | None, list[_Job]] = {}
            for job in jobs:
                by_policy.setdefault(job.long_docs, []).append(job)
            for policy, group in by_policy.items():
                t0 = time.perf_counter()
                try:
                    scores = await loop.run_in_executor(self.executor, self._score_group, group, policy)
                except Exception as exc:  # noqa: BLE001 - find the request at fault, keep serving
                    log.exception("scoring a batch of %d requests failed", len(group))
                    if len(group) == 1:
                        self._fail(group[0], exc)
                    else:
                        await self._one_by_one(group, policy)
                    continue
                finally:
                    self.stats.busy_s += time.perf_counter() - t0
                self._record(group)
                for job, job_scores in zip(group, scores, strict=True):
                    if not job.future.done():
                        job.future.set_result(job_scores)

    async def _one_by_one(self, group: list[_Job], policy: str | None) -> None:
        """A batch failed: score its requests alone, so that one bad request fails only itself."""
        loop = asyncio.get_running_loop()
        for job in self._live(group):
            try:
                (scores,) = await loop.run_in_executor(self.executor, self._score_group, [job], policy)
            except Exception as exc:  # noqa: BLE001
                log.exception("scoring a request of %d documents failed", len(job.documents))
                self._fail(job, exc)
                continue
            self._record([job])
            if not job.future.done():
                job.future.set_result(scores)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        self.stats.errors += 1
        if not job.future.done():
            job.future.set_exception(exc)

    def _record(self, group: list[_Job]) -> None:
        self.stats.batches += 1
        self.stats.requests += len(group)
        self.stats.pairs += sum(len(job.documents) for job in group)
        self.stats.largest_batch_requests = max(self.stats.largest_batch_requests, len(group))

    def _score_group(self, group: list[_Job], long_docs: str | None) -> list[list[float]]:
        """One scoring pass over every job of a batch (on the model thread)."""
        requests = [(job.query, job.documents) for job in group]
        score_requests = getattr(self.reranker, "score_requests", None)
        if score_requests is not None:
            hybrid = {"offsets": [job.offsets for job in group]} if any(j.offsets for j in group) else {}
            return score_requests(requests, top_k=[job.top_k for job in group], long_docs=long_docs, **hybrid)
        # a reranker without per-request scoring (the decoder student): score the pairs, split them back
        flat = self.reranker.score([(q, d) for q, docs in requests for d in docs], long_docs=long_docs)
        return split_sizes(flat, [len(docs) for _, docs in requests])
