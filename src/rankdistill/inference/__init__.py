"""Inference: the `Reranker` (torch or ONNX Runtime backend), explanations, reranking a first-stage run."""

from rankdistill.inference.explain import TermExplanation, explain_terms
from rankdistill.inference.reranker import DecoderReranker, Reranker, RerankResult, StudentReranker

__all__ = [
    "DecoderReranker",
    "RerankResult",
    "Reranker",
    "StudentReranker",
    "TermExplanation",
    "explain_terms",
]
