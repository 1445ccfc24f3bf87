"""Every model on its device: the one device decision (`rankdistill.hardware`), its pure parts on every
kind of machine, and end to end on this one (a CPU: "auto" must mean the CPU and give the CPU's scores).

No mocks: the decisions are pure functions of what a machine has, so a GPU's branch is exercised by
giving them a GPU's capabilities; only what truly needs a GPU is left to benchmarks/gpu_check.sh."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rankdistill.cli import app
from rankdistill.errors import RankdistillError
from rankdistill.hardware import (
    DEVICE_HELP,
    auto_dtype_name,
    check_device_name,
    choose_device,
    mixed_precision,
    pick_dtype,
    resolve_device,
)
from rankdistill.inference.backends import CPU_PROVIDER, CUDA_PROVIDER, onnx_providers

needs_no_gpu = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks what a machine without a GPU does"
)

# -------------------------------------------------------------------------- the decision, pure


@pytest.mark.parametrize(
    ("requested", "cuda_count", "mps", "expected"),
    [
        ("auto", 0, False, "cpu"),
        ("auto", 0, True, "mps"),
        ("auto", 1, True, "cuda"),  # CUDA first
        (None, 2, False, "cuda"),  # None is auto
        ("cpu", 4, True, "cpu"),  # an explicit CPU is the CPU whatever else there is
        ("CUDA", 1, False, "cuda"),
        ("cuda:1", 2, False, "cuda:1"),
        (torch.device("cuda", 0), 1, False, "cuda:0"),
        ("mps", 0, True, "mps"),
    ],
)
def test_choose_device(requested, cuda_count, mps, expected):
    assert choose_device(requested, cuda_count=cuda_count, mps=mps) == expected


@pytest.mark.parametrize(
    ("requested", "cuda_count", "mps", "message"),
    [
        ("cuda", 0, False, r"--device 'cuda': no CUDA device is visible \(why\); use --device cpu"),
        ("cuda:0", 0, True, r"--device 'cuda:0': no CUDA device is visible"),
        ("cuda:2", 2, False, r"--device 'cuda:2': only 2 CUDA device\(s\) are visible \(cuda:0 to cuda:1\)"),
        ("mps", 1, False, r"--device 'mps': Apple MPS is not available"),
        ("gpu", 1, False, r"--device 'gpu': expected auto \(a CUDA GPU"),
        ("cuda:x", 1, False, r"--device 'cuda:x': expected"),
        ("cpu:0", 1, False, r"--device 'cpu:0': expected"),
    ],
)
def test_a_device_that_is_not_there_names_the_option(requested, cuda_count, mps, message):
    with pytest.raises(RankdistillError, match=message):
        choose_device(requested, cuda_count=cuda_count, mps=mps, option="--device", cuda_note="why")


def test_config_keys_check_the_spelling_only():
    assert check_device_name(" CUDA:1 ") == "cuda:1" and check_device_name(None) == "auto"
    with pytest.raises(RankdistillError, match="evaluate.device 'tpu'"):
        check_device_name("tpu", "evaluate.device")


@pytest.mark.parametrize(
    ("device_type", "gpu_bf16", "cpu_bf16", "expected"),
    [
        ("cuda", True, False, "bf16"),  # Ampere or later
        ("cuda", False, True, "fp16"),  # an older GPU: fp16, whatever the CPU has
        ("cpu", True, True, "bf16"),
        ("cpu", True, False, "fp32"),  # a CPU without native bf16, whatever the GPU has
        ("mps", True, True, "fp32"),
    ],
)
def test_auto_dtype_follows_the_device(device_type, gpu_bf16, cpu_bf16, expected):
    assert auto_dtype_name(device_type, gpu_bf16=gpu_bf16, cpu_bf16=cpu_bf16) == expected


@pytest.mark.parametrize(
    ("device_type", "bf16", "gpu_bf16", "cpu_bf16", "expected"),
    [
        ("cuda", "auto", True, False, "bf16"),
        ("cuda", "auto", False, False, "fp16"),
        ("cuda", False, True, True, None),  # bf16: false is fp32 training
        ("cuda", True, False, False, "bf16"),  # as asked
        ("cpu", "auto", True, True, "bf16"),
        ("cpu", "auto", True, False, None),
        ("mps", "auto", True, True, None),
    ],
)
def test_training_precision_follows_the_device(device_type, bf16, gpu_bf16, cpu_bf16, expected):
    assert mixed_precision(device_type, bf16, gpu_bf16=gpu_bf16, cpu_bf16=cpu_bf16) == expected


def test_onnx_runs_on_cuda_only_where_onnxruntime_can():
    both = ["TensorrtExecutionProvider", CUDA_PROVIDER, CPU_PROVIDER]
    assert onnx_providers(torch.device("cuda"), both) == [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]
    assert onnx_providers("cuda:1", both) == [(CUDA_PROVIDER, {"device_id": 1}), CPU_PROVIDER]
    assert onnx_providers("cuda", [CPU_PROVIDER]) == [CPU_PROVIDER]  # onnxruntime without CUDA
    assert onnx_providers("cpu", both) == [CPU_PROVIDER]
    assert onnx_providers("mps", both) == [CPU_PROVIDER]


# -------------------------------------------------------------------------- this machine


@needs_no_gpu
def test_auto_is_the_cpu_here_and_cuda_is_a_clear_error():
    assert resolve_device() == resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RankdistillError, match=r"--device 'cuda': no CUDA device is visible \(torch "):
        resolve_device("cuda", "--device")
    assert pick_dtype(resolve_device(), "fp32") == torch.float32


def test_hidden_gpus_mean_the_cpu():
    """CUDA_VISIBLE_DEVICES="" hides every GPU (a fresh process: CUDA reads it once, at start)."""
    code = (
        "from rankdistill.hardware import resolve_device\n"
        "print(resolve_device('auto'))\n"
        "try:\n    resolve_device('cuda', 'serve --device')\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True
    ).stdout.splitlines()
    assert out[0] == "cpu"
    assert out[1].startswith("serve --device 'cuda': no CUDA device is visible")
    assert "CUDA_VISIBLE_DEVICES=''" in out[1]


@needs_no_gpu
@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--model", "no-such-model", "--device", "cuda"],
        ["rerank", "-m", "m", "-d", "scifact", "--run", "r.trec", "-o", "o.trec", "--device", "cuda"],
        ["label", "-d", "no-such-dataset", "--device", "cuda"],
    ],
    ids=["serve", "rerank", "label"],
)
def test_commands_refuse_a_missing_device_before_any_work(args, tmp_path):
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, RankdistillError), result.output
    assert str(result.exception).startswith("--device 'cuda': no CUDA device is visible")


def test_train_and_run_take_a_device(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        "output_dir: out\nphases: [{name: p, data: {jsonl: rows.jsonl}}]\ndevice: cpu\n", encoding="utf-8"
    )
    assert CliRunner().invoke(app, ["train", str(config), "--check"]).exit_code == 0
    bad = CliRunner().invoke(app, ["train", str(config), "--check", "--device", "gpu"])
    assert isinstance(bad.exception, RankdistillError) and "--device 'gpu': expected" in str(bad.exception)
    config.write_text(config.read_text().replace("device: cpu", "device: gpu"), encoding="utf-8")
    bad = CliRunner().invoke(app, ["train", str(config), "--check"])
    assert "device" in str(bad.exception) and "'gpu': expected" in str(bad.exception)
    import typer.main

    commands = typer.main.get_command(app).commands
    for name in ("serve", "rerank", "train", "run", "label"):
        option = next(p for p in commands[name].params if "--device" in getattr(p, "opts", ()))
        assert option.help.startswith(DEVICE_HELP), name  # one text: some add what it applies to


def test_pipeline_device_keys(tiny_pipeline):
    from rankdistill.pipeline.config import ConfigError, parse_config
    from rankdistill.pipeline.stages import build_stages

    settings = {s.name: s.settings for s in build_stages()}
    cfg = parse_config(tiny_pipeline)
    assert cfg.device == "auto" and cfg.evaluate_device == ("auto", "device")
    # a run that sets no device hashes its evaluate stage as before devices could be set
    assert "device" not in settings["evaluate"](cfg) and "device" not in settings["evaluate"](cfg)["evaluate"]
    cfg = parse_config({**tiny_pipeline, "device": "cpu"})
    assert cfg.evaluate_device == ("cpu", "device") and settings["evaluate"](cfg)["device"] == "cpu"
    assert settings["train"](cfg) == settings["train"](parse_config(tiny_pipeline))  # not a train setting
    cfg = parse_config({**tiny_pipeline, "evaluate": {**tiny_pipeline["evaluate"], "device": "cuda:0"}})
    assert cfg.evaluate_device == ("cuda:0", "evaluate.device")
    assert (
        cfg.train.train_config(cfg.resolved_run_dir, 0, [{"name": "p", "data": {"jsonl": "x"}}]).device
        == "auto"
    )
    with pytest.raises(ConfigError, match=r"evaluate.device: .*'gpu': expected"):
        parse_config({**tiny_pipeline, "evaluate": {"device": "gpu"}})


# -------------------------------------------------------------------------- the trainers' arguments


def test_decoder_trainer_trains_where_the_device_is(tmp_path):
    from rankdistill.training.decoder import decoder_training_arguments, train_decoder
    from rankdistill.training.run import decoder_settings

    assert "use_cpu" not in inspect.signature(train_decoder).parameters
    assert inspect.signature(train_decoder).parameters["device"].default == "auto"
    here = decoder_training_arguments(tmp_path, device="cpu", bf16=False)
    assert here.use_cpu is True and here.device == torch.device("cpu")
    # a GPU's arguments, built on this CPU: the device is given resolved, the precision decided
    gpu = decoder_training_arguments(tmp_path, device=torch.device("cuda"), precision=None)
    assert gpu.use_cpu is False and not gpu.bf16 and not gpu.fp16
    old_gpu = decoder_training_arguments(tmp_path, device=torch.device("cuda"), precision="fp16")
    assert old_gpu.use_cpu is False and old_gpu.fp16 and not old_gpu.bf16
    with pytest.raises(RankdistillError, match=r"CUDA_VISIBLE_DEVICES=1 and device cuda"):
        decoder_training_arguments(tmp_path, device=torch.device("cuda:1"), precision=None)

    from rankdistill.training.config import DecoderStudentConfig, TrainingConfig

    settings = decoder_settings(TrainingConfig(), DecoderStudentConfig(type="decoder"), 0, "cuda")
    assert settings["device"] == "cuda" and "use_cpu" not in settings


def test_encoder_trainer_trains_where_the_device_is(tmp_path):
    from rankdistill.training.trainer import TrainSettings, precision_arguments, training_arguments

    auto = training_arguments(TrainSettings(), tmp_path, evaluate=False)
    assert auto.use_cpu is (resolve_device().type == "cpu")
    gpu = training_arguments(TrainSettings(), tmp_path, False, device=torch.device("cuda"), precision=None)
    assert gpu.use_cpu is False
    assert precision_arguments(torch.device("cuda"), "auto", "bf16") == {
        "use_cpu": False,
        "bf16": True,
        "fp16": False,
    }
    assert precision_arguments("cpu", False) == {"use_cpu": True, "bf16": False, "fp16": False}


# -------------------------------------------------------------------------- models on the device


def test_teachers_take_the_device(cross_encoder_dir):
    from rankdistill.teachers import load_teacher

    spec = f"bm25+cross-encoder:{cross_encoder_dir}"
    assert load_teacher(spec).members[1].device == str(resolve_device())  # auto
    assert load_teacher(spec, device="cpu").members[1].device == "cpu"
    # a spec's own device wins over the one given to every teacher (so no CUDA is asked for here)
    own = load_teacher(f"cross-encoder:{cross_encoder_dir}?device=cpu", device="cuda")
    assert own.device == "cpu"


def test_reranker_auto_and_cpu_score_alike(cross_encoder_dir, data_dir, tmp_path):
    """`Reranker.load` and `rankdistill rerank`, with auto and with cpu: here the same device, the same
    scores (bit for bit), and the device said in `info()` and in the command's output."""
    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.trec import write_run
    from rankdistill.data.types import Run
    from rankdistill.inference.reranker import Reranker

    pairs = [("vitamin c and scurvy", "Scurvy is caused by a lack of vitamin C."), ("tides", "The moon.")]
    auto = Reranker.load(cross_encoder_dir, dtype="fp32")
    cpu = Reranker.load(cross_encoder_dir, device="cpu", dtype="fp32")
    assert auto.info()["device"] == str(resolve_device()) and cpu.info()["device"] == "cpu"
    np.testing.assert_array_equal(auto.score(pairs), cpu.score(pairs))

    ds = load_dataset("scifact", data_dir=data_dir)
    qids = list(ds.split_queries("test"))[:2]
    first = Run({q: {d: float(5 - i) for i, d in enumerate(list(ds.corpus)[:4])} for q in qids})
    run_in = write_run(first, tmp_path / "in.trec", tag="first")
    outputs = {}
    for device in ("auto", "cpu"):
        out = tmp_path / f"{device}.trec"
        args = ["rerank", "-m", str(cross_encoder_dir), "-d", "scifact", "--data-dir", str(data_dir)]
        args += ["--run", str(run_in), "-o", str(out), "--dtype", "fp32", "--device", device]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"torch on {resolve_device(device)}" in result.output
        outputs[device] = out.read_text(encoding="utf-8")
    assert outputs["auto"] == outputs["cpu"]
    json.dumps(auto.info())  # what the server's /health reports stays JSON
