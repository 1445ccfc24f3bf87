"""Run a long command in a child process and say what happened when native code kills it.

A Python exception is caught and reported by the stage runner, but an illegal instruction (a native
library built for another CPU), a segmentation fault or the kernel's OOM killer ends the process at once:
nothing in it can print a word. `rankdistill run` therefore runs its stages in a child process and stays
behind as a small parent: when the child dies of a signal, the parent names the stage it died in (from
`pipeline.json`, which the runner writes before each stage starts), the signal, and what to try, and exits
with 128 + the signal number, as a shell would. The stages that finished keep their outputs, so the next
run resumes after them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

CHILD_ENV = "RANKDISTILL_SUPERVISED"

HINTS = {
    signal.SIGILL: (
        "illegal instruction: native code built for another CPU ran here. Reinstall with `make install` "
        "(portable llama.cpp build; `rankdistill -v` logs the llama.cpp CPU backend chosen) and check that "
        "nothing was built with -march=native on another machine"
    ),
    signal.SIGSEGV: (
        "segmentation fault in native code: the Python traceback above (fault handler) shows where; "
        "please report it with that traceback"
    ),
    signal.SIGBUS: "bus error in native code (often a truncated or changed memory-mapped model file)",
    signal.SIGFPE: "arithmetic fault in native code: the Python traceback above shows where",
    signal.SIGABRT: "native code aborted (a failed assertion): the message above it says why",
    signal.SIGKILL: (
        "killed from outside, most often by the kernel's out-of-memory killer (see `dmesg`); lower the "
        "batch sizes, n_ctx or threads, or free memory"
    ),
    signal.SIGTERM: "terminated from outside",
}


def is_child() -> bool:
    """True in the child process a supervisor started (which then runs the work itself)."""
    return os.environ.get(CHILD_ENV) == "1"


def describe_death(returncode: int) -> str | None:
    """'SIGILL (illegal instruction: ...)' for a child that died of a signal; None for a normal exit."""
    if returncode >= 0:
        return None
    signum = -returncode
    try:
        sig = signal.Signals(signum)
    except ValueError:
        return f"signal {signum}"
    return f"{sig.name} ({HINTS.get(sig, signal.strsignal(sig) or 'a signal')})"


def supervise(argv: list[str], where: Callable[[], str | None], what: str = "run") -> int:
    """Run `python -m rankdistill ARGV` in a child; return the exit status a shell would show.

    `where()` is asked after a death by signal for the place it died in (a stage name)."""
    env = {**os.environ, CHILD_ENV: "1"}
    cmd = [sys.executable, "-m", "rankdistill", *argv]
    # the child gets Ctrl-C (same process group) and stops cleanly; the parent waits for it
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(cmd, env=env)
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    death = describe_death(code)
    if death is None:
        return code
    if code == -signal.SIGINT:
        print(f"{what}: interrupted; run the same command again to resume", file=sys.stderr)
        return 128 + signal.SIGINT
    place = where()
    stage = f"stage {place!r}" if place else "the process"
    print(
        f"error: {stage} died of {death}. The stages that finished are kept; run the same command again "
        f"to resume{f' from {place!r}' if place else ''}.",
        file=sys.stderr,
    )
    return 128 - code
