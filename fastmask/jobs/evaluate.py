"""The ``evaluate`` job: prediction masks against ground truth, IoU / Dice per class.

Pairing (:func:`pair_items`): a ground-truth item and a prediction pair when their item
ids are equal; when one side is COCO (instances or panoptic) and the other a set of mask
files, also when the mask's id is the COCO image's ``file_name`` without its extension,
folders kept (the name ``fastmask rasterize`` gives its mask), so rasterized COCO pairs
with its source by construction. Every item of both sides gets one row: a ground-truth
item without a prediction is ``missing_prediction``, a prediction without ground truth
``extra_prediction``, two candidates for one item (or one prediction claimed by two
items) ``ambiguous_pairing`` naming them -- never silently dropped.

Per pair: the confusion matrix (rows = ground truth, columns = prediction; pixels whose
ground truth is the ignore value count nowhere) and the per-image scores. A predicted
value ``>= num_classes`` on a ground-truth class follows ``out_of_range``: ``"fn"``
(default, mmsegmentation's and cityscapesScripts' definition: a false negative of the
ground-truth class and nothing else), ``"ignore"`` (left out) or ``"error"`` (the item is
an error row); the count is in the ``pred_out_of_range`` column either way. A
ground-truth value ``>= num_classes`` (not the ignore value) makes the item a
``gt_out_of_range`` error row, except under ``"ignore"`` (left out, counted in
``gt_out_of_range``). Dataset scores sum the counts of all images before dividing
(mmsegmentation's definition); the mean of per-image scores is reported separately.
Classes absent from both ground truth and prediction follow ``empty_policy`` (NaN by
default, left out of the means). The summary says how many ground-truth items were
scored and why the others were not.

Example::

    job = EvaluateJob(open_dataset("gt/"), open_dataset("pred/"), num_classes=19)
    run_job(job, job.manifest(), "eval-report/")
"""
from __future__ import annotations

import json
import posixpath
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa

from .. import metrics
from ..kernels import confusion as _kc
from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import Dataset, FormatError
from ..formats.png import _fused_scan
from .coverage import coco_class_map
from .listing import listing_summary, reuse_listings, store_listings

_U8 = np.dtype(np.uint8)
_COCO_LAYOUTS = ("coco", "coco_panoptic")
OUT_OF_RANGE_POLICIES = ("fn", "ignore", "error")
#: error codes of prediction-only rows: not ground-truth items, so never "not scored"
NOT_GROUND_TRUTH = ("extra_prediction",)
_EXAMPLES = 5


def _class_map(dataset: Dataset, row: dict, ignore: int) -> np.ndarray:
    data = dataset.read_item(row)
    if data.annotations is not None:
        w, h = row.get("width"), row.get("height")
        if not w or not h:
            raise ItemError("unreadable", "the COCO image record has no usable width/height")
        return coco_class_map(data.annotations, int(h), int(w), ignore)[0]
    if data.mask is None:
        raise ItemError("missing_mask", f"{row['item_id']}: no class mask")
    return data.mask.array


def file_name_key(file_name: Any) -> str | None:
    """The mask id a COCO image's ``file_name`` pairs with: the path without its extension,
    folders kept (what ``fastmask rasterize`` names the image's mask); None when unusable.

    >>> file_name_key("val/frame_0000.jpg"), file_name_key("../x.jpg")
    ('val/frame_0000', None)
    """
    if not isinstance(file_name, str) or not file_name or "\x00" in file_name or "\\" in file_name:
        return None
    p = posixpath.normpath(file_name)
    if p.startswith("/") or any(s.startswith(".") for s in p.split("/")):
        return None
    root = posixpath.splitext(p)[0]
    return root or None


def _keys(row: dict, by_file_name: bool) -> list[str]:
    keys = [row["item_id"]]
    alt = file_name_key(row.get("file_name")) if by_file_name else None
    if alt is not None and alt != row["item_id"]:
        keys.append(alt)
    return keys


