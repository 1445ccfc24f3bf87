"""Synthetic queries without an LLM: cleaning, deduplication, filtering, pseudo-queries, the journal,
the dataset folder, and the whole pseudo-query recipe on scifact with real BM25."""

from __future__ import annotations

import json

import pytest

from rankdistill.data.types import Corpus, Document
from rankdistill.errors import DataError, RankdistillError
from rankdistill.teachers.prompts import get_prompt
from rankdistill.teachers.querygen import (
    GenerationJournal,
    QueryGenConfig,
    RawGeneration,
    SyntheticQuery,
    clean_query,
    dedupe,
    generate_synthetic_queries,
    keep_top,
    normalise_query,
    pseudo_queries,
    read_synthetic,
    resolve_prompt,
    sample_documents,
    split_sentences,
    write_synthetic_dataset,
)

DOCS = [
    Document(
        "d1",
        "Aspirin lowers the risk of heart attack in adults. It also thins the blood. Doctors prescribe it daily.",
        "Aspirin and heart disease",
    ),
    Document(
        "d2",
        "BM25 is a ranking function used by search engines to estimate the relevance of documents.",
        "BM25",
    ),
    Document("d3", "Short.", ""),
    Document(
        "d4",
        "The mitochondria is the powerhouse of the cell. It produces most of the chemical energy needed.",
        "Mitochondria in eukaryotic cells",
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" What does aspirin do to the heart?\nExample 5:", "What does aspirin do to the heart?"),
        ('  "How is BM25 computed?"  ', "How is BM25 computed?"),
        ("Relevant Query: how large is the army", "how large is the army"),
        ("Good Question: what is mitochondria for? Bad Question: what is it", "what is mitochondria for?"),
        ("1. effects of caffeine on sleep", "effects of caffeine on sleep"),
        ("\n\n  second line wins when the first is blank", "second line wins when the first is blank"),
        ("too short", None),
        ("??? ... !!!", None),
        ("", None),
        (" ".join(["word"] * 80), None),
    ],
)
def test_clean_query(raw, expected):
    assert clean_query(raw) == expected


def test_normalise_and_dedupe_exact_then_normalised():
    qs = [
        SyntheticQuery("a", "What is BM25?", "d2", "m"),
        SyntheticQuery("b", "What is BM25?", "d1", "m"),  # exact duplicate
        SyntheticQuery("c", "what is  bm25", "d2", "m"),  # same after normalisation
        SyntheticQuery("d", "Why is BM25 used?", "d2", "m"),
    ]
    assert normalise_query("  What is BM25?! ") == "what is bm25"
    kept, counts = dedupe(qs)
    assert [q.query_id for q in kept] == ["a", "d"]
    assert counts == {"exact_duplicates": 1, "normalised_duplicates": 1}


def test_keep_top_share_and_count_keep_order():
    qs = [
        SyntheticQuery(str(i), f"query number {i}", "d", "m", mean_logprob=lp)
        for i, lp in enumerate([-3, -1, -2, -0.5])
    ]
    assert [q.query_id for q in keep_top(qs, "mean_logprob", share=0.5)] == ["1", "3"]
    assert [q.query_id for q in keep_top(qs, "mean_logprob", top_k=3)] == ["1", "2", "3"]
    assert len(keep_top(qs, "mean_logprob")) == 4
    with pytest.raises(ValueError, match="share"):
        keep_top(qs, "mean_logprob", share=0)
    with pytest.raises(ValueError, match="no 'score'"):
        keep_top(qs, "score", share=0.5)


def test_sample_documents_is_seeded_and_skips_short_docs():
    corpus = Corpus(DOCS, name="toy")
    a = [d.id for d in sample_documents(corpus, 3, seed=1, min_words=5)]
    assert a == [d.id for d in sample_documents(corpus, 3, seed=1, min_words=5)]
    assert "d3" not in a and len(a) == 3
    # a larger sample extends the smaller one, so raising --n-docs reuses finished generations
    assert [d.id for d in sample_documents(corpus, 2, seed=1, min_words=5)] == a[:2]
    with pytest.raises(DataError, match="at least 50 words"):
        sample_documents(corpus, 2, min_words=50)


