"""Decoder student (Gemma 3 270M + LoRA + ranking head): scoring speed against the MiniLM encoder student,
and what a small joint training run does to nDCG@10 on scifact. One run, one JSON.

1. Speed: the same real scifact pairs (test queries, BM25 top-k) scored by the MiniLM-L6 cross-encoder
   student and by the decoder student (bf16 weights, and fp32 weights under bf16 autocast), in
   alternating chunks, so load from other processes on the shared CPU falls on every model alike.
2. Effect of training: scifact *train* queries (their qrels are never read) get BM25 top-`depth`
   candidates, labelled by the best teacher that runs here without an LLM: BM25 + all-MiniLM-L6-v2
   cosine, per-query min-max fusion. The decoder student trains on groups of those candidates with
   ListNet (and the LM loss where reasoning labels exist: pass --reasoning-store with explicit
   reasoning labels of the same queries). nDCG@10 of BM25, the teacher, the untrained student (a random
   head) and the trained student on the same BM25 top-`depth` candidates of scifact test queries.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python benchmarks/decoder.py
    # JSON: benchmarks/results/decoder.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_DIR = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))


def _autocast(fn, *args, **kwargs):
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn(*args, **kwargs)


def speed(pairs, threads: int, batch_size: int, chunk: int, decoder_student, encoder) -> dict:
    """pairs/s of each scorer on the same pairs, chunks interleaved (rotating who goes first)."""
    import torch

    from rankdistill.students.encoder import student_scores

    torch.set_num_threads(threads)
    scorers = {
        "minilm-l6-encoder-fp32": lambda ps: student_scores(encoder, ps, batch_size=batch_size),
        "minilm-l6-encoder-bf16-autocast": lambda ps: _autocast(
            student_scores, encoder, ps, batch_size=batch_size
        ),
    }
    for dtype, dec in decoder_student.items():
        name = "decoder-gemma270m-" + ("bf16" if dtype == "bf16" else "fp32-autocast")
        scorers[name] = lambda ps, dec=dec: dec.score(ps, batch_size=batch_size)
    for fn in scorers.values():  # warm-up: first calls pay for kernel selection
        fn(pairs[:batch_size])
    seconds = dict.fromkeys(scorers, 0.0)
    names = list(scorers)
    for i, start in enumerate(range(0, len(pairs), chunk)):
        part = pairs[start : start + chunk]
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t0 = time.perf_counter()
            scorers[name](part)
            seconds[name] += time.perf_counter() - t0
    return {
        name: {"pairs": len(pairs), "seconds": round(s, 2), "pairs_per_s": round(len(pairs) / s, 2)}
        for name, s in seconds.items()
    }


def rerank(score_fn, queries, corpus, run, depth: int):
    from rankdistill.data.types import Run

    pairs, keys = [], []
    for qid in run.query_ids:
        if qid not in queries:
            continue
        for doc_id, _ in run.ranked(qid, depth):
            pairs.append((queries[qid], corpus[doc_id].full_text))
            keys.append((qid, doc_id))
    t0 = time.perf_counter()
    scores = score_fn(pairs)
    seconds = time.perf_counter() - t0
    out: dict[str, dict[str, float]] = {}
    for (qid, doc_id), s in zip(keys, scores, strict=True):
        out.setdefault(qid, {})[doc_id] = float(s)
    return Run(out, name="reranked"), len(pairs) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--train-queries", type=int, default=32)
    ap.add_argument("--test-queries", type=int, default=60)
    ap.add_argument("--depth", type=int, default=20, help="BM25 candidates reranked per test query")
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--head-lr", type=float, default=3e-3)
    ap.add_argument("--max-doc-tokens", type=int, default=128)
    ap.add_argument("--speed-pairs", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--speed-fp32", action="store_true", help="also time fp32 weights under bf16 autocast")
    ap.add_argument("--reasoning-store", default=None, help="a LabelStore with explicit reasoning labels")
    ap.add_argument(
        "--reasoning-llm",
        default=None,
        help="write explicit reasoning for the top --reasoning-per-query candidates of each training query "
        "with this LLM (e.g. llamacpp:gemma3-270m) as LM targets",
    )
    ap.add_argument("--reasoning-per-query", type=int, default=2)
    ap.add_argument("--lm-weight", type=float, default=0.5)
    ap.add_argument("--out", default=str(HERE / "results" / "decoder.json"))
    args = ap.parse_args()

    import torch

    from rankdistill.data.datasets import load_dataset
    from rankdistill.data.types import Qrels
    from rankdistill.evaluation.metrics import evaluate
    from rankdistill.retrieval.bm25 import BM25Retriever
    from rankdistill.students.decoder import DecoderStudent
    from rankdistill.students.encoder import load_encoder_student
    from rankdistill.teachers.base import rerank_run
    from rankdistill.teachers.encoders import BiEncoderTeacher
    from rankdistill.teachers.ensemble import EnsembleTeacher, FirstStageTeacher
    from rankdistill.training.decoder import examples_from_scores, train_decoder
    from rankdistill.training.losses.joint import JointRankLMLoss
    from rankdistill.utils import set_seed

    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    result: dict = {
        "benchmark": "decoder",
        "command": " ".join(["benchmarks/decoder.py", *sys.argv[1:]]),
        "settings": vars(args),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "threads": args.threads},
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def dump(stage: str) -> None:  # after each stage, so a run cut short keeps what it finished
        result["completed_stage"] = stage
        out_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    ds = load_dataset(args.dataset, data_dir=DATA_DIR)
    corpus = ds.corpus
    bm25 = BM25Retriever.from_corpus(corpus)

    rng = random.Random(args.seed)
    test_all = ds.split_queries("test")
    test_ids = sorted(test_all)
    rng.shuffle(test_ids)
    test_q = test_all.subset(test_ids[: args.test_queries])
    qrels = ds.qrels("test", on_unknown_doc="ignore")
    test_run = bm25.retrieve(test_q, k=args.depth)

    work = Path(tempfile.mkdtemp(prefix="rankdistill-decoder-bench-"))
    student = DecoderStudent.from_backbone("gemma3-270m", seed=args.seed, max_doc_tokens=args.max_doc_tokens)
    student.save(work / "untrained")
    encoder = load_encoder_student(seed=args.seed, max_length=student.max_length)

    # ---- 1. speed (untrained weights: the cost of a forward pass does not depend on what was learnt)
    speed_pairs = [
        (test_q[q], corpus[d].full_text) for q in test_run.query_ids for d, _ in test_run.ranked(q, 8)
    ]
    speed_pairs = speed_pairs[: args.speed_pairs]
    dtypes = ["bf16"] + (["fp32"] if args.speed_fp32 else [])
    students = {d: DecoderStudent.load(work / "untrained", dtype=d) for d in dtypes}
    result["speed"] = speed(
        speed_pairs, args.threads, args.batch_size, args.batch_size * 2, students, encoder
    )
    result["speed"]["decoder_max_prompt_tokens"] = student.max_length
    result["speed"]["encoder_max_length"] = student.max_length
    result["model_size"] = {
        "decoder_parameters": student.num_parameters(),
        "decoder_trainable_parameters": student.num_parameters(only_trainable=True),
        "encoder_parameters": sum(p.numel() for p in encoder.model.parameters()),
    }
    del students
    print(json.dumps(result["speed"], indent=1), flush=True)
    dump("speed")

    # ---- 2. nDCG@10 on the same candidates
    # judgements of the sampled test queries only: a judged query the run does not answer counts as 0
    judged = Qrels({q: qrels.judgements[q] for q in test_q if q in qrels.judgements})

    def ndcg(run) -> float:
        return round(evaluate(run, judged, measures=("nDCG@10",))["nDCG@10"], 4)

    teacher = EnsembleTeacher([FirstStageTeacher("bm25"), BiEncoderTeacher("minilm")], fusion="minmax")
    t_run = rerank_run(teacher, test_q, corpus, test_run, args.depth, show_progress=False)
    eval_res = {
        "candidates": f"BM25 top-{args.depth}",
        "queries": len(test_q),
        "bm25": ndcg(test_run),
        "teacher (BM25 + MiniLM cosine, min-max)": ndcg(t_run),
    }
    untrained = DecoderStudent.load(work / "untrained", dtype="bf16")
    run_u, pps_u = rerank(
        lambda ps: untrained.score(ps, batch_size=args.batch_size), test_q, corpus, test_run, args.depth
    )
    eval_res["decoder untrained (random head)"] = ndcg(run_u)
    result["ndcg@10"] = eval_res
    result["rerank_pairs_per_s_untrained"] = round(pps_u, 2)
    dump("untrained evaluation")
    print(json.dumps(eval_res, indent=1), flush=True)

    if not args.skip_training:
        train_all = ds.split_queries("train")
        train_ids = sorted(train_all)
        rng.shuffle(train_ids)
        train_q = train_all.subset(train_ids[: args.train_queries])
        train_run = bm25.retrieve(train_q, k=args.depth)
        t0 = time.perf_counter()
        t_train = rerank_run(teacher, train_q, corpus, train_run, args.depth, show_progress=False)
        label_s = time.perf_counter() - t0
        reasoning = None
        if args.reasoning_store:
            from rankdistill.labels.store import LabelStore
            from rankdistill.teachers.reasoning import reasoning_targets

            store = LabelStore(args.reasoning_store)
            reasoning = {
                (ex["query_id"], ex["doc_ids"][0]): ex["target"]
                for ex in reasoning_targets(store)
                if ex["type"] == "explicit"
            }
        reasoning_info = None
        if args.reasoning_llm:
            from rankdistill.llm import load_llm
            from rankdistill.teachers.reasoning import ReasoningTeacher

            rt = ReasoningTeacher(
                load_llm(args.reasoning_llm), max_retries=1, max_passage_words=80, seed=args.seed
            )
            keys = [
                (q, d)
                for q in t_train.query_ids
                for d in sorted(t_train.scores[q], key=lambda d, q=q: -t_train.scores[q][d])[
                    : args.reasoning_per_query
                ]
            ]
            t0 = time.perf_counter()
            results = rt.explain([(train_q[q], corpus[d].full_text) for q, d in keys])
            reasoning = dict(reasoning or {})
            for key, r in zip(keys, results, strict=True):
                if r.ok:  # same target text as rankdistill.teachers.reasoning.reasoning_targets
                    reasoning[key] = f"{r.value['reasoning']} Relevance: {r.value['relevance']}"
            reasoning_info = {
                "llm": args.reasoning_llm,
                "asked": len(keys),
                "valid": sum(r.ok for r in results),
                "seconds": round(time.perf_counter() - t0, 1),
                "example": next((reasoning[k] for k in keys if k in reasoning), None),
            }
            rt.llm.close()
            print(json.dumps(reasoning_info, indent=1), flush=True)
        docs = {d: corpus[d].full_text for s in t_train.scores.values() for d in s}
        examples = examples_from_scores(
            train_q, docs, t_train.scores, reasoning, args.group_size, top=2, seed=args.seed
        )
        loss = JointRankLMLoss(
            student, rank_loss="listnet", lm_weight=args.lm_weight if reasoning else 0.0, rank_weight=1.0
        )
        t0 = time.perf_counter()
        history = train_decoder(
            student,
            examples,
            work / "trained",
            loss=loss,
            epochs=args.epochs,
            groups_per_batch=2,
            learning_rate=args.lr,
            head_learning_rate=args.head_lr,
            seed=args.seed,
            logging_steps=2,
        )
        train_s = time.perf_counter() - t0
        trained = DecoderStudent.load(work / "trained", dtype="bf16")
        run_t, pps_t = rerank(
            lambda ps: trained.score(ps, batch_size=args.batch_size), test_q, corpus, test_run, args.depth
        )
        eval_res["decoder trained"] = ndcg(run_t)
        result["training"] = {
            "train_queries": len(train_q),
            "groups": len(examples),
            "pairs": sum(len(e.documents) for e in examples),
            "pairs_with_reasoning": sum(1 for e in examples for r in (e.reasonings or []) if r),
            "teacher_labelling_seconds": round(label_s, 1),
            "reasoning_labels": reasoning_info,
            "loss": loss.get_config_dict(),
            "training_seconds": round(train_s, 1),
            "loss_log": [
                {k: h[k] for k in ("step", "loss", "rank_loss", "lm_loss") if k in h}
                for h in history
                if "loss" in h
            ],
        }
        result["rerank_pairs_per_s_trained"] = round(pps_t, 2)
        dump("trained evaluation")
        t0 = time.perf_counter()
        example_q = test_run.query_ids[0]
        top_doc = max(run_t.scores[example_q], key=run_t.scores[example_q].get)
        result["explain_example"] = {
            "query": test_q[example_q],
            "document": corpus[top_doc].full_text[:300],
            "explanation": trained.explain(test_q[example_q], [corpus[top_doc].full_text], max_new_tokens=24)[
                0
            ],
        }
        result["explain_example"]["seconds"] = round(time.perf_counter() - t0, 1)
    dump("done")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
