"""`Reranker`: load any trained student (or a Hugging Face cross-encoder folder) and rank documents fast.

Speed comes from doing as little as possible per call: the model, tokenizer and backend are built once in
`load()`; each call tokenises all its pairs in one batched (Rust) tokenizer call, sorts them by length so
each batch is padded only to its own longest pair, and runs the model under `torch.inference_mode()` in
bf16 on CPUs with native bf16 (fp32 otherwise), or through ONNX Runtime when that was exported and
measured faster (`rankdistill export --onnx`). The device is `rankdistill.hardware.resolve_device`'s:
"auto" (the default) runs on a CUDA GPU when one is visible (bf16 where it has native bf16, else fp16),
else on MPS, else on the CPU. Tokenising, batching and turning logits into scores is
`rankdistill.students.encoder.score_pairs`, which the training dev evaluator uses too.

Exact top-k with bf16 speed (the default when bf16 is chosen automatically): `rerank`/`rerank_many` score
every pair in bf16, then rescore in fp32 (a second fp32 copy of the weights, loaded once) only the
documents that could be in the top-k (k = `top_k`, or `rescore_top_k` = 10 when all documents are
returned); see `rankdistill.inference.rescore` for why that is exact. `score()` stays pure bf16
(`exact=True` for fp32). The backends are `rankdistill.inference.backends`.

Scores are raw logits: with one output, the logit; with two (InRanker's false/true pair), logit[1] - logit[0].
Both are monotone in relevance, which is all ranking needs; apply a sigmoid for a probability.

Long documents (the `long_docs` argument, per call or as the default of `load`):

- ``"truncate"`` (default): the pair is cut to `max_length` tokens, the document losing tokens first
  (the query is cut only when it alone takes more than half the window), as sentence-transformers does.
- ``"maxp"``: the document is split into overlapping passages that each fit beside the query
  (`passage_stride` tokens of overlap) and its score is the best passage's score (MaxP, Dai & Callan 2019).
  Costs one model pair per passage; a document that fits is scored exactly as with "truncate".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.inference.backends import OnnxBackend, TorchBackend, measured_backend
from rankdistill.inference.rescore import rescore_top_k
from rankdistill.registry import UnknownNameError
from rankdistill.students.encoder import LONG_DOC_POLICIES, score_pairs
from rankdistill.students.hybrid import mix_from_metadata, normalise_first_stage, normalise_grouped
from rankdistill.students.metadata import METADATA_FILE, STUDENT_TYPES, read_metadata
from rankdistill.utils import split_sizes

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
# bf16 top-k candidates within this much of the k-th best bf16 score are rescored in fp32: about 4x the
# largest bf16-vs-fp32 logit difference measured on scifact BM25 top-100 (0.026), the bound needing 2x.
RESCORE_MARGIN = 0.1
RESCORE_TOP_K = 10  # the top-k kept exact when rerank returns every document


@dataclass
class RerankResult:
    """One ranked document: its id (given or its position as a string), its position in the input,
    its score, its rank (1 = best), the text when asked for, and an explanation when asked for."""

    id: str
    index: int
    score: float
    rank: int = 0
    text: str | None = None
    explanation: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "index": self.index, "score": self.score, "rank": self.rank}
        if self.text is not None:
            out["text"] = self.text
        if self.explanation is not None:
            out["explanation"] = self.explanation
        return out


# parameter names of a sequence-classification head, by architecture family (BERT and most encoders:
# classifier.*; RoBERTa: classifier.dense/out_proj; decoder LMs such as Qwen or Llama: score.*)
HEAD_PREFIXES = ("classifier.", "score.")


def require_ranking_head(path: Path) -> None:
    """Refuse a model folder that has no trained ranking head: transformers would attach a randomly
    initialised one (with a warning in a log) and every score would be noise. A bi-encoder such as
    all-MiniLM-L6-v2 is the usual case: it is a student's starting point, not a reranker."""
    import json

    config_file = path / "config.json"
    if not config_file.is_file():
        raise RankdistillError(f"{path}: no config.json; expected a trained student or cross-encoder folder")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RankdistillError(f"{config_file}: not valid JSON ({exc})") from None
    archs = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise RankdistillError(
            f"{path}: not a reranker: its config.json names architectures {archs or 'none'}, no "
            "*ForSequenceClassification head. Train a student from it (rankdistill train / run) or give a "
            "cross-encoder folder."
        )
    weights = path / "model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="np") as fh:
            keys = list(fh.keys())
        if not any(k.startswith(HEAD_PREFIXES) or ".classifier." in k or ".score." in k for k in keys):
            raise RankdistillError(
                f"{weights}: no ranking head weights (no classifier.* or score.* tensor among {len(keys)}); "
                "the head would be random. Train a student from this model first."
            )


