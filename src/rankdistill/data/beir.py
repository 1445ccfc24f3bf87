"""Readers for the BEIR folder layout: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator
from pathlib import Path

from rankdistill.data.jsonl import iter_jsonl, iter_lines
from rankdistill.data.types import LONE_SURROGATE, Corpus, Document, Qrels, Queries, id_problem
from rankdistill.errors import DataError

log = logging.getLogger(__name__)


def _id(value, path, lineno, field) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"empty {field!r}; expected a non-empty id", path, lineno)
    if not isinstance(value, (str, int)):
        raise DataError(f"{field!r} must be a string or integer, got {type(value).__name__}", path, lineno)
    return checked_id(str(value), path, lineno, field)


def checked_id(value: str, path, lineno, field) -> str:
    """`value` if it can be an id, else a DataError naming the file and line."""
    problem = id_problem(value)
    if problem:
        raise DataError(f"{field} {value!r} {problem}", path, lineno)
    return value


def grade(text: str, path, lineno, field: str = "score") -> int:
    """A relevance grade: an integer that fits the evaluators' C int (pytrec_eval)."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{field} {text!r} is not a number", path, lineno) from None
    if not math.isfinite(value) or abs(value) >= 2**31:
        raise DataError(
            f"grade {text!r} is out of range; expected a small integer such as 0, 1, 2", path, lineno
        )
    return int(value)


def _str(value, path, lineno, field) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{field!r} must be a string, got {type(value).__name__}", path, lineno)
    if LONE_SURROGATE.search(value):
        raise DataError(
            f"{field!r} contains a lone surrogate (\\ud800-\\udfff); expected valid Unicode",
            path,
            lineno,
        )
    return value


def corpus_path(folder: str | Path) -> Path:
    folder = Path(folder)
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).exists():
            return folder / name
    raise DataError("no corpus.jsonl or corpus.jsonl.gz; expected a BEIR folder", folder)


def iter_corpus(path: str | Path) -> Iterator[Document]:
    """Stream documents; a duplicate id is an error (it would silently shadow a document), and so is a
    file with no document that has any text (nothing could be retrieved from it)."""
    seen: set[str] = set()
    any_text = False
    for lineno, obj in iter_jsonl(path, required=("_id",)):
        doc_id = _id(obj["_id"], path, lineno, "_id")
        if doc_id in seen:
            raise DataError(f"duplicate document id {doc_id!r}; ids must be unique", path, lineno)
        seen.add(doc_id)
        if "text" not in obj and "title" not in obj:
            raise DataError(
                "missing field 'text'; expected fields ['_id', 'text'] (and optionally 'title')", path, lineno
            )
        doc = Document(
            id=doc_id,
            text=_str(obj.get("text"), path, lineno, "text"),
            title=_str(obj.get("title"), path, lineno, "title"),
            metadata=obj.get("metadata") or None,
        )
        if not any_text:
            any_text = bool(doc.text.strip() or doc.title.strip())
        yield doc
    if not seen:
        raise DataError("no documents; expected one JSON object per line with '_id' and 'text'", path)
    if not any_text:
        raise DataError(f"all {len(seen)} documents are empty; expected some 'text' or 'title'", path)


def read_corpus(path: str | Path, name: str = "") -> Corpus:
    path = Path(path)
    if path.is_dir():
        path = corpus_path(path)
    return Corpus(iter_corpus(path), name=name, path=path)


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
    judgements: dict[str, dict[str, int]] = {}
    rows = csv.reader((line for _, line in iter_lines(path)), delimiter="\t")
    lineno = 0
    try:
        for lineno, row in enumerate(rows, 1):
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
            qid, did, value = (c.strip() for c in row)
            qid = checked_id(qid, path, lineno, "query-id")
            did = checked_id(did, path, lineno, "corpus-id")
            judgements.setdefault(qid, {})[did] = grade(value, path, lineno)
    except csv.Error as exc:
        raise DataError(
            f"unreadable TSV ({exc}); expected query-id, corpus-id, score", path, lineno + 1
        ) from None
    if not judgements:
        raise DataError("no judgements; expected lines 'query-id<TAB>corpus-id<TAB>score'", path)
    return Qrels(judgements, name=name)
