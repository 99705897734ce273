"""ONNX export of RADSeg+'s SAM part: neck + prompt encoder + mask decoder, dynamic number of prompts.

Graph (names fixed, shapes with P prompts and K mask prompts dynamic, as in NanoSAM / EfficientViT-SAM):

    inputs   sam_features        1 x S x 64 x 64   RADIO 'sam' head features, zero-padded (fp32)
             point_coords        P x 1 x 2         (x, y) in SAM's 1024 frame (pixels)
             point_labels        P x 1             1 positive, 0 negative, -1 padding
             boxes               P x 4             (x0, y0, x1, y1) in SAM's 1024 frame
             mask_inputs         K x 1 x 256 x 256 one mask prompt per class
             prompt_mask_index   P (int64)         which mask prompt each prompt uses
    outputs  low_res_masks       P x 1 x 256 x 256 mask logits
             iou_predictions     P x 1

Prompt generation and the merge stay on the host (:mod:`radseg_edge.core.refine`); the graph runs with
:class:`radseg_edge.backends.sam_onnx.SamDecoderOnnx`. The mask prompts use
the reference's un-batched LayerNorm behaviour (what :class:`SamRefiner` does by default). Attention is
exported as explicit MatMul-Softmax-MatMul and LayerNorm at opset >= 17 (TensorRT-safe, see EDGE.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from radseg_edge.errors import EngineError, require
from radseg_edge.export.onnx import quiet_exporter_logs
from radseg_edge.models.sam import SAM_EMBED_GRID, SAM_MASK_INPUT_SIZE, SamPromptDecoder

INPUT_NAMES = ["sam_features", "point_coords", "point_labels", "boxes", "mask_inputs", "prompt_mask_index"]
OUTPUT_NAMES = ["low_res_masks", "iou_predictions"]


def example_inputs(sam: SamPromptDecoder, num_prompts: int, num_masks: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random but plausible decoder inputs, in :data:`INPUT_NAMES` order."""
    g = torch.Generator().manual_seed(seed)
    s = sam.config.encoder_dim
    feats = torch.randn(1, s, SAM_EMBED_GRID, SAM_EMBED_GRID, generator=g)
    xy0 = torch.rand(num_prompts, 2, generator=g) * 700
    wh = torch.rand(num_prompts, 2, generator=g) * 300 + 4
    boxes = torch.cat([xy0, xy0 + wh], dim=1)
    points = (xy0 + wh * torch.rand(num_prompts, 2, generator=g)).unsqueeze(1)
    labels = torch.ones(num_prompts, 1)
    masks = torch.rand(num_masks, 1, SAM_MASK_INPUT_SIZE, SAM_MASK_INPUT_SIZE, generator=g) * 0.005
    index = torch.randint(0, num_masks, (num_prompts,), generator=g, dtype=torch.int64)
    return feats, points, labels, boxes, masks, index


def export_sam_decoder_onnx(sam: SamPromptDecoder, path: str | os.PathLike, opset: int = 18) -> Path:
    """Write the neck + prompt encoder + mask decoder graph to ``path`` (dynamic P and K). Returns the path."""
    require("onnx", "onnx", "exporting the SAM decoder to ONNX")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sam = sam.eval()
    args = example_inputs(sam, num_prompts=3, num_masks=2)
    p = torch.export.Dim("num_prompts", min=1, max=4096)
    k = torch.export.Dim("num_masks", min=1, max=4096)
    dynamic_shapes = {
        "features": None,
        "point_coords": {0: p},
        "point_labels": {0: p},
        "boxes": {0: p},
        "mask_inputs": {0: k},
        "prompt_mask_index": {0: p},
    }
    try:
        with torch.inference_mode(False), torch.no_grad(), quiet_exporter_logs():
            program = torch.onnx.export(
                sam,
                args,
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                external_data=False,
                verbose=False,
            )
        program.save(str(path))
    except Exception as exc:  # exporter failures come in many types
        raise EngineError(f"ONNX export of the SAM decoder failed: {type(exc).__name__}: {exc}") from exc
    return path
