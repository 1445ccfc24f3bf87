"""`rankdistill train` with `student.type: decoder`: the config, the pair and comparison JSONL it reads,
and (real Gemma 3 270M) a two-phase run that trains on ranking, explicit and comparison reasoning, saves,
reloads through `Reranker.load`, scores, explains and compares, and resumes without retraining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rankdistill.errors import DataError, RankdistillError
from rankdistill.training.config import DECODER_LEARNING_RATE, parse_config

BASE = {"output_dir": "out", "phases": [{"name": "one", "data": {"jsonl": "pairs.jsonl"}}]}

PAIRS = [
    # query, document, label, reasoning (the labels stage's explicit target: "<reasoning> Relevance: <g>")
    ("q1", "what causes tides", "The moon's gravity pulls the oceans and causes tides.", 0.9,
     "The moon's gravity is the cause of tides. Relevance: 2"),
    ("q1", "what causes tides", "Paris is the capital of France.", 0.1, "It is about Paris. Relevance: 0"),
    ("q2", "how do vaccines work", "Bananas are rich in potassium.", 0.0, None),
    ("q2", "how do vaccines work", "Vaccines train the immune system to fight a virus.", 1.0,
     "It says vaccines train the immune system. Relevance: 2"),
    ("q3", "boiling point of water", "Water boils at 100 degrees Celsius at sea level.", 0.8, None),
    ("q3", "boiling point of water", "The stock market fell on Monday.", 0.2, None),
]  # fmt: skip
COMPARISONS = [
    {"query_id": "q1", "query": "what causes tides", "document_a": PAIRS[1][2], "document_b": PAIRS[0][2],
     "better": "B", "reason": "B explains that the moon's gravity causes tides; A is about Paris."},
    {"query_id": "q2", "query": "how do vaccines work", "document_a": PAIRS[3][2], "document_b": PAIRS[2][2],
     "better": "A", "reason": "A says how vaccines train the immune system; B is about bananas."},
]  # fmt: skip


def _write_pairs(path: Path, rows=PAIRS) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for qid, q, d, label, reason in rows:
            row = {"query_id": qid, "query": q, "doc_id": f"{qid}-{d[:5]}", "document": d, "label": label}
            row["teacher_score"] = label * 10 - 5
            if reason is not None or qid == "q2":  # the key may be there as null, or absent
                row["reasoning"] = reason
            f.write(json.dumps(row) + "\n")
    return path


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- config
def test_decoder_config_defaults_and_encoder_configs_unchanged():
    enc = parse_config({**BASE, "student": {"base": "minilm", "num_layers": 2}})
    assert enc.student.type == "encoder" and enc.student.num_layers == 2
    assert enc.training.learning_rate == 5e-5
    dec = parse_config({**BASE, "student": {"type": "decoder", "lora_r": 4, "rank_loss": "plistmle"}})
    assert dec.student.backbone == "gemma3-270m" and dec.student.lora_r == 4
    assert dec.student.decoder_config() == {
        "backbone": "gemma3-270m",
        "max_query_tokens": 32,
        "max_doc_tokens": 160,
        "max_reasoning_tokens": 64,
        "lora_r": 4,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
    }
    assert dec.training.learning_rate == DECODER_LEARNING_RATE  # LoRA's default, not the encoder's
    given = parse_config({**BASE, "student": {"type": "decoder"}, "training": {"learning_rate": 1e-3}})
    assert given.training.learning_rate == 1e-3
    # a dumped config (what the pipeline's launcher writes) validates to the same config
    assert parse_config(dec.model_dump(mode="json")) == dec


@pytest.mark.parametrize(
    ("student", "extra", "message"),
    [
        ({"rank_loss": "listnet"}, {}, r"student: 'rank_loss' is a setting of the decoder student"),
        ({"type": "decoder", "num_layers": 2}, {}, r"student: 'num_layers' is a setting of the encoder"),
        ({"type": "decoder", "lora_r": "four"}, {}, r"student\.lora_r: Input should be a valid integer"),
        ({"type": "decoder", "rank_loss": "lambda"}, {}, r"student\.rank_loss: Input should be 'mse'"),
        ({"type": "decoder", "top": 9, "group_size": 4}, {}, r"top \(9\) is more than group_size \(4\)"),
        ({"type": "decoder", "prompt": "{document}? {query}"}, {}, r"prompt must contain \{query\} then"),
        ({"type": "transformer"}, {}, r"student: type: expected 'encoder' \(the default\) or 'decoder'"),
        ({"type": "decoder"}, {"losses": [{"name": "mse"}]}, r"losses: the decoder student trains with"),
        ({"type": "decoder"}, {"dev": {"dataset": "scifact"}}, r"dev: no dev evaluation"),
        (
            {},
            {"phases": [{"name": "one", "data": {"jsonl": "p.jsonl", "comparisons": "c.jsonl"}}]},
            r"data\.comparisons \(comparison reasoning\) trains the decoder student only",
        ),
    ],
)
def test_bad_student_keys_are_named(student, extra, message):
    with pytest.raises(RankdistillError, match=message):
        parse_config({**BASE, "student": student, **extra})


# ---------------------------------------------------------------------------------------------- data
def test_pair_rows_become_query_groups_and_comparisons_items(tmp_path):
    from rankdistill.training.decoder import ComparisonGroup, DecoderExample
    from rankdistill.training.run import decoder_phase_items

    pairs = _write_pairs(tmp_path / "pairs.jsonl")
    comparisons = _write_jsonl(tmp_path / "c.jsonl", COMPARISONS)
    cfg = parse_config(
        {
            **BASE,
            "student": {"type": "decoder", "group_size": 4, "top": 1},
            "phases": [{"name": "one", "data": {"jsonl": str(pairs), "comparisons": str(comparisons)}}],
        }
    )
    items = decoder_phase_items(cfg.phases[0].data, cfg.student, seed=0)
    groups = [x for x in items if isinstance(x, DecoderExample)]
    assert [g.query for g in groups] == [
        "what causes tides",
        "how do vaccines work",
        "boiling point of water",
    ]
    assert groups[0].scores == [0.9, 0.1] and groups[1].documents[0].startswith("Vaccines")  # best first
    assert groups[0].reasonings[0].endswith("Relevance: 2") and groups[2].reasonings is None
    cmp = [x for x in items if isinstance(x, ComparisonGroup)]
    assert [len(c.comparisons) for c in cmp] == [2]  # group_size // 2 comparisons an item
    assert cmp[0].comparisons[0].target.startswith("B. B explains")

    # max_rows keeps whole queries; comparison_weight 0 leaves comparisons out
    capped = cfg.phases[0].data.model_copy(update={"max_rows": 4})
    student = cfg.student.model_copy(update={"comparison_weight": 0.0})
    items = decoder_phase_items(capped, student, seed=0)
    assert len(items) == 2 and all(isinstance(x, DecoderExample) and len(x.documents) == 2 for x in items)


def test_logit_pair_labels_train_as_log_odds(tmp_path):
    from rankdistill.training.decoder import read_decoder_pairs

    path = _write_jsonl(tmp_path / "p.jsonl", [{"query": "q", "doc": "d", "label": [-1.0, 2.5]}])
    assert read_decoder_pairs(path)[0]["label"] == 3.5


@pytest.mark.parametrize(
    ("reader", "row", "message"),
    [
        (
            "pairs",
            {"query": "q", "document": "d", "label": 1, "reasoning": 3},
            r"'reasoning' must be a string",
        ),
        ("pairs", {"query": "q", "document": "", "label": 1}, r"'document' must be a non-empty string"),
        ("pairs", {"query": "q", "document": "d", "label": True}, r"'label' must be a number"),
        ("comparisons", {**COMPARISONS[0], "better": "C"}, r"'better' must be \"A\" or \"B\""),
        (
            "comparisons",
            {k: v for k, v in COMPARISONS[0].items() if k != "reason"},
            r"missing field 'reason'",
        ),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, reader, row, message):
    from rankdistill.training.decoder import read_comparisons, read_decoder_pairs

    good = {"query": "q", "document": "d", "label": 1.0} if reader == "pairs" else COMPARISONS[1]
    path = _write_jsonl(tmp_path / "rows.jsonl", [good, row])
    read = read_decoder_pairs if reader == "pairs" else read_comparisons
    with pytest.raises(DataError, match=message) as err:
        read(path)
    assert str(err.value).startswith(f"{path}:2: ")


def test_parse_explanations_and_comparisons():
    from rankdistill.students.decoder import comparison_target, parse_comparison, parse_explanation

    assert parse_explanation("It names the cause of tides. Relevance: 2") == (
        "It names the cause of tides.",
        2.0,
    )
    assert parse_explanation("It names the cause. Relevance: 1.") == ("It names the cause.", 1.0)
    assert parse_explanation("It names the cause of tides.")[1] is None
    assert parse_explanation("Relevance: 2")[1] is None  # a verdict without reasoning
    assert parse_comparison(comparison_target("B", "it  names\nthe cause")) == ("B", "it names the cause")
    assert parse_comparison("A) the first one") == ("A", "the first one")
    assert parse_comparison("Document B: it explains tides")[0] == "B"
    assert parse_comparison("(B) it does") == ("B", "it does") and parse_comparison(" A") == ("A", "")
    assert parse_comparison("Both are about tides")[0] is None  # "Both" is not "B"
    assert parse_comparison("A relevant document")[0] is None  # an article, not a choice
    assert parse_comparison("")[0] is None


def test_pipeline_train_stage_passes_comparisons_to_a_decoder(tmp_path):
    from rankdistill.pipeline.stages.train import train_phases

    for name in ("train_queries.jsonl", "train_queries.comparisons.jsonl", "synthetic.jsonl"):
        (tmp_path / name).write_text("{}\n")
    decoder = train_phases(tmp_path, max_rows=100, comparisons=True)
    assert [p["name"] for p in decoder] == ["train_queries", "synthetic"]
    assert decoder[0]["data"]["comparisons"] == str(tmp_path / "train_queries.comparisons.jsonl")
    assert "comparisons" not in decoder[1]["data"]
    assert all("comparisons" not in p["data"] for p in train_phases(tmp_path, None))  # an encoder


def test_report_lists_the_explanation_measures(tmp_path):
    from rankdistill.report import parse_results
    from rankdistill.report.render import explanation_lines, render_markdown

    explained = {"sample": 16, "explicit_parsed": 0.75, "comparisons": 16, "comparison_parsed": 0.5}
    results = parse_results(
        {
            "measures": ["nDCG@10"],
            "systems": [
                {"name": "BM25", "role": "baseline", "metrics": {"nDCG@10": 0.5}},
                {
                    "name": "student",
                    "role": "student",
                    "metrics": {"nDCG@10": 0.6},
                    "explanations": explained,
                },
            ],
        }
    )
    [line] = explanation_lines(results)
    assert "75% of 16 explanations" in line and "50% of 16 comparisons" in line and "– of those" in line
    assert "## Explanations" in render_markdown(results, [], "figures", "", "t")


# ------------------------------------------------------------------------- training (real Gemma 3)
# One training run (the module fixture) serves every test below: `slow`, as the other decoder training
# tests, since the run alone is most of a minute on two shared cores.
@pytest.fixture(scope="module")
def trained(gemma_gguf, tmp_path_factory):
    """Two phases from a YAML config through the `rankdistill train` command: ranking groups, explicit
    reasoning and comparisons in phase one, pairs alone in phase two."""
    pytest.importorskip("peft")
    import torch
    from typer.testing import CliRunner

    from rankdistill.cli import app

    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("decoder-train")
    config = {
        "output_dir": str(tmp / "run"),
        "seed": 0,
        "student": {
            "type": "decoder",
            "backbone": str(gemma_gguf),
            "max_query_tokens": 12,
            "max_doc_tokens": 20,
            "max_reasoning_tokens": 12,
            "lora_r": 4,
            "group_size": 2,
            "top": 1,
            "temperature": 0.1,
            "head_learning_rate": 3e-2,
        },
        "phases": [
            {
                "name": "one",
                "data": {
                    "jsonl": str(_write_pairs(tmp / "pairs.jsonl")),
                    "comparisons": str(_write_jsonl(tmp / "pairs.comparisons.jsonl", COMPARISONS)),
                },
            },
            {"name": "two", "data": {"jsonl": str(_write_pairs(tmp / "two.jsonl", PAIRS[4:]))}},
        ],
        # 3 items a step: one epoch of phase one (3 groups, 2 comparison items) is 2 steps, of phase two 1
        "training": {"batch_size": 6, "warmup_ratio": 0, "logging_steps": 1, "save_steps": 2},
    }  # fmt: skip
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    return path, tmp / "run"


@pytest.fixture(scope="module")
def reloaded(trained):
    from rankdistill import Reranker

    return Reranker.load(trained[1] / "final")  # bf16 where the CPU has it, as the evaluate stage loads it


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(1800)  # with the training fixture ~1 min on an idle 2-core CPU, more when it is shared
def test_decoder_trains_from_a_config_and_reloads_as_a_reranker(trained, reloaded):
    _, run = trained
    one = json.loads((run / "one" / "phase_done.json").read_text())
    assert one["groups"] == 3 and one["comparisons"] == 2 and one["steps"] == 2
    logged = [h for h in one["log_history"] if "loss" in h]
    assert len(logged) == 2 and all(h["rank_loss"] > 0 for h in logged if "rank_loss" in h)
    # the comparison reasoning is a real LM target: its term is in the logs of the steps that had some
    assert any(h.get("comparison_loss", 0) > 0 for h in logged) and any("lm_loss" in h for h in logged)
    assert (run / "one" / "checkpoint-2" / "checkpoint_complete.json").is_file()
    two = json.loads((run / "two" / "phase_done.json").read_text())
    assert two["groups"] == 1 and two["comparisons"] == 0 and two["steps"] == 1

    meta = json.loads((run / "final" / "rankdistill.json").read_text())
    assert meta["student_type"] == "decoder" and meta["weights"] == "adapter"
    assert [p["name"] for p in meta["training"]["phases"]] == ["one", "two"]
    assert meta["training"]["loss"]["comparison_weight"] == 0.5

    pairs = [(q, d) for _, q, d, _, _ in PAIRS]
    scores = reloaded.score(pairs)
    assert len(scores) == 6 and len(set(scores)) > 1
    reloaded.explain_tokens = 3  # decoding is slow on a shared CPU; a few tokens show it works
    [explained] = reloaded.explain(PAIRS[0][1], [PAIRS[0][2]])
    assert explained["type"] == "reasoning" and explained["reasoning"] and "relevance" in explained
    compared = reloaded.compare(PAIRS[0][1], PAIRS[0][2], PAIRS[1][2])
    assert compared["type"] == "comparison" and compared["text"] and compared["better"] in ("A", "B", None)


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_comparisons_change_the_joint_loss(reloaded):
    import torch

    from rankdistill.training.decoder import ComparisonExample, DecoderCollator, DecoderExample
    from rankdistill.training.losses.joint import JointRankLMLoss

    student = reloaded.student
    loss = JointRankLMLoss(student, rank_loss="listnet", comparison_weight=0.5)
    group = DecoderExample(PAIRS[0][1], [PAIRS[0][2], PAIRS[1][2]], [0.9, 0.1], [PAIRS[0][4], None])
    comparison = ComparisonExample(**{k: COMPARISONS[0][k] for k in ("query", "document_a", "document_b")},
                                   better="B", reason=COMPARISONS[0]["reason"])  # fmt: skip

    def value(items):
        batch = DecoderCollator(student)(items)
        labels = batch.pop("labels")
        with torch.no_grad():
            return float(loss(batch, labels)), dict(loss.last_terms)

    alone, terms = value([group])
    both, with_terms = value([group, comparison])
    only, only_terms = value([comparison])
    assert "comparison_loss" not in terms and with_terms["comparison_loss"] > 0
    assert both == pytest.approx(alone + 0.5 * with_terms["comparison_loss"], rel=1e-4)
    assert set(only_terms) == {"comparison_loss"} and only == pytest.approx(
        0.5 * only_terms["comparison_loss"]
    )


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_explanation_measures_of_the_evaluate_stage(reloaded):
    from rankdistill.data.types import Run
    from rankdistill.pipeline.stages.evaluate import explanation_measures
    from rankdistill.teachers.base import Candidate

    candidates = [Candidate(qid, q, f"{qid}-{i}", d) for i, (qid, q, d, _, _) in enumerate(PAIRS)]
    run = Run({})
    for c, (_, _, _, label, _) in zip(candidates, PAIRS, strict=True):
        run.scores.setdefault(c.query_id, {})[c.doc_id] = label
    measured = explanation_measures(reloaded.student, candidates, run, n=3, seed=0, max_new_tokens=3)
    assert measured["sample"] == 3 and measured["comparisons"] == 3
    for key in ("explicit_parsed", "comparison_parsed"):
        assert 0 <= measured[key] <= 1
    assert measured["comparison_agrees"] is None or 0 <= measured["comparison_agrees"] <= 1
    assert len(measured["examples"]["explicit"]) == 2 and measured["examples"]["comparison"][0]["text"]


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_finished_run_resumes_without_training_again(trained):
    """A second run of the same config loads its done phases (no training step) and saves the same
    student; a phase killed after its last checkpoint continues from that checkpoint."""
    import shutil

    from safetensors.torch import load_file

    from rankdistill.training.config import load_config
    from rankdistill.training.run import train_from_config

    path, run = trained
    adapter = run / "final" / "adapter" / "adapter_model.safetensors"
    before = load_file(adapter)
    stamp = (run / "one" / "phase_done.json").stat().st_mtime_ns
    final = train_from_config(load_config(path))
    assert (run / "one" / "phase_done.json").stat().st_mtime_ns == stamp
    after = load_file(final / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and all((before[k] == after[k]).all() for k in before)

    # as if killed after phase one's last checkpoint: it resumes there (no step left), phase two reruns
    (run / "one" / "phase_done.json").unlink()
    shutil.rmtree(run / "two")
    train_from_config(load_config(path))
    one = json.loads((run / "one" / "phase_done.json").read_text())
    assert one["steps"] == 2 and len([h for h in one["log_history"] if "loss" in h]) == 2
    again = load_file(final / "adapter" / "adapter_model.safetensors")
    assert all(torch_allclose(before[k], again[k]) for k in before)


def torch_allclose(a, b) -> bool:
    import torch

    return torch.allclose(a.float(), b.float(), atol=1e-3, rtol=1e-2)
