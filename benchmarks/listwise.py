r"""Listwise teacher benchmark: quality beside the first stage, parse repairs, and cost of the sliding
window versus RRADistill's one-pass pipeline.

    RANKDISTILL_THREADS=1 nice -n 10 .venv/bin/python benchmarks/listwise.py \
        --llm llamacpp:gemma3-270m --noveleval-queries 14 --dl-queries 10 --cost-queries 1 --text-queries 3 \
        --reasoning-queries 1

Parts (each reuses labels already in --store, so a killed run resumes where it stopped):
1. noveleval-2306: the 20 candidates of runs/initial_order_top20.trec ranked in one list (one-pass with
   top_k=10, bottom_k=10 takes all 20); nDCG@10 beside the initial order on the same queries.
2. cost on trec-dl-2019 BM25 top-100: sliding window (window 20, step 10, depth 100) versus one pass
   (top-10 + bottom-10 of the 100): LLM calls, prompt and completion tokens, seconds per query.
3. trec-dl-2019: BM25 top-20 (runs/bm25_top100.trec cut to 20) in one list; nDCG@10 beside BM25.
4. noveleval again on a few queries with free-text answers (no JSON grammar): the parser's repairs.
5. reasoning labels (ReasoningRank) on a few noveleval queries, over the permutations of part 1:
   explicit reasoning for the top 3, comparison reasoning over the top 4 (windows of 3 overlapping by
   one); how often the answer is valid at the first try, after retries, or recorded as a failure.
Writes benchmarks/results/listwise.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from rankdistill.data.datasets import load_dataset
from rankdistill.data.types import Qrels, Run
from rankdistill.evaluation.metrics import evaluate
from rankdistill.labels.listwise import label_listwise
from rankdistill.labels.reasoning import label_reasoning
from rankdistill.labels.store import LabelStore
from rankdistill.llm.factory import load_llm
from rankdistill.teachers.base import labels_to_run

ROOT = Path(__file__).resolve().parent.parent
MEASURES = ["nDCG@10"]


def ndcg(run: Run, qrels: Qrels, qids: list[str]) -> float:
    qrels = Qrels({q: qrels[q] for q in qids if q in qrels})
    return round(evaluate(run.subset(qids), qrels, MEASURES)["nDCG@10"], 4)


def quality_part(
    llm,
    store,
    ds,
    run: Run,
    qrels: Qrels,
    n_queries: int,
    words: int,
    name: str,
    constrained: bool | None = None,
) -> dict:
    qids = [q for q in run.query_ids if q in qrels and q in ds.queries][:n_queries]
    queries = ds.queries.subset(qids)
    labels, summary = label_listwise(
        llm,
        store,
        queries,
        ds.corpus,
        run,
        method="one_pass",
        top_k=10,
        bottom_k=10,
        depth=20,
        max_passage_words=words,
        batch_size=1,
        constrained=constrained,
    )
    teacher_run = labels_to_run(labels, name="listwise")
    qids = teacher_run.query_ids
    return {
        "dataset": name,
        "queries": len(qids),
        "candidates_per_query": 20,
        "nDCG@10": {
            "first_stage": ndcg(run, qrels, qids),
            "listwise_teacher": ndcg(teacher_run, qrels, qids),
        },
        "summary": summary,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", default="llamacpp:gemma3-270m")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--store", default="/tmp/rankdistill-bench/listwise.sqlite")
    ap.add_argument("--noveleval-queries", type=int, default=21)
    ap.add_argument("--dl-queries", type=int, default=20)
    ap.add_argument("--cost-queries", type=int, default=3)
    ap.add_argument("--text-queries", type=int, default=5, help="noveleval queries answered unconstrained.")
    ap.add_argument("--reasoning-queries", type=int, default=2)
    ap.add_argument("--words", type=int, default=60, help="Words per passage shown to the LLM.")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "listwise.json"))
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    opts = {"n_ctx": args.n_ctx} if args.llm.startswith(("llamacpp", "gguf")) else {}
    llm = load_llm(args.llm, **opts)
    store = LabelStore(args.store)
    out: dict = {
        "llm": args.llm,
        "llm_identity": llm.identity(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": os.environ.get("RANKDISTILL_THREADS"),
        },
        "words_per_passage": args.words,
        "note": "Gemma 3 270M is a weak base model: this exercises the pipeline and measures cost and "
        "repairs; its nDCG is not a claim of teacher quality.",
    }

    def save() -> None:
        out["seconds_total"] = round(time.perf_counter() - t0, 1)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")

    novel = load_dataset("noveleval-2306", args.data_dir)
    out["noveleval"] = quality_part(
        llm,
        store,
        novel,
        novel.run("initial_order_top20"),
        novel.qrels("test"),
        args.noveleval_queries,
        args.words,
        "noveleval-2306",
    )
    save()

    dl = load_dataset("trec-dl-2019", args.data_dir)
    bm25 = dl.run("bm25_top100")
    dl_qrels = dl.qrels("test", on_unknown_doc="ignore")
    qids = [q for q in bm25.query_ids if q in dl_qrels][: args.cost_queries]
    queries = dl.queries.subset(qids)
    cost = {"queries": len(qids), "candidates": 100}
    for method, kw in (
        ("sliding_window", {"window": 20, "step": 10}),
        ("one_pass", {"top_k": 10, "bottom_k": 10}),
    ):
        _, summary = label_listwise(
            llm,
            store,
            queries,
            dl.corpus,
            bm25,
            method=method,
            depth=100,
            max_passage_words=args.words,
            batch_size=1,
            **kw,
        )
        cost[method] = {"settings": {"depth": 100, **kw}, **summary}
    sw, op = cost["sliding_window"], cost["one_pass"]
    cost["ratio_sliding_over_one_pass"] = {
        k: round(sw[k] / op[k], 2) if op[k] else None
        for k in (
            "llm_calls_per_query",
            "prompt_tokens_per_query",
            "completion_tokens_per_query",
            "seconds_per_query",
        )
    }
    out["cost_trec_dl_top100"] = cost
    save()

    out["trec_dl_top20"] = quality_part(
        llm, store, dl, bm25.top_k(20), dl_qrels, args.dl_queries, args.words, "trec-dl-2019 BM25 top-20"
    )
    save()

    # free-text answers (no grammar): what the parser has to repair when the backend cannot constrain
    out["noveleval_unconstrained"] = quality_part(
        llm,
        store,
        novel,
        novel.run("initial_order_top20"),
        novel.qrels("test"),
        args.text_queries,
        args.words,
        "noveleval-2306 (free text)",
        constrained=False,
    )
    save()

    qids = [q for q in novel.run("initial_order_top20").query_ids if q in novel.queries][
        : args.reasoning_queries
    ]
    lw = {"method": "one_pass", "top_k": 10, "bottom_k": 10, "depth": 20, "max_passage_words": args.words}
    reasoning = label_reasoning(
        llm,
        store,
        novel.queries.subset(qids),
        novel.corpus,
        novel.run("initial_order_top20"),
        explicit_depth=3,
        comparison_depth=4,
        comparison_window=3,
        max_retries=2,
        max_passage_words=args.words,
        listwise=lw,
        batch_size=1,
    )
    out["reasoning_noveleval"] = {"queries": len(qids), "max_retries": 2, **reasoning}
    save()
    store.close()
    llm.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
