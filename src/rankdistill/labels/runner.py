"""A generic resumable labelling loop over the label store.

Give it jobs (a key and whatever the compute function needs) and a function that computes a batch of
payloads; it skips what is stored, computes the rest in batches and commits each batch in one
transaction. Kill it at any moment and start it again: it finishes with exactly the labels an
uninterrupted run writes. Pointwise, listwise and reasoning labelling all go through here.

Why batches are cut from the FULL job list (not from what is left to do): batched backends pad inputs,
so a label can differ in the last bits with the batch it was computed in. Cutting fixed batches over
the job list and committing each whole means a resumed run computes the same batches as an
uninterrupted one, so its labels are bit-identical, not merely close.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.labels.store import LabelRecord, LabelStore
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


@dataclass
class RunStats:
    total: int = 0  # distinct jobs
    cached: int = 0  # already in the store
    computed: int = 0  # computed by this run
    batches: int = 0  # batches computed by this run
    seconds: float = 0.0  # wall time of the whole run
    compute_seconds: float = 0.0  # time inside the compute function

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
) -> RunResult:
    """Compute the labels of `jobs` not yet in `store`, batch by batch, each batch committed atomically.

    `compute(payloads)` returns one JSON-serialisable value per payload, in order. Jobs with the same key
    are computed once. Returns every job's value (stored earlier or now) and run statistics.
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

    bar = progress(
        total=n_pending,
        desc=desc or f"{kind} labels ({teacher_name})",
        unit=unit,
        disable=None if show_progress else True,
    )
    try:
        for batch in pending_batches:
            todo = [job for job in batch if job.key not in values]
            c0 = time.perf_counter()
            try:
                out = list(compute([job.payload for job in todo]))
            except Exception as exc:
                first = todo[0]
                raise RankdistillError(
                    f"labelling failed in a batch of {len(todo)} starting at query {first.query_id!r}, "
                    f"doc(s) {list(first.doc_ids)[:3]!r}: {type(exc).__name__}: {exc}. "
                    f"{stats.cached + stats.computed} labels are stored; run again to resume."
                ) from exc
            elapsed = time.perf_counter() - c0
            if len(out) != len(todo):
                raise RankdistillError(
                    f"compute function returned {len(out)} values for a batch of {len(todo)}"
                )
            ms = 1000.0 * elapsed / len(todo)
            # Round-trip through JSON so a value computed now equals the same value read back later.
            out = [json.loads(json.dumps(v, ensure_ascii=False)) for v in out]
            store.put_many(
                [
                    LabelRecord(
                        job.key,
                        kind,
                        teacher_name,
                        value,
                        list(job.doc_ids),
                        job.query_id,
                        job.query,
                        teacher_id,
                        compute_ms=ms,
                        doc=job.doc,
                    )
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
