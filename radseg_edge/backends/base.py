"""What every backend returns, the host-side part of the split (variable image size) pipeline, and
:class:`ExportedBackend`, the one base class of the backends that run an export folder.

An exported backend reads the folder's manifest (in one place: :meth:`ExportedBackend.read_manifest`),
takes the window settings and the default vocabulary from it, runs the fixed-size ``pipeline`` graph for
frames of its size without other classes, and otherwise the ``backbone`` graph on the windows, in chunks
no larger than the graph's window limit, then the ``head`` graph on the stitched features. A subclass
only says how to run each graph (:meth:`run_pipeline`, :meth:`run_backbone`, :meth:`run_head`) and what
its limits are (:meth:`max_windows`, :meth:`max_feature_size`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from radseg_edge.core.image import to_image_tensor
from radseg_edge.core.predict import probabilities_and_labels
from radseg_edge.core.windows import extract_windows, preresize_image, stitch_windows, window_boxes
from radseg_edge.errors import EngineError, InputError, VocabularyError
from radseg_edge.export.manifest import Manifest
from radseg_edge.models.text import check_finite_embeddings, same_embeddings


@dataclass
class BackendResult:
    """Output of a backend for one image (same field names as :class:`radseg_edge.pipeline.SegmentationResult`).

    Attributes:
        probs: 1 x K x H x W fp32 class probabilities after prompt denoising.
        labels: 1 x H x W int64 class indices (-1 below the prediction threshold).
        features: 1 x C x h x w stitched backbone features (split graphs only, else None).
        lowres_probs: 1 x K x h x w probabilities before upsampling (split graphs only, else None).
        class_names: names of the K classes when known.
        backend: the backend's name (and execution provider / precision).
    """

    probs: Tensor
    labels: Tensor
    features: Tensor | None = None
    lowres_probs: Tensor | None = None
    class_names: list[str] | None = None
    backend: str = ""

    def labels_numpy(self, index: int = 0) -> np.ndarray:
        return self.labels[index].cpu().numpy()


@dataclass(frozen=True)
class WindowSettings:
    """The RADSeg settings the host side of the split pipeline needs (from the export manifest)."""

    crop: int
    stride: int
    patch: int = 16
    denoise: float = 0.5
    prediction_thresh: float = 0.0

    @classmethod
    def from_manifest(cls, windows: dict) -> WindowSettings:
        return cls(
            crop=int(windows["crop"]),
            stride=int(windows["stride"]),
            patch=int(windows.get("patch", 16)),
            denoise=float(windows.get("denoise", 0.5)),
            prediction_thresh=float(windows.get("prediction_thresh", 0.0)),
        )


def frame_tensor(image, channel_order: str = "rgb") -> Tensor:
    """H x W x 3 uint8 numpy (or 1 x 3 x H x W float tensor) -> 1 x 3 x H x W fp32 RGB in [0,1]."""
    x = to_image_tensor(image, channel_order)
    if x.shape[0] != 1:
        raise InputError(f"exported backends take one image at a time, got a batch of {x.shape[0]}")
    return x


def frame_uint8(image, channel_order: str = "rgb") -> np.ndarray:
    """1 x H x W x 3 uint8 RGB frame for the fixed-resolution graph."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        rgb = image[..., ::-1] if channel_order.lower() == "bgr" else image
        return np.ascontiguousarray(rgb)[None]
    x = frame_tensor(image, channel_order)
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()[None]


