"""`rankdistill doctor --llm SPEC`: what an LLM server or local backend can do, and how each teacher will
use it."""

from __future__ import annotations

import sys

import typer

from rankdistill.cli.app import app


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    out = []
    for r in [header, *rows]:
        out.append("  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip())
    return out


def teacher_methods(llm) -> list[tuple[str, str, str]]:
    """(teacher, "ok"/"no", how it labels or why it cannot) for every teacher that runs on an LLM: the
    pointwise ones of the TEACHERS registry (their own `describe_method`, the choice they label with),
    listwise (and its FIRST method), reasoning and query generation."""
    from rankdistill.errors import RankdistillError
    from rankdistill.teachers import TEACHERS
    from rankdistill.teachers.listwise import ListwiseTeacher, supports_json_schema

    rows: list[tuple[str, str, str]] = []
    for name in TEACHERS.names():
        entry = TEACHERS.entry(name)
        if entry.info.get("arg") != "llm":
            continue
        teacher = TEACHERS.get(name)(llm, **entry.info.get("options", {}))
        try:
            rows.append((name, "ok", teacher.describe_method()))
        except (RankdistillError, ValueError) as exc:
            rows.append((name, "no", str(exc)))
    caps = llm.capabilities()
    try:
        constrained = supports_json_schema(llm)
    except RankdistillError as exc:
        constrained, why = False, str(exc)
    else:
        why = ""
    mode = caps.json_mode() or getattr(llm, "json_mode", None)
    how = (
        f"JSON constrained by the schema ({mode})"
        if constrained
        else f"free text, parsed leniently (no JSON-schema output{': ' + why if why else ''})"
    )
    rows.append(("listwise", "ok", f"generation; {how}"))
    try:  # FIRST: one token's logits over a default window's 20 identifiers
        rows.append(("listwise first", "ok", ListwiseTeacher(llm, method="first").describe_method()))
    except (RankdistillError, ValueError) as exc:
        rows.append(("listwise first", "no", str(exc)))
    rows.append(("reasoning", "ok", f"generation; {how}; checked, retried when invalid"))
    filter_v1 = "yes" if caps.generation_logprobs else "no (no generation log-probabilities: use 'teacher')"
    rows.append(("querygen", "ok", f"generation; InPars v1 'logprob' filter: {filter_v1}"))
    return rows


@app.command("doctor")
def doctor_cmd(
    llm: str = typer.Option(
        ...,
        "--llm",
        help="An LLM spec: openai:http://host:8000/v1[#model][?options], llamacpp:<gguf>, hf:<folder>.",
    ),
) -> None:
    """Probe an LLM server or local backend: what works (completions, echo and top log-probabilities,
    vLLM prompt_logprobs, chat, JSON-schema output, context length, chat template), and which method each
    teacher will use there. Exits 2 with one line when the backend cannot be reached or loaded."""
    from rankdistill.errors import RankdistillError
    from rankdistill.llm import load_llm

    try:
        model = load_llm(llm)
    except RankdistillError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        caps = model.capabilities()
        typer.echo(
            f"backend: {caps.backend}  at: {caps.where}  model: {caps.model or '?'}  endpoint: {caps.endpoint}"
        )
        typer.echo("")
        for line in _table(caps.rows(), ("capability", "works", "detail")):
            typer.echo(line)
        typer.echo("")
        for line in _table(teacher_methods(model), ("teacher", "", "method")):
            typer.echo(line)
    except RankdistillError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        model.close()
    sys.stdout.flush()
