"""Trainer, checkpoints/resume (with the loss's own TCL weights), config validation, `rankdistill train`."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from rankdistill.errors import DataError, RankdistillError
from rankdistill.students import load_encoder_student
from rankdistill.training import TrainSettings, read_pairs_jsonl, train, write_pairs_jsonl
from rankdistill.training.config import load_config, parse_config
from rankdistill.training.losses import build_loss
from rankdistill.training.trainer import LOSS_STATE_FILE, loss_only_state

ROWS = [
    {"query": "protein folding", "document": "Proteins fold into structures.", "label": 0.9},
    {"query": "protein folding", "document": "The weather is sunny today.", "label": 0.1},
    {"query": "capital of france", "document": "Paris is the capital of France.", "label": 0.95},
    {"query": "capital of france", "document": "Berlin is in Germany.", "label": 0.2},
] * 4


def _settings(**kw):
    base = dict(
        max_steps=4, batch_size=4, save_steps=2, logging_steps=1, learning_rate=1e-4, seed=7, bf16=False
    )
    return TrainSettings(**{**base, **kw})


def test_train_checkpoints_and_resume_restore_tcl(tmp_path, minilm_dir):
    torch.set_num_threads(2)
    model = load_encoder_student(minilm_dir, num_layers=1, max_length=32, seed=0)
    loss = build_loss(model, [{"name": "soft_bce"}, {"name": "term_control", "weight": 0.5}])
    before = model.model.classifier.weight.detach().clone()
    trainer = train(model, loss, ROWS, tmp_path / "run", _settings(max_steps=2))
    assert trainer.state.global_step == 2
    assert not torch.equal(before, model.model.classifier.weight)  # it learned something
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert (ckpt / LOSS_STATE_FILE).exists() and (ckpt / "optimizer.pt").exists()
    tcl_saved = loss_only_state(loss, model)
    assert tcl_saved and all("term_control" in k for k in tcl_saved)
    logged = [h for h in trainer.state.log_history if "term_control" in h]
    assert logged, "loss components are logged separately"

    # a new process would start from scratch: fresh model and loss, then resume from checkpoint-2
    model2 = load_encoder_student(minilm_dir, num_layers=1, max_length=32, seed=123)
    loss2 = build_loss(model2, [{"name": "soft_bce"}, {"name": "term_control", "weight": 0.5}])
    trainer2 = train(model2, loss2, ROWS, tmp_path / "run", _settings(max_steps=4))
    assert trainer2.state.global_step == 4
    assert (tmp_path / "run" / "checkpoint-4").exists()
    # the resumed TCL started from the checkpoint's weights, not from its own random init
    from safetensors.torch import load_file

    at2 = load_file(str(ckpt / LOSS_STATE_FILE))
    at4 = load_file(str(tmp_path / "run" / "checkpoint-4" / LOSS_STATE_FILE))
    key = next(k for k in at2 if k.endswith("mlp.1.weight"))
    drift = (at4[key] - at2[key]).abs().max().item()
    fresh = build_loss(model2, [{"name": "soft_bce"}, {"name": "term_control", "weight": 0.5}])
    fresh_w = loss_only_state(fresh, model2)[key]
    assert drift < (fresh_w - at2[key]).abs().max().item()


def test_jsonl_rows_round_trip_and_errors(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_pairs_jsonl(path, ROWS[:2])
    assert read_pairs_jsonl(path) == ROWS[:2]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"query": "q", "document": "d", "label": 0.5}\n{"query": "q", "doc": "d", "label": "high"}\n'
    )
    with pytest.raises(DataError, match=r"bad.jsonl:2: 'label' must be a number"):
        read_pairs_jsonl(bad)
    bad.write_text(
        '{"query": "q", "document": "d", "label": 0.5}\n{"query": "q", "doc": "d", "label": [0.1, 2]}\n'
    )
    with pytest.raises(DataError, match=r":2: label is a pair but earlier rows have scalar"):
        read_pairs_jsonl(bad)


def test_config_errors_name_the_key(tmp_path):
    good = {"output_dir": str(tmp_path), "phases": [{"name": "p1", "data": {"jsonl": "x.jsonl"}}]}
    assert parse_config(good).training.batch_size == 32
    with pytest.raises(RankdistillError, match=r"training\.batch_size"):
        parse_config({**good, "training": {"batch_size": "big"}})
    with pytest.raises(RankdistillError, match=r"losses\.0\.name.*unknown loss 'magic'"):
        parse_config({**good, "losses": [{"name": "magic"}]})
    with pytest.raises(RankdistillError, match=r"phases\.0\.data.*exactly one of"):
        parse_config({**good, "phases": [{"name": "p1", "data": {}}]})
    with pytest.raises(RankdistillError, match=r"student\.colour.*[Ee]xtra"):
        parse_config({**good, "student": {"colour": "red"}})
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: [unclosed\n")
    with pytest.raises(RankdistillError, match="invalid YAML"):
        load_config(path)


@pytest.mark.slow
def test_train_command_end_to_end(tmp_path, minilm_dir):
    from typer.testing import CliRunner

    from rankdistill.cli import app
    from rankdistill.students import load_student, read_metadata, student_scores

    rows = tmp_path / "rows.jsonl"
    write_pairs_jsonl(rows, ROWS)
    cfg = {
        "output_dir": str(tmp_path / "out"),
        "seed": 3,
        "student": {"base": str(minilm_dir), "num_layers": 1, "max_length": 32},
        "losses": [{"name": "soft_bce"}, {"name": "term_control", "weight": 0.3}],
        "phases": [
            {"name": "phase1", "data": {"jsonl": str(rows)}, "training": {"max_steps": 2}},
            {"name": "phase2", "data": {"jsonl": str(rows), "max_rows": 8}, "training": {"max_steps": 2}},
        ],
        "training": {"batch_size": 4, "save_steps": 1, "logging_steps": 1, "bf16": False},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(path), "--check"])
    assert res.exit_code == 0 and "OK (2 phase(s)" in res.output
    res = runner.invoke(app, ["train", str(path)])
    assert res.exit_code == 0, res.output
    final = tmp_path / "out" / "final"
    meta = read_metadata(final)
    assert meta["student_type"] == "encoder" and [p["steps"] for p in meta["phases"]] == [2, 2]
    assert json.loads((tmp_path / "out" / "phase1" / "phase_done.json").read_text())["steps"] == 2
    scores = student_scores(load_student(final), [("capital of france", "Paris is the capital of France.")])
    assert scores.shape == (1,)
    # run again: both phases are done, nothing retrains, the same student comes out
    res = runner.invoke(app, ["train", str(path)])
    assert res.exit_code == 0, res.output
    again = student_scores(load_student(final), [("capital of france", "Paris is the capital of France.")])
    assert again == pytest.approx(scores, abs=1e-5)


@pytest.mark.data
@pytest.mark.slow
def test_reranking_evaluator_on_scifact(data_dir, minilm_dir):
    from rankdistill.data.datasets import load_dataset
    from rankdistill.evaluation.metrics import evaluate
    from rankdistill.retrieval.bm25 import BM25Retriever
    from rankdistill.training.evaluator import RerankingEvaluator

    ds = load_dataset(data_dir / "scifact")
    qrels = ds.qrels("train")
    queries = ds.split_queries("train")
    queries = queries.subset(sorted(q for q in queries if q in qrels)[:4])
    run = BM25Retriever.from_corpus(ds.corpus).retrieve(queries, k=5)
    docs = {d: ds.corpus[d].full_text for q in run.query_ids for d in run[q]}
    ev = RerankingEvaluator(queries, run, docs, qrels, k=5, name="dev")
    model = load_encoder_student(minilm_dir, num_layers=1, max_length=64, seed=0)
    metrics = ev(model, steps=1)
    assert ev.primary_metric == "dev_nDCG@10" and 0.0 <= metrics["dev_nDCG@10"] <= 1.0
    assert metrics["dev_pairs_per_s"] > 0 and ev.history[-1]["step"] == 1
    # scored over the 4 dev queries only, not over every judged training query
    student_run, _ = ev.rerank(model)
    assert sorted(student_run.query_ids) == sorted(queries)
    subset = type(qrels)({q: qrels[q] for q in queries})
    assert metrics["dev_nDCG@10"] == pytest.approx(
        evaluate(student_run, subset, measures=("nDCG@10",))["nDCG@10"]
    )


STORE = {"label_store": "labels.sqlite", "dataset": "scifact"}


@pytest.mark.parametrize(
    ("losses", "student", "data", "message"),
    [
        (
            [{"name": "joint"}],
            {},
            {"jsonl": "x.jsonl"},
            r"losses\.0\.name: loss 'joint' trains the decoder student",
        ),
        (
            [{"name": "soft_bce"}, {"name": "st_margin_mse"}],
            {},
            {"jsonl": "x.jsonl"},
            r"losses\.1\.name: loss 'st_margin_mse' needs \(query, positive, negative",
        ),
        (
            [{"name": "mse"}],
            {"num_labels": 2},
            {"jsonl": "x.jsonl"},
            r"losses\.0\.name: loss 'mse' needs a student with 1 output label.*student\.num_labels is 2",
        ),
        (
            [{"name": "bce"}],
            {"num_labels": 2},
            {"jsonl": "x.jsonl"},
            r"losses\.0\.name: loss 'bce' needs a student with 1 output label",
        ),
        (
            [{"name": "listnet"}],
            {},
            {**STORE, "label": "logits"},
            r"losses\.0\.name: loss 'listnet' trains on scores.*phases\.0\.data\.label: logits",
        ),
        (
            [{"name": "inranker_mse"}],
            {},
            {**STORE, "label": "minmax"},
            r"losses\.0\.name: loss 'inranker_mse' trains on \[false, true\] logit pairs.*data\.label: minmax",
        ),
    ],
)
def test_config_refuses_a_loss_that_cannot_train_on_its_rows(tmp_path, losses, student, data, message):
    """Every registered loss passes validation only where it can train on the rows the config gives:
    these each failed at the first training step."""
    cfg = {
        "output_dir": str(tmp_path),
        "student": student,
        "losses": losses,
        "phases": [{"name": "p1", "data": data}],
    }
    with pytest.raises(RankdistillError, match=message):
        parse_config(cfg)


@pytest.mark.parametrize(
    ("loss", "labels", "message"),
    [
        (
            "inranker_mse",
            [0.9, 0.1],
            r"losses\.0\.name: loss 'inranker_mse' trains on \[false, true\] logit pairs",
        ),
        (
            "soft_bce",
            [3.0, -2.0],
            r"losses\.0\.name: loss 'soft_bce' trains on probabilities in \[0, 1\].*\[-2, 3\]",
        ),
        ("ranknet", [[0.0, 1.0], [1.0, 0.0]], r"losses\.0\.name: loss 'ranknet' trains on scores"),
    ],
)
def test_train_refuses_rows_a_loss_cannot_train_on_before_loading_the_model(tmp_path, loss, labels, message):
    """JSONL labels are known once read: the check runs before the student loads (here: none exists)."""
    from rankdistill.training.run import train_from_config

    rows = tmp_path / "rows.jsonl"
    write_pairs_jsonl(rows, [{"query": "q", "document": f"d{i}", "label": x} for i, x in enumerate(labels)])
    cfg = parse_config(
        {
            "output_dir": str(tmp_path / "out"),
            "student": {"base": str(tmp_path / "no-such-model")},
            "losses": [{"name": loss}],
            "phases": [{"name": "p1", "data": {"jsonl": str(rows)}}],
        }
    )
    with pytest.raises(RankdistillError, match=message) as err:
        train_from_config(cfg)
    assert "phase 'p1'" in str(err.value) and str(rows) in str(err.value)
