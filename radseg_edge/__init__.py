"""radseg-edge: RADSeg zero-shot open-vocabulary semantic segmentation for Jetson Orin, desktop GPUs and CPU.

    from radseg_edge import load_radio, RADSeg, Vocabulary
    seg = RADSeg(load_radio("c-radio_v3-b_half.pth.tar"))
    labels = seg(image_rgb_uint8, Vocabulary.load("classes.safetensors")).labels   # 1 x H x W
"""

__version__ = "0.1.0"

from radseg_edge.errors import CheckpointError, InputError, RadsegError, VocabularyError  # noqa: E402
from radseg_edge.models import RadioModel, RadioOutput, load_radio, radio_from_config  # noqa: E402
from radseg_edge.pipeline import RADSeg, SegmentationResult  # noqa: E402


def __getattr__(name: str):
    if name == "Vocabulary":  # lazy: keeps `import radseg_edge` light
        from radseg_edge.models.text import Vocabulary

        return Vocabulary
    raise AttributeError(f"module 'radseg_edge' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "InputError",
    "RADSeg",
    "RadioModel",
    "RadioOutput",
    "RadsegError",
    "SegmentationResult",
    "Vocabulary",
    "VocabularyError",
    "__version__",
    "load_radio",
    "radio_from_config",
]
