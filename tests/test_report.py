"""The report: metrics JSON in, report.md + self-contained report.html out, rendered in headless Chromium."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rankdistill.errors import DataError
from rankdistill.report import load_results, parse_results, write_report

pytest.importorskip("matplotlib", reason="matplotlib (extra 'report') not installed")


def _results() -> dict:
    rng = random.Random(0)
    qids = [str(i) for i in range(60)]
    bm25 = {q: rng.random() for q in qids}
    student = {q: min(1.0, max(0.0, v + rng.uniform(-0.2, 0.35))) for q, v in bm25.items()}
    teacher = {q: min(1.0, max(0.0, v + rng.uniform(-0.1, 0.4))) for q, v in bm25.items()}

    def system(name, role, per, pps, params):
        mean = sum(per.values()) / len(per)
        return {
            "name": name,
            "role": role,
            "pairs_per_second": pps,
            "parameters": params,
            "metrics": {"nDCG@10": mean, "RR@10": mean * 1.05, "R@100": 0.9},
            "per_query": {"nDCG@10": per},
        }

    return {
        "dataset": "scifact",
        "split": "test",
        "candidates": "BM25 top-100",
        "queries": 60,
        "systems": [
            system("BM25", "baseline", bm25, 250000.0, 0),
            system("teacher: ensemble", "teacher", teacher, 180.0, 22_700_000),
            system("student: MiniLM", "student", student, 900.0, 22_700_000),
        ],
    }


def test_write_report_files(tmp_path: Path) -> None:
    results = parse_results(_results())
    files = write_report(
        results,
        tmp_path,
        config={"dataset": {"name": "scifact"}, "seed": 13},
        stages=[{"name": "bm25", "status": "done", "seconds": 1.5}],
    )
    md = files.markdown.read_text()
    page = files.html.read_text()
    assert [p.name for p in files.figures] == [
        "metrics.png",
        "quality_vs_throughput.png",
        "per_query_difference.png",
    ]
    for p in files.figures:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
        assert f"](figures/{p.name})" in md
    # the table holds every system and measure, the config and the stage timings are shown
    for text in (
        "| BM25 | baseline |",
        "nDCG@10",
        "RR@10",
        "R@100",
        "pairs/s",
        "22.7M",
        "seed: 13",
        "| bm25 | done | 1.5 |",
    ):
        assert text in md, text
    assert "The student" in md
    # self-contained: every image inlined, nothing fetched from elsewhere
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "student: MiniLM" in page


def test_per_query_plot_skipped_without_per_query_values(tmp_path: Path) -> None:
    data = _results()
    for s in data["systems"]:
        s["per_query"] = {}
    files = write_report(parse_results(data), tmp_path)
    assert [p.name for p in files.figures] == ["metrics.png", "quality_vs_throughput.png"]


def test_bad_results_name_the_key(tmp_path: Path) -> None:
    data = _results()
    data["systems"][1]["metrics"]["nDCG@10"] = "high"
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"systems\.1\.metrics\.nDCG@10"):
        load_results(path)
    data = _results()
    data["systems"][2]["name"] = "BM25"
    with pytest.raises(DataError, match="repeated"):
        parse_results(data)
    with pytest.raises(DataError, match="file not found"):
        load_results(tmp_path / "missing.json")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.slow
def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary on PATH (apt-get install -y chromium) to render report.html")
    import numpy as np
    from PIL import Image

    files = write_report(parse_results(_results()), tmp_path / "run")
    shot = tmp_path / "shot.png"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1000,2600",
        "--hide-scrollbars",
        files.html.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"chromium wrote no screenshot (rc={proc.returncode}): {proc.stderr[-2000:]}"
    img = Image.open(shot).convert("RGB")
    assert img.size == (1000, 2600)
    px = np.asarray(img).astype(int).reshape(-1, 3)
    non_white = float((px.min(axis=1) < 235).mean())
    # Saturated pixels come only from the plots (text is black/grey): their presence shows the inlined
    # base64 PNGs decoded and were drawn, not just the page's text.
    colored = float((px.max(axis=1) - px.min(axis=1) > 80).mean())
    assert non_white > 0.03, f"screenshot looks blank ({non_white:.1%} non-white pixels)"
    assert colored > 0.005, f"no plot colours in the screenshot ({colored:.2%} saturated pixels)"


@pytest.mark.parametrize(
    ("student_pps", "want_speed", "want_verdict"),
    [
        (900.0, "5x as many pairs per second", "did not pay off"),  # 5x: not cheap enough
        (5.4, "33.3x slower than the teacher (0.03x its pairs per second)", "did not pay off"),
    ],
)
def test_headline_ratio_and_whether_distillation_paid_off(student_pps, want_speed, want_verdict):
    from rankdistill.report.render import headline

    data = _results()
    data["systems"][2]["pairs_per_second"] = student_pps
    text = headline(parse_results(data))
    assert want_speed in text and want_verdict in text
    assert "0.0x" not in text
    # a student at the teacher's quality and 20x its speed: it paid off
    data["systems"][2]["pairs_per_second"] = 3600.0
    data["systems"][2]["metrics"] = dict(data["systems"][1]["metrics"])
    assert "Distillation paid off: the student keeps 100.0% of the teacher's nDCG@10 at 20x" in headline(
        parse_results(data)
    )


def test_headline_and_table_say_how_much_smaller_the_student_is():
    from rankdistill.report.render import headline, summary_rows

    data = _results()
    data["systems"][1]["parameters"] = 335_000_000
    text = headline(parse_results(data))
    assert "The student has 22.7M parameters, 14.8x fewer than the teacher (335.0M)." in text
    # a teacher behind an HTTP API: its size is unknown, and the report says so rather than nothing
    data["systems"][1]["parameters"] = None
    data["systems"][1]["parameters_note"] = "unknown (API)"
    results = parse_results(data)
    assert "The student has 22.7M parameters; the teacher's are unknown (API)." in headline(results)
    _, rows = summary_rows(results)
    assert rows[1][-1] == "unknown (API)" and rows[2][-1] == "22.7M"


def test_teacher_cost_cold_and_warm_in_headline_and_table():
    from rankdistill.report.render import headline, summary_rows

    data = _results()
    teacher_pps = data["systems"][1]["pairs_per_second"]
    data["systems"][1]["pairs_per_second_cold"] = 30.0
    data["systems"][2]["pairs_per_second"] = 90.0
    results = parse_results(data)
    text = headline(results)
    assert f"{teacher_pps / 90:.3g}x slower than the teacher" in text
    assert "Against the teacher cold (nothing cached): 3x as many pairs per second." in text
    _, rows = summary_rows(results)
    assert rows[1][-2].endswith("(cold 30.0)")
    # a teacher that caches nothing: one rate, no cold sentence
    data["systems"][1]["pairs_per_second_cold"] = teacher_pps
    assert "cold" not in headline(parse_results(data))


def test_cold_teacher_encodes_every_document_again(minilm_dir, tmp_path):
    """`PointwiseTeacher.cold()`: the bi-encoder's copy keeps no embedding and shares the loaded model;
    an ensemble's copy is made of its members' cold copies; labels are the same."""
    from rankdistill.teachers import BiEncoderTeacher, EnsembleTeacher, FirstStageTeacher
    from rankdistill.teachers.base import Candidate, direct_scorer

    warm = EnsembleTeacher([FirstStageTeacher("bm25"), BiEncoderTeacher(minilm_dir, cache_dir=tmp_path)])
    cands = [
        Candidate("q", "vitamin c scurvy", f"d{i}", t, float(3 - i))
        for i, t in enumerate(["scurvy", "tides", "c"])
    ]
    labels = warm.label_candidates(cands, direct_scorer(show_progress=False))
    cold = warm.cold()
    bi_warm, bi_cold = warm.members[1], cold.members[1]
    assert bi_cold is not bi_warm and bi_cold.cache is None and not bi_cold._memory and bi_warm._memory
    assert bi_cold._model is bi_warm._model
    again = cold.label_candidates(cands, direct_scorer(show_progress=False))
    assert [x.score for x in again] == pytest.approx([x.score for x in labels], abs=1e-5)
    bm25 = FirstStageTeacher("bm25")
    assert bm25.cold() is bm25  # caches nothing
