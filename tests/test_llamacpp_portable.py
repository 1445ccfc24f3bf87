"""One llama.cpp install for every x86-64 CPU with AVX2: the CPU backend is chosen when the process starts.

The CPUs this machine is not are run for real under QEMU's user-mode emulator (`qemu-x86_64 -cpu MODEL`),
which executes the same installed binaries with another CPU's CPUID and instruction set: an AVX-512
instruction on an emulated Zen 3 (EPYC-Milan) dies of SIGILL exactly as on the real one. `make install`
installs QEMU (Debian's qemu-user).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from rankdistill.hardware import cpu_info

pytestmark = pytest.mark.llm

# the x86 variants `scripts/install_llama_cpp.py` builds, with the /proc/cpuinfo flags each needs and
# ggml's score weights for them (ggml-cpu/arch/x86/cpu-feats.cpp): the loader must pick the best that fits
BASE = {"fma", "f16c", "sse4_2", "bmi2", "avx", "avx2"}
VARIANTS = {
    "haswell": BASE,
    "alderlake": BASE | {"avx_vnni"},
    "skylakex": BASE | {"avx512f"},
    "cascadelake": BASE | {"avx512f", "avx512_vnni"},
    "icelake": BASE | {"avx512f", "avx512vbmi", "avx512_vnni"},
    "zen4": BASE | {"avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16"},
    "sapphirerapids": BASE | {"avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_int8"},
}
WEIGHTS = {
    "fma": 1,
    "f16c": 2,
    "sse4_2": 4,
    "bmi2": 8,
    "avx": 16,
    "avx2": 32,
    "avx_vnni": 64,
    "avx512f": 128,
    "avx512vbmi": 256,
    "avx512_bf16": 512,
    "avx512_vnni": 1024,
    "amx_int8": 2048,
}

GENERATE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from rankdistill.llm.llamacpp import LlamaCppLLM
llm = LlamaCppLLM(sys.argv[1], n_ctx=128, n_threads=1)
print("backend:", llm.cpu_backend)
print("text:", repr(llm.generate(["The capital of France is"], max_tokens=3)[0].text))
"""


def expected_variant(flags: frozenset[str]) -> str:
    fits = [name for name, needs in VARIANTS.items() if needs <= flags]
    assert fits, f"this CPU lacks AVX2: {sorted(flags)}"
    return max(fits, key=lambda name: sum(WEIGHTS[f] for f in VARIANTS[name]))


def _variants_installed() -> None:
    pytest.importorskip("llama_cpp")
    from rankdistill.llm.llamacpp_cpu import cpu_variants, library_dir

    if not cpu_variants(library_dir()):
        pytest.fail("llama-cpp-python was installed without CPU variants; install it with `make install`")


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "RANKDISTILL_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _qemu() -> str:
    qemu = shutil.which("qemu-x86_64")
    if cpu_info().arch != "x86_64":
        pytest.skip("x86-64 CPU variants are tested on x86-64 machines")
    if qemu is None:
        pytest.skip("qemu-x86_64 not installed (make install installs Debian's qemu-user)")
    return qemu


def test_expected_variant_table():
    assert expected_variant(frozenset(BASE)) == "haswell"
    assert expected_variant(frozenset(VARIANTS["zen4"] | {"avx_vnni"})) == "zen4"
    assert (
        expected_variant(frozenset(VARIANTS["sapphirerapids"] | {"amx_tile", "amx_bf16"})) == "sapphirerapids"
    )


def test_this_cpu_gets_its_best_variant(gemma_gguf):
    _variants_installed()
    res = _run([sys.executable, "-c", GENERATE, str(gemma_gguf)])
    assert res.returncode == 0, res.stderr[-3000:]
    want = f"libggml-cpu-{expected_variant(cpu_info().flags)}.so"
    assert f"backend: {want}" in res.stdout
    assert f"llama.cpp CPU backend: {want}" in res.stdout  # logged
    assert "text: ''" not in res.stdout


@pytest.mark.slow
def test_an_avx2_only_cpu_runs_the_same_install(gemma_gguf):
    """The issue's machine: an AMD EPYC Zen 3 (AVX2, FMA, F16C; no AVX-512, no AMX, no native bf16). The
    old build died there with an illegal instruction; this one loads the haswell kernels and generates."""
    qemu = _qemu()
    _variants_installed()
    res = _run([qemu, "-cpu", "EPYC-Milan", sys.executable, "-c", GENERATE, str(gemma_gguf)])
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-3000:]}"
    assert "backend: libggml-cpu-haswell.so" in res.stdout
    assert "text: ''" not in res.stdout


def test_a_cpu_without_avx2_is_told_in_one_line(gemma_gguf):
    qemu = _qemu()
    _variants_installed()
    res = _run(
        [
            qemu,
            "-cpu",
            "Nehalem",
            sys.executable,
            "-m",
            "rankdistill.llm.llamacpp_cpu",
            "--model",
            str(gemma_gguf),
        ],
        timeout=300,
    )
    lines = [line for line in res.stderr.splitlines() if not line.startswith("qemu-x86_64: warning")]
    assert res.returncode == 2, res.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: llama.cpp has no CPU backend for this CPU"), lines
    assert "need at least AVX2" in lines[0]
