"""Stage `data`: the evaluation and training query texts (never their judgements) and the dataset's description."""

from __future__ import annotations

import json
import logging
from typing import Any

from rankdistill.errors import DataError
from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext
from rankdistill.pipeline.stages.common import _dataset, _sample, _write_queries

log = logging.getLogger(__name__)


def run_data(ctx: StageContext) -> dict[str, Any]:
    """Open the dataset; write the evaluation queries and the training queries (texts only)."""
    cfg: PipelineConfig = ctx.config
    ds = _dataset(ctx)
    from rankdistill.retrieval import corpus_fingerprint

    eval_q = ds.split_queries(cfg.dataset.eval_split)
    eval_q = eval_q.subset(_sample(list(eval_q), cfg.dataset.max_eval_queries, cfg.seed))
    _write_queries(ctx.out / "eval_queries.jsonl", eval_q)
    n_train = 0
    if cfg.train_queries.split is not None:
        split = cfg.train_queries.split
        if split not in ds.splits:
            raise DataError(
                f"train_queries.split: no split {split!r} in {ds.name}; available: {', '.join(ds.splits)}",
                ds.path / "qrels",
            )
        # (the config refuses a training split equal to the evaluation split)
        train_q = ds.split_queries(split)
        ids = [q for q in train_q if q not in eval_q]
        train_q = train_q.subset(_sample(ids, cfg.train_queries.max_queries, cfg.seed))
        n_train = _write_queries(ctx.out / "train_queries.jsonl", train_q)
    info = {
        "name": ds.name,
        "path": str(ds.path),
        "documents": len(ds.corpus),
        "corpus_fingerprint": corpus_fingerprint(ds.corpus),
        "eval_split": cfg.dataset.eval_split,
        "eval_queries": len(eval_q),
        "train_queries": n_train,
    }
    (ctx.out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


# -- bm25 ---------------------------------------------------------------------------------------------
