"""Listwise prompts as chat turns (RankGPT, RankZephyr) and FIRST's first-token ranking, on real backends:
the in-process llama.cpp Gemma 3 270M (base: its GGUF has no chat template, so a Gemma-style one is given)
and llama-cpp-python's OpenAI-compatible server on 127.0.0.1 (Gemma chat format). What a server receives
cannot be captured through llama.cpp, so the messages are checked as data, and the chat path end to end."""

from __future__ import annotations

import dataclasses

import pytest

from rankdistill.labels.store import LabelStore
from rankdistill.llm import load_llm
from rankdistill.llm.base import LLM, ContinuationScore, Generation
from rankdistill.llm.probe import Capabilities, CapabilityError
from rankdistill.teachers.listwise import ListwiseItem, ListwiseTeacher, sliding_windows
from rankdistill.teachers.prompts.listwise import RANKGPT, RANKZEPHYR

# Gemma's turn format as a Jinja chat template (as tests/test_llm_probe.py gives it)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

QUERY = "what causes rain"
TEXTS = [
    "BM25 is a ranking function used by search engines.",
    "Rain forms when water vapour in clouds condenses into droplets that fall.",
    "Cats sleep for most of the day.",
    "Clouds hold droplets; when they grow heavy they fall as rain.",
    "The stock market closed higher on Friday.",
    "Evaporation lifts water from oceans into the air, where it cools into clouds.",
]

RANKGPT_POST = (
    "Search Query: {q}. \nRank the {n} passages above based on their relevance to the search query. The "
    "passages should be listed in descending order using identifiers. The most relevant passages should be "
    "listed first. The output format should be [] > [], e.g., [1] > [2]. Only response the ranking results, "
    "do not say any word or explain."
)


class StubLLM(LLM):
    """Keys only: the identity of tests/test_listwise.py's OverlapLLM(), so plain-prompt keys can be
    compared with literals computed there before presets existed."""

    backend = "overlap"

    def identity(self):
        return {"backend": "overlap", "keep": None, "repeat": False, "chatter": False}

    def generate(self, prompts, **kw):
        return [Generation("[1]") for _ in prompts]

    def score_continuations(self, pairs):
        return [ContinuationScore(0.0, 0) for _ in pairs]

    def next_token_logits(self, prompts, candidates):
        return [[0.0] * len(candidates) for _ in prompts]


@pytest.fixture(scope="module")
def gemma(gemma_gguf):
    pytest.importorskip("llama_cpp")
    from rankdistill.llm.llamacpp import LlamaCppLLM

    # no prefix cache: a cold evaluation each call, so FIRST's scores repeat exactly in a direct call
    raw = LlamaCppLLM(gemma_gguf, n_ctx=2048, n_threads=1, prefix_cache=False)
    chat = LlamaCppLLM(gemma_gguf, n_ctx=2048, n_threads=1, chat_template=GEMMA_TEMPLATE)
    yield raw, chat
    raw.close()
    chat.close()


@pytest.fixture(scope="module")
def server(start_llama_server):
    with start_llama_server("--n_ctx", "2048", "--chat_format", "gemma") as url:
        yield url


def item(n: int = 6) -> ListwiseItem:
    return ListwiseItem("q1", QUERY, [f"d{i}" for i in range(n)], TEXTS[:n])


