#!/usr/bin/env bash
# Build the C++ runtime (cpp/) with CMake against the installed torch wheel's libtorch, export the tiny
# model as an AOTInductor package, run the C++ example and the C API test on it and compare with the
# Python pipeline (labels identical, probabilities within 1e-4). Exits non-zero on any failure.
# Usage: .ci/build_cpp.sh [BUILD_DIR]   (default build/cpp-ci; the export is cached there)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build/cpp-ci}"
echo "== C++ runtime: libtorch from $(python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
python cpp/tools/check_parity.py --build-dir "$BUILD_DIR"
