"""Effectiveness measures through ir_measures (any measure name it parses: nDCG@10, RR@10, R@100, ...).

Which queries count (both settable):
- A query whose judgements are all 0 (no relevant document) is left out of the mean by default
  (`drop_no_relevant`): no ranking can score on it, and pytrec_eval would add a 0 that only measures
  the qrels. Such queries are also how TREC DL and BEIR test sets are built: every kept query has a
  relevant document, so on those collections the choice changes nothing.
- A judged query that the run does not answer at all counts as 0 (`missing_as_zero`, like
  `trec_eval -c`), so a run cannot look better by skipping hard queries. Queries in the run without
  judgements are ignored.
- Qrels that leave no query to evaluate (empty, or every grade 0) are an error, not a mean of 0 over 0
  queries that reads like a result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rankdistill.data.types import Qrels, Run
from rankdistill.errors import DataError

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100")


def parse_measures(measures: Iterable[str]) -> list:
    import ir_measures

    parsed = []
    for name in measures:
        try:
            parsed.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError) as exc:
            raise ValueError(
                f"unknown measure {name!r}: {exc}; examples: nDCG@10, RR@10, R@100, AP, P@5"
            ) from None
    return parsed


def evaluate(
    run: Run,
    qrels: Qrels,
    measures: Sequence[str] = DEFAULT_MEASURES,
    per_query: bool = False,
    drop_no_relevant: bool = True,
    missing_as_zero: bool = True,
) -> dict:
    """Mean of each measure over the evaluated queries; with per_query, also {measure: {qid: value}}."""
    import ir_measures

    parsed = parse_measures(measures)
    judged = {q: d for q, d in qrels.items() if not drop_no_relevant or any(g > 0 for g in d.values())}
    if not judged:
        what = "has no judgements" if not len(qrels) else "has no relevant judgement (every grade is 0)"
        raise DataError(f"{what}; nothing to evaluate", qrels.name or "qrels")
    qrels_list = [ir_measures.Qrel(q, d, int(g)) for q, docs in judged.items() for d, g in docs.items()]
    run_list = [
        ir_measures.ScoredDoc(q, d, float(s))
        for q, docs in run.items()
        if q in judged
        for d, s in docs.items()
    ]
    values: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    for metric in ir_measures.iter_calc(parsed, qrels_list, run_list):
        values[str(metric.measure)][metric.query_id] = float(metric.value)
    qids = sorted(judged) if missing_as_zero else sorted(set(judged) & set(run.query_ids))
    result: dict = {
        name: (sum(v.get(q, 0.0) for q in qids) / len(qids) if qids else 0.0) for name, v in values.items()
    }
    result["queries"] = len(qids)
    if per_query:
        result["per_query"] = {name: {q: v.get(q, 0.0) for q in qids} for name, v in values.items()}
    return result
