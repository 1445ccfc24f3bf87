"""Data layer: corpora, queries, qrels and runs; BEIR folders, TREC files, JSONL."""

from rankdistill.data.beir import read_beir_qrels, read_corpus, read_queries
from rankdistill.data.datasets import Dataset, cache_dir, load_dataset, resolve_dataset
from rankdistill.data.jsonl import iter_jsonl, write_jsonl
from rankdistill.data.trec import read_qrels, read_run, read_trec_qrels, write_run
from rankdistill.data.types import Corpus, Document, Qrels, Queries, Run

__all__ = [
    "Corpus",
    "Dataset",
    "Document",
    "Qrels",
    "Queries",
    "Run",
    "cache_dir",
    "iter_jsonl",
    "load_dataset",
    "read_beir_qrels",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_run",
    "read_trec_qrels",
    "resolve_dataset",
    "write_jsonl",
    "write_run",
]
