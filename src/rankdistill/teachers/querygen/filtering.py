"""Cleaning, deduplication and filtering of synthetic queries (InPars v1 and v2 filters)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rankdistill.data.types import Corpus
from rankdistill.teachers.base import Candidate, PairScorer, PointwiseTeacher, direct_scorer
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
    n = len(queries)
    if share is not None:
        n = min(n, math.ceil(share * len(queries)))
    if top_k is not None:
        n = min(n, top_k)
    order = sorted(range(len(queries)), key=lambda i: (-getattr(queries[i], by), i))
    keep = set(order[:n])
    return [q for i, q in enumerate(queries) if i in keep]


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
