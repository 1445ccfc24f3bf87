# ruff: noqa
# Exploration script of session 2, kept as run so the README figures it produced can be reproduced; see README.md here.
import os
import pickle
import sys
import time

import torch

OUT = os.environ.get("EXPLORE_DIR", "/tmp/exp")  # cached subset, outputs; made by prep_subset.py
os.makedirs(OUT, exist_ok=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["RANKDISTILL_PROGRESS"] = "0"
torch.set_num_threads(2)
from rankdistill.data.types import Run
from rankdistill.students import load_encoder_student
from rankdistill.training.data import pairs_from_teacher_run
from rankdistill.training.losses import build_loss
from rankdistill.training.trainer import TrainSettings, train

D = pickle.load(open(OUT + "/scifact.pkl", "rb"))
rows = pairs_from_teacher_run(D["train_q"], Run(D["ttr"]), D["docs"], 8, 3, seed=42)
model = load_encoder_student("minilm", None, max_length=128, seed=42)
t = time.time()
train(
    model,
    build_loss(model, [{"name": "listnet"}]),
    rows,
    OUT + "/out_p",
    TrainSettings(
        max_steps=int(sys.argv[1]),
        batch_size=16,
        learning_rate=2e-4,
        logging_steps=10,
        save_steps=10000,
        resume=False,
        bf16=sys.argv[2] == "1",
    ),
)
print("per step", (time.time() - t) / int(sys.argv[1]))
