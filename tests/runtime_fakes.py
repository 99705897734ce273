"""Helpers for the streaming-runtime tests: synthetic videos/images and a fast fake segmenter.

The fake segmenter stands in for RADSeg where only the runtime is tested: it labels each pixel by its
red channel into K bins (K = number of classes), times its work as model stages on a StageProfiler,
and can be slowed down or paused to make frame dropping and mid-stream updates deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from radseg_edge.errors import VocabularyError
from radseg_edge.models.text import UNSPECIFIED, Vocabulary
from radseg_edge.runtime.segmenter import SegmentResult, check_frame
from radseg_edge.runtime.vocab import check_embeddings
from radseg_edge.utils.profiling import StageProfiler

DIM = 8


def random_vocab(names, dim: int = DIM, seed: int = 0, text_model: str = UNSPECIFIED) -> Vocabulary:
    """Random unit text embeddings (K x dim) for ``names`` (the tiny test models have no text tower)."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(len(names), dim, generator=g), dim=-1)
    return Vocabulary.from_embeddings(list(names), emb, text_model)


def frame_image(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """H x W x 3 uint8 RGB: a horizontal red ramp plus a frame-dependent square (deterministic)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = (i * 37) % 256
    y = (i * 5) % (h - 8)
    img[y:y + 8, 4:12, 2] = 255
    return img


def write_video(path: Path, n: int, fourcc: str, fps: float = 10.0, h: int = 48, w: int = 64) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for i in range(n):
        writer.write(cv2.cvtColor(frame_image(i, h, w), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_images(folder: Path, n: int, ext: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:04d}{ext}"), cv2.cvtColor(frame_image(i), cv2.COLOR_RGB2BGR))
    return folder


class FakeSegmenter:
    """Labels = red channel binned into K classes. Records the class names used for every call.

    ``delay_s``: extra time per frame (a slow model). ``before_call(i)``: hook run at the start of call i
    (0-based), e.g. to block until something happened.
    """

    def __init__(self, vocab: Vocabulary, delay_s: float = 0.0,
                 before_call: Callable[[int], None] | None = None) -> None:
        self.profiler = StageProfiler()
        self.delay_s = delay_s
        self.before_call = before_call
        self.calls: list[tuple[str, ...]] = []
        self.lock = threading.Lock()
        self.dim = vocab.embeddings.shape[1]
        self.set_vocabulary(vocab)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._names

    def set_vocabulary(self, vocab: Vocabulary) -> None:
        check_embeddings(vocab, self.dim)
        if any("forbidden" in n for n in vocab.names):
            raise VocabularyError("the fake model refuses 'forbidden'")
        self._names = tuple(vocab.names)

    def __call__(self, frame_rgb: np.ndarray) -> SegmentResult:
        check_frame(frame_rgb)
        i = len(self.calls)
        if self.before_call is not None:
            self.before_call(i)
        names = self._names
        self.calls.append(names)
        k = len(names)
        with self.profiler.stage("preprocess"):
            red = frame_rgb[..., 0].astype(np.int64)
        with self.profiler.stage("backbone"):
            if self.delay_s:
                time.sleep(self.delay_s)
            labels = np.minimum(red * k // 256, k - 1)
        with self.profiler.stage("head"):
            with self.profiler.stage("postprocess"):  # nested: must not be double counted
                labels = labels.astype(np.int64)
        return SegmentResult(labels=labels, class_names=names)
