"""LLM-free pseudo-queries, the baseline every generated query set should beat on the same student.

- `sentence` (inverse cloze task, Lee et al. 2019): a random sentence of the document is the query.
  With `remove_sentence=True` the positive is the document without that sentence (kept in the record as
  `positive_text`), so the student cannot win by string matching; otherwise the document stays whole.
- `title`: the document's title is the query (documents without a usable title are skipped).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from rankdistill.data.types import Document
from rankdistill.teachers.querygen.records import SyntheticQuery
from rankdistill.teachers.querygen.text import collapse_ws, split_sentences

PSEUDO_METHODS = ("sentence", "title")

# Section labels of structured abstracts ("CONCLUSIONS Carriers of ...") are not part of any query.
_HEADING = re.compile(
    r"^(?:(?:BACKGROUND|CONTEXT|INTRODUCTION|IMPORTANCE|OBJECTIVES?|AIMS?|PURPOSE|DESIGN|SETTINGS?|PARTICIPANTS|"
    r"PATIENTS|METHODS?|METHODOLOGY|MATERIALS AND METHODS|INTERVENTIONS?|MEASUREMENTS|MAIN OUTCOME MEASURES?|"
    r"RESULTS?|FINDINGS|CONCLUSIONS?|INTERPRETATION|SIGNIFICANCE|LIMITATIONS)\b[:.]?\s+)+"
)


def strip_heading(sentence: str) -> str:
    return _HEADING.sub("", sentence)


def pseudo_queries(
    docs: Sequence[Document],
    method: str = "sentence",
    *,
    remove_sentence: bool = False,
    seed: int = 0,
    min_words: int = 4,
    max_words: int = 48,
) -> list[SyntheticQuery]:
    """One pseudo-query per document where the document allows one (seeded per document, so the choice
    for a document does not depend on which other documents are in the list)."""
    if method not in PSEUDO_METHODS:
        raise ValueError(f"unknown pseudo-query method {method!r}; expected one of {PSEUDO_METHODS}")
    out: list[SyntheticQuery] = []
    for doc in docs:
        if method == "title":
            title = collapse_ws(doc.title)
            if min_words <= len(title.split()) <= max_words:
                out.append(SyntheticQuery(f"title-{doc.id}", title, doc.id, "title"))
            continue
        sentences = split_sentences(doc.text)
        queries = [strip_heading(s) for s in sentences]
        usable = [i for i, q in enumerate(queries) if min_words <= len(q.split()) <= max_words]
        # Removing the only sentence would leave the title alone as the positive: skip such documents.
        if not usable or (remove_sentence and len(sentences) < 2):
            continue
        pick = random.Random(f"{seed}:{doc.id}").choice(usable)
        name = "sentence-removed" if remove_sentence else "sentence"
        positive = None
        if remove_sentence:
            rest = " ".join(s for i, s in enumerate(sentences) if i != pick)
            positive = f"{doc.title} {rest}" if doc.title else rest
        out.append(
            SyntheticQuery(
                f"{name}-{doc.id}",
                queries[pick],
                doc.id,
                name,
                positive_text=positive,
                metadata={"sentence_index": pick, "sentences": len(sentences)},
            )
        )
    return out
