"""The `llm` layer: one interface (`LLM`) for models that write text and give log-probabilities, with
backends for llama.cpp (GGUF), Hugging Face transformers and OpenAI-compatible HTTP servers.

Backends import their heavy dependencies only when built, so `from rankdistill.llm import load_llm` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rankdistill.llm.base import LLM, LLM_BACKENDS, ContinuationScore, Generation
from rankdistill.llm.factory import LLMConfig, load_llm, parse_llm_spec
from rankdistill.llm.openai_compat import LLMServerError, OpenAICompatLLM

if TYPE_CHECKING:
    from rankdistill.llm.hf import HFLLM
    from rankdistill.llm.llamacpp import LlamaCppLLM

_LAZY = {
    "HFLLM": "rankdistill.llm.hf",
    "LlamaCppLLM": "rankdistill.llm.llamacpp",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rankdistill.llm' has no attribute {name!r}")


__all__ = [
    "LLM",
    "LLM_BACKENDS",
    "ContinuationScore",
    "Generation",
    "LLMConfig",
    "load_llm",
    "parse_llm_spec",
    "HFLLM",
    "LlamaCppLLM",
    "OpenAICompatLLM",
    "LLMServerError",
]