def run_split(
    x: Tensor,
    text: Tensor,
    settings: WindowSettings,
    backbone: Callable[[Tensor], Tensor],
    head: Callable[[Tensor, Tensor], Tensor],
) -> dict[str, Tensor]:
    """The split pipeline with exported backbone/head callables and the reference host-side operators.

    Args:
        x: 1 x 3 x H x W fp32 RGB in [0,1]; text: K x D class embeddings.
        backbone: windows nW x 3 x crop x crop -> features nW x C x h x w.
        head: (stitched features 1 x C x h x w, text K x D) -> probabilities 1 x K x h x w.
    Returns:
        dict with probs, labels, features, lowres_probs (torch tensors on x's device).
    """
    p = settings.patch
    if settings.crop == 0:
        if x.shape[-2] % p or x.shape[-1] % p:
            raise InputError(f"crop=0 needs image sides that are multiples of {p}, got {tuple(x.shape[-2:])}")
        feats = backbone(x)
    else:
        resized = preresize_image(x, settings.crop, settings.stride)
        boxes = window_boxes(resized.shape[-2], resized.shape[-1], settings.crop, settings.stride)
        windows = extract_windows(resized, boxes)
        if tuple(windows.shape[-2:]) != (settings.crop, settings.crop):
            raise InputError(
                f"this {x.shape[-2]}x{x.shape[-1]} image gives {windows.shape[-2]}x{windows.shape[-1]} windows, and the "
                f"exported backbone takes {settings.crop}x{settings.crop}: resize the image so that both sides are at "
                "least the crop size, or use the torch backend"
            )
        window_feats = backbone(windows)
        feats = stitch_windows(window_feats.float(), boxes, tuple(resized.shape[-2:]), p)
    lowres = head(feats.float(), text).float()
    probs, labels = probabilities_and_labels(lowres, tuple(x.shape[-2:]), settings.denoise, settings.prediction_thresh)
    return dict(probs=probs, labels=labels, features=feats, lowres_probs=lowres)


def resolve_text(text, default, default_names: list[str] | None) -> tuple[Tensor, list[str] | None]:
    """(K x D fp32 embeddings, names) from a Vocabulary, a tensor, or the export folder's vocabulary."""
    text = default if text is None else text
    if text is None:
        raise VocabularyError("no class embeddings: pass a Vocabulary or K x D tensor, or export with --vocab")
    if hasattr(text, "embeddings") and hasattr(text, "names"):
        check_finite_embeddings(text.embeddings, names=list(text.names))
        return text.embeddings.float(), list(text.names)
    if isinstance(text, np.ndarray):
        text = torch.from_numpy(text)
    if not isinstance(text, Tensor) or text.dim() != 2:
        raise VocabularyError(f"text must be a Vocabulary or a K x D tensor, got {type(text).__name__}")
    check_finite_embeddings(text)
    return text.float(), (default_names if text is default else None)


def load_export_vocabulary(folder: str | os.PathLike, manifest: Manifest):
    """The Vocabulary saved in an export folder, or None."""
    if "vocabulary" not in manifest.artefacts:
        return None
    from radseg_edge.models.text import Vocabulary

    return Vocabulary.load(manifest.artefact_path(folder, "vocabulary", verify=True))


def chunked(run: Callable[[Tensor], Tensor], windows: Tensor, limit: int | None) -> Tensor:
    """``run`` over ``windows`` (nW x 3 x crop x crop) in batches of at most ``limit``, concatenated (fp32)."""
    if not limit or windows.shape[0] <= limit:
        return run(windows).float()
    return torch.cat([run(part).float() for part in windows.split(int(limit))])


