"""Resumable stages under one run folder, each skipped when its inputs and settings have not changed.

Every stage owns one folder `<run_dir>/<stage>/` and writes a `manifest.json` there:

- `input_hash`: hash of the stage's settings, of the output hashes of the stages it reads, and of
  fingerprints of files outside the run folder it reads (the dataset);
- `outputs`: every file it wrote with its SHA-256 and size, and `output_hash` over them.

A stage runs in `<run_dir>/.<stage>.tmp/` and replaces its folder only when it succeeds, so a stage that
fails leaves the earlier stages' outputs (and its own previous outputs) intact. A rerun skips a stage
whose manifest's input hash matches and whose files are all still there; because a downstream stage
hashes its upstream's *outputs*, a stage that reruns and writes the same files does not invalidate
the stages after it. `run(from_stage=...)` forces that stage and every later one to run.
A failed stage's temporary folder is kept and reused by the next attempt with the same input hash, so
a stage with its own resume journal (query generation, labels, training checkpoints) continues.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.utils import stable_hash

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STATUS = "pipeline.json"
_ATTEMPT = ".attempt"
MANIFEST_VERSION = 1


class StageError(RankdistillError):
    """A stage failed; earlier stages' outputs are intact and a rerun resumes from this stage."""

    def __init__(self, stage: str, cause: BaseException):
        self.stage = stage
        self.cause = cause
        super().__init__(
            f"stage {stage!r} failed: {type(cause).__name__}: {cause}. "
            f"Outputs of the earlier stages are kept; run again to resume from {stage!r}."
        )


@dataclass
class StageContext:
    """What a stage function gets: where to write, where its upstream stages wrote, shared state."""

    name: str
    out: Path  # write everything here (a temporary folder, renamed into place on success)
    run_dir: Path
    config: Any
    shared: dict[str, Any]  # objects reused across stages of one process (the loaded dataset, BM25 index)

    def stage_dir(self, name: str) -> Path:
        """The output folder of an earlier stage."""
        path = self.run_dir / name
        if not (path / MANIFEST).is_file():
            raise RankdistillError(
                f"stage {self.name!r} needs the outputs of stage {name!r}, which has not run"
            )
        return path

    def stage_summary(self, name: str) -> dict[str, Any]:
        return read_manifest(self.stage_dir(name)).get("summary", {})


@dataclass
class Stage:
    """One step. `run(ctx)` writes under ctx.out and returns a JSON-able summary (kept in the manifest).

    `settings(config)` is the part of the config the outputs depend on; `after` the earlier stages whose
    outputs it reads; `external(config)` fingerprints of inputs outside the run folder; `publish` copies
    results somewhere else once the stage is done (or skipped), e.g. the report to the run folder."""

    name: str
    run: Callable[[StageContext], dict[str, Any] | None]
    settings: Callable[[Any], Any] = lambda config: None
    after: tuple[str, ...] = ()
    external: Callable[[Any], Any] | None = None
    publish: Callable[[Path, Path], None] | None = None
    description: str = ""


@dataclass
class StageResult:
    name: str
    status: str  # "done" | "skipped" | "failed" | "not run" | "running"
    seconds: float = 0.0  # wall time in this invocation (0 when skipped)
    input_hash: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "input_hash": self.input_hash,
            "reason": self.reason,
        }


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_outputs(folder: Path) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of every file under `folder` (the manifest itself excluded). A symbolic link is
    recorded by its target, not followed: links point at inputs (a corpus), which are not outputs."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel in (MANIFEST, _ATTEMPT):
            continue
        if path.is_symlink():
            out[rel] = {"link": os.readlink(path)}
        elif path.is_file():
            out[rel] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    return out


def input_fingerprint(path: str | Path) -> dict[str, Any]:
    """A cheap fingerprint of an input file or folder outside the run (path, size, mtime of each file),
    as make does: rehashing a large corpus on every run would cost more than some stages."""
    path = Path(path).resolve()
    if path.is_file():
        st = path.stat()
        return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if path.is_dir():
        files = {}
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                files[p.relative_to(path).as_posix()] = [st.st_size, st.st_mtime_ns]
        return {"path": str(path), "files": files}
    return {"path": str(path), "missing": True}


