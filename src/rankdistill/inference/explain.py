"""Cheap explanations for encoder students: which query terms a document matches, exactly or by stem.

An encoder cross-encoder has no reasoning to show, but the terms it could have attended to are a useful,
always-available account of a score (RRADistill's Term Control Layer trains on the same signal). This runs
in microseconds per document: one regex pass and a stemmer lookup per distinct word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

# Small English stopword list: words that match almost every document and explain nothing.
_STOPWORD_TEXT = """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer, a core dependency (also used by BM25)

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball (Porter 2) stem of a lower-cased word; cached because corpora repeat words a lot."""
    return _stemmer().stemWord(word)


def query_terms(query: str) -> list[str]:
    """Distinct content words of a query, lower-cased, in query order."""
    seen: dict[str, None] = {}
    for m in _WORD.finditer(query.lower()):
        w = m.group(0)
        if w not in STOPWORDS and w not in seen:
            seen[w] = None
    return list(seen)


@dataclass
class TermMatch:
    """One query term found in a document: `match` is "exact" when the word itself occurs, "stem" when only
    a word with the same stem does (e.g. query "mutations", document "mutated")."""

    term: str
    match: str
    count: int
    forms: list[str]
    spans: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "term": self.term,
            "match": self.match,
            "count": self.count,
            "forms": self.forms,
            "spans": [list(s) for s in self.spans],
        }


@dataclass
class TermExplanation:
    """Query terms matched in one document, those missing, and the share of query terms covered."""

    matched: list[TermMatch]
    missing: list[str]

    @property
    def coverage(self) -> float:
        total = len(self.matched) + len(self.missing)
        return len(self.matched) / total if total else 0.0

    def to_dict(self) -> dict:
        return {
            "type": "terms",
            "matched_terms": [m.to_dict() for m in self.matched],
            "missing_terms": self.missing,
            "coverage": round(self.coverage, 4),
        }

    def __str__(self) -> str:
        if not self.matched:
            return "no query term occurs in the document"
        parts = [m.term if m.match == "exact" else f"{m.term}~{'/'.join(m.forms)}" for m in self.matched]
        return f"matches {', '.join(parts)}" + (
            f"; missing {', '.join(self.missing)}" if self.missing else ""
        )


def explain_terms(query: str, document: str, max_spans: int = 20) -> TermExplanation:
    """Which content words of `query` occur in `document`: exact (case-insensitive) matches first,
    otherwise matches through the English Snowball stemmer; character spans of up to `max_spans`
    occurrences per term let a UI highlight them."""
    terms = query_terms(query)
    if not terms:
        return TermExplanation([], [])
    exact: dict[str, list[tuple[int, int]]] = {}
    by_stem: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for m in _WORD.finditer(document):
        w = m.group(0).lower()
        exact.setdefault(w, []).append(m.span())
        by_stem.setdefault(stem(w), {}).setdefault(w, []).append(m.span())
    matched, missing = [], []
    for term in terms:
        if term in exact:
            spans = exact[term]
            matched.append(TermMatch(term, "exact", len(spans), [term], spans[:max_spans]))
            continue
        forms = by_stem.get(stem(term))
        if forms:
            spans = sorted(s for ss in forms.values() for s in ss)
            matched.append(TermMatch(term, "stem", len(spans), sorted(forms), spans[:max_spans]))
        else:
            missing.append(term)
    return TermExplanation(matched, missing)
