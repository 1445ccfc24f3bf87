"""Reranker: real MiniLM cross-encoder folders, scores checked against plain transformers fp32."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import build_cross_encoder
from rankdistill.data.types import Document
from rankdistill.errors import RankdistillError
from rankdistill.inference.explain import explain_terms, query_terms
from rankdistill.inference.reranker import Reranker

QUERY = "vitamin C deficiency causes scurvy"
DOCS = [
    "Scurvy is a disease resulting from a lack of vitamin C (ascorbic acid).",
    "The tides are caused by the gravitational pull of the moon.",
    "Deficiencies of vitamins cause many diseases; sailors suffered from scurvy on long voyages.",
    "Python is a programming language.",
    "Citrus fruits prevent the disease by supplying ascorbic acid. " * 3,
]


def reference_scores(path, pairs, num_labels=1):
    """Plain transformers, fp32, one pair at a time: the ground truth the Reranker must reproduce."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for q, d in pairs:
            logits = model(**tok(q, d, truncation=True, max_length=512, return_tensors="pt")).logits[0]
            out.append(float(logits[0]) if num_labels == 1 else float(logits[1] - logits[0]))
    return np.asarray(out)


@pytest.fixture(scope="module")
def fp32_reranker(cross_encoder_dir):
    return Reranker.load(cross_encoder_dir, dtype="fp32", batch_size=2)


def test_fp32_scores_match_plain_transformers(fp32_reranker, cross_encoder_dir):
    pairs = [(QUERY, d) for d in DOCS]
    got = np.asarray(fp32_reranker.score(pairs))
    # batch of 2 after sorting by length, so padding is exercised: padded pairs must score as unpadded
    np.testing.assert_allclose(got, reference_scores(cross_encoder_dir, pairs), atol=1e-4)


def test_rerank_orders_by_score_with_ids_and_top_k(fp32_reranker):
    docs = [Document(id=f"d{i}", text=t) for i, t in enumerate(DOCS)]
    results = fp32_reranker.rerank(QUERY, docs, top_k=3)
    scores = fp32_reranker.score([(QUERY, d.text) for d in docs])
    best = sorted(range(len(DOCS)), key=lambda i: -scores[i])[:3]
    assert [r.id for r in results] == [f"d{i}" for i in best]
    assert [r.rank for r in results] == [1, 2, 3]
    assert [r.index for r in results] == best
    assert results[0].score == pytest.approx(max(scores))
    dict_results = fp32_reranker.rerank(QUERY, [{"id": "x", "text": DOCS[0], "title": "Scurvy"}, DOCS[1]])
    assert {r.id for r in dict_results} == {"x", "1"}


def test_rerank_many_equals_separate_calls(fp32_reranker):
    together = fp32_reranker.rerank_many([(QUERY, DOCS), ("moon tides", DOCS[:2])])
    assert [r.score for r in together[0]] == pytest.approx(
        [r.score for r in fp32_reranker.rerank(QUERY, DOCS)], abs=1e-5
    )
    assert [r.score for r in together[1]] == pytest.approx(
        [r.score for r in fp32_reranker.rerank("moon tides", DOCS[:2])], abs=1e-5
    )
    assert fp32_reranker.score([]) == []
    assert fp32_reranker.rerank(QUERY, []) == []


def test_rerank_run_with_a_reranker_scores_each_query_as_rerank_does(fp32_reranker):
    """`rerank_run` is the one way to rerank a run, for teachers and for a Reranker's `score_requests`
    (queries share scoring passes); a document the corpus lacks is skipped and counted in "skip" mode."""
    from rankdistill.data.types import Corpus, Queries, Run
    from rankdistill.teachers.base import rerank_run

    corpus = Corpus([Document(id=f"d{i}", text=t) for i, t in enumerate(DOCS)])
    queries = Queries({"a": QUERY, "b": "moon tides", "c": "programming"})
    first = Run({q: {f"d{i}": float(-i) for i in range(len(DOCS))} for q in queries}, name="bm25")
    first.scores["a"]["gone"] = 0.5  # in the top 4 of query a
    stats = {}
    out = rerank_run(
        fp32_reranker.score_requests,
        queries,
        corpus,
        first,
        4,
        missing="skip",
        queries_per_pass=2,
        show_progress=False,
        stats=stats,
    )
    assert out.name == "bm25-reranked"
    assert stats == {"queries": 3, "pairs": 11, "missing_queries": 0, "missing_docs": 1}
    for qid in queries:
        ids = [d for d, _ in first.ranked(qid, 4) if d in corpus]
        expected = fp32_reranker.rerank(queries[qid], [corpus[d] for d in ids], ids=ids)
        assert [(r.id, r.score) for r in expected] == [
            (d, pytest.approx(s, abs=1e-5)) for d, s in out.ranked(qid)
        ]


