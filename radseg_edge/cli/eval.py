"""``radseg-edge eval``: mIoU on the paper's benchmarks, for a model, saved predictions, or two backends."""

from __future__ import annotations

import argparse
from pathlib import Path

from radseg_edge.errors import RadsegError


def register(subparsers) -> None:
    from radseg_edge.cli._common import add_model_args
    from radseg_edge.eval.datasets import DATASET_NAMES
    from radseg_edge.eval.protocol import SETTINGS

    p = subparsers.add_parser(
        "eval",
        help="accuracy (mIoU) on VOC20, Context59, COCO-Stuff-171, Cityscapes or ADE20K",
        description=(
            "Evaluate RADSeg with the paper's protocol (keep-ratio resize, crop/stride per dataset and setting, "
            "prediction at the original size), or score saved label PNGs (--predictions), or run two "
            "backends/precisions on the same images (--compare). See docs/evaluation.md."
        ),
    )
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    p.add_argument("--root", required=True, help="dataset folder (layout in docs/evaluation.md)")
    p.add_argument("--setting", default="mid", choices=SETTINGS, help="resolution setting (default: mid, the main table)")
    p.add_argument("--backend", default="torch", help="backend to evaluate (default: torch)")
    p.add_argument("--precision", default="fp32", help="fp32, bf16, fp16, int8 (backend dependent; default fp32)")
    p.add_argument("--kernels", default="auto", help="SCRA/SCGA implementation: auto, reference, blocked, triton, cuda")
    add_model_args(p)
    g = p.add_argument_group("classes")
    g.add_argument("--vocab", metavar="FILE",
                   help="vocabulary file holding the dataset's classes (else they are embedded with the text extra)")
    g.add_argument("--text-model", help="Hugging Face text tower to embed the class names (default: the checkpoint's)")
    sources = p.add_mutually_exclusive_group()
    sources.add_argument("--predictions", metavar="DIR", help="score saved label PNGs DIR/<image name>.png instead of a model")
    sources.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="two sources on the same images: backend[:precision] (e.g. torch:fp32 onnxruntime:fp16) or a predictions folder",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--json", required=True, metavar="OUT", help="write the report (JSON) here")
    p.add_argument("--state", help="resumable state file (default: OUT.state.json)")
    p.add_argument("--restart", action="store_true", help="discard a saved state and start over")
    p.add_argument("--save-every", type=int, default=20, metavar="N", help="save the state every N images (default 20)")
    p.add_argument("--save-predictions", metavar="DIR", help="also write each prediction as a label PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


def _source(spec: str, options, dataset, setting):
    """A --compare item: an existing folder of label PNGs, or backend[:precision]."""
    from radseg_edge.eval.predictors import make_predictor
    from radseg_edge.eval.runner import folder_source, model_source

    if Path(spec).expanduser().is_dir():
        return folder_source(spec)
    opts = options.with_spec(spec)
    return model_source(opts.label, make_predictor(opts, dataset.class_names, setting), opts.describe())


def run_eval(args: argparse.Namespace) -> int:
    from radseg_edge.cli._common import resolve_device
    from radseg_edge.eval.datasets import open_dataset
    from radseg_edge.eval.predictors import PredictorOptions
    from radseg_edge.eval.protocol import get_setting
    from radseg_edge.eval.runner import evaluate, folder_source, format_summary, write_report

    if args.limit is not None and args.limit < 1:
        raise RadsegError(f"--limit must be a positive number of images, got {args.limit}")
    dataset = open_dataset(args.dataset, args.root)
    setting = get_setting(args.dataset, args.setting)
    options = PredictorOptions(
        backend=args.backend,
        precision=args.precision,
        checkpoint=args.checkpoint,
        model=args.model,
        random_weights=args.random_weights,
        align_corners={"auto": None, "true": True, "false": False}[args.align_corners],
        vocab=args.vocab,
        text_model=args.text_model,
        device=str(resolve_device(args.device)),
        kernels=args.kernels,
    )
    if args.predictions:
        sources = [folder_source(args.predictions)]
    elif args.compare:
        if args.compare[0] == args.compare[1]:
            raise RadsegError("--compare needs two different sources")
        sources = [_source(spec, options, dataset, setting) for spec in args.compare]
    else:
        sources = [_source(options.label, options, dataset, setting)]
    run_info = {"setting": args.setting, "protocol": setting.as_dict(), "limit": args.limit}
    report = evaluate(
        dataset,
        sources,
        limit=args.limit,
        state_path=args.state or f"{args.json}.state.json",
        restart=args.restart,
        save_every=args.save_every,
        progress=not args.no_progress,
        save_predictions=args.save_predictions,
        run_info=run_info,
    )
    write_report(args.json, report)
    print(format_summary(report))
    print(f"report: {args.json}")
    return 0
