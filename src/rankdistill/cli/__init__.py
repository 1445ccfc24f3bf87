"""Command-line interface. Each module registers its commands on the shared Typer app."""

from __future__ import annotations

import faulthandler
import sys

from rankdistill.cli import (  # noqa: F401
    data_cmds,
    doctor_cmds,
    label_cmds,
    model_cmds,
    pipeline_cmds,
    query_cmds,
    serve_cmds,
    train_cmds,
)
from rankdistill.cli.app import app, app_state
from rankdistill.errors import RankdistillError


def main() -> None:
    """Entry point: known errors print one clear line instead of a traceback; a native crash (illegal
    instruction, segmentation fault) prints the Python traceback of every thread (fault handler)."""
    faulthandler.enable()
    app_state.argv = sys.argv[1:]
    try:
        app(standalone_mode=True)
    except RankdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


__all__ = ["app", "main"]
