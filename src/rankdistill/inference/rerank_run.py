"""Rerank a first-stage `Run` with a `Reranker`: the top-k documents of each query, rescored."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rankdistill.data.types import Corpus, Run
from rankdistill.utils import progress

log = logging.getLogger(__name__)


def rerank_run(
    reranker: Any,
    run: Run,
    queries: Mapping[str, str],
    corpus: Corpus,
    *,
    top_k: int = 100,
    queries_per_pass: int = 8,
    show_progress: bool = False,
) -> tuple[Run, dict[str, int]]:
    """A new run holding, for every query of `run` that `queries` knows, the reranker's scores of its
    top `top_k` first-stage documents (documents below top_k are dropped, as in every rerank
    evaluation). Several queries share each scoring pass so batches stay full. Returns the run and
    counts: queries, pairs, missing_queries (in the run but not in `queries`), missing_docs."""
    qids = [q for q in run.query_ids if q in queries]
    stats = {"queries": len(qids), "pairs": 0, "missing_queries": len(run) - len(qids), "missing_docs": 0}
    if stats["missing_queries"]:
        log.warning("%d queries of the run are not in the dataset; skipped", stats["missing_queries"])
    out = Run({}, name=f"{run.name}-reranked")
    bar = progress(total=len(qids), desc="reranking", unit="query", disable=not show_progress)
    for start in range(0, len(qids), queries_per_pass):
        chunk = qids[start : start + queries_per_pass]
        requests, doc_ids = [], []
        for qid in chunk:
            ids = [d for d, _ in run.ranked(qid, top_k)]
            known = [d for d in ids if d in corpus]
            stats["missing_docs"] += len(ids) - len(known)
            requests.append((queries[qid], [corpus[d] for d in known]))
            doc_ids.append(known)
        ranked = reranker.rerank_many(requests, ids=doc_ids)
        for qid, results in zip(chunk, ranked, strict=True):
            out.scores[qid] = {r.id: r.score for r in results}
            stats["pairs"] += len(results)
        bar.update(len(chunk))
    bar.close()
    if stats["missing_docs"]:
        log.warning("%d document ids of the run are not in the corpus; ignored", stats["missing_docs"])
    return out, stats
