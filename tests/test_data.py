"""Data layer: real collections, and every error path on small malformed files."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from rankdistill.data import (
    Dataset,
    Run,
    load_dataset,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    write_run,
)
from rankdistill.errors import DataError


def _beir(
    tmp_path, corpus_lines, queries_lines=None, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\n", gz=False
):
    folder = tmp_path / "ds"
    (folder / "qrels").mkdir(parents=True)
    text = "\n".join(corpus_lines) + "\n"
    if gz:
        with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        (folder / "corpus.jsonl").write_text(text)
    queries_lines = queries_lines or [json.dumps({"_id": "q1", "text": "what is a cat"})]
    (folder / "queries.jsonl").write_text("\n".join(queries_lines) + "\n")
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


GOOD_DOCS = [
    json.dumps({"_id": "d1", "title": "Cats", "text": "A cat is a small animal."}),
    json.dumps({"_id": "d2", "title": "", "text": "Dogs bark."}),
]


@pytest.mark.parametrize("gz", [False, True])
def test_small_beir_folder_reads(tmp_path, gz):
    ds = Dataset(_beir(tmp_path, GOOD_DOCS, gz=gz))
    assert list(ds.corpus) == ["d1", "d2"]
    assert ds.corpus["d1"].full_text == "Cats A cat is a small animal."
    assert ds.corpus["d2"].full_text == "Dogs bark."
    assert ds.splits == ["test"]
    assert ds.qrels("test").judgements == {"q1": {"d1": 1}}
    assert dict(ds.split_queries("test")) == {"q1": "what is a cat"}


def test_broken_json_line_names_file_and_line(tmp_path):
    folder = _beir(tmp_path, [GOOD_DOCS[0], '{"_id": "d2", "text": "unterminated', GOOD_DOCS[1]])
    with pytest.raises(DataError) as err:
        read_corpus(folder)
    assert err.value.line == 2 and err.value.path.endswith("corpus.jsonl")
    assert "corpus.jsonl:2:" in str(err.value) and "invalid JSON" in str(err.value)


def test_missing_field_and_wrong_type(tmp_path):
    folder = _beir(tmp_path, [GOOD_DOCS[0], json.dumps({"title": "no id"})])
    with pytest.raises(DataError, match=r"corpus.jsonl:2: missing field '_id'"):
        read_corpus(folder)
    folder2 = _beir(tmp_path / "b", [json.dumps({"_id": "d1", "text": 5})])
    with pytest.raises(DataError, match=r":1: 'text' must be a string"):
        read_corpus(folder2)
    with pytest.raises(DataError, match="missing field 'text'"):
        read_queries(_beir(tmp_path / "c", GOOD_DOCS, [json.dumps({"_id": "q1"})]))


def test_duplicate_ids(tmp_path):
    with pytest.raises(DataError, match=r"corpus.jsonl:3: duplicate document id 'd1'"):
        read_corpus(_beir(tmp_path, GOOD_DOCS + [GOOD_DOCS[0]]))
    q = json.dumps({"_id": "q1", "text": "x"})
    with pytest.raises(DataError, match=r"queries.jsonl:2: duplicate query id 'q1'"):
        read_queries(_beir(tmp_path / "b", GOOD_DOCS, [q, q]))


def test_qrels_unknown_docs_warn_or_error(tmp_path, caplog):
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tnope\t1\n"
    ds = Dataset(_beir(tmp_path, GOOD_DOCS, qrels=qrels))
    with caplog.at_level(logging.WARNING):
        assert len(ds.qrels("test")) == 2
    assert "1 of 2 judgements name documents absent" in caplog.text
    with pytest.raises(DataError, match=r"test.tsv:3: qrels name document 'nope'"):
        ds.qrels("test", on_unknown_doc="error")


def test_bad_qrels_rows_and_unknown_split(tmp_path):
    ds = Dataset(_beir(tmp_path, GOOD_DOCS, qrels="query-id\tcorpus-id\tscore\nq1\td1\n"))
    with pytest.raises(DataError, match=r"test.tsv:2: expected 3 tab-separated columns"):
        ds.qrels("test")
    ds = Dataset(_beir(tmp_path / "b", GOOD_DOCS, qrels="q1\td1\thigh\n"))
    with pytest.raises(DataError, match=r"test.tsv:1: score 'high' is not a number"):
        ds.qrels("test")
    with pytest.raises(DataError, match=r"unknown split 'dev'; available: test"):
        ds.qrels("dev")


def test_not_a_dataset_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match="not a BEIR folder"):
        Dataset(tmp_path)
    with pytest.raises(DataError, match=r"dataset 'no-such-set' not found \(searched: "):
        load_dataset("no-such-set", data_dir=tmp_path, download=False)


def test_run_round_trip_and_errors(tmp_path):
    run = Run({"q1": {"d1": 2.5, "d2": 3.0, "d3": 3.0}, "q2": {"d9": -1.0}}, name="x")
    path = write_run(run, tmp_path / "r.trec", tag="mine")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 3.000000 mine" and lines[1].startswith("q1 Q0 d3 2")  # ties by id
    assert read_run(path).scores == run.scores
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2\n")
    with pytest.raises(DataError, match=r"bad.trec:2: expected 6 columns"):
        read_run(tmp_path / "bad.trec")
    (tmp_path / "dup.trec").write_text("q1 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n")
    with pytest.raises(DataError, match=r"dup.trec:2: document 'd1' appears twice"):
        read_run(tmp_path / "dup.trec")
    (tmp_path / "q.txt").write_text("q1 0 d1 2\nq1 0 d2 0\n")
    assert read_qrels(tmp_path / "q.txt").judgements == {"q1": {"d1": 2, "d2": 0}}


def test_real_collections_resolve_by_name(data_dir):
    ds = load_dataset("beir/scifact", data_dir=data_dir)
    assert len(ds.corpus) == 5183 and len(ds.queries) == 1109
    assert len(ds.split_queries("test")) == 300 and len(ds.qrels("test")) == 339
    assert load_dataset("noveleval", data_dir=data_dir).path.name == "noveleval-2306"
    dl = load_dataset("trec-dl-2019", data_dir=data_dir)
    assert "bm25_top100" in dl.runs
    assert (
        len(dl.qrels("test")) == 9260
    )  # docs absent from the corpus are counted and warned about, not fatal


class _FakeIrds:
    """What `ir_datasets.load(id)` gives, for one small collection (ir_datasets cannot download here)."""

    def __init__(self, dataset_id: str):
        from types import SimpleNamespace as NS

        self.id = dataset_id
        self._docs = [
            NS(doc_id="d1", title="T1", text="first document"),
            NS(doc_id="d2", title="", text="second"),
        ]
        self._queries = [NS(query_id="q1", text="first query")]
        self._qrels = [NS(query_id="q1", doc_id="d1", relevance=1)]

    def docs_iter(self):
        return iter(self._docs)

    def queries_iter(self):
        return iter(self._queries)

    def qrels_iter(self):
        return iter(self._qrels)


@pytest.mark.parametrize(
    ("dataset_id", "split"),
    [
        ("beir/scifact/train", "train"),
        ("beir/scifact/test", "test"),
        ("beir/msmarco/dev", "dev"),
        ("msmarco-passage/dev/small", "dev"),
        ("msmarco-passage/train/judged", "train"),
        ("beir/nfcorpus/validation", "dev"),
        ("trec-robust04", "test"),
        ("beir/cqadupstack/android", "test"),
    ],
)
def test_ir_datasets_id_names_its_split(tmp_path, monkeypatch, dataset_id, split):
    """An ir_datasets id's qrels land in the split its id names (test when it names none), tested
    end to end through `load_dataset("irds:...")` with a stand-in `ir_datasets` module (no network)."""
    import sys
    from types import SimpleNamespace

    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "ir_datasets", SimpleNamespace(load=_FakeIrds))
    ds = load_dataset(f"irds:{dataset_id}")
    assert ds.splits == [split]
    assert dict(ds.qrels(split)["q1"]) == {"d1": 1}
    assert list(ds.split_queries(split)) == ["q1"]

    from rankdistill.data.datasets import irds_split

    assert irds_split(dataset_id) == split


def test_ir_datasets_folder_cached_by_the_old_layout_is_rebuilt(tmp_path, monkeypatch):
    """A cache folder an earlier version wrote (every qrel under test) is rebuilt with the id's split."""
    import sys
    from types import SimpleNamespace

    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    old = tmp_path / "cache" / "irds" / "beir__scifact__train"
    (old / "qrels").mkdir(parents=True)
    (old / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "x"}\n')
    (old / "queries.jsonl").write_text('{"_id": "q1", "text": "first query"}\n')
    (old / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    monkeypatch.setitem(sys.modules, "ir_datasets", SimpleNamespace(load=_FakeIrds))
    ds = load_dataset("irds:beir/scifact/train")
    assert ds.splits == ["train"]
    assert len(ds.corpus) == 2
