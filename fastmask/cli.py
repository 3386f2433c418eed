"""The ``fastmask`` command line: thin parsing, then a call into a job.

Heavy modules (numba, kernels) are imported inside the command handlers so
that ``fastmask --help`` and ``fastmask --version`` never pay for them.
"""
from __future__ import annotations

import argparse
import sys

from ._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastmask",
        description="Fast, trustworthy segmentation masks at dataset scale.",
    )
    parser.add_argument("--version", action="version", version=f"fastmask {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="rasterize -> encode -> decode generated COCO-like data and report")
    demo.add_argument("--images", type=int, default=200, help="number of generated images (default 200)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(n_images=args.images, seed=args.seed)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