def pair_items(gt_rows: list[dict], pred_rows: list[dict], *, gt_file_names: bool = False,
               pred_file_names: bool = False) -> list[dict]:
    """Pair ground-truth and prediction manifest rows (see the module docstring).

    ``gt_file_names`` / ``pred_file_names``: that side is COCO and the other mask files, so
    its rows also pair by :func:`file_name_key`. Returns one dict per row, sorted by
    ``item_id`` (the ground truth's id; a prediction's own id when it has no ground
    truth): ``gt`` and ``pred`` rows (or None), ``paired_by`` (``item_id``, ``file_name``
    or None) and ``error`` (``(code, message)`` of an ambiguous pairing, or None).

    >>> rows = pair_items([{"item_id": "000000000001", "file_name": "a/f0.jpg"}], [{"item_id": "a/f0"}],
    ...                   gt_file_names=True)
    >>> [(r["item_id"], r["pred"]["item_id"], r["paired_by"]) for r in rows]
    [('000000000001', 'a/f0', 'file_name')]
    """
    index: dict[str, list[str]] = defaultdict(list)
    preds = {r["item_id"]: r for r in pred_rows}
    for r in pred_rows:
        for k in _keys(r, pred_file_names):
            index[k].append(r["item_id"])
    candidates: dict[str, list[str]] = {}
    claims: dict[str, list[str]] = defaultdict(list)
    for g in gt_rows:
        found = []
        for k in _keys(g, gt_file_names):
            found += [pid for pid in index.get(k, ()) if pid not in found]
        candidates[g["item_id"]] = found
        for pid in found:
            claims[pid].append(g["item_id"])
    out = []
    for g in gt_rows:
        gid, found = g["item_id"], candidates[g["item_id"]]
        row = {"item_id": gid, "gt": g, "pred": None, "paired_by": None, "error": None}
        if len(found) > 1:
            row["error"] = ("ambiguous_pairing", f"{gid}: several predictions match this ground-truth item "
                                                 f"(by item id or file name): {', '.join(map(repr, found))}")
        elif found:
            others = [x for x in claims[found[0]] if x != gid]
            if others:
                row["error"] = ("ambiguous_pairing", f"{gid}: the prediction {found[0]!r} also matches the "
                                                     f"ground-truth item(s) {', '.join(map(repr, others))}")
            else:
                row["pred"] = preds[found[0]]
                row["paired_by"] = "item_id" if found[0] == gid else "file_name"
        out.append(row)
    for pid, r in preds.items():
        if pid not in claims:
            out.append({"item_id": pid, "gt": None, "pred": r, "paired_by": None, "error": None})
    out.sort(key=lambda r: r["item_id"])
    return out


def paired_prediction(item: dict[str, Any]) -> tuple[dict, dict]:
    """The prediction row of a paired manifest row and the pairing fields of its item row
    (``pred_item``, ``paired_by``); a pairing error, an extra or a missing prediction raises
    the item's :class:`ItemError` (shared by evaluate and audit).

    >>> paired_prediction({"item_id": "a", "gt_row": "{}", "pred_row": '{"item_id": "a"}'})
    ({'item_id': 'a'}, {'pred_item': 'a', 'paired_by': 'item_id'})
    """
    if item.get("pairing_error"):
        code, message = json.loads(item["pairing_error"])
        raise ItemError(code, message)
    if item["gt_row"] is None:
        raise ItemError("extra_prediction", f"{item['item_id']}: a prediction without ground truth")
    if item["pred_row"] is None:
        raise ItemError("missing_prediction", f"{item['item_id']}: no prediction for this ground truth")
    pred_row = json.loads(item["pred_row"])
    return pred_row, {"pred_item": pred_row.get("item_id"), "paired_by": item.get("paired_by") or "item_id"}


