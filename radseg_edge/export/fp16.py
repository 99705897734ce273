"""FP16 conversion of an exported ONNX graph, keeping the numerically fragile parts in fp32.

Kept in fp32: LayerNormalization (a decomposed or fp16 LayerNorm overflows on ViT-B activations),
Softmax, every reduction (L2 norms, means, maxima), every square and norm (Pow, Sqrt, x * x), the nodes
recorded under :data:`radseg_edge.export.onnx.KEEP_FP32_KEY` at export, and the similarity islands found
in the graph (:func:`fp32_island_nodes`): the L2 normalisations, the MatMul of two normalised tensors
(SCRA's self-correlation, SCGA's similarity, the cosine logits) and everything from it to its Softmax
(mean, threshold, mask), so that threshold decisions are taken on fp32 similarities. Graph inputs and
outputs keep their types, so an fp16 model is a drop-in replacement. Uses NVIDIA ModelOpt's AutoCast
(``modelopt.onnx.autocast``, with its magnitude guard on: ``data_max`` = :data:`DATA_MAX`) when
installed, else ``onnxconverter-common``. TensorRT builds these graphs strongly typed
(:mod:`radseg_edge.export.engine`), so the islands are honoured as written.
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


#: op types that square or take norms: always fp32 (a square overflows fp16 above 256).
SQUARE_OP_TYPES = ("Pow", "Sqrt", "LpNormalization", "ReduceL2", "ReduceSumSquare")

#: ModelOpt AutoCast keeps a node in fp32 when its outputs exceed this magnitude (fp16 max is 65504).
DATA_MAX = 512.0

_SHAPE_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast", "Flatten")
_ISLAND_OPS = ("Mul", "Div", "Sub", "Add", "Neg", "ReduceMean", "ReduceMax", "ReduceMin", "Less", "Greater",
               "LessOrEqual", "GreaterOrEqual", "Where", "Exp", "Max", "Min", "Clip")


def fp32_island_nodes(model) -> list[str]:
    """Names of the nodes that must stay fp32 beyond whole op types: see the module docstring.

    A tensor is *normalised* when it is the output of a Div by a (clamped) ReduceL2 / Sqrt, or a shape op
    of a normalised tensor; a *similarity* is a MatMul of two normalised tensors; its island runs forward
    through element-wise ops and reductions up to and including the Softmax that consumes it.
    """
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep: list[str] = []

    def mark(node) -> None:
        if node.name and node.name not in keep:
            keep.append(node.name)

    def norm_chain(name: str) -> list:
        """The ReduceL2/Sqrt (+ Clip/Max/Add) chain producing a divisor, or []."""
        chain = []
        node = producer.get(name)
        while node is not None and node.op_type in ("Clip", "Max", "Add", "Cast"):
            chain.append(node)
            node = producer.get(node.input[0])
        return chain + [node] if node is not None and node.op_type in ("ReduceL2", "Sqrt") else []

    normalised: set[str] = set()
    for n in nodes:
        if n.op_type == "Div" and len(n.input) == 2 and norm_chain(n.input[1]):
            normalised.update(n.output)
            mark(n)
            for c in norm_chain(n.input[1]):
                mark(c)
    changed = True
    while changed:
        changed = False
        for n in nodes:
            if n.op_type in _SHAPE_OPS and n.input and n.input[0] in normalised and not set(n.output) <= normalised:
                normalised.update(n.output)
                changed = True
    for n in nodes:
        if n.op_type == "Mul" and len(n.input) == 2 and n.input[0] == n.input[1]:
            mark(n)  # a square
        if n.op_type not in ("MatMul", "Gemm") or not all(i in normalised for i in n.input[:2]):
            continue
        mark(n)
        frontier = list(n.output)
        while frontier:
            for c in consumers.get(frontier.pop(), []):
                if c.name in keep:
                    continue
                if c.op_type == "Softmax":
                    mark(c)
                elif c.op_type in _ISLAND_OPS:
                    mark(c)
                    frontier.extend(c.output)
    return keep


def sample_inputs(model, seed: int = 0) -> dict:
    """Plausible inputs of a graph for AutoCast's magnitude check: frames uint8 in [0, 255], float inputs
    in [0, 1) (windows, features; text embeddings unit-scale), dynamic dimensions 2 (batch-like) or 6."""
    import numpy as np
    from onnx import TensorProto

    rng = np.random.default_rng(seed)
    out = {}
    for inp in model.graph.input:
        t = inp.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else (2 if i == 0 else 6) for i, d in enumerate(t.shape.dim)]
        if t.elem_type == TensorProto.UINT8:
            out[inp.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif t.elem_type == TensorProto.INT64:
            out[inp.name] = np.zeros(shape, np.int64)
        else:
            out[inp.name] = rng.random(shape, dtype=np.float32)
    return out


def _convert_modelopt(onnx_path, keep_nodes):
    import tempfile

    import numpy as np
    import onnx

    autocast = require("modelopt.onnx.autocast", "quant", "FP16 conversion with NVIDIA ModelOpt AutoCast")
    with tempfile.TemporaryDirectory() as tmp:
        calib = Path(tmp) / "inputs.npz"
        np.savez(calib, **sample_inputs(onnx.load(str(onnx_path), load_external_data=False)))
        return autocast.convert_to_mixed_precision(
            str(onnx_path), low_precision_type="fp16", nodes_to_exclude=keep_nodes or None,
            op_types_to_exclude=[*FP32_OP_TYPES, *SQUARE_OP_TYPES], keep_io_types=True, data_max=DATA_MAX,
            calibration_data=str(calib),
        )


def _convert_onnxconverter(model, keep_nodes):
    f16 = require("onnxconverter_common.float16", "onnx", "FP16 conversion (onnxconverter-common)")
    block_ops = sorted(set(f16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OP_TYPES) | set(SQUARE_OP_TYPES))
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
    keep_nodes = list(dict.fromkeys([*keep_fp32_nodes(model), *fp32_island_nodes(model)]))
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
