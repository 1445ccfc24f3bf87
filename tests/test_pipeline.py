"""The stage framework (content-hash skipping, --from, failures) with cheap real stages, and the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankdistill.pipeline.config import ConfigError, apply_overrides, load_config, parse_config
from rankdistill.pipeline.runner import MANIFEST, Pipeline, Stage, StageError, input_fingerprint, read_status


def _stages(calls: list[str], source: Path, fail: set[str] | None = None) -> list[Stage]:
    """Three small real stages: read a source file, transform it, count words. Each appends its name
    to `calls` when it actually runs."""
    fail = fail if fail is not None else set()

    def read(ctx):
        calls.append("read")
        (ctx.out / "text.txt").write_text(source.read_text())
        return {"chars": len(source.read_text())}

    def transform(ctx):
        calls.append("transform")
        if "transform" in fail:
            (ctx.out / "partial.txt").write_text("half")
            raise RuntimeError("boom")
        text = (ctx.stage_dir("read") / "text.txt").read_text()
        mode = ctx.config["mode"]
        out = text.upper() if mode in ("upper", "UPPER") else text.lower()
        (ctx.out / "text.txt").write_text(out)
        return {"mode": mode}

    def count(ctx):
        calls.append("count")
        text = (ctx.stage_dir("transform") / "text.txt").read_text()
        (ctx.out / "count.json").write_text(json.dumps({"words": len(text.split())}))
        return {"words": len(text.split())}

    return [
        Stage("read", read, external=lambda cfg: input_fingerprint(source)),
        # settings deliberately ignore the case of `mode`, so "upper" -> "UPPER" reruns nothing;
        # `transform_version` changes the settings but not the output
        Stage(
            "transform",
            transform,
            settings=lambda cfg: {"mode": cfg["mode"].lower(), "v": cfg["v"]},
            after=("read",),
        ),
        Stage("count", count, after=("transform",)),
    ]


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    p = tmp_path / "source.txt"
    p.write_text("Hello distilled world")
    return p


def _run(tmp_path, source, cfg, calls, **kw):
    fail = kw.pop("fail", None)
    return Pipeline(_stages(calls, source, fail), cfg, tmp_path / "run").run(**kw)


def test_second_run_skips_unchanged_stages(tmp_path: Path, source: Path) -> None:
    calls: list[str] = []
    cfg = {"mode": "upper", "v": 1}
    results = _run(tmp_path, source, cfg, calls)
    assert calls == ["read", "transform", "count"]
    assert [r.status for r in results] == ["done", "done", "done"]
    run_dir = tmp_path / "run"
    assert (run_dir / "transform" / "text.txt").read_text() == "HELLO DISTILLED WORLD"
    manifest = json.loads((run_dir / "count" / MANIFEST).read_text())
    assert manifest["outputs"]["count.json"]["size"] > 0 and manifest["summary"] == {"words": 3}
    assert not list(run_dir.glob(".*.tmp"))

    calls.clear()
    results = _run(tmp_path, source, cfg, calls)
    assert calls == []
    assert [r.status for r in results] == ["skipped"] * 3
    assert [s["status"] for s in read_status(run_dir)] == ["skipped"] * 3


def test_changed_settings_rerun_that_stage_and_only_what_changed_after(tmp_path: Path, source: Path) -> None:
    calls: list[str] = []
    _run(tmp_path, source, {"mode": "upper", "v": 1}, calls)
    calls.clear()
    # new settings for transform; same output, so count (which hashes transform's outputs) stays skipped
    results = _run(tmp_path, source, {"mode": "upper", "v": 2}, calls)
    assert calls == ["transform"]
    assert [r.status for r in results] == ["skipped", "done", "skipped"]
    calls.clear()
    # new output: count reruns too
    _run(tmp_path, source, {"mode": "lower", "v": 2}, calls)
    assert calls == ["transform", "count"]
    assert (tmp_path / "run" / "transform" / "text.txt").read_text() == "hello distilled world"


def test_external_input_change_and_missing_output_rerun(tmp_path: Path, source: Path) -> None:
    calls: list[str] = []
    cfg = {"mode": "upper", "v": 1}
    _run(tmp_path, source, cfg, calls)
    calls.clear()
    source.write_text("Different words here now")
    _run(tmp_path, source, cfg, calls)
    assert calls == ["read", "transform", "count"]
    assert json.loads((tmp_path / "run" / "count" / "count.json").read_text()) == {"words": 4}
    calls.clear()
    (tmp_path / "run" / "transform" / "text.txt").unlink()
    _run(tmp_path, source, cfg, calls)
    assert calls == ["transform"]  # same output again: count is still current


def test_from_forces_that_stage_and_later(tmp_path: Path, source: Path) -> None:
    calls: list[str] = []
    cfg = {"mode": "upper", "v": 1}
    _run(tmp_path, source, cfg, calls)
    calls.clear()
    results = _run(tmp_path, source, cfg, calls, from_stage="transform")
    assert calls == ["transform", "count"]
    assert [r.status for r in results] == ["skipped", "done", "done"]
    calls.clear()
    results = _run(tmp_path, source, cfg, calls, until="read", from_stage="read")
    assert calls == ["read"]
    assert [r.status for r in results] == ["done", "not run", "not run"]
    with pytest.raises(Exception, match="unknown stage 'trian'"):
        _run(tmp_path, source, cfg, calls, from_stage="trian")


def test_failed_stage_keeps_earlier_and_previous_outputs(tmp_path: Path, source: Path) -> None:
    calls: list[str] = []
    run_dir = tmp_path / "run"
    _run(tmp_path, source, {"mode": "upper", "v": 1}, calls)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "pipeline.json"}
    calls.clear()
    with pytest.raises(StageError, match="stage 'transform' failed: RuntimeError: boom") as info:
        _run(tmp_path, source, {"mode": "lower", "v": 1}, calls, fail={"transform"})
    assert info.value.stage == "transform"
    assert calls == ["transform"]
    after = {
        p: p.read_bytes()
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != "pipeline.json" and ".transform.tmp" not in str(p)
    }
    assert after == before  # read, the old transform and count: untouched
    assert [s["status"] for s in read_status(run_dir)] == ["skipped", "failed", "not run"]
    # the failed attempt's folder is kept for inspection and resuming; the next good run replaces it
    assert (run_dir / ".transform.tmp" / "partial.txt").exists()
    calls.clear()
    _run(tmp_path, source, {"mode": "lower", "v": 1}, calls)
    assert calls == ["transform", "count"]
    assert not (run_dir / ".transform.tmp").exists()
    # same inputs as the failed attempt: its folder was reused (how resume journals survive a failure)
    assert (run_dir / "transform" / "partial.txt").exists()


def test_failure_on_first_run_leaves_earlier_stages_for_the_rerun(tmp_path: Path, source: Path) -> None:
    calls: list[str] = []
    with pytest.raises(StageError):
        _run(tmp_path, source, {"mode": "upper", "v": 1}, calls, fail={"transform"})
    assert (tmp_path / "run" / "read" / MANIFEST).exists()
    assert not (tmp_path / "run" / "transform").exists()
    calls.clear()
    _run(tmp_path, source, {"mode": "upper", "v": 1}, calls)
    assert calls == ["transform", "count"]


# -- config -------------------------------------------------------------------------------------------


def test_config_defaults_and_overrides() -> None:
    cfg = parse_config({"dataset": {"name": "scifact"}})
    assert cfg.labels.teacher == "bm25+minilm" and cfg.labels.backend == "local"
    assert str(cfg.resolved_run_dir) == "runs/run"
    data = apply_overrides(
        {"dataset": {"name": "scifact"}},
        ["labels.backend=ray", "queries.n_docs=50", "evaluate.teacher=false"],
    )
    cfg = parse_config(data)
    assert cfg.labels.backend == "ray" and cfg.queries.querygen_config(3).n_docs == 50
    assert cfg.evaluate.teacher is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, r"dataset: Field required"),
        (
            {"dataset": {"name": "scifact"}, "labels": {"backend": "spark"}},
            r"labels\.backend: Input should be 'local' or 'ray'",
        ),
        (
            {"dataset": {"name": "scifact"}, "labels": {"depht": 3}},
            r"labels\.depht: Extra inputs are not permitted",
        ),
        (
            {"dataset": {"name": "scifact"}, "bm25": {"k": 0}},
            r"bm25\.k: Input should be greater than or equal to 1",
        ),
        (
            {"dataset": {"name": "scifact"}, "labels": {"teacher": "oracle"}},
            r"labels\.teacher: unknown teacher 'oracle'",
        ),
        ({"dataset": {"name": "scifact"}, "queries": {"n_doc": 5}}, r"queries: unknown key\(s\) \['n_doc'\]"),
        ({"dataset": {"name": "scifact"}, "queries": {"method": "magic"}}, r"queries: method 'magic'"),
        (
            {"dataset": {"name": "scifact"}, "evaluate": {"measures": ["nDCG@x"]}},
            r"evaluate\.measures: unknown measure",
        ),
        (
            {"dataset": {"name": "scifact"}, "train": {"training": {"batch_size": 0}}},
            r"train: training\.batch_size: Input should be greater than or equal to 1",
        ),
        (
            {"dataset": {"name": "scifact"}, "train_queries": {"split": None}, "queries": {"method": "none"}},
            r"no training queries",
        ),
        ([1, 2], r"expected a mapping"),
    ],
)
def test_config_errors_name_the_key(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data, "my.yaml")


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {name: scifact\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("dataset: {name: scifact}\nlabels: {depth: 5}\n")
    assert load_config(good, ["labels.depth=7"]).labels.depth == 7


# -- stage helpers ------------------------------------------------------------------------------------


def test_rerank_tail_keeps_first_stage_order_below() -> None:
    from rankdistill.data.types import Run
    from rankdistill.pipeline.stages.evaluate import _with_tail

    first = Run({"q": {"a": 9.0, "b": 8.0, "c": 7.0, "d": 6.0}})
    reranked = Run({"q": {"a": 0.1, "b": 0.9}})  # reranker saw the top 2 only
    out = _with_tail(reranked, first)
    assert [d for d, _ in out.ranked("q")] == ["b", "a", "c", "d"]


def test_row_sampling_keeps_teacher_top_and_random_rest() -> None:
    from rankdistill.pipeline.stages.labels import _sample_rows
    from rankdistill.teachers import Candidate, PointwiseLabel

    cands = [Candidate(q, q, f"d{i}", "text") for q in ("q1", "q2") for i in range(10)]
    labels = [PointwiseLabel(float(i % 10)) for i in range(20)]
    keep = _sample_rows(cands, labels, per_query=5, top=2, seed=0)
    assert len(keep) == 10
    assert {9, 8, 19, 18} <= keep  # each query's two best by the teacher
    assert keep == _sample_rows(cands, labels, per_query=5, top=2, seed=0)
    assert _sample_rows(cands, labels, per_query=None, top=2, seed=0) is None


def test_count_parameters_from_safetensors_header(minilm_dir: Path) -> None:
    from rankdistill.pipeline.stages.common import count_parameters

    assert 22_000_000 < count_parameters(minilm_dir) < 23_000_000  # all-MiniLM-L6-v2: 22.7M


def _tiny_queries_config(tiny: dict, data_dir: Path, queries: dict, labels: dict | None = None) -> dict:
    return {
        **tiny,
        "dataset": {**tiny["dataset"], "data_dir": str(data_dir)},
        "queries": {**tiny["queries"], **queries},
        "labels": {**tiny["labels"], **(labels or {})},
    }


@pytest.mark.data
def test_inpars_v2_teacher_filter_runs_in_the_pipeline(
    tmp_path: Path, data_dir: Path, minilm_dir: Path, tiny_pipeline: dict
) -> None:
    """`queries.filter: teacher` scores each (query, source document) pair with labels.teacher (or
    queries.teacher) through the run's label store, and keeps the best: it passed `run --check` and then
    failed in the queries stage, which passed no teacher."""
    from rankdistill.labels import LabelStore
    from rankdistill.pipeline.stages import run_pipeline

    filtered = {"filter": "teacher", "keep_top_k": 2}
    cfg = parse_config(_tiny_queries_config(tiny_pipeline, data_dir, filtered, {"teacher": "minilm"}))
    results = {r.name: r for r in run_pipeline(cfg, run_dir=tmp_path / "run", until="queries")}
    summary = results["queries"].summary
    assert summary["raw_queries"] == 4 and summary["queries"] == 2
    stats = json.loads((tmp_path / "run" / "queries" / "stats.json").read_text())
    assert stats["after_filter"] == 2 and stats["teacher"]["teacher"] == "bi-encoder"
    with LabelStore(
        tmp_path / "run" / "labels.sqlite"
    ) as store:  # cached: a rerun or the labels stage reuses them
        assert len(store) == 4


def test_teacher_filter_needs_a_teacher_that_scores_pairs_alone() -> None:
    """An ensemble (the default labels.teacher, bm25+minilm) normalises per query: with one pair a query
    every score ties; `run --check` refuses it and names queries.teacher."""
    base = {
        "dataset": {"name": "scifact"},
        "queries": {"method": "title", "filter": "teacher", "keep_share": 0.5},
    }
    with pytest.raises(ConfigError, match=r"queries\.teacher: .*'bm25\+minilm'.*ensemble"):
        parse_config(base)
    with pytest.raises(ConfigError, match=r"queries\.teacher: .*first-stage"):
        parse_config({**base, "queries": {**base["queries"], "teacher": "bm25"}})
    with pytest.raises(ConfigError, match=r"queries\.teacher: unknown teacher 'nope'"):
        parse_config({**base, "queries": {**base["queries"], "teacher": "nope"}})
    cfg = parse_config({**base, "queries": {**base["queries"], "teacher": "minilm"}})
    assert cfg.query_filter_teacher == "minilm"
    assert parse_config({**base, "labels": {"teacher": "minilm"}}).query_filter_teacher == "minilm"
    assert parse_config({"dataset": {"name": "scifact"}}).query_filter_teacher is None


def test_run_check_knows_the_split_of_an_ir_datasets_id() -> None:
    from rankdistill.pipeline.config import check_dataset

    cfg = parse_config({"dataset": {"name": "irds:beir/scifact/test"}})
    with pytest.raises(
        ConfigError, match=r"train_queries\.split: no split 'train' in irds:beir/scifact/test"
    ):
        check_dataset(cfg)
    check_dataset(
        parse_config({"dataset": {"name": "irds:beir/scifact/test"}, "train_queries": {"split": None}})
    )


@pytest.mark.parametrize(
    ("labels", "losses", "message"),
    [
        (
            {},
            [{"name": "inranker_mse"}],
            r"train\.losses\.0\.name: loss 'inranker_mse' trains on \[false, true\].*labels\.target: minmax",
        ),
        (
            {"target": "logits"},
            [{"name": "ranknet"}],
            r"train\.losses\.0\.name: loss 'ranknet' trains on scores.*labels\.target: logits",
        ),
        (
            {"kind": "listwise", "listwise": {"ranker": "teacher"}, "target": "logits"},
            [{"name": "inranker_mse"}],
            r"train\.losses\.0\.name: .*labels\.kind: listwise",
        ),
        ({}, [{"name": "joint"}], r"train: losses\.0\.name: loss 'joint' trains the decoder student"),
    ],
)
def test_config_refuses_a_loss_the_labels_cannot_train(labels: dict, losses: list, message: str) -> None:
    """The rows' label kind follows from labels.kind and labels.target, so `run --check` knows it."""
    data = {"dataset": {"name": "scifact"}, "labels": labels, "train": {"losses": losses}}
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_config_accepts_the_losses_that_fit_the_labels() -> None:
    parse_config(
        {
            "dataset": {"name": "scifact"},
            "labels": {"target": "logits"},
            "train": {"losses": [{"name": "inranker_mse"}]},
        }
    )
    # raw scores: their range is known only once labelled; the train stage checks it before training
    parse_config(
        {
            "dataset": {"name": "scifact"},
            "labels": {"target": "score"},
            "train": {"losses": [{"name": "soft_bce"}]},
        }
    )
    parse_config(
        {
            "dataset": {"name": "scifact"},
            "labels": {"kind": "listwise", "listwise": {"ranker": "teacher"}},
            "train": {"losses": [{"name": "ranknet"}]},
        }
    )


