"""Listwise teacher: sliding-window mechanics, one-pass hard negatives, preferences, the label store.

The fast tests drive the teacher with `OverlapLLM`, a small but real `LLM`: it reads the numbered
passages out of the prompt and ranks them by word overlap with the query, and can be told to leave some
out or repeat some, like a weak model does. The `llm` tests run the real Gemma 3 270M GGUF.
"""

from __future__ import annotations

import re

import pytest

from rankdistill.data.types import Corpus, Document, Queries, Run
from rankdistill.labels.listwise import label_listwise
from rankdistill.labels.store import LabelStore
from rankdistill.llm.base import LLM, ContinuationScore, Generation
from rankdistill.teachers.base import labels_to_run
from rankdistill.teachers.listwise import (
    ListwiseLabel,
    ListwiseTeacher,
    sliding_windows,
    summarize,
)

PASSAGE = re.compile(r"^\[(\d+)\] (.*)$", re.M)


class OverlapLLM(LLM):
    """Ranks the passages of a listwise prompt by word overlap with the query (ties: input order).
    `keep` answers only the best `keep` passages; `repeat` names the first one twice; `chatter`
    wraps the answer in free text. Counts the prompts it gets."""

    backend = "overlap"
    supports_json_schema = False

    def __init__(self, keep: int | None = None, repeat: bool = False, chatter: bool = False):
        self.keep, self.repeat, self.chatter = keep, repeat, chatter
        self.prompts: list[str] = []

    def identity(self):
        return {"backend": self.backend, "keep": self.keep, "repeat": self.repeat, "chatter": self.chatter}

    def generate(
        self, prompts, *, max_tokens=128, temperature=0.0, top_p=1.0, seed=0, stop=None, json_schema=None
    ):
        out = []
        for prompt in prompts:
            self.prompts.append(prompt)
            query = set(re.search(r"Search query: (.*)", prompt).group(1).lower().split())
            passages = [(int(i), set(t.lower().split())) for i, t in PASSAGE.findall(prompt)]
            ranked = sorted(passages, key=lambda p: (-len(query & p[1]), p[0]))
            ids = [i for i, _ in ranked][: self.keep]
            if self.repeat:
                ids = ids[:1] + ids
            text = " > ".join(f"[{i}]" for i in ids)
            if self.chatter:
                text = f"Here is my ranking: {text}. I hope it helps!"
            out.append(Generation(text=text, n_tokens=len(text) // 4, prompt_tokens=len(prompt) // 4))
        return out

    def score_continuations(self, pairs):
        return [ContinuationScore(0.0, 0) for _ in pairs]

    def next_token_logits(self, prompts, candidates):
        return [[0.0] * len(candidates) for _ in prompts]


def make_corpus(n: int, relevant: set[int]) -> Corpus:
    docs = []
    for i in range(n):
        text = (
            "solar panel efficiency record" if i in relevant else f"unrelated topic number {i} about cooking"
        )
        docs.append(Document(f"d{i}", text))
    return Corpus(docs)


def test_sliding_windows_follow_rankgpt():
    assert sliding_windows(100, 20, 10) == [
        (80, 100),
        (70, 90),
        (60, 80),
        (50, 70),
        (40, 60),
        (30, 50),
        (20, 40),
        (10, 30),
        (0, 20),
    ]
    assert sliding_windows(20, 10, 5) == [(10, 20), (5, 15), (0, 10)]
    assert sliding_windows(7, 20, 10) == [(0, 7)]
    assert sliding_windows(0, 20, 10) == []


def test_sliding_window_bubbles_relevant_documents_to_the_top():
    corpus = make_corpus(30, relevant={25, 28})
    llm = OverlapLLM()
    teacher = ListwiseTeacher(llm, method="sliding_window", window=10, step=5, depth=30)
    item = teacher.select("q", "solar panel efficiency", [f"d{i}" for i in range(30)], corpus)
    (label,) = teacher.rank([item])
    assert label.permutation[:2] == ["d25", "d28"]
    assert label.llm_calls == len(sliding_windows(30, 10, 5)) == len(llm.prompts) == 5
    assert label.missing == [] and label.repairs()["answers_repaired"] == 0
    assert sorted(label.permutation) == sorted(item.doc_ids)
    # the first call saw the bottom window
    assert "[1] unrelated topic number 20" in llm.prompts[0]


def test_one_pass_takes_top_and_bottom_k_and_records_missing_as_hard_negatives():
    corpus = make_corpus(50, relevant={1, 48})
    llm = OverlapLLM(keep=3, repeat=True, chatter=True)
    teacher = ListwiseTeacher(llm, method="one_pass", top_k=4, bottom_k=3, depth=50)
    item = teacher.select("q", "solar panel efficiency", [f"d{i}" for i in range(50)], corpus)
    assert item.doc_ids == ["d0", "d1", "d2", "d3", "d47", "d48", "d49"]
    (label,) = teacher.rank([item])
    assert label.llm_calls == 1
    assert label.permutation[:3] == ["d1", "d48", "d0"]
    assert label.missing_ids == ["d2", "d3", "d47", "d49"]  # left out: hard negatives, input order
    rep = label.repairs()
    assert (
        rep["duplicate"] == 1
        and rep["missing"] == 4
        and rep["free_text"] == 1
        and rep["answers_repaired"] == 1
    )
    prefs = label.preferences()
    assert ("d1", "d48") in prefs and ("d48", "d2") in prefs and ("d0", "d49") in prefs
    assert ("d2", "d3") not in prefs  # two missing documents: no teacher judgement between them
    assert len(prefs) == 3 * 6 - 3  # answered pairs with everything after them


def test_queries_advance_in_lockstep_and_labels_round_trip():
    corpus = make_corpus(12, relevant={11})
    llm = OverlapLLM()
    teacher = ListwiseTeacher(llm, method="sliding_window", window=4, step=2, depth=12)
    items = [
        teacher.select(q, "solar panel", [f"d{i}" for i in range(n)], corpus)
        for q, n in (("a", 12), ("b", 6))
    ]
    labels = teacher.rank(items)
    assert [lab.llm_calls for lab in labels] == [5, 2]
    assert labels[0].permutation[0] == "d11" and labels[1].permutation == [f"d{i}" for i in range(6)]
    back = ListwiseLabel.from_value("a", "solar panel", labels[0].doc_ids, labels[0].to_value())
    assert back.permutation == labels[0].permutation and back.preferences() == labels[0].preferences()
    run = labels_to_run(labels)
    assert run.ranked("a")[0][0] == "d11"
    s = summarize(labels)
    assert s["llm_calls_per_query"] == 3.5 and s["repair_rate"] == 0.0


def test_label_listwise_stores_and_resumes(tmp_path):
    corpus = make_corpus(40, relevant={3, 37})
    queries = Queries({f"q{i}": "solar panel efficiency" + " record" * (i % 2) + f" v{i}" for i in range(5)})
    run = Run({q: {f"d{i}": 40.0 - i for i in range(40)} for q in queries})
    store = LabelStore(tmp_path / "labels.sqlite")
    llm = OverlapLLM(keep=6)
    labels, summary = label_listwise(
        llm,
        store,
        queries,
        corpus,
        run,
        method="one_pass",
        top_k=5,
        bottom_k=5,
        batch_size=2,
        limit=4,
        show_progress=False,
    )
    assert summary["computed"] == 4 and summary["cached"] == 0 and len(llm.prompts) == 4
    assert summary["llm_calls_per_query"] == 1.0
    assert all(lab.permutation[:2] == ["d3", "d37"] for lab in labels)
    rec = next(store.iter_records(kind="listwise"))
    assert rec.teacher == "listwise-one_pass" and rec.value["missing"] and rec.value["preferences"]
    assert rec.doc_ids == labels[0].doc_ids
    # a second run computes nothing and returns the same labels
    again, summary2 = label_listwise(
        OverlapLLM(keep=6),
        store,
        queries,
        corpus,
        run,
        method="one_pass",
        top_k=5,
        bottom_k=5,
        batch_size=2,
        limit=4,
        show_progress=False,
    )
    assert summary2["computed"] == 0 and summary2["cached"] == 4
    assert [lab.permutation for lab in again] == [lab.permutation for lab in labels]
    # the sliding window is another teacher identity, stored beside it
    _, summary3 = label_listwise(
        llm,
        store,
        queries,
        corpus,
        run,
        method="sliding_window",
        window=20,
        step=10,
        depth=40,
        limit=2,
        show_progress=False,
    )
    assert summary3["computed"] == 2 and summary3["llm_calls_per_query"] == 3
    assert store.counts() == {
        ("listwise", "listwise-one_pass"): 4,
        ("listwise", "listwise-sliding_window"): 2,
    }
    store.close()


def test_prompts_are_shortened_to_fit_the_context_window():
    class SmallContextLLM(OverlapLLM):
        n_ctx = 400  # tokens; count_tokens is the ABC's 4-characters-a-token estimate

    docs = [
        Document(f"d{i}", ("solar panel " if i == 7 else "") + " ".join(["filler"] * 80)) for i in range(10)
    ]
    llm = SmallContextLLM()
    teacher = ListwiseTeacher(llm, method="one_pass", max_passage_words=None)
    (label,) = teacher.rank([teacher.select("q", "solar panel", [f"d{i}" for i in range(10)], Corpus(docs))])
    (prompt,) = llm.prompts
    assert llm.count_tokens(prompt) <= 400 - teacher._max_tokens(10)
    assert all(f"[{i}] " in prompt for i in range(1, 11)) and label.permutation[0] == "d7"
    assert teacher.identity()["settings"]["n_ctx"] == 400


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="method"):
        ListwiseTeacher(OverlapLLM(), method="pairwise")
    with pytest.raises(ValueError, match="step"):
        ListwiseTeacher(OverlapLLM(), window=10, step=10)


# -- the real model -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma(gemma_gguf):
    from rankdistill.llm.llamacpp import LlamaCppLLM

    llm = LlamaCppLLM(gemma_gguf, n_ctx=1024, n_threads=1)
    yield llm
    llm.close()


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("constrained", [True, False])
def test_gemma_one_pass_on_noveleval(gemma, data_dir, constrained):
    from rankdistill.data.datasets import load_dataset

    ds = load_dataset(data_dir / "noveleval-2306")
    run = ds.run("initial_order_top20")
    teacher = ListwiseTeacher(
        gemma,
        method="one_pass",
        top_k=3,
        bottom_k=2,
        max_passage_words=25,
        constrained=constrained,
        max_tokens=24,
    )
    qids = run.query_ids[:2]
    labels = teacher.rank([teacher.select(q, ds.queries[q], run.ranked(q), ds.corpus) for q in qids])
    for lab in labels:
        assert lab.llm_calls == 1 and len(lab.permutation) == 5
        assert sorted(lab.permutation) == sorted(lab.doc_ids)
        (w,) = lab.windows
        assert w.prompt_tokens > 100 and w.completion_tokens > 0
        assert w.raw  # what the model said is kept, whatever it was
        if constrained:
            assert w.format == "json"
        # the missing ones are exactly those it did not name
        assert set(lab.missing_ids) == set(w.missing)
    s = summarize(labels)
    assert s["llm_calls_per_query"] == 1.0 and 0.0 <= s["repair_rate"] <= 1.0


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.data
def test_cli_label_kind_listwise_with_gemma(gemma_gguf, data_dir, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from rankdistill.cli.app import app

    monkeypatch.setenv("RANKDISTILL_THREADS", "1")
    store = tmp_path / "labels.sqlite"
    args = [
        "label",
        "--kind",
        "listwise",
        "-t",
        f"llamacpp:{gemma_gguf}",
        "-d",
        str(data_dir / "noveleval-2306"),
        "--run",
        str(data_dir / "noveleval-2306" / "runs" / "initial_order_top20.trec"),
        "-k",
        "3",
        "-n",
        "1",
        "--store",
        str(store),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["kind"] == "listwise" and summary["method"] == "one_pass" and summary["computed"] == 1
    assert summary["llm_calls_per_query"] == 1.0
    with LabelStore(store) as s:
        (rec,) = s.iter_records(kind="listwise")
        assert len(rec.value["permutation"]) == 3 and rec.query_id == "0"
    # run again: resumes, computes nothing
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout[again.stdout.index("{") :])["computed"] == 0
