"""Stage `train`: the student trained on the labelled rows (in process, or through accelerate/torchrun)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext
from rankdistill.pipeline.stages.common import count_parameters

log = logging.getLogger(__name__)


def train_phases(labels: Path, max_rows: int | None, comparisons: bool = False) -> list[dict[str, Any]]:
    """One phase per labelled query set the labels stage wrote, with its comparison reasoning
    (`<phase>.comparisons.jsonl`) when `comparisons` (a decoder student learns from it) and there is some."""
    phases = []
    for phase in ("train_queries", "synthetic"):
        if not (labels / f"{phase}.jsonl").exists():
            continue
        data: dict[str, Any] = {"jsonl": str(labels / f"{phase}.jsonl"), "max_rows": max_rows}
        path = labels / f"{phase}.comparisons.jsonl"
        if comparisons and path.exists() and path.stat().st_size > 0:
            data["comparisons"] = str(path)
        phases.append({"name": phase, "data": data})
    return phases


def _student_parameters(student: Path) -> int | None:
    """Parameters of the saved student; a decoder saved as a LoRA adapter counts its backbone too."""
    from rankdistill.students.metadata import read_metadata

    meta = read_metadata(student)
    n = count_parameters(student)
    if meta.get("student_type") == "decoder" and meta.get("weights") == "adapter":
        from rankdistill.students.decoder import backbone_path

        base = count_parameters(backbone_path(meta["config"]["backbone"]))
        n = None if base is None else base + (n or 0)
    return n


def run_train(ctx: StageContext) -> dict[str, Any]:
    """Train the student on each labelled query set in turn (InRanker: real queries, then synthetic)."""
    from rankdistill.training.run import train_from_config

    cfg: PipelineConfig = ctx.config
    decoder = cfg.train.student.get("type") == "decoder"
    phases = train_phases(ctx.stage_dir("labels"), cfg.train.max_rows, comparisons=decoder)
    if not phases:
        raise RankdistillError("no labelled training queries: the labels stage wrote no phase file")
    work = ctx.out / "work"
    tcfg = cfg.train.train_config(
        work, cfg.seed, phases, cfg.dataset.data_dir, device=cfg.device, hybrid_depth=cfg.labels.depth
    )
    (ctx.out / "train_config.json").write_text(json.dumps(tcfg.model_dump(mode="json"), indent=2) + "\n")
    t0 = time.perf_counter()
    if cfg.train.launch:
        final = _launch_training(cfg.train.launch, tcfg, ctx.out / "train_config.yaml")
    else:
        final = Path(train_from_config(tcfg))
    seconds = time.perf_counter() - t0
    student = ctx.out / "student"
    if student.exists():
        shutil.rmtree(student)
    shutil.move(str(final), student)
    # checkpoints (optimizer states, ~3x the model) were only for resuming this stage
    shutil.rmtree(work, ignore_errors=True)
    return {
        "phases": [p["name"] for p in phases],
        "seconds": round(seconds, 3),
        "parameters": _student_parameters(student),
    }


def _launch_training(launch: str, tcfg, config_path: Path) -> Path:
    """`<launcher> rankdistill train CONFIG` in a subprocess (one process per GPU under accelerate or
    torchrun; the Hugging Face Trainer underneath handles DDP); returns the final student folder."""
    import shlex
    import subprocess
    import sys

    import yaml

    config_path.write_text(yaml.safe_dump(tcfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    script = shutil.which("rankdistill") or str(Path(sys.executable).with_name("rankdistill"))
    launcher = shlex.split(launch)
    # a launcher installed in this environment (accelerate, torchrun) works without an activated venv
    beside = Path(sys.executable).with_name(launcher[0])
    if shutil.which(launcher[0]) is None and beside.exists():
        launcher[0] = str(beside)
    cmd = [*launcher, script, "train", str(config_path)]
    log.info("training with: %s", " ".join(cmd))
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise RankdistillError(
            f"training under {launch!r} exited with status {proc.returncode}: {' '.join(cmd)}"
        )
    final = Path(tcfg.output_dir) / "final"
    if not final.is_dir():
        raise RankdistillError(f"training under {launch!r} finished without writing {final}")
    return final
