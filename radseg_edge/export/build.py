"""One export verb for every target: ``export_model(radseg, "onnx" | "onnx-fp16" | ..., out_dir)``.

Writes a folder with the artefacts and manifest.json (see docs/export.md):

- the split graphs ``backbone`` (dynamic window batch) and ``head`` (vocabulary as an input) when the
  pipeline uses windows, and with ``imgsz=(H, W)`` the fixed-resolution ``pipeline`` graph;
- onnx-fp16: the same graphs converted to fp16 (LayerNorm, softmax, reductions, SCGA in fp32);
- onnx-int8: backbone and pipeline as Q/DQ INT8 (MatMul/Gemm/Conv only), calibrated on ``calib_dir``;
- engine-fp16 / engine-int8: TensorRT engines (+ the ONNX they came from and their cache keys);
- torch-tensorrt: ExportedPrograms compiled by torch-tensorrt;
- ``vocabulary.safetensors`` when a vocabulary is given (the exported backends default to it).

Every artefact then goes through the accuracy gate against the PyTorch pipeline; a failure refuses the
export (EngineError) unless ``force``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from radseg_edge.errors import EngineError, InputError, require
from radseg_edge.export import onnx as onnx_export
from radseg_edge.export.cache import sha256_file
from radseg_edge.export.gate import DEFAULT_THRESHOLDS, GateThresholds, compare, enforce
from radseg_edge.export.manifest import Manifest
from radseg_edge.export.plugin import existing_plugin_library, graph_plugins

FORMATS = ("onnx", "onnx-fp16", "onnx-int8", "engine-fp16", "engine-int8", "torch-tensorrt")

#: precision recorded for each format.
FORMAT_PRECISION = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8", "engine-fp16": "fp16",
                    "engine-int8": "int8", "torch-tensorrt": "fp16"}


@dataclass
class ExportOptions:
    """Settings of :func:`export_model` beyond the pipeline itself."""

    imgsz: tuple[int, int] | None = None
    calib_dir: str | None = None
    calib_limit: int = 32
    gate_dir: str | None = None
    gate_limit: int = 8
    thresholds: GateThresholds | None = None
    force: bool = False
    opset: int | None = None
    workspace_mib: int = 1024
    max_windows: int = 32
    max_classes: int = 1024
    max_image_side: int = 2048
    quant_backend: str = "auto"
    quantize_attention: bool = False
    split: bool = True
    plugin: bool = True  # engine builds: SCGA as the TensorRT plugin's node (False: standard ops)
    progress: bool = True
    #: TensorRT plugin libraries the engine builds load (copied into the folder, hashed into the keys).
    plugin_libraries: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_imgsz(text: str) -> tuple[int, int]:
    """"480x640" (H x W) or "640" (square) -> (H, W)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts if p]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise InputError(f"--imgsz expects HxW (e.g. 480x640), got {text!r}")
    return values[0], values[1]


