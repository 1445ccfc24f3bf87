"""`rankdistill label` (teacher labels into the label store) and `rankdistill labels` (store contents)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rankdistill.cli.app import app
from rankdistill.hardware import DEVICE_HELP, resolve_device

console = Console(stderr=True)


def read_query_file(path: Path):
    """Queries and candidates from a JSONL file, one query a line: an id (`query_id`, `_id`, `id` or
    `qid`), a text (`text` or `query`), `candidates` (document ids, or objects with `doc_id` and `score`)
    and optionally the source document (`source_doc_id` or `positive`), labelled with the candidates.
    A synthetic.jsonl from `rankdistill generate-queries` reads as is. Returns (Queries, Run, has_scores)."""
    import math

    from rankdistill.data.beir import checked_id
    from rankdistill.data.jsonl import iter_jsonl
    from rankdistill.data.types import Queries, Run
    from rankdistill.errors import DataError

    queries: dict[str, str] = {}
    scores: dict[str, dict[str, float]] = {}
    has_scores = True
    for lineno, row in iter_jsonl(path):
        qid = next((row[k] for k in ("query_id", "_id", "id", "qid") if k in row), None)
        text = next((row[k] for k in ("text", "query") if k in row), None)
        if qid is None or not isinstance(text, str):
            raise DataError("expected a query id (query_id/_id/id/qid) and a text (text/query)", path, lineno)
        qid = checked_id(str(qid), path, lineno, "query id")
        if qid in queries:
            raise DataError(f"query id {qid!r} appears twice", path, lineno)
        cands = row.get("candidates", [])
        if not isinstance(cands, list):
            raise DataError(
                "'candidates' must be a list of document ids or {doc_id, score} objects", path, lineno
            )
        ids: list[str] = []
        given: dict[str, float] = {}
        source = row.get("source_doc_id", row.get("positive"))
        if source is not None:
            ids.append(checked_id(str(source), path, lineno, "source document id"))
        for c in cands:
            if isinstance(c, dict):
                if "doc_id" not in c:
                    raise DataError("candidate objects need a 'doc_id'", path, lineno)
                did = checked_id(str(c["doc_id"]), path, lineno, "candidate doc_id")
                ids.append(did)
                if "score" in c:
                    score = c["score"]
                    if (
                        isinstance(score, bool)
                        or not isinstance(score, (int, float))
                        or not math.isfinite(score)
                    ):
                        raise DataError(
                            f"candidate {did!r}: score {score!r} is not a finite number", path, lineno
                        )
                    given[did] = float(score)
            else:
                ids.append(checked_id(str(c), path, lineno, "candidate"))
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise DataError(f"query {qid!r} has no candidates to label", path, lineno)
        queries[qid] = text
        if len(given) == len(ids):
            scores[qid] = given
        else:
            has_scores = False
            # placeholder order-preserving scores; replaced by BM25 scores when a fusion needs them
            scores[qid] = {d: float(len(ids) - i) for i, d in enumerate(ids)}
    return Queries(queries, name=path.stem), Run(scores, name=path.stem), has_scores


def _needs_first_stage(teacher) -> bool:
    from rankdistill.teachers import EnsembleTeacher, FirstStageTeacher

    if isinstance(teacher, FirstStageTeacher):
        return True
    return isinstance(teacher, EnsembleTeacher) and any(_needs_first_stage(m) for m in teacher.members)


def _bm25_scores(corpus, queries, run, cache_dir):
    from rankdistill.data.types import Run
    from rankdistill.retrieval.bm25 import BM25Retriever

    bm25 = BM25Retriever(corpus, cache_dir=cache_dir)
    return Run(
        {q: dict(zip(docs, bm25.score(queries[q], list(docs)), strict=True)) for q, docs in run.items()},
        name="bm25",
    )


@app.command("label")
def label_cmd(
    teacher: str = typer.Option(
        "bm25+minilm",
        "--teacher",
        "-t",
        help="Teacher spec: truefalse:<llm>, yesno:<llm>, qlm:<llm>, cross-encoder:<model>, bi-encoder[:<model>], "
        "or an ensemble A+B (0.5*A+B weights), e.g. bm25+minilm or bm25+qlm:llamacpp:gemma3-270m. "
        "For --kind listwise/reasoning: an LLM spec.",
    ),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (e.g. scifact) or BEIR folder."),
    split: str = typer.Option("test", help="Qrels split whose queries to label; 'all' for every query."),
    queries_file: Path = typer.Option(
        None,
        "--queries",
        "-q",
        help="JSONL of queries with candidates (e.g. synthetic.jsonl of generate-queries) instead of --split.",
    ),
    run_file: Path = typer.Option(
        None, "--run", "-r", help="TREC run of candidates (default: BM25 over the corpus)."
    ),
    depth: int = typer.Option(20, "--depth", "-k", min=1, help="Candidates per query to label."),
    store_path: Path = typer.Option(
        Path("labels.sqlite"), "--store", "-s", help="Label store (SQLite) to fill."
    ),
    kind: str = typer.Option("pointwise", "--kind", help="pointwise | listwise | reasoning."),
    method: str = typer.Option(
        "one_pass",
        "--method",
        help="Listwise ranking: one_pass | sliding_window | first (FIRST: each sliding window ranked by the "
        "first answer token's logits over the passage identifiers).",
    ),
    prompt: str = typer.Option(
        "plain", "--prompt", help="Listwise prompt preset: plain | rankgpt | rankzephyr."
    ),
    messages: str = typer.Option(
        "auto",
        "--messages",
        help="Listwise prompt as chat turns: auto (where the LLM is chat) | true | false.",
    ),
    window: int = typer.Option(20, "--window", min=2, help="Sliding window size (passages per LLM call)."),
    step: int = typer.Option(10, "--step", min=1, help="Sliding window step."),
    fusion: str = typer.Option(None, "--fusion", help="Ensemble fusion: minmax (default) | zscore | rrf."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", min=1, help="Pairs per committed batch."),
    max_queries: int = typer.Option(
        None, "--max-queries", "-n", min=1, help="Label only the first N queries."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Write the teacher's reranked run (TREC)."),
    export: Path = typer.Option(None, "--export", help="Export this kind's labels to JSONL afterwards."),
    evaluate_run: bool = typer.Option(
        True, "--evaluate/--no-evaluate", help="Print nDCG@10 of first stage and teacher when qrels exist."
    ),
    cache_dir: Path = typer.Option(None, "--cache-dir", envvar="RANKDISTILL_CACHE", help="BM25 index cache."),
    data_dir: Path = typer.Option(
        None, "--data-dir", envvar="RANKDISTILL_DATA_DIR", help="Folder of datasets."
    ),
    device: str = typer.Option(
        "auto",
        "--device",
        help=DEVICE_HELP + " For teachers that run a model in process (cross-encoder, bi-encoder); an LLM "
        "backend takes its own ?device= option.",
    ),
) -> None:
    """Label (query, document) candidates with a teacher into the label store. Resumable: run it again
    after a crash and it computes only what is missing; a finished job computes nothing."""
    import time

    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.trec import read_run, write_run
    from rankdistill.labels import LABEL_KINDS, LabelStore, StoreScorer
    from rankdistill.teachers import load_teacher, run_candidates
    from rankdistill.teachers.base import labels_to_run

    if kind not in LABEL_KINDS:  # the kinds registered in rankdistill.labels (and by plugins)
        raise typer.BadParameter(
            f"{kind!r}; expected one of {', '.join(LABEL_KINDS.names())}", param_hint="--kind"
        )
    _check_teacher_options(kind, teacher, fusion)  # before anything is read, and before the store exists
    resolve_device(device, "--device")
    ds = load_dataset(dataset, data_dir)
    corpus = ds.corpus
    has_scores = True
    if queries_file is not None:
        queries, run, has_scores = read_query_file(queries_file)
        qrels = None
    else:
        queries = ds.queries if split == "all" else ds.split_queries(split)
        qrels = None if split == "all" else ds.qrels(split)
        run = None
    if max_queries:
        queries = queries.subset(list(queries)[:max_queries])
    if run_file is not None:
        run = read_run(run_file)
        has_scores = True
    elif run is None:
        from rankdistill.retrieval.bm25 import BM25Retriever

        run = BM25Retriever(corpus, cache_dir=cache_dir).retrieve(queries, k=depth)
    run = run.subset(list(queries))

    new_store = not store_path.exists()
    store = LabelStore(store_path)
    t0 = time.perf_counter()
    try:
        if kind != "pointwise":
            listwise = {"method": method, "window": window, "step": step, "depth": depth}
            if prompt != "plain":
                listwise["prompt"] = prompt
            if messages != "auto":
                listwise["messages"] = messages
            result = _label_other(kind, teacher, store, queries, corpus, run, listwise, batch_size)
            summary = {"kind": kind, **result}
        else:
            tch = load_teacher(teacher, fusion=fusion, device=device)
            if not has_scores and _needs_first_stage(tch):
                run = _bm25_scores(corpus, queries, run, cache_dir)
            candidates = run_candidates(queries, corpus, run, depth)
            scorer = StoreScorer(store, batch_size)
            labels = tch.label_candidates(candidates, scorer)
            if tch.depends_on_candidates:
                from rankdistill.labels.pointwise import store_fused_labels

                store_fused_labels(store, tch, candidates, labels)
            teacher_run = labels_to_run(labels, candidates, name=tch.name)
            summary = {
                "teacher": tch.name,
                "queries": len(teacher_run),
                "pairs": len(candidates),
                "per_teacher": {
                    name: {
                        "cached": s.cached,
                        "computed": s.computed,
                        "seconds": round(s.seconds, 2),
                        "pairs_per_s": round(s.rate, 2),
                    }
                    for name, s in scorer.stats.items()
                },
            }
            if output:
                write_run(teacher_run, output, tag=tch.name.replace(" ", "_"))
                summary["output"] = str(output)
            if evaluate_run and qrels is not None:
                from rankdistill.data.types import Qrels
                from rankdistill.evaluation.metrics import evaluate

                # the queries asked for (--max-queries) count, those without candidates as 0
                qrels = Qrels({q: qrels[q] for q in queries if q in qrels}, name=qrels.name)
                if any(g > 0 for judged in qrels.judgements.values() for g in judged.values()):
                    summary["nDCG@10"] = {
                        "first_stage": round(evaluate(run.top_k(depth), qrels, ["nDCG@10"])["nDCG@10"], 4),
                        "teacher": round(evaluate(teacher_run, qrels, ["nDCG@10"])["nDCG@10"], 4),
                    }
            tch.close()
        if export:
            summary["exported"] = store.export_jsonl(export, kind=kind)
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        summary["store"] = {"path": str(store_path), "labels": len(store)}
    except BaseException:
        # a failure before the first label (a teacher that does not load) leaves no empty store behind
        empty = new_store and len(store) == 0
        store.close()
        if empty:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{store_path}{suffix}").unlink(missing_ok=True)
        raise
    store.close()
    typer.echo(json.dumps(summary, indent=2))


def _check_teacher_options(kind: str, teacher: str, fusion: str | None) -> None:
    from rankdistill.teachers import FUSIONS, teacher_config

    if fusion is not None and fusion not in FUSIONS:
        raise typer.BadParameter(f"{fusion!r}; expected one of {', '.join(FUSIONS)}", param_hint="--fusion")
    if kind == "pointwise":
        try:
            teacher_config(teacher)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--teacher") from None


def _label_other(kind, spec, store, queries, corpus, run, listwise, batch_size) -> dict:
    from rankdistill.labels import LABEL_KINDS
    from rankdistill.llm import load_llm

    fn = LABEL_KINDS.get(kind)  # fn(llm, store, queries, corpus, run, *, listwise, batch_size) -> summary
    llm_spec = spec.split(":", 1)[1] if spec.split(":", 1)[0] in ("listwise", "reasoning") else spec
    llm = load_llm(llm_spec)
    try:
        kwargs = {"batch_size": batch_size} if batch_size else {}
        return fn(llm, store, queries, corpus, run, listwise=listwise, **kwargs)
    finally:
        llm.close()


@app.command("labels")
def labels_cmd(
    store_path: Path = typer.Argument(..., help="Label store (SQLite)."),
    export: Path = typer.Option(None, "--export", help="Write the records as JSONL."),
    kind: str = typer.Option(None, "--kind", help="Only this kind (pointwise | listwise | reasoning)."),
    teacher: str = typer.Option(None, "--teacher", help="Only this teacher name (or id)."),
) -> None:
    """Show how many labels a store holds per kind and teacher; optionally export them."""
    from rankdistill.labels import LabelStore

    if not store_path.exists():
        raise typer.BadParameter(f"{store_path} does not exist", param_hint="STORE_PATH")
    with LabelStore(store_path) as store:
        table = Table("kind", "teacher", "labels")
        for (k, t), n in store.counts().items():
            table.add_row(k, t, f"{n:,}")
        Console().print(table)
        if export:
            n = store.export_jsonl(export, kind=kind, teacher=teacher)
            console.print(f"wrote {n:,} records to {export}")
