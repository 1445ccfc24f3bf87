"""Teacher labelling on Ray: pointwise teachers on Ray Data over an actor pool, each actor holding one
teacher; listwise and reasoning labelling on a pool of actors each holding one LLM (`RayExecutor`).

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

Listwise and reasoning labels (`label_listwise`, `reasoning_labels`) take a `RayExecutor` as their
`executor`: `rankdistill.labels.runner.run_jobs` keeps the keys, the fixed batches and the commits in the
driver, and each batch goes whole, in one actor call, to an `LLMWorker`. A worker loads the LLM once from
its spec (`rankdistill.llm.load_llm`: the config's `labels.llm`, a string or dict, so it must name a model
every worker can load) and keeps it for all the tasks of the executor's life: the permutations, then the
explicit and the comparison reasoning of one reasoning run, without loading the model again (an actor
pool of Ray Data lives one dataset only). It builds each task's teacher from the task's
`RemoteCompute` recipe and refuses to compute when that teacher's identity differs from the one the
driver keyed the labels with. The driver needs no model of its own: `RayExecutor.llm` stands in for it
with the identity a worker reports.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rankdistill.errors import RankdistillError, require
from rankdistill.hardware import THREADS_ENV
from rankdistill.labels.pointwise import pair_job
from rankdistill.labels.runner import BatchFailed, Compute, LabelJob, RemoteCompute, RunStats
from rankdistill.labels.store import LabelStore
from rankdistill.llm.base import LLM
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
        # Same jobs, de-duplication and batch cut as run_jobs: fixed batches over the full (unique) job list.
        unique: dict[str, LabelJob] = {}
        for k, c in zip(keys, candidates, strict=True):
            if k not in unique:
                unique[k] = pair_job(k, c)
        ordered = list(unique.values())
        size = self.batch_size or teacher.batch_size
        teacher_id = self.store.register_teacher(teacher.name, {"teacher": identity, "prompt": prompt})
        stored = self.store.has_many(unique)
        stats = RunStats(total=len(ordered), cached=len(stored))
        batches = []
        for i in range(0, len(ordered), size):
            todo = [job for job in ordered[i : i + size] if job.key not in stored]
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
            {"batch": i, "pairs": json.dumps([list(job.payload) for job in b], ensure_ascii=False)}
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
                ms = float(row["ms"])
                self.store.put_many(
                    [
                        job.record("pointwise", teacher.name, v, teacher_id, compute_ms=ms)
                        for job, v in zip(todo, values, strict=True)
                    ]
                )
                stats.computed += len(todo)
                stats.batches += 1
                stats.compute_seconds += ms * len(todo) / 1000.0
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


# -- LLM-taught labels (listwise, reasoning) -------------------------------------------------------------


def _describe(llm: Any) -> dict[str, Any]:
    """What the driver needs of an LLM to key labels: what teachers read of it without generating."""
    n_ctx = getattr(llm, "n_ctx", None)
    return {
        "backend": llm.backend,
        "identity": llm.identity(),
        "n_ctx": n_ctx if isinstance(n_ctx, int) else None,
        "supports_json_schema": bool(getattr(llm, "supports_json_schema", False)),
    }


class LLMWorker:
    """A Ray actor holding one LLM, loaded once from its spec, and the compute functions built on it.

    `compute(remote, identity, payloads)` computes one whole batch with the teacher `remote` builds (built
    on first use, then kept) and returns (values, seconds); it raises when that teacher's identity is not
    `identity`, the one the driver keyed the labels with (another model file, context window, backend)."""

    def __init__(self, llm_spec: str | Mapping[str, Any], threads: int | None = None):
        if threads:
            os.environ[THREADS_ENV] = str(int(threads))  # the backends' default thread count: our CPUs
        from rankdistill.llm import load_llm

        self.llm = load_llm(llm_spec if isinstance(llm_spec, str) else dict(llm_spec))
        self.computes: dict[str, Compute] = {}

    def describe(self) -> dict[str, Any]:
        return _describe(self.llm)

    def compute(
        self, remote: RemoteCompute, identity: dict[str, Any], payloads: list[Any]
    ) -> tuple[list[Any], float]:
        key = stable_hash(
            {
                "factory": f"{remote.factory.__module__}.{remote.factory.__qualname__}",
                "options": remote.options,
            }
        )
        if key not in self.computes:
            got, fn = remote.build(self.llm)
            if stable_hash(got) != stable_hash(identity):
                raise RankdistillError(
                    f"the teacher on this Ray worker is not the one the labels are keyed by: {got!r} here, "
                    f"{identity!r} in the driver; every worker must load the same model with the same settings"
                )
            self.computes[key] = fn
        t0 = time.perf_counter()
        out = list(self.computes[key](payloads))
        return out, time.perf_counter() - t0


class RemoteLLM(LLM):
    """Stands in, in the driver, for the LLM the Ray workers hold: the backend, identity, context window
    and JSON-schema support a worker reported, which is all a teacher reads to key its labels. It never
    generates: the workers do."""

    def __init__(self, info: Mapping[str, Any]):
        self.backend = str(info["backend"])
        self._identity = dict(info["identity"])
        self.n_ctx = info.get("n_ctx")
        self.supports_json_schema = bool(info.get("supports_json_schema", False))

    def identity(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._identity))

    def _remote_only(self, *args: Any, **kwargs: Any):
        raise RankdistillError(
            f"the {self.backend} LLM runs on the Ray workers; this stand-in only keys labels "
            "(give the labelling function the RayExecutor as its executor)"
        )

    generate = _remote_only  # type: ignore[assignment]
    score_continuations = _remote_only  # type: ignore[assignment]
    next_token_logits = _remote_only  # type: ignore[assignment]


class RayExecutor:
    """A `rankdistill.labels.runner.BatchExecutor` on Ray: `options.num_actors` `LLMWorker` actors, each
    loading the LLM of `llm_spec` once (what `rankdistill.llm.load_llm` takes: a string or dict, e.g. the
    config's `labels.llm`; it must name a model every worker can load) and computing whole batches, one
    actor call each, yielded as they finish so the driver commits each at once.

    >>> with RayExecutor("llamacpp:gemma3-270m", RayOptions(num_actors=2)) as ex:
    ...     labels, summary = label_listwise(ex.llm, store, queries, corpus, run, executor=ex)

    Actors start on first use and live until `close()`, serving every labelling run given this executor.
    """

    def __init__(self, llm_spec: str | Mapping[str, Any], options: RayOptions | None = None):
        if not isinstance(llm_spec, (str, Mapping)):
            raise TypeError(
                f"RayExecutor takes the LLM's spec (a string or dict, what load_llm takes) for its workers to "
                f"load, not {type(llm_spec).__name__}"
            )
        self.llm_spec = llm_spec if isinstance(llm_spec, str) else dict(llm_spec)
        self.options = options or RayOptions()
        self.name = f"ray x{self.options.num_actors}"
        self._actors: list[Any] = []
        self._llm: RemoteLLM | None = None

    def _start(self) -> list[Any]:
        if self._actors:
            return self._actors
        ray = ensure_ray(self.options)
        opts = self.options
        actor_cls = ray.remote(LLMWorker).options(
            num_cpus=opts.num_cpus_per_actor, num_gpus=opts.num_gpus_per_actor or None
        )
        threads = opts.threads_per_actor or max(1, int(opts.num_cpus_per_actor))
        self._actors = [actor_cls.remote(self.llm_spec, threads) for _ in range(opts.num_actors)]
        try:
            infos = ray.get([a.describe.remote() for a in self._actors])
        except Exception as exc:
            self.close()
            cause = getattr(exc, "cause", None) or exc
            raise RankdistillError(
                f"Ray workers could not load the LLM {self.llm_spec!r}: {type(cause).__name__}: {cause}"
            ) from exc
        if any(stable_hash(i) != stable_hash(infos[0]) for i in infos[1:]):
            self.close()
            raise RankdistillError(
                f"Ray workers loaded different LLMs from {self.llm_spec!r}: "
                f"{sorted({json.dumps(i, sort_keys=True) for i in infos})}"
            )
        self._llm = RemoteLLM(infos[0])
        log.info("%d Ray worker(s) hold %s", len(self._actors), infos[0]["identity"])
        return self._actors

    @property
    def llm(self) -> RemoteLLM:
        """The workers' LLM as the driver sees it (starts the workers): give it to the labelling function
        to key the labels, together with this executor to compute them."""
        self._start()
        assert self._llm is not None
        return self._llm

    def map(
        self,
        compute: Compute,
        remote: RemoteCompute | None,
        teacher_identity: dict[str, Any],
        batches: list[list[Any]],
    ) -> Iterator[tuple[int, list[Any], float]]:
        if not batches:
            return
        if remote is None:
            raise RankdistillError("this labelling has no RemoteCompute recipe; it can only run in-process")
        import ray

        actors = self._start()
        queue = deque(enumerate(batches))
        free = [a for a in actors for _ in range(2)]  # two calls per actor: its next batch waits there
        inflight: dict[Any, tuple[int, Any]] = {}
        try:
            while queue or inflight:
                while queue and free:
                    index, payloads = queue.popleft()
                    actor = free.pop(0)
                    inflight[actor.compute.remote(remote, teacher_identity, payloads)] = (index, actor)
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                index, actor = inflight.pop(ref)
                free.append(actor)
                try:
                    out, seconds = ray.get(ref)
                except Exception as exc:
                    cause = getattr(exc, "cause", None) or exc
                    raise BatchFailed(index, cause, f"{type(cause).__name__}: {cause}") from exc
                yield index, out, seconds
        finally:
            for ref in inflight:  # a failure or an early stop: what is still queued is not needed
                with contextlib.suppress(Exception):  # best effort: a finished task cannot be cancelled
                    ray.cancel(ref)

    def close(self) -> None:
        """Stop the workers (their models are freed); a later use starts new ones."""
        if self._actors:
            import ray

            for actor in self._actors:
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(actor)
        self._actors, self._llm = [], None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
