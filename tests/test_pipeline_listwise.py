"""`labels.kind: listwise | reasoning` in `rankdistill run`: rank-target rows from real permutations (the
pointwise teacher's order, Gemma 3 270M through llama.cpp, and an OpenAI-compatible server on 127.0.0.1
whose answers cannot be parsed), hard negatives, fallbacks, and the config checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankdistill.pipeline.config import ConfigError, parse_config
from rankdistill.pipeline.stages.listwise import rank_targets


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _config(tiny: dict, labels: dict, data_dir: Path, **train) -> dict:
    cfg = {
        **tiny,
        "dataset": {**tiny["dataset"], "data_dir": str(data_dir)},
        "labels": {**tiny["labels"], "depth": 6, **labels},
    }
    cfg["train"] = {**tiny["train"], **train}
    return cfg


def test_rank_targets_place_missing_documents_below_every_placed_one() -> None:
    # order 2, 0, then the missing 1 and 3 (the teacher appends them in input order)
    assert rank_targets([2, 0, 1, 3], [1, 3], 4) == [0.5, 0.0, 1.0, 0.0]
    assert rank_targets([0, 1, 2], [], 3) == pytest.approx([1.0, 2 / 3, 1 / 3])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"kind": "listwise"}, "labels: llm: listwise labels with ranker: llm need an LLM"),
        ({"kind": "reasoning", "llm": "nonsense"}, "labels.llm: cannot tell which backend serves 'nonsense'"),
        (
            {"kind": "listwise", "llm": "llamacpp:gemma3-270m", "depth": 100, "listwise": {"top_k": 40}},
            "listwise.top_k/bottom_k: 50 passages of up to 100 words need about",
        ),
        (
            {
                "kind": "listwise",
                "llm": {"backend": "llamacpp", "model": "gemma3-270m", "n_ctx": 1024},
                "listwise": {"method": "sliding_window", "window": 10, "step": 5},
            },
            "listwise.window: 10 passages of up to 100 words need about 1664 tokens, more than the LLM's "
            "context window of 1024",
        ),
        (
            {"kind": "listwise", "listwise": {"ranker": "teacher", "window": 5, "step": 5}},
            "step 5 must be smaller",
        ),
        ({"kind": "pairwise"}, "labels.kind: Input should be 'pointwise', 'listwise' or 'reasoning'"),
    ],
)
def test_config_checks_the_label_kind_combination(labels: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"dataset": {"name": "scifact"}, "labels": labels})
    assert message in str(err.value)


def test_a_listwise_config_without_llm_is_fine_when_the_teacher_ranks() -> None:
    cfg = parse_config(
        {"dataset": {"name": "scifact"}, "labels": {"kind": "listwise", "listwise": {"ranker": "teacher"}}}
    )
    assert cfg.labels.needs_pointwise and not cfg.labels.needs_llm


@pytest.mark.data
def test_teacher_permutations_become_rank_targets_mixed_with_pointwise(
    tmp_path: Path, data_dir: Path, minilm_dir: Path, tiny_pipeline: dict
) -> None:
    from rankdistill.pipeline.stages import run_pipeline

    labels = {"kind": "listwise", "listwise": {"ranker": "teacher", "top_k": 3, "bottom_k": 2}}
    cfg = parse_config(_config(tiny_pipeline, labels, data_dir))
    run_pipeline(cfg, run_dir=tmp_path / "run", until="labels")
    rows = _rows(tmp_path / "run" / "labels" / "train_queries.jsonl")
    by_query: dict[str, list[dict]] = {}
    for r in rows:
        by_query.setdefault(r["query_id"], []).append(r)
    assert len(by_query) == 4
    for group in by_query.values():
        assert len(group) == 5  # top 3 + bottom 2 of the top 6
        ranked = sorted(group, key=lambda r: r["rank"])
        # the permutation is the teacher's order, and targets fall from 1 to 1/5
        assert [r["teacher_score"] for r in ranked] == sorted(
            (r["teacher_score"] for r in group), reverse=True
        )
        assert [r["label"] for r in ranked] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
        assert not any(r["hard_negative"] for r in group)

    # half pointwise: each target is the mean of the rank target and the teacher's min-max score
    labels["pointwise_weight"] = 0.5
    cfg = parse_config(_config(tiny_pipeline, labels, data_dir))
    run_pipeline(cfg, run_dir=tmp_path / "run", until="labels")
    mixed = {
        (r["query_id"], r["doc_id"]): r["label"]
        for r in _rows(tmp_path / "run" / "labels" / "train_queries.jsonl")
    }
    for r in rows:
        assert 0.5 * r["label"] <= mixed[(r["query_id"], r["doc_id"])] <= 0.5 * r["label"] + 0.5


@pytest.mark.data
def test_unparsable_permutations_fall_back_to_pointwise_or_are_dropped_and_counted(
    tmp_path: Path, data_dir: Path, minilm_dir: Path, tiny_pipeline: dict
) -> None:
    from rankdistill.pipeline.stages import run_pipeline
    from test_llm_openai import Stub, completion

    # a real OpenAI-compatible server whose model answers every ranking prompt with prose, no identifier
    with Stub(lambda path, body: (200, completion("I am unable to rank these passages."), None)) as server:
        labels = {
            "kind": "listwise",
            "llm": {"backend": "openai", "model": "stub", "base_url": server.url, "max_retries": 0},
            "listwise": {"top_k": 3, "bottom_k": 2},
        }
        cfg = parse_config(_config(tiny_pipeline, labels, data_dir))
        results = {r.name: r for r in run_pipeline(cfg, run_dir=tmp_path / "fb", until="labels")}
        summary = results["labels"].summary["train_queries"]
        assert summary["failed"] == summary["fallback"] == 4 and summary["dropped"] == 0
        assert summary["listwise"]["no_answer_rate"] + summary["listwise"]["free_text_rate"] > 0
        rows = _rows(tmp_path / "fb" / "labels" / "train_queries.jsonl")
        assert len(rows) == 20 and all(r["rank"] is None and "teacher_score" in r for r in rows)

        cfg = parse_config(_config(tiny_pipeline, {**labels, "fallback": "drop"}, data_dir))
        results = {r.name: r for r in run_pipeline(cfg, run_dir=tmp_path / "drop", until="labels")}
        summary = results["labels"].summary["train_queries"]
        assert summary["failed"] == summary["dropped"] == 4 and summary["pairs"] == 0
        assert "teacher" not in results["labels"].summary  # no pointwise teacher ran


@pytest.mark.slow
@pytest.mark.data
def test_gemma_one_pass_labels_train_an_encoder_end_to_end_and_resume(
    tmp_path: Path, data_dir: Path, minilm_dir: Path, gemma_gguf: Path, tiny_pipeline: dict
) -> None:
    from rankdistill.pipeline.stages import run_pipeline

    labels = {
        "kind": "listwise",
        "llm": {"backend": "llamacpp", "model": str(gemma_gguf), "n_ctx": 2048},
        "listwise": {"top_k": 3, "bottom_k": 2, "max_passage_words": 60},
        "pointwise_weight": 0.25,
    }
    cfg = parse_config(_config(tiny_pipeline, labels, data_dir, losses=[{"name": "ranknet"}]))
    results = {r.name: r for r in run_pipeline(cfg, run_dir=tmp_path / "run")}
    assert all(r.status == "done" for r in results.values()), {n: r.status for n, r in results.items()}
    summary = results["labels"].summary["train_queries"]
    lw = summary["listwise"]
    assert lw["method"] == "one_pass" and lw["llm_calls_per_query"] == 1.0 and lw["computed"] == 4
    assert lw["prompt_tokens_per_query"] > 100
    rows = _rows(tmp_path / "run" / "labels" / "train_queries.jsonl")
    assert summary["hard_negatives"] == sum(r["hard_negative"] for r in rows)
    assert all(r["label"] <= 0.25 for r in rows if r["hard_negative"])  # 0.75 x 0 + 0.25 x min-max
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert {s["role"] for s in metrics["systems"]} >= {"baseline", "teacher", "student"}

    # a changed training setting reruns training only; the permutations come from the label store
    cfg = parse_config(_config(tiny_pipeline, labels, data_dir, losses=[{"name": "plistmle"}]))
    results = {r.name: r for r in run_pipeline(cfg, run_dir=tmp_path / "run")}
    assert results["labels"].status == "skipped" and results["train"].status == "done"
    cfg = parse_config(_config(tiny_pipeline, {**labels, "pointwise_weight": 0.0}, data_dir))
    results = {r.name: r for r in run_pipeline(cfg, run_dir=tmp_path / "run", until="labels")}
    lw = results["labels"].summary["train_queries"]["listwise"]
    assert lw["cached"] == 4 and lw["computed"] == 0


@pytest.mark.slow
@pytest.mark.data
def test_gemma_reasoning_labels_become_reasoning_and_comparison_rows(
    tmp_path: Path, data_dir: Path, minilm_dir: Path, gemma_gguf: Path, tiny_pipeline: dict
) -> None:
    from rankdistill.pipeline.stages import run_pipeline

    labels = {
        "kind": "reasoning",
        "llm": {"backend": "llamacpp", "model": str(gemma_gguf), "n_ctx": 2048},
        "listwise": {"top_k": 2, "bottom_k": 1, "max_passage_words": 40},
        "reasoning": {
            "explicit_depth": 1,
            "comparison_depth": 2,
            "comparison_window": 2,
            "max_retries": 0,
            "max_passage_words": 40,
        },
    }
    tiny = {
        **tiny_pipeline,
        "train_queries": {"split": "train", "max_queries": 2},
        "queries": {"method": "none"},
    }
    cfg = parse_config(_config(tiny, labels, data_dir))
    results = {r.name: r for r in run_pipeline(cfg, run_dir=tmp_path / "run", until="labels")}
    summary = results["labels"].summary["train_queries"]
    assert summary["explicit"]["labels"] == 2 and summary["comparison"]["labels"] == 2
    assert summary["explicit"]["ok"] + summary["explicit"]["failed"] == 2  # failures counted, not dropped
    rows = _rows(tmp_path / "run" / "labels" / "train_queries.jsonl")
    assert len(rows) == 6 and all("reasoning" in r for r in rows)
    with_reasoning = [r for r in rows if r["reasoning"]]
    assert len(with_reasoning) == summary["explicit"]["ok"]
    assert all(r["rank"] == 1 and "Relevance:" in r["reasoning"] for r in with_reasoning)
    comparisons = _rows(tmp_path / "run" / "labels" / "train_queries.comparisons.jsonl")
    assert len(comparisons) == summary["comparison_rows"]
    assert (len(comparisons) > 0) == (summary["comparison"]["ok"] > 0)
    for c in comparisons:
        assert c["better"] in ("A", "B") and c["reason"] and c["document_a"] != c["document_b"]


@pytest.mark.parametrize("name", ["quickstart", "listwise", "reasoning"])
def test_shipped_pipeline_configs_validate(name: str) -> None:
    from rankdistill.pipeline.config import load_config

    path = Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml"
    if not path.exists():
        pytest.fail(f"{path} is missing")
    cfg = load_config(path)
    assert cfg.name == name


def test_report_counts_repairs_and_failures_per_phase() -> None:
    from rankdistill.report.render import LABEL_HEADER, label_rows

    summary = {
        "kind": "reasoning",
        "backend": "local",
        "train_queries": {
            "queries": 3,
            "pairs": 24,
            "failed": 1,
            "fallback": 1,
            "dropped": 0,
            "hard_negatives": 5,
            "listwise": {"repairs": {"answers": 4, "answers_repaired": 2}, "truncated_rate": 0.25},
            "explicit": {"ok": 2, "failed": 1},
            "comparison": {"ok": 0, "failed": 3},
        },
        "synthetic": {"queries": 2, "pairs": 10, "seconds": 1.0},
    }
    rows = label_rows(summary)
    assert len(rows) == 2 and len(rows[0]) == len(LABEL_HEADER)
    assert rows[0] == [
        "train_queries",
        "reasoning",
        "3",
        "24",
        "1",
        "1",
        "0",
        "5",
        "2 / 4",
        "25%",
        "2 / 1",
        "0 / 3",
    ]
    assert rows[1][:4] == ["synthetic", "reasoning", "2", "10"] and set(rows[1][4:]) == {"–"}
