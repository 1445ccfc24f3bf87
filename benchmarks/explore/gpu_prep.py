# ruff: noqa
# Session 3: exports scifact training groups (teacher-labelled BM25 top-30 of many queries), held-out dev and
# test candidates and MiniLM (fp16) into .gpu/ so that gpu_sweep.py can run the training-recipe sweep on a
# lent GPU (which has torch + transformers but no rankdistill, bm25s or ../shared).
import gzip
import json
import os
import random
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch

torch.set_num_threads(2)
from distill import teacher

from rankdistill.data.datasets import load_dataset
from rankdistill.data.types import Queries
from rankdistill.models import resolve_model
from rankdistill.retrieval.bm25 import BM25Retriever
from rankdistill.teachers import rerank_run
from rankdistill.teachers.querygen.pseudo import pseudo_queries

OUT = ".gpu"
os.makedirs(OUT, exist_ok=True)
name = sys.argv[1] if len(sys.argv) > 1 else "scifact"
n_seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
ds = load_dataset(name, data_dir=os.environ.get("RANKDISTILL_DATA_DIR", "../shared/data"), download=False)
corpus = ds.corpus
bm25 = BM25Retriever.from_corpus(corpus)
test_q = ds.split_queries("test")
qrels = ds.qrels("test")
test_q = test_q.subset([q for q in test_q if q in qrels])
test_texts = {t.strip().lower() for t in test_q.values()}
train_q = ds.split_queries("train")
tqrels = ds.qrels("train")
ids = sorted(q for q in train_q if q not in test_q)
dev_ids = sorted(random.Random(2).sample([q for q in ids if q in tqrels], 100))
p1_ids = [q for q in ids if q not in set(dev_ids)]
groups = {}


def label(qs: Queries, kind: str):
    t = time.time()
    run = bm25.retrieve(qs, k=30)
    trun = rerank_run(teacher(), qs, corpus, run, depth=30, show_progress=True)
    for q in trun.query_ids:
        groups[q] = {"kind": kind, "text": qs[q], "docs": trun.scores[q]}
    print(kind, len(qs), round(time.time() - t), flush=True)


label(train_q.subset(p1_ids), "train")
docs = [corpus[d] for d in sorted(corpus)]
for s in range(n_seeds):
    synth = [x for x in pseudo_queries(docs, "sentence", seed=s) if x.text.strip().lower() not in test_texts]
    label(Queries({f"s{s}-{x.query_id}": x.text for x in synth}), f"sentence{s}")
synth = [x for x in pseudo_queries(docs, "title") if x.text.strip().lower() not in test_texts]
label(Queries({x.query_id: x.text for x in synth}), "title")

dq = train_q.subset(dev_ids)
test = {
    "test": {
        "queries": dict(test_q.items()),
        "qrels": {q: dict(qrels[q]) for q in test_q},
        "bm25": bm25.retrieve(test_q, k=100).scores,
    },
    "dev": {
        "queries": dict(dq.items()),
        "qrels": {q: dict(tqrels[q]) for q in dq},
        "bm25": bm25.retrieve(dq, k=100).scores,
    },
}
for split in test.values():
    qs = Queries(split["queries"])
    from rankdistill.data.types import Run

    split["teacher"] = rerank_run(
        teacher(), qs, corpus, Run(split["bm25"]), depth=100, show_progress=False
    ).scores
with gzip.open(f"{OUT}/data.json.gz", "wt") as f:
    json.dump({"groups": groups, "eval": test, "docs": {d: corpus[d].full_text for d in corpus}}, f)

from transformers import AutoModel, AutoTokenizer

src = resolve_model("minilm")
AutoModel.from_pretrained(src, torch_dtype=torch.float16).save_pretrained(f"{OUT}/minilm")
AutoTokenizer.from_pretrained(src).save_pretrained(f"{OUT}/minilm")
print("done", len(groups))
