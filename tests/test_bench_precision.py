"""Precision policy: bf16 only where the CPU multiplies bf16 natively, fp16 only on GPUs."""

from __future__ import annotations

import pytest
import torch

from radseg_edge.errors import InputError
from radseg_edge.utils import precision as prec


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
