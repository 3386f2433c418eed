"""What ``fastmask evaluate`` prints after a run, and its exit code.

Every headline score is printed next to ``scored N of M ground-truth items``; what was
not scored is listed by reason (error code) with a few item ids. The exit code is 1 when
a ground-truth item was not scored or nothing was scored at all; ``allow_missing``
accepts ground-truth items whose only problem is a missing prediction.
"""
from __future__ import annotations

import sys

from .._text import plural
from ..engine.errors import EXIT_FINDINGS, EXIT_OK

#: the error code ``--allow-missing`` accepts (a ground-truth item without any prediction)
ALLOWED_BY_ALLOW_MISSING = ("missing_prediction",)


def scored_phrase(summary: dict) -> str:
    """``scored N of M ground-truth items``.

    >>> scored_phrase({"scored_items": 10, "ground_truth_items": 12})
    'scored 10 of 12 ground-truth items'
    >>> scored_phrase({"scored_items": 1, "ground_truth_items": 1})
    'scored 1 of 1 ground-truth item'
    """
    total = plural(summary.get("ground_truth_items", 0), "ground-truth item", "")
    return f"scored {summary.get('scored_items', 0)} of {total}"


def failures(summary: dict, allow_missing: bool) -> list[str]:
    """Why the run must exit with 1 (empty: it may exit with 0).

    >>> failures({"scored_items": 1, "ground_truth_items": 2, "not_scored": {"missing_prediction": 1}}, True)
    []
    >>> failures({"scored_items": 0, "ground_truth_items": 0, "not_scored": {}}, False)
    ['no ground-truth item was scored']
    """
    out = []
    if not summary.get("scored_items"):
        out.append("no ground-truth item was scored")
    for code, n in (summary.get("not_scored") or {}).items():
        if allow_missing and code in ALLOWED_BY_ALLOW_MISSING:
            continue
        out.append(f"{plural(n, 'ground-truth item', '')} not scored: {code}")
    return out


def exit_code(summary: dict, allow_missing: bool) -> int:
    """1 when :func:`failures` names anything, else 0.

    >>> exit_code({"scored_items": 2, "ground_truth_items": 2, "not_scored": {}}, False)
    0
    """
    return EXIT_FINDINGS if failures(summary, allow_missing) else EXIT_OK


def print_not_scored(summary: dict) -> None:
    """The items not scored, by reason, and the extra predictions.

    >>> print_not_scored({"not_scored": {"size_mismatch": 2}, "not_scored_examples": {"size_mismatch": ["a"]}})
      not scored, size_mismatch: 2 (a, ...)
    """
    examples = summary.get("not_scored_examples") or {}
    for code, n in (summary.get("not_scored") or {}).items():
        ids = examples.get(code) or []
        more = ", ..." if n > len(ids) else ""
        print(f"  not scored, {code}: {n} ({', '.join(ids)}{more})")
    if summary.get("extra_predictions"):
        print(f"  predictions without ground truth (not scored, not counted): {summary['extra_predictions']}")


def print_pairing_notes(summary: dict, gt, pred) -> None:
    """Pairs made by file name; panoptic PNG folders that do not exist (named)."""
    if summary.get("paired_by_file_name"):
        print(f"  paired by COCO file_name (not item id): {summary['paired_by_file_name']}")
    for role, ds, flag in (("ground-truth", gt, "--gt-masks"), ("prediction", pred, "--pred-masks")):
        folder = getattr(ds, "masks_dir", None)
        if ds.layout == "coco_panoptic" and folder and not ds.masks_present():
            print(f"  {role} panoptic PNG folder not found: {folder} (give {flag})")


def print_out_of_range(summary: dict) -> None:
    """The out-of-range pixels and what the policy did with them.

    >>> print_out_of_range({"pred_out_of_range_pixels": 3, "items_with_pred_out_of_range": 1, "out_of_range": "ignore"})
      predicted values >= --num-classes on ground-truth pixels: 3 px in 1 item, left out (--out-of-range ignore)
    """
    n = summary.get("pred_out_of_range_pixels") or 0
    if n:
        how = {"fn": "counted as false negatives of their ground-truth class", "ignore": "left out (--out-of-range ignore)",
               "error": "their items are error rows"}.get(summary.get("out_of_range"), "")
        print(f"  predicted values >= --num-classes on ground-truth pixels: {n:,} px in "
              f"{plural(summary.get('items_with_pred_out_of_range', 0), 'item', '')}, {how}")
    if summary.get("gt_out_of_range_pixels"):
        print(f"  ground-truth values >= --num-classes left out: {summary['gt_out_of_range_pixels']:,} px")


def finish(summary: dict, allow_missing: bool) -> int:
    """Print the verdict line on stderr when failing; return the exit code.

    >>> finish({"scored_items": 3, "ground_truth_items": 4, "not_scored": {"missing_prediction": 1}}, True)
    0
    """
    why = failures(summary, allow_missing)
    if why:
        hint = "; --allow-missing accepts missing predictions" if any("missing_prediction" in w for w in why) else ""
        print(f"fastmask evaluate: exit 1: {'; '.join(why)}{hint}", file=sys.stderr)
    return exit_code(summary, allow_missing)
