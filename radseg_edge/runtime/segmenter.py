"""The narrow model interface the streaming runtime calls, and the one factory that builds it.

The runtime never touches a backend directly: it calls a :class:`Segmenter`

    seg = make_segmenter("torch", "tests/fixtures/tiny_radio.pth.tar", vocab)
    res = seg(frame_rgb)          # frame_rgb: H x W x 3 uint8 RGB -> res.labels: H x W int64
    seg.set_vocabulary(new_vocab) # atomic: a rejected vocabulary leaves the old one in place
    seg.class_names               # names of the current classes, index = label id

The exported backends (onnxruntime, tensorrt, torch-tensorrt) come from
``radseg_edge.backends.make_backend(name, export_dir=..., vocabulary=...)`` and are wrapped by
:class:`BackendSegmenter`. Anything with the three members works; an optional ``profiler`` attribute
(a :class:`~radseg_edge.utils.profiling.StageProfiler`) supplies the model stages the runtime reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from radseg_edge.backends import BACKENDS, make_backend
from radseg_edge.errors import EngineError, InputError, RadsegError
from radseg_edge.models.text import Vocabulary
from radseg_edge.runtime.vocab import check_embeddings
from radseg_edge.utils.profiling import StageProfiler

#: internal name: the export helper's own "auto" choice among the exported backends.
AUTO_EXPORTED = "auto-exported"


@dataclass
class SegmentResult:
    """One frame's segmentation. ``labels``: H x W int64 class ids (-1 = no class above threshold);
    ``extra["probs"]``: the backend's 1 x K x H x W probabilities (a reference, no copy) when it has them."""

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
        return SegmentResult(labels=res.labels[0].cpu().numpy(), class_names=names, extra={"probs": res.probs})


class BackendSegmenter:
    """An exported-model backend (``radseg_edge.backends.make_backend``: onnxruntime, tensorrt,
    torch-tensorrt) behind the :class:`Segmenter` interface.

    The backend is called as ``backend(frame_rgb, vocabulary)``; the class embeddings are always passed
    explicitly (a fixed-resolution graph with a baked-in vocabulary runs only while they are that
    vocabulary's, frames of its size: live vocabulary changes need the split backbone/head artefacts).
    """

    def __init__(self, backend: Any, vocab: Vocabulary, profiler: StageProfiler | None = None) -> None:
        self.backend = backend
        self.name = getattr(backend, "name", type(backend).__name__)
        self.profiler = profiler  # exported graphs report no stages: the runtime counts them as model_other
        self._dim: int | None = None
        self.set_vocabulary(vocab)

    def set_vocabulary(self, vocab: Vocabulary) -> None:
        check_embeddings(vocab, self._dim)
        self._vocab = vocab
        self._dim = int(vocab.embeddings.shape[1])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self._vocab.names)

    def __call__(self, frame_rgb: np.ndarray) -> SegmentResult:
        check_frame(frame_rgb)
        vocab = self._vocab
        res = self.backend(frame_rgb, vocab)
        labels = res.labels[0] if res.labels.ndim == 3 else res.labels
        labels = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
        extra = {"probs": res.probs} if getattr(res, "probs", None) is not None else {}
        return SegmentResult(labels=labels, class_names=tuple(vocab.names), extra=extra)


def make_segmenter(
    backend: str,
    checkpoint: Any,
    vocab: Vocabulary,
    device: str = "auto",
    profiler: StageProfiler | None = None,
    radio: Any = None,
    export_dir: str | Path | None = None,
    backend_options: dict[str, Any] | None = None,
    **radseg_options: Any,
) -> Segmenter:
    """Build the segmenter for ``backend`` ("torch", "onnxruntime", "tensorrt", "torch-tensorrt" or "auto").

    Args:
        checkpoint: RADIO checkpoint path or model name (torch backend).
        radio: for the torch backend, a loaded ``RadioModel`` or a zero-argument function returning one
            (used instead of loading ``checkpoint``).
        export_dir: a folder written by ``radseg-edge export`` (the exported backends run from it).
        backend_options: passed to the exported backend (e.g. onnxruntime ``providers``).
        radseg_options: ``RADSeg`` keyword arguments (torch backend).

    ``auto``: with an ``export_dir``, the best exported backend that runs here (TensorRT first), else
    PyTorch; the reasons for passing over a backend are kept in ``fallback_reasons``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "auto":
        reasons: list[str] = []
        if export_dir is not None:
            try:
                return make_segmenter(AUTO_EXPORTED, checkpoint, vocab, device, profiler, None, export_dir,
                                      backend_options)
            except RadsegError as exc:
                reasons.append(str(exc))
        else:
            reasons.append("no --export-dir: the exported backends have nothing to run")
        seg = make_segmenter("torch", checkpoint, vocab, device, profiler, radio, **radseg_options)
        seg.fallback_reasons = reasons  # type: ignore[attr-defined]
        return seg
    if backend == "torch":
        return TorchSegmenter(radio if radio is not None else checkpoint, vocab, device=device, profiler=profiler,
                              **radseg_options)
    if backend == "triton":  # a Triton server runs the model (backend_options: url, model, timeout, token)
        try:
            built = make_backend("triton", vocabulary=vocab, **(backend_options or {}))
        except RadsegError as exc:
            raise EngineError(f"backend triton: {exc}") from exc
        return BackendSegmenter(built, vocab, profiler)
    if backend not in BACKENDS and backend != AUTO_EXPORTED:
        raise EngineError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)} or auto")
    if export_dir is None:
        raise EngineError(f"the {backend} backend runs a folder written by `radseg-edge export`: give --export-dir")
    name = "auto" if backend == AUTO_EXPORTED else backend
    try:
        built = make_backend(name, export_dir=str(export_dir), vocabulary=vocab, **(backend_options or {}))
    except RadsegError as exc:
        raise EngineError(f"backend {backend}: {exc}") from exc
    return BackendSegmenter(built, vocab, profiler)


__all__ = [
    "BACKENDS",
    "BackendSegmenter",
    "SegmentResult",
    "Segmenter",
    "TorchSegmenter",
    "check_frame",
    "make_segmenter",
]
