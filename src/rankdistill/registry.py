"""One registry mechanism for everything looked up by name: teachers, LLM backends, losses, label kinds
and student types.

A thing registers itself at the bottom of the file that defines it (as ir_measures registers its
measures), so a new one is one file plus one line:

    LOSSES.register("listnet", ListNetLoss)

A package's registry lists the modules that register into it (`modules=`) and imports them only on a
lookup that needs them, so `import rankdistill` imports no model library. Something defined outside
rankdistill can be registered lazily as a ``"module:attr"`` string, imported on first `get`. A module
that fails to import (an optional dependency missing) leaves its names out and is named on a miss.

Spec strings name a registered thing and may carry options, ``<body>?key=value&...``: `split_options`
splits them off, `parameters_of` and `typed_options` check and type them against the constructor (the one
option grammar of LLM specs and teacher specs, and the checks of their dict form).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
import threading
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from rankdistill.errors import RankdistillError


class UnknownNameError(RankdistillError, KeyError, ValueError):
    """A name no entry answers to. Also a KeyError and a ValueError, which callers caught before there was
    one registry mechanism (loss lookups raised KeyError, teacher specs ValueError)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


@dataclass
class Entry:
    """One registered thing: its name, the object (or "module:attr" until first use), aliases, and what
    else the registration said about it (capabilities, spec syntax)."""

    name: str
    obj: Any
    aliases: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    order: tuple[int, int] = (0, 0)


class Registry:
    """Names (with aliases) to objects of one kind, e.g. ``Registry("loss")``. Names are exact: a caller
    whose syntax ignores case (teacher specs, backend prefixes) lower-cases before looking up."""

    def __init__(self, kind: str, modules: Sequence[str] = ()):
        self.kind = kind
        self.modules = tuple(modules)
        self._failed: dict[str, str] = {}  # module -> why it could not be imported
        self._entries: dict[str, Entry] = {}  # canonical name -> entry
        self._keys: dict[str, str] = {}  # name or alias -> canonical name
        self._seq = itertools.count()
        self._lock = threading.RLock()

    # -- registering ------------------------------------------------------------------------------------
    def register(self, name: str, obj: Any, *, aliases: Sequence[str] = (), **info: Any) -> Any:
        """Add `obj` under `name` and `aliases`; `info` is kept with it (see `info`). Registering a name
        again replaces its entry (a reloaded module runs its last line again). Returns `obj`."""
        if not name or not isinstance(name, str):
            raise RankdistillError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        with self._lock:
            keys = [name, *aliases]
            for key in keys:
                owner = self._keys.get(key)
                if owner is not None and owner != name:
                    raise RankdistillError(f"{self.kind} name {key!r} is already taken by {owner!r}")
            old = self._entries.pop(name, None)
            if old is not None:
                for key in [old.name, *old.aliases]:
                    self._keys.pop(key, None)
            module = obj.partition(":")[0] if isinstance(obj, str) else getattr(obj, "__module__", None)
            rank = self.modules.index(module) if module in self.modules else len(self.modules)
            order = old.order if old is not None else (rank, next(self._seq))
            self._entries[name] = Entry(name, obj, tuple(aliases), dict(info), order)
            for key in keys:
                self._keys[key] = name
        return obj

    def unregister(self, name: str) -> None:
        """Remove `name` and its aliases (a plugin unloading, a test cleaning up); absent names are fine."""
        with self._lock:
            old = self._entries.pop(name, None)
            if old is not None:
                for key in [old.name, *old.aliases]:
                    self._keys.pop(key, None)

    # -- looking up -------------------------------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        """The entry of `name` or one of its aliases; an UnknownNameError listing the known names if none."""
        key = str(name)
        if key not in self._keys:
            self._discover(key)
        with self._lock:
            canonical = self._keys.get(key)
            entry = self._entries.get(canonical) if canonical is not None else None
        if entry is None:
            raise UnknownNameError(self._unknown(name))
        return entry

    def get(self, name: str) -> Any:
        """The object registered under `name` (a lazy "module:attr" is imported now, once)."""
        entry = self.entry(name)
        if isinstance(entry.obj, str):
            module, _, attr = entry.obj.partition(":")
            entry.obj = getattr(importlib.import_module(module), attr)
        return entry.obj

    def info(self, name: str) -> dict[str, Any]:
        """What the registration of `name` said about it besides the object (e.g. capabilities)."""
        return self.entry(name).info

    def canonical(self, name: str) -> str:
        """The registered name behind `name` (itself or an alias)."""
        return self.entry(name).name

    def names(self) -> list[str]:
        """Every registered name (not aliases): the package's own in the order it lists its modules, then
        the ones registered from elsewhere."""
        self._discover(None)
        with self._lock:
            return [e.name for e in sorted(self._entries.values(), key=lambda e: e.order)]

    def __contains__(self, name: object) -> bool:
        try:
            self.entry(str(name))
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} registered)"

    # -- internals --------------------------------------------------------------------------------------
    def _discover(self, key: str | None) -> None:
        """Import the listed modules, in order, until `key` is known (all when None). An imported module
        costs a dict lookup; one another thread is importing is waited for by the import system."""
        for module in self.modules:
            if key is not None and key in self._keys:
                return
            if module in self._failed:
                continue
            try:
                importlib.import_module(module)
            except ImportError as exc:
                self._failed[module] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def _unknown(self, name: str) -> str:
        known = [self._entries[n] for n in self.names()]
        listed = ", ".join(f"{e.name} ({', '.join(e.aliases)})" if e.aliases else e.name for e in known)
        message = f"unknown {self.kind} {name!r}; expected one of {listed or '(none registered)'}"
        if self._failed:
            why = "; ".join(f"{m} could not be imported: {reason}" for m, reason in self._failed.items())
            message += f" ({why})"
        return message


