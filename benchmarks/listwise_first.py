r"""FIRST (first-token listwise ranking) beside a generated one-pass permutation: LLM calls, prompt and
completion tokens, seconds and nDCG@10 per query, on noveleval-2306's 20 candidates a query.

    RANKDISTILL_THREADS=1 nice -n 19 .venv/bin/python benchmarks/listwise_first.py \
        --llm llamacpp:gemma3-270m --queries 3

Pipelines (a fresh store each run, so every label is computed):
1. one_pass: the 20 candidates in one list, the permutation generated (JSON grammar where the backend has
   one), the plain prompt;
2. first: the same 20 in one window, ranked by the first answer token's logits over 20 letter
   identifiers (A..T);
3. first over sliding windows (window 10, step 5: three windows a query).
Writes benchmarks/results/listwise_first.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from rankdistill.data.datasets import load_dataset
from rankdistill.data.types import Qrels, Run
from rankdistill.evaluation.metrics import evaluate
from rankdistill.labels.listwise import label_listwise
from rankdistill.labels.store import LabelStore
from rankdistill.llm.factory import load_llm
from rankdistill.teachers.base import labels_to_run

ROOT = Path(__file__).resolve().parent.parent

PIPELINES = {
    "one_pass": {"method": "one_pass", "top_k": 10, "bottom_k": 10},
    "first (one window of 20)": {"method": "first", "window": 20, "step": 10},
    "first (windows of 10, step 5)": {"method": "first", "window": 10, "step": 5},
}


def ndcg(run: Run, qrels: Qrels, qids: list[str]) -> float:
    qrels = Qrels({q: qrels[q] for q in qids if q in qrels})
    return round(evaluate(run.subset(qids), qrels, ["nDCG@10"])["nDCG@10"], 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", default="llamacpp:gemma3-270m")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--queries", type=int, default=3)
    ap.add_argument("--words", type=int, default=60, help="Words per passage shown to the LLM.")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "listwise_first.json"))
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    opts = {"n_ctx": args.n_ctx} if args.llm.startswith(("llamacpp", "gguf")) else {}
    llm = load_llm(args.llm, **opts)
    ds = load_dataset("noveleval-2306", args.data_dir)
    run, qrels = ds.run("initial_order_top20"), ds.qrels("test")
    qids = [q for q in run.query_ids if q in qrels and q in ds.queries][: args.queries]
    queries = ds.queries.subset(qids)
    out: dict = {
        "llm": args.llm,
        "llm_identity": llm.identity(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": os.environ.get("RANKDISTILL_THREADS"),
            "note": "a shared 2-core machine with other jobs running: seconds are indicative only",
        },
        "dataset": "noveleval-2306 (runs/initial_order_top20)",
        "queries": len(qids),
        "words_per_passage": args.words,
        "nDCG@10 initial order": ndcg(run, qrels, qids),
        "pipelines": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in PIPELINES.items():
            with LabelStore(Path(tmp) / f"{settings['method']}-{settings.get('window', 0)}.sqlite") as store:
                labels, summary = label_listwise(
                    llm,
                    store,
                    queries,
                    ds.corpus,
                    run,
                    depth=20,
                    max_passage_words=args.words,
                    batch_size=1,
                    show_progress=False,
                    **settings,
                )
            out["pipelines"][name] = {
                "settings": settings,
                "nDCG@10": ndcg(labels_to_run(labels, name="listwise"), qrels, qids),
                **{
                    k: round(v, 2) if isinstance(v, float) else v
                    for k, v in summary.items()
                    if k
                    in (
                        "llm_calls_per_query",
                        "prompt_tokens_per_query",
                        "completion_tokens_per_query",
                        "seconds_per_query",
                        "missing_rate",
                    )
                },
            }
            print(name, json.dumps(out["pipelines"][name]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
