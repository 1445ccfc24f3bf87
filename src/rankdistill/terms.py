"""What a query term is: one definition for the Term Control Layer (which document tokens it trains on)
and for explanations (which matches a user is shown), so the two never disagree.

A term is a lower-cased word (Unicode letters and digits) of at least two characters that is not a
stopword; two words match when equal or when their Snowball stems are (PyStemmer, a core dependency)."""

from __future__ import annotations

import re
from functools import lru_cache

WORD = re.compile(r"\w+", re.UNICODE)
MIN_CHARS = 2

# Lucene's English stopwords plus frequent function words: they match almost every document and
# explain nothing
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "among",
        "amongst",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "may",
        "me",
        "might",
        "more",
        "most",
        "must",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "shall",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "very",
        "via",
        "vs",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)


@lru_cache(maxsize=4)
def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(language)


@lru_cache(maxsize=65536)
def stem(word: str, language: str = "english") -> str:
    """Snowball stem of a lower-cased word; cached because corpora repeat words a lot."""
    return _stemmer(language).stemWord(word)


def is_term(word: str, stopwords: frozenset[str] = STOPWORDS, min_chars: int = MIN_CHARS) -> bool:
    """Whether a lower-cased word counts as a term."""
    return len(word) >= min_chars and word not in stopwords


def content_terms(text: str, stopwords: frozenset[str] = STOPWORDS, min_chars: int = MIN_CHARS) -> list[str]:
    """The distinct terms of a text, lower-cased, in order of first appearance."""
    seen: dict[str, None] = {}
    for m in WORD.finditer(text.lower()):
        w = m.group(0)
        if is_term(w, stopwords, min_chars):
            seen.setdefault(w, None)
    return list(seen)
