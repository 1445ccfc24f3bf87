"""`rankdistill export`: write an encoder student as ONNX (optionally int8) and measure which backend is fastest."""

from __future__ import annotations

from pathlib import Path

import typer

from rankdistill.cli.app import app


@app.command("export")
def export_cmd(
    model: Path = typer.Argument(..., help="Encoder student folder (or any HF cross-encoder folder)."),
    onnx: bool = typer.Option(False, "--onnx", help="Export to ONNX (model/onnx/model.onnx)."),
    int8: bool = typer.Option(False, "--int8", help="Also write a dynamically quantised int8 model."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    measure: bool = typer.Option(
        True,
        "--measure/--no-measure",
        help="Time torch vs ONNX here and record the fastest for backend=auto.",
    ),
    tolerance: float = typer.Option(
        0.02,
        "--tolerance",
        help="Largest score difference to fp32 torch for an ONNX backend to be picked by auto.",
    ),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads while measuring."),
    pairs: int = typer.Option(
        96, "--pairs", help="Synthetic (query, document) pairs to time the backends on."
    ),
) -> None:
    """Export a student for deployment. Safetensors weights are already what `Reranker.load` reads; --onnx
    adds an ONNX Runtime version, used by `backend=auto` only when it measured faster and faithful here."""
    if not onnx:
        raise typer.BadParameter("nothing to export: pass --onnx (optionally with --int8)")
    from rankdistill.inference.export import export_onnx

    record = export_onnx(
        model, int8=int8, opset=opset, measure=measure, threads=threads, tolerance=tolerance, n_pairs=pairs
    )
    for name, m in record.get("measured", {}).items():
        typer.echo(
            f"{name:10s} {m['pairs_per_s']:8.1f} pairs/s  dtype {m['dtype']:8s}  "
            f"max |score - fp32| {m['max_abs_diff_vs_torch_fp32']:.4f}"
        )
    typer.echo(
        f"wrote {', '.join(record['files'])} to {Path(model) / 'onnx'}; backend=auto uses {record['auto']}"
    )
