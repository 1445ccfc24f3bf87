"""`rankdistill label` and `rankdistill labels` end to end on a small BEIR folder, with real MiniLM."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rankdistill.cli import app

DOCS = {
    "d1": "Rain forms when water vapour in clouds condenses into droplets heavy enough to fall.",
    "d2": "The stock market fell sharply on Monday after the central bank raised rates.",
    "d3": "Clouds are made of tiny water droplets or ice crystals suspended in the air.",
    "d4": "Central banks raise interest rates to slow inflation.",
    "d5": "Snow is precipitation in the form of ice crystals falling from clouds.",
}
QUERIES = {"q1": "why does rain fall from clouds", "q2": "why do central banks raise interest rates"}


@pytest.fixture()
def beir(tmp_path, monkeypatch):
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in DOCS.items())
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items())
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td4\t1\n")
    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RANKDISTILL_PROGRESS", "0")
    return folder


@pytest.mark.slow
def test_label_command_resumes_and_exports(beir, tmp_path, minilm_dir):
    runner = CliRunner()
    store = tmp_path / "labels.sqlite"
    args = [
        "label",
        "-d",
        str(beir),
        "--teacher",
        f"bm25+bi-encoder:{minilm_dir}",
        "-k",
        "3",
        "--store",
        str(store),
        "--export",
        str(tmp_path / "labels.jsonl"),
        "-o",
        str(tmp_path / "teacher.trec"),
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout[first.stdout.index("{") :])
    n = out["pairs"]  # BM25 candidates with a match, at most 3 a query
    assert 4 <= n <= 6 and out["per_teacher"]["bi-encoder"]["computed"] == n
    assert out["nDCG@10"]["teacher"] >= out["nDCG@10"]["first_stage"] - 1e-9
    assert out["store"]["labels"] == 2 * n  # bi-encoder labels + fused labels
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert all(r["doc"] in DOCS.values() and isinstance(r["label"], float) for r in rows)
    assert (tmp_path / "teacher.trec").read_text().count("\n") == n

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    out2 = json.loads(again.stdout[again.stdout.index("{") :])
    assert out2["per_teacher"]["bi-encoder"] == {
        **out2["per_teacher"]["bi-encoder"],
        "computed": 0,
        "cached": n,
    }
    assert out2["nDCG@10"] == out["nDCG@10"] and out2["store"]["labels"] == 2 * n

    # a query file with candidate ids only: BM25 scores are computed for the fusion
    qfile = tmp_path / "synthetic.jsonl"
    qfile.write_text(
        json.dumps(
            {
                "query_id": "s1",
                "text": "ice crystals in clouds",
                "source_doc_id": "d5",
                "candidates": ["d3", "d2"],
            }
        )
        + "\n"
    )
    res = runner.invoke(
        app,
        [
            "label",
            "-d",
            str(beir),
            "-q",
            str(qfile),
            "--teacher",
            f"bm25+bi-encoder:{minilm_dir}",
            "--store",
            str(store),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{") :])["pairs"] == 3

    listing = runner.invoke(app, ["labels", str(store)])
    assert listing.exit_code == 0 and "bi-encoder" in listing.stdout

    bad = runner.invoke(app, ["label", "-d", str(beir), "--kind", "pairwise", "--store", str(store)])
    assert bad.exit_code != 0 and "pairwise" in bad.output