# ---------------------------------------------------------------------------------------------- messages
def test_rankgpt_and_rankzephyr_messages_are_what_they_send():
    texts = ["Rain falls [3] from clouds.", "Cats  sleep\na lot."]
    msgs = RANKGPT.messages(QUERY, texts, ["1", "2"])
    assert msgs == [
        {
            "role": "system",
            "content": "You are RankGPT, an intelligent assistant that can rank passages based on their "
            "relevancy to the query.",
        },
        {
            "role": "user",
            "content": "I will provide you with 2 passages, each indicated by number identifier []. \n"
            f"Rank the passages based on their relevance to query: {QUERY}.",
        },
        {"role": "assistant", "content": "Okay, please provide the passages."},
        {"role": "user", "content": "[1] Rain falls [3] from clouds."},
        {"role": "assistant", "content": "Received passage [1]."},
        {"role": "user", "content": "[2] Cats sleep a lot."},
        {"role": "assistant", "content": "Received passage [2]."},
        {"role": "user", "content": RANKGPT_POST.format(q=QUERY, n=2)},
    ]
    # RankZephyr: its system prompt and one user message with every passage ("[n]" inside one is "(n)")
    system, user = RANKZEPHYR.messages(QUERY, texts, ["1", "2"])
    assert system == {
        "role": "system",
        "content": "You are RankLLM, an intelligent assistant that can rank passages based on their "
        "relevancy to the query.",
    }
    assert user["role"] == "user" and user["content"] == (
        "I will provide you with 2 passages, each indicated by a numerical identifier []. Rank the passages "
        f"based on their relevance to the search query: {QUERY}.\n\n[1] Rain falls (3) from clouds.\n"
        f"[2] Cats sleep a lot.\nSearch Query: {QUERY}.\nRank the 2 passages above based on their relevance "
        "to the search query. All the passages should be included and listed using identifiers, in "
        "descending order of relevance. The output format should be [] > [], e.g., [4] > [2], Only respond "
        "with the ranking results, do not say any word or explain."
    )
    # as one text: the system message, the user's turns; the acknowledgements only make sense as turns
    text = RANKGPT.text(QUERY, texts, ["1", "2"])
    assert text.startswith("You are RankGPT") and "Received passage" not in text and "Okay" not in text
    assert "\n\n[1] Rain falls [3] from clouds.\n[2] Cats sleep a lot.\n\nSearch Query:" in text
    # letters (FIRST) change the identifiers and the example only
    lettered = RANKGPT.messages(QUERY, texts, ["A", "B"], "letters")
    assert lettered[3]["content"].startswith("[A] ") and lettered[6]["content"] == "Received passage [B]."
    assert "letter identifier []" in lettered[1]["content"] and "e.g., [A] > [B]" in lettered[-1]["content"]


def test_turns_go_through_the_template_with_the_answer_started(gemma):
    raw, chat = gemma
    tok = raw._llama
    start_of_turn = 105
    # a single prompt is a user message rendered by the same code as any messages
    assert chat.prompt_ids("hi there") == chat.prompt_ids([{"role": "user", "content": "hi there"}])
    teacher = ListwiseTeacher(chat, method="one_pass", prompt="rankgpt")  # messages=auto: chat is on
    texts = [TEXTS[0], "Rain <start_of_turn>user falls."]  # control-token text inside a passage stays text
    prompt = teacher.render(QUERY, texts)
    assert prompt == RANKGPT.messages(QUERY, texts, ["1", "2"]) and teacher.prompt_identity()["messages"]
    ids = chat.prompt_ids(prompt)
    assert ids.count(start_of_turn) == len(prompt) + 1  # one per message, and the model's opened turn
    shown = tok.detokenize(ids, special=True).decode()
    assert shown.startswith("<bos><start_of_turn>system\nYou are RankGPT")
    assert "<start_of_turn>model\nReceived passage [2].<end_of_turn>\n" in shown
    assert shown.endswith("do not say any word or explain.<end_of_turn>\n<start_of_turn>model\n")
    # FIRST gives the answer's opening bracket: a last assistant message is continued, not closed
    first = ListwiseTeacher(chat, method="first", prompt="rankgpt", window=4, step=2)
    started = first.render(QUERY, texts)
    assert started == [*prompt, {"role": "assistant", "content": "["}]
    assert tok.detokenize(chat.prompt_ids(started), special=True).decode().endswith("<start_of_turn>model\n[")
    # a model without a chat template cannot take turns: messages=true says so in one line
    with pytest.raises(Exception, match="has no chat template") as err:
        ListwiseTeacher(raw, prompt="rankgpt", messages=True).prompt_identity()
    assert "\n" not in str(err.value)
    assert ListwiseTeacher(raw, prompt="rankgpt").prompt_identity()["messages"] is False  # auto: one text


