"""The CUDA sources compile for Orin (sm_87) and Hopper (sm_90) with the local nvcc (compile-only)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists(),
                    reason="nvcc not found: the CUDA compile check needs the CUDA toolkit")
def test_cuda_kernels_compile_for_sm87_and_sm90():
    out = subprocess.run(["bash", str(ROOT / ".ci" / "compile_cuda.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    for arch in ("sm_87", "sm_90"):
        assert f"({arch})" in out.stdout and "FAIL" not in out.stdout
