"""The distillation experiment: does a small student rank nearly as well as its teacher, for less?

For one collection (configs/distill_<name>.yaml):
1. BM25 top-100 of the test queries (the candidates everyone reranks) -> BM25 nDCG@10.
2. The teacher (BM25 + all-MiniLM-L6-v2 cosine, per-query min-max fusion) reranks them -> teacher nDCG@10.
3. Training data, never from test queries: phase 1 = the collection's training queries, phase 2 =
   synthetic queries written from corpus documents (LLM-free pseudo-queries); each query's BM25 top-100
   labelled by the teacher through the label store (resumable), then sampled into (query, doc, label) rows.
4. Each student (6 layers with and without the Term Control Layer, 2 layers) trains on phase 1 then
   phase 2 (same rows and seed for all), then reranks the same test candidates.
Reports nDCG@10 and pairs/s of each on the same candidates, in benchmarks/results/<config name>.json.

    nice -n 10 .venv/bin/python benchmarks/distill.py configs/distill_scifact.yaml

Intermediate results live in `work_dir` (runs/distill/<name>): a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import yaml  # noqa: E402

from rankdistill.data.datasets import load_dataset  # noqa: E402
from rankdistill.data.trec import write_run  # noqa: E402
from rankdistill.data.types import Qrels, Queries, Run  # noqa: E402
from rankdistill.evaluation import evaluate, fuse_minmax  # noqa: E402
from rankdistill.hardware import cpu_supports_bf16  # noqa: E402
from rankdistill.retrieval.bm25 import BM25Retriever  # noqa: E402
from rankdistill.students import load_encoder_student, save_student, student_scores  # noqa: E402
from rankdistill.students.hybrid import mix_of  # noqa: E402
from rankdistill.teachers import BiEncoderTeacher, EnsembleTeacher, FirstStageTeacher, rerank_run  # noqa: E402
from rankdistill.teachers.querygen.pseudo import pseudo_queries  # noqa: E402
from rankdistill.training.data import pairs_from_teacher_run, read_pairs_jsonl, write_pairs_jsonl  # noqa: E402
from rankdistill.training.evaluator import RerankingEvaluator  # noqa: E402
from rankdistill.training.losses import build_loss  # noqa: E402
from rankdistill.training.trainer import (  # noqa: E402
    Phase,
    TrainSettings,
    refit_hybrid,
    start_hybrid,
    train_phases,
)
from rankdistill.utils import set_seed  # noqa: E402

log = logging.getLogger("distill")
REPO = Path(__file__).resolve().parent.parent
MEASURES = ("nDCG@10", "RR@10", "R@100")


def teacher(cache: bool = True) -> EnsembleTeacher:
    """rankdistill.teachers.BEST_OFFLINE ("bm25+minilm"): BM25 + MiniLM cosine, per-query min-max."""
    return EnsembleTeacher(
        [FirstStageTeacher("bm25"), BiEncoderTeacher("minilm", cache_dir=None if cache else False)]
    )


def label_with_store(queries: Queries, corpus, run: Run, store: Path, depth: int) -> Run:
    from rankdistill.labels.pointwise import label_run

    return label_run(teacher(), queries, corpus, run, depth=depth, store=store)


def rerank_student(model, queries, run: Run, corpus, batch_size: int) -> tuple[Run, float]:
    keys = [(q, d) for q in run.query_ids for d, _ in run.ranked(q)]
    pairs = [(queries[q], corpus[d].full_text) for q, d in keys]
    first = [run[q][d] for q, d in keys]  # BM25's scores: a hybrid student adds them (students.hybrid)
    start = time.perf_counter()
    scores = student_scores(
        model, pairs, batch_size=batch_size, show_progress=sys.stderr.isatty(), first_stage=first
    )
    elapsed = time.perf_counter() - start
    out: dict[str, dict[str, float]] = {}
    for (q, d), s in zip(keys, scores, strict=True):
        out.setdefault(q, {})[d] = float(s)
    return Run(out, name="student"), len(pairs) / elapsed


def refit_after(
    res: dict, spec: dict, rows: list, folder: Path, candidates: Run, bm25_run: Run, qrels, seed: int
) -> dict:
    """`refit_hybrid` on a saved hybrid student, its test run shifted to the refitted weight."""
    from rankdistill.data.trec import read_run
    from rankdistill.students import load_student
    from rankdistill.students.metadata import read_metadata, write_metadata

    model = load_student(REPO / res["model_dir"], device="cpu")
    before, after = refit_hybrid(model, rows, build_loss(model, spec["losses"]), seed=seed)
    run = read_run(folder / "test.run")
    shifted = shift_weight(run, candidates, mix_of(model).depth, after - before, "student")
    write_run(shifted, folder / "test.run")
    meta = read_metadata(REPO / res["model_dir"])
    meta["first_stage"] = mix_of(model).metadata()
    write_metadata(REPO / res["model_dir"], meta)
    out = {
        **res,
        **metrics(shifted, qrels),
        "fused_with_bm25": metrics(fuse_minmax([shifted, bm25_run]), qrels),
    }
    out["hybrid"] = mix_of(model).metadata()
    out["hybrid_refit"] = [before, after]
    out["before_refit"] = {k: res[k] for k in MEASURES}
    return out


def shift_weight(run: Run, candidates: Run, depth: int, delta: float, name: str) -> Run:
    """A hybrid student's test run as it would score with its first-stage weight changed by `delta`:
    each reranked pair moves by delta x its feature (the encoder's part is unchanged)."""
    from rankdistill.students.hybrid import normalise_grouped

    keys = [(q, d) for q in candidates.query_ids for d in candidates[q]]
    feats = normalise_grouped([q for q, _ in keys], [candidates[q][d] for q, d in keys], depth)
    shifted = Run({q: dict(run[q]) for q in run.query_ids}, name=name)
    for (q, d), f in zip(keys, feats, strict=True):
        shifted.scores[q][d] += delta * float(f)
    return shifted


def hybrid_variants(res: dict, folder: Path, candidates: Run, qrels) -> dict:
    """A hybrid student's test metrics with its encoder alone (weight 0) and with the weight training left
    (before the refit), from its test run: the weight only adds weight x feature to each reranked pair."""
    from rankdistill.data.trec import read_run

    before, after = res["hybrid_refit"]
    run = read_run(folder / "test.run")
    out = {}
    for name, weight in (("encoder_alone", 0.0), ("before_refit", before)):
        shifted = shift_weight(run, candidates, int(res["hybrid"]["depth"]), weight - after, name)
        out[name] = {**metrics(shifted, qrels), "weight": weight}
    return out


def metrics(run: Run, qrels) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in evaluate(run, qrels, measures=MEASURES).items()}


