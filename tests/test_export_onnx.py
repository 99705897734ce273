"""ONNX graphs of the tiny checkpoint (tests/fixtures/tiny_radio.pth.tar) run in ONNX Runtime (CPU) and match
the PyTorch pipeline; the graphs are edge-safe (opset >= 17, no fused attention, no antialias); FP16 keeps
LayerNorm, softmax and SCGA statistics in fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from radseg_edge.core.predict import class_probabilities
from radseg_edge.errors import EngineError
from radseg_edge.export import onnx as onnx_export
from radseg_edge.export.fixed import FixedResolutionPipeline
from radseg_edge.export.fp16 import convert_fp16
from tests._export_helpers import CROP, FRAME_HW, STRIDE, tiny_export_folder, tiny_vocabulary

ort = pytest.importorskip("onnxruntime")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _frame(seed: int) -> np.ndarray:
    from radseg_edge.export.build import synthetic_images

    return synthetic_images(1, FRAME_HW, seed=seed)[0]


@pytest.fixture(scope="module")
def seg(tiny_radio):
    from radseg_edge.pipeline import RADSeg

    return RADSeg(tiny_radio, crop=CROP, stride=STRIDE)


@pytest.fixture(scope="module")
def text():
    return tiny_vocabulary().embeddings


@pytest.fixture(scope="module")
def graphs():
    """backbone / head / pipeline graphs written by `radseg-edge export --format onnx --imgsz 70x110`."""
    folder = tiny_export_folder()
    return {role: folder / f"{role}.onnx" for role in ("backbone", "head", "pipeline")}


@pytest.mark.parametrize("batch", [1, 3])
def test_backbone_graph_matches_pytorch_for_any_window_batch(graphs, tiny_radio, batch):
    windows = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = tiny_radio.forward_spatial(windows, scra_tau=10.0)
    out = _session(graphs["backbone"]).run(["features"], {"windows": windows.numpy()})[0]
    assert out.shape == tuple(ref.shape)
    assert np.abs(out - ref.numpy()).max() <= 1e-4 * max(1.0, float(ref.abs().max()))


@pytest.mark.parametrize(("hw", "classes"), [((4, 6), 3), ((9, 13), 11)])
def test_head_graph_takes_the_vocabulary_as_an_input(graphs, seg, hw, classes):
    g = torch.Generator().manual_seed(classes)
    feats, text = torch.randn(1, seg.radio.embed_dim, *hw, generator=g), torch.randn(classes, seg.embedding_dim, generator=g)
    with torch.no_grad():
        ref = class_probabilities(seg.language_features(seg.scga(feats)), text)
    out = _session(graphs["head"]).run(["probs"], {"features": feats.numpy(), "text_embeddings": text.numpy()})[0]
    assert np.abs(out - ref.numpy()).max() <= 1e-4


def test_fixed_resolution_pipeline_module_equals_radseg(seg, text):
    pipe = FixedResolutionPipeline(seg, text, *FRAME_HW)
    frame = _frame(1)
    with torch.no_grad():
        labels, probs = pipe(torch.from_numpy(frame)[None])
    ref = seg(frame, text)
    assert labels.dtype == torch.int64 and labels.shape == (1, *FRAME_HW)
    assert probs.dtype == torch.float32 and probs.shape == (1, text.shape[0], *FRAME_HW)
    assert pipe.num_windows == 6
    assert torch.equal(labels, ref.labels)
    assert (probs - ref.probs).abs().max() <= 1e-4


@pytest.mark.parametrize("seed", [2, 3])
def test_fixed_pipeline_graph_in_onnxruntime_equals_radseg(graphs, seg, text, seed):
    frame = _frame(seed)
    ref = seg(frame, text)
    labels, probs = _session(graphs["pipeline"]).run(["labels", "probs"], {"frame": frame[None]})
    assert np.array_equal(labels, ref.labels.numpy())
    assert np.abs(probs - ref.probs.numpy()).max() <= 1e-4


@pytest.mark.parametrize("role", ["backbone", "head", "pipeline"])
def test_graphs_are_edge_safe(graphs, role):
    model = onnx.load(str(graphs[role]))
    onnx.checker.check_model(model)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert opset >= 17
    assert not ops & set(onnx_export.FORBIDDEN_OPS)
    assert all(o.domain in ("", "ai.onnx") for o in model.opset_import)  # no contrib (fused) ops
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Resize":
            assert not attrs.get("antialias", 0) and attrs.get("mode") == b"linear"
    if role != "head":
        assert "LayerNormalization" in ops and "Softmax" in ops and "MatMul" in ops and "Where" in ops


def _single_node_model(op, attrs=None, opset=18):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8] if op == "Resize" else [1, 1, 4, 4])
    inputs = ["x", "", "scales"] if op == "Resize" else ["x"]
    node = helper.make_node(op, inputs, ["y"], **(attrs or {}))
    init = [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])] if op == "Resize" else []
    graph = helper.make_graph([node], "g", [x], [y], initializer=init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_check_graph_refuses_antialias_bicubic_and_old_opsets():
    onnx_export.check_graph(_single_node_model("Resize", {"mode": "linear"}))
    with pytest.raises(EngineError, match="antialias"):
        onnx_export.check_graph(_single_node_model("Resize", {"mode": "linear", "antialias": 1}))
    with pytest.raises(EngineError, match="bicubic"):
        onnx_export.check_graph(_single_node_model("Resize", {"mode": "cubic"}))
    with pytest.raises(EngineError, match="opset 16"):
        onnx_export.check_graph(_single_node_model("Relu", opset=16))


def _elem_types(model) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def test_fp16_keeps_layernorm_softmax_and_scga_statistics_in_fp32(graphs, tmp_path):
    keep = set(onnx_export.keep_fp32_nodes(onnx.load(str(graphs["pipeline"]))))
    assert keep, "the export records the SCGA nodes"
    path, _ = convert_fp16(graphs["pipeline"], tmp_path / "pipeline.fp16.onnx")
    model = onnx.load(str(path))
    types = _elem_types(model)
    half_weights = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16]
    assert half_weights, "weights were converted"
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "ReduceMean", "ReduceL2") or node.name in keep:
            float_inputs = [types.get(i) for i in node.input[:1] if types.get(i) in (TensorProto.FLOAT, TensorProto.FLOAT16)]
            assert all(t == TensorProto.FLOAT for t in float_inputs), f"{node.op_type} {node.name} runs in fp16"
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert inputs == {"frame": TensorProto.UINT8}
    assert outputs == {"labels": TensorProto.INT64, "probs": TensorProto.FLOAT}


def test_fp16_pipeline_agrees_with_fp32_pytorch(graphs, seg, text, tmp_path):
    path, _ = convert_fp16(graphs["pipeline"], tmp_path / "pipeline.fp16.onnx")
    sess = _session(path)
    agree, worst = [], 0.0
    for seed in (4, 5):
        frame = _frame(seed)
        ref = seg(frame, text)
        labels, probs = sess.run(["labels", "probs"], {"frame": frame[None]})
        agree.append(float((labels == ref.labels.numpy()).mean()))
        worst = max(worst, float(np.abs(probs - ref.probs.numpy()).max()))
    assert np.mean(agree) >= 0.98
    assert worst <= 0.1


@pytest.mark.slow
def test_fixed_resolution_pipeline_traces_with_torch_export(seg, text):
    """The module the AOTInductor / C++ runtime compiles: torch.export gives the same labels and probs.
    (The ONNX export above also goes through torch.export; this pins the plain-module contract.)"""
    pipe = FixedResolutionPipeline(seg, text, *FRAME_HW).eval()
    frame = torch.from_numpy(_frame(8))[None]
    program = torch.export.export(pipe, (frame,), strict=False)
    with torch.no_grad():
        labels, probs = program.module()(frame)
        ref_labels, ref_probs = pipe(frame)
    assert torch.equal(labels, ref_labels)
    assert (probs - ref_probs).abs().max() <= 1e-5
