"""Readers for the BEIR folder layout: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

from rankdistill.data.jsonl import iter_jsonl, open_text
from rankdistill.data.types import Corpus, Document, Qrels, Queries
from rankdistill.errors import DataError

log = logging.getLogger(__name__)


def _id(value, path, lineno, field) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"empty {field!r}; expected a non-empty id", path, lineno)
    if not isinstance(value, (str, int)):
        raise DataError(f"{field!r} must be a string or integer, got {type(value).__name__}", path, lineno)
    return str(value)


def _str(value, path, lineno, field) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{field!r} must be a string, got {type(value).__name__}", path, lineno)
    return value


def corpus_path(folder: str | Path) -> Path:
    folder = Path(folder)
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).exists():
            return folder / name
    raise DataError("no corpus.jsonl or corpus.jsonl.gz; expected a BEIR folder", folder)


def iter_corpus(path: str | Path) -> Iterator[Document]:
    """Stream documents; a duplicate id is an error (it would silently shadow a document)."""
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path, required=("_id",)):
        doc_id = _id(obj["_id"], path, lineno, "_id")
        if doc_id in seen:
            raise DataError(f"duplicate document id {doc_id!r}; ids must be unique", path, lineno)
        seen.add(doc_id)
        if "text" not in obj and "title" not in obj:
            raise DataError(
                "missing field 'text'; expected fields ['_id', 'text'] (and optionally 'title')", path, lineno
            )
        yield Document(
            id=doc_id,
            text=_str(obj.get("text"), path, lineno, "text"),
            title=_str(obj.get("title"), path, lineno, "title"),
            metadata=obj.get("metadata") or None,
        )


def read_corpus(path: str | Path, name: str = "") -> Corpus:
    path = Path(path)
    if path.is_dir():
        path = corpus_path(path)
    return Corpus(iter_corpus(path), name=name)


def read_queries(path: str | Path, name: str = "") -> Queries:
    path = Path(path)
    if path.is_dir():
        path = path / "queries.jsonl"
    queries: dict[str, str] = {}
    for lineno, obj in iter_jsonl(path, required=("_id", "text")):
        qid = _id(obj["_id"], path, lineno, "_id")
        if qid in queries:
            raise DataError(f"duplicate query id {qid!r}; ids must be unique", path, lineno)
        queries[qid] = _str(obj["text"], path, lineno, "text")
    return Queries(queries, name=name)


def qrels_splits(folder: str | Path) -> list[str]:
    qdir = Path(folder) / "qrels"
    return sorted(p.stem for p in qdir.glob("*.tsv")) if qdir.is_dir() else []


def read_beir_qrels(path: str | Path, name: str = "") -> Qrels:
    """Read a BEIR qrels TSV (`query-id corpus-id score`, header optional)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    judgements: dict[str, dict[str, int]] = {}
    with open_text(path) as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row or not "".join(row).strip():
                continue
            if lineno == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(row) != 3:
                raise DataError(
                    f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}",
                    path,
                    lineno,
                )
            qid, did, grade = (c.strip() for c in row)
            try:
                g = int(float(grade))
            except ValueError:
                raise DataError(f"score {grade!r} is not a number", path, lineno) from None
            judgements.setdefault(qid, {})[did] = g
    return Qrels(judgements, name=name)