@pytest.mark.parametrize("bf16", ["0", "1"], ids=["cpu-without-bf16", "cpu-with-bf16"])
def test_auto_dtype_follows_cpu_and_stays_close(cross_encoder_dir, fp32_reranker, monkeypatch, bf16):
    from rankdistill.hardware import BF16_ENV

    monkeypatch.setenv(BF16_ENV, bf16)
    auto = Reranker.load(cross_encoder_dir)
    assert auto.info()["dtype"] == ("bfloat16" if bf16 == "1" else "float32")
    assert (auto.rescore_backend is not None) == (bf16 == "1")
    pairs = [(QUERY, d) for d in DOCS]
    diff = np.abs(np.asarray(auto.score(pairs)) - np.asarray(fp32_reranker.score(pairs)))
    assert diff.max() < 0.05


def test_two_label_head_scores_true_minus_false(minilm_dir, tmp_path):
    path = build_cross_encoder(minilm_dir, tmp_path / "two", num_labels=2, seed=3)
    rr = Reranker.load(path, dtype="fp32")
    pairs = [(QUERY, d) for d in DOCS[:3]]
    np.testing.assert_allclose(rr.score(pairs), reference_scores(path, pairs, num_labels=2), atol=1e-4)


def test_bad_model_folders_fail_clearly(minilm_dir, tmp_path):
    path = build_cross_encoder(minilm_dir, tmp_path / "three", num_labels=3)
    with pytest.raises(RankdistillError, match="3 outputs"):
        Reranker.load(path, dtype="fp32")
    (path / "rankdistill.json").write_text("{not json")
    with pytest.raises(RankdistillError, match="rankdistill.json: not valid JSON"):
        Reranker.load(path)
    (path / "rankdistill.json").write_text(json.dumps({"student_type": "decoder"}))
    with pytest.raises(RankdistillError, match="decoder"):
        Reranker.load(path)  # no decoder student module (yet) or not loadable: a clear error, not a traceback


