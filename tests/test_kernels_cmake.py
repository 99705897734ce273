"""The project-level CMakeLists.txt configures with and without nvcc (configure only, no build)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CMAKE = shutil.which("cmake")

pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake not installed")


def _configure(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([CMAKE, "-S", str(ROOT), "-B", str(tmp_path / "build"), *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_cmake_configures_without_nvcc_and_says_what_is_skipped(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the host toolchain but no nvcc
    bin_dir.mkdir()
    for tool in ("cmake", "c++", "g++", "gcc", "cc", "make", "ld", "as", "ar", "ranlib", "uname", "sh"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CUDA_PATH", "CUDA_HOME")}
    env["PATH"] = str(bin_dir)
    out = _configure(tmp_path, env)
    assert "no CUDA compiler (nvcc) found" in out and "kernels/ skipped" in out


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_cmake_builds_kernels_for_orin_and_hopper_by_default(tmp_path):
    out = _configure(tmp_path, dict(os.environ))
    assert "radseg: CUDA kernels for architectures 87;90" in out
    assert "TensorRT" in out  # the plugin is either configured or skipped with a message