def test_prompts_are_registered_and_render_the_document():
    vanilla = resolve_prompt("vanilla")
    gbq = resolve_prompt("gbq")
    assert get_prompt("inpars-vanilla") is vanilla and get_prompt("inpars-gbq") is gbq
    text = vanilla.render(document="Aspirin {braces} stay as they are.")
    assert text.endswith("Example 4:\nDocument: Aspirin {braces} stay as they are.\nRelevant Query:")
    assert text.count("Relevant Query:") == 4
    assert gbq.render(document="x").count("Bad Question:") == 3
    with pytest.raises(ValueError, match="unknown query-generation prompt"):
        resolve_prompt("nope")


def test_split_sentences():
    assert split_sentences("One sentence here. Another one! A third? 4 starts with a digit.") == [
        "One sentence here.",
        "Another one!",
        "A third?",
        "4 starts with a digit.",
    ]
    assert split_sentences("e.g. this is not split. Fine") == ["e.g. this is not split.", "Fine"]


def test_pseudo_queries_sentence_title_and_removed():
    titles = pseudo_queries(DOCS, "title", min_words=2)
    assert [(q.source_doc_id, q.text) for q in titles] == [
        ("d1", "Aspirin and heart disease"),
        ("d4", "Mitochondria in eukaryotic cells"),
    ]
    sent = pseudo_queries(DOCS, "sentence", seed=3)
    assert sent == pseudo_queries(list(reversed(DOCS)), "sentence", seed=3)[::-1]  # per-document seeding
    for q in sent:
        assert q.text in DOCS[int(q.source_doc_id[1]) - 1].text and q.positive_text is None
    removed = pseudo_queries(DOCS, "sentence", remove_sentence=True, seed=3)
    assert {q.source_doc_id for q in removed} == {"d1", "d4"}  # d2 has a single sentence
    for q in removed:
        assert q.method == "sentence-removed"
        assert q.text not in q.positive_text and q.positive_text.startswith(
            DOCS[int(q.source_doc_id[1]) - 1].title
        )


def test_journal_cuts_a_torn_line_and_refuses_other_settings(tmp_path):
    path = tmp_path / "generations.jsonl"
    book = GenerationJournal(path, {"model": "m", "seed": 0})
    assert book.load() == {}
    book.append([("d1", [RawGeneration(" q one", -3.0, 2)]), ("d2", [RawGeneration(" q two", -4.0, 2)])])
    book.close()
    with open(path, "a", encoding="utf-8") as fh:  # what a kill in the middle of a write leaves
        fh.write('{"doc_id": "d3", "generations": [{"te')
    book = GenerationJournal(path, {"model": "m", "seed": 0})
    done = book.load()
    assert set(done) == {"d1", "d2"} and done["d1"][0].text == " q one"
    book.append([("d3", [RawGeneration(" q three", -1.0, 2)])])
    book.close()
    assert set(GenerationJournal(path, {"model": "m", "seed": 0}).load()) == {"d1", "d2", "d3"}
    with pytest.raises(RankdistillError, match="other settings.*seed"):
        GenerationJournal(path, {"model": "m", "seed": 1}).load()
    path.write_text('{"journal": "rankdistill-querygen", "identity": {}}\nnot json\n')
    with pytest.raises(DataError, match="generations.jsonl:2"):
        GenerationJournal(path, {}).load()


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="unknown method"):
        QueryGenConfig(method="magic").check()
    with pytest.raises(ValueError, match="no log-probabilities"):
        QueryGenConfig(method="title", filter="logprob", keep_share=0.5).check()
    with pytest.raises(ValueError, match="keep_share or keep_top_k"):
        QueryGenConfig(filter="logprob").check()
    with pytest.raises(RankdistillError, match="pass one"):
        generate_synthetic_queries(Corpus(DOCS), QueryGenConfig(method="vanilla"))