class EvaluateJob(Job):
    """Confusion matrices and IoU / Dice of ``pred`` against ``gt`` (semantic masks or COCO)."""

    name = "evaluate"
    item_schema = pa.schema(
        [
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("pixels", pa.int64()),
            ("ignored", pa.int64()),
            ("accuracy", pa.float64()),
            ("miou", pa.float64()),
            ("mdice", pa.float64()),
            # the prediction paired with this item, and how (item_id or file_name)
            ("pred_item", pa.string()),
            ("paired_by", pa.string()),
            # pixels of a ground-truth class predicted >= num_classes (scored per --out-of-range)
            ("pred_out_of_range", pa.int64()),
            # ground-truth pixels >= num_classes, not the ignore value
            ("gt_out_of_range", pa.int64()),
        ]
    )
    _TABLES = {
        "image_scores": pa.schema(
            [("class_id", pa.int64()), ("tp", pa.int64()), ("fp", pa.int64()), ("fn", pa.int64()),
             ("iou", pa.float64()), ("dice", pa.float64())]
        ),
        # the nonzero cells of each image's confusion matrix (rows = ground truth); a
        # pred_class >= num_classes is an out-of-range predicted value
        "confusion": pa.schema([("gt_class", pa.int64()), ("pred_class", pa.int64()), ("pixels", pa.int64())]),
        # panoptic inputs: per image and category, panopticapi's matching counts
        "pq_counts": pa.schema([("category_id", pa.int64()), ("tp", pa.int64()), ("fp", pa.int64()),
                                ("fn", pa.int64()), ("iou_sum", pa.float64())]),
    }

    @property
    def tables(self) -> dict[str, pa.Schema]:  # type: ignore[override]
        """Only the tables this mode fills: ``pq_counts`` (panoptic) or ``image_scores`` + ``confusion``."""
        names = ("pq_counts",) if self._categories is not None else ("image_scores", "confusion")
        return {k: self._TABLES[k] for k in names}

    def __init__(self, gt: Dataset, pred: Dataset, num_classes: int, *, ignore_value: int | None = 255,
                 empty_policy: str = "nan", out_of_range: str = "fn"):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if empty_policy not in ("nan", "one", "zero"):
            raise ValueError(f"empty_policy must be nan, one or zero, got {empty_policy!r}")
        if out_of_range not in OUT_OF_RANGE_POLICIES:
            raise ValueError(f"out_of_range must be fn, ignore or error, got {out_of_range!r}")
        self._gt = gt
        self._pred = pred
        self._categories = None
        if gt.layout == "coco_panoptic" and pred.layout == "coco_panoptic":
            self._categories = [c for c in gt.meta().get("categories", []) if isinstance(c, dict)]
        self.num_classes = int(num_classes)
        self.ignore_value = ignore_value
        self.empty_policy = empty_policy
        self.out_of_range = out_of_range
        self._fill = metrics._check_policy(empty_policy)

    def arguments(self) -> dict[str, Any]:
        return {"gt": self._gt.root, "pred": self._pred.root, "gt_layout": self._gt.layout,
                "pred_layout": self._pred.layout, "num_classes": self.num_classes,
                "ignore_value": self.ignore_value, "empty_policy": self.empty_policy,
                "out_of_range": self.out_of_range}

    def manifest(self) -> pa.Table:
        """One row per ground-truth item and per unpaired prediction (:func:`pair_items`; rows kept as JSON).

        Both datasets' listing facts are saved in its schema metadata (:func:`store_listings`):
        a resumed run hands the saved manifest to :meth:`reuse_manifest` and lists neither."""
        gt_coco, pred_coco = self._gt.layout in _COCO_LAYOUTS, self._pred.layout in _COCO_LAYOUTS
        rows = pair_items(self._gt.manifest().to_pylist(), self._pred.manifest().to_pylist(),
                          gt_file_names=gt_coco and not pred_coco, pred_file_names=pred_coco and not gt_coco)
        return store_listings(self._table(rows), {"gt": self._gt, "pred": self._pred})

    def reuse_manifest(self, table: pa.Table) -> None:
        """A resumed run's saved manifest: the pairs are not made again and the datasets take
        their saved listing facts (the summary's listing problems and skipped reports)."""
        reuse_listings(table, {"gt": self._gt, "pred": self._pred})

    @staticmethod
    def _table(rows: list[dict]) -> pa.Table:
        return pa.table({
            "item_id": pa.array([r["item_id"] for r in rows], pa.string()),
            "gt_row": pa.array([None if r["gt"] is None else json.dumps(r["gt"]) for r in rows], pa.string()),
            "pred_row": pa.array([None if r["pred"] is None else json.dumps(r["pred"]) for r in rows], pa.string()),
            "paired_by": pa.array([r["paired_by"] for r in rows], pa.string()),
            "pairing_error": pa.array([None if r["error"] is None else json.dumps(r["error"]) for r in rows],
                                      pa.string()),
        })

    def prefetch(self, item: dict[str, Any]) -> list:
        """The remote objects of both sides of ``item`` (fetched ahead by the engine)."""
        return [*(self._gt.prefetch(json.loads(item["gt_row"])) if item.get("gt_row") else []),
                *(self._pred.prefetch(json.loads(item["pred_row"])) if item.get("pred_row") else [])]

    def process(self, item: dict[str, Any]) -> ItemResult:
        pred_row, pairing = paired_prediction(item)
        try:
            result = self._panoptic(item) if self._categories is not None else self._semantic(item, pred_row)
        except ItemError as e:
            raise ItemError(e.code, e.message, fields={**pairing, **e.fields}, rows=e.rows) from None
        result.fields.update(pairing)
        return result

    def _semantic(self, item: dict[str, Any], pred_row: dict) -> ItemResult:
        ignore = 255 if self.ignore_value is None else self.ignore_value
        try:
            gt = _class_map(self._gt, json.loads(item["gt_row"]), ignore)
            # a PNG prediction: its rows counted against the ground truth's as they are decoded
            with _fused_scan("joint", gt) as fused:
                pred = _class_map(self._pred, pred_row, ignore)
            joint = fused.result if fused.array is pred else None
        except FormatError as e:
            raise ItemError(e.code, e.message) from None
        if gt.shape != pred.shape:
            raise ItemError("size_mismatch", f"{item['item_id']}: prediction {pred.shape[1]}x{pred.shape[0]}, "
                                             f"ground truth {gt.shape[1]}x{gt.shape[0]}")
        fast = self._scores_u8(gt, pred, joint)
        if fast is not None:
            return fast
        return self._scores_general(item["item_id"], gt, pred)

    def _scores_general(self, item_id: str, gt: np.ndarray, pred: np.ndarray) -> ItemResult:
        """Any integer dtypes, and every pair with an out-of-range value the policy refuses."""
        try:
            res = metrics._confusion(gt, pred, self.num_classes, self.ignore_value, self.out_of_range)
        except metrics.OutOfRangeError as e:
            n_gt, n_pred = sum(e.gt_out_of_range.values()), sum(e.pred_out_of_range.values())
            fields = {"width": gt.shape[1], "height": gt.shape[0], "gt_out_of_range": n_gt}
            if e.gt_out_of_range:
                raise ItemError("gt_out_of_range", f"{item_id}: {n_gt} ground-truth pixels hold values >= "
                                f"--num-classes {self.num_classes} (not the ignore value): "
                                f"{metrics._fmt_values(e.gt_out_of_range)}", fields=fields) from None
            fields["pred_out_of_range"] = n_pred
            raise ItemError("out_of_range", f"{item_id}: {n_pred} predicted pixels hold values >= --num-classes "
                            f"{self.num_classes}: {metrics._fmt_values(e.pred_out_of_range)} "
                            "(--out-of-range error)", fields=fields) from None
        except ValueError as e:
            raise ItemError("bad_values", str(e)) from None
        cm = res.matrix
        tp, fp, fn = res.tp_fp_fn()
        # = metrics.iou / metrics.dice of res, from the counts at hand (the kernel's matrix
        # needs none of their input checks)
        iou = metrics._score("iou", tp, fp, fn, self._fill)
        dice = metrics._score("dice", tp, fp, fn, self._fill)
        # rows for the classes present in gt or prediction only, as columns of lists (a
        # NumPy scalar per cell cost ~100 us an image with a few dozen classes)
        present = np.flatnonzero(tp + fp + fn)
        rows = {"class_id": present.tolist(), "tp": tp[present].tolist(), "fp": fp[present].tolist(),
                "fn": fn[present].tolist(), "iou": _nan_none_list(iou[present].tolist()),
                "dice": _nan_none_list(dice[present].tolist())}
        n_pred_out = int(res.pred_out_of_range_per_class.sum())
        total = int(cm.sum()) + (n_pred_out if res.policy == "fn" else 0)
        fields = {
            "width": gt.shape[1], "height": gt.shape[0], "pixels": total, "ignored": int(res.ignored),
            "accuracy": float(tp.sum() / total) if total else None,
            "miou": _nan_to_none(metrics.mean_score(iou)), "mdice": _nan_to_none(metrics.mean_score(dice)),
            "pred_out_of_range": n_pred_out, "gt_out_of_range": sum(res.gt_out_of_range.values()),
        }
        g, p = np.nonzero(cm)
        cells = {"gt_class": g.tolist(), "pred_class": p.tolist(), "pixels": cm[g, p].tolist()}
        if n_pred_out:
            og, op, on = _out_of_range_cells(gt, pred, self.num_classes, self.ignore_value)
            cells = {k: v + extra for (k, v), extra in zip(cells.items(), (og, op, on))}
        return ItemResult(fields, {"image_scores": rows, "confusion": cells})

    def _scores_u8(self, gt: np.ndarray, pred: np.ndarray, joint: np.ndarray | None = None) -> ItemResult | None:
        """The usual pair -- two uint8 maps -- in one kernel call
        (:func:`fastmask.kernels.confusion.image_scores_u8`: the same numbers as the general
        path, bit for bit); None when the general path must name refused values.
        ``joint``: the pair's joint histogram when the decoder counted it (then only the
        scores are computed here, :func:`~fastmask.kernels.confusion.image_scores_joint`)."""
        if not (gt.dtype is _U8 and pred.dtype is _U8):
            return None
        ig = self.ignore_value
        u8_ignore = ig is not None and 0 <= ig <= 255
        if joint is not None:
            ints, floats = _kc.image_scores_joint(joint, self.num_classes, ig if u8_ignore else 0, u8_ignore,
                                                  self._fill, self.out_of_range == "fn")
        else:
            ints, floats = _kc.image_scores_u8(np.ascontiguousarray(gt).reshape(-1),
                                               np.ascontiguousarray(pred).reshape(-1), self.num_classes,
                                               ig if u8_ignore else 0, u8_ignore, self._fill,
                                               self.out_of_range == "fn")
        ints = ints.tolist()
        if (ints[_kc.IMG_GT_OUT] and self.out_of_range != "ignore") or (ints[_kc.IMG_PRED_OUT] and self.out_of_range == "error"):
            return None  # refused values: the general path names them
        floats = floats.tolist()
        npres, nz, no = ints[_kc.IMG_N_PRESENT], ints[_kc.IMG_N_CELLS], ints[_kc.IMG_N_OUT_CELLS]
        q = _kc.IMG_HEADER
        total = ints[_kc.IMG_TOTAL]
        fields = {
            "width": gt.shape[1], "height": gt.shape[0], "pixels": total, "ignored": ints[_kc.IMG_IGNORED],
            "accuracy": ints[_kc.IMG_TP] / total if total else None,
            "miou": _nan_to_none(floats[0]), "mdice": _nan_to_none(floats[1]),
            "pred_out_of_range": ints[_kc.IMG_PRED_OUT], "gt_out_of_range": ints[_kc.IMG_GT_OUT],
        }
        rows = {"class_id": ints[q:q + npres], "tp": ints[q + npres:q + 2 * npres],
                "fp": ints[q + 2 * npres:q + 3 * npres], "fn": ints[q + 3 * npres:q + 4 * npres],
                "iou": _nan_none_list(floats[2:2 + npres]), "dice": _nan_none_list(floats[2 + npres:])}
        q += 4 * npres
        o = q + 3 * nz
        cells = {"gt_class": ints[q:q + nz] + ints[o:o + no], "pred_class": ints[q + nz:q + 2 * nz] + ints[o + no:o + 2 * no],
                 "pixels": ints[q + 2 * nz:q + 3 * nz] + ints[o + 2 * no:o + 3 * no]}
        return ItemResult(fields, {"image_scores": rows, "confusion": cells})

    def _panoptic(self, item: dict[str, Any]) -> ItemResult:
        """PQ counts of one image pair (panopticapi's rules, :class:`fastmask.metrics.PanopticAccumulator`)."""
        try:
            g = self._gt.read_item(json.loads(item["gt_row"]))
            p = self._pred.read_item(json.loads(item["pred_row"]))
        except FormatError as e:
            raise ItemError(e.code, e.message) from None
        for role, data, ds, flag in (("ground truth", g, self._gt, "--gt-masks"), ("prediction", p, self._pred, "--pred-masks")):
            if data.instance_mask is None:
                where = data.extra.get("expected_mask")
                folder = getattr(ds, "masks_dir", None)
                detail = (f": {where} not found (PNG folder searched: {folder}; {flag} names another)" if where
                          else " (no annotation record names one)")
                raise ItemError("missing_mask", f"{item['item_id']}: no panoptic PNG for the {role}{detail}")
        acc = metrics.PanopticAccumulator(self._categories)
        try:
            acc.add(g.instance_mask.array, g.segments or [], p.instance_mask.array, p.segments or [])
        except ValueError as e:
            raise ItemError("bad_segments", f"{item['item_id']}: {e}") from None
        rows = [{"category_id": int(c), "tp": int(tp), "fp": int(fp), "fn": int(fn), "iou_sum": float(s)}
                for c, tp, fp, fn, s in zip(acc.category_ids, acc.tp, acc.fp, acc.fn, acc.iou_sum) if tp or fp or fn]
        h, w = g.instance_mask.array.shape
        return ItemResult({"width": w, "height": h}, {"pq_counts": rows})

    def reduce_shard(self, shard: ShardResult) -> dict:
        out = {"scoring": _scoring_counts(shard.items)}
        if self._categories is not None:
            totals: dict[int, list] = {}
            t = shard.tables["pq_counts"]
            for c, tp, fp, fn, s in zip(*(t.column(k).to_pylist() for k in ("category_id", "tp", "fp", "fn", "iou_sum"))):
                e = totals.setdefault(c, [0, 0, 0, 0.0])
                e[0] += tp
                e[1] += fp
                e[2] += fn
                e[3] += s
            out["pq"] = {str(c): totals[c] for c in sorted(totals)}
            return out
        n = self.num_classes
        cm = np.zeros((n, n), np.int64)
        t = shard.tables["confusion"]
        g, p, px = (t.column(k).to_numpy() for k in ("gt_class", "pred_class", "pixels"))
        inside = p < n
        np.add.at(cm, (g[inside], p[inside]), px[inside])
        # cells of out-of-range predicted values: per ground-truth class
        oor = np.zeros(n, np.int64)
        np.add.at(oor, g[~inside], px[~inside])
        per_image = {}
        for key in ("miou", "mdice", "accuracy"):
            vals = [v for v in shard.items.column(key).to_pylist() if v is not None]
            per_image[key] = [float(sum(vals)), len(vals)]
        out.update({"cm": cm.tolist(), "pred_out_of_range_per_class": [int(v) for v in oor], "per_image": per_image})
        return out

    def finalize(self, summaries: list[dict]) -> dict:
        scoring = {**_merge_scoring([s.get("scoring", {}) for s in summaries]),
                   **listing_summary(self._gt, self._pred)}
        if self._categories is not None:
            return {**scoring, **self._finalize_pq(summaries)}
        n = self.num_classes
        cm = np.zeros((n, n), np.int64)
        oor = np.zeros(n, np.int64)
        sums = {"miou": [0.0, 0], "mdice": [0.0, 0], "accuracy": [0.0, 0]}
        for s in summaries:
            cm += np.asarray(s["cm"], np.int64).reshape(n, n)
            oor += np.asarray(s.get("pred_out_of_range_per_class", [0] * n), np.int64)
            for k, (total, count) in s["per_image"].items():
                sums[k][0] += total
                sums[k][1] += count
        counts = metrics.ConfusionCounts(cm, 0, int(oor.sum()), pred_out_of_range_per_class=oor,
                                         policy="ignore" if self.out_of_range == "ignore" else "fn")
        iou = metrics.iou(counts, self.empty_policy)
        dice = metrics.dice(counts, self.empty_policy)
        pa_ = metrics.pixel_accuracy(counts)
        out = {
            **scoring,
            "num_classes": n,
            "out_of_range": self.out_of_range,
            "confusion_matrix": cm.tolist(),
            # per ground-truth class: pixels predicted >= num_classes (FN under out_of_range "fn")
            "pred_out_of_range_per_class": oor.tolist(),
            "iou": [_nan_to_none(v) for v in iou],
            "dice": [_nan_to_none(v) for v in dice],
            "precision": [_nan_to_none(v) for v in metrics.precision(counts, self.empty_policy)],
            "recall": [_nan_to_none(v) for v in metrics.recall(counts, self.empty_policy)],
            "miou": _nan_to_none(metrics.mean_score(iou)),
            "mdice": _nan_to_none(metrics.mean_score(dice)),
            "pixel_accuracy": None if pa_ != pa_ else pa_,
        }
        # a different aggregation, named apart: the mean over images of per-image scores
        for k, (total, count) in sums.items():
            out[f"image_averaged_{k}"] = total / count if count else None
        return out

    def _finalize_pq(self, summaries: list[dict]) -> dict:
        acc = metrics.PanopticAccumulator(self._categories)
        index = {int(c): i for i, c in enumerate(acc.category_ids)}
        for s in summaries:
            for c, (tp, fp, fn, iou_sum) in s.get("pq", {}).items():
                i = index[int(c)]
                acc.tp[i] += tp
                acc.fp[i] += fp
                acc.fn[i] += fn
                acc.iou_sum[i] += iou_sum
        r = acc.result()

        def grp(g):
            return {"pq": _nan_to_none(g.pq), "sq": _nan_to_none(g.sq), "rq": _nan_to_none(g.rq), "n": g.n}

        return {"panoptic": {"all": grp(r.all), "things": grp(r.things), "stuff": grp(r.stuff),
                             "per_class": {str(c): {"pq": _nan_to_none(v.pq), "sq": _nan_to_none(v.sq),
                                                    "rq": _nan_to_none(v.rq), "tp": v.tp, "fp": v.fp, "fn": v.fn}
                                           for c, v in r.per_class.items() if v.tp or v.fp or v.fn}}}


