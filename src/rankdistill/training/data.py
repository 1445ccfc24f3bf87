"""Training data: (query, document, label) rows from JSONL, from the label store, or built from
teacher-scored candidates; turned into a `datasets.Dataset` for the trainer."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rankdistill.data.jsonl import iter_jsonl, write_jsonl
from rankdistill.data.types import Run
from rankdistill.errors import DataError
from rankdistill.evaluation.fusion import minmax
from rankdistill.students.hybrid import COLUMN as FIRST_STAGE
from rankdistill.students.hybrid import normalise_first_stage

DOC_KEYS = ("document", "doc", "text", "passage")


def is_finite_label(label: float | list[float]) -> bool:
    """Python's JSON reader takes NaN and Infinity; one such label makes every trained weight NaN."""
    return all(math.isfinite(x) for x in (label if isinstance(label, list) else [label]))


def _label(value: Any, path, lineno) -> float | list[float]:
    if isinstance(value, bool) or value is None:
        raise DataError(
            f"'label' must be a number or a [false, true] logit pair, got {value!r}", path, lineno
        )
    if isinstance(value, (int, float)):
        label: float | list[float] = float(value)
    elif isinstance(value, list) and len(value) == 2 and all(isinstance(x, (int, float)) for x in value):
        label = [float(value[0]), float(value[1])]
    else:
        raise DataError(
            f"'label' must be a number or a [false, true] logit pair, got {value!r}", path, lineno
        )
    if not is_finite_label(label):
        raise DataError(f"'label' must be a finite number, got {value!r}", path, lineno)
    return label


def label_kind(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The kind of the rows' labels (a `rankdistill.training.losses.LABELS` key: "logits" for [false, true]
    pairs, "probability" when every number is in [0, 1], else "score") and, for messages, what they are."""
    labels = [r["label"] for r in rows]
    if any(isinstance(x, (list, tuple)) for x in labels):
        return "logits", "[false, true] logit pairs"
    lo, hi = min(labels), max(labels)
    return ("probability" if lo >= 0 and hi <= 1 else "score"), f"labels in [{lo:.3g}, {hi:.3g}]"


def read_pairs_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows `{"query": str, "document": str, "label": float | [false_logit, true_logit]}`, and
    `first_stage` (the normalised first-stage score a hybrid student trains with) when a row has it.

    The document may also be under "doc", "text" or "passage" (the label store exports "doc"). All rows
    must have the same label shape; a bad row raises a DataError naming the line.
    """
    rows: list[dict[str, Any]] = []
    shape = None
    for lineno, obj in iter_jsonl(path, required=("query", "label")):
        doc = next((obj[k] for k in DOC_KEYS if k in obj), None)
        if not isinstance(doc, str) or not isinstance(obj["query"], str):
            raise DataError(
                f"expected string fields 'query' and one of {list(DOC_KEYS)} for the document", path, lineno
            )
        label = _label(obj["label"], path, lineno)
        this = "pair" if isinstance(label, list) else "scalar"
        if shape is None:
            shape = this
        elif shape != this:
            raise DataError(
                f"label is a {this} but earlier rows have {shape} labels; use one kind", path, lineno
            )
        row = {"query": obj["query"], "document": doc, "label": label}
        if FIRST_STAGE in obj:
            value = obj[FIRST_STAGE]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(
                    f"{FIRST_STAGE!r} must be a finite number (the normalised first-stage score), "
                    f"got {value!r}",
                    path,
                    lineno,
                )
            row[FIRST_STAGE] = float(value)
        rows.append(row)
    if not rows:
        raise DataError("no training rows; expected JSONL rows with 'query', 'document' and 'label'", path)
    return rows


def write_pairs_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    return write_jsonl(
        path,
        ({k: r[k] for k in ("query", "document", "label", FIRST_STAGE) if k in r} for r in rows),
    )


