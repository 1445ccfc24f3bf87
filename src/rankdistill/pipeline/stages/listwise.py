"""The labels stage for `labels.kind: listwise | reasoning`: each training query's permutation (from the
LLM, or from the pointwise teacher's scores) as rank-target rows, with the one pass's left-out documents
as hard negatives, and for reasoning the explicit reasoning of each pair and comparison rows.

A row's target is its rank target: 1 for the first document of the permutation, falling evenly to 1/P for
the P-th placed one, 0 for documents the LLM left out (RRADistill's hard negatives: below everything it
placed, not ordered among themselves). With `labels.pointwise_weight` w > 0 it is mixed with the
pointwise teacher's min-max score of the same pair, so one query trains on both signals.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from rankdistill.data.types import Run
from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext
from rankdistill.pipeline.stages.common import LABEL_STORE, _dataset, ray_options

log = logging.getLogger(__name__)


def _llm(ctx: StageContext):
    """The labelling LLM, loaded once per process (closed by `run_pipeline`)."""
    if "llm" not in ctx.shared:
        from rankdistill.llm import load_llm

        ctx.shared["llm"] = load_llm(ctx.config.labels.llm)
    return ctx.shared["llm"]


def rank_targets(order: list[int], missing: list[int], n: int) -> list[float]:
    """Per document index: 1 - r / P for the r-th (0-based) of the P placed documents, 0 for missing."""
    gone = set(missing)
    placed = [i for i in order if i not in gone]
    out = [0.0] * n
    for r, i in enumerate(placed):
        out[i] = 1.0 - r / len(placed)
    return out


def _teacher_permutations(ctx: StageContext, queries, run: Run, scores: dict[tuple[str, str], float]):
    """`listwise.ranker: teacher`: the lists the LLM would see, ordered by the pointwise teacher's scores
    (ties by document id), with nothing missing."""
    from rankdistill.teachers.listwise import ListwiseLabel, ListwiseTeacher

    cfg: PipelineConfig = ctx.config
    lw = cfg.labels.listwise
    # only the teacher's choice of what to show is used: it never calls its (absent) LLM
    chooser = ListwiseTeacher(
        None,
        method=lw.method,
        window=lw.window,
        step=lw.step,
        depth=cfg.labels.depth,
        top_k=lw.top_k,
        bottom_k=lw.bottom_k,
        max_passage_words=lw.max_passage_words,
    )
    corpus = _dataset(ctx).corpus
    labels = []
    for qid, text in queries.items():
        if qid not in run:
            continue
        item = chooser.select(qid, text, run.ranked(qid), corpus)
        if not item.doc_ids:
            continue
        order = sorted(
            range(len(item.doc_ids)), key=lambda i: (-scores[(qid, item.doc_ids[i])], item.doc_ids[i])
        )
        labels.append(ListwiseLabel(qid, text, "teacher", list(item.doc_ids), order, []))
    return labels


def _llm_labels(ctx: StageContext, queries, run: Run):
    """Permutations (and for `kind: reasoning` the reasoning labels) from the LLM, through the label store:
    in this process, or with `labels.backend: ray` on Ray workers (`labels.ray`) that each load
    `labels.llm` from its spec (so it must name a model every worker can load); same labels either way."""
    from rankdistill.labels import LabelStore
    from rankdistill.labels.listwise import label_listwise
    from rankdistill.labels.reasoning import reasoning_labels

    cfg: PipelineConfig = ctx.config
    lw = cfg.labels.listwise
    settings = {
        "method": lw.method,
        "window": lw.window,
        "step": lw.step,
        "depth": cfg.labels.depth,
        "top_k": lw.top_k,
        "bottom_k": lw.bottom_k,
        "max_passage_words": lw.max_passage_words,
        "constrained": lw.constrained,
        "seed": cfg.seed,
        **lw.teacher_settings(),
    }
    batch_size = cfg.labels.batch_size or 8
    executor = None
    if cfg.labels.backend == "ray":
        from rankdistill.labels.ray_backend import RayExecutor

        executor = RayExecutor(cfg.labels.llm, ray_options(ctx))
    try:
        # on Ray the driver loads no model: the executor's stand-in gives the identity that keys labels
        llm = executor.llm if executor is not None else _llm(ctx)
        with LabelStore(ctx.run_dir / LABEL_STORE) as store:
            if cfg.labels.kind == "listwise":
                labels, summary = label_listwise(
                    llm,
                    store,
                    queries,
                    _dataset(ctx).corpus,
                    run,
                    batch_size=batch_size,
                    executor=executor,
                    **settings,
                )
                return labels, None, {"listwise": summary}
            rs = cfg.labels.reasoning
            result = reasoning_labels(
                llm,
                store,
                queries,
                _dataset(ctx).corpus,
                run,
                types=rs.types,
                explicit_depth=rs.explicit_depth,
                comparison_depth=rs.comparison_depth,
                comparison_window=rs.comparison_window,
                max_retries=rs.max_retries,
                max_passage_words=rs.max_passage_words,
                constrained=lw.constrained,
                listwise=settings,
                batch_size=batch_size,
                seed=cfg.seed,
                executor=executor,
            )
            return result.listwise, result, result.summary
    finally:
        if executor is not None:
            executor.close()


def _comparison_rows(result, corpus, seed: int) -> list[dict[str, Any]]:
    """One row per pairwise judgement of the valid comparison labels, the better document shown first or
    second by a seeded coin (a student must not learn that "A" always wins)."""
    rows = []
    for job, value in result.comparison:
        if value.get("status") != "ok":
            continue
        for c in value.get("comparisons", []):
            hi, lo = c["higher_doc"], c["lower_doc"]
            first = random.Random(f"{seed}:{job.query_id}:{hi}:{lo}").random() < 0.5
            a, b = (hi, lo) if first else (lo, hi)
            rows.append(
                {
                    "query_id": job.query_id,
                    "query": job.query,
                    "doc_a": a,
                    "doc_b": b,
                    "document_a": corpus[a].full_text,
                    "document_b": corpus[b].full_text,
                    "better": "A" if first else "B",
                    "reason": c["reason"],
                }
            )
    return rows


def listwise_rows(
    ctx: StageContext, queries, run: Run, candidates: list
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]:
    """Training rows of one query set from listwise (or reasoning) labels; comparison rows for
    `kind: reasoning` (None otherwise); and what happened: labels, failures, fallbacks, drops, repairs."""
    from rankdistill.labels.reasoning import explicit_target
    from rankdistill.pipeline.stages.labels import _pointwise

    cfg: PipelineConfig = ctx.config
    corpus = _dataset(ctx).corpus
    pointwise: dict[tuple[str, str], tuple[float, float]] = {}  # (query, doc) -> (score, min-max target)
    if cfg.labels.needs_pointwise:
        labels, targets = _pointwise(ctx, candidates, "minmax")
        for c, lab, t in zip(candidates, labels, targets, strict=True):
            pointwise[(c.query_id, c.doc_id)] = (float(lab.score), float(t))
    if cfg.labels.listwise.ranker == "teacher" and cfg.labels.kind == "listwise":
        scores = {k: v[0] for k, v in pointwise.items()}
        permutations, result, summary = _teacher_permutations(ctx, queries, run, scores), None, {}
    else:
        permutations, result, summary = _llm_labels(ctx, queries, run)
    reasoning: dict[tuple[str, str], str] = {}
    if result is not None:
        for job, value in result.explicit:
            if value.get("status") == "ok":
                reasoning[(job.query_id, job.doc_ids[0])] = explicit_target(value)
    w = cfg.labels.pointwise_weight
    rows: list[dict[str, Any]] = []
    counts = {"labelled": len(permutations), "failed": 0, "fallback": 0, "dropped": 0, "hard_negatives": 0}
    for lab in permutations:
        n = len(lab.doc_ids)
        have_pointwise = all((lab.query_id, d) in pointwise for d in lab.doc_ids)
        failed = n > 1 and len(lab.missing) >= n  # the LLM placed none of them
        if failed:
            counts["failed"] += 1
            if cfg.labels.fallback != "pointwise" or not have_pointwise:
                counts["dropped"] += 1
                continue
            counts["fallback"] += 1
            targets = [pointwise[(lab.query_id, d)][1] for d in lab.doc_ids]
            ranks: list[int | None] = [None] * n
            missing: set[int] = set()
        else:
            targets = rank_targets(lab.order, lab.missing, n)
            if w > 0:
                targets = [
                    (1 - w) * t + w * pointwise[(lab.query_id, d)][1]
                    for t, d in zip(targets, lab.doc_ids, strict=True)
                ]
            missing = set(lab.missing)
            placed = [i for i in lab.order if i not in missing]
            ranks = [None] * n
            for r, i in enumerate(placed):
                ranks[i] = r + 1
            counts["hard_negatives"] += len(missing)
        for i, d in enumerate(lab.doc_ids):
            row = {
                "query_id": lab.query_id,
                "query": lab.query,
                "doc_id": d,
                "document": corpus[d].full_text,
                "label": targets[i],
                "rank": ranks[i],
                "hard_negative": i in missing,
            }
            if (lab.query_id, d) in pointwise:
                row["teacher_score"] = pointwise[(lab.query_id, d)][0]
            if result is not None:
                row["reasoning"] = reasoning.get((lab.query_id, d))
            rows.append(row)
    comparisons = _comparison_rows(result, corpus, cfg.seed) if result is not None else None
    if counts["dropped"]:
        log.warning(
            "%d of %d queries have no usable permutation and no pointwise fallback; left out of training",
            counts["dropped"],
            len(permutations),
        )
    return rows, comparisons, {**counts, **summary}
