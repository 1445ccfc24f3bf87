"""Run-time CPU detection, and forcing a CPU's path on another CPU (no mocks: real /proc/cpuinfo text)."""

from __future__ import annotations

import pytest
import torch

from rankdistill.errors import RankdistillError
from rankdistill.hardware import BF16_ENV, cpu_info, cpu_supports_bf16, parse_cpuinfo, pick_dtype, usable_cpus

# first-processor excerpts of /proc/cpuinfo on the three kinds of machine this project runs on
ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma bmi2 avx2 sha_ni
"""
ZEN4 = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse4_2 avx f16c fma bmi2 avx2 avx512f avx512dq avx512_vnni avx512_bf16 avx512vbmi
"""
SPR = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu sse4_2 avx f16c fma bmi2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: second processor, ignored
"""


def test_parse_cpuinfo_reads_model_and_flags():
    zen3, zen4, spr = (parse_cpuinfo(t, "x86_64") for t in (ZEN3, ZEN4, SPR))
    assert zen3.model == "AMD EPYC 7B13" and zen3.avx2 and not zen3.avx512 and not zen3.native_bf16
    assert zen4.avx512 and zen4.native_bf16
    assert spr.model.startswith("Intel") and spr.native_bf16 and "amx_tile" in spr.summary()["flags"]
    assert parse_cpuinfo("", "aarch64").flags == frozenset()


def test_this_machine_is_detected():
    info = cpu_info()
    assert info.model and info.flags  # Linux: the kernel's flags were read
    assert isinstance(info.summary()["native_bf16"], bool)


def test_bf16_can_be_forced_either_way(monkeypatch):
    native = cpu_info().native_bf16
    monkeypatch.delenv(BF16_ENV, raising=False)
    assert cpu_supports_bf16() is native
    assert pick_dtype("cpu", "auto") == (torch.bfloat16 if native else torch.float32)
    monkeypatch.setenv(BF16_ENV, "1")
    assert cpu_supports_bf16() and pick_dtype("cpu", "auto") == torch.bfloat16
    monkeypatch.setenv(BF16_ENV, "0")
    assert not cpu_supports_bf16() and pick_dtype("cpu", "auto") == torch.float32
    assert pick_dtype("cpu", "bf16") == torch.bfloat16  # an explicit dtype is never overridden
    monkeypatch.setenv(BF16_ENV, "sometimes")
    with pytest.raises(RankdistillError, match="RANKDISTILL_CPU_BF16='sometimes': expected 1, 0 or auto"):
        cpu_supports_bf16()


def test_threads_from_env_or_affinity(monkeypatch):
    monkeypatch.setenv("RANKDISTILL_THREADS", "3")
    assert usable_cpus() == 3
    monkeypatch.setenv("RANKDISTILL_THREADS", "two")
    with pytest.raises(RankdistillError, match="whole number"):
        usable_cpus()
    monkeypatch.delenv("RANKDISTILL_THREADS")
    assert usable_cpus() >= 1
