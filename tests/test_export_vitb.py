"""The exact c-radio_v3-b architecture (random weights, no download) exports to ONNX, runs in ONNX Runtime
(CPU) and matches PyTorch: stitched features <= 1e-4 relative, labels >= 99.9% equal on test images.
Slow (a 12-block ViT-B export): marked ``slow``; deselect with ``-m "not slow"``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radseg_edge.backends.base import WindowSettings
from radseg_edge.export import onnx as onnx_export
from radseg_edge.export.build import synthetic_images

ort = pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_c_radio_v3_b_split_graphs_match_pytorch(tmp_path):
    from radseg_edge.backends.base import run_split
    from radseg_edge.models import radio_from_config
    from radseg_edge.pipeline import RADSeg

    radio = radio_from_config("c-radio_v3-b", seed=0)
    assert (radio.embed_dim, len(radio.blocks), radio.num_prefix_tokens) == (768, 12, 8)
    seg = RADSeg(radio, crop=64, stride=32)  # small windows keep the CPU test short; same graph structure
    backbone = ort.InferenceSession(str(onnx_export.export_backbone(seg, tmp_path / "b.onnx", max_windows=16)),
                                    providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(onnx_export.export_head(seg, tmp_path / "h.onnx")), providers=["CPUExecutionProvider"])
    settings = WindowSettings(crop=64, stride=32)
    text = torch.randn(8, seg.embedding_dim, generator=torch.Generator().manual_seed(0))
    equal = total = 0
    for image in synthetic_images(2, (80, 112), seed=21):
        ref = seg(image, text)
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        out = run_split(
            x, text, settings,
            lambda w: torch.from_numpy(backbone.run(["features"], {"windows": w.numpy()})[0]),
            lambda f, t: torch.from_numpy(head.run(["probs"], {"features": f.numpy(), "text_embeddings": t.numpy()})[0]),
        )
        scale = float(ref.features.abs().max())
        assert float((out["features"] - ref.features).abs().max()) <= 1e-4 * max(scale, 1.0)
        assert float(np.abs(out["probs"].numpy() - ref.probs.numpy()).max()) <= 1e-4
        equal += int((out["labels"] == ref.labels).sum())
        total += ref.labels.numel()
    assert equal / total >= 0.999