def test_teacher_parameters_of_hf_and_http_llm_teachers(minilm_dir: Path, tmp_path: Path) -> None:
    """An HF-backend LLM teacher counts the parameters of the model it loaded; an HTTP one's are unknown,
    and the evaluate stage says "unknown (API)" (it said nothing for either)."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from rankdistill.llm import load_llm
    from rankdistill.llm.openai_compat import OpenAICompatLLM
    from rankdistill.pipeline.stages.common import teacher_parameters
    from rankdistill.teachers import EnsembleTeacher, FirstStageTeacher, TrueFalseTeacher

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    cfg = T5Config(vocab_size=len(tok), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id,
                   decoder_start_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(cfg)
    model.save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    hf = TrueFalseTeacher(load_llm({"backend": "hf", "model": str(tmp_path / "t5"), "dtype": "fp32"}))
    try:
        assert teacher_parameters(hf) == model.num_parameters() > 0
        from rankdistill.pipeline.stages.common import API_PARAMETERS, parameters_note

        assert parameters_note(hf) is None
    finally:
        hf.close()
    http = TrueFalseTeacher(OpenAICompatLLM("http://127.0.0.1:9/v1", "some-model", max_retries=0))
    assert teacher_parameters(http) is None and parameters_note(http) == API_PARAMETERS == "unknown (API)"
    ensemble = EnsembleTeacher([FirstStageTeacher(), http])
    assert teacher_parameters(ensemble) is None and parameters_note(ensemble) == "unknown (API)"
