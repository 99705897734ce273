"""Options shared by several commands: which model, which RADSeg settings, which vocabulary."""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
from collections import Counter
from pathlib import Path

import torch

from radseg_edge.errors import InputError, VocabularyError


def add_model_args(p: argparse.ArgumentParser, default_model: str = "c-radio_v3-b") -> None:
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", metavar="PATH", help="RADIO checkpoint: official .pth.tar or a Hugging Face folder")
    g.add_argument("--model", default=default_model,
                   help=f"model name (downloaded through huggingface_hub when no --checkpoint; default {default_model})")
    g.add_argument("--random-weights", action="store_true",
                   help="use random weights of --model's exact architecture (no download; for timing and tests)")
    g.add_argument("--align-corners", choices=("auto", "true", "false"), default="auto",
                   help="CPE interpolation flag (auto: False for .pth.tar files, the repo's choice for HF folders)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")


def resolve_device(name: str) -> torch.device:
    """--device: "auto", "cpu", "cuda" or "cuda:N" -> torch.device; InputError (one line) for anything else."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this torch has no CUDA device (torch {torch.__version__}); use --device cpu")
    return dev


def load_model_from_args(args: argparse.Namespace, adaptors=None):
    """RadioModel from --checkpoint / --model / --random-weights."""
    from radseg_edge.models import load_radio, radio_from_config

    device = resolve_device(args.device)
    if args.random_weights:
        return radio_from_config(args.model, seed=0, adaptors=adaptors, device=device)
    ac = {"auto": None, "true": True, "false": False}[args.align_corners]
    return load_radio(args.checkpoint or args.model, adaptors=adaptors, align_corners=ac, device=device)


def prepare_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the output folder (and its parents) and make sure files can be written in it, before any work.

    Raises:
        InputError: one line naming ``option`` and the path (a file in the way, no permission, read-only disk).
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out}: exists and is not a folder; give a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".radseg_write_test_"):
            pass
    except OSError as exc:
        raise InputError(f"{option} {out}: cannot write there ({exc.strerror or type(exc).__name__}); "
                         "give a writable folder") from None
    return out


def output_stems(paths: list[Path]) -> list[Path]:
    """Output name stems (relative paths, no suffix) that never collide, one per input image.

    The inputs' folder structure below their common folder is kept (``a/x.png``, ``b/x.png`` -> ``a/x``,
    ``b/x``); inputs differing only by their extension keep it (``x.png``, ``x.jpg`` -> ``x.png``, ``x.jpg``);
    anything still equal gets ``_2``, ``_3``, ... appended.
    """
    if not paths:
        return []
    absolute = [Path(os.path.abspath(p)) for p in paths]
    root = Path(os.path.commonpath([str(a.parent) for a in absolute]))
    rel = [a.relative_to(root) for a in absolute]
    bare = [r.with_suffix("") for r in rel]
    counts = Counter(bare)
    stems = [r if counts[b] > 1 else b for r, b in zip(rel, bare, strict=True)]
    seen: set[Path] = set()
    out = []
    for stem in stems:
        unique, n = stem, 1
        while unique in seen:
            n += 1
            unique = stem.with_name(f"{stem.name}_{n}")
        seen.add(unique)
        out.append(unique)
    return out


def add_radseg_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("RADSeg settings (paper defaults)")
    g.add_argument("--crop", type=int, default=336, help="sliding-window size in pixels; 0 = one pass on the whole image (default 336)")
    g.add_argument("--stride", type=int, default=224, help="sliding-window stride in pixels (default 224)")
    g.add_argument("--scra-tau", type=float, default=10.0, help="SCRA temperature (default 10)")
    g.add_argument("--scga-tau", type=float, default=10.0, help="SCGA temperature (default 10)")
    g.add_argument("--denoise", type=float, default=0.5, help="prompt-denoising threshold; 0 disables (default 0.5)")
    g.add_argument("--prediction-thresh", type=float, default=0.0,
                   help="pixels whose max probability is below it are labelled ignore (default 0: off)")
    g.add_argument("--kernels", default="auto", help="SCRA/SCGA implementation: auto, reference, blocked, triton, cuda")
    g.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="backbone precision (default fp32)")
    g.add_argument("--window-batch", type=int, default=None, help="windows per backbone call (default: 4 on the CPU, all at once on a GPU; 0 = all at once)")
    g.add_argument("--refine", choices=("none", "sam"), default="none", help="RADSeg+ SAM refinement (default none)")
    g.add_argument("--sam-checkpoint", metavar="PATH", help="SAM ViT-H weights (sam_vit_h_4b8939.pth) for --refine sam")
    g.add_argument("--coarse-thresh", default="0.1",
                   help="RADSeg+ uncertainty threshold, a number or a dataset name (voc20, context59, ...)")
    g.add_argument("--sam-num-heads", type=int, default=8, help="attention heads of the SAM decoder (8 in every released SAM)")
    g.add_argument("--minimal-area", type=int, default=225, help="RADSeg+ smallest region (pixels at half size) to prompt")
    g.add_argument("--sam-iou-thresh", type=float, default=0.9, help="RADSeg+ keeps masks whose predicted IoU exceeds it")
    g.add_argument("--sam-mask-coeff", type=float, default=0.005, help="RADSeg+ scale of the mask prompt")


def radseg_options_from_args(args: argparse.Namespace) -> dict:
    """The RADSeg keyword arguments given by :func:`add_radseg_args` options."""
    refine = None if args.refine == "none" else args.refine
    try:
        coarse = float(args.coarse_thresh)
    except ValueError:
        coarse = args.coarse_thresh
    return dict(
        scra_tau=args.scra_tau, scga_tau=args.scga_tau, crop=args.crop, stride=args.stride,
        denoise=args.denoise, prediction_thresh=args.prediction_thresh, kernels=args.kernels,
        precision=args.precision, window_batch=args.window_batch,
        refine=refine, sam_checkpoint=args.sam_checkpoint, coarse_thresh=coarse, sam_num_heads=args.sam_num_heads,
        minimal_area=args.minimal_area, sam_iou_thresh=args.sam_iou_thresh, sam_mask_coeff=args.sam_mask_coeff,
    )


def radseg_from_args(args: argparse.Namespace, radio, vocabulary=None, profiler=None):
    from radseg_edge.pipeline import RADSeg

    return RADSeg(radio, vocabulary=vocabulary, profiler=profiler, **radseg_options_from_args(args))


def add_vocab_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("classes")
    x = g.add_mutually_exclusive_group(required=required)
    x.add_argument("--vocab", metavar="FILE", help="vocabulary file from `radseg-edge vocab build` (no text tower needed)")
    x.add_argument("--classes", metavar="'a,b,c'", help="comma-separated class names (needs the text extra)")
    x.add_argument("--classes-file", metavar="FILE", help="one class name per line (needs the text extra)")
    g.add_argument("--text-model", help="Hugging Face text tower for --classes (default: the checkpoint's)")


def class_names_from_args(args: argparse.Namespace) -> list[str]:
    """Class names from --classes ('a,b,c') or --classes-file (one per line); errors name the option."""
    from radseg_edge.models.text import parse_class_list, read_class_file

    if getattr(args, "classes", None):
        try:
            return parse_class_list(args.classes)
        except VocabularyError as exc:
            raise VocabularyError(f"--classes: {exc}") from None
    return read_class_file(args.classes_file)


def vocab_from_args(args: argparse.Namespace, radio):
    """Vocabulary from --vocab, or built from --classes / --classes-file with the text tower."""
    from radseg_edge.models.text import Vocabulary

    if getattr(args, "vocab", None):
        vocab = Vocabulary.load(args.vocab)
        try:
            vocab.check_compatible(radio)
        except VocabularyError as exc:
            raise VocabularyError(f"--vocab {args.vocab}: {exc}") from None
        return vocab
    names = class_names_from_args(args)
    model_id = args.text_model or radio.text_model_id
    if not model_id:
        raise VocabularyError("cannot tell which text model matches this checkpoint; pass --text-model")
    vocab = Vocabulary.build(names, model_id, progress=True)
    vocab.check_compatible(radio)
    return vocab


def expand_images(patterns: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> image paths (order kept, no duplicates)."""
    from radseg_edge.runtime.image_io import IMAGE_SUFFIXES

    out: list[Path] = []
    for pat in patterns:
        p = Path(pat)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        elif any(ch in pat for ch in "*?["):
            out.extend(Path(q) for q in sorted(glob.glob(pat)))
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def exported_only(args: argparse.Namespace) -> bool:
    """Whether the run needs no checkpoint: an exported backend (explicit, or auto with --export-dir) and no
    --checkpoint / --random-weights asking for the torch one."""
    if args.checkpoint or args.random_weights:
        return False
    return args.backend in ("onnxruntime", "tensorrt", "torch-tensorrt") or (args.backend == "auto" and bool(args.export_dir))


