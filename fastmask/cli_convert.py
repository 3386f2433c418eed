"""``fastmask convert SRC --to FORMAT --out DIR``: convert a dataset between layouts (engine job).

The converted dataset is written into ``DIR/dataset/`` (``DIR/dataset.zip`` alone with ``--zip``
for ``voc`` and ``cleanzip``; the folder too with ``--keep-folder``); ``DIR`` itself is the run's report folder (``items``
table: one row per source item, ``status = error`` for items that could not be
converted). Heavy modules are imported inside :func:`run`.
"""
from __future__ import annotations

import argparse
import sys

from ._text import plural

FORMATS = ("masks", "voc", "coco", "coco_panoptic", "cleanzip", "nucleus", "labelbox")


def register(subparsers) -> None:
    from .cli import add_dataset_arguments
    from .engine.options import add_engine_arguments

    p = subparsers.add_parser(
        "convert", help="convert a dataset to masks, voc, coco, coco_panoptic, cleanzip, nucleus or labelbox",
        description="Convert any layout fastmask reads into another. The converted dataset goes to "
                    "OUT/dataset/ (OUT/dataset.zip with --zip); OUT is the run's report folder.")
    add_dataset_arguments(p)
    g = p.add_argument_group("conversion")
    g.add_argument("--to", required=True, choices=FORMATS, help="target format")
    g.add_argument("--coco-encoding", choices=("polygons", "rle"), default="polygons",
                   help="coco: segmentations as polygons from contours (default; masks with holes become RLE) or RLE")
    g.add_argument("--tolerance", type=float, default=0.0, metavar="PX",
                   help="coco polygons: Douglas-Peucker tolerance in pixels (default 0: exact pixels)")
    g.add_argument("--connectivity", type=int, choices=(4, 8), default=8,
                   help="contour connectivity for polygons (default 8)")
    g.add_argument("--ignore-value", type=int, default=255, metavar="V",
                   help="ignore value of class masks (default 255; -1 for none)")
    g.add_argument("--background", type=int, default=0, metavar="V", help="background value (default 0; -1 for none)")
    g.add_argument("--zip", action="store_true", help="voc / cleanzip: write OUT/dataset.zip instead of a folder")
    g.add_argument("--keep-folder", action="store_true", help="with --zip: keep OUT/dataset/ next to the zip")
    g.add_argument("--format", dest="mask_format", choices=("auto", "png16", "tiff32"), default="auto",
                   help="masks: format of every instances/ id map: png16 (16-bit PNG, ids <= 65535), tiff32 "
                        "(32-bit TIFF) or auto (default: tiff32 for panoptic sources, else png16; an item that "
                        "does not fit is an error row format_overflow)")
    g.add_argument("--fill", choices=("coco", "inclusive", "center", "pil"), default="coco",
                   help="COCO sources: polygon fill, as rasterize --fill (default coco = pycocotools; "
                        "pil = Pillow's ImageDraw.polygon, labelme)")
    g.add_argument("--mask-url-prefix", metavar="URL", default=None,
                   help="nucleus / labelbox: the URL the dataset folder will be uploaded to; mask URLs become "
                        "URL/masks/<name>.png (default: relative paths, which the platforms do not fetch)")
    g.add_argument("--data-row-key", choices=("globalKey", "id"), default="globalKey",
                   help="labelbox: the item id is the data row's global key (default) or its Labelbox id")
    add_engine_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .cli import (_dataset_options, _deferred_listing, _resumed_layout, notice_cold_kernels, open_dataset_arg,
                      report_error)
    from .engine import EngineError, run_job
    from .engine.options import EXIT_USAGE, engine_options_from_args
    from .formats import FormatError
    from .jobs.convert import ConvertJob, assemble

    try:
        opts = engine_options_from_args(args)
        layout = args.layout or (_resumed_layout(opts.out_dir, args.dataset) if opts.resume else None)
        with _deferred_listing(opts.resume):  # --resume: the saved manifest replaces the listing
            dataset = open_dataset_arg(args.dataset, layout=layout, images=args.images, labelmap=args.labelmap,
                                       masks=args.masks, labelbox_label=args.labelbox_label)
        job = ConvertJob(dataset, args.to, args.out, coco_encoding=args.coco_encoding, tolerance=args.tolerance,
                         connectivity=args.connectivity,
                         ignore_value=None if args.ignore_value < 0 else args.ignore_value,
                         background=None if args.background < 0 else args.background, zip_output=args.zip,
                         fill=args.fill, mask_url_prefix=args.mask_url_prefix, data_row_key=args.data_row_key,
                         mask_format=args.mask_format, keep_folder=args.keep_folder)
        notice_cold_kernels(args.command)
        # the dataset options too: a --resume with other images or another label map is refused
        arguments = {**job.arguments(), **_dataset_options(args, images=args.images, masks=args.masks)}
        # the dataset-wide files are part of the run: run.json says "complete" only after them
        # (a failure there is exit code 4, "failed", and --resume writes them)
        result = run_job(job, job, labelmap=dataset.labelmap.to_json() if dataset.labelmap else None,
                         arguments=arguments, finish=lambda out: assemble(job, out), **opts.run_kwargs())
        target = result.finished
    except FormatError as e:
        print(f"fastmask convert: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as e:
        report_error(args, e)
        return e.exit_code
    except ValueError as e:
        print(f"fastmask convert: {e}", file=sys.stderr)
        return EXIT_USAGE
    errors = result.counts.get("error", 0)
    print(f"converted {result.counts.get('ok', 0)} of {plural(result.n_items, 'item', '')} "
          f"({dataset.layout} -> {args.to}) "
          f"in {result.wall_seconds:.2f} s; {errors} could not be converted")
    for code, n in sorted(result.counts.get("error_codes", {}).items()):
        print(f"  {code}: {n}")
    renamed = (result.summary or {}).get("renamed", 0)
    if renamed:
        print(f"{plural(renamed, 'item', '')} renamed (their file names clash with another item's): "
              "see the items table's name and renamed columns")
    if args.to in ("nucleus", "labelbox") and not args.mask_url_prefix:
        print("note: mask URLs are relative paths; give --mask-url-prefix URL (where the dataset folder is "
              "uploaded) for a file the platform accepts")
    from .jobs.listing import print_listing

    listed = print_listing(result.summary)
    print(f"dataset: {target}")
    print(f"report: {result.out_dir}")
    return listed
