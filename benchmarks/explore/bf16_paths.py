# ruff: noqa
# Exploration script of session 2, kept as run so the README figures it produced can be reproduced; see README.md here.
import os
import sys
import time

import numpy as np
import torch

OUT = os.environ.get("EXPLORE_DIR", "/tmp/exp")  # cached subset, outputs; made by prep_subset.py
os.makedirs(OUT, exist_ok=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
torch.set_num_threads(2)
from bench_common import scifact_pairs
from transformers import AutoModelForSequenceClassification, AutoTokenizer

M = os.path.expanduser("~/.cache/rankdistill/bench/minilm-scifact-probe")
data = scifact_pairs(8)
pairs = [(q, t) for _, q, docs in data for _, t in docs]
tok = AutoTokenizer.from_pretrained(M)
ML = 256


def run(model, bs, ctx=None, sort=True):
    enc = tok([q for q, _ in pairs], [d for _, d in pairs], truncation=True, max_length=ML)
    lens = [len(x) for x in enc["input_ids"]]
    order = np.argsort(lens)[::-1] if sort else np.arange(len(pairs))
    out = np.zeros(len(pairs), dtype=np.float32)
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            feats = tok.pad({k: [enc[k][j] for j in idx] for k in enc}, return_tensors="pt")
            if ctx:
                with ctx():
                    lo = model(**feats).logits
            else:
                lo = model(**feats).logits
            out[idx] = lo.float()[:, 0].numpy()
    return out, len(pairs) / (time.perf_counter() - t)


fp32 = AutoModelForSequenceClassification.from_pretrained(M).eval()
ref, _ = run(fp32, 32)
from sentence_transformers import CrossEncoder

ce = CrossEncoder(M, max_length=ML, activation_fn=torch.nn.Identity())
ce.predict(pairs[:64])
t = time.perf_counter()
st = ce.predict(pairs, batch_size=32)
st_pps = len(pairs) / (time.perf_counter() - t)
print("ST", round(st_pps, 1), "maxdiff", float(np.abs(st - ref).max()))


def report(name, m, bs, ctx=None):
    run(m, bs, ctx)  # warm
    s, pps = run(m, bs, ctx)
    print(
        name,
        bs,
        round(pps, 1),
        "x%.2f" % (pps / st_pps),
        "maxdiff %.4f" % float(np.abs(s - ref).max()),
        flush=True,
    )


report("fp32", fp32, 32)
import copy

bf = copy.deepcopy(fp32).to(torch.bfloat16)
for bs in (32, 64):
    report("bf16", bf, bs)
report("autocast", fp32, 64, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
q8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32), {torch.nn.Linear}, dtype=torch.qint8)
report("int8dyn", q8, 64)
