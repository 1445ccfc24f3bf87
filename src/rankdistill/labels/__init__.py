"""labels layer: the SQLite label store, the generic resumable runner, and pointwise labelling on top."""

from rankdistill.labels.pointwise import StoreScorer, label_candidates, label_run, pair_key, store_scorer
from rankdistill.labels.runner import LabelJob, RunResult, RunStats, run_jobs
from rankdistill.labels.store import KINDS, LABEL_KINDS, LabelRecord, LabelStore

__all__ = [
    "KINDS",
    "LABEL_KINDS",
    "LabelJob",
    "LabelRecord",
    "LabelStore",
    "RunResult",
    "RunStats",
    "StoreScorer",
    "label_candidates",
    "label_run",
    "pair_key",
    "run_jobs",
    "store_scorer",
]
