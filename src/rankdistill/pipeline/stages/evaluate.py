"""Stage `evaluate`: BM25, teacher and student on the same candidates; effectiveness, throughput, size."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from rankdistill.data.types import Qrels, Queries, Run
from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import StageContext
from rankdistill.pipeline.stages.common import (
    _bm25,
    _dataset,
    _read_queries,
    _teacher,
    count_parameters,
    teacher_parameters,
)
from rankdistill.pipeline.stages.labels import label_with_backend

log = logging.getLogger(__name__)


# -- evaluate -----------------------------------------------------------------------------------------


def _timed_bm25(bm25, queries: Queries, run: Run) -> float:
    """BM25's pairs per second scoring exactly the candidates (same work unit as the rerankers)."""
    pairs = 0
    t0 = time.perf_counter()
    for qid in run.query_ids:
        ids = list(run[qid])
        bm25.score(queries[qid], ids)
        pairs += len(ids)
    return pairs / max(time.perf_counter() - t0, 1e-9)


def _with_tail(reranked: Run, first_stage: Run) -> Run:
    """The reranked documents of each query, then the first stage's documents it did not rerank, in
    first-stage order below them (a reranker of the top 30 of a top-100 keeps the other 70)."""
    out = Run({}, name=reranked.name)
    for qid in first_stage.query_ids:
        scores = dict(reranked.scores.get(qid, {}))
        floor = min(scores.values(), default=0.0)
        tail = [d for d, _ in first_stage.ranked(qid) if d not in scores]
        for i, d in enumerate(tail, 1):
            scores[d] = floor - i
        out.scores[qid] = scores
    return out


def run_evaluate(ctx: StageContext) -> dict[str, Any]:
    """BM25, the teacher and the student on the same candidates; metrics.json for the report."""
    from rankdistill.data import read_run, write_run
    from rankdistill.evaluation import evaluate, fuse_minmax
    from rankdistill.inference.reranker import Reranker
    from rankdistill.teachers import direct_scorer, run_candidates
    from rankdistill.teachers.base import labels_to_run

    cfg: PipelineConfig = ctx.config
    ev = cfg.evaluate
    ds = _dataset(ctx)
    queries = _read_queries(ctx.stage_dir("data") / "eval_queries.jsonl")
    # only the evaluation queries count (max_eval_queries may have sampled a subset of the split)
    qrels = ds.qrels(cfg.dataset.eval_split)
    qrels = Qrels({q: j for q, j in qrels.items() if q in queries}, name=qrels.name)
    candidates_run = read_run(ctx.stage_dir("bm25") / "eval_candidates.trec", name="bm25")
    candidates = run_candidates(queries, ds.corpus, candidates_run, depth=ev.depth)
    (ctx.out / "runs").mkdir(exist_ok=True)
    systems = []

    def add(name: str, role: str, run: Run, pps: float | None, params: int | None, description: str) -> None:
        if role != "baseline":
            run = _with_tail(run, candidates_run)
        res = evaluate(run, qrels, ev.measures, per_query=True)
        write_run(run, ctx.out / "runs" / f"{role}.trec", tag=role)
        systems.append(
            {
                "name": name,
                "role": role,
                "metrics": {m: res[m] for m in ev.measures},
                "per_query": res["per_query"],
                "pairs_per_second": pps,
                "parameters": params,
                "description": description,
            }
        )
        log.info("%s: %s", name, {m: round(res[m], 4) for m in ev.measures})

    add(
        "BM25",
        "baseline",
        candidates_run,
        _timed_bm25(_bm25(ctx), queries, candidates_run),
        0,
        f"bm25s (Lucene variant, k1={cfg.bm25.k1}, b={cfg.bm25.b}); its top {cfg.bm25.k} are every system's candidates",
    )

    if ev.teacher:
        teacher = _teacher(ctx)
        labels = label_with_backend(ctx, candidates)
        # throughput on a sample of whole queries, computed directly (the store would return cached labels)
        sample, seen = [], set()
        for c in candidates:
            if len(sample) >= ev.throughput_pairs and c.query_id not in seen:
                break
            seen.add(c.query_id)
            sample.append(c)
        t0 = time.perf_counter()
        teacher.label_candidates(sample, direct_scorer(show_progress=False))
        pps = len(sample) / max(time.perf_counter() - t0, 1e-9)
        spec = cfg.labels.teacher if isinstance(cfg.labels.teacher, str) else json.dumps(cfg.labels.teacher)
        add(
            f"teacher: {spec if len(spec) <= 40 else teacher.name}",
            "teacher",
            labels_to_run(labels, candidates, name="teacher"),
            pps,
            teacher_parameters(teacher),
            f"{spec}; throughput measured with its caches warm (e.g. document embeddings)",
        )

    student_dir = ctx.stage_dir("train") / "student"
    reranker = Reranker.load(student_dir, backend="torch", batch_size=ev.batch_size, threads=cfg.threads)
    pairs = [(c.query, c.doc) for c in candidates]
    reranker.score(pairs[: min(len(pairs), 64)])  # warm-up: first calls pay for allocation
    t0 = time.perf_counter()
    scores = reranker.score(pairs)
    pps = len(pairs) / max(time.perf_counter() - t0, 1e-9)
    student_run = Run({}, name="student")
    for c, s in zip(candidates, scores, strict=True):
        student_run.scores.setdefault(c.query_id, {})[c.doc_id] = float(s)
    info = reranker.info()
    add(
        f"student: {Path(str(cfg.train.student.get('base', 'student'))).name}",
        "student",
        student_run,
        pps,
        count_parameters(student_dir),
        f"backend {info.get('backend')}, dtype {info.get('dtype')}, "
        f"{info.get('threads')} threads, batch {ev.batch_size}, max length {info.get('max_length')}",
    )
    if ev.fuse_student is not None:
        w = ev.fuse_student
        # BM25's scores of the same (reranked) candidates
        reranked_bm25 = Run(
            {q: {d: candidates_run[q][d] for d in student_run[q]} for q in student_run.query_ids}
        )
        fused = fuse_minmax([student_run, reranked_bm25], [w, 1 - w], name="student+bm25")
        add(
            f"student + BM25 (min-max, {w:g} / {1 - w:g})",
            "other",
            fused,
            pps,
            count_parameters(student_dir),
            "the student's and BM25's scores of the reranked candidates, each min-max scaled per query, "
            "weighted and summed (the teacher's fusion, with the student in place of the bi-encoder)",
        )

    where = f"BM25 top-{cfg.bm25.k}" + (
        f", top {ev.depth} reranked" if ev.depth and ev.depth < cfg.bm25.k else ""
    )
    results = {
        "dataset": ds.name,
        "split": cfg.dataset.eval_split,
        "queries": len(queries),
        "candidates": where,
        "measures": ev.measures,
        "systems": systems,
    }
    from rankdistill.report import parse_results

    parse_results(results)  # the report stage must be able to read it
    (ctx.out / "metrics.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return {s["role"]: {**s["metrics"], "pairs_per_second": s["pairs_per_second"]} for s in systems}


# -- report -------------------------------------------------------------------------------------------