def _doc_text(doc: Any) -> str:
    """A document given as a string, a `Document`, or a mapping with 'text' (and optionally 'title')."""
    if isinstance(doc, str):
        return doc
    full = getattr(doc, "full_text", None)
    if isinstance(full, str):
        return full
    if isinstance(doc, dict):
        text, title = doc.get("text") or "", doc.get("title") or ""
        return f"{title} {text}" if title and text else (title or text)
    raise TypeError(f"a document must be a str, a Document or a dict with 'text'; got {type(doc).__name__}")


def _doc_scores(docs: Sequence[Any]) -> list[float] | None:
    """The first-stage scores documents carry (a dict's 'score', a `Document`'s `score`), None unless
    every document has one."""
    out = []
    for d in docs:
        value = d.get("score") if isinstance(d, dict) else getattr(d, "score", None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        out.append(float(value))
    return out


def _doc_id(doc: Any, index: int) -> str:
    if isinstance(doc, dict) and doc.get("id") is not None:
        return str(doc["id"])
    doc_id = getattr(doc, "id", None)
    return str(doc_id) if doc_id is not None else str(index)


class Reranker:
    """Rank documents for a query with a trained student or any HF cross-encoder folder.

    >>> reranker = Reranker.load("runs/scifact/student")
    >>> reranker.rerank("what causes scurvy", ["Vitamin C deficiency ...", "Tides are ..."], top_k=1)
    [RerankResult(id='0', index=0, score=7.21, rank=1, ...)]
    """

    student_type = "encoder"
    rescore_backend: Any = None  # a student run through its own model never rescores
    first_stage: Any = None  # a hybrid student's FirstStageMix (students.hybrid); only encoders have one
    #: whether `explain` runs the model (generated reasoning) rather than matching terms (microseconds)
    explains_with_model = False

    def __init__(
        self,
        path: str,
        tokenizer: Any,
        backend: Any,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        long_docs: str = "truncate",
        passage_stride: int = 64,
        config: dict[str, Any] | None = None,
        rescore_backend: Any = None,
        rescore_margin: float = RESCORE_MARGIN,
        rescore_top_k: int = RESCORE_TOP_K,
    ):
        if long_docs not in LONG_DOC_POLICIES:
            raise ValueError(f"long_docs must be one of {LONG_DOC_POLICIES}, got {long_docs!r}")
        self.path = path
        self.tokenizer = tokenizer
        self.backend = backend
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.long_docs = long_docs
        self.passage_stride = int(passage_stride)
        self.config = config or {}
        self.num_labels = backend.num_labels
        if self.num_labels not in (1, 2):
            raise RankdistillError(
                f"{path}: the model has {self.num_labels} outputs; a reranker needs 1 (a relevance logit) "
                "or 2 (false/true logits, InRanker style)"
            )
        if rescore_margin < 0 or rescore_top_k < 1:
            raise ValueError(
                f"rescore_margin must be >= 0 and rescore_top_k >= 1; got {rescore_margin}, {rescore_top_k}"
            )
        # the fp32 copy that makes rerank's top-k exact (None: rerank uses the main backend only)
        self.rescore_backend = rescore_backend
        self.rescore_margin = float(rescore_margin)
        self.rescore_top_k = int(rescore_top_k)
        # a hybrid student (students.hybrid): its score adds weight * the normalised first-stage score
        self.first_stage = mix_from_metadata(self.config, Path(str(path)) / METADATA_FILE)
        # running totals, for benchmarks: pairs through bf16 + rescoring, how many of them were rescored,
        # margin widenings, and pairs of requests small enough to go to fp32 directly
        self.rescore_stats = {"pairs": 0, "rescored": 0, "widened": 0, "fp32_only": 0}

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        backend: str = "auto",
        device: Any = "auto",
        dtype: str | None = "auto",
        threads: int | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        long_docs: str = "truncate",
        passage_stride: int = 64,
        rescore: bool | None = None,
        rescore_margin: float = RESCORE_MARGIN,
        rescore_top_k: int = RESCORE_TOP_K,
    ) -> Reranker:
        """Load a student folder (its type, e.g. encoder or decoder, read from `rankdistill.json` and
        looked up in `STUDENT_TYPES`) or an HF cross-encoder folder / hub name.

        backend: "torch", "onnx", "onnx-int8", or "auto" (the fastest backend measured by
        `rankdistill export --onnx` for this folder, torch when none was exported or off the CPU).
        device: "auto" (a CUDA GPU when one is visible, else MPS, else the CPU), "cpu", "cuda", "cuda:N",
        "mps" or a `torch.device`; one that is not there is an error (`rankdistill.hardware.resolve_device`).
        dtype: "auto" picks bf16 on CPUs with native bf16 (AVX512-BF16/AMX) and on GPUs with native bf16,
        fp16 on older GPUs, fp32 otherwise.
        threads: intra-op threads for torch / ONNX Runtime (default: the library's own default).
        rescore: keep an fp32 copy of the weights and rescore `rerank`'s possible top-k with it, so the
        top-k order and scores equal fp32's (see the module docstring). None (default): on when the torch
        backend runs in bf16/fp16 because dtype was "auto"; True: on for any reduced precision.
        rescore_margin / rescore_top_k: the bf16 score margin below the k-th best that is rescored, and the
        k kept exact when `rerank` is called without `top_k`.
        """
        from rankdistill.hardware import resolve_device
        from rankdistill.models import resolve_model

        device = resolve_device(device)
        path = resolve_model(path)
        config = read_metadata(path) if Path(path).is_dir() else {}
        student_type = config.get("student_type", "encoder")
        try:
            student = STUDENT_TYPES.entry(student_type)
        except UnknownNameError as exc:
            raise RankdistillError(f"{Path(path) / METADATA_FILE}: {exc}") from None
        if not student.info.get("cross_encoder"):
            return StudentReranker.load(
                path,
                student_type=student.name,
                config=config,
                dtype=dtype,
                threads=threads,
                batch_size=batch_size,
                device=device,
            )
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if Path(path).is_dir():
            require_ranking_head(Path(path))
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        if not getattr(tokenizer, "is_fast", False):
            log.warning("%s has no fast tokenizer; tokenisation will be slow", path)
        if backend == "auto":
            backend = measured_backend(path, device)
        rescorer = None
        if backend == "torch":
            impl = TorchBackend(path, device, dtype)
            reduced = impl.dtype != impl.torch.float32
            if rescore is None:
                rescore = reduced and dtype in (None, "auto")
            if rescore and reduced:
                rescorer = TorchBackend(path, device, "fp32")
        else:
            impl = OnnxBackend.from_model_dir(
                path, int8=backend == "onnx-int8", threads=threads, device=device
            )
        if max_length is None:
            max_length = config.get("max_length") or _model_max_length(tokenizer, impl)
        return cls(
            path,
            tokenizer,
            impl,
            max_length=max_length,
            batch_size=batch_size,
            long_docs=long_docs,
            passage_stride=passage_stride,
            config=config,
            rescore_backend=rescorer,
            rescore_margin=rescore_margin,
            rescore_top_k=rescore_top_k,
        )

    def info(self) -> dict[str, Any]:
        """What runs: the model folder, backend, dtype, threads, limits (the server reports this)."""
        import torch

        return {
            "model": str(self.path),
            "student_type": self.student_type,
            "backend": self.backend.name,
            "device": str(getattr(self.backend, "device", "cpu")),
            "dtype": getattr(self.backend, "dtype_name", None),
            "threads": getattr(self.backend, "threads", None) or torch.get_num_threads(),
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "long_docs": self.long_docs,
            "num_labels": self.num_labels,
            "first_stage": self.first_stage.metadata() if self.first_stage is not None else None,
            "rescore": (
                {"dtype": "float32", "margin": self.rescore_margin, "top_k": self.rescore_top_k}
                if self.rescore_backend is not None
                else None
            ),
        }

    # ---------------------------------------------------------------- scoring
    def score(
        self,
        pairs: Sequence[tuple[str, Any]],
        *,
        long_docs: str | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
        exact: bool = False,
        first_stage: Sequence[float] | None = None,
    ) -> list[float]:
        """Relevance score of each (query, document) pair, in input order, from the main backend (bf16
        where that was chosen: no fp32 rescoring here, use `rerank` for an exact top-k). `exact=True`
        scores with the fp32 copy instead when the reranker keeps one. A hybrid student needs
        `first_stage`: each pair's first-stage score, normalised per query over the pairs of that query."""
        extra = self.first_stage_terms([q for q, _ in pairs], first_stage)  # grouped by query text
        backend = self.rescore_backend if exact and self.rescore_backend is not None else self.backend
        scores = self._score_with(backend, pairs, long_docs, batch_size, show_progress)
        return scores if extra is None else [s + e for s, e in zip(scores, extra, strict=True)]

    def first_stage_terms(
        self, queries: Sequence[str], first_stage: Sequence[float] | None, sizes: Sequence[int] | None = None
    ) -> list[float] | None:
        """What a hybrid student adds to each pair's encoder score (None for a plain student). `sizes`:
        consecutive pairs normalised together (one request each); None groups pairs by query text."""
        if self.first_stage is None:
            if first_stage is not None:
                log.debug("%s is not hybrid: first-stage scores ignored", self.path)
            return None
        if first_stage is None:
            raise RankdistillError(
                f"{self.path} is a hybrid student: its score adds {self.first_stage.metadata()['weight']:.3g} "
                "x the normalised first-stage score, so each document needs its first-stage (e.g. BM25) "
                "score: pass first_stage=[...] (one per document), or `score` in each document dict"
            )
        values = [float(x) for x in first_stage]
        if len(values) != len(queries):
            raise ValueError(f"got {len(values)} first-stage scores for {len(queries)} documents")
        weight, depth = float(self.first_stage.weight.detach()), self.first_stage.depth
        if sizes is None:
            feats = normalise_grouped(queries, values, depth)
        else:
            parts = split_sizes(values, list(sizes))
            feats = [f for part in parts for f in normalise_first_stage(part, depth)]
        return [weight * float(f) for f in feats]

    def _score_with(self, backend, pairs, long_docs, batch_size, show_progress) -> list[float]:
        # the encoder students' one scoring path (the training dev evaluator uses it too)
        scores = score_pairs(
            backend,
            self.tokenizer,
            [(q, _doc_text(d)) for q, d in pairs],
            max_length=self.max_length,
            batch_size=batch_size or self.batch_size,
            long_docs=long_docs or self.long_docs,
            passage_stride=self.passage_stride,
            show_progress=show_progress,
        )
        return scores.tolist()

    # ---------------------------------------------------------------- ranking
    def rerank(
        self,
        query: str,
        documents: Sequence[Any],
        *,
        top_k: int | None = None,
        ids: Sequence[str] | None = None,
        explain: bool = False,
        return_text: bool = False,
        long_docs: str | None = None,
        first_stage: Sequence[float] | None = None,
    ) -> list[RerankResult]:
        """Documents (strings, `Document`s or dicts with 'text' and optional 'id'/'title'/'score') best
        first. `first_stage`: each document's first-stage score, which a hybrid student needs (a dict's
        'score' is taken when this is not given)."""
        return self.rerank_many(
            [(query, documents)],
            top_k=top_k,
            ids=[ids] if ids is not None else None,
            explain=explain,
            return_text=return_text,
            long_docs=long_docs,
            first_stage=[first_stage] if first_stage is not None else None,
        )[0]

    def rerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[Any]]],
        *,
        top_k: int | None = None,
        ids: Sequence[Sequence[str] | None] | None = None,
        explain: bool = False,
        return_text: bool = False,
        long_docs: str | None = None,
        show_progress: bool = False,
        first_stage: Sequence[Sequence[float] | None] | None = None,
    ) -> list[list[RerankResult]]:
        """Rerank several (query, documents) requests in one scoring pass: pairs from all requests share
        batches, which is what makes the CLI and the server's micro-batching fast. `first_stage`: per
        request, its documents' first-stage scores (see `rerank`)."""
        per_request = self.score_requests(
            requests, top_k=top_k, long_docs=long_docs, show_progress=show_progress, first_stage=first_stage
        )
        results = []
        for r, (query, docs) in enumerate(requests):
            doc_scores = per_request[r]
            given = ids[r] if ids is not None else None
            if given is not None and len(given) != len(docs):
                raise ValueError(
                    f"got {len(given)} ids for {len(docs)} documents; expected one id per document"
                )
            order = sorted(range(len(docs)), key=lambda i: (-doc_scores[i], i))
            if top_k is not None:
                order = order[: max(0, int(top_k))]
            explanations = self.explain(query, [docs[i] for i in order]) if explain else [None] * len(order)
            results.append(
                [
                    RerankResult(
                        id=str(given[i]) if given is not None else _doc_id(docs[i], i),
                        index=i,
                        score=float(doc_scores[i]),
                        rank=rank,
                        text=_doc_text(docs[i]) if return_text else None,
                        explanation=explanations[rank - 1],
                    )
                    for rank, i in enumerate(order, 1)
                ]
            )
        return results

    def score_requests(
        self,
        requests: Sequence[tuple[str, Sequence[Any]]],
        *,
        top_k: int | Sequence[int | None] | None = None,
        long_docs: str | None = None,
        show_progress: bool = False,
        first_stage: Sequence[Sequence[float] | None] | None = None,
        offsets: Sequence[Sequence[float] | None] | None = None,
    ) -> list[list[float]]:
        """The scores of each request's documents, in their order, from one scoring pass over all pairs.

        With a rescoring backend (bf16 chosen automatically), every document that could be in its
        request's top-k gets its fp32 score (k = `top_k`, one for all or one per request; None means
        `rescore_top_k`), so rankings and top-k scores are those of the fp32 model. A hybrid student's
        first-stage term (per request: `first_stage`, else each document dict's 'score') is added before
        the top-k is chosen; `offsets`, per request, are such terms computed already (`first_stage_terms`,
        the server's micro-batcher computes them per whole request before splitting it)."""
        sizes = [len(docs) for _, docs in requests]
        if offsets is not None and self.first_stage is not None:
            if len(offsets) != len(requests) or any(
                o is None or len(o) != n for o, n in zip(offsets, sizes, strict=True)
            ):
                raise ValueError("offsets must give one value per document of every request")
            extra: list[float] | None = [float(x) for o in offsets for x in (o or [])]
        else:
            extra = self._request_terms(requests, first_stage)
        if self.rescore_backend is None:
            pairs = [(q, d) for q, docs in requests for d in docs]
            if extra is None:
                scores = self.score(pairs, long_docs=long_docs, show_progress=show_progress)
            else:
                scores = self._score_with(self.backend, pairs, long_docs, None, show_progress)
                scores = [s + e for s, e in zip(scores, extra, strict=True)]
        else:
            ks = list(top_k) if isinstance(top_k, Sequence) else [top_k] * len(requests)
            if len(ks) != len(requests):
                raise ValueError(f"got {len(ks)} top_k values for {len(requests)} requests")
            ks = [max(1, int(k)) if k is not None else self.rescore_top_k for k in ks]
            # a request with no more documents than its k is all top-k: fp32 only, no bf16 pass first
            small = [n <= k for n, k in zip(sizes, ks, strict=True)]
            big = [i for i, sm in enumerate(small) if not sm]
            per_pair = split_sizes(extra, sizes) if extra is not None else [[0.0] * n for n in sizes]
            exact_pairs = [(q, d) for (q, docs), sm in zip(requests, small, strict=True) if sm for d in docs]
            exact_extra = [e for r, sm in enumerate(small) if sm for e in per_pair[r]]
            big_pairs = [(requests[i][0], d) for i in big for d in requests[i][1]]
            big_extra = [e for i in big for e in per_pair[i]]
            exact = self._score_with(self.rescore_backend, exact_pairs, long_docs, None, show_progress)
            exact = [s + e for s, e in zip(exact, exact_extra, strict=True)]
            self.rescore_stats["fp32_only"] += len(exact_pairs)
            approx = self._score_with(self.backend, big_pairs, long_docs, None, show_progress)
            approx = [s + e for s, e in zip(approx, big_extra, strict=True)]
            if big_pairs:
                approx = self._rescore_top(
                    big_pairs, approx, [sizes[i] for i in big], [ks[i] for i in big], long_docs, big_extra
                )
            exact_it, approx_it = iter(exact), iter(approx)
            scores = [
                float(next(exact_it if sm else approx_it))
                for n, sm in zip(sizes, small, strict=True)
                for _ in range(n)
            ]
        return split_sizes(scores, sizes)

    def _request_terms(
        self,
        requests: Sequence[tuple[str, Sequence[Any]]],
        first_stage: Sequence[Sequence[float] | None] | None,
    ) -> list[float] | None:
        """A hybrid student's first-stage terms of every pair of `requests`, each request normalised on
        its own (`first_stage` per request, else each document dict's 'score'); None when not hybrid."""
        if self.first_stage is None:
            return None
        if first_stage is not None and len(first_stage) != len(requests):
            raise ValueError(f"got first-stage scores for {len(first_stage)} of {len(requests)} requests")
        values: list[float] = []
        for r, (_, docs) in enumerate(requests):
            given = first_stage[r] if first_stage is not None else None
            if given is None:
                given = _doc_scores(docs)
            if given is None:
                self.first_stage_terms([], None)  # raises the hybrid student's error
            values.extend(float(x) for x in given)
        queries = [q for q, docs in requests for _ in docs]
        return self.first_stage_terms(queries, values, [len(docs) for _, docs in requests])

    def _rescore_top(
        self,
        pairs: list,
        scores: list[float],
        sizes: list[int],
        ks: list[int],
        long_docs: str | None,
        extra: list[float],
    ) -> list[float]:
        """`scores` with the fp32 score (plus the pair's `extra` first-stage term) of every document that
        could be in its request's top-k."""

        def exact(idx: list[int]) -> list[float]:
            fp32 = self._score_with(self.rescore_backend, [pairs[i] for i in idx], long_docs, None, False)
            return [s + extra[i] for s, i in zip(fp32, idx, strict=True)]

        return rescore_top_k(scores, sizes, ks, exact, margin=self.rescore_margin, stats=self.rescore_stats)

    def explain(self, query: str, documents: Sequence[Any]) -> list[dict[str, Any]]:
        """Why each document may score as it does: for an encoder, the query terms it matches (exact and
        stemmed) with their character spans; cheap enough to compute for every result."""
        from rankdistill.inference.explain import explain_terms

        return [explain_terms(query, _doc_text(d)).to_dict() for d in documents]

    def close(self) -> None:
        """Release the model (the server calls this on shutdown)."""
        self.backend = None
        self.rescore_backend = None


