"""The ``coverage`` job: how much of each class every image holds, and how it is spread.

Per item and class present: the pixel count and the coverage fraction (pixels / all
pixels of the image). Per run: per class totals, the number of images containing the
class, and histograms of the per-image fraction over fixed bins (:data:`BINS`), for
the whole dataset and for every shard (so drift between batches shows).

Class masks come from the layout: mask files as they are; COCO annotations are
rasterized in ``coco`` mode without writing PNGs (later annotations win, crowd regions
go to the ignore value); COCO panoptic segments count under their category.

Example::

    ds = open_dataset("annotations/instances_val2017.json")
    run_job(CoverageJob(ds), ds.manifest(), "coverage-report/")
"""
from __future__ import annotations

import bisect

from typing import Any

import numpy as np
import pyarrow as pa

from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import UNKNOWN_ID, Dataset, FormatError
from ..formats.png import counting_values
from .listing import listing_summary
from .scan import value_counts

#: bin edges of the per-image coverage fraction: [0, 0.1%), [0.1%, 1%), ... [75%, 100%]
BINS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
BIN_LABELS = ("<0.1%", "0.1-1%", "1-5%", "5-10%", "10-25%", "25-50%", "50-75%", ">=75%")


def coverage_bin(fraction: float) -> int:
    """Index of the :data:`BINS` bin holding ``fraction`` (the last bin includes 1.0).

    >>> coverage_bin(0.0005), coverage_bin(0.3), coverage_bin(1.0)
    (0, 5, 7)
    """
    i = bisect.bisect_right(BINS, fraction) - 1  # a Python call per class: no NumPy round trip
    return min(max(i, 0), len(BINS) - 2)


def coco_class_map(annotations: list[dict], height: int, width: int, ignore_value: int) -> tuple[np.ndarray, int]:
    """Rasterize COCO annotations of one image into a class map (later wins; crowd -> ignore).

    A thin wrapper of :func:`fastmask.raster.rasterize_annotations` (``kind="semantic"``,
    ``overlap="order"``, ``crowd="ignore"``). Returns ``(class_map, skipped)``: annotations
    whose segmentation cannot be read or is an empty polygon list are counted as skipped
    (``fastmask validate`` reports why).
    """
    from ..raster import rasterize_annotations

    r = rasterize_annotations(annotations, height, width, ignore_value=ignore_value, on_error="skip")
    empty = sum(1 for a in annotations if isinstance(a, dict) and a.get("segmentation") == [])
    return r.mask, len(r.problems) + empty


def coco_class_map_from_rles(annotations: list, rles: list, height, width, ignore_value: int) -> np.ndarray | None:
    """:func:`coco_class_map`'s class map painted from RLEs already built, or None.

    ``rles[i]`` is annotation ``i``'s mask as a compressed RLE dict of size
    ``[height, width]`` (None: not read), as :func:`fastmask.jobs.rules_coco.check_coco_image`
    keeps them in its stats. Same painting (file order, later wins, crowd -> ``ignore_value``)
    and dtype, without rasterizing again; the map is Fortran-ordered (the painting's own
    layout, no copy). Returns None (call :func:`coco_class_map`) for any
    image where the two could differ: a record that is not a dict, a segmentation that was not
    read, a ``category_id`` that is not a plain non-negative int, a width/height not plain ints.

    >>> anns = [{"category_id": 3, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
    ...         {"category_id": 5, "iscrowd": 1, "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]}]
    >>> from fastmask.raster import polygon_rle
    >>> rles = [polygon_rle(a["segmentation"], 6, 6) for a in anns]
    >>> m = coco_class_map_from_rles(anns, rles, 6, 6, 255)
    >>> m[3].tolist(), (m == coco_class_map(anns, 6, 6, 255)[0]).all().item()
    ([3, 3, 255, 255, 255, 255], True)
    """
    from ..kernels.paint import STATUS_OK, paint_colmajor
    from ..raster import _fit_dtype
    from ..rle import counts_of

    if type(height) is not int or type(width) is not int or height <= 0 or width <= 0 \
            or type(ignore_value) is not int or not -(2**63) <= ignore_value < 2**63 or len(rles) != len(annotations):
        return None
    objs, vals = [], []
    lo = hi = 0  # the background
    for a, r in zip(annotations, rles):
        if type(a) is not dict:
            return None
        c, seg = a.get("category_id"), a.get("segmentation")
        if type(c) is not int or not 0 <= c < 2**63:
            return None
        if r is None:
            if type(seg) is list and not seg:  # an empty polygon list: nothing to paint
                v = ignore_value if a.get("iscrowd") else c
                lo, hi = min(lo, v), max(hi, v)
                continue
            return None  # not read here: the rasterizer decides (and reports) on its own
        if type(seg) is dict:
            size = seg.get("size")
            if type(size) is not list or [type(v) for v in size] != [int, int]:
                return None
        elif type(seg) is not list:
            return None
        if list(r.get("size", ())) != [height, width]:
            return None
        v = ignore_value if a.get("iscrowd") else c
        lo, hi = min(lo, v), max(hi, v)
        objs.append(r)
        vals.append(v)
    dtype = np.dtype(_fit_dtype(lo, hi))
    flat = np.zeros(height * width, dtype)
    if objs:
        counts, offsets, _, _ = counts_of(objs)
        order = np.arange(len(objs), dtype=np.int64)
        status, _ = paint_colmajor(counts, offsets, order, np.asarray(vals, np.int64).astype(dtype), flat)
        if status != STATUS_OK:
            return None
    return flat.reshape(width, height).T  # Fortran-ordered: a C copy would cost more than the painting