@pytest.mark.data
def test_pseudo_query_dataset_on_scifact(data_dir, tmp_path):
    """The LLM-free recipe end to end: sample scifact documents, cut sentences, real BM25 negatives, and a
    folder that opens as a dataset whose qrels point at the source documents."""
    from rankdistill.data.beir import corpus_path
    from rankdistill.data.datasets import load_dataset
    from rankdistill.retrieval.bm25 import BM25Retriever

    ds = load_dataset(data_dir / "scifact")
    retriever = BM25Retriever.from_corpus(ds.corpus, cache_dir=tmp_path / "cache", show_progress=False)
    out = tmp_path / "ict"
    config = QueryGenConfig(method="sentence", n_docs=60, seed=7, negatives=10)
    result = generate_synthetic_queries(
        ds.corpus,
        config,
        out_dir=out,
        retriever=retriever,
        corpus_file=corpus_path(ds.path),
        show_progress=False,
    )
    qs = result.queries
    assert 50 <= len(qs) <= 60
    test_texts = set(ds.queries.values())
    for q in qs:
        assert q.text in ds.corpus[q.source_doc_id].text
        assert q.text not in test_texts
        assert q.source_doc_id not in q.candidates and len(q.candidates) == 10
        assert len(set(q.candidates)) == 10 and all(c in ds.corpus for c in q.candidates)
    # a sentence cut from the document is an easy query: BM25 finds its source first nearly always
    assert result.stats["bm25_source_in_top"]["at_rank_1"] > 0.8
    syn = load_dataset(out)
    assert len(syn.corpus) == len(ds.corpus)
    qrels = syn.qrels("synthetic")
    assert {q: set(d) for q, d in qrels.items()} == {q.query_id: {q.source_doc_id} for q in qs}
    assert list(syn.queries.values()) == [q.text for q in qs]
    assert set(syn.run("bm25").query_ids) == {q.query_id for q in qs}
    assert read_synthetic(out / "synthetic.jsonl") == qs
    stats = json.loads((out / "stats.json").read_text())
    assert stats["queries"] == len(qs) and stats["config"]["seed"] == 7
    # same seed, same queries; another seed, other documents
    again = generate_synthetic_queries(ds.corpus, config, retriever=retriever, show_progress=False)
    assert [q.text for q in again.queries] == [q.text for q in qs]
    other = generate_synthetic_queries(
        ds.corpus, QueryGenConfig(method="title", n_docs=60, seed=8), retriever=retriever, show_progress=False
    )
    assert {q.source_doc_id for q in other.queries} != {q.source_doc_id for q in qs}
    assert all(q.text == ds.corpus[q.source_doc_id].title for q in other.queries)


def test_write_dataset_roundtrip(tmp_path):
    qs = [SyntheticQuery("q1", "what is bm25", "d2", "title", candidates=["d1"], positive_text="x")]
    out = write_synthetic_dataset(tmp_path / "o", qs, stats={"n": 1})
    assert read_synthetic(out / "synthetic.jsonl") == qs
    assert (out / "qrels" / "synthetic.tsv").read_text() == "query-id\tcorpus-id\tscore\nq1\td2\t1\n"
    assert json.loads((out / "queries.jsonl").read_text())["metadata"] == {
        "source_doc_id": "d2",
        "method": "title",
    }


@pytest.mark.data
@pytest.mark.slow  # loading sentence-transformers costs most of it
def test_teacher_filter_keeps_the_best_scored_pairs(data_dir, minilm_dir):
    """InPars v2 filter with a real teacher (all-MiniLM-L6-v2 cosine of query and source document)."""
    from rankdistill.data.datasets import load_dataset
    from rankdistill.teachers import BiEncoderTeacher

    ds = load_dataset(data_dir / "scifact")
    teacher = BiEncoderTeacher(minilm_dir, cache_dir=False)
    config = QueryGenConfig(method="title", n_docs=16, seed=2, filter="teacher", keep_top_k=6)
    result = generate_synthetic_queries(ds.corpus, config, teacher=teacher, show_progress=False)
    everything = generate_synthetic_queries(
        ds.corpus, QueryGenConfig(method="title", n_docs=16, seed=2), show_progress=False
    )
    assert len(result.queries) == 6 and len(everything.queries) > 6
    scores = {q.query_id: q.score for q in result.queries}
    # recompute the teacher's scores of every pair: the kept ones are the 6 best
    labels = teacher.score([(q.text, ds.corpus[q.source_doc_id].full_text) for q in everything.queries])
    best = sorted(zip(labels, everything.queries, strict=True), key=lambda x: -x[0].score)[:6]
    assert set(scores) == {q.query_id for _, q in best}
    assert all(-1 <= s <= 1 for s in scores.values()) and result.stats["teacher"] == teacher.identity()


