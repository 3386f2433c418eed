"""The ``evaluate`` job: prediction masks against ground truth, IoU / Dice per class.

Items are paired by item id (the union of both datasets: a missing or an extra
prediction is an error row, never silently dropped). Per pair: the confusion matrix
(rows = ground truth, columns = prediction; pixels whose ground truth is the ignore value
count nowhere) and the per-image scores. Dataset scores sum the matrices of all images
before dividing (mmsegmentation's definition); the mean of per-image scores is reported
separately. Classes absent from both ground truth and prediction follow ``empty_policy``
(NaN by default, left out of the means).

Example::

    job = EvaluateJob(open_dataset("gt/"), open_dataset("pred/"), num_classes=19)
    run_job(job, job.manifest(), "eval-report/")
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from .. import metrics
from ..kernels import confusion as _kc
from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import Dataset, FormatError
from .coverage import coco_class_map

_U8 = np.dtype(np.uint8)


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
        ]
    )
    tables = {
        "image_scores": pa.schema(
            [("class_id", pa.int64()), ("tp", pa.int64()), ("fp", pa.int64()), ("fn", pa.int64()),
             ("iou", pa.float64()), ("dice", pa.float64())]
        ),
        # the nonzero cells of each image's confusion matrix (rows = ground truth)
        "confusion": pa.schema([("gt_class", pa.int64()), ("pred_class", pa.int64()), ("pixels", pa.int64())]),
        # panoptic inputs: per image and category, panopticapi's matching counts
        "pq_counts": pa.schema([("category_id", pa.int64()), ("tp", pa.int64()), ("fp", pa.int64()),
                                ("fn", pa.int64()), ("iou_sum", pa.float64())]),
    }

    def __init__(self, gt: Dataset, pred: Dataset, num_classes: int, *, ignore_value: int | None = 255,
                 empty_policy: str = "nan"):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if empty_policy not in ("nan", "one", "zero"):
            raise ValueError(f"empty_policy must be nan, one or zero, got {empty_policy!r}")
        self._gt = gt
        self._pred = pred
        self._categories = None
        if gt.layout == "coco_panoptic" and pred.layout == "coco_panoptic":
            self._categories = [c for c in gt.meta().get("categories", []) if isinstance(c, dict)]
        self.num_classes = int(num_classes)
        self.ignore_value = ignore_value
        self.empty_policy = empty_policy
        self._fill = metrics._check_policy(empty_policy)

    def arguments(self) -> dict[str, Any]:
        return {"gt": self._gt.root, "pred": self._pred.root, "num_classes": self.num_classes,
                "ignore_value": self.ignore_value, "empty_policy": self.empty_policy}

    def manifest(self) -> pa.Table:
        """The union of both datasets' items, paired by id (rows kept as JSON)."""
        gt = {r["item_id"]: r for r in self._gt.manifest().to_pylist()}
        pred = {r["item_id"]: r for r in self._pred.manifest().to_pylist()}
        ids = sorted(set(gt) | set(pred))
        return pa.table({
            "item_id": pa.array(ids, pa.string()),
            "gt_row": pa.array([json.dumps(gt[i]) if i in gt else None for i in ids], pa.string()),
            "pred_row": pa.array([json.dumps(pred[i]) if i in pred else None for i in ids], pa.string()),
        })

    def process(self, item: dict[str, Any]) -> ItemResult:
        if item["gt_row"] is None:
            raise ItemError("extra_prediction", f"{item['item_id']}: a prediction without ground truth")
        if item["pred_row"] is None:
            raise ItemError("missing_prediction", f"{item['item_id']}: no prediction for this ground truth")
        if self._categories is not None:
            return self._panoptic(item)
        ignore = 255 if self.ignore_value is None else self.ignore_value
        try:
            gt = _class_map(self._gt, json.loads(item["gt_row"]), ignore)
            pred = _class_map(self._pred, json.loads(item["pred_row"]), ignore)
        except FormatError as e:
            raise ItemError(e.code, e.message) from None
        if gt.shape != pred.shape:
            raise ItemError("size_mismatch", f"{item['item_id']}: prediction {pred.shape[1]}x{pred.shape[0]}, "
                                             f"ground truth {gt.shape[1]}x{gt.shape[0]}")
        fast = self._scores_u8(gt, pred)
        if fast is not None:
            return fast
        try:
            res = metrics.confusion_matrix(gt, pred, self.num_classes, self.ignore_value, out_of_range="count")
        except ValueError as e:
            raise ItemError("bad_values", str(e)) from None
        if res.out_of_range:
            raise ItemError("out_of_range", f"{item['item_id']}: {res.out_of_range} pixels hold values >= "
                                            f"--num-classes {self.num_classes} (gt {res.gt_out_of_range}, "
                                            f"pred {res.pred_out_of_range})")
        cm = res.matrix
        tp = np.diag(cm)
        fp = cm.sum(axis=0) - tp
        fn = cm.sum(axis=1) - tp
        # = metrics.iou / metrics.dice of cm, from the counts at hand (the kernel's matrix
        # needs none of their input checks)
        iou = metrics._score("iou", tp, fp, fn, self._fill)
        dice = metrics._score("dice", tp, fp, fn, self._fill)
        # rows for the classes present in gt or prediction only, as columns of lists (a
        # NumPy scalar per cell cost ~100 us an image with a few dozen classes)
        present = np.flatnonzero(tp + fp + fn)
        rows = {"class_id": present.tolist(), "tp": tp[present].tolist(), "fp": fp[present].tolist(),
                "fn": fn[present].tolist(), "iou": _nan_none_list(iou[present].tolist()),
                "dice": _nan_none_list(dice[present].tolist())}
        total = int(cm.sum())
        fields = {
            "width": gt.shape[1], "height": gt.shape[0], "pixels": total, "ignored": int(res.ignored),
            "accuracy": float(tp.sum() / total) if total else None,
            "miou": _nan_to_none(metrics.mean_score(iou)), "mdice": _nan_to_none(metrics.mean_score(dice)),
        }
        g, p = np.nonzero(cm)
        cells = {"gt_class": g.tolist(), "pred_class": p.tolist(), "pixels": cm[g, p].tolist()}
        return ItemResult(fields, {"image_scores": rows, "confusion": cells})

    def _scores_u8(self, gt: np.ndarray, pred: np.ndarray) -> ItemResult | None:
        """The usual pair -- two uint8 maps, no value out of range -- in one kernel call
        (:func:`fastmask.kernels.confusion.image_scores_u8`: the same numbers as the general
        path below, bit for bit); None for anything else."""
        if not (gt.dtype is _U8 and pred.dtype is _U8):
            return None
        ig = self.ignore_value
        u8_ignore = ig is not None and 0 <= ig <= 255
        ints, floats = _kc.image_scores_u8(np.ascontiguousarray(gt).reshape(-1), np.ascontiguousarray(pred).reshape(-1),
                                           self.num_classes, ig if u8_ignore else 0, u8_ignore, self._fill)
        ints = ints.tolist()
        if ints[_kc.IMG_EXCLUDED]:
            return None  # out-of-range values: the general path names them
        floats = floats.tolist()
        npres, nz = ints[_kc.IMG_N_PRESENT], ints[_kc.IMG_N_CELLS]
        q = _kc.IMG_HEADER
        total = ints[_kc.IMG_TOTAL]
        fields = {
            "width": gt.shape[1], "height": gt.shape[0], "pixels": total, "ignored": ints[_kc.IMG_IGNORED],
            "accuracy": ints[_kc.IMG_TP] / total if total else None,
            "miou": _nan_to_none(floats[0]), "mdice": _nan_to_none(floats[1]),
        }
        rows = {"class_id": ints[q:q + npres], "tp": ints[q + npres:q + 2 * npres],
                "fp": ints[q + 2 * npres:q + 3 * npres], "fn": ints[q + 3 * npres:q + 4 * npres],
                "iou": _nan_none_list(floats[2:2 + npres]), "dice": _nan_none_list(floats[2 + npres:])}
        q += 4 * npres
        cells = {"gt_class": ints[q:q + nz], "pred_class": ints[q + nz:q + 2 * nz], "pixels": ints[q + 2 * nz:]}
        return ItemResult(fields, {"image_scores": rows, "confusion": cells})

    def _panoptic(self, item: dict[str, Any]) -> ItemResult:
        """PQ counts of one image pair (panopticapi's rules, :class:`fastmask.metrics.PanopticAccumulator`)."""
        try:
            g = self._gt.read_item(json.loads(item["gt_row"]))
            p = self._pred.read_item(json.loads(item["pred_row"]))
        except FormatError as e:
            raise ItemError(e.code, e.message) from None
        if g.instance_mask is None or p.instance_mask is None:
            raise ItemError("missing_mask", f"{item['item_id']}: no panoptic PNG for "
                                            + ("the ground truth" if g.instance_mask is None else "the prediction"))
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
        if self._categories is not None:
            totals: dict[int, list] = {}
            t = shard.tables["pq_counts"]
            for c, tp, fp, fn, s in zip(*(t.column(k).to_pylist() for k in ("category_id", "tp", "fp", "fn", "iou_sum"))):
                e = totals.setdefault(c, [0, 0, 0, 0.0])
                e[0] += tp
                e[1] += fp
                e[2] += fn
                e[3] += s
            return {"pq": {str(c): totals[c] for c in sorted(totals)}}
        n = self.num_classes
        cm = np.zeros((n, n), np.int64)
        t = shard.tables["confusion"]
        np.add.at(cm, (t.column("gt_class").to_numpy(), t.column("pred_class").to_numpy()), t.column("pixels").to_numpy())
        per_image = {}
        for key in ("miou", "mdice", "accuracy"):
            vals = [v for v in shard.items.column(key).to_pylist() if v is not None]
            per_image[key] = [float(sum(vals)), len(vals)]
        return {"cm": cm.tolist(), "per_image": per_image}

    def finalize(self, summaries: list[dict]) -> dict:
        if self._categories is not None:
            return self._finalize_pq(summaries)
        n = self.num_classes
        cm = np.zeros((n, n), np.int64)
        sums = {"miou": [0.0, 0], "mdice": [0.0, 0], "accuracy": [0.0, 0]}
        for s in summaries:
            cm += np.asarray(s["cm"], np.int64).reshape(n, n)
            for k, (total, count) in s["per_image"].items():
                sums[k][0] += total
                sums[k][1] += count
        iou = metrics.iou(cm, self.empty_policy)
        dice = metrics.dice(cm, self.empty_policy)
        out = {
            "num_classes": n,
            "confusion_matrix": cm.tolist(),
            "iou": [_nan_to_none(v) for v in iou],
            "dice": [_nan_to_none(v) for v in dice],
            "precision": [_nan_to_none(v) for v in metrics.precision(cm, self.empty_policy)],
            "recall": [_nan_to_none(v) for v in metrics.recall(cm, self.empty_policy)],
            "miou": _nan_to_none(metrics.mean_score(iou)),
            "mdice": _nan_to_none(metrics.mean_score(dice)),
            "pixel_accuracy": _nan_to_none(metrics.pixel_accuracy(cm)) if cm.sum() else None,
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


def _nan_none_list(values: list) -> list:
    """NaN as None (null in the table)."""
    return [None if v != v else v for v in values]


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def write_classes_table(job: EvaluateJob, out_dir) -> pa.Table:
    """After the run: ``classes/part-00000.parquet`` (per class TP/FP/FN, IoU, Dice, precision, recall)."""
    from pathlib import Path

    from ..engine.sink import write_parquet_atomic

    out = Path(out_dir)
    summary = json.loads((out / "run.json").read_text())["summary"]
    cm = np.asarray(summary["confusion_matrix"], np.int64)
    tp = np.diag(cm)
    names = dict(job._gt.labelmap.names) if job._gt.labelmap else {}
    rows = [
        {"class_id": c, "name": names.get(c), "tp": int(tp[c]), "fp": int(cm[:, c].sum() - tp[c]),
         "fn": int(cm[c, :].sum() - tp[c]), "iou": summary["iou"][c], "dice": summary["dice"][c],
         "precision": summary["precision"][c], "recall": summary["recall"][c]}
        for c in range(job.num_classes)
    ]
    schema = pa.schema([("class_id", pa.int64()), ("name", pa.string()), ("tp", pa.int64()), ("fp", pa.int64()),
                        ("fn", pa.int64()), ("iou", pa.float64()), ("dice", pa.float64()),
                        ("precision", pa.float64()), ("recall", pa.float64())])
    table = pa.Table.from_pylist(rows, schema=schema)
    (out / "classes").mkdir(exist_ok=True)
    write_parquet_atomic(table, out / "classes" / "part-00000.parquet")
    return table
