"""First-stage retrieval."""

from rankdistill.retrieval.bm25 import BM25Retriever, corpus_fingerprint

__all__ = ["BM25Retriever", "corpus_fingerprint"]
