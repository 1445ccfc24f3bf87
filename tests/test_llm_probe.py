"""The capability probe (`rankdistill.llm.probe`), `rankdistill doctor`, and the teachers' choice of method
and candidates, against real backends: llama-cpp-python's OpenAI-compatible server on 127.0.0.1 serving
Gemma 3 270M (base) with the Gemma chat format, and the in-process llama.cpp backend."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import subprocess
import sys

import pytest

from rankdistill.labels.store import LabelStore
from rankdistill.llm import LLMServerError, load_llm
from rankdistill.llm._common import logsumexp, looks_instruct
from rankdistill.llm.openai_compat import continuation_from_prompt_logprobs
from rankdistill.llm.probe import CapabilityError
from rankdistill.teachers import QueryLikelihoodTeacher, TrueFalseTeacher

pytestmark = pytest.mark.llm

RAIN = "Rain forms when water vapour in clouds condenses into droplets that grow heavy enough to fall."

# Gemma's turn format as a Jinja chat template (the Gemma 3 270M *base* GGUF carries none)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module")
def server(start_llama_server):
    with start_llama_server("--n_ctx", "512", "--chat_format", "gemma") as url:
        yield url


@pytest.fixture(scope="module")
def http(server):
    llm = load_llm(f"openai:{server}?concurrency=1&timeout=120")
    yield llm
    llm.close()


def rd(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RANKDISTILL_PROGRESS": "0", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "rankdistill", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_probe_finds_what_llama_cpp_python_serves(http, server):
    caps = http.capabilities()
    assert http.capabilities() is caps  # probed once per instance
    assert (caps.backend, caps.where, caps.model, caps.local) == ("openai", server, "gemma", False)
    # /completions: top log-probabilities (as many as asked), echo works, vLLM's prompt_logprobs is ignored
    assert caps.completions and caps.completion_top_logprobs == 20 == caps.top_logprobs_asked
    assert caps.echo_logprobs and caps.generation_logprobs
    assert not caps.prompt_logprobs and "ignored" in caps.details["prompt_logprobs"]
    # /chat/completions with logprobs and top_logprobs
    assert caps.chat and caps.chat_logprobs and caps.chat_top_logprobs == 20
    # JSON: only a GBNF grammar is obeyed; response_format (json_schema) is ignored on /completions
    assert caps.json_modes == ("grammar",)
    assert "did not follow the schema" in caps.details["json:response_format"]
    # llama-cpp-python's /v1/models says nothing of the context, and it has no /props
    assert caps.context_length is None
    # what teachers will do there
    assert caps.continuation_method() == "echo" and caps.next_token_method() == "completions"
    assert caps.json_mode() == "grammar" and http.supports_json_schema  # json_mode="auto"


def test_doctor_prints_capabilities_and_teacher_methods(server):
    proc = rd("doctor", "--llm", f"openai:{server}")
    assert proc.returncode == 0, proc.stderr
    out = re.sub(r"[ ]{2,}", "  ", proc.stdout)
    for line in (
        "echo log-probabilities (prompt)  yes",
        "vLLM prompt_logprobs  no  answered without prompt_logprobs (field ignored)",
        "top log-probabilities (chat)  yes  20 of 20 asked",
        "JSON schema output  yes  grammar (response_format: ignored",
        "truefalse  ok  top log-probabilities of /completions; candidates ' false' / ' true'",
        "qlm  ok  echo log-probabilities of /completions",
        "listwise  ok  generation; JSON constrained by the schema (grammar)",
    ):
        assert line in out, out


def test_doctor_on_a_dead_url_says_so_in_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    proc = rd("doctor", "--llm", f"openai:{url}")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: no OpenAI-compatible server answers at {url}/models"
    )
    assert "ConnectError" in lines[0]


def test_true_false_over_chat_sums_the_spellings_it_finds(server):
    llm = load_llm(f"openai:{server}?endpoint=chat&top_logprobs=200&concurrency=1")
    try:
        teacher = TrueFalseTeacher(llm, prompt="yes-no")
        no, yes = teacher.candidates
        assert "Yes" in yes and " yes" in yes and "No" in no  # spellings, not InRanker's " yes"
        (label,) = teacher.score([("what causes rain", RAIN)])
        assert all(math.isfinite(x) for x in label.logits) and label.score == pytest.approx(
            label.logits[1] - label.logits[0]
        )
        # each class is the probability mass of its spellings among the chat endpoint's top tokens
        (top,) = llm.top_next_tokens([teacher.render("what causes rain", RAIN)], via="chat")
        found = [[top[s] for s in group if s in top] for group in (no, yes)]
        assert all(found), sorted(top, key=top.get)[-10:]
        assert label.logits == pytest.approx([logsumexp(f) for f in found], abs=1e-6)
        assert teacher.identity()["candidates"]["true"] == list(yes) and "method" not in teacher.identity()
        # monoT5's "Relevant:" draws no true/false from a base model's chat turn: one clear line
        with pytest.raises(LLMServerError, match=r"is not among the server's top \d+ tokens") as err:
            TrueFalseTeacher(llm).score([("what causes rain", RAIN)])
        assert "\n" not in str(err.value)
    finally:
        llm.close()


def test_the_method_is_part_of_the_label_key(http, server, monkeypatch):
    caps = http.capabilities()
    usual = TrueFalseTeacher(http, prompt="yes-no")
    assert usual.plan().method == "completions" and "method" not in usual.identity()
    # the same server and settings, where /completions would give no top log-probabilities: chat instead
    other = load_llm(f"openai:{server}?concurrency=1&top_logprobs=200")
    try:
        monkeypatch.setattr(
            other, "capabilities", lambda: dataclasses.replace(caps, completion_top_logprobs=0)
        )
        fallback = TrueFalseTeacher(other, prompt="yes-no")
        assert other.identity() == http.identity()  # the backend's own key is the same ...
        ident = fallback.identity()
        assert ident["method"] == "chat" and ident["candidates"]["mass"] == "sum"
        key = LabelStore.key(ident, fallback.prompt_identity(), "q", "d")  # ... the label's is not
        assert key != LabelStore.key(usual.identity(), usual.prompt_identity(), "q", "d")
        (label,) = fallback.score([("what causes rain", RAIN)])  # really routed to /chat/completions
        assert all(math.isfinite(x) for x in label.logits)
    finally:
        other.close()
    # query likelihood: echo (not recorded), else vLLM's prompt_logprobs (recorded), else one clear line
    qlm = QueryLikelihoodTeacher(http)
    assert qlm.plan().method == "echo" and "method" not in qlm.identity()
    vllm_like = dataclasses.replace(caps, echo_logprobs=False, prompt_logprobs=True)
    monkeypatch.setattr(http, "capabilities", lambda: vllm_like)
    assert QueryLikelihoodTeacher(http).identity()["method"] == "prompt_logprobs"
    monkeypatch.setattr(http, "capabilities", lambda: dataclasses.replace(vllm_like, prompt_logprobs=False))
    with pytest.raises(CapabilityError) as err:
        QueryLikelihoodTeacher(http).identity()
    message = str(err.value)
    assert message.startswith(f"{server} (gemma) gives no log-probabilities of a prompt's tokens")
    assert "echo=true" in message and "prompt_logprobs: answered without" in message and "\n" not in message


def test_prompt_logprobs_are_read_back_from_the_end():
    # vLLM's shape: None for the first token, then {token id: {logprob, rank, decoded_token}}
    entries = [
        None,
        {"12": {"logprob": -1.0, "rank": 1, "decoded_token": "Q"}},
        {"7": {"logprob": -2.0, "rank": 3, "decoded_token": ":"}},
        {"99": {"logprob": -3.0, "rank": 2, "decoded_token": " hi"}},
        {"5": {"logprob": -4.0, "rank": 9, "decoded_token": " there"}},
    ]
    assert continuation_from_prompt_logprobs(entries, len(" there")) == [-4.0]
    assert continuation_from_prompt_logprobs(entries, len("i there")) == [-3.0, -4.0]  # straddling token
    assert continuation_from_prompt_logprobs(entries, 0) == []
    assert continuation_from_prompt_logprobs(entries, 100) is None  # runs into the first token


def test_local_chat_template_candidates_and_keys(gemma_gguf):
    pytest.importorskip("llama_cpp")
    from rankdistill.errors import RankdistillError
    from rankdistill.llm.llamacpp import LlamaCppLLM

    assert looks_instruct(["gemma-3-270m-it-Q4_K_M.gguf"]) and looks_instruct(["Qwen2.5-7B-Instruct"])
    assert not looks_instruct(["Gemma 3 270m", "gemma-3", "gemma-3-270m-q4_k_m.gguf"])
    raw = LlamaCppLLM(gemma_gguf, n_ctx=256, n_threads=1)
    chat = LlamaCppLLM(gemma_gguf, n_ctx=256, n_threads=1, chat_template=GEMMA_TEMPLATE)
    try:
        # this base model's GGUF has no tokenizer.chat_template: auto leaves prompts raw, true refuses
        assert (raw.chat, raw.chat_template_source, raw.instruct) == (False, None, False)
        caps = raw.capabilities()
        assert caps.local and caps.chat_template is None and not caps.chat_applied
        assert caps.context_length == 256 and "trained for 32768" in caps.context_source
        with pytest.raises(RankdistillError, match="has no chat template"):
            LlamaCppLLM(gemma_gguf, n_ctx=256, n_threads=1, chat=True)
        # a given template is used (auto), its special tokens parsed, the prompt's own text never
        assert chat.chat and chat.capabilities().chat_applied
        ids = chat.prompt_ids("hi <start_of_turn>")
        start_of_turn = raw.tokenize("<start_of_turn>", add_bos=False)
        bos = raw.tokenize("x")[0]
        assert ids[:2] == [bos, 105] and ids.count(105) == 2  # <start_of_turn>: the template's two turns
        assert ids[-3:] == [105, *raw.tokenize("model\n", add_bos=False)] and len(start_of_turn) > 1
        assert "chat_template" in chat.identity() and "chat_template" not in raw.identity()

        plain, turn = TrueFalseTeacher(raw), TrueFalseTeacher(chat)
        assert plain.candidates == (" false", " true")  # InRanker's pair on a raw prompt
        assert turn.candidates[1] == ("true", " true", "True", " True", "TRUE", " TRUE")  # one token each
        assert plain.identity() != turn.identity() and "method" not in turn.identity()
        (label,) = turn.score([("what causes rain", RAIN)])
        prompt = turn.render("what causes rain", RAIN)
        (each,) = chat.next_token_logits([prompt], list(turn.candidates[0] + turn.candidates[1]))
        expected = [logsumexp(each[:6]), logsumexp(each[6:])]
        assert label.logits == pytest.approx(expected, abs=0.3)  # llama.cpp's KV-cache reuse moves logits
        # query likelihood in a chat turn: the query is the model's answer, without a leading space
        (ql,) = QueryLikelihoodTeacher(chat).score([("what causes rain", RAIN)])
        prompt = QueryLikelihoodTeacher(chat).render("what causes rain", RAIN)
        (ref,) = chat.score_continuations([(prompt, "what causes rain")])
        assert ql.score == pytest.approx(ref.mean_logprob, abs=0.1) and math.isfinite(ql.score)
    finally:
        raw.close()
        chat.close()
