"""ctypes binding of the CMake-built ``libradseg_kernels.so`` (C API: kernels/include/radseg_kernels.h).

An alternative to the JIT-built PyTorch extension where the library is built once (e.g. on a
Jetson, ``cmake --build build``) and no compiler is wanted at run time: set
``RADSEG_KERNELS_LIB=/path/to/libradseg_kernels.so``. Same methods as the extension:
``scga(features, tau, batch_mean)`` and ``self_correlation(o, v, tau)``, on CUDA tensors, launched on
torch's current stream with a torch-allocated workspace.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from radseg_edge.errors import InputError

_DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


class KernelLibrary:
    """The C functions of ``libradseg_kernels`` with argument types declared."""

    def __init__(self, path: str | Path) -> None:
        try:
            self.lib = lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise InputError(f"cannot load the radseg kernels library {path}: {exc}") from exc
        lib.radseg_error_string.argtypes, lib.radseg_error_string.restype = [ctypes.c_int], ctypes.c_char_p
        lib.radseg_scga_workspace_size.argtypes, lib.radseg_scga_workspace_size.restype = (
            [_I64] * 3,
            ctypes.c_size_t,
        )
        lib.radseg_self_correlation_workspace_size.argtypes = [_I64] * 4
        lib.radseg_self_correlation_workspace_size.restype = ctypes.c_size_t
        lib.radseg_scga.argtypes = [
            _PTR,
            _PTR,
            _PTR,
            _I64,
            _I64,
            _I64,
            ctypes.c_float,
            ctypes.c_int,
            ctypes.c_int,
            _PTR,
        ]
        lib.radseg_scga.restype = ctypes.c_int
        lib.radseg_self_correlation.argtypes = (
            [_PTR, _PTR, _PTR, _PTR] + [_I64] * 7 + [ctypes.c_float, ctypes.c_int, _PTR]
        )
        lib.radseg_self_correlation.restype = ctypes.c_int

    def error_string(self, code: int) -> str:
        return self.lib.radseg_error_string(code).decode()

    def _check(self, code: int) -> None:
        if code != 0:
            raise InputError(self.error_string(code))

    @staticmethod
    def _stream(t: Tensor) -> int:
        return torch.cuda.current_stream(t.device).cuda_stream

    @staticmethod
    def _dtype(t: Tensor) -> int:
        if not t.is_cuda or t.dtype not in _DTYPES:
            raise InputError(
                f"radseg kernels take CUDA float32/float16/bfloat16 tensors, got {t.dtype} on {t.device}"
            )
        return _DTYPES[t.dtype]

    def scga(self, features: Tensor, tau: float, batch_mean: bool = False) -> Tensor:
        """SCGA: B x N x C CUDA tensor -> B x N x C (same dtype)."""
        if features.dim() != 3:
            raise InputError(f"scga expects a B x N x C tensor, got shape {tuple(features.shape)}")
        dtype = self._dtype(features)
        x = features.contiguous()
        b, n, c = x.shape
        # the C functions launch on the CURRENT device: make it the tensors' one (as the extension's guard)
        with torch.cuda.device(x.device):
            out = torch.empty_like(x)
            ws = torch.empty(self.lib.radseg_scga_workspace_size(b, n, c), dtype=torch.uint8, device=x.device)
            self._check(self.lib.radseg_scga(x.data_ptr(), out.data_ptr(), ws.data_ptr(), b, n, c, tau,
                                             int(batch_mean), dtype, self._stream(x)))  # fmt: skip
        return out

    def self_correlation(self, o: Tensor, v: Tensor, tau: float) -> Tensor:
        """SCRA step: o B x N x C, v B x H x N x d (last dim contiguous) -> B x N x C (dtype of v)."""
        if o.dim() != 3 or v.dim() != 4 or o.device != v.device:
            raise InputError(f"self_correlation expects o: B x N x C and v: B x H x N x d on one device, got "
                             f"{tuple(o.shape)} on {o.device} and {tuple(v.shape)} on {v.device}")  # fmt: skip
        values = v if v.stride(-1) == 1 else v.contiguous()
        b, h, n, d = values.shape
        if tuple(o.shape) != (b, n, h * d):
            raise InputError(f"o must be B x N x (H*d) = {(b, n, h * d)} for v of shape {tuple(v.shape)}, "
                             f"got {tuple(o.shape)}")  # fmt: skip
        dtype = self._dtype(v)
        x = o.to(values.dtype).contiguous()
        with torch.cuda.device(x.device):
            out = torch.empty(b, n, h * d, dtype=values.dtype, device=values.device)
            size = self.lib.radseg_self_correlation_workspace_size(b, h, n, d)
            ws = torch.empty(size, dtype=torch.uint8, device=x.device)
            self._check(self.lib.radseg_self_correlation(
                x.data_ptr(), values.data_ptr(), out.data_ptr(), ws.data_ptr(), b, h, n, d,
                values.stride(0), values.stride(1), values.stride(2), tau, dtype, self._stream(x)))  # fmt: skip
        return out
