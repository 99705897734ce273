"""``radseg-edge stream``: segment a camera, video, image folder or network stream live.

    radseg-edge stream --source csi://0 --vocab vocab.pt --sink http://127.0.0.1:8080
    radseg-edge stream --source video.mp4 --vocab vocab.pt --sink null --profile out.json --max-frames 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from radseg_edge.backends import add_backend_args
from radseg_edge.cli._common import (
    add_model_args,
    add_radseg_args,
    load_model_from_args,
    radseg_options_from_args,
    resolve_device,
)
from radseg_edge.errors import InputError, VocabularyError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stream",
        help="segment a live camera / video / image folder / network stream, with per-stage profiling",
        description=(
            "Stream frames from --source through RADSeg and write overlays to one or more --sink outputs. "
            "Sources and sinks are URIs as in jetson-inference (csi://0, v4l2:///dev/video0, rtsp://..., "
            "file://video.mp4, a folder or glob of images, display://0, http://127.0.0.1:8080, null). "
            "Ctrl-C or SIGTERM stops cleanly and prints a summary."
        ),
    )
    io = p.add_argument_group("input and output")
    io.add_argument("--source", required=True,
                    help="input URI: csi://N, v4l2:///dev/videoN, camera index N, rtsp://..., http(s)://..., "
                         "file://video.mp4 or a path, an image folder or glob, or a GStreamer pipeline ending in appsink")
    io.add_argument("--sink", action="append", default=None, metavar="URI",
                    help="output URI, repeatable: display://0, file://out.mp4 (or .avi), a folder or pattern "
                         "frames/%%06d.jpg for images, http://127.0.0.1:PORT (MJPEG; use 0.0.0.0 to expose), null. "
                         "Default: display://0 if a display exists, else null")
    io.add_argument("--loop", action="store_true", help="restart video files and image folders at their end")
    io.add_argument("--realtime", type=float, nargs="?", const=0.0, default=None, metavar="FPS",
                    help="play a video file or image folder at FPS frames/s (no value: the file's own rate) like a "
                         "live camera, dropping the frames the model cannot keep up with")
    io.add_argument("--input-width", type=int, default=None, help="camera capture width in pixels (cameras only)")
    io.add_argument("--input-height", type=int, default=None, help="camera capture height in pixels (cameras only)")
    io.add_argument("--input-rate", type=float, default=None, help="camera frame rate in frames/s (cameras only)")
    io.add_argument("--reconnect-timeout", type=float, default=60.0,
                    help="seconds a network source may take to answer at start, or stay lost (reconnecting with back-off), "
                         "before the stream ends; also bounds each open (OpenCV open timeout) "
                         "(default 60)")
    io.add_argument("--drop", choices=("auto", "latest", "none"), default="auto",
                    help="stale-frame policy: latest = keep only the newest frame (drop and count the rest), "
                         "none = segment every frame, auto (default) = latest for live sources, none for files/folders")
    io.add_argument("--max-frames", type=int, default=None, help="stop after this many frames were written")

    voc = p.add_argument_group("classes")
    voc.add_argument("--vocab", action="append", default=None, metavar="FILE",
                     help="vocabulary file from `radseg-edge vocab build`; repeatable: every file is cached for live "
                          "changes, the first gives the initial classes unless --classes/--classes-file is set")
    voc.add_argument("--classes", default=None, metavar="'a,b,c'",
                     help="initial class names, comma-separated; embeddings come from the --vocab files, else from "
                          "the text tower (needs the text extra)")
    voc.add_argument("--classes-file", default=None, metavar="FILE", help="initial class names, one per line")
    voc.add_argument("--text-model", default=None,
                     help="Hugging Face text tower for names not in any --vocab file (default: the checkpoint's; "
                          "'none': only names from --vocab files)")
    voc.add_argument("--vocab-watch", default=None, metavar="FILE",
                     help="watch this file (a class list .txt or a vocabulary file) and switch classes when it changes")
    voc.add_argument("--no-http-vocab", action="store_true",
                     help="do not serve POST/GET /vocab next to an http:// MJPEG sink")
    voc.add_argument("--vocab-dir", action="append", default=None, metavar="DIR",
                     help="folder whose vocabulary files and class lists POST /vocab {\"vocab\": \"name\"} may name; "
                          "repeatable. Default: none (requests may name only the --vocab files)")

    web = p.add_argument_group("HTTP server (http:// sinks)")
    web.add_argument("--http-token", default=None, metavar="TOKEN",
                     help="require this token on every request (Authorization: Bearer TOKEN or ?token=TOKEN). "
                          "Bound to an address other than loopback, a token is always required: one is generated "
                          "and printed when this is not given")
    web.add_argument("--http-max-clients", type=int, default=16, metavar="N",
                     help="connections served at once, viewers included; more are answered 503 (default 16)")

    add_model_args(p)
    add_backend_args(p)
    add_radseg_args(p)

    out = p.add_argument_group("display and measurement")
    out.add_argument("--no-overlay", action="store_true", help="write the input frames without masks (measure I/O)")
    out.add_argument("--no-stats", action="store_true", help="do not draw FPS and per-stage latency on the overlay")
    out.add_argument("--alpha", type=float, default=0.5, help="mask opacity in [0, 1] (default 0.5)")
    out.add_argument("--profile", default=None, metavar="OUT.json",
                     help="write the profile (per-stage p50/p90/p99, FPS, drops, end-to-end, telemetry) as JSON "
                          "and the per-stage table as CSV beside it")
    out.add_argument("--no-telemetry", action="store_true", help="do not sample jtop (Jetson power/temperature)")
    out.add_argument("--telemetry-interval", type=float, default=0.5, help="jtop sampling interval in seconds (default 0.5)")
    out.add_argument("--status", type=float, default=0.0, metavar="SECONDS",
                     help="print a status line every SECONDS (0 = only the final summary)")
    p.set_defaults(func=run)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _initial_vocabulary(args: argparse.Namespace, bank):
    from radseg_edge.models.text import read_class_file
    from radseg_edge.runtime.vocab import load_vocabulary_file, parse_class_names

    vocabs = [load_vocabulary_file(v) for v in (args.vocab or [])]
    for v in vocabs:
        bank.add(v)
    if args.classes:
        return bank.resolve(parse_class_names(args.classes))
    if args.classes_file:
        return bank.resolve(read_class_file(args.classes_file))
    if vocabs:
        return vocabs[0]
    watch = Path(args.vocab_watch) if args.vocab_watch else None
    if watch is not None and watch.is_file():
        if watch.suffix.lower() == ".safetensors":
            v = load_vocabulary_file(watch)
            bank.add(v)
            return v
        return bank.resolve(parse_class_names(watch.read_text()))
    raise VocabularyError("no classes: give --vocab FILE, --classes 'a,b,c' or --classes-file FILE")


def run(args: argparse.Namespace) -> int:
    from radseg_edge.runtime.live_vocab import VocabularyController, VocabularyFileWatcher
    from radseg_edge.runtime.pipeline import StreamConfig, StreamPipeline
    from radseg_edge.runtime.report import format_summary, write_profile
    from radseg_edge.runtime.segmenter import make_segmenter
    from radseg_edge.runtime.sinks import MjpegSink, display_available, open_sink
    from radseg_edge.runtime.sources import Backoff, open_source, parse_source
    from radseg_edge.runtime.telemetry import TelemetrySampler
    from radseg_edge.runtime.vocab import EmbeddingBank, lazy_text_encoder

    source_spec = parse_source(args.source)  # a bad --source fails before the model is loaded
    for folder in args.vocab_dir or []:
        if not Path(folder).expanduser().is_dir():
            raise InputError(f"--vocab-dir {folder!r} is not a folder: name an existing folder of vocabulary files")
    if not args.reconnect_timeout > 0:
        raise InputError(f"--reconnect-timeout must be a positive number of seconds, got {args.reconnect_timeout}")
    if args.http_max_clients < 1:
        raise InputError(f"--http-max-clients must be at least 1, got {args.http_max_clients}")
    if args.http_token is not None and not args.http_token.strip():
        raise InputError("--http-token is empty: give a non-empty token (or leave it out on 127.0.0.1)")
    checkpoint = args.checkpoint or args.model
    backend = args.backend
    if args.random_weights and backend not in ("auto", "torch"):
        raise InputError("--random-weights builds a PyTorch model: use --backend torch")
    device = str(resolve_device(args.device))
    radio = None
    if backend == "torch" or (backend == "auto" and (args.random_weights or not args.export_dir)):
        radio = load_model_from_args(args)  # loaded here so that the text tower id is known
        backend = "torch"
    text_model = args.text_model or (radio.text_model_id if radio is not None else None)
    text_model = None if str(text_model).lower() == "none" else text_model
    bank = EmbeddingBank(encoder=lazy_text_encoder(text_model, device="cpu") if text_model else None)
    vocab = _initial_vocabulary(args, bank)
    providers = args.providers.split(",") if "," in args.providers else args.providers
    options = {"providers": providers} if backend in ("onnxruntime", "auto") else None
    if backend == "triton":
        from radseg_edge.backends import triton_options_from_args

        options = triton_options_from_args(args)
    segmenter = make_segmenter(
        backend, checkpoint, vocab, device=device, radio=radio if radio is not None else (lambda: load_model_from_args(args)),
        export_dir=args.export_dir, backend_options=options,
        **radseg_options_from_args(args),
    )
    for reason in getattr(segmenter, "fallback_reasons", []):
        _log(f"backend auto: {reason}")

    source = open_source(source_spec, loop=args.loop, width=args.input_width, height=args.input_height,
                         framerate=args.input_rate, backoff=Backoff(give_up_after=args.reconnect_timeout), log=_log,
                         realtime=args.realtime)
    sink_uris = args.sink or (["display://0"] if display_available() else ["null"])
    if not args.sink and sink_uris == ["null"]:
        _log("no display: writing to the null sink (pick one with --sink, e.g. http://127.0.0.1:8080)")
    sinks = []
    try:
        for uri in sink_uris:
            sinks.append(open_sink(uri, fps=source.fps, http_token=args.http_token,
                                   http_max_clients=args.http_max_clients))
    except BaseException:
        for s in sinks:
            s.close()
        source.close()
        raise

    controller = VocabularyController(segmenter, bank, log=_log, vocab_dirs=args.vocab_dir or ())
    for f in args.vocab or []:
        controller.allow_file(f)
    for s in sinks:
        if isinstance(s, MjpegSink):
            if not args.no_http_vocab:
                s.add_route("POST", "/vocab", controller.http_post)
                s.add_route("GET", "/vocab", controller.http_get)
            _log(f"MJPEG stream at {s.url}/stream (viewer: {s.viewer_url})")
            if s.token_generated:
                _log(f"the MJPEG server listens on {s.host}, reachable from the network: every request needs the "
                     f"token {s.token} (Authorization: Bearer TOKEN or ?token=TOKEN; set your own with --http-token)")
    watcher = VocabularyFileWatcher(args.vocab_watch, controller).start() if args.vocab_watch else None
    config = StreamConfig(drop=args.drop, max_frames=args.max_frames, overlay=not args.no_overlay,
                          overlay_stats=not args.no_stats, alpha=args.alpha, status_interval=args.status)
    telemetry = TelemetrySampler(interval=args.telemetry_interval, enabled=not args.no_telemetry)
    pipeline = StreamPipeline(source, segmenter, sinks, config, vocab=controller, telemetry=telemetry, log=_log)
    try:
        profile = pipeline.run()
    finally:
        if watcher is not None:
            watcher.stop()
    profile["run"] = {"source": args.source, "sinks": sink_uris,
                      "backend": getattr(segmenter, "name", None) or backend, "export_dir": args.export_dir,
                      "segmenter": type(segmenter).__name__, "checkpoint": checkpoint, "device": device,
                      "kernels": getattr(getattr(segmenter, "model", None), "kernels_name", None)}
    _log(format_summary(profile))
    if args.profile:
        json_path, csv_path = write_profile(profile, args.profile)
        _log(f"profile written to {json_path} and {csv_path}")
    return 0
