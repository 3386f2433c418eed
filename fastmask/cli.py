"""The ``fastmask`` command line: thin parsing, then a call into a job.

Heavy modules (numba, pyarrow, kernels) are imported inside the command handlers so
that ``fastmask --help`` and ``fastmask --version`` never pay for them.

Exit codes: 0 ok; 1 findings of error severity (jobs that check; for ``evaluate``:
ground-truth items left unscored, or none scored; any command: the dataset's listing met
a problem, e.g. a folder that could not be listed); 2 usage or configuration error (nothing
was run); 3 the run started but stopped (interrupted, a worker lost; ``--resume`` continues
it); 4 the run itself failed (``--resume`` completes it). No traceback reaches the user
without ``--debug``.
"""
from __future__ import annotations

import argparse
import json
import importlib
import importlib.util
import logging
import os
import sys
import traceback

from ._text import plural, run_speed
from ._version import __version__
from .storage import MissingBackendError
from .engine.options import (
    EXIT_RUN_ERROR,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    add_engine_arguments,
    engine_options_from_args,
)


# Commands that live in their own module ``fastmask/cli_<name>.py``. Each module has
# ``register(subparsers)``, which adds its parser(s) and sets ``handler=run`` (a function
# of the parsed args returning the exit code). Kept light: no numba at import time.
COMMAND_MODULES = ("rasterize", "instances", "convert", "report", "audit")


def _command_modules():
    for name in COMMAND_MODULES:
        module = f"{__package__}.cli_{name}"
        if importlib.util.find_spec(module) is not None:
            yield importlib.import_module(module)


DATASET_OPTIONS = ("layout", "images", "labelmap", "masks", "labelbox_label")
DATASET_HELP = ("a mask folder, a VOC/CVAT folder or .zip, a COCO (panoptic) JSON, a clean-zip layout, "
                "a Labelbox NDJSON, a Nucleus JSONL or a URL list (.csv/.jsonl/.parquet: item_id, mask)")


def add_dataset_arguments(p: argparse.ArgumentParser, *, dataset_help: str = DATASET_HELP,
                          options: tuple[str, ...] = DATASET_OPTIONS) -> None:
    """Add ``DATASET`` and the dataset ``options`` a command accepts (the others default to ``None``)."""
    p.add_argument("dataset", metavar="DATASET", help=dataset_help)
    p.set_defaults(**{name: None for name in DATASET_OPTIONS if name not in options})
    if "layout" in options:
        p.add_argument("--layout", choices=LAYOUT_CHOICES, default=None, help="dataset layout (default: detected)")
    if "images" in options:
        p.add_argument("--images", metavar="DIR", default=None,
                       help="images folder (paired by file stem / COCO file_name)")
    if "labelmap" in options:
        p.add_argument("--labelmap", metavar="FILE", default=None,
                       help="label map: fastmask JSON, CVAT labelmap.txt, class names .txt, or a COCO JSON")
    if "masks" in options:
        p.add_argument("--masks", metavar="DIR", default=None,
                       help="COCO panoptic: the folder of panoptic PNGs (default: the folder named like the JSON, "
                            "beside it)")
    if "labelbox_label" in options:
        p.add_argument("--labelbox-label", metavar="N|ID", default=None,
                       help="labelbox: which label of a data row with several (default: the first): a position "
                            "(0 = first) or a label id")


LAYOUT_CHOICES = ("masks", "voc", "coco", "coco_panoptic", "cleanzip", "labelbox", "nucleus", "urls")


