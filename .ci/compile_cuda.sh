#!/usr/bin/env bash
# Compile check of the CUDA sources in kernels/ for the GPU targets (nothing runs on a GPU):
#   1. kernels/src/*.cu with nvcc for every architecture in RADSEG_CUDA_ARCHS (default "87 90": Orin, Hopper),
#      warnings as errors, `-Xptxas -v`. Prints registers and spill bytes per kernel and architecture and
#      FAILS when any kernel spills (spill stores/loads or a stack frame above 0 bytes) or when the PTX of the
#      tensor-core kernel (thresholded_attention_tc_kernel, fp16/bf16) has no mma instruction.
#   2. the TensorRT plugin, against every set of TensorRT headers found ($TENSORRT_ROOT/include, the folders
#      in $RADSEG_TRT_HEADERS, and the repository's shared third_party headers 10.3.0 / 11.1): compiled with
#      -fPIC, linked with the kernel objects and the static CUDA runtime into ONE shared library with
#      -Wl,--no-undefined (the plugin calls no TensorRT function, so libnvinfer is not needed to link), then
#      FAILS unless `nm -D` shows exported getCreators and setLoggerFinder (TensorRT's entry points) and the library
#      has no RUNPATH/RPATH (nothing points into a build tree). Loading it into TensorRT is not checked here.
#   3. the PyTorch extension, syntax only, when torch ships its CUDA headers (a CUDA build of torch).
# Prints a skip message and exits 0 where nvcc is missing; a missing TensorRT header set is a SKIP line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -n "${NVCC+x}" ]]; then
  nvcc_bin="$NVCC"  # explicit choice (NVCC=none forces the skip)
else
  nvcc_bin="$(command -v nvcc || true)"
  for candidate in /usr/local/cuda/bin/nvcc /usr/local/bin/nvcc; do
    if [[ -z "$nvcc_bin" && -x "$candidate" ]]; then nvcc_bin="$candidate"; fi
  done
fi
if [[ -z "$nvcc_bin" || ! -x "$(command -v "$nvcc_bin" || true)" ]]; then
  echo "compile_cuda: SKIP - nvcc not found (install the CUDA toolkit or set NVCC=/path/to/nvcc)"
  exit 0
fi
cuda_home="$(dirname "$(dirname "$(readlink -f "$(command -v "$nvcc_bin")")")")"
cuda_include=""
for dir in "${CUDA_HOME:+$CUDA_HOME/include}" "$cuda_home/include" /usr/local/cuda/include; do
  if [[ -n "$dir" && -f "$dir/cuda_runtime_api.h" ]]; then cuda_include="$dir"; break; fi
done
cuda_lib=""
for dir in "${CUDA_HOME:+$CUDA_HOME/lib64}" "$cuda_home/lib64" "$cuda_home/lib" /usr/local/cuda/lib64; do
  if [[ -n "$dir" && -f "$dir/libcudart_static.a" ]]; then cuda_lib="$dir"; break; fi
done
echo "compile_cuda: $("$nvcc_bin" --version | tail -1)"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
archs="${RADSEG_CUDA_ARCHS:-87 90}"
gencode=()
for arch in $archs; do gencode+=(-gencode "arch=compute_${arch},code=sm_${arch}"); done
demangle() { if command -v c++filt >/dev/null; then c++filt; else cat; fi; }

# 1. kernels: one object for all architectures (also linked into the plugin below), ptxas report parsed
failed=0
for src in kernels/src/*.cu; do
  name="$(basename "$src" .cu)"
  "$nvcc_bin" -std=c++17 -O3 "${gencode[@]}" -Ikernels/include --Werror all-warnings -Xcompiler -Wall,-Wextra,-fPIC \
    -Xptxas -v -c "$src" -o "$out/$name.o" 2>"$out/$name.ptxas"
  # "Compiling entry function 'F' for 'sm_XX'" ... "S bytes stack frame, T bytes spill stores, L bytes spill loads"
  # ... "Used R registers" -> "sm_XX R S T L F"
  awk '/Compiling entry function/ { split($0, q, "\x27"); fn = q[2]; arch = q[4] }
       /bytes stack frame/ { stack = $1; stores = $5; loads = $9 }
       /Used [0-9]+ registers/ { for (i = 1; i <= NF; i++) if ($i == "Used") regs = $(i + 1);
                                 print arch, regs, stack, stores, loads, fn }' "$out/$name.ptxas" >"$out/$name.table"
  if [[ ! -s "$out/$name.table" ]]; then
    echo "compile_cuda: FAIL $src - no ptxas -v report parsed"; cat "$out/$name.ptxas"; exit 1
  fi
  while read -r arch regs stack stores loads fn; do
    pretty="$(echo "$fn" | demangle | sed -E 's/\(anonymous namespace\):://; s/\(.*//')"
    if [[ "$stack" != 0 || "$stores" != 0 || "$loads" != 0 ]]; then
      echo "compile_cuda: FAIL spills  $arch $pretty: $regs registers, stack $stack B, spill stores $stores B, loads $loads B"
      failed=1
    else
      echo "compile_cuda: ok   no spill $arch $pretty: $regs registers"
    fi
  done <"$out/$name.table"
  for arch in $archs; do
    echo "compile_cuda: ok   $src (sm_${arch})"
  done
