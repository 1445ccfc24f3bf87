"""Synthetic queries for a corpus (InPars): LLM-written with few-shot prompts, or LLM-free pseudo-queries
(inverse cloze, titles), cleaned, deduplicated, filtered, each with its source as positive and BM25
negatives, written as a BEIR dataset folder."""

from rankdistill.teachers.querygen.dataset import add_bm25_negatives, write_synthetic_dataset
from rankdistill.teachers.querygen.filtering import (
    dedupe,
    drop_copied,
    drop_ungrounded,
    filter_teacher_problem,
    keep_top,
    score_sources,
)
from rankdistill.teachers.querygen.generator import (
    GenerationJournal,
    QueryGenerator,
    RawGeneration,
    resolve_prompt,
    sample_documents,
)
from rankdistill.teachers.querygen.pipeline import (
    METHODS,
    QueryGenConfig,
    SyntheticQueries,
    generate_synthetic_queries,
)
from rankdistill.teachers.querygen.pseudo import pseudo_queries
from rankdistill.teachers.querygen.records import SyntheticQuery, read_synthetic
from rankdistill.teachers.querygen.text import clean_query, is_grounded, normalise_query, split_sentences

__all__ = [
    "METHODS",
    "GenerationJournal",
    "QueryGenConfig",
    "QueryGenerator",
    "RawGeneration",
    "SyntheticQueries",
    "SyntheticQuery",
    "add_bm25_negatives",
    "clean_query",
    "dedupe",
    "drop_copied",
    "drop_ungrounded",
    "filter_teacher_problem",
    "generate_synthetic_queries",
    "is_grounded",
    "keep_top",
    "normalise_query",
    "pseudo_queries",
    "read_synthetic",
    "resolve_prompt",
    "sample_documents",
    "score_sources",
    "split_sentences",
    "write_synthetic_dataset",
]
