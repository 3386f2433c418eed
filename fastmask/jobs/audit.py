"""The ``audit`` job: where a model's predictions disagree with the labels, and which
disagreements look like label errors rather than model errors.

Items pair as in ``evaluate`` (:func:`fastmask.jobs.evaluate.pair_items`: by item id, or
by COCO ``file_name`` between COCO and mask files), with the same error rows
(``missing_prediction``, ``extra_prediction``, ``ambiguous_pairing``, ``size_mismatch``,
unreadable files...), ignore value and ``out_of_range`` policy: a predicted value ``>=
num_classes`` is left out of the regions under ``"fn"`` and ``"ignore"`` (it says nothing
about the label) and makes the item an error row under ``"error"``; a ground-truth value
``>= num_classes`` (not the ignore value) is a ``gt_out_of_range`` error row but under
``"ignore"``. An optional confidence folder holds one 8- or 16-bit PNG per item (paired
like predictions): the model's confidence in its predicted class, 0..255 (0..65535) ->
0..1; an item without one is a ``missing_confidence`` error row.

COCO panoptic inputs are audited on their class maps (void -> background, crowd segments
of the ground truth -> ignore); when both sides carry instances (COCO instances or
panoptic segments), the items also count the instances matched one to one
(panopticapi's rule: same category, IoU > 0.5) and those left unmatched on either side.

Per item (:func:`fastmask.jobs.audit_score.find_regions`) the regions of disagreement
are written unscored to ``regions``; after all shards the dataset pass
(:func:`write_audit_tables`) reads the parts one at a time, scores every region against
the dataset's statistics (summed in the shard summaries: integer counts, so the scores do
not depend on shard size or worker count), fills ``score`` and ``label_quality`` in place,
and writes the ``classes`` table (per class pair and type: regions, pixels, items,
items holding the class, systematic rate).

Example::

    job = AuditJob(open_dataset("gt/"), open_dataset("pred/"), num_classes=19)
    run_job(job, job.manifest(), "audit-report/", finish=lambda out: write_audit_tables(job, out))
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import Dataset, FormatError
from . import audit_score as S
from .coverage import coco_class_map
from .evaluate import OUT_OF_RANGE_POLICIES, _COCO_LAYOUTS, _merge_scoring, _scoring_counts, pair_items, paired_prediction
from .listing import listing_summary, reuse_listings, store_listings
from .schema import BBOX_FIELDS

#: rows of the worst regions kept in the summary (printed, and shown first by ``fastmask report``)
WORST_KEPT = 50

REGIONS_SCHEMA = pa.schema(
    [("region", pa.int64()), ("type", pa.string()), ("gt_class", pa.int64()), ("gt_name", pa.string()),
     ("pred_class", pa.int64()), ("pred_name", pa.string()), ("area", pa.int64()), *BBOX_FIELDS,
     ("gt_object_area", pa.int64()), ("pred_blob_area", pa.int64()), ("covered_gt", pa.float64()),
     ("covered_pred", pa.float64()), ("thickness", pa.int64()), ("confidence", pa.float64()),
     ("systematic_rate", pa.float64()), ("typical_area", pa.float64()), ("pair_factor", pa.float64()),
     ("size_factor", pa.float64()), ("confidence_factor", pa.float64()), ("shape_factor", pa.float64()),
     ("coverage_factor", pa.float64()), ("miss_rate", pa.float64()), ("miss_factor", pa.float64()),
     ("score", pa.float64())]
)
OBJECTS_SCHEMA = pa.schema([("class_id", pa.int64()), ("area_bin", pa.int64()), ("gt_objects", pa.int64()),
                            ("pred_objects", pa.int64())])
CLASSES_SCHEMA = pa.schema(
    [("gt_class", pa.int64()), ("gt_name", pa.string()), ("pred_class", pa.int64()), ("pred_name", pa.string()),
     ("type", pa.string()), ("regions", pa.int64()), ("pixels", pa.int64()), ("items", pa.int64()),
     ("class_items", pa.int64()), ("systematic_rate", pa.float64()), ("mean_score", pa.float64())]
)


class AuditJob(Job):
    """Regions where ``pred`` disagrees with ``gt``, typed, then scored on the whole dataset."""

    name = "audit"
    item_schema = pa.schema(
        [
            ("width", pa.int32()), ("height", pa.int32()),
            # compared pixels (ground truth not ignore, values in range) and those that disagree
            ("pixels", pa.int64()), ("ignored", pa.int64()), ("disagree_pixels", pa.int64()),
            ("pred_item", pa.string()), ("paired_by", pa.string()), ("confidence_item", pa.string()),
            ("pred_out_of_range", pa.int64()), ("gt_out_of_range", pa.int64()),
            # regions per type (edge noise: regions and pixels, never scored)
            ("regions", pa.int64()), ("class_swap", pa.int64()), ("missing_label", pa.int64()),
            ("spurious_label", pa.int64()), ("boundary_offset", pa.int64()), ("edge_noise", pa.int64()),
            ("edge_noise_pixels", pa.int64()),
            # instance-level counts, when both sides carry instances (else null)
            ("gt_instances", pa.int64()), ("pred_instances", pa.int64()), ("matched_instances", pa.int64()),
            # filled by the dataset pass
            ("max_score", pa.float64()), ("label_quality", pa.float64()),
        ]
    )
    tables = {"regions": REGIONS_SCHEMA, "objects": OBJECTS_SCHEMA}

    def __init__(self, gt: Dataset, pred: Dataset, num_classes: int, *, confidence: Dataset | None = None,
                 ignore_value: int | None = 255, background: int | None = 0, connectivity: int = 8,
                 out_of_range: str = "fn", edge_width: int = S.DEFAULT_EDGE_WIDTH,
                 swap_fraction: float = S.DEFAULT_SWAP_FRACTION):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if out_of_range not in OUT_OF_RANGE_POLICIES:
            raise ValueError(f"out_of_range must be fn, ignore or error, got {out_of_range!r}")
        if connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
        if edge_width < 0:
            raise ValueError(f"edge_width must be >= 0, got {edge_width}")
        if not 0.0 < swap_fraction <= 1.0:
            raise ValueError(f"swap_fraction must be in (0, 1], got {swap_fraction}")
        self._gt, self._pred, self._conf = gt, pred, confidence
        self.num_classes = int(num_classes)
        self.ignore_value = ignore_value
        self.background = background
        self.connectivity = int(connectivity)
        self.out_of_range = out_of_range
        self.edge_width = int(edge_width)
        self.swap_fraction = float(swap_fraction)
        lm = gt.labelmap
        self._names = dict(lm.names) if lm is not None else {}

    def arguments(self) -> dict[str, Any]:
        return {"gt": self._gt.root, "pred": self._pred.root, "gt_layout": self._gt.layout,
                "pred_layout": self._pred.layout,
                "confidence": self._conf.root if self._conf is not None else None,
                "num_classes": self.num_classes, "ignore_value": self.ignore_value, "background": self.background,
                "connectivity": self.connectivity, "out_of_range": self.out_of_range, "edge_width": self.edge_width,
                "swap_fraction": self.swap_fraction}

    # ------------------------------------------------------------------ manifest

    def manifest(self) -> pa.Table:
        """One row per ground-truth item and per unpaired prediction (:func:`pair_items`),
        plus the paired confidence row (``conf_row``, JSON) when a confidence folder is given.

        The datasets' listing facts are saved in its schema metadata (:func:`store_listings`):
        a resumed run hands the saved manifest to :meth:`reuse_manifest` and lists none."""
        gt_coco, pred_coco = self._gt.layout in _COCO_LAYOUTS, self._pred.layout in _COCO_LAYOUTS
        gt_rows = self._gt.manifest().to_pylist()
        rows = pair_items(gt_rows, self._pred.manifest().to_pylist(),
                          gt_file_names=gt_coco and not pred_coco, pred_file_names=pred_coco and not gt_coco)
        conf: dict[str, dict] = {}
        if self._conf is not None:
            for r in pair_items(gt_rows, self._conf.manifest().to_pylist(), gt_file_names=gt_coco):
                if r["gt"] is not None:
                    conf[r["item_id"]] = {"row": r["pred"], "error": r["error"]}
        return store_listings(pa.table({
            "item_id": pa.array([r["item_id"] for r in rows], pa.string()),
            "gt_row": pa.array([None if r["gt"] is None else json.dumps(r["gt"]) for r in rows], pa.string()),
            "pred_row": pa.array([None if r["pred"] is None else json.dumps(r["pred"]) for r in rows], pa.string()),
            "paired_by": pa.array([r["paired_by"] for r in rows], pa.string()),
            "pairing_error": pa.array([None if r["error"] is None else json.dumps(r["error"]) for r in rows],
                                      pa.string()),
            "conf_row": pa.array([json.dumps(conf[r["item_id"]]) if r["item_id"] in conf and r["gt"] is not None
                                  else None for r in rows], pa.string()),
        }), self._datasets())

    def reuse_manifest(self, table: pa.Table) -> None:
        """A resumed run's saved manifest: the pairs are not made again and the datasets take
        their saved listing facts (the summary's listing problems and skipped reports)."""
        reuse_listings(table, self._datasets())

    def _datasets(self) -> dict:
        return {"gt": self._gt, "pred": self._pred, "confidence": self._conf}

    # ------------------------------------------------------------------ per item

    def process(self, item: dict[str, Any]) -> ItemResult:
        pred_row, fields = paired_prediction(item)
        try:
            return self._audit(item, pred_row, fields)
        except ItemError as e:
            raise ItemError(e.code, e.message, fields={**fields, **e.fields}, rows=e.rows) from None

    def _confidence(self, item: dict[str, Any], fields: dict, shape: tuple[int, int]) -> np.ndarray | None:
        if self._conf is None:
            return None
        entry = json.loads(item["conf_row"]) if item.get("conf_row") else {"row": None, "error": None}
        if entry["error"]:
            code, message = entry["error"]
            raise ItemError(code, f"confidence: {message}")
        if entry["row"] is None:
            raise ItemError("missing_confidence", f"{item['item_id']}: no confidence map for this ground truth "
                                                  f"in {self._conf.root}")
        fields["confidence_item"] = entry["row"].get("item_id")
        try:
            data = self._conf.read_item(entry["row"])
        except FormatError as e:
            raise ItemError(e.code, f"confidence: {e.message}") from None
        if data.mask is None:
            raise ItemError("missing_confidence", f"{item['item_id']}: the confidence map could not be found")
        a = data.mask.array
        if a.ndim != 2 or a.dtype not in (np.uint8, np.uint16):
            raise ItemError("bad_confidence", f"{item['item_id']}: a confidence map must be an 8- or 16-bit "
                                              f"grey PNG, got {a.dtype} of shape {a.shape}")
        if a.shape != shape:
            raise ItemError("size_mismatch", f"{item['item_id']}: confidence {a.shape[1]}x{a.shape[0]}, "
                                             f"ground truth {shape[1]}x{shape[0]}")
        return a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 65535.0)

    def _audit(self, item: dict[str, Any], pred_row: dict, fields: dict) -> ItemResult:
        ignore = 255 if self.ignore_value is None else self.ignore_value
        gt_row = json.loads(item["gt_row"])
        try:
            gdata = self._gt.read_item(gt_row)
            pdata = self._pred.read_item(pred_row)
            gt = _class_map(self._gt, gdata, gt_row, ignore, item["item_id"], "ground truth", gt_side=True)
            pred = _class_map(self._pred, pdata, pred_row, ignore, item["item_id"], "prediction", gt_side=False)
        except FormatError as e:
            raise ItemError(e.code, e.message) from None
        if gt.shape != pred.shape:
            raise ItemError("size_mismatch", f"{item['item_id']}: prediction {pred.shape[1]}x{pred.shape[0]}, "
                                             f"ground truth {gt.shape[1]}x{gt.shape[0]}")
        h, w = gt.shape
        fields.update(width=w, height=h)
        conf = self._confidence(item, fields, gt.shape)
        n = self.num_classes
        found = S.find_regions(gt, pred, num_classes=n, ignore_value=self.ignore_value, background=self.background,
                               connectivity=self.connectivity, edge_width=self.edge_width,
                               swap_fraction=self.swap_fraction, confidence=conf)
        c = found.counts
        n_gout, n_pout = c["gt_out_of_range"], c["pred_out_of_range"]
        fields.update(gt_out_of_range=n_gout, pred_out_of_range=n_pout, ignored=c["ignored"])
        if (n_gout and self.out_of_range != "ignore") or (n_pout and self.out_of_range == "error"):
            valid_gt = gt != self.ignore_value if self.ignore_value is not None else np.ones(gt.shape, bool)
            g_out = valid_gt & ((gt >= n) | (gt < 0))
            if n_gout:
                raise ItemError("gt_out_of_range", f"{item['item_id']}: {n_gout} ground-truth pixels hold values >= "
                                f"--num-classes {n} (not the ignore value): {_values(gt[g_out])}", fields=fields)
            p_out = valid_gt & ~g_out & ((pred >= n) | (pred < 0))
            raise ItemError("out_of_range", f"{item['item_id']}: {n_pout} predicted pixels hold values >= "
                            f"--num-classes {n}: {_values(pred[p_out])} (--out-of-range error)", fields=fields)
        fields.update(pixels=c["pixels"], disagree_pixels=c["disagree_pixels"], regions=len(found.regions["type"]),
                      edge_noise_pixels=c["edge_noise_pixels"], **{t: c[t] for t in S.REGION_TYPES})
        fields.update(_instance_counts(gdata, pdata, gt_row, pred_row))
        regions = dict(found.regions)
        regions["gt_name"] = [self._names.get(v) for v in regions["gt_class"]]
        regions["pred_name"] = [self._names.get(v) for v in regions["pred_class"]]
        return ItemResult(fields, {"regions": regions, "objects": found.objects})

    # ------------------------------------------------------------------ reduces

    def reduce_shard(self, shard: ShardResult) -> dict:
        out = {"scoring": _scoring_counts(shard.items)}
        t = shard.tables["regions"]
        pairs: dict[str, list[int]] = {}
        seen: set[tuple] = set()
        cols = ("item_id", "type", "gt_class", "pred_class", "area")
        for i, ty, g, p, a in zip(*(t.column(k).to_pylist() for k in cols)):
            key = f"{ty}|{g}|{p}"
            e = pairs.setdefault(key, [0, 0, 0])
            e[0] += 1
            e[1] += a
            if (i, key) not in seen:  # items holding such a region (one item lies in one shard)
                seen.add((i, key))
                e[2] += 1
        o = shard.tables["objects"]
        hists: dict[str, dict[str, dict[str, int]]] = {"gt_hist": {}, "pred_hist": {}}
        present: dict[str, set] = {"gt_items": set(), "pred_items": set()}
        cols = ("item_id", "class_id", "area_bin", "gt_objects", "pred_objects")
        for i, c, b, ng, np_ in zip(*(o.column(k).to_pylist() for k in cols)):
            for side, items, v in (("gt_hist", "gt_items", ng), ("pred_hist", "pred_items", np_)):
                if v:
                    h = hists[side].setdefault(str(c), {})
                    h[str(b)] = h.get(str(b), 0) + v
                    present[items].add((i, c))
        items_of: dict[str, dict[str, int]] = {}
        for side, found in present.items():
            counts: dict[str, int] = {}
            for _i, c in found:
                counts[str(c)] = counts.get(str(c), 0) + 1
            items_of[side] = counts
        conf = [v for v in t.column("confidence").to_pylist() if v is not None]
        hist = np.bincount(S.confidence_bin(np.array(conf)), minlength=S.CONFIDENCE_BINS).tolist() if conf else []
        cov = [t.column(k).to_numpy(zero_copy_only=False) for k in ("covered_gt", "covered_pred")]
        found = {}
        for key, which, area_col in (("missed", S.is_miss, "gt_object_area"),
                                     ("false_blobs", S.is_false_blob, "pred_blob_area")):
            sel = which(*cov)
            octs, k = np.unique(S.octave(t.column(area_col).to_numpy(zero_copy_only=False)[sel]), return_counts=True)
            found[key] = {str(o): n for o, n in zip(octs.tolist(), k.tolist())}
        out["stats"] = {"pairs": pairs, **hists, **items_of, "confidence_hist": hist, **found}
        items = shard.items
        out["edge_noise"] = [int(sum(v or 0 for v in items.column(k).to_pylist())) for k in ("edge_noise", "edge_noise_pixels")]
        return out

    def finalize(self, summaries: list[dict]) -> dict:
        scoring = {**_merge_scoring([s.get("scoring", {}) for s in summaries]), **listing_summary(self._gt, self._pred)}
        stats = S.DatasetStats.merge([s.get("stats", {}) for s in summaries], self.background)
        by_type = {t: 0 for t in S.SCORED_TYPES}
        for (t, _g, _p), (r, _px, _n) in stats.pairs.items():
            by_type[t] = by_type.get(t, 0) + r
        return {**scoring, "num_classes": self.num_classes, "out_of_range": self.out_of_range,
                "connectivity": self.connectivity, "edge_width": self.edge_width, "swap_fraction": self.swap_fraction,
                "background": self.background, "ignore_value": self.ignore_value,
                "confidence_given": self._conf is not None,
                "regions": sum(by_type.values()), "regions_by_type": by_type,
                "edge_noise_regions": sum(s.get("edge_noise", [0, 0])[0] for s in summaries),
                "edge_noise_pixels": sum(s.get("edge_noise", [0, 0])[1] for s in summaries),
                "dataset_stats": stats.to_json()}


