"""The transformers backend, for real: Gemma 3 270M through transformers' GGUF loader (converted once
and cached), and a seq2seq (T5) model built from a config with MiniLM's tokenizer (random weights, so no
download; it runs the real encoder-decoder code path)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.llm

DOC = "The mitochondrion is the powerhouse of the cell: it makes most of the cell's supply of ATP."
PAIRS = [
    (f"Passage: {DOC}\nQuestion:", " Which part of the cell makes ATP?"),
    ("The capital of France is", " Paris"),
    (f"Passage: {DOC}\nQuestion:", " Which team won the world cup?"),
    ("Paris is in", " France"),
]


@pytest.fixture(scope="module")
def gemma(gemma_gguf):
    pytest.importorskip("gguf")
    import torch

    from rankdistill.llm import load_llm

    torch.set_num_threads(2)
    llm = load_llm(f"hf:{gemma_gguf}", batch_size=4)
    yield llm
    llm.close()


@pytest.mark.slow  # loads Gemma in transformers (the first run converts the GGUF, minutes)
def test_gguf_loads_in_bf16_with_identity(gemma, gemma_gguf):
    from rankdistill.hardware import cpu_supports_bf16

    ident = gemma.identity()
    assert ident["backend"] == "hf" and ident["model"] == gemma_gguf.name
    assert ident["architecture"] == "Gemma3ForCausalLM"
    assert ident["dtype"] == ("bfloat16" if cpu_supports_bf16() else "float32")
    assert gemma.tokenize("hello")[0] == 2 and gemma.count_tokens("hello world") == 2
    assert gemma.n_ctx == 32768  # Gemma 3 270M's position limit, what teachers budget prompts against


@pytest.mark.slow  # loads Gemma in transformers (the first run converts the GGUF, minutes)
def test_batched_scores_match_one_at_a_time(gemma):
    batched = gemma.score_continuations(PAIRS)  # one padded batch, sorted by length
    single = [gemma.score_continuations([p])[0] for p in PAIRS]
    for b, s in zip(batched, single, strict=True):
        assert b.n_tokens == s.n_tokens > 0
        assert b.logprob == pytest.approx(s.logprob, abs=0.15)  # bf16 noise only
    assert batched[0].logprob > batched[2].logprob  # on-topic question is likelier


@pytest.mark.slow  # loads Gemma in transformers (the first run converts the GGUF, minutes)
def test_next_token_logits_match_scores(gemma):
    prompt = f"Query: what makes ATP Document: {DOC} Relevant:"
    rows = gemma.next_token_logits([prompt, "Paris is in"], [" true", " false"])
    t, f = gemma.score_continuations([(prompt, " true"), (prompt, " false")])
    assert rows[0][0] - rows[0][1] == pytest.approx(t.logprob - f.logprob, abs=0.1)


@pytest.mark.slow  # loads Gemma in transformers (the first run converts the GGUF, minutes)
def test_generation_greedy_batched_left_padded_and_stop(gemma):
    prompts = ["Three colours: red, green,", f"{DOC} In one word, the topic is"]
    batched = gemma.generate(prompts, max_tokens=6, stop=["."])  # the short prompt is left-padded
    alone = gemma.generate(prompts[:1], max_tokens=6, stop=["."])
    assert batched[0].text == alone[0].text and "." not in alone[0].text
    assert alone[0].finish_reason == "stop"
    rescored = gemma.score_continuations([(prompts[0], alone[0].text)])[0]
    assert alone[0].logprob == pytest.approx(rescored.logprob)


@pytest.fixture(scope="module")
def tiny_t5(minilm_dir, tmp_path_factory):
    """A 2-layer T5 with random weights and MiniLM's WordPiece tokenizer, saved as a model folder."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny_t5")
    T5ForConditionalGeneration(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_seq2seq_scores_and_logits_match_the_model(tiny_t5):
    import torch

    from rankdistill.llm import load_llm

    llm = load_llm({"backend": "hf", "model": str(tiny_t5), "dtype": "fp32", "batch_size": 2})
    assert llm.is_seq2seq and llm.identity()["architecture"] == "T5ForConditionalGeneration"
    pairs = [("query: cells document: mitochondria make atp", "true"), ("short", "a longer target text")]
    scores = llm.score_continuations(pairs)
    tok, model = llm.tokenizer, llm.model
    for (prompt, target), s in zip(pairs, scores, strict=True):
        enc = tok(prompt, return_tensors="pt")  # [CLS] ... [SEP], as the backend encodes it
        labels = torch.tensor([tok(target, add_special_tokens=False).input_ids])
        with torch.no_grad():
            loss = model(**enc, labels=labels).loss  # mean token NLL, HF's own shift-right
        assert s.n_tokens == labels.shape[1]
        assert s.logprob == pytest.approx(-loss.item() * labels.shape[1], abs=1e-4)
    rows = llm.next_token_logits([p for p, _ in pairs], ["true", "false"])
    ids = llm.candidate_token_ids(["true", "false"])
    with torch.no_grad():
        enc = tok(pairs[1][0], return_tensors="pt")
        logits = model(**enc, decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id]])).logits[
            0, 0
        ]
    assert rows[1] == pytest.approx([logits[i].item() for i in ids], abs=1e-4)
    gens = llm.generate(["hello world", "a"], max_tokens=5, temperature=0.7, seed=1)
    again = llm.generate(["hello world", "a"], max_tokens=5, temperature=0.7, seed=1)
    assert [g.text for g in gens] == [g.text for g in again]
    assert all(0 < g.n_tokens <= 5 for g in gens)
