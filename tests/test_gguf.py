"""The one GGUF converter gives exactly the model transformers' own GGUF loading gives, tensor by tensor."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.llm, pytest.mark.slow]


def test_converted_folder_equals_transformers_gguf_load(gemma_gguf, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM

    from rankdistill.llm.gguf import gguf_as_folder

    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    direct = AutoModelForCausalLM.from_pretrained(
        str(gemma_gguf.parent), gguf_file=gemma_gguf.name, dtype=torch.float32
    ).eval()
    folder = gguf_as_folder(gemma_gguf)
    assert folder.is_relative_to(tmp_path / "cache")
    converted = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    want, got = direct.state_dict(), converted.state_dict()
    assert set(got) == set(want)
    different = [k for k in want if got[k].shape != want[k].shape or not torch.equal(got[k], want[k])]
    assert not different, different[:5]
    ids = torch.tensor([[2, 651, 6037, 529, 7001, 563]])
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, direct(ids).logits)
    # cached: the second call converts nothing
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert gguf_as_folder(gemma_gguf) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
