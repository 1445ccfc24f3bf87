"""Listwise labels into the label store: one permutation per query from a `ListwiseTeacher`, resumable.

The teacher (`rankdistill.teachers.listwise`) says what a listwise label is; this module decides which
queries to label, keys each label by the teacher, its prompt and the texts as shown, and runs the jobs
through the store's resumable runner, in this process or on an executor such as Ray's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rankdistill.data.types import Document, Run
from rankdistill.labels.runner import BatchExecutor, LabelJob, RemoteCompute, run_jobs
from rankdistill.labels.store import LABEL_KINDS, LabelStore
from rankdistill.llm.base import LLM
from rankdistill.pipelining import lookahead_for
from rankdistill.teachers.listwise import ListwiseLabel, ListwiseTeacher, summarize


def listwise_jobs(
    teacher: ListwiseTeacher,
    queries: Mapping[str, str],
    corpus: Mapping[str, Document],
    run: Run,
    limit: int | None = None,
) -> list:
    """One label-store job per query with candidates in `run` (at most `limit`), keyed by the teacher's
    identity, its prompt, the query and the passage texts exactly as shown."""
    identity, prompt_identity = teacher.identity(), teacher.prompt_identity()
    jobs = []
    for qid, text in queries.items():
        if qid not in run:
            continue
        item = teacher.select(qid, text, run.ranked(qid), corpus)
        if not item.doc_ids:
            continue
        # the order is stored as indices, so the texts as shown determine the label, whatever the ids
        key = LabelStore.key(identity, prompt_identity, text, item.texts)
        jobs.append(LabelJob(key, item, query_id=qid, doc_ids=item.doc_ids, query=text))
        if limit is not None and len(jobs) >= limit:
            break
    return jobs


def listwise_compute(llm: LLM, **settings: Any):
    """A `RemoteCompute` factory: the teacher's identity and its compute function (one stored value per
    `ListwiseItem`), for `ListwiseTeacher(llm, **settings)`."""
    teacher = ListwiseTeacher(llm, **settings)
    return teacher.identity(), lambda items: [lab.to_value() for lab in teacher.rank(items)]


def label_listwise(
    llm: LLM,
    store: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, Document],
    run: Run,
    *,
    method: str = "one_pass",
    window: int = 20,
    step: int = 10,
    depth: int = 100,
    top_k: int = 10,
    bottom_k: int = 10,
    max_passage_words: int | None = 100,
    constrained: bool | None = None,
    prompt: str = "plain",
    messages: bool | str = "auto",
    identifiers: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
    limit: int | None = None,
    show_progress: bool = True,
    executor: BatchExecutor | None = None,
    lookahead: int | None = None,
) -> tuple[list[ListwiseLabel], dict[str, Any]]:
    """Label every query of `queries` that has candidates in `run` (the first `limit` of them), one
    listwise label per query in the label store. Resumable: stored labels are skipped and each batch of
    `batch_size` queries is committed whole. Returns the labels of all those queries (stored earlier or
    now) and a summary: counts, LLM calls and tokens per query, parse-repair rates.

    `executor` (default: this process) computes the batches, e.g. a
    `rankdistill.labels.ray_backend.RayExecutor`, whose workers load their own LLM from its spec; `llm`
    then only supplies the identity that keys the labels (the executor's `llm` stand-in does, without
    loading the model here). Same keys and values either way.

    `prompt` ("plain", "rankgpt", "rankzephyr"), `messages` and `identifiers` are the teacher's (see
    `ListwiseTeacher`); `method="first"` ranks each sliding window by FIRST's first-token logits.

    `lookahead` (this process only): batches computed ahead of the one being committed; None:
    `rankdistill.pipelining.lookahead_for(llm)` (1 for a server, 0 for an in-process model)."""
    settings = {
        "method": method,
        "window": window,
        "step": step,
        "depth": depth,
        "top_k": top_k,
        "bottom_k": bottom_k,
        "max_passage_words": max_passage_words,
        "constrained": constrained,
        "seed": seed,
    }
    # the defaults stay out of the settings (Ray workers, older callers): only what differs goes on
    for key, value, default in (
        ("prompt", prompt, "plain"),
        ("messages", messages, "auto"),
        ("identifiers", identifiers, "auto"),
    ):
        if value != default:
            settings[key] = value
    identity, compute = listwise_compute(llm, **settings)
    teacher = ListwiseTeacher(llm, **settings)
    jobs = listwise_jobs(teacher, queries, corpus, run, limit)
    result = run_jobs(
        store,
        jobs,
        compute,
        executor=executor,
        remote=RemoteCompute(listwise_compute, settings),
        kind="listwise",
        teacher_name=f"{teacher.name}-{method}",
        teacher_identity=identity,
        batch_size=batch_size,
        desc=f"listwise labels ({method})",
        unit="query",
        show_progress=show_progress,
        lookahead=lookahead_for(llm) if lookahead is None else lookahead,
    )
    labels = [
        ListwiseLabel.from_value(job.query_id, job.query, job.doc_ids, result.values[job.key]) for job in jobs
    ]
    summary = summarize(labels)
    summary.update(
        method=method,
        cached=result.stats.cached,
        computed=result.stats.computed,
        seconds=result.stats.seconds,
    )
    return labels, summary


def label_listwise_kind(
    llm: LLM,
    store: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, Document],
    run: Run,
    *,
    listwise: Mapping[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`label_listwise` in the call every LLM-taught label kind shares (see `LABEL_KINDS`): the
    permutation settings as one mapping, the summary back."""
    return label_listwise(llm, store, queries, corpus, run, **dict(listwise or {}), **options)[1]


LABEL_KINDS.register("listwise", label_listwise_kind)
