"""A synthetic query and how it travels through JSONL."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.jsonl import iter_jsonl


@dataclass
class SyntheticQuery:
    """A query written for (or cut from) one corpus document, which is its positive.

    `logprob` is the sum of the generated tokens' log-probabilities and `mean_logprob` its mean per
    token (InPars v1 filters on the mean); both are None for LLM-free pseudo-queries. `score` is a
    teacher's score of (query, source document) when InPars v2 filtering ran. `candidates` are BM25
    negatives: the top documents for the query, the source removed. `positive_text` is set only when the
    positive differs from the corpus text (inverse cloze with the sentence removed).
    """

    query_id: str
    text: str
    source_doc_id: str
    method: str
    logprob: float | None = None
    mean_logprob: float | None = None
    n_tokens: int | None = None
    score: float | None = None
    candidates: list[str] = field(default_factory=list)
    source_rank: int | None = None  # 1-based rank of the source document in BM25's list (None: not in it)
    sample: int = 0  # which of the n generations for its document
    positive_text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        if row["positive_text"] is None:
            del row["positive_text"]
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> SyntheticQuery:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in row.items() if k in known})


def read_synthetic(path: str | Path) -> list[SyntheticQuery]:
    """Read a synthetic.jsonl written by `write_synthetic_dataset`."""
    rows = iter_jsonl(path, required=("query_id", "text", "source_doc_id", "method"))
    return [SyntheticQuery.from_dict(obj) for _, obj in rows]