def _values(v: np.ndarray) -> str:
    from ..metrics import _fmt_values

    u, k = np.unique(v, return_counts=True)
    return _fmt_values({int(a): int(b) for a, b in zip(u.tolist(), k.tolist())})


def _class_map(dataset: Dataset, data, row: dict, ignore: int, item_id: str, role: str, *, gt_side: bool) -> np.ndarray:
    """The class map of an item: mask, rasterized COCO annotations, or panoptic segments by category."""
    if data.annotations is not None:
        w, h = row.get("width"), row.get("height")
        if not w or not h:
            raise ItemError("unreadable", "the COCO image record has no usable width/height")
        return coco_class_map(data.annotations, int(h), int(w), ignore)[0]
    if data.instance_mask is not None:
        return panoptic_class_map(data.instance_mask.array, data.segments or [], ignore, crowd_ignore=gt_side)
    if data.mask is None:
        where = data.extra.get("expected_mask")
        raise ItemError("missing_mask", f"{item_id}: no class mask for the {role}" + (f" ({where} not found)" if where else ""))
    return data.mask.array


def panoptic_class_map(ids: np.ndarray, segments: list, ignore: int, *, crowd_ignore: bool) -> np.ndarray:
    """Class map of a panoptic id map: each segment's ``category_id``; void (0) and ids without a
    segment -> 0 (background); crowd segments -> ``ignore`` when ``crowd_ignore`` (ground truth).

    >>> ids = np.array([[0, 5], [7, 7]], np.uint32)
    >>> panoptic_class_map(ids, [{"id": 5, "category_id": 3}, {"id": 7, "category_id": 9, "iscrowd": 1}],
    ...                    255, crowd_ignore=True).tolist()
    [[0, 3], [255, 255]]
    """
    cats: dict[int, int] = {}
    for s in segments:
        if isinstance(s, dict) and isinstance(s.get("id"), int) and isinstance(s.get("category_id"), int):
            cats[s["id"]] = ignore if crowd_ignore and s.get("iscrowd") else s["category_id"]
    uniq, inv = np.unique(ids, return_inverse=True)
    lut = np.array([cats.get(int(u), 0) for u in uniq.tolist()], np.int64)
    out = lut[inv].reshape(ids.shape)
    hi = int(out.max()) if out.size else 0
    return out.astype(np.uint8 if hi < 256 else np.uint16 if hi < 65536 else np.int64)


