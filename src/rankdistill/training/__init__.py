"""Training layer: losses (one module each), the trainer (Hugging Face Trainer via sentence-transformers'
CrossEncoderTrainer), training data, the dev evaluator, and the YAML config behind `rankdistill train`."""

from __future__ import annotations

from rankdistill.training.data import pairs_from_teacher_run, read_pairs_jsonl, to_dataset, write_pairs_jsonl
from rankdistill.training.trainer import DistillationTrainer, Phase, TrainSettings, train, train_phases

__all__ = [
    "DistillationTrainer",
    "Phase",
    "TrainSettings",
    "pairs_from_teacher_run",
    "read_pairs_jsonl",
    "to_dataset",
    "train",
    "train_phases",
    "write_pairs_jsonl",
]
