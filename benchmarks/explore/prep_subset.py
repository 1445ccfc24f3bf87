# ruff: noqa
# Exploration script of session 2, kept as run so the README figures it produced can be reproduced; see README.md here.
# cache: scifact train-query teacher runs (depth 30) + test 100 queries top-30 candidates, teacher & bm25 runs
import os
import pickle
import random
import sys
import time

OUT = os.environ.get("EXPLORE_DIR", "/tmp/exp")  # cached subset, outputs; made by prep_subset.py
os.makedirs(OUT, exist_ok=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch

torch.set_num_threads(2)
from distill import teacher

from rankdistill.data.datasets import load_dataset
from rankdistill.retrieval.bm25 import BM25Retriever
from rankdistill.teachers import rerank_run

name = sys.argv[1] if len(sys.argv) > 1 else "scifact"
ds = load_dataset(name, data_dir=os.environ.get("RANKDISTILL_DATA_DIR", "../shared/data"), download=False)
corpus = ds.corpus
bm25 = BM25Retriever.from_corpus(corpus)
test_q = ds.split_queries("test")
qrels = ds.qrels("test")
test_q = test_q.subset([q for q in test_q if q in qrels])
sample = sorted(random.Random(42).sample(sorted(test_q), 100))
test_q = test_q.subset(sample)
brun = bm25.retrieve(test_q, k=30)
t = time.time()
trun = rerank_run(teacher(), test_q, corpus, brun, depth=30, show_progress=False)
print("teacher test", time.time() - t)
train_q = ds.split_queries("train")
tr = bm25.retrieve(train_q, k=30)
t = time.time()
ttr = rerank_run(teacher(), train_q, corpus, tr, depth=30, show_progress=False)
print("teacher train", time.time() - t, len(train_q))
docs = {d: corpus[d].full_text for run in (brun, tr) for q in run.query_ids for d in run[q]}
pickle.dump(
    dict(
        test_q=dict(test_q.items()),
        qrels={q: dict(qrels[q]) for q in test_q},
        brun=brun.scores,
        trun=trun.scores,
        train_q=dict(train_q.items()),
        ttr=ttr.scores,
        docs=docs,
    ),
    open(f"{OUT}/{name}.pkl", "wb"),
)
