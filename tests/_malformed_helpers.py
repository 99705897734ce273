"""Hostile files for tests/test_malformed_inputs.py and tests/test_input_hardening.py: tampered copies of the
tiny export, decompression-bomb PNG headers, vocabulary files with bad metadata, modified tiny checkpoints."""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

from tests._export_helpers import CLASS_NAMES, TINY_CKPT


def png_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def copy_export(src: Path, dst: Path) -> Path:
    """A private copy of an export folder (tests tamper with copies, never with the shared export)."""
    shutil.copytree(src, dst)
    return dst


def edit_manifest(folder: Path, change: Callable[[dict], object]) -> Path:
    """Apply ``change`` to the parsed manifest.json of ``folder`` and write it back."""
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return folder


def rehash(folder: Path, role: str) -> Path:
    """Record the current SHA-256 of ``role``'s file (as a tamperer who also edits the manifest would)."""
    from radseg_edge.export.cache import sha256_file

    def change(data: dict) -> None:
        data["artefacts"][role]["sha256"] = sha256_file(folder / data["artefacts"][role]["file"])

    return edit_manifest(folder, change)


def vocab_file(path: Path, names_meta: str | None, embeddings: torch.Tensor | None = None,
               fmt: str = "radseg-edge-vocabulary/1") -> Path:
    """A safetensors vocabulary with hand-written metadata (``names_meta`` None: no 'names' entry)."""
    from safetensors.torch import save_file

    emb = embeddings if embeddings is not None else torch.randn(len(CLASS_NAMES), 64)
    meta = {"format": fmt, "text_model": "unspecified", "dim": str(emb.shape[-1])}
    if names_meta is not None:
        meta["names"] = names_meta
    save_file({"embeddings": emb.contiguous()}, str(path), metadata=meta)
    return path


def tiny_checkpoint_variant(path: Path, change_args: Callable[[dict], object] | None = None,
                            drop_prefixes: tuple[str, ...] = ()) -> Path:
    """A copy of the tiny checkpoint with edited ``args`` and/or tensors removed."""
    from radseg_edge.models.checkpoint import read_pth

    args, state = read_pth(TINY_CKPT)
    args = dict(args)
    if change_args is not None:
        change_args(args)
    state = {k: v for k, v in state.items() if not k.startswith(drop_prefixes)} if drop_prefixes else state
    torch.save({"args": argparse.Namespace(**args), "state_dict": state}, path)
    return path