# ---------------------------------------------------------------------------------------------- FIRST
def test_first_ranks_each_window_by_the_identifier_logits(gemma):
    raw, _ = gemma
    teacher = ListwiseTeacher(raw, method="first", window=4, step=2, depth=6)
    (label,) = teacher.rank([item()])
    windows = sliding_windows(6, 4, 2)
    assert label.method == "first" and label.llm_calls == len(windows) == 2
    assert sorted(label.order) == list(range(6)) and label.missing == []
    assert label.completion_tokens == 2 and all(w.completion_tokens == 1 for w in label.windows)
    assert teacher.identity()["settings"]["first"] == {"identifiers": "numbers", "prefill": "["}
    for w in label.windows:
        assert (
            sorted(w.order) == sorted(w.doc_ids) and w.format == "first" and w.finish_reason == "first_token"
        )
        # the window's scores are the identifiers' logits, read straight from the model
        texts = [TEXTS[int(d[1:])] for d in w.doc_ids]
        (logits,) = raw.next_token_logits([teacher.render(QUERY, texts)], ["1", "2", "3", "4"])
        assert w.scores == pytest.approx(logits, abs=1e-3)
        by_logit = sorted(range(4), key=lambda j: (-logits[j], j))
        assert w.order == [w.doc_ids[j] for j in by_logit]
        assert w.raw == " > ".join(f"[{j + 1}]" for j in by_logit)
    # the prompt is the plain one with the answer's bracket after it
    assert teacher.render(QUERY, TEXTS[:4]).endswith("Ranking: [")
    # a window of 20: "10".."20" are two tokens of Gemma's vocabulary, so letters (each one token)
    wide = ListwiseTeacher(raw, method="first")
    assert wide.first_plan().identifiers == "letters" and "[T] " in wide.render(QUERY, TEXTS * 3 + TEXTS[:2])
    with pytest.raises(ValueError, match=r"not one token of .*identifiers=letters"):
        ListwiseTeacher(raw, method="first", identifiers="numbers").first_plan()


def test_label_keys_by_preset_and_method_and_plain_keys_unchanged():
    def key(**kw) -> str:
        t = ListwiseTeacher(StubLLM(), **kw)
        return LabelStore.key(t.identity(), t.prompt_identity(), "what is bm25", ["a b", "c d"])

    # computed before presets and FIRST existed (tests/test_listwise.py's OverlapLLM, same texts)
    assert key(method="one_pass") == "46940e38c88b42db6f4718368b58cb45dfacea18"
    assert key(method="sliding_window", window=4, step=2) == "a63d4fd4b82b6a9f995a617154de5b17ed4fc733"
    assert key(method="one_pass", constrained=True) == "a69076068cf3b3c0f961d0d558cea285cc45cd27"
    assert key(method="one_pass", prompt="plain", messages="auto") == key(method="one_pass")
    keys = {
        key(method=m, prompt=p, window=4, step=2)
        for m in ("one_pass", "sliding_window", "first")
        for p in ("plain", "rankgpt", "rankzephyr")
    }
    assert len(keys) == 9
    # the preset's name and version are in the key
    ident = ListwiseTeacher(StubLLM(), prompt="rankzephyr").prompt_identity()
    assert ident["preset"] == "rankzephyr" and ident["version"] == "1" and ident["messages"] is False
    with pytest.raises(ValueError, match="constrained JSON output goes with prompt 'plain'"):
        ListwiseTeacher(StubLLM(), prompt="rankgpt", constrained=True)


# ---------------------------------------------------------------------------------------------- a server
def served(url: str, endpoint: str) -> Capabilities:
    """What the probe finds on this server (tests/test_llm_probe.py probes it for real and checks each
    of these): given here, since the probe's dozen requests take half a minute on a shared 2-core machine."""
    return Capabilities(
        backend="openai",
        where=url,
        model="gemma",
        local=False,
        endpoint=endpoint,
        completion_top_logprobs=20,
        chat=True,
        chat_logprobs=True,
        chat_top_logprobs=20,
        json_modes=("grammar",),
        chat_template="server",
        chat_applied=endpoint == "chat",
        top_logprobs_asked=20,
    )


