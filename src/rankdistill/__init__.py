"""rankdistill: distil large, slow rankers into small, fast, explainable rerankers for your own corpus.

The public API is flat and imported lazily, so `import rankdistill` stays cheap:

    from rankdistill import Reranker, load_dataset, BM25Retriever, evaluate

Distilling from Python: `distill(config)` runs the whole pipeline (as `rankdistill run` does);
`load_teacher`, `label_run` and `train_from_config` are its steps one by one.
"""

from __future__ import annotations

import importlib
from typing import Any

from rankdistill.version import __version__

_EXPORTS = {
    "Corpus": "rankdistill.data",
    "Document": "rankdistill.data",
    "Queries": "rankdistill.data",
    "Qrels": "rankdistill.data",
    "Run": "rankdistill.data",
    "Dataset": "rankdistill.data",
    "load_dataset": "rankdistill.data",
    "read_run": "rankdistill.data",
    "write_run": "rankdistill.data",
    "BM25Retriever": "rankdistill.retrieval",
    "evaluate": "rankdistill.evaluation",
    "Reranker": "rankdistill.inference",
    "load_llm": "rankdistill.llm",
    "LabelStore": "rankdistill.labels",
    "load_teacher": "rankdistill.teachers",
    "label_run": "rankdistill.labels",
    "train_from_config": "rankdistill.training.run",
    "distill": "rankdistill.pipeline",
    "DistillRun": "rankdistill.pipeline",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rankdistill' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
