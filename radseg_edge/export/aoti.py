"""Ahead-of-time compilation of the fixed-resolution pipeline with AOTInductor, for the C++ runtime.

The package (``model.pt2``) holds a frame-to-labels program for one input size: it takes a
1 x H x W x 3 uint8 RGB frame and returns (labels 1 x H x W int64, probs 1 x K x H x W fp32). It runs
without Python through libtorch (``cpp/``: ``radseg::Segmenter`` and the C API ``radseg_edge.h``), or
in Python through ``torch._inductor.aoti_load_package``. ``manifest.json`` beside it records the
input size, the classes and vocabulary, the device and the software versions::

    from radseg_edge.export.aoti import export_aoti_package
    export_aoti_package(seg, vocabulary, height=480, width=640, out_dir="exports/office_aoti")

The input size and class count are also stored in the package's own metadata (keys
``radseg.height``, ``radseg.width``, ``radseg.num_classes``) so that the runtime refuses a manifest
that belongs to another package.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from radseg_edge.errors import EngineError, InputError
from radseg_edge.export.cache import sha256_file
from radseg_edge.export.manifest import Manifest

PACKAGE_NAME = "model.pt2"


def _check_frame(example_frame: Tensor) -> tuple[int, int]:
    if (
        not isinstance(example_frame, Tensor)
        or example_frame.dtype != torch.uint8
        or example_frame.dim() != 4
        or example_frame.shape[0] != 1
        or example_frame.shape[3] != 3
    ):
        found = (
            f"{tuple(example_frame.shape)} {example_frame.dtype}" if isinstance(example_frame, Tensor) else type(example_frame).__name__
        )
        raise InputError(f"example_frame must be a 1 x H x W x 3 uint8 RGB tensor; got {found}")
    return int(example_frame.shape[1]), int(example_frame.shape[2])


def export_aoti(
    module: nn.Module,
    example_frame: Tensor,
    out_dir: str | os.PathLike,
    manifest: dict | None = None,
    device: str = "cpu",
) -> Path:
    """Compile ``module`` for frames shaped like ``example_frame`` into ``out_dir/model.pt2`` + manifest.json.

    Args:
        module: frame (1 x H x W x 3 uint8 RGB) -> (labels 1 x H x W int64, probs 1 x K x H x W fp32).
        example_frame: 1 x H x W x 3 uint8 tensor fixing the input size (its pixel values do not matter).
        out_dir: folder to write (created if needed).
        manifest: fields of :class:`radseg_edge.export.manifest.Manifest` to record (``model``,
            ``vocabulary`` with ``names``, ``windows``, ``precision``, ``notes``); ``format``,
            ``artefacts["aoti"]`` and ``versions`` are filled in here.
        device: "cpu", or "cuda" / "cuda:N" for a package that runs on that GPU.
    Returns:
        the path of manifest.json.
    Raises:
        InputError for a malformed example frame or module outputs; EngineError if compilation fails.
    """
    height, width = _check_frame(example_frame)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"an AOTInductor package for {device} needs a CUDA GPU here; none is visible (use device='cpu')")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = module.eval().to(dev)
    frame = example_frame.to(dev)

    with torch.no_grad():
        outputs = module(frame)
    if not (isinstance(outputs, tuple | list) and len(outputs) == 2):
        raise InputError(f"the module must return (labels, probs); it returned {type(outputs).__name__}")
    labels, probs = outputs
    if labels.shape != (1, height, width) or probs.dim() != 4 or probs.shape[0] != 1 or probs.shape[2:] != (height, width):
        raise InputError(
            f"the module must return labels 1 x {height} x {width} and probs 1 x K x {height} x {width}; "
            f"got {tuple(labels.shape)} and {tuple(probs.shape)}"
        )
    num_classes = int(probs.shape[1])

    package = out / PACKAGE_NAME
    metadata = {"radseg.height": str(height), "radseg.width": str(width), "radseg.num_classes": str(num_classes)}
    try:
        with torch.no_grad():
            program = torch.export.export(module, (frame,))
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(package), inductor_configs={"aot_inductor.metadata": metadata}
        )
    except Exception as exc:  # compiler failures come in many types; report them as one error
        raise EngineError(f"AOTInductor could not compile the pipeline for {height}x{width} on {device}: {exc}") from exc

    fields = dict(manifest or {})
    vocabulary = dict(fields.get("vocabulary") or {})
    vocabulary.setdefault("names", [f"class_{k}" for k in range(num_classes)])
    if len(vocabulary["names"]) != num_classes:
        raise InputError(f"the manifest names {len(vocabulary['names'])} classes but the module outputs {num_classes}")
    vocabulary["num_classes"] = num_classes
    artefacts = dict(fields.get("artefacts") or {})
    artefacts["aoti"] = {
        "file": PACKAGE_NAME,
        "sha256": sha256_file(package),
        "device": dev.type,
        "inputs": {"frame": {"shape": [1, height, width, 3], "dtype": "uint8", "layout": "NHWC", "color": "RGB"}},
        "outputs": {
            "labels": {"shape": [1, height, width], "dtype": "int64"},
            "probs": {"shape": [1, num_classes, height, width], "dtype": "float32"},
        },
    }
    record = Manifest(
        format="aoti",
        precision=fields.get("precision", "fp32"),
        model=dict(fields.get("model") or {}),
        vocabulary=vocabulary,
        windows={**(fields.get("windows") or {}), "height": height, "width": width},
        artefacts=artefacts,
        gate=dict(fields.get("gate") or {}),
        notes=list(fields.get("notes") or []),
    )
    return record.write(out)


def fixed_resolution_module(radseg, vocab_embeddings: Tensor, height: int, width: int) -> nn.Module:
    """The export issue's frame-to-labels module for ``radseg`` at height x width (not compiled)."""
    from radseg_edge.export.fixed import FixedResolutionPipeline

    return FixedResolutionPipeline(radseg, vocab_embeddings, height, width)


