"""ONNX export of the RADSeg graphs (opset >= 17, explicit attention, finite masks, no antialias).

Three graphs (see :mod:`radseg_edge.export.graphs` and :mod:`radseg_edge.export.fixed`):

==========  ==========================================================  =========================
role        inputs -> outputs                                           shapes
==========  ==========================================================  =========================
backbone    windows (B x 3 x crop x crop fp32 RGB [0,1]) -> features    B dynamic
head        features (1 x C x h x w), text_embeddings (K x D) -> probs  h, w, K dynamic
pipeline    frame (1 x H x W x 3 uint8 RGB) -> labels, probs            all static (``--imgsz``)
==========  ==========================================================  =========================

Every exported file is constant-folded (polygraphy when installed, else onnxscript's optimizer),
passes ``onnx.checker`` and :func:`check_graph` (opset, no fused attention op, no antialiased or
cubic Resize). Nodes that must stay fp32 under FP16 conversion (SCGA statistics) are listed in the
model's metadata under :data:`KEEP_FP32_KEY`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from radseg_edge.errors import EngineError, require
from radseg_edge.export.graphs import HeadGraph, WindowBackbone
from radseg_edge.export.onnx_io import save_model

#: the opset we export with; TensorRT 10.3 reads opsets up to 20, LayerNormalization needs >= 17.
DEFAULT_OPSET = 18
MIN_OPSET = 17

#: op types that must never appear: fused attention (wrong results in some TensorRT versions).
FORBIDDEN_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "ScaledDotProductAttention")

#: model metadata key listing node names the FP16 converter must keep in fp32 (JSON list).
KEEP_FP32_KEY = "radseg_edge.keep_fp32_nodes"

#: name scopes (module attribute names) whose nodes stay fp32 under FP16 conversion.
FP32_SCOPES = ("scga",)

#: the largest number of windows a backbone graph is exported for (the dynamic batch's upper bound).
MAX_WINDOWS = 256



@contextlib.contextmanager
def quiet_exporter_logs():
    """Silence the dynamo exporter's "torchvision is not installed. Skipping torchvision::nms" lines
    (radseg-edge never uses torchvision ops); errors still surface."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)

def default_opset(opset: int | None) -> int:
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < MIN_OPSET:
        raise EngineError(f"opset {opset} is too old: LayerNormalization needs opset >= {MIN_OPSET}")
    return opset


def _scoped_nodes(model, scopes: Sequence[str]) -> list[str]:
    """Names of nodes whose torch name scope path contains one of ``scopes`` as a component."""
    out = []
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key != "pkg.torch.onnx.name_scopes":
                continue
            try:
                path = json.loads(prop.value.replace("'", '"'))
            except json.JSONDecodeError:
                path = [prop.value]
            parts = {p.split(".")[-1] for p in path} | set(path)
            if any(s in parts for s in scopes):
                out.append(node.name)
    return out


def fold_constants(model):
    """Constant folding: polygraphy (with onnxruntime) when installed, else onnxscript's optimizer."""
    try:
        from polygraphy.backend.onnx import fold_constants as poly_fold
    except ImportError:
        poly_fold = None
    if poly_fold is not None:
        from polygraphy import config as poly_config
        from polygraphy.logger import G_LOGGER

        poly_config.INTERNAL_CORRECTNESS_CHECKS = False
        with G_LOGGER.verbosity(G_LOGGER.ERROR):
            # the exporter already recorded shapes; onnx shape inference on large models is the slow part
            return poly_fold(model, num_passes=None, do_shape_inference=False, error_ok=True)
    import onnxscript.optimizer

    return onnxscript.optimizer.optimize(model)


def check_graph(model, min_opset: int = MIN_OPSET) -> None:
    """Refuse graphs that TensorRT / the edge targets handle badly.

    Raises:
        EngineError: opset < ``min_opset``, a fused attention op, an antialiased or cubic Resize,
            or an ``onnx.checker`` failure.
    """
    import onnx

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < min_opset:
        raise EngineError(f"the graph uses opset {opset}; radseg-edge needs >= {min_opset}")
    found = sorted({n.op_type for n in model.graph.node if n.op_type in FORBIDDEN_OPS})
    if found:
        raise EngineError(f"the graph contains fused attention ops {found}: export explicit MatMul-Softmax-MatMul")
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("antialias", 0):
            raise EngineError(f"Resize node {node.name} is antialiased; export with antialias=False")
        mode = attrs.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode == "cubic":
            raise EngineError(f"Resize node {node.name} is bicubic; use bilinear")
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as exc:
        raise EngineError(f"the exported graph fails onnx.checker: {exc}") from exc


