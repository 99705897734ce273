"""The TensorRT plugin node of the exported head graph (radseg_edge.export.plugin): SCGA is one
``radseg::RadsegScga`` node matching kernels/tensorrt/radseg_trt_plugin.cpp (name, version, namespace,
fields, shapes), the graph with the reference operator in the node's place gives the PyTorch result, ONNX
Runtime formats carry no plugin node, and engine builds pass the plugin library (TensorRT mocked)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from radseg_edge.errors import EngineError
from radseg_edge.export import onnx as onnx_export
from radseg_edge.export import plugin
from radseg_edge.export.graphs import HeadGraph
from tests._export_helpers import CROP, STRIDE, TINY_CKPT, tiny_export_folder

PLUGIN_SOURCE = Path(__file__).parents[1] / "kernels" / "tensorrt" / "radseg_trt_plugin.cpp"


@pytest.fixture(scope="module")
def seg(tiny_radio):
    from radseg_edge.pipeline import RADSeg

    return RADSeg(tiny_radio, crop=CROP, stride=STRIDE, scga_tau=7.5)


@pytest.fixture(scope="module")
def plugin_head(seg, tmp_path_factory):
    path = onnx_export.export_head(seg, tmp_path_factory.mktemp("plugin") / "head.onnx", plugin=True)
    return onnx.load(str(path))


def _value_info(model, name):
    for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        if v.name == name:
            return v.type.tensor_type
    raise AssertionError(f"no value info for {name}")


def test_plugin_constants_match_the_tensorrt_plugin_source():
    src = PLUGIN_SOURCE.read_text()
    assert f'"{plugin.SCGA_OP}"' in src
    assert re.search(r'kVersion\s*=\s*"' + plugin.PLUGIN_VERSION + '"', src)
    assert re.search(r'kNamespace\s*=\s*"' + plugin.PLUGIN_NAMESPACE + '"', src)
    # the creator's fields, which TensorRT's ONNX parser fills from the node's attributes by name and type
    assert re.search(r'"tau",\s*nullptr,\s*PluginFieldType::kFLOAT32', src)
    assert re.search(r'"batch_mean",\s*nullptr,\s*PluginFieldType::kINT32', src)


def test_head_graph_carries_one_scga_plugin_node_in_its_own_domain(plugin_head, seg):
    nodes = [n for n in plugin_head.graph.node if n.domain == plugin.PLUGIN_DOMAIN]
    assert [n.op_type for n in nodes] == ["RadsegScga"]
    node = nodes[0]
    attrs = {a.name: a for a in node.attribute}
    assert attrs["tau"].type == onnx.AttributeProto.FLOAT and attrs["tau"].f == pytest.approx(7.5)
    assert attrs["batch_mean"].type == onnx.AttributeProto.INT and attrs["batch_mean"].i == 0
    assert attrs["plugin_version"].s == b"1" and attrs["plugin_namespace"].s == b"radseg"
    assert {o.domain: o.version for o in plugin_head.opset_import}["radseg"] == 1
    # input and output: B x N x C float, same shape (N dynamic: h*w)
    c = seg.radio.embed_dim
    for name in (node.input[0], node.output[0]):
        t = _value_info(plugin_head, name)
        assert t.elem_type == TensorProto.FLOAT
        dims = t.shape.dim
        assert len(dims) == 3 and dims[0].dim_value == 1 and dims[2].dim_value == c and dims[1].dim_param
    assert len(node.input) == 1 and len(node.output) == 1
    # the N x N SCGA is gone: only the class softmax is left
    assert [n.op_type for n in plugin_head.graph.node].count("Softmax") == 1
    onnx.checker.check_model(plugin_head)
    assert plugin.plugin_record(plugin_head) == [
        {"op_type": "RadsegScga", "domain": "radseg", "version": "1", "namespace": "radseg", "nodes": 1}]


@pytest.mark.parametrize("hw", [(5, 7), (9, 4)])
def test_reference_operator_in_the_plugin_node_gives_the_pytorch_result(plugin_head, seg, hw):
    g = torch.Generator().manual_seed(hw[0])
    feats = torch.randn(1, seg.radio.embed_dim, *hw, generator=g)
    text = torch.randn(6, seg.embedding_dim, generator=g)
    out = plugin.evaluate_with_reference(plugin_head, {"features": feats.numpy(), "text_embeddings": text.numpy()})[0]
    with torch.no_grad():
        ref = HeadGraph(seg.radio, seg.scga_tau)(feats, text)  # the standard-op module, SCGA from export.ops
    assert out.shape == tuple(ref.shape)
    assert np.abs(out - ref.numpy()).max() <= 1e-5


def test_plugin_op_in_pytorch_is_the_scga_reference():
    from radseg_edge.core.scga import scga_reference

    x = torch.randn(2, 11, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.ops.radseg_export.scga_plugin(x, 3.0, 1), scga_reference(x, 3.0, batch_mean=True))
    half = torch.ops.radseg_export.scga_plugin(x.half(), 3.0, 0)
    assert half.dtype == torch.float16


def test_onnx_runtime_formats_carry_no_plugin_node():
    from radseg_edge.export.manifest import Manifest

    folder = tiny_export_folder()  # `radseg-edge export --format onnx`
    manifest = Manifest.read(folder)
    for role in ("backbone", "head", "pipeline"):
        model = onnx.load(str(folder / manifest.artefacts[role]["file"]), load_external_data=False)
        assert not [n for n in model.graph.node if n.domain == plugin.PLUGIN_DOMAIN]
        assert manifest.artefacts[role]["plugins"] == []


def test_cli_passes_no_plugin_and_plugin_lib_to_the_export(monkeypatch, tmp_path):
    from radseg_edge.cli import main
    from radseg_edge.export import build

    seen = {}

    def fake_export(seg, fmt, out, vocabulary=None, options=None, model_info=None):
        seen[fmt] = options
        raise EngineError("stop here")

    monkeypatch.setattr(build, "check_feasible", lambda fmt: None)
    monkeypatch.setattr(build, "export_model", fake_export)
    common = ["--checkpoint", str(TINY_CKPT), "--device", "cpu", "--crop", str(CROP), "--stride", str(STRIDE),
              "-o", str(tmp_path)]
    main(["export", "--format", "engine-fp16", *common])
    main(["export", "--format", "engine-int8", "--no-plugin", "--plugin-lib", "x.so", *common])
    assert seen["engine-fp16"].plugin is True and seen["engine-fp16"].plugin_libraries == []
    assert seen["engine-int8"].plugin is False and seen["engine-int8"].plugin_libraries == ["x.so"]


def _fake_tensorrt_folder(tmp_path, head_model):
    from radseg_edge.export.build import artefact_record
    from radseg_edge.export.manifest import Manifest

    head = tmp_path / "head.onnx"
    onnx.save(head_model, str(head))
    manifest = Manifest(format="engine-fp16", precision="fp16", model={"embed_dim": 192}, vocabulary={"dim": 64},
                        windows={"crop": CROP, "patch": 16},
                        artefacts={"head": artefact_record(head, kind="fp16", plugins=plugin.graph_plugins(head))})
    manifest.write(tmp_path)


def test_engine_build_of_a_plugin_graph_passes_the_plugin_library(plugin_head, tmp_path, monkeypatch):
    from radseg_edge.export import build, cache, engine
    from radseg_edge.export.manifest import Manifest

    _fake_tensorrt_folder(tmp_path, plugin_head)
    calls = {}

    def fake_build(onnx_path, plan, profile, timing_cache=None, plugin_libraries=(), progress=True):
        calls["plugin_libraries"] = list(plugin_libraries)
        return b"ENGINE"

    fake_trt = types.ModuleType("tensorrt")  # a module with code, as the real package (not the stubs' namespace)
    fake_trt.__version__, fake_trt.__file__ = "10.3.0.30", __file__
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    monkeypatch.setattr(engine, "build_engine", fake_build)
    monkeypatch.setattr(cache, "describe_device", lambda: cache.DeviceDescription("Orin", "8.7", 16, "10.3.0.30",
                                                                                  "12.6", "36.4.3"))
    lib = tmp_path / plugin.PLUGIN_LIBRARY_NAME
    lib.write_bytes(b"pretend plugin")
    build.build_folder_engines(tmp_path, "fp16", progress=False, plugin_libraries=[str(lib)])
    assert calls["plugin_libraries"] == [tmp_path / "plugins" / lib.name]  # copied into the folder, loaded from there
    record = Manifest.read(tmp_path).artefacts["head_engine"]
    assert record["plugin_nodes"][0]["op_type"] == "RadsegScga" and [Path(r["file"]).name for r in record["plugins"]] == [lib.name]

    monkeypatch.setattr(plugin, "plugin_library_candidates", lambda: [])
    with pytest.raises(EngineError, match="--no-plugin"):
        build.build_folder_engines(tmp_path, "fp16", progress=False)
    with pytest.raises(EngineError, match="not a file"):
        build.build_folder_engines(tmp_path, "fp16", progress=False, plugin_libraries=[str(tmp_path / "missing.so")])


def test_plugin_library_is_found_from_the_environment(tmp_path, monkeypatch):
    lib = tmp_path / "libradseg_trt_plugin.so"
    lib.write_bytes(b"x")
    monkeypatch.setenv(plugin.PLUGIN_LIBRARY_ENV, str(lib))
    assert plugin.find_plugin_library() == lib


def test_fixed_pipeline_graph_with_the_plugin_node_gives_the_pytorch_result(seg, tmp_path):
    from radseg_edge.export.build import synthetic_images
    from radseg_edge.export.fixed import FixedResolutionPipeline
    from tests._export_helpers import FRAME_HW, tiny_vocabulary

    text = tiny_vocabulary().embeddings
    path = onnx_export.export_fixed_pipeline(seg, text, *FRAME_HW, tmp_path / "pipeline.onnx", plugin=True)
    model = onnx.load(str(path))
    assert [n["op_type"] for n in plugin.plugin_nodes(model)] == ["RadsegScga"]
    frame = torch.from_numpy(synthetic_images(1, FRAME_HW, seed=5)[0])[None]
    labels, probs = plugin.evaluate_with_reference(model, {"frame": frame.numpy()})
    with torch.no_grad():
        ref_labels, ref_probs = FixedResolutionPipeline(seg, text, *FRAME_HW)(frame)  # standard-op SCGA
    assert np.abs(probs - ref_probs.numpy()).max() <= 1e-5
    assert (labels == ref_labels.numpy()).mean() >= 0.999