def test_a_folder_without_a_trained_head_is_refused(minilm_dir, cross_encoder_dir, tmp_path):
    """The bi-encoder MiniLM would load with a random head and score noise; refuse it, saying what it is."""
    from safetensors.torch import load_file, save_file

    with pytest.raises(RankdistillError, match=r"not a reranker: .*\['BertModel'\]"):
        Reranker.load("minilm")
    headless = tmp_path / "headless"
    shutil.copytree(cross_encoder_dir, headless)
    weights = load_file(str(headless / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    assert len(kept) < len(weights)
    save_file(kept, str(headless / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RankdistillError, match="no ranking head weights"):
        Reranker.load(headless)


def test_long_documents_truncate_or_maxp(cross_encoder_dir):
    rr = Reranker.load(cross_encoder_dir, dtype="fp32", max_length=64, passage_stride=8)
    filler = " ".join(["the moon pulls the tides across the ocean"] * 40)
    needle = "Scurvy is a disease resulting from a lack of vitamin C."
    long_doc = filler + " " + needle  # the relevant sentence sits far past 64 tokens
    short_score = rr.score([(QUERY, needle)])[0]
    truncated = rr.score([(QUERY, long_doc)], long_docs="truncate")[0]
    maxp = rr.score([(QUERY, long_doc)], long_docs="maxp")[0]
    filler_only = rr.score([(QUERY, filler)], long_docs="truncate")[0]
    assert truncated == pytest.approx(filler_only, abs=1e-4)  # truncation never sees the needle
    assert maxp >= truncated - 1e-5  # max over passages includes the first window
    # a document that fits is scored the same by both policies
    assert rr.score([(QUERY, needle)], long_docs="maxp")[0] == pytest.approx(short_score, abs=1e-4)
    with pytest.raises(ValueError, match="long_docs"):
        rr.score([(QUERY, needle)], long_docs="middle")


def test_encoder_explanations_are_term_matches(fp32_reranker):
    results = fp32_reranker.rerank(QUERY, DOCS, explain=True)
    by_index = {r.index: r.explanation for r in results}
    first = by_index[0]
    assert first["type"] == "terms"
    matched = {m["term"]: m for m in first["matched_terms"]}
    assert matched["vitamin"]["match"] == "exact" and matched["scurvy"]["match"] == "exact"
    assert "causes" in first["missing_terms"]
    start, end = matched["scurvy"]["spans"][0]
    assert DOCS[0][start:end] == "Scurvy"
    third = {m["term"]: m for m in by_index[2]["matched_terms"]}
    assert third["deficiency"]["match"] == "stem" and third["deficiency"]["forms"] == ["deficiencies"]
    assert third["causes"]["match"] == "stem" and third["causes"]["forms"] == ["cause"]
    assert by_index[3]["matched_terms"] == [] and by_index[3]["coverage"] == 0.0


def test_explain_terms_edge_cases():
    assert query_terms("What is THE cause of the cause?") == ["cause"]
    assert explain_terms("the of and", "anything").to_dict()["matched_terms"] == []
    e = explain_terms("running shoes", "She runs in a shoe shop. Running!")
    assert {m.term: m.match for m in e.matched} == {"running": "exact", "shoes": "stem"}
    assert e.coverage == 1.0 and "running" in str(e)


# ------------------------------------------------------------- bf16 + fp32 rescoring (exact top-k)
VARIED = [
    "Scurvy is a disease resulting from a lack of vitamin C (ascorbic acid).",
    "Vitamin C deficiency leads to scurvy, with bleeding gums and poor wound healing.",
    "Sailors on long voyages suffered scurvy until citrus rations were introduced.",
    "Ascorbic acid is an antioxidant found in oranges, lemons and peppers.",
    "Rickets is caused by a deficiency of vitamin D in children.",
    "Iron deficiency causes anaemia; fatigue is a common symptom.",
    "The tides are caused by the gravitational pull of the moon.",
    "Python is a programming language with dynamic typing.",
    "Vitamins are micronutrients an organism needs in small quantities.",
    "James Lind's 1747 trial showed lemons cure scurvy.",
    "Collagen synthesis requires vitamin C as a cofactor for hydroxylation.",
    "The stock market fell sharply on Tuesday.",
    "Beriberi results from thiamine (vitamin B1) deficiency.",
    "Pellagra is caused by a lack of niacin.",
    "Citrus fruits prevent scurvy by supplying ascorbic acid.",
    "Guinea pigs, like humans, cannot synthesise vitamin C.",
    "A balanced diet supplies most vitamins.",
    "Mount Everest is the highest mountain above sea level.",
]


@pytest.fixture(scope="module")
def hybrid(cross_encoder_dir):
    """The default (`dtype="auto"`) reranker as it loads on a CPU with native bf16: bf16 scoring plus an
    fp32 rescorer. Forced on every CPU: without native bf16 the same path is slower, not different."""
    from rankdistill.hardware import BF16_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(BF16_ENV, "1")
        return Reranker.load(cross_encoder_dir, batch_size=8)


@pytest.fixture(scope="module")
def varied_fp32(fp32_reranker):
    """fp32 scores of (QUERY, VARIED) and the fp32 ranking (indices, best first)."""
    scores = np.asarray(fp32_reranker.score([(QUERY, d) for d in VARIED]))
    return scores, sorted(range(len(VARIED)), key=lambda i: (-scores[i], i))


def test_auto_bf16_rescores_top_k_in_fp32(hybrid, cross_encoder_dir, fp32_reranker, varied_fp32):
    ref, order = varied_fp32
    assert hybrid.info()["dtype"] == "bfloat16" and hybrid.info()["rescore"]["dtype"] == "float32"
    assert Reranker.load(cross_encoder_dir, dtype="bf16").info()["rescore"] is None  # asked for: pure bf16
    got = hybrid.rerank(QUERY, VARIED, top_k=3)
    assert [r.index for r in got] == order[:3]
    np.testing.assert_allclose([r.score for r in got], ref[order[:3]], atol=1e-5)
    # without top_k every document comes back; the first rescore_top_k (10) are exact and in fp32 order
    full = hybrid.rerank(QUERY, VARIED)
    assert len(full) == len(VARIED) and [r.rank for r in full] == list(range(1, len(VARIED) + 1))
    assert [r.index for r in full[:10]] == order[:10]
    np.testing.assert_allclose([r.score for r in full[:10]], ref[order[:10]], atol=1e-5)
    # rerank_many: each request gets its own exact top-k
    tides = VARIED[4:9]
    tides_ref = np.asarray(fp32_reranker.score([("moon tides", d) for d in tides]))
    many = hybrid.rerank_many([(QUERY, VARIED), ("moon tides", tides)], top_k=2)
    assert [r.index for r in many[0]] == order[:2]
    assert [r.index for r in many[1]] == list(np.argsort(-tides_ref, kind="stable")[:2])
    # score() stays pure bf16 (close to fp32, not equal); exact=True is fp32
    pairs = [(QUERY, d) for d in VARIED]
    assert 0 < np.abs(np.asarray(hybrid.score(pairs)) - ref).max() < 0.05
    np.testing.assert_allclose(hybrid.score(pairs[:3], exact=True), ref[:3], atol=1e-5)
    stats = hybrid.rescore_stats
    assert 0 < stats["rescored"] <= stats["pairs"]


def test_requests_no_larger_than_k_go_straight_to_fp32(hybrid, fp32_reranker):
    small = VARIED[:3]
    before = dict(hybrid.rescore_stats)
    got = hybrid.score_requests([(QUERY, small), (QUERY, VARIED)], top_k=[5, 2])
    ref_small = fp32_reranker.score([(QUERY, d) for d in small])
    np.testing.assert_allclose(got[0], ref_small, atol=1e-5)  # all 3 of 3 are top-5: exact scores
    assert len(got[1]) == len(VARIED)
    assert hybrid.rescore_stats["fp32_only"] - before["fp32_only"] == 3
    assert hybrid.rescore_stats["pairs"] - before["pairs"] == len(VARIED)  # only the big one went bf16


def test_rescore_widens_a_too_small_margin(cross_encoder_dir, varied_fp32):
    hybrid = Reranker.load(cross_encoder_dir, dtype="bf16", rescore=True, rescore_margin=0.0)
    assert hybrid.rescore_backend is not None
    got = hybrid.rerank(QUERY, VARIED, top_k=5)
    # margin 0 rescored only the bf16 top-5; their observed bf16 error then widened the margin
    assert hybrid.rescore_stats["widened"] >= 1 and hybrid.rescore_stats["rescored"] > 5
    assert len(got) == 5 and got[0].index == varied_fp32[1][0]


def test_rescored_top10_equals_fp32_on_scifact(hybrid, fp32_reranker, data_dir):
    from rankdistill.data.datasets import load_dataset

    ds = load_dataset("scifact", data_dir=data_dir)
    qrels = ds.qrels("test")
    qid = sorted(q for q in qrels.query_ids if q in ds.queries)[0]
    doc_ids = sorted(qrels.relevant(qid)) + sorted(ds.corpus)[:14]  # its relevant docs + 14 others
    docs = [ds.corpus[d] for d in dict.fromkeys(doc_ids)]
    query = ds.queries[qid]
    got, want = hybrid.rerank(query, docs, top_k=10), fp32_reranker.rerank(query, docs, top_k=10)
    assert [r.id for r in got] == [r.id for r in want]
    np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-5)
