"""The ``radseg-edge`` command line.

Every module in this package that defines ``register(subparsers)`` adds one subcommand; the
subcommand's handler is stored as ``func`` and returns an exit code. Errors that radseg-edge raises
on purpose (:class:`radseg_edge.errors.RadsegError`) are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from radseg_edge import __version__
from radseg_edge.errors import RadsegError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radseg-edge",
        description="RADSeg zero-shot open-vocabulary segmentation on RADIO, for Jetson Orin, desktop GPUs and CPU.",
    )
    parser.add_argument("--version", action="version", version=f"radseg-edge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RadsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `radseg-edge info ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
