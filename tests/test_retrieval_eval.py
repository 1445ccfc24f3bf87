"""BM25 first stage and evaluation on the real collections (targets from the foundation issue)."""

from __future__ import annotations

import pytest

from rankdistill.data import Corpus, Document, Qrels, Queries, Run, load_dataset
from rankdistill.evaluation import evaluate
from rankdistill.retrieval import BM25Retriever


def test_bm25_small_corpus_and_cache(tmp_path):
    corpus = Corpus(
        [
            Document("a", "the cat sat on the mat"),
            Document("b", "dogs are running in parks"),
            Document("c", "a cat and a dog"),
            Document("d", ""),
        ]
    )
    r1 = BM25Retriever(corpus, cache_dir=tmp_path, show_progress=False)
    run = r1.retrieve(Queries({"q1": "cats", "q2": "running dog", "q3": "zzzz unknown"}), k=10)
    assert list(dict(run.ranked("q1"))) == ["a", "c"] or list(dict(run.ranked("q1")))[0] in ("a", "c")
    assert set(run["q1"]) == {"a", "c"}  # stemming: cats -> cat
    assert run.ranked("q2")[0][0] in ("b", "c") and "b" in run["q2"]
    assert run["q3"] == {}
    assert (r1.index_dir / "done").exists()
    r2 = BM25Retriever(corpus, cache_dir=tmp_path, show_progress=False)  # loads the cached index
    assert (
        r2.retrieve(Queries({"q1": "cats"}), k=2).scores == r1.retrieve(Queries({"q1": "cats"}), k=2).scores
    )
    assert r1.score("cats", ["a", "b", "d"])[1:] == [0.0, 0.0]


def test_evaluate_policies():
    qrels = Qrels({"q1": {"a": 1, "b": 0}, "q2": {"x": 0}, "q3": {"c": 2}})
    run = Run({"q1": {"a": 2.0, "b": 1.0}, "q9": {"a": 1.0}})
    res = evaluate(run, qrels, ["nDCG@10", "RR@10", "P@1"], per_query=True)
    assert res["queries"] == 2  # q2 has no relevant doc: dropped; q3 missing from run: counted as 0
    assert res["nDCG@10"] == pytest.approx(0.5) and res["RR@10"] == pytest.approx(0.5)
    assert res["per_query"]["P@1"] == {"q1": 1.0, "q3": 0.0}
    assert evaluate(run, qrels, ["nDCG@10"], missing_as_zero=False)["nDCG@10"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown measure 'nDCG@@'"):
        evaluate(run, qrels, ["nDCG@@"])


@pytest.mark.data
def test_trec_dl_2019_bm25_run_reference(data_dir):
    ds = load_dataset("trec-dl-2019", data_dir=data_dir)
    res = evaluate(ds.run("bm25_top100"), ds.qrels("test", on_unknown_doc="ignore"))
    assert res["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)
    assert res["queries"] == 43


@pytest.mark.data
@pytest.mark.parametrize("name,target", [("scifact", 0.67), ("nfcorpus", 0.32)])
def test_bm25_targets(data_dir, tmp_path_factory, name, target):
    ds = load_dataset(name, data_dir=data_dir)
    retriever = BM25Retriever(ds.corpus, cache_dir=tmp_path_factory.mktemp("cache"), show_progress=False)
    res = evaluate(retriever.retrieve(ds.split_queries("test"), k=100), ds.qrels("test"))
    print(name, res)
    assert res["nDCG@10"] >= target
    assert res["R@100"] > 0.2


def test_fuse_minmax_scales_per_query_and_weights_runs():
    from rankdistill.data.types import Run
    from rankdistill.evaluation import fuse_minmax

    student = Run({"q1": {"a": 10.0, "b": 0.0, "c": 5.0}, "q2": {"x": 1.0, "y": 1.0}}, name="student")
    bm25 = Run({"q1": {"a": 0.0, "b": 2.0, "c": 4.0}, "q2": {"x": 3.0, "y": 9.0}}, name="bm25")
    fused = fuse_minmax([student, bm25], [0.75, 0.25])
    assert fused["q1"] == pytest.approx({"a": 0.75, "b": 0.125, "c": 0.375 + 0.25})
    assert fused["q2"] == pytest.approx({"x": 0.375, "y": 0.625})  # all-equal scores scale to 0.5
    assert fuse_minmax([student, bm25]).name == "student+bm25"
    with pytest.raises(ValueError, match="2 runs"):
        fuse_minmax([student, bm25], [1.0])
