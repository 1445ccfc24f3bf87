"""Shared by the inference benchmarks: real scifact pairs (query + BM25 top-k) and a benchmark model.

Until a trained student is given (`--model PATH`), the benchmarks use MiniLM-L6 as a cross-encoder
whose 1-logit head is a linear probe fitted on scifact *train* judgements (positive vs BM25 negative):
real weights with a realistic spread of scores, so that score differences and top-10 agreement between
precisions mean something (a random head gives near-constant scores that hide rounding errors).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))


def scifact_pairs(n_queries: int, k: int = 100, seed: int = 0, split: str = "test"):
    """[(qid, query, [(doc_id, text), ...]), ...]: `n_queries` queries of `split` with their BM25 top-k."""
    from rankdistill.data.datasets import load_dataset
    from rankdistill.retrieval.bm25 import BM25Retriever

    ds = load_dataset("scifact", data_dir=DATA_DIR)
    queries = ds.split_queries(split)
    qids = sorted(queries)
    random.Random(seed).shuffle(qids)
    subset = queries.subset(qids[:n_queries])
    run = BM25Retriever.from_corpus(ds.corpus).retrieve(subset, k=k)
    corpus = ds.corpus
    return [(q, subset[q], [(d, corpus[d].full_text) for d, _ in run.ranked(q, k)]) for q in subset]


def build_probe_model(out: Path, n_train_queries: int = 120, seed: int = 0) -> Path:
    """MiniLM + a linear-probe relevance head (see the module docstring), saved as an encoder student."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rankdistill.data.datasets import load_dataset
    from rankdistill.models import minilm_path
    from rankdistill.retrieval.bm25 import BM25Retriever

    out = Path(out)
    if (out / "rankdistill.json").is_file():
        return out
    torch.manual_seed(seed)
    src = minilm_path()
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1).eval()
    ds = load_dataset("scifact", data_dir=DATA_DIR)
    qrels = ds.qrels("train", on_unknown_doc="ignore")
    qids = sorted(q for q in qrels.query_ids if qrels.relevant(q) and q in ds.queries)
    random.Random(seed).shuffle(qids)
    qids = qids[:n_train_queries]
    queries = ds.queries.subset(qids)
    run = BM25Retriever.from_corpus(ds.corpus).retrieve(queries, k=20)
    rng = random.Random(seed)
    pairs, labels = [], []
    for q in qids:
        pos = sorted(qrels.relevant(q))
        negs = [d for d, _ in run.ranked(q, 20) if d not in qrels.relevant(q)]
        pairs.append((queries[q], ds.corpus[rng.choice(pos)].full_text))
        labels.append(1)
        for d in rng.sample(negs, min(2, len(negs))):
            pairs.append((queries[q], ds.corpus[d].full_text))
            labels.append(0)
    feats = []
    with torch.inference_mode():
        for i in range(0, len(pairs), 16):
            chunk = pairs[i : i + 16]
            enc = tok(
                [p[0] for p in chunk],
                [p[1] for p in chunk],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            feats.append(model.bert(**enc).pooler_output.float().numpy())
    x = np.concatenate(feats)
    clf = LogisticRegression(C=10.0, max_iter=5000).fit(x, labels)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(clf.coef_, dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor(clf.intercept_, dtype=torch.float32))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {
        "student_type": "encoder",
        "num_labels": 1,
        "score": "logit",
        "max_length": 256,
        "note": f"MiniLM-L6 + linear probe on {len(pairs)} scifact train pairs (benchmark model)",
    }
    (out / "rankdistill.json").write_text(json.dumps(meta, indent=2))
    return out


def machine_info() -> dict:
    """The machine a result was measured on: CPU model and the flags that change speed, usable CPUs."""
    import platform

    from rankdistill.hardware import cpu_info, usable_cpus

    return {"cpu": cpu_info().summary(), "usable_cpus": usable_cpus(), "python": platform.python_version()}
