"""LLM teachers run for real: Gemma 3 270M (GGUF) through llama.cpp."""

from __future__ import annotations

import pytest

from rankdistill.teachers import QueryLikelihoodTeacher, TrueFalseTeacher
from rankdistill.teachers.prompts import get_prompt, truncate_words

pytestmark = pytest.mark.llm

RAIN = "Rain forms when water vapour in clouds condenses into droplets that grow heavy enough to fall to the ground."
MARKET = "The stock market fell sharply on Monday after the central bank raised interest rates again."


@pytest.fixture(scope="module")
def llm(gemma_gguf):
    pytest.importorskip("llama_cpp")
    from rankdistill.llm.llamacpp import LlamaCppLLM

    model = LlamaCppLLM(gemma_gguf, n_ctx=1024, n_threads=2)
    yield model
    model.close()


def test_prompts_are_registered_and_versioned():
    mono = get_prompt("monot5")
    assert mono.render(query="q", document="d") == "Query: q Document: d Relevant:"
    assert get_prompt("yes-no").version == "1" and "{query}" in get_prompt("yes-no").template
    assert get_prompt("upr").fields == {"document"}
    assert truncate_words("a b  c d", 2) == "a b" and truncate_words("a b", 5) == "a b"


def test_true_false_logit_pair(llm):
    teacher = TrueFalseTeacher(llm)
    assert teacher.candidates == (" false", " true")  # causal model: the word after "Relevant:" has a space
    pairs = [("what causes rain", RAIN), ("what causes rain", MARKET)]
    labels = teacher.score(pairs)
    for lab in labels:
        false_logit, true_logit = lab.logits
        assert lab.score == pytest.approx(true_logit - false_logit)
    # the pair is exactly what the backend gives for the rendered monoT5 prompt
    # (llama.cpp reuses the KV cache of the longest common prefix with the previous call, and its
    # results move by up to ~0.2 logits with what was reused, hence the tolerance)
    prompt = f"Query: what causes rain Document: {RAIN} Relevant:"
    assert labels[0].logits == pytest.approx(llm.next_token_logits([prompt], [" false", " true"])[0], abs=0.3)
    assert teacher.score(pairs[1:])[0].logits == pytest.approx(labels[1].logits, abs=0.3)
    ident = teacher.identity()
    assert ident["llm"] == llm.identity() and ident["candidates"] == [" false", " true"]
    assert teacher.prompt_identity()["name"] == "monot5"

    yes_no = TrueFalseTeacher(llm, prompt="yes-no")
    assert yes_no.candidates == (" no", " yes") and yes_no.name == "yesno"
    assert yes_no.prompt_identity() != teacher.prompt_identity()
    assert len(yes_no.score(pairs[:1])[0].logits) == 2


def test_query_likelihood_prefers_the_relevant_document(llm):
    teacher = QueryLikelihoodTeacher(llm)
    labels = teacher.score([("what causes rain", RAIN), ("what causes rain", MARKET)])
    assert labels[0].score > labels[1].score  # a real, if weak, signal even at 270M parameters
    assert labels[0].logits is None and labels[0].score < 0
    prompt = get_prompt("upr").render(document=RAIN)
    ref = llm.score_continuations([(prompt, " what causes rain")])[0]
    assert labels[0].score == pytest.approx(ref.mean_logprob, abs=0.1)  # see the KV-cache note above
