"""report.md (plots as PNG files beside it) and a self-contained report.html (plots inlined as base64)."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.report.figures import Figure, all_figures
from rankdistill.report.results import EvaluationResults, SystemResult


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    figures: list[Path] = field(default_factory=list)


def _fmt_rate(x: float | None) -> str:
    if not x:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _fmt_params(n: int | None, note: str | None = None) -> str:
    if n is None:
        return note or "–"
    if n == 0:
        return "0 (no model)"
    return f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n:,}"


def summary_rows(results: EvaluationResults) -> tuple[list[str], list[list[str]]]:
    """The results table: header and rows (one per system), values as display strings."""
    measures = [m for m in results.measures if any(m in s.metrics for s in results.systems)]
    header = ["system", "role", *measures, "pairs/s", "parameters"]
    rows = []
    for s in results.systems:
        cells = [f"{s.metrics[m]:.4f}" if m in s.metrics else "–" for m in measures]
        rows.append(
            [
                s.name,
                s.role,
                *cells,
                _fmt_rate(s.pairs_per_second)
                + (
                    f" (cold {_fmt_rate(s.pairs_per_second_cold)})"
                    if s.pairs_per_second_cold and s.pairs_per_second_cold != s.pairs_per_second
                    else ""
                ),
                _fmt_params(s.parameters, s.parameters_note),
            ]
        )
    return header, rows


def headline(results: EvaluationResults) -> str:
    """One sentence: the student against BM25 (and the teacher) on the primary measure."""
    m = results.primary_measure()
    student, base, teacher = (results.by_role(r) for r in ("student", "baseline", "teacher"))
    if student is None or base is None:
        best = max(results.systems, key=lambda s: s.metrics[m])
        return f"Best {m}: {best.name} ({best.metrics[m]:.4f})."
    diff = student.metrics[m] - base.metrics[m]
    rel = f" ({100 * diff / base.metrics[m]:+.1f}%)" if base.metrics[m] else ""
    verdict = "beats" if diff > 0 else "does not beat"
    text = f"The student {verdict} {base.name}: {m} {student.metrics[m]:.4f} vs {base.metrics[m]:.4f}, {diff:+.4f}{rel}."
    if teacher is not None:
        text += f" Teacher: {teacher.metrics[m]:.4f}."
        size = size_text(student, teacher)
        if size:
            text += f" {size}"
    if student.pairs_per_second and teacher is not None and teacher.pairs_per_second:
        ratio = student.pairs_per_second / teacher.pairs_per_second
        cold = teacher.pairs_per_second_cold
        cold_ratio = student.pairs_per_second / cold if cold and cold != teacher.pairs_per_second else None
        text += f" {speed_ratio_text(ratio)}"
        if cold_ratio is not None:
            text += f" Against the teacher cold (nothing cached): {cold_speed_text(cold_ratio)}."
        if teacher.metrics.get(m):
            text += f" {paid_off_text(student.metrics[m] / teacher.metrics[m], ratio, m)}"
    return text


def cold_speed_text(ratio: float) -> str:
    """The student's throughput against the cold teacher's, in the words of `speed_ratio_text`."""
    if ratio >= 1:
        return f"{ratio:.3g}x as many pairs per second"
    return f"{1 / ratio:.3g}x slower ({ratio:.2g}x its pairs per second)"


def size_text(student: SystemResult, teacher: SystemResult) -> str:
    """How much smaller the student is than the teacher, or why the teacher's size is unknown; "" when
    the student's size is unknown or the teacher runs no model (BM25)."""
    if not student.parameters:
        return ""
    have = f"The student has {_fmt_params(student.parameters)} parameters"
    if teacher.parameters is None:
        return f"{have}; the teacher's are {teacher.parameters_note}." if teacher.parameters_note else ""
    if teacher.parameters == 0:
        return ""
    ratio = teacher.parameters / student.parameters
    than = f"the teacher ({_fmt_params(teacher.parameters)})"
    if 0.95 <= ratio <= 1.05:
        return f"{have}, about as many as {than}."
    if ratio >= 1:
        return f"{have}, {ratio:.3g}x fewer than {than}."
    return f"{have}, {1 / ratio:.3g}x more than {than}."


def speed_ratio_text(ratio: float) -> str:
    """The student's throughput against the teacher's, readable at any scale (0.03x is "33x slower")."""
    if ratio >= 1:
        return f"The student scores {ratio:.3g}x as many pairs per second as the teacher."
    return f"The student is {1 / ratio:.3g}x slower than the teacher ({ratio:.2g}x its pairs per second)."


