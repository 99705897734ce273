"""Reference operators of the RADSeg algorithm, in plain PyTorch.

Each function here is the single source of truth for one step of the data flow
image -> windows -> backbone (SCRA) -> stitch -> SCGA -> language head -> probabilities -> labels.
Fused kernels (``radseg_edge.kernels``) and exported graphs are tested against these.
"""

from radseg_edge.core.predict import (
    IGNORE_INDEX,
    class_probabilities,
    denoise_prompts,
    labels_from_probs,
    upsample_probs,
)
from radseg_edge.core.scga import scga_reference
from radseg_edge.core.scra import scra_attention_reference, standard_attention_reference
from radseg_edge.core.windows import (
    extract_windows,
    preresize_image,
    preresize_size,
    stitch_windows,
    window_boxes,
)

__all__ = [
    "IGNORE_INDEX",
    "class_probabilities",
    "denoise_prompts",
    "extract_windows",
    "labels_from_probs",
    "preresize_image",
    "preresize_size",
    "scga_reference",
    "scra_attention_reference",
    "standard_attention_reference",
    "stitch_windows",
    "upsample_probs",
    "window_boxes",
]
