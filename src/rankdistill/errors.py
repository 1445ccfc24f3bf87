"""Errors that name where the problem is and what was expected."""

from __future__ import annotations

from pathlib import Path


class RankdistillError(Exception):
    """Base class of every error rankdistill raises on purpose."""


class DataError(RankdistillError, ValueError):
    """Bad input data: names the file, the line (1-based) when known, and what was expected."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = message
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class MissingDependencyError(RankdistillError, ImportError):
    """An optional dependency is not installed; says which extra provides it."""

    def __init__(self, package: str, extra: str, feature: str):
        super().__init__(
            f"{feature} needs the package '{package}', which is not installed. "
            f"Install it with: pip install 'rankdistill[{extra}]'"
        )


def require(module: str, extra: str, feature: str):
    """Import an optional module or raise a MissingDependencyError that says how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, feature) from exc