def export_module(
    module: nn.Module,
    args: tuple,
    path: str | os.PathLike,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes=None,
    opset: int | None = None,
    fold: bool = True,
    custom_translation_table: dict | None = None,
) -> Path:
    """Export ``module(*args)`` to ``path`` with the dynamo exporter, fold constants, check and save.

    ``custom_translation_table`` maps custom torch ops to ONNX (e.g. the TensorRT plugin node,
    :func:`radseg_edge.export.plugin.translation_table`). Returns the written path. Raises EngineError
    when export or checks fail.
    """
    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export (torch's dynamo exporter)")
    opset = default_opset(opset)
    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings(), quiet_exporter_logs():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module,
                args,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                custom_translation_table=custom_translation_table,
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # torch.export / onnx conversion failures
            raise EngineError(f"ONNX export of {type(module).__name__} failed: {exc}") from exc
    model = program.model_proto
    keep = _scoped_nodes(model, FP32_SCOPES)
    if fold:
        model = fold_constants(model)
    entry = onnx.StringStringEntryProto(key=KEEP_FP32_KEY, value=json.dumps(keep))
    del model.metadata_props[:]
    model.metadata_props.append(entry)
    check_graph(model)
    return save_model(model, path)


def export_backbone(radseg, path: str | os.PathLike, crop_hw: tuple[int, int] | None = None,
                    opset: int | None = None, max_windows: int = MAX_WINDOWS) -> Path:
    """The window backbone with SCRA: windows B x 3 x crop x crop -> features B x C x h x w (B dynamic)."""
    crop = radseg.crop
    if crop_hw is None:
        if crop == 0:
            raise EngineError("crop=0 has no fixed window size: export the fixed pipeline with --imgsz HxW instead")
        crop_hw = (crop, crop)
    module = WindowBackbone(radseg.radio, crop_hw, radseg.scra_tau)
    example = torch.rand(2, 3, *crop_hw)
    batch = torch.export.Dim("windows", min=1, max=max_windows)
    return export_module(module, (example,), path, ["windows"], ["features"],
                         dynamic_shapes={"windows": {0: batch}}, opset=opset)


def export_head(radseg, path: str | os.PathLike, opset: int | None = None, example_hw: tuple[int, int] = (9, 13),
                example_classes: int = 5, plugin: bool = False) -> Path:
    """SCGA + language head + cosine: (features 1 x C x h x w, text_embeddings K x D) -> probs 1 x K x h x w.

    ``plugin=True`` (TensorRT engine builds): SCGA is one ``radseg::RadsegScga`` node for the TensorRT
    plugin (:mod:`radseg_edge.export.plugin`); ONNX Runtime cannot run that graph.
    """
    module = HeadGraph(radseg.radio, radseg.scga_tau, plugin=plugin)
    table = None
    if plugin:
        from radseg_edge.export.plugin import translation_table

        table = translation_table()
    c = radseg.radio.embed_dim
    feats = torch.randn(1, c, *example_hw)
    text = torch.randn(example_classes, radseg.embedding_dim)
    h = torch.export.Dim("h", min=1, max=1024)
    w = torch.export.Dim("w", min=1, max=1024)
    k = torch.export.Dim("classes", min=1, max=4096)
    return export_module(module, (feats, text), path, ["features", "text_embeddings"], ["probs"],
                         dynamic_shapes={"features": {2: h, 3: w}, "text_embeddings": {0: k}}, opset=opset,
                         custom_translation_table=table)


def export_fixed_pipeline(radseg, vocab_embeddings, height: int, width: int, path: str | os.PathLike,
                          opset: int | None = None, plugin: bool = False) -> Path:
    """The whole pipeline for one frame size: frame 1 x H x W x 3 uint8 -> (labels 1 x H x W, probs 1 x K x H x W).

    ``plugin=True`` (TensorRT engine builds): its SCGA is the ``radseg::RadsegScga`` plugin node, as in
    :func:`export_head`.
    """
    from radseg_edge.export.fixed import FixedResolutionPipeline

    module = FixedResolutionPipeline(radseg, vocab_embeddings, height, width)
    table = None
    if plugin:
        from radseg_edge.export.graphs import ScgaModule
        from radseg_edge.export.plugin import translation_table

        module.head.scga = ScgaModule(radseg.scga_tau, plugin=True)
        table = translation_table()
    return export_module(module, (module.example_input(),), path, ["frame"], ["labels", "probs"], opset=opset,
                         custom_translation_table=table)


def keep_fp32_nodes(model) -> list[str]:
    """The node names recorded under :data:`KEEP_FP32_KEY` (empty when absent)."""
    for prop in model.metadata_props:
        if prop.key == KEEP_FP32_KEY:
            return list(json.loads(prop.value))
    return []
