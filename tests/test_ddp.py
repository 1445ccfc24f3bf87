"""Data-parallel training: `rankdistill train` under `torchrun` and `accelerate launch`, two CPU processes
(gloo), against one process on the same global batch.

What the two-process run must give, and what the slow test asserts: with per-process `batch_size` b, the
same loss curve and the same final weights (the student's, and the Term Control Layer's, which the
loss owns and no DDP wrapper holds) as one process with `batch_size` 2b. This holds when:
- the global batch of each step is the same rows: the trainer's seeded batch sampler permutes the rows
  (here: query groups) the same way whatever the batch size, and accelerate hands batch 2k to rank 0
  and batch 2k+1 to rank 1, whose union is the single process's batch k;
- the loss of a global batch is the mean of the per-process losses (DDP averages gradients): true for
  the grouped MarginMSE (a mean over groups, the same number on each process) and for the TCL's loss
  (a mean over pairs with a query term in the document: every pair here has one);
- nothing random differs: dropout is 0 (each process would draw its own masks).
The tolerances are for fp32 rounding (padding to the longest pair of 4 instead of 8, the all-reduce
adding in another order than one process's batch sum): measured 1e-7 relative on the losses and up to
1.3e-6 on a weight after 4 Adam steps of ~5e-4 each; the bugs this test was checked against (per-process
batch not halved, the forward pass not through the DDP wrapper, the TCL's gradients not averaged) moved
step 2's loss by 2.6e-4 relative or more. Before the fix, the losses read `model.model` off the DDP
wrapper and the two-process run died with an AttributeError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rankdistill.training import write_pairs_jsonl

# every document shares a word with its query, so the TCL's loss is a mean over all pairs of a batch
TOPICS = {
    "protein folding": [
        ("Proteins fold into compact structures.", 0.9),
        ("Folding of a protein can go wrong.", 0.7),
        ("Protein shakes are popular in gyms.", 0.2),
        ("Paper folding is an old craft.", 0.1),
    ],
    "capital of france": [
        ("Paris is the capital of France.", 0.95),
        ("France has many old cities.", 0.5),
        ("Venture capital funds startups.", 0.15),
        ("The capital letter starts a sentence.", 0.05),
    ],
    "solar panels efficiency": [
        ("Modern solar panels convert a fifth of the light.", 0.9),
        ("Efficiency of panels drops when hot.", 0.8),
        ("Solar eclipses are rare events.", 0.2),
        ("Wooden panels cover the wall.", 0.0),
    ],
    "river flooding causes": [
        ("Heavy rain makes the river flooding worse.", 0.85),
        ("The causes of floods include snow melt.", 0.6),
        ("A river cruise is relaxing.", 0.1),
        ("Flooding the market with cheap goods.", 0.05),
    ],
}
ROWS = [{"query": q, "document": d, "label": y} for q, docs in TOPICS.items() for d, y in docs]
STEPS = 4  # two epochs of two global batches of two query groups


def _student_base(minilm_dir: Path, root: Path) -> Path:
    """MiniLM with dropout 0 (links to the packaged files, its own config.json)."""
    base = root / "minilm-no-dropout"
    if base.exists():
        return base
    base.mkdir()
    for f in minilm_dir.iterdir():
        if f.name != "config.json":
            (base / f.name).symlink_to(f)
    config = json.loads((minilm_dir / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (base / "config.json").write_text(json.dumps(config))
    return base


def _config(root: Path, base: Path, name: str, batch_size: int) -> tuple[Path, Path]:
    rows = root / "rows.jsonl"
    if not rows.exists():
        write_pairs_jsonl(rows, ROWS)
    out = root / name
    cfg = {
        "output_dir": str(out),
        "seed": 11,
        "device": "cpu",
        "student": {"base": str(base), "num_layers": 1, "max_length": 32},
        "losses": [
            {"name": "margin_mse"},
            {"name": "soft_bce"},
            {"name": "term_control", "weight": 0.5, "args": {"dropout": 0.0}},
        ],
        "phases": [{"name": "phase1", "data": {"jsonl": str(rows)}}],
        "training": {
            "batch_size": batch_size,  # pairs a process: batch_size // 4 query groups
            "max_steps": STEPS,
            "logging_steps": 1,
            "save_steps": STEPS,
            "learning_rate": 5e-4,
            "warmup_ratio": 0.0,
            "bf16": False,
        },
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, out


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "RANKDISTILL_PROGRESS": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _launch(prefix: list[str], config: Path) -> None:
    proc = subprocess.run(
        [*prefix, "train", str(config)], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher(name: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    if name == "torchrun":
        return [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "rankdistill"]
    # --multi_gpu is accelerate's DDP launcher (torchrun underneath); with no GPU visible and the
    # config's `device: cpu` each process trains on the CPU over gloo
    return [
        str(bin_dir / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(bin_dir / "rankdistill"),  # the script, as the pipeline's `train.launch` runs it
    ]


def _result(out: Path) -> dict:
    from safetensors.torch import load_file

    history = json.loads((out / "phase1" / "phase_done.json").read_text())["log_history"]
    logs = [h for h in history if "loss" in h]
    return {
        "steps": [h["step"] for h in logs],
        "curves": {k: [h[k] for h in logs] for k in ("loss", "margin_mse", "soft_bce", "term_control")},
        "weights": load_file(str(out / "final" / "model.safetensors")),
        "tcl": load_file(str(out / "phase1" / f"checkpoint-{STEPS}" / "loss_state.safetensors")),
    }


@pytest.fixture(scope="module")
def one_process(minilm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    base = _student_base(minilm_dir, root)
    config, out = _config(root, base, "one_process", batch_size=8)
    _launch([sys.executable, "-m", "rankdistill"], config)
    return root, base, _result(out)


def _assert_same_training(got: dict, ref: dict) -> None:
    assert got["steps"] == ref["steps"] == list(range(1, STEPS + 1))
    for key, curve in ref["curves"].items():
        assert curve[0] != curve[-1]  # it trained
        # `log_history` rounds to 4 significant digits; rtol 1e-4 with a 5e-4 floor leaves that rounding
        torch.testing.assert_close(
            torch.tensor(got["curves"][key]), torch.tensor(curve), rtol=1e-4, atol=5e-4, msg=key
        )
    for name in ("weights", "tcl"):
        assert got[name].keys() == ref[name].keys()
        for key, value in ref[name].items():
            if key.endswith("attention.self.key.bias"):
                # adds one constant to each row of attention logits, which the softmax removes: its
                # gradient is 0 but for rounding, which Adam scales up to learning-rate-sized steps
                continue
            # Adam moves a weight by about the learning rate a step (2e-3 over the 4 steps here); one
            # process and two differ by rounding, measured up to 1.3e-6; a gradient not averaged over
            # the processes leaves differences of the size of a step
            torch.testing.assert_close(got[name][key], value, rtol=0, atol=1e-5, msg=f"{name}: {key}")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_train_as_one_process_on_the_same_global_batch(launcher, one_process):
    root, base, ref = one_process
    config, out = _config(root, base, f"ddp_{launcher}", batch_size=4)
    _launch(_launcher(launcher), config)
    _assert_same_training(_result(out), ref)


def test_the_losses_run_the_student_through_its_wrapper(minilm_dir):
    """A DDP wrapper has only `forward`: the losses take tokenizer, max length and config from the
    student inside it, and run the forward pass through the wrapper (DataParallel stands for it here: on a
    machine without GPUs it calls the student as it is, and `unwrap_model` unwraps it as it does DDP)."""
    from torch import nn

    from rankdistill.students import load_encoder_student
    from rankdistill.training.losses import CombinedLoss, MarginMSELoss, TermControlLoss, encode_pairs
    from rankdistill.training.losses.base import unwrap_model

    student = load_encoder_student(minilm_dir, num_layers=1, max_length=32, device="cpu", seed=0).eval()
    wrapped = nn.DataParallel(student)
    assert unwrap_model(wrapped) is student
    with pytest.raises(AttributeError):
        wrapped.tokenizer  # noqa: B018 - what the losses used to read
    queries, docs = list(TOPICS), [d[0][0] for d in TOPICS.values()]
    with torch.no_grad():
        direct = encode_pairs(student, queries, docs, hidden_states=True)
        through = encode_pairs(wrapped, queries, docs, hidden_states=True)
        enc = student.tokenizer(
            queries, docs, padding=True, truncation=True, max_length=32, return_tensors="pt"
        )
        hf = student.model(**enc, output_hidden_states=True)
    for fwd in (direct, through):
        assert torch.equal(fwd.logits, hf.logits)
        assert len(fwd.hidden_states) == len(hf.hidden_states)
        assert all(torch.equal(a, b) for a, b in zip(fwd.hidden_states, hf.hidden_states, strict=True))
    assert student.model.config.output_hidden_states is False  # asked for one call only

    # the trainer's way: the loss built on the student, the wrapper put into `model` later
    loss = CombinedLoss(
        student,
        {"margin_mse": (MarginMSELoss(student), 1.0), "term_control": (TermControlLoss(wrapped), 0.5)},
    )
    loss.model = wrapped
    inputs = [queries[:2], [[d for d, _ in TOPICS[q]] for q in queries[:2]]]
    labels = [torch.tensor([y for _, y in TOPICS[q]]) for q in queries[:2]]
    out = loss(inputs, labels)
    sum(out.values()).backward()
    assert student.model.classifier.weight.grad is not None
    assert all(p.grad is not None for p in loss.losses["term_control"].term_control.parameters())


def test_the_decoder_student_refuses_several_processes(tmp_path, monkeypatch):
    """Its trainer does not run the student through the DDP wrapper: under a launcher each process would
    train alone on its share of the batches, so it says so before anything loads."""
    from rankdistill.errors import RankdistillError
    from rankdistill.training.config import parse_config
    from rankdistill.training.run import train_from_config

    rows = tmp_path / "rows.jsonl"
    write_pairs_jsonl(rows, ROWS)
    cfg = parse_config(
        {
            "output_dir": str(tmp_path / "out"),
            "student": {"type": "decoder"},
            "phases": [{"name": "p", "data": {"jsonl": str(rows)}}],
        }
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RankdistillError, match="decoder student trains in one process"):
        train_from_config(cfg)
    assert not (tmp_path / "out").exists()
