"""Stage `labels`: teacher labels for the training and synthetic queries' candidates, into the run's label store, and the training rows."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from rankdistill.data.jsonl import write_jsonl
from rankdistill.data.types import Queries, Run
from rankdistill.errors import RankdistillError
from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext
from rankdistill.pipeline.stages.common import LABEL_STORE, _dataset, _read_queries, _teacher, ray_options

log = logging.getLogger(__name__)


def _query_sets(ctx: StageContext) -> list[tuple[str, Queries, Run]]:
    """(phase name, queries, BM25 candidates) of each training query set that exists."""
    from rankdistill.data import read_run

    sets = []
    data, bm25 = ctx.stage_dir("data"), ctx.stage_dir("bm25")
    if (data / "train_queries.jsonl").exists():
        sets.append(
            (
                "train_queries",
                _read_queries(data / "train_queries.jsonl"),
                read_run(bm25 / "train_candidates.trec"),
            )
        )
    synth = ctx.stage_dir("queries")
    if (synth / "queries.jsonl").exists():
        sets.append(
            ("synthetic", _read_queries(synth / "queries.jsonl"), read_run(synth / "runs" / "bm25.trec"))
        )
    return sets


def label_with_backend(ctx: StageContext, candidates: list) -> list:
    """Teacher labels of candidates through the run's label store, locally or on Ray (`labels.backend`)."""
    from rankdistill.labels import LabelStore, label_candidates

    cfg: PipelineConfig = ctx.config
    with LabelStore(ctx.run_dir / LABEL_STORE) as store:
        if cfg.labels.backend == "ray":
            from rankdistill.labels.ray_backend import label_candidates_ray

            options = ray_options(ctx)
            return label_candidates_ray(
                cfg.labels.teacher,
                candidates,
                store,
                options=options,
                batch_size=cfg.labels.batch_size,
                teacher=_teacher(ctx),
            )
        return label_candidates(_teacher(ctx), candidates, store, batch_size=cfg.labels.batch_size)


def _targets(candidates: list, labels: list, target: str) -> list[Any]:
    """Training targets: per-query min-max of the teacher score (in [0, 1], for soft BCE), the raw score,
    or the [false, true] logit pair (InRanker's MSE on logits)."""
    if target == "score":
        return [float(lab.score) for lab in labels]
    if target == "logits":
        bad = next(
            (c for c, lab in zip(candidates, labels, strict=True) if not lab.logits or len(lab.logits) != 2),
            None,
        )
        if bad is not None:
            raise RankdistillError(
                f"labels.target logits needs a teacher with [false, true] logits (e.g. truefalse:<llm>); the label of "
                f"query {bad.query_id!r}, document {bad.doc_id!r} has none. Use labels.target: minmax"
            )
        return [[float(x) for x in lab.logits] for lab in labels]
    by_query: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        by_query.setdefault(c.query_id, []).append(i)
    from rankdistill.evaluation.fusion import minmax

    out: list[Any] = [0.0] * len(candidates)
    for idx in by_query.values():
        scaled = minmax({i: labels[i].score for i in idx})
        for i in idx:
            out[i] = scaled[i]
    return out


def first_stage_features(candidates: list) -> list[float]:
    """Each candidate's first-stage score min-max scaled over its query's candidates (all of them: the
    labelled depth), the feature a hybrid student adds (`rankdistill.students.hybrid`)."""
    from rankdistill.students.hybrid import normalise_first_stage

    by_query: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        by_query.setdefault(c.query_id, []).append(i)
    out = [0.0] * len(candidates)
    for idx in by_query.values():
        values = normalise_first_stage([candidates[i].first_stage or 0.0 for i in idx], len(idx))
        for i, v in zip(idx, values, strict=True):
            out[i] = float(v)
    return out


def _sample_rows(
    candidates: list, labels: list, per_query: int | None, top: int, seed: int
) -> set[int] | None:
    """Indices of the candidates `pick_rows` keeps for each query (as `pairs_from_teacher_run` does)."""
    if per_query is None:
        return None
    from rankdistill.training.data import pick_rows

    rng = random.Random(seed)
    by_query: dict[str, dict[str, int]] = {}
    for i, c in enumerate(candidates):
        by_query.setdefault(c.query_id, {})[c.doc_id] = i
    keep: set[int] = set()
    for index in by_query.values():
        picked = pick_rows({d: labels[i].score for d, i in index.items()}, per_query, top, rng)
        keep.update(index[d] for d in picked)
    return keep


def _pointwise(ctx: StageContext, candidates: list, target: str) -> tuple[list, list[Any]]:
    """The pointwise teacher's labels of `candidates` and their training targets."""
    labels = label_with_backend(ctx, candidates)
    return labels, _targets(candidates, labels, target)


def run_labels(ctx: StageContext) -> dict[str, Any]:
    """Teacher labels for the top labels.depth BM25 candidates of every training query: scores
    (`labels.kind: pointwise`), permutations (listwise), or permutations and reasoning (reasoning)."""
    from rankdistill.teachers import run_candidates

    cfg: PipelineConfig = ctx.config
    corpus = _dataset(ctx).corpus
    summary: dict[str, Any] = {"kind": cfg.labels.kind, "backend": cfg.labels.backend}
    if cfg.labels.needs_pointwise:
        summary["teacher"] = _teacher(ctx).name
    for phase, queries, run in _query_sets(ctx):
        candidates = run_candidates(queries, corpus, run, cfg.labels.depth)
        t0 = time.perf_counter()
        if cfg.labels.kind == "pointwise":
            labels, targets = _pointwise(ctx, candidates, cfg.labels.target)
            keep = _sample_rows(candidates, labels, cfg.labels.per_query, cfg.labels.top, cfg.seed)
            feature = first_stage_features(candidates)
            rows = [
                {
                    "query_id": c.query_id,
                    "query": c.query,
                    "doc_id": c.doc_id,
                    "document": c.doc,
                    "label": t,
                    "teacher_score": float(lab.score),
                    # BM25's score min-max scaled over the query's labelled candidates: a hybrid student's
                    # input (students.hybrid); a plain student's training ignores it
                    "first_stage": feature[i],
                }
                for i, (c, lab, t) in enumerate(zip(candidates, labels, targets, strict=True))
                if keep is None or i in keep
            ]
            phase_summary: dict[str, Any] = {}
        else:
            from rankdistill.pipeline.stages.listwise import listwise_rows

            rows, comparisons, phase_summary = listwise_rows(ctx, queries, run, candidates)
            if comparisons is not None:
                write_jsonl(ctx.out / f"{phase}.comparisons.jsonl", comparisons)
                phase_summary["comparison_rows"] = len(comparisons)
        n = write_jsonl(ctx.out / f"{phase}.jsonl", rows)
        summary[phase] = {
            "queries": len({r["query_id"] for r in rows}),
            "pairs": n,
            "seconds": round(time.perf_counter() - t0, 3),
            **phase_summary,
        }
    return summary
