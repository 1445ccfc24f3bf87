"""`rankdistill run CONFIG` (every stage, resumable) and `rankdistill report RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rankdistill.cli.app import app
from rankdistill.hardware import DEVICE_HELP

console = Console(stderr=True)


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Pipeline YAML (see configs/quickstart.yaml)."),
    from_stage: str | None = typer.Option(
        None,
        "--from",
        help="Rerun this stage and every later one even if up to date "
        "(data, bm25, queries, labels, train, evaluate, report).",
    ),
    until: str | None = typer.Option(None, "--until", help="Stop after this stage."),
    run_dir: Path | None = typer.Option(
        None, "--run-dir", "-o", help="Run folder (default: the config's run_dir, else runs/<name>)."
    ),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a config key: --set labels.depth=10 (repeatable)."
    ),
    check: bool = typer.Option(
        False, "--check", help="Validate the config, show which stages would run, and exit."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Folder of datasets by name (sets dataset.data_dir; $RANKDISTILL_DATA_DIR also works).",
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        help=DEVICE_HELP + " Sets the config's device (teachers, training, evaluation); default: its own.",
    ),
) -> None:
    """Run data → BM25 → synthetic queries → teacher labels → training → evaluation → report.

    Stages whose inputs and settings have not changed since the last run in the same folder are skipped;
    a failed stage keeps the earlier stages' outputs, and running again resumes from it."""
    from rankdistill.pipeline.config import check_dataset, load_config
    from rankdistill.pipeline.runner import StageError, running_stage
    from rankdistill.pipeline.stages import build_pipeline, run_pipeline

    extra = [
        *([f"dataset.data_dir={data_dir}"] if data_dir else []),
        *([f"device={device}"] if device else []),
    ]
    cfg = load_config(config, [*(overrides or []), *extra])
    if check:
        check_dataset(cfg, str(config))
        pipeline = build_pipeline(cfg, run_dir)
        table = Table("stage", "state", title=f"{config}: valid; run folder {pipeline.run_dir}")
        for row in pipeline.status():
            table.add_row(row["name"], "up to date" if row["current"] else f"will run ({row['reason']})")
        console.print(table)
        return

    from rankdistill.cli.app import app_state
    from rankdistill.cli.supervise import is_child, supervise

    if app_state.argv is not None and not is_child():
        # the stages run in a child process, so a native crash in one of them is reported, not silent
        folder = Path(run_dir or cfg.resolved_run_dir)
        code = supervise(app_state.argv, lambda: running_stage(folder))
        if code:
            raise typer.Exit(code)
        return

    def on_event(result) -> None:
        mark = {
            "done": "[green]done[/]",
            "skipped": "[dim]skipped (up to date)[/]",
            "failed": "[red]FAILED[/]",
        }
        took = f" in {result.seconds:.1f}s" if result.status == "done" else ""
        console.print(f"stage {result.name}: {mark.get(result.status, result.status)}{took}")

    try:
        results = run_pipeline(cfg, run_dir=run_dir, from_stage=from_stage, until=until, on_event=on_event)
    except StageError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    folder = run_dir or cfg.resolved_run_dir
    table = Table("stage", "status", "seconds", title=f"run folder: {folder}")
    for r in results:
        table.add_row(r.name, r.status, f"{r.seconds:.1f}" if r.status == "done" else "")
    console.print(table)
    if (folder / "report.html").exists():
        console.print(f"report: {folder / 'report.md'} and {folder / 'report.html'}")


@app.command("report")
def report_cmd(
    target: Path = typer.Argument(
        ..., help="A run folder (reads evaluate/metrics.json and config.yaml) or a metrics JSON."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for report.md/report.html (default: the run folder)."
    ),
    title: str | None = typer.Option(None, "--title", help="Report title."),
) -> None:
    """Render report.md and a self-contained report.html (plots inlined) from evaluation results."""
    from rankdistill.errors import DataError
    from rankdistill.pipeline.runner import read_manifest
    from rankdistill.report import load_results, write_report

    if target.is_dir():
        metrics = target / "evaluate" / "metrics.json"
        if not metrics.exists():
            raise DataError(
                "no evaluate/metrics.json here; is this a run folder whose evaluate stage finished?", target
            )
        config_path = target / "config.yaml"
        config = config_path.read_text(encoding="utf-8") if config_path.exists() else None
        stages = [
            {"name": p.name, "status": "done", "seconds": read_manifest(p).get("seconds")}
            for p in sorted(target.iterdir(), key=lambda p: p.stat().st_mtime)
            if p.is_dir() and read_manifest(p) and p.name != "report"
        ]
        labels = (read_manifest(target / "labels") or {}).get("summary")
        out = out or target
    else:
        metrics, config, stages, labels = target, None, None, None
        out = out or target.parent
    files = write_report(load_results(metrics), out, config=config, title=title, stages=stages, labels=labels)
    console.print(f"wrote {files.markdown} and {files.html} ({len(files.figures)} figures)")