def open_dataset_arg(path, *, layout=None, images=None, labelmap=None, masks=None, labelbox_label=None):
    """:func:`fastmask.formats.open_dataset` for a command line: ``masks`` (the panoptic PNG
    folder) is only meaningful for the ``coco_panoptic`` layout, and refused for others."""
    from .engine import UsageError
    from .formats import detect_layout, open_dataset

    options = {}
    if masks is not None:
        layout = layout or detect_layout(path)
        if layout != "coco_panoptic":
            raise UsageError(f"{path}: --masks is the PNG folder of a COCO panoptic dataset, not of a {layout} dataset")
        options["masks"] = masks
    if labelbox_label is not None:
        layout = layout or detect_layout(path)
        if layout != "labelbox":
            raise UsageError(f"{path}: --labelbox-label chooses a label of a Labelbox export, not of a {layout} dataset")
        options["label"] = labelbox_label
    return open_dataset(path, layout=layout, images=images, labelmap=labelmap, **options)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose unrecognized-argument error is the command's own (its usage line)."""

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            commands = self._subparsers._group_actions[0].choices if self._subparsers else {}
            owner = commands.get(getattr(parsed, "command", None), self)
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastmask",
        description="Fast, trustworthy segmentation masks at dataset scale.",
        epilog="exit codes: 0 ok, 1 findings of error severity (evaluate: ground truth left unscored; "
               "any command: a listing problem), "
               "2 usage/configuration error, 3 run stopped (use --resume), 4 the run failed (fix the cause, "
               "then --resume)",
    )
    parser.add_argument("--version", action="version", version=f"fastmask {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="validate the built-in sample (one planted defect per rule), or --coco-rle",
                          description="Write the built-in sample datasets (one planted defect per rule), validate "
                                      "them and check every defect is found; or, with --coco-rle, round-trip "
                                      "generated COCO-like masks through rasterize, encode and decode.")
    demo.add_argument("--out", metavar="DIR", default=None,
                      help="where the sample and the reports go (default ./fastmask-demo, rewritten each run)")
    demo.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    demo.add_argument("--coco-rle", action="store_true",
                      help="instead: rasterize -> encode -> decode generated COCO-like data and report")
    demo.add_argument("--images", type=int, default=200, help="--coco-rle: number of generated images (default 200)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    scan = sub.add_parser("scan", help="read every item of a dataset and report what was found (no checks)",
                          description="Read every item of a dataset and record what was found: per item the mask's "
                                      "mode, size, dtype and values with their pixel counts; an unreadable item "
                                      "is an error row. No rules are checked (that is validate).")
    add_dataset_arguments(scan)
    add_engine_arguments(scan)
    cov = sub.add_parser("coverage", help="per image and class: pixels and coverage; per class totals and histograms",
                         description="Count, per image and class, the pixels and the share of the image they cover; "
                                     "per class: totals, images containing it and a coverage histogram.")
    add_dataset_arguments(cov)
    cov.add_argument("--ignore-value", type=int, default=255, metavar="V", help="ignore value (default 255; -1 for none)")
    cov.add_argument("--background", type=int, default=0, metavar="V", help="background value (default 0; -1 for none)")
    cov.add_argument("--plots", action="store_true", help=PLOTS_HELP)
    add_engine_arguments(cov)
    ev = sub.add_parser("evaluate", help="IoU / Dice of prediction masks against ground truth (paired by item id)",
                        description="Score prediction masks against ground truth, paired by item id: per image and "
                                    "per class IoU / Dice and a confusion matrix (semantic), or PQ / SQ / RQ "
                                    "(COCO panoptic on both sides).")
    ev.add_argument("--gt", metavar="DATASET", required=True, help="ground-truth dataset (any layout)")
    ev.add_argument("--pred", metavar="DATASET", required=True, help="prediction dataset (any layout)")
    ev.add_argument("--labelmap", metavar="FILE", default=None, help="label map of both (classes = its ids)")
    ev.add_argument("--gt-masks", metavar="DIR", default=None,
                    help="COCO panoptic ground truth: its PNG folder (default: named like the JSON, beside it)")
    ev.add_argument("--pred-masks", metavar="DIR", default=None,
                    help="COCO panoptic prediction: its PNG folder (default: named like the JSON, beside it)")
    ev.add_argument("--num-classes", type=int, default=None, metavar="N",
                    help="number of classes (default: from the label map)")
    ev.add_argument("--ignore-value", type=int, default=255, metavar="V",
                    help="ground-truth value that counts nowhere (default 255; -1 for none)")
    ev.add_argument("--empty-policy", choices=("nan", "one", "zero"), default="nan",
                    help="score of a class absent from both gt and prediction (default nan: left out of means)")
    ev.add_argument("--out-of-range", choices=("fn", "ignore", "error"), default="fn",
                    help="a predicted value >= N on a ground-truth class: fn (default) a false negative of that "
                         "class and nothing else (mmsegmentation, cityscapesScripts); ignore: left out; "
                         "error: the item is an error row. Counted per item either way")
    ev.add_argument("--allow-missing", action="store_true",
                    help="exit 0 even when ground-truth items have no prediction (they are still listed "
                         "and not scored); other unscored items still exit 1")
    ev.add_argument("--plots", action="store_true", help=PLOTS_HELP)
    add_engine_arguments(ev)
    val = sub.add_parser("validate", help="check every mask of a dataset against the rules (findings report)",
                         description="Check every mask of a dataset against the rules (values, palette, label map, "
                                     "sizes, islands, overlaps, annotations...) and write the findings; exit code "
                                     "1 when a finding at or above --fail-on exists.")
    add_dataset_arguments(val)
    rules = val.add_argument_group("rules")
    rules.add_argument("--min-island", type=int, default=16, metavar="PX",
                       help="tiny_island: components smaller than this many pixels (default 16)")
    rules.add_argument("--connectivity", type=int, choices=(4, 8), default=8,
                       help="pixel connectivity for components (default 8)")
    rules.add_argument("--ignore-value", type=int, default=255, metavar="V",
                       help="ignore value allowed in every mask (default 255; -1 for none)")
    rules.add_argument("--background", type=int, default=0, metavar="V", help="background value (default 0; -1 for none)")
    rules.add_argument("--fail-on", choices=("error", "warning", "info", "never"), default="error",
                       help="exit code 1 when a finding at or above this severity exists (default error)")
    rules.add_argument("--disable", action="append", default=[], metavar="RULE", help="turn a rule off (repeatable)")
    rules.add_argument("--severity", action="append", default=[], metavar="RULE=LEVEL",
                       help="change a rule's severity, e.g. empty_mask=error (repeatable)")
    rules.add_argument("--max-item-memory", default="1G", metavar="SIZE",
                       help="working memory one mask may need to label (e.g. 512M, 4G, none; default 1G); "
                            "above: error row too_complex")
    rules.add_argument("--preflight", action="append", default=[], choices=("labelbox", "nucleus"),
                       help="also check what convert --to PLATFORM would upload (automatic on labelbox / nucleus "
                            "datasets; repeatable)")
    val.add_argument("--plots", action="store_true", help=PLOTS_HELP)
    add_engine_arguments(val)
    for module in _command_modules():
        module.register(sub)
    parser.add_argument("--storage-options", metavar="JSON", default=None, help=STORAGE_HELP)
    parser.add_argument("--prefetch", metavar="N", type=_prefetch_count, default=None, help=PREFETCH_HELP)
    parser.add_argument("--cache", metavar="DIR", default=None, help=CACHE_HELP)
    for command_parser in sub.choices.values():  # also after the command: fastmask validate ... --debug
        command_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        command_parser.add_argument("--storage-options", metavar="JSON", default=argparse.SUPPRESS,
                                    help=STORAGE_HELP)
        command_parser.add_argument("--prefetch", metavar="N", type=_prefetch_count, default=argparse.SUPPRESS,
                                    help=PREFETCH_HELP)
        command_parser.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help=CACHE_HELP)
    return parser


