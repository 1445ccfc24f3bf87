"""Reasoning labels into the label store (ReasoningRank): explicit reasoning for the top documents of each
query's listwise permutation, comparison reasoning over windows of it, and the training targets read back.

The teacher (`rankdistill.teachers.reasoning`) says what a reasoning label is and checks the answers;
this module chooses what to label, keys it and runs it resumably through the store, in this process or
on an executor such as Ray's."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rankdistill.data.types import Document, Run
from rankdistill.labels.listwise import label_listwise
from rankdistill.labels.runner import BatchExecutor, LabelJob, RemoteCompute, run_jobs
from rankdistill.labels.store import LABEL_KINDS, LabelStore
from rankdistill.llm.base import LLM
from rankdistill.pipelining import lookahead_for
from rankdistill.teachers.listwise import ListwiseLabel
from rankdistill.teachers.prompts import truncate_words
from rankdistill.teachers.reasoning import ReasoningTeacher, comparison_windows

REASONING_TYPES = ("explicit", "comparison", "both")


@dataclass
class ReasoningLabels:
    """What one reasoning labelling run produced: each query's permutation, the (job, value) of every
    explicit and comparison label (failures included, with their attempts), and the summary."""

    listwise: list[ListwiseLabel]
    explicit: list[tuple[LabelJob, dict[str, Any]]]
    comparison: list[tuple[LabelJob, dict[str, Any]]]
    summary: dict[str, Any]


def label_reasoning(llm: LLM, store: Any, queries, corpus, run, **options: Any) -> dict[str, Any]:
    """`reasoning_labels` in the call every LLM-taught label kind shares (see `LABEL_KINDS`): the summary."""
    return reasoning_labels(llm, store, queries, corpus, run, **options).summary


def explicit_compute(llm: LLM, **settings: Any):
    """A `RemoteCompute` factory: the identity of `ReasoningTeacher(llm, **settings)` and its compute
    function for explicit reasoning, one stored value per (query, document text) payload."""
    teacher = ReasoningTeacher(llm, **settings)
    prompts = teacher.prompts()

    def explain(payloads: list) -> list[dict]:
        return [r.to_value(prompts=prompts) for r in teacher.explain(payloads)]

    return teacher.identity(), explain


def comparison_compute(llm: LLM, **settings: Any):
    """A `RemoteCompute` factory: the identity of `ReasoningTeacher(llm, **settings)` and its compute
    function for comparison reasoning, one stored value per (query, texts, doc ids, first rank) payload,
    each judgement's window identifiers mapped to document ids."""
    teacher = ReasoningTeacher(llm, **settings)
    prompts = teacher.prompts()

    def compare(payloads: list) -> list[dict]:
        results = teacher.compare([(q, texts) for q, texts, _, _ in payloads])
        out = []
        for (_, _, ids, first_rank), r in zip(payloads, results, strict=True):
            value = r.to_value(prompts=prompts, doc_ids=list(ids), first_rank=first_rank)
            for c in value.get("comparisons", []):  # window identifiers -> document ids
                c["higher_doc"], c["lower_doc"] = ids[c["higher"] - 1], ids[c["lower"] - 1]
            out.append(value)
        return out

    return teacher.identity(), compare


