"""One `radseg-edge export --format triton` of the tiny checkpoint shared by tests/test_triton_*.py (made once per run)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from tests._export_helpers import CROP, STRIDE, TINY_CKPT, tiny_vocabulary

FRAME_HW = (70, 110)  # 2 x 3 windows of 64 px
MAX_BATCH = 4


@functools.lru_cache(maxsize=1)
def tiny_triton_repo() -> Path:
    """The repository folder (model "radseg", CPU instances, max batch 4)."""
    from radseg_edge.cli import main

    root = Path(tempfile.mkdtemp(prefix="radseg_triton_test_"))
    atexit.register(shutil.rmtree, root, True)
    vocab_file = tiny_vocabulary().save(root / "vocab.safetensors")
    out = root / "repo"
    code = main(["export", "--format", "triton", "--checkpoint", str(TINY_CKPT), "--device", "cpu",
                 "--crop", str(CROP), "--stride", str(STRIDE), "--vocab", str(vocab_file),
                 "--imgsz", f"{FRAME_HW[0]}x{FRAME_HW[1]}", "--gate-limit", "1", "--max-batch", str(MAX_BATCH),
                 "--triton-device", "cpu", "--engine", "never", "-o", str(out)])
    if code != 0:
        raise RuntimeError(f"radseg-edge export --format triton failed with exit code {code}")
    return out


