"""From a corpus to a synthetic-query dataset: sample, generate (or cut) queries, clean, deduplicate,
filter, add BM25 negatives, write. Only corpus documents are read: never any of the dataset's queries."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.types import Corpus
from rankdistill.errors import RankdistillError
from rankdistill.llm.base import LLM
from rankdistill.teachers.base import PairScorer, PointwiseTeacher
from rankdistill.teachers.querygen.dataset import add_bm25_negatives, write_synthetic_dataset
from rankdistill.teachers.querygen.filtering import (
    FILTERS,
    dedupe,
    drop_copied,
    drop_ungrounded,
    filter_teacher_problem,
    keep_top,
    score_sources,
)
from rankdistill.teachers.querygen.generator import QueryGenerator, sample_documents
from rankdistill.teachers.querygen.pseudo import PSEUDO_METHODS, pseudo_queries
from rankdistill.teachers.querygen.records import SyntheticQuery
from rankdistill.teachers.querygen.text import clean_query

log = logging.getLogger(__name__)

LLM_METHODS = ("vanilla", "gbq")
METHODS = LLM_METHODS + PSEUDO_METHODS
JOURNAL = "generations.jsonl"


@dataclass
class QueryGenConfig:
    """Settings of one synthetic-query run; see `rankdistill generate-queries --help` for each."""

    method: str = "vanilla"  # vanilla | gbq (LLM, InPars) | sentence | title (no LLM)
    n_docs: int | None = 1000  # documents to sample (None: all)
    n_per_doc: int = 1
    seed: int = 0
    min_doc_words: int = 10
    # generation
    max_tokens: int = 48
    temperature: float | None = None
    top_p: float = 0.95
    max_doc_words: int = 200
    batch_size: int = 8
    # pseudo-queries
    remove_sentence: bool = False
    # cleaning
    min_words: int = 3
    max_words: int = 64
    drop_copied: bool = True
    drop_ungrounded: bool = True  # no content word of the query in its source document (or none at all)
    # filtering: none | logprob (InPars v1) | teacher (InPars v2), keeping a share or a count
    filter: str = "none"
    keep_share: float | None = None
    keep_top_k: int | None = None
    # negatives
    negatives: int = 20

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if self.filter not in FILTERS:
            raise ValueError(f"unknown filter {self.filter!r}; expected one of {FILTERS}")
        if self.filter == "logprob" and self.method not in LLM_METHODS:
            raise ValueError(
                f"filter 'logprob' needs an LLM method ({LLM_METHODS}); {self.method!r} has no log-probabilities"
            )
        if self.filter != "none" and self.keep_share is None and self.keep_top_k is None:
            raise ValueError(f"filter {self.filter!r} needs keep_share or keep_top_k")
        if self.n_docs is not None and self.n_docs < 1:
            raise ValueError(f"n_docs must be >= 1, got {self.n_docs}")
        if self.method in PSEUDO_METHODS and self.n_per_doc != 1:
            raise ValueError(f"method {self.method!r} makes one query per document; n_per_doc must be 1")


@dataclass
class SyntheticQueries:
    queries: list[SyntheticQuery]
    stats: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def generate_synthetic_queries(
    corpus: Corpus,
    config: QueryGenConfig,
    *,
    llm: LLM | None = None,
    out_dir: str | Path | None = None,
    retriever=None,
    teacher: PointwiseTeacher | None = None,
    scorer: PairScorer | None = None,
    corpus_file: str | Path | None = None,
    show_progress: bool = True,
) -> SyntheticQueries:
    """Run the whole recipe. With `out_dir`, generation resumes from its journal and the dataset folder is
    written there. `retriever` (a BM25Retriever over `corpus`) gives negatives; `teacher` scores
    (query, source) pairs for the 'teacher' filter, through `scorer` (e.g. a label store) when given."""
    config.check()
    if config.method in LLM_METHODS and llm is None:
        raise RankdistillError(f"method {config.method!r} writes queries with an LLM; pass one (--llm)")
    if config.filter == "teacher":
        if teacher is None:
            raise RankdistillError(
                "filter 'teacher' needs a teacher to score (query, source document) pairs (--teacher)"
            )
        problem = filter_teacher_problem(teacher)  # before generating: that is the slow part
        if problem is not None:
            raise RankdistillError(
                f"filter 'teacher': teacher {teacher.name} cannot score the pairs: {problem}"
            )
    t0 = time.perf_counter()
    docs = sample_documents(corpus, config.n_docs, seed=config.seed, min_words=config.min_doc_words)
    stats: dict[str, Any] = {
        "config": asdict(config),
        "corpus": corpus.name,
        "corpus_documents": len(corpus),
        "sampled_documents": len(docs),
    }
    out = Path(out_dir) if out_dir is not None else None

    if config.method in LLM_METHODS:
        gen = QueryGenerator(
            llm,
            prompt=config.method,
            n_per_doc=config.n_per_doc,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed,
            max_doc_words=config.max_doc_words,
            batch_size=config.batch_size,
            require_logprobs=config.filter == "logprob",
        )
        raw, gstats = gen.run(docs, out / JOURNAL if out is not None else None, show_progress=show_progress)
        stats["generator"] = gen.identity()
        stats["generation"] = {
            "generations": gstats.generations,
            "seconds": round(gstats.seconds, 3),
            "queries_per_second": round(gstats.generations_per_second, 4),
            "resumed_documents": gstats.resumed_documents,
            "generated_documents": gstats.generated_documents,
        }
        queries: list[SyntheticQuery] = []
        invalid = 0
        for doc in docs:
            for i, g in enumerate(raw[doc.id]):
                text = clean_query(g.text, min_words=config.min_words, max_words=config.max_words)
                if text is None:
                    invalid += 1
                    continue
                queries.append(
                    SyntheticQuery(
                        f"{gen.method}-{doc.id}-{i}",
                        text,
                        doc.id,
                        gen.method,
                        logprob=g.logprob,
                        mean_logprob=g.logprob / max(g.n_tokens, 1),
                        n_tokens=g.n_tokens,
                        sample=i,
                        metadata={"raw": g.text} if g.text.strip() != text else {},
                    )
                )
        stats["raw_queries"] = sum(len(v) for v in raw.values())
        stats["invalid_after_cleanup"] = invalid
    else:
        queries = pseudo_queries(
            docs,
            config.method,
            remove_sentence=config.remove_sentence,
            seed=config.seed,
            min_words=max(config.min_words, 1),
            max_words=config.max_words,
        )
        stats["raw_queries"] = len(queries)
        stats["documents_without_pseudo_query"] = len(docs) - len(queries)

    if config.method in LLM_METHODS:  # a pseudo-query is a grounded copy by construction
        if config.drop_copied:
            queries, n = drop_copied(queries, corpus)
            stats["copied_from_document"] = n
        if config.drop_ungrounded:
            queries, n = drop_ungrounded(queries, corpus)
            stats["ungrounded"] = n
    queries, dup = dedupe(queries)
    stats.update(dup)
    stats["after_dedup"] = len(queries)

    if config.filter == "logprob":
        queries = keep_top(queries, "mean_logprob", share=config.keep_share, top_k=config.keep_top_k)
    elif config.filter == "teacher":
        score_sources(queries, corpus, teacher, scorer=scorer, show_progress=show_progress)
        stats["teacher"] = teacher.identity()
        queries = keep_top(queries, "score", share=config.keep_share, top_k=config.keep_top_k)
    stats["after_filter"] = len(queries)

    run = None
    if retriever is not None and queries:
        run = add_bm25_negatives(queries, retriever, k=config.negatives)
        in_list = sum(q.source_rank is not None for q in queries)
        stats["bm25_source_in_top"] = {
            "k": config.negatives + 1,
            "share": round(in_list / len(queries), 4),
            "at_rank_1": round(sum(q.source_rank == 1 for q in queries) / len(queries), 4),
        }
    stats["queries"] = len(queries)
    stats["seconds_total"] = round(time.perf_counter() - t0, 3)
    if not queries:
        log.warning("no synthetic query survived cleaning and filtering (%s)", stats)
    if out is not None:
        write_synthetic_dataset(out, queries, corpus_file=corpus_file, run=run, stats=stats)
    return SyntheticQueries(queries, stats, out)
