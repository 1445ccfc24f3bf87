"""Cleaning, deduplication and filtering of synthetic queries (InPars v1 and v2 filters)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rankdistill.data.types import Corpus
from rankdistill.teachers.base import Candidate, PairScorer, PointwiseTeacher, direct_scorer
from rankdistill.teachers.ensemble import FirstStageTeacher
from rankdistill.teachers.querygen.records import SyntheticQuery
from rankdistill.teachers.querygen.text import is_copied, is_grounded, normalise_query

FILTERS = ("none", "logprob", "teacher")


def dedupe(queries: Sequence[SyntheticQuery]) -> tuple[list[SyntheticQuery], dict[str, int]]:
    """Keep the first of queries with the same text, then the first of those equal after normalisation
    (case, punctuation, spacing). Returns the kept queries and how many each rule removed."""
    seen_exact: set[str] = set()
    seen_norm: set[str] = set()
    kept: list[SyntheticQuery] = []
    counts = {"exact_duplicates": 0, "normalised_duplicates": 0}
    for q in queries:
        if q.text in seen_exact:
            counts["exact_duplicates"] += 1
            continue
        seen_exact.add(q.text)
        key = normalise_query(q.text)
        if key in seen_norm:
            counts["normalised_duplicates"] += 1
            continue
        seen_norm.add(key)
        kept.append(q)
    return kept, counts


def drop_copied(queries: Sequence[SyntheticQuery], corpus: Mapping) -> tuple[list[SyntheticQuery], int]:
    """Drop queries that are a verbatim span of their source document (the model copied, not asked)."""
    kept = [q for q in queries if not is_copied(q.text, corpus[q.source_doc_id].full_text)]
    return kept, len(queries) - len(kept)


def drop_ungrounded(queries: Sequence[SyntheticQuery], corpus: Mapping) -> tuple[list[SyntheticQuery], int]:
    """Drop queries sharing no content word with their source document (see `is_grounded`)."""
    kept = [q for q in queries if is_grounded(q.text, corpus[q.source_doc_id].full_text)]
    return kept, len(queries) - len(kept)


def keep_top(
    queries: Sequence[SyntheticQuery], by: str, *, share: float | None = None, top_k: int | None = None
) -> list[SyntheticQuery]:
    """The best `share` (0-1] or `top_k` queries by attribute `by` ('mean_logprob' for InPars v1,
    'score' for v2), in their original order. Ties keep the earlier query."""
    if share is None and top_k is None:
        return list(queries)
    if share is not None and not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    missing = [q.query_id for q in queries if getattr(q, by) is None]
    if missing:
        raise ValueError(f"{len(missing)} queries have no {by!r} to filter on (e.g. {missing[:3]})")
    nan = [q.query_id for q in queries if math.isnan(getattr(q, by))]
    if nan:  # every comparison with NaN is false: sorting would keep whatever comes first
        raise ValueError(f"{len(nan)} queries have a NaN {by!r}, which ranks nowhere (e.g. {nan[:3]})")
    n = len(queries)
    if share is not None:
        n = min(n, math.ceil(share * len(queries)))
    if top_k is not None:
        n = min(n, top_k)
    order = sorted(range(len(queries)), key=lambda i: (-getattr(queries[i], by), i))
    keep = set(order[:n])
    return [q for i, q in enumerate(queries) if i in keep]


def filter_teacher_problem(teacher: PointwiseTeacher | str | Mapping[str, Any]) -> str | None:
    """Why a teacher (loaded, or a spec: parsed, nothing loaded) cannot serve the InPars v2 filter, which
    scores each synthetic query's (query, source document) pair on its own; None when it can."""
    if isinstance(teacher, FirstStageTeacher):
        kind = "first-stage"
    elif isinstance(teacher, PointwiseTeacher):
        kind = "ensemble" if teacher.depends_on_candidates else None
    else:
        from rankdistill.teachers import teacher_config

        kind = teacher_config(teacher)["type"]
    if kind == "ensemble":
        return (
            "it is an ensemble, whose labels are its members' scores normalised over each query's candidates; "
            "a synthetic query has one pair to score, so every score would tie"
        )
    if kind == "first-stage":
        return "first-stage scores come with a run's candidates, and a (query, source document) pair has none"
    return None


def score_sources(
    queries: Sequence[SyntheticQuery],
    corpus: Corpus,
    teacher: PointwiseTeacher,
    *,
    scorer: PairScorer | None = None,
    show_progress: bool = True,
) -> list[SyntheticQuery]:
    """Set each query's `score` to the teacher's score of (query, source document): the InPars v2 filter.

    The positive text is the source document, or `positive_text` when set. `scorer` decides how labels
    are computed: directly (default) or through a label store (`rankdistill.labels`), cached and resumable.
    """
    problem = filter_teacher_problem(teacher)
    if problem is not None:
        raise ValueError(f"teacher {teacher.name} cannot filter synthetic queries: {problem}")
    items = list(queries)
    candidates = [
        Candidate(q.query_id, q.text, q.source_doc_id, q.positive_text or corpus[q.source_doc_id].full_text)
        for q in items
    ]
    labels = teacher.label_candidates(candidates, scorer or direct_scorer(show_progress=show_progress))
    if len(labels) != len(items):
        raise ValueError(f"teacher {teacher.name} returned {len(labels)} labels for {len(items)} pairs")
    for q, label in zip(items, labels, strict=True):
        q.score = float(label.score)
    return items
