"""Options in spec strings (`<spec>?key=value&...`): one grammar for LLM and teacher specs, typed by the
target's constructor, the same keys and checks as the dict (YAML) form, label keys unchanged by options
that do not change outputs, and `run --check` seeing an `n_ctx` given this way.

No server is contacted: an OpenAI-compatible backend built with a model name sends nothing until used (the
URLs here point at a closed port, so any request would fail). One test loads Gemma 3 270M for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rankdistill.errors import RankdistillError
from rankdistill.llm import LLMConfig, OpenAICompatLLM, load_llm, parse_llm_spec
from rankdistill.llm.factory import context_window, llm_config
from rankdistill.registry import SpecError, split_options
from rankdistill.teachers import QueryLikelihoodTeacher, load_teacher, teacher_config

CLOSED = "http://127.0.0.1:9/v1"  # the discard port: nothing answers there


@pytest.fixture(autouse=True)
def _no_env_server(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "RANKDISTILL_LLM_API_KEY", "RANKDISTILL_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)


# -- the grammar -----------------------------------------------------------------------------------------


def test_split_options_takes_what_follows_the_last_question_mark():
    assert split_options("llamacpp:gemma3-270m") == ("llamacpp:gemma3-270m", {})
    assert split_options("minilm?batch_size=16&device=cpu") == (
        "minilm",
        {"batch_size": "16", "device": "cpu"},
    )
    # values are percent-decoded: '&', '+' and '#' can be written inside one
    assert split_options("openai:http://h/v1?api_key=a%26b%2Bc%23d") == (
        "openai:http://h/v1",
        {"api_key": "a&b+c#d"},
    )
    # a body with its own '?' keeps it when a last '?' (here with nothing after it) closes the spec
    assert split_options("openai:https://h/v1?api-version=1?") == ("openai:https://h/v1?api-version=1", {})
    assert split_options("openai:https://h/v1?api-version=1?timeout=5") == (
        "openai:https://h/v1?api-version=1",
        {"timeout": "5"},
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("openai:http://h/v1?concurrency=2#m", "options come last, after any '#<model>'"),
        ("minilm?batch_size", "option 'batch_size' is not key=value"),
        ("minilm?=3", "option '=3' is not key=value"),
        ("minilm?device=cpu&device=cuda", "option 'device' is given twice"),
    ],
)
def test_malformed_options_are_refused_with_the_spec(spec, message):
    with pytest.raises(SpecError) as err:
        split_options(spec)
    assert message in str(err.value) and repr(spec) in str(err.value)


# -- LLM specs -------------------------------------------------------------------------------------------


def test_both_openai_orders_give_the_same_config_and_backend():
    after_model = parse_llm_spec(f"openai:{CLOSED}#M?endpoint=chat&concurrency=256&timeout=600")
    as_options = parse_llm_spec(f"openai:{CLOSED}?model=M&endpoint=chat&concurrency=256&timeout=600")
    assert after_model == as_options
    assert after_model.model == "M"
    assert after_model.options() == {
        "base_url": CLOSED,
        "endpoint": "chat",
        "concurrency": 256,
        "timeout": 600.0,
    }
    llm = load_llm(
        f"openai:{CLOSED}#M?endpoint=chat&concurrency=256&timeout=600&max_retries=0&top_logprobs=5"
    )
    try:
        assert isinstance(llm, OpenAICompatLLM)
        assert (llm.base_url, llm.model, llm.endpoint) == (CLOSED, "M", "chat")
        assert (llm.concurrency, llm.max_retries, llm.top_logprobs) == (256, 0, 5)
    finally:
        llm.close()


def test_bare_paths_and_urls_take_options_too(tmp_path):
    cfg = parse_llm_spec(f"{tmp_path / 'm.gguf'}?n_ctx=512")
    assert (cfg.backend, cfg.model, cfg.options()) == ("llamacpp", str(tmp_path / "m.gguf"), {"n_ctx": 512})
    cfg = parse_llm_spec(f"{CLOSED}#M?concurrency=2")
    assert (cfg.backend, cfg.model, cfg.options()) == ("openai", "M", {"base_url": CLOSED, "concurrency": 2})


def test_values_are_typed_by_the_backend_constructor():
    cfg = parse_llm_spec(
        f"openai:{CLOSED}#M?generation_logprobs=false&backoff=1&json_mode=none&api_key=s3cret&headers=none"
    )
    options = cfg.options()
    assert options["generation_logprobs"] is False
    assert options["backoff"] == 1.0 and isinstance(options["backoff"], float)
    assert options["json_mode"] == "none" and options["api_key"] == "s3cret" and options["headers"] is None
    cfg = parse_llm_spec("llamacpp:gemma3-270m?n_ctx=512&n_threads=none&prefix_cache=0&flash_attn=true")
    assert cfg.options() == {"n_ctx": 512, "n_threads": None, "prefix_cache": False, "flash_attn": True}
    assert parse_llm_spec("hf:/models/t5?dtype=bf16&batch_size=4&device=cpu").options() == {
        "dtype": "bf16",
        "batch_size": 4,
        "device": "cpu",
    }


@pytest.mark.parametrize(
    ("spec", "key", "expected"),
    [
        (f"openai:{CLOSED}#M?concurrency=many", "concurrency", "expects an integer, got 'many'"),
        (f"openai:{CLOSED}#M?timeout=soon", "timeout", "expects a number, got 'soon'"),
        (
            f"openai:{CLOSED}#M?endpoint=chatty",
            "endpoint",
            "expects one of 'completions', 'chat', got 'chatty'",
        ),
        (f"openai:{CLOSED}#M?generation_logprobs=maybe", "generation_logprobs", "expects true or false"),
        ("llamacpp:gemma3-270m?n_ctx=1.5", "n_ctx", "expects an integer, got '1.5'"),
        (f"openai:{CLOSED}#M?headers=x", "headers", "expects dict or none"),
    ],
)
def test_a_wrong_value_names_the_key_and_the_expected_type(spec, key, expected):
    with pytest.raises(SpecError) as err:
        parse_llm_spec(spec)
    message = str(err.value)
    assert f"LLM spec {spec!r}: option {key!r} {expected}" in message, message


def test_an_unknown_key_names_the_spec_the_key_and_the_accepted_keys():
    spec = f"openai:{CLOSED}#M?concurrncy=8"
    with pytest.raises(RankdistillError) as err:
        load_llm(spec)
    message = str(err.value)
    assert message.startswith(
        f"LLM spec {spec!r}: unknown option 'concurrncy' for the openai backend; accepted: "
    )
    for key in ("api_key", "concurrency", "endpoint", "max_retries", "timeout", "top_logprobs", "model"):
        assert key in message.partition("accepted: ")[2]
    # llama.cpp: its own keywords and llama_cpp.Llama's (where its **kwargs go), nothing else
    with pytest.raises(
        SpecError, match=r"unknown option 'n_ctxx' for the llamacpp backend; accepted: .*flash_attn"
    ):
        parse_llm_spec("llamacpp:gemma3-270m?n_ctxx=512")
    with pytest.raises(SpecError, match="unknown option 'logits_all'"):  # set by the backend itself
        parse_llm_spec("llamacpp:gemma3-270m?logits_all=true")
    with pytest.raises(SpecError, match="unknown option 'n_ctx' for the hf backend"):
        parse_llm_spec("hf:/models/t5?n_ctx=512")


def test_a_url_with_its_own_query_string():
    # unknown keys after the last '?' are refused, with the way to keep them in the URL
    with pytest.raises(SpecError) as err:
        parse_llm_spec("openai:https://h/v1?api-version=1")
    assert "unknown option 'api-version'" in str(err.value)
    assert "openai:https://h/v1?api-version=1?" in str(err.value)
    assert parse_llm_spec("openai:https://h/v1?api-version=1?").options() == {
        "base_url": "https://h/v1?api-version=1"
    }
    cfg = parse_llm_spec("https://h/v1?api-version=1?model=M&concurrency=2")
    assert (cfg.backend, cfg.model, cfg.options()) == (
        "openai",
        "M",
        {"base_url": "https://h/v1?api-version=1", "concurrency": 2},
    )


def test_model_given_twice_is_refused():
    with pytest.raises(SpecError, match="'model' is given twice \\('M' and 'N'\\)"):
        parse_llm_spec(f"openai:{CLOSED}#M?model=N")
    with pytest.raises(SpecError, match="'model' is given twice"):
        parse_llm_spec("llamacpp:gemma3-270m?model=other")
    assert parse_llm_spec("llamacpp:?model=gemma3-270m").model == "gemma3-270m"


def test_the_dict_form_takes_the_same_keys_with_the_same_checks():
    spec = "llamacpp:gemma3-270m?n_ctx=512&n_threads=2&prefix_cache=false"
    as_dict = {
        "backend": "llamacpp",
        "model": "gemma3-270m",
        "n_ctx": 512,
        "n_threads": 2,
        "prefix_cache": False,
    }
    assert llm_config(spec) == llm_config(as_dict) == llm_config(LLMConfig(**as_dict))
    # a quoted YAML value is typed as a spec string's is
    assert llm_config({**as_dict, "n_ctx": "512", "prefix_cache": "false"}) == llm_config(spec)
    with pytest.raises(SpecError) as err:
        llm_config({"backend": "openai", "base_url": CLOSED, "concurrncy": 8})
    assert "unknown option 'concurrncy' for the openai backend; accepted: api_key" in str(err.value)
    assert "LLM config {'backend': 'openai'" in str(err.value)
    with pytest.raises(
        SpecError, match="option 'endpoint' expects one of 'completions', 'chat', got 'chatty'"
    ):
        load_llm({"backend": "openai", "model": "m", "base_url": CLOSED, "endpoint": "chatty"})
    with pytest.raises(SpecError, match="option 'n_ctx' expects an integer, got 51.2"):
        llm_config({"backend": "llamacpp", "model": "gemma3-270m", "n_ctx": 51.2})


def test_context_window_sees_n_ctx_and_max_length_given_as_options():
    assert context_window("llamacpp:gemma3-270m?n_ctx=512") == 512
    assert context_window("llamacpp:gemma3-270m") == 4096  # the backend's default
    assert context_window({"backend": "llamacpp", "model": "gemma3-270m", "n_ctx": "1024"}) == 1024
    assert context_window("hf:/models/t5?max_length=128") == 128
    assert context_window(f"openai:{CLOSED}#M?concurrency=2") is None


def test_options_that_do_not_change_outputs_do_not_change_label_keys(monkeypatch):
    def identity(spec: str) -> dict:
        llm = load_llm(spec)
        try:
            return llm.identity()
        finally:
            llm.close()

    base = identity(f"openai:{CLOSED}#M")
    assert base == {"backend": "openai", "model": "M", "base_url": CLOSED, "endpoint": "completions"}
    quiet = "concurrency=256&timeout=600&max_retries=9&api_key=k&backoff=2"
    assert identity(f"openai:{CLOSED}#M?{quiet}") == base
    assert identity(f"openai:{CLOSED}?model=M&{quiet}") == base
    assert identity(f"openai:{CLOSED}#M?endpoint=chat") != base
    assert identity(f"openai:{CLOSED}#N") != base
    # and through a teacher, whose identity is what keys its labels (and holds the method the teacher
    # picks from what the server can do: here, as if the closed server could echo)
    from rankdistill.llm.openai_compat import OpenAICompatLLM
    from rankdistill.llm.probe import Capabilities

    monkeypatch.setattr(
        OpenAICompatLLM,
        "capabilities",
        lambda self: Capabilities("openai", CLOSED, "M", local=False, endpoint=self.endpoint),
    )
    plain = load_teacher(f"qlm:openai:{CLOSED}#M")
    busy = load_teacher(f"qlm:openai:{CLOSED}#M?concurrency=64&timeout=5")
    chat = load_teacher(f"qlm:openai:{CLOSED}#M?endpoint=chat")
    try:
        assert busy.llm.concurrency == 64 and plain.llm.concurrency == 4
        assert busy.identity() == plain.identity()
        assert chat.llm.identity() != plain.llm.identity()  # (a query-likelihood label needs completions)
    finally:
        for t in (plain, busy, chat):
            t.close()


# -- teacher specs ---------------------------------------------------------------------------------------


def test_options_after_an_llm_spec_in_a_teacher_spec_go_to_the_llm():
    spec = f"qlm:openai:{CLOSED}#gemma?concurrency=8"
    assert teacher_config(spec) == {"type": "qlm", "llm": f"openai:{CLOSED}#gemma?concurrency=8"}
    teacher = load_teacher(spec)
    try:
        assert isinstance(teacher, QueryLikelihoodTeacher)
        assert (teacher.llm.model, teacher.llm.concurrency, teacher.batch_size) == ("gemma", 8, 16)
    finally:
        teacher.close()
    # the LLM's keys are checked when the teacher spec is parsed, before anything loads
    with pytest.raises(SpecError, match="unknown option 'batch_size' for the openai backend"):
        teacher_config(f"truefalse:openai:{CLOSED}#gemma?batch_size=8")
    # teacher options of an LLM teacher: the dict form, checked against the teacher's constructor
    cfg = teacher_config({"type": "qlm", "llm": f"openai:{CLOSED}#gemma?concurrency=8", "batch_size": "4"})
    assert cfg["batch_size"] == 4
    teacher = load_teacher(cfg)
    try:
        assert (teacher.batch_size, teacher.llm.concurrency) == (4, 8)
    finally:
        teacher.close()
    with pytest.raises(SpecError) as err:
        teacher_config({"type": "truefalse", "llm": "llamacpp:gemma3-270m", "batchsize": 4})
    assert "unknown option 'batchsize' for the truefalse teacher; accepted: batch_size" in str(err.value)


def test_options_on_a_teacher_without_an_llm_set_its_constructor_options():
    assert teacher_config("minilm?batch_size=16&cache_dir=false") == {
        "type": "bi-encoder",
        "model": "minilm",
        "batch_size": 16,
        "cache_dir": False,
    }
    assert teacher_config("cross-encoder:/m?max_length=256&dtype=fp32") == {
        "type": "cross-encoder",
        "model": "/m",
        "max_length": 256,
        "dtype": "fp32",
    }
    ens = teacher_config("0.3*bm25+0.7*minilm?batch_size=16")
    assert ens["weights"] == [0.3, 0.7]
    assert ens["members"][1] == {"type": "bi-encoder", "model": "minilm", "batch_size": 16}
    spec = "minilm?batchsize=16"
    with pytest.raises(SpecError) as err:
        teacher_config(spec)
    assert str(err.value).startswith(
        f"teacher spec {spec!r}: unknown option 'batchsize' for the bi-encoder teacher"
    )
    assert "accepted: batch_size, cache_dir, device, dtype, max_seq_length, model, name" in str(err.value)
    with pytest.raises(SpecError, match="option 'batch_size' expects an integer, got 'lots'"):
        teacher_config("bm25+minilm?batch_size=lots")
    # an ensemble's own options: its dict form, members checked in turn
    assert (
        teacher_config({"type": "ensemble", "members": ["bm25", "minilm"], "fusion": "rrf", "rrf_k": "30"})[
            "rrf_k"
        ]
        == 30
    )
    with pytest.raises(SpecError, match="unknown option 'batchsize' for the bi-encoder teacher"):
        teacher_config({"type": "ensemble", "members": ["bm25", "minilm?batchsize=2"]})


def test_a_teacher_spec_with_options_builds_the_teacher(minilm_dir, tmp_path):
    teacher = load_teacher(f"bm25+minilm?batch_size=3&cache_dir={tmp_path}")
    try:
        member = teacher.members[1]
        assert member.batch_size == 3 and member.cache.path == tmp_path / "embeddings.sqlite"
    finally:
        teacher.close()


def test_a_real_gguf_loads_with_its_options(gemma_gguf):
    llm = load_llm(f"llamacpp:{gemma_gguf}?n_ctx=256&n_threads=1&n_threads_batch=1&n_batch=64")
    try:
        assert llm.n_ctx == 256 and llm.n_threads == 1
        assert llm._llama.n_batch == 64
        with pytest.raises(ValueError, match="context window of 256"):
            llm.score_continuations([("word " * 300, " end")])
    finally:
        llm.close()


# -- run --check -----------------------------------------------------------------------------------------


def _beir(root: Path) -> Path:
    folder = root / "tiny"
    (folder / "qrels").mkdir(parents=True)
    docs = {"d1": "apple pie", "d2": "pear tart"}
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items())
    )
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "apple"}) + "\n")
    for split in ("train", "test"):
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


@pytest.mark.parametrize(("n_ctx", "fits"), [(512, False), (8192, True)])
def test_run_check_sees_n_ctx_given_in_the_llm_spec(tmp_path, monkeypatch, n_ctx, fits):
    from rankdistill.cli.app import app

    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RANKDISTILL_PROGRESS", "0")
    config = tmp_path / "listwise.yaml"
    config.write_text(
        f"dataset: {{name: {_beir(tmp_path)}}}\n"
        "labels:\n"
        "  kind: listwise\n"
        f"  llm: llamacpp:gemma3-270m?n_ctx={n_ctx}&n_threads=1\n"
        "  depth: 20\n"
        "  listwise: {method: sliding_window, window: 10, step: 5}\n"
    )
    result = CliRunner().invoke(app, ["run", "--check", str(config), "--run-dir", str(tmp_path / "run")])
    if fits:
        assert result.exit_code == 0, (result.exception, result.output)
    else:
        assert isinstance(result.exception, RankdistillError), (result.exception, result.output)
        message = str(result.exception)
        assert "listwise.window: 10 passages of up to 100 words need about 1664 tokens" in message, message
        assert "context window of 512" in message, message
