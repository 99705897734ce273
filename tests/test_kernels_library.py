"""The C API of libradseg_kernels, loaded through ctypes (built here with nvcc; nothing runs on a GPU).

Argument checks, error strings and workspace sizes are host code, so they can be exercised without
a GPU; the kernels themselves are checked on a GPU by tests/test_kernels_cuda.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import self_correlation_attention, split_qkv
from radseg_edge.errors import InputError
from radseg_edge.kernels.cuda_library import KernelLibrary
from tests.kernels_cases import clustered_features, relative_error, scra_random_args, threshold_margin

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc") or (
    "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None
)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> KernelLibrary:
    if NVCC is None:
        pytest.skip("nvcc not found: building libradseg_kernels needs the CUDA toolkit")
    path = tmp_path_factory.mktemp("lib") / "libradseg_kernels.so"
    cmd = [NVCC, "-shared", "-Xcompiler", "-fPIC", "-std=c++17", "-O1", "-arch=sm_87", f"-I{ROOT / 'kernels/include'}",
           str(ROOT / "kernels/src/thresholded_attention.cu"), "-o", str(path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return KernelLibrary(path)


def test_library_reports_errors_in_words(library):
    assert library.error_string(0) == "ok"
    assert "invalid argument" in library.error_string(1)
    assert "shared memory" in library.error_string(2)


def test_library_workspace_is_fp32_rows_plus_thresholds_256_byte_aligned(library):
    # SCGA adds the column partial sums of its threshold: B x ceil(N / 128) x C floats
    assert library.lib.radseg_scga_workspace_size(2, 100, 64) == 4 * 2 * 100 * 64 + 256 + 4 * 2 * 1 * 64
    assert library.lib.radseg_scga_workspace_size(1, 300, 64) == 4 * 300 * 64 + 256 + 4 * 3 * 64
    assert library.lib.radseg_scga_workspace_size(1, 3, 5) == 256 + 256 + 256
    assert library.lib.radseg_self_correlation_workspace_size(2, 3, 10, 16) == 4 * 2 * 3 * 10 * 16 + 256


def test_library_rejects_invalid_arguments_before_launching(library):
    assert library.lib.radseg_scga(None, None, None, 1, 10, 8, 10.0, 0, 0, None) == 1
    assert library.lib.radseg_scga(1, 1, 1, 0, 10, 8, 10.0, 0, 0, None) == 1
    assert library.lib.radseg_self_correlation(1, 1, 1, 1, 1, 2, 10, 8, 160, 80, 8, 10.0, 7, None) == 1
    assert library.lib.radseg_self_correlation(1, 1, 1, 1, 40000, 2, 10, 8, 160, 80, 8, 10.0, 0, None) == 1


def test_library_wrapper_needs_cuda_tensors(library):
    with pytest.raises(InputError, match="CUDA float32/float16/bfloat16 tensors"):
        library.scga(torch.randn(1, 10, 8), 10.0)


def test_library_wrapper_checks_shapes_before_launching(library):
    # a mismatched o would make the kernel read past its end: refused in Python, on any device
    with pytest.raises(InputError, match=r"o must be B x N x \(H\*d\)"):
        library.self_correlation(torch.randn(2, 10, 30), torch.randn(2, 3, 10, 8), 10.0)
    with pytest.raises(InputError, match="B x N x C"):
        library.scga(torch.randn(10, 8), 10.0)


def test_missing_library_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot load the radseg kernels library"):
        KernelLibrary(tmp_path / "missing.so")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the kernels need a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_library_kernels_equal_references_on_a_gpu(library, dtype):
    # the ctypes path (RADSEG_KERNELS_LIB): sm_87 code with its PTX, JIT-compiled on newer GPUs
    features = clustered_features(2, 300, 72, seed=3).to(dtype)
    assert threshold_margin(features.float()) > 1e-3
    tolerance = 1e-5 if dtype == torch.float32 else 5e-3
    out = library.scga(features.cuda(), 10.0).cpu()
    assert out.dtype == dtype
    assert relative_error(out.float(), scga_reference(features.float(), 10.0)) <= tolerance
    x, qkv_w, qkv_b, _, _, heads = (
        a.cuda() if isinstance(a, torch.Tensor) else a for a in scra_random_args(2, 45, 48)
    )
    _, _, v = split_qkv(x, qkv_w, qkv_b, heads)  # strided values
    o = torch.randn_like(x)
    step = library.self_correlation(o, v.to(dtype), 10.0)
    expected = self_correlation_attention(o.to(dtype).float(), v.to(dtype).float(), 10.0)
    assert relative_error(step.float(), expected) <= (1e-4 if dtype == torch.float32 else 1e-2)
