"""The narrow model interface the streaming runtime calls, and the one factory that builds it.

The runtime never touches a backend directly: it calls a :class:`Segmenter`

    seg = make_segmenter("torch", "tests/fixtures/tiny_radio.pth.tar", vocab)
    res = seg(frame_rgb)          # frame_rgb: H x W x 3 uint8 RGB -> res.labels: H x W int64
    seg.set_vocabulary(new_vocab) # atomic: a rejected vocabulary leaves the old one in place
    seg.class_names               # names of the current classes, index = label id

Other backends plug in as a module ``radseg_edge.backends.<name>`` (``onnxruntime``, ``tensorrt``,
``torch_tensorrt``) that defines ``build_segmenter(checkpoint, vocab, device, profiler, **options)``
returning an object with the same three members (and, optionally, ``profiler``: a
:class:`~radseg_edge.utils.profiling.StageProfiler` whose top-level stages the runtime reports).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from radseg_edge.errors import EngineError, InputError, MissingDependencyError, RadsegError
from radseg_edge.models.text import Vocabulary
from radseg_edge.runtime.vocab import check_embeddings
from radseg_edge.utils.profiling import StageProfiler

#: backend names accepted by :func:`make_segmenter`.
BACKENDS = ("tensorrt", "torch-tensorrt", "onnxruntime", "torch")
#: what ``auto`` tries, in order, on a CUDA device (on the CPU it takes torch directly).
AUTO_CUDA_ORDER = ("tensorrt", "torch-tensorrt")


@dataclass
class SegmentResult:
    """One frame's segmentation. ``labels``: H x W int64 class ids (-1 = no class above threshold)."""

    labels: np.ndarray
    class_names: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Segmenter(Protocol):
    """What the streaming runtime needs from a model."""

    class_names: tuple[str, ...]

    def __call__(self, frame_rgb: np.ndarray) -> SegmentResult: ...

    def set_vocabulary(self, vocab: Vocabulary) -> None: ...


def check_frame(frame_rgb: np.ndarray) -> None:
    """Raise :class:`InputError` unless ``frame_rgb`` is an H x W x 3 uint8 array."""
    if not isinstance(frame_rgb, np.ndarray) or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
        shape = getattr(frame_rgb, "shape", type(frame_rgb).__name__)
        raise InputError(f"expected an H x W x 3 RGB frame, found {shape}")
    if frame_rgb.dtype != np.uint8:
        raise InputError(f"expected a uint8 RGB frame, found dtype {frame_rgb.dtype}")


class TorchSegmenter:
    """RADSeg in PyTorch (:class:`radseg_edge.RADSeg`) behind the :class:`Segmenter` interface.

    Args:
        checkpoint: a checkpoint path / model name for ``radseg_edge.load_radio``, a loaded ``RadioModel``,
            or a zero-argument function returning one.
        vocab: initial vocabulary (names + K x D embeddings of the model's language head).
        device: "cpu", "cuda", "cuda:1" ...
        profiler: receives the model stages (preprocess, backbone, stitch, scga, head, postprocess).
        radseg_options: passed to ``RADSeg`` (crop, stride, scra_tau, scga_tau, denoise, kernels, ...).
    """

    def __init__(
        self,
        checkpoint: Any,
        vocab: Vocabulary,
        device: str = "cpu",
        profiler: StageProfiler | None = None,
        **radseg_options: Any,
    ) -> None:
        from radseg_edge import RADSeg, load_radio

        self.device = torch.device(device)
        self.profiler = profiler if profiler is not None else StageProfiler(device=self.device)
        if isinstance(checkpoint, (str, Path)):
            radio = load_radio(checkpoint, device=self.device)
        elif isinstance(checkpoint, torch.nn.Module):
            radio = checkpoint
        else:  # a zero-argument loader, called only when the torch backend is really built
            radio = checkpoint()
        self.model = RADSeg(radio.to(self.device), profiler=self.profiler, **radseg_options)
        self.text_model = radio.text_model_id
        self.set_vocabulary(vocab)

    def set_vocabulary(self, vocab: Vocabulary) -> None:
        """Swap the classes; raises :class:`VocabularyError` and keeps the old ones if ``vocab`` is unusable."""
        check_embeddings(vocab, self.model.embedding_dim, self.text_model)
        emb = vocab.embeddings.to(self.device, torch.float32)
        self._state = (tuple(vocab.names), emb)  # one assignment: a frame sees the old or the new pair, never a mix

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._state[0]

    @torch.inference_mode()
    def __call__(self, frame_rgb: np.ndarray) -> SegmentResult:
        check_frame(frame_rgb)
        names, emb = self._state
        res = self.model(frame_rgb, emb)
        return SegmentResult(labels=res.labels[0].cpu().numpy(), class_names=names)


def _backend_module(name: str):
    """Import ``radseg_edge.backends.<name>`` or explain why that backend is unavailable."""
    mod_name = "radseg_edge.backends." + name.replace("-", "_")
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name == mod_name:
            raise EngineError(
                f"backend {name!r} is not part of this radseg-edge build ({mod_name} is missing); use --backend torch"
            ) from exc
        raise MissingDependencyError(
            f"backend {name!r} needs the Python package {exc.name!r}: pip install 'radseg-edge[{_EXTRAS.get(name, 'gpu')}]'"
        ) from exc


_EXTRAS = {"tensorrt": "trt", "torch-tensorrt": "trt", "onnxruntime": "onnx"}


def make_segmenter(
    backend: str,
    checkpoint: Any,
    vocab: Vocabulary,
    device: str = "auto",
    profiler: StageProfiler | None = None,
    radio: Any = None,
    **radseg_options: Any,
) -> Segmenter:
    """Build the segmenter for ``backend`` ("torch", "onnxruntime", "tensorrt", "torch-tensorrt" or "auto").

    ``checkpoint``: a path or model name. ``radio``: for the torch backend, a loaded ``RadioModel`` or a
    zero-argument function returning one (used instead of loading ``checkpoint``).

    ``auto`` on a CUDA device takes the first of :data:`AUTO_CUDA_ORDER` that builds (an engine matching
    this GPU), else PyTorch; on the CPU it takes PyTorch. The reasons for passing over a backend are
    kept in the segmenter's ``fallback_reasons``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "auto":
        errors = []
        for name in AUTO_CUDA_ORDER if device.startswith("cuda") else ():
            try:
                return make_segmenter(name, checkpoint, vocab, device, profiler, **radseg_options)
            except RadsegError as exc:
                errors.append(f"{name}: {exc}")
        seg = make_segmenter("torch", checkpoint, vocab, device, profiler, radio, **radseg_options)
        seg.fallback_reasons = errors  # type: ignore[attr-defined]
        return seg
    if backend == "torch":
        return TorchSegmenter(radio if radio is not None else checkpoint, vocab, device=device, profiler=profiler,
                              **radseg_options)
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)} or auto")
    module = _backend_module(backend)
    if not hasattr(module, "build_segmenter"):
        raise EngineError(
            f"radseg_edge.backends.{backend.replace('-', '_')} has no build_segmenter(): "
            "it cannot be used for streaming yet; use --backend torch"
        )
    return module.build_segmenter(checkpoint, vocab, device=device, profiler=profiler, **radseg_options)


__all__ = [
    "AUTO_CUDA_ORDER",
    "BACKENDS",
    "SegmentResult",
    "Segmenter",
    "TorchSegmenter",
    "check_frame",
    "make_segmenter",
]
