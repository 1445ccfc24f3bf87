# ruff: noqa
# Exploration script of session 2, kept as run so the README figures it produced can be reproduced; see README.md here.
import argparse
import os
import pickle
import time

OUT = os.environ.get("EXPLORE_DIR", "/tmp/exp")  # cached subset, outputs; made by prep_subset.py
os.makedirs(OUT, exist_ok=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
import torch

torch.set_num_threads(2)
from rankdistill.data.types import Qrels, Run
from rankdistill.evaluation.metrics import evaluate
from rankdistill.students import load_encoder_student, student_scores
from rankdistill.training.data import pairs_from_teacher_run
from rankdistill.training.losses import build_loss
from rankdistill.training.trainer import TrainSettings, train

ap = argparse.ArgumentParser()
ap.add_argument("--name", default="scifact")
ap.add_argument("--lr", type=float, default=3e-4)
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--bs", type=int, default=16)
ap.add_argument("--layers", type=int, default=None)
ap.add_argument("--loss", default="soft_bce")
ap.add_argument("--per_query", type=int, default=8)
ap.add_argument("--top", type=int, default=3)
ap.add_argument("--maxlen", type=int, default=192)
ap.add_argument("--warmup", type=float, default=0.1)
ap.add_argument("--tag", default="x")
a = ap.parse_args()
D = pickle.load(open(f"{OUT}/{a.name}.pkl", "rb"))
qrels = Qrels(D["qrels"])


def ev(scores):
    return {k: round(float(v), 4) for k, v in evaluate(Run(scores), qrels, measures=("nDCG@10",)).items()}


print("bm25", ev(D["brun"]), "teacher", ev(D["trun"]))
model = load_encoder_student("minilm", a.layers, max_length=a.maxlen, seed=42)


def evstudent():
    keys = [(q, d) for q in D["brun"] for d in D["brun"][q]]
    model.model.eval()
    s = student_scores(model, [(D["test_q"][q], D["docs"][d]) for q, d in keys], batch_size=64)
    out = {}
    for (q, d), v in zip(keys, s):
        out.setdefault(q, {})[d] = float(v)
    return ev(out)


rows = pairs_from_teacher_run(D["train_q"], Run(D["ttr"]), D["docs"], a.per_query, a.top, seed=42)
print("rows", len(rows))
specs = [
    {"name": n.split(":")[0], "weight": float(n.split(":")[1]) if ":" in n else 1.0}
    for n in a.loss.split(",")
]
loss = build_loss(model, specs)
t = time.time()
tr = train(
    model,
    loss,
    rows,
    f"{OUT}/out_{a.tag}",
    TrainSettings(
        max_steps=a.steps,
        batch_size=a.bs,
        learning_rate=a.lr,
        warmup_ratio=a.warmup,
        seed=42,
        logging_steps=25,
        save_steps=100000,
        resume=False,
    ),
)
print(
    "train s",
    round(time.time() - t, 1),
    [(h.get("step"), round(h["loss"], 4)) for h in tr.state.log_history if "loss" in h],
)
print("RESULT", vars(a), evstudent())