def _out_of_range_cells(gt: np.ndarray, pred: np.ndarray, n: int, ignore: int | None) -> tuple[list, list, list]:
    """(gt class, predicted value >= n, pixels) of one image, ordered by class then value
    (the kernel's order)."""
    g = gt.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    m = (g < n) & (p >= n)
    if ignore is not None:
        m &= g != ignore
    pairs, counts = np.unique(np.stack([g[m], p[m]]), axis=1, return_counts=True)
    return pairs[0].tolist(), pairs[1].tolist(), counts.tolist()


def _empty_scoring() -> dict:
    return {"ground_truth_items": 0, "scored_items": 0, "not_scored": {}, "not_scored_examples": {},
            "extra_predictions": 0, "paired_by_file_name": 0, "pred_out_of_range_pixels": 0,
            "items_with_pred_out_of_range": 0, "gt_out_of_range_pixels": 0}


def _scoring_counts(items: pa.Table) -> dict:
    """Of one shard's items: ground-truth items, those scored, the rest by error code (with
    a few example ids), extra predictions, pairs made by file name, out-of-range pixels."""
    n = items.num_rows
    col = {k: items.column(k).to_pylist() if k in items.column_names else [None] * n
           for k in ("item_id", "status", "error_code", "paired_by", "pred_out_of_range", "gt_out_of_range")}
    out = _empty_scoring()
    for i in range(n):
        code = col["error_code"][i]
        if code in NOT_GROUND_TRUTH:
            out["extra_predictions"] += 1
            continue
        out["ground_truth_items"] += 1
        if col["status"][i] == "ok":
            out["scored_items"] += 1
        else:
            out["not_scored"][code] = out["not_scored"].get(code, 0) + 1
            ex = out["not_scored_examples"].setdefault(code, [])
            if len(ex) < _EXAMPLES:
                ex.append(col["item_id"][i])
        out["paired_by_file_name"] += col["paired_by"][i] == "file_name"
        k = col["pred_out_of_range"][i] or 0
        out["pred_out_of_range_pixels"] += k
        out["items_with_pred_out_of_range"] += bool(k)
        out["gt_out_of_range_pixels"] += col["gt_out_of_range"][i] or 0
    return out


