"""`load_llm` / `parse_llm_spec`: configs and short strings to backends (no model is loaded here except
where a test says so)."""

from __future__ import annotations

import pytest

from rankdistill.errors import RankdistillError
from rankdistill.llm import LLMConfig, OpenAICompatLLM, load_llm, parse_llm_spec


@pytest.mark.parametrize(
    ("spec", "backend", "model", "options"),
    [
        ("openai:http://127.0.0.1:8080/v1", "openai", None, {"base_url": "http://127.0.0.1:8080/v1"}),
        (
            "openai:http://127.0.0.1:8080/v1#gemma",
            "openai",
            "gemma",
            {"base_url": "http://127.0.0.1:8080/v1"},
        ),
        ("http://localhost:8000/v1", "openai", None, {"base_url": "http://localhost:8000/v1"}),
        (
            "vllm:https://host/v1#meta-llama/Llama-3.1-8B",
            "openai",
            "meta-llama/Llama-3.1-8B",
            {"base_url": "https://host/v1"},
        ),
        ("hf:/models/flan-t5-base", "hf", "/models/flan-t5-base", {}),
        ("transformers:google/flan-t5-small", "hf", "google/flan-t5-small", {}),
        ("llamacpp:gemma3-270m", "llamacpp", "gemma3-270m", {}),
        ("llama.cpp:/x/model.gguf", "llamacpp", "/x/model.gguf", {}),
    ],
)
def test_parse_short_strings(spec, backend, model, options):
    cfg = parse_llm_spec(spec)
    assert (cfg.backend, cfg.model, cfg.options()) == (backend, model, options)


def test_bare_paths_pick_their_backend(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    assert parse_llm_spec(str(folder)).backend == "hf"
    assert parse_llm_spec(str(tmp_path / "m.gguf")).backend == "llamacpp"
    with pytest.raises(RankdistillError, match="cannot tell which backend"):
        parse_llm_spec("no-such-model-anywhere")
    with pytest.raises(RankdistillError, match="names no model"):
        parse_llm_spec("hf:")


def test_dict_and_pydantic_configs_build_backends(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = load_llm({"backend": "vllm", "model": "m", "base_url": "http://127.0.0.1:9/v1", "concurrency": 3})
    assert isinstance(llm, OpenAICompatLLM)
    assert (llm.base_url, llm.concurrency, llm.model) == ("http://127.0.0.1:9/v1", 3, "m")
    # keyword overrides win; an LLM passes through unchanged
    llm2 = load_llm(
        LLMConfig(backend="openai", model="m", base_url="http://a/v1", concurrency=1), concurrency=5
    )
    assert llm2.concurrency == 5
    assert load_llm(llm) is llm
    with pytest.raises(RankdistillError, match="expected 'backend' one of llamacpp, hf, openai"):
        load_llm({"backend": "tensorflow", "model": "x"})
    with pytest.raises(RankdistillError, match="needs 'model'"):
        load_llm({"backend": "llamacpp"})
    with pytest.raises(TypeError):
        load_llm(42)


def test_unknown_backend_option_fails_loudly():
    with pytest.raises(
        RankdistillError, match="unknown option 'n_ctxx' for the openai backend; accepted: api_key"
    ):
        load_llm({"backend": "openai", "model": "m", "base_url": "http://a/v1", "n_ctxx": 10})
