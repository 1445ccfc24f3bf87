"""Reasoning teacher: schema checks, bounded retries that show the model its error, failures recorded,
comparison reasoning tied to the listwise permutation, the label store. `llm` tests run real Gemma."""

from __future__ import annotations

import json
import re

import pytest

from rankdistill.data.types import Corpus, Document, Queries, Run
from rankdistill.labels.reasoning import label_reasoning, reasoning_targets
from rankdistill.labels.store import LabelStore
from rankdistill.llm.base import LLM, ContinuationScore, Generation
from rankdistill.teachers.reasoning import (
    ReasoningTeacher,
    comparison_windows,
)


class TutoredLLM(LLM):
    """Answers reasoning prompts like a careless model that learns from its errors: a document with
    'sloppy' in it first gets an invalid answer, then a valid one once the prompt shows the error; one
    with 'hopeless' never gets a valid answer. Listwise prompts get the passages in input order."""

    backend = "tutored"
    supports_json_schema = False

    def __init__(self):
        self.prompts: list[str] = []

    def identity(self):
        return {"backend": self.backend}

    def _answer(self, prompt: str) -> str:
        retry = "That answer is invalid" in prompt
        if prompt.startswith("I will give you"):  # listwise
            n = int(re.match(r"I will give you (\d+)", prompt).group(1))
            return " > ".join(f"[{i}]" for i in range(1, n + 1))
        if "hopeless" in prompt:
            return "I would rather not say."
        if "Document:" in prompt:
            if "sloppy" in prompt and not retry:
                return 'Sure: {"reasoning": "...", "relevance": 3}'
            return json.dumps(
                {"reasoning": "The document talks about solar panels, as the query asks.", "relevance": 2}
            )
        pairs = re.findall(r"\[(\d+)\] above \[(\d+)\]", prompt.split("The pairs, in order, are:")[1])
        comps = [
            {"higher": int(a), "lower": int(b), "reason": f"Passage {a} is closer to the query than {b}."}
            for a, b in pairs
        ]
        if "sloppy" in prompt and not retry:
            comps = comps[::-1]
        return json.dumps({"comparisons": comps})

    def generate(
        self, prompts, *, max_tokens=128, temperature=0.0, top_p=1.0, seed=0, stop=None, json_schema=None
    ):
        self.prompts.extend(prompts)
        return [Generation(text=self._answer(p), n_tokens=20, prompt_tokens=len(p) // 4) for p in prompts]

    def score_continuations(self, pairs):
        return [ContinuationScore(0.0, 0) for _ in pairs]

    def next_token_logits(self, prompts, candidates):
        return [[0.0] * len(candidates) for _ in prompts]


def test_valid_answers_pass_first_time_and_invalid_ones_are_retried_with_the_error():
    llm = TutoredLLM()
    teacher = ReasoningTeacher(llm, max_retries=2)
    good, sloppy, hopeless = teacher.explain(
        [("solar panels", "solar panels are great"), ("solar panels", "a sloppy page"), ("solar", "hopeless")]
    )
    assert good.ok and len(good.attempts) == 1 and good.value["relevance"] == 2
    assert sloppy.ok and len(sloppy.attempts) == 2
    assert "relevance" in sloppy.attempts[0].error and "reasoning" in sloppy.attempts[0].error
    retry_prompt = [p for p in llm.prompts if "That answer is invalid" in p][0]
    assert sloppy.attempts[0].error in retry_prompt and '"relevance": 3' in retry_prompt
    # bounded: 1 + max_retries attempts, then a recorded failure that keeps every attempt
    assert not hopeless.ok and hopeless.status == "failed" and len(hopeless.attempts) == 3
    assert hopeless.error == "no JSON object found in the answer"
    value = hopeless.to_value()
    assert value["status"] == "failed" and value["llm_calls"] == 3 and len(value["attempts"]) == 3


def test_comparison_reasons_follow_the_permutation():
    teacher = ReasoningTeacher(TutoredLLM(), max_retries=1)
    ok, fixed = teacher.compare([("q", ["a", "b", "c"]), ("q", ["sloppy a", "b", "c", "d"])])
    assert ok.ok and [(c["higher"], c["lower"]) for c in ok.value["comparisons"]] == [(1, 2), (2, 3)]
    assert fixed.ok and len(fixed.attempts) == 2 and "higher=1" in fixed.attempts[0].error
    assert len(fixed.value["comparisons"]) == 3


def test_looping_text_is_rejected():
    from rankdistill.teachers.parsing import parse_structured
    from rankdistill.teachers.reasoning import ExplicitReasoning

    loop = "The document is not relevant to the query. " * 3
    p = parse_structured(json.dumps({"reasoning": loop, "relevance": 0}), ExplicitReasoning)
    assert not p.ok and "repeats" in p.error
    once = "The document is not relevant to the query. It is about cooking."
    assert parse_structured(json.dumps({"reasoning": once, "relevance": 0}), ExplicitReasoning).ok


def test_no_retries_means_one_attempt():
    (r,) = ReasoningTeacher(TutoredLLM(), max_retries=0).explain([("q", "sloppy")])
    assert not r.ok and len(r.attempts) == 1


def test_comparison_windows_overlap_by_one():
    assert comparison_windows(10, 5) == [(0, 5), (4, 9), (8, 10)]
    assert comparison_windows(5, 5) == [(0, 5)]
    assert comparison_windows(1, 5) == []
    with pytest.raises(ValueError):
        comparison_windows(5, 1)


def test_label_reasoning_stores_everything_and_resumes(tmp_path):
    docs = [Document(f"d{i}", f"passage {i} about solar panels") for i in range(8)]
    docs[2] = Document("d2", "a sloppy passage")
    docs[5] = Document("d5", "a hopeless passage")
    corpus = Corpus(docs)
    queries = Queries({"q1": "solar panels", "q2": "panel efficiency"})
    run = Run({q: {f"d{i}": 10.0 - i for i in range(8)} for q in queries})
    store = LabelStore(tmp_path / "labels.sqlite")
    llm = TutoredLLM()
    summary = label_reasoning(
        llm,
        store,
        queries,
        corpus,
        run,
        explicit_depth=6,
        comparison_depth=6,
        comparison_window=3,
        max_retries=1,
        listwise={"method": "one_pass"},
        show_progress=False,
    )
    ex, cp = summary["explicit"], summary["comparison"]
    assert ex["labels"] == 12 and ex["failed"] == 2 and ex["ok"] == 10  # d5 twice is hopeless
    assert ex["attempts_histogram"] == {1: 8, 2: 4}
    assert cp["labels"] == 2 * len(comparison_windows(6, 3))
    assert summary["listwise"]["computed"] == 2
    recs = list(store.iter_records(kind="reasoning"))
    assert len(recs) == 12 + cp["labels"]
    failed = [r for r in recs if r.value["status"] == "failed"]
    assert all(len(r.value["attempts"]) == 2 for r in failed)
    assert {r.doc_ids[0] for r in failed if r.value["type"] == "explicit"} == {"d5"}
    # a window holding the hopeless passage fails too, and is recorded with it
    assert {r.value["type"] for r in failed} == {"explicit", "comparison"}
    assert all("d5" in r.doc_ids for r in failed)
    comp = next(r for r in recs if r.value["type"] == "comparison" and r.value["first_rank"] == 3)
    perm = next(r for r in store.iter_records(kind="listwise") if r.query_id == comp.query_id).value[
        "permutation"
    ]
    assert comp.doc_ids == perm[2:5]  # the window is a slice of the listwise permutation
    assert [(c["higher_doc"], c["lower_doc"]) for c in comp.value["comparisons"]] == list(
        zip(perm[2:4], perm[3:5], strict=True)
    )
    assert comp.value["prompts"]["reasoning-comparison"]["version"]
    targets = list(reasoning_targets(store, corpus))
    assert len(targets) == len(recs) - len(failed)  # failures stay in the store, not in the training targets
    assert any(t["target"].startswith("[3] > [4]:") for t in targets)
    # resume: nothing is recomputed
    n_calls = len(llm.prompts)
    again = label_reasoning(
        llm,
        store,
        queries,
        corpus,
        run,
        explicit_depth=6,
        comparison_depth=6,
        comparison_window=3,
        max_retries=1,
        listwise={"method": "one_pass"},
        show_progress=False,
    )
    assert len(llm.prompts) == n_calls
    assert again["explicit"]["cached"] == 12 and again["explicit"]["computed"] == 0
    store.close()


# -- the real model -----------------------------------------------------------------------------------


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.data
def test_gemma_reasoning_is_checked_retried_and_recorded(gemma_gguf, data_dir):
    from rankdistill.data.datasets import load_dataset
    from rankdistill.llm.llamacpp import LlamaCppLLM

    ds = load_dataset(data_dir / "noveleval-2306")
    run = ds.run("initial_order_top20")
    qid = run.query_ids[0]
    texts = [ds.corpus[d].full_text for d, _ in run.ranked(qid, 2)]
    llm = LlamaCppLLM(gemma_gguf, n_ctx=1024, n_threads=1)
    try:
        # a tight token budget: a small model's answer is often cut off, which must end in a retry
        teacher = ReasoningTeacher(llm, max_retries=1, max_passage_words=30, max_tokens=32)
        (explicit,) = teacher.explain([(ds.queries[qid], texts[0])])
        (comparison,) = teacher.compare([(ds.queries[qid], texts)])
    finally:
        llm.close()
    for r in (explicit, comparison):
        assert r.status in ("ok", "failed") and 1 <= len(r.attempts) <= 2
        assert all(a.raw.lstrip().startswith("{") for a in r.attempts)  # the JSON grammar held
        assert all(a.prompt_tokens > 50 and a.completion_tokens > 0 for a in r.attempts)
        if r.ok:
            assert r.attempts[-1].error is None
        else:
            assert r.error and len(r.attempts) == 2  # retried once, then recorded as a failure
        value = r.to_value()
        assert value["status"] == r.status and value["llm_calls"] == len(r.attempts)
    if explicit.ok:
        assert explicit.value["relevance"] in (0, 1, 2)
    if comparison.ok:
        assert [(c["higher"], c["lower"]) for c in comparison.value["comparisons"]] == [(1, 2)]