def _code_hash(fn: Callable) -> str | None:
    """Hash of the stage function's code (its syntax tree, so formatting and comments do not count):
    editing what a stage does reruns it; the package version covers the libraries it calls."""
    import ast
    import inspect
    import textwrap

    try:
        return stable_hash(ast.dump(ast.parse(textwrap.dedent(inspect.getsource(fn)))), 16)
    except (OSError, TypeError, SyntaxError):
        return None


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Pipeline:
    """Stages in order over one run folder. `run()` returns one StageResult per stage."""

    def __init__(self, stages: Sequence[Stage], config: Any, run_dir: str | Path, *, version: str = ""):
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        for i, s in enumerate(stages):
            unknown = [a for a in s.after if a not in names[:i]]
            if unknown:
                raise ValueError(f"stage {s.name!r} reads {unknown}, which are not earlier stages")
        self.stages = list(stages)
        self.config = config
        self.run_dir = Path(run_dir)
        self.version = version
        self.shared: dict[str, Any] = {}
        self._last_error: BaseException | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def _check_name(self, name: str | None, what: str) -> None:
        if name is not None and name not in self.names:
            raise RankdistillError(f"{what}: unknown stage {name!r}; stages are {', '.join(self.names)}")

    def input_hash(self, stage: Stage) -> tuple[str, dict[str, Any]]:
        upstream = {}
        for name in stage.after:
            manifest = read_manifest(self.run_dir / name)
            upstream[name] = manifest.get("output_hash")
        inputs = {
            "stage": stage.name,
            "settings": stage.settings(self.config),
            "upstream": upstream,
            "external": stage.external(self.config) if stage.external else None,
            "version": self.version,
            "code": _code_hash(stage.run),
        }
        return stable_hash(inputs, 40), inputs

    def is_current(self, stage: Stage, input_hash: str) -> tuple[bool, str]:
        """Whether the stage's folder holds outputs for exactly these inputs (and they are all there)."""
        folder = self.run_dir / stage.name
        manifest = read_manifest(folder)
        if not manifest:
            return False, "never ran"
        if manifest.get("input_hash") != input_hash:
            return False, "inputs or settings changed"
        for rel, info in manifest.get("outputs", {}).items():
            p = folder / rel
            if "link" in info:
                if not p.is_symlink():
                    return False, f"output {rel} is missing"
            elif not p.is_file() or p.stat().st_size != info["size"]:
                return False, f"output {rel} is missing or changed"
        return True, "up to date"

    def status(self) -> list[dict[str, Any]]:
        """Each stage's state without running anything: up to date, or why it would run."""
        rows = []
        for stage in self.stages:
            try:
                h, _ = self.input_hash(stage)
                current, why = self.is_current(stage, h)
            except Exception as exc:  # a config that cannot be fingerprinted yet (dataset missing)
                current, why = False, f"cannot check: {exc}"
            rows.append({"name": stage.name, "current": current, "reason": why})
        return rows

    def run(
        self,
        from_stage: str | None = None,
        until: str | None = None,
        on_event: Callable[[StageResult], None] | None = None,
    ) -> list[StageResult]:
        """Run the stages in order (up to `until`), skipping up-to-date ones, forcing `from_stage` and after."""
        self._check_name(from_stage, "--from")
        self._check_name(until, "--until")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        forced = False
        results: list[StageResult] = []
        stopped = False
        for stage in self.stages:
            if stopped:
                results.append(StageResult(stage.name, "not run", reason=f"after --until {until}"))
                continue
            forced = forced or stage.name == from_stage
            # recorded before the stage starts, so a process that dies in it (a native crash, the OOM
            # killer) leaves the name of the stage it died in for whoever reads pipeline.json
            self._write_status([*results, StageResult(stage.name, "running", reason=f"pid {os.getpid()}")])
            result = self._run_stage(stage, forced)
            results.append(result)
            self._write_status(results)
            if on_event is not None:
                on_event(result)
            if result.status == "failed":
                for rest in self.stages[len(results) :]:
                    results.append(StageResult(rest.name, "not run", reason=f"{stage.name} failed"))
                self._write_status(results)
                raise StageError(stage.name, self._last_error)
            stopped = stage.name == until
        return results

    def _run_stage(self, stage: Stage, forced: bool) -> StageResult:
        input_hash, inputs = self.input_hash(stage)
        final = self.run_dir / stage.name
        if not forced:
            current, why = self.is_current(stage, input_hash)
            if current:
                log.info("stage %s: up to date, skipped", stage.name)
                if stage.publish is not None:
                    stage.publish(final, self.run_dir)
                manifest = read_manifest(final)
                return StageResult(stage.name, "skipped", 0.0, input_hash, manifest.get("summary", {}), why)
        else:
            why = "forced (--from)"
        tmp = self.run_dir / f".{stage.name}.tmp"
        attempt = tmp / _ATTEMPT
        # Reuse a failed attempt's folder only for the same inputs: its resume journals are then valid.
        if tmp.exists() and not (attempt.is_file() and attempt.read_text() == input_hash and not forced):
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        attempt.write_text(input_hash)
        log.info("stage %s: running (%s)", stage.name, why)
        t0 = time.perf_counter()
        ctx = StageContext(stage.name, tmp, self.run_dir, self.config, self.shared)
        try:
            summary = stage.run(ctx) or {}
        except Exception as exc:  # KeyboardInterrupt passes through: the tmp folder stays for resuming
            self._last_error = exc
            log.exception("stage %s failed", stage.name)
            return StageResult(
                stage.name,
                "failed",
                time.perf_counter() - t0,
                input_hash,
                reason=f"{type(exc).__name__}: {exc}",
            )
        seconds = time.perf_counter() - t0
        outputs = hash_outputs(tmp)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "stage": stage.name,
            "input_hash": input_hash,
            "inputs": inputs,
            "outputs": outputs,
            "output_hash": stable_hash(outputs, 40),
            "summary": summary,
            "seconds": round(seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        attempt.unlink(missing_ok=True)
        _write_json(tmp / MANIFEST, manifest)
        self._swap(tmp, final)
        if stage.publish is not None:
            stage.publish(final, self.run_dir)
        return StageResult(stage.name, "done", seconds, input_hash, summary, why)

    @staticmethod
    def _swap(tmp: Path, final: Path) -> None:
        """Replace the stage folder by the new one; at every moment one complete version exists."""
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)

    def _write_status(self, results: list[StageResult]) -> None:
        status = {
            "stages": [r.to_dict() for r in results],
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write_json(self.run_dir / STATUS, status)


def read_status(run_dir: str | Path) -> list[dict[str, Any]]:
    """The stage table of the last `run` in this folder (name, status, seconds)."""
    path = Path(run_dir) / STATUS
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("stages", [])
    except (OSError, json.JSONDecodeError):
        return []


def running_stage(run_dir: str | Path) -> str | None:
    """The stage the last `run` in this folder was in when it stopped without finishing it (None when
    every stage it started ended, in success or failure)."""
    for row in read_status(run_dir):
        if row.get("status") == "running":
            return row.get("name")
    return None
