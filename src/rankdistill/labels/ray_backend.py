"""Teacher labelling on Ray: Ray Data over an actor pool, each actor holding one teacher.

The driver does what the single-process runner (`rankdistill.labels.runner.run_jobs`) does, except
computing: it builds the same label keys, cuts the same fixed batches over the full job list, skips
what the store already has, and commits each batch in one transaction as its result comes back. Only
`teacher.score(batch)` runs on the actors. Same keys, same batches, same JSON round trip: the store
ends up with the labels a single-process run writes, and a killed Ray run resumes like a local one.

Each Ray Data row is one whole batch, so batches are never re-cut by Ray (a batched model pads inputs,
and a label can change in its last bits with the batch it was computed in).

Works the same on a laptop (`ray.init()` starts a local instance) and on a cluster (`address="auto"` or
`ray://head:10001`, with `num_gpus_per_actor=1` so each actor owns a GPU and, for LLM teachers, a vLLM
or transformers backend). Actors rebuild the teacher from its spec (string or dict), so the spec must
name models the workers can load (a path on shared storage, a hub name, or an OpenAI-compatible URL).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rankdistill.errors import require
from rankdistill.labels.runner import RunStats
from rankdistill.labels.store import LabelRecord, LabelStore
from rankdistill.teachers import PointwiseLabel, PointwiseTeacher, load_teacher
from rankdistill.teachers.base import Candidate
from rankdistill.utils import progress, stable_hash

log = logging.getLogger(__name__)


def teacher_key(teacher: PointwiseTeacher) -> str:
    """Which teacher of a spec an actor must hold: the hash of its identity and prompt."""
    return stable_hash({"teacher": teacher.identity(), "prompt": teacher.prompt_identity()}, 24)


def leaf_teachers(teacher: PointwiseTeacher) -> Iterator[PointwiseTeacher]:
    """The teacher and, for ensembles, every member (recursively): the ones a scorer may be asked for."""
    yield teacher
    for member in getattr(teacher, "members", ()):
        yield from leaf_teachers(member)


@dataclass
class RayOptions:
    """How wide and where: a local instance when `address` is None and Ray is not yet initialised."""

    address: str | None = None
    num_actors: int = 2
    num_cpus_per_actor: float = 1.0
    num_gpus_per_actor: float = 0.0
    threads_per_actor: int | None = None  # torch intra-op threads in each actor (default: its CPUs)
    show_progress: bool = True


def ensure_ray(options: RayOptions):
    """Import Ray and connect (or start a local instance) once."""
    ray = require("ray", "ray", "Labelling on Ray (labels.backend: ray)")
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if options.address is None:
            kwargs["num_cpus"] = max(1, int(options.num_actors * options.num_cpus_per_actor + 0.999))
        else:
            kwargs["address"] = options.address
        ray.init(**kwargs)
    return ray


class TeacherActor:
    """A Ray Data UDF: builds the whole teacher from its spec, keeps the one member it serves, and scores
    one batch of pairs per row. Rows: {"batch": int, "pairs": JSON}; out: {"batch", "values": JSON, "ms"}."""

    def __init__(self, spec: Any, key: str, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        root = load_teacher(spec)
        found = {teacher_key(t): t for t in leaf_teachers(root)}
        if key not in found:
            raise RuntimeError(f"teacher {key} is not part of spec {spec!r} (found {sorted(found)})")
        self.teacher = found[key]

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        values, ms = [], []
        for payload in batch["pairs"]:
            pairs = [tuple(p) for p in json.loads(payload)]
            t0 = time.perf_counter()
            labels = self.teacher.score(pairs)
            if len(labels) != len(pairs):
                raise RuntimeError(
                    f"{self.teacher.name} returned {len(labels)} labels for {len(pairs)} pairs"
                )
            ms.append(1000.0 * (time.perf_counter() - t0) / max(len(pairs), 1))
            values.append(json.dumps([lab.to_json() for lab in labels], ensure_ascii=False))
        return {"batch": batch["batch"], "values": np.array(values, dtype=object), "ms": np.array(ms)}


class RayScorer:
    """A PairScorer (see `rankdistill.teachers.base.PairScorer`) computing missing labels on Ray actors
    and storing them in `store` under the keys the local StoreScorer uses."""

    def __init__(
        self,
        store: LabelStore,
        spec: str | Mapping[str, Any],
        options: RayOptions,
        batch_size: int | None = None,
    ):
        self.store = store
        self.spec = spec if isinstance(spec, str) else dict(spec)
        self.options = options
        self.batch_size = batch_size
        self.stats: dict[str, RunStats] = {}

    def __call__(self, teacher: PointwiseTeacher, candidates: list[Candidate]) -> list[PointwiseLabel]:
        t0 = time.perf_counter()
        identity, prompt = teacher.identity(), teacher.prompt_identity()
        keys = [LabelStore.key(identity, prompt, c.query, c.doc) for c in candidates]
        # Same de-duplication and batch cut as run_jobs: fixed batches over the full (unique) job list.
        unique: dict[str, Candidate] = {}
        for k, c in zip(keys, candidates, strict=True):
            unique.setdefault(k, c)
        ordered = list(unique.items())
        size = self.batch_size or teacher.batch_size
        teacher_id = self.store.register_teacher(teacher.name, {"teacher": identity, "prompt": prompt})
        stored = self.store.has_many(unique)
        stats = RunStats(total=len(ordered), cached=len(stored))
        batches = []
        for i in range(0, len(ordered), size):
            todo = [(k, c) for k, c in ordered[i : i + size] if k not in stored]
            if todo:
                batches.append(todo)
        if batches:
            self._compute(teacher, teacher_id, batches, stats)
        values = self.store.get_many(keys)
        stats.seconds = time.perf_counter() - t0
        self.stats[teacher.name] = stats
        return [PointwiseLabel.from_json(values[k]) for k in keys]

    def _compute(self, teacher: PointwiseTeacher, teacher_id: str, batches: list, stats: RunStats) -> None:
        ray = ensure_ray(self.options)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our own bar below counts committed labels
        rows = [
            {"batch": i, "pairs": json.dumps([[c.query, c.doc] for _, c in b], ensure_ascii=False)}
            for i, b in enumerate(batches)
        ]
        opts = self.options
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), max(1, 4 * opts.num_actors)))
        ds = ds.map_batches(
            TeacherActor,
            fn_constructor_kwargs={
                "spec": self.spec,
                "key": teacher_key(teacher),
                "threads": opts.threads_per_actor or max(1, int(opts.num_cpus_per_actor)),
            },
            batch_size=1,
            concurrency=opts.num_actors,
            num_cpus=opts.num_cpus_per_actor,
            num_gpus=opts.num_gpus_per_actor or None,
        )
        pending = sum(len(b) for b in batches)
        bar = progress(
            total=pending,
            desc=f"pointwise labels ({teacher.name}, ray x{opts.num_actors})",
            unit="pair",
            disable=None if opts.show_progress else True,
        )
        with bar:
            for row in ds.iter_rows():
                todo = batches[int(row["batch"])]
                # the JSON round trip matches run_jobs: a value computed now equals the value read back
                values = json.loads(row["values"])
                if len(values) != len(todo):
                    raise RuntimeError(f"actor returned {len(values)} labels for a batch of {len(todo)}")
                records = [
                    LabelRecord(
                        k,
                        "pointwise",
                        teacher.name,
                        v,
                        [c.doc_id],
                        c.query_id,
                        c.query,
                        teacher_id,
                        compute_ms=float(row["ms"]),
                    )
                    for (k, c), v in zip(todo, values, strict=True)
                ]
                self.store.put_many(records)
                stats.computed += len(todo)
                stats.batches += 1
                stats.compute_seconds += float(row["ms"]) * len(todo) / 1000.0
                bar.update(len(todo))


def label_candidates_ray(
    spec: str | Mapping[str, Any],
    candidates: list[Candidate],
    store: LabelStore,
    *,
    options: RayOptions | None = None,
    batch_size: int | None = None,
    teacher: PointwiseTeacher | None = None,
) -> list[PointwiseLabel]:
    """`rankdistill.labels.label_candidates` with the teacher's model calls on Ray actors.

    `spec` is what `load_teacher` takes; `teacher` (built from the same spec) saves building it again
    in the driver, where it only supplies identities and fuses ensemble scores (no model is called)."""
    from rankdistill.labels.pointwise import store_fused_labels

    teacher = teacher or load_teacher(spec)
    scorer = RayScorer(store, spec, options or RayOptions(), batch_size)
    labels = teacher.label_candidates(candidates, scorer)
    if getattr(teacher, "depends_on_candidates", False):
        store_fused_labels(store, teacher, candidates, labels)
    return labels
