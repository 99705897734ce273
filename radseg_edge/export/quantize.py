"""INT8 Q/DQ quantization of exported ONNX graphs.

Only MatMul, Gemm and Conv get QuantizeLinear/DequantizeLinear on their inputs; LayerNorm, softmax,
residual adds, GELU and reductions stay in higher precision (a ViT quantized everywhere collapses,
EDGE.md). By default the activation x activation MatMuls (attention scores, attention x V, SCRA's and
SCGA's self-correlations) are also left unquantized: only MatMuls against weights are INT8.

Backends: NVIDIA ModelOpt's ``modelopt.onnx.quantization`` (runs on the CPU; produces the explicit
Q/DQ graph TensorRT expects) and, when ModelOpt is not installed or fails, ONNX Runtime's static QDQ
quantization restricted to the same op types (the result says which one ran and why).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radseg_edge.errors import EngineError, require
from radseg_edge.export.onnx_io import save_model

#: the only op types that receive Q/DQ inputs.
QUANTIZED_OP_TYPES = ("MatMul", "Gemm", "Conv")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class QuantizeResult:
    path: Path
    backend: str
    quantized_nodes: int
    excluded_nodes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _constant_names(model) -> set[str]:
    names = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            names.update(node.output)
    return names


def activation_matmuls(model) -> list[str]:
    """Names of MatMul nodes whose two inputs are both computed (no weight): attention-like products."""
    constants = _constant_names(model)
    producers = {out: node for node in model.graph.node for out in node.output}

    def is_constant(name: str) -> bool:
        # a weight may reach the MatMul through a Transpose/Cast/Reshape of an initializer
        seen = 0
        while name not in constants and name in producers and seen < 4:
            node = producers[name]
            if node.op_type not in ("Transpose", "Cast", "Reshape", "Identity") or not node.input:
                return False
            name = node.input[0]
            seen += 1
        return name in constants

    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and not any(is_constant(i) for i in node.input)
    ]


def dequantized_consumers(model) -> dict[str, int]:
    """{op type: count} of the nodes (other than Q/DQ) that read a DequantizeLinear output."""
    dq_outputs = {out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(i in dq_outputs for i in node.input):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def check_qdq_placement(model, allowed: Sequence[str] = QUANTIZED_OP_TYPES) -> int:
    """Verify that only ``allowed`` op types read dequantized tensors; returns how many do.

    Raises:
        EngineError: another op type (LayerNorm, Softmax, Add, ...) reads a dequantized tensor.
    """
    counts = dequantized_consumers(model)
    wrong = {k: v for k, v in counts.items() if k not in allowed}
    if wrong:
        raise EngineError(
            "the INT8 model quantizes ops that must stay in higher precision: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(wrong.items()))
        )
    return sum(counts.values())


def strip_foreign_qdq(model, allowed: Sequence[str] = QUANTIZED_OP_TYPES) -> int:
    """Rewire nodes outside ``allowed`` that read a Q->DQ pair of an activation back to the float tensor.

    ONNX Runtime's QDQ quantizer also quantizes some MatMul outputs, so the following bias/residual Add
    would read INT8-rounded values; this puts those consumers back in higher precision and drops the
    Q/DQ nodes left unused. Returns the number of rewired inputs. Modifies ``model`` in place.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    rewired = 0
    for node in model.graph.node:
        if node.op_type in allowed or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a quantized weight initializer: leave it
            node.input[k] = q.input[0]
            rewired += 1
    used = {i for node in model.graph.node for i in node.input} | {o.name for o in model.graph.output}
    changed = True
    while changed:  # drop Q/DQ nodes whose outputs nobody reads any more
        changed = False
        for node in list(model.graph.node):
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in node.output):
                model.graph.node.remove(node)
                changed = True
        used = {i for node in model.graph.node for i in node.input} | {o.name for o in model.graph.output}
    return rewired


def list_images(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """Image files of ``folder`` (sorted, non-recursive), at most ``limit``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EngineError(f"calibration folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EngineError(f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files[:limit] if limit else files


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """H x W x 3 uint8 RGB image."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EngineError(f"cannot read the image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def stack_calibration(samples: Iterable[dict[str, np.ndarray]], progress: bool = True, total: int | None = None):
    """Concatenate per-sample input dicts along axis 0 (with a progress bar while they are produced)."""
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, total=total, desc="calibration data", unit="image")
    batches: dict[str, list[np.ndarray]] = {}
    for sample in samples:
        for name, value in sample.items():
            batches.setdefault(name, []).append(np.asarray(value))
    if not batches:
        raise EngineError("no calibration data: give a folder with at least one image")
    return {name: np.concatenate(values, axis=0) for name, values in batches.items()}


def _quantize_modelopt(onnx_path, output_path, calibration, exclude, high_precision) -> None:
    moq = require("modelopt.onnx.quantization", "quant", "INT8 quantization with NVIDIA ModelOpt")
    moq.quantize(
        str(onnx_path),
        quantize_mode="int8",
        calibration_data=calibration,
        calibration_method="max",
        calibration_eps=["cpu"],
        op_types_to_quantize=list(QUANTIZED_OP_TYPES),
        nodes_to_exclude=list(exclude) or None,
        high_precision_dtype=high_precision,
        output_path=str(output_path),
        log_level="WARNING",
    )