# -- options in spec strings and config dicts ---------------------------------------------------------------
#
# One grammar for every spec string (LLM backends, teachers): ``<body>?key=value&key2=value2``. The options
# are what follows the *last* ``?``; a body that itself holds a ``?`` (a URL with its own query string) ends
# with a ``?`` when no options follow. Values are percent-decoded (``%26`` for ``&``, ``%2B`` for ``+``,
# ``%23`` for ``#``) and typed by the target's constructor: its annotations, else its defaults.


class SpecError(RankdistillError, ValueError):
    """A spec string or config dict that cannot be what it says: an option its target does not take, a
    value of the wrong type, or a malformed ``key=value``. Names the spec, the key and what was expected.
    Also a ValueError, which config validators (pydantic) and the CLI turn into a message about the field."""


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


def split_options(spec: str) -> tuple[str, dict[str, str]]:
    """``"<body>?k=v&k2=v2"`` -> ``("<body>", {"k": "v", "k2": "v2"})``, values percent-decoded and still
    strings (`typed_options` types them). No ``?``: the spec and no options."""
    from urllib.parse import unquote

    body, sep, query = spec.rpartition("?")
    if not sep:
        return spec, {}
    if "#" in query:
        raise SpecError(
            f"spec {spec!r}: options come last, after any '#<model>' (write <url>#<model>?key=value); "
            "a '#' inside a value is written %23"
        )
    options: dict[str, str] = {}
    for part in query.split("&"):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise SpecError(f"spec {spec!r}: option {part!r} is not key=value")
        if key in options:
            raise SpecError(f"spec {spec!r}: option {key!r} is given twice")
        options[key] = unquote(value.strip())
    return body, options


