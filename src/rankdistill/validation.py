"""Configs from untrusted files: YAML read with bounds (alias bombs, depth, duplicate keys refused) and
validated with pydantic into one error that lists every bad key and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rankdistill.errors import RankdistillError

M = TypeVar("M", bound=BaseModel)


def validation_error_lines(
    exc: ValidationError, top: str = "(top level)", limit: int | None = None
) -> list[str]:
    """A pydantic error as `key.path: message` lines (at most `limit`, then how many more), so the
    reader (a person, or an LLM told why its answer was refused) sees which key is wrong. The one
    formatter of pydantic errors."""
    errors = exc.errors()
    lines = [
        f"{'.'.join(str(p) for p in e.get('loc', ())) or top}: "
        f"{str(e.get('msg', 'invalid')).removeprefix('Value error, ')}"
        for e in errors[:limit]
    ]
    if limit is not None and len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more errors")
    return lines


def key_error(title: str, loc: tuple[str | int, ...], message: str) -> ValidationError:
    """A pydantic error on one key (`loc`, e.g. ("losses", 0, "name")), for a validator that checks
    several keys together to raise, so that the error names the key to change, not "(top level)"."""
    from pydantic_core import InitErrorDetails, PydanticCustomError

    detail = InitErrorDetails(
        type=PydanticCustomError("config", "{message}", {"message": message}), loc=loc, input=None
    )
    return ValidationError.from_exception_data(title, [detail])


def validate_config(
    model: type[M], data: Any, source: str, what: str, error: type[Exception] = RankdistillError
) -> M:
    """`model.model_validate(data)`, raising `error` with lines `section.key: message`."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{source}: invalid {what}:\n  " + "\n  ".join(validation_error_lines(exc))) from None


# A config is a few hundred nodes; these bounds only stop hostile files ("billion laughs": a 1 KB file of
# nested aliases that expands to billions of nodes, or nesting deep enough to exhaust the stack).
MAX_YAML_NODES = 20_000
MAX_YAML_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(path: str | Path, error: type[Exception] = RankdistillError) -> Any:
    """The YAML file at `path` (None when empty), or `error` with one line naming the file."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: config file not found")
    if path.is_dir():
        raise error(f"{path}: is a folder; expected a YAML config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte {exc.start}); expected a YAML text file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_yaml(text, str(path), error)


def parse_yaml(text: str, source: str, error: type[Exception] = RankdistillError) -> Any:
    """`yaml.safe_load(text)` that also refuses duplicate keys (YAML would keep only the last) and
    aliases expanding beyond MAX_YAML_NODES; every failure is `error` in one line naming `source`."""
    import yaml

    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_tree(node, source, error)
        return loader.construct_document(node)
    except error:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        col = f" (column {mark.column + 1})" if mark else ""
        raise error(f"{where}: invalid YAML: {exc.problem or exc.context}{col}") from None
    except yaml.YAMLError as exc:
        raise error(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise error(f"{source}: invalid YAML: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. a date such as 2024-02-31
        raise error(f"{source}: invalid YAML value: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_yaml_tree(root, source: str, error: type[Exception]) -> None:
    """Count the nodes `root` expands to (an alias counts its whole target, every time), bound the
    depth, and find duplicate keys, all before anything is constructed."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def fail(node, message: str):
        raise error(f"{source}:{node.start_mark.line + 1}: {message}")

    def size(node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > MAX_YAML_DEPTH:
            fail(node, f"nested more than {MAX_YAML_DEPTH} levels deep; a config is a few levels")
        if id(node) in active:
            fail(node, "an alias refers to a node that contains it (a recursive alias)")
        active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            children = []
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    ident = (key.tag, key.value)
                    if ident in seen:
                        fail(
                            key,
                            f"duplicate key {key.value!r} (first on line {seen[ident]}); a key may appear once",
                        )
                    seen[ident] = key.start_mark.line + 1
                children += (key, value)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_YAML_NODES:
                fail(node, f"expands to more than {MAX_YAML_NODES} values (nested aliases?); refusing it")
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, 0)