def cached_json(path: Path, make):
    if path.exists():
        return json.loads(path.read_text())
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1) + "\n")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--only", nargs="*", help="train/evaluate only these students")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(args.config.read_text())
    seed = int(cfg.get("seed", 42))
    set_seed(seed)
    name = cfg["dataset"]
    work = REPO / cfg.get("work_dir", f"runs/distill/{name}")
    work.mkdir(parents=True, exist_ok=True)
    out_path = REPO / "benchmarks" / "results" / f"{args.config.stem}.json"  # e.g. distill_scifact.json
    k = int(cfg.get("candidates_k", 100))
    train_k = int(cfg.get("train_candidates_k", k))  # candidates the teacher labels per training query
    test_cfg = cfg.get("test", {})

    data_dir = (
        os.environ.get("RANKDISTILL_DATA_DIR") or cfg.get("data_dir") or REPO.parent / "shared" / "data"
    )
    ds = load_dataset(name, data_dir=data_dir, download=False)
    corpus = ds.corpus
    bm25 = BM25Retriever.from_corpus(corpus)

    # 1. test candidates and BM25
    test_q = ds.split_queries(test_cfg.get("split", "test"))
    qrels = ds.qrels(test_cfg.get("split", "test"))
    test_q = test_q.subset([q for q in test_q if q in qrels])
    if test_cfg.get("max_queries"):
        test_q = test_q.subset(
            sorted(random.Random(seed).sample(sorted(test_q), int(test_cfg["max_queries"])))
        )
    # only the evaluated queries: ir_measures would count every other judged query as a zero
    qrels = Qrels({q: qrels[q] for q in test_q}, name=qrels.name)
    t0 = time.perf_counter()
    bm25_run = bm25.retrieve(test_q, k=k)
    bm25_s = time.perf_counter() - t0
    n_pairs = sum(len(v) for v in bm25_run.scores.values())
    result: dict = {
        "dataset": name,
        "config": cfg,
        "test_queries": len(test_q),
        "candidates": n_pairs,
        "threads": args.threads,
        "bf16": cpu_supports_bf16(),
        "bm25": {**metrics(bm25_run, qrels), "pairs_per_s": round(n_pairs / bm25_s, 1)},
    }
    log.info("BM25 %s", result["bm25"])

    # 2. teacher on the same candidates (embeddings in memory only, so the timing includes encoding)
    # the teacher and students rerank BM25's top `rerank_depth` of the top k, the rest keep BM25's order
    # below them (the quick start's protocol: R@100 equal for all, the CPU spent where nDCG@10 is decided)
    depth = int(test_cfg.get("rerank_depth", k))
    rerank_cands = bm25_run.top_k(depth)

    def with_tail(run: Run) -> Run:
        if depth >= k:
            return run
        out = Run({q: dict(run[q]) for q in run.query_ids}, name=run.name)
        for q in bm25_run.query_ids:
            low = min(out.scores.get(q, {0: 0.0}).values())
            for i, (d, _) in enumerate(bm25_run.ranked(q)[depth:], 1):
                out.scores.setdefault(q, {})[d] = low - i
        return out

    def teacher_eval():
        trun = with_tail(
            rerank_run(teacher(), test_q, corpus, rerank_cands, depth=depth, show_progress=False)
        )
        # speed without cached embeddings (every document encoded) on the first queries' candidates
        sample = bm25_run.subset(bm25_run.query_ids[: int(test_cfg.get("speed_queries", 10))])
        cold = teacher(cache=False)
        _ = cold.members[1].model  # load the weights before timing, as the students' timing excludes loading
        start = time.perf_counter()
        rerank_run(cold, test_q, corpus, sample, depth=k, show_progress=False)
        secs = time.perf_counter() - start
        n = sum(len(v) for v in sample.scores.values())
        return {**metrics(trun, qrels), "pairs_per_s": round(n / secs, 1), "name": "bm25+minilm"}

    suffix = f"_top{depth}" if depth < k else ""
    result["teacher"] = cached_json(work / f"teacher_test_{len(test_q)}{suffix}.json", teacher_eval)
    result["rerank_depth"] = depth
    log.info("teacher %s", result["teacher"])

    # 3. training rows: phase 1 (training queries), phase 2 (pseudo-queries from documents)
    # a config may share another's label store (same teacher, same candidates: same labels)
    store = REPO / cfg["label_store"] if cfg.get("label_store") else work / "labels.sqlite"
    p1, p2 = cfg["phase1"], cfg["phase2"]
    rows1_path, rows2_path = work / "phase1_rows.jsonl", work / "phase2_rows.jsonl"

    def has_feature(path: Path) -> bool:  # rows written before hybrid students lack the first-stage feature
        return path.exists() and "first_stage" in json.loads(path.open().readline())

    if not has_feature(rows1_path):
        train_q = ds.split_queries(p1.get("split", "train"))
        qids = sorted(q for q in train_q if q not in test_q)
        qids = sorted(random.Random(seed).sample(qids, min(len(qids), int(p1["max_queries"]))))
        train_q = train_q.subset(qids)
        first = bm25.retrieve(train_q, k=train_k)
        trun = label_with_store(train_q, corpus, first, store, train_k)
        docs = {d: corpus[d].full_text for q in trun.query_ids for d in trun[q]}
        rows = pairs_from_teacher_run(
            train_q, trun, docs, p1.get("per_query", 8), p1.get("top", 3), seed=seed, first_stage=first
        )
        write_pairs_jsonl(rows1_path, rows)
    if not has_feature(rows2_path):
        test_texts = {t.strip().lower() for t in test_q.values()}
        doc_ids = sorted(
            random.Random(seed + 1).sample(sorted(corpus), min(len(corpus), int(p2["max_docs"]) * 2))
        )
        synth = pseudo_queries([corpus[d] for d in doc_ids], p2.get("method", "sentence"), seed=seed)
        synth = [s for s in synth if s.text.strip().lower() not in test_texts][: int(p2["max_docs"])]
        synth_q = Queries({s.query_id: s.text for s in synth}, name=f"{name}-pseudo")
        first = bm25.retrieve(synth_q, k=train_k)
        srun = label_with_store(synth_q, corpus, first, store, train_k)
        docs = {d: corpus[d].full_text for q in srun.query_ids for d in srun[q]}
        rows = pairs_from_teacher_run(
            synth_q, srun, docs, p2.get("per_query", 8), p2.get("top", 3), seed=seed, first_stage=first
        )
        write_pairs_jsonl(rows2_path, rows)
    rows1, rows2 = read_pairs_jsonl(rows1_path), read_pairs_jsonl(rows2_path)
    # the rows are shuffled when written: a cap keeps a random subset, the same for every student
    rows1, rows2 = rows1[: p1.get("train_rows")], rows2[: p2.get("train_rows")]
    result["training_rows"] = {"phase1": len(rows1), "phase2": len(rows2)}

    # dev: judged training queries left out of phase 1 (nDCG@10 during training)
    dev_cfg = cfg.get("dev")
    evaluator = None
    if dev_cfg:
        dq = ds.split_queries(dev_cfg.get("split", "train"))
        dqrels = ds.qrels(dev_cfg.get("split", "train"))
        used = {r["query"] for r in rows1}
        dev_ids = sorted(q for q in dq if q in dqrels and dq[q] not in used and q not in test_q)
        dev_ids = sorted(
            random.Random(seed + 2).sample(dev_ids, min(len(dev_ids), int(dev_cfg["max_queries"])))
        )
        dq = dq.subset(dev_ids)
        drun = bm25.retrieve(dq, k=int(dev_cfg.get("k", 20)))
        ddocs = {d: corpus[d].full_text for q in drun.query_ids for d in drun[q]}
        evaluator = RerankingEvaluator(dq, drun, ddocs, dqrels, k=int(dev_cfg.get("k", 20)), name="dev")
        result["dev"] = {"queries": len(dq), "k": int(dev_cfg.get("k", 20)), "bm25": metrics(drun, dqrels)}

    # 4. students
    tcfg = cfg.get("training", {})
    result["students"] = {}
    for spec in cfg["students"]:
        sname = spec["name"]
        res_path = work / "students" / sname / "result.json"
        if args.only and sname not in args.only:
            if res_path.exists():
                result["students"][sname] = json.loads(res_path.read_text())
            continue

        def train_and_eval(spec=spec, sname=sname):
            set_seed(seed)
            model = load_encoder_student(
                spec.get("base", "minilm"),
                spec.get("num_layers"),
                max_length=int(tcfg.get("max_length", 256)),
                seed=seed,
                layers=spec.get("layers"),
            )
            if spec.get("hybrid"):  # score = encoder logit + w * min-max BM25 over the labelled depth
                start_hybrid(
                    model,
                    rows1 + rows2,
                    build_loss(model, spec["losses"]),
                    depth=train_k,
                    start=spec.get("hybrid_start", "zero"),
                )
            settings = TrainSettings(
                epochs=float(tcfg.get("epochs", 1)),
                batch_size=int(tcfg.get("batch_size", 16)),
                learning_rate=float(tcfg.get("learning_rate", 5e-5)),
                warmup_ratio=float(tcfg.get("warmup_ratio", 0.1)),
                seed=seed,
                logging_steps=int(tcfg.get("logging_steps", 20)),
                save_steps=int(tcfg.get("save_steps", 100)),
                eval_steps=int(tcfg["eval_steps"]) if tcfg.get("eval_steps") else None,
            )
            start, cpu_start = time.perf_counter(), time.process_time()
            summary = train_phases(
                model,
                lambda m: build_loss(m, spec["losses"]),
                [
                    Phase(
                        "phase1", rows1, replace(settings, epochs=float(p1.get("epochs", settings.epochs)))
                    ),
                    Phase(
                        "phase2", rows2, replace(settings, epochs=float(p2.get("epochs", settings.epochs)))
                    ),
                ],
                work / "students" / sname,
                settings,
                evaluator=evaluator,
            )
            refit = None
            if spec.get("hybrid") and spec.get("refit", True):
                refit = refit_hybrid(model, rows1 + rows2, build_loss(model, spec["losses"]), seed=seed)
            train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
            folder = save_student(
                model, work / "students" / sname / "final", {"losses": spec["losses"], "seed": seed}
            )
            model.eval()
            if cpu_supports_bf16():
                model.to(torch.bfloat16)  # inference in bf16 where the CPU has it, like the teacher
            model.max_seq_length = int(test_cfg.get("max_length", tcfg.get("max_length", 256)))
            srun, pps = rerank_student(
                model, test_q, rerank_cands, corpus, int(test_cfg.get("batch_size", 64))
            )
            srun = with_tail(srun)
            write_run(srun, work / "students" / sname / "test.run")
            return {
                **metrics(srun, qrels),
                # the student's and BM25's scores fused per query (min-max, equal weights): the same fusion
                # as the teacher's, here over the student instead of the bi-encoder; costs no extra inference
                "fused_with_bm25": metrics(fuse_minmax([srun, bm25_run]), qrels),
                "pairs_per_s": round(pps, 1),
                "num_layers": model.model.config.num_hidden_layers,
                "parameters": sum(p.numel() for p in model.parameters()),
                "losses": spec["losses"],
                "hybrid": (mix_of(model).metadata() if mix_of(model) is not None else None),
                "hybrid_refit": refit,
                "train_pairs": len(rows1) + len(rows2),
                "train_seconds": round(train_s, 1),
                # CPU-seconds of the process (all threads) while training, dev evaluations included, and
                # where the training began on the dev history's process_cpu_s clock (learning curves)
                "train_cpu_seconds": round(train_cpu_s, 1),
                "train_cpu_start": round(cpu_start, 1),
                "batch_size": settings.batch_size,
                "train_steps": [p["steps"] for p in summary["phases"]],
                "dev_history": evaluator.history if evaluator is not None else None,
                "model_dir": str(folder.relative_to(REPO)),
            }

        result["students"][sname] = cached_json(res_path, train_and_eval)
        if spec.get("hybrid") and spec.get("refit", True) and "hybrid_refit" not in result["students"][sname]:
            # a hybrid student trained before the refit existed: refit its weight now and shift its test
            # scores by (new - old) x feature, which equals rescoring (the encoder is unchanged)
            result["students"][sname] = refit_after(
                result["students"][sname],
                spec,
                rows1 + rows2,
                work / "students" / sname,
                rerank_cands,
                bm25_run,
                qrels,
                seed,
            )
            res_path.write_text(json.dumps(result["students"][sname], indent=1) + "\n")
        student = result["students"][sname]
        if student.get("hybrid_refit") and "encoder_alone" not in student:
            student.update(hybrid_variants(student, work / "students" / sname, rerank_cands, qrels))
            res_path.write_text(json.dumps(student, indent=1) + "\n")
        log.info("student %s %s", sname, result["students"][sname])

    # targets of issue 5
    t_ndcg, b_ndcg = result["teacher"]["nDCG@10"], result["bm25"]["nDCG@10"]
    for s in result["students"].values():
        s["pct_of_teacher"] = round(100 * s["nDCG@10"] / t_ndcg, 1)
        s["points_over_bm25"] = round(100 * (s["nDCG@10"] - b_ndcg), 1)
    big, small = cfg.get("compare", {}).get("six"), cfg.get("compare", {}).get("two")
    if big in result["students"] and small in result["students"]:
        b, s = result["students"][big], result["students"][small]
        result["two_layer_vs_six"] = {
            "pct_ndcg": round(100 * s["nDCG@10"] / b["nDCG@10"], 1),
            "speedup": round(s["pairs_per_s"] / b["pairs_per_s"], 2),
        }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=1))


if __name__ == "__main__":
    main()
