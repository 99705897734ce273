"""One export of the tiny checkpoint shared by the tests/test_export_*.py modules (made once per run)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

TINY_CKPT = Path(__file__).parent / "fixtures" / "tiny_radio.pth.tar"
CROP, STRIDE = 64, 32
FRAME_HW = (70, 110)  # pre-resized to 96 x 128 -> 2 x 3 windows of 64 px
CLASS_NAMES = ["sky", "road", "car", "tree", "person"]


def tiny_vocabulary():
    from radseg_edge.models.text import Vocabulary

    emb = torch.randn(len(CLASS_NAMES), 64, generator=torch.Generator().manual_seed(3))
    return Vocabulary.from_embeddings(CLASS_NAMES, emb)


@functools.lru_cache(maxsize=1)
def tiny_export_folder() -> Path:
    """`radseg-edge export --format onnx` of the tiny checkpoint with --imgsz 70x110 (split + fixed graphs)."""
    import cv2

    from radseg_edge.cli import main
    from radseg_edge.export.build import synthetic_images

    root = Path(tempfile.mkdtemp(prefix="radseg_export_test_"))
    atexit.register(shutil.rmtree, root, True)
    images = root / "images"
    images.mkdir()
    for i, img in enumerate(synthetic_images(2, (60, 90), seed=11)):
        cv2.imwrite(str(images / f"{i}.png"), img[..., ::-1])
    vocab_file = tiny_vocabulary().save(root / "vocab.safetensors")
    out = root / "onnx"
    code = main(["export", "--format", "onnx", "--checkpoint", str(TINY_CKPT), "--device", "cpu",
                 "--crop", str(CROP), "--stride", str(STRIDE), "--vocab", str(vocab_file),
                 "--imgsz", f"{FRAME_HW[0]}x{FRAME_HW[1]}", "--calib", str(images), "--gate-limit", "1", "-o", str(out)])
    if code != 0:
        raise RuntimeError(f"radseg-edge export failed with exit code {code}")
    return out
