"""What a pointwise teacher is: something that scores (query, document) pairs, with a stable identity.

What a label *is* (the teacher: prompt, candidate tokens, model, truncation) is kept apart from how it is
*computed* (the LLM backend or the encoder), as ir_measures keeps a measure apart from its provider.
The teacher's `identity()` goes into every label key, so changing any setting never mixes labels.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rankdistill.data.types import Corpus, Queries, Run
from rankdistill.errors import DataError
from rankdistill.pipelining import ItemFailed, lookahead_for, run_ahead
from rankdistill.registry import Registry
from rankdistill.utils import batched, progress

log = logging.getLogger(__name__)

#: pointwise teacher types by name (`load_teacher` and the spec parser look them up): each registers its
#: class, or a function of the config's fields, at the bottom of its module. The registration also says
#: what "name:rest" means in a spec string: `arg` (the config field `rest` fills, e.g. "llm" for an LLM
#: spec, or "model"), `default` (its value when there is no rest; without one the spec must give it),
#: `arg_help` and `example` (for that error), `options` (constructor options the name fixes), or
#: `parse` (a function (name as written, rest) -> config fields). A config field "llm" is loaded with
#: `rankdistill.llm.load_llm` before the teacher is built.
TEACHERS = Registry(
    "teacher",
    modules=(
        "rankdistill.teachers.pointwise",
        "rankdistill.teachers.encoders",
        "rankdistill.teachers.ensemble",
        "rankdistill.teachers.rerank_api",
    ),
)


@dataclass(frozen=True)
class PointwiseLabel:
    """A teacher's label for one (query, document) pair.

    `score` ranks documents (higher is more relevant). `logits` is the raw signal a student distils from
    where the teacher has one: InRanker's `[false_logit, true_logit]`, a cross-encoder's output logits.
    """

    score: float
    logits: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"score": float(self.score)}
        if self.logits is not None:
            out["logits"] = [float(x) for x in self.logits]
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PointwiseLabel:
        logits = value.get("logits")
        return cls(float(value["score"]), [float(x) for x in logits] if logits is not None else None)


@dataclass(frozen=True)
class Candidate:
    """One (query, document) pair to label, with the ids it came from and its first-stage score."""

    query_id: str
    query: str
    doc_id: str
    doc: str
    first_stage: float | None = None


# How a teacher's labels for a list of candidates get computed: directly (`direct_scorer`) or through the
# label store, cached and resumable (`rankdistill.labels.pointwise.store_scorer`).
PairScorer = Callable[["PointwiseTeacher", list[Candidate]], list[PointwiseLabel]]


class PointwiseTeacher(ABC):
    """Scores (query, document text) pairs. Subclasses batch internally where their model can."""

    #: short name used in label records and logs
    name: str = "pointwise"
    #: pairs per call to `score` that suit this teacher (the runner's default batch size)
    batch_size: int = 16
    #: True when a label depends on the other candidates of its query (fusion), so it is not a function
    #: of the pair alone and is cached per candidate list, not per pair
    depends_on_candidates: bool = False
    #: True when scoring waits on a server (an HTTP API, or an LLM backend that is one): labelling then
    #: keeps the next batch's requests in flight while one is committed (`rankdistill.pipelining`). Such a
    #: teacher sends through `rankdistill.http_json.JSONClient`, whose slots bound the requests of all the
    #: batches in flight together to its concurrency.
    io_bound: bool = False

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything that makes this teacher's labels what they are (model, settings, prompt)."""

    @abstractmethod
    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        """One label per (query text, document text) pair, in order."""

    def prompt_identity(self) -> dict[str, Any] | None:
        """The prompt's identity (name, version, text hash) for LLM teachers; None for encoders."""
        return None

    def label_candidates(self, candidates: list[Candidate], scorer: PairScorer) -> list[PointwiseLabel]:
        """Labels for candidates of any number of queries. Teachers whose label depends on the other
        candidates or on first-stage scores (the ensemble) override this; others let `scorer` batch."""
        return scorer(self, candidates)

    def cold(self) -> PointwiseTeacher:
        """The same teacher without what it kept from earlier work (document embeddings), sharing the
        loaded model: what labelling costs the first time, the cost a report states beside the warm one.
        Teachers that cache nothing return themselves."""
        return self

    def close(self) -> None:  # noqa: B027  (optional hook: most teachers hold nothing to free)
        """Free the model (and the LLM backend it holds)."""

    def __enter__(self) -> PointwiseTeacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identity()})"


def direct_scorer(batch_size: int | None = None, show_progress: bool = True) -> PairScorer:
    """A PairScorer that calls the teacher in batches, with no store (nothing cached)."""

    def score(teacher: PointwiseTeacher, candidates: list[Candidate]) -> list[PointwiseLabel]:
        size = batch_size or teacher.batch_size
        labels: list[PointwiseLabel] = []
        bar = progress(
            total=len(candidates),
            desc=f"scoring ({teacher.name})",
            unit="pair",
            disable=None if show_progress else True,
        )
        chunks = [[(c.query, c.doc) for c in chunk] for chunk in batched(candidates, size)]
        # a teacher that waits on a server gets the next batch's requests in flight meanwhile
        results = run_ahead(teacher.score, chunks, lookahead_for(teacher))
        with bar:
            try:
                for i, out, _ in results:
                    if len(out) != len(chunks[i]):
                        raise RuntimeError(
                            f"{teacher.name} returned {len(out)} labels for {len(chunks[i])} pairs"
                        )
                    labels.extend(out)
                    bar.update(len(out))
            except ItemFailed as exc:
                raise exc.cause from None
            finally:
                results.close()
        return labels

    return score


