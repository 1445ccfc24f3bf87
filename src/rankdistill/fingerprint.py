"""What identifies a model: one content-based fingerprint for every model the library keys labels by.

Labels and caches are keyed by the model that made them, so the key must change whenever the weights do
and never because a folder was renamed or moved. Names and sizes are not enough: two checkpoints of one
architecture (two runs' `train/student`) have the same folder name, config and file sizes and different
weights. So every file that determines the model's outputs is hashed whole (SHA-256, streamed). Each
file's hash is kept for the life of the process, keyed by its path, size and modification time, so a
model loaded twice is read once.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

# files that determine what a model folder computes; others (README, training logs, checkpoints) do not
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx", ".model"}
CONFIG_SUFFIXES = {".json", ".txt"}
_SKIP_DIRS = {".git", "checkpoints", "runs", "__pycache__"}


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (24 hex digits)."""
    p = Path(path).resolve()
    st = p.stat()
    return _sha256(str(p), st.st_size, st.st_mtime_ns)[:24]


def folder_fingerprint(folder: str | Path) -> str:
    """One hash over the weight, config and tokenizer files of a model folder (sub-folders included, such
    as a decoder student's adapter/), by relative path and content."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if not f.is_file() or _SKIP_DIRS.intersection(rel.parts[:-1]):
            continue
        if f.suffix in WEIGHT_SUFFIXES or f.suffix in CONFIG_SUFFIXES:
            h.update(f"{rel.as_posix()}:{file_fingerprint(f)}\n".encode())
    return h.hexdigest()[:24]


def model_fingerprint(name_or_path: str | Path) -> dict[str, Any]:
    """A model's identity for label keys: a local file or folder by content, a hub name as given (a hub
    model is fixed by its name and revision; it is not on disk to hash)."""
    path = Path(name_or_path)
    if path.is_file():
        return {"sha256": file_fingerprint(path)}
    if path.is_dir():
        return {"sha256": folder_fingerprint(path)}
    return {"name": str(name_or_path)}
