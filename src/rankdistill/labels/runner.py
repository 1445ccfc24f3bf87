"""A generic resumable labelling loop over the label store.

Give it jobs (a key and whatever the compute function needs) and a function that computes a batch of
payloads; it skips what is stored, computes the rest in batches and commits each batch in one
transaction. Kill it at any moment and start it again: it finishes with exactly the labels an
uninterrupted run writes. Pointwise, listwise and reasoning labelling all go through here.

Who computes the batches is pluggable (a `BatchExecutor`): by default this process, in order; or, with
`rankdistill.labels.ray_backend.RayExecutor`, Ray actors, each batch whole in one actor call. An executor
outside this process cannot take a closure over a loaded model, so such runs also pass a
`RemoteCompute`: a recipe (a module-level factory and its JSON settings) from which each worker builds
the same compute function around its own LLM. Whoever computes, the driver keeps the keys, the batch
cut and the commits, so the store ends up the same.

Against a server (a teacher or LLM that declares `io_bound`; callers pass `lookahead_for(...)`), the
local executor keeps `lookahead` more batches computing while one is computed and committed
(`rankdistill.pipelining.run_ahead`): the server's requests stay in flight across batch boundaries, while
commits stay one batch at a time and in order, so a killed run loses at most the batches in flight and
resumes to the same store. In-process models keep lookahead 0: the plain loop, batch after batch.

Why batches are cut from the FULL job list (not from what is left to do): batched backends pad inputs,
so a label can differ in the last bits with the batch it was computed in. Cutting fixed batches over
the job list and committing each whole means a resumed run computes the same batches as an
uninterrupted one, so its labels are bit-identical, not merely close.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rankdistill.errors import RankdistillError
from rankdistill.labels.store import LabelRecord, LabelStore
from rankdistill.pipelining import ItemFailed, run_ahead
from rankdistill.utils import progress

log = logging.getLogger(__name__)


@dataclass
class LabelJob:
    """One label to compute: its store key, the compute function's input, and what it is about."""

    key: str
    payload: Any
    query_id: str | None = None
    doc_ids: Sequence[str] = ()
    query: str | None = None
    doc: str | None = None  # document text to keep with the label (pointwise), for training exports

    def record(
        self, kind: str, teacher_name: str, value: Any, teacher_id: str, compute_ms: float | None = None
    ) -> LabelRecord:
        """The stored label of this job: its computed `value` with what it is about (ids and texts), the
        same whichever backend computed it (this process or Ray)."""
        return LabelRecord(
            self.key,
            kind,
            teacher_name,
            value,
            list(self.doc_ids),
            self.query_id,
            self.query,
            teacher_id,
            compute_ms=compute_ms,
            doc=self.doc,
        )


@dataclass
class RunStats:
    total: int = 0  # distinct jobs
    cached: int = 0  # already in the store
    computed: int = 0  # computed by this run
    batches: int = 0  # batches computed by this run
    seconds: float = 0.0  # wall time of the whole run
    compute_seconds: float = 0.0  # time inside the compute function, summed (look-ahead overlaps batches)

    @property
    def rate(self) -> float:
        """Labels computed per second of wall time."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunResult:
    values: dict[str, Any]  # key -> stored value, for every job
    stats: RunStats = field(default_factory=RunStats)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


#: computes one batch of payloads: one JSON-serialisable value per payload, in order
Compute = Callable[[list[Any]], Sequence[Any]]


@dataclass(frozen=True)
class RemoteCompute:
    """How any process rebuilds a compute function: `factory(llm, **options)` returns the teacher's
    identity and the compute function around `llm`.

    `factory` must be a module-level function (pickled by reference) and `options` plain JSON settings,
    so a worker that loaded its own LLM from the same spec builds the same teacher. The identity lets the
    worker prove it: an executor refuses to compute when a worker's teacher identity differs from the one
    the driver keyed the labels with (another model file, context window or backend)."""

    factory: Callable[..., tuple[dict[str, Any], Compute]]
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, llm: Any) -> tuple[dict[str, Any], Compute]:
        return self.factory(llm, **self.options)


class BatchFailed(Exception):
    """An executor's report that computing batch `index` raised `cause`."""

    def __init__(self, index: int, cause: BaseException, detail: str | None = None):
        super().__init__(detail or f"{type(cause).__name__}: {cause}")
        self.index, self.cause = index, cause


class BatchExecutor(Protocol):
    """Computes whole batches (never re-cut) and yields `(batch index, values, seconds)` as each finishes,
    in any order; a failed batch raises `BatchFailed`. Results must be yielded lazily: the driver commits
    each one before asking for the next, which is what makes a killed run resumable."""

    name: str

    def map(
        self,
        compute: Compute,
        remote: RemoteCompute | None,
        teacher_identity: dict[str, Any],
        batches: list[list[Any]],
    ) -> Iterator[tuple[int, list[Any], float]]: ...


