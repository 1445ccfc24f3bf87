"""Cross-encoder and bi-encoder teachers with real models (all-MiniLM-L6-v2 from its PyPI package)."""

from __future__ import annotations

import numpy as np
import pytest

from rankdistill.teachers import BiEncoderTeacher, CrossEncoderTeacher, load_teacher
from rankdistill.teachers.encoders import EmbeddingCache

PAIRS = [
    (
        "what causes rain",
        "Rain forms when water vapour in clouds condenses into droplets heavy enough to fall.",
    ),
    ("what causes rain", "The stock market fell sharply on Monday after the central bank raised rates."),
    (
        "central bank interest rates",
        "The stock market fell sharply on Monday after the central bank raised rates.",
    ),
]


def test_bi_encoder_scores_and_caches(minilm_dir, tmp_path):
    teacher = BiEncoderTeacher(minilm_dir, cache_dir=tmp_path, dtype="fp32")
    labels = teacher.score(PAIRS)
    assert labels[0].score > labels[1].score + 0.2 and labels[2].score > labels[1].score + 0.2
    assert all(-1.0 <= lab.score <= 1.0 and lab.logits is None for lab in labels)
    # cosine by hand from the model's own embeddings
    st = teacher.model
    q, d = st.encode([PAIRS[0][0], PAIRS[0][1]], normalize_embeddings=True)
    assert labels[0].score == pytest.approx(float(np.dot(q, d)), abs=1e-5)
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    assert cache.count() == 2  # the two distinct documents
    teacher.close()
    # a new teacher finds the documents on disk: same scores, no new rows
    again = BiEncoderTeacher(minilm_dir, cache_dir=tmp_path, dtype="fp32")
    assert [lab.score for lab in again.score(PAIRS)] == pytest.approx([lab.score for lab in labels], abs=1e-6)
    assert cache.count() == 2
    # another dtype is another model identity: its embeddings are kept apart
    assert again.identity() != BiEncoderTeacher(minilm_dir, cache_dir=tmp_path, dtype="bf16").identity()
    assert load_teacher("minilm", cache_dir=str(tmp_path)).identity()["teacher"] == "bi-encoder"


def test_cross_encoder_from_a_sequence_classification_folder(minilm_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # a real HF sequence-classification folder: MiniLM's encoder with a seeded 2-label head
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(minilm_dir), num_labels=2)
    folder = tmp_path / "ce"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm_dir)).save_pretrained(folder)

    teacher = CrossEncoderTeacher(folder, dtype="fp32", max_length=128)
    labels = teacher.score(PAIRS)
    assert all(len(lab.logits) == 2 for lab in labels)
    assert all(lab.score == pytest.approx(lab.logits[1] - lab.logits[0]) for lab in labels)
    # the same logits as running the model by hand
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok([PAIRS[0][0]], [PAIRS[0][1]], return_tensors="pt", truncation=True, max_length=128)
    with torch.no_grad():
        ref = model.eval()(**enc).logits[0].tolist()
    assert labels[0].logits == pytest.approx(ref, abs=1e-4)
    ident = teacher.identity()
    assert ident["dtype"] == "float32" and len(ident["model"]["sha256"]) == 24  # by content
    assert teacher.score([]) == []
