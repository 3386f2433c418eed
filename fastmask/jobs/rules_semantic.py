"""Checks on one semantic (class) mask: values, anti-aliasing, emptiness, tiny islands, palette, colours.

The expensive part is shared: :func:`scan_class_mask` makes one fused kernel pass
(histogram, neighbour transitions, valid blends) and, only when invalid values are
present, a second pass for their bboxes and the invalid edge pixels; component
labeling (for ``tiny_island`` and per-class component counts) is one run-based
pass of :func:`fastmask.components.component_stats`.  :func:`check_class_mask` runs
everything and returns the findings and the item statistics the report needs.

>>> import numpy as np
>>> m = np.zeros((64, 64), np.uint8); m[:, 32:] = 1; m[5, 5] = 7
>>> findings, stats = check_class_mask(m, label_ids=[0, 1])
>>> sorted(f.rule for f in findings), stats.values.tolist(), stats.counts.tolist()
(['unexpected_value'], [0, 1, 7], [2047, 2048, 1])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from collections.abc import Mapping
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from fastmask import components
from fastmask.kernels import components as _kc
from fastmask.kernels import validate as kv

from ..formats.labelmap import voc_colormap  # the one VOC colormap (re-exported here)
from .._text import plural
from .rules_core import (
    as_2d_int,
    DEFAULT_CONFIG,
    Finding,
    RuleConfig,
    bbox_from_inclusive,
    name_of,
    union_bbox,
)

__all__ = [
    "ClassMaskScan",
    "ClassMaskStats",
    "scan_class_mask",
    "check_class_mask",
    "quick_class_mask",
    "fused_class_scan",
    "unexpected_value",
    "antialias_suspect",
    "empty_mask",
    "tiny_island",
    "palette_mismatch",
    "unknown_color",
    "voc_colormap",
]

# above this many distinct slots the histogram would be wasteful: compact the values
_DIRECT_MAX = 1 << 20


@lru_cache(maxsize=64)
def _kind_table(n: int, label_ids: tuple | None, ignore: int | None, background: int | None,
                unknown_id: int | None) -> np.ndarray:
    # KIND_CLASS for label ids and background, KIND_IGNORE for the ignore value, else invalid;
    # without label ids every value is a class id (nothing is "unexpected")
    if label_ids is None:
        kind = np.full(n, kv.KIND_CLASS, np.uint8)
    else:
        kind = np.zeros(n, np.uint8)
        ids = np.asarray([i for i in label_ids if 0 <= i < n], dtype=np.int64)
        kind[ids] = kv.KIND_CLASS
        if background is not None and 0 <= background < n:
            kind[background] = kv.KIND_CLASS
    if ignore is not None and 0 <= ignore < n:
        kind[ignore] = kv.KIND_IGNORE
    if unknown_id is not None and 0 <= unknown_id < n:
        kind[unknown_id] = kv.KIND_INVALID
    kind.setflags(write=False)
    return kind


def _kinds_for_values(values: np.ndarray, label_ids, ignore, background, unknown_id) -> np.ndarray:
    if label_ids is None:
        kind = np.full(values.shape, kv.KIND_CLASS, np.uint8)
    else:
        valid = set(int(i) for i in label_ids)
        if background is not None:
            valid.add(int(background))
        kind = np.array([kv.KIND_CLASS if int(v) in valid else kv.KIND_INVALID for v in values], np.uint8)
    if ignore is not None:
        kind[values == ignore] = kv.KIND_IGNORE
    if unknown_id is not None:
        kind[values == unknown_id] = kv.KIND_INVALID
    return kind


class _Islands:
    """What the class-mask rules read of the components: the components per value code
    (``value_counts``) and ``tiny_island``'s per-class records (:func:`kv.island_records`,
    values as codes; ``lut`` maps codes to values when the mask was compacted).  Sized by
    the values, never by the components.
    """

    __slots__ = ("value_counts", "records", "n_small", "lut", "labeled")

    def __init__(self, value_counts, records, lut=None, labeled=0):
        self.value_counts = value_counts
        self.records = records
        self.n_small = records.shape[0] // kv.ISL_LEN
        self.lut = lut
        self.labeled = labeled  # pixels in components


_NO_ISLANDS = np.zeros(0, np.int64)


@dataclass
class ClassMaskScan:
    """Result of :func:`scan_class_mask` (shared by the class-mask rules)."""

    mask: np.ndarray
    height: int
    width: int
    values: np.ndarray  # int64, sorted values present
    counts: np.ndarray  # int64, their pixel counts
    kinds: np.ndarray  # uint8 kind of each present value (KIND_*)
    transitions: int
    blend_pixels: int
    blend_bbox: tuple | None
    invalid_edge_pixels: int = 0
    invalid_edge_bbox: tuple | None = None
    #: value -> (x, y, w, h) for invalid values (present only when there are some)
    invalid_bboxes: dict = field(default_factory=dict)
    unknown_id: int | None = None

    @property
    def invalid_pixels(self) -> int:
        return int(self.counts[self.kinds == kv.KIND_INVALID].sum())


def _as_2d_int(mask) -> np.ndarray:
    return as_2d_int(mask, "a class mask")


def scan_class_mask(mask, label_ids: Iterable[int] | None = None, config: RuleConfig = DEFAULT_CONFIG,
                    *, unknown_id: int | None = None) -> ClassMaskScan:
    """One fused pass over a 2-D integer mask: value counts, transitions, blends (+ invalid pass if needed).

    ``label_ids``: the label map's ids (None: every value is valid).  ``unknown_id``:
    the value a reader wrote for colours not in the label map (reported by
    ``unknown_color``, never by ``unexpected_value``, but still an invalid value
    for ``antialias_suspect``).

    >>> s = scan_class_mask(np.array([[0, 0, 2, 2]], np.uint8), [0, 2])
    >>> s.values.tolist(), s.counts.tolist(), s.transitions
    ([0, 2], [2, 2], 1)
    """
    return _scan_class_mask(mask, label_ids, config, unknown_id, False)[0]


def _scan_class_mask(mask, label_ids, config: RuleConfig, unknown_id, with_components: bool):
    """:func:`scan_class_mask`, plus the component statistics when ``with_components``.

    With ``with_components`` and a mask whose values are their own codes (the usual
    case), one fused kernel pass (:func:`kv.class_scan_runs`) gives both; returns
    ``(scan, islands)`` (an :class:`_Islands`; None without ``with_components`` or pixels).
    Memory: the mask, its runs (13 bytes a run for 8-bit masks) and one value and one
    area per component -- bounded by the pixels, never a Python object per component.
    """
    m = _as_2d_int(mask)
    h, w = m.shape
    ids = None if label_ids is None else tuple(sorted(map(int, label_ids)))
    ignore, bg = config.ignore_value, config.background
    if m.size == 0:
        z = np.zeros(0, np.int64)
        return ClassMaskScan(m, h, w, z, z, np.zeros(0, np.uint8), 0, 0, None, unknown_id=unknown_id), None
    if m.dtype == np.uint8:
        n = 256
        codes, lut = m, None
    else:
        mn, mx = int(m.min()), int(m.max())
        if mn >= 0 and mx < _DIRECT_MAX:
            n = mx + 1
            codes, lut = m, None
        else:
            # negative or huge values: compact (np.unique keeps order, so blends stay blends)
            lut, inv = np.unique(m, return_inverse=True)
            codes = inv.reshape(m.shape).astype(np.int32)
            n = lut.size
    if lut is None:
        kind = _kind_table(n, ids, ignore, bg, unknown_id)
    else:
        kind = _kinds_for_values(lut.astype(np.int64), ids, ignore, bg, unknown_id)
    hist = np.zeros(n, np.int64)
    out = np.zeros(kv.SCAN_LEN, np.int64)
    cstats = None
    if with_components:
        conn = components._check_connectivity(config.connectivity)
        tiny = config.enabled("tiny_island") and m.size >= config.island_image_floor
        min_island = config.min_island if tiny else 0
        if lut is None:
            arr, has_bg, bg_code = _prepare_for_runs(m, config.background)
        else:  # label the codes: same components (codes are a bijection of the values)
            arr = codes
            pos = -1 if bg is None else int(np.searchsorted(lut, bg))
            has_bg = 0 <= pos < lut.size and lut[pos] == bg
            bg_code = arr.dtype.type(pos if has_bg else 0)
        idx_like = np.empty(0, components.label_dtype(m.size))
        if arr is m:
            count, rs, re, rv, lab, row_ptr = kv.class_scan_runs(m, kind, hist, out, conn == 8, has_bg, bg_code,
                                                                 idx_like)
        else:
            kv.class_scan(codes, kind, hist, out)
            status, count, rs, re, rv, lab, row_ptr = _kc.runs_2d(arr, conn, has_bg, bg_code, idx_like)
            components._raise_status(status)
        cval, area, per_value = kv.component_values(rs, re, rv, lab, count, n)
        labeled = int(area.sum(dtype=np.int64))
        records = kv.island_records(rs, re, lab, row_ptr, cval, area, kind, min_island, n) \
            if min_island > 0 else _NO_ISLANDS
        cstats = _Islands(per_value, records, lut, labeled)
    else:
        kv.class_scan(codes, kind, hist, out)
    present = np.flatnonzero(hist)
    counts = hist[present]
    kinds = kind[present]
    values = present.astype(np.int64) if lut is None else lut[present].astype(np.int64)
    scan = ClassMaskScan(
        mask=m, height=h, width=w, values=values, counts=counts, kinds=kinds,
        transitions=int(out[kv.SCAN_TRANSITIONS]), blend_pixels=int(out[kv.SCAN_BLENDS]),
        blend_bbox=bbox_from_inclusive(*out[kv.SCAN_BX0:kv.SCAN_BY1 + 1]), unknown_id=unknown_id)
    if (kinds == kv.KIND_INVALID).any():
        vbox = np.empty((n, 4), np.int64)
        vbox[:, 0] = w
        vbox[:, 1] = h
        vbox[:, 2:] = -1
        iout = np.zeros(kv.INV_LEN, np.int64)
        kv.invalid_scan(codes, kind, int(config.antialias_radius), vbox, iout)
        scan.invalid_edge_pixels = int(iout[kv.INV_EDGE])
        scan.invalid_edge_bbox = bbox_from_inclusive(*iout[kv.INV_X0:kv.INV_Y1 + 1])
        scan.invalid_bboxes = _ValueBoxes(values[kinds == kv.KIND_INVALID], vbox[present[kinds == kv.KIND_INVALID]])
    return scan, cstats


class _ValueBoxes(Mapping):
    """value -> (x, y, w, h) of the invalid values, over arrays (a 32-bit mask can hold
    millions of distinct invalid values: no tuple per value until one is asked for)."""

    def __init__(self, values: np.ndarray, boxes: np.ndarray):
        self._values = values  # sorted
        self._boxes = boxes  # inclusive x0, y0, x1, y1

    def _index(self, value) -> int:
        i = int(np.searchsorted(self._values, value))
        return i if i < self._values.size and self._values[i] == value else -1

    def __getitem__(self, value):
        i = self._index(value)
        if i < 0:
            raise KeyError(value)
        return bbox_from_inclusive(*self._boxes[i].tolist())

    def __iter__(self):
        return iter(self._values.tolist())

    def __len__(self) -> int:
        return int(self._values.size)

    def union(self, values) -> tuple | None:
        """Union box of ``values`` (keys of this mapping)."""
        b = self._boxes[np.searchsorted(self._values, np.asarray(values, np.int64))]
        b = b[b[:, 0] >= 0]
        if not b.shape[0]:
            return None
        return bbox_from_inclusive(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())


def _prepare_for_runs(m: np.ndarray, background):
    """:func:`fastmask.components._prepare` without its checks for the usual mask (the
    validator's hot path: ~20 us a mask); anything unusual goes the checked way."""
    if (m.dtype == np.uint8 or (m.dtype == np.uint16 and m.dtype.isnative)) and m.flags.c_contiguous \
            and type(background) is int and 0 <= background <= np.iinfo(m.dtype).max:
        return m, True, m.dtype.type(background)
    return components._prepare(m, background)


def _scan(mask, label_ids, config, scan, unknown_id=None) -> ClassMaskScan:
    return scan if scan is not None else scan_class_mask(mask, label_ids, config, unknown_id=unknown_id)


def unexpected_value(mask=None, label_ids: Iterable[int] | None = None, config: RuleConfig = DEFAULT_CONFIG, *,
                     scan: ClassMaskScan | None = None, unknown_id: int | None = None,
                     names: Mapping[int, str] | None = None, max_findings: int = 20) -> list[Finding]:
    """One finding per value that is not a label id, background or the ignore value.

    ``class_id`` is the value, ``pixels`` its count, ``bbox`` its extent.  Beyond
    ``max_findings`` values (most pixels first), the rest are summed in one last
    finding with ``class_id=None``.  Nothing is reported without ``label_ids``.

    >>> m = np.array([[0, 1], [9, 255]], np.uint8)
    >>> [(f.class_id, f.pixels, f.bbox) for f in unexpected_value(m, [0, 1])]
    [(9, 1, (0, 1, 1, 1))]
    """
    if not config.enabled("unexpected_value") or (label_ids is None and scan is None):
        return []
    s = _scan(mask, label_ids, config, scan, unknown_id)
    inv = s.kinds == kv.KIND_INVALID
    if not inv.any():
        return []
    vals, cnts = s.values[inv], s.counts[inv]
    if s.unknown_id is not None:
        keep = vals != s.unknown_id
        vals, cnts = vals[keep], cnts[keep]
    if not vals.size:
        return []
    order = np.lexsort((vals, -cnts))  # most pixels first, then by value
    vals, cnts = vals[order], cnts[order]
    out = []
    for value, count in zip(vals[:max_findings].tolist(), cnts[:max_findings].tolist()):
        share = count / max(1, s.height * s.width)
        out.append(config.finding(
            "unexpected_value",
            f"value {value} is not in the label map: {count} px ({share:.2%} of the mask)",
            class_id=value, pixels=count, bbox=s.invalid_bboxes.get(value),
            extra={"value": value, "share": share}))
    rest_v, rest_c = vals[max_findings:], cnts[max_findings:]
    if rest_v.size:
        n = int(rest_c.sum())
        boxes = s.invalid_bboxes
        bbox = boxes.union(rest_v) if isinstance(boxes, _ValueBoxes) else \
            union_bbox([boxes[v] for v in rest_v.tolist() if boxes.get(v)])
        listed = _LISTED
        out.append(config.finding(
            "unexpected_value",
            f"{rest_v.size} more values not in the label map ({n} px), e.g. {rest_v[:5].tolist()}",
            pixels=n, bbox=bbox,
            extra={"values": rest_v[:listed].tolist(), "counts": rest_c[:listed].tolist(),
                   "n_values": int(rest_v.size)}))
    return out


#: values (with counts) listed in the extra of unexpected_value's summary finding
_LISTED = 1000


def antialias_suspect(mask=None, label_ids: Iterable[int] | None = None, config: RuleConfig = DEFAULT_CONFIG, *,
                      scan: ClassMaskScan | None = None, unknown_id: int | None = None) -> list[Finding]:
    """Anti-aliased edges: invalid values or blended ids on boundaries between regions.

    Two kinds of suspect pixels (see ``kernels/validate.py`` for the exact definitions):

    - *invalid edge*: an invalid value (not a label id, background or ignore) whose
      nearest valid pixels within ``antialias_radius`` on both sides along a row or a
      column exist and differ (the pixel sits in a short invalid run between two
      different regions);
    - *valid blend*: a class id strictly between the class ids of its two opposite
      4-neighbours (e.g. 5 between 2 and 8).

    One finding when invalid-edge pixels >= ``antialias_min_pixels``, or when valid
    blends >= ``antialias_min_blends`` and >= ``antialias_blend_fraction`` of the
    neighbour transitions (a few 1-px slivers are legitimate; anti-aliasing puts a
    blend on most boundaries).  ``pixels`` = both kinds, ``bbox`` their extent.

    >>> m = np.zeros((4, 6), np.uint8); m[:, 3:] = 2; m[:, 2] = 128
    >>> [(f.pixels, f.bbox) for f in antialias_suspect(m, [0, 2])]
    [(4, (2, 0, 1, 4))]
    """
    if not config.enabled("antialias_suspect"):
        return []
    s = _scan(mask, label_ids, config, scan, unknown_id)
    edge = s.invalid_edge_pixels
    blends = s.blend_pixels
    frac = blends / s.transitions if s.transitions else 0.0
    edge_hit = edge >= max(1, config.antialias_min_pixels)
    blend_hit = blends >= max(1, config.antialias_min_blends) and frac >= config.antialias_blend_fraction
    if not (edge_hit or blend_hit):
        return []
    parts, boxes = [], []
    if edge_hit:
        parts.append(f"{edge} px of invalid values between two different regions")
        boxes.append(s.invalid_edge_bbox)
    if blend_hit:
        parts.append(f"{blends} px whose id lies strictly between its neighbours' ids "
                     f"({frac:.0%} of {s.transitions} boundary transitions)")
        boxes.append(s.blend_bbox)
    pixels = (edge if edge_hit else 0) + (blends if blend_hit else 0)
    return [config.finding(
        "antialias_suspect", "anti-aliased edges suspected: " + "; ".join(parts),
        pixels=pixels, bbox=union_bbox([b for b in boxes if b]),
        extra={"invalid_edge_pixels": edge, "blend_pixels": blends, "transitions": s.transitions,
               "blend_fraction": frac, "radius": config.antialias_radius})]


def empty_mask(mask=None, config: RuleConfig = DEFAULT_CONFIG, *, scan: ClassMaskScan | None = None) -> list[Finding]:
    """The mask holds only background and/or ignore pixels (or no pixels at all).

    >>> [f.rule for f in empty_mask(np.zeros((3, 3), np.uint8))]
    ['empty_mask']
    """
    if not config.enabled("empty_mask"):
        return []
    s = _scan(mask, None, config, scan)
    bg, ign = config.background, config.ignore_value
    other = [v for v in s.values.tolist() if v != bg and v != ign]
    if other:
        return []
    bg_px = int(sum(c for v, c in zip(s.values, s.counts) if v == bg))
    ign_px = int(sum(c for v, c in zip(s.values, s.counts) if v == ign))
    what = " and ".join(x for x, n in ((f"background ({bg})", bg_px), (f"ignore ({ign})", ign_px)) if n) or "no"
    return [config.finding("empty_mask", f"mask has only {what} pixels ({s.height}x{s.width})",
                           pixels=0, extra={"background_pixels": bg_px, "ignore_pixels": ign_px})]


def tiny_island(mask=None, config: RuleConfig = DEFAULT_CONFIG, *, cstats=None, label_ids=None,
                scan: ClassMaskScan | None = None, names: Mapping[int, str] | None = None) -> list[Finding]:
    """Per class, the connected components smaller than ``min_island`` pixels.

    Multilabel labeling with ``connectivity``; background, the ignore value and
    invalid values (``unexpected_value``'s business) are not islands.  One finding
    per class: ``pixels`` = total island pixels, ``bbox`` = union of the islands,
    ``extra`` = count, the largest island's bbox and the first island bboxes.
    Beyond ``max_findings`` classes, one more finding sums the other classes' islands.
    Images smaller than ``island_min_image_pixels`` (default 256 * min_island) are
    skipped: on a 5x5 fixture every region is "tiny".  ``cstats`` may be a
    precomputed :class:`fastmask.components.ComponentStats` with the same connectivity.

    >>> m = np.zeros((64, 64), np.uint8); m[10:20, 10:20] = 1; m[40, 40] = 1
    >>> [(f.class_id, f.pixels, f.bbox) for f in tiny_island(m)]
    [(1, 1, (40, 40, 1, 1))]
    """
    if not config.enabled("tiny_island") or config.min_island <= 0:
        return []
    m = _as_2d_int(mask) if mask is not None else scan.mask
    if m.size < config.island_image_floor:
        return []
    if isinstance(cstats, _Islands):
        st = cstats
    elif cstats is None:
        _, st = _scan_class_mask(m, label_ids, config, scan.unknown_id if scan is not None else None, True)
        if st is None:
            return []
    else:
        return _island_findings(_records_from_stats(cstats, config, label_ids, scan), config, names)
    return _island_findings(st.records, config, names, st.lut)


def _records_from_stats(st, config: RuleConfig, label_ids, scan) -> np.ndarray:
    """:func:`kv.island_records` from a :class:`~fastmask.components.ComponentStats`
    (per-component arrays the caller already holds), with NumPy."""
    small = st.area < config.min_island
    vals = st.value[small].astype(np.int64)
    keep = np.ones(vals.shape, bool)
    if config.ignore_value is not None:
        keep &= vals != config.ignore_value
    if label_ids is not None:
        lab = np.unique(np.fromiter(map(int, label_ids), np.int64))
        pos = np.minimum(np.searchsorted(lab, vals), max(lab.size - 1, 0))
        keep &= lab[pos] == vals if lab.size else False
    if scan is not None and scan.unknown_id is not None:
        keep &= vals != scan.unknown_id
    vals = vals[keep]
    areas = st.area[small][keep].astype(np.int64)
    boxes = np.asarray(st.bbox)[small][keep].astype(np.int64)
    u, start, cnt = np.unique(vals, return_index=True, return_counts=True) if vals.size else (vals,) * 3
    order = np.argsort(vals, kind="stable")  # raster order kept within a class
    out = np.zeros((u.size, kv.ISL_LEN), np.int64)
    for d, (v, n) in enumerate(zip(u.tolist(), cnt.tolist())):
        sel = order[np.searchsorted(vals[order], v):][:n]
        a, b = areas[sel], boxes[sel]
        big = int(np.argmax(a))
        nb = min(n, kv.ISLAND_BOXES)
        out[d, [kv.ISL_VALUE, kv.ISL_COUNT, kv.ISL_PIXELS]] = v, n, a.sum()
        out[d, kv.ISL_X0:kv.ISL_X0 + 4] = (b[:, 0].min(), b[:, 1].min(), (b[:, 0] + b[:, 2]).max() - 1,
                                         (b[:, 1] + b[:, 3]).max() - 1)
        out[d, kv.ISL_BIG_AREA] = a[big]
        out[d, kv.ISL_BIG:kv.ISL_BIG + 4] = b[big]
        out[d, kv.ISL_NB] = nb
        out[d, kv.ISL_BOXES:kv.ISL_BOXES + 4 * nb] = b[:nb].reshape(-1)
    return out.reshape(-1)


def _island_findings(records, config: RuleConfig, names: Mapping[int, str] | None, lut=None) -> list[Finding]:
    """``tiny_island``'s findings from :func:`kv.island_records` (a flat int64 array or
    list; values are codes of ``lut`` when given): one per class, classes in increasing
    order; beyond ``config.max_findings`` classes, one finding with the others' totals."""
    rec = np.asarray(records, np.int64).reshape(-1, kv.ISL_LEN)
    if lut is not None:
        rec = rec.copy()
        rec[:, kv.ISL_VALUE] = np.asarray(lut, np.int64)[rec[:, kv.ISL_VALUE]]
    k = max(0, int(config.max_findings))
    out = []
    for r in rec[:k].tolist():
        c, n, px = r[kv.ISL_VALUE], r[kv.ISL_COUNT], r[kv.ISL_PIXELS]
        x0, y0, x1, y1 = r[kv.ISL_X0:kv.ISL_X0 + 4]
        nb = r[kv.ISL_NB]
        boxes = [r[q:q + 4] for q in range(kv.ISL_BOXES, kv.ISL_BOXES + 4 * nb, 4)]
        out.append(config.finding(
            "tiny_island",
            f"class {name_of(c, names)}: {plural(n, 'component', '')} smaller than {config.min_island} px "
            f"({px} px, {config.connectivity}-connected)",
            class_id=c, pixels=px, bbox=(x0, y0, x1 + 1 - x0, y1 + 1 - y0),
            extra={"count": n, "largest_area": r[kv.ISL_BIG_AREA], "largest_bbox": r[kv.ISL_BIG:kv.ISL_BIG + 4],
                   "bboxes": boxes, "min_island": config.min_island,
                   "connectivity": config.connectivity}))
    rest = rec[k:]
    if rest.shape[0]:
        n, px = int(rest[:, kv.ISL_COUNT].sum()), int(rest[:, kv.ISL_PIXELS].sum())
        x0, y0 = int(rest[:, kv.ISL_X0].min()), int(rest[:, kv.ISL_X0 + 1].min())
        x1, y1 = int(rest[:, kv.ISL_X0 + 2].max()), int(rest[:, kv.ISL_X0 + 3].max())
        out.append(config.finding(
            "tiny_island",
            f"{plural(rest.shape[0], 'more class', '')} with components smaller than {config.min_island} px: "
            f"{plural(n, 'component', '')}, {px} px ({config.connectivity}-connected)",
            pixels=px, bbox=(x0, y0, x1 + 1 - x0, y1 + 1 - y0),
            extra={"summary": True, "classes": int(rest.shape[0]), "count": n,
                   "class_ids": rest[:20, kv.ISL_VALUE].tolist(), "min_island": config.min_island,
                   "connectivity": config.connectivity}))
    return out


@dataclass
class ClassMaskStats:
    """Per-item statistics of a class mask for the ``items`` and ``classes`` tables."""

    height: int
    width: int
    values: np.ndarray
    counts: np.ndarray
    #: class value -> number of connected components (None when labeling was skipped)
    components: dict | None
    connectivity: int
    transitions: int
    blend_pixels: int
    invalid_edge_pixels: int
    invalid_pixels: int

    def class_pixels(self) -> dict[int, int]:
        """value -> pixel count."""
        return {int(v): int(c) for v, c in zip(self.values, self.counts)}

    def shares(self, ignore_value: int | None = 255) -> dict[int, float]:
        """value -> share of the non-ignore pixels (the ``coverage_outlier`` input)."""
        total = int(sum(c for v, c in zip(self.values, self.counts) if v != ignore_value))
        if total == 0:
            return {}
        return {int(v): int(c) / total for v, c in zip(self.values, self.counts) if v != ignore_value}

    def to_row(self) -> dict:
        """JSON/Parquet-friendly dict (lists, not dicts with int keys)."""
        comp = self.components or {}
        return {
            "height": self.height, "width": self.width,
            "values": self.values.tolist(), "value_counts": self.counts.tolist(),
            "component_values": sorted(comp), "component_counts": [comp[k] for k in sorted(comp)],
            "connectivity": self.connectivity, "transitions": self.transitions,
            "blend_pixels": self.blend_pixels, "invalid_edge_pixels": self.invalid_edge_pixels,
            "invalid_pixels": self.invalid_pixels,
        }


def check_class_mask(mask, label_ids: Iterable[int] | None = None, config: RuleConfig = DEFAULT_CONFIG, *,
                     unknown_id: int | None = None, names: Mapping[int, str] | None = None,
                     components_needed: bool = True) -> tuple[list[Finding], ClassMaskStats]:
    """All per-mask value rules in one go: unexpected_value, antialias_suspect, empty_mask, tiny_island.

    Returns ``(findings, stats)``; ``stats.components`` maps each class value to its
    component count (background and ignore excluded) unless ``components_needed``
    is False and ``tiny_island`` is disabled (labeling is then skipped).
    Palette and colour rules need the reader's facts: call :func:`palette_mismatch`
    and :func:`unknown_color` alongside.

    >>> m = np.zeros((64, 64), np.uint8); m[:8, :8] = 3
    >>> f, st = check_class_mask(m, [0, 3]); f, st.components
    ([], {3: 1})
    """
    need = components_needed or config.enabled("tiny_island")
    s, st = _scan_class_mask(mask, label_ids, config, unknown_id, need)
    findings = []
    findings += unexpected_value(label_ids=label_ids, config=config, scan=s, names=names)
    findings += antialias_suspect(config=config, scan=s)
    findings += empty_mask(config=config, scan=s)
    comp = None
    if need:
        if st is None:  # no pixels
            st = _Islands(np.zeros(0, np.int64), _NO_ISLANDS)
        if st.n_small:
            findings += tiny_island(s.mask, config, cstats=st, label_ids=label_ids, scan=s, names=names)
        u = np.flatnonzero(st.value_counts)  # components per value code
        vals = u if st.lut is None else st.lut[u].astype(np.int64)
        if config.ignore_value is not None:
            keep = vals != config.ignore_value
            u, vals = u[keep], vals[keep]
        comp = dict(zip(vals.tolist(), st.value_counts[u].tolist()))
    stats = ClassMaskStats(s.height, s.width, s.values, s.counts, comp, config.connectivity, s.transitions,
                           s.blend_pixels, s.invalid_edge_pixels, s.invalid_pixels)
    return findings, stats


def quick_class_mask(mask: np.ndarray, label_ids: tuple | None, config: RuleConfig = DEFAULT_CONFIG,
                     unknown_id: int | None = None, names: Mapping[int, str] | None = None, *,
                     scanned: tuple | None = None) -> tuple[list[Finding], list, list, dict] | None:
    """:func:`check_class_mask` for the usual 8-bit mask, in one kernel call.

    Returns ``(findings, values, counts, components)`` -- the same findings and
    statistics as ``check_class_mask`` (lists and a dict instead of arrays) -- or None
    when the mask needs the full rules: an invalid value, an empty mask, blends enough
    for ``antialias_suspect``, or a mask this path does not take (only C-contiguous 2-D
    uint8 masks with an integer background).  ``label_ids`` must be a sorted tuple
    (or None). ``scanned``: ``(arguments, result)`` of the kernel run while the mask's PNG was
    decoded (:func:`fused_class_scan`); used when its arguments are this call's.

    >>> m = np.zeros((64, 64), np.uint8); m[:, 32:] = 1
    >>> quick_class_mask(m, (0, 1))
    ([], [0, 1], [2048, 2048], {1: 1})
    >>> m[5, 5] = 7; quick_class_mask(m, (0, 1)) is None   # 7 is no label id: the full rules report it
    True
    """
    bg = config.background
    if not (type(mask) is np.ndarray and mask.dtype is _U8 and mask.ndim == 2 and mask.size
            and mask.flags.c_contiguous and type(bg) is int and 0 <= bg <= 255):
        return None
    plan = _quick_plan(label_ids, config, unknown_id, mask.size)
    if scanned is not None and scanned[0] is plan.fused:  # the same kernel arguments: the same result
        res = scanned[1].tolist()
    else:
        res = kv.class_mask_quick(mask, plan.kind, plan.eight, True, plan.bg, plan.idx_like, plan.min_island,
                                  plan.ignore).tolist()
    if res[kv.QUICK_FULL]:
        return None
    blends = res[kv.QUICK_BLENDS]
    if blends and plan.antialias and blends >= max(1, config.antialias_min_blends):
        trans = res[kv.QUICK_TRANSITIONS]
        if (blends / trans if trans else 0.0) >= config.antialias_blend_fraction:
            return None  # antialias_suspect reports: its finding is built by the full rules
    nv, nc, ns = res[kv.QUICK_N_VALUES], res[kv.QUICK_N_COMP], res[kv.QUICK_N_SMALL]
    p = kv.QUICK_HEADER
    values, counts = res[p:p + nv], res[p + nv:p + 2 * nv]
    p += 2 * nv
    comps = dict(zip(res[p:p + nc], res[p + nc:p + 2 * nc]))
    p += 2 * nc
    findings = []
    if ns:
        # the kernel's islands are those tiny_island keeps (class values only: kind == KIND_CLASS)
        findings = _island_findings(res[p:], config, names)
    return findings, values, counts, comps


def fused_class_scan(label_ids: tuple | None, config: RuleConfig = DEFAULT_CONFIG, unknown_id: int | None = None):
    """The callable fastmask's PNG decoder takes to run :func:`quick_class_mask`'s kernel
    while it unfilters a mask's rows (``want="class_scan"`` of
    :func:`fastmask.formats.maskpng.decode_mask_png`): ``(h, w) -> kernel arguments``, or
    None when the configuration leaves the one-call path (a background outside 0..255).

    >>> kind, eight, bg, idx_like, min_island, ignore = fused_class_scan((0, 1))(2, 3)
    >>> kind[:3].tolist(), eight, int(bg), ignore
    ([1, 1, 0], True, 0, 255)
    """
    return _FusedClassScan(label_ids, config, unknown_id)


class _FusedClassScan:
    """:func:`fused_class_scan`'s callable (a class: a job holding it is pickled to workers)."""

    def __init__(self, label_ids: tuple | None, config: RuleConfig, unknown_id: int | None):
        self.label_ids, self.config, self.unknown_id = label_ids, config, unknown_id
        bg = config.background
        self.ok = type(bg) is int and 0 <= bg <= 255

    def __call__(self, h: int, w: int) -> tuple | None:
        return _quick_plan(self.label_ids, self.config, self.unknown_id, h * w).fused if self.ok else None


_U8 = np.dtype(np.uint8)


class _QuickPlan(NamedTuple):
    kind: np.ndarray  # value -> KIND_* (256 entries)
    eight: bool  # 8-connectivity
    idx_like: np.ndarray  # its dtype (int32 / int64) is the kernel's run index dtype
    min_island: int  # 0: no tiny islands
    ignore: int  # the ignore value, -1 when none fits uint8
    antialias: bool  # antialias_suspect enabled
    bg: np.uint8  # the background value
    fused: tuple  # the arguments of the fused decode + scan kernel (after buf, h, w)


def _quick_plan(label_ids, config: RuleConfig, unknown_id, size: int) -> _QuickPlan:
    """What :func:`quick_class_mask` passes to the kernel, cached by everything it depends
    on (a validator asks for the same plan millions of times)."""
    tiny = "tiny_island" not in config.disabled and config.min_island > 0 and size >= config.island_image_floor
    key = (label_ids, unknown_id, size < 2**31, tiny, config.min_island, config.ignore_value, config.background,
           config.connectivity, "antialias_suspect" not in config.disabled)
    plan = _PLANS.get(key)
    if plan is None:
        ign = config.ignore_value
        kind = _kind_table(256, label_ids, ign, config.background, unknown_id)
        conn = components._check_connectivity(config.connectivity)
        eight, idx, min_island = conn == 8, _IDX32 if key[2] else _IDX64, config.min_island if tiny else 0
        ignore, bg = -1 if ign is None or not 0 <= ign <= 255 else int(ign), np.uint8(config.background)
        plan = _QuickPlan(kind, eight, idx, min_island, ignore, key[-1], bg, (kind, eight, bg, idx, min_island, ignore))
        if len(_PLANS) > 64:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


_PLANS: dict = {}
_IDX32 = np.empty(0, np.int32)
_IDX64 = np.empty(0, np.int64)


# ----------------------------------------------------------------------------- palette and colours


def palette_mismatch(palette, used_values: Iterable[int], label_colors: Mapping[int, Sequence[int]] | None = None,
                     config: RuleConfig = DEFAULT_CONFIG, *, counts: Iterable[int] | None = None,
                     names: Mapping[int, str] | None = None) -> list[Finding]:
    """P-mode palette vs label-map colours for the indices the mask uses (the palette-confusion trap).

    The mask's *indices* are its class ids (a design convention); when the file's palette
    shows index ``i`` in a colour other than class ``i``'s, either the indices or the
    colours are wrong (typically: an RGB mask was quantised to an adaptive palette,
    so indices are arbitrary).  Indices without a label-map colour are skipped
    (``unexpected_value`` covers them).  Without label-map colours nothing is
    compared unless ``config.compare_voc_palette`` (then: the VOC colormap).
    ``extra["indices"]`` lists each mismatch with ``looks_like``: the class whose
    colour the palette shows at that index (strong evidence of the trap).

    >>> pal = np.array([[0, 0, 0], [0, 128, 0], [128, 0, 0]], np.uint8)   # 1 and 2 swapped
    >>> f = palette_mismatch(pal, [0, 1], {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0)})
    >>> f[0].class_id, f[0].extra["indices"][0]["looks_like"]
    (1, 2)
    """
    if not config.enabled("palette_mismatch") or palette is None:
        return []
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] < 3:
        return []
    pal = pal[:, :3].astype(np.int64)
    if label_colors:
        ref = {int(k): tuple(int(c) for c in v[:3]) for k, v in label_colors.items()}
        source = "label map"
    elif config.compare_voc_palette:
        cm = voc_colormap(256)
        ref = {i: tuple(int(c) for c in cm[i]) for i in range(256)}
        source = "VOC colormap"
    else:
        return []
    by_color = {}
    for k, c in sorted(ref.items()):
        by_color.setdefault(c, k)
    used = [int(v) for v in used_values]
    cnt = dict(zip(used, (int(c) for c in counts))) if counts is not None else {}
    bad = []
    for i in used:
        if i not in ref:
            continue
        got = tuple(int(c) for c in pal[i]) if 0 <= i < pal.shape[0] else None
        if got != ref[i]:
            looks = by_color.get(got) if got is not None else None
            bad.append({"index": i, "palette": list(got) if got else None, "expected": list(ref[i]),
                        "looks_like": looks})
    if not bad:
        return []
    desc = []
    for b in bad[:5]:
        s = f"index {b['index']} is {tuple(b['palette']) if b['palette'] else 'beyond the palette'}"
        if b["looks_like"] is not None:
            s += f" (the colour of class {name_of(b['looks_like'], names)})"
        s += f", {source} says {tuple(b['expected'])}"
        desc.append(s)
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    pixels = sum(cnt.get(b["index"], 0) for b in bad) if cnt else None
    return [config.finding(
        "palette_mismatch", "palette differs from the " + source + ": " + "; ".join(desc) + more,
        class_id=bad[0]["index"] if len(bad) == 1 else None, pixels=pixels,
        extra={"indices": bad, "reference": source,
               "swapped": sum(1 for b in bad if b["looks_like"] is not None)})]