# what distilling must buy to be worth it (InRanker's trade): most of the teacher's quality, much cheaper
KEEP_SHARE, MIN_SPEEDUP = 0.95, 10.0


def paid_off_text(share: float, ratio: float, measure: str) -> str:
    """Whether distillation paid off: the student keeps KEEP_SHARE of the teacher's measure at
    MIN_SPEEDUP times its throughput."""
    kept = f"keeps {100 * share:.1f}% of the teacher's {measure} at {ratio:.3g}x its pairs per second"
    if share >= KEEP_SHARE and ratio >= MIN_SPEEDUP:
        return f"Distillation paid off: the student {kept}."
    return (
        f"Distillation did not pay off: the student {kept} "
        f"(worth it from {100 * KEEP_SHARE:.0f}% at {MIN_SPEEDUP:.0f}x)."
    )


def _config_text(config: dict[str, Any] | str | None) -> str:
    if config is None:
        return ""
    if isinstance(config, str):
        return config
    import yaml

    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def explanation_lines(results: EvaluationResults) -> list[str]:
    """What a student that explains (the decoder) wrote, measured by the evaluate stage: one line each."""
    lines = []
    for s in results.systems:
        ex = (s.model_extra or {}).get("explanations")
        if not isinstance(ex, dict):
            continue

        def share(key: str, ex: dict = ex) -> str:
            v = ex.get(key)
            return f"{100 * v:.0f}%" if isinstance(v, int | float) else "–"

        lines.append(
            f"{s.name}: {share('explicit_parsed')} of {ex.get('sample', 0)} explanations end with a relevance "
            f"verdict; {share('comparison_parsed')} of {ex.get('comparisons', 0)} comparisons name a document, "
            f"and {share('comparison_agrees')} of those agree with the student's own scores."
        )
    return lines


LABEL_HEADER = [
    "phase",
    "kind",
    "queries",
    "pairs",
    "failed",
    "fallback",
    "dropped",
    "hard negatives",
    "answers repaired",
    "cut at token limit",
    "explicit ok / failed",
    "comparison ok / failed",
]


def label_rows(summary: dict[str, Any] | None) -> list[list[str]]:
    """The labels stage's summary, a row per phase: what the teacher produced, and for LLM-taught kinds
    how many answers were repaired, cut, failed, replaced by pointwise labels or left out."""
    rows = []
    for phase, ph in (summary or {}).items():
        if not isinstance(ph, dict) or "pairs" not in ph:
            continue
        lw = ph.get("listwise") or {}
        repairs = lw.get("repairs") or {}

        def n(key: str, d: dict = ph) -> str:
            return str(d[key]) if key in d else "–"

        def ok_failed(key: str, ph: dict = ph) -> str:
            r = ph.get(key)
            return f"{r.get('ok', 0)} / {r.get('failed', 0)}" if isinstance(r, dict) else "–"

        cut = lw.get("truncated_rate")
        rows.append(
            [
                phase,
                str(summary.get("kind", "pointwise")),
                n("queries"),
                n("pairs"),
                n("failed"),
                n("fallback"),
                n("dropped"),
                n("hard_negatives"),
                f"{repairs['answers_repaired']} / {repairs['answers']}" if "answers" in repairs else "–",
                f"{100 * cut:.0f}%" if isinstance(cut, int | float) else "–",
                ok_failed("explicit"),
                ok_failed("comparison"),
            ]
        )
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _stage_rows(stages: list[dict[str, Any]] | None) -> list[list[str]]:
    rows = []
    for st in stages or []:
        secs = st.get("seconds")
        rows.append(
            [
                str(st.get("name", "")),
                str(st.get("status", "")),
                f"{secs:.1f}" if isinstance(secs, int | float) else "–",
            ]
        )
    return rows


