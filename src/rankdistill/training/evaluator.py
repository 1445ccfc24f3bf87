"""nDCG@10 on a dev split during training: an evaluator that lives beside the model, not inside it."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from sentence_transformers.base.evaluation import BaseEvaluator

from rankdistill.data.types import Qrels, Run

log = logging.getLogger(__name__)


class RerankingEvaluator(BaseEvaluator):
    """Reranks fixed candidates of dev queries with the model and scores the run with
    `rankdistill.evaluation.evaluate` (ir_measures). Returns e.g. `{"dev_nDCG@10": ..., "dev_pairs_per_s": ...}`;
    the primary metric is the first measure.

    `candidates` is a first-stage Run (e.g. BM25 top-k of the dev queries); `documents` maps document id
    to the text the student sees (title + text).
    """

    def __init__(
        self,
        queries: Mapping[str, str],
        candidates: Run,
        documents: Mapping[str, str],
        qrels: Qrels,
        k: int = 100,
        measures: Sequence[str] = ("nDCG@10",),
        name: str = "dev",
        batch_size: int = 64,
    ):
        super().__init__()
        self.queries = {q: queries[q] for q in candidates.query_ids if q in queries and q in qrels}
        if not self.queries:
            raise ValueError("the dev split has no query with both candidates and relevance judgements")
        self.candidates = candidates.subset(self.queries).top_k(k)
        self.documents = documents
        # only the evaluated queries: ir_measures would count every other judged query as a zero
        self.qrels = Qrels({q: qrels[q] for q in self.queries}, name=qrels.name)
        self.measures = tuple(measures)
        self.name = name
        self.batch_size = batch_size
        self.primary_metric = f"{name}_{self.measures[0]}" if name else self.measures[0]
        self.history: list[dict[str, float]] = []

    def rerank(self, model) -> tuple[Run, float]:
        """The model's run over the candidates, and its throughput in pairs per second."""
        from rankdistill.students.encoder import student_scores

        keys = [(q, d) for q in self.candidates.query_ids for d, _ in self.candidates.ranked(q)]
        pairs = [(self.queries[q], self.documents[d]) for q, d in keys]
        start = time.perf_counter()
        # the Reranker's scoring path, so this dev metric and the report's test metric score alike
        first = [self.candidates[q][d] for q, d in keys]  # a hybrid student adds the first-stage term
        scores = student_scores(model, pairs, batch_size=self.batch_size, first_stage=first)
        elapsed = max(time.perf_counter() - start, 1e-9)
        run: dict[str, dict[str, float]] = {}
        for (q, d), s in zip(keys, scores, strict=True):
            run.setdefault(q, {})[d] = float(s)
        return Run(run, name="student"), len(pairs) / elapsed

    def __call__(
        self, model, output_path: str | None = None, epoch: float = -1, steps: int = -1
    ) -> dict[str, float]:
        from rankdistill.evaluation.metrics import evaluate

        run, pairs_per_s = self.rerank(model)
        metrics = {m: float(v) for m, v in evaluate(run, self.qrels, measures=self.measures).items()}
        metrics["pairs_per_s"] = pairs_per_s
        log.info("dev evaluation at step %s: %s", steps, metrics)
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        # the process's CPU-seconds so far (all threads; training and earlier evaluations included): the
        # x axis of a learning curve in compute rather than steps
        self.history.append(
            {
                "epoch": float(epoch),
                "step": int(steps),
                "process_cpu_s": round(time.process_time(), 1),
                **metrics,
            }
        )
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics
