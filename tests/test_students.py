"""Encoder student and Term Control Layer: real MiniLM weights, real tokenizer, real save/load."""

from __future__ import annotations

import json

import pytest
import torch

from rankdistill.errors import RankdistillError
from rankdistill.students import (
    METADATA_FILE,
    TermControlLayer,
    TermMatcher,
    load_encoder_student,
    load_student,
    read_metadata,
    save_student,
    student_scores,
)

PAIRS = [
    ("proteins inhibiting tumour growth", "The protein p53 inhibits the growth of tumour cells in mice."),
    ("what is the capital of France", "Paris is the capital and largest city of France."),
]


def test_matcher_exact_stemmed_and_stopwords():
    m = TermMatcher()
    doc = "The protein p53 inhibits growth of the tumour."
    spans = m.match_spans("proteins inhibiting the growth", doc)
    words = {(doc[s:e], kind) for s, e, kind in spans}
    assert ("growth", "exact") in words
    assert ("protein", "stem") in words  # proteins -> protein
    assert ("inhibits", "stem") in words  # inhibiting/inhibits share the stem "inhibit"
    assert not any(w.lower() == "the" for w, _ in words)  # stopwords never select
    assert m.match_spans("the of and", doc) == []


def test_select_marks_only_document_tokens(minilm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    queries = ["growth factor", "zebra"]
    docs = ["Growth factors drive growth.", "Nothing relevant here."]
    enc = tok(queries, docs, padding=True, return_offsets_mapping=True, return_tensors="pt")
    mask = TermMatcher().select(enc, queries, docs)
    assert mask.shape == enc["input_ids"].shape
    assert not mask[1].any()  # no matching term
    picked = tok.convert_ids_to_tokens(enc["input_ids"][0][mask[0]].tolist())
    # "growth" twice and "factors" (stem of factor) as its word pieces; the query's own tokens never
    assert picked.count("growth") == 2
    assert "".join(p.removeprefix("##") for p in picked if p != "growth") == "factors"
    seq = enc.sequence_ids(0)
    assert all(seq[i] == 1 for i in mask[0].nonzero().flatten().tolist())


def test_term_control_layer_pools_only_selected_tokens():
    torch.manual_seed(0)
    layer = TermControlLayer(hidden_size=8, dropout=0.0).eval()
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    scores, has = layer(hidden, mask)
    assert has.tolist() == [True, False]
    changed = hidden.clone()
    changed[0, [0, 3, 4]] = 100.0  # unselected tokens must not matter
    scores2, _ = layer(changed, mask)
    assert torch.allclose(scores[0], scores2[0])


def test_student_keeps_first_layers_and_saves_plain_hf_folder(tmp_path, minilm_dir):
    from safetensors.torch import load_file
    from sentence_transformers import CrossEncoder
    from transformers import AutoModel, AutoModelForSequenceClassification

    model = load_encoder_student(minilm_dir, num_layers=2, max_length=64, seed=1)
    assert model.model.config.num_hidden_layers == 2 and model.num_labels == 1
    # the kept layers are the encoder's own first layers, unchanged
    base = AutoModel.from_pretrained(str(minilm_dir))
    assert torch.equal(
        model.model.bert.encoder.layer[1].output.dense.weight, base.encoder.layer[1].output.dense.weight
    )
    folder = save_student(model, tmp_path / "student", {"note": "test"})
    meta = json.loads((folder / METADATA_FILE).read_text())
    assert meta["student_type"] == "encoder" and meta["num_labels"] == 1 and meta["score"] == "logit"
    assert meta["num_layers"] == 2 and meta["note"] == "test" and read_metadata(folder) == meta

    ours = student_scores(model, PAIRS)
    ce = CrossEncoder(str(folder), activation_fn=torch.nn.Identity())
    assert ce.predict(PAIRS) == pytest.approx(ours, abs=1e-4)
    hf = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    tok = ce.tokenizer
    enc = tok(
        [q for q, _ in PAIRS],
        [d for _, d in PAIRS],
        padding=True,
        truncation=True,
        max_length=64,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = hf(**enc).logits[:, 0].numpy()
    assert logits == pytest.approx(ours, abs=1e-4)
    assert student_scores(load_student(folder), PAIRS) == pytest.approx(ours, abs=1e-4)
    assert not any("term_control" in k for k in load_file(str(folder / "model.safetensors")))


def test_student_keeps_chosen_layers_and_reloads_as_plain_hf(tmp_path, minilm_dir):
    from transformers import AutoModel, AutoModelForSequenceClassification

    model = load_encoder_student(minilm_dir, layers=[0, 5], max_length=64, seed=1)
    base = AutoModel.from_pretrained(str(minilm_dir))
    kept = model.model.bert.encoder.layer
    assert model.model.config.num_hidden_layers == 2 and len(kept) == 2
    assert torch.equal(kept[1].output.dense.weight, base.encoder.layer[5].output.dense.weight)
    folder = save_student(model, tmp_path / "student")
    assert read_metadata(folder)["num_layers"] == 2
    hf = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    assert torch.equal(
        hf.bert.encoder.layer[1].output.dense.weight, base.encoder.layer[5].output.dense.weight
    )
    assert student_scores(load_student(folder), PAIRS) == pytest.approx(
        student_scores(model, PAIRS), abs=1e-4
    )
    with pytest.raises(RankdistillError, match="distinct indices"):
        load_encoder_student(minilm_dir, layers=[0, 6])
    with pytest.raises(ValueError, match="not both"):
        load_encoder_student(minilm_dir, num_layers=2, layers=[0, 5])


def test_student_errors_name_the_problem(tmp_path, minilm_dir):
    with pytest.raises(RankdistillError, match="between 1 and 6"):
        load_encoder_student(minilm_dir, num_layers=9)
    with pytest.raises(ValueError, match="num_labels"):
        load_encoder_student(minilm_dir, num_labels=3)
    with pytest.raises(RankdistillError, match="config.json"):
        load_student(tmp_path)


def test_explanations_and_the_tcl_agree_on_what_a_term_is():
    """One definition (rankdistill.terms): an explanation never shows a match the TCL ignores."""
    from rankdistill.inference.explain import explain_terms, query_terms

    query = "Does aspirin act via COX inhibition, also in children? x"
    tcl_terms, _ = TermMatcher().query_terms(query)
    assert set(query_terms(query)) == tcl_terms
    assert "via" not in tcl_terms and "also" not in tcl_terms and "x" not in tcl_terms
    doc = "Aspirin inhibits COX enzymes via acetylation, also in young children."
    shown = {(s, e) for m in explain_terms(query, doc).matched for s, e in m.spans}
    trained = {(s, e) for s, e, _ in TermMatcher().match_spans(query, doc)}
    assert shown == trained and shown
