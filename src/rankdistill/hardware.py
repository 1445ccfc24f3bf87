"""What this machine can do, read at run time.

The machines rankdistill is installed on and the machines it then runs on are not always the same CPU
(a virtual environment kept from one host to the next, a container image built elsewhere), so nothing
here is decided at install time: every choice that depends on the CPU (bf16 arithmetic, which llama.cpp
kernels to load, how many threads) asks this module when it is made.

Tests and users can force a decision to exercise the path of a CPU they are not on:

- ``RANKDISTILL_CPU_BF16=1`` / ``0``: treat the CPU as having (or lacking) native bf16 arithmetic
  (bf16 is only slow without it, never wrong, so every bf16 path can be tested anywhere);
- ``RANKDISTILL_THREADS=N``: the number of CPU threads the library uses by default.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache

from rankdistill.errors import RankdistillError

BF16_ENV = "RANKDISTILL_CPU_BF16"
THREADS_ENV = "RANKDISTILL_THREADS"


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and feature flags as the kernel reports them (``/proc/cpuinfo``)."""

    model: str
    flags: frozenset[str]
    arch: str

    @property
    def is_x86(self) -> bool:
        return self.arch in ("x86_64", "amd64", "i386", "i686")

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 dot products in hardware (AVX512-BF16 or AMX-BF16), where bf16 beats fp32."""
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    def summary(self) -> dict:
        """A JSON-able description for benchmark results and logs."""
        shown = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
        return {
            "model": self.model,
            "arch": self.arch,
            "flags": [f for f in shown if f in self.flags],
            "native_bf16": self.native_bf16,
        }


def parse_cpuinfo(text: str, arch: str | None = None) -> CpuInfo:
    """A `CpuInfo` from the text of ``/proc/cpuinfo`` (the first processor's entries)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or "unknown", flags, arch or platform.machine().lower())


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return parse_cpuinfo(fh.read())
    except OSError:  # not Linux: no flags known, so no optional path is taken
        return CpuInfo(platform.processor() or "unknown", frozenset(), platform.machine().lower())


def _forced(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise RankdistillError(f"${name}={os.environ[name]!r}: expected 1, 0 or auto")


def cpu_supports_bf16() -> bool:
    """True when bf16 should be used on this CPU: native bf16 arithmetic, or forced by $RANKDISTILL_CPU_BF16.

    Read at every call (it is cheap), so a test or a long-lived process can change the forcing."""
    forced = _forced(BF16_ENV)
    return cpu_info().native_bf16 if forced is None else forced


def usable_cpus() -> int:
    """$RANKDISTILL_THREADS, else the CPUs this process may run on."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise RankdistillError(f"${THREADS_ENV}={env!r}: expected a whole number of threads") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def pick_dtype(device: str = "cpu", dtype: str | None = "auto"):
    """Resolve a dtype name ('auto', 'bf16', 'fp16', 'fp32') to a torch dtype for the device."""
    import torch

    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if dtype not in (None, "auto"):
        try:
            return names[str(dtype).lower()]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of auto, {', '.join(names)}") from None
    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32