class CoverageJob(Job):
    """Per image and class: pixels and coverage fraction; per run: totals and histograms."""

    name = "coverage"
    item_schema = pa.schema(
        [
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("n_classes", pa.int32()),
            ("ignore_pixels", pa.int64()),
            ("skipped_annotations", pa.int32()),
        ]
    )
    tables = {
        "class_coverage": pa.schema(
            [("class_id", pa.int64()), ("pixels", pa.int64()), ("fraction", pa.float64()), ("bin", pa.int8()),
             ("bin_label", pa.string())]
        )
    }

    def __init__(self, dataset: Dataset, *, ignore_value: int | None = 255, background: int | None = 0):
        self._dataset = dataset
        self.ignore_value = ignore_value
        self.background = background

    def arguments(self) -> dict[str, Any]:
        return {"dataset": self._dataset.root, "layout": self._dataset.layout, "ignore_value": self.ignore_value,
                "background": self.background, "bins": list(BINS)}

    def _class_counts(self, row: dict, data) -> tuple[list[int], list[int], int, int, int]:
        """(values, pixels, width, height, skipped annotations) of the item's class map."""
        if data.annotations is not None:
            w, h = row.get("width"), row.get("height")
            if not w or not h:
                raise ItemError("unreadable", "the COCO image record has no usable width/height")
            cmap, skipped = coco_class_map(data.annotations, int(h), int(w),
                                           255 if self.ignore_value is None else self.ignore_value)
            values, pixels = value_counts(cmap)
            return values, pixels, int(w), int(h), skipped
        if data.segments is not None and data.instance_mask is not None:
            from .rules_panoptic import value_counts as id_counts

            # as arrays: a noise PNG holds millions of ids (no Python object per id)
            ids, pixels = id_counts(data.instance_mask.array)
            cat = {int(s["id"]): int(s["category_id"]) for s in data.segments if "id" in s and "category_id" in s}
            cat = {k: v for k, v in cat.items() if 0 <= k < 2**63}  # other ids match no PNG id
            keys = np.fromiter(cat, np.int64, len(cat))
            cats = np.fromiter(cat.values(), np.int64, len(cat))
            order = np.argsort(keys)
            keys, cats = keys[order], cats[order]
            pos = np.minimum(np.searchsorted(keys, ids), max(keys.size - 1, 0))
            # void (0) and unknown segments count as background 0
            of = np.where(keys[pos] == ids, cats[pos], 0) if keys.size else np.zeros(ids.size, np.int64)
            classes, inv = np.unique(of, return_inverse=True)
            totals = np.bincount(inv, weights=pixels, minlength=classes.size).astype(np.int64)
            m = data.instance_mask
            return classes.tolist(), totals.tolist(), m.width, m.height, 0
        mask = data.mask if data.mask is not None else None
        if mask is None:
            raise ItemError("missing_mask", f"{data.item_id}: no class mask to measure")
        hist = mask.histogram  # counted while decoding (counting_values), else count now
        if hist is not None and int(hist.sum()) == mask.array.size:
            values = np.flatnonzero(hist)
            values, pixels = values.tolist(), hist[values].tolist()
        else:
            values, pixels = value_counts(mask.array)
        return values, pixels, mask.width, mask.height, 0

    def prefetch(self, item: dict[str, Any]) -> list:
        """The remote objects reading ``item`` needs (fetched ahead by the engine)."""
        return self._dataset.prefetch(item)

    def process(self, item: dict[str, Any]) -> ItemResult:
        try:
            with counting_values():  # PNG masks: the histogram comes from the decoder's one pass
                data = self._dataset.read_item(item)
        except FormatError as e:
            raise ItemError(e.code, e.message) from None
        values, pixels, w, h, skipped = self._class_counts(item, data)
        total = w * h
        # the rows as columns (cheaper than a dict per row for the engine)
        cls, px, frac, bins = [], [], [], []
        ignore = 0
        for v, p in zip(values, pixels):
            if v == self.ignore_value or v == UNKNOWN_ID:
                ignore += p
                continue
            if v == self.background:
                continue
            f = p / total if total else 0.0
            cls.append(int(v))
            px.append(int(p))
            frac.append(f)
            bins.append(coverage_bin(f))
        fields = {"width": w, "height": h, "n_classes": len(cls), "ignore_pixels": ignore,
                  "skipped_annotations": skipped}
        return ItemResult(fields, {"class_coverage": {"class_id": cls, "pixels": px, "fraction": frac, "bin": bins,
                                                      "bin_label": [BIN_LABELS[b] for b in bins]}})

    def reduce_shard(self, shard: ShardResult) -> dict:
        t = shard.tables["class_coverage"]
        classes: dict[int, dict] = {}
        for c, p, b in zip(t.column("class_id").to_pylist(), t.column("pixels").to_pylist(),
                           t.column("bin").to_pylist()):
            e = classes.setdefault(c, {"pixels": 0, "images": 0, "hist": [0] * (len(BINS) - 1)})
            e["pixels"] += p
            e["images"] += 1
            e["hist"][b] += 1
        items = shard.items
        ok = [s == "ok" for s in items.column("status").to_pylist()]
        pixels = sum((w or 0) * (h or 0) for w, h, o in zip(items.column("width").to_pylist(),
                                                          items.column("height").to_pylist(), ok) if o)
        return {"images": sum(ok), "pixels": pixels, "classes": {str(c): classes[c] for c in sorted(classes)}}

    def finalize(self, summaries: list[dict]) -> dict:
        classes: dict[int, dict] = {}
        for s in summaries:
            for c, e in s.get("classes", {}).items():
                t = classes.setdefault(int(c), {"pixels": 0, "images": 0, "hist": [0] * (len(BINS) - 1)})
                t["pixels"] += e["pixels"]
                t["images"] += e["images"]
                t["hist"] = [a + b for a, b in zip(t["hist"], e["hist"])]
        return {
            "bins": list(BINS),
            "images": sum(s.get("images", 0) for s in summaries),
            "pixels": sum(s.get("pixels", 0) for s in summaries),
            "classes": {str(c): classes[c] for c in sorted(classes)},
            # per shard (fixed slices of the sorted items): histograms to see drift between batches
            "shards": [{str(c): e["hist"] for c, e in s.get("classes", {}).items()} for s in summaries],
            **listing_summary(self._dataset),
        }


