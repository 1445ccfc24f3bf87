"""Hybrid students (`rankdistill.students.hybrid`): a real MiniLM cross-encoder whose score adds a learned
weight times the min-max scaled first-stage score, trained, checkpointed, resumed, saved and reranked."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rankdistill.data.types import Run
from rankdistill.errors import DataError, RankdistillError
from rankdistill.students.hybrid import (
    FirstStageMix,
    least_squares_weight,
    mix_from_metadata,
    mix_of,
    normalise_first_stage,
)

QUERY = "vitamin C deficiency causes scurvy"
DOCS = [
    "Scurvy is a disease resulting from a lack of vitamin C (ascorbic acid).",
    "The tides are caused by the gravitational pull of the moon.",
    "Deficiencies of vitamins cause many diseases; sailors suffered from scurvy on long voyages.",
    "Python is a programming language.",
]
SPECS = [{"name": "margin_mse", "weight": 1.0}]


def test_feature_is_minmax_over_the_top_depth_and_blind_to_scale() -> None:
    s = [12.0, 8.0, 10.0, 2.0]
    np.testing.assert_allclose(normalise_first_stage(s, 4), [1.0, 0.6, 0.8, 0.0])
    # the minimum is the depth-th best: scores below it go below 0, so 3 or 4 candidates agree on the top 3
    np.testing.assert_allclose(normalise_first_stage(s, 3), [1.0, 0.0, 0.5, -1.5])
    np.testing.assert_allclose(normalise_first_stage(s[:3], 3), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(
        normalise_first_stage([x * 7.5 + 3 for x in s], 4), normalise_first_stage(s, 4)
    )
    assert normalise_first_stage([3.0, 3.0], 5).tolist() == [0.0, 0.0]
    with pytest.raises(RankdistillError, match="finite"):
        normalise_first_stage([1.0, float("nan")], 5)


def test_least_squares_weight_recovers_the_first_stage_share_in_loss_units() -> None:
    rng = random.Random(0)
    groups = []
    for _ in range(20):
        feats = [rng.random() for _ in range(8)]
        offset = rng.random()  # per-query offsets are centred away
        groups.append(([0.3 * f + offset for f in feats], feats))
    assert least_squares_weight(groups, scale=10.0) == pytest.approx(3.0)
    assert least_squares_weight([([1.0], [0.5])]) == 0.0  # a single document says nothing


def test_mix_adds_to_the_score_of_one_or_two_logits() -> None:
    mix = FirstStageMix(2.0, depth=10)
    feats = torch.tensor([0.5, 1.0])
    np.testing.assert_allclose(mix(torch.tensor([[1.0], [0.0]]), feats).detach().numpy(), [[2.0], [2.0]])
    pair = mix(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), feats).detach()
    np.testing.assert_allclose((pair[:, 1] - pair[:, 0]).numpy(), [2.0, 1.0])
    assert mix.metadata() == {"normalise": "minmax_top", "depth": 10, "weight": 2.0}
    with pytest.raises(RankdistillError, match="rankdistill.json.*first_stage"):
        mix_from_metadata({"first_stage": {"weight": "x", "depth": 3}})


def test_rows_carry_the_feature_and_bad_values_name_the_line(tmp_path: Path) -> None:
    from rankdistill.training.data import (
        group_rows,
        pairs_from_teacher_run,
        read_pairs_jsonl,
        write_pairs_jsonl,
    )

    teacher = Run({"q1": {"a": 0.9, "b": 0.2, "c": 0.5}})
    first = Run({"q1": {"a": 20.0, "b": 10.0, "c": 12.0}})
    rows = pairs_from_teacher_run(
        {"q1": "query"}, teacher, {"a": "A", "b": "B", "c": "C"}, 3, 1, first_stage=first
    )
    feature = {r["document"]: r["first_stage"] for r in rows}
    assert feature == pytest.approx({"A": 1.0, "B": 0.0, "C": 0.2})
    path = tmp_path / "rows.jsonl"
    write_pairs_jsonl(path, rows)
    assert {r["document"]: r["first_stage"] for r in read_pairs_jsonl(path)} == feature
    assert group_rows(rows)[0]["first_stage"] == [r["first_stage"] for r in rows]
    path.write_text(
        '{"query": "q", "document": "d", "label": 0.5, "first_stage": 0.1}\n'
        '{"query": "q", "document": "e", "label": 0.2, "first_stage": "high"}\n'
    )
    with pytest.raises(DataError, match=r"first_stage.*finite number") as err:
        read_pairs_jsonl(path)
    assert ":2" in str(err.value)


def _rows(n_queries: int = 6) -> list[dict]:
    """Teacher labels that are mostly the first-stage feature (as BM25 + dense teachers are)."""
    rng = random.Random(1)
    rows = []
    for q in range(n_queries):
        for d, doc in enumerate(DOCS):
            f = rng.random()
            rows.append(
                {
                    "query": f"{QUERY} {q}",
                    "document": doc,
                    "label": 0.6 * f + 0.1 * (d == 0),
                    "first_stage": f,
                }
            )
    return rows


@pytest.fixture(scope="module")
def trained(minilm_dir: Path, tmp_path_factory) -> dict:
    """A 1-layer hybrid student trained for two phases, checkpointing every step, then saved."""
    from rankdistill.students import load_encoder_student, save_student
    from rankdistill.training.losses import build_loss
    from rankdistill.training.trainer import Phase, TrainSettings, start_hybrid, train_phases

    out = tmp_path_factory.mktemp("hybrid")
    rows = _rows()
    model = load_encoder_student(minilm_dir, num_layers=1, max_length=48, seed=3, device="cpu")
    mix = start_hybrid(model, rows, build_loss(model, SPECS), depth=30, start="fit")
    start = float(mix.weight.detach())
    settings = TrainSettings(
        epochs=1, batch_size=8, learning_rate=5e-2, seed=3, save_steps=1, logging_steps=1
    )
    summary = train_phases(
        model, lambda m: build_loss(m, SPECS), [Phase("p1", rows, settings), Phase("p2", rows, settings)], out
    )
    folder = save_student(model, out / "final")
    return {"model": model, "rows": rows, "start": start, "out": out, "folder": folder, "summary": summary}


def test_weight_starts_at_the_fit_and_trains_with_the_student(trained: dict) -> None:
    # labels 0.6 f + ...: centred and over MarginMSE's temperature 0.1, the fit is near 6
    assert 4.0 < trained["start"] < 8.0
    weight = float(mix_of(trained["model"]).weight.detach())
    assert weight != pytest.approx(trained["start"], abs=1e-4)  # the optimizer moved it
    # each phase's model folder and the checkpoints hold it; the saved student's metadata has the final one
    phase = json.loads((trained["out"] / "p2" / "model" / "first_stage.json").read_text())
    assert phase["first_stage"]["weight"] == pytest.approx(weight)
    from safetensors.torch import load_file

    checkpoints = sorted((trained["out"] / "p2").glob("checkpoint-*"))
    state = load_file(str(checkpoints[-1] / "loss_state.safetensors"))
    assert any(
        float(v) == pytest.approx(weight) for k, v in state.items() if k.endswith("first_stage_mix.weight")
    )
    meta = json.loads((trained["folder"] / "rankdistill.json").read_text())
    assert meta["first_stage"] == {"normalise": "minmax_top", "depth": 30, "weight": pytest.approx(weight)}


def test_done_phases_reload_the_weight(trained: dict, minilm_dir: Path) -> None:
    from rankdistill.students import load_encoder_student
    from rankdistill.training.losses import build_loss
    from rankdistill.training.trainer import Phase, TrainSettings, start_hybrid, train_phases

    model = load_encoder_student(minilm_dir, num_layers=1, max_length=48, seed=3, device="cpu")
    start_hybrid(model, trained["rows"], build_loss(model, SPECS), depth=30)
    settings = TrainSettings(epochs=1, batch_size=8, learning_rate=5e-2, seed=3)
    phases = [Phase("p1", trained["rows"], settings), Phase("p2", trained["rows"], settings)]
    train_phases(model, lambda m: build_loss(m, SPECS), phases, trained["out"])  # both done: loaded
    assert float(mix_of(model).weight.detach()) == pytest.approx(
        float(mix_of(trained["model"]).weight.detach())
    )


def test_reranker_adds_the_first_stage_term(trained: dict) -> None:
    from sentence_transformers import CrossEncoder

    from rankdistill.inference.reranker import Reranker
    from rankdistill.students import student_scores

    folder, weight = trained["folder"], float(mix_of(trained["model"]).weight.detach())
    pairs = [(QUERY, d) for d in DOCS]
    first = [14.0, 2.0, 9.0, 5.0]
    # the folder alone is a plain cross-encoder giving the encoder's (residual) score
    plain = CrossEncoder(str(folder), device="cpu").predict(pairs, activation_fn=torch.nn.Identity())
    feature = normalise_first_stage(first, 30)
    reranker = Reranker.load(folder, device="cpu", dtype="fp32")
    np.testing.assert_allclose(reranker.score(pairs, first_stage=first), plain + weight * feature, atol=1e-4)
    np.testing.assert_allclose(
        student_scores(trained["model"], pairs, first_stage=first), plain + weight * feature, atol=1e-4
    )
    assert reranker.info()["first_stage"]["weight"] == pytest.approx(weight)
    # pairs of several queries in one call: each query's scores are scaled among its own pairs
    other = [("tides and the moon", d) for d in DOCS]
    both = reranker.score(pairs + other, first_stage=first + [100.0, 400.0, 200.0, 300.0])
    np.testing.assert_allclose(both[:4], plain + weight * feature, atol=1e-4)
    plain_other = CrossEncoder(str(folder), device="cpu").predict(other, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(
        both[4:], plain_other + weight * normalise_first_stage([100.0, 400.0, 200.0, 300.0], 30), atol=1e-4
    )
    # rerank: scores as keyword or as each document's 'score'; the order follows the sum
    expected = [int(i) for i in np.argsort(-(plain + weight * feature), kind="stable")]
    by_keyword = reranker.rerank(QUERY, DOCS, first_stage=first)
    by_dict = reranker.rerank(QUERY, [{"text": d, "score": s} for d, s in zip(DOCS, first, strict=True)])
    assert [r.index for r in by_keyword] == [r.index for r in by_dict] == expected
    # the bf16 + fp32-rescoring path ranks by the same sum
    auto = Reranker.load(folder, device="cpu")
    assert [r.index for r in auto.rerank(QUERY, DOCS, first_stage=first, top_k=2)] == expected[:2]
    with pytest.raises(RankdistillError, match="hybrid student.*first-stage"):
        reranker.rerank(QUERY, DOCS)
    with pytest.raises(RankdistillError, match="hybrid student"):
        student_scores(trained["model"], pairs)


def test_weight_starts_at_zero_by_default(minilm_dir: Path) -> None:
    from rankdistill.students import load_encoder_student
    from rankdistill.training.losses import build_loss
    from rankdistill.training.trainer import start_hybrid

    model = load_encoder_student(minilm_dir, num_layers=1, max_length=32, seed=0, device="cpu")
    assert float(start_hybrid(model, _rows(2), build_loss(model, SPECS), depth=30).weight.detach()) == 0.0
    with pytest.raises(ValueError, match="start must be one of"):
        start_hybrid(model, _rows(2), build_loss(model, SPECS), depth=30, start="ls")


def test_rows_and_student_must_agree(minilm_dir: Path) -> None:
    from rankdistill.students import load_encoder_student
    from rankdistill.training.losses import build_loss
    from rankdistill.training.trainer import start_hybrid

    rows = _rows(1)
    plain = load_encoder_student(minilm_dir, num_layers=1, max_length=32, seed=0, device="cpu")
    loss = build_loss(plain, SPECS)
    grouped = [[rows[0]["query"]], [[r["document"] for r in rows]], [[r["first_stage"] for r in rows]]]
    labels = [torch.tensor([r["label"] for r in rows])]
    with pytest.raises(ValueError, match="not hybrid"):
        loss(grouped, labels)
    hybrid = load_encoder_student(minilm_dir, num_layers=1, max_length=32, seed=0, device="cpu")
    start_hybrid(hybrid, rows, build_loss(hybrid, SPECS), depth=30)
    with pytest.raises(ValueError, match="no first-stage|has no 'first_stage'|none"):
        build_loss(hybrid, SPECS)(grouped[:2], labels)
    with pytest.raises(RankdistillError, match="row 0 has no 'first_stage'"):
        start_hybrid(hybrid, [{"query": "q", "document": "d", "label": 0.1}], build_loss(hybrid, SPECS), 30)


def test_server_and_cli_pass_first_stage_scores(trained: dict, data_dir: Path, tmp_path: Path) -> None:
    """The HTTP API takes each document's 'score' (400 without it) and matches the Python reranker, also
    when a request is split across micro-batches; `rankdistill rerank` adds the run's scores."""
    pytest.importorskip("uvicorn")
    import httpx
    from typer.testing import CliRunner

    from http_helpers import UvicornServer
    from rankdistill.cli import app as cli
    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.trec import read_run, write_run
    from rankdistill.inference.reranker import Reranker
    from rankdistill.server.app import create_app

    reranker = Reranker.load(trained["folder"], device="cpu", dtype="fp32")
    first = [14.0, 2.0, 9.0, 5.0]
    expected = reranker.score([(QUERY, d) for d in DOCS], first_stage=first)
    app = create_app(reranker, max_wait_ms=5, max_batch_pairs=3)  # 4 documents: two slices
    with UvicornServer(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        docs = [{"text": d, "score": s} for d, s in zip(DOCS, first, strict=True)]
        got = client.post("/rerank", json={"query": QUERY, "documents": docs}).json()["results"]
        assert {r["index"]: r["score"] for r in got} == pytest.approx(dict(enumerate(expected)), abs=1e-4)
        got = client.post("/v1/rerank", json={"query": QUERY, "documents": docs}).json()["results"]
        assert [r["index"] for r in got] == sorted(range(4), key=lambda i: -expected[i])
        bad = client.post("/rerank", json={"query": QUERY, "documents": DOCS})
        assert bad.status_code == 400 and "hybrid" in bad.json()["detail"]

    ds = load_dataset("scifact", data_dir=data_dir)
    qid = next(iter(ds.split_queries("test")))
    doc_ids = list(ds.corpus)[:4]
    run = Run({qid: {d: float(s) for d, s in zip(doc_ids, first, strict=True)}}, name="bm25")
    out = tmp_path / "out.trec"
    args = ["rerank", "--model", str(trained["folder"]), "--dataset", "scifact", "--data-dir", str(data_dir)]
    args += ["--dtype", "fp32"]
    result = CliRunner().invoke(
        cli, [*args, "--run", str(write_run(run, tmp_path / "in.trec")), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    pairs = [(ds.split_queries("test")[qid], ds.corpus[d].full_text) for d in doc_ids]
    want = reranker.score(pairs, first_stage=first)
    assert read_run(out)[qid] == pytest.approx(dict(zip(doc_ids, want, strict=True)), abs=1e-3)


@pytest.mark.slow
def test_pipeline_trains_and_evaluates_a_hybrid_student(
    tmp_path: Path, data_dir: Path, minilm_dir: Path, monkeypatch, tiny_pipeline: dict
) -> None:
    """`rankdistill run` with `train.student.hybrid`: rows carry BM25's scaled score, the student's weight
    starts at the fit over the labels' depth, and the evaluate stage feeds it BM25's scores."""
    import yaml
    from typer.testing import CliRunner

    from rankdistill.cli import app as cli

    monkeypatch.setenv("RANKDISTILL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RANKDISTILL_CACHE_DIR", str(tmp_path / "cache"))
    cfg = {**tiny_pipeline, "train": {**tiny_pipeline["train"]}}
    cfg["train"]["student"] = {**cfg["train"]["student"], "hybrid": True}
    config = tmp_path / "hybrid.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(cli, ["run", str(config), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "run" / "labels" / "synthetic.jsonl").read_text().splitlines()]
    by_query: dict[str, list[float]] = {}
    for r in rows:
        by_query.setdefault(r["query_id"], []).append(r["first_stage"])
    assert all(-1e-9 <= f <= 1 + 1e-9 for fs in by_query.values() for f in fs)
    meta = json.loads((tmp_path / "run" / "train" / "student" / "rankdistill.json").read_text())
    assert meta["first_stage"]["depth"] == cfg["labels"]["depth"] and meta["first_stage"]["weight"] != 0
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    student = next(s for s in metrics["systems"] if s["role"] == "student")
    assert 0 <= student["metrics"]["nDCG@10"] <= 1


def test_refit_sets_the_weight_to_the_optimum_for_the_trained_encoder(trained: dict) -> None:
    """The refitted weight lowers the MarginMSE objective on the rows to its minimum in the weight alone."""
    from rankdistill.students import student_scores
    from rankdistill.training.losses import build_loss
    from rankdistill.training.trainer import refit_hybrid

    model, rows = trained["model"], trained["rows"]
    mix = mix_of(model)
    saved = float(mix.weight.detach())
    try:
        enc = student_scores(model, [(r["query"], r["document"]) for r in rows], encoder_only=True)

        def objective(w: float) -> float:
            total = 0.0
            for q in {r["query"] for r in rows}:
                idx = [i for i, r in enumerate(rows) if r["query"] == q]
                s = np.array([enc[i] + w * rows[i]["first_stage"] for i in idx])
                t = np.array([rows[i]["label"] / 0.1 for i in idx])
                total += float((((s - s.mean()) - (t - t.mean())) ** 2).sum())
            return total

        before, after = refit_hybrid(model, rows, build_loss(model, SPECS), max_queries=100)
        assert before == pytest.approx(saved) and float(mix.weight.detach()) == pytest.approx(after)
        assert objective(after) < objective(before)
        assert objective(after) <= min(objective(after + 0.05), objective(after - 0.05))
        ranknet = build_loss(model, [{"name": "ranknet"}])
        assert refit_hybrid(model, rows, ranknet) is None  # scale-free: no optimum to fit
    finally:
        with torch.no_grad():
            mix.weight.fill_(saved)
