"""Pointwise labelling through the label store: cached, batched, resumable.

`label_run(teacher, queries, corpus, run, depth, store)` is `rerank_run` with every teacher call going
through the store: what is stored is read back, the rest is computed batch by batch and committed.
Ensembles store their members' labels per pair (the expensive part) and their fused labels per
candidate list (fusion depends on the other candidates and the first-stage scores).
"""

from __future__ import annotations

from pathlib import Path

from rankdistill.data.types import Corpus, Queries, Run
from rankdistill.labels.runner import LabelJob, RunStats, run_jobs
from rankdistill.labels.store import LABEL_KINDS, LabelRecord, LabelStore
from rankdistill.pipelining import lookahead_for
from rankdistill.teachers.base import (
    Candidate,
    PairScorer,
    PointwiseLabel,
    PointwiseTeacher,
    labels_to_run,
    run_candidates,
)
from rankdistill.utils import stable_hash


def pair_key(teacher: PointwiseTeacher, query: str, doc: str) -> str:
    return LabelStore.key(teacher.identity(), teacher.prompt_identity(), query, doc)


def pair_job(key: str, candidate: Candidate) -> LabelJob:
    """The job of one candidate's pointwise label: the (query, document) pair the teacher scores, and
    the ids and texts the stored label keeps (the document text makes the export trainable)."""
    c = candidate
    return LabelJob(key, (c.query, c.doc), query_id=c.query_id, doc_ids=[c.doc_id], query=c.query, doc=c.doc)


class StoreScorer:
    """A PairScorer that reads and writes the label store (see `rankdistill.teachers.base.PairScorer`).

    `stats` collects one RunStats per teacher called (members of an ensemble each get one). `lookahead`:
    batches computed ahead of the one being committed; None: `lookahead_for(teacher)` (1 for a teacher
    that waits on a server, 0 for an in-process one; see `rankdistill.pipelining`)."""

    def __init__(
        self,
        store: LabelStore,
        batch_size: int | None = None,
        show_progress: bool = True,
        lookahead: int | None = None,
    ):
        self.store = store
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.lookahead = lookahead
        self.stats: dict[str, RunStats] = {}

    def __call__(self, teacher: PointwiseTeacher, candidates: list[Candidate]) -> list[PointwiseLabel]:
        identity, prompt = teacher.identity(), teacher.prompt_identity()
        keys = [LabelStore.key(identity, prompt, c.query, c.doc) for c in candidates]
        jobs = [pair_job(k, c) for k, c in zip(keys, candidates, strict=True)]

        def compute(pairs: list[tuple[str, str]]) -> list[dict]:
            return [label.to_json() for label in teacher.score(pairs)]

        result = run_jobs(
            self.store,
            jobs,
            compute,
            kind="pointwise",
            teacher_name=teacher.name,
            teacher_identity={"teacher": identity, "prompt": prompt},
            batch_size=self.batch_size or teacher.batch_size,
            show_progress=self.show_progress,
            lookahead=lookahead_for(teacher) if self.lookahead is None else self.lookahead,
        )
        self.stats[teacher.name] = result.stats
        return [PointwiseLabel.from_json(result.values[k]) for k in keys]


def store_scorer(
    store: LabelStore, batch_size: int | None = None, show_progress: bool = True, lookahead: int | None = None
) -> PairScorer:
    return StoreScorer(store, batch_size, show_progress, lookahead)


def store_fused_labels(
    store: LabelStore, teacher: PointwiseTeacher, candidates: list[Candidate], labels: list[PointwiseLabel]
) -> int:
    """Store labels of a teacher whose labels depend on the candidate list, keyed by that list too."""
    identity = teacher.identity()
    teacher_id = store.register_teacher(
        teacher.name, {"teacher": identity, "prompt": teacher.prompt_identity()}
    )
    by_query: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        by_query.setdefault(c.query_id, []).append(i)
    records = []
    for idx in by_query.values():
        context = stable_hash(
            [
                (candidates[i].doc_id, stable_hash(candidates[i].doc, 16), candidates[i].first_stage)
                for i in idx
            ]
        )
        ident = {**identity, "candidates": context}
        for i in idx:
            c = candidates[i]
            key = LabelStore.key(ident, teacher.prompt_identity(), c.query, c.doc)
            records.append(
                LabelRecord(
                    key,
                    "pointwise",
                    teacher.name,
                    labels[i].to_json(),
                    [c.doc_id],
                    c.query_id,
                    c.query,
                    teacher_id,
                    doc=c.doc,
                )
            )
    return store.put_many(records)


def label_candidates(
    teacher: PointwiseTeacher,
    candidates: list[Candidate],
    store: LabelStore | str | Path,
    *,
    batch_size: int | None = None,
    show_progress: bool = True,
    lookahead: int | None = None,
) -> list[PointwiseLabel]:
    """Labels for `candidates` through the store (computing only what is missing). `lookahead`: see
    `StoreScorer`."""
    own = not isinstance(store, LabelStore)
    st = LabelStore(store) if own else store
    try:
        labels = teacher.label_candidates(candidates, StoreScorer(st, batch_size, show_progress, lookahead))
        if teacher.depends_on_candidates:
            store_fused_labels(st, teacher, candidates, labels)
        return labels
    finally:
        if own:
            st.close()


def label_run(
    teacher: PointwiseTeacher,
    queries: Queries | dict[str, str],
    corpus: Corpus,
    run: Run,
    depth: int | None = 20,
    store: LabelStore | str | Path = "labels.sqlite",
    *,
    batch_size: int | None = None,
    show_progress: bool = True,
    lookahead: int | None = None,
) -> Run:
    """Label the top-`depth` candidates of `run` with `teacher` through `store`; returns the reranked run
    (the teacher's scores). Kill it and call it again: it resumes where it stopped. `lookahead`: see
    `StoreScorer`."""
    candidates = run_candidates(queries, corpus, run, depth)
    labels = label_candidates(
        teacher, candidates, store, batch_size=batch_size, show_progress=show_progress, lookahead=lookahead
    )
    return labels_to_run(labels, candidates, name=teacher.name)


LABEL_KINDS.register("pointwise", label_run)
