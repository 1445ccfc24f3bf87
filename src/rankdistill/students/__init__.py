"""Students: small rankers trained from teacher labels.

- `encoder`: a cross-encoder over any local HF encoder (default all-MiniLM-L6-v2), optionally cut to the
  first N layers; saved as a plain HF folder plus `rankdistill.json`.
- `metadata`: `rankdistill.json`, what a student folder is; one reader for every student type.
- `decoder`: the decoder student (a causal LM with LoRA and a ranking head), loaded on demand.
- `term_control`: RRADistill's Term Control Layer, a training-only module (owned by
  `rankdistill.training.losses.TermControlLoss`, so it never ends up in a saved student).
"""

from __future__ import annotations

from rankdistill.students.encoder import load_encoder_student, load_student, save_student, student_scores
from rankdistill.students.metadata import METADATA_FILE, STUDENT_TYPES, read_metadata, write_metadata
from rankdistill.students.term_control import ENGLISH_STOPWORDS, TermControlLayer, TermMatcher

__all__ = [
    "ENGLISH_STOPWORDS",
    "METADATA_FILE",
    "STUDENT_TYPES",
    "TermControlLayer",
    "TermMatcher",
    "load_encoder_student",
    "load_student",
    "read_metadata",
    "save_student",
    "student_scores",
    "write_metadata",
]