@pytest.mark.data
def test_cli_generate_queries_title_method(data_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rankdistill.cli import app
    from rankdistill.data.datasets import load_dataset

    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    out = tmp_path / "titles"
    args = [
        "generate-queries",
        "-d",
        "scifact",
        "--data-dir",
        str(data_dir),
        "-o",
        str(out),
        "--method",
        "title",
        "--n-docs",
        "30",
        "--negatives",
        "4",
        "--show",
        "2",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "queries for 30 documents" in res.output
    syn = load_dataset(out)
    assert 20 <= len(syn.queries) <= 30 and syn.splits == ["synthetic"]
    assert all(len(c) == 4 for c in (q.candidates for q in read_synthetic(out / "synthetic.jsonl")))
    bad = runner.invoke(
        app, ["generate-queries", "-d", "scifact", "--data-dir", str(data_dir), "-o", str(out)]
    )
    assert bad.exit_code != 0 and "needs --llm" in bad.output
    bad = runner.invoke(app, args[:-6] + ["--method", "poems"])
    assert bad.exit_code != 0 and "unknown method" in bad.output
    bad = runner.invoke(
        app, ["generate-queries", "-d", str(tmp_path / "nowhere"), "-o", str(out), "--method", "title"]
    )
    assert bad.exit_code != 0 and "not found" in str(bad.exception)


def test_grounding_check_catches_few_shot_echoes():
    from rankdistill.teachers.querygen import drop_ungrounded, is_grounded

    beans = "Cardiovascular and renal benefits of dry bean and soybean intake. Dry beans lower cholesterol."
    assert not is_grounded(
        "How large is the Canadian military?", beans
    )  # the prompt's example, not the document
    assert is_grounded("Do soybeans protect the kidneys?", beans)  # crude stems: soybeans ~ soybean
    assert not is_grounded("Do legumes protect the kidneys?", beans)  # the check is lexical: no synonyms
    assert not is_grounded("What is the significance of this study?", beans)  # no topic word at all
    assert is_grounded("benefits of eating beans for the heart", beans)
    corpus = Corpus([Document("b", beans)])
    qs = [
        SyntheticQuery("1", "How large is the Canadian military?", "b", "m"),
        SyntheticQuery("2", "cholesterol and dry beans", "b", "m"),
    ]
    kept, n = drop_ungrounded(qs, corpus)
    assert [q.query_id for q in kept] == ["2"] and n == 1


def test_keep_top_refuses_nan_scores():
    """A NaN never sorts: every comparison with it is false, so the 'best' would be the first ones."""
    qs = [
        SyntheticQuery(str(i), f"query number {i}", "d", "m", mean_logprob=lp)
        for i, lp in enumerate([float("nan"), -2.0, -0.1])
    ]
    with pytest.raises(ValueError, match=r"1 queries have a NaN 'mean_logprob'.*\['0'\]"):
        keep_top(qs, "mean_logprob", top_k=1)


def _answers_without_logprobs(path, body):
    """An OpenAI-compatible server that writes a grounded query for each document but gives no
    log-probabilities (`"logprobs": null`), as some servers do whatever the request asks."""
    from test_llm_openai import completion

    prompt = body.get("prompt", "")
    last = prompt[prompt.rfind("Document:") :]
    for word, query in (
        ("Aspirin", " What does aspirin do to the heart?"),
        ("BM25", " How does BM25 estimate document relevance?"),
        ("mitochondria", " What energy do mitochondria produce in cells?"),
    ):
        if word in last:
            return 200, completion(query, None), None
    return 200, completion(" unrelated words here", None), None


def test_logprob_filter_refuses_a_backend_without_logprobs(tmp_path):
    """InPars v1 keeps the queries with the best mean token log-probability; without log-probabilities
    it must fail naming the backend, not keep the first N (NaN sorts nowhere)."""
    from rankdistill.llm.openai_compat import OpenAICompatLLM
    from test_llm_openai import Stub

    corpus = Corpus(DOCS, name="tiny")
    config = QueryGenConfig(method="vanilla", n_docs=None, filter="logprob", keep_top_k=2, min_doc_words=3)
    with Stub(_answers_without_logprobs) as server:
        llm = OpenAICompatLLM(server.url, "stub-model", max_retries=0)
        with pytest.raises(RankdistillError, match=r"openai backend.*no log-probabilit.*3 of 3.*filter"):
            generate_synthetic_queries(corpus, config, llm=llm, out_dir=tmp_path, show_progress=False)
        # the generations are kept: the same queries without that filter need no new request
        asked = len(server.requests)
        unfiltered = QueryGenConfig(method="vanilla", n_docs=None, min_doc_words=3)
        result = generate_synthetic_queries(
            corpus, unfiltered, llm=llm, out_dir=tmp_path, show_progress=False
        )
        assert len(server.requests) == asked and len(result.queries) == 3
