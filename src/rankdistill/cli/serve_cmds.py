"""`rankdistill rerank` (rerank a first-stage TREC run) and `rankdistill serve` (the HTTP API)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from rankdistill.cli.app import app
from rankdistill.hardware import DEVICE_HELP, resolve_device

_BACKEND_HELP = "torch, onnx, onnx-int8, or auto (the fastest measured by `rankdistill export --onnx`)."
_DTYPE_HELP = (
    "auto (bf16 on CPUs and GPUs with native bf16, fp16 on older GPUs, fp32 otherwise), bf16, fp16 or "
    "fp32 (torch backend)."
)
_LONG_HELP = "Long documents: truncate, or maxp (split into passages, keep the best passage's score)."


def _check_choices(backend: str, long_docs: str) -> None:
    from rankdistill.inference.reranker import BACKENDS, LONG_DOC_POLICIES

    if backend not in BACKENDS:
        raise typer.BadParameter(
            f"{backend!r}; expected one of {', '.join(BACKENDS)}", param_hint="--backend"
        )
    if long_docs not in LONG_DOC_POLICIES:
        raise typer.BadParameter(
            f"{long_docs!r}; expected one of {', '.join(LONG_DOC_POLICIES)}", param_hint="--long-docs"
        )


@app.command("rerank")
def rerank_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Student folder or HF cross-encoder folder/name."),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="Dataset name (scifact, beir/nfcorpus) or BEIR folder."
    ),
    run: Path = typer.Option(..., "--run", help="First-stage run to rerank (TREC format)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the reranked run (TREC format)."),
    top_k: int = typer.Option(100, "--top-k", "-k", help="Rerank the top k documents of each query."),
    split: str | None = typer.Option(None, "--split", help="Only the queries judged in this split."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where named datasets live."),
    backend: str = typer.Option("auto", "--backend", help=_BACKEND_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", "--dtype", help=_DTYPE_HELP),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads (default: all cores)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per model batch."),
    long_docs: str = typer.Option("truncate", "--long-docs", help=_LONG_HELP),
    tag: str = typer.Option("rankdistill", "--tag", help="Run tag (last TREC column)."),
) -> None:
    """Rerank the top-k documents of each query of a first-stage run and write a TREC run."""
    _check_choices(backend, long_docs)
    resolve_device(device, "--device")  # before the data is read: a device not here is an error now
    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.trec import read_run, write_run
    from rankdistill.inference.reranker import Reranker
    from rankdistill.teachers.base import rerank_run

    ds = load_dataset(dataset, data_dir=data_dir)
    first = read_run(run)
    queries = ds.split_queries(split) if split else ds.queries
    reranker = Reranker.load(
        model,
        backend=backend,
        device=device,
        dtype=dtype,
        threads=threads,
        batch_size=batch_size,
        long_docs=long_docs,
    )
    t0 = time.perf_counter()
    stats: dict[str, int] = {}
    # a document id the corpus lacks is skipped with a warning (counted below); none known at all is an error
    reranked = rerank_run(
        reranker.score_requests,
        queries,
        ds.corpus,
        first,
        top_k,
        missing="skip",
        show_progress=True,
        stats=stats,
        with_first_stage=reranker.first_stage is not None,  # a hybrid student adds the run's scores
    )
    write_run(reranked, out, tag=tag)
    seconds = time.perf_counter() - t0
    skipped = (
        f"; skipped {stats['missing_queries']} queries not in the dataset" if stats["missing_queries"] else ""
    )
    missing = f"; {stats['missing_docs']} unknown document ids ignored" if stats["missing_docs"] else ""
    typer.echo(
        f"reranked {stats['queries']} queries ({stats['pairs']} pairs) in {seconds:.1f}s "
        f"({stats['pairs'] / max(seconds, 1e-9):.0f} pairs/s, {reranker.info()['backend']} on "
        f"{reranker.info()['device']}){skipped}{missing} -> {out}"
    )


@app.command("serve")
def serve_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Student folder or HF cross-encoder folder/name."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="RANKDISTILL_API_KEY", help="Require this key (X-API-Key or Bearer)."
    ),
    max_documents: int = typer.Option(1000, "--max-documents", help="Most documents per request (else 413)."),
    max_chars: int = typer.Option(20000, "--max-chars", help="Most characters per document (else 413)."),
    max_request_chars: int = typer.Option(
        1_000_000, "--max-request-chars", help="Most document characters per request, all told (else 413)."
    ),
    body_timeout: float = typer.Option(
        30.0, "--body-timeout", help="Seconds a client has to send its request body (else 408)."
    ),
    max_batch_pairs: int = typer.Option(
        64, "--max-batch-pairs", help="Most pairs per micro-batch (more adds latency, not CPU throughput)."
    ),
    max_wait_ms: float = typer.Option(2.0, "--max-wait-ms", help="How long a micro-batch waits for company."),
    backend: str = typer.Option("auto", "--backend", help=_BACKEND_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", "--dtype", help=_DTYPE_HELP),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads (default: all cores)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per model batch."),
    long_docs: str = typer.Option("truncate", "--long-docs", help=_LONG_HELP),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve a reranker over HTTP: POST /rerank, POST /explain, GET /health, docs at /docs."""
    _check_choices(backend, long_docs)
    resolve_device(device, "--device")
    from rankdistill.errors import require

    uvicorn = require("uvicorn", "server", "rankdistill serve")
    from rankdistill.inference.reranker import Reranker
    from rankdistill.server.app import create_app

    reranker = Reranker.load(
        model,
        backend=backend,
        device=device,
        dtype=dtype,
        threads=threads,
        batch_size=batch_size,
        long_docs=long_docs,
    )
    reranker.score([("warm up", "the first pass allocates buffers")])
    application = create_app(
        reranker,
        api_key=api_key,
        max_documents=max_documents,
        max_chars=max_chars,
        max_request_chars=max_request_chars,
        max_batch_pairs=max_batch_pairs,
        max_wait_ms=max_wait_ms,
        body_timeout_s=body_timeout,
    )
    info = reranker.info()
    typer.echo(
        f"serving {info['model']} ({info['backend']} on {info.get('device')}, {info.get('dtype')}) on "
        f"http://{host}:{port} "
        f"(docs: /docs{', API key required' if api_key else ''})"
    )
    uvicorn.run(application, host=host, port=port, log_level=log_level, workers=1)
