"""Teachers that need no LLM: a cross-encoder (any HF sequence-classification folder) and a bi-encoder
(cosine of sentence embeddings, all-MiniLM-L6-v2 by default) with document embeddings cached on disk."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError, require
from rankdistill.fingerprint import model_fingerprint
from rankdistill.hardware import pick_dtype, resolve_device
from rankdistill.models import resolve_model
from rankdistill.teachers.base import TEACHERS, PointwiseLabel, PointwiseTeacher
from rankdistill.utils import stable_hash


def default_cache_dir() -> Path:
    """rankdistill's cache root ($RANKDISTILL_CACHE, else ~/.cache/rankdistill), shared with BM25 indexes."""
    from rankdistill.data.datasets import cache_dir

    return cache_dir()


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


class CrossEncoderTeacher(PointwiseTeacher):
    """Scores pairs with a sequence-classification model through sentence-transformers' CrossEncoder.

    One output: score = that logit. Two outputs: logits = [not relevant, relevant], score = their
    difference. `device` "auto" (the default) is a GPU when there is one (`rankdistill.hardware`); dtype
    "auto" is bf16 on CPUs and GPUs that support it, fp16 on older GPUs (set dtype="fp32" for exact fp32
    scores). The dtype is part of the teacher's identity, so labels of another dtype are not mixed in."""

    name = "cross-encoder"

    def __init__(
        self,
        model: str | Path,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        device: str | None = None,
        dtype: str | None = "auto",
        name: str | None = None,
    ):
        self.model_path = resolve_model(model)
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = str(resolve_device(device or "auto"))
        self.dtype = dtype
        if name:
            self.name = name
        self._model = None

    @property
    def torch_dtype(self):
        return pick_dtype(self.device, self.dtype)

    def identity(self) -> dict[str, Any]:
        return {
            "teacher": "cross-encoder",
            "model": model_fingerprint(self.model_path),
            "max_length": self.max_length,
            "dtype": _dtype_name(self.torch_dtype),
        }

    @property
    def model(self):
        if self._model is None:
            st = require("sentence_transformers", "all", "the cross-encoder teacher")
            self._model = st.CrossEncoder(
                self.model_path,
                max_length=self.max_length,
                device=self.device,
                model_kwargs={"torch_dtype": self.torch_dtype},
            )
            n = self._model.config.num_labels
            if n not in (1, 2):
                raise RankdistillError(
                    f"{self.model_path}: cross-encoder teacher needs a model with 1 or 2 output labels, it has {n}"
                )
        return self._model

    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        if not pairs:
            return []
        import torch

        logits = self.model.predict(
            list(pairs),
            batch_size=self.batch_size,
            activation_fn=torch.nn.Identity(),
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        labels = []
        for row in logits.reshape(len(pairs), -1).astype("float64"):
            if len(row) == 1:
                labels.append(PointwiseLabel(float(row[0]), [float(row[0])]))
            else:
                labels.append(PointwiseLabel(float(row[1] - row[0]), [float(row[0]), float(row[1])]))
        return labels

    def close(self) -> None:
        self._model = None


class EmbeddingCache:
    """Document embeddings on disk (SQLite), keyed by model identity and the document's text hash, so a
    corpus is encoded once per model whatever queries or runs come later."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            str(self.path), timeout=60, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, text_hash TEXT NOT NULL, "
            "vector BLOB NOT NULL, PRIMARY KEY (model, text_hash)) WITHOUT ROWID"
        )

    @staticmethod
    def text_hash(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def get_many(self, model: str, hashes: list[str]):
        import numpy as np

        out = {}
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT text_hash, vector FROM embeddings WHERE model=? AND text_hash IN ({marks})",
                [model, *chunk],
            )
            for h, blob in rows:
                out[h] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_many(self, model: str, items: dict[str, Any]) -> None:
        import numpy as np

        rows = [(model, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items.items()]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "INSERT OR IGNORE INTO embeddings(model, text_hash, vector) VALUES(?,?,?)", rows
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        return self._conn.execute("SELECT COUNT(*) FROM embeddings WHERE model=?", (model,)).fetchone()[0]

    def close(self) -> None:
        self._conn.close()


class BiEncoderTeacher(PointwiseTeacher):
    """Cosine similarity of query and document embeddings of a sentence-transformers model.

    Document embeddings are cached in `cache_dir/embeddings.sqlite` (pass `cache_dir=False` to keep them
    in memory only). Embeddings are computed in `dtype` on `device` (as for `CrossEncoderTeacher`) and
    stored as float32."""

    name = "bi-encoder"
    #: document embeddings kept in memory at most (about 150 MB at 384 dimensions)
    memory_limit = 100_000

    def __init__(
        self,
        model: str | Path = "minilm",
        *,
        batch_size: int = 64,
        device: str | None = None,
        dtype: str | None = "auto",
        max_seq_length: int | None = None,
        cache_dir: str | Path | bool | None = None,
        name: str | None = None,
    ):
        self.model_path = resolve_model(model)
        self.batch_size = batch_size
        self.device = str(resolve_device(device or "auto"))
        self.dtype = dtype
        self.max_seq_length = max_seq_length
        if name:
            self.name = name
        self._model = None
        self._memory: dict[str, Any] = {}
        if cache_dir is False:
            self.cache = None
        else:
            directory = default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)
            self.cache = EmbeddingCache(directory / "embeddings.sqlite")
        self._model_id = stable_hash(self.identity(), 24)

    @property
    def torch_dtype(self):
        return pick_dtype(self.device, self.dtype)

    def identity(self) -> dict[str, Any]:
        return {
            "teacher": "bi-encoder",
            "model": model_fingerprint(self.model_path),
            "max_seq_length": self.max_seq_length,
            "dtype": _dtype_name(self.torch_dtype),
        }

    @property
    def model(self):
        if self._model is None:
            st = require("sentence_transformers", "all", "the bi-encoder teacher")
            self._model = st.SentenceTransformer(
                self.model_path, device=self.device, model_kwargs={"torch_dtype": self.torch_dtype}
            )
            if self.max_seq_length:
                self._model.max_seq_length = self.max_seq_length
        return self._model

    def encode(self, texts: list[str]):
        """Unit-normalised float32 embeddings, one row per text."""
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        emb = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        return emb.float().cpu().numpy()

    def document_embeddings(self, docs: list[str]) -> dict[str, Any]:
        """Embeddings by text hash for `docs`, from memory, then disk, then the model (and cached)."""
        hashes = {EmbeddingCache.text_hash(d): d for d in docs}
        found = {h: self._memory[h] for h in hashes if h in self._memory}
        missing = [h for h in hashes if h not in found]
        if missing and self.cache is not None:
            found.update(self.cache.get_many(self._model_id, missing))
            missing = [h for h in missing if h not in found]
        if missing:
            vectors = self.encode([hashes[h] for h in missing])
            new = dict(zip(missing, vectors, strict=True))
            if self.cache is not None:
                self.cache.put_many(self._model_id, new)
            found.update(new)
        if len(self._memory) > self.memory_limit:  # keep RAM bounded on big corpora; disk still has them
            self._memory.clear()
        self._memory.update(found)
        return found

    def score(self, pairs: list[tuple[str, str]]) -> list[PointwiseLabel]:
        import numpy as np

        if not pairs:
            return []
        queries = list(dict.fromkeys(q for q, _ in pairs))
        q_emb = dict(zip(queries, self.encode(queries), strict=True))
        d_emb = self.document_embeddings([d for _, d in pairs])
        out = []
        for q, d in pairs:
            cos = float(
                np.dot(q_emb[q].astype(np.float64), d_emb[EmbeddingCache.text_hash(d)].astype(np.float64))
            )
            out.append(PointwiseLabel(cos))
        return out

    def cold(self) -> BiEncoderTeacher:
        """This teacher with no document embedding kept (neither on disk nor in memory); the model is
        loaded here once and shared, so a timing of the copy counts encoding, not loading."""
        import copy

        _ = self.model
        twin = copy.copy(self)
        twin.cache = None
        twin._memory = {}
        return twin

    def close(self) -> None:
        self._model = None
        self._memory.clear()
        if self.cache is not None:
            self.cache.close()


TEACHERS.register(
    "cross-encoder",
    CrossEncoderTeacher,
    aliases=("crossencoder", "ce"),
    arg="model",
    arg_help="a model (a folder or hub name)",
)
# "minilm" alone is the bi-encoder all-MiniLM-L6-v2
TEACHERS.register(
    "bi-encoder", BiEncoderTeacher, aliases=("biencoder", "dense", "minilm"), arg="model", default="minilm"
)
