"""The shared base of the exported backends (radseg_edge.backends.base.ExportedBackend): a 1344 x 2688 image
(72 windows of 224, an 84 x 168 feature map) through an ONNX export whose backbone allows 32 windows runs in
window chunks of 32, 32 and 8 with ONNX Runtime on the CPU and gives the PyTorch pipeline's result."""

from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TINY_CKPT = "tests/fixtures/tiny_radio.pth.tar"


def micro_radseg():
    """A RADSeg with a 1-block, 16-channel RADIO (random weights; the tiny fixture's teachers, narrowed) so that
    the N x N SCGA of a 1344 x 2688 image (N = 14112) stays cheap on two cores."""
    from radseg_edge.models import load_radio
    from radseg_edge.models.factory import radio_from_config
    from radseg_edge.pipeline import RADSeg

    config = load_radio(TINY_CKPT).config
    lang = [dataclasses.replace(t, hidden_dim=32, summary_dim=16, feature_dim=16) for t in config.teachers
            if t.name == "siglip2"]
    micro = config.replace(name="micro", embed_dim=16, depth=1, num_heads=2, mlp_hidden=32, teachers=tuple(lang))
    return RADSeg(radio_from_config(micro, seed=0), crop=224, stride=224)


@pytest.mark.slow
def test_onnxruntime_cpu_runs_72_windows_in_chunks_of_the_backbone_limit_and_matches_torch(tmp_path):
    from radseg_edge.backends.onnxruntime import OnnxRuntimeBackend
    from radseg_edge.export.build import ExportOptions, export_model

    seg = micro_radseg()
    manifest = export_model(seg, "onnx", tmp_path / "onnx", options=ExportOptions(max_windows=32, gate_limit=1,
                                                                                   progress=False))
    assert manifest.artefacts["backbone"]["max_windows"] == 32
    backend = OnnxRuntimeBackend(tmp_path / "onnx", providers="cpu", threads=2)
    batches = []
    run_backbone = backend.run_backbone
    backend.run_backbone = lambda w: (batches.append(w.shape[0]), run_backbone(w))[1]
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 1344, 2688, generator=g)
    text = torch.randn(5, seg.embedding_dim, generator=g)
    out = backend(image, text)
    assert batches == [32, 32, 8]
    ref = seg(image, text)
    assert out.features.shape == ref.features.shape == (1, 16, 84, 168)
    assert (out.features - ref.features).abs().max() <= 1e-4
    assert (out.probs - ref.probs).abs().max() <= 2e-3
    assert (out.labels == ref.labels).float().mean() >= 0.999
