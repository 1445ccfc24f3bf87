"""Reports of a run: report.md and a self-contained report.html with matplotlib plots."""

from rankdistill.report.render import ReportFiles, write_report
from rankdistill.report.results import EvaluationResults, SystemResult, load_results, parse_results

__all__ = [
    "EvaluationResults",
    "ReportFiles",
    "SystemResult",
    "load_results",
    "parse_results",
    "write_report",
]
