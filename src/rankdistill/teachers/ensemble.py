"""Fusing teachers and first-stage scores into one teacher.

Scores of different teachers live on different scales (BM25 sums, cosines, log-odds), so they are made
comparable per query first: min-max to [0, 1], z-scores, or replaced by reciprocal-rank fusion (RRF,
Cormack et al., 2009). A weak LLM plus BM25 plus a dense model is often better than any one of them;
BM25 + all-MiniLM-L6-v2 with per-query min-max is the best offline teacher we measured on scifact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rankdistill.evaluation.fusion import minmax
from rankdistill.teachers.base import (
    TEACHERS,
    Candidate,
    PairScorer,
    PointwiseLabel,
    PointwiseTeacher,
    direct_scorer,
)

FUSIONS = ("minmax", "zscore", "rrf")
# 2: min-max of a member whose scores tie on a query gives 0.5 (evaluation.fusion.minmax), was 0.0
VERSION = 2


class FirstStageTeacher(PointwiseTeacher):
    """The first-stage scores of the run being reranked (e.g. BM25), as an ensemble member.

    Its labels exist only for candidates that come from a run; `score(pairs)` alone has none."""

    name = "first-stage"
    batch_size = 1024

    def __init__(self, source: str = "bm25"):
        self.source = source

    def identity(self) -> dict[str, Any]:
        return {"teacher": "first-stage", "source": self.source}

    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        raise ValueError(
            "first-stage scores come with a run's candidates: use this teacher inside rerank_run/label_run, "
            "or pass first_stage=[...] to EnsembleTeacher.score"
        )

    def label_candidates(self, candidates: list[Candidate], scorer: PairScorer) -> list[PointwiseLabel]:
        missing = [c for c in candidates if c.first_stage is None]
        if missing:
            c = missing[0]
            raise ValueError(
                f"no first-stage score for query {c.query_id!r}, document {c.doc_id!r}: the candidates must come "
                "from a run (rerank_run / label_run) for the ensemble to use first-stage scores"
            )
        return [PointwiseLabel(float(c.first_stage)) for c in candidates]


def _normalise(scores: list[float], method: str, rrf_k: int, doc_ids: list[str]) -> list[float]:
    if method == "minmax":
        scaled = minmax(dict(enumerate(scores)))
        return [scaled[i] for i in range(len(scores))]
    if method == "zscore":
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
        return [0.0 if std == 0 else (s - mean) / std for s in scores]
    if method == "rrf":
        # rank 1 is the best; ties broken by document id so the fusion is deterministic
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], doc_ids[i]))
        fused = [0.0] * len(scores)
        for rank, i in enumerate(order, 1):
            fused[i] = 1.0 / (rrf_k + rank)
        return fused
    raise ValueError(f"unknown fusion {method!r}; expected one of {FUSIONS}")


class EnsembleTeacher(PointwiseTeacher):
    """Weighted sum of member teachers' per-query normalised scores (or of their RRF scores).

    >>> EnsembleTeacher([FirstStageTeacher(), BiEncoderTeacher("minilm")], fusion="minmax")

    Fused labels carry a score only (no `logits`): member scores are not a [false, true] logit pair, and
    each member's own labels are in the label store."""

    name = "ensemble"
    depends_on_candidates = True

    def __init__(
        self,
        members: Sequence[PointwiseTeacher],
        weights: Sequence[float] | None = None,
        *,
        fusion: str = "minmax",
        rrf_k: int = 60,
        name: str | None = None,
    ):
        if not members:
            raise ValueError("an ensemble needs at least one member teacher")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members):
            raise ValueError(f"{len(weights)} weights for {len(members)} members")
        self.members = list(members)
        self.weights = weights
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.batch_size = min(m.batch_size for m in self.members)
        self.name = name or "+".join(m.name for m in self.members)

    def cold(self) -> EnsembleTeacher:
        """The ensemble of its members' cold copies (see `PointwiseTeacher.cold`)."""
        import copy

        twin = copy.copy(self)
        twin.members = [m.cold() for m in self.members]
        return twin

    def identity(self) -> dict[str, Any]:
        return {
            "teacher": "ensemble",
            "version": VERSION,
            "fusion": self.fusion,
            "rrf_k": self.rrf_k if self.fusion == "rrf" else None,
            "members": [
                {"teacher": m.identity(), "prompt": m.prompt_identity(), "weight": w}
                for m, w in zip(self.members, self.weights, strict=True)
            ],
        }

    def label_candidates(self, candidates: list[Candidate], scorer: PairScorer) -> list[PointwiseLabel]:
        if not candidates:
            return []
        member_scores = [[lab.score for lab in m.label_candidates(candidates, scorer)] for m in self.members]
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(candidates):
            groups.setdefault(c.query_id, []).append(i)
        fused = [0.0] * len(candidates)
        for idx in groups.values():
            doc_ids = [candidates[i].doc_id for i in idx]
            for scores, w in zip(member_scores, self.weights, strict=True):
                norm = _normalise([scores[i] for i in idx], self.fusion, self.rrf_k, doc_ids)
                for i, s in zip(idx, norm, strict=True):
                    fused[i] += w * s
        return [PointwiseLabel(fused[i]) for i in range(len(candidates))]

    def score(
        self, pairs: list[tuple[str, str]], first_stage: Sequence[float] | None = None
    ) -> list[PointwiseLabel]:
        """Fuse over the given pairs, normalising among pairs of the same query text. Pass `first_stage`
        (one score per pair) when the ensemble has a first-stage member."""
        if first_stage is not None and len(first_stage) != len(pairs):
            raise ValueError(f"{len(first_stage)} first-stage scores for {len(pairs)} pairs")
        candidates = [
            Candidate(q, q, f"{i:09d}", d, None if first_stage is None else float(first_stage[i]))
            for i, (q, d) in enumerate(pairs)
        ]
        return self.label_candidates(candidates, direct_scorer(show_progress=False))

    def close(self) -> None:
        for m in self.members:
            m.close()


def _first_stage(source: str = "bm25", **_scoring_options: Any) -> FirstStageTeacher:
    """Options meant for teachers that compute scores (batch size, device) do not apply to given scores."""
    return FirstStageTeacher(source)


def _first_stage_spec(name: str, rest: str) -> dict[str, Any]:
    """``bm25`` is the run's BM25 scores; ``first-stage[:<name>]`` those of whatever made the run."""
    return {"source": "bm25" if name == "bm25" else (rest or "run")}


TEACHERS.register("first-stage", _first_stage, aliases=("bm25", "firststage"), parse=_first_stage_spec)