done
# tensor cores: the PTX of every tensor-core kernel instantiation contains wmma/mma instructions
for arch in $archs; do
  "$nvcc_bin" -std=c++17 -O3 -arch="sm_${arch}" -Ikernels/include -ptx kernels/src/thresholded_attention.cu \
    -o "$out/tc_sm${arch}.ptx"
  counts="$(awk '/^\.visible \.entry|^\.entry|^\.weak \.entry/ { fn = $NF } /mma\.sync/ { n[fn]++ }
                 /\.entry .*thresholded_attention_tc_kernel/ { split($0, w, " "); seen[w[length(w)]] = 1 }
                 END { for (f in seen) print (n[f] + 0), f }' "$out/tc_sm${arch}.ptx")"
  if [[ -z "$counts" ]]; then
    echo "compile_cuda: FAIL no tensor-core kernel found in the PTX for sm_${arch}"; failed=1
  fi
  while read -r count fn; do
    [[ -z "$fn" ]] && continue
    pretty="$(echo "${fn%(}" | demangle | sed -E 's/\(anonymous namespace\):://; s/\(.*//')"
    if [[ "$count" -gt 0 ]]; then
      echo "compile_cuda: ok   tensor cores sm_${arch} $pretty: $count mma.sync instructions in the PTX"
    else
      echo "compile_cuda: FAIL tensor cores sm_${arch} $pretty: no mma.sync instruction in the PTX"; failed=1
    fi
  done <<<"$counts"
done
if [[ "$failed" != 0 ]]; then exit 1; fi

# 2. the TensorRT plugin: one shared library with the kernels linked in, for each TensorRT header set
trt_dirs=()
if [[ -n "${TENSORRT_ROOT:-}" && -f "$TENSORRT_ROOT/include/NvInfer.h" ]]; then trt_dirs+=("$TENSORRT_ROOT/include"); fi
for dir in ${RADSEG_TRT_HEADERS:-} "$root"/shared/third_party/tensorrt-headers/* \
  "$root"/../shared/third_party/tensorrt-headers/* \
  /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/local/tensorrt/include; do
  if [[ -f "$dir/NvInfer.h" ]]; then
    dir="$(readlink -f "$dir")"
    if [[ " ${trt_dirs[*]-} " != *" $dir "* ]]; then trt_dirs+=("$dir"); fi
  fi
done
if [[ ${#trt_dirs[@]} -eq 0 ]]; then
  echo "compile_cuda: SKIP kernels/tensorrt/radseg_trt_plugin.cpp - TensorRT headers (NvInfer.h) not found; set TENSORRT_ROOT or RADSEG_TRT_HEADERS"
elif [[ -z "$cuda_lib" ]]; then
  echo "compile_cuda: FAIL libcudart_static.a not found next to $nvcc_bin (needed to link the plugin)"; exit 1
else
  for trt in "${trt_dirs[@]}"; do
    # TensorRT 10: NV_TENSORRT_MAJOR 10; TensorRT 11: TRT_MAJOR_ENTERPRISE 11 (NV_TENSORRT_MAJOR names it)
    version="$(awk '$1 == "#define" && $2 ~ /^(NV_TENSORRT|TRT)_?(MAJOR|MINOR|PATCH)(_ENTERPRISE)?$/ && $3 ~ /^[0-9]+$/ {
                      printf "%s%s", sep, $3; sep = "." }' "$trt/NvInferVersion.h")"
    g++ -std=c++17 -O2 -fPIC -Wall -Wextra -Werror -Wno-deprecated-declarations -isystem "$trt" -isystem "$cuda_include" \
      -Ikernels/include -c kernels/tensorrt/radseg_trt_plugin.cpp -o "$out/plugin.o"
    lib="$out/libradseg_trt_plugin.so"
    g++ -shared -o "$lib" "$out/plugin.o" "$out/thresholded_attention.o" -L"$cuda_lib" -lcudart_static -ldl -lrt \
      -lpthread -Wl,--no-undefined -Wl,--exclude-libs,ALL
    if ! nm -D --defined-only "$lib" | grep -qw getCreators; then
      echo "compile_cuda: FAIL plugin (TensorRT $version headers): getCreators is not exported"; exit 1
    fi
    if ! nm -D --defined-only "$lib" | grep -qw setLoggerFinder; then
      echo "compile_cuda: FAIL plugin (TensorRT $version headers): setLoggerFinder is not exported"; exit 1
    fi
    if ! nm -D --defined-only "$lib" | grep -qw radseg_scga; then
      echo "compile_cuda: FAIL plugin (TensorRT $version headers): the kernels are not linked in"; exit 1
    fi
    if readelf -d "$lib" | grep -qE "RPATH|RUNPATH"; then
      echo "compile_cuda: FAIL plugin (TensorRT $version headers): the library has a RUNPATH/RPATH"; exit 1
    fi
    needed="$(readelf -d "$lib" | awk '/NEEDED/ { gsub(/[][]/, "", $NF); printf "%s%s", sep, $NF; sep = " " }')"
    echo "compile_cuda: ok   plugin library (TensorRT $version headers in $trt): exports getCreators and setLoggerFinder, kernels linked in, no runpath, needs: $needed"
  done
fi

# 3. the PyTorch extension, syntax only
torch_flags="$(python3 - <<'PY' 2>/dev/null || true
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
