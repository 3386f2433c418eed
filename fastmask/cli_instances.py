"""``fastmask instances MASKS --out DIR``: class masks -> instance masks (connected components).

Instance maps go to ``DIR/masks/``, all in one format (``--format``: 16-bit PNG or
32-bit TIFF, chosen before the first write); ``DIR`` is the run's report folder with the ``instances`` table (id -> class).
Heavy modules are imported inside :func:`run`.
"""
from __future__ import annotations

import argparse
import sys

from ._text import plural


def register(subparsers) -> None:
    from .cli import add_dataset_arguments
    from .engine.options import add_engine_arguments

    p = subparsers.add_parser(
        "instances", help="split class masks into instance masks (connected components, id = class*base+k)",
        description="Split class masks into instance masks: id = class * BASE + k, k from 1 in raster order "
                    "of each component's first pixel. Instance maps go to OUT/masks/.")
    add_dataset_arguments(p)
    g = p.add_argument_group("instances")
    g.add_argument("--connectivity", type=int, choices=(4, 8), default=8, help="pixel connectivity (default 8)")
    g.add_argument("--id-scheme", "--base", dest="base", default="1000", metavar="BASE",
                   help="id = class * BASE + k; BASE an integer >= 2, e.g. 1000 (default, Cityscapes), 256, 10")
    g.add_argument("--ignore-value", type=int, default=255, metavar="V",
                   help="ignore value: never an instance, id 0 (default 255; -1 for none)")
    g.add_argument("--background", type=int, default=0, metavar="V", help="background value (default 0; -1 for none)")
    g.add_argument("--format", dest="mask_format", choices=("auto", "png16", "tiff32"), default="auto",
                   help="format of every instance map: png16 (16-bit PNG, ids <= 65535), tiff32 (32-bit TIFF) or "
                        "auto (default: tiff32 when the declared classes * BASE can exceed 65535, else png16; "
                        "an item that does not fit is an error row format_overflow)")
    g.add_argument("--max-item-memory", default="1G", metavar="SIZE",
                   help="working memory one mask may need (e.g. 512M, 4G, none; default 1G); above: error row too_complex")
    add_engine_arguments(p)
    p.set_defaults(handler=run)


def _base(text: str) -> int:
    t = text.strip().lower()
    for prefix in ("class*", "class *"):
        if t.startswith(prefix):
            t = t[len(prefix):].split("+")[0].strip()
    try:
        base = int(t)
    except ValueError:
        raise ValueError(f"--id-scheme: expected an integer base such as 1000 or 'class*1000+k', got {text!r}") from None
    if base < 2:
        raise ValueError(f"--id-scheme: the base must be >= 2, got {base}")
    return base


def run(args: argparse.Namespace) -> int:
    from .cli import run_dataset_job
    from .engine.options import EXIT_USAGE
    from .jobs.instances import InstancesJob

    from .jobs.budget import parse_size

    try:
        base = _base(args.base)
        budget = parse_size(args.max_item_memory)
    except ValueError as e:
        print(f"fastmask instances: {e}", file=sys.stderr)
        return EXIT_USAGE
    ran = run_dataset_job(args, lambda ds: InstancesJob(
        ds, args.out, connectivity=args.connectivity, base=base,
        background=None if args.background < 0 else args.background,
        ignore_value=None if args.ignore_value < 0 else args.ignore_value, max_item_memory=budget,
        mask_format=args.mask_format))
    if isinstance(ran, int):
        return ran
    dataset, _, result = ran
    s = result.summary
    print(f"split {result.counts.get('ok', 0)} of {plural(result.n_items, 'item', '')} ({dataset.layout} layout) "
          f"into {plural(s['instances'], 'instance', '')} ({s['id_scheme']}, {s['connectivity']}-connected) in "
          f"{result.wall_seconds:.2f} s; {result.counts.get('error', 0)} failed")
    for code, n in sorted(result.counts.get("error_codes", {}).items()):
        print(f"  {code}: {n}")
    from .jobs.listing import print_listing

    listed = print_listing(result.summary)
    ext = "*.tif" if s.get("mask_format") == "tiff32" else "*.png"
    print(f"instance maps: {result.out_dir}/masks/ ({s.get('mask_format')}: {ext})")
    print(f"report: {result.out_dir}")
    return listed
