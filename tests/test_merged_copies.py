"""Concepts that had several copies which disagreed, now with one owner each (issue #13): each test
pins the behaviour kept where the copies differed."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel, field_validator

from rankdistill.data.types import Run
from rankdistill.evaluation.fusion import fuse_minmax, minmax
from rankdistill.llm.base import LLM, ContinuationScore, Generation
from rankdistill.teachers.base import Candidate, direct_scorer, labels_to_run
from rankdistill.teachers.ensemble import EnsembleTeacher, FirstStageTeacher
from rankdistill.teachers.listwise import ListwiseLabel
from rankdistill.teachers.parsing import parse_structured
from rankdistill.teachers.pointwise import TrueFalseTeacher
from rankdistill.teachers.prompts import truncate_words


def test_ties_min_max_to_the_midpoint_in_fusion_and_in_the_ensemble_teacher():
    assert minmax({"a": 2.0, "b": 2.0}) == {"a": 0.5, "b": 0.5}
    fused = fuse_minmax([Run({"q": {"a": 2.0, "b": 2.0}})])
    candidates = [Candidate("q", "query", d, d, 2.0) for d in ("a", "b")]
    labels = EnsembleTeacher([FirstStageTeacher()]).label_candidates(
        candidates, direct_scorer(show_progress=False)
    )
    assert [lab.score for lab in labels] == [fused["q"]["a"], fused["q"]["b"]] == [0.5, 0.5]


class _EchoLLM(LLM):
    backend = "echo"

    def identity(self):
        return {"backend": self.backend}

    def generate(self, prompts, **kwargs):
        return [Generation(text="") for _ in prompts]

    def score_continuations(self, pairs):
        return [ContinuationScore(0.0, 1) for _ in pairs]

    def next_token_logits(self, prompts, candidates):
        return [[0.0] * len(candidates) for _ in prompts]


def test_documents_are_flattened_to_one_line_in_every_prompt_long_or_short():
    teacher = TrueFalseTeacher(_EchoLLM(), max_doc_words=256)
    assert teacher.render("q", "short\n\ndocument") == "Query: q Document: short document Relevant:"
    assert truncate_words("a\nb  c d", 2) == "a b" and truncate_words("a\nb", None) == "a b"
    assert teacher.identity()["version"] == 2  # labels of the old rendering are not reused


def test_training_rows_break_teacher_ties_by_document_id_in_every_sampler():
    pytest.importorskip("torch")
    from rankdistill.pipeline.stages.labels import _sample_rows
    from rankdistill.teachers.base import PointwiseLabel
    from rankdistill.training.data import pairs_from_teacher_run, pick_rows
    from rankdistill.training.decoder import examples_from_scores

    scores = {"d2": 1.0, "d1": 1.0, "d3": 0.0, "d4": 0.5}  # d2 before d1: insertion order is not the rule
    docs = {d: f"text {d}" for d in scores}
    assert pick_rows(scores, 3, 1, random.Random(0))[0] == "d1"
    (group,) = examples_from_scores({"q": "query"}, docs, {"q": scores}, group_size=1, top=1)
    assert group.documents == ["text d1"]

    expected = {d for d in pick_rows(scores, 3, 2, random.Random(7))}
    rows = pairs_from_teacher_run({"q": "query"}, Run({"q": scores}), docs, per_query=3, top=2, seed=7)
    assert {r["document"] for r in rows} == {docs[d] for d in expected}
    cands = [Candidate("q", "query", d, docs[d]) for d in scores]
    keep = _sample_rows(cands, [PointwiseLabel(s) for s in scores.values()], per_query=3, top=2, seed=7)
    assert {cands[i].doc_id for i in keep} == expected


def test_one_labels_to_run_for_pointwise_and_listwise_labels():
    import rankdistill.teachers.listwise as listwise

    assert not hasattr(listwise, "labels_to_run")
    lab = ListwiseLabel("q", "query", "one_pass", ["a", "b", "c"], [2, 0, 1], [])
    assert labels_to_run([lab]).ranked("q")[0][0] == "c"
    from rankdistill.teachers.base import PointwiseLabel

    run = labels_to_run(
        [PointwiseLabel(0.1), PointwiseLabel(0.9)], [Candidate("q", "", "a", ""), Candidate("q", "", "b", "")]
    )
    assert run.ranked("q")[0][0] == "b"


def test_encoder_and_decoder_listnet_are_one_function():
    torch = pytest.importorskip("torch")
    from rankdistill.training.losses.joint import JointRankLMLoss
    from rankdistill.training.losses.listnet import ListNetLoss, listnet

    scores, teacher = torch.tensor([0.3, -0.1, 0.8]), torch.tensor([1.0, 0.2, 0.0])
    mask = torch.ones(1, 3, dtype=torch.bool)
    encoder = ListNetLoss(torch.nn.Linear(1, 1), temperature=0.1)
    decoder = JointRankLMLoss(torch.nn.Linear(1, 1), rank_loss="listnet", temperature=0.1)
    expected = listnet(scores[None], teacher[None], mask, 0.1)
    assert encoder.group_loss(scores, teacher / 0.1).item() == pytest.approx(expected.item())
    assert decoder.rank_fn(scores[None], teacher[None], mask).item() == pytest.approx(expected.item())
    # the defaults differ on purpose: [0, 1] labels for the encoder, raw teacher scores for the decoder
    assert encoder.temperature == 0.1 and JointRankLMLoss(torch.nn.Linear(1, 1)).temperature == 1.0


class _Answer(BaseModel):
    score: int

    @field_validator("score")
    @classmethod
    def _in_range(cls, v: int) -> int:
        if not 0 <= v <= 3:
            raise ValueError("score must be 0 to 3")
        return v


def test_one_formatter_of_pydantic_errors():
    from rankdistill.errors import DataError
    from rankdistill.report.results import parse_results
    from rankdistill.validation import validate_config

    assert parse_structured('{"score": 7}', _Answer).error == "score: score must be 0 to 3"
    with pytest.raises(Exception, match=r"score: score must be 0 to 3"):
        validate_config(_Answer, {"score": 7}, "cfg.yaml", "answer")
    with pytest.raises(DataError, match="invalid evaluation results: "):
        parse_results({"unexpected": 1})


@pytest.mark.parametrize("num_labels", [1, 2])
def test_dev_evaluator_and_reranker_score_a_student_alike(minilm_dir, tmp_path, num_labels):
    """The dev nDCG during training and the report's test nDCG score pairs through one path
    (`students.encoder.score_pairs`): the same student and pairs give the same scores. Long documents
    past the 24-token window, batches of different sizes (padding) and a 2-logit head make any
    difference in window, truncation, padding or activation show."""
    from rankdistill.data.types import Qrels
    from rankdistill.inference.reranker import Reranker
    from rankdistill.students import load_encoder_student, save_student
    from rankdistill.training.evaluator import RerankingEvaluator

    model = load_encoder_student(minilm_dir, num_labels=num_labels, max_length=24, seed=1)
    folder = save_student(model, tmp_path / "student")
    queries = {"q1": "vitamin C deficiency causes scurvy in sailors on long voyages", "q2": "moon and tides"}
    docs = {
        "d1": "Scurvy is a disease resulting from a lack of vitamin C (ascorbic acid). " * 4,
        "d2": "The tides are caused by the gravitational pull of the moon.",
        "d3": "Python is a programming language.",
        "d4": "Citrus fruits prevent the disease by supplying ascorbic acid. " * 3,
        "d5": "moon",
    }
    candidates = Run({q: {d: float(-i) for i, d in enumerate(docs)} for q in queries})
    qrels = Qrels({"q1": {"d1": 1, "d4": 1}, "q2": {"d2": 1}})
    evaluator = RerankingEvaluator(queries, candidates, docs, qrels, k=10, batch_size=3)
    model.train()
    dev_run, _ = evaluator.rerank(model)
    assert model.training  # training goes on with dropout after a dev evaluation
    reranker = Reranker.load(folder, backend="torch", dtype="fp32", batch_size=2)
    for qid, query in queries.items():
        ids = list(docs)
        test_scores = reranker.score([(query, docs[d]) for d in ids])
        assert [dev_run[qid][d] for d in ids] == pytest.approx(test_scores, abs=1e-5)
