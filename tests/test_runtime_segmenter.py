"""The Segmenter interface and its factory, with the tiny random RADIO checkpoint (random text embeddings)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from radseg_edge.errors import EngineError, InputError, MissingDependencyError, VocabularyError
from radseg_edge.runtime import segmenter as segmod
from radseg_edge.runtime.pipeline import StreamConfig, StreamPipeline
from radseg_edge.runtime.segmenter import Segmenter, TorchSegmenter, make_segmenter
from radseg_edge.runtime.sinks import NullSink
from radseg_edge.runtime.sources import open_source
from radseg_edge.utils.profiling import StageProfiler
from tests.runtime_fakes import random_vocab, write_video

TINY = Path(__file__).parent / "fixtures" / "tiny_radio.pth.tar"
TEXT_DIM = 64  # the tiny checkpoint's siglip2 summary head
OPTIONS = dict(crop=64, stride=32)


@pytest.fixture(scope="module")
def tiny_segmenter():
    seg = make_segmenter("torch", str(TINY), random_vocab(["sky", "road", "car"], dim=TEXT_DIM), device="cpu",
                         **OPTIONS)
    return seg


def test_torch_segmenter_follows_the_protocol_and_labels_every_pixel(tiny_segmenter):
    assert isinstance(tiny_segmenter, Segmenter) and isinstance(tiny_segmenter, TorchSegmenter)
    frame = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    res = tiny_segmenter(frame)
    assert res.labels.shape == (70, 90) and res.labels.dtype == np.int64
    assert res.labels.min() >= 0 and res.labels.max() < 3
    assert res.class_names == ("sky", "road", "car")
    with pytest.raises(InputError, match="uint8"):
        tiny_segmenter(frame.astype(np.float32))


def test_torch_segmenter_matches_radseg_called_directly(tiny_segmenter):
    from radseg_edge import RADSeg

    vocab = random_vocab(["sky", "road", "car"], dim=TEXT_DIM)
    frame = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    ref = RADSeg(tiny_segmenter.model.radio, **OPTIONS)(frame, vocab).labels[0].numpy()
    np.testing.assert_array_equal(tiny_segmenter(frame).labels, ref)


def test_vocabulary_swap_is_atomic_and_bad_ones_keep_the_old(tiny_segmenter):
    old = tiny_segmenter.class_names
    with pytest.raises(VocabularyError, match="dimension"):
        tiny_segmenter.set_vocabulary(random_vocab(["a", "b"], dim=TEXT_DIM + 1))
    with pytest.raises(VocabularyError, match="siglip2"):  # built with another text tower
        tiny_segmenter.set_vocabulary(random_vocab(["a", "b"], dim=TEXT_DIM, text_model="openai/clip-vit-base"))
    assert tiny_segmenter.class_names == old
    tiny_segmenter.set_vocabulary(random_vocab(["a", "b"], dim=TEXT_DIM, seed=3))
    frame = np.zeros((32, 48, 3), np.uint8)
    assert tiny_segmenter(frame).labels.max() < 2 and tiny_segmenter.class_names == ("a", "b")
    tiny_segmenter.set_vocabulary(random_vocab(list(old), dim=TEXT_DIM))


def test_tiny_model_streams_a_video_with_model_stages_profiled(tmp_path):
    video = write_video(tmp_path / "v.avi", 4, "MJPG", h=64, w=96)
    prof = StageProfiler()
    seg = make_segmenter("torch", str(TINY), random_vocab(["sky", "road"], dim=TEXT_DIM), device="cpu",
                         profiler=prof, **OPTIONS)
    out = StreamPipeline(open_source(str(video)), seg, [NullSink()], StreamConfig(), log=lambda m: None).run()
    assert out["frames"]["processed"] == 4
    assert {"preprocess", "backbone", "stitch", "scga", "head", "postprocess"} <= set(out["stages"])
    assert out["accounting"]["relative_error"] <= 0.05


def test_auto_on_cpu_is_torch_and_unknown_backends_are_refused(monkeypatch):
    class Seg:
        pass

    tried = []
    monkeypatch.setattr(segmod, "_backend_module", lambda name: tried.append(name))
    monkeypatch.setattr(segmod, "TorchSegmenter", lambda *a, **k: Seg())
    seg = make_segmenter("auto", "ckpt", None, device="cpu")
    assert isinstance(seg, Seg) and tried == [] and seg.fallback_reasons == []
    with pytest.raises(EngineError, match="unknown backend"):
        make_segmenter("openvino", "ckpt", None, device="cpu")


def test_missing_backend_module_or_dependency_is_a_clear_error(monkeypatch):
    real = importlib.import_module

    def fake_import(name, *args):
        if name == "radseg_edge.backends.tensorrt":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        if name == "radseg_edge.backends.onnxruntime":
            raise ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")
        return real(name, *args)

    monkeypatch.setattr(segmod.importlib, "import_module", fake_import)
    with pytest.raises(EngineError, match="--backend torch"):
        make_segmenter("tensorrt", "ckpt", None, device="cpu")
    with pytest.raises(MissingDependencyError, match=r"radseg-edge\[onnx\]"):
        make_segmenter("onnxruntime", "ckpt", None, device="cpu")


def test_auto_on_cuda_falls_back_to_torch_with_reasons(monkeypatch):
    class Seg:
        pass

    def fake_module(name):
        raise EngineError(f"no engine for {name}")

    monkeypatch.setattr(segmod, "_backend_module", fake_module)
    monkeypatch.setattr(segmod, "TorchSegmenter", lambda *a, **k: Seg())
    seg = make_segmenter("auto", "ckpt", None, device="cuda")
    assert isinstance(seg, Seg) and len(seg.fallback_reasons) == 2 and "no engine" in seg.fallback_reasons[0]


def test_segmenter_results_may_be_torch_tensors(tmp_path):
    """A backend returning 1 x h x w torch labels at another size is resized to the frame (nearest)."""
    video = write_video(tmp_path / "v.avi", 2, "MJPG")

    class Coarse:
        class_names = ("a", "b")

        def __call__(self, frame):
            return type("R", (), {"labels": torch.ones(1, 6, 8, dtype=torch.int64)})()

        def set_vocabulary(self, vocab):
            pass

    sink = NullSink()
    out = StreamPipeline(open_source(str(video)), Coarse(), [sink], log=lambda m: None).run()
    assert out["frames"]["processed"] == 2 and sink.frames == 2