def unknown_color(unknown_colors: Sequence, config: RuleConfig = DEFAULT_CONFIG, *, mask=None,
                  unknown_id: int = 65535, label_colors: Mapping[int, Sequence[int]] | None = None,
                  max_listed: int = 20) -> list[Finding]:
    """RGB colours not in the label map, from the reader's ``[((r, g, b), count), ...]``.

    One finding per mask: ``pixels`` = all unknown pixels, ``bbox`` from ``mask``
    (the id array, where unknown colours hold ``unknown_id``) when given.
    ``extra["colors"]`` lists ``[r, g, b, count]`` (most frequent first, up to
    ``max_listed``); with ``label_colors`` the nearest label colour of each listed
    colour is given (blends of two label colours point at anti-aliasing).

    >>> [(f.pixels, f.extra["colors"]) for f in unknown_color([((1, 2, 3), 7)])]
    [(7, [[1, 2, 3, 7]])]
    """
    if not config.enabled("unknown_color") or not unknown_colors:
        return []
    items = [(tuple(int(c) for c in rgb[:3]), int(n)) for rgb, n in unknown_colors]
    items.sort(key=lambda x: (-x[1], x[0]))
    total = sum(n for _, n in items)
    bbox = None
    if mask is not None:
        m = _as_2d_int(mask)
        info = np.iinfo(m.dtype)
        if info.min <= unknown_id <= info.max:
            o = np.zeros(5, np.int64)
            kv.value_bbox(m, m.dtype.type(unknown_id), o)
            bbox = bbox_from_inclusive(*o[:4]) if o[4] else None
    extra = {"colors": [[*c, n] for c, n in items[:max_listed]], "n_colors": len(items)}
    if label_colors:
        keys = sorted(label_colors)
        ref = np.array([label_colors[k][:3] for k in keys], np.int64)
        near = []
        for c, _ in items[:max_listed]:
            d = np.abs(ref - np.array(c, np.int64)).sum(axis=1)
            j = int(np.argmin(d))
            near.append({"color": list(c), "nearest_class": int(keys[j]), "distance": int(d[j])})
        extra["nearest"] = near
    shown = ", ".join(f"{c} x{n}" for c, n in items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
    return [config.finding("unknown_color",
                           f"{plural(len(items), 'colour', '')} not in the label map ({total} px): {shown}",
                           pixels=total, bbox=bbox, extra=extra)]