def _merge_scoring(parts: list[dict]) -> dict:
    """The shards' :func:`_scoring_counts` added up (examples: the first five, shard order)."""
    out = _empty_scoring()
    for p in parts:
        for k, v in p.items():
            if k == "not_scored":
                for code, c in v.items():
                    out[k][code] = out[k].get(code, 0) + c
            elif k == "not_scored_examples":
                for code, ids in v.items():
                    ex = out[k].setdefault(code, [])
                    ex += ids[:_EXAMPLES - len(ex)]
            else:
                out[k] += v
    out["not_scored"] = dict(sorted(out["not_scored"].items()))
    out["not_scored_examples"] = dict(sorted(out["not_scored_examples"].items()))
    return out


def _nan_none_list(values: list) -> list:
    """NaN as None (null in the table)."""
    return [None if v != v else v for v in values]


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


PQ_CLASSES_SCHEMA = pa.schema([("class_id", pa.int64()), ("name", pa.string()), ("isthing", pa.bool_()),
                               ("pq", pa.float64()), ("sq", pa.float64()), ("rq", pa.float64()),
                               ("tp", pa.int64()), ("fp", pa.int64()), ("fn", pa.int64())])


def write_pq_classes_table(job: EvaluateJob, out_dir) -> pa.Table:
    """After a panoptic run: ``pq_classes/part-00000.parquet``, per category (sorted by id) its
    PQ / SQ / RQ and matching counts; categories with no segment on either side are left out
    (panopticapi leaves them out of the averages too)."""
    from ..engine.sink import ensure_dir, read_json, report_root, write_parquet_atomic

    out = report_root(out_dir)  # a local folder, or a URL's Location
    per_class = read_json(out / "run.json")["summary"]["panoptic"]["per_class"]
    cats = {int(c["id"]): c for c in job._categories or [] if "id" in c}
    rows = [{"class_id": c, "name": cats.get(c, {}).get("name"), "isthing": bool(cats.get(c, {}).get("isthing")),
             **{k: v[k] for k in ("pq", "sq", "rq", "tp", "fp", "fn")}}
            for c, v in sorted(((int(c), v) for c, v in per_class.items()), key=lambda cv: cv[0])]
    table = pa.Table.from_pylist(rows, schema=PQ_CLASSES_SCHEMA)
    ensure_dir(out / "pq_classes")
    write_parquet_atomic(table, out / "pq_classes" / "part-00000.parquet")
    return table


