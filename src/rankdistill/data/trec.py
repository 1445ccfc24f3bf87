"""TREC run and qrels files: `qid Q0 docid rank score tag` and `qid 0 docid grade`."""

from __future__ import annotations

import os
from pathlib import Path

from rankdistill.data.jsonl import open_text
from rankdistill.data.types import Qrels, Run
from rankdistill.errors import DataError


def read_run(path: str | Path, name: str | None = None) -> Run:
    """Read a TREC run (6 whitespace-separated columns). A repeated (query, doc) pair is an error."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    scores: dict[str, dict[str, float]] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise DataError(
                    f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}", path, lineno
                )
            qid, _, did, _, score, _ = parts
            try:
                value = float(score)
            except ValueError:
                raise DataError(f"score {score!r} is not a number", path, lineno) from None
            per_query = scores.setdefault(qid, {})
            if did in per_query:
                raise DataError(f"document {did!r} appears twice for query {qid!r}", path, lineno)
            per_query[did] = value
    return Run(scores, name=name or path.stem)


def write_run(run: Run, path: str | Path, tag: str | None = None, k: int | None = None) -> Path:
    """Write a TREC run atomically, each query's documents best first (ties by doc id)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = (tag or run.name or "rankdistill").replace(" ", "_")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for qid in run.query_ids:
            for rank, (did, score) in enumerate(run.ranked(qid, k), 1):
                fh.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")
    os.replace(tmp, path)
    return path


def read_trec_qrels(path: str | Path, name: str = "") -> Qrels:
    """Read TREC qrels (`qid iter docid grade`)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    judgements: dict[str, dict[str, int]] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise DataError(f"expected 4 columns 'qid iter docid grade', got {len(parts)}", path, lineno)
            try:
                grade = int(float(parts[3]))
            except ValueError:
                raise DataError(f"grade {parts[3]!r} is not a number", path, lineno) from None
            judgements.setdefault(parts[0], {})[parts[2]] = grade
    return Qrels(judgements, name=name or path.stem)


def read_qrels(path: str | Path, name: str = "") -> Qrels:
    """Qrels in either BEIR TSV (3 columns, header) or TREC (4 columns) form, told apart by the first line."""
    from rankdistill.data.beir import read_beir_qrels

    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    with open_text(path) as fh:
        first = next((ln for ln in fh if ln.strip()), "")
    if first.startswith("query-id") or len(first.split("\t")) == 3:
        return read_beir_qrels(path, name=name)
    return read_trec_qrels(path, name=name)