def export_vocabulary(args: argparse.Namespace):
    """The vocabulary for an exported backend, checked against the export's manifest (no checkpoint loaded)."""
    from radseg_edge.export.manifest import Manifest
    from radseg_edge.models.text import UNSPECIFIED, Vocabulary

    if not args.export_dir or not Path(args.export_dir).is_dir():
        raise InputError(f"--backend {args.backend} runs a folder written by `radseg-edge export`: give --export-dir "
                         f"(got {args.export_dir!r}), or --checkpoint for the torch backend")
    manifest = Manifest.read(args.export_dir)
    if args.vocab:
        vocab = Vocabulary.load(args.vocab)
    else:
        names = class_names_from_args(args)
        model_id = args.text_model or manifest.vocabulary.get("text_model")
        if not model_id or model_id == UNSPECIFIED:
            raise VocabularyError(f"cannot tell which text model the export {args.export_dir} was made for; "
                                  "pass --text-model or --vocab")
        vocab = Vocabulary.build(names, model_id, progress=True)
    try:
        manifest.check_vocabulary(vocab, args.export_dir)
    except VocabularyError as exc:
        raise VocabularyError(f"--vocab {args.vocab}: {exc}" if args.vocab else str(exc)) from None
    return vocab


def backend_and_vocab_from_args(args: argparse.Namespace, profiler=None):
    """(backend, vocabulary) for segment-like commands. The triton backend and an exported backend with no
    --checkpoint load nothing here (the server or the export folder holds the model; nothing is downloaded);
    otherwise the checkpoint is loaded and the torch RADSeg built (``profiler`` is passed to it)."""
    from radseg_edge.backends import backend_from_args

    if getattr(args, "backend", None) == "triton":  # the server holds the model and its classes: nothing to load here
        from radseg_edge.backends.triton import served_vocabulary

        backend = backend_from_args(args)
        return backend, served_vocabulary(backend, args.vocab, args.classes)
    if exported_only(args):  # the export folder holds everything: no checkpoint, no download
        vocab = export_vocabulary(args)
        return backend_from_args(args, radseg=None, vocabulary=vocab), vocab
    radio = load_model_from_args(args)
    vocab = vocab_from_args(args, radio)
    seg = radseg_from_args(args, radio, vocabulary=vocab, profiler=profiler)
    return backend_from_args(args, radseg=seg, vocabulary=vocab), vocab
