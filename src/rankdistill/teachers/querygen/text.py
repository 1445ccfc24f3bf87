"""Text handling for synthetic queries: cleaning what an LLM wrote, normalising for deduplication,
splitting documents into sentences for inverse-cloze pseudo-queries."""

from __future__ import annotations

import re
import string
import unicodedata

_WS = re.compile(r"\s+")
# Labels a small model tends to repeat at the start of its answer ("Query: ...", "Good Question: ...").
_LABEL = re.compile(r"^(?:(?:relevant|good|bad)\s+)?(?:query|question)\s*\d*\s*[:\-]\s*", re.IGNORECASE)
# Enumerations such as "1." or "- " in front of the text.
_BULLET = re.compile(r"^(?:\d{1,2}[.)]\s+|[-*\u2022]\s+)")
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
# Sentence ends: ., ! or ? followed by space and an upper-case letter, digit or opening bracket/quote.
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"\u201c])")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "\u201c\u201d\u2018\u2019\u2013\u2014"})


def collapse_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def clean_query(raw: str, *, min_words: int = 3, max_words: int = 64, max_chars: int = 400) -> str | None:
    """The query in a raw generation, or None when there is none worth keeping.

    Keeps the first non-empty line, drops a repeated label ("Query:", "Good Question:") or bullet and
    surrounding quotes, collapses whitespace. Too short (< `min_words`), too long, or no letters: None.
    """
    line = next((ln for ln in raw.splitlines() if ln.strip()), "")
    text = collapse_ws(line)
    for _ in range(2):  # a label may hide behind a bullet or the other way round
        text = _BULLET.sub("", _LABEL.sub("", text)).strip()
    # Cut a second field the model wrote on the same line ("... Bad Question: ...").
    text = re.split(r"\s(?:Bad|Good) Question:|\sDocument:|\sExample \d", text, maxsplit=1)[0].strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    text = text.strip(_QUOTES + " ")
    if not any(ch.isalpha() for ch in text):
        return None
    n_words = len(text.split())
    if n_words < min_words or n_words > max_words or len(text) > max_chars:
        return None
    return text


def normalise_query(text: str) -> str:
    """Key under which two queries count as the same: case, accents' forms, punctuation and spacing ignored."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCT)
    return collapse_ws(text)


def is_copied(query: str, document: str) -> bool:
    """True when the query appears verbatim (after normalisation) in the document: InPars drops those."""
    q = normalise_query(query)
    return bool(q) and q in normalise_query(document)


# Function words that say nothing about a document's topic (for the grounding check only).
_STOP_WORDS = (
    "the and for are was were what which who whom whose when where why how does did can could would should "
    "will shall may might must has have had having this that these those there their them they its with from "
    "into onto about above below between over under than then also not but nor all any some such each other "
    "more most much many few very one two being been is be an of to in on at by or as it do if so no yes "
    # words of the question, not of its topic
    "information effect effects purpose significance study role common type types difference question query "
    "example document good bad relevant"
)
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[^\W\d_]{3,}")


def content_stems(text: str, prefix: int = 5) -> set[str]:
    """Crude stems (first `prefix` letters) of the words of 3+ letters that are not function words."""
    return {w[:prefix] for w in _WORD.findall(text.casefold()) if w not in _STOP}


def is_grounded(query: str, document: str) -> bool:
    """True when some content word of the query occurs in the document. A weak model echoing its few-shot
    examples ("How large is the Canadian military?" for an abstract on beans) or writing a generic question
    with no topic word at all ("What is the significance of this study?") fails it."""
    return bool(content_stems(query) & content_stems(document))


def split_sentences(text: str) -> list[str]:
    """Sentences of a document by punctuation; good enough for abstracts and web passages."""
    text = collapse_ws(text)
    return [s.strip() for s in _SENT_END.split(text) if s.strip()] if text else []
