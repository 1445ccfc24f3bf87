"""Helpers every backend shares: the prompt/continuation token split, stop strings, log-probabilities.

Model fingerprints are `rankdistill.fingerprint`'s."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def split_continuation(
    tokenize: Callable[[str], list[int]], prompt: str, continuation: str
) -> tuple[list[int], int]:
    """Token ids of prompt + continuation (tokenised as one string, as a server would) and the index of
    the first token that belongs to the continuation.

    When the tokeniser merges the prompt's last characters with the continuation's first ones, the merged
    token counts as continuation (every token that overlaps the continuation is scored), the same rule the
    HTTP backend applies through `text_offset`.
    """
    ctx = tokenize(prompt)
    if not continuation:
        return ctx, len(ctx)
    full = tokenize(prompt + continuation)
    start = common_prefix_len(ctx, full)
    if start == 0:
        raise ValueError(
            "cannot score a continuation with no context: the prompt is empty and the tokenizer adds no BOS token"
        )
    return full, start


def logprob_of(row: np.ndarray, token: int) -> float:
    """log softmax(row)[token], in float64 so 262k-entry vocabularies sum without loss."""
    row = row.astype(np.float64, copy=False)
    m = float(row.max())
    return float(row[token] - m - math.log(float(np.exp(row - m).sum())))


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """Text up to (not including) the earliest stop string, and whether one was found."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
