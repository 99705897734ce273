"""The PyTorch backend: the reference :class:`radseg_edge.pipeline.RADSeg` itself."""

from __future__ import annotations


class TorchBackend:
    """Wraps a RADSeg pipeline; ``backend(image, text=None)`` returns its SegmentationResult."""

    name = "torch"

    def __init__(self, radseg) -> None:
        self.radseg = radseg

    def __call__(self, image, text=None, channel_order: str = "rgb"):
        return self.radseg(image, text, channel_order=channel_order)

    def describe(self) -> str:
        return f"torch[{self.radseg.device}, {self.radseg.precision}, kernels {self.radseg.kernels_name}]"
