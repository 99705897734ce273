"""Runs the exported SAM decoder graph (:mod:`radseg_edge.export.sam_onnx`) with ONNX Runtime.

``seg.refiner = seg.refiner.with_decoder(SamDecoderOnnx("sam_decoder.onnx"))`` makes RADSeg+ run the
neck + prompt encoder + mask decoder from the exported graph instead of PyTorch.
"""

from __future__ import annotations

import os

import torch

from radseg_edge.errors import require
from radseg_edge.export.sam_onnx import INPUT_NAMES, OUTPUT_NAMES


def sam_decoder_session(path: str | os.PathLike, providers: list[str] | None = None):
    """An ONNX Runtime session of the exported graph (CPU unless ``providers`` say otherwise)."""
    ort = require("onnxruntime", "onnx", "running the SAM decoder in ONNX Runtime")
    return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])


def run_sam_decoder_onnx(session_or_path, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the exported graph: inputs in :data:`INPUT_NAMES` order -> (low_res_masks P x 1 x 256 x 256, iou P x 1)."""
    session = session_or_path if hasattr(session_or_path, "run") else sam_decoder_session(session_or_path)
    feed = {name: t.detach().cpu().numpy() for name, t in zip(INPUT_NAMES, inputs, strict=True)}
    low, iou = session.run(OUTPUT_NAMES, feed)
    return torch.from_numpy(low), torch.from_numpy(iou)


class SamDecoderOnnx:
    """The exported SAM decoder as a callable for :meth:`radseg_edge.models.sam_refiner.SamRefiner.with_decoder`.

    Args:
        path_or_session: the exported .onnx file or an ONNX Runtime session of it.
        providers: execution providers when a path is given (default CPU).
    Call: ``decoder(inputs)`` with the 6 tensors of :data:`INPUT_NAMES` -> (low-res logits P x 1 x 256 x 256,
    IoU P x 1) on the CPU.
    """

    def __init__(self, path_or_session, providers: list[str] | None = None) -> None:
        self.session = path_or_session if hasattr(path_or_session, "run") else sam_decoder_session(path_or_session,
                                                                                                    providers)

    def __call__(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return run_sam_decoder_onnx(self.session, inputs)
