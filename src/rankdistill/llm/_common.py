"""Helpers every backend shares: model fingerprints, the prompt/continuation token split, stop strings."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

_CHUNK = 8 << 20  # bytes hashed from each end of a weight file


def file_fingerprint(path: str | Path) -> str:
    """Content fingerprint of a (possibly multi-GB) weight file: its size and a hash of its first and
    last 8 MiB. GGUF and safetensors headers hold every tensor's name, shape and offset, so two different
    models never share this; hashing the whole file would cost seconds per load for a 7B model."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as fh:
        h.update(fh.read(_CHUNK))
        if size > 2 * _CHUNK:
            fh.seek(size - _CHUNK)
            h.update(fh.read(_CHUNK))
    return h.hexdigest()[:24]


def folder_fingerprint(folder: str | Path) -> str:
    """Fingerprint of a model folder: config, tokenizer files and weight files (see `file_fingerprint`)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if not f.is_file():
            continue
        if f.suffix in {".safetensors", ".bin", ".gguf", ".pt", ".pth", ".model"}:
            h.update(f"{f.name}:{file_fingerprint(f)}".encode())
        elif f.suffix in {".json", ".txt"}:
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:24]


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