#: what `run_candidates` / `rerank_run` do with a document id of the run that the corpus lacks
MISSING_DOCS = ("error", "skip")


def run_candidates(
    queries: Queries | Mapping[str, str],
    corpus: Corpus,
    run: Run,
    depth: int | None = 20,
    *,
    missing: str = "error",
    stats: dict[str, int] | None = None,
) -> list[Candidate]:
    """The top-`depth` candidates of each query of `run` that is in `queries`, in rank order; queries of
    the run that `queries` lacks are left out (a run often covers more than one split).

    A document id of the run that the corpus lacks is a user data error (a stale run, another corpus):
    `missing="error"` raises naming the query and document; `missing="skip"` drops it with a warning (a
    user's run file reranked by the CLI), and still raises when no document at all is in the corpus.
    `stats`, when given, receives counts: queries, pairs, missing_queries, missing_docs."""
    if missing not in MISSING_DOCS:
        raise ValueError(f"missing must be one of {MISSING_DOCS}, got {missing!r}")
    candidates: list[Candidate] = []
    missing_docs: list[tuple[str, str]] = []
    qids = [q for q in run.query_ids if q in queries]
    for qid in qids:
        for doc_id, first in run.ranked(qid, depth):
            doc = corpus.get(doc_id)
            if doc is None:
                missing_docs.append((qid, doc_id))
                continue
            candidates.append(Candidate(qid, queries[qid], doc_id, doc.full_text, float(first)))
    if missing_docs:
        first_few = ", ".join(f"query {q!r} doc {d!r}" for q, d in missing_docs[:3])
        what = f"{len(missing_docs)} document id(s) of run {run.name!r} are not in the corpus (first: {first_few})"
        if missing == "error" or not candidates:
            raise DataError(f"{what}; was the run made on another corpus?")
        log.warning("%s; skipped", what)
    if stats is not None:
        stats.update(
            queries=len(qids),
            pairs=len(candidates),
            missing_queries=len(run) - len(qids),
            missing_docs=len(missing_docs),
        )
    return candidates


def labels_to_run(
    labels: Sequence[Any], candidates: Sequence[Candidate] | None = None, name: str = "teacher"
) -> Run:
    """A teacher's labels as a run, to evaluate the teacher like any ranker. Pointwise labels carry no
    ids, so they come with the candidates they score; listwise labels (no `candidates`) carry their
    query and score documents by rank (`ListwiseLabel.scores`)."""
    if candidates is None:
        return Run({lab.query_id: lab.scores() for lab in labels}, name=name)
    scores: dict[str, dict[str, float]] = {}
    for cand, label in zip(candidates, labels, strict=True):
        scores.setdefault(cand.query_id, {})[cand.doc_id] = float(label.score)
    return Run(scores, name=name)


#: scores of (query, documents) requests, one list per request, in order: `Reranker.score_requests`
RequestScorer = Callable[[list[tuple[str, list[str]]]], list[list[float]]]


def rerank_run(
    ranker: PointwiseTeacher | RequestScorer,
    queries: Queries | Mapping[str, str],
    corpus: Corpus,
    run: Run,
    depth: int | None = 20,
    *,
    missing: str = "error",
    batch_size: int | None = None,
    scorer: PairScorer | None = None,
    queries_per_pass: int = 8,
    show_progress: bool = True,
    name: str | None = None,
    stats: dict[str, int] | None = None,
    with_first_stage: bool = False,
) -> Run:
    """Rerank the top-`depth` documents of each query of `run` (documents below `depth` are dropped).
    `with_first_stage`: call the `RequestScorer` with `first_stage=` (each request's documents' scores in
    `run`), which a hybrid student's `Reranker.score_requests` needs.

    `ranker` is a teacher, whose labels are computed directly or through `scorer` (pass
    `rankdistill.labels.store_scorer(store)`, or use `rankdistill.labels.label_run`, to cache them in a
    label store), or a `RequestScorer` such as a `Reranker`'s `score_requests`, called with
    `queries_per_pass` queries at a time so batches stay full. `missing` and `stats`: see
    `run_candidates`. The run is named `name`, else the teacher's name or "<run>-reranked".
    """
    candidates = run_candidates(queries, corpus, run, depth, missing=missing, stats=stats)
    if isinstance(ranker, PointwiseTeacher):
        labels = ranker.label_candidates(candidates, scorer or direct_scorer(batch_size, show_progress))
        return labels_to_run(labels, candidates, name=name or ranker.name)
    out = Run({}, name=name or f"{run.name}-reranked")
    by_query: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_query.setdefault(c.query_id, []).append(c)
    groups = list(by_query.values())
    with progress(total=len(groups), desc="reranking", unit="query", disable=not show_progress) as bar:
        for chunk in batched(groups, queries_per_pass):
            requests = [(group[0].query, [c.doc for c in group]) for group in chunk]
            if with_first_stage:
                scores = ranker(requests, first_stage=[[c.first_stage for c in group] for group in chunk])
            else:
                scores = ranker(requests)
            for group, group_scores in zip(chunk, scores, strict=True):
                out.scores[group[0].query_id] = {
                    c.doc_id: float(s) for c, s in zip(group, group_scores, strict=True)
                }
            bar.update(len(chunk))
    return out