def export_aoti_package(
    radseg,
    vocab,
    height: int,
    width: int,
    out_dir: str | os.PathLike,
    device: str = "cpu",
    module: nn.Module | None = None,
    gate_images: list[np.ndarray] | None = None,
    force: bool = False,
) -> Path:
    """Export RADSeg with vocabulary ``vocab`` for height x width frames as an AOTInductor package.

    The package is then checked against ``radseg`` itself (accuracy gate, fp32 thresholds of the
    other formats: >= 99.9 % equal labels, probabilities within 1e-4) on ``gate_images`` (H x W x 3
    uint8 RGB; default: two synthetic images) and the figures are stored in ``manifest["gate"]``.

    Args:
        radseg: a :class:`radseg_edge.RADSeg` (its window, tau and threshold settings are compiled in).
        vocab: a :class:`radseg_edge.Vocabulary` (names + K x D embeddings).
        height, width: the frame size the package accepts (pixels).
        out_dir: folder for model.pt2 and manifest.json.
        device: "cpu" or "cuda[:N]".
        module: the frame-to-labels module to compile (default: the fixed-resolution pipeline).
        gate_images: images for the accuracy gate (resized to height x width when needed).
        force: keep a package that fails the gate (with a warning) instead of raising EngineError.
    Returns:
        the path of manifest.json.
    """
    if module is None:
        module = fixed_resolution_module(radseg, vocab.embeddings, height, width)
    radio = getattr(radseg, "radio", None)
    config = getattr(radio, "config", None)
    manifest = {
        "model": {
            "name": getattr(config, "name", None) or type(radio).__name__,
            "embed_dim": getattr(radio, "embed_dim", None),
            "language_adaptor": getattr(radio, "language_adaptor", None),
        },
        "vocabulary": {"names": list(vocab.names), "text_model": getattr(vocab, "text_model", None)},
        "windows": {
            "crop": getattr(radseg, "crop", None),
            "stride": getattr(radseg, "stride", None),
            "scra_tau": getattr(radseg, "scra_tau", None),
            "scga_tau": getattr(radseg, "scga_tau", None),
            "denoise": getattr(radseg, "denoise", None),
            "prediction_thresh": getattr(radseg, "prediction_thresh", None),
        },
    }
    frame = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    path = export_aoti(module, frame, out_dir, manifest, device=device)
    _gate(radseg, vocab, path, device, gate_images, force)
    return path


def _gate(radseg, vocab, manifest_path: Path, device: str, images: list[np.ndarray] | None, force: bool) -> None:
    """Compare the package (run from Python) with ``radseg`` and record the figures in the manifest."""
    import cv2

    from radseg_edge.export.build import synthetic_images
    from radseg_edge.export.gate import DEFAULT_THRESHOLDS, compare, enforce

    record = Manifest.read(manifest_path.parent)
    height, width = record.windows["height"], record.windows["width"]
    package = torch._inductor.aoti_load_package(str(record.artefact_path(manifest_path.parent, "aoti")))
    notes = []
    if images is None:
        images = synthetic_images(2, (height, width))
        notes.append("aoti accuracy gate on 2 synthetic images (no gate images given)")
    images = [img if img.shape[:2] == (height, width) else cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
              for img in images]

    def reference(image):
        result = radseg(image, vocab)
        return result.labels, result.probs

    def candidate(image):
        with torch.inference_mode():
            return package(torch.from_numpy(np.ascontiguousarray(image))[None].to(device))

    report = compare(reference, candidate, images)
    thresholds = DEFAULT_THRESHOLDS["fp32"]
    record.gate = {"pipeline": report.as_dict(), "passed": not report.failures(thresholds)}
    record.notes = [*record.notes, *notes]
    record.write(manifest_path.parent)
    enforce(report, thresholds, "the AOTInductor package", force=force)
