"""Stage `bm25`: BM25 candidates for the evaluation and training queries (the first stage every system reranks)."""

from __future__ import annotations

import logging
import time
from typing import Any

from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext
from rankdistill.pipeline.stages.common import _bm25, _read_queries

log = logging.getLogger(__name__)


def run_bm25(ctx: StageContext) -> dict[str, Any]:
    """BM25 candidates: top bm25.k of each evaluation query, top labels.depth of each training query."""
    from rankdistill.data import write_run

    cfg: PipelineConfig = ctx.config
    data = ctx.stage_dir("data")
    bm25 = _bm25(ctx)
    t0 = time.perf_counter()
    eval_run = bm25.retrieve(_read_queries(data / "eval_queries.jsonl"), k=cfg.bm25.k, desc="BM25 (eval)")
    seconds = time.perf_counter() - t0
    write_run(eval_run, ctx.out / "eval_candidates.trec", tag="bm25")
    summary = {
        "eval_queries": len(eval_run),
        "eval_pairs": sum(len(v) for _, v in eval_run.items()),
        "eval_seconds": round(seconds, 3),
    }
    if (data / "train_queries.jsonl").exists():
        train_run = bm25.retrieve(
            _read_queries(data / "train_queries.jsonl"), k=cfg.labels.depth, desc="BM25 (train)"
        )
        write_run(train_run, ctx.out / "train_candidates.trec", tag="bm25")
        summary["train_queries"] = len(train_run)
    return summary


# -- synthetic queries --------------------------------------------------------------------------------
