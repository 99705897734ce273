"""torch-tensorrt backend: the PyTorch graphs compiled by torch-tensorrt, saved as ExportedPrograms.

``radseg-edge export --format torch-tensorrt`` compiles the fixed-resolution pipeline (with ``--imgsz``)
or the window backbone and the head, and saves each with ``torch_tensorrt.save(...,
output_format="exported_program")``; this backend loads them with ``torch.export.load``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from radseg_edge.backends.base import (
    BackendResult,
    WindowSettings,
    frame_tensor,
    frame_uint8,
    resolve_text,
    run_split,
)
from radseg_edge.backends.onnxruntime import load_export_vocabulary
from radseg_edge.errors import EngineError, InputError, require
from radseg_edge.export.manifest import Manifest


def compile_module(module: torch.nn.Module, inputs: list, path: str | os.PathLike, precision: str = "fp16",
                   ranges: dict[int, tuple[tuple, tuple, tuple]] | None = None) -> Path:
    """Compile ``module`` with torch-tensorrt (dynamo IR) and save it as an ExportedProgram at ``path``.

    Args:
        inputs: example CUDA tensors.
        ranges: {input index: (min shape, opt shape, max shape)} for inputs with dynamic dimensions.
    """
    torch_trt = require("torch_tensorrt", "trt", "the torch-tensorrt export")
    if not torch.cuda.is_available():
        raise EngineError("torch-tensorrt needs a CUDA GPU and a CUDA build of torch")
    precisions = {"fp32": {torch.float32}, "fp16": {torch.float16, torch.float32}}[precision]
    spec = list(inputs)
    for i, (lo, opt, hi) in (ranges or {}).items():
        spec[i] = torch_trt.Input(min_shape=lo, opt_shape=opt, max_shape=hi, dtype=inputs[i].dtype)
    compiled = torch_trt.compile(module.eval().cuda(), ir="dynamo", inputs=spec, enabled_precisions=precisions)
    torch_trt.save(compiled, str(path), output_format="exported_program", inputs=list(inputs))
    return Path(path)


class TorchTensorRTBackend:
    """RADSeg from the torch-tensorrt ExportedPrograms of an export folder."""

    name = "torch-tensorrt"

    def __init__(self, export_dir: str | os.PathLike, vocabulary=None) -> None:
        require("torch_tensorrt", "trt", "the torch-tensorrt backend")
        if not torch.cuda.is_available():
            raise EngineError("the torch-tensorrt backend needs a CUDA GPU and a CUDA build of torch")
        self.folder = Path(export_dir)
        self.manifest = Manifest.read(self.folder)
        self.manifest.verify(self.folder)  # SHA-256 of every artefact, paths inside the folder
        self.settings = WindowSettings.from_manifest(self.manifest.windows)
        self.vocabulary = vocabulary if vocabulary is not None else load_export_vocabulary(self.folder, self.manifest)
        self.programs = {}
        for role in ("pipeline_trt", "backbone_trt", "head_trt"):
            if role in self.manifest.artefacts:
                self.programs[role] = torch.export.load(str(self.manifest.artefact_path(self.folder, role))).module()
        if not self.programs:
            raise EngineError(f"{self.folder} holds no torch-tensorrt programs; run `radseg-edge export --format torch-tensorrt`")

    def __call__(self, image, text=None, channel_order: str = "rgb") -> BackendResult:
        names = list(self.vocabulary.names) if self.vocabulary is not None else None
        if "pipeline_trt" in self.programs and text is None:
            size = tuple(self.manifest.artefacts["pipeline_trt"]["imgsz"])
            frame = frame_uint8(image, channel_order)
            if tuple(frame.shape[1:3]) == size:
                labels, probs = self.programs["pipeline_trt"](torch.from_numpy(frame).cuda())
                return BackendResult(probs.float(), labels.long(), class_names=names, backend=self.describe())
        if "backbone_trt" not in self.programs:
            raise InputError("this export holds only the fixed-resolution program: give frames of its size and no text")
        emb, given = resolve_text(text, self.vocabulary, names)
        out = run_split(frame_tensor(image, channel_order).cuda(), emb.cuda(), self.settings,
                        lambda w: self.programs["backbone_trt"](w).float(),
                        lambda f, t: self.programs["head_trt"](f, t).float())
        return BackendResult(**out, class_names=given if text is not None else names, backend=self.describe())

    def describe(self) -> str:
        return f"torch-tensorrt[{self.manifest.precision}]"
