"""``fastmask report RUN_DIR``: one self-contained HTML page for a run folder.

Kept light: :mod:`fastmask.report` (pyarrow, Pillow, matplotlib) is imported in :func:`run`.
"""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    """Add the ``report`` command to the CLI's subparsers."""
    p = subparsers.add_parser(
        "report", help="render a run folder (validate, coverage, evaluate) as one self-contained HTML page",
        description="Render a run folder as one HTML page that opens without a server: summary, charts, "
                    "tables and thumbnails of the worst items with the mask drawn over the image.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a report folder (or its URL: s3://...) written by fastmask validate/coverage/evaluate")
    p.add_argument("--out", metavar="FILE.html", default=None, help="where to write the page, a path or a URL (default RUN_DIR/report.html)")
    p.add_argument("--max-thumbnails", type=int, default=12, metavar="N", help="thumbnails of the worst items (default 12)")
    p.add_argument("--max-rows", type=int, default=200, metavar="N",
                   help="rows shown per table; the page says how many more there are (default 200)")
    p.add_argument("--images", metavar="DIR", default=None,
                   help="images folder for the thumbnails when the dataset was run with --images")
    p.add_argument("--charts", choices=("auto", "png", "html", "none"), default="auto",
                   help="auto (default): matplotlib PNG charts when installed, else HTML bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the page; exit code 0, or 2 when RUN_DIR is not a report folder or an option is bad."""
    from .plots import PlotsUnavailable
    from .report import write_report

    if args.max_thumbnails < 0 or args.max_rows < 0:
        print("fastmask report: --max-thumbnails and --max-rows must not be negative", file=sys.stderr)
        return 2
    try:
        path = write_report(args.run_dir, args.out, max_thumbnails=args.max_thumbnails, max_rows=args.max_rows,
                            images=args.images, charts=args.charts)
    except FileNotFoundError as e:
        print(f"fastmask report: {e}", file=sys.stderr)
        return 2
    except PlotsUnavailable as e:
        print(f"fastmask report: --charts png: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # a malformed run.json or table, an unwritable --out
        print(f"fastmask report: {args.run_dir}: {e}", file=sys.stderr)
        return 2
    print(f"report page: {path}")
    return 0

