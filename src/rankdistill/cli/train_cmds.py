"""`rankdistill train CONFIG`: train a student from a YAML config (see rankdistill.training.config)."""

from __future__ import annotations

from pathlib import Path

import typer

from rankdistill.cli.app import app
from rankdistill.hardware import DEVICE_HELP


@app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., help="YAML training config (student, losses, phases, training, dev)."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Override the config's output_dir."
    ),
    check: bool = typer.Option(False, "--check", help="Validate the config and exit."),
    device: str | None = typer.Option(
        None, "--device", help=DEVICE_HELP + " Default: the config's device key (auto)."
    ),
) -> None:
    """Train a student on teacher labels: phases in order, checkpoints, resume, dev nDCG@10."""
    from rankdistill.hardware import check_device_name
    from rankdistill.training.config import load_config

    cfg = load_config(config)
    if output_dir is not None:
        cfg.output_dir = output_dir
    if device is not None:
        cfg.device = check_device_name(device, "--device")
    if check:
        typer.echo(
            f"{config}: OK ({len(cfg.phases)} phase(s), losses: {', '.join(x.name for x in cfg.losses)})"
        )
        return
    from rankdistill.training.run import train_from_config

    final = train_from_config(cfg)
    typer.echo(f"student saved to {final}")
