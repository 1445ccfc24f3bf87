"""`rankdistill.json`: what a student folder is (encoder or decoder, its score, its settings).

One reader and one writer for every student type and for inference, so a damaged file gives the same
clear error wherever it is read, and a plain Hugging Face folder (no file) reads as {}."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.registry import Registry

METADATA_FILE = "rankdistill.json"

#: student types by the `student_type` of `rankdistill.json`: each registers the loader of a saved folder,
#: ``loader(path, **options)``, at the bottom of its module, with `create` (a fresh student to train) and
#: `save` where it has them. `cross_encoder=True` says a saved folder is a plain Hugging Face
#: sequence-classification model, which `Reranker` runs with its own backends (torch, ONNX) and ONNX
#: export accepts; any other type is run through what its loader returns: ``score(pairs, *, batch_size,
#: show_progress) -> scores``, and ``explain(query, texts, max_new_tokens=...)`` if it explains.
STUDENT_TYPES = Registry(
    "student type", modules=("rankdistill.students.encoder", "rankdistill.students.decoder")
)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a student folder; {} when the folder has none (a plain HF model folder)."""
    meta = Path(path) / METADATA_FILE
    if not meta.is_file():
        return {}
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RankdistillError(f"{meta}: not UTF-8 text; expected the student's JSON metadata") from None
    except json.JSONDecodeError as exc:
        raise RankdistillError(f"{meta}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise RankdistillError(f"{meta}: expected a JSON object with 'student_type'")
    return data


def write_metadata(path: str | Path, meta: dict[str, Any]) -> Path:
    """Write a student folder's metadata (under a temporary name, then renamed: never half a file)."""
    target = Path(path) / METADATA_FILE
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target
