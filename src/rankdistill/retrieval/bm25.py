"""First-stage BM25 (bm25s, Lucene variant) over title + text, English stopwords, Snowball stemming.

The index is cached on disk under a key made of the corpus content and the settings, so a second
run (or another process) reuses it; the data folder itself is never written to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from rankdistill.data.types import Corpus, Queries, Run
from rankdistill.errors import DataError
from rankdistill.utils import progress, stable_hash

log = logging.getLogger(__name__)


def corpus_fingerprint(corpus: Corpus) -> str:
    """Content hash of a corpus (ids, titles, texts, order): the cache key of anything derived from it."""
    h = hashlib.sha256()
    for doc in corpus.values():
        h.update(doc.id.encode())
        h.update(b"\x1f")
        h.update(doc.title.encode())
        h.update(b"\x1f")
        h.update(doc.text.encode())
        h.update(b"\x1e")
    return h.hexdigest()[:32]


class BM25Retriever:
    """BM25 over a corpus. `retrieve(queries, k)` returns a Run; `score(query, doc_ids)` scores given docs."""

    def __init__(
        self,
        corpus: Corpus,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        language: str = "english",
        cache_dir: str | Path | None = None,
        show_progress: bool = True,
    ):
        import bm25s
        import Stemmer

        self.corpus = corpus
        self.settings = {
            "k1": k1,
            "b": b,
            "method": method,
            "language": language,
            "fields": "title+text",
            "v": 1,
        }
        self.doc_ids = list(corpus.keys())
        where = corpus.path or f"corpus {corpus.name!r}"
        if not self.doc_ids:
            raise DataError("no documents to index; expected a corpus with at least one document", where)
        self._stemmer = Stemmer.Stemmer(language)
        self._show = show_progress
        root = Path(cache_dir) if cache_dir else _default_cache()
        self.index_dir = root / "bm25" / f"{corpus_fingerprint(corpus)}-{stable_hash(self.settings, 12)}"
        if (self.index_dir / "done").exists():
            self.model = bm25s.BM25.load(str(self.index_dir))
            log.info("loaded BM25 index from %s", self.index_dir)
        else:
            self.model = bm25s.BM25(k1=k1, b=b, method=method)
            tokens = bm25s.tokenize(
                [d.full_text for d in corpus.values()],
                stopwords=_stopwords(language),
                stemmer=self._stemmer,
                show_progress=show_progress,
            )
            if not tokens.vocab:
                raise DataError(
                    f"none of the {len(self.doc_ids)} documents has a word BM25 can index "
                    "(all empty or stopwords); expected documents with text",
                    where,
                )
            self.model.index(tokens, show_progress=show_progress)
            self._save()

    @classmethod
    def from_corpus(cls, corpus: Corpus, cache_dir: str | Path | None = None, **settings) -> BM25Retriever:
        return cls(corpus, cache_dir=cache_dir, **settings)

    def _save(self) -> None:
        # write to a temporary folder and rename, so a killed run never leaves a half index behind
        tmp = self.index_dir.with_name(self.index_dir.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save(str(tmp))
        (tmp / "settings.json").write_text(json.dumps(self.settings))
        (tmp / "done").write_text("")
        self.index_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, self.index_dir)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(
            texts,
            stopwords=_stopwords(self.settings["language"]),
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )

    def retrieve(self, queries: Queries, k: int = 100, desc: str = "BM25") -> Run:
        """Top-k documents per query (fewer when the corpus or the matches are fewer)."""
        k = min(k, len(self.doc_ids))
        qids = list(queries.keys())
        scores: dict[str, dict[str, float]] = {}
        token_lists = self._tokenize([queries[q] for q in qids])
        for qid, tokens in progress(
            zip(qids, token_lists, strict=True),
            total=len(qids),
            desc=desc,
            unit="q",
            disable=None if self._show else True,
        ):
            doc_scores = self._scores(tokens)
            if doc_scores is None:
                scores[qid] = {}
                continue
            top = (
                np.argpartition(-doc_scores, k - 1)[:k] if k < len(doc_scores) else np.arange(len(doc_scores))
            )
            scores[qid] = {self.doc_ids[i]: float(doc_scores[i]) for i in top if doc_scores[i] > 0}
        return Run(scores, name="bm25")

    def score(self, query: str, doc_ids: list[str]) -> list[float]:
        """BM25 scores of given documents for one query (0 for documents without a match)."""
        doc_scores = self._scores(self._tokenize([query])[0])
        if doc_scores is None:
            return [0.0] * len(doc_ids)
        index = self._index
        return [float(doc_scores[index[d]]) for d in doc_ids]

    @property
    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_index_cache"):
            self._index_cache = {d: i for i, d in enumerate(self.doc_ids)}
        return self._index_cache

    def _scores(self, tokens: list[str]) -> np.ndarray | None:
        known = [t for t in tokens if t in self.model.vocab_dict]
        if not known:
            return None
        return self.model.get_scores(known)


def _stopwords(language: str) -> str | None:
    return "en" if language == "english" else None


def _default_cache() -> Path:
    from rankdistill.data.datasets import cache_dir

    return cache_dir()
