"""Stage `queries`: synthetic queries an LLM writes for corpus documents (InPars), with their BM25 candidates."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext
from rankdistill.pipeline.stages.common import LABEL_STORE, _bm25, _dataset, _teacher

log = logging.getLogger(__name__)


def run_queries(ctx: StageContext) -> dict[str, Any]:
    """InPars: queries written by the LLM (or cut from documents) for sampled documents, with BM25 candidates."""
    cfg: PipelineConfig = ctx.config
    if cfg.queries.method == "none":
        (ctx.out / "none").write_text("queries.method is none: no synthetic queries\n")
        return {"queries": 0}
    from rankdistill.data.beir import corpus_path
    from rankdistill.teachers.querygen import generate_synthetic_queries
    from rankdistill.teachers.querygen.pipeline import LLM_METHODS

    ds = _dataset(ctx)
    qcfg = cfg.queries.querygen_config(cfg.seed)
    with contextlib.ExitStack() as stack:
        llm = None
        if qcfg.method in LLM_METHODS:
            from rankdistill.llm import load_llm

            llm = load_llm(cfg.queries.llm)
            stack.callback(llm.close)
        teacher = scorer = None
        spec = cfg.query_filter_teacher
        if spec is not None:
            # InPars v2: the teacher's labels go through the run's label store, cached and resumable
            from rankdistill.labels import LabelStore, store_scorer

            if spec == cfg.labels.teacher:
                teacher = _teacher(ctx)  # shared with the labels and evaluate stages, closed by the pipeline
            else:
                from rankdistill.teachers import load_teacher

                teacher = load_teacher(spec, device=cfg.device)
                stack.callback(teacher.close)
            store = stack.enter_context(LabelStore(ctx.run_dir / LABEL_STORE))
            scorer = store_scorer(store, batch_size=cfg.labels.batch_size)
        result = generate_synthetic_queries(
            ds.corpus,
            qcfg,
            llm=llm,
            out_dir=ctx.out,
            retriever=_bm25(ctx),
            teacher=teacher,
            scorer=scorer,
            corpus_file=corpus_path(ds.path),
        )
    if not result.queries:
        raise RankdistillError(f"no synthetic query survived cleaning and filtering: {result.stats}")
    stats = result.stats
    return {
        k: stats[k] for k in ("queries", "raw_queries", "sampled_documents", "seconds_total") if k in stats
    }


# -- labels -------------------------------------------------------------------------------------------
