"""The decoder student on the real Gemma 3 270M (GGUF, dequantized by transformers): a tiny joint training
run lowers the loss, save -> load gives the same scores, and the student explains in text."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from rankdistill.errors import RankdistillError  # noqa: E402
from rankdistill.students.decoder import DecoderStudent  # noqa: E402
from rankdistill.training.decoder import (  # noqa: E402
    DecoderCollator,
    DecoderExample,
    examples_from_scores,
    train_decoder,
)
from rankdistill.training.losses import get_loss  # noqa: E402
from rankdistill.training.losses.joint import JointRankLMLoss  # noqa: E402

pytestmark = [pytest.mark.llm]

# Short texts and short limits: the CPU is shared, and Gemma's 262k vocabulary makes every LM token count.
GROUPS = [
    DecoderExample(
        "what causes tides",
        ["The gravity of the moon pulls the oceans and causes tides.", "Paris is the capital of France."],
        [4.0, -3.0],
        ["The moon's gravity is the cause of tides.", "It is about Paris, not tides."],
    ),
    DecoderExample(
        "how do vaccines work",
        ["Bananas are rich in potassium.", "Vaccines train the immune system to recognise a virus."],
        [-2.0, 3.5],
        [None, "It says vaccines train the immune system."],
    ),
    DecoderExample(
        "boiling point of water",
        ["Water boils at 100 degrees Celsius at sea level.", "The stock market fell on Monday."],
        [3.0, -4.0],
        ["It gives the boiling point of water.", None],
    ),
]
PAIRS = [(g.query, d) for g in GROUPS for d in g.documents]


@pytest.fixture(scope="module")
def student(gemma_gguf):
    torch.set_num_threads(2)
    return DecoderStudent.from_backbone(
        str(gemma_gguf), seed=0, max_query_tokens=12, max_doc_tokens=20, max_reasoning_tokens=12, lora_r=4
    )


def _loss_on_all(student, loss) -> tuple[float, dict]:
    batch = DecoderCollator(student)(GROUPS)
    labels = batch.pop("labels")
    was = student.training
    student.eval()  # no LoRA dropout: before/after must be comparable
    with torch.no_grad(), student._autocast():
        value = float(loss(batch, labels))
    student.train(was)
    return value, dict(loss.last_terms)


def test_encoding_gathers_the_last_prompt_token(student):
    batch = student.encode(["q one", "a longer query here"], ["doc", "another doc"], ["why", None])
    ids, idx = batch["input_ids"], batch["score_index"]
    last = student.tokenizer.convert_ids_to_tokens([int(ids[i, idx[i]]) for i in range(2)])
    assert last[0] == last[1] == ":"  # the ':' of "Relevant:", whatever the lengths
    assert (batch["lm_labels"][1] == -100).all()  # no reasoning, no LM target
    target = batch["lm_labels"][0][batch["lm_labels"][0] != -100].tolist()
    assert target[-1] == student.tokenizer.eos_token_id
    assert student.tokenizer.decode(target[:-1]).strip() == "why"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~1 min on an idle 2-core CPU; many times that when the CPU is shared
def test_joint_training_lowers_the_loss_and_save_load_keeps_scores(student, tmp_path):
    loss = JointRankLMLoss(student, rank_loss="listnet", lm_weight=0.5)
    before, terms_before = _loss_on_all(student, loss)
    history = train_decoder(
        student,
        GROUPS,
        tmp_path / "run",
        loss=loss,
        max_steps=6,
        groups_per_batch=1,
        learning_rate=3e-3,
        head_learning_rate=3e-2,
        warmup=0,
        logging_steps=1,
        seed=0,
        show_progress=False,
    )
    after, terms_after = _loss_on_all(student, loss)
    assert after < before, (before, after)
    assert terms_after["lm_loss"] < terms_before["lm_loss"]
    assert any("rank_loss" in h for h in history)  # the terms reach the Trainer's logs

    trained = student.score(PAIRS, batch_size=4)
    # the trained head puts each group's relevant document first
    for g, i in zip(GROUPS, range(0, len(PAIRS), 2), strict=True):
        assert (trained[i] > trained[i + 1]) == (g.scores[0] > g.scores[1])

    folder = tmp_path / "run"
    meta = json.loads((folder / "rankdistill.json").read_text())
    assert meta["student_type"] == "decoder" and meta["weights"] == "adapter"
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))

    loaded = DecoderStudent.load(folder, dtype="fp32")
    assert loaded.score(PAIRS, batch_size=4) == trained
    # batch composition does not change a pair's score (right padding, per-row gather)
    assert loaded.score(PAIRS[:1])[0] == pytest.approx(trained[0], abs=0.05)

    text = loaded.explain(GROUPS[0].query, GROUPS[0].documents[0], max_new_tokens=8)
    assert len(text) == 1 and isinstance(text[0], str) and text[0]


def test_registry_and_errors(tmp_path):
    assert get_loss("joint") is JointRankLMLoss
    with pytest.raises(RankdistillError, match="rankdistill.json is missing"):
        DecoderStudent.load(tmp_path)
    (tmp_path / "rankdistill.json").write_text(json.dumps({"student_type": "encoder"}))
    with pytest.raises(RankdistillError, match="expected 'decoder'"):
        DecoderStudent.load(tmp_path)
    with pytest.raises(ValueError, match="expected equal"):
        DecoderExample("q", ["a", "b"], [1.0])


def test_examples_from_scores_keeps_the_best_and_samples_the_rest():
    teacher = {"q1": {f"d{i}": float(i) for i in range(10)}, "q2": {"d0": 1.0}}
    docs = {f"d{i}": f"text {i}" for i in range(10)}
    groups = examples_from_scores({"q1": "one", "q2": "two"}, docs, teacher, {("q1", "d9"): "best"}, 4, top=2)
    assert [len(g.documents) for g in groups] == [4, 1]
    assert groups[0].documents[:2] == ["text 9", "text 8"] and groups[0].reasonings[0] == "best"
    assert groups == examples_from_scores(
        {"q1": "one", "q2": "two"}, docs, teacher, {("q1", "d9"): "best"}, 4, top=2
    )
