"""`radseg-edge segment`: label PNGs, colour overlays and (optionally) probabilities for image files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from radseg_edge.cli._common import (
    add_model_args,
    add_radseg_args,
    add_vocab_args,
    expand_images,
    load_model_from_args,
    radseg_from_args,
    vocab_from_args,
)
from radseg_edge.errors import InputError, RadsegError


def register(sub) -> None:
    p = sub.add_parser(
        "segment", help="segment image files into a vocabulary's classes",
        description="Writes, per image, <name>_labels.png (palette PNG, class index per pixel, 255 = ignore), "
                    "<name>_overlay.png (colour masks with a legend) and with --save-probs <name>_probs.npz "
                    "(K x H x W float16). Unreadable images are skipped, reported, and make the exit code 1.",
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
    from tqdm import tqdm

    from radseg_edge.runtime.image_io import load_image, save_palette_png, save_rgb
    from radseg_edge.runtime.overlay import labels_to_png_array, overlay, palette

    console = Console(stderr=True)
    paths = expand_images(args.images)
    if not paths:
        raise InputError(f"no images found in {args.images}")
    from radseg_edge.backends import backend_from_args

    if args.backend == "triton":  # the server holds the model and its classes: nothing to load here
        from radseg_edge.backends.triton import served_vocabulary

        backend = backend_from_args(args)
        vocab = served_vocabulary(backend, args.vocab, args.classes)
    else:
        radio = load_model_from_args(args)
        vocab = vocab_from_args(args, radio)
        seg = radseg_from_args(args, radio, vocabulary=vocab)
        backend = backend_from_args(args, radseg=seg, vocabulary=vocab)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[Path, str]] = []
    for path in tqdm(paths, desc="segmenting", unit="img", disable=len(paths) < 2):
        try:
            image, note = load_image(path)
            if note:
                console.print(f"{path}: {note}")
            result = backend(image, channel_order="rgb")
            labels = result.labels[0].cpu().numpy()
            stem = out / path.stem
            png = labels_to_png_array(labels)
            label_path = stem.with_name(stem.name + "_labels.png")
            if png.dtype == np.uint8:
                _atomic(label_path, save_palette_png, png, palette(len(vocab)))
            else:  # more than 255 classes: 16-bit grayscale PNG
                _atomic(label_path, lambda t, a: cv2.imwrite(str(t), a), png)
            if not args.no_overlay:
                _atomic(stem.with_name(stem.name + "_overlay.png"), save_rgb, overlay(image, labels, vocab.names))
            if args.save_probs:
                probs = result.probs[0].cpu().numpy().astype(np.float16)
                _atomic(stem.with_name(stem.name + "_probs.npz"), np.savez_compressed, probs=probs,
                        names=np.array(vocab.names))
        except RadsegError as exc:
            failures.append((path, str(exc)))
    done = len(paths) - len(failures)
    console.print(f"segmented {done}/{len(paths)} image(s) into {out} ({len(vocab)} classes, {backend.describe()})")
    for path, why in failures:
        console.print(f"[red]failed[/red] {path}: {why}")
    return 1 if failures else 0