def check_feasible(fmt: str) -> None:
    """Raise one clear sentence when ``fmt`` cannot be produced on this machine (before any work)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt != "torch-tensorrt":  # torch-tensorrt compiles the PyTorch modules: no ONNX, no ONNX Runtime
        require("onnx", "onnx", "ONNX export")
    if fmt.startswith("onnx"):  # the accuracy gate runs the graphs with ONNX Runtime
        require("onnxruntime", "onnx", "checking exported graphs with ONNX Runtime")
    if fmt.startswith("engine"):
        from radseg_edge.export.engine import ensure_tensorrt

        ensure_tensorrt(f"--format {fmt} (TensorRT engine build)")
        if not torch.cuda.is_available():
            raise EngineError(f"--format {fmt} builds a TensorRT engine for THIS machine's GPU, and torch sees no CUDA GPU; "
                              "export --format onnx here and build the engine on the target device")
    if fmt == "torch-tensorrt":
        from radseg_edge.export.torch_trt import ensure_torch_tensorrt

        ensure_torch_tensorrt("--format torch-tensorrt")
        if not torch.cuda.is_available():
            raise EngineError("--format torch-tensorrt compiles for this machine's GPU, and torch sees no CUDA GPU")


def synthetic_images(n: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Deterministic H x W x 3 uint8 images made of smooth colour blobs (when the user gives none)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for _ in range(n):
        img = np.zeros((h, w, 3), np.float32)
        for _ in range(6):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.1, 0.4) * max(h, w)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            img += blob[..., None] * rng.uniform(0, 1, 3)
        img = img / img.max() * 255.0
        out.append(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


def sample_images(folder: str | None, limit: int, size: tuple[int, int] | None, notes: list[str], what: str) -> list[np.ndarray]:
    """Images from ``folder`` (resized to ``size`` when given), or synthetic ones with a note."""
    from radseg_edge.export.quantize import list_images, read_rgb

    if folder is None:
        notes.append(f"{what} ran on synthetic images: pass --calib DIR with your own images for meaningful figures")
        return synthetic_images(min(limit, 4), size or (360, 480))
    images = [read_rgb(p) for p in list_images(folder, limit)]
    if size is not None:
        import cv2

        images = [img if img.shape[:2] == size else cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                  for img in images]
    return images


def _vocabulary(vocab, radseg):
    """A Vocabulary from a Vocabulary, a K x D tensor (names class_0..), or None."""
    if vocab is None:
        return None
    from radseg_edge.models.text import Vocabulary

    if isinstance(vocab, Vocabulary):
        return vocab
    emb = torch.as_tensor(vocab).float()
    return Vocabulary.from_embeddings([f"class_{i}" for i in range(emb.shape[0])], emb)


def calibration_inputs(images: list[np.ndarray], role: str, crop: int, stride: int, progress: bool = True) -> dict[str, np.ndarray]:
    """Calibration inputs of a graph: the windows of each image (backbone) or the frames themselves (pipeline).

    Args:
        images: H x W x 3 uint8 RGB (frames of the pipeline's size for role "pipeline").
    """
    from radseg_edge.core.image import to_image_tensor
    from radseg_edge.core.windows import extract_windows, preresize_image, window_boxes
    from radseg_edge.export.quantize import stack_calibration

    def gen():
        for img in images:
            if role == "pipeline":
                yield {"frame": img[None]}
                continue
            x = to_image_tensor(img)
            if crop > 0:
                x = preresize_image(x, crop, stride)
                x = extract_windows(x, window_boxes(x.shape[-2], x.shape[-1], crop, stride))
            yield {"windows": x.numpy().astype(np.float32)}

    return stack_calibration(gen(), progress=progress, total=len(images))


def _export_fp32(radseg, vocab, opts: ExportOptions, tmp: Path, plugin: bool = False) -> dict[str, Path]:
    graphs: dict[str, Path] = {}
    if opts.split and radseg.crop > 0:
        graphs["backbone"] = onnx_export.export_backbone(radseg, tmp / "backbone.onnx", opset=opts.opset,
                                                         max_windows=max(opts.max_windows, 2))
        graphs["head"] = onnx_export.export_head(radseg, tmp / "head.onnx", opset=opts.opset, plugin=plugin)
    if opts.imgsz is not None:
        if vocab is None:
            raise InputError("--imgsz exports the whole pipeline with the classes built in: give --vocab")
        h, w = opts.imgsz
        graphs["pipeline"] = onnx_export.export_fixed_pipeline(radseg, vocab.embeddings, h, w, tmp / "pipeline.onnx",
                                                               opset=opts.opset, plugin=plugin)
    if not graphs:
        raise InputError("nothing to export: the split graphs need windows (crop > 0, no --no-split); give --imgsz HxW for the fixed pipeline")
    return graphs


def artefact_record(path: Path, **extra) -> dict:
    """Manifest entry of an artefact: file name, SHA-256 and role-specific fields."""
    return {"file": path.name, "sha256": sha256_file(path), **extra}


def _move(src: Path, out_dir: Path, name: str) -> Path:
    dst = out_dir / name
    shutil.move(str(src), dst)
    data = Path(str(src) + ".data")
    if data.exists():  # external weights (> 1.8 GB models) keep their recorded file name
        shutil.move(str(data), out_dir / data.name)
    return dst


def build_folder_engines(export_dir: str | os.PathLike, precision: str, workspace_mib: int = 1024,
                         max_windows: int = 32, max_classes: int = 1024, max_image_side: int = 2048,
                         progress: bool = True, plugin_libraries: Sequence[str | os.PathLike] = ()) -> Manifest:
    """Build TensorRT engines on THIS machine for the ONNX graphs of an export folder; updates its manifest.

    The folder may come from another machine (``radseg-edge export --format onnx`` on a desktop, then this
    on the Jetson). Each engine gets a key record (GPU, SM, SM count, TensorRT, CUDA, L4T, precision, shape
    profile, ONNX and plugin-library hashes) that :class:`radseg_edge.backends.tensorrt.TensorRTBackend`
    (and the C++ runtime) check before loading. The head graph (SCGA + cosine) is built in fp16 even for
    INT8 exports.

    Args:
        plugin_libraries: TensorRT plugin libraries the graphs need (e.g. libradseg_trt_plugin.so): copied
            into ``<folder>/plugins/``, loaded through the plugin registry before parsing, recorded with
            their SHA-256 under each engine's ``plugins`` and in its key. When empty, a graph with plugin
            nodes (recorded under the engine's ``plugin_nodes``) gets the library that
            :func:`radseg_edge.export.plugin.find_plugin_library` finds.
    Raises:
        EngineError: the folder's ONNX variant does not fit the precision with this TensorRT version.
    """
    from radseg_edge.export.cache import (
        EngineKey,
        describe_device,
        format_profile,
        plugin_records,
        timing_cache_path,
        write_key,
    )
    from radseg_edge.export.engine import build_engine, ensure_tensorrt, plan_build, required_onnx_kind
    from radseg_edge.export.plugin import find_plugin_library

    version = ensure_tensorrt("TensorRT engine builds")
    folder = Path(export_dir)
    manifest = Manifest.read(folder)
    device = describe_device()
    profiles = shape_profiles(manifest, max_windows, max_classes, max_image_side)
    timing_cache = timing_cache_path(folder, device)
    plugins = copy_plugins(folder, plugin_libraries)
    for role in ("pipeline", "backbone", "head"):
        art = manifest.artefacts.get(role)
        if art is None:
            continue
        role_precision = "fp16" if (precision == "int8" and role == "head") else precision
        kind = art.get("kind", "fp32")
        if role_precision == "int8" and kind != "qdq":
            raise EngineError(f"an INT8 engine needs the Q/DQ {role} graph: export with --format onnx-int8 first")
        try:
            plan = plan_build(version, role_precision, kind, workspace_mib)
        except EngineError as exc:
            needed = required_onnx_kind(version, role_precision)
            raise EngineError(f"{role}: {exc} (export the folder with --format "
                              f"{ {'fp16': 'onnx-fp16', 'qdq': 'onnx-int8'}.get(needed, 'onnx') })") from exc
        profile = profiles.get(role)
        onnx_path = folder / art["file"]
        engine_path = folder / f"{role}.{role_precision}.engine"
        nodes = art.get("plugins", [])  # the graph's plugin nodes (export.plugin.graph_plugins)
        # explicit libraries go to every engine; otherwise a graph with plugin nodes gets the library found
        libraries = plugins or (copy_plugins(folder, [find_plugin_library()]) if nodes else [])
        engine_path.write_bytes(build_engine(onnx_path, plan, profile, timing_cache=timing_cache,
                                             plugin_libraries=libraries, progress=progress))
        write_key(engine_path, EngineKey.create(device, role_precision, onnx_path, profile, libraries))
        extra = {"imgsz": art["imgsz"]} if "imgsz" in art else {}
        manifest.artefacts[f"{role}_engine"] = artefact_record(
            engine_path, onnx=onnx_path.name, precision=role_precision, shape_profile=format_profile(profile),
            plugins=plugin_records(folder, libraries), plugin_nodes=nodes, build=list(plan.notes),
            device=device.__dict__, **extra)
    manifest.format = f"engine-{precision}"
    manifest.precision = precision
    manifest.write(folder)
    return manifest


def copy_plugins(folder: Path, libraries: Sequence[str | os.PathLike]) -> list[Path]:
    """Copy plugin libraries into ``folder/plugins/`` (the folder then carries everything it needs)."""
    out = []
    for lib in libraries:
        src = existing_plugin_library(lib)
        dst = folder / "plugins" / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.resolve() != dst.resolve():
            shutil.copy2(src, dst)
        out.append(dst)
    return out


def shape_profiles(manifest: Manifest, max_windows: int = 32, max_classes: int = 1024,
                   max_image_side: int = 2048) -> dict[str, dict]:
    """TensorRT optimization profiles (min, opt, max) of the dynamic graphs (the pipeline graph is static)."""
    c, d = manifest.model["embed_dim"], manifest.vocabulary["dim"]
    crop, p = manifest.windows["crop"], manifest.windows["patch"]
    side = max(max_image_side // p, 1)
    crop_p = max(crop // p, 1)
    return {
        "backbone": {"windows": ((1, 3, crop, crop), (min(6, max_windows), 3, crop, crop), (max_windows, 3, crop, crop))},
        "head": {
            "features": ((1, c, 1, 1), (1, c, 2 * crop_p, 3 * crop_p), (1, c, side, side)),
            "text_embeddings": ((1, d), (min(32, max_classes), d), (max_classes, d)),
        },
    }


def _precision_variant(radseg, role, src: Path, kind: str, opts, out_dir: Path, calib_images, notes) -> Path:
    """Move the fp32 graph of ``role`` into ``out_dir`` as the fp32 / fp16 / Q/DQ variant."""
    if kind == "fp32":
        return _move(src, out_dir, f"{role}.onnx")
    if kind == "fp16":
        from radseg_edge.export.fp16 import convert_fp16

        path, converter = convert_fp16(src, out_dir / f"{role}.fp16.onnx")
        notes.append(f"{role}: FP16 by {converter}")
        return path
    from radseg_edge.export.quantize import quantize_int8

    if role == "head":  # SCGA + cosine dominate; the MLP is tiny: keep fp32
        return _move(src, out_dir, f"{role}.onnx")
    calib = calibration_inputs(calib_images, role, radseg.crop, radseg.stride, opts.progress)
    result = quantize_int8(src, out_dir / f"{role}.int8.onnx", calib, backend=opts.quant_backend,
                           quantize_attention=opts.quantize_attention)
    notes.append(f"{role}: INT8 by {result.backend}, {result.quantized_nodes} MatMul/Gemm/Conv quantized, "
                 f"{len(result.excluded_nodes)} activation MatMuls kept in higher precision")
    notes.extend(result.notes)
    return result.path


def _onnx_kinds(fmt: str) -> dict[str, str]:
    """The ONNX variant ("fp32" | "fp16" | "qdq") to write for the graphs and for the head."""
    if fmt.startswith("engine"):
        from radseg_edge.export.engine import required_onnx_kind

        version = require("tensorrt", "trt", "TensorRT engine builds").__version__
        precision = FORMAT_PRECISION[fmt]
        return {"graph": required_onnx_kind(version, precision),
                "head": required_onnx_kind(version, "fp16" if precision == "int8" else precision)}
    kind = {"fp32": "fp32", "fp16": "fp16", "int8": "qdq"}[FORMAT_PRECISION[fmt]]
    return {"graph": kind, "head": kind}


def _gate(radseg, out_dir: Path, fmt: str, vocab, opts: ExportOptions, notes: list[str]):
    """Compare the exported artefacts with the PyTorch pipeline: (figures, [(report, what)])."""
    from radseg_edge.backends import make_backend

    name = {"engine-fp16": "tensorrt", "engine-int8": "tensorrt", "torch-tensorrt": "torch-tensorrt"}.get(fmt, "onnxruntime")
    options = {"providers": "cpu"} if name == "onnxruntime" else {}
    backend = make_backend(name, export_dir=out_dir, **options)
    thresholds = opts.thresholds or DEFAULT_THRESHOLDS[FORMAT_PRECISION[fmt]]
    text = vocab.embeddings if vocab is not None else torch.randn(8, radseg.embedding_dim, generator=torch.Generator().manual_seed(0))
    figures: dict = {"thresholds": thresholds.__dict__}
    checks = []
    ref_fn: Callable = lambda img: _triple(radseg(img, text))  # noqa: E731
    if any(r in backend.manifest.artefacts for r in ("backbone", "backbone_engine", "backbone_trt")):
        images = sample_images(opts.gate_dir or opts.calib_dir, opts.gate_limit, None, notes, "the accuracy gate (split graphs)")
        report = compare(ref_fn, lambda img: _triple(backend(img, text)), images, progress=opts.progress)
        figures["split"] = report.as_dict()
        checks.append((report, f"the {fmt} split graphs"))
    if opts.imgsz is not None:
        images = sample_images(opts.gate_dir or opts.calib_dir, opts.gate_limit, opts.imgsz, notes,
                               "the accuracy gate (fixed pipeline)")
        report = compare(lambda img: _triple(radseg(img, vocab.embeddings)), lambda img: _triple(backend(img)), images,
                         progress=opts.progress)
        figures["pipeline"] = report.as_dict()
        checks.append((report, f"the {fmt} fixed-resolution pipeline"))
    figures["backend"] = backend.describe()
    figures["passed"] = not any(r.failures(thresholds) for r, _ in checks)
    return figures, checks, thresholds


def check_export(radseg, export_dir: str | os.PathLike, vocabulary=None, options: ExportOptions | None = None) -> dict:
    """Run the accuracy gate on an existing export folder against ``radseg``; returns the figures.

    Raises:
        EngineError: the folder's artefacts fail the thresholds (unless ``options.force``).
    """
    opts = options or ExportOptions()
    manifest = Manifest.read(export_dir)
    if vocabulary is None and "vocabulary" in manifest.artefacts:
        from radseg_edge.models.text import Vocabulary

        vocabulary = Vocabulary.load(manifest.artefact_path(export_dir, "vocabulary"))
    if opts.imgsz is None and "pipeline" in manifest.artefacts:
        opts.imgsz = tuple(manifest.artefacts["pipeline"]["imgsz"])
    figures, checks, thresholds = _gate(radseg, Path(export_dir), manifest.format, _vocabulary(vocabulary, radseg),
                                        opts, opts.notes)
    for report, what in checks:
        enforce(report, thresholds, what, force=opts.force)
    return figures


def _triple(result):
    feats = getattr(result, "features", None)
    return result.labels.cpu(), result.probs.cpu(), None if feats is None else feats.cpu()


def export_model(radseg, fmt: str, out_dir: str | os.PathLike, vocabulary=None, options: ExportOptions | None = None,
                 model_info: dict | None = None) -> Manifest:
    """Export ``radseg`` in format ``fmt`` into ``out_dir`` (created); returns the written manifest.

    Raises:
        InputError / EngineError / MissingDependencyError: with one sentence saying what to do.
    """
    opts = options or ExportOptions()
    check_feasible(fmt)
    if opts.imgsz is not None and vocabulary is None:
        raise InputError("--imgsz exports the whole pipeline with the classes built in: give --vocab")
    if fmt.endswith("int8") and opts.calib_dir is None:
        opts.notes.append("INT8 calibrated on synthetic images: pass --calib DIR with real images for a usable model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = _vocabulary(vocabulary, radseg)
    notes = opts.notes
    precision = FORMAT_PRECISION[fmt]
    radio = radseg.radio
    manifest = Manifest(
        format=fmt,
        precision=precision,
        model={"name": radio.config.name, "embed_dim": radio.embed_dim, "depth": len(radio.blocks),
               "patch_size": radio.patch_size, "language_adaptor": radio.language_adaptor, **(model_info or {})},
        vocabulary={"dim": radseg.embedding_dim, "num_classes": len(vocab) if vocab is not None else None,
                    "text_model": getattr(vocab, "text_model", None)},
        windows={"crop": radseg.crop, "stride": radseg.stride, "patch": radio.patch_size, "scra_tau": radseg.scra_tau,
                 "scga_tau": radseg.scga_tau, "denoise": radseg.denoise, "prediction_thresh": radseg.prediction_thresh},
        notes=notes,
    )
    artefacts = manifest.artefacts
    if vocab is not None:
        artefacts["vocabulary"] = artefact_record(vocab.save(out_dir / "vocabulary.safetensors"), names=list(vocab.names))
    calib_images: list[np.ndarray] = []
    if precision == "int8":
        calib_images = sample_images(opts.calib_dir, opts.calib_limit, opts.imgsz, [], "calibration")
    profiles = shape_profiles(manifest, opts.max_windows, opts.max_classes, opts.max_image_side)
    if fmt == "torch-tensorrt":
        from radseg_edge.export.torch_trt import export_torch_tensorrt

        export_torch_tensorrt(radseg, vocab, opts.imgsz, opts.split, profiles, out_dir, artefacts)
    else:
        kinds = _onnx_kinds(fmt)
        device = radseg.device
        with tempfile.TemporaryDirectory() as tmp:
            plugin = opts.plugin and fmt.startswith("engine")  # ONNX Runtime formats keep standard ops
            graphs = _export_fp32(radseg.to("cpu"), vocab, opts, Path(tmp), plugin=plugin)
            for role, src in graphs.items():
                kind = kinds["head" if role == "head" else "graph"]
                path = _precision_variant(radseg, role, src, kind, opts, out_dir, calib_images, notes)
                if kind == "qdq" and role == "head":
                    kind = "fp32"
                extra: dict = {"imgsz": list(opts.imgsz or ())} if role == "pipeline" else {"profile": profiles[role]}
                if role == "backbone":
                    extra["max_windows"] = max(opts.max_windows, 2)
                artefacts[role] = artefact_record(path, kind=kind, plugins=graph_plugins(path), **extra)
        radseg.to(device)
        if fmt.startswith("engine"):
            manifest.write(out_dir)
            manifest = build_folder_engines(out_dir, precision, opts.workspace_mib, opts.max_windows, opts.max_classes,
                                            opts.max_image_side, opts.progress, opts.plugin_libraries)
    manifest.write(out_dir)
    manifest.gate, checks, thresholds = _gate(radseg, out_dir, fmt, vocab, opts, notes)
    manifest.notes = notes
    manifest.write(out_dir)
    for report, what in checks:
        enforce(report, thresholds, what, force=opts.force)
    return manifest
