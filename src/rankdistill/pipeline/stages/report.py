"""Stage `report`: report.md and a self-contained report.html from the evaluation."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext, read_manifest
from rankdistill.pipeline.stages.common import STAGE_NAMES

log = logging.getLogger(__name__)


def run_report(ctx: StageContext) -> dict[str, Any]:
    import yaml

    from rankdistill.report import load_results, write_report

    cfg: PipelineConfig = ctx.config
    results = load_results(ctx.stage_dir("evaluate") / "metrics.json")
    stages = []
    for name in STAGE_NAMES[:-1]:
        manifest = read_manifest(ctx.run_dir / name)
        if manifest:
            stages.append({"name": name, "status": "done", "seconds": manifest.get("seconds")})
    config_text = yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
    labels = (read_manifest(ctx.run_dir / "labels") or {}).get("summary")
    files = write_report(
        results, ctx.out, config=config_text, title=cfg.report.title, stages=stages, labels=labels
    )
    return {
        "markdown": files.markdown.name,
        "html": files.html.name,
        "figures": [p.name for p in files.figures],
    }


def publish_report(stage_dir: Path, run_dir: Path) -> None:
    """Copy report.md, report.html and figures/ to the run folder, where a user looks first."""
    for name in ("report.md", "report.html"):
        shutil.copy2(stage_dir / name, run_dir / name)
    if (run_dir / "figures").exists():
        shutil.rmtree(run_dir / "figures")
    shutil.copytree(stage_dir / "figures", run_dir / "figures")


# -- the pipeline -------------------------------------------------------------------------------------
