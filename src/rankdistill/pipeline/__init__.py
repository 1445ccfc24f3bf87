"""The end-to-end run: a validated config, resumable stages under one run folder, and the report."""

from rankdistill.pipeline.config import ConfigError, PipelineConfig, load_config, parse_config
from rankdistill.pipeline.distill import DistillRun, distill
from rankdistill.pipeline.runner import Pipeline, Stage, StageContext, StageError, StageResult, read_status

__all__ = [
    "ConfigError",
    "DistillRun",
    "distill",
    "Pipeline",
    "PipelineConfig",
    "Stage",
    "StageContext",
    "StageError",
    "StageResult",
    "load_config",
    "parse_config",
    "read_status",
]
