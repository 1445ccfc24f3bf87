"""What a pointwise teacher is: something that scores (query, document) pairs, with a stable identity.

What a label *is* (the teacher: prompt, candidate tokens, model, truncation) is kept apart from how it is
*computed* (the LLM backend or the encoder), as ir_measures keeps a measure apart from its provider.
The teacher's `identity()` goes into every label key, so changing any setting never mixes labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rankdistill.data.types import Corpus, Queries, Run
from rankdistill.errors import DataError
from rankdistill.registry import Registry
from rankdistill.utils import batched, progress

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
        with bar:
            for chunk in batched(candidates, size):
                out = teacher.score([(c.query, c.doc) for c in chunk])
                if len(out) != len(chunk):
                    raise RuntimeError(f"{teacher.name} returned {len(out)} labels for {len(chunk)} pairs")
                labels.extend(out)
                bar.update(len(chunk))
        return labels

    return score


def run_candidates(
    queries: Queries | dict[str, str], corpus: Corpus, run: Run, depth: int | None = 20
) -> list[Candidate]:
    """The top-`depth` candidates of each query of `run` that is in `queries`, in rank order."""
    candidates: list[Candidate] = []
    missing_docs: list[str] = []
    for qid in run.query_ids:
        if qid not in queries:
            continue
        for doc_id, first in run.ranked(qid, depth):
            doc = corpus.get(doc_id)
            if doc is None:
                missing_docs.append(doc_id)
                continue
            candidates.append(Candidate(qid, queries[qid], doc_id, doc.full_text, float(first)))
    if missing_docs:
        raise DataError(
            f"{len(missing_docs)} document id(s) of the run are not in the corpus "
            f"(first: {missing_docs[:3]}); was the run made on another corpus?"
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


def rerank_run(
    teacher: PointwiseTeacher,
    queries: Queries | dict[str, str],
    corpus: Corpus,
    run: Run,
    depth: int | None = 20,
    *,
    batch_size: int | None = None,
    scorer: PairScorer | None = None,
    show_progress: bool = True,
) -> Run:
    """Rerank the top-`depth` documents of each query of `run` by the teacher's scores.

    Without `scorer` the teacher is called directly; pass `rankdistill.labels.store_scorer(store)` (or use
    `rankdistill.labels.label_run`) to cache labels in a label store and resume after a crash.
    Documents below `depth` are dropped from the returned run.
    """
    candidates = run_candidates(queries, corpus, run, depth)
    scorer = scorer or direct_scorer(batch_size, show_progress)
    labels = teacher.label_candidates(candidates, scorer)
    return labels_to_run(labels, candidates, name=teacher.name)
