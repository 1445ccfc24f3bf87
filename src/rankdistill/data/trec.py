"""TREC run and qrels files: `qid Q0 docid rank score tag` and `qid 0 docid grade`."""

from __future__ import annotations

import math
import os
from pathlib import Path

from rankdistill.data.beir import checked_id, grade, read_beir_qrels
from rankdistill.data.jsonl import check_input_file, check_output_file, iter_lines
from rankdistill.data.types import Qrels, Run, id_problem
from rankdistill.errors import DataError


def read_run(path: str | Path, name: str | None = None) -> Run:
    """Read a TREC run (6 whitespace-separated columns). A repeated (query, doc) pair is an error, and so
    is a score that is not a finite number (NaN would rank anywhere)."""
    path = Path(path)
    scores: dict[str, dict[str, float]] = {}
    for lineno, line in iter_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise DataError(
                f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}", path, lineno
            )
        qid, _, did, _, score, _ = parts
        checked_id(qid, path, lineno, "query id")
        checked_id(did, path, lineno, "document id")
        try:
            value = float(score)
        except ValueError:
            raise DataError(f"score {score!r} is not a number", path, lineno) from None
        if not math.isfinite(value):
            raise DataError(f"score {score!r} is not a finite number", path, lineno)
        per_query = scores.setdefault(qid, {})
        if did in per_query:
            raise DataError(f"document {did!r} appears twice for query {qid!r}", path, lineno)
        per_query[did] = value
    return Run(scores, name=name or path.stem)


def write_run(run: Run, path: str | Path, tag: str | None = None, k: int | None = None) -> Path:
    """Write a TREC run atomically, each query's documents best first (ties by doc id). Refuses (and
    writes nothing) what `read_run` would refuse: ids with whitespace, scores that are not finite."""
    path = check_output_file(path)
    tag = "".join("_" if c.isspace() else c for c in (tag or run.name or "rankdistill"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for qid in run.query_ids:
                _check_written_id(qid, "query id", path)
                for rank, (did, score) in enumerate(run.ranked(qid, k), 1):
                    _check_written_id(did, f"document id (query {qid!r})", path)
                    if not math.isfinite(score):
                        raise DataError(
                            f"cannot write score {score} of document {did!r} for query {qid!r}; "
                            "expected a finite number",
                            path,
                        )
                    fh.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _check_written_id(value, field: str, path: Path) -> None:
    problem = id_problem(str(value))
    if problem:
        raise DataError(f"cannot write {field} {value!r}: it {problem}", path)


def read_trec_qrels(path: str | Path, name: str = "") -> Qrels:
    """Read TREC qrels (`qid iter docid grade`)."""
    path = Path(path)
    judgements: dict[str, dict[str, int]] = {}
    for lineno, line in iter_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise DataError(f"expected 4 columns 'qid iter docid grade', got {len(parts)}", path, lineno)
        qid = checked_id(parts[0], path, lineno, "query id")
        did = checked_id(parts[2], path, lineno, "document id")
        judgements.setdefault(qid, {})[did] = grade(parts[3], path, lineno, "grade")
    if not judgements:
        raise DataError("no judgements; expected lines 'qid iter docid grade'", path)
    return Qrels(judgements, name=name or path.stem)


def read_qrels(path: str | Path, name: str = "") -> Qrels:
    """Qrels in either BEIR TSV (3 columns, header) or TREC (4 columns) form, told apart by the first line."""
    path = check_input_file(path)
    first = next((ln for _, ln in iter_lines(path) if ln.strip()), "")
    if first.startswith("query-id") or len(first.split("\t")) == 3:
        return read_beir_qrels(path, name=name)
    return read_trec_qrels(path, name=name)