def _instances(data, row: dict) -> tuple[np.ndarray, list[dict]] | None:
    """(instance id map, segments) of an item with instances (COCO annotations or panoptic), else None."""
    if data.instance_mask is not None and data.segments is not None:
        return data.instance_mask.array, [s for s in data.segments if isinstance(s, dict)]
    if data.annotations is not None and row.get("width") and row.get("height"):
        from ..raster import rasterize_annotations

        r = rasterize_annotations(data.annotations, int(row["height"]), int(row["width"]), kind="instance",
                                  crowd="class", on_error="skip")
        segs = [{"id": a["instance_id"], "category_id": a["category_id"], "iscrowd": int(a["iscrowd"])}
                for a in r.instances() if a["instance_id"] is not None and a["category_id"] is not None]
        return r.mask, segs
    return None


def _instance_counts(gdata, pdata, gt_row: dict, pred_row: dict) -> dict[str, int]:
    """Instances of each side and those matched one to one (same category, IoU > 0.5,
    crowd ground truth left out): panopticapi's matching, when both sides carry instances."""
    g = _instances(gdata, gt_row)
    p = _instances(pdata, pred_row) if g is not None else None
    if g is None or p is None or g[0].shape != p[0].shape:
        return {}
    from .. import metrics

    cats = sorted({int(s["category_id"]) for s in g[1] + p[1] if isinstance(s.get("category_id"), int)})
    acc = metrics.PanopticAccumulator([{"id": c, "isthing": 1} for c in cats])
    try:
        acc.add(g[0], g[1], p[0], p[1])
    except ValueError:
        return {}
    tp, fp, fn = int(np.sum(acc.tp)), int(np.sum(acc.fp)), int(np.sum(acc.fn))
    return {"gt_instances": tp + fn, "pred_instances": tp + fp, "matched_instances": tp}


