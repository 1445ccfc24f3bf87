"""Each module in its layer (DESIGN.md): it imports its own package or a lower layer, never a higher one,
never a peer on the same layer, never another package's private name. Every import counts, including
those inside functions (a lazy import that goes up is still a dependency that goes up)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "rankdistill"

# lowest first; modules on one line are peers
LAYERS = [
    {
        "errors",
        "utils",
        "models",
        "validation",
        "hardware",
        "fingerprint",
        "version",
        "registry",
        "terms",
        "http_json",
        "pipelining",
    },
    {"data"},
    {"retrieval", "evaluation"},
    {"llm"},
    {"teachers"},
    {"labels"},
    {"students"},
    {"training"},
    {"inference"},
    {"server", "report"},
    {"pipeline"},
    {"cli"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(module: str) -> str:
    """'rankdistill.labels.store' -> 'labels'; the root package itself -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("rankdistill")
        ):
            for alias in node.names:
                yield node.lineno, node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rankdistill"):
                    yield node.lineno, alias.name, None


def layer_violations(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        me = _unit(".".join(rel.parts))
        if me in ("__init__", "__main__"):  # the root package re-exports lazily; __main__ is the CLI
            continue
        assert me in LAYER, f"{path}: module {me!r} is in no layer of DESIGN.md (add it to LAYERS)"
        for line, module, name in _imports(path):
            other = _unit(module)
            where = f"{path.relative_to(package.parent)}:{line}"
            if other == "":
                problems.append(f"{where}: imports the package root ({name}); import from its module")
                continue
            if other != me:
                if LAYER[other] > LAYER[me] or (LAYER[other] == LAYER[me] and LAYER[me] > 0):
                    problems.append(
                        f"{where}: {me} (layer {LAYER[me]}) imports {module} (layer {LAYER[other]})"
                    )
                private = [p for p in module.split(".")[2:] if p.startswith("_") and not p.startswith("__")]
                if name and name.startswith("_") and not name.startswith("__"):
                    private.append(name)
                if private:
                    problems.append(f"{where}: uses the private name {module}.{name} of another package")
    return problems


def test_no_import_goes_up_a_layer_or_into_a_private_name():
    problems = layer_violations()
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_violation(tmp_path):
    """The walk is real: a module that imports upwards is reported."""
    fake = tmp_path / "rankdistill"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text(
        "def f():\n    from rankdistill.cli.app import app\n    from rankdistill.llm._common import x\n"
    )
    problems = layer_violations(fake)
    assert any("data (layer 1) imports rankdistill.cli.app (layer 11)" in p for p in problems), problems
    assert any("private name rankdistill.llm._common.x" in p for p in problems), problems
