"""Stage `evaluate`: BM25, teacher and student on the same candidates; effectiveness, throughput, size."""

from __future__ import annotations

import json
import logging
import random
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
    parameters_note,
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


#: how many explanations (and comparisons) of the evaluation candidates the decoder student writes
EXPLANATION_SAMPLE = 16


def explanation_measures(
    student: Any,
    candidates: list,
    run: Run,
    n: int = EXPLANATION_SAMPLE,
    seed: int = 0,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """Whether a decoder student's explanations can be used, on a seeded sample of `n` candidates and `n`
    pairs of candidates of one query: the share of explicit explanations that end with a verdict
    ("<reasoning> Relevance: <grade>"), the share of comparisons that name a document ("A. <why>"), and
    how often that named document is the one the student's own scores (`run`) put higher. Each kind is
    one batch of `n` generations (decoding on a CPU costs per step, not per row)."""
    from rankdistill.students.decoder import parse_explanation

    rng = random.Random(seed)
    # what it was trained to write, and room for the verdict after the reasoning
    tokens = max_new_tokens or student.student_config.max_reasoning_tokens + 8
    sample = rng.sample(candidates, min(n, len(candidates)))
    texts = student.explain_pairs(
        [(c.query, c.doc) for c in sample], max_new_tokens=tokens, batch_size=max(1, n)
    )
    parsed = [parse_explanation(t)[1] is not None for t in texts]
    by_query: dict[str, list] = {}
    for c in candidates:
        by_query.setdefault(c.query_id, []).append(c)
    several = sorted(q for q, cs in by_query.items() if len(cs) >= 2)
    triples, truth = [], []
    for _ in range(n if several else 0):
        a, b = rng.sample(by_query[rng.choice(several)], 2)
        triples.append((a.query, a.doc, b.doc))
        sa, sb = run[a.query_id][a.doc_id], run[b.query_id][b.doc_id]
        truth.append(None if sa == sb else ("A" if sa > sb else "B"))
    comparisons = student.compare_many(triples, max_new_tokens=tokens, batch_size=max(1, n))
    stated = [(c.better, t) for c, t in zip(comparisons, truth, strict=True) if c.better is not None]
    judged = [(b, t) for b, t in stated if t is not None]
    return {
        "sample": len(sample),
        "explicit_parsed": sum(parsed) / len(parsed) if parsed else None,
        "comparisons": len(comparisons),
        "comparison_parsed": len(stated) / len(comparisons) if comparisons else None,
        "comparison_agrees": sum(b == t for b, t in judged) / len(judged) if judged else None,
        "examples": {
            "explicit": [{"query": c.query, "text": t} for c, t in list(zip(sample, texts, strict=True))[:2]],
            "comparison": [
                {"query": q, "text": c.text}
                for (q, _, _), c in list(zip(triples, comparisons, strict=True))[:2]
            ],
        },
    }


def run_evaluate(ctx: StageContext) -> dict[str, Any]:
    """BM25, the teacher and the student on the same candidates; metrics.json for the report."""
    from rankdistill.data import read_run, write_run
    from rankdistill.evaluation import evaluate, fuse_minmax
    from rankdistill.hardware import resolve_device
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

    def add(
        name: str,
        role: str,
        run: Run,
        pps: float | None,
        params: int | None,
        description: str,
        **extra: Any,
    ) -> None:
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
                **extra,
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
        # cold: nothing kept from earlier work (document embeddings), the cost of labelling new documents
        cold = teacher.cold()
        pps_cold = pps
        if cold is not teacher:
            t0 = time.perf_counter()
            cold.label_candidates(sample, direct_scorer(show_progress=False))
            pps_cold = len(sample) / max(time.perf_counter() - t0, 1e-9)
        spec = cfg.labels.teacher if isinstance(cfg.labels.teacher, str) else json.dumps(cfg.labels.teacher)
        add(
            f"teacher: {spec if len(spec) <= 40 else teacher.name}",
            "teacher",
            labels_to_run(labels, candidates, name="teacher"),
            pps,
            teacher_parameters(teacher),
            f"{spec}; pairs/s measured with its caches warm (e.g. document embeddings) and cold "
            "(every document encoded again, LLM calls made)",
            parameters_note=parameters_note(teacher),
            pairs_per_second_cold=pps_cold,
        )

    student_dir = ctx.stage_dir("train") / "student"
    device = resolve_device(*cfg.evaluate_device)
    reranker = Reranker.load(
        student_dir, backend="torch", device=device, batch_size=ev.batch_size, threads=cfg.threads
    )
    pairs = [(c.query, c.doc) for c in candidates]
    # a hybrid student (students.hybrid) adds BM25's score: the candidates carry it
    first = {"first_stage": [c.first_stage for c in candidates]} if reranker.first_stage is not None else {}
    warm = min(len(pairs), 64)
    reranker.score(pairs[:warm], **{k: v[:warm] for k, v in first.items()})  # first calls pay for allocation
    t0 = time.perf_counter()
    scores = reranker.score(pairs, **first)
    pps = len(pairs) / max(time.perf_counter() - t0, 1e-9)
    student_run = Run({}, name="student")
    for c, s in zip(candidates, scores, strict=True):
        student_run.scores.setdefault(c.query_id, {})[c.doc_id] = float(s)
    info = reranker.info()
    model = getattr(reranker, "student", None)
    extra: dict[str, Any] = {}
    if callable(getattr(model, "compare", None)) and callable(getattr(model, "explain_pairs", None)):
        # a student that explains (the decoder): can its explanations be read, and do they agree with it?
        t0 = time.perf_counter()
        extra["explanations"] = explanation_measures(model, candidates, student_run, seed=cfg.seed)
        log.info("student explanations (%.1fs): %s", time.perf_counter() - t0, extra["explanations"])
    decoder = cfg.train.student.get("type") == "decoder"
    student_name = (
        cfg.train.student.get("backbone", "gemma3-270m") if decoder else cfg.train.student.get("base")
    )
    # a decoder saved as a LoRA adapter: its folder holds the adapter, the model it runs is the backbone too
    params = (
        model.num_parameters()
        if callable(getattr(model, "num_parameters", None))
        else count_parameters(student_dir)
    )
    add(
        f"student: {Path(str(student_name or 'student')).name}",
        "student",
        student_run,
        pps,
        params,
        f"backend {info.get('backend')} on {info.get('device')}, dtype {info.get('dtype')}, "
        f"{info.get('threads')} threads, batch {ev.batch_size}, max length {info.get('max_length')}",
        **extra,
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
            params,
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
    summary = {s["role"]: {**s["metrics"], "pairs_per_second": s["pairs_per_second"]} for s in systems}
    if "explanations" in extra:
        summary["student"]["explanations"] = {
            k: v for k, v in extra["explanations"].items() if k != "examples"
        }
    return summary


# -- report -------------------------------------------------------------------------------------------