# --------------------------------------------------------------------------- the dataset pass


def _parts(out, table: str) -> dict[str, Any]:
    """``{part file name: path or Location}`` of one table of the report (local or a URL)."""
    from ..engine.sink import list_parts

    return {str(p).rstrip("/").rsplit("/", 1)[-1]: p for p in list_parts(out, table)}


def write_audit_tables(job: AuditJob, out_dir) -> dict[str, Any]:
    """After the shards: score every region and fill ``label_quality``, one part at a time.

    Reads ``run.json``'s dataset statistics, then for each shard its ``regions`` part (the
    score columns are recomputed from the region's own columns, so running this twice gives
    the same parts) and its ``items`` part, rewritten atomically; writes
    ``classes/part-00000.parquet``. Memory: one shard's parts plus the class-pair table.
    Returns ``{"worst": [the WORST_KEPT best-scored region rows], "classes": table,
    "label_quality": {...}}``.
    """
    from ..engine.sink import ensure_dir, read_json, read_part, report_root, write_parquet_atomic

    out = report_root(out_dir)  # a local folder, or a URL's Location
    summary = read_json(out / "run.json")["summary"]
    stats = S.DatasetStats.from_json(summary["dataset_stats"])
    worst_rows: list[dict] = []
    score_sums: dict[tuple[str, int, int], float] = {}
    lq_sum, lq_n, flagged = 0.0, 0, 0
    item_parts = _parts(out, "items")
    for name, part in sorted(_parts(out, "regions").items()):
        t = read_part(part)
        cols = {k: t.column(k).to_pylist() for k in ("type", "gt_class", "pred_class", "area", "thickness",
                                                     "covered_gt", "covered_pred", "gt_object_area", "pred_blob_area",
                                                     "confidence")}
        scored = S.score_regions(cols, stats, edge_width=job.edge_width)
        for k in S.SCORE_COLUMNS:
            t = t.set_column(t.schema.get_field_index(k), t.schema.field(k), pa.array(scored[k], pa.float64()))
        write_parquet_atomic(t, part)
        ids = t.column("item_id").to_pylist()
        per_item: dict[Any, list[float]] = {}
        for i, s, ty, g, p in zip(ids, scored["score"], cols["type"], cols["gt_class"], cols["pred_class"]):
            per_item.setdefault(i, []).append(s)
            key = (ty, g, p)
            score_sums[key] = score_sums.get(key, 0.0) + s
        if scored["score"]:
            worst_rows = _keep_worst(worst_rows, t, scored["score"])
        ip = item_parts.get(name)
        if ip is None:
            continue
        items = read_part(ip)
        ok = items.column("status").to_pylist()
        quality, worst = [], []
        for i, st in zip(items.column("item_id").to_pylist(), ok):
            if st != "ok":
                quality.append(None)
                worst.append(None)
                continue
            sc = per_item.get(i, [])
            q = S.label_quality(sc)
            quality.append(q)
            worst.append(max(sc) if sc else None)
            lq_sum += q
            lq_n += 1
            flagged += bool(sc) and max(sc) >= 0.5
        for k, v in (("label_quality", quality), ("max_score", worst)):
            items = items.set_column(items.schema.get_field_index(k), items.schema.field(k), pa.array(v, pa.float64()))
        write_parquet_atomic(items, ip)
    classes = _classes_table(job, stats, score_sums)
    ensure_dir(out / "classes")
    write_parquet_atomic(classes, out / "classes" / "part-00000.parquet")
    return {"worst": worst_rows, "classes": classes,
            "label_quality": {"mean": lq_sum / lq_n if lq_n else None, "items": lq_n,
                              "items_with_score_0_5": flagged}}


def _keep_worst(kept: list[dict], t: pa.Table, scores: list[float]) -> list[dict]:
    """The :data:`WORST_KEPT` highest-scored rows of ``kept`` and ``t`` (ties: item, then region)."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:WORST_KEPT]
    rows = kept + t.take(pa.array(order)).to_pylist()
    rows.sort(key=lambda r: (-r["score"], str(r["item_id"]), r["region"]))
    return rows[:WORST_KEPT]


def _classes_table(job: AuditJob, stats: S.DatasetStats, score_sums: dict) -> pa.Table:
    rows = []
    for (t, g, p), (n, px, k) in sorted(stats.pairs.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        rows.append({"gt_class": g, "gt_name": job._names.get(g), "pred_class": p, "pred_name": job._names.get(p),
                     "type": t, "regions": n, "pixels": px, "items": k, "class_items": stats.class_items(t, g, p),
                     "systematic_rate": stats.rate(t, g, p), "mean_score": score_sums.get((t, g, p), 0.0) / n if n else None})
    return pa.Table.from_pylist(rows, schema=CLASSES_SCHEMA)
