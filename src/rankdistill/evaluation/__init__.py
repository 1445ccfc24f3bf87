"""Evaluation: effectiveness through ir_measures, efficiency of rankers."""

from rankdistill.evaluation.fusion import fuse_minmax
from rankdistill.evaluation.metrics import DEFAULT_MEASURES, evaluate, parse_measures

__all__ = ["DEFAULT_MEASURES", "evaluate", "fuse_minmax", "parse_measures"]
