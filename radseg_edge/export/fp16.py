"""FP16 conversion of an exported ONNX graph, keeping the numerically fragile parts in fp32.

Kept in fp32: LayerNormalization (a decomposed or fp16 LayerNorm overflows on ViT-B activations),
Softmax, every reduction (L2 norms, means, maxima) and the SCGA statistics (the nodes recorded under
:data:`radseg_edge.export.onnx.KEEP_FP32_KEY` at export). Graph inputs and outputs keep their types,
so an fp16 model is a drop-in replacement. Uses ``onnxconverter-common``.
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
)


def convert_fp16(onnx_path: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """Write an fp16 copy of ``onnx_path`` (see module docstring for what stays fp32); returns its path."""
    onnx = require("onnx", "onnx", "FP16 conversion")
    f16 = require("onnxconverter_common.float16", "onnx", "FP16 conversion (onnxconverter-common)")
    model = onnx.load(str(onnx_path))
    keep_nodes = keep_fp32_nodes(model)
    block_ops = sorted(set(f16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OP_TYPES))
    try:
        converted = f16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=block_ops, node_block_list=keep_nodes,
            disable_shape_infer=False,
        )
    except Exception as exc:
        raise EngineError(f"FP16 conversion of {onnx_path} failed: {exc}") from exc
    return save_model(converted, output_path)


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
