"""``radseg-edge bag``: segment the images of a recorded rosbag2 (MCAP or sqlite3) without ROS.

    radseg-edge bag run1 -o run1_seg --topic /camera/image_raw --checkpoint c-radio_v3-b --vocab vocab.safetensors
"""

from __future__ import annotations

import argparse
import sys

from radseg_edge.backends import add_backend_args
from radseg_edge.cli._common import (
    add_model_args,
    add_radseg_args,
    add_vocab_args,
    backend_and_vocab_from_args,
    resolve_device,
)
from radseg_edge.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bag",
        help="segment the image topic of a rosbag2 (MCAP or sqlite3) into a new bag, without ROS",
        description=(
            "Reads a rosbag2 (folder, .mcap or .db3; ROS 2 humble/jazzy types), segments every image message "
            "(sensor_msgs/Image or CompressedImage) of --topic and writes a new rosbag2 with the kept input topics "
            "and PREFIX/labels (mono8, 255 = no class; mono16 and 65535 above 255 classes), PREFIX/overlay (rgb8), "
            "PREFIX/label_info (vision_msgs/LabelInfo) and optionally PREFIX/confidence (32FC1), each with the input "
            "message's header and timestamp. A truncated or corrupt bag stops the run with an error; what was "
            "segmented until then stays in the output. Needs the ros extra (pip install 'radseg-edge[ros]')."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="input rosbag2: a bag folder, an .mcap or a .db3 file")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="output bag folder (must not exist)")
    p.add_argument("--topic", required=True, help="image topic to segment, e.g. /camera/image_raw")
    p.add_argument("--every", type=int, default=1, metavar="N", help="segment every N-th image only (default 1: all)")
    p.add_argument("--prefix", default="/radseg", help="namespace of the output topics (default /radseg)")
    p.add_argument("--keep", action="append", default=None, metavar="TOPIC",
                   help="input topic copied to the output unchanged, repeatable; 'all' = every topic, 'none' = "
                        "none (default: the --topic)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default=None, help="output storage (default: the input's)")
    p.add_argument("--distro", choices=("humble", "jazzy"), default=None,
                   help="message definitions written to the output (default: the input bag's, else humble)")
    p.add_argument("--no-overlay", action="store_true", help="do not write PREFIX/overlay")
    p.add_argument("--confidence", action="store_true", help="also write PREFIX/confidence (32FC1 max probability)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay mask opacity in [0, 1] (default 0.5)")
    p.add_argument("--profile", default=None, metavar="OUT.json",
                   help="write the per-stage profile as JSON and CSV beside it (as `stream --profile`)")
    add_model_args(p)
    add_radseg_args(p)
    add_vocab_args(p)
    add_backend_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from radseg_edge.ros2.bag import check_topic, process_bag, run_profile
    from radseg_edge.ros2.processor import FrameProcessor
    from radseg_edge.ros2.types import rosbags_messages
    from radseg_edge.runtime.report import format_summary, write_profile
    from radseg_edge.runtime.segmenter import BackendSegmenter
    from radseg_edge.utils.profiling import StageProfiler

    if not 0.0 <= args.alpha <= 1.0:
        raise InputError(f"--alpha {args.alpha}: expected a value in [0, 1]")
    if args.every < 1:
        raise InputError(f"--every {args.every}: expected an integer >= 1")
    total, bag_distro = check_topic(args.input, args.topic)  # a bad bag or topic fails before the model loads
    profiler = StageProfiler(device=resolve_device(args.device))
    backend, vocab = backend_and_vocab_from_args(args, profiler=profiler)
    # an export runs its fixed-size graph for its own vocabulary (backends.base), so the labels are segment's
    segmenter = BackendSegmenter(backend, vocab, profiler if backend.name == "torch" else None)
    keep = None if args.keep is None else [] if args.keep == ["none"] else args.keep
    processor = FrameProcessor(segmenter, rosbags_messages(args.distro or bag_distro),
                               publish_overlay=not args.no_overlay, publish_confidence=args.confidence, alpha=args.alpha)
    with tqdm(total=total or None, desc="segmenting", unit="img", file=sys.stderr) as bar:
        result = process_bag(args.input, args.output, args.topic, processor, every=args.every, prefix=args.prefix,
                             keep=keep, storage=args.storage, distro=args.distro, threshold=args.prediction_thresh,
                             progress=lambda n: bar.update(n - bar.n))
    profile = run_profile(result)
    profile["run"] = {"input": args.input, "topic": args.topic, "backend": backend.describe(),
                      "classes": list(vocab.names)}
    print(format_summary(profile), file=sys.stderr)
    print(f"wrote {result.output} ({result.storage}, {result.distro}): {result.processed} frame(s) segmented, "
          f"{result.copied} message(s) copied; topics: {', '.join(result.topics)}", file=sys.stderr)
    if args.profile:
        json_path, csv_path = write_profile(profile, args.profile)
        print(f"profile written to {json_path} and {csv_path}", file=sys.stderr)
    if result.error:
        raise InputError(f"{args.input}: the bag could not be read to its end ({result.error}); the {result.processed} "
                         f"frame(s) segmented before it are in {result.output}")
    return 0
