"""Data, first-stage retrieval and evaluation commands: `datasets`, `retrieve`, `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rankdistill.cli.app import app

console = Console()

DataDirOption = typer.Option(
    None, "--data-dir", envvar="RANKDISTILL_DATA_DIR", help="Folder holding datasets by name."
)


@app.command("datasets")
def datasets_cmd(data_dir: Path = DataDirOption) -> None:
    """List the datasets found in the data directory, with counts."""
    from rankdistill.data.beir import corpus_path, qrels_splits
    from rankdistill.data.datasets import data_dirs, is_beir_folder

    table = Table("name", "documents", "queries", "splits (judged queries)", "runs", "path")
    found = 0
    for root in data_dirs(data_dir):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if is_beir_folder(p)):
            found += 1
            docs = _count_lines(corpus_path(folder))
            queries = _count_lines(folder / "queries.jsonl") if (folder / "queries.jsonl").exists() else 0
            splits = ", ".join(
                f"{s} ({_count_queries(folder / 'qrels' / f'{s}.tsv')})" for s in qrels_splits(folder)
            )
            runs = (
                ", ".join(p.stem for p in sorted((folder / "runs").glob("*.trec")))
                if (folder / "runs").is_dir()
                else ""
            )
            table.add_row(folder.name, f"{docs:,}", f"{queries:,}", splits, runs, str(folder))
    if not found:
        console.print(f"no datasets found in {', '.join(str(d) for d in data_dirs(data_dir))}")
        raise typer.Exit(1)
    console.print(table)


def _count_lines(path: Path) -> int:
    from rankdistill.data.jsonl import iter_lines

    return sum(1 for _, line in iter_lines(path) if line.strip())


def _count_queries(path: Path) -> int:
    from rankdistill.data.jsonl import iter_lines

    return len(
        {
            line.split("\t", 1)[0]
            for i, line in iter_lines(path)
            if line.strip() and not (i == 1 and line.startswith("query-id"))
        }
    )


@app.command("retrieve")
def retrieve_cmd(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (e.g. scifact) or BEIR folder."),
    out: Path = typer.Option(..., "--out", "-o", help="TREC run file to write."),
    split: str = typer.Option("test", help="Qrels split whose queries to run; 'all' for every query."),
    k: int = typer.Option(100, "--k", "-k", min=1, help="Documents per query."),
    k1: float = typer.Option(
        1.5, help="BM25 k1 (bm25s default; best of 0.9/1.2/1.5 on scifact and nfcorpus)."
    ),
    b: float = typer.Option(0.75, help="BM25 b."),
    evaluate_run: bool = typer.Option(
        True, "--evaluate/--no-evaluate", help="Print nDCG@10, RR@10, R@100 when qrels exist."
    ),
    cache_dir: Path = typer.Option(
        None, "--cache-dir", envvar="RANKDISTILL_CACHE", help="Where the BM25 index is cached."
    ),
    data_dir: Path = DataDirOption,
) -> None:
    """Retrieve the top k documents per query with BM25 and write a TREC run."""
    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.trec import write_run
    from rankdistill.retrieval.bm25 import BM25Retriever

    ds = load_dataset(dataset, data_dir)
    queries = ds.queries if split == "all" else ds.split_queries(split)
    retriever = BM25Retriever(ds.corpus, k1=k1, b=b, cache_dir=cache_dir)
    run = retriever.retrieve(queries, k=k)
    write_run(run, out, tag="bm25")
    console.print(f"wrote {out} ({len(run)} queries, top {k})")
    if evaluate_run and split != "all":
        _print_metrics({"bm25": _evaluate(run, ds.qrels(split), None)})


def _evaluate(run, qrels, measures):
    from rankdistill.evaluation.metrics import DEFAULT_MEASURES, evaluate

    return evaluate(run, qrels, measures or DEFAULT_MEASURES)


def _print_metrics(results: dict[str, dict]) -> None:
    names = [k for k in next(iter(results.values())) if k not in ("queries", "per_query")]
    table = Table("run", *names, "queries")
    for run_name, res in results.items():
        table.add_row(run_name, *(f"{res[n]:.4f}" for n in names), str(res["queries"]))
    console.print(table)


@app.command("evaluate")
def evaluate_cmd(
    run: list[Path] = typer.Option(..., "--run", "-r", help="TREC run file(s) to evaluate."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset whose qrels to use."),
    split: str = typer.Option("test", help="Qrels split."),
    qrels: Path = typer.Option(None, "--qrels", help="A qrels file (BEIR TSV or TREC) instead of a dataset."),
    measure: list[str] = typer.Option(
        None,
        "--measure",
        "-m",
        help="Measure names ir_measures parses (repeatable); default nDCG@10 RR@10 R@100.",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Write the results as JSON."),
    per_query: bool = typer.Option(False, help="Include per-query values in the JSON."),
    data_dir: Path = DataDirOption,
) -> None:
    """Evaluate TREC runs against qrels; prints a table and optionally writes JSON."""
    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.trec import read_qrels, read_run
    from rankdistill.evaluation.metrics import DEFAULT_MEASURES, evaluate, parse_measures

    if (dataset is None) == (qrels is None):
        raise typer.BadParameter("give exactly one of --dataset or --qrels")
    measures = measure or list(DEFAULT_MEASURES)
    try:
        parse_measures(measures)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--measure") from None
    # named by its path, so that qrels with nothing to evaluate are reported by file
    judged = read_qrels(qrels, name=str(qrels)) if qrels else load_dataset(dataset, data_dir).qrels(split)
    results = {p.name: evaluate(read_run(p), judged, measures, per_query=per_query) for p in run}
    _print_metrics(results)
    if out:
        from rankdistill.data.jsonl import check_output_file

        check_output_file(out).parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        console.print(f"wrote {out}")
