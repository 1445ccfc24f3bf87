"""Shared by the stages: objects loaded once per process (dataset, BM25, teacher), query files, sampling, the dataset fingerprint."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from rankdistill.data.jsonl import iter_jsonl, write_jsonl
from rankdistill.data.types import Queries
from rankdistill.errors import DataError
from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext, input_fingerprint

log = logging.getLogger(__name__)


LABEL_STORE = "labels.sqlite"
STAGE_NAMES = ("data", "bm25", "queries", "labels", "train", "evaluate", "report")


# -- shared objects (loaded once per process, reused by later stages) ---------------------------------


def _dataset(ctx: StageContext):
    if "dataset" not in ctx.shared:
        from rankdistill.data import load_dataset

        cfg: PipelineConfig = ctx.config
        ctx.shared["dataset"] = load_dataset(cfg.dataset.name, data_dir=cfg.dataset.data_dir, download=True)
    return ctx.shared["dataset"]


def _bm25(ctx: StageContext):
    if "bm25" not in ctx.shared:
        from rankdistill.retrieval import BM25Retriever

        cfg: PipelineConfig = ctx.config
        ctx.shared["bm25"] = BM25Retriever.from_corpus(_dataset(ctx).corpus, k1=cfg.bm25.k1, b=cfg.bm25.b)
    return ctx.shared["bm25"]


def _teacher(ctx: StageContext):
    if "teacher" not in ctx.shared:
        from rankdistill.teachers import load_teacher

        ctx.shared["teacher"] = load_teacher(ctx.config.labels.teacher, device=ctx.config.device)
    return ctx.shared["teacher"]


def ray_options(ctx: StageContext):
    """`labels.ray` as the Ray backend's options (pointwise teachers and LLM-taught kinds alike)."""
    from rankdistill.labels.ray_backend import RayOptions

    r = ctx.config.labels.ray
    return RayOptions(
        address=r.address,
        num_actors=r.num_actors,
        num_cpus_per_actor=r.num_cpus_per_actor,
        num_gpus_per_actor=r.num_gpus_per_actor,
    )


def _read_queries(path: Path) -> Queries:
    return Queries({str(o["_id"]): o["text"] for _, o in iter_jsonl(path, required=("_id", "text"))})


def _write_queries(path: Path, queries: Queries) -> int:
    return write_jsonl(path, ({"_id": q, "text": t} for q, t in queries.items()))


def _sample(ids: list[str], n: int | None, seed: int) -> list[str]:
    if n is None or len(ids) <= n:
        return ids
    keep = set(random.Random(seed).sample(ids, n))
    return [i for i in ids if i in keep]  # file order, whatever the sample


# -- data ---------------------------------------------------------------------------------------------


def _dataset_fingerprint(cfg: PipelineConfig) -> dict[str, Any]:
    from rankdistill.data import resolve_dataset

    try:
        return input_fingerprint(resolve_dataset(cfg.dataset.name, cfg.dataset.data_dir, download=False))
    except DataError:  # not downloaded yet: the data stage downloads it (and reruns once it is local)
        return {"dataset": cfg.dataset.name, "local": False}


def _dump(model) -> Any:
    return model.model_dump(mode="json") if model is not None else None


def count_parameters(path: str | Path) -> int | None:
    """Parameters of a model folder or file, read from the safetensors / GGUF headers (no weights loaded)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.safetensors")) if path.is_dir() else []
    total = 0
    for f in files:
        if f.suffix == ".safetensors":
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n))
            for name, info in header.items():
                if name != "__metadata__":
                    count = 1
                    for dim in info["shape"]:
                        count *= dim
                    total += count
        elif f.suffix == ".gguf":
            try:
                from gguf import GGUFReader
            except ImportError:
                return None
            total += sum(int(t.n_elements) for t in GGUFReader(str(f)).tensors)
    return total or None


#: what the report says of a model behind an HTTP API, whose parameters it cannot count
API_PARAMETERS = "unknown (API)"


def teacher_parameters(teacher: Any) -> int | None:
    """Parameters of every model a teacher runs (ensemble members summed; BM25 counts 0): read from the
    model file's header, or counted in the model an LLM backend loaded (transformers); None when unknown
    (a model behind an HTTP API: see `parameters_note`)."""
    members = getattr(teacher, "members", None)
    if members is not None:
        counts = [teacher_parameters(m) for m in members]
        return None if any(c is None for c in counts) else sum(counts)
    if type(teacher).__name__ == "FirstStageTeacher":
        return 0
    path = getattr(teacher, "model_path", None)
    llm = getattr(teacher, "llm", None)
    if path is None and llm is not None:
        loaded = getattr(llm, "model", None)  # transformers: the loaded model counts itself
        if callable(getattr(loaded, "num_parameters", None)):
            return int(loaded.num_parameters())
        path = getattr(llm, "path", None)
    return count_parameters(path) if path is not None else None


def _over_http(teacher: Any) -> bool:
    """Whether a teacher's model answers over HTTP: an LLM of an OpenAI-compatible server (`base_url`),
    or a teacher that posts to an endpoint itself (the rerank-API teacher's `url`)."""
    llm = getattr(teacher, "llm", None)
    return isinstance(getattr(llm, "base_url", None), str) or isinstance(getattr(teacher, "url", None), str)


def parameters_note(teacher: Any) -> str | None:
    """Why a teacher's parameters are not counted, for the report: API_PARAMETERS when a model it runs
    (itself, or an ensemble member) is behind an HTTP API; None otherwise."""
    members = getattr(teacher, "members", None)
    if members is not None:
        return API_PARAMETERS if any(parameters_note(m) for m in members) else None
    return API_PARAMETERS if _over_http(teacher) else None
