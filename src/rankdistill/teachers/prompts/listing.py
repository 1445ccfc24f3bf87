"""Imports every prompt module so the registry is complete. Add new prompt modules here."""

import contextlib
import importlib

for _module in ("pointwise", "querygen", "listwise", "reasoning"):
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module(f"rankdistill.teachers.prompts.{_module}")
