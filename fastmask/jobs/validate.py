"""The ``validate`` job: every rule of :mod:`fastmask.jobs.validate_rules` over a dataset.

Per item (one mask, one VOC id, one COCO image, one panoptic image) the job reads
what the layout holds, runs the file, value, instance, COCO and panoptic rules and
emits ``findings`` rows and per-class ``class_stats`` rows. Dataset-level rules
(``class_never_seen``, ``coverage_outlier``, COCO / panoptic ``bad_top_level`` /
``duplicate_id`` / ``unknown_image``)
run after the items, in :func:`dataset_findings`, from the shard summaries and the
``class_stats`` table.

Example::

    ds = open_dataset("VOCdevkit/VOC2012")
    job = ValidateJob(ds, RuleConfig(min_island=32))
    run_job(job, ds.manifest(), "report/")
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import UNKNOWN_ID, Dataset, FormatError
from ..formats.png import _fused_scan
from . import validate_rules as R
from .._jit import kernels_cached
from .._text import plural
from .listing import listing_summary
from .rules_core import dtype_name
from .rules_semantic import fused_class_scan, quick_class_mask

FINDING_SCHEMA = pa.schema(
    [
        ("rule", pa.string()),
        ("severity", pa.string()),
        ("class_id", pa.int64()),
        ("instance_id", pa.int64()),
        ("pixels", pa.int64()),
        ("bbox_x", pa.int64()),
        ("bbox_y", pa.int64()),
        ("bbox_w", pa.int64()),
        ("bbox_h", pa.int64()),
        ("message", pa.string()),
        ("extra", pa.string()),
        # the file the finding concerns: the unreadable / unlisted file, else the item's mask (or image)
        ("path", pa.string()),
    ]
)

CLASS_STATS_SCHEMA = pa.schema(
    [
        ("class_id", pa.int64()),
        ("pixels", pa.int64()),
        ("components", pa.int64()),
        ("instances", pa.int64()),
        ("share", pa.float64()),
    ]
)


def _item_path(data) -> str | None:
    """The file an item's findings concern: its mask file, else its image (None for in-memory bytes)."""
    for m in (data.mask, data.instance_mask):
        src = getattr(m, "source", "") if m is not None else ""
        if src and not src.startswith("<"):
            return str(src)
    return str(data.image_path) if data.image_path else None


def finding_row(f: R.Finding, path: str | None = None) -> dict[str, Any]:
    """A :class:`Finding` as a ``findings`` row (bbox split in four columns, extra as JSON); ``path``
    is the item's file, used unless the finding names its own (``extra["path"]``)."""
    x = y = w = h = None
    if f.bbox is not None:
        x, y, w, h = (int(v) for v in f.bbox)
    return {
        "rule": f.rule,
        "severity": f.severity,
        "class_id": f.class_id,
        "instance_id": f.instance_id,
        "pixels": f.pixels,
        "bbox_x": x,
        "bbox_y": y,
        "bbox_w": w,
        "bbox_h": h,
        "message": f.message,
        "extra": json.dumps(f.extra, sort_keys=True) if f.extra else None,
        "path": str(f.extra["path"]) if f.extra and f.extra.get("path") else path,
    }


