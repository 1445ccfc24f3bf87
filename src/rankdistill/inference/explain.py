"""Cheap explanations for encoder students: which query terms a document matches, exactly or by stem.

An encoder cross-encoder has no reasoning to show, but the terms it could have attended to are a useful,
always-available account of a score (RRADistill's Term Control Layer trains on the same signal). This runs
in microseconds per document: one regex pass and a stemmer lookup per distinct word.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rankdistill.terms import WORD, content_terms, stem


def query_terms(query: str) -> list[str]:
    """Distinct content words of a query, lower-cased, in query order (`rankdistill.terms`: the same
    terms the Term Control Layer trains on)."""
    return content_terms(query)


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
    for m in WORD.finditer(document):
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