def pairs_from_label_store(store_path: str | Path, **filters: Any) -> list[dict[str, Any]]:
    """Rows exported by `rankdistill.labels.LabelStore.export_jsonl` (query/doc/label rows)."""
    import tempfile

    from rankdistill.labels import LabelStore

    store = LabelStore(store_path)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "labels.jsonl"
            store.export_jsonl(out, **filters)
            return read_pairs_jsonl(out)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def pick_rows(scores: Mapping[str, float], per_query: int, top: int, rng: random.Random) -> list[str]:
    """One query's training documents: the teacher's `top` best (the ones nDCG@10 is about; ties by
    document id, as `Run.ranked`, so the pick never depends on input order), then `per_query - top`
    drawn with `rng` from the rest (the tail the student must push down)."""
    ranked = sorted(scores, key=lambda d: (-scores[d], d))
    best, rest = ranked[:top], ranked[top:]
    return best + rng.sample(rest, min(len(rest), max(per_query - len(best), 0)))


def pairs_from_teacher_run(
    queries: Mapping[str, str],
    teacher: Run,
    documents: Mapping[str, str],
    per_query: int = 16,
    top: int = 4,
    normalize: str = "minmax",
    seed: int = 0,
    first_stage: Run | None = None,
) -> list[dict[str, Any]]:
    """Training pairs from a teacher's scores over each query's candidates.

    Per query: the teacher's `top` best documents (the ones nDCG@10 is about) plus `per_query - top`
    drawn at random from the rest of its candidates (so the student also sees the long tail it must push
    down). Labels are the teacher scores min-max scaled per query to [0, 1] (`normalize="minmax"`),
    computed over all candidates before sampling, or used as they are (`"none"`, already probabilities).
    With `first_stage` (the run the candidates came from), each row also gets `first_stage`: that score
    min-max scaled over the query's candidates (the feature of a hybrid student, `students.hybrid`).
    """

    if normalize not in ("minmax", "none"):
        raise ValueError(f"normalize must be 'minmax' or 'none', got {normalize!r}")
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for qid in teacher.query_ids:
        if qid not in queries:
            continue
        scores = teacher[qid]
        labels = minmax(scores) if normalize == "minmax" else dict(scores)
        feature: dict[str, float] = {}
        if first_stage is not None:
            ids = sorted(scores)
            first = first_stage[qid]
            if any(d not in first for d in ids):
                raise DataError(f"query {qid!r}: the first-stage run lacks some of the teacher's documents")
            values = normalise_first_stage([first[d] for d in ids], len(ids))
            feature = {d: float(v) for d, v in zip(ids, values, strict=True)}
        for d in pick_rows(scores, per_query, top, rng):
            row = {"query": queries[qid], "document": documents[d], "label": float(labels[d]), "qid": qid}
            if feature:
                row[FIRST_STAGE] = feature[d]
            rows.append(row)
    rng.shuffle(rows)
    return rows


def group_rows(rows: Sequence[Mapping[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Pair rows grouped by query text: one row per query, `{"query", "document": [...], "label": [...]}`
    (the layout listwise losses train on). Documents keep their order of appearance; groups are
    shuffled with `seed`. A query with a single document is kept (its group gives no listwise signal)."""
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(r["query"], {"query": r["query"], "document": [], "label": []})
        g["document"].append(r["document"])
        g["label"].append(r["label"])
        if FIRST_STAGE in r:
            g.setdefault(FIRST_STAGE, []).append(r[FIRST_STAGE])
    out = list(groups.values())
    random.Random(seed).shuffle(out)
    return out


def to_dataset(rows: list[Mapping[str, Any]], columns: Sequence[str] = ("query", "document")):
    """A `datasets.Dataset` of the text `columns` in order, then "label": the layout the losses expect
    (the collator hands the losses every non-label column, in order). Other keys of the rows are dropped;
    a loss that needs more inputs (e.g. the decoder's reasoning text) names them in `columns`."""
    from datasets import Dataset

    if not rows:
        raise ValueError("no training rows")
    for key in (*columns, "label"):
        missing = next((i for i, r in enumerate(rows) if key not in r), None)
        if missing is not None:
            why = (
                " (a hybrid student needs the normalised first-stage score of each pair; rows from "
                "`rankdistill run` and `pairs_from_teacher_run(first_stage=...)` have it)"
                if key == FIRST_STAGE
                else ""
            )
            raise ValueError(
                f"training row {missing} has no {key!r} field; expected {[*columns, 'label']}{why}"
            )
    data = {c: [r[c] for r in rows] for c in columns}
    data["label"] = [r["label"] for r in rows]
    return Dataset.from_dict(data)
