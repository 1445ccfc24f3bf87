"""Teacher specs, the ensemble's fusion, and rerank_run / label_run over real runs and a real store."""

from __future__ import annotations

import json

import pytest

from rankdistill.data.types import Corpus, Document, Queries, Run
from rankdistill.errors import DataError
from rankdistill.labels import LabelStore, label_run
from rankdistill.teachers import (
    EnsembleTeacher,
    FirstStageTeacher,
    PointwiseLabel,
    PointwiseTeacher,
    load_teacher,
    rerank_run,
    teacher_config,
)


class OverlapTeacher(PointwiseTeacher):
    """A real, deterministic lexical teacher: the share of query words found in the document."""

    name = "overlap"

    def __init__(self):
        self.calls = 0

    def identity(self):
        return {"teacher": "overlap", "v": 1}

    def score(self, pairs):
        self.calls += 1
        out = []
        for q, d in pairs:
            qw, dw = set(q.lower().split()), set(d.lower().split())
            out.append(PointwiseLabel(len(qw & dw) / max(1, len(qw))))
        return out


CORPUS = Corpus(
    [
        Document("d1", "rain forms when water vapour condenses into droplets"),
        Document("d2", "the stock market fell on monday"),
        Document("d3", "water droplets fall as rain from clouds", title="Rain"),
        Document("d4", "clouds are made of water"),
    ]
)
QUERIES = Queries({"q1": "why does rain fall from clouds", "q2": "stock market news"})
RUN = Run({"q1": {"d1": 3.0, "d2": 1.0, "d3": 2.0, "d4": 0.5}, "q2": {"d2": 5.0, "d1": 1.0}})


def test_specs():
    assert teacher_config("bm25+minilm") == {
        "type": "ensemble",
        "members": [{"type": "first-stage", "source": "bm25"}, {"type": "bi-encoder", "model": "minilm"}],
        "weights": [1.0, 1.0],
    }
    assert teacher_config("0.3*bm25+0.7*qlm:llamacpp:gemma3-270m")["weights"] == [0.3, 0.7]
    assert teacher_config("truefalse:llamacpp:gemma3-270m") == {
        "type": "truefalse",
        "llm": "llamacpp:gemma3-270m",
    }
    assert teacher_config("yesno:hf:/models/x")["type"] == "yesno"
    assert teacher_config("cross-encoder:/m") == {"type": "cross-encoder", "model": "/m"}
    with pytest.raises(ValueError, match="unknown teacher"):
        teacher_config("magic:thing")
    with pytest.raises(ValueError, match="needs an LLM"):
        teacher_config("truefalse")
    ens = load_teacher("bm25+bm25", fusion="rrf")
    assert isinstance(ens, EnsembleTeacher) and ens.fusion == "rrf"


def test_rerank_run_and_depth():
    teacher = OverlapTeacher()
    out = rerank_run(teacher, QUERIES, CORPUS, RUN, depth=3, show_progress=False)
    assert set(out["q1"]) == {"d1", "d3", "d2"}  # d4 is below depth 3
    assert out.ranked("q1")[0][0] == "d3"  # "rain", "fall", "from", "clouds" all in d3
    assert out["q2"]["d2"] == pytest.approx(2 / 3)


def test_rerank_run_missing_documents_raise_or_are_skipped():
    """A run's document id that the corpus lacks: an error naming query and document by default (teachers,
    labelling), skipped and counted with missing="skip" (the CLI); nothing known at all is always an error."""
    stale = Run(
        {"q1": {"d1": 3.0, "gone": 2.5, "d3": 2.0}, "q2": {"d2": 5.0}, "q9": {"d4": 1.0}}, name="stale"
    )
    with pytest.raises(DataError, match=r"1 document id\(s\) of run 'stale'.*query 'q1' doc 'gone'"):
        rerank_run(OverlapTeacher(), QUERIES, CORPUS, stale, depth=3, show_progress=False)
    stats = {}
    out = rerank_run(
        OverlapTeacher(), QUERIES, CORPUS, stale, depth=3, missing="skip", show_progress=False, stats=stats
    )
    assert set(out["q1"]) == {"d1", "d3"} and set(out["q2"]) == {"d2"} and "q9" not in out
    assert stats == {"queries": 2, "pairs": 3, "missing_queries": 1, "missing_docs": 1}
    other_corpus = Run({"q1": {"x1": 1.0, "x2": 0.5}}, name="other")
    with pytest.raises(DataError, match="another corpus"):
        rerank_run(OverlapTeacher(), QUERIES, CORPUS, other_corpus, missing="skip", show_progress=False)
    with pytest.raises(ValueError, match="missing must be one of"):
        rerank_run(OverlapTeacher(), QUERIES, CORPUS, RUN, missing="ignore", show_progress=False)


