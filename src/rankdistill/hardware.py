"""What this machine can do, read at run time.

The machines rankdistill is installed on and the machines it then runs on are not always the same CPU
(a virtual environment kept from one host to the next, a container image built elsewhere), so nothing
here is decided at install time: every choice that depends on the CPU (bf16 arithmetic, which llama.cpp
kernels to load, how many threads) asks this module when it is made.

It is also the one owner of the device decision: every model rankdistill runs in process (the `Reranker`,
the server, the encoder teachers, the students in training and evaluation) takes its device from
`resolve_device` and its automatic dtype from `pick_dtype`:

- device "auto" (the default everywhere) is CUDA when a CUDA device is visible, else Apple's MPS, else the
  CPU; "cpu", "cuda", "cuda:N" and "mps" are taken as given, and one that is not there is an error that
  names the option it came from;
- dtype "auto" is bf16 on a GPU with native bf16 (CUDA compute capability 8.0 or later), fp16 on an older
  GPU, fp32 on MPS, and on the CPU bf16 only where it has native bf16 arithmetic (else fp32).

The decisions themselves (`choose_device`, `auto_dtype_name`, `mixed_precision`) are pure functions of
what the machine has, so every branch is tested on any machine; `resolve_device` and `pick_dtype` only
read this machine and call them.

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
from typing import Any

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


#: the help of every `--device` option and the meaning of every `device` key
DEVICE_HELP = "auto (a CUDA GPU when one is visible, else Apple MPS, else the CPU), cpu, cuda, cuda:N or mps."
DEVICE_KINDS = ("cpu", "cuda", "mps")


def parse_device(device: Any, option: str = "device") -> tuple[str, int | None]:
    """The kind ('auto', 'cpu', 'cuda', 'mps') and index of a device name or `torch.device`; a
    RankdistillError naming `option` for anything else (e.g. 'gpu', 'cuda:x')."""
    text = str(device if device is not None else "auto").strip().lower()
    kind, colon, index = text.partition(":")
    if text == "auto":
        return "auto", None
    if kind in DEVICE_KINDS and (not colon or (index.isdigit() and kind != "cpu")):
        return kind, int(index) if colon else None
    raise RankdistillError(f"{option} {str(device)!r}: expected {DEVICE_HELP}")


def check_device_name(device: Any, option: str = "device") -> str:
    """`device` as a normalised name after checking its spelling only (configs are checked on machines
    that need not have the device; `resolve_device` checks that it is there)."""
    kind, index = parse_device(device, option)
    return kind if index is None else f"{kind}:{index}"


def choose_device(
    device: Any,
    *,
    cuda_count: int,
    mps: bool,
    option: str = "device",
    cuda_note: str = "",
) -> str:
    """Which device a requested one means on a machine with `cuda_count` visible CUDA devices and (or
    without) MPS: "auto" takes the first of cuda, mps, cpu that is there; an explicit device that is not
    there is a RankdistillError naming `option` (`cuda_note` says why no CUDA device is visible)."""
    kind, index = parse_device(device, option)
    if kind == "auto":
        return "cuda" if cuda_count > 0 else "mps" if mps else "cpu"
    if kind == "cuda":
        if cuda_count == 0:
            why = f" ({cuda_note})" if cuda_note else ""
            raise RankdistillError(
                f"{option} {str(device)!r}: no CUDA device is visible{why}; use {option} cpu, or auto to "
                "take a GPU only when there is one"
            )
        if index is not None and index >= cuda_count:
            raise RankdistillError(
                f"{option} {str(device)!r}: only {cuda_count} CUDA device(s) are visible "
                f"(cuda:0 to cuda:{cuda_count - 1})"
            )
        return "cuda" if index is None else f"cuda:{index}"
    if kind == "mps" and not mps:
        raise RankdistillError(f"{option} {str(device)!r}: Apple MPS is not available on this machine")
    return kind


def cuda_note() -> str:
    """Why this process sees no CUDA device, for error messages: the torch build and CUDA_VISIBLE_DEVICES."""
    import torch

    build = (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda}"
        if torch.version.cuda
        else f"torch {torch.__version__} is a build without CUDA"
    )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return build + (f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "")


def resolve_device(device: Any = "auto", option: str = "device"):
    """The `torch.device` a requested device ('auto', 'cpu', 'cuda', 'cuda:N', 'mps', or a torch.device)
    means here; see `choose_device`. `option` is how the caller names the setting in errors
    (e.g. "--device", "evaluate.device")."""
    import torch

    kind, _ = parse_device(device, option)
    cuda_count = torch.cuda.device_count() if kind in ("auto", "cuda") and torch.cuda.is_available() else 0
    mps_backend = getattr(torch.backends, "mps", None)
    mps = kind in ("auto", "mps") and bool(mps_backend is not None and mps_backend.is_available())
    note = cuda_note() if kind == "cuda" and cuda_count == 0 else ""
    return torch.device(choose_device(device, cuda_count=cuda_count, mps=mps, option=option, cuda_note=note))


def gpu_supports_bf16(device: Any = "cuda") -> bool:
    """Native bf16 on this CUDA device (compute capability 8.0, Ampere, or later; on ROCm what torch says).
    torch's own `is_bf16_supported()` also answers True where bf16 is only emulated, and slow."""
    import torch

    if torch.version.hip:
        return bool(torch.cuda.is_bf16_supported())
    index = torch.device(device).index
    return tuple(torch.cuda.get_device_capability(index)) >= (8, 0)


