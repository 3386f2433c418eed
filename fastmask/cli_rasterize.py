"""``fastmask rasterize COCO.json --out DIR --kind ...``: COCO annotations to masks, through the engine.

Kept light: nothing heavy (numba, pyarrow, kernels) is imported until the command runs.
"""
from __future__ import annotations

import argparse
import sys

from ._text import plural, run_speed

KINDS = ("semantic", "instance", "binary", "panoptic", "rle")


def _id_list(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated category ids, got {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("expected at least one category id")
    return ids


def register(subparsers) -> None:
    from .cli import add_dataset_arguments
    from .engine.options import add_engine_arguments

    p = subparsers.add_parser(
        "rasterize", help="COCO annotations -> semantic / instance / binary / panoptic PNGs or an RLE table",
        description="Rasterize every image's COCO annotations (polygons and RLE) with a stated overlap rule. "
                    "Masks go to OUT/masks/ (OUT/panoptic/ + OUT/panoptic.json for --kind panoptic), "
                    "tables to OUT as Parquet.")
    add_dataset_arguments(p, dataset_help="a COCO instances JSON (polygon and RLE annotations; its "
                                          "categories are the classes)", options=("labelmap",))
    g = p.add_argument_group("rasterize")
    g.add_argument("--kind", choices=KINDS, default="semantic",
                   help="semantic: class-id PNG per image; instance: instance-id map per image (--format) + table; "
                        "binary: 0/255 PNG per annotation; panoptic: COCO panoptic RGB PNG + JSON; "
                        "rle: Parquet table of compressed RLEs (default semantic)")
    g.add_argument("--palette", choices=("voc", "labelmap"), default=None,
                   help="semantic only: write P-mode PNGs with the VOC palette or the label map's colours")
    g.add_argument("--overlap", choices=("order", "area", "class-priority", "draw-to-back"), default="order",
                   help="who owns a pixel covered by several annotations: order = later annotation wins (default), "
                        "area = smaller on top, class-priority = by --class-priority, draw-to-back = earlier wins")
    g.add_argument("--class-priority", type=_id_list, default=None, metavar="IDS",
                   help="comma-separated category ids, first on top; unlisted categories below all listed")
    g.add_argument("--crowd", choices=("ignore", "class"), default="ignore",
                   help="crowd regions: paint the ignore value (default) or their class / instance id "
                        "(panoptic always keeps crowd as iscrowd segments)")
    g.add_argument("--ignore-value", type=int, default=255, metavar="V", help="value of crowd regions (default 255)")
    g.add_argument("--background", type=int, default=0, metavar="V", help="value of unpainted pixels (default 0)")
    g.add_argument("--fill", choices=("coco", "inclusive", "center", "pil"), default="coco",
                   help="polygon fill: coco = pycocotools' annToMask pixels (default; CVAT, Datumaro), "
                        "inclusive = boundary pixels included (cv2.fillPoly, OpenCV-based tools), "
                        "center = pixel centres inside, pil = Pillow's ImageDraw.polygon (labelme)")
    g.add_argument("--format", dest="mask_format", choices=("png16", "tiff32"), default="png16",
                   help="instance only: format of every instance map: png16 (16-bit PNG, default; an image with "
                        "more than 65,535 instances is an error row format_overflow) or tiff32 (32-bit TIFF)")
    add_engine_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .cli import run_dataset_job
    from .engine.options import EXIT_USAGE

    # (a resumed run's leftover temporary masks are removed by the engine, under the folder's lock)
    errors: list[str] = []

    def make_job(dataset):
        from .jobs.rasterize import RasterizeJob

        try:
            return RasterizeJob(dataset, args.out, kind=args.kind, palette=args.palette, overlap=args.overlap,
                                class_priority=args.class_priority, crowd=args.crowd,
                                ignore_value=args.ignore_value, fill=args.fill, background=args.background,
                                mask_format=args.mask_format)
        except ValueError as e:
            errors.append(str(e))
            raise _Usage() from None

    def finish(job, out):
        if args.kind == "panoptic":
            from .jobs.rasterize import write_panoptic_json

            return write_panoptic_json(job, out)
        if args.kind in ("semantic", "binary"):
            from .jobs.rasterize import write_mask_labelmap

            write_mask_labelmap(job, out)  # part of the report: written before it is complete
        return None

    try:
        ran = run_dataset_job(args, make_job, finish=finish)
    except _Usage:
        print(f"fastmask rasterize: {errors[0]}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(ran, int):
        return ran
    _, job, result = ran
    s = result.summary
    extra = ""
    if args.kind == "panoptic":
        extra = f"; panoptic JSON: {result.finished}"
    print(f"rasterized {s.get('images', 0)} of {plural(result.n_items, 'image', '')} ({args.kind}) in "
          f"{result.wall_seconds:.2f} s, {run_speed(result, 'image')}; "
          f"{plural(s.get('annotations', 0), 'annotation', '')}, "
          f"{s.get('skipped_annotations', 0)} skipped (findings), {plural(s.get('errors', 0), 'image', '')} "
          f"failed{extra}")
    for code, n in sorted(result.counts.get("error_codes", {}).items()):
        print(f"  {code}: {n}")
    from .jobs.listing import print_listing

    listed = print_listing(result.summary)
    print(f"report: {result.out_dir}")
    return listed


class _Usage(Exception):
    pass