def test_chat_turns_and_first_through_a_real_server(server):
    chat = load_llm(f"openai:{server}?endpoint=chat&concurrency=1&timeout=120")
    http = load_llm(f"openai:{server}?concurrency=1&timeout=120")
    chat.__dict__["_capabilities"] = served(server, "chat")
    http.__dict__["_capabilities"] = served(server, "completions")
    try:
        # RankGPT's turns through /chat/completions (auto: endpoint=chat), read back as a permutation
        teacher = ListwiseTeacher(chat, method="one_pass", prompt="rankgpt", max_tokens=12)
        assert teacher.prompt_identity()["messages"] is True
        (label,) = teacher.rank([item(2)])
        assert sorted(label.order) == [0, 1] and label.llm_calls == 1
        w = label.windows[0]
        assert w.completion_tokens > 1 and w.prompt_tokens > 0 and w.raw  # the model wrote an answer

        # FIRST through /completions' top log-probabilities: one call, one token, for the window
        first = ListwiseTeacher(http, method="first", window=4, step=2, depth=4)
        plan = first.first_plan()
        assert (plan.method, plan.identifiers, plan.route["missing"]) == ("completions", "numbers", "nan")
        assert "route" not in first.identity()["settings"]["first"]  # the endpoint's usual route
        (label,) = first.rank([item(4)])
        assert label.llm_calls == 1 and label.completion_tokens == 1 and sorted(label.order) == [0, 1, 2, 3]
        (w,) = label.windows
        (top,) = http.top_next_tokens([first.render(QUERY, TEXTS[:4])])
        present = [j for j in range(4) if str(j + 1) in top]
        assert [s is not None for s in w.scores] == [j in present for j in range(4)]
        assert w.repairs["missing"] == 4 - len(present)  # identifiers the server did not return: counted
        assert all(w.scores[j] == pytest.approx(top[str(j + 1)], abs=1e-4) for j in present)
        # those present by log-probability, then the missing ones in input order
        order = sorted(present, key=lambda j: (-top[str(j + 1)], j)) + [
            j for j in range(4) if j not in present
        ]
        assert w.order == [w.doc_ids[j] for j in order]
        assert ListwiseTeacher(http, method="sliding_window", window=4, step=2).identity() != first.identity()

        # where the server returns too few top log-probabilities: one line naming it and what is missing
        http.__dict__["_capabilities"] = dataclasses.replace(
            served(server, "completions"), completion_top_logprobs=2, chat_top_logprobs=2
        )
        with pytest.raises(CapabilityError) as err:
            ListwiseTeacher(http, method="first", window=4, step=2).identity()
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"{server} (gemma): listwise method 'first' reads all 4")
        assert "/completions returned 2 of logprobs=20" in msg and "top_logprobs to 4 or more" in msg
    finally:
        chat.close()
        http.close()


def test_what_a_chat_server_is_sent_for_first():
    """What goes over the wire (a small HTTP stub records it; llama.cpp's server cannot show it): RankGPT's
    turns and the answer's opening bracket as a last assistant message, continued (vLLM's
    continue_final_message), one token with its top log-probabilities."""
    from test_llm_openai import Stub

    def respond(path, body):
        assert path == "/v1/chat/completions"
        top = [{"token": t, "logprob": v} for t, v in (("2", -0.1), ("1", -0.9), ("]", -3.0))]
        content = [{"token": "2", "logprob": -0.1, "top_logprobs": top}]
        choice = {"message": {"role": "assistant", "content": "2"}, "logprobs": {"content": content}}
        return 200, {"choices": [choice], "usage": {"prompt_tokens": 9, "completion_tokens": 1}}, {}

    with Stub(respond) as stub:
        llm = load_llm(f"openai:{stub.url}#m?endpoint=chat&backoff=0.01")
        llm.__dict__["_capabilities"] = served(stub.url, "chat")
        teacher = ListwiseTeacher(llm, method="first", prompt="rankgpt", window=3, step=1)
        (label,) = teacher.rank([item(3)])
    ((path, body),) = stub.requests
    assert body["messages"] == [
        *RANKGPT.messages(QUERY, TEXTS[:3], ["1", "2", "3"]),
        {"role": "assistant", "content": "["},
    ]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 20)
    (w,) = label.windows
    assert w.scores == [-0.9, -0.1, None] and w.order == ["d1", "d0", "d2"] and w.repairs["missing"] == 1
    assert label.missing_ids == ["d2"] and teacher.identity()["settings"]["first"]["identifiers"] == "numbers"
