"""The TensorRT plugin node of the exported head graph: SCGA as one ``radseg::RadsegScga`` node.

Engine builds (``--format engine-fp16|engine-int8``) export the head graph (and the fixed-resolution
pipeline graph of ``--imgsz``) with SCGA as a single node
that TensorRT's ONNX parser hands to the ``RadsegScga`` IPluginV3 creator of
``libradseg_trt_plugin.so`` (kernels/tensorrt/radseg_trt_plugin.cpp) instead of the N x N
MatMul -> Softmax -> MatMul of :func:`radseg_edge.export.ops.scga_export` (1 GiB per fp32 buffer at
128 x 128 patches). The node matches the plugin exactly:

===============  ===================================================================
op_type          ``RadsegScga`` (the plugin name; TensorRT looks creators up by op_type)
domain           ``radseg`` (its own ONNX domain, opset version 1)
attributes       ``tau`` float (kFLOAT32 field), ``batch_mean`` int (kINT32 field, 0: per-image
                 threshold), ``plugin_version`` "1", ``plugin_namespace`` "radseg" (read by the
                 parser to find the creator, not passed to it)
input            ``features`` B x N x C, float / float16 / bfloat16
output           B x N x C, the input's dtype
===============  ===================================================================

How TensorRT reads it (onnx-tensorrt 10.x, ``onnxOpImporters.cpp``): an op type without a built-in importer
goes to the fallback plugin importer, which looks the creator up by (op_type, ``plugin_version``,
``plugin_namespace``; the node's domain when the namespace is empty) and fills each of the creator's fields
from the attribute of the same name (FLOAT -> kFLOAT32, INT -> kINT32), then adds an IPluginV3 layer.

ONNX Runtime cannot run the node; ONNX Runtime formats therefore keep the standard-op graph, and
:func:`evaluate_with_reference` runs a plugin graph on the CPU with the reference operator in the
plugin's place (onnx's reference evaluator), which is how the tests check it.

SCRA's self-correlation (``RadsegSelfCorrelation``) is *not* exported as a plugin node: it runs per
window on N = crop^2/256 tokens (441 for a 336 px window), where its N x N per head is ~10 MB and its
~0.6 GFLOP per window is < 1% of the ViT-B backbone's ~80 GFLOP; a plugin node there would split the
block TensorRT fuses (and the INT8 Q/DQ regions around it) for no measurable gain. SCGA is different:
it spans the whole stitched image (N up to 16384), where the materialized graph is memory bound.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from radseg_edge.errors import EngineError

#: the plugin as kernels/tensorrt/radseg_trt_plugin.cpp registers it.
SCGA_OP = "RadsegScga"
PLUGIN_DOMAIN = "radseg"
PLUGIN_NAMESPACE = "radseg"
PLUGIN_VERSION = "1"
PLUGIN_LIBRARY_NAME = "libradseg_trt_plugin.so"

#: environment variable naming the plugin library for engine builds.
PLUGIN_LIBRARY_ENV = "RADSEG_TRT_PLUGIN_LIB"

#: every op type of :data:`PLUGIN_DOMAIN` that an exported graph may carry.
PLUGIN_OPS = (SCGA_OP,)


@functools.cache
def register_onnx_schemas() -> None:
    """Register the ``radseg`` domain's schema with onnx (once), so onnxscript can emit the node and
    ``onnx.checker`` validates its attributes and types."""
    from onnx import defs

    if defs.has(SCGA_OP, PLUGIN_DOMAIN):
        return
    s = defs.OpSchema
    floats = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
    defs.register_schema(s(
        SCGA_OP, PLUGIN_DOMAIN, 1,
        doc="SCGA (radseg_edge.core.scga.scga_reference) as the TensorRT plugin radseg::RadsegScga v1",
        inputs=[s.FormalParameter("features", "T", "B x N x C stitched patch features")],
        outputs=[s.FormalParameter("output", "T", "B x N x C aggregated features")],
        type_constraints=[("T", floats, "fp32, fp16 or bf16 (the plugin's linear formats)")],
        attributes=[
            s.Attribute("tau", s.AttrType.FLOAT, "SCGA temperature (plugin field tau, kFLOAT32)"),
            s.Attribute("batch_mean", s.AttrType.INT, "1: threshold over the whole batch (plugin field, kINT32)"),
            s.Attribute("plugin_version", s.AttrType.STRING, "creator version for TensorRT's ONNX parser"),
            s.Attribute("plugin_namespace", s.AttrType.STRING, "creator namespace for TensorRT's ONNX parser"),
        ],
    ))


@torch.library.custom_op("radseg_export::scga_plugin", mutates_args=())
def scga_plugin(features: Tensor, tau: float, batch_mean: int) -> Tensor:
    """The plugin's operator in PyTorch: B x N x C -> B x N x C (input dtype), computed with the
    exportable reference so tracing and eager runs give the reference result."""
    from radseg_edge.core.scga import scga_reference

    out = scga_reference(features.float(), tau, bool(batch_mean))
    return out.to(features.dtype)


@scga_plugin.register_fake
def _scga_plugin_fake(features: Tensor, tau: float, batch_mean: int) -> Tensor:
    return torch.empty_like(features)


def _scga_translation(features, tau: float, batch_mean: int):
    import onnxscript

    register_onnx_schemas()
    domain = onnxscript.values.Opset(PLUGIN_DOMAIN, 1)
    return domain.RadsegScga(features, tau=float(tau), batch_mean=int(batch_mean),
                             plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE)


def translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``: the plugin op -> one node."""
    register_onnx_schemas()
    return {torch.ops.radseg_export.scga_plugin.default: _scga_translation}


