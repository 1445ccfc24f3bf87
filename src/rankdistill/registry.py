"""One registry mechanism for everything looked up by name: teachers, LLM backends, losses, label kinds
and student types.

A thing registers itself at the bottom of the file that defines it (as ir_measures registers its
measures), so a new one is one file plus one line:

    LOSSES.register("listnet", ListNetLoss)

A package's registry lists the modules that register into it (`modules=`) and imports them only on a
lookup that needs them, so `import rankdistill` imports no model library. Something defined outside
rankdistill can be registered lazily as a ``"module:attr"`` string, imported on first `get`. A module
that fails to import (an optional dependency missing) leaves its names out and is named on a miss.
"""

from __future__ import annotations

import importlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
