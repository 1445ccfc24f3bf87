# ruff: noqa
# Exploration script of session 2, kept as run so the README figures it produced can be reproduced; see README.md here.
import os, torch, time

os.environ["TRANSFORMERS_VERBOSITY"] = "error"
torch.set_num_threads(2)
from transformers import AutoModelForSequenceClassification

M = os.path.expanduser("~/.cache/rankdistill/bench/minilm-scifact-probe")
m = AutoModelForSequenceClassification.from_pretrained(M).eval().to(torch.bfloat16)
print(m.config._attn_implementation)
x = {
    "input_ids": torch.randint(1000, 20000, (32, 256)),
    "attention_mask": torch.ones(32, 256, dtype=torch.long),
}
with torch.inference_mode():
    for _ in range(2):
        m(**x)
    from torch.profiler import profile, ProfilerActivity

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            m(**x)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
with torch.inference_mode():
    t = time.perf_counter()
    m(**x)
    m(**x)
    print("pairs/s", 64 / (time.perf_counter() - t))
    x2 = {"input_ids": x["input_ids"]}
    t = time.perf_counter()
    m(**x2)
    m(**x2)
    print("no mask pairs/s", 64 / (time.perf_counter() - t))
