"""The whole RADSeg pipeline for one fixed frame size, as one static-shape traceable nn.Module.

    pipe = FixedResolutionPipeline(seg, vocabulary.embeddings, height=480, width=640)
    labels, probs = pipe(frames)  # frames: B x 480 x 640 x 3 uint8 RGB (B >= 1, e.g. several cameras)

Everything that depends on the frame size (pre-resize target, window boxes, overlap counts, upsample
size) is computed at construction, so the forward has no data-dependent control flow: it traces with
``torch.onnx.export`` (one ONNX graph -> one TensorRT engine per frame) and with ``torch.export`` /
AOTInductor (the C++ runtime). The class embeddings are baked in as a constant.

The batch dimension may be dynamic (:func:`batch_dynamic_shapes`): frames of several cameras of the
same size then run as one batch (Triton's dynamic batching); each frame's result equals its result
alone (windows, SCGA statistics and prompt denoising are per frame).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from radseg_edge.core.windows import preresize_size, window_boxes
from radseg_edge.errors import InputError
from radseg_edge.export.graphs import HeadGraph, WindowBackbone
from radseg_edge.export.ops import (
    denoise_export,
    extract_windows_static,
    labels_export,
    resize_bilinear,
    stitch_static,
)


def fixed_geometry(height: int, width: int, crop: int, stride: int, patch: int = 16):
    """(pre-resized (H', W'), window boxes, window size, patch grid) for a frame of height x width.

    crop = 0: one pass on the whole frame (sides must be multiples of ``patch``).
    """
    if crop == 0:
        if height % patch or width % patch:
            raise InputError(f"crop=0 needs frame sides that are multiples of {patch}, got {height}x{width}")
        size = (height, width)
        boxes = [(0, 0, height, width)]
    else:
        size = preresize_size(height, width, crop, stride)
        boxes = window_boxes(size[0], size[1], crop, stride)
    y1, x1, y2, x2 = boxes[0]
    window = (y2 - y1, x2 - x1)
    grid = (-(-size[0] // patch), -(-size[1] // patch))
    return size, boxes, window, grid


class FixedResolutionPipeline(nn.Module):
    """RADSeg from a uint8 frame to labels and probabilities, for one frame size and one vocabulary.

    Args:
        radseg: a :class:`radseg_edge.pipeline.RADSeg` (its RADIO model, crop, stride, temperatures,
            denoise and prediction thresholds are used; modules are shared, not copied).
        vocab_embeddings: K x D class embeddings (a tensor or anything with ``.embeddings``).
        height, width: the frame size in pixels.
    forward:
        frame: B x H x W x 3 uint8 RGB (B frames of the same size, processed independently).
        -> (labels B x H x W int64, probs B x K x H x W fp32); frame i's equal ``radseg(frame[i].numpy(), vocab)``.
    """

    def __init__(self, radseg: nn.Module, vocab_embeddings, height: int, width: int) -> None:
        super().__init__()
        radio = radseg.radio
        emb = getattr(vocab_embeddings, "embeddings", vocab_embeddings)
        emb = torch.as_tensor(emb).detach().float()
        if emb.dim() != 2 or emb.shape[1] != radseg.embedding_dim:
            raise InputError(
                f"class embeddings must be K x {radseg.embedding_dim} for this model, got {tuple(emb.shape)}"
            )
        self.height, self.width = int(height), int(width)
        self.crop, self.stride = int(radseg.crop), int(radseg.stride)
        self.patch = int(radio.patch_size)
        self.resized_hw, boxes, window, self.grid_hw = fixed_geometry(height, width, self.crop, self.stride, self.patch)
        self.boxes = [tuple(int(v) for v in b) for b in boxes]
        self.denoise = float(radseg.denoise)
        self.prediction_thresh = float(radseg.prediction_thresh)
        self.backbone = WindowBackbone(radio, window, radseg.scra_tau)
        self.head = HeadGraph(radio, radseg.scga_tau)
        self.register_buffer("text_embeddings", emb.clone())

    @property
    def num_windows(self) -> int:
        return len(self.boxes)

    @property
    def num_classes(self) -> int:
        return int(self.text_embeddings.shape[0])

    def features(self, frame: Tensor) -> Tensor:
        """Stitched backbone features B x C x h x w of B x H x W x 3 uint8 frames."""
        x = frame.permute(0, 3, 1, 2).float() / 255.0
        x = resize_bilinear(x, self.resized_hw)
        if self.num_windows == 1:
            return self.backbone(x)
        feats = self.backbone(extract_windows_static(x, self.boxes))  # (nW * B) x C x hp x wp, window-major
        c, hp, wp = feats.shape[1:]
        # nW x (B * C) x hp x wp: stitching every frame's channels at once keeps the boxes static
        stitched = stitch_static(feats.reshape(self.num_windows, -1, hp, wp), self.boxes, self.grid_hw, self.patch)
        return stitched.reshape(-1, c, *self.grid_hw)

    def forward(self, frame: Tensor) -> tuple[Tensor, Tensor]:
        lowres = self.head(self.features(frame), self.text_embeddings)
        probs = denoise_export(resize_bilinear(lowres, (self.height, self.width)), self.denoise)
        return labels_export(probs, self.prediction_thresh), probs

    def example_input(self, batch: int = 1) -> Tensor:
        """``batch`` x H x W x 3 uint8 frames of the right shape (for tracing)."""
        return torch.zeros(batch, self.height, self.width, 3, dtype=torch.uint8)


def batch_dynamic_shapes(max_batch: int) -> dict:
    """``dynamic_shapes`` for exporting :class:`FixedResolutionPipeline` with a batch of 1..max_batch frames
    (trace with ``example_input(2)`` so the batch is not specialised to 1)."""
    return {"frame": {0: torch.export.Dim("batch", min=1, max=max(int(max_batch), 2))}}
