"""Precision policy: bf16 only where the CPU multiplies bf16 natively, fp16 only on GPUs."""

from __future__ import annotations

import pytest
import torch

from radseg_edge.errors import InputError
from radseg_edge.utils import precision as prec


@pytest.fixture(autouse=True)
def _no_isa_cap(monkeypatch):
    """These tests pass flag sets explicitly; a cap set for the whole run (ONEDNN_MAX_CPU_ISA=AVX2) is
    lifted here and set again only by the tests about it."""
    for name in prec.ISA_CAP_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_bf16_is_native_with_avx512_bf16_or_amx_flags_only():
    assert prec.cpu_has_fast_bf16(frozenset({"avx512f", "avx512_bf16"}))
    assert prec.cpu_has_fast_bf16(frozenset({"amx_bf16", "amx_tile"}))
    assert not prec.cpu_has_fast_bf16(frozenset({"avx2", "avx512f", "fma"}))


def test_fp16_on_cpu_is_refused_with_a_reason():
    ok, reason = prec.precision_supported("fp16", "cpu")
    assert not ok and "GPU" in reason
    with pytest.raises(InputError, match="fp16"):
        prec.resolve_precision("fp16", "cpu")


def test_bf16_on_cpu_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2"}))
    assert prec.best_precision("cpu") == "fp32"
    with pytest.raises(InputError, match="emulated"):
        prec.resolve_precision("bf16", "cpu")
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert prec.resolve_precision("bf16", "cpu") is torch.bfloat16
    assert prec.best_precision("cpu") == "bf16"


def test_fp32_region_turns_autocast_off():
    x = torch.randn(8, 8)
    with prec.autocast(torch.bfloat16, "cpu"):
        assert (x @ x).dtype is torch.bfloat16
        with prec.fp32_region("cpu"):
            assert (x @ x).dtype is torch.float32
    with prec.autocast(torch.float32, "cpu"):
        assert (x @ x).dtype is torch.float32


@pytest.mark.parametrize(
    ("cap", "usable"),
    [("AVX2", set()), ("avx512_core", set()), ("AVX512_CORE_BF16", {"avx512_bf16"}),
     ("AVX512_CORE_AMX", {"avx512_bf16", "amx_bf16"}), ("DEFAULT", {"avx512_bf16", "amx_bf16"})],
)
def test_onednn_isa_cap_hides_the_bf16_instructions_it_rules_out(monkeypatch, cap, usable):
    """ONEDNN_MAX_CPU_ISA=AVX2 on a CPU with AMX behaves as an AVX2-only CPU: bf16 refused with the reason."""
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert prec.usable_cpu_flags() & {"avx512_bf16", "amx_bf16"} == usable
    ok, reason = prec.precision_supported("bf16", "cpu")
    assert ok == bool(usable)
    if not ok:
        assert f"ONEDNN_MAX_CPU_ISA={cap.upper()}" in reason
        with pytest.raises(InputError, match="emulated"):
            prec.resolve_precision("bf16", "cpu")


def test_older_dnnl_name_of_the_cap_is_honoured_and_aarch64_bf16_counts(monkeypatch):
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert not prec.cpu_has_fast_bf16(frozenset({"avx512_bf16"}))
    assert prec.cpu_has_fast_bf16(frozenset({"fp", "asimd", "sve", "bf16"}))  # x86 caps do not touch aarch64
    assert not prec.cpu_has_fast_bf16(frozenset({"fp", "asimd", "sve"}))
