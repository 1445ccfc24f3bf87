# ruff: noqa
# Exploration script of session 2, kept as run so the README figures it produced can be reproduced; see README.md here.
import argparse
import os
import pickle
import random
import time

import torch

OUT = os.environ.get("EXPLORE_DIR", "/tmp/exp")  # cached subset, outputs; made by prep_subset.py
os.makedirs(OUT, exist_ok=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
torch.set_num_threads(2)
import torch.nn.functional as F

from rankdistill.data.types import Qrels, Run
from rankdistill.evaluation.metrics import evaluate
from rankdistill.students import load_encoder_student, student_scores
from rankdistill.training.data import minmax

ap = argparse.ArgumentParser()
ap.add_argument("--mode", default="list")
ap.add_argument("--lr", type=float, default=3e-4)
ap.add_argument("--steps", type=int, default=150)
ap.add_argument("--q", type=int, default=2)
ap.add_argument("--g", type=int, default=8)
ap.add_argument("--T", type=float, default=0.1)
ap.add_argument("--layers", type=int, default=2)
ap.add_argument("--maxlen", type=int, default=128)
ap.add_argument("--pool", default="cls")
ap.add_argument("--tag", default="x")
ap.add_argument("--keep", default=None)
ap.add_argument("--headlr", type=float, default=None)
ap.add_argument("--top", type=int, default=3)
a = ap.parse_args()
D = pickle.load(open(OUT + "/scifact.pkl", "rb"))
qrels = Qrels(D["qrels"])


def ev(scores):
    return round(float(evaluate(Run(scores), qrels, measures=("nDCG@10",))["nDCG@10"]), 4)


torch.manual_seed(42)
rng = random.Random(42)
model = load_encoder_student("minilm", a.layers, max_length=a.maxlen, seed=42)
if a.keep:
    idx = [int(i) for i in a.keep.split(",")]
    enc = model.model.bert.encoder
    enc.layer = torch.nn.ModuleList([enc.layer[i] for i in idx])
    model.model.config.num_hidden_layers = len(idx)
hf = model.model
tok = model.tokenizer


def evs():
    hf.eval()
    keys = [(q, d) for q in D["brun"] for d in D["brun"][q]]
    s = student_scores(model, [(D["test_q"][q], D["docs"][d]) for q, d in keys], batch_size=64)
    out = {}
    for (q, d), v in zip(keys, s):
        out.setdefault(q, {})[d] = float(v)
    hf.train()
    import json

    json.dump(out, open(f"{OUT}/scores_{a.tag}.json", "w"))
    return ev(out)


groups = []
for q, sc in D["ttr"].items():
    lab = minmax(sc)
    ranked = sorted(sc, key=sc.get, reverse=True)
    groups.append((q, ranked, lab))
rng.shuffle(groups)
head = [p for n, p in hf.named_parameters() if "classifier" in n or "pooler" in n]
body = [p for n, p in hf.named_parameters() if not ("classifier" in n or "pooler" in n)]
opt = torch.optim.AdamW(
    [{"params": body, "lr": a.lr}, {"params": head, "lr": a.headlr or a.lr}], weight_decay=0.01
)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: min(1, (s + 1) / (0.1 * a.steps)) * max(0.0, 1 - s / a.steps)
)
hf.train()
t = time.time()
gi = 0
losses = []
for step in range(a.steps):
    qs, ds, ls = [], [], []
    for _ in range(a.q):
        q, ranked, lab = groups[gi % len(groups)]
        gi += 1
        docs = ranked[: a.top] + rng.sample(ranked[a.top :], a.g - a.top)
        qs += [D["train_q"][q]] * a.g
        ds += [D["docs"][d] for d in docs]
        ls += [lab[d] for d in docs]
    enc = tok(qs, ds, padding=True, truncation="only_second", max_length=a.maxlen, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if a.pool == "mean":
            h = hf.bert(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            logits = hf.classifier((h * m).sum(1) / m.sum(1)).float().view(a.q, a.g)
        else:
            logits = hf(**enc).logits.float().view(a.q, a.g)
    y = torch.tensor(ls).view(a.q, a.g)
    if a.mode == "list":
        loss = F.kl_div(F.log_softmax(logits, -1), F.softmax(y / a.T, -1), reduction="batchmean")
    elif a.mode == "bce":
        loss = F.binary_cross_entropy_with_logits(logits, y)
    elif a.mode == "margin":
        loss = F.mse_loss(logits - logits.mean(-1, keepdim=True), (y - y.mean(-1, keepdim=True)) / a.T)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
    opt.step()
    sched.step()
    losses.append(loss.item())
    if (step + 1) % 50 == 0:
        print(step + 1, round(sum(losses[-50:]) / 50, 4), round(time.time() - t), flush=True)
print("RESULT", vars(a), "ndcg", evs(), "train_s", round(time.time() - t))