STORAGE_HELP = ("options of the URLs' filesystems (fsspec storage_options, as pandas takes them), as JSON or "
                "@FILE.json: credentials, endpoint, HTTP headers, e.g. "
                "'{\"client_kwargs\": {\"endpoint_url\": \"http://127.0.0.1:9000\"}}'")


PREFETCH_HELP = ("objects named one by one by URL (URL lists, platform masks) fetched ahead per shard "
                 "(default 16, $FASTMASK_PREFETCH; 0: none)")
CACHE_HELP = ("keep fetched objects in this local folder, so that a rerun reads them from disk "
              "(at most $FASTMASK_CACHE_BYTES, default 10 GiB; least recently used first out)")


def _prefetch_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def parse_storage_options(text: str | None) -> dict:
    """``--storage-options``: a JSON object, inline or ``@path.json``; ``{}`` when not given.

    >>> parse_storage_options('{"anon": true}')
    {'anon': True}
    """
    if text is None:
        return {}
    raw = text
    if text.startswith("@"):
        from .formats.errors import FormatError
        from .storage import Location
        try:  # through the storage module like every other file (a local path here: no options yet)
            raw = Location(text[1:], {}).read_text()
        except (OSError, FormatError, UnicodeDecodeError) as e:
            raise ValueError(f"--storage-options {text}: {getattr(e, 'message', None) or e}") from None
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"--storage-options is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"--storage-options must be a JSON object, got {type(value).__name__}")
    return value


