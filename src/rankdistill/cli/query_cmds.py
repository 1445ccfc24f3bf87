"""Synthetic query commands: `generate-queries` (InPars with an LLM, or LLM-free pseudo-queries)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from rich.console import Console

from rankdistill.cli.app import app

console = Console(stderr=True)


@app.command("generate-queries")
def generate_queries_cmd(
    dataset: str = typer.Option(
        ...,
        "--dataset",
        "-d",
        help="Dataset name (e.g. scifact), BEIR folder or corpus.jsonl[.gz]. Only its corpus is read.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder to write (a BEIR dataset with split 'synthetic'); a rerun resumes here.",
    ),
    method: str = typer.Option(
        "vanilla",
        "--method",
        "-m",
        help="vanilla | gbq (InPars prompts, need --llm) | sentence | title (no LLM).",
    ),
    llm: str = typer.Option(
        None, "--llm", help="Generator LLM spec for rankdistill.llm.load_llm, e.g. llamacpp:gemma3-270m."
    ),
    n_docs: int = typer.Option(1000, "--n-docs", min=0, help="Documents to sample (0: all)."),
    n_per_doc: int = typer.Option(1, "--n-per-doc", min=1, help="Queries to generate per document."),
    seed: int = typer.Option(0, "--seed", help="Seed of document sampling and generation."),
    max_tokens: int = typer.Option(48, "--max-tokens", min=1, help="Tokens per generated query at most."),
    temperature: float = typer.Option(
        None,
        "--temperature",
        min=0.0,
        help="Sampling temperature (default: 0 for one query a document, 0.7 for several).",
    ),
    top_p: float = typer.Option(0.95, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass."),
    max_doc_words: int = typer.Option(
        200, "--max-doc-words", min=1, help="Words of each document shown to the LLM."
    ),
    batch_size: int = typer.Option(
        8, "--batch-size", min=1, help="Documents per generation call (and per journal write)."
    ),
    remove_sentence: bool = typer.Option(
        False,
        "--remove-sentence",
        help="sentence method: the positive is the document without the sentence (inverse cloze).",
    ),
    min_words: int = typer.Option(3, "--min-words", min=1, help="Drop queries shorter than this many words."),
    max_words: int = typer.Option(64, "--max-words", min=1, help="Drop queries longer than this many words."),
    keep_copied: bool = typer.Option(
        False, "--keep-copied", help="Keep generated queries that are a verbatim span of their document."
    ),
    keep_ungrounded: bool = typer.Option(
        False,
        "--keep-ungrounded",
        help="Keep generated queries with no content word of their document (few-shot echoes, generic questions).",
    ),
    filter_: str = typer.Option(
        "none",
        "--filter",
        help="none | logprob (InPars v1: mean token log-probability) | teacher (InPars v2: teacher score of the source).",
    ),
    keep: float = typer.Option(
        None, "--keep", min=0.0, max=1.0, help="Share of queries the filter keeps (InPars: 0.1)."
    ),
    keep_top_k: int = typer.Option(None, "--keep-top-k", min=1, help="Number of queries the filter keeps."),
    teacher: str = typer.Option(
        None, "--teacher", help="Teacher for --filter teacher (as for `rankdistill label`)."
    ),
    store: Path = typer.Option(
        None,
        "--store",
        help="Label store (SQLite) that caches the --filter teacher's scores (default: none).",
    ),
    negatives: int = typer.Option(
        20, "--negatives", min=0, help="BM25 negatives per query (top-k without the source)."
    ),
    cache_dir: Path = typer.Option(
        None, "--cache-dir", envvar="RANKDISTILL_CACHE", help="Where the BM25 index is cached."
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", envvar="RANKDISTILL_DATA_DIR", help="Folder holding datasets by name."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete what --out holds and start over."),
    show: int = typer.Option(5, "--show", min=0, help="Print this many example queries."),
) -> None:
    """Write synthetic queries for a corpus, each with its source document as positive and BM25 negatives.

    Generation is resumable: finished documents are journalled in OUT/generations.jsonl, so a killed run
    started again with the same settings only generates what is missing.
    """
    from rankdistill.data.beir import read_corpus
    from rankdistill.data.datasets import load_dataset
    from rankdistill.retrieval.bm25 import BM25Retriever
    from rankdistill.teachers.querygen import QueryGenConfig, generate_synthetic_queries
    from rankdistill.teachers.querygen.pipeline import LLM_METHODS

    config = QueryGenConfig(
        method=method,
        n_docs=n_docs or None,
        n_per_doc=n_per_doc,
        seed=seed,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        max_doc_words=max_doc_words,
        batch_size=batch_size,
        remove_sentence=remove_sentence,
        min_words=min_words,
        max_words=max_words,
        drop_copied=not keep_copied,
        drop_ungrounded=not keep_ungrounded,
        filter=filter_,
        keep_share=keep,
        keep_top_k=keep_top_k,
        negatives=negatives,
    )
    try:
        config.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if method in LLM_METHODS and not llm:
        raise typer.BadParameter(
            f"method {method!r} needs --llm (e.g. --llm llamacpp:gemma3-270m); or use --method sentence|title"
        )
    if filter_ == "teacher" and not teacher:
        raise typer.BadParameter("--filter teacher needs --teacher")

    source = Path(dataset).expanduser()
    if source.is_file():
        corpus, corpus_file = read_corpus(source, name=source.name.split(".")[0]), source
    else:
        ds = load_dataset(dataset, data_dir)
        corpus = ds.corpus
        from rankdistill.data.beir import corpus_path

        corpus_file = corpus_path(ds.path)

    if overwrite and out.exists():
        # only ever delete a folder this command wrote: a mistyped --out must not cost someone their data
        ours = {
            "generations.jsonl",
            "synthetic.jsonl",
            "stats.json",
            "queries.jsonl",
            "qrels",
            "runs",
            "corpus.jsonl",
            "corpus.jsonl.gz",
        }
        strangers = (
            sorted(p.name for p in out.iterdir() if p.name not in ours) if out.is_dir() else [out.name]
        )
        if strangers:
            raise typer.BadParameter(
                f"--overwrite: {out} holds files this command did not write ({strangers[:5]}); "
                "delete it yourself or pick another --out"
            )
        shutil.rmtree(out)
    generator = None
    if method in LLM_METHODS:
        from rankdistill.llm import load_llm

        generator = load_llm(llm)
    scorer_teacher, label_store, scorer = None, None, None
    if filter_ == "teacher":
        from rankdistill.teachers import load_teacher

        scorer_teacher = load_teacher(teacher)
        if store is not None:
            from rankdistill.labels import LabelStore, store_scorer

            label_store = LabelStore(store)
            scorer = store_scorer(label_store)
    try:
        retriever = BM25Retriever.from_corpus(corpus, cache_dir=cache_dir)
        result = generate_synthetic_queries(
            corpus,
            config,
            llm=generator,
            out_dir=out,
            retriever=retriever,
            teacher=scorer_teacher,
            scorer=scorer,
            corpus_file=corpus_file,
        )
    finally:
        if generator is not None:
            generator.close()
        if scorer_teacher is not None:
            scorer_teacher.close()
        if label_store is not None:
            label_store.close()
    s = result.stats
    console.print(f"wrote {len(result.queries)} queries for {s['sampled_documents']} documents to {out}")
    if "generation" in s:
        g = s["generation"]
        console.print(
            f"generation: {g['generations']} in {g['seconds']:.1f}s ({g['queries_per_second']:.2f} queries/s), "
            f"{g['resumed_documents']} documents resumed from the journal"
        )
    steps = {
        k: s[k]
        for k in (
            "raw_queries",
            "invalid_after_cleanup",
            "copied_from_document",
            "ungrounded",
            "exact_duplicates",
            "normalised_duplicates",
            "after_filter",
            "bm25_source_in_top",
        )
        if k in s
    }
    console.print(json.dumps(steps))
    for q in result.queries[:show]:
        console.print(f"  [{q.source_doc_id}] {q.text}", markup=False, highlight=False)
