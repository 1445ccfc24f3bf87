"""Losses on a real 1-layer MiniLM cross-encoder: values checked against the formulas, gradients, sharing."""

from __future__ import annotations

import pytest
import torch

from rankdistill.students import load_encoder_student
from rankdistill.training.losses import (
    CombinedLoss,
    InRankerMSELoss,
    SoftBCELoss,
    TermControlLoss,
    build_loss,
    encode_pairs,
    get_loss,
    loss_names,
)

QUERIES = ["protein folding", "capital of france", "bm25 ranking", "zebra stripes"]
DOCS = [
    "Proteins fold into three-dimensional structures.",
    "Paris is the capital of France.",
    "Okapi BM25 is a ranking function used by search engines.",
    "Completely unrelated sentence about weather.",
]


@pytest.fixture(scope="module")
def student(minilm_dir):
    torch.manual_seed(0)
    return load_encoder_student(minilm_dir, num_layers=1, max_length=48, seed=0)


@pytest.fixture(scope="module")
def student2(minilm_dir):
    return load_encoder_student(minilm_dir, num_layers=1, num_labels=2, max_length=48, seed=0)


def test_soft_bce_matches_formula(student):
    labels = torch.tensor([0.9, 0.8, 0.7, 0.05])
    loss = SoftBCELoss(student)
    value = loss([QUERIES, DOCS], labels)
    with torch.no_grad():
        s = encode_pairs(student, QUERIES, DOCS).scores
    expected = torch.nn.functional.binary_cross_entropy_with_logits(s, labels)
    assert value.item() == pytest.approx(expected.item(), rel=1e-4)
    # a (false, true) logit pair is the same teacher probability through a softmax
    pairs = torch.stack([torch.zeros(4), torch.logit(labels)], dim=1)
    assert loss([QUERIES, DOCS], list(pairs)).item() == pytest.approx(value.item(), rel=1e-4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        loss([QUERIES, DOCS], torch.tensor([2.0, 0, 0, 0]))


def test_inranker_mse_two_labels_is_plain_mse(student2):
    teacher = [
        torch.tensor([-1.0, 2.0]),
        torch.tensor([0.5, -0.5]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([3.0, -3.0]),
    ]
    value = InRankerMSELoss(student2)([QUERIES, DOCS], teacher)
    with torch.no_grad():
        logits = encode_pairs(student2, QUERIES, DOCS).logits
    assert value.item() == pytest.approx(torch.mean((logits - torch.stack(teacher)) ** 2).item(), rel=1e-4)


def test_inranker_mse_one_label_compares_centred_pairs(student):
    teacher = torch.tensor([[-1.0, 2.0], [0.5, -0.5], [0.0, 1.0], [3.0, -3.0]])
    value = InRankerMSELoss(student)([QUERIES, DOCS], list(teacher))
    with torch.no_grad():
        s = encode_pairs(student, QUERIES, DOCS).scores
    diff = teacher[:, 1] - teacher[:, 0]
    # centred pairs (-s/2, s/2) vs (-(t-f)/2, (t-f)/2): MSE = mean((s - (t - f))^2) / 4
    assert value.item() == pytest.approx(torch.mean((s - diff) ** 2).item() / 4, rel=1e-4)
    with pytest.raises(ValueError, match="logit pairs"):
        InRankerMSELoss(student)([QUERIES, DOCS], torch.tensor([0.1, 0.2, 0.3, 0.4]))


def test_term_control_loss_trains_encoder_and_masks_pairs_without_matches(student):
    loss = TermControlLoss(student, dropout=0.0)
    student.zero_grad()
    value = loss([QUERIES, DOCS], torch.tensor([1.0, 1.0, 1.0, 0.0]))
    value.backward()
    layer0 = student.model.bert.encoder.layer[0].output.dense.weight.grad
    assert layer0 is not None and layer0.abs().sum() > 0  # the auxiliary loss reaches the encoder
    assert all(p.grad is not None for p in loss.term_control.parameters())
    # the 4th pair has no matching term: its label must not change the loss
    same = loss([QUERIES, DOCS], torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert same.item() == pytest.approx(value.item(), rel=1e-5)
    student.zero_grad()


def test_combined_loss_shares_one_forward_and_weights_components(student):
    calls = []
    # the student's own forward (the losses run it, through a DDP wrapper when there is one)
    handle = student.register_forward_hook(lambda *a: calls.append(1))
    try:
        combined = build_loss(student, [{"name": "soft_bce"}, {"name": "term_control", "weight": 0.5}])
        assert isinstance(combined, CombinedLoss)
        labels = torch.tensor([0.9, 0.8, 0.7, 0.05])
        out = combined([QUERIES, DOCS], labels)
        assert len(calls) == 1  # one encoder pass for both losses
        assert set(out) == {"soft_bce", "term_control"}
        alone = SoftBCELoss(student)([QUERIES, DOCS], labels)
        assert out["soft_bce"].item() == pytest.approx(alone.item(), rel=1e-4)
    finally:
        handle.remove()


def test_registry_and_sentence_transformers_losses(student):
    assert {"inranker_mse", "soft_bce", "term_control", "mse", "margin_mse", "ranknet", "listnet"} <= set(
        loss_names()
    )
    mse = build_loss(student, {"mse": 1.0})
    assert type(mse).__name__ == "MSELoss"
    assert mse([QUERIES, DOCS], torch.tensor([1.0, 2.0, 0.5, -1.0])).item() > 0
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        get_loss("nope")


# two queries with 3 and 2 documents (groups may differ in size)
GROUPED_INPUTS = [["protein folding", "capital of france"], [DOCS[:3], DOCS[1:3]]]
GROUPED_LABELS = [torch.tensor([1.0, 0.2, 0.0]), torch.tensor([1.0, 0.0])]
FLAT_PAIRS = [["protein folding"] * 3 + ["capital of france"] * 2, DOCS[:3] + DOCS[1:3]]


def grouped_loss_and_scores(student, name: str, temperature: float):
    """The loss on the grouped batch, and the student's scores of its pairs per group."""
    loss = build_loss(student, [{"name": name, "args": {"temperature": temperature}}])
    value = loss(GROUPED_INPUTS, GROUPED_LABELS)
    with torch.no_grad():
        s = encode_pairs(student, *FLAT_PAIRS).scores
    with pytest.raises(ValueError, match="grouped rows"):
        loss([QUERIES, DOCS], torch.tensor([0.9, 0.8, 0.7, 0.05]))
    return loss, value, [(s[:3], GROUPED_LABELS[0]), (s[3:], GROUPED_LABELS[1])]


def test_listnet_on_grouped_rows_matches_formula_and_shares_forward_with_pair_losses(student):
    _, value, groups = grouped_loss_and_scores(student, "listnet", 0.5)
    expected = [
        -(torch.softmax(target / 0.5, 0) * torch.log_softmax(scores, 0)).sum() for scores, target in groups
    ]
    assert value.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-4)
    # a pair loss beside it reads the same forward pass with the labels flattened in group order
    combined = build_loss(student, [{"name": "listnet"}, {"name": "soft_bce", "weight": 0.5}])
    out = combined(GROUPED_INPUTS, GROUPED_LABELS)
    pointwise = SoftBCELoss(student)(FLAT_PAIRS, torch.cat(GROUPED_LABELS))
    assert out["soft_bce"].item() == pytest.approx(0.5 * pointwise.item(), rel=1e-4)


def test_margin_mse_matches_pairwise_margins_and_is_zero_at_the_teachers_spacing(student):
    loss, value, groups = grouped_loss_and_scores(student, "margin_mse", 0.5)
    # Hofstätter's MarginMSE over every ordered pair of a group, / (2 n^2): the centred form computed
    expected = []
    for scores, target in groups:
        n, target = len(scores), target / 0.5
        pairs = [((scores[i] - scores[j]) - (target[i] - target[j])) ** 2 for i in range(n) for j in range(n)]
        expected.append(torch.stack(pairs).sum() / (2 * n * n))
    assert value.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-4)
    # scores spaced exactly like the teacher's (any per-query offset) give zero loss
    from rankdistill.training.losses.base import PairForward

    fwd = PairForward([], [], None, torch.tensor([[7.0], [5.4], [5.0], [-1.0], [-3.0]]), group_sizes=[3, 2])
    assert loss.compute(fwd, torch.cat(GROUPED_LABELS)).item() == pytest.approx(0.0, abs=1e-6)


def test_group_rows_groups_pairs_by_query():
    from rankdistill.training.data import group_rows

    rows = [
        {"query": "a", "document": "d1", "label": 1.0},
        {"query": "b", "document": "d2", "label": 0.5},
        {"query": "a", "document": "d3", "label": 0.0},
    ]
    groups = {g["query"]: g for g in group_rows(rows, seed=1)}
    assert groups["a"] == {"query": "a", "document": ["d1", "d3"], "label": [1.0, 0.0]}
    assert groups["b"]["document"] == ["d2"]


# what training rows carry, by label kind (`rankdistill.training.losses.loss_problem`)
ROW_LABELS = {
    "probability": [0.9, 0.5, 0.1, 0.0],
    "score": [3.0, 0.5, -1.0, -2.0],
    "logits": [[-2.0, 2.0], [-0.5, 0.5], [1.0, -1.0], [3.0, -3.0]],
}


@pytest.mark.slow
@pytest.mark.parametrize("num_labels", [1, 2])
def test_every_registered_loss_trains_on_the_rows_it_accepts(minilm_dir, tmp_path, num_labels):
    """The whole registry: each loss either says why it cannot train on pair rows with these labels
    (what config validation refuses, naming the key) or takes a real training step on them."""
    from rankdistill.training.losses import loss_problem
    from rankdistill.training.trainer import TrainSettings, train

    trained = []
    for name in loss_names():
        for kind, labels in ROW_LABELS.items():
            problem = loss_problem(name, num_labels=num_labels, labels=kind)
            if problem is not None:
                assert problem.startswith(f"loss {name!r}")
                continue
            rows = [
                {"query": q, "document": d, "label": x}
                for q in ("protein folding", "capital of france")
                for d, x in zip(DOCS, labels, strict=True)
            ]
            model = load_encoder_student(
                minilm_dir, num_layers=1, num_labels=num_labels, max_length=32, seed=0
            )
            settings = TrainSettings(max_steps=1, batch_size=4, bf16=False, resume=False, save_steps=100)
            train(model, build_loss(model, [{"name": name}]), rows, tmp_path / f"{name}-{kind}", settings)
            trained.append((name, kind))
    assert ("soft_bce", "probability") in trained and ("inranker_mse", "logits") in trained
    assert ("ranknet", "score") in trained and not any(n in ("joint", "st_margin_mse") for n, _ in trained)