def parameters_of(target: Any, skip: Sequence[str] = ()) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters of a callable (a class: its constructor), annotations resolved to types where
    they can be (else left as written), without `skip`; and whether it takes any other keyword too
    (``**kwargs``)."""
    fn = target.__init__ if isinstance(target, type) else target
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: anything goes
        return {}, True
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # a name only imported for type checkers: resolve what can be, one by one
        hints = {}
        for name, p in signature.parameters.items():
            if isinstance(p.annotation, str):
                with contextlib.suppress(Exception):
                    hints[name] = eval(p.annotation, getattr(fn, "__globals__", {}))  # noqa: S307
    params: dict[str, inspect.Parameter] = {}
    open_ = False
    for name, p in signature.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            open_ = True
        elif p.kind is not p.VAR_POSITIONAL and p.kind is not p.POSITIONAL_ONLY and name not in skip:
            params[name] = p.replace(annotation=hints.get(name, p.annotation))
    return params, open_


def typed_options(
    options: Mapping[str, Any],
    parameters: Mapping[str, inspect.Parameter],
    *,
    where: str,
    what: str,
    open_: bool = False,
) -> dict[str, Any]:
    """`options` checked against `parameters` (see `parameters_of`) and typed by them: a string becomes
    the int, float, bool (true/false/1/0/yes/no), None (none/null, where None is allowed) or Literal value
    its parameter's annotation (else its default) asks for; other values are checked the same way. An
    unknown key (unless `open_`) or a wrong value raises a SpecError naming `where` (the spec or config),
    the key, and the accepted keys or the expected type. `what` names the target ("the openai backend")."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        param = parameters.get(key)
        if param is None:
            if open_:
                out[key] = value
                continue
            accepted = ", ".join(sorted(parameters)) or "(none)"
            raise SpecError(f"{where}: unknown option {key!r} for {what}; accepted: {accepted}")
        annotation = param.annotation
        if annotation is inspect.Parameter.empty or isinstance(annotation, str):
            default = param.default
            annotation = type(default) if isinstance(default, (bool, int, float, str)) else Any
        try:
            out[key] = _coerce(value, annotation)
        except _Mismatch as exc:
            raise SpecError(f"{where}: option {key!r} expects {exc.expected}, got {value!r}") from None
    return out


class _Mismatch(Exception):
    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in typing.get_args(annotation)))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "none"}
    if annotation in names:
        return names[annotation]
    return getattr(origin or annotation, "__name__", str(annotation))


def _stringlike(annotation: Any) -> bool:
    return annotation is str or (isinstance(annotation, type) and issubclass(annotation, PurePath))


def _coerce(value: Any, annotation: Any) -> Any:
    """`value` as `annotation` wants it, or a _Mismatch saying what was expected. Strings (from a spec) are
    converted; other values (from YAML) are checked; what cannot be checked passes."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(annotation)
    text = value.strip() if isinstance(value, str) else None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if type(None) in args and (value is None or (text is not None and text.lower() in _NONE)):
            return None
        # strings (and paths) last, so "false" for `str | Path | bool` is the bool, "8" for `int | str` the int
        for arg in sorted((a for a in args if a is not type(None)), key=_stringlike):
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch(_describe(annotation))
    if origin is typing.Literal:
        for allowed in typing.get_args(annotation):
            if value == allowed or (text is not None and text == str(allowed)):
                return allowed
        raise _Mismatch(_describe(annotation))
    if annotation is type(None):
        if value is None or (text is not None and text.lower() in _NONE):
            return None
        raise _Mismatch("none")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise _Mismatch(_describe(bool))
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text is not None:
            try:
                return int(text)
            except ValueError:
                pass
        raise _Mismatch(_describe(int))
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if text is not None:
            try:
                return float(text)
            except ValueError:
                pass
        raise _Mismatch(_describe(float))
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch(_describe(str))
    if origin in (list, tuple, Sequence) and text is not None:
        items = [x.strip() for x in text.split(",") if x.strip()]
        item_types = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        typed = [_coerce(x, item_types[0]) if len(item_types) == 1 else x for x in items]
        return tuple(typed) if origin is tuple else typed
    cls = origin or annotation
    if isinstance(cls, type):
        if isinstance(value, cls):
            return value
        if text is not None and issubclass(cls, PurePath):
            return value
        raise _Mismatch(_describe(annotation) + (" (use the dict form)" if text is not None else ""))
    return value
