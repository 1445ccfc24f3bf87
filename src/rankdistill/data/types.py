"""The four data types every stage exchanges: Corpus, Queries, Qrels, Run."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NOT_IN_ID = re.compile(r"[\s\x00-\x1f\x7f\ud800-\udfff]")
# a lone surrogate (a JSON escape such as "\ud800") is not text: UTF-8 cannot encode it
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def id_problem(value: str) -> str | None:
    """Why `value` cannot be a query or document id, or None. Ids go into whitespace-separated TREC files,
    so an id with a space, tab or control character could be written but never read back."""
    if not value:
        return "is empty; expected a non-empty id"
    bad = _NOT_IN_ID.search(value)
    if bad:
        return (
            f"contains {bad.group()!r}; ids may not contain whitespace, control characters or lone surrogates"
        )
    return None


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] | None = None

    @property
    def full_text(self) -> str:
        """Title and text as one string, the form teachers and students see."""
        return f"{self.title} {self.text}" if self.title and self.text else (self.title or self.text)


class Corpus(Mapping[str, Document]):
    """Documents by id, in file order. Built once from a stream, never copied."""

    def __init__(self, documents: Iterable[Document] = (), name: str = "", path: str | Path | None = None):
        self.name = name
        self.path = Path(path) if path is not None else None  # the file it was read from, for messages
        self._docs: dict[str, Document] = {}
        for doc in documents:
            self._docs[doc.id] = doc

    def __getitem__(self, doc_id: str) -> Document:
        return self._docs[doc_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def __repr__(self) -> str:
        return f"Corpus(name={self.name!r}, documents={len(self)})"

    def texts(self, ids: Iterable[str]) -> list[str]:
        return [self._docs[i].full_text for i in ids]


class Queries(Mapping[str, str]):
    """Query texts by id, in file order."""

    def __init__(self, queries: Mapping[str, str] | Iterable[tuple[str, str]] = (), name: str = ""):
        self.name = name
        self._q: dict[str, str] = dict(queries.items() if isinstance(queries, Mapping) else queries)

    def __getitem__(self, qid: str) -> str:
        return self._q[qid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._q)

    def __len__(self) -> int:
        return len(self._q)

    def __repr__(self) -> str:
        return f"Queries(name={self.name!r}, queries={len(self)})"

    def subset(self, ids: Iterable[str]) -> Queries:
        return Queries({i: self._q[i] for i in ids if i in self._q}, name=self.name)


@dataclass
class Qrels:
    """Relevance judgements: query id -> document id -> grade (int; 0 means judged not relevant)."""

    judgements: dict[str, dict[str, int]] = field(default_factory=dict)
    name: str = ""

    def __len__(self) -> int:
        return sum(len(v) for v in self.judgements.values())

    def __contains__(self, qid: object) -> bool:
        return qid in self.judgements

    def __getitem__(self, qid: str) -> dict[str, int]:
        return self.judgements[qid]

    @property
    def query_ids(self) -> list[str]:
        return list(self.judgements)

    def subset(self, qids: Iterable[str]) -> Qrels:
        """Judgements of the given queries only (evaluate a sample of queries against its own qrels)."""
        return Qrels({q: self.judgements[q] for q in qids if q in self.judgements}, name=self.name)

    def relevant(self, qid: str, min_grade: int = 1) -> set[str]:
        return {d for d, g in self.judgements.get(qid, {}).items() if g >= min_grade}

    def items(self):
        return self.judgements.items()


@dataclass
class Run:
    """A ranking per query: query id -> document id -> score (higher is better)."""

    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    name: str = "run"

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, qid: object) -> bool:
        return qid in self.scores

    def __getitem__(self, qid: str) -> dict[str, float]:
        return self.scores[qid]

    @property
    def query_ids(self) -> list[str]:
        return list(self.scores)

    def items(self):
        return self.scores.items()

    def ranked(self, qid: str, k: int | None = None) -> list[tuple[str, float]]:
        """Documents of one query, best first; ties broken by document id for determinism."""
        ranking = sorted(self.scores.get(qid, {}).items(), key=lambda x: (-x[1], x[0]))
        return ranking if k is None else ranking[:k]

    def top_k(self, k: int) -> Run:
        return Run({q: dict(self.ranked(q, k)) for q in self.scores}, name=self.name)

    def subset(self, qids: Iterable[str]) -> Run:
        return Run({q: self.scores[q] for q in qids if q in self.scores}, name=self.name)