class _ArrayReader:
    """onnxruntime CalibrationDataReader over stacked arrays, one sample (batch 1) at a time."""

    def __init__(self, calibration: dict[str, np.ndarray], batch: int = 1):
        self.calibration = calibration
        self.n = len(next(iter(calibration.values())))
        self.batch = batch
        self.i = 0

    def get_next(self):
        if self.i >= self.n:
            return None
        sample = {k: v[self.i : self.i + self.batch] for k, v in self.calibration.items()}
        self.i += self.batch
        return sample

    def rewind(self):
        self.i = 0


def _static_batch(onnx_path) -> int:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    dim = model.graph.input[0].type.tensor_type.shape.dim
    return int(dim[0].dim_value) if dim and dim[0].dim_value > 0 else 1


def _quantize_ort(onnx_path, output_path, calibration, exclude) -> None:
    import onnx

    q = require("onnxruntime.quantization", "onnx", "INT8 quantization with ONNX Runtime")
    model = onnx.load(str(onnx_path))
    # name the nodes to quantize (nodes_to_exclude leaves tensors without calibration ranges in ORT)
    targets = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OP_TYPES and n.name not in set(exclude)]
    q.quantize_static(
        str(onnx_path),
        str(output_path),
        _ArrayReader(calibration, batch=_static_batch(onnx_path)),
        quant_format=q.QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OP_TYPES),
        nodes_to_quantize=targets,
        per_channel=True,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )


def _ort_worker(onnx_path: str, output_path: str, calibration_npz: str, exclude: list[str]) -> None:
    with np.load(calibration_npz) as data:
        calibration = {k: data[k] for k in data.files}
    _quantize_ort(onnx_path, output_path, calibration, exclude)


def _quantize_ort_isolated(onnx_path, output_path, calibration, exclude) -> None:
    """ONNX Runtime quantization, in a fresh interpreter when ModelOpt was imported (it patches
    onnxruntime.quantization's calibrators on import, which breaks ONNX Runtime's own QDQ flow)."""
    import sys

    if not any(m == "modelopt" or m.startswith("modelopt.") for m in sys.modules):
        _quantize_ort(onnx_path, output_path, calibration, exclude)
        return
    import multiprocessing

    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "calibration.npz"
        np.savez(npz, **calibration)
        proc = multiprocessing.get_context("spawn").Process(
            target=_ort_worker, args=(str(onnx_path), str(output_path), str(npz), list(exclude))
        )
        proc.start()
        proc.join()
    if proc.exitcode != 0:
        raise EngineError(f"ONNX Runtime INT8 quantization of {onnx_path} failed (exit code {proc.exitcode}; see the log above)")


def quantize_int8(
    onnx_path: str | os.PathLike,
    output_path: str | os.PathLike,
    calibration: dict[str, np.ndarray],
    backend: str = "auto",
    quantize_attention: bool = False,
    high_precision: str = "fp32",
) -> QuantizeResult:
    """Write a Q/DQ INT8 copy of ``onnx_path`` calibrated on ``calibration``.

    Args:
        calibration: {graph input name: N x ... array}; N samples stacked on axis 0.
        backend: "modelopt", "ort" or "auto" (ModelOpt, else ONNX Runtime with a note saying why).
        quantize_attention: also quantize activation x activation MatMuls (attention, SCRA, SCGA).
        high_precision: dtype of the non-quantized ops for ModelOpt ("fp32"; "fp16" for a GPU target).
    Returns:
        the output path, which backend ran, how many nodes read INT8 inputs and notes.
    Raises:
        EngineError: quantization failed, or the result quantizes other op types than MatMul/Gemm/Conv.
    """
    import onnx

    if backend not in ("auto", "modelopt", "ort"):
        raise EngineError(f"unknown quantization backend {backend!r}; choose auto, modelopt or ort")
    model = onnx.load(str(onnx_path))
    exclude = [] if quantize_attention else activation_matmuls(model)
    notes: list[str] = []
    output_path = Path(output_path)
    used = backend
    with tempfile.TemporaryDirectory() as tmp:
        # both backends write intermediate files beside their input: work on a private copy
        src = save_model(model, Path(tmp) / Path(onnx_path).name)
        if backend in ("auto", "modelopt"):
            try:
                _quantize_modelopt(src, output_path, calibration, exclude, high_precision)
                used = "modelopt"
            except Exception as exc:  # ModelOpt missing or failing on this graph
                if backend == "modelopt":
                    raise EngineError(f"ModelOpt INT8 quantization failed: {exc}") from exc
                notes.append(f"ModelOpt unavailable or failed ({type(exc).__name__}: {exc}); used ONNX Runtime QDQ")
                used = "ort"
        if used == "ort":
            _quantize_ort_isolated(src, output_path, calibration, exclude)
            quantized_model = onnx.load(str(output_path))
            if strip_foreign_qdq(quantized_model):
                save_model(quantized_model, output_path)
    quantized = check_qdq_placement(onnx.load(str(output_path)))
    if quantized == 0:
        raise EngineError(f"quantization of {onnx_path} produced no INT8 MatMul/Gemm/Conv")
    return QuantizeResult(output_path, used, quantized, exclude, notes)
