"""Prompt templates: each lives in one module of this package, named and versioned.

A template's identity (name, version and the text itself) is part of every label key, so editing a
prompt can never silently mix old and new labels. Bump `version` when you change the text.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from rankdistill.utils import stable_hash


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    template: str  # str.format fields, e.g. "Query: {query} Document: {document} Relevant:"

    @property
    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.template) if f}

    def render(self, **values: str) -> str:
        missing = self.fields - values.keys()
        if missing:
            raise KeyError(f"prompt {self.name}@{self.version} needs fields {sorted(missing)}")
        return self.template.format(**values)

    def identity(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "hash": stable_hash(self.template, 16)}


def truncate_words(text: str, max_words: int | None) -> str:
    """At most `max_words` whitespace-separated words (all when None), whitespace flattened to single
    spaces so a document stays one line of the prompt. Words, not tokens, so the prompt (and the label
    it makes) does not depend on the backend's tokenizer."""
    words = text.split()
    return " ".join(words if max_words is None else words[:max_words])


_REGISTRY: dict[str, PromptTemplate] = {}


def register(prompt: PromptTemplate) -> PromptTemplate:
    """Add a template to the registry; two different texts under one name and version is a bug."""
    old = _REGISTRY.get(f"{prompt.name}@{prompt.version}")
    if old is not None and old.template != prompt.template:
        raise ValueError(
            f"prompt {prompt.name}@{prompt.version} registered twice with different text; bump the version"
        )
    _REGISTRY[f"{prompt.name}@{prompt.version}"] = prompt
    return prompt


def get_prompt(name: str, version: str | None = None) -> PromptTemplate:
    """Look a template up by name (newest version unless one is given)."""
    from rankdistill.teachers.prompts import listing  # noqa: F401  (imports every prompt module)

    if version is not None:
        return _REGISTRY[f"{name}@{version}"]
    versions = [p for p in _REGISTRY.values() if p.name == name]
    if not versions:
        raise KeyError(f"no prompt named {name!r}; known: {sorted({p.name for p in _REGISTRY.values()})}")
    return max(versions, key=lambda p: p.version)
