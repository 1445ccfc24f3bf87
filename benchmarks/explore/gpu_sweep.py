# ruff: noqa
# Session 3: the training-recipe sweep behind README's "what the student needs" figures, run on a lent GPU
# (torch + transformers only; data and fp16 MiniLM exported by gpu_prep.py into .gpu/). One process per
# recipe; prints one JSON line per evaluation (dev = 100 held-out judged training queries, test = scifact test).
import argparse
import gzip
import json
import math
import random
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--name", required=True)
ap.add_argument("--loss", default="listnet")  # listnet | margin | mse | ranknet
ap.add_argument("--group", type=int, default=8)
ap.add_argument("--top", type=int, default=3)
ap.add_argument("--qbatch", type=int, default=2)
ap.add_argument("--lr", type=float, default=2e-4)
ap.add_argument("--T", type=float, default=0.1)
ap.add_argument("--maxlen", type=int, default=128)
ap.add_argument("--layers", default="")  # e.g. 0,5: keep these layers (of --init_from too)
ap.add_argument("--pairs", type=int, default=16000)
ap.add_argument("--evals", type=int, default=4)  # evaluations spread over the run (the last at the end)
ap.add_argument("--kinds", default="train,sentence0")
ap.add_argument("--init", default="")  # zeroq: last layer's query projection zeroed ([CLS] attends uniformly)
ap.add_argument("--init_from", default="")  # a saved student folder (e.g. a trained 6-layer one)
ap.add_argument("--save", default="")
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--freeze_emb", action="store_true")
ap.add_argument("--eval_len", type=int, default=256)
ap.add_argument("--depth", type=int, default=100)
a = ap.parse_args()
dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(a.seed)
rng = random.Random(a.seed)
with gzip.open(".gpu/data.json.gz", "rt") as f:
    D = json.load(f)
docs = D["docs"]
kinds = set(a.kinds.split(","))
groups = [g for g in D["groups"].values() if g["kind"] in kinds]
rng.shuffle(groups)

tok = AutoTokenizer.from_pretrained(".gpu/minilm")
model = AutoModelForSequenceClassification.from_pretrained(
    a.init_from or ".gpu/minilm", num_labels=1, torch_dtype=torch.float32
)
keep = [int(i) for i in a.layers.split(",")] if a.layers else list(range(model.config.num_hidden_layers))
if keep != list(range(model.config.num_hidden_layers)):
    model.bert.encoder.layer = torch.nn.ModuleList([model.bert.encoder.layer[i] for i in keep])
    model.config.num_hidden_layers = len(keep)
if a.init == "zeroq":
    last = model.bert.encoder.layer[-1].attention.self
    torch.nn.init.zeros_(last.query.weight)
    torch.nn.init.zeros_(last.query.bias)
if a.freeze_emb:
    model.bert.embeddings.requires_grad_(False)
model.to(dev)


def ndcg10(run, qrels):
    tot = 0.0
    for q, rel in qrels.items():
        ranked = sorted(run.get(q, {}).items(), key=lambda x: (-x[1], x[0]))[:10]
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, (d, _) in enumerate(ranked))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal) if r > 0)
        tot += dcg / idcg if idcg else 0.0
    return round(tot / len(qrels), 4)


@torch.no_grad()
def score_split(split):
    model.eval()
    E = D["eval"][split]
    keys = [(q, d) for q, c in E["bm25"].items() for d in sorted(c, key=c.get, reverse=True)[: a.depth]]
    order = sorted(range(len(keys)), key=lambda i: len(docs[keys[i][1]]))
    out = [0.0] * len(keys)
    for s in range(0, len(order), 512):
        idx = order[s : s + 512]
        enc = tok(
            [E["queries"][keys[i][0]] for i in idx],
            [docs[keys[i][1]] for i in idx],
            padding=True,
            truncation="only_second",
            max_length=a.eval_len,
            return_tensors="pt",
        ).to(dev)
        with torch.autocast(dev, dtype=torch.bfloat16):
            lg = model(**enc).logits.float().view(-1).tolist()
        for i, v in zip(idx, lg):
            out[i] = v
    run = {}
    for (q, d), v in zip(keys, out):
        run.setdefault(q, {})[d] = v
    model.train()
    return ndcg10(run, E["qrels"])


def base_line():
    res = {}
    for split in ("dev", "test"):
        E = D["eval"][split]
        res[split] = {"bm25": ndcg10(E["bm25"], E["qrels"]), "teacher": ndcg10(E["teacher"], E["qrels"])}
    return res


def labels(g):
    v = g["docs"]
    lo, hi = min(v.values()), max(v.values())
    return {d: (s - lo) / (hi - lo) if hi > lo else 0.5 for d, s in v.items()}


steps = a.pairs // (a.qbatch * a.group)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: min(1, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps)
)
eval_steps = {round(steps * (i + 1) / a.evals) for i in range(a.evals)}
print(
    json.dumps({"name": a.name, "baseline": base_line(), "groups": len(groups), "steps": steps}), flush=True
)
t0 = time.time()
gi = 0
model.train()
for step in range(1, steps + 1):
    qs, ds, ys = [], [], []
    for _ in range(a.qbatch):
        g = groups[gi % len(groups)]
        gi += 1
        lab = labels(g)
        ranked = sorted(lab, key=lab.get, reverse=True)
        n = min(a.group, len(ranked))
        pick = ranked[: a.top] + rng.sample(ranked[a.top :], n - a.top) if n > a.top else ranked[:n]
        pick += [pick[-1]] * (a.group - len(pick))  # pad short lists (rare)
        qs += [g["text"]] * a.group
        ds += [docs[d] for d in pick]
        ys += [lab[d] for d in pick]
    enc = tok(qs, ds, padding=True, truncation="longest_first", max_length=a.maxlen, return_tensors="pt").to(
        dev
    )
    with torch.autocast(dev, dtype=torch.bfloat16):
        s = model(**enc).logits.float().view(a.qbatch, a.group)
    y = torch.tensor(ys, device=dev).view(a.qbatch, a.group)
    if a.loss == "listnet":
        loss = F.kl_div(F.log_softmax(s, -1), F.softmax(y / a.T, -1), reduction="batchmean")
    elif a.loss == "margin":
        loss = F.mse_loss(s - s.mean(-1, keepdim=True), (y - y.mean(-1, keepdim=True)) / a.T)
    elif a.loss == "mse":
        loss = F.mse_loss(s, y / a.T)
    elif a.loss == "ranknet":
        ds_ = s.unsqueeze(-1) - s.unsqueeze(-2)
        dy = y.unsqueeze(-1) - y.unsqueeze(-2)
        m = (dy > 0).float()
        loss = (F.softplus(-ds_) * m).sum() / m.sum().clamp(min=1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    if step in eval_steps:
        r = {
            "name": a.name,
            "pairs": step * a.qbatch * a.group,
            "loss": round(loss.item(), 4),
            "dev": score_split("dev"),
            "test": score_split("test"),
            "s": round(time.time() - t0),
        }
        print(json.dumps(r), flush=True)
if a.save:
    model.save_pretrained(a.save)
    tok.save_pretrained(a.save)
