"""Validate a config mapping with pydantic into one error that lists every bad key and what was expected."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rankdistill.errors import RankdistillError

M = TypeVar("M", bound=BaseModel)


def validate_config(
    model: type[M], data: Any, source: str, what: str, error: type[Exception] = RankdistillError
) -> M:
    """`model.model_validate(data)`, raising `error` with lines `section.key: message`."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise error(f"{source}: invalid {what}:\n  " + "\n  ".join(lines)) from None
