"""The evaluation results a report is made from: one JSON file, validated, errors naming the key.

`metrics.json` holds, for every system ranked on the SAME candidates (BM25, the teacher, the student):
the mean of each measure, the per-query values, throughput (pairs per second) and size (parameters).

    {
      "dataset": "scifact", "split": "test", "candidates": "BM25 top-100",
      "measures": ["nDCG@10", "RR@10", "R@100"],
      "systems": [
        {"name": "BM25", "role": "baseline", "metrics": {"nDCG@10": 0.66, ...},
         "per_query": {"nDCG@10": {"1": 0.5, ...}}, "pairs_per_second": 250000.0, "parameters": 0},
        ...
      ]
    }
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rankdistill.errors import DataError
from rankdistill.validation import validation_error_lines

Role = Literal["baseline", "teacher", "student", "other"]


class SystemResult(BaseModel):
    """One ranker's results on the shared candidates."""

    model_config = ConfigDict(extra="allow")

    name: str
    role: Role = "other"
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] = Field(default_factory=dict)
    pairs_per_second: float | None = Field(default=None, ge=0)
    # the teacher's throughput with nothing cached from earlier work (None: not measured; equal to
    # pairs_per_second for a teacher that caches nothing)
    pairs_per_second_cold: float | None = Field(default=None, ge=0)
    parameters: int | None = Field(default=None, ge=0)
    parameters_note: str | None = None  # why `parameters` is unknown, e.g. "unknown (API)"
    seconds: float | None = None
    description: str = ""


class EvaluationResults(BaseModel):
    """All systems evaluated on the same queries and candidates."""

    model_config = ConfigDict(extra="allow")

    dataset: str = ""
    split: str = ""
    candidates: str = ""
    queries: int | None = None
    measures: list[str] = Field(default_factory=lambda: ["nDCG@10", "RR@10", "R@100"])
    systems: list[SystemResult] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> EvaluationResults:
        names = [s.name for s in self.systems]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"system names must be unique; repeated: {dupes}")
        return self

    def by_role(self, role: str) -> SystemResult | None:
        """The first system with this role (baseline, teacher, student)."""
        return next((s for s in self.systems if s.role == role), None)

    def primary_measure(self) -> str:
        """The measure plots rank by: the first listed one that every system reports."""
        for m in self.measures:
            if all(m in s.metrics for s in self.systems):
                return m
        common = set.intersection(*(set(s.metrics) for s in self.systems))
        if not common:
            raise DataError("the systems share no measure; nothing to compare")
        return sorted(common)[0]


def parse_results(data: dict[str, Any], path: str | Path | None = None) -> EvaluationResults:
    try:
        return EvaluationResults.model_validate(data)
    except ValidationError as exc:
        raise DataError(
            f"invalid evaluation results: {'; '.join(validation_error_lines(exc))}", path
        ) from None


def load_results(path: str | Path) -> EvaluationResults:
    """Read and validate a metrics JSON file."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found; expected the metrics JSON of the evaluate stage", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg} at line {exc.lineno})", path, exc.lineno) from None
    return parse_results(data, path)
