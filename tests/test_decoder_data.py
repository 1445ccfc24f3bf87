"""Training groups for the decoder student from a real SQLite label store: pointwise teacher scores,
with the explicit reasoning labels of the same pairs as LM targets."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from rankdistill.data.types import Document  # noqa: E402
from rankdistill.errors import RankdistillError  # noqa: E402
from rankdistill.labels.store import LabelRecord, LabelStore  # noqa: E402
from rankdistill.training.decoder import DecoderCollator, examples_from_store  # noqa: E402


def _fill(store: LabelStore) -> None:
    tid = store.register_teacher("minilm", {"teacher": "bi-encoder"})
    rid = store.register_teacher("reasoning-explicit", {"teacher": "reasoning"})
    rows = []
    for q, qid in (("what causes tides", "q1"), ("how do vaccines work", "q2")):
        for i in range(3):
            rows.append(
                LabelRecord(
                    f"{qid}-{i}", "pointwise", "minilm", {"score": float(i)}, [f"{qid}d{i}"], qid, q, tid
                )
            )
    rows.append(
        LabelRecord(
            "r1",
            "reasoning",
            "reasoning-explicit",
            {
                "type": "explicit",
                "status": "ok",
                "reasoning": "The moon's gravity causes tides.",
                "relevance": 2,
            },
            ["q1d2"],
            "q1",
            "what causes tides",
            rid,
        )
    )
    rows.append(
        LabelRecord(
            "r2",
            "reasoning",
            "reasoning-explicit",
            {"type": "explicit", "status": "failed"},
            ["q1d1"],
            "q1",
            "what causes tides",
            rid,
        )
    )
    store.put_many(rows)


def test_groups_from_label_store(tmp_path):
    corpus = {f"q{q}d{i}": Document(f"q{q}d{i}", f"text {q}-{i}") for q in (1, 2) for i in range(3)}
    with LabelStore(tmp_path / "labels.sqlite") as store:
        _fill(store)
        groups = examples_from_store(store, corpus, teacher="minilm", group_size=2, top=1)
    assert [g.query for g in groups] == ["what causes tides", "how do vaccines work"]
    first = groups[0]
    assert first.documents[0] == "text 1-2" and first.scores[0] == 2.0  # the teacher's best comes first
    assert len(first.documents) == 2
    # the valid explicit reasoning is the LM target of its pair, with the relevance the teacher gave;
    # the failed one is not a target
    assert first.reasonings[0] == "The moon's gravity causes tides. Relevance: 2"
    assert all(r is None for r in first.reasonings[1:]) and all(r is None for r in groups[1].reasonings)


def test_collator_batches_ragged_groups(tmp_path):
    corpus = {f"q{q}d{i}": Document(f"q{q}d{i}", f"text {q}-{i}") for q in (1, 2) for i in range(3)}
    with LabelStore(tmp_path / "labels.sqlite") as store:
        _fill(store)
        groups = examples_from_store(store, corpus, group_size=3, top=1)
    groups[1].documents.pop(), groups[1].scores.pop(), groups[1].reasonings.pop()

    class WordTokenizer:  # the collator's shape logic, without a model
        pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[3 + len(w) for w in t.split()] for t in texts]}

    from rankdistill.students.decoder import DecoderConfig, DecoderStudent

    student = DecoderStudent.__new__(DecoderStudent)
    student.tokenizer, student.student_config = WordTokenizer(), DecoderConfig()
    student._init_templates()
    batch = DecoderCollator(student)(groups)
    assert batch["group_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert batch["labels"].shape == (2, 3) and batch["input_ids"].shape[0] == 5
    assert int((batch["lm_labels"] != -100).any(dim=1).sum()) == 1  # one pair has reasoning


def test_store_without_a_named_teacher_asks_for_one(tmp_path):
    with LabelStore(tmp_path / "labels.sqlite") as store:
        _fill(store)
        oid = store.register_teacher("other", {"teacher": "other"})
        store.put_many([LabelRecord("o1", "pointwise", "other", {"score": 1.0}, ["q1d0"], "q1", "x", oid)])
        with pytest.raises(RankdistillError, match="pick the pointwise teacher"):
            examples_from_store(store, {})
