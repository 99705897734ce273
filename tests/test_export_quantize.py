"""INT8 Q/DQ quantization: only MatMul/Gemm/Conv inputs are quantized (LayerNorm, Softmax, residual adds stay
in higher precision), activation x activation MatMuls are left alone by default, and the quantized tiny
backbone keeps feature cosine >= 0.99 against PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from radseg_edge.errors import EngineError
from radseg_edge.export.gate import feature_cosine
from radseg_edge.export.quantize import (
    QUANTIZED_OP_TYPES,
    activation_matmuls,
    check_qdq_placement,
    dequantized_consumers,
    quantize_int8,
)
from tests._export_helpers import tiny_export_folder

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def backbone():
    """The tiny checkpoint's window backbone graph (64 px windows) from `radseg-edge export --format onnx`."""
    return tiny_export_folder() / "backbone.onnx"


def _windows(n: int, seed: int) -> np.ndarray:
    from radseg_edge.export.build import synthetic_images

    imgs = synthetic_images(n, (64, 64), seed=seed)
    return np.stack([im.transpose(2, 0, 1) for im in imgs]).astype(np.float32) / 255.0


def _assert_only_matmul_gemm_conv_quantized(path):
    model = onnx.load(str(path))
    consumers = dequantized_consumers(model)
    assert consumers and set(consumers) <= set(QUANTIZED_OP_TYPES), consumers
    # LayerNorm, Softmax and the residual Adds read no dequantized tensor
    for op in ("LayerNormalization", "Softmax", "Add"):
        assert op not in consumers
    return model


def test_activation_matmuls_are_the_attention_products(backbone):
    model = onnx.load(str(backbone))
    names = activation_matmuls(model)
    # 4 blocks x (q k^T, attn v) + SCRA's self-correlation (o o^T, A' v) in the last block
    assert len(names) == 4 * 2 + 2
    weight_matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.name not in names]
    assert len(weight_matmuls) >= 4 * 4 + 1  # qkv, proj, fc1, fc2 per block + patch embedding


@pytest.mark.parametrize("backend", ["modelopt", "ort"])
def test_int8_backbone_quantizes_only_weight_matmuls_and_keeps_feature_cosine(backbone, tiny_radio, tmp_path, backend):
    if backend == "modelopt":
        pytest.importorskip("modelopt.onnx.quantization")
    calib = {"windows": _windows(6, seed=1)}
    result = quantize_int8(backbone, tmp_path / f"backbone.{backend}.int8.onnx", calib, backend=backend)
    assert result.backend == backend
    model = _assert_only_matmul_gemm_conv_quantized(result.path)
    node_names = {n.name: n for n in model.graph.node}
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for name in result.excluded_nodes:  # attention products stay unquantized
        assert not any(i in dq_outputs for i in node_names[name].input)
    test = _windows(3, seed=7)
    out = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, {"windows": test})[0]
    with torch.no_grad():
        ref = tiny_radio.forward_spatial(torch.from_numpy(test), scra_tau=10.0).numpy()
    assert feature_cosine(ref, out) >= 0.99


def test_qdq_placement_check_refuses_quantized_layernorm_inputs():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.INT8, [], [0]),
             helper.make_tensor("g", TensorProto.FLOAT, [4], [1, 1, 1, 1])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
             helper.make_node("LayerNormalization", ["dq", "g"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(EngineError, match="LayerNormalization"):
        check_qdq_placement(model)


def test_int8_fixed_pipeline_label_agreement(tiny_radio, tmp_path):
    from radseg_edge.export.build import calibration_inputs, synthetic_images
    from radseg_edge.pipeline import RADSeg
    from tests._export_helpers import CROP, FRAME_HW, STRIDE, tiny_vocabulary

    frames = synthetic_images(4, FRAME_HW, seed=31)
    calib = calibration_inputs(frames[:2], "pipeline", CROP, STRIDE, progress=False)
    result = quantize_int8(tiny_export_folder() / "pipeline.onnx", tmp_path / "pipeline.int8.onnx", calib)
    _assert_only_matmul_gemm_conv_quantized(result.path)
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    seg, vocab = RADSeg(tiny_radio, crop=CROP, stride=STRIDE), tiny_vocabulary()
    equal = total = 0
    for frame in frames[2:]:
        labels = sess.run(["labels"], {"frame": frame[None]})[0]
        ref = seg(frame, vocab).labels.numpy()
        equal += int((labels == ref).sum())
        total += ref.size
    assert equal / total >= 0.9