class ExportedBackend:
    """Base of the backends that run a folder written by ``radseg-edge export``.

    Args:
        export_dir: the export folder (manifest.json and the artefacts it lists).
        vocabulary: default classes (default: the folder's vocabulary, if it has one).
    Call: ``backend(image, text=None, channel_order="rgb")`` with an H x W x 3 uint8 array (or a
    1 x 3 x H x W float tensor, RGB in [0,1]) -> :class:`BackendResult` (probs 1 x K x H x W fp32,
    labels 1 x H x W int64).

    Subclasses set :attr:`roles` (the manifest roles of their pipeline / backbone / head artefacts) and
    :attr:`device`, and implement the ``run_*`` methods.
    """

    name = "exported"
    #: manifest artefact roles of the fixed-size pipeline, the window backbone and the head.
    roles: dict[str, str] = {"pipeline": "pipeline", "backbone": "backbone", "head": "head"}
    #: where the split graphs' inputs go ("cpu" or "cuda").
    device: str = "cpu"
    #: the export option that raises the head's feature-map limit (named in the refusal).
    head_limit_option = "--max-image-side"

    def __init__(self, export_dir: str | os.PathLike, vocabulary=None) -> None:
        self.folder = Path(export_dir)
        self.manifest = self.read_manifest(self.folder)
        self.settings = WindowSettings.from_manifest(self.manifest.windows)
        self.own_vocabulary = load_export_vocabulary(self.folder, self.manifest)  # the pipeline graph's classes
        self.vocabulary = vocabulary if vocabulary is not None else self.own_vocabulary
        present = [r for r in self.roles.values() if r in self.manifest.artefacts]
        if not present:
            raise EngineError(f"{self.folder} holds no artefacts for the {self.name} backend (it has: "
                              f"{', '.join(sorted(self.manifest.artefacts)) or 'none'}); {self.export_hint()}")

    @staticmethod
    def read_manifest(folder: Path) -> Manifest:
        """The folder's manifest: the one place every exported backend reads and checks it (SHA-256 of every
        artefact, artefact paths inside the folder, sane window settings)."""
        manifest = Manifest.read(folder)
        manifest.verify(folder)
        return manifest

    def export_hint(self) -> str:
        return "run `radseg-edge export`"

    # what a subclass provides -------------------------------------------------------------------
    def run_pipeline(self, frame: np.ndarray) -> tuple[Tensor, Tensor]:
        """1 x H x W x 3 uint8 RGB frame -> (probs 1 x K x H x W, labels 1 x H x W)."""
        raise NotImplementedError

    def run_backbone(self, windows: Tensor) -> Tensor:
        """nW x 3 x crop x crop fp32 windows (nW <= :meth:`max_windows`) -> nW x C x h x w features."""
        raise NotImplementedError

    def run_head(self, features: Tensor, text: Tensor) -> Tensor:
        """(1 x C x h x w stitched features, K x D text) -> 1 x K x h x w probabilities."""
        raise NotImplementedError

    def max_windows(self) -> int | None:
        """The largest window batch the backbone artefact takes (None: no limit)."""
        return None

    def max_feature_size(self) -> tuple[int, int] | None:
        """The largest (h, w) feature map the head artefact takes (None: no limit)."""
        return None

    def describe(self) -> str:
        return f"{self.name}[{self.manifest.precision}]"

    # shared ---------------------------------------------------------------------------------------
    def has(self, part: str) -> bool:
        return self.roles[part] in self.manifest.artefacts

    @property
    def pipeline_size(self) -> tuple[int, int] | None:
        """(H, W) of the fixed-size pipeline artefact, or None."""
        art = self.manifest.artefacts.get(self.roles["pipeline"])
        return (int(art["imgsz"][0]), int(art["imgsz"][1])) if art else None

    def _backbone(self, windows: Tensor) -> Tensor:
        return chunked(self.run_backbone, windows, self.max_windows())

    def _head(self, features: Tensor, text: Tensor) -> Tensor:
        limit = self.max_feature_size()
        h, w = int(features.shape[-2]), int(features.shape[-1])
        if limit is not None and (h > limit[0] or w > limit[1]):
            p = self.settings.patch
            raise InputError(
                f"this image gives a {h}x{w} feature map, and the head of {self.folder} takes at most "
                f"{limit[0]}x{limit[1]} ({limit[0] * p}x{limit[1] * p} pixels after the pre-resize); re-export "
                f"with {self.head_limit_option} {max(h, w) * p} or larger, or give a smaller image"
            )
        return self.run_head(features, text).float()

    def __call__(self, image, text=None, channel_order: str = "rgb") -> BackendResult:
        size = self.pipeline_size
        # the fixed-size artefact has its vocabulary built in: use it only for exactly those classes
        if size is not None and same_embeddings(self.vocabulary if text is None else text, self.own_vocabulary):
            frame = frame_uint8(image, channel_order)
            if tuple(frame.shape[1:3]) == size:
                probs, labels = self.run_pipeline(frame)
                return BackendResult(probs.float(), labels.long(), class_names=list(self.own_vocabulary.names),
                                     backend=self.describe())
            if not self.has("backbone"):
                raise InputError(f"this export runs frames of {size[0]}x{size[1]} only, got {frame.shape[1]}x"
                                 f"{frame.shape[2]}; resize the frames or export without --imgsz")
        elif not self.has("backbone"):
            raise InputError(f"{self.folder} holds only the fixed-size graph, whose classes are built in; these classes "
                             "differ: re-export with this --vocab (or without --imgsz for graphs that take any vocabulary)")
        emb, names = resolve_text(text, self.vocabulary, None)
        if text is None and self.vocabulary is not None:
            names = list(self.vocabulary.names)
        x = frame_tensor(image, channel_order).to(self.device)
        out = run_split(x, emb.to(self.device), self.settings, self._backbone, self._head)
        return BackendResult(**out, class_names=names, backend=self.describe())
