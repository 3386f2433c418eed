"""``fastmask audit --gt DATASET --pred DATASET --out REPORT``: regions where a model disagrees
with the labels, typed and ranked by how likely each is a label error.

Opens and pairs the datasets as ``fastmask evaluate`` does; exit codes as evaluate's
(1 when a ground-truth item was not audited, ``--allow-missing`` accepting missing
predictions). Heavy modules are imported inside :func:`run`.
"""
from __future__ import annotations

import argparse
import sys

from ._text import plural


def register(subparsers) -> None:
    from .engine.options import add_engine_arguments

    p = subparsers.add_parser(
        "audit", help="find likely label errors where a model's predictions disagree with the labels",
        description="Group the pixels where predictions disagree with the ground truth into regions per "
                    "(ground-truth class, predicted class) pair, type them (class_swap, missing_label, "
                    "spurious_label, boundary_offset; edge_noise counted per item) and score each on the "
                    "dataset's own statistics: how likely it is a label error rather than a model error.")
    p.add_argument("--gt", metavar="DATASET", required=True, help="ground-truth dataset (any layout)")
    p.add_argument("--pred", metavar="DATASET", required=True, help="prediction dataset (any layout)")
    p.add_argument("--confidence", metavar="DIR", default=None,
                   help="one 8- or 16-bit grey PNG per item (paired like predictions): the model's confidence "
                        "in its predicted class, 0..255 (0..65535) -> 0..1")
    p.add_argument("--labelmap", metavar="FILE", default=None, help="label map of both (classes = its ids)")
    p.add_argument("--gt-masks", metavar="DIR", default=None,
                   help="COCO panoptic ground truth: its PNG folder (default: named like the JSON, beside it)")
    p.add_argument("--pred-masks", metavar="DIR", default=None,
                   help="COCO panoptic prediction: its PNG folder (default: named like the JSON, beside it)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="number of classes (default: from the label map)")
    p.add_argument("--ignore-value", type=int, default=255, metavar="V",
                   help="ground-truth value never compared (default 255; -1 for none)")
    p.add_argument("--background", type=int, default=None, metavar="V",
                   help="background class (default: the label map's, else 0; -1 for none)")
    p.add_argument("--connectivity", type=int, choices=(4, 8), default=8,
                   help="pixel connectivity of regions and objects (default 8)")
    p.add_argument("--edge-width", type=int, default=2, metavar="PX",
                   help="regions no thicker than this are edge noise, never scored (default 2)")
    p.add_argument("--out-of-range", choices=("fn", "ignore", "error"), default="fn",
                   help="a predicted value >= N: left out of the regions (fn, the default, and ignore) or the "
                        "item is an error row (error); a ground-truth value >= N is an error row but under ignore")
    p.add_argument("--allow-missing", action="store_true",
                   help="exit 0 even when ground-truth items have no prediction (still listed, not audited)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="worst regions printed (default 10)")
    add_engine_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .cli import (_dataset_options, _deferred_listing, _open_pair, notice_cold_kernels, open_dataset_arg,
                      report_error)
    from .engine import EngineError, run_job
    from .engine.options import EXIT_USAGE, engine_options_from_args
    from .formats import FormatError
    from .jobs.audit import AuditJob, write_audit_tables

    try:
        opts = engine_options_from_args(args)
        gt, pred = _open_pair(args, opts)  # --resume: not listed (the saved manifest holds the pairs)
        with _deferred_listing(opts.resume):
            conf = open_dataset_arg(args.confidence, layout="masks") if args.confidence else None
        if args.labelmap is None:
            from .formats._platforms import share_names_labelmap

            share_names_labelmap(gt, pred)
        n = args.num_classes
        lm = gt.labelmap
        if n is None:
            ids = [i for i in (lm.names if lm else {}) if i != args.ignore_value]
            if not ids:
                print("fastmask audit: give --num-classes or a --labelmap", file=sys.stderr)
                return EXIT_USAGE
            n = max(ids) + 1
        if args.edge_width < 0 or args.top < 0:
            print("fastmask audit: --edge-width and --top must not be negative", file=sys.stderr)
            return EXIT_USAGE
        background = args.background if args.background is not None else (lm.background if lm is not None else 0)
        job = AuditJob(gt, pred, n, confidence=conf, ignore_value=None if args.ignore_value < 0 else args.ignore_value,
                       background=None if background is None or background < 0 else background,
                       connectivity=args.connectivity, out_of_range=args.out_of_range, edge_width=args.edge_width)
        notice_cold_kernels(args.command)
        arguments = {**job.arguments(), **_dataset_options(args, gt_masks=args.gt_masks, pred_masks=args.pred_masks)}
        result = run_job(job, job, labelmap=lm.to_json() if lm else None, arguments=arguments,
                         finish=lambda out: write_audit_tables(job, out), **opts.run_kwargs())
    except FormatError as e:
        print(f"fastmask audit: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as e:
        report_error(args, e)
        return e.exit_code
    except ValueError as e:
        print(f"fastmask audit: {e}", file=sys.stderr)
        return EXIT_USAGE
    return _print(args, result, gt, pred)


def _print(args: argparse.Namespace, result, gt, pred) -> int:
    from .jobs import evaluate_summary as es
    from .jobs.listing import print_listing

    s = result.summary
    done = result.finished
    audited = es.scored_phrase(s).replace("scored", "audited", 1)
    by_type = ", ".join(f"{t} {n:,}" for t, n in s["regions_by_type"].items())
    print(f"audit: {audited} in {result.wall_seconds:.2f} s: {plural(s['regions'], 'region', '')} "
          f"({by_type}); edge noise {s['edge_noise_pixels']:,} px in {plural(s['edge_noise_regions'], 'band', '')} "
          f"(not scored)")
    es.print_not_scored(s)
    es.print_pairing_notes(s, gt, pred)
    lq = done["label_quality"]
    if lq["mean"] is not None:
        print(f"label quality: mean {lq['mean']:.3f} over {plural(lq['items'], 'item', '')}; "
              f"{plural(lq['items_with_score_0_5'], 'item', '')} with a region scored >= 0.5")
    worst = done["worst"][:args.top]
    if worst:
        print(f"worst regions (of {s['regions']:,}; all in {result.out_dir}/regions):")
        print(f"  {'score':>5}  {'item':<24} {'type':<15} {'gt -> pred':<24} {'area':>8}  bbox (x, y, w, h)")
        for r in worst:
            pair = f"{_cls(r['gt_class'], r['gt_name'])} -> {_cls(r['pred_class'], r['pred_name'])}"
            print(f"  {r['score']:5.3f}  {str(r['item_id'])[:24]:<24} {r['type']:<15} {pair[:24]:<24} "
                  f"{r['area']:>8,}  {r['bbox_x']}, {r['bbox_y']}, {r['bbox_w']}, {r['bbox_h']}")
    listed = print_listing(s)
    print(f"report: {result.out_dir}")
    why = es.failures(s, args.allow_missing)
    if why:
        hint = "; --allow-missing accepts missing predictions" if any("missing_prediction" in w for w in why) else ""
        print(f"fastmask audit: exit 1: {'; '.join(why).replace('scored', 'audited')}{hint}", file=sys.stderr)
    return es.exit_code(s, args.allow_missing) or listed


def _cls(c: int, name: str | None) -> str:
    return f"{c} {name}" if name else str(c)