def write_classes_table(job: EvaluateJob, out_dir) -> pa.Table:
    """After the run: ``classes/part-00000.parquet`` (per class TP/FP/FN, IoU, Dice, precision,
    recall, and the pixels predicted out of range -- part of FN under ``out_of_range="fn"``);
    a panoptic run writes :func:`write_pq_classes_table` instead."""
    from ..engine.sink import ensure_dir, read_json, report_root, write_parquet_atomic

    if job._categories is not None:
        return write_pq_classes_table(job, out_dir)
    out = report_root(out_dir)  # a local folder, or a URL's Location
    summary = read_json(out / "run.json")["summary"]
    cm = np.asarray(summary["confusion_matrix"], np.int64)
    oor = np.asarray(summary.get("pred_out_of_range_per_class") or [0] * job.num_classes, np.int64)
    counts = metrics.ConfusionCounts(cm, 0, int(oor.sum()), pred_out_of_range_per_class=oor,
                                     policy="ignore" if job.out_of_range == "ignore" else "fn")
    tp, fp, fn = counts.tp_fp_fn()
    names = dict(job._gt.labelmap.names) if job._gt.labelmap else {}
    rows = [
        {"class_id": c, "name": names.get(c), "tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c]),
         "iou": summary["iou"][c], "dice": summary["dice"][c], "precision": summary["precision"][c],
         "recall": summary["recall"][c], "pred_out_of_range": int(oor[c])}
        for c in range(job.num_classes)
    ]
    schema = pa.schema([("class_id", pa.int64()), ("name", pa.string()), ("tp", pa.int64()), ("fp", pa.int64()),
                        ("fn", pa.int64()), ("iou", pa.float64()), ("dice", pa.float64()),
                        ("precision", pa.float64()), ("recall", pa.float64()), ("pred_out_of_range", pa.int64())])
    table = pa.Table.from_pylist(rows, schema=schema)
    ensure_dir(out / "classes")
    write_parquet_atomic(table, out / "classes" / "part-00000.parquet")
    return table
