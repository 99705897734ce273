"""The Segmenter interface and its factory, with the tiny random RADIO checkpoint (random text embeddings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from radseg_edge.errors import EngineError, InputError, VocabularyError, importable
from radseg_edge.runtime import segmenter as segmod
from radseg_edge.runtime.pipeline import StreamConfig, StreamPipeline
from radseg_edge.runtime.segmenter import BackendSegmenter, Segmenter, TorchSegmenter, make_segmenter
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


class _FakeExported:
    """Stands in for an exported backend: backend(frame, vocabulary) -> result with 1 x H x W labels."""

    name = "onnxruntime"

    def __init__(self):
        self.texts = []

    def __call__(self, image, text=None):
        self.texts.append(list(text.names))
        h, w = image.shape[:2]
        return type("R", (), {"labels": torch.full((1, h, w), len(text.names) - 1, dtype=torch.int64)})()


def test_exported_backend_is_wrapped_and_gets_the_live_vocabulary(monkeypatch):
    made = []

    def make_backend(name, export_dir=None, vocabulary=None, **options):
        made.append((name, export_dir, options))
        return _FakeExported()

    monkeypatch.setattr(segmod, "make_backend", make_backend)
    seg = make_segmenter("onnxruntime", "ckpt", random_vocab(["a", "b", "c"]), device="cpu", export_dir="exp",
                         backend_options={"providers": "cpu"})
    assert isinstance(seg, BackendSegmenter) and made == [("onnxruntime", "exp", {"providers": "cpu"})]
    frame = np.zeros((20, 30, 3), np.uint8)
    assert seg(frame).labels.shape == (20, 30) and int(seg(frame).labels.max()) == 2
    seg.set_vocabulary(random_vocab(["x", "y"]))
    assert seg(frame).class_names == ("x", "y") and seg.backend.texts[-1] == ["x", "y"]
    with pytest.raises(VocabularyError, match="dimension"):
        seg.set_vocabulary(random_vocab(["z"], dim=3))
    assert seg.class_names == ("x", "y")


def test_auto_prefers_an_export_and_falls_back_to_torch_with_reasons(monkeypatch):
    class Torch:
        pass

    monkeypatch.setattr(segmod, "TorchSegmenter", lambda *a, **k: Torch())
    seg = make_segmenter("auto", "ckpt", random_vocab(["a"]), device="cpu")
    assert isinstance(seg, Torch) and "no --export-dir" in seg.fallback_reasons[0]

    def failing(name, **kw):
        raise InputError("no available backend can run exp")

    monkeypatch.setattr(segmod, "make_backend", failing)
    seg = make_segmenter("auto", "ckpt", random_vocab(["a"]), device="cpu", export_dir="exp")
    assert isinstance(seg, Torch) and "no available backend" in seg.fallback_reasons[0]

    monkeypatch.setattr(segmod, "make_backend", lambda name, **kw: _FakeExported())
    assert isinstance(make_segmenter("auto", "ckpt", random_vocab(["a"]), device="cpu", export_dir="exp"),
                      BackendSegmenter)


def test_unavailable_backends_are_clear_errors(monkeypatch):
    with pytest.raises(EngineError, match="unknown backend"):
        make_segmenter("openvino", "ckpt", None, device="cpu")
    if not importable("tensorrt"):  # the factory's own reason reaches the user
        with pytest.raises(EngineError, match="pip install 'radseg-edge\\[trt\\]'"):
            make_segmenter("tensorrt", "ckpt", random_vocab(["a"]), device="cpu", export_dir="exp")
    monkeypatch.setattr(segmod, "make_backend", lambda name, **kw: _FakeExported())
    with pytest.raises(EngineError, match="--export-dir"):
        make_segmenter("tensorrt", "ckpt", random_vocab(["a"]), device="cpu")


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
