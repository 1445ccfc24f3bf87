# ruff: noqa
# Exploration script of session 2, kept as run so the README figures it produced can be reproduced; see README.md here.
import os
import time

import torch

OUT = os.environ.get("EXPLORE_DIR", "/tmp/exp")  # cached subset, outputs; made by prep_subset.py
os.makedirs(OUT, exist_ok=True)
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
torch.set_num_threads(2)
import torch._inductor.config as ic

ic.freezing = True
from transformers import AutoModelForSequenceClassification

M = os.path.expanduser("~/.cache/rankdistill/bench/minilm-scifact-probe")
m = AutoModelForSequenceClassification.from_pretrained(M).eval().to(torch.bfloat16)
x = {
    "input_ids": torch.randint(1000, 20000, (32, 256)),
    "attention_mask": torch.ones(32, 256, dtype=torch.long),
}
with torch.inference_mode():
    ref = m(**x).logits.float()
    t = time.perf_counter()
    m(**x)
    m(**x)
    print("eager pairs/s", 64 / (time.perf_counter() - t), flush=True)
    c = torch.compile(m, dynamic=True)
    t = time.perf_counter()
    c(**x)
    print("compile s", time.perf_counter() - t, flush=True)
    t = time.perf_counter()
    out = c(**x).logits.float()
    c(**x)
    print(
        "compiled pairs/s", 64 / (time.perf_counter() - t), "diff", (out - ref).abs().max().item(), flush=True
    )
    x3 = {
        "input_ids": torch.randint(1000, 20000, (32, 200)),
        "attention_mask": torch.ones(32, 200, dtype=torch.long),
    }
    t = time.perf_counter()
    c(**x3)
    print("new shape s", time.perf_counter() - t, flush=True)
