"""The CUDA C++ kernels (``kernels/src``) as a PyTorch extension, built on first use.

The extension is compiled by :func:`torch.utils.cpp_extension.load` from ``kernels/`` (the
repository's folder, or ``$RADSEG_KERNELS_SRC``) for the GPU present, and cached by torch
(``$TORCH_EXTENSIONS_DIR``). Used instead, in this order: the CMake-built library named by
``$RADSEG_KERNELS_LIB`` (:mod:`radseg_edge.kernels.cuda_library`), or a prebuilt module
``radseg_kernels_ext`` on ``sys.path``. Mirrors :mod:`radseg_edge.kernels.blocked` (same maths, fp32
accumulation; fp16/bf16 inputs allowed).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from radseg_edge.errors import InputError
from radseg_edge.kernels.blocked import scra_around
from radseg_edge.kernels.cuda_library import KernelLibrary

EXTENSION_NAME = "radseg_kernels_ext"


def sources_dir() -> Path:
    """The folder with ``src/``, ``include/`` and ``torch/`` (``$RADSEG_KERNELS_SRC`` or the repo's ``kernels/``)."""
    env = os.environ.get("RADSEG_KERNELS_SRC")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "kernels"


def _prebuilt() -> ModuleType | None:
    try:
        import radseg_kernels_ext  # type: ignore[import-not-found]
    except ImportError:
        return None
    return radseg_kernels_ext


def unavailable_reason(device: torch.device) -> str | None:
    """Why the CUDA kernels cannot run on ``device`` (None when they can)."""
    if device.type != "cuda":
        return "cuda kernels need a CUDA device"
    if torch.version.cuda is None or not torch.cuda.is_available():
        return "this torch build has no usable CUDA (torch.cuda.is_available() is False)"
    library = os.environ.get("RADSEG_KERNELS_LIB")
    if library:
        return None if Path(library).is_file() else f"RADSEG_KERNELS_LIB={library} is not a file"
    if _prebuilt() is not None:
        return None
    src = sources_dir()
    if not (src / "src" / "thresholded_attention.cu").is_file():
        return (
            f"the CUDA sources are not in {src}; set RADSEG_KERNELS_SRC to the repository's kernels/ folder"
        )
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return "building the extension needs the CUDA toolkit (nvcc); set CUDA_HOME"
    return None


@functools.cache
def load_extension() -> ModuleType | KernelLibrary:
    """The kernels: $RADSEG_KERNELS_LIB, a prebuilt extension, or one built now (a minute the first time)."""
    library = os.environ.get("RADSEG_KERNELS_LIB")
    if library:
        return KernelLibrary(library)
    module = _prebuilt()
    if module is not None:
        return module
    from torch.utils.cpp_extension import load

    src = sources_dir()
    try:
        return load(
            name=EXTENSION_NAME,
            sources=[
                str(src / "torch" / "radseg_torch_ext.cpp"),
                str(src / "src" / "thresholded_attention.cu"),
            ],
            extra_include_paths=[str(src / "include")],
            extra_cuda_cflags=["-O3"],
            verbose=False,
        )
    except (RuntimeError, OSError) as exc:  # pragma: no cover - needs a CUDA toolchain
        raise InputError(f"building the CUDA kernels extension from {src} failed: {exc}") from exc


def scga_cuda(features: Tensor, tau: float = 10.0, batch_mean: bool = False) -> Tensor:
    """SCGA (:func:`radseg_edge.core.scga.scga_reference`) with the CUDA kernel: B x N x C -> B x N x C."""
    return load_extension().scga(features, float(tau), bool(batch_mean))


def scra_cuda(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    num_heads: int,
    tau: float = 10.0,
) -> Tensor:
    """SCRA (:func:`radseg_edge.core.scra.scra_attention_reference`): SDPA, projection, CUDA step, projection.

    Args:
        x: B x N x C tokens. Returns B x N x C.
    """

    def step(o: Tensor, v: Tensor) -> Tensor:
        return load_extension().self_correlation(o, v, float(tau))

    return scra_around(step, x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads)