def auto_dtype_name(device_type: str, *, gpu_bf16: bool, cpu_bf16: bool) -> str:
    """What dtype "auto" means on a device of this type: bf16 on a GPU with native bf16, fp16 on one
    without; fp32 on MPS (not all ops have reduced-precision kernels there); on the CPU bf16 only with
    native bf16 arithmetic, else fp32."""
    if device_type == "cuda":
        return "bf16" if gpu_bf16 else "fp16"
    if device_type == "cpu":
        return "bf16" if cpu_bf16 else "fp32"
    return "fp32"


def mixed_precision(device_type: str, bf16: bool | str, *, gpu_bf16: bool, cpu_bf16: bool) -> str | None:
    """The mixed precision training uses ("bf16", "fp16", or None for fp32) for a `bf16` setting of
    True, False or "auto" on a device of this type: "auto" follows `auto_dtype_name`; False is fp32."""
    if bf16 == "auto":
        name = auto_dtype_name(device_type, gpu_bf16=gpu_bf16, cpu_bf16=cpu_bf16)
        return None if name == "fp32" else name
    return "bf16" if bf16 else None


def training_precision(device: Any, bf16: bool | str = "auto") -> str | None:
    """`mixed_precision` on this machine for a resolved device (the GPU is asked only when it matters)."""
    import torch

    kind = torch.device(device).type
    ask = bf16 == "auto"
    return mixed_precision(
        kind,
        bf16,
        gpu_bf16=ask and kind == "cuda" and gpu_supports_bf16(device),
        cpu_bf16=ask and kind == "cpu" and cpu_supports_bf16(),
    )


def device_summary(device: Any) -> dict[str, Any]:
    """A JSON-able description of a resolved device, for benchmark results and logs."""
    import torch

    device = torch.device(device)
    out: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(
            name=props.name,
            capability=".".join(map(str, torch.cuda.get_device_capability(device))),
            memory_gib=round(props.total_memory / 2**30, 1),
            native_bf16=gpu_supports_bf16(device),
        )
    elif device.type == "cpu":
        out.update(name=cpu_info().model, native_bf16=cpu_info().native_bf16)
    return out


def pick_dtype(device: Any = "cpu", dtype: str | None = "auto"):
    """Resolve a dtype name ('auto', 'bf16', 'fp16', 'fp32') to a torch dtype for the device (a resolved
    device: a name such as "cuda:1" or a `torch.device`); "auto" is `auto_dtype_name`."""
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
    kind = torch.device(str(device)).type
    name = auto_dtype_name(
        kind,
        gpu_bf16=kind == "cuda" and gpu_supports_bf16(str(device)),
        cpu_bf16=kind == "cpu" and cpu_supports_bf16(),
    )
    return names[name]
