"""Mapper: segment each RGB-D frame with any backend and fuse the result into a :class:`VoxelMap`.

    mapper = Mapper(RADSeg(radio, vocabulary=vocab), voxel_size=0.05, fuse="features", feature_dims=128)
    for frame in open_sequence("Replica/room0", "replica", every=10):
        mapper.add_frame(frame)
    mapper.map.save("room0.safetensors")

What is fused (RADSEG.md "3D"):
* ``fuse="features"`` (needs the torch backend, the only one that returns ``scga_features``): the SCGA
  features (C = backbone width) on the patch grid, optionally PCA-reduced; the map stores the language head
  (and the PCA basis), so a text query computes head(mean feature) -> 100*cos softmax, as 2D computes
  head(feature) per patch. ``feature_space="language"`` fuses the head's output instead (D = text width;
  no head at query time; averaging after the non-linear head is not the same as before it).
* ``fuse="probs"`` (any backend): the 2D class probabilities after prompt denoising, at the image size.
"""

from __future__ import annotations

import numpy as np
import torch

from radseg_edge.errors import InputError
from radseg_edge.mapping.readers import Frame
from radseg_edge.mapping.voxel_map import VoxelMap
from radseg_edge.utils.profiling import StageProfiler

FUSE_MODES = ("features", "probs")
FEATURE_SPACES = ("scga", "language")


def _radseg_of(segmenter):
    """The RADSeg pipeline behind a segmenter (RADSeg itself or the torch backend), else None."""
    if hasattr(segmenter, "language_head") and hasattr(segmenter, "language_features"):
        return segmenter
    inner = getattr(segmenter, "radseg", None)
    return inner if inner is not None and hasattr(inner, "language_head") else None


class Mapper:
    """Runs ``segmenter`` (RADSeg or a backend from :func:`radseg_edge.backends.make_backend`) per frame and fuses.

    Args:
        segmenter: callable ``segmenter(rgb_uint8, text, channel_order="rgb")`` returning a result with
            ``probs`` (1 x K x H x W) and, for features, ``scga_features`` (1 x C x h x w).
        voxel_size, depth_range, max_voxels, budget, feature_dims, pca_frames: see :class:`VoxelMap`.
        fuse: "features" or "probs".
        feature_space: features mode: "scga" (default, RADSEG.md) or "language".
        vocabulary: the classes of the 2D segmentation (probs mode: the map's classes).
        profiler: receives the stages "segment" and "fuse" (ms per frame).
    """

    def __init__(
        self,
        segmenter,
        voxel_size: float = 0.05,
        fuse: str = "features",
        feature_space: str = "scga",
        feature_dims: int | None = None,
        pca_frames: int = 5,
        vocabulary=None,
        depth_range: tuple[float, float] = (0.1, 10.0),
        max_voxels: int = 4_000_000,
        budget: str = "drop",
        device: str | torch.device | None = None,
        profiler: StageProfiler | None = None,
    ) -> None:
        if fuse not in FUSE_MODES:
            raise InputError(f"fuse must be one of {', '.join(FUSE_MODES)}, got {fuse!r}")
        if feature_space not in FEATURE_SPACES:
            raise InputError(f"feature_space must be one of {', '.join(FEATURE_SPACES)}, got {feature_space!r}")
        self.segmenter = segmenter
        self.vocabulary = vocabulary
        self.fuse = fuse
        self.feature_space = feature_space
        self.radseg = _radseg_of(segmenter)
        if fuse == "features" and self.radseg is None:
            raise InputError(
                "fusing features needs the torch backend (exported backends return probabilities only): "
                "use fuse='probs' (CLI: --fuse probs) or --backend torch"
            )
        head, text_model = None, ""
        if fuse == "features":
            text_model = getattr(self.radseg.radio, "text_model_id", "") or ""
            if feature_space == "scga":
                import copy

                head = copy.deepcopy(self.radseg.language_head).float().cpu()
        if device is None:
            device = self.radseg.device if self.radseg is not None else "cpu"
        names = list(vocabulary.names) if (fuse == "probs" and vocabulary is not None) else None
        self.map = VoxelMap(
            voxel_size, mode="features" if fuse == "features" else "probs", depth_range=depth_range,
            max_voxels=max_voxels, budget=budget, feature_dims=feature_dims if fuse == "features" else None,
            pca_frames=pca_frames, class_names=names, language_head=head.to(device) if head is not None else None,
            text_model=text_model, device=device,
        )
        self.profiler = profiler or StageProfiler(device=self.map.device)

    def add_frame(self, frame: Frame | None = None, *, rgb=None, depth=None, intrinsics=None, pose=None):
        """Segment and fuse one frame (a :class:`Frame`, or its fields as keywords). Returns the 2D result."""
        if frame is not None:
            rgb, depth, intrinsics, pose = frame.rgb, frame.depth, frame.intrinsics, frame.pose
        if rgb is None or depth is None or intrinsics is None or pose is None:
            raise InputError("add_frame needs rgb, depth, intrinsics and pose")
        # an exported backend built with this vocabulary takes its fixed-size fast path when given no text
        text = None if getattr(self.segmenter, "vocabulary", None) is self.vocabulary and self.radseg is None else self.vocabulary
        with self.profiler.stage("segment"):
            result = self.segmenter(np.ascontiguousarray(rgb), text, channel_order="rgb")
        with self.profiler.stage("fuse"):
            if self.fuse == "features":
                values = getattr(result, "scga_features", None)
                if values is None:
                    raise InputError("the segmenter returned no scga_features; fuse probabilities instead (--fuse probs)")
                values = values[0]
                if self.feature_space == "language":
                    values = self.radseg.language_features(values[None])[0]
            else:
                values = result.probs[0]
                if self.map.class_names is None and getattr(result, "class_names", None):
                    self.map.class_names = list(result.class_names)
            self.map.integrate(values, depth, intrinsics, pose, rgb=rgb)
        self.profiler.end_frame()
        return result