class LocalExecutor:
    """Computes the batches in this process with the given compute function, in order: one after another
    (`lookahead` 0), or with `lookahead` more batches computing in background threads while one is
    computed and committed (for compute that waits on a server; see `rankdistill.pipelining.run_ahead`).
    Batches are yielded in order either way."""

    name = "local"

    def __init__(self, lookahead: int = 0):
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {lookahead}")
        self.lookahead = int(lookahead)

    def map(
        self,
        compute: Compute,
        remote: RemoteCompute | None,
        teacher_identity: dict[str, Any],
        batches: list[list[Any]],
    ) -> Iterator[tuple[int, list[Any], float]]:
        results = run_ahead(lambda payloads: list(compute(payloads)), batches, self.lookahead)
        try:
            while True:
                try:
                    index, out, seconds = next(results)
                except StopIteration:
                    return
                except ItemFailed as exc:
                    raise BatchFailed(exc.index, exc.cause) from exc.cause
                yield index, out, seconds
        finally:
            results.close()  # calls off the batches still in flight


def run_jobs(
    store: LabelStore,
    jobs: Sequence[LabelJob],
    compute: Callable[[list[Any]], Sequence[Any]],
    *,
    kind: str,
    teacher_name: str,
    teacher_identity: dict[str, Any],
    batch_size: int = 16,
    desc: str | None = None,
    unit: str = "pair",
    show_progress: bool = True,
    executor: BatchExecutor | None = None,
    remote: RemoteCompute | None = None,
    lookahead: int = 0,
) -> RunResult:
    """Compute the labels of `jobs` not yet in `store`, batch by batch, each batch committed atomically.

    `compute(payloads)` returns one JSON-serialisable value per payload, in order. Jobs with the same key
    are computed once. Returns every job's value (stored earlier or now) and run statistics.

    `executor` computes the batches (default: `LocalExecutor`, this process with `compute`); an executor
    outside this process builds its compute function from `remote` instead, and checks that it has
    `teacher_identity`. Keys, batches, values and commits are the same whichever computes.

    `lookahead` (for the default executor): batches computed ahead of the one being committed, for compute
    that waits on a server (`rankdistill.pipelining.lookahead_for(teacher)`); 0 computes one batch at a
    time in this thread. Values, their order and the commits are the same either way.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    t0 = time.perf_counter()
    stats = RunStats()
    unique: dict[str, LabelJob] = {}
    for job in jobs:
        unique.setdefault(job.key, job)
    ordered = list(unique.values())
    stats.total = len(ordered)

    teacher_id = store.register_teacher(teacher_name, teacher_identity)
    values = store.get_many(unique)
    stats.cached = len(values)
    pending_batches = [
        batch
        for batch in (ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size))
        if any(job.key not in values for job in batch)
    ]
    n_pending = sum(sum(job.key not in values for job in b) for b in pending_batches)

    execute = executor or LocalExecutor(lookahead)
    where = "" if execute.name == "local" else f", {execute.name}"
    bar = progress(
        total=n_pending,
        desc=desc or f"{kind} labels ({teacher_name}{where})",
        unit=unit,
        disable=None if show_progress else True,
    )
    todos = [[job for job in batch if job.key not in values] for batch in pending_batches]
    results = execute.map(compute, remote, teacher_identity, [[job.payload for job in t] for t in todos])
    try:
        while True:
            try:
                index, out, elapsed = next(results)
            except StopIteration:
                break
            except BatchFailed as exc:
                todo = todos[exc.index]
                first = todo[0]
                raise RankdistillError(
                    f"labelling failed in a batch of {len(todo)} starting at query {first.query_id!r}, "
                    f"doc(s) {list(first.doc_ids)[:3]!r}: {exc}. "
                    f"{stats.cached + stats.computed} labels are stored; run again to resume."
                ) from exc.cause
            todo = todos[index]
            out = list(out)
            if len(out) != len(todo):
                raise RankdistillError(
                    f"compute function returned {len(out)} values for a batch of {len(todo)}"
                )
            ms = 1000.0 * elapsed / len(todo)
            # Round-trip through JSON so a value computed now equals the same value read back later.
            out = [json.loads(json.dumps(v, ensure_ascii=False)) for v in out]
            store.put_many(
                [
                    job.record(kind, teacher_name, value, teacher_id, compute_ms=ms)
                    for job, value in zip(todo, out, strict=True)
                ]
            )
            for job, value in zip(todo, out, strict=True):
                values[job.key] = value
            stats.computed += len(todo)
            stats.batches += 1
            stats.compute_seconds += elapsed
            bar.update(len(todo))
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # an executor's generator cancels what it still has in flight
        bar.close()
    stats.seconds = time.perf_counter() - t0
    if stats.computed:
        log.info(
            "%s: %d cached, %d computed in %.1fs (%.1f %s/s)",
            teacher_name,
            stats.cached,
            stats.computed,
            stats.seconds,
            stats.rate,
            unit,
        )
    return RunResult(values, stats)