def write_classes_table(job: CoverageJob, out_dir) -> pa.Table:
    """After the run: ``classes/part-00000.parquet`` with per class totals and the histogram."""
    from ..engine.sink import ensure_dir, read_json, report_root, write_parquet_atomic

    out = report_root(out_dir)  # a local folder, or a URL's Location
    summary = read_json(out / "run.json")["summary"]
    names = dict(job._dataset.labelmap.names) if job._dataset.labelmap else {}
    total = summary.get("pixels") or 0
    rows = [
        {"class_id": int(c), "name": names.get(int(c)), "pixels": e["pixels"], "images": e["images"],
         "dataset_fraction": e["pixels"] / total if total else None, "histogram": e["hist"]}
        # run.json's keys are strings (sorted as text): the table goes by the numeric id
        for c, e in sorted(summary.get("classes", {}).items(), key=lambda ce: int(ce[0]))
    ]
    schema = pa.schema([("class_id", pa.int64()), ("name", pa.string()), ("pixels", pa.int64()),
                        ("images", pa.int64()), ("dataset_fraction", pa.float64()),
                        ("histogram", pa.list_(pa.int64()))])
    table = pa.Table.from_pylist(rows, schema=schema)
    ensure_dir(out / "classes")
    write_parquet_atomic(table, out / "classes" / "part-00000.parquet")
    return table
