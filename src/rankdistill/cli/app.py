"""The `rankdistill` Typer application; command modules register on it."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import typer

app = typer.Typer(
    name="rankdistill",
    help="Distil large, slow rankers into small, fast, explainable rerankers for your own corpus.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# `argv`: the command line when run as the `rankdistill` command (None when `app` is called from Python, as
# tests do); commands that supervise a child process re-run it from there.
app_state = SimpleNamespace(argv=None)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more detail.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