def plugin_nodes(model) -> list[dict]:
    """The plugin nodes of an ONNX model: [{"name", "op_type", "domain", "version", "namespace", "attributes"}]."""
    from onnx import helper

    out = []
    for node in model.graph.node:
        if node.domain != PLUGIN_DOMAIN:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        out.append({"name": node.name, "op_type": node.op_type, "domain": node.domain,
                    "version": attrs.pop("plugin_version", PLUGIN_VERSION),
                    "namespace": attrs.pop("plugin_namespace", ""), "attributes": attrs})
    return out


def plugin_record(model) -> list[dict]:
    """What the manifest records about a graph's plugin nodes: one entry per (op_type, version, namespace)."""
    seen: dict[tuple, dict] = {}
    for node in plugin_nodes(model):
        key = (node["op_type"], node["version"], node["namespace"])
        entry = seen.setdefault(key, {"op_type": node["op_type"], "domain": node["domain"], "version": node["version"],
                                      "namespace": node["namespace"], "nodes": 0})
        entry["nodes"] += 1
    return list(seen.values())


def evaluate_with_reference(model, feeds: Mapping[str, object], outputs: Sequence[str] | None = None) -> list:
    """Run an ONNX model with onnx's reference evaluator, the plugin node computed by the reference
    operator (:func:`radseg_edge.core.scga.scga_reference`) in its place. For checks on the CPU.

    Args:
        model: ModelProto or path.
        feeds: {input name: numpy array}.
    Returns:
        the outputs (numpy arrays), in graph order or ``outputs`` order.
    """
    import numpy as np
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    from radseg_edge.core.scga import scga_reference

    class RadsegScga(OpRun):
        op_domain = PLUGIN_DOMAIN

        def _run(self, features, tau=10.0, batch_mean=0, plugin_version=None, plugin_namespace=None):  # noqa: ARG002
            x = torch.from_numpy(np.ascontiguousarray(features)).float()
            return (scga_reference(x, float(tau), bool(batch_mean)).numpy().astype(features.dtype),)

    register_onnx_schemas()
    return ReferenceEvaluator(model, new_ops=[RadsegScga]).run(outputs, dict(feeds))


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def plugin_library_candidates() -> list[Path]:
    """Where an engine build looks for ``libradseg_trt_plugin.so``, in order: $RADSEG_TRT_PLUGIN_LIB, beside
    $RADSEG_KERNELS_LIB, the CMake build folders of a source checkout (build/kernels, build-*/kernels)."""
    out = []
    env = os.environ.get(PLUGIN_LIBRARY_ENV)
    if env:
        out.append(Path(env))
    kernels = os.environ.get("RADSEG_KERNELS_LIB")
    if kernels:
        out.append(Path(kernels).parent / PLUGIN_LIBRARY_NAME)
    root = _repo_root()
    out.append(root / "build" / "kernels" / PLUGIN_LIBRARY_NAME)
    out.extend(sorted(root.glob(f"build-*/kernels/{PLUGIN_LIBRARY_NAME}")))
    return out


def existing_plugin_library(path: str | os.PathLike) -> Path:
    """``path`` as a Path when it is a file (e.g. ``--plugin-lib``); else one sentence on how to get it.

    Raises:
        EngineError: ``path`` is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"TensorRT plugin library {path} is not a file: build it "
                          "(`cmake -S . -B build && cmake --build build`, target radseg_trt_plugin; TensorRT headers "
                          "needed), pass the right path, or export with --no-plugin")
    return path


def find_plugin_library() -> Path:
    """The plugin library for an engine build of a graph with plugin nodes, when none was given.

    Raises:
        EngineError: none of :func:`plugin_library_candidates` exists.
    """
    for path in plugin_library_candidates():
        if path.is_file():
            return path
    raise EngineError(f"the head graph carries the {SCGA_OP} plugin node but {PLUGIN_LIBRARY_NAME} was not found: "
                      f"build it (`cmake -S . -B build -DTENSORRT_ROOT=... && cmake --build build`), set "
                      f"{PLUGIN_LIBRARY_ENV}=/path/to/{PLUGIN_LIBRARY_NAME} or pass --plugin-lib, "
                      "or export with --no-plugin for the standard-op graph")


def graph_plugins(path: str | os.PathLike) -> list[dict]:
    """:func:`plugin_record` of an ONNX file (its weights are not loaded)."""
    import onnx

    return plugin_record(onnx.load(str(path), load_external_data=False))
