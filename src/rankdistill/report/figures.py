"""The report's plots, drawn with matplotlib into PNG bytes (no display, no global pyplot state)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from rankdistill.errors import require
from rankdistill.report.results import EvaluationResults, SystemResult

# One colour per role, so BM25 / teacher / student look the same in every plot.
ROLE_COLORS = {"baseline": "#7f7f7f", "teacher": "#1f77b4", "student": "#ff7f0e", "other": "#2ca02c"}
_EXTRA_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
DPI = 110


@dataclass
class Figure:
    """A rendered plot: file stem, PNG bytes, and a caption saying what it shows."""

    name: str
    title: str
    png: bytes
    caption: str


def _figure(width: float, height: float):
    require("matplotlib", "report", "Drawing report plots")
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _colors(systems: list[SystemResult]) -> list[str]:
    used: dict[str, int] = {}
    out = []
    for s in systems:
        n = used.get(s.role, 0)
        used[s.role] = n + 1
        out.append(ROLE_COLORS[s.role] if n == 0 else _EXTRA_COLORS[(len(out)) % len(_EXTRA_COLORS)])
    return out


def metrics_bar(results: EvaluationResults) -> Figure:
    """Grouped bars: each measure, one bar per system, value written above it."""
    measures = [m for m in results.measures if any(m in s.metrics for s in results.systems)]
    systems = results.systems
    fig, ax = _figure(7.5, 4.0)
    width = 0.8 / len(systems)
    for i, (system, color) in enumerate(zip(systems, _colors(systems), strict=True)):
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(measures))]
        ys = [system.metrics.get(m, 0.0) for m in measures]
        bars = ax.bar(xs, ys, width=width * 0.95, color=color, label=system.name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(range(len(measures)), measures)
    top = max((s.metrics.get(m, 0.0) for s in systems for m in measures), default=1.0)
    ax.set_ylim(0, min(1.0, top * 1.15) if top <= 1.0 else top * 1.15)
    ax.set_ylabel("score")
    ax.set_title(f"Effectiveness on {_where(results)}")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return Figure(
        "metrics",
        "Metrics",
        _png(fig),
        f"{', '.join(measures)} of each system on the same candidates ({_where(results)}).",
    )


def quality_vs_throughput(results: EvaluationResults) -> Figure:
    """The primary measure against pairs scored per second (log x): up and to the right is better."""
    measure = results.primary_measure()
    fig, ax = _figure(6.5, 4.2)
    shown, skipped = [], []
    for i, (system, color) in enumerate(zip(results.systems, _colors(results.systems), strict=True)):
        if not system.pairs_per_second:
            skipped.append(system.name)
            continue
        y = system.metrics[measure]
        ax.scatter(
            [system.pairs_per_second], [y], s=90, color=color, zorder=3, edgecolors="black", linewidths=0.5
        )
        label = system.name + (f"\n{_human(system.parameters)} params" if system.parameters else "")
        ax.annotate(
            label,
            (system.pairs_per_second, y),
            textcoords="offset points",
            xytext=(8, 6 if i % 2 == 0 else -22),
            fontsize=8,
        )
        shown.append(system)
    ax.set_xscale("log")
    if shown:
        xs = [s.pairs_per_second for s in shown]
        ax.set_xlim(min(xs) / 4, max(xs) * 8)
        ys = [s.metrics[measure] for s in shown]
        pad = max(0.02, (max(ys) - min(ys)) * 0.25)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_xlabel("(query, document) pairs per second (log scale)")
    ax.set_ylabel(measure)
    ax.set_title(f"Quality vs throughput ({measure})")
    ax.grid(alpha=0.3)
    caption = f"{measure} against scoring throughput; up and to the right is better."
    if skipped:
        caption += f" Not shown (no throughput measured): {', '.join(skipped)}."
    return Figure("quality_vs_throughput", "Quality vs throughput", _png(fig), caption)


def per_query_difference(
    results: EvaluationResults,
    system: str | None = None,
    baseline: str | None = None,
    measure: str | None = None,
) -> Figure | None:
    """Per-query `system - baseline` on one measure, sorted: how many queries win, tie, lose.

    Defaults: the student against the baseline (BM25) on the primary measure. None when either
    lacks per-query values for that measure.
    """
    sys_r = _pick(results, system, "student")
    base_r = _pick(results, baseline, "baseline")
    if sys_r is None or base_r is None:
        return None
    measure = measure or results.primary_measure()
    a, b = sys_r.per_query.get(measure), base_r.per_query.get(measure)
    if not a or not b:
        return None
    qids = sorted(set(a) & set(b))
    diffs = sorted((a[q] - b[q] for q in qids), reverse=True)
    wins, losses = sum(d > 1e-9 for d in diffs), sum(d < -1e-9 for d in diffs)
    ties = len(diffs) - wins - losses
    fig, ax = _figure(7.5, 3.6)
    colors = ["#2ca02c" if d > 1e-9 else "#d62728" if d < -1e-9 else "#7f7f7f" for d in diffs]
    ax.bar(range(len(diffs)), diffs, width=1.0, color=colors)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlim(-0.5, len(diffs) - 0.5)
    ax.set_xlabel(f"queries, sorted by difference (n={len(diffs)})")
    ax.set_ylabel(f"Δ {measure}")
    mean = sum(diffs) / len(diffs) if diffs else 0.0
    ax.set_title(
        f"{sys_r.name} − {base_r.name}, per query: {wins} better, {ties} tied, {losses} worse "
        f"(mean {mean:+.3f})",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    caption = (
        f"{measure} of {sys_r.name} minus {base_r.name} on each of {len(diffs)} queries: "
        f"{wins} better, {ties} tied, {losses} worse; mean difference {mean:+.4f}."
    )
    return Figure("per_query_difference", "Per-query difference", _png(fig), caption)


def all_figures(results: EvaluationResults) -> list[Figure]:
    figures = [metrics_bar(results), quality_vs_throughput(results)]
    diff = per_query_difference(results)
    if diff is not None:
        figures.append(diff)
    return figures


def _pick(results: EvaluationResults, name: str | None, role: str) -> SystemResult | None:
    if name is None:
        return results.by_role(role)
    return next((s for s in results.systems if s.name == name), None)


def _where(results: EvaluationResults) -> str:
    parts = [p for p in (results.dataset, results.split) if p]
    return "/".join(parts) or "the evaluation queries"


def _human(n: int | float | None) -> str:
    if not n:
        return "0"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))
