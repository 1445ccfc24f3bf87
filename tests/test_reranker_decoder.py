"""`Reranker.load` on a saved decoder student (real Gemma 3 270M): dispatch, scores, generated reasoning."""

from __future__ import annotations

import pytest

pytest.importorskip("peft")

from rankdistill.inference.reranker import DecoderReranker, Reranker  # noqa: E402

pytestmark = [pytest.mark.llm, pytest.mark.slow]


def test_decoder_student_folder_loads_as_a_reranker_that_explains(gemma_gguf, tmp_path):
    import torch

    from rankdistill.students.decoder import DecoderStudent

    torch.set_num_threads(2)
    student = DecoderStudent.from_backbone(
        str(gemma_gguf), seed=0, max_query_tokens=12, max_doc_tokens=20, max_reasoning_tokens=8, lora_r=4
    )
    folder = student.save(tmp_path / "decoder")
    docs = ["The moon's gravity pulls the oceans and causes tides.", "Paris is the capital of France."]
    expected = student.score([("what causes tides", d) for d in docs])

    rr = Reranker.load(folder, dtype="fp32")
    assert isinstance(rr, DecoderReranker) and rr.info()["student_type"] == "decoder"
    assert rr.score([("what causes tides", d) for d in docs]) == pytest.approx(expected, abs=1e-3)
    rr.explain_tokens = 6
    results = rr.rerank("what causes tides", docs, explain=True)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    for r in results:
        assert r.explanation["type"] == "reasoning"
        assert isinstance(r.explanation["reasoning"], str) and r.explanation["reasoning"]
