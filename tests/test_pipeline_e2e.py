"""`rankdistill run` end to end on scifact with the real stages, scaled down to about a minute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

pytestmark = [pytest.mark.slow, pytest.mark.data]


def _run(args: list[str]):
    from rankdistill.cli import app

    result = CliRunner().invoke(app, args)
    return result


def test_run_resume_and_report(
    tmp_path: Path, data_dir: Path, minilm_dir: Path, monkeypatch, tiny_pipeline: dict
) -> None:
    tiny = tiny_pipeline
    monkeypatch.setenv("RANKDISTILL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RANKDISTILL_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "tiny.yaml"
    bad = {
        **tiny,
        "train": {
            **tiny["train"],
            "student": {**tiny["train"]["student"], "base": str(tmp_path / "no-model")},
        },
    }
    config.write_text(yaml.safe_dump(bad))
    run_dir = tmp_path / "run"

    # 1. training fails (no such model): the stages before it are kept, the run says where it stopped
    result = _run(["run", str(config), "--run-dir", str(run_dir)])
    assert result.exit_code == 1, result.output
    assert "stage 'train' failed" in result.output
    status = {s["name"]: s["status"] for s in json.loads((run_dir / "pipeline.json").read_text())["stages"]}
    assert status == {
        "data": "done",
        "bm25": "done",
        "queries": "done",
        "labels": "done",
        "train": "failed",
        "evaluate": "not run",
        "report": "not run",
    }
    labels_manifest = (run_dir / "labels" / "manifest.json").read_text()
    rows = [json.loads(line) for line in (run_dir / "labels" / "synthetic.jsonl").read_text().splitlines()]
    assert (
        rows
        and all(0.0 <= r["label"] <= 1.0 for r in rows)
        and {"query", "document", "doc_id"} <= set(rows[0])
    )

    # 2. fixed config: resumes at train, earlier stages skipped, untouched
    config.write_text(yaml.safe_dump(tiny))
    result = _run(["run", str(config), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    status = {s["name"]: s["status"] for s in json.loads((run_dir / "pipeline.json").read_text())["stages"]}
    assert status == {
        "data": "skipped",
        "bm25": "skipped",
        "queries": "skipped",
        "labels": "skipped",
        "train": "done",
        "evaluate": "done",
        "report": "done",
    }
    assert (run_dir / "labels" / "manifest.json").read_text() == labels_manifest

    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    roles = {s["role"]: s for s in metrics["systems"]}
    assert set(roles) == {"baseline", "teacher", "student", "other"}
    assert roles["other"]["name"] == "student + BM25 (min-max, 0.5 / 0.5)"  # evaluate.fuse_student default
    assert metrics["queries"] == 6
    for s in roles.values():
        assert set(s["metrics"]) == {"nDCG@10", "RR@10", "R@100"}
        assert len(s["per_query"]["nDCG@10"]) == 6
        assert s["pairs_per_second"] > 0
    # same candidates: every system has BM25's recall
    assert roles["student"]["metrics"]["R@100"] == roles["baseline"]["metrics"]["R@100"]
    # the student reranked BM25's top 5; the other 5 follow in BM25 order
    student_run = (run_dir / "evaluate" / "runs" / "student.trec").read_text().splitlines()
    first_q = student_run[0].split()[0]
    assert sum(line.split()[0] == first_q for line in student_run) == 10
    assert metrics["candidates"] == "BM25 top-10, top 5 reranked"
    assert roles["baseline"]["metrics"]["nDCG@10"] > 0.3  # real BM25 on real scifact queries
    assert 1_000_000 < roles["student"]["parameters"] < roles["teacher"]["parameters"]
    for name in ("report.md", "report.html", "figures/metrics.png", "figures/per_query_difference.png"):
        assert (run_dir / name).is_file(), name
    assert "| BM25 | baseline |" in (run_dir / "report.md").read_text()

    # 3. nothing changed: everything skipped; --from evaluate reruns evaluate and report only
    result = _run(["run", str(config), "--run-dir", str(run_dir), "--from", "evaluate"])
    assert result.exit_code == 0, result.output
    status = {s["name"]: s["status"] for s in json.loads((run_dir / "pipeline.json").read_text())["stages"]}
    assert [k for k, v in status.items() if v == "done"] == ["evaluate", "report"]
    assert all(v == "skipped" for k, v in status.items() if k not in ("evaluate", "report"))

    # 4. the report command re-renders from the run folder
    out = tmp_path / "again"
    result = _run(["report", str(run_dir), "--out", str(out), "--title", "again"])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3
