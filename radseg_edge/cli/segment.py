"""`radseg-edge segment`: label PNGs, colour overlays and (optionally) probabilities for image files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from radseg_edge.cli._common import (
    add_model_args,
    add_radseg_args,
    add_vocab_args,
    backend_and_vocab_from_args,
    expand_images,
    output_stems,
    prepare_output_folder,
    resolve_device,
)
from radseg_edge.errors import InputError, RadsegError


def register(sub) -> None:
    p = sub.add_parser(
        "segment", help="segment image files into a vocabulary's classes",
        description="Writes, per image, <name>_labels.png (palette PNG, class index per pixel, 255 = ignore), "
                    "<name>_overlay.png (colour masks with a legend) and with --save-probs <name>_probs.npz "
                    "(K x H x W float16). Output names keep the inputs' folders below their common folder "
                    "(a/x.png, b/x.png -> OUT/a/x_labels.png, OUT/b/x_labels.png); inputs differing only by "
                    "extension keep it (x.png_labels.png, x.jpg_labels.png), so no output is ever overwritten. "
                    "Unreadable images and decompression bombs (over RADSEG_EDGE_MAX_IMAGE_PIXELS, default "
                    "178,956,970) are skipped, listed at the end, and make the exit code 1. Exported backends "
                    "(--export-dir) need no --checkpoint.",
    )
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument("--save-probs", action="store_true", help="also write class probabilities")
    p.add_argument("--no-overlay", action="store_true", help="skip the colour overlay")
    add_model_args(p)
    add_radseg_args(p)
    add_vocab_args(p)
    from radseg_edge.backends import add_backend_args

    add_backend_args(p)
    p.set_defaults(func=run)


def _atomic(path: Path, write, *args, **kwargs) -> None:
    """Write through a temporary file so that no half-written output is ever left behind."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp, *args, **kwargs)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    from rich.console import Console
    from rich.markup import escape
    from tqdm import tqdm

    from radseg_edge.runtime.image_io import load_image, save_palette_png, save_rgb
    from radseg_edge.runtime.overlay import labels_to_png_array, overlay, palette

    console = Console(stderr=True)
    paths = expand_images(args.images)
    if not paths:
        raise InputError(f"no images found in {args.images}")
    resolve_device(args.device)  # a bad --device is one line, before anything is loaded
    out = prepare_output_folder(args.out)
    stems = output_stems(paths)
    backend, vocab = backend_and_vocab_from_args(args)
    failures: list[tuple[Path, str]] = []
    for path, rel in tqdm(list(zip(paths, stems, strict=True)), desc="segmenting", unit="img", disable=len(paths) < 2):
        written: list[Path] = []
        try:
            image, note = load_image(path)
            if note:
                console.print(f"{escape(str(path))}: {note}", highlight=False, soft_wrap=True)
            result = backend(image, channel_order="rgb")
            labels = result.labels[0].cpu().numpy()
            stem = out / rel
            stem.parent.mkdir(parents=True, exist_ok=True)
            png = labels_to_png_array(labels)
            label_path = stem.with_name(stem.name + "_labels.png")
            if png.dtype == np.uint8:
                _atomic(label_path, save_palette_png, png, palette(len(vocab)))
            else:  # more than 255 classes: 16-bit grayscale PNG
                _atomic(label_path, lambda t, a: cv2.imwrite(str(t), a), png)
            written.append(label_path)
            if not args.no_overlay:
                written.append(stem.with_name(stem.name + "_overlay.png"))
                _atomic(written[-1], save_rgb, overlay(image, labels, vocab.names))
            if args.save_probs:
                probs = result.probs[0].cpu().numpy().astype(np.float16)
                written.append(stem.with_name(stem.name + "_probs.npz"))
                _atomic(written[-1], np.savez_compressed, probs=probs, names=np.array(vocab.names))
        except (RadsegError, OSError, MemoryError, cv2.error) as exc:
            for done in written:  # no half set of outputs for a failed image
                done.unlink(missing_ok=True)
            why = str(exc) if isinstance(exc, RadsegError) else f"{type(exc).__name__}: {exc}".splitlines()[0]
            failures.append((path, why))
    done = len(paths) - len(failures)
    console.print(f"segmented {done}/{len(paths)} image(s) into {escape(str(out))} ({len(vocab)} classes, "
                  f"{escape(backend.describe())})", highlight=False, soft_wrap=True)
    for path, why in failures:
        console.print(f"[red]failed[/red] {escape(str(path))}: {escape(why)}", highlight=False, soft_wrap=True)
    return 1 if failures else 0
