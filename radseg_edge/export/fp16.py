"""FP16 conversion of an exported ONNX graph, keeping the numerically fragile parts in fp32.

Kept in fp32: LayerNormalization (a decomposed or fp16 LayerNorm overflows on ViT-B activations),
Softmax, every reduction (L2 norms, means, maxima) and the SCGA statistics (the nodes recorded under
:data:`radseg_edge.export.onnx.KEEP_FP32_KEY` at export). Graph inputs and outputs keep their types,
so an fp16 model is a drop-in replacement. Uses NVIDIA ModelOpt's AutoCast
(``modelopt.onnx.autocast``) when installed, else ``onnxconverter-common``.
"""

from __future__ import annotations

import os
from pathlib import Path

from radseg_edge.errors import EngineError, require
from radseg_edge.export.onnx import keep_fp32_nodes
from radseg_edge.export.onnx_io import save_model

#: op types that stay fp32 in the converted model.
FP32_OP_TYPES = (
    "LayerNormalization",
    "Softmax",
    "ReduceL2",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceMax",
    "ArgMax",
    "Resize",
    "Erf",
    "Clip",
)


def _convert_modelopt(onnx_path, keep_nodes):
    autocast = require("modelopt.onnx.autocast", "quant", "FP16 conversion with NVIDIA ModelOpt AutoCast")
    return autocast.convert_to_mixed_precision(
        str(onnx_path), low_precision_type="fp16", nodes_to_exclude=keep_nodes or None,
        op_types_to_exclude=list(FP32_OP_TYPES), keep_io_types=True, data_max=float("inf"),
    )


def _convert_onnxconverter(model, keep_nodes):
    f16 = require("onnxconverter_common.float16", "onnx", "FP16 conversion (onnxconverter-common)")
    block_ops = sorted(set(f16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OP_TYPES))
    return f16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block_ops, node_block_list=keep_nodes)


def convert_fp16(onnx_path: str | os.PathLike, output_path: str | os.PathLike, backend: str = "auto") -> tuple[Path, str]:
    """Write an fp16 copy of ``onnx_path`` (see module docstring for what stays fp32).

    Args:
        backend: "modelopt", "onnxconverter" or "auto" (ModelOpt AutoCast, else onnxconverter-common).
    Returns:
        (written path, backend that converted it).
    """
    onnx = require("onnx", "onnx", "FP16 conversion")
    model = onnx.load(str(onnx_path))
    keep_nodes = keep_fp32_nodes(model)
    errors = []
    for name in ("modelopt", "onnxconverter") if backend == "auto" else (backend,):
        try:
            converted = _convert_modelopt(onnx_path, keep_nodes) if name == "modelopt" else _convert_onnxconverter(model, keep_nodes)
        except Exception as exc:  # a missing package or a converter bug on this graph: try the next one
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        return save_model(converted, output_path), name
    raise EngineError(f"FP16 conversion of {onnx_path} failed ({'; '.join(errors)})")


def fp16_fraction(model) -> float:
    """Fraction of float initializer elements stored as fp16 (a quick check that conversion happened)."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    total = half = 0
    for init in model.graph.initializer:
        if init.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
            continue
        n = int(np.prod(numpy_helper.to_array(init).shape)) if init.dims else 1
        total += n
        if init.data_type == TensorProto.FLOAT16:
            half += n
    return half / max(total, 1)
