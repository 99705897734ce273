"""get_ops picks the best implementation per device and explains unavailable ones."""

from __future__ import annotations

import pytest
import torch

from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import scra_attention_reference
from radseg_edge.errors import InputError
from radseg_edge.kernels import KernelOps, available_kernels, get_ops
from tests.kernels_cases import relative_error, scra_random_args


@pytest.fixture(autouse=True)
def _no_triton_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_auto_on_cpu_is_the_blocked_implementation():
    assert get_ops("auto", "cpu").name == "blocked"
    assert available_kernels("cpu")[:2] == ["blocked", "reference"]


def test_triton_on_cpu_is_offered_only_with_the_interpreter(monkeypatch):
    assert "triton" not in available_kernels("cpu")
    with pytest.raises(InputError, match="need a CUDA device .*TRITON_INTERPRET=1"):
        get_ops("triton", "cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert available_kernels("cpu")[-1] == "triton"
    assert get_ops("auto", "cpu").name == "blocked"


def test_cuda_kernels_on_cpu_raise_input_error_with_reason():
    with pytest.raises(InputError, match="kernels 'cuda' are not available on cpu: .*CUDA device"):
        get_ops("cuda", "cpu")


def test_unknown_kernels_name_lists_the_choices():
    with pytest.raises(InputError, match="unknown kernels 'fast'.*auto, cuda, triton, blocked, reference"):
        get_ops("fast", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only order")
def test_cuda_device_without_cuda_falls_back_to_cpu_implementations():
    assert available_kernels("cuda") == ["blocked", "reference"]


@pytest.mark.parametrize("name", ["reference", "blocked"])
def test_ops_take_the_reference_signatures_positionally(name):
    ops = get_ops(name, "cpu")
    assert isinstance(ops, KernelOps) and ops.name == name
    features = torch.randn(2, 19, 8, generator=torch.Generator().manual_seed(3))
    assert relative_error(ops.scga(features, 10.0), scga_reference(features, 10.0)) <= 1e-5
    args = scra_random_args(b=1, n=11, c=12, heads=2)
    assert relative_error(ops.scra(*args, 10.0), scra_attention_reference(*args, 10.0)) <= 1e-5