def render_markdown(
    results: EvaluationResults,
    figures: list[Figure],
    figure_dir: str,
    config_text: str,
    title: str,
    stages: list[dict[str, Any]] | None = None,
    labels: dict[str, Any] | None = None,
) -> str:
    header, rows = summary_rows(results)
    out = [f"# {title}", "", headline(results), ""]
    facts = [
        ("dataset", results.dataset),
        ("split", results.split),
        ("candidates", results.candidates),
        ("queries", str(results.queries) if results.queries else ""),
    ]
    out += [f"- **{k}**: {v}" for k, v in facts if v]
    out += ["", "## Results", "", _md_table(header, rows), ""]
    out += [_system_notes_md(s) for s in results.systems if s.description]
    explained = explanation_lines(results)
    if explained:
        out += ["", "## Explanations", "", *[f"- {line}" for line in explained]]
    labelled = label_rows(labels)
    if labelled:
        out += ["", "## Labels", "", _md_table(LABEL_HEADER, labelled)]
    out += ["", "## Plots", ""]
    for fig in figures:
        out += [f"### {fig.title}", "", f"![{fig.title}]({figure_dir}/{fig.name}.png)", "", fig.caption, ""]
    if stages:
        out += ["## Stages", "", _md_table(["stage", "status", "seconds"], _stage_rows(stages)), ""]
    if config_text:
        out += ["## Configuration", "", "```yaml", config_text.rstrip(), "```", ""]
    return "\n".join(out)


def _system_notes_md(s: SystemResult) -> str:
    return f"- **{s.name}**: {s.description}"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 980px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ff7f0e; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: .35em .7em; text-align: right; }
th { background: #f3f3f3; } td:first-child, td:nth-child(2), th:first-child { text-align: left; }
tr.student td { background: #fff3e6; } tr.teacher td { background: #eaf2fa; }
.headline { font-size: 1.1em; background: #f7f7f7; border-left: 4px solid #ff7f0e; padding: .6em 1em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: .85em; }
"""


def render_html(
    results: EvaluationResults,
    figures: list[Figure],
    config_text: str,
    title: str,
    stages: list[dict[str, Any]] | None = None,
    labels: dict[str, Any] | None = None,
) -> str:
    """One HTML file with everything inlined: CSS, and plots as data: URIs (no external requests)."""
    e = html.escape
    header, rows = summary_rows(results)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="headline">{e(headline(results))}</p>',
    ]
    facts = [
        ("dataset", results.dataset),
        ("split", results.split),
        ("candidates", results.candidates),
        ("queries", str(results.queries) if results.queries else ""),
    ]
    parts.append("<ul>" + "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in facts if v) + "</ul>")
    parts.append(
        "<h2>Results</h2><table><thead><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in header)
        + "</tr></thead><tbody>"
    )
    for system, row in zip(results.systems, rows, strict=True):
        parts.append(f'<tr class="{e(system.role)}">' + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    notes = [s for s in results.systems if s.description]
    if notes:
        parts.append(
            "<ul>" + "".join(f"<li><b>{e(s.name)}</b>: {e(s.description)}</li>" for s in notes) + "</ul>"
        )
    explained = explanation_lines(results)
    if explained:
        parts.append("<h2>Explanations</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in explained) + "</ul>")
    labelled = label_rows(labels)
    if labelled:
        parts.append("<h2>Labels</h2><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in LABEL_HEADER))
        parts.append("</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in labelled]
        parts.append("</tbody></table>")
    parts.append("<h2>Plots</h2>")
    for fig in figures:
        data = base64.b64encode(fig.png).decode("ascii")
        parts.append(
            f'<figure id="{e(fig.name)}"><img alt="{e(fig.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(fig.caption)}</figcaption></figure>"
        )
    if stages:
        parts.append(
            "<h2>Stages</h2><table><thead><tr><th>stage</th><th>status</th><th>seconds</th></tr></thead><tbody>"
        )
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in _stage_rows(stages)]
        parts.append("</tbody></table>")
    if config_text:
        parts.append(f"<h2>Configuration</h2><pre>{e(config_text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    results: EvaluationResults,
    out_dir: str | Path,
    config: dict[str, Any] | str | None = None,
    title: str | None = None,
    stages: list[dict[str, Any]] | None = None,
    labels: dict[str, Any] | None = None,
) -> ReportFiles:
    """Write report.md, report.html and figures/*.png into `out_dir`; returns their paths.

    `config` (a dict or YAML text) is shown verbatim; `stages` (name, status, seconds) adds a timing table;
    `labels` (the labels stage's summary) a table of what the teacher produced and what failed.
    """
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    title = title or f"rankdistill report: {results.dataset or 'evaluation'}"
    figures = all_figures(results)
    config_text = _config_text(config)
    fig_paths = []
    for fig in figures:
        path = fig_dir / f"{fig.name}.png"
        path.write_bytes(fig.png)
        fig_paths.append(path)
    md = _write_text(
        out_dir / "report.md",
        render_markdown(results, figures, "figures", config_text, title, stages, labels),
    )
    page = _write_text(
        out_dir / "report.html", render_html(results, figures, config_text, title, stages, labels)
    )
    return ReportFiles(md, page, fig_paths)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
