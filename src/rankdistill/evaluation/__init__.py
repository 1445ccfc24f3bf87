"""Evaluation: effectiveness through ir_measures, efficiency of rankers."""

from rankdistill.evaluation.metrics import DEFAULT_MEASURES, evaluate, parse_measures

__all__ = ["DEFAULT_MEASURES", "evaluate", "parse_measures"]
