"""The llama.cpp backend, for real, on Gemma 3 270M (Q4_K_M GGUF)."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.llm

DOC = "The mitochondrion is the powerhouse of the cell: it makes most of the cell's supply of ATP."
QL_PROMPT = f"Passage: {DOC}\nPlease write a question based on this passage.\nQuestion:"


@pytest.fixture(scope="module")
def llm(gemma_gguf):
    pytest.importorskip("llama_cpp")
    from rankdistill.llm import load_llm

    # the packaged model's alias resolves to the same file (1 thread: the test machine's CPUs are shared)
    model = load_llm("llamacpp:gemma3-270m", n_ctx=512, n_threads=1)
    yield model
    model.close()


def test_identity_and_tokens(llm, gemma_gguf):
    ident = llm.identity()
    assert ident["backend"] == "llamacpp" and ident["model"] == gemma_gguf.name
    assert len(ident["fingerprint"]) == 24
    assert llm.count_tokens("hello world") == 2
    assert llm.tokenize("hello")[0] == 2  # Gemma's BOS


def test_scores_are_log_probabilities_and_cache_independent(llm):
    pairs = [
        (QL_PROMPT, " Which part of the cell makes ATP?"),
        (QL_PROMPT, " Which team won the world cup?"),
        ("The capital of France is", " Paris"),
    ]
    first = llm.score_continuations(pairs)
    # reversed order: the KV cache now holds other prefixes; results must not depend on it
    again = llm.score_continuations(pairs[::-1])[::-1]
    for a, b in zip(first, again, strict=True):
        assert a.n_tokens == len(a.token_logprobs) > 0
        assert all(lp <= 0 for lp in a.token_logprobs)
        assert a.logprob == pytest.approx(sum(a.token_logprobs))
        assert a.logprob == pytest.approx(b.logprob, abs=2e-2)  # batch split changes float sums
    # the passage is about ATP: the on-topic question is more likely (query likelihood, UPR)
    assert first[0].logprob > first[1].logprob
    assert llm.score_continuations([("abc", "")])[0].n_tokens == 0


def test_next_token_logits_match_scores(llm):
    prompt = f"Query: what makes ATP Document: {DOC} Relevant:"
    (row,) = llm.next_token_logits([prompt], [" true", " false"])
    t, f = llm.score_continuations([(prompt, " true"), (prompt, " false")])
    assert t.n_tokens == f.n_tokens == 1
    # logits and log-probs differ by the same constant (the log partition function)
    assert row[0] - row[1] == pytest.approx(t.logprob - f.logprob, abs=0.1)
    rows = llm.next_token_logits([prompt, "The capital of France is"], [" true", " false"])
    assert rows[0] == pytest.approx(row, abs=0.1)


def test_greedy_and_seeded_generation(llm):
    g1, g2 = llm.generate(["The capital of France is", "The capital of France is"], max_tokens=8)
    assert g1.text == g2.text and g1.text  # greedy ignores the seed
    assert 0 < g1.n_tokens <= 8 and g1.prompt_tokens == 6
    rescored = llm.score_continuations([("The capital of France is", g1.text)])[0]
    assert g1.logprob == pytest.approx(rescored.logprob, abs=0.1)
    s1 = llm.generate(["Write a question about cells:"] * 2, max_tokens=6, temperature=1.0, seed=3)
    s2 = llm.generate(["Write a question about cells:"] * 2, max_tokens=6, temperature=1.0, seed=3)
    assert [g.text for g in s1] == [g.text for g in s2]  # a call repeats exactly
    assert s1[0].text != s1[1].text  # copies of a prompt get seeds 3 and 4


def test_stop_strings(llm):
    (g,) = llm.generate(["Three colours: red, green,"], max_tokens=8, stop=[".", "\n"])
    assert g.text == " and blue" and g.finish_reason == "stop"


def test_json_schema_grammar(llm):
    schema = {
        "type": "object",
        "properties": {"relevant": {"type": "boolean"}, "topic": {"enum": ["biology", "sport"]}},
        "required": ["relevant", "topic"],
    }
    (g,) = llm.generate(
        [f"Is this document about cells? {DOC}\nAnswer in JSON:"], max_tokens=40, json_schema=schema
    )
    obj = json.loads(g.text)
    assert isinstance(obj["relevant"], bool) and obj["topic"] in {"biology", "sport"}
    assert math.isfinite(g.logprob) and g.logprob < 0


def test_without_prefix_cache_results_repeat_exactly(llm):
    llm.prefix_cache = False
    try:
        pairs = [(QL_PROMPT, " Which part of the cell makes ATP?"), (QL_PROMPT, " Where is ATP made?")]
        a = llm.score_continuations(pairs)
        b = llm.score_continuations(pairs[::-1])[::-1]
        assert [x.logprob for x in a] == [x.logprob for x in b]
    finally:
        llm.prefix_cache = True


def test_too_long_input_is_a_clear_error(llm):
    with pytest.raises(ValueError, match="do not fit the context window of 512"):
        llm.score_continuations([("word " * 600, " end")])
