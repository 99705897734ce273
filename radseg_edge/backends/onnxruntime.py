"""ONNX Runtime backend: runs the exported graphs of an export folder (see docs/export.md).

With a ``pipeline`` graph (``radseg-edge export --imgsz HxW``) and frames of that size, one session
runs the whole pipeline from the uint8 frame. Otherwise the ``backbone`` and ``head`` graphs run with
the reference host-side operators (pre-resize, windows, stitch, upsample, denoise, argmax).

Execution providers: TensorRT, CUDA, CPU, whichever the installed onnxruntime has, best first
(``providers="auto"``); override with "cpu", "cuda", "tensorrt" or a list of provider names.

The TensorRT execution provider gets the graphs' shape ranges (``trt_profile_*_shapes``, so a larger
window batch, map or vocabulary within the export's limits never rebuilds an engine), INT8 for Q/DQ
graphs, FP16 only for fp32 graphs of an fp16 export (an fp16 graph keeps its own types), and an engine
cache in ``ort_trt_cache/<device key>/`` so that engines built on another GPU / TensorRT are never reused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from radseg_edge.backends.base import ExportedBackend, load_export_vocabulary
from radseg_edge.errors import EngineError, InputError, require
from radseg_edge.export.cache import (
    DeviceDescription,
    EngineKey,
    describe_cuda_device,
    format_profile,
    sha256_file,
)

#: provider preference, best first.
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
                    "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def choose_providers(requested: str | Sequence[str] = "auto", available: Sequence[str] | None = None) -> list[str]:
    """Execution providers to use, best first, always ending with the CPU one.

    Args:
        requested: "auto", an alias ("cpu", "cuda", "tensorrt"), a provider name, or a list of them.
        available: ``onnxruntime.get_available_providers()`` (looked up when None).
    Raises:
        InputError: a requested provider that this onnxruntime does not have (the message lists them).
    """
    if available is None:
        available = require("onnxruntime", "onnx", "the ONNX Runtime backend").get_available_providers()
    available = list(available)
    if requested == "auto":
        chosen = [p for p in PROVIDER_ORDER if p in available]
    else:
        names = [requested] if isinstance(requested, str) else list(requested)
        chosen = []
        for name in names:
            full = PROVIDER_ALIASES.get(name.lower(), name)
            if full not in available:
                raise InputError(
                    f"execution provider {name!r} is not in this onnxruntime (available: {', '.join(available)}); "
                    "install onnxruntime-gpu for CUDA/TensorRT"
                )
            chosen.append(full)
    if "CPUExecutionProvider" in available and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


#: ONNX kinds whose types the TensorRT EP must keep as they are (no trt_fp16_enable).
TYPED_KINDS = ("fp16",)


def _shape_text(profile: dict, which: int) -> str:
    """ORT TensorRT EP shape-range text: "name:1x3x64x64,other:1x64" for min (0), opt (1) or max (2)."""
    return ",".join(f"{name}:{'x'.join(str(int(d)) for d in shapes[which])}" for name, shapes in sorted(profile.items()))


def tensorrt_provider_options(folder: os.PathLike, manifest, role: str,
                              device: DeviceDescription | None = None) -> dict:
    """Options of the TensorRT execution provider for the graph of ``role`` in an export folder.

    Args:
        manifest: the folder's :class:`radseg_edge.export.manifest.Manifest`.
        device: this machine (default: :func:`radseg_edge.export.cache.describe_cuda_device` with ORT's version).
    Returns:
        {option: value}: the engine cache in ``ort_trt_cache/<device key>``, shape ranges from the
        artefact's recorded ``shape_profile``, INT8 for Q/DQ graphs, FP16 only for fp32 graphs of fp16 exports.
    """
    from pathlib import Path

    art = manifest.artefacts.get(role, {})
    kind = art.get("kind", "fp32")
    if device is None:
        import onnxruntime

        device = describe_cuda_device(runtime=f"onnxruntime-{onnxruntime.__version__}")
    profile = art.get("profile")
    key = EngineKey(device, manifest.precision, format_profile(profile),
                    sha256_file(Path(folder) / art["file"]) if art else "").digest()
    opts: dict = {"trt_engine_cache_enable": True,
                  "trt_engine_cache_path": str(Path(folder) / "ort_trt_cache" / key),
                  "trt_timing_cache_enable": True,
                  "trt_timing_cache_path": str(Path(folder) / "ort_trt_cache" / key)}
    if kind == "qdq":
        opts["trt_int8_enable"] = True
    elif kind == "fp32" and manifest.precision == "fp16":
        opts["trt_fp16_enable"] = True
    if profile:
        for i, which in enumerate(("min", "opt", "max")):
            opts[f"trt_profile_{which}_shapes"] = _shape_text(profile, i)
    return opts


class OnnxRuntimeBackend(ExportedBackend):
    """RADSeg from the ONNX graphs of an export folder.

    Args:
        export_dir: folder written by ``radseg-edge export --format onnx|onnx-fp16|onnx-int8``.
        providers: see :func:`choose_providers`.
        vocabulary: default classes (default: the folder's vocabulary, if it has one).
        threads: intra-op threads for the CPU provider (None: onnxruntime's default).
    Call: ``backend(image, text=None)`` with an H x W x 3 uint8 RGB array (or 1 x 3 x H x W float tensor)
    -> :class:`radseg_edge.backends.base.BackendResult`. Window batches larger than the backbone graph's
    recorded limit (``max_windows``) run in chunks.
    """

    name = "onnxruntime"

    def __init__(self, export_dir: str | os.PathLike, providers: str | Sequence[str] = "auto", vocabulary=None,
                 threads: int | None = None,
                 device_description: Callable[[], DeviceDescription] | None = None) -> None:
        self.ort = require("onnxruntime", "onnx", "the ONNX Runtime backend")
        super().__init__(export_dir, vocabulary)
        self.providers = choose_providers(providers, self.ort.get_available_providers())
        self.threads = threads
        self._device_description = device_description
        self._sessions: dict = {}

    def export_hint(self) -> str:
        return "export with `radseg-edge export --format onnx`"

    def session(self, role: str):
        if role not in self._sessions:
            opts = self.ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
            opts.log_severity_level = 3
            path = self.manifest.artefact_path(self.folder, role)
            try:
                self._sessions[role] = self.ort.InferenceSession(str(path), sess_options=opts,
                                                                 providers=self.provider_options(role))
            except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
                raise EngineError(f"{path}: onnxruntime cannot load this graph ({type(exc).__name__}); "
                                  "re-export the model") from None
        return self._sessions[role]

    def provider_options(self, role: str) -> list:
        """Providers for the session of ``role``, the TensorRT EP with :func:`tensorrt_provider_options`."""
        out: list = []
        for name in self.providers:
            if name == "TensorrtExecutionProvider":
                device = self._device_description() if self._device_description else None
                out.append((name, tensorrt_provider_options(self.folder, self.manifest, role, device)))
            else:
                out.append(name)
        return out

    def max_windows(self) -> int | None:
        limit = self.manifest.artefacts.get("backbone", {}).get("max_windows")
        return int(limit) if limit else None

    def run_pipeline(self, frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        labels, probs = self.session("pipeline").run(["labels", "probs"], {"frame": frame})
        return torch.from_numpy(probs), torch.from_numpy(labels)

    def run_backbone(self, windows: torch.Tensor) -> torch.Tensor:
        out = self.session("backbone").run(["features"], {"windows": windows.numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)

    def run_head(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        out = self.session("head").run(
            ["probs"], {"features": features.numpy().astype(np.float32), "text_embeddings": text.numpy()}
        )[0]
        return torch.from_numpy(out)

    def describe(self) -> str:
        return f"onnxruntime[{self.providers[0]}, {self.manifest.precision}]"


__all__ = ["OnnxRuntimeBackend", "choose_providers", "load_export_vocabulary", "tensorrt_provider_options"]