DEBUG_HELP = "show the Python traceback of an unexpected error (default: one line)"
PLOTS_HELP = "also write PNG charts into REPORT/plots/ (needs matplotlib)"


def _report_started(out: str) -> bool:
    """True when ``--out`` (a folder or a URL) holds a run.json: the run began there."""
    from .storage import Location

    try:
        return (Location(out) / "run.json").is_file()
    except Exception:  # noqa: BLE001 - an unreachable store: say only what is certain
        return False


def report_error(args: argparse.Namespace, e: BaseException) -> None:
    """Print ``fastmask COMMAND: message`` for an engine error (with its traceback under ``--debug``)."""
    print(f"fastmask {args.command}: {e}", file=sys.stderr)
    if getattr(args, "debug", False):
        traceback.print_exception(e)


def _dataset_options(args: argparse.Namespace, **paths) -> dict:
    """The dataset options a command was given, as absolute paths for ``run.json`` (so that
    ``fastmask report`` reopens the dataset as the run saw it); options not given are left
    out, so such a run records what the same job run from Python records."""
    from .formats._fs import norm_target

    paths["labelmap_file"] = getattr(args, "labelmap", None)
    out = {k: norm_target(v) for k, v in paths.items() if v}  # a URL stays a URL
    if getattr(args, "labelbox_label", None) is not None:  # not a path: recorded as given
        out["labelbox_label"] = args.labelbox_label
    return out