def reasoning_labels(
    llm: LLM,
    store: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, Document],
    run: Run,
    *,
    types: str = "both",
    explicit_depth: int = 10,
    comparison_depth: int = 10,
    comparison_window: int = 5,
    max_retries: int = 2,
    max_passage_words: int | None = 150,
    constrained: bool | None = None,
    listwise: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    seed: int = 0,
    limit: int | None = None,
    show_progress: bool = True,
    executor: BatchExecutor | None = None,
    lookahead: int | None = None,
) -> ReasoningLabels:
    """Reasoning labels for the queries of `queries` with candidates in `run` (the first `limit`):

    1. the listwise permutation of each query (`label_listwise` with the `listwise` settings, reusing
       labels already in the store);
    2. explicit reasoning for the top `explicit_depth` documents of that permutation;
    3. comparison reasoning over its top `comparison_depth` documents, in windows of
       `comparison_window` that overlap by one, each tied to the permutation's order.

    `types` ("explicit", "comparison" or "both") says which of 2 and 3 to make. Each label is one record
    of kind "reasoning"; resumable like every labelling run.

    `executor` (default: this process) computes all three, e.g. a
    `rankdistill.labels.ray_backend.RayExecutor` whose workers load their LLM once from its spec; `llm`
    then only supplies the identity that keys the labels. Same keys and values either way. `lookahead`
    (this process only): batches computed ahead of the one being committed; None:
    `rankdistill.pipelining.lookahead_for(llm)` (1 for a server, 0 for an in-process model).
    """
    if types not in REASONING_TYPES:
        raise ValueError(f"reasoning types {types!r}; expected one of {REASONING_TYPES}")
    lw_settings = dict(listwise or {})
    lw_settings.setdefault("seed", seed)
    lw_settings.setdefault("constrained", constrained)
    labels, lw_summary = label_listwise(
        llm,
        store,
        queries,
        corpus,
        run,
        batch_size=batch_size,
        limit=limit,
        show_progress=show_progress,
        executor=executor,
        lookahead=lookahead,
        **lw_settings,
    )
    settings = {
        "max_retries": max_retries,
        "max_passage_words": max_passage_words,
        "constrained": constrained,
        "seed": seed,
    }
    teacher = ReasoningTeacher(llm, **settings)
    identity = teacher.identity()
    text = {d: truncate_words(corpus[d].full_text, max_passage_words) for lab in labels for d in lab.doc_ids}

    explicit_jobs, comparison_jobs = [], []
    for lab in labels:
        if types == "comparison":
            break
        for d in lab.permutation[:explicit_depth]:
            key = LabelStore.key(
                {**identity, "type": "explicit"}, teacher.explicit_prompt.identity(), lab.query, text[d]
            )
            explicit_jobs.append(LabelJob(key, (lab.query, text[d]), lab.query_id, [d], lab.query))
    for lab in labels:
        if types == "explicit":
            break
        top = lab.permutation[:comparison_depth]
        for lo, hi in comparison_windows(len(top), comparison_window):
            ids = top[lo:hi]
            texts = [text[d] for d in ids]
            key = LabelStore.key(
                {**identity, "type": "comparison"}, teacher.comparison_prompt.identity(), lab.query, texts
            )
            comparison_jobs.append(
                LabelJob(key, (lab.query, texts, ids, lo + 1), lab.query_id, ids, lab.query)
            )

    _, explain = explicit_compute(llm, **settings)  # the identity is `identity`: the same teacher
    _, compare = comparison_compute(llm, **settings)

    common = {
        "kind": "reasoning",
        "teacher_identity": identity,
        "batch_size": batch_size,
        "show_progress": show_progress,
        "executor": executor,
        "lookahead": lookahead_for(llm) if lookahead is None else lookahead,
    }
    ex = run_jobs(
        store,
        explicit_jobs,
        explain,
        remote=RemoteCompute(explicit_compute, settings),
        teacher_name="reasoning-explicit",
        desc="explicit reasoning",
        unit="pair",
        **common,
    )
    cp = run_jobs(
        store,
        comparison_jobs,
        compare,
        remote=RemoteCompute(comparison_compute, settings),
        teacher_name="reasoning-comparison",
        desc="comparison reasoning",
        unit="window",
        **common,
    )
    explicit = [(j, ex.values[j.key]) for j in explicit_jobs]
    comparison = [(j, cp.values[j.key]) for j in comparison_jobs]
    summary = {
        "listwise": lw_summary,
        "explicit": _reasoning_summary([v for _, v in explicit], ex.stats),
        "comparison": _reasoning_summary([v for _, v in comparison], cp.stats),
    }
    return ReasoningLabels(labels, explicit, comparison, summary)


def explicit_target(value: Mapping[str, Any]) -> str:
    """The text a student learns to write for one document: the teacher's reasoning, then its verdict."""
    return f"{value['reasoning']} Relevance: {value['relevance']}"


def _reasoning_summary(values: list[dict], stats: Any) -> dict[str, Any]:
    n = max(len(values), 1)
    failed = [v for v in values if v.get("status") != "ok"]
    attempts: dict[int, int] = {}
    for v in values:
        attempts[len(v.get("attempts", []))] = attempts.get(len(v.get("attempts", [])), 0) + 1
    return {
        "labels": len(values),
        "ok": len(values) - len(failed),
        "failed": len(failed),
        "failure_rate": len(failed) / n,
        "first_try_ok_rate": sum(v.get("status") == "ok" and len(v.get("attempts", [])) == 1 for v in values)
        / n,
        "attempts_histogram": dict(sorted(attempts.items())),
        "llm_calls_per_label": sum(v.get("llm_calls", 0) for v in values) / n,
        "prompt_tokens_per_label": sum(v.get("prompt_tokens", 0) for v in values) / n,
        "completion_tokens_per_label": sum(v.get("completion_tokens", 0) for v in values) / n,
        "cached": stats.cached,
        "computed": stats.computed,
    }


def reasoning_targets(store: Any, corpus: Mapping[str, Document] | None = None) -> Iterator[dict[str, Any]]:
    """Valid reasoning labels as (input, target text) examples for a reasoning student; failures are
    skipped here (they stay in the store, with their attempts)."""
    for rec in store.iter_records(kind="reasoning"):
        v = rec.value
        if v.get("status") != "ok":
            continue
        example = {
            "type": v.get("type"),
            "query_id": rec.query_id,
            "query": rec.query,
            "doc_ids": rec.doc_ids,
        }
        if v.get("type") == "explicit":
            example["target"] = explicit_target(v)
        else:
            first = int(v.get("first_rank", 1))
            example["target"] = "\n".join(
                f"[{c['higher'] + first - 1}] > [{c['lower'] + first - 1}]: {c['reason']}"
                for c in v["comparisons"]
            )
        if corpus is not None:
            example["documents"] = [corpus[d].full_text for d in rec.doc_ids if d in corpus]
        example["prompts"] = v.get("prompts")
        yield example


LABEL_KINDS.register("reasoning", label_reasoning)
