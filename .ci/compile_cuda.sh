#!/usr/bin/env bash
# Compile-only check of the CUDA sources in kernels/ (nothing runs on a GPU):
#   - kernels/src/*.cu with nvcc for each architecture in RADSEG_CUDA_ARCHS (default "87 90"),
#     warnings as errors;
#   - the TensorRT plugin, syntax only, when NvInfer.h is found (TENSORRT_ROOT or system paths);
#   - the PyTorch extension, syntax only, when torch ships its CUDA headers (a CUDA build of torch).
# Prints a skip message and exits 0 where nvcc is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -n "${NVCC+x}" ]]; then
  nvcc_bin="$NVCC"  # explicit choice (NVCC=none forces the skip)
else
  nvcc_bin="$(command -v nvcc || true)"
  if [[ -z "$nvcc_bin" && -x /usr/local/cuda/bin/nvcc ]]; then nvcc_bin=/usr/local/cuda/bin/nvcc; fi
fi
if [[ -z "$nvcc_bin" || ! -x "$(command -v "$nvcc_bin" || true)" ]]; then
  echo "compile_cuda: SKIP - nvcc not found (install the CUDA toolkit or set NVCC=/path/to/nvcc)"
  exit 0
fi
cuda_include=""
for dir in "${CUDA_HOME:+$CUDA_HOME/include}" "$(dirname "$(dirname "$(readlink -f "$(command -v "$nvcc_bin")")")")/include" \
  /usr/local/cuda/include; do
  if [[ -n "$dir" && -f "$dir/cuda_runtime_api.h" ]]; then cuda_include="$dir"; break; fi
done
echo "compile_cuda: $("$nvcc_bin" --version | tail -1)"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for arch in ${RADSEG_CUDA_ARCHS:-87 90}; do
  for src in kernels/src/*.cu; do
    "$nvcc_bin" -std=c++17 -O3 -arch="sm_${arch}" -Ikernels/include --Werror all-warnings \
      -Xcompiler -Wall,-Wextra -c "$src" -o "$out/$(basename "$src" .cu)_sm${arch}.o"
    echo "compile_cuda: ok   $src (sm_${arch})"
  done
done

trt_header=""
for dir in "${TENSORRT_ROOT:+$TENSORRT_ROOT/include}" /usr/include /usr/include/x86_64-linux-gnu \
  /usr/include/aarch64-linux-gnu /usr/local/tensorrt/include; do
  if [[ -n "$dir" && -f "$dir/NvInfer.h" ]]; then trt_header="$dir"; break; fi
done
if [[ -n "$trt_header" ]]; then
  g++ -std=c++17 -Wall -Wextra -Wno-deprecated-declarations -fsyntax-only -I"$trt_header" -I"$cuda_include" \
    -Ikernels/include kernels/tensorrt/radseg_trt_plugin.cpp
  echo "compile_cuda: ok   kernels/tensorrt/radseg_trt_plugin.cpp (TensorRT headers in $trt_header)"
else
  echo "compile_cuda: SKIP kernels/tensorrt/radseg_trt_plugin.cpp - TensorRT headers (NvInfer.h) not found; set TENSORRT_ROOT"
fi

torch_flags="$(python - <<'PY' 2>/dev/null || true
import os, sysconfig
from torch.utils import cpp_extension
paths = cpp_extension.include_paths()
if any(os.path.exists(os.path.join(p, "c10/cuda/impl/cuda_cmake_macros.h")) for p in paths):
    print(" ".join("-I" + p for p in paths + [sysconfig.get_paths()["include"]]))
PY
)"
if [[ -n "$torch_flags" ]]; then
  # shellcheck disable=SC2086
  g++ -std=c++20 -fsyntax-only $torch_flags -I"$cuda_include" -Ikernels/include \
    -DTORCH_EXTENSION_NAME=radseg_kernels_ext kernels/torch/radseg_torch_ext.cpp
  echo "compile_cuda: ok   kernels/torch/radseg_torch_ext.cpp"
else
  echo "compile_cuda: SKIP kernels/torch/radseg_torch_ext.cpp - this torch has no CUDA headers (CPU build)"
fi
