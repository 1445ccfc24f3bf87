"""BM25 negatives for synthetic queries and the folder they are written to.

The folder is a BEIR dataset the rest of the pipeline can open with `load_dataset(folder)`:

    synthetic.jsonl         every field of every query (source, method, log-probabilities, candidates)
    queries.jsonl           {"_id", "text", "metadata": {"source_doc_id", "method"}}
    qrels/synthetic.tsv     query-id, source doc id, 1 (the source is the only judged document)
    runs/bm25.trec          BM25 top-(k+1) per query: the candidates to label (source included)
    corpus.jsonl[.gz]       a symbolic link to the source corpus (never a copy)
    stats.json              counts of every cleaning and filtering step, generation speed
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankdistill.data.jsonl import write_jsonl
from rankdistill.data.trec import write_run
from rankdistill.data.types import Queries, Run
from rankdistill.teachers.querygen.records import SyntheticQuery

log = logging.getLogger(__name__)

SPLIT = "synthetic"


def add_bm25_negatives(queries: Sequence[SyntheticQuery], retriever, k: int = 20) -> Run:
    """Set each query's `candidates` to BM25's top-k without the source document and `source_rank` to
    where BM25 put the source (None when outside the top k+1). Returns the BM25 run (top k+1)."""
    if k < 0:
        raise ValueError(f"number of negatives must be >= 0, got {k}")
    if not queries:
        return Run({}, name="bm25")
    qs = Queries({q.query_id: q.text for q in queries})
    if len(qs) != len(queries):
        raise ValueError("query ids must be unique")
    run = retriever.retrieve(qs, k=k + 1, desc="BM25 negatives")
    for q in queries:
        ranked = [d for d, _ in run.ranked(q.query_id)]
        q.source_rank = ranked.index(q.source_doc_id) + 1 if q.source_doc_id in ranked else None
        q.candidates = [d for d in ranked if d != q.source_doc_id][:k]
    return run


def write_synthetic_dataset(
    out_dir: str | Path,
    queries: Sequence[SyntheticQuery],
    *,
    corpus_file: str | Path | None = None,
    run: Run | None = None,
    stats: dict[str, Any] | None = None,
) -> Path:
    """Write the folder described in this module's docstring; each file atomically."""
    out = Path(out_dir)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "synthetic.jsonl", (q.to_dict() for q in queries))
    write_jsonl(
        out / "queries.jsonl",
        (
            {
                "_id": q.query_id,
                "text": q.text,
                "metadata": {"source_doc_id": q.source_doc_id, "method": q.method},
            }
            for q in queries
        ),
    )
    tmp = out / "qrels" / f"{SPLIT}.tsv.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q in queries:
            fh.write(f"{q.query_id}\t{q.source_doc_id}\t1\n")
    os.replace(tmp, out / "qrels" / f"{SPLIT}.tsv")
    if run is not None:
        write_run(run, out / "runs" / "bm25.trec", tag="bm25")
    if corpus_file is not None:
        link_corpus(out, corpus_file)
    if stats is not None:
        tmp = out / "stats.json.tmp"
        tmp.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, out / "stats.json")
    return out


def link_corpus(out: Path, corpus_file: str | Path) -> None:
    """Point out/corpus.jsonl[.gz] at the source corpus so the folder opens as a dataset without a copy."""
    src = Path(corpus_file).resolve()
    name = "corpus.jsonl.gz" if src.suffix == ".gz" else "corpus.jsonl"
    link = out / name
    if link.is_symlink() or link.exists():
        if link.resolve() == src:
            return
        link.unlink()
    try:
        link.symlink_to(src)
    except OSError as exc:  # e.g. a file system without symbolic links: the folder still holds the queries
        log.warning("could not link %s to %s (%s); open the corpus from its own folder", link, src, exc)
