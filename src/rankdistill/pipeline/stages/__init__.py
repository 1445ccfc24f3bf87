"""The stages of `rankdistill run`: data → bm25 → queries → labels → train → evaluate → report, one
module each in this package (`common` holds what several share); this module assembles them.

Each stage reads the outputs of the stages named in its `after`, writes its own under its folder, and
calls the layer that does the work (no stage re-implements one):

    data/       dataset.json, eval_queries.jsonl, train_queries.jsonl        rankdistill.data
    bm25/       eval_candidates.trec (top bm25.k), train_candidates.trec       rankdistill.retrieval
    queries/    a BEIR folder of synthetic queries with BM25 candidates        rankdistill.teachers.querygen
    labels/     train_queries.jsonl, synthetic.jsonl: (query, document, label) rankdistill.labels (+ ray)
                rows; for kind reasoning also <phase>.comparisons.jsonl
    train/      student/ (the trained model folder), train_config.json        rankdistill.training
    evaluate/   metrics.json, runs/{bm25,teacher,student}.trec                 rankdistill.evaluation, .inference
    report/     report.md, report.html, figures/ (also copied to the run folder) rankdistill.report

Teacher labels live in `<run_dir>/labels.sqlite`, outside any stage folder: keyed by content, they stay
valid whatever changes, so a rerun (or the evaluate stage's teacher run) reuses every label computed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import Stage
from rankdistill.pipeline.stages.bm25 import run_bm25
from rankdistill.pipeline.stages.common import _dataset_fingerprint, _dump
from rankdistill.pipeline.stages.data import run_data
from rankdistill.pipeline.stages.evaluate import run_evaluate
from rankdistill.pipeline.stages.labels import run_labels
from rankdistill.pipeline.stages.queries import run_queries
from rankdistill.pipeline.stages.report import publish_report, run_report
from rankdistill.pipeline.stages.train import run_train

log = logging.getLogger(__name__)


def build_stages() -> list[Stage]:
    """The stages with what each one's outputs depend on (what a rerun compares)."""
    return [
        Stage(
            "data",
            run_data,
            lambda c: {"dataset": _dump(c.dataset), "train_queries": _dump(c.train_queries), "seed": c.seed},
            external=_dataset_fingerprint,
            description="open the dataset, pick evaluation and training queries",
        ),
        Stage(
            "bm25",
            run_bm25,
            lambda c: {"bm25": _dump(c.bm25), "depth": c.labels.depth},
            after=("data",),
            external=_dataset_fingerprint,
            description="BM25 candidates",
        ),
        Stage(
            "queries",
            run_queries,
            # the filter's teacher as resolved (queries.teacher, else labels.teacher), only where one runs,
            # so the settings of a run without it hash as before
            lambda c: {
                "queries": c.queries.model_dump(mode="json", exclude={"teacher"}),
                "bm25": _dump(c.bm25),
                "seed": c.seed,
                **({"filter_teacher": c.query_filter_teacher} if c.query_filter_teacher is not None else {}),
            },
            external=_dataset_fingerprint,
            description="synthetic queries (InPars)",
        ),  # reads only the corpus
        # the backend (local or Ray) and its sizing do not change a label, so they are not settings here
        Stage(
            "labels",
            run_labels,
            lambda c: {
                **c.labels.model_dump(mode="json", exclude={"backend", "ray"}),
                "seed": c.seed,
            },
            after=("data", "bm25", "queries"),
            external=_dataset_fingerprint,
            description="teacher labels",
        ),
        Stage(
            "train",
            run_train,
            lambda c: {"train": _dump(c.train), "seed": c.seed},
            after=("labels",),
            description="train the student",
        ),
        Stage(
            "evaluate",
            run_evaluate,
            # the device changes the pairs per second measured; only a device set other than auto is a
            # setting, so runs from before devices were configurable hash as they did
            lambda c: {
                "evaluate": c.evaluate.model_dump(mode="json", exclude={"device"}),
                "teacher": c.labels.teacher,
                "batch_size": c.labels.batch_size,
                "threads": c.threads,
                **({"device": c.evaluate_device[0]} if c.evaluate_device[0] != "auto" else {}),
            },
            after=("data", "bm25", "train"),
            external=_dataset_fingerprint,
            description="BM25, teacher and student on the same candidates",
        ),
        Stage(
            "report",
            run_report,
            lambda c: c.model_dump(mode="json", exclude_none=True),
            after=("evaluate",),
            publish=publish_report,
            description="report.md and report.html",
        ),
    ]


def build_pipeline(config: PipelineConfig, run_dir: str | Path | None = None):
    from rankdistill.pipeline.runner import Pipeline
    from rankdistill.version import __version__

    return Pipeline(build_stages(), config, run_dir or config.resolved_run_dir, version=__version__)


def run_pipeline(
    config: PipelineConfig,
    *,
    run_dir: str | Path | None = None,
    from_stage: str | None = None,
    until: str | None = None,
    on_event=None,
):
    """Run (or resume) the whole pipeline; returns the StageResults. Writes the config used to the run folder."""
    import yaml

    from rankdistill.hardware import resolve_device
    from rankdistill.utils import set_seed

    # a device the config names that is not here fails now, not after the stages before the one using it
    resolve_device(config.device, "device")
    resolve_device(*config.evaluate_device)
    set_seed(config.seed)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    pipeline = build_pipeline(config, run_dir)
    pipeline.run_dir.mkdir(parents=True, exist_ok=True)
    (pipeline.run_dir / "config.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False), encoding="utf-8"
    )
    try:
        return pipeline.run(from_stage=from_stage, until=until, on_event=on_event)
    finally:
        for name in ("teacher", "llm"):
            model = pipeline.shared.get(name)
            if model is not None:
                model.close()
