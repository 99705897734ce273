"""ONNX Runtime backend: runs the exported graphs of an export folder (see docs/export.md).

With a ``pipeline`` graph (``radseg-edge export --imgsz HxW``) and frames of that size, one session
runs the whole pipeline from the uint8 frame. Otherwise the ``backbone`` and ``head`` graphs run with
the reference host-side operators (pre-resize, windows, stitch, upsample, denoise, argmax).

Execution providers: TensorRT, CUDA, CPU, whichever the installed onnxruntime has, best first
(``providers="auto"``); override with "cpu", "cuda", "tensorrt" or a list of provider names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from radseg_edge.backends.base import (
    BackendResult,
    WindowSettings,
    frame_tensor,
    frame_uint8,
    resolve_text,
    run_split,
)
from radseg_edge.errors import EngineError, InputError, require
from radseg_edge.export.manifest import Manifest
from radseg_edge.models.text import same_embeddings

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


def load_export_vocabulary(folder: str | os.PathLike, manifest: Manifest):
    """The Vocabulary saved in an export folder, or None."""
    if "vocabulary" not in manifest.artefacts:
        return None
    from radseg_edge.models.text import Vocabulary

    return Vocabulary.load(manifest.artefact_path(folder, "vocabulary", verify=True))


class OnnxRuntimeBackend:
    """RADSeg from the ONNX graphs of an export folder.

    Args:
        export_dir: folder written by ``radseg-edge export --format onnx|onnx-fp16|onnx-int8``.
        providers: see :func:`choose_providers`.
        vocabulary: default classes (default: the folder's vocabulary, if it has one).
        threads: intra-op threads for the CPU provider (None: onnxruntime's default).
    Call: ``backend(image, text=None)`` with an H x W x 3 uint8 RGB array (or 1 x 3 x H x W float tensor)
    -> :class:`BackendResult`.
    """

    name = "onnxruntime"

    def __init__(self, export_dir: str | os.PathLike, providers: str | Sequence[str] = "auto", vocabulary=None,
                 threads: int | None = None) -> None:
        self.ort = require("onnxruntime", "onnx", "the ONNX Runtime backend")
        self.folder = Path(export_dir)
        self.manifest = Manifest.read(self.folder)
        self.manifest.verify(self.folder)  # SHA-256 of every artefact, paths inside the folder, sane settings
        self.settings = WindowSettings.from_manifest(self.manifest.windows)
        self.providers = choose_providers(providers, self.ort.get_available_providers())
        self.threads = threads
        self.own_vocabulary = load_export_vocabulary(self.folder, self.manifest)  # the pipeline graph's classes
        self.vocabulary = vocabulary if vocabulary is not None else self.own_vocabulary
        self._sessions: dict = {}
        if not any(r in self.manifest.artefacts for r in ("pipeline", "backbone")):
            raise InputError(f"{self.folder} holds no ONNX graphs (artefacts: {', '.join(self.manifest.artefacts)})")

    def session(self, role: str):
        if role not in self._sessions:
            opts = self.ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
            opts.log_severity_level = 3
            path = self.manifest.artefact_path(self.folder, role)
            try:
                self._sessions[role] = self.ort.InferenceSession(str(path), sess_options=opts,
                                                                 providers=self._provider_options())
            except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
                raise EngineError(f"{path}: onnxruntime cannot load this graph ({type(exc).__name__}); "
                                  "re-export the model") from None
        return self._sessions[role]

    def _provider_options(self) -> list:
        """Providers with options: the TensorRT EP caches its engines in the folder, FP16 for fp16 exports."""
        out: list = []
        for name in self.providers:
            if name == "TensorrtExecutionProvider":
                out.append((name, {"trt_engine_cache_enable": True,
                                   "trt_engine_cache_path": str(self.folder / "ort_trt_cache"),
                                   "trt_fp16_enable": self.manifest.precision in ("fp16", "int8")}))
            else:
                out.append(name)
        return out

    @property
    def pipeline_size(self) -> tuple[int, int] | None:
        art = self.manifest.artefacts.get("pipeline")
        return tuple(art["imgsz"]) if art else None

    def _run_backbone(self, windows: torch.Tensor) -> torch.Tensor:
        out = self.session("backbone").run(["features"], {"windows": windows.numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)

    def _run_head(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        out = self.session("head").run(
            ["probs"], {"features": features.numpy().astype(np.float32), "text_embeddings": text.numpy()}
        )[0]
        return torch.from_numpy(out)

    def __call__(self, image, text=None, channel_order: str = "rgb") -> BackendResult:
        size = self.pipeline_size
        # the fixed-size graph has its vocabulary built in: use it only for exactly those classes
        if size is not None and same_embeddings(self.vocabulary if text is None else text, self.own_vocabulary):
            frame = frame_uint8(image, channel_order)
            if tuple(frame.shape[1:3]) == size:
                labels, probs = self.session("pipeline").run(["labels", "probs"], {"frame": frame})
                names = list(self.own_vocabulary.names)
                return BackendResult(torch.from_numpy(probs), torch.from_numpy(labels), class_names=names,
                                     backend=self.describe())
            if "backbone" not in self.manifest.artefacts:
                raise InputError(f"this export runs frames of {size[0]}x{size[1]} only, got {frame.shape[1]}x{frame.shape[2]}; "
                                 "resize the frames or export without --imgsz")
        elif "backbone" not in self.manifest.artefacts:
            raise InputError(f"{self.folder} holds only the fixed-size graph, whose classes are built in; these classes "
                             "differ: re-export with this --vocab (or without --imgsz for graphs that take any vocabulary)")
        emb, names = resolve_text(text, self.vocabulary, None)
        if text is None and self.vocabulary is not None:
            names = list(self.vocabulary.names)
        out = run_split(frame_tensor(image, channel_order), emb, self.settings, self._run_backbone, self._run_head)
        return BackendResult(**out, class_names=names, backend=self.describe())

    def describe(self) -> str:
        return f"onnxruntime[{self.providers[0]}, {self.manifest.precision}]"
