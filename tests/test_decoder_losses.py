"""The joint loss's ranking terms on real tensors: what each one rewards, and masking of ragged groups."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rankdistill.training.losses.joint import RANK_LOSSES, JointRankLMLoss, pointwise_mse, ranknet  # noqa: E402

listnet = RANK_LOSSES["listnet"]  # the joint loss's ListNet, at temperature 1

TEACHER = torch.tensor([[3.0, 1.0, -2.0], [0.5, -1.0, 0.0]])
MASK = torch.tensor([[True, True, True], [True, True, False]])


@pytest.mark.parametrize("fn", [ranknet, listnet])
def test_order_losses_prefer_the_teachers_order(fn):
    agree = TEACHER * 2
    reverse = -TEACHER
    assert fn(agree, TEACHER, MASK) < fn(reverse, TEACHER, MASK)


def test_mse_is_zero_on_the_teacher_and_ignores_padding():
    student = TEACHER.clone()
    student[1, 2] = 100.0  # a padded slot: must not count
    assert pointwise_mse(student, TEACHER, MASK).item() == 0.0
    assert pointwise_mse(student + 1, TEACHER, MASK).item() == pytest.approx(1.0)


def test_listnet_is_minimal_at_the_teachers_distribution():
    at_teacher = listnet(TEACHER, TEACHER, MASK)
    for delta in (0.5, -0.5):
        off = TEACHER.clone()
        off[0, 0] += delta
        assert listnet(off, TEACHER, MASK) > at_teacher


def test_padding_does_not_change_ranking_losses():
    # the second group has 2 real candidates: its loss must equal the same group given alone
    scores = torch.tensor([[0.2, 0.1, 9.0]])
    teacher = torch.tensor([[0.5, -1.0, 7.0]])
    padded = torch.tensor([[True, True, False]])
    alone = torch.tensor([[True, True]])
    for fn in (ranknet, listnet, pointwise_mse):
        assert fn(scores, teacher, padded).item() == pytest.approx(
            fn(scores[:, :2], teacher[:, :2], alone).item()
        )


def test_ties_give_zero_ranknet_with_a_gradient_path():
    scores = torch.tensor([[0.3, -0.2]], requires_grad=True)
    loss = ranknet(scores, torch.tensor([[1.0, 1.0]]), torch.tensor([[True, True]]))
    loss.backward()
    assert loss.item() == 0.0 and scores.grad is not None


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="unknown rank_loss"):
        JointRankLMLoss(torch.nn.Linear(1, 1), rank_loss="lambda")
    with pytest.raises(ValueError, match="not both 0"):
        JointRankLMLoss(torch.nn.Linear(1, 1), rank_weight=0, lm_weight=0)
