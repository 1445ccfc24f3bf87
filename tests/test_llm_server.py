"""The HTTP backend against a real `python -m llama_cpp.server` on 127.0.0.1 serving Gemma 3 270M, and
the three backends side by side on the same prompts.

llama-cpp-python's server sorts the whole 262k-token vocabulary in Python for every echoed token, so
the prompts here are kept to a few tokens.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.llm

PAIRS = [("Paris is in", " France"), ("Water boils at", " 100 degrees")]


@pytest.fixture(scope="session")
def llama_server(start_llama_server):
    """A llama.cpp server process for the whole session; killed at the end."""
    with start_llama_server("--n_ctx", "256") as url:
        yield url


@pytest.fixture(scope="module")
def http_llm(llama_server):
    from rankdistill.llm import load_llm

    llm = load_llm(f"openai:{llama_server}", concurrency=2, timeout=300, json_mode="grammar", top_logprobs=50)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def local_llm(gemma_gguf):
    from rankdistill.llm import LlamaCppLLM

    llm = LlamaCppLLM(gemma_gguf, n_ctx=256, n_threads=1)
    yield llm
    llm.close()


def test_server_model_discovery_and_echo_scoring(http_llm, local_llm):
    assert http_llm.identity()["model"] == "gemma"
    remote = http_llm.score_continuations(PAIRS[:1])
    local = local_llm.score_continuations(PAIRS[:1])
    for r, loc in zip(remote, local, strict=True):
        assert r.n_tokens == loc.n_tokens  # same tokenizer, same split of prompt and continuation
        assert r.logprob == pytest.approx(loc.logprob, abs=0.15)


def test_server_next_token_logits(http_llm, local_llm):
    prompts = ["The capital of France is"]
    cands = [" Paris", " the", " a"]
    before = http_llm.echo_fallbacks
    (remote,) = http_llm.next_token_logits(prompts, cands)
    assert http_llm.echo_fallbacks == before  # found among the top tokens (the server strips their spaces)
    (local,) = local_llm.next_token_logits(prompts, cands)
    # the server gives log-probabilities, llama.cpp in-process raw logits: compare differences
    for i in (1, 2):
        assert remote[0] - remote[i] == pytest.approx(local[0] - local[i], abs=0.15)


def test_server_generation_with_grammar(http_llm):
    schema = {
        "type": "object",
        "properties": {"capital": {"enum": ["Paris", "Rome"]}},
        "required": ["capital"],
    }
    http_llm.generation_logprobs = False  # the server would sort 262k log-probs in Python per token
    try:
        g1, g2 = http_llm.generate(["France's capital, as JSON:"] * 2, max_tokens=16, json_schema=schema)
    finally:
        http_llm.generation_logprobs = True
    assert json.loads(g1.text)["capital"] in {"Paris", "Rome"}
    assert g1.text == g2.text  # greedy
    assert g1.n_tokens > 0 and g1.logprob != g1.logprob  # NaN: not asked for


@pytest.mark.slow
def test_three_backends_agree(http_llm, local_llm, gemma_gguf):
    """llama.cpp (Q4_K_M kernels), transformers (the same weights dequantised to bf16) and the HTTP
    server give roughly the same continuation log-probabilities for the same prompt."""
    from rankdistill.llm import HFLLM

    hf = HFLLM(gemma_gguf, batch_size=4)
    try:
        scores = {
            "llamacpp": local_llm.score_continuations(PAIRS),
            "hf": hf.score_continuations(PAIRS),
            "openai": http_llm.score_continuations(PAIRS),
        }
    finally:
        hf.close()
    for i in range(len(PAIRS)):
        n = {k: v[i].n_tokens for k, v in scores.items()}
        assert len(set(n.values())) == 1, n
        ref = scores["llamacpp"][i].logprob
        for name, s in scores.items():
            assert abs(s[i].logprob - ref) / n["hf"] < 0.3, (name, s[i].logprob, ref)