class ValidateJob(Job):
    """Run the validation rules over each item of ``dataset`` with ``config``."""

    name = "validate"
    item_schema = pa.schema(
        [
            ("layout", pa.string()),
            ("mask_format", pa.string()),
            ("mask_mode", pa.string()),
            ("mask_dtype", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("values", pa.list_(pa.int64())),
            ("value_pixels", pa.list_(pa.int64())),
            ("components", pa.int64()),
            ("instances", pa.int64()),
            ("n_annotations", pa.int32()),
            ("n_findings", pa.int32()),
            ("worst_severity", pa.string()),
        ]
    )
    tables = {"findings": FINDING_SCHEMA, "class_stats": CLASS_STATS_SCHEMA}

    def __init__(self, dataset: Dataset, config: R.RuleConfig = R.DEFAULT_CONFIG):
        self._dataset = dataset
        self._config = config
        self._label_ids: list[int] | None = None
        self._names: dict[int, str] | None = None
        self._colors: dict[int, tuple] | None = None
        self._category_ids: set[int] | None = None
        lm = dataset.labelmap
        self.labelmap_info = labelmap_info(lm, dataset.layout)
        if lm is not None:
            self._label_ids = lm.class_ids  # fillers are placeholders, not values to expect or accept
            self._names = dict(lm.names)
            self._colors = dict(lm.colors) if lm.colors else None
        self._label_tuple = None if self._label_ids is None else tuple(self._label_ids)
        self._fused = fused_class_scan(self._label_tuple, config, UNKNOWN_ID)
        if dataset.layout in ("coco", "coco_panoptic") and hasattr(dataset, "meta"):
            cats = dataset.meta().get("categories") or []
            ids = {c.get("id") for c in cats if isinstance(c, dict) and isinstance(c.get("id"), int)}
            self._category_ids = ids or None

    def arguments(self) -> dict[str, Any]:
        return {"dataset": self._dataset.root, "layout": self._dataset.layout, "config": self._config.to_json()}

    def prepare(self) -> None:
        # Compile the kernels of the one-call path and of the full rules once, in the driver,
        # when Numba's cache lacks them (workers then load them instead of each compiling).
        # When the cache holds them, nothing: a process loads them at its first mask --
        # loading in the driver too would cost ~0.5 s before any worker starts.
        from ..kernels import components as _kc
        from ..kernels import validate as kv

        if kernels_cached(kv.class_mask_quick, kv.class_scan_runs, kv.component_values, kv.island_records,
                          kv.png_unfilter_class_scan):
            return
        m = np.zeros((64, 64), np.uint8)  # large enough for tiny_island: island_records compiles too
        m[2:4, 2:4] = 1
        R.check_class_mask(m, [0, 1], self._config)
        quick_class_mask(m, (0, 1), self._config)
        from ..formats.png import _png_bytes, read_mask

        with _fused_scan("class_scan", fused_class_scan((0, 1), self._config)):  # the decode + scan kernel
            read_mask(_png_bytes(m))

    # ------------------------------------------------------------------ per item
    def prefetch(self, item: dict[str, Any]) -> list:
        """The remote objects reading ``item`` needs (fetched ahead by the engine)."""
        return self._dataset.prefetch(item)

    def process(self, item: dict[str, Any]) -> ItemResult:
        cfg = self._config
        try:
            # a PNG class mask: the one-call scan runs as its rows are unfiltered (one pass)
            with _fused_scan("class_scan", self._fused) as fused:
                data = self._dataset.read_item(item)
        except FormatError as e:
            rows = [finding_row(f) for f in R.unreadable(e.code, e.message, cfg, path=e.path)]
            raise ItemError(e.code, e.message, rows={"findings": rows},
                            fields={"layout": self._dataset.layout, "n_findings": len(rows),
                                    "worst_severity": R.worst_severity(R.unreadable(e.code, e.message, cfg))}) from None
        findings: list[R.Finding] = []
        fields: dict[str, Any] = {"layout": self._dataset.layout}
        # per-class rows as columns, in class order (one dict per class would cost more
        # than the rest): class_id, pixels, components, instances, share
        class_rows: dict[str, list] = {"class_id": [], "pixels": [], "components": [], "instances": [], "share": []}
        if "image" in data.missing and data.mask is not None:
            findings += R.missing_image(data.item_id, data.extra.get("expected_image"), cfg)
        if "mask" in data.missing:
            findings += R.missing_mask(data.image_path or data.item_id, None, cfg)
        if self._dataset.layout in ("coco", "coco_panoptic"):
            findings += self._record_files(data, fields)
        if data.mask is not None:
            findings += self._class_mask(data, fields, class_rows, fused)
        if data.instance_mask is not None and data.segments is None:
            findings += self._instance_mask(data, fields, class_rows)
        if data.annotations is not None:
            findings += self._coco(item, data, fields, class_rows)
        if data.segments is not None or self._dataset.layout == "coco_panoptic":
            findings += self._panoptic(data, fields, class_rows)
        if cfg.preflight or self._dataset.layout in ("labelbox", "nucleus"):
            from .rules_platforms import preflight

            findings += preflight(self._dataset, item, data, cfg)
        fields["n_findings"] = len(findings)
        fields["worst_severity"] = R.worst_severity(findings) if findings else None
        path = _item_path(data)
        return ItemResult(fields, {"findings": [finding_row(f, path) for f in findings], "class_stats": class_rows})

    def _class_mask(self, data, fields, class_rows, fused=None) -> list[R.Finding]:
        cfg = self._config
        mask = data.mask
        out: list[R.Finding] = []
        fields.update(mask_format=mask.format, mask_mode=mask.mode, mask_dtype=dtype_name(mask.array.dtype),
                      width=mask.width, height=mask.height)
        if mask.lossy:
            out += R.lossy_format(mask.format, True, cfg)
        if mask.extra.get("n_frames", 1) > 1:
            out += R.animated_mask(mask.extra["n_frames"], cfg)
        colour_mask = mask.mode in ("RGB", "RGBA")
        alpha_nonopaque = getattr(mask, "alpha_nonopaque", 0) or 0
        if colour_mask or mask.channels >= 3 or alpha_nonopaque:  # else the rule has nothing to say
            expected = "color" if colour_mask and self._colors else "single"
            out += R.unexpected_channels(mask.mode, mask.channels, cfg, expected=expected,
                                         alpha_nonopaque=alpha_nonopaque, alpha_min=getattr(mask, "alpha_min", None))
        if mask.unknown_colors:
            out += R.unknown_color(mask.unknown_colors, cfg, mask=mask.array, unknown_id=UNKNOWN_ID,
                                   label_colors=self._colors)
        ref = data.image_size or data.extra.get("record_size")
        if ref is not None:
            out += R.size_mismatch((mask.width, mask.height), ref, cfg,
                                   ref="image" if data.image_size else "record")
        budget = cfg.max_item_memory
        if budget is not None and mask.array.size > budget >> 8:  # below: even the worst case fits
            _check_budget(mask.array, budget, "mask", fields, cfg)
        # the usual clean 8-bit mask: one kernel call; anything to report: the full rules
        scanned = fused.result if fused is not None and fused.array is mask.array else None  # (decoded and scanned)
        quick = quick_class_mask(mask.array, self._label_tuple, cfg, UNKNOWN_ID, self._names, scanned=scanned)
        if quick is None:
            found, stats = R.check_class_mask(mask.array, self._label_ids, cfg, unknown_id=UNKNOWN_ID,
                                              names=self._names)
            values, counts, comps = stats.values.tolist(), stats.counts.tolist(), stats.components
        else:
            found, values, counts, comps = quick
        out += found
        if mask.mode == "P" and mask.palette is not None and self._colors:
            out += R.palette_mismatch(mask.palette, values, self._colors, cfg, counts=counts, names=self._names)
        fields["values"] = values
        fields["value_pixels"] = counts
        if comps is not None:
            fields["components"] = int(sum(comps.values()))
        # one pass over the (few, sorted) values: the class rows, and the non-ignore pixels
        # for a class's share of the item (coverage_outlier)
        bg, ignore = cfg.background, cfg.ignore_value
        classes, pixels, labeled = [], [], 0
        for v, c in zip(values, counts):
            if v != ignore:
                labeled += c
                if v != bg and v != UNKNOWN_ID:
                    classes.append(v)
                    pixels.append(c)
        class_rows["class_id"] = classes
        class_rows["pixels"] = pixels
        class_rows["components"] = [None] * len(classes) if comps is None else [comps.get(v, 0) for v in classes]
        class_rows["instances"] = [None] * len(classes)
        class_rows["share"] = [p / labeled for p in pixels] if labeled else [None] * len(classes)
        return out

    def _instance_mask(self, data, fields, class_rows) -> list[R.Finding]:
        cfg = self._config
        inst = data.instance_mask.array
        if cfg.max_item_memory is not None and inst.ndim == 2:
            fields.update(width=inst.shape[1], height=inst.shape[0])
            _check_budget(inst, cfg.max_item_memory, "instance mask", fields, cfg)
        out = R.animated_mask(data.instance_mask.extra.get("n_frames", 1), cfg)
        out += R.disconnected_instance(inst, cfg, names=self._names)
        if data.mask is not None:
            if data.mask.array.shape != inst.shape:
                out += R.size_mismatch((data.instance_mask.width, data.instance_mask.height),
                                       (data.mask.width, data.mask.height), cfg, ref="class mask")
            else:
                out += R.instance_class_conflict(inst, data.mask.array, cfg, names=self._names)
                # instances per class: distinct instance ids over each class's pixels
                valid = (inst != cfg.background) & (inst != cfg.ignore_value)
                if valid.any():
                    classes, n_inst = _instances_per_class(data.mask.array[valid], inst[valid])
                    row_of = {c: i for i, c in enumerate(class_rows["class_id"])}
                    for c, k in zip(classes.tolist(), n_inst.tolist()):
                        if c in row_of:
                            class_rows["instances"][row_of[c]] = int(k)
        fields["instances"] = len(R.instance_stats(inst, cfg)["instances"])
        return out

    def _record_files(self, data, fields) -> list[R.Finding]:
        """A COCO / panoptic record's files: the image (missing, unreadable) and the panoptic PNG."""
        cfg = self._config
        out: list[R.Finding] = []
        rec = data.extra.get("record_size")
        if rec is not None:
            fields["width"], fields["height"] = rec
        name = data.extra.get("file_name") or data.item_id
        if "image" in data.missing and cfg.enabled("missing_image"):
            where = data.extra.get("expected_image")
            out.append(cfg.finding("missing_image", f"image record {data.item_id} ({name}) has no image file"
                                   + (f" (looked for {where})" if where else ""),
                                   extra={"image": where, "file_name": data.extra.get("file_name")}))
        err = data.extra.get("image_error")
        if err:
            f = R.unreadable(err["code"], err["message"], cfg, path=data.image_path)
            for x in f:
                x.message = f"image of record {data.item_id}: " + x.message
            out += f
        if "instance_mask" in data.missing and self._dataset.layout == "coco_panoptic" and cfg.enabled("missing_mask"):
            where = data.extra.get("expected_mask")
            what = f"its PNG {where} does not exist" if where else "it has no panoptic annotation record"
            out.append(cfg.finding("missing_mask", f"image record {data.item_id} ({name}) has no panoptic PNG: {what}",
                                   extra={"image": name, "mask": where}))
        out += R.duplicate_record(data.extra.get("duplicate_annotations") or 0, cfg)
        return out

    def _coco(self, row, data, fields, class_rows) -> list[R.Finding]:
        from ..formats._cocojson import key_value
        from .coverage import coco_class_map, coco_class_map_from_rles

        cfg = self._config
        image = {"id": key_value(row.get("image_key")), "width": row.get("width"), "height": row.get("height"),
                 "file_name": row.get("file_name")}
        fields["n_annotations"] = len(data.annotations)
        found, stats = R.check_coco_image(image, data.annotations, self._category_ids, cfg,
                                          file_size=data.image_size if data.image_path else None, names=self._names)
        # per category: the pixels it keeps after painting (later annotations on top, crowd ->
        # the ignore value, as rasterize / coverage paint), and its annotations (non-crowd: instances)
        w, h = row["width"], row["height"]
        ignore = 255 if cfg.ignore_value is None else cfg.ignore_value
        # the masks the checks built, painted again without rasterizing; None: a corner where
        # only the rasterizer is the reference (it then runs as before)
        cmap = coco_class_map_from_rles(data.annotations, stats.rles, h, w, ignore)
        if cmap is None:
            try:
                cmap, _ = coco_class_map(data.annotations, h, w, ignore)
            except (ValueError, TypeError):  # ids that fit no class map: the findings above say why
                return found
        from .scan import value_counts

        values, counts = value_counts(cmap.ravel(order="K"))  # the pixels in memory order: no copy
        inst: dict[int, int] = {}
        for a in data.annotations:
            c = a.get("category_id") if isinstance(a, dict) else None
            if type(c) is int and not a.get("iscrowd"):
                inst[c] = inst.get(c, 0) + 1
        self._class_rows(values, counts, inst, class_rows, fields)
        return found

    def _class_rows(self, values, counts, inst, class_rows, fields, labeled=None) -> None:
        """``class_stats`` rows of a COCO / panoptic item from its painted class pixels."""
        cfg = self._config
        if labeled is None:
            labeled = sum(c for v, c in zip(values, counts) if v != cfg.ignore_value)
        classes = [(v, c) for v, c in zip(values, counts)
                   if v != cfg.ignore_value and v != cfg.background and -(2**63) <= v < 2**63]
        fields["values"] = list(values)
        fields["value_pixels"] = list(counts)
        fields["instances"] = sum(inst.values())
        class_rows["class_id"] = [v for v, _ in classes]
        class_rows["pixels"] = [c for _, c in classes]
        class_rows["components"] = [None] * len(classes)
        class_rows["instances"] = [inst.get(v, 0) for v, _ in classes]
        class_rows["share"] = [c / labeled if labeled else None for _, c in classes]

    def _panoptic(self, data, fields, class_rows) -> list[R.Finding]:
        cfg = self._config
        out: list[R.Finding] = []
        if self._category_ids is not None and cfg.enabled("unknown_category"):
            for s in data.segments or []:
                c = s.get("category_id")
                if c not in self._category_ids:
                    out.append(cfg.finding("unknown_category", f"segment {s.get('id')}: category_id {c!r} is not in "
                                           "the categories", instance_id=s.get("id"), class_id=c,
                                           extra={"category_id": c}))
        if data.instance_mask is None:
            return out
        m = data.instance_mask
        out += R.animated_mask(m.extra.get("n_frames", 1), cfg)
        fields.update(mask_format=m.format, mask_mode=m.mode, mask_dtype=dtype_name(m.array.dtype),
                      width=m.width, height=m.height)
        rec = data.extra.get("record_size")
        if rec is not None:
            out += R.size_mismatch((m.width, m.height), rec, cfg, ref="record")
        found, stats = R.segment_mismatch(m.array, data.segments or [], cfg, names=self._names)
        # per category: the PNG pixels of its segments; void and unknown ids are background
        px = stats["category_pixels"]
        values = sorted(px)
        inst: dict[int, int] = {}
        for s in data.segments or []:
            c = s.get("category_id")
            if not s.get("iscrowd"):
                inst[c] = inst.get(c, 0) + 1
        # every pixel of the PNG is labelled (void included), as coverage counts them
        self._class_rows(values, [px[c] for c in values], inst, class_rows, fields, labeled=m.width * m.height)
        return out + found

    # ------------------------------------------------------------------ reduce

    def reduce_shard(self, shard: ShardResult) -> dict:
        counts: dict[str, int] = {}
        f = shard.tables["findings"]
        for rule, sev in zip(f.column("rule").to_pylist(), f.column("severity").to_pylist()):
            counts[f"{rule}:{sev}"] = counts.get(f"{rule}:{sev}", 0) + 1
        # per class: pixels, images (rows), components, instances -- summed with NumPy (a
        # shard has ~8 rows per mask; a Python loop over them cost ~2 us per mask)
        cs = shard.tables["class_stats"]
        ids, inv = np.unique(cs.column("class_id").to_numpy(zero_copy_only=False), return_inverse=True)
        sums = np.zeros((ids.size, 4), np.int64)
        sums[:, 1] = np.bincount(inv, minlength=ids.size)
        for j, name in ((0, "pixels"), (2, "components"), (3, "instances")):
            np.add.at(sums[:, j], inv, pc.fill_null(cs.column(name), 0).to_numpy(zero_copy_only=False))
        return {"findings": counts, "classes": {str(c): v for c, v in zip(ids.tolist(), sums.tolist())}}

    def finalize(self, summaries: list[dict]) -> dict:
        counts: dict[str, int] = {}
        classes: dict[int, list[int]] = {}
        for s in summaries:
            for k, v in s.get("findings", {}).items():
                counts[k] = counts.get(k, 0) + v
            for c, v in s.get("classes", {}).items():
                t = classes.setdefault(int(c), [0, 0, 0, 0])
                for i in range(4):
                    t[i] += v[i]
        return {
            "findings": dict(sorted(counts.items())),
            "classes": {str(c): dict(zip(("pixels", "images", "components", "instances"), v))
                        for c, v in sorted(classes.items())},
            "labelmap": self.labelmap_info,
            **listing_summary(self._dataset),
        }


MASK_LAYOUTS = ("masks", "voc", "cleanzip", "urls")


def labelmap_info(labelmap, layout: str) -> dict[str, Any]:
    """What ``validate`` checked values against: ``kind``, ``source``, ``classes`` and a one-line ``text``.

    ``kind``: ``file`` (given or found next to the data), ``layout-default`` (VOC's
    21 classes), ``coco-categories``, ``voc-colormap``, ``given`` (built in Python, no
    source) or ``none`` (mask layouts then accept every value).

    >>> from fastmask.formats import LabelMap
    >>> labelmap_info(LabelMap.voc(), "voc")["text"]
    'VOC label map (layout default): 21 classes + ignore 255'
    >>> labelmap_info(None, "masks")["text"]
    'none: every value is accepted, unexpected_value is off'
    """
    if labelmap is None:
        return {"kind": "none", "source": None, "classes": 0,
                "text": "none: every value is accepted, unexpected_value is off"
                if layout in MASK_LAYOUTS else "none"}
    src = labelmap.source or ""
    ids = [i for i in labelmap.class_ids if i not in labelmap.ignore]
    n = len(ids)
    fillers = f", {plural(len(labelmap.fillers), 'filler entry', '')}" if labelmap.fillers else ""
    ignore = f" + ignore {', '.join(map(str, sorted(labelmap.ignore)))}" if labelmap.ignore else ""
    if src == "voc-default":
        kind, text = "layout-default", f"VOC label map (layout default): {plural(n, 'class', '')}{ignore}"
    elif src in ("voc-colormap", "voc-instances"):
        kind, text = "voc-colormap", f"VOC colormap: {n} ids{ignore}"
    elif src == "coco-categories" or src.endswith("#categories"):
        path = src.removesuffix("#categories") or "the file"
        kind, text = "coco-categories", f"COCO categories of {path}: {plural(n, 'category', '')}"
    elif src:
        kind, text = "file", f"{src} (file): {plural(n, 'class', '')}{ignore}{fillers}"
    else:
        kind, text = "given", f"given label map: {plural(n, 'class', '')}{ignore}{fillers}"
    return {"kind": kind, "source": src or None, "classes": n, "text": text}


def _instances_per_class(cls: np.ndarray, inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class (sorted), the number of distinct instance ids over its pixels: the distinct
    (class, instance) pairs as one int64 key each (a few int64 a pixel, no 2-D unique)."""
    cu, ci = np.unique(cls, return_inverse=True)
    iu, ii = np.unique(inst, return_inverse=True)
    pairs = np.unique(ci.reshape(-1).astype(np.int64) * iu.size + ii.reshape(-1))
    classes, n_inst = np.unique(pairs // iu.size, return_counts=True)
    return cu[classes].astype(np.int64), n_inst


def _check_budget(array, budget, what, fields, cfg) -> None:
    """:func:`~fastmask.jobs.budget.check_item_memory`, the item's fields kept on its error row,
    plus an ``unreadable`` finding (``error_code`` ``too_complex``): an item left unchecked is
    an error finding, so the run's exit code says that it did less than asked."""
    from .budget import check_item_memory

    try:
        check_item_memory(array, budget, what, background=cfg.background)
    except ItemError as e:
        found = [cfg.finding("unreadable", f"not checked [{e.code}]: {e.message}", extra={"error_code": e.code})
                 ] if cfg.enabled("unreadable") else []
        raise ItemError(e.code, e.message, rows={"findings": [finding_row(f) for f in found]},
                        fields={**fields, **(e.fields or {}), "n_findings": len(found),
                                "worst_severity": R.worst_severity(found)}) from None


def _share_parts(out_dir):
    """Per shard of a finished run: ``(item_ids, classes, shares)`` -- each (item, class) pair's
    share of the item's non-ignore pixels, from the shard's ``class_stats`` part (one shard
    in memory at a time)."""
    from ..engine.sink import list_parts, read_part

    for part in list_parts(out_dir, "class_stats"):  # local or on object storage
        cs = read_part(part, ["item_id", "class_id", "share"])
        share = cs.column("share").to_numpy(zero_copy_only=False)  # nulls -> NaN: skipped
        rows = np.flatnonzero(share > 0)
        if not rows.size:
            continue
        cls = cs.column("class_id").to_numpy(zero_copy_only=False)[rows].astype(np.int64)
        yield cs.column("item_id").take(pa.array(rows)), cls, share[rows].astype(np.float64)


def dataset_findings(job: ValidateJob, summary: dict, out_dir) -> list[tuple[str | None, R.Finding]]:
    """Dataset-level findings after the per-item pass: ``[(item_id or None, finding)]``.

    ``class_never_seen`` from the summed class pixels; ``coverage_outlier`` from each
    item's class shares against the dataset's distribution, in two passes over the
    report's parts: the per-class :class:`~fastmask.jobs.rules_dataset.CoverageHistogram`
    (0.01-decade bins) gives the bounds, then each shard's pairs are judged -- memory is
    bounded by a shard, not the dataset; COCO / panoptic ``bad_top_level``,
    ``duplicate_id`` and ``unknown_image`` from the parsed file; ``unlisted_path`` /
    ``duplicate_entry`` from what the listing met (:meth:`Dataset.problems`).
    """
    cfg = job._config
    out: list[tuple[str | None, R.Finding]] = []
    for p in job._dataset.problems() if hasattr(job._dataset, "problems") else ():
        out += [(None, f) for f in R.listing_problem(p["kind"], p["message"], p["path"], cfg)]
    class_pixels = {int(c): v["pixels"] for c, v in summary.get("classes", {}).items()}
    if job._label_ids is not None and job._dataset.layout not in ("coco", "coco_panoptic"):
        ids = [i for i in job._label_ids if i != cfg.background and i != cfg.ignore_value]
        out += [(None, f) for f in R.class_never_seen(ids, class_pixels, cfg, names=job._names)]
    if job._label_ids is None and job._dataset.layout in MASK_LAYOUTS:
        out += [(None, f) for f in R.no_labelmap(cfg, layout=job._dataset.layout)]
    if cfg.enabled("coverage_outlier"):
        hist = R.CoverageHistogram()
        for _, cls, share in _share_parts(out_dir):
            hist.add_many(cls, share)
        bounds = hist.bounds(cfg)
        keys = np.array(sorted(bounds), np.int64)
        los = np.array([bounds[c].lo for c in keys.tolist()])
        his = np.array([bounds[c].hi for c in keys.tolist()])
        for item_ids, cls, share in (_share_parts(out_dir) if bounds else ()):
            # only pairs outside their class's bounds can give a finding: dicts for those only
            k = np.minimum(np.searchsorted(keys, cls), keys.size - 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                lg = np.log10(np.minimum(share, 1.0))
            inside = (los[k] <= lg) & (lg <= his[k])
            flagged = (keys[k] == cls) & (share > 0) & np.isfinite(share) & ~inside
            shares: dict[str, dict[int, float]] = {}
            ids = item_ids.take(pa.array(np.flatnonzero(flagged))).to_pylist()
            for i, c, v in zip(ids, cls[flagged].tolist(), share[flagged].tolist()):
                shares.setdefault(i, {})[c] = v
            for i in sorted(shares):  # parts come in item order: the findings too
                for f in R.coverage_outlier(shares[i], bounds, cfg, names=job._names):
                    out.append((i, f))
    if job._dataset.layout in ("coco", "coco_panoptic") and hasattr(job._dataset, "meta"):
        out += [(None, f) for f in coco_file_findings(job._dataset, cfg)]
    return out


def coco_file_findings(dataset, cfg: R.RuleConfig) -> list[R.Finding]:
    """Dataset-level findings of a COCO / panoptic file: top-level fields of the wrong type,
    duplicate ids, annotations for image ids without a record (ids of any JSON type)."""
    meta = dataset.meta()
    out: list[R.Finding] = []
    out += R.bad_top_level(meta.get("top_level_types") or {}, cfg)
    for kind, key in (("image", "duplicate_image_ids"), ("annotation", "duplicate_annotation_ids")):
        dups = meta.get(key) or []
        if dups:
            out += R.duplicate_ids(list(dups) * 2, kind, cfg)
    if meta.get("n_orphan_annotations"):
        orphans = dataset.orphan_annotations()  # matched by JSON value when the cache was built
        out += R.unknown_images([a.get("image_id") for a in orphans], [], cfg,
                                annotation_ids=[a.get("id") for a in orphans])
    return out


def write_dataset_tables(job: ValidateJob, out_dir) -> tuple[list[tuple[str | None, R.Finding]], pa.Table]:
    """After the run: the dataset-level findings and the per-class totals, as Parquet tables.

    Writes ``dataset_findings/part-00000.parquet`` (the ``findings`` columns with a nullable
    ``item_id``) and ``classes/part-00000.parquet`` (per class: pixels, images, components,
    instances), atomically; returns both for the summary.
    """
    from ..engine.sink import ensure_dir, read_json, report_root, write_parquet_atomic

    out = report_root(out_dir)  # a local folder, or a URL's Location
    summary = read_json(out / "run.json")["summary"]
    found = dataset_findings(job, summary, out)
    rows = [{"item_id": i, **finding_row(f)} for i, f in found]
    schema = pa.schema([("item_id", pa.string())] + list(FINDING_SCHEMA))
    ensure_dir(out / "dataset_findings")
    ensure_dir(out / "classes")
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=schema), out / "dataset_findings" / "part-00000.parquet")
    names = job._names or {}
    class_rows = [
        {"class_id": int(c), "name": names.get(int(c)), **v}
        for c, v in sorted(summary.get("classes", {}).items(), key=lambda cv: int(cv[0]))  # numeric, not text
    ]
    class_schema = pa.schema([("class_id", pa.int64()), ("name", pa.string()), ("pixels", pa.int64()),
                              ("images", pa.int64()), ("components", pa.int64()), ("instances", pa.int64())])
    classes = pa.Table.from_pylist(class_rows, schema=class_schema)
    write_parquet_atomic(classes, out / "classes" / "part-00000.parquet")
    return found, classes
