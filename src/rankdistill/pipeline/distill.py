"""`distill(config)`: the whole pipeline from Python, as `rankdistill run CONFIG` runs it from the shell."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.pipeline.config import PipelineConfig, apply_overrides, load_config, parse_config
from rankdistill.pipeline.runner import StageResult


@dataclass
class DistillRun:
    """What a run left: its folder, each stage's result, and the evaluation's metrics (when it ran)."""

    run_dir: Path
    stages: list[StageResult]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def student(self) -> Path:
        """The trained student's folder (load it with `rankdistill.Reranker.load`)."""
        return self.run_dir / "train" / "student"

    def ndcg(self, role: str = "student", measure: str = "nDCG@10") -> float | None:
        """A system's measure from the evaluation ("baseline", "teacher", "student")."""
        for system in self.metrics.get("systems", []):
            if system.get("role") == role:
                return system.get("metrics", {}).get(measure)
        return None


def distill(
    config: str | Path | dict[str, Any] | PipelineConfig,
    *,
    run_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    data_dir: str | Path | None = None,
    from_stage: str | None = None,
    until: str | None = None,
) -> DistillRun:
    """Run (or resume) data -> BM25 -> synthetic queries -> teacher labels -> training -> evaluation ->
    report for a config (a YAML path, a mapping or a `PipelineConfig`); finished stages are skipped.

    `overrides` are `--set` strings (`"labels.depth=10"`); `data_dir` is where datasets are found."""
    from rankdistill.pipeline.stages import run_pipeline

    extra = [*(overrides or []), *([f"dataset.data_dir={data_dir}"] if data_dir else [])]
    if isinstance(config, PipelineConfig):
        cfg = parse_config(apply_overrides(config.model_dump(mode="json", exclude_none=True), extra))
    elif isinstance(config, dict):
        cfg = parse_config(apply_overrides(dict(config), extra))
    else:
        cfg = load_config(config, extra)
    stages = run_pipeline(cfg, run_dir=run_dir, from_stage=from_stage, until=until)
    folder = Path(run_dir or cfg.resolved_run_dir)
    metrics_file = folder / "evaluate" / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    return DistillRun(folder, stages, metrics)
