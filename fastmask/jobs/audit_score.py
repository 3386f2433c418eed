"""Regions of disagreement between a ground-truth class map and a prediction, and their scores.

Per item (:func:`find_regions`): the pixels where ground truth and prediction disagree
(ground-truth ignore and out-of-range values excluded) are grouped into connected regions
per (ground-truth class, predicted class) pair, with fastmask's connected-components
kernels. Each region gets its area, box, the area of the ground-truth object and of the
predicted blob it lies in (connected components of each map, same connectivity), the
share of each it covers, its thickness (the side of the largest square inside it,
:func:`fastmask.kernels.audit.max_square`) and, when given, the model's mean confidence.
Its type (:data:`REGION_TYPES`):

* ``edge_noise``: thickness <= ``edge_width`` (default 2): a thin band along an outline;
  counted per item, never a region row, never scored;
* ``class_swap``: both classes are objects (not background) and the region covers at
  least ``swap_fraction`` (default 0.5) of its ground-truth object (unless one below);
* ``spurious_label``: the region covers at least ``swap_fraction`` of a labelled object
  and the model sees background there, or a class over a much larger area (the region
  covers less than ``SURROUND_COVER`` = 0.2 of the predicted blob: stuff around it);
* ``missing_label``: the mirror: at least ``swap_fraction`` of a blob the model sees as
  an object, ground truth background there or a much larger area of another class;
* ``boundary_offset``: any other region (thicker than edge noise, a part of an object's
  edge): an outline shifted or inflated.

Dataset-wide (:class:`DatasetStats`, built from integer counts summed over all items, so
the same for any shard size or worker count) and per region (:func:`score_regions`), a
score in [0, 1], the product of six factors, each in [0, 1]:

* ``pair_factor = 1 / (1 + rate / RATE_SCALE)``: ``rate`` = how often the model makes
  the same kind of disagreement (same type, same class pair) elsewhere in the dataset:
  ``(items with such a region - 1) / (items holding the class concerned + PRIOR_ITEMS)``.
  A confusion the model makes in 5 % of the class's items halves the score: systematic
  confusions are the model's (several regions of one item, e.g. the pieces of one
  object, count once);
* ``size_factor = min(1, sqrt(area / (SIZE_REFERENCE * typical_area)))``, ``typical_area``
  the median area of the class's ground-truth objects (of its predicted blobs when it
  has none): a region of at least a quarter of a typical object scores fully, a small
  speck little;
* ``confidence_factor``: the share of the dataset's regions whose mean confidence is
  below this region's (ties count half); 1 without ``--confidence``;
* ``shape_factor = min(1, (thickness - edge_width) / (SHAPE_SCALE * edge_width))``
  (``SHAPE_SCALE`` = 6): a region must be about seven edge widths thick to score fully;
  slivers and thin bands just above edge noise (model outlines) score little;
* ``coverage_factor``: the share of the object the region covers (the ground-truth
  object for ``class_swap`` / ``spurious_label``, the predicted blob for
  ``missing_label``); 1 for ``boundary_offset``;
* ``miss_factor = 1 / (1 + miss_rate / MISS_SCALE)`` for a *whole-object miss* (a region
  covering at least half of its ground-truth object and less than half of the predicted
  blob it lies in: the model sees the object's surroundings there) and, mirrored, for a
  *whole-blob false positive* (at least half of its predicted blob, less than half of the
  ground-truth object); else 1. ``miss_rate`` = how often the model misses objects of
  that size (sees blobs of that size that are not there), whatever their class: ``(such
  regions in the dataset - 1) / (ground-truth objects (predicted blobs) of the octave +
  PRIOR_OBJECTS)``, the octave being ``floor(log2(gt_object_area))``
  (``floor(log2(pred_blob_area))``). Models miss small objects and see small blobs that
  are not there: such a region of a size the model often gets wrong is the model's error
  far more often than the label's.

An item's ``label_quality`` is the product of ``1 - score`` over its regions: 1 for an
item without a scored region, near 0 when one region is almost surely a label error.

>>> gt = np.zeros((8, 8), np.uint8); gt[1:6, 1:6] = 1
>>> pred = gt.copy(); pred[1:6, 1:6] = 2          # the model sees class 2 on the whole object
>>> r = find_regions(gt, pred, num_classes=3)
>>> r.regions["type"], r.regions["area"], r.regions["covered_gt"]
(['class_swap'], [25], [1.0])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..components import component_stats

#: the region types, in the order of the item columns (``edge_noise`` is never a region row)
REGION_TYPES = ("class_swap", "missing_label", "spurious_label", "boundary_offset", "edge_noise")
#: the scored types (region rows)
SCORED_TYPES = REGION_TYPES[:-1]
DEFAULT_EDGE_WIDTH = 2
DEFAULT_SWAP_FRACTION = 0.5
#: pseudo-items added to the items holding a class (a class seen in a few items is not
#: judged systematic from one or two of them)
PRIOR_ITEMS = 10
#: the systematic rate that halves a region's score
RATE_SCALE = 0.05
#: a region covering less than this share of one side's component, and at least
#: ``swap_fraction`` of the other's, lies inside a surrounding area (missing / spurious label)
SURROUND_COVER = 0.2
#: pseudo-objects added to an octave's ground-truth objects for its miss rate
PRIOR_OBJECTS = 10
#: the miss rate that halves a whole-object miss's score
MISS_SCALE = 0.05
#: a whole-object miss covers at least this share of its ground-truth object and less
#: than this share of the predicted blob it lies in
MISS_COVER = 0.5
#: a region (SHAPE_SCALE + 1) edge widths thick (or more) gets shape_factor 1
SHAPE_SCALE = 6
#: a region this share of the class's typical object area (or more) gets size_factor 1
SIZE_REFERENCE = 0.25
#: object areas are binned by a quarter octave: bin = floor(4 * log2(area))
AREA_BINS_PER_OCTAVE = 4
#: mean confidences are binned in 1024 steps for the dataset's distribution
CONFIDENCE_BINS = 1024


def area_bin(area: np.ndarray) -> np.ndarray:
    """Quarter-octave bin of object areas (``floor(4 * log2(area))``).

    >>> area_bin(np.array([1, 2, 3, 16])).tolist()
    [0, 4, 6, 16]
    """
    a = np.maximum(np.asarray(area, np.float64), 1.0)
    return np.floor(AREA_BINS_PER_OCTAVE * np.log2(a) + 1e-9).astype(np.int64)


def bin_area(b: float) -> float:
    """The area at the middle of a quarter-octave bin (in log scale).

    >>> round(bin_area(16), 1)
    17.4
    """
    return float(2.0 ** ((b + 0.5) / AREA_BINS_PER_OCTAVE))


def is_miss(covered_gt, covered_pred) -> np.ndarray:
    """Whole-object misses: regions covering at least :data:`MISS_COVER` of their
    ground-truth object and less than that of their predicted blob.

    >>> is_miss([1.0, 1.0, 0.3], [0.02, 0.9, 0.02]).tolist()
    [True, False, False]
    """
    g = np.asarray(covered_gt, np.float64)
    p = np.asarray(covered_pred, np.float64)
    return (g >= MISS_COVER) & (p < MISS_COVER)


def is_false_blob(covered_gt, covered_pred) -> np.ndarray:
    """Whole-blob false positives (the mirror of :func:`is_miss`): regions covering at
    least :data:`MISS_COVER` of their predicted blob and less than that of their
    ground-truth object.

    >>> is_false_blob([0.01, 1.0], [1.0, 1.0]).tolist()
    [True, False]
    """
    return is_miss(covered_pred, covered_gt)


def octave(area) -> np.ndarray:
    """Octave of object areas (``floor(log2(area))``, the quarter-octave bin // 4).

    >>> octave(np.array([1, 3, 4, 100])).tolist()
    [0, 1, 2, 6]
    """
    return area_bin(area) // AREA_BINS_PER_OCTAVE


def confidence_bin(conf: np.ndarray) -> np.ndarray:
    """Bin of mean confidences in [0, 1] (``CONFIDENCE_BINS`` equal steps).

    >>> confidence_bin(np.array([0.0, 0.5, 1.0])).tolist()
    [0, 512, 1023]
    """
    c = np.clip(np.asarray(conf, np.float64), 0.0, 1.0)
    return np.minimum((c * CONFIDENCE_BINS).astype(np.int64), CONFIDENCE_BINS - 1)


@dataclass
class ItemRegions:
    """What :func:`find_regions` found in one item.

    ``regions``: the region rows (columns as lists, raster order of each region's first
    pixel; ``region`` numbers them from 1); ``counts``: per type the number of regions
    (``edge_noise`` included) and ``edge_noise_pixels``, ``disagree_pixels``, ``pixels``
    (compared pixels), ``ignored``, ``gt_out_of_range``, ``pred_out_of_range`` (pixel
    counts); ``objects``: rows (``class_id``, ``area_bin``, ``gt_objects``, ``pred_objects``)
    of the objects of both maps (components of at least ``(edge_width + 1) ** 2`` px).
    """

    regions: dict[str, list]
    counts: dict[str, int]
    objects: dict[str, list] = field(default_factory=dict)


REGION_COLUMNS = ("region", "type", "gt_class", "pred_class", "area", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
                  "gt_object_area", "pred_blob_area", "covered_gt", "covered_pred", "thickness", "confidence")


def _objects(stats, ok) -> tuple[np.ndarray, np.ndarray]:
    """(class, area bin) of the components whose class passes ``ok``."""
    keep = ok(stats.value)
    return stats.value[keep].astype(np.int64), area_bin(stats.area[keep])


def find_regions(gt: np.ndarray, pred: np.ndarray, *, num_classes: int, ignore_value: int | None = 255,
                 background: int | None = 0, connectivity: int = 8, edge_width: int = DEFAULT_EDGE_WIDTH,
                 swap_fraction: float = DEFAULT_SWAP_FRACTION, confidence: np.ndarray | None = None) -> ItemRegions:
    """The regions of disagreement of one item (see the module docstring).

    ``gt`` and ``pred``: 2-D integer class maps of one shape; pixels whose ground truth is
    ``ignore_value`` or ``>= num_classes``, or whose prediction is ``>= num_classes``, are
    not compared. ``confidence``: float map in [0, 1] of the model's confidence in its
    predicted class (same shape), or None.

    >>> gt = np.zeros((6, 12), np.uint8); gt[:, 6:] = 1
    >>> pred = np.zeros_like(gt); pred[:, 5:] = 1     # the outline one pixel off: edge noise
    >>> r = find_regions(gt, pred, num_classes=2)
    >>> r.regions["type"], r.counts["edge_noise"], r.counts["edge_noise_pixels"]
    ([], 1, 6)
    """
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"gt and pred must be 2-D maps of one shape, got {gt.shape} and {pred.shape}")
    from ..kernels.audit import disagreement, max_square, max_square_sums

    n = int(num_classes)
    g = np.ascontiguousarray(gt)
    p = np.ascontiguousarray(pred)
    code = np.empty(g.shape, np.int32 if n * n + 1 < 2**31 else np.int64)
    has_ignore = ignore_value is not None and _fits(ignore_value, g.dtype)
    compared, differing, ignored, gt_out, pred_out = disagreement(g, p, n, has_ignore,
                                                                  int(ignore_value) if has_ignore else 0, code)
    counts = {t: 0 for t in REGION_TYPES}
    counts.update(edge_noise_pixels=0, disagree_pixels=int(differing), pixels=int(compared), ignored=int(ignored),
                  gt_out_of_range=int(gt_out), pred_out_of_range=int(pred_out))
    gs = component_stats(g, connectivity, background=None)
    ps = component_stats(p, connectivity, background=None)
    objects = _object_rows(gs, ps, n, ignore_value, background, (edge_width + 1) ** 2)
    if not differing:
        return ItemRegions({k: [] for k in REGION_COLUMNS}, counts, objects)
    rs = component_stats(code, connectivity, background=0)
    if confidence is None:
        thick, conf = max_square(rs.labels, rs.count), None
    else:
        cmap = np.asarray(confidence)
        if cmap.shape != g.shape:
            raise ValueError(f"confidence must have the maps' shape {g.shape}, got {cmap.shape}")
        if cmap.dtype not in (np.float32, np.float64):
            cmap = cmap.astype(np.float64)
        thick, sums = max_square_sums(rs.labels, rs.count, np.ascontiguousarray(cmap))
    value = rs.value.astype(np.int64) - 1
    gcls, pcls = value // n, value % n
    fr, fc = rs.first_pixel[:, 0], rs.first_pixel[:, 1]
    g_area = gs.area[gs.labels[fr, fc] - 1]
    p_area = ps.area[ps.labels[fr, fc] - 1]
    area = rs.area.astype(np.int64)
    cov_g = area / g_area
    cov_p = area / p_area
    edge = thick <= edge_width
    # type codes: indexes into REGION_TYPES
    tcode = np.full(rs.count, REGION_TYPES.index("boundary_offset"), np.int8)
    bg = -1 if background is None else int(background)
    tcode[(gcls != bg) & (pcls != bg) & (cov_g >= swap_fraction)] = REGION_TYPES.index("class_swap")
    tcode[(gcls == bg) & (cov_p >= swap_fraction)] = REGION_TYPES.index("missing_label")
    tcode[(pcls == bg) & (cov_g >= swap_fraction)] = REGION_TYPES.index("spurious_label")
    # around stuff (a class other than background that surrounds the object, e.g. road):
    # a whole blob of one side inside a much larger area of the other is an unlabelled /
    # a spurious object too, not a swap of two objects
    tcode[(cov_p >= swap_fraction) & (cov_g < SURROUND_COVER)] = REGION_TYPES.index("missing_label")
    tcode[(cov_g >= swap_fraction) & (cov_p < SURROUND_COVER)] = REGION_TYPES.index("spurious_label")
    tcode[edge] = REGION_TYPES.index("edge_noise")
    if confidence is not None:
        conf = sums / area
    for t, k in zip(REGION_TYPES, np.bincount(tcode, minlength=len(REGION_TYPES)).tolist()):
        counts[t] = k
    counts["edge_noise_pixels"] = int(area[edge].sum())
    keep = np.flatnonzero(~edge)
    regions = {
        "region": (np.arange(keep.size) + 1).tolist(), "type": [REGION_TYPES[t] for t in tcode[keep].tolist()],
        "gt_class": gcls[keep].tolist(), "pred_class": pcls[keep].tolist(), "area": area[keep].tolist(),
        **{c: rs.bbox[keep, k].astype(np.int64).tolist() for k, c in enumerate(("bbox_x", "bbox_y", "bbox_w", "bbox_h"))},
        "gt_object_area": g_area[keep].astype(np.int64).tolist(), "pred_blob_area": p_area[keep].astype(np.int64).tolist(),
        "covered_gt": cov_g[keep].tolist(), "covered_pred": cov_p[keep].tolist(), "thickness": thick[keep].tolist(),
        "confidence": conf[keep].tolist() if conf is not None else [None] * keep.size,
    }
    return ItemRegions(regions, counts, objects)


#: more area bins than any image can fill (4 per octave of up to 2**63 pixels)
_BIN_SPAN = 256


def _fits(value: int, dtype: np.dtype) -> bool:
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    return info is None or info.min <= int(value) <= info.max


def _object_rows(gs, ps, n: int, ignore_value, background, min_area: int) -> dict[str, list]:
    """Rows (class_id, area_bin, gt_objects, pred_objects): the components of both maps
    (``gs``, ``ps``: their component statistics) of at least ``min_area`` pixels (smaller
    ones are specks: ragged prediction outlines would count as many objects) by class and
    quarter-octave area bin (background, ignore and out-of-range classes left out)."""
    def ok(v):
        v = v.astype(np.int64)
        keep = (v >= 0) & (v < n)
        if ignore_value is not None:
            keep &= v != ignore_value
        if background is not None:
            keep &= v != background
        return keep

    rows: dict[tuple[int, int], list[int]] = {}
    for side, stats in ((0, gs), (1, ps)):
        cls, b = _objects(stats, lambda v, a=stats.area: ok(v) & (a >= min_area))
        if cls.size:
            keys, k = np.unique(cls * _BIN_SPAN + b, return_counts=True)
            for key, cnt in zip(keys.tolist(), k.tolist()):
                rows.setdefault(divmod(key, _BIN_SPAN), [0, 0])[side] += cnt
    keys = sorted(rows)
    return {"class_id": [k[0] for k in keys], "area_bin": [k[1] for k in keys],
            "gt_objects": [rows[k][0] for k in keys], "pred_objects": [rows[k][1] for k in keys]}


# --------------------------------------------------------------------------- dataset statistics


def _hist_median(hist: dict[int, int]) -> float | None:
    """The area at the median of a histogram {area bin: objects} (None when empty)."""
    total = sum(hist.values())
    if not total:
        return None
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if 2 * seen >= total:
            return bin_area(b)
    return None  # pragma: no cover - the loop always returns


@dataclass
class DatasetStats:
    """The dataset's statistics the scores are calibrated on (all integer counts).

    ``pairs``: ``{(type, gt_class, pred_class): [regions, pixels, items]}`` (``items``: the
    items holding at least one such region); ``gt_hist`` / ``pred_hist``: ``{class: {area
    bin: objects}}``; ``gt_items`` / ``pred_items``: ``{class: items holding an object of
    it}``; ``confidence_hist``: regions per confidence bin (empty without confidences);
    ``background``: the background class; ``missed``: ``{octave: whole-object misses}``
    (:func:`is_miss`, by the octave of the ground-truth object's area); ``false_blobs``:
    ``{octave: whole-blob false positives}`` (:func:`is_false_blob`, by the octave of the
    predicted blob's area).

    >>> s = DatasetStats({("class_swap", 1, 2): [3, 300, 3]}, {1: {40: 50}}, {}, {1: 40}, {}, [], 0)
    >>> s.class_items("class_swap", 1, 2), round(s.typical_area(1))
    (40, 1117)
    """

    pairs: dict[tuple[str, int, int], list[int]]
    gt_hist: dict[int, dict[int, int]]
    pred_hist: dict[int, dict[int, int]]
    gt_items: dict[int, int]
    pred_items: dict[int, int]
    confidence_hist: list[int]
    background: int | None
    missed: dict[int, int] = field(default_factory=dict)
    false_blobs: dict[int, int] = field(default_factory=dict)

    def concerned_class(self, type_: str, gt_class: int, pred_class: int) -> int:
        """The class a region is measured against: its ground-truth class, the predicted one
        when ground truth is background."""
        return pred_class if gt_class == self.background else gt_class

    def class_items(self, type_: str, gt_class: int, pred_class: int) -> int:
        """The items a region's rate is counted against: those holding an object of its
        ground-truth class, or a blob of its predicted class when ground truth is background."""
        if gt_class == self.background:
            return self.pred_items.get(pred_class, 0)
        return self.gt_items.get(gt_class, 0)

    def typical_area(self, c: int) -> float | None:
        """Median area of the class's ground-truth objects (of its predicted blobs when none)."""
        m = _hist_median(self.gt_hist.get(c, {}))
        return m if m is not None else _hist_median(self.pred_hist.get(c, {}))

    def confidence_cdf(self) -> np.ndarray | None:
        """Per confidence bin: the share of regions below it, ties counting half."""
        h = np.asarray(self.confidence_hist, np.float64)
        if not h.size or h.sum() == 0:
            return None
        below = np.concatenate([[0.0], np.cumsum(h)[:-1]])
        return (below + 0.5 * h) / h.sum()

    def to_json(self) -> dict[str, Any]:
        """JSON form (keys as text), as stored in ``run.json["summary"]["dataset_stats"]``."""
        def counts(d):
            return {str(c): n for c, n in sorted(d.items())}

        return {"pairs": {f"{t}|{g}|{p}": v for (t, g, p), v in sorted(self.pairs.items())},
                "gt_hist": {str(c): counts(h) for c, h in sorted(self.gt_hist.items())},
                "pred_hist": {str(c): counts(h) for c, h in sorted(self.pred_hist.items())},
                "gt_items": counts(self.gt_items), "pred_items": counts(self.pred_items),
                "confidence_hist": list(self.confidence_hist), "background": self.background,
                "missed": counts(self.missed), "false_blobs": counts(self.false_blobs)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DatasetStats":
        """Inverse of :meth:`to_json`."""
        pairs = {}
        for k, v in (d.get("pairs") or {}).items():
            t, g, p = k.split("|")
            pairs[(t, int(g), int(p))] = [int(x) for x in v]
        hist = {side: {int(c): {int(b): int(n) for b, n in h.items()} for c, h in (d.get(side) or {}).items()}
                for side in ("gt_hist", "pred_hist")}
        items = {side: {int(c): int(n) for c, n in (d.get(side) or {}).items()} for side in ("gt_items", "pred_items")}
        return cls(pairs, hist["gt_hist"], hist["pred_hist"], items["gt_items"], items["pred_items"],
                   list(d.get("confidence_hist") or []), d.get("background"),
                   *({int(o): int(n) for o, n in (d.get(k) or {}).items()} for k in ("missed", "false_blobs")))

    @classmethod
    def merge(cls, parts: list[dict[str, Any]], background: int | None) -> "DatasetStats":
        """Add up shard statistics (JSON form); integer sums, so any grouping gives the same."""
        out = cls({}, {}, {}, {}, {}, [], background)
        for d in parts:
            s = cls.from_json(d)
            for k, v in s.pairs.items():
                e = out.pairs.setdefault(k, [0, 0, 0])
                for i, x in enumerate(v):
                    e[i] += x
            for mine, theirs in ((out.gt_hist, s.gt_hist), (out.pred_hist, s.pred_hist)):
                for c, h in theirs.items():
                    dst = mine.setdefault(c, {})
                    for b, v in h.items():
                        dst[b] = dst.get(b, 0) + v
            for mine, theirs in ((out.gt_items, s.gt_items), (out.pred_items, s.pred_items), (out.missed, s.missed),
                                 (out.false_blobs, s.false_blobs)):
                for c, v in theirs.items():
                    mine[c] = mine.get(c, 0) + v
            if s.confidence_hist:
                if not out.confidence_hist:
                    out.confidence_hist = [0] * len(s.confidence_hist)
                out.confidence_hist = [a + b for a, b in zip(out.confidence_hist, s.confidence_hist)]
        return out

    def rate(self, type_: str, gt_class: int, pred_class: int, *, leave_one_out: bool = False) -> float:
        """The share of the class's items where the model makes this kind of disagreement:
        items with a region of this type and pair / (items holding the class +
        :data:`PRIOR_ITEMS`); ``leave_one_out``: not counting the item of the region scored.

        >>> s = DatasetStats({("class_swap", 1, 2): [3, 300, 3]}, {1: {40: 50}}, {}, {1: 40}, {}, [], 0)
        >>> round(s.rate("class_swap", 1, 2), 4), round(s.rate("class_swap", 1, 2, leave_one_out=True), 4)
        (0.06, 0.04)
        """
        items = self.pairs.get((type_, gt_class, pred_class), [0, 0, 0])[2]
        if leave_one_out:
            items = max(0, items - 1)
        return items / (self.class_items(type_, gt_class, pred_class) + PRIOR_ITEMS)

    def miss_rate(self, octave_: int, *, false_blob: bool = False) -> float:
        """How often the model misses a whole ground-truth object of this area octave (or,
        ``false_blob``, sees a whole blob of it that ground truth does not hold), not
        counting the region scored: ``(misses - 1) / (objects + PRIOR_OBJECTS)``.

        >>> s = DatasetStats({}, {1: {24: 50}, 2: {27: 40}}, {}, {}, {}, [], 0, {6: 28})
        >>> round(s.miss_rate(6), 4), s.miss_rate(6, false_blob=True)
        (0.27, 0.0)
        """
        hist, found = (self.pred_hist, self.false_blobs) if false_blob else (self.gt_hist, self.missed)
        objects = sum(n for h in hist.values() for b, n in h.items() if b // AREA_BINS_PER_OCTAVE == octave_)
        return max(0, found.get(octave_, 0) - 1) / (objects + PRIOR_OBJECTS)


SCORE_COLUMNS = ("systematic_rate", "typical_area", "pair_factor", "size_factor", "confidence_factor",
                 "shape_factor", "coverage_factor", "miss_rate", "miss_factor", "score")


def score_regions(cols: dict[str, list], stats: DatasetStats, *, edge_width: int = DEFAULT_EDGE_WIDTH) -> dict[str, list]:
    """The score columns (:data:`SCORE_COLUMNS`) of region rows given as columns.

    >>> s = DatasetStats({("class_swap", 1, 2): [1, 25, 1]}, {1: {18: 20}}, {}, {1: 20}, {}, [], 0)
    >>> cols = {"type": ["class_swap"], "gt_class": [1], "pred_class": [2], "area": [64], "thickness": [8],
    ...         "covered_gt": [1.0], "covered_pred": [1.0], "gt_object_area": [64], "pred_blob_area": [64],
    ...         "confidence": [None]}
    >>> round(score_regions(cols, s)["score"][0], 3)
    0.5
    """
    n = len(cols["type"])
    if not n:
        return {k: [] for k in SCORE_COLUMNS}
    keys = list(zip(cols["type"], (int(v) for v in cols["gt_class"]), (int(v) for v in cols["pred_class"])))
    per_key: dict[tuple, tuple[float, float | None]] = {}
    typical_of: dict[int, float | None] = {}
    for k in set(keys):
        c = stats.concerned_class(*k)
        if c not in typical_of:
            typical_of[c] = stats.typical_area(c)
        per_key[k] = (stats.rate(*k, leave_one_out=True), typical_of[c])
    rate = np.array([per_key[k][0] for k in keys], np.float64)
    typical = [per_key[k][1] for k in keys]
    typ = np.array([t if t else np.nan for t in typical], np.float64)
    area = np.asarray(cols["area"], np.float64)
    types = np.asarray(cols["type"], dtype=object)
    pair_f = 1.0 / (1.0 + rate / RATE_SCALE)
    with np.errstate(invalid="ignore", divide="ignore"):
        size_f = np.where(np.isnan(typ), 1.0, np.minimum(1.0, np.sqrt(area / (SIZE_REFERENCE * typ))))
    conf = np.array([np.nan if v is None else v for v in cols["confidence"]], np.float64)
    cdf = stats.confidence_cdf()
    conf_f = np.ones(n)
    if cdf is not None:
        given = ~np.isnan(conf)
        conf_f[given] = cdf[confidence_bin(conf[given])]
    thick = np.asarray(cols["thickness"], np.float64)
    shape_f = np.clip((thick - edge_width) / (SHAPE_SCALE * max(1, edge_width)), 0.0, 1.0)
    cov_f = np.ones(n)
    by_gt = (types == "class_swap") | (types == "spurious_label")
    by_pred = types == "missing_label"
    cov_f[by_gt] = np.asarray(cols["covered_gt"], np.float64)[by_gt]
    cov_f[by_pred] = np.asarray(cols["covered_pred"], np.float64)[by_pred]
    miss_r = np.full(n, np.nan)
    for fb, which, area_col in ((False, is_miss, "gt_object_area"), (True, is_false_blob, "pred_blob_area")):
        sel = which(cols["covered_gt"], cols["covered_pred"])
        octs = octave(np.asarray(cols[area_col], np.float64))
        rate_of = {o: stats.miss_rate(o, false_blob=fb) for o in set(octs[sel].tolist())}
        miss_r[sel] = [rate_of[o] for o in octs[sel].tolist()]
    miss = ~np.isnan(miss_r)
    miss_f = np.where(miss, 1.0 / (1.0 + np.nan_to_num(miss_r) / MISS_SCALE), 1.0)
    score = pair_f * size_f * conf_f * shape_f * cov_f * miss_f
    return {"systematic_rate": rate.tolist(), "typical_area": typical, "pair_factor": pair_f.tolist(),
            "size_factor": size_f.tolist(), "confidence_factor": conf_f.tolist(), "shape_factor": shape_f.tolist(),
            "coverage_factor": cov_f.tolist(), "miss_rate": [None if np.isnan(v) else v for v in miss_r.tolist()],
            "miss_factor": miss_f.tolist(), "score": score.tolist()}


def label_quality(scores: list[float]) -> float:
    """An item's label quality: the product of ``1 - score`` over its regions (1 without any).

    >>> label_quality([]), round(label_quality([0.5, 0.2]), 2)
    (1.0, 0.4)
    """
    q = 1.0
    for s in scores:
        q *= 1.0 - float(s)
    return max(0.0, min(1.0, q))