def _model_max_length(tokenizer: Any, backend: Any) -> int:
    """The window the model was trained for: the tokenizer's limit, capped by the position embeddings."""
    limit = getattr(tokenizer, "model_max_length", None) or 512
    model = getattr(backend, "model", None)
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 512
    return int(min(limit, positions, 8192))


class StudentReranker(Reranker):
    """A student that is not a plain cross-encoder folder, run through the object its registered loader
    returns (see `STUDENT_TYPES`): the decoder student (`rankdistill.students.decoder.DecoderStudent`)
    scores with its ranking head and explains with the reasoning it generates."""

    @property
    def explains_with_model(self) -> bool:  # type: ignore[override]
        return callable(getattr(self.student, "explain", None))

    def __init__(
        self,
        path: str,
        student: Any,
        *,
        batch_size: int = 8,
        config: dict[str, Any] | None = None,
        student_type: str = "decoder",
    ):
        self.path = path
        self.student = student
        self.student_type = student_type
        self.batch_size = batch_size
        self.config = config or {}
        self.long_docs = "truncate"
        self.max_length = int(getattr(student, "max_length", 0) or self.config.get("max_length") or 0)
        self.num_labels = 1
        self.backend = _StudentBackendInfo(student_type)
        self.explain_tokens = 64  # most tokens of reasoning generated per document

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        config: dict[str, Any] | None = None,
        dtype: str | None = "auto",
        threads: int | None = None,
        batch_size: int = 16,
        student_type: str = "decoder",
        device: Any = "auto",
    ) -> StudentReranker:
        try:
            loader = STUDENT_TYPES.get(student_type)
        except UnknownNameError as exc:
            raise RankdistillError(f"{Path(path) / METADATA_FILE}: {exc}") from None
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        try:
            student = loader(path, dtype=dtype, device=device)
        except RankdistillError:
            raise
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise RankdistillError(
                f"{path}: cannot load the {student_type} student ({type(exc).__name__}: {exc})"
            ) from exc
        return cls(str(path), student, batch_size=batch_size, config=config, student_type=student_type)

    def score(self, pairs, *, long_docs=None, batch_size=None, show_progress=False) -> list[float]:
        if not pairs:
            return []
        pairs = [(q, _doc_text(d)) for q, d in pairs]
        return [
            float(s)
            for s in self.student.score(
                pairs, batch_size=batch_size or self.batch_size, show_progress=show_progress
            )
        ]

    def explain(self, query: str, documents: Sequence[Any]) -> list[dict[str, Any]]:
        """The reasoning the student generates for each document (term matches if it cannot explain)."""
        texts = [_doc_text(d) for d in documents]
        if not texts:
            return []
        if not callable(getattr(self.student, "explain", None)):
            return super().explain(query, documents)
        from rankdistill.students.decoder import parse_explanation

        reasons = [str(r) for r in self.student.explain(query, texts, max_new_tokens=self.explain_tokens)]
        # "relevance": the grade the text ends with ("... Relevance: 2"), None when it states none
        return [{"type": "reasoning", "reasoning": r, "relevance": parse_explanation(r)[1]} for r in reasons]

    def compare(self, query: str, document_a: Any, document_b: Any) -> dict[str, Any]:
        """Which of two documents the student says is more relevant ("A", "B", or None when its text
        names neither) and why: comparison reasoning, for a student trained on it (the decoder)."""
        if not callable(getattr(self.student, "compare", None)):
            raise RankdistillError(f"{self.path}: the {self.student_type} student does not write comparisons")
        out = self.student.compare(
            query, _doc_text(document_a), _doc_text(document_b), max_new_tokens=self.explain_tokens
        )
        return {"type": "comparison", **out.to_dict()}

    def info(self) -> dict[str, Any]:
        import torch

        weight = next(iter(self.student.parameters()), None) if hasattr(self.student, "parameters") else None
        return {
            "model": str(self.path),
            "student_type": self.student_type,
            "backend": "torch",
            "device": str(weight.device) if weight is not None else None,
            "dtype": str(weight.dtype).removeprefix("torch.") if weight is not None else None,
            "threads": torch.get_num_threads(),
            "batch_size": self.batch_size,
            "long_docs": self.long_docs,
            "max_length": self.max_length or None,
        }

    def close(self) -> None:
        close = getattr(self.student, "close", None)
        if callable(close):
            close()


#: the name it had when the decoder was the only student run through its own model
DecoderReranker = StudentReranker


class _StudentBackendInfo:
    """What `info()` and the server report as the backend of a student run through its own model."""

    def __init__(self, name: str):
        self.name = name
