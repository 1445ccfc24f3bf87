# ruff: noqa
# Exploration script of session 2, kept as run so the README figures it produced can be reproduced; see README.md here.
import os
import pickle

import torch

OUT = os.environ.get("EXPLORE_DIR", "/tmp/exp")  # cached subset, outputs; made by prep_subset.py
os.makedirs(OUT, exist_ok=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
from rankdistill.students import load_encoder_student

model = load_encoder_student("minilm", None, max_length=128, seed=42)
hf = model.model
tok = model.tokenizer
D = pickle.load(open(OUT + "/scifact.pkl", "rb"))
q = list(D["ttr"])[5]
docs = list(D["ttr"][q])[:16]
enc = tok(
    [D["train_q"][q]] * 16,
    [D["docs"][d] for d in docs],
    padding=True,
    truncation="only_second",
    max_length=128,
    return_tensors="pt",
)
hf.eval()
W = hf.bert.embeddings.word_embeddings.weight
orig = W[101].detach().clone()
for name, vec in [
    ("orig", orig),
    ("mask", W[103].detach().clone()),
    ("mean", W.detach().mean(0)),
    ("the", W[1996].detach().clone()),
]:
    with torch.no_grad():
        W[101] = vec
        out = hf(**enc, output_hidden_states=True)
    rel = [round((h[:, 0].std(0).norm() / h[:, 0].norm(dim=-1).mean()).item(), 4) for h in out.hidden_states]
    # how much CLS variation correlates with anything: compare with mean-pooled
    m = enc["attention_mask"].unsqueeze(-1)
    hm = out.hidden_states[-1]
    mp = (hm * m).sum(1) / m.sum(1)
    print(
        name,
        "rel std of CLS by layer",
        rel,
        "meanpool rel",
        round((mp.std(0).norm() / mp.norm(dim=-1).mean()).item(), 4),
    )
with torch.no_grad():
    W[101] = orig
