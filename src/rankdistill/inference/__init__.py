"""Inference: the `Reranker` (torch or ONNX Runtime backend) and explanations. A first-stage run is
reranked by `rankdistill.teachers.rerank_run(reranker.score_requests, ...)`."""

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
