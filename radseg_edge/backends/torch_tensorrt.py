"""torch-tensorrt backend: runs the ExportedPrograms compiled by ``radseg-edge export --format torch-tensorrt``
(:mod:`radseg_edge.export.torch_trt`), loaded with ``torch.export.load`` after their key records
(device, torch-tensorrt version, precision, shape profile, file hash) are checked against this machine."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from radseg_edge.backends.base import ExportedBackend
from radseg_edge.errors import EngineError
from radseg_edge.export.cache import DeviceDescription, verify_engine


class TorchTensorRTBackend(ExportedBackend):
    """RADSeg from the torch-tensorrt ExportedPrograms of an export folder.

    Args:
        export_dir: folder written by ``radseg-edge export --format torch-tensorrt``.
        vocabulary: default classes (default: the folder's vocabulary).
        device_description: this machine (default: described with the installed torch-tensorrt's version).
    """

    name = "torch-tensorrt"
    roles = {"pipeline": "pipeline_trt", "backbone": "backbone_trt", "head": "head_trt"}
    device = "cuda"

    def __init__(self, export_dir: str | os.PathLike, vocabulary=None,
                 device_description: DeviceDescription | None = None, load=None) -> None:
        from radseg_edge.export.torch_trt import ensure_torch_tensorrt, program_key

        ensure_torch_tensorrt("the torch-tensorrt backend")
        if load is None and not torch.cuda.is_available():
            raise EngineError("the torch-tensorrt backend needs a CUDA GPU and a CUDA build of torch")
        super().__init__(export_dir, vocabulary)
        load = load or (lambda path: torch.export.load(str(path)).module())
        self.programs = {}
        for role in self.roles.values():
            art = self.manifest.artefacts.get(role)
            if art is None:
                continue
            path = self.manifest.artefact_path(self.folder, role)
            key = program_key(art.get("precision", self.manifest.precision), None, device_description)
            verify_engine(path, replace(key, shape_profile=art.get("shape_profile", "static")))
            self.programs[role] = load(path)

    def export_hint(self) -> str:
        return "run `radseg-edge export --format torch-tensorrt`"

    def max_windows(self) -> int | None:
        limit = self.manifest.artefacts["backbone_trt"].get("max_windows")
        return int(limit) if limit else None

    def max_feature_size(self) -> tuple[int, int] | None:
        limit = self.manifest.artefacts["head_trt"].get("max_features")
        return (int(limit[0]), int(limit[1])) if limit else None

    def run_pipeline(self, frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        labels, probs = self.programs["pipeline_trt"](torch.from_numpy(frame).to(self.device))
        return probs, labels

    def run_backbone(self, windows: torch.Tensor) -> torch.Tensor:
        return self.programs["backbone_trt"](windows)

    def run_head(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.programs["head_trt"](features, text)

