"""Term Control Layer (RRADistill, Choi et al. 2024): a training-only head that turns the hidden states of
document tokens matching query terms into an auxiliary relevance score.

Why it exists: a cross-encoder's [CLS] head can learn to rank without ever making the individual
document tokens carry "this token matches the query" information. The TCL gives those tokens a direct
gradient: their hidden states alone must predict the teacher's relevance. The encoder learns
term-matching signals that the [CLS] head can then read through attention. At inference the layer is
not there: it is owned by the loss (`rankdistill.training.losses.TermControlLoss`), never by the model,
so a saved student is a plain cross-encoder and costs nothing extra.

Design choices:
- Token selection is lexical and deterministic, not learned: document tokens whose word equals a query
  term (case-folded) or shares its Snowball stem (PyStemmer), so "proteins" matches "protein" and
  "inhibiting" matches "inhibition" only when the stemmer agrees. Stopwords and 1-character terms are
  ignored, otherwise "the"/"of" would select half of every document.
- Matching is on words of the original strings, mapped to subword tokens through the fast tokenizer's
  offset mapping: every subword of a matching word is selected. Only tokens of the document segment
  (sequence id 1) are candidates, never the query's own tokens, which would match trivially.
- Pooling is masked mean + masked max over the selected tokens: the mean says how strongly the matches
  speak for relevance overall, the max lets one decisive match count. A 2-layer MLP maps that to a score.
- A pair with no matching token has no term signal; its TCL loss is masked out rather than forced to a
  constant, so the layer never learns "no overlap means irrelevant" (the [CLS] head must handle those).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from rankdistill.terms import STOPWORDS, WORD, content_terms, is_term, stem

ENGLISH_STOPWORDS = STOPWORDS  # the name this package exported before the list moved to rankdistill.terms


class TermMatcher:
    """Finds the document tokens that match query terms, exactly or after stemming."""

    def __init__(self, language: str = "english", stopwords: Iterable[str] | None = None, min_chars: int = 2):
        self.stopwords = frozenset(STOPWORDS if stopwords is None else stopwords)
        self.min_chars = min_chars
        self.language = language

    def query_terms(self, query: str) -> tuple[set[str], set[str]]:
        """(exact lower-cased terms, their stems) of a query, without stopwords and short terms."""
        words = set(content_terms(query, self.stopwords, self.min_chars))
        return words, {stem(w, self.language) for w in words}

    def match_spans(self, query: str, document: str) -> list[tuple[int, int, str]]:
        """Character spans (start, end, "exact" | "stem") of the document words that match the query."""
        exact, stems = self.query_terms(query)
        spans: list[tuple[int, int, str]] = []
        if not exact:
            return spans
        for m in WORD.finditer(document):
            w = m.group().lower()
            if not is_term(w, self.stopwords, self.min_chars):
                continue
            if w in exact:
                spans.append((m.start(), m.end(), "exact"))
            elif stem(w, self.language) in stems:
                spans.append((m.start(), m.end(), "stem"))
        return spans

    def select(self, encoding, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        """Boolean mask (batch, seq_len) of the document tokens to pool.

        `encoding` is a fast tokenizer's BatchEncoding of (query, document) pairs made with
        `return_offsets_mapping=True`; offsets of the document segment are relative to the document string.
        """
        offsets = encoding["offset_mapping"]
        batch, seq_len = offsets.shape[:2]
        mask = torch.zeros(batch, seq_len, dtype=torch.bool)
        for i in range(batch):
            spans = self.match_spans(queries[i], documents[i])
            if not spans:
                continue
            seq_ids = encoding.sequence_ids(i)
            starts = [s for s, _, _ in spans]
            ends = [e for _, e, _ in spans]
            for t, sid in enumerate(seq_ids):
                if sid != 1:
                    continue
                a, b = int(offsets[i, t, 0]), int(offsets[i, t, 1])
                if a == b:
                    continue
                # spans are sorted and disjoint: a token belongs to a matched word if it lies inside one
                for s, e in zip(starts, ends, strict=True):
                    if s <= a and b <= e:
                        mask[i, t] = True
                        break
                    if s >= b:
                        break
        return mask


class TermControlLayer(nn.Module):
    """Pools the hidden states of the selected tokens (masked mean + max) into one relevance score."""

    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.hidden_size = hidden_size
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * hidden_size, hidden_size),
            nn.GELU(),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (batch, seq, dim), mask (batch, seq) bool -> (scores (batch,), has_match (batch,) bool)."""
        mask = mask.to(hidden.device)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        count = m.sum(dim=1).clamp(min=1.0)
        mean = (hidden * m).sum(dim=1) / count
        neg = torch.finfo(hidden.dtype).min
        mx = hidden.masked_fill(~mask.unsqueeze(-1), neg).max(dim=1).values
        has_match = mask.any(dim=1)
        mx = torch.where(has_match.unsqueeze(-1), mx, torch.zeros_like(mx))
        pooled = torch.cat([mean, mx], dim=-1).to(self.mlp[1].weight.dtype)
        return self.mlp(pooled).squeeze(-1), has_match