def test_fusions():
    member = OverlapTeacher()
    first = FirstStageTeacher()
    mm = rerank_run(
        EnsembleTeacher([first, member], [1.0, 1.0]), QUERIES, CORPUS, RUN, depth=4, show_progress=False
    )
    overlap = rerank_run(member, QUERIES, CORPUS, RUN, depth=4, show_progress=False)
    # by hand: min-max of BM25 and of overlap, per query, summed
    bm = RUN["q1"]
    lo, hi = min(bm.values()), max(bm.values())
    ov = overlap["q1"]
    olo, ohi = min(ov.values()), max(ov.values())
    for d in bm:
        expect = (bm[d] - lo) / (hi - lo) + (ov[d] - olo) / (ohi - olo)
        assert mm["q1"][d] == pytest.approx(expect)
    rrf = rerank_run(
        EnsembleTeacher([first, member], fusion="rrf", rrf_k=60),
        QUERIES,
        CORPUS,
        RUN,
        depth=4,
        show_progress=False,
    )
    # d3: second by BM25, first by overlap
    assert rrf["q1"]["d3"] == pytest.approx(1 / 62 + 1 / 61)
    z = rerank_run(
        EnsembleTeacher([first], fusion="zscore"), QUERIES, CORPUS, RUN, depth=4, show_progress=False
    )
    assert sum(z["q1"].values()) == pytest.approx(0.0, abs=1e-12)
    # weights: a zero weight on the first stage is the member alone (min-max is monotone)
    solo = rerank_run(
        EnsembleTeacher([first, member], [0.0, 1.0]), QUERIES, CORPUS, RUN, depth=4, show_progress=False
    )
    assert [d for d, _ in solo.ranked("q1")] == [d for d, _ in overlap.ranked("q1")]


def test_ensemble_score_pairs_needs_first_stage_scores():
    ens = EnsembleTeacher([FirstStageTeacher(), OverlapTeacher()])
    pairs = [("rain clouds", "rain from clouds"), ("rain clouds", "stock market")]
    with pytest.raises(ValueError, match="first-stage"):
        ens.score(pairs)
    labels = ens.score(pairs, first_stage=[1.0, 2.0])
    assert [lab.score for lab in labels] == [1.0, 1.0]  # each best on one member
    assert labels[0].logits is None  # member scores are no [false, true] logit pair


def test_label_run_caches_members_and_fused(tmp_path):
    member = OverlapTeacher()
    ens = EnsembleTeacher([FirstStageTeacher(), member])
    direct = rerank_run(ens, QUERIES, CORPUS, RUN, depth=4, show_progress=False)
    store_path = tmp_path / "labels.sqlite"
    first = label_run(ens, QUERIES, CORPUS, RUN, depth=4, store=store_path, show_progress=False)
    assert first.scores == direct.scores
    calls = member.calls
    again = label_run(ens, QUERIES, CORPUS, RUN, depth=4, store=store_path, show_progress=False)
    assert again.scores == direct.scores and member.calls == calls  # nothing recomputed
    with LabelStore(store_path) as store:
        counts = store.counts()
        assert counts[("pointwise", "overlap")] == 6
        assert counts[("pointwise", "first-stage+overlap")] == 6
        # other first-stage scores give other fused labels (stored beside, never confused)
        other = Run({q: {d: -s for d, s in docs.items()} for q, docs in RUN.items()})
        label_run(ens, QUERIES, CORPUS, other, depth=4, store=store, show_progress=False)
        assert store.counts()[("pointwise", "first-stage+overlap")] == 12
        assert store.counts()[("pointwise", "overlap")] == 6
        n = store.export_jsonl(tmp_path / "overlap.jsonl", kind="pointwise", teacher="overlap")
    # the export holds what training needs: query, document text, label
    rows = [json.loads(line) for line in (tmp_path / "overlap.jsonl").read_text().splitlines()]
    assert n == len(rows) == 6
    assert {(r["query"], r["doc"]) for r in rows} == {
        (QUERIES[q], CORPUS[d].full_text) for q in RUN.scores for d in RUN[q]
    }
    fresh = OverlapTeacher()
    assert [r["label"] for r in rows] == [fresh.score([(r["query"], r["doc"])])[0].score for r in rows]


@pytest.mark.slow
def test_export_reads_as_training_rows(tmp_path):
    from rankdistill.training.data import pairs_from_label_store

    label_run(
        OverlapTeacher(), QUERIES, CORPUS, RUN, depth=4, store=tmp_path / "l.sqlite", show_progress=False
    )
    rows = pairs_from_label_store(tmp_path / "l.sqlite", kind="pointwise", teacher="overlap")
    assert len(rows) == 6 and {r["document"] for r in rows} <= {d.full_text for d in CORPUS.values()}