def run_dataset_job(args: argparse.Namespace, make_job, finish=None):
    """Open the dataset, run ``make_job(dataset)`` on the engine; ``(dataset, job, result)`` or an exit code.

    ``finish(job, out_dir)`` writes the job's dataset-wide tables before the run is marked
    complete (its value is ``result.finished``). Configuration problems (bad flags,
    unreadable dataset, output folder in use) are printed and returned as the engine's
    exit code (2; 3 for a stopped run, 4 for a failed one).
    """
    from .engine import EngineError, run_job
    from .formats import FormatError

    try:
        opts = engine_options_from_args(args)
        layout = args.layout or (_resumed_layout(opts.out_dir, args.dataset) if opts.resume else None)
        with _deferred_listing(opts.resume):
            dataset = open_dataset_arg(args.dataset, layout=layout, images=args.images, labelmap=args.labelmap,
                                       masks=args.masks, labelbox_label=getattr(args, "labelbox_label", None))
        job = make_job(dataset)
        notice_cold_kernels(args.command)
        arguments = {**job.arguments(), **_dataset_options(args, images=args.images, masks=args.masks)}
        # the dataset itself as the manifest: listed here, or (--resume) given the saved one
        result = run_job(job, dataset, labelmap=dataset.labelmap.to_json() if dataset.labelmap else None,
                         arguments=arguments, finish=finish and (lambda out: finish(job, out)), **opts.run_kwargs())
    except FormatError as e:
        print(f"fastmask {args.command}: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as e:
        report_error(args, e)
        return e.exit_code
    return dataset, job, result


def _resumed_layout(out: str, dataset: str, key: str = "dataset", layout_key: str = "layout") -> str | None:
    """The layout the run in ``out`` recorded for ``dataset`` (``--resume``: no detection,
    which may list the dataset); None when there is no such run (it then starts anew).
    ``key`` / ``layout_key``: the arguments naming the dataset and its layout (``gt`` and
    ``gt_layout`` for evaluate's ground truth)."""
    from .engine.sink import RUN_JSON, read_json, report_root
    from .formats._fs import norm_target

    try:
        doc = read_json(report_root(out) / RUN_JSON)
        recorded = doc["arguments"]
        if recorded.get(key) == norm_target(dataset) and isinstance(recorded.get(layout_key), str):
            return recorded[layout_key]
    except Exception:  # noqa: BLE001 - no readable run there: detect as usual
        pass
    return None


def _deferred_listing(resume: bool):
    """While opening the dataset of a ``--resume``: URL roots answer "is this folder there"
    with one small request instead of listing the dataset (the saved manifest replaces it)."""
    import contextlib

    from .formats._fs import deferred_listing

    return deferred_listing() if resume else contextlib.nullcontext()


def _run_scan(args: argparse.Namespace) -> int:
    from .jobs.scan import ScanJob

    ran = run_dataset_job(args, ScanJob)
    if isinstance(ran, int):
        return ran
    dataset, _, result = ran
    errors = result.counts.get("error", 0)
    print(f"scanned {plural(result.n_items, 'item', '')} ({dataset.layout} layout) in {result.wall_seconds:.2f} s, "
          f"{run_speed(result)}: {result.counts.get('ok', 0)} read, {errors} not readable")
    for code, n in sorted(result.counts.get("error_codes", {}).items()):
        print(f"  {code}: {n}")
    from .jobs.listing import print_listing

    listed = print_listing(result.summary)
    print(f"report: {result.out_dir}")
    return listed


def _plots(args: argparse.Namespace, out_dir=None) -> int:
    """``--plots``: without ``out_dir`` check matplotlib (before the run), else write the charts."""
    from . import plots

    if not plots.matplotlib_available():
        print(f"fastmask {args.command}: --plots needs matplotlib: {plots.INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    if out_dir is not None:
        print(f"plots: {', '.join(p.name for p in plots.write_plots(out_dir)) or 'none'} in {out_dir}/plots")
    return 0


def _run_coverage(args: argparse.Namespace) -> int:
    from .jobs.coverage import BIN_LABELS, CoverageJob, write_classes_table

    if args.plots and _plots(args):
        return EXIT_USAGE
    ignore = None if args.ignore_value < 0 else args.ignore_value
    background = None if args.background < 0 else args.background
    ran = run_dataset_job(args, lambda ds: CoverageJob(ds, ignore_value=ignore, background=background),
                          finish=write_classes_table)
    if isinstance(ran, int):
        return ran
    dataset, job, result = ran
    classes = result.finished
    print(f"coverage of {plural(result.n_items, 'item', '')} ({dataset.layout} layout) in {result.wall_seconds:.2f} s, "
          f"{result.counts.get('error', 0)} could not be read")
    print(f"{'class':>6} {'name':<16} {'images':>7} {'pixels':>12} {'share':>7}  images per coverage bin "
          f"({', '.join(BIN_LABELS)})")
    for r in sorted(classes.to_pylist(), key=lambda r: -r["pixels"]):
        share = f"{100 * r['dataset_fraction']:.2f}%" if r["dataset_fraction"] is not None else "-"
        print(f"{r['class_id']:>6} {(r['name'] or '')[:16]:<16} {r['images']:>7} {r['pixels']:>12,} {share:>7}  "
              f"{' '.join(str(v) for v in r['histogram'])}")
    from .jobs.listing import print_listing

    listed = print_listing(result.summary)
    print(f"report: {result.out_dir}")
    return (_plots(args, result.out_dir) if args.plots else 0) or listed


def _open_pair(args: argparse.Namespace, opts):
    """evaluate's and audit's ``gt`` and ``pred`` datasets; on ``--resume``, with the layouts the
    run recorded and without listing them (the saved manifest holds the pairs)."""
    datasets = []
    for role, masks in (("gt", args.gt_masks), ("pred", args.pred_masks)):
        path = getattr(args, role)
        layout = _resumed_layout(opts.out_dir, path, role, f"{role}_layout") if opts.resume else None
        with _deferred_listing(opts.resume and layout is not None):
            datasets.append(open_dataset_arg(path, layout=layout, labelmap=args.labelmap, masks=masks))
    return tuple(datasets)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .engine import EngineError, run_job
    from .formats import FormatError
    from .jobs.evaluate import EvaluateJob, write_classes_table

    if args.plots and _plots(args):
        return EXIT_USAGE
    try:
        opts = engine_options_from_args(args)
        gt, pred = _open_pair(args, opts)
        if args.labelmap is None:
            from .formats._platforms import share_names_labelmap

            share_names_labelmap(gt, pred)  # two platform files: one id per name on both sides
        n = args.num_classes
        if n is None and gt.layout == "coco_panoptic":
            n = 1  # panoptic quality needs no class count
        if n is None:
            lm = gt.labelmap
            ids = [i for i in (lm.names if lm else {}) if i != args.ignore_value]
            if not ids:
                print("fastmask evaluate: give --num-classes or a --labelmap", file=sys.stderr)
                return EXIT_USAGE
            n = max(ids) + 1
        ignore = None if args.ignore_value < 0 else args.ignore_value
        job = EvaluateJob(gt, pred, n, ignore_value=ignore, empty_policy=args.empty_policy,
                          out_of_range=args.out_of_range)
        notice_cold_kernels(args.command)
        arguments = {**job.arguments(), **_dataset_options(args, gt_masks=args.gt_masks, pred_masks=args.pred_masks)}
        # the job as the manifest source: it pairs the listings here, or (--resume) takes the saved pairs
        result = run_job(job, job, labelmap=gt.labelmap.to_json() if gt.labelmap else None,
                         arguments=arguments, finish=lambda out: write_classes_table(job, out),
                         **opts.run_kwargs())
    except FormatError as e:
        print(f"fastmask evaluate: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as e:
        report_error(args, e)
        return e.exit_code
    except ValueError as e:
        print(f"fastmask evaluate: {e}", file=sys.stderr)
        return EXIT_USAGE
    s = result.summary
    from .jobs import evaluate_summary as es

    def pct(v):
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    scored = es.scored_phrase(s)
    print(f"evaluate: {scored} in {result.wall_seconds:.2f} s")
    es.print_not_scored(s)
    es.print_pairing_notes(s, gt, pred)
    if "panoptic" in s:
        for name in ("all", "things", "stuff"):
            g = s["panoptic"][name]
            print(f"  {name:<7} PQ {pct(g['pq'])}  SQ {pct(g['sq'])}  RQ {pct(g['rq'])}  classes {g['n']}  ({scored})")
    else:
        classes = result.finished
        print(f"{'class':>6} {'name':<16} {'IoU':>6} {'Dice':>6}")
        for r in classes.to_pylist():
            if r["tp"] or r["fp"] or r["fn"]:
                print(f"{r['class_id']:>6} {(r['name'] or '')[:16]:<16} {pct(r['iou']):>6} {pct(r['dice']):>6}")
        print(f"mIoU {pct(s['miou'])}  mDice {pct(s['mdice'])}  pixel accuracy {pct(s['pixel_accuracy'])} "
              f"(summed over images; {scored}); mean of per-image mIoU {pct(s['image_averaged_miou'])}")
        es.print_out_of_range(s)
    from .jobs.listing import print_listing

    listed = print_listing(s)
    print(f"report: {result.out_dir}")
    code = es.finish(s, args.allow_missing)
    plotted = _plots(args, result.out_dir) if args.plots else 0
    return code or plotted or listed


def _rule_config(args: argparse.Namespace):
    from .engine import UsageError
    from .jobs.validate_rules import RULES, SEVERITIES, RuleConfig

    unknown = [r for r in args.disable if r not in RULES]
    severities = {}
    for spec in args.severity:
        rule, _, level = spec.partition("=")
        if rule not in RULES or level not in SEVERITIES:
            raise UsageError(f"--severity {spec!r}: expected RULE=LEVEL with a rule code and one of {', '.join(SEVERITIES)}")
        severities[rule] = level
    if unknown:
        raise UsageError(f"--disable: unknown rule(s) {', '.join(unknown)}; rules: {', '.join(sorted(RULES))}")
    if args.min_island < 1:
        raise UsageError("--min-island must be at least 1")
    from .jobs.budget import parse_size

    try:
        budget = parse_size(args.max_item_memory)
    except ValueError as e:
        raise UsageError(f"--max-item-memory: {e}") from None
    return RuleConfig(max_item_memory=budget,
        disabled=frozenset(args.disable), severities=severities, min_island=args.min_island,
        connectivity=args.connectivity, ignore_value=None if args.ignore_value < 0 else args.ignore_value,
        background=None if args.background < 0 else args.background,
        preflight=tuple(sorted(set(getattr(args, "preflight", []) or []))),
    )


def _run_validate(args: argparse.Namespace) -> int:
    from .engine import EngineError
    from .jobs.validate import ValidateJob, write_dataset_tables
    from .jobs.validate_summary import print_summary

    try:
        config = _rule_config(args)
    except EngineError as e:
        report_error(args, e)
        return e.exit_code
    if args.plots and _plots(args):
        return EXIT_USAGE
    ran = run_dataset_job(args, lambda dataset: ValidateJob(dataset, config), finish=write_dataset_tables)
    if isinstance(ran, int):
        return ran
    dataset, job, result = ran
    dataset_found, classes = result.finished
    failed = print_summary(result, dataset.layout, dataset_found, classes, args.fail_on)
    from .jobs.listing import print_listing

    print_listing(result.summary, problems=False)  # the problems are findings already
    plotted = _plots(args, result.out_dir) if args.plots else 0
    return 1 if failed else plotted


#: Set when Ctrl-C stopped the command (``python -m fastmask`` then ends without the
#: interpreter's teardown, which a late interrupt could turn into a death by SIGINT).
INTERRUPTED = False


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (see the module's docstring).

    A failure outside the engine's own errors is one line on stderr and exit code 4 (with
    the traceback under ``--debug``); Ctrl-C is one line and exit code 3; a closed stdout
    pipe (``fastmask validate ... | head``) ends quietly.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    guard = _PipeGuard.install()
    notices = _Notices()
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        global INTERRUPTED
        INTERRUPTED = True
        if argv is None:  # the program itself (not a caller in Python): it ends now
            _ignore_further_interrupts()
        out = getattr(args, "out", None)
        started = out and _report_started(out)
        where = (f"finished shards are kept in {out}; rerun with --resume to continue" if started
                 else "stopped before the run started")
        print(f"\nfastmask {args.command}: interrupted: {where}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except BrokenPipeError:
        _stdout_to_devnull()
        return 0
    except MissingBackendError as e:  # a URL whose filesystem is not installed: one line naming the extra
        print(f"fastmask {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - a crash is exit code 4 and one line, never a finding (1)
        if args.debug:
            raise
        print(f"fastmask {args.command}: the run failed: {type(e).__name__}: {e} (--debug shows the traceback)",
              file=sys.stderr)
        return EXIT_RUN_ERROR
    finally:
        notices.close()
        guard.uninstall()


class _StderrNotices(logging.Handler):
    """The ``fastmask.notice`` logger's messages as ``fastmask: message`` lines on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"fastmask: {record.getMessage()}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - a notice never ends a run
            self.handleError(record)


class _Notices:
    """While a command runs, the ``fastmask.notice`` logger's messages are printed on stderr."""

    def __init__(self):
        self.logger = logging.getLogger("fastmask.notice")
        self.saved = self.logger.level, self.logger.propagate
        self.handler = _StderrNotices()
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False  # printed once, not again by the root logger's handler

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]


#: ``1`` always prints the "compiling kernels" line, ``0`` never; unset: when the cache is cold.
COMPILE_NOTICE_ENV = "FASTMASK_COMPILE_NOTICE"
_COMPILE_NOTICED: list[bool] = []


def notice_cold_kernels(command: str) -> None:
    """Say once per process, on stderr, that the kernels compile now (an empty Numba cache).

    A warm start costs one directory listing, done when the kernels are imported anyway.
    """
    setting = os.environ.get(COMPILE_NOTICE_ENV, "")
    if setting == "0" or (_COMPILE_NOTICED and setting != "1"):
        return
    from . import kernels

    if setting == "1" or kernels.COLD_CACHE:
        _COMPILE_NOTICED.append(True)
        print(f"fastmask {command}: compiling kernels (first run only, ~30 s)", file=sys.stderr)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from . import storage

    try:
        storage.set_default_options(parse_storage_options(getattr(args, "storage_options", None)))
        storage.set_fetch_defaults(prefetch=getattr(args, "prefetch", None), cache=getattr(args, "cache", None))
    except ValueError as e:
        print(f"fastmask {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "demo":
        from .demo import run_demo, run_validation_demo

        if args.coco_rle:
            return run_demo(n_images=args.images, seed=args.seed)
        return run_validation_demo(args.out, seed=args.seed, workers=args.workers)
    if args.command == "scan":
        return _run_scan(args)
    if args.command == "validate":
        return _run_validate(args)
    if args.command == "coverage":
        return _run_coverage(args)
    if args.command == "evaluate":
        return _run_evaluate(args)
    if getattr(args, "handler", None) is not None:
        return args.handler(args)
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def _ignore_further_interrupts() -> None:
    # The run is stopped and the process only ends now: another Ctrl-C (or a late one) must
    # not interrupt the clean-up nor kill the interpreter as it shuts down.
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stdout_to_devnull() -> None:
    # The reader of our stdout is gone (``| head``): later writes and the final flush go
    # nowhere instead of raising (Python's documented recipe for SIGPIPE).
    try:
        fd = sys.__stdout__.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


class _PipeGuard:
    """Wraps ``sys.stdout`` so a closed pipe silences the rest of the output instead of
    aborting the command: the run's real exit code is kept."""

    def __init__(self, stream):
        self._stream = stream
        self.broken = False

    @classmethod
    def install(cls) -> "_PipeGuard":
        guard = cls(sys.stdout)
        sys.stdout = guard
        return guard

    def uninstall(self) -> None:
        if sys.stdout is self:
            sys.stdout = self._stream
            try:
                self._stream.flush()
            except BrokenPipeError:
                _stdout_to_devnull()
            except (OSError, ValueError):
                pass

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self.broken = True
            _stdout_to_devnull()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self.broken = True
            _stdout_to_devnull()

    def __getattr__(self, name):
        return getattr(self._stream, name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
