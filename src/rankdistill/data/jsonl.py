"""JSON Lines reading and writing with errors that name the file and line."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rankdistill.errors import DataError


def open_text(path: str | Path, mode: str = "rt"):
    """Open a text file, transparently gunzipping `.gz` files."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def check_input_file(path: str | Path) -> Path:
    """`path` as a Path when it is a file; else a DataError saying what it is instead."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    if path.is_dir():
        raise DataError("is a folder; expected a file", path)
    return path


def check_output_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder; expected a file name to write", path)
    return path


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, gunzipped if `.gz`. Bytes that are not UTF-8, a damaged or
    truncated gzip, or a path that is not a readable file raise DataError naming the file (and line)."""
    path = check_input_file(path)
    lineno = 0
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                yield lineno, line
    except UnicodeDecodeError:
        bad_line, byte = _first_undecodable(path)
        at = f" at byte {byte} of the line" if byte else ""
        raise DataError(f"not valid UTF-8{at}; expected UTF-8 text", path, bad_line) from None
    except gzip.BadGzipFile:
        raise DataError("is not gzip data; expected a gzip file (or a name without .gz)", path) from None
    except (EOFError, zlib.error) as exc:
        what = "ends early" if isinstance(exc, EOFError) else f"is damaged ({exc})"
        raise DataError(
            f"gzip data {what} after line {lineno}; expected a complete gzip file", path
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path) from None


def _first_undecodable(path: Path) -> tuple[int | None, int | None]:
    """Line and byte (1-based) of the first byte that is not UTF-8 (text mode decodes in chunks, so its error
    does not say which line)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return lineno, exc.start + 1
    except (OSError, EOFError, zlib.error):
        pass
    return None, None


def iter_jsonl(path: str | Path, required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; bad lines raise DataError naming the line."""
    required = tuple(required)
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON ({exc.msg} at column {exc.colno}); expected one JSON object per line",
                path,
                lineno,
            ) from None
        except RecursionError:
            raise DataError(
                "JSON nested too deeply; expected one flat JSON object per line", path, lineno
            ) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
        for key in required:
            if key not in obj:
                raise DataError(f"missing field {key!r}; expected fields {list(required)}", path, lineno)
        yield lineno, obj


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically (temp file + rename) so a crash never leaves half a file."""
    path = check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open_text(tmp, "wt") if path.suffix == ".gz" else open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
