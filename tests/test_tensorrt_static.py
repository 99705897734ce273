"""The TensorRT code checked without TensorRT: mypy against the tensorrt-stubs API (zero errors in the modules
that call TensorRT), and the C++ TensorRT backend and plugin compiled (-fsyntax-only) against the public
TensorRT headers of 10.3 (JetPack 6) and 11.1 kept in ../shared/third_party/tensorrt-headers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trt_stubs import STUBS_MISSING, usable_stubs

REPO = Path(__file__).resolve().parents[1]
#: ../shared/third_party/tensorrt-headers beside the clone (RADSEG_TENSORRT_HEADERS overrides it).
HEADERS = Path(os.environ.get("RADSEG_TENSORRT_HEADERS", REPO.parent / "shared" / "third_party" / "tensorrt-headers"))
TENSORRT_VERSIONS = ("10.3.0", "11.1")

#: the modules that call the TensorRT Python API.
TYPED_MODULES = ("radseg_edge/export/engine.py", "radseg_edge/export/build.py", "radseg_edge/export/cache.py",
                 "radseg_edge/backends/tensorrt.py")

MYPY_CONFIG = """[mypy]
follow_imports = silent
ignore_missing_imports = True
python_version = 3.11
cache_dir = {cache}
[mypy-tensorrt.*,tensorrt_bindings.*]
ignore_errors = True
"""

#: a deliberate misuse of the API, checked in the same run: proves the stubs are in effect.
CANARY = """from __future__ import annotations
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import tensorrt

def misuse(engine: tensorrt.ICudaEngine) -> None:
    engine.get_tensor_profile_shape("windows")
    engine.create_execution_context_for_everyone()
"""


def test_tensorrt_modules_type_check_against_the_tensorrt_stubs(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed: pip install -e '.[dev]'")
    stubs = usable_stubs()
    if stubs is None:
        pytest.skip(STUBS_MISSING)
    (tmp_path / "mypy.ini").write_text(MYPY_CONFIG.format(cache=tmp_path / "cache"))
    canary = tmp_path / "trt_canary.py"
    canary.write_text(CANARY)
    env = {**os.environ, "MYPYPATH": str(stubs)}
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"), *TYPED_MODULES,
                           str(canary)], cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    ours = [e for e in errors if not e.startswith(str(canary))]
    assert not ours, "\n".join(ours)
    canary_errors = [e for e in errors if e.startswith(str(canary))]
    assert len(canary_errors) == 2, proc.stdout  # a missing argument and a method TensorRT does not have
    assert "get_tensor_profile_shape" in canary_errors[0] and "create_execution_context_for_everyone" in canary_errors[1]


def _cuda_include() -> Path | None:
    nvcc = shutil.which("nvcc")
    candidates = [Path(nvcc).resolve().parent.parent / "include"] if nvcc else []
    candidates += [Path("/usr/local/cuda/include")]
    return next((c for c in candidates if (c / "cuda_runtime_api.h").is_file()), None)


CPP_SOURCES = {
    "cpp/src/tensorrt_backend.cpp": ["-DRADSEG_WITH_TENSORRT", "-Icpp/include", "-Icpp/src"],
    **{str(p.relative_to(REPO)): ["-Ikernels/include"] for p in sorted((REPO / "kernels" / "tensorrt").glob("*.cpp"))},
}


@pytest.mark.parametrize("version", TENSORRT_VERSIONS)
@pytest.mark.parametrize("source", sorted(CPP_SOURCES))
def test_cpp_tensorrt_code_compiles_against_the_tensorrt_headers(source, version):
    headers = HEADERS / version
    if not headers.is_dir():
        pytest.skip(f"no TensorRT {version} headers at {headers} (a clone without ../shared skips this check)")
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ is not installed")
    cuda = _cuda_include()
    if cuda is None:
        pytest.skip("no CUDA headers (nvcc's include folder) on this machine")
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-Wall", *CPP_SOURCES[source], f"-I{headers}", f"-I{cuda}", source]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
