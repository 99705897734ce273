"""`radseg-edge serve`: serve an export folder through Triton's own server (PyTriton), for many cameras."""

from __future__ import annotations

import argparse
import os
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve an exported model to many clients through Triton (gRPC + HTTP, dynamic batching)",
        description="Serve a folder written by `radseg-edge export` with Triton Inference Server's own server "
                    "(PyTriton), the same protocol as a Triton container: clients use `--backend triton "
                    "--server HOST:PORT --model NAME`. Bound to 127.0.0.1 unless --host says otherwise (then "
                    "--token is required). See docs/serving.md.",
    )
    p.add_argument("--export-dir", metavar="DIR",
                   help="export folder, e.g. repo/radseg from `export --format triton` (batched) or any export")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "tensorrt", "torch-tensorrt"),
                   help="backend that runs the model here (default onnxruntime)")
    p.add_argument("--providers", default="auto", help="onnxruntime execution providers (default auto)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    p.add_argument("--model", default="radseg", help="model name clients ask for (default radseg)")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch the dynamic batcher forms (default 8)")
    p.add_argument("--queue-delay-us", type=int, default=2000,
                   help="microseconds a frame may wait for others to form a batch (default 2000)")
    p.add_argument("--instances", type=int, default=1, help="parallel model instances (default 1)")
    p.add_argument("--token", default=os.environ.get("RADSEG_SERVE_TOKEN"),
                   help="secret clients must send (required with a non-loopback --host; env RADSEG_SERVE_TOKEN)")
    p.add_argument("--prepare", action="store_true",
                   help="only install the private PyTriton folder (needs a package index) and exit")
    p.add_argument("--verbose", action="store_true", help="Triton's own log")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from radseg_edge.errors import InputError
    from radseg_edge.runtime.triton_serve import (
        FrameServer,
        ServeOptions,
        check_binding,
        prepare_pytriton,
        serve,
    )

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.prepare:
        log(f"PyTriton ready in {prepare_pytriton(log=log)}")
        return 0
    if not args.export_dir:
        raise InputError("serve needs --export-dir DIR (a folder from `radseg-edge export`, e.g. repo/radseg)")
    check_binding(args.host, args.token)  # before loading anything
    from radseg_edge.backends import make_backend

    options = {"providers": args.providers, "threads": args.threads} if args.backend == "onnxruntime" else {}
    backend = make_backend(args.backend, export_dir=args.export_dir, **options)
    serve(FrameServer(backend), ServeOptions(
        model=args.model, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
        metrics_port=args.metrics_port, max_batch=args.max_batch, queue_delay_us=args.queue_delay_us,
        instances=args.instances, token=args.token, verbose=args.verbose), log=log)
    return 0
