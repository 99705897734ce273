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
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-Wall", *CPP_SOURCES[source], "-isystem", str(headers), "-isystem",
           str(cuda), source]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


KEY_DRIVER = r"""
#include <iostream>
#include "engine_key.hpp"
#include "radseg_edge/segmenter.hpp"
// argv: engine gpu_name sm sm_count tensorrt cuda l4t precision shape_profile onnx [plugins...]
int main(int argc, char** argv) {
  radseg::ExpectedKey key;
  key.device = {argv[2], argv[3], std::stoll(argv[4]), argv[5], argv[6], argv[7]};
  key.precision = argv[8];
  key.shape_profile = argv[9];
  key.onnx_path = argv[10];
  for (int i = 11; i < argc; ++i) key.plugin_paths.push_back(argv[i]);
  try {
    radseg::verify_engine(argv[1], key);
    std::cout << "ok";
  } catch (const radseg::Error& e) {
    std::cout << e.what();
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def key_checker(tmp_path_factory):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ is not installed")
    folder = tmp_path_factory.mktemp("engine_key")
    (folder / "driver.cpp").write_text(KEY_DRIVER)
    exe = folder / "check_key"
    subprocess.run([cxx, "-std=c++17", "-O1", "-Icpp/include", "-Icpp/src", str(folder / "driver.cpp"),
                    "cpp/src/engine_key.cpp", "cpp/src/json.cpp", "-o", str(exe)], cwd=REPO, check=True, timeout=300)
    return exe


def test_cpp_backend_refuses_a_mismatched_engine_key_with_the_python_message(key_checker, tmp_path):
    from dataclasses import astuple

    from radseg_edge.errors import EngineError
    from radseg_edge.export.cache import (
        DeviceDescription,
        EngineKey,
        format_profile,
        sha256_file,
        verify_engine,
        write_key,
    )

    nano = DeviceDescription("Orin", "8.7", 8, "10.3.0.26", "12.6", "36.4.3")
    agx = DeviceDescription("Orin", "8.7", 16, "10.3.0.26", "12.6", "36.4.3")
    onnx, plugin, engine = tmp_path / "pipeline.onnx", tmp_path / "libradseg_trt_plugin.so", tmp_path / "p.engine"
    onnx.write_bytes(b"onnx " * 1000)
    plugin.write_bytes(bytes(range(256)) * 300)  # several SHA-256 blocks and a partial one
    engine.write_bytes(b"engine")
    profile = format_profile({"windows": ((1, 3, 64, 64), (6, 3, 64, 64), (32, 3, 64, 64))})

    def cpp(device: DeviceDescription, plugins=(plugin,)) -> str:
        args = [str(engine), *map(str, astuple(device)), "fp16", profile, str(onnx), *map(str, plugins)]
        return subprocess.run([str(key_checker), *args], capture_output=True, text=True, timeout=60, check=True).stdout

    def python(device: DeviceDescription, plugins=(plugin,)) -> str:
        try:
            verify_engine(engine, EngineKey.create(device, "fp16", onnx, profile, plugins))
        except EngineError as exc:
            return str(exc)
        return "ok"

    write_key(engine, EngineKey.create(agx, "fp16", onnx, profile, [plugin]))
    assert cpp(agx) == python(agx) == "ok"
    assert cpp(nano) == python(nano) and "device.sm_count: engine has 16, this machine needs 8" in cpp(nano)
    assert cpp(agx, ()) == python(agx, ()) and "plugin_sha256: engine has ['" + sha256_file(plugin) in cpp(agx, ())
    short = EngineKey.create(agx, "fp16", onnx, profile, [plugin])
    write_key(engine, EngineKey(DeviceDescription("Orin", "8.7", 16, "10.3.0", "12.6", "36.4.3"), *astuple(short)[1:]))
    assert cpp(agx) == "ok"  # a Python package reporting "10.3.0" matches the library 10.3.0.26
    write_key(engine, short)
    engine.write_bytes(b"tampered")
    assert cpp(agx) == python(agx) and "changed after it was built" in cpp(agx)
    key_record = engine.with_name("p.engine.json")
    key_record.unlink()
    assert cpp(agx) == python(agx) and "has no key record" in cpp(agx)
