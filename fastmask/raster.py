"""Polygons -> masks, with named fill modes and fill rules (see the design page).

Modes:

- ``"coco"`` (default): exactly the pixel set pycocotools produces for the
  same polygon (its 5x upsampled edge walk, per-column even-odd).
- ``"inclusive"``: vertices are pixel indices and boundary pixels belong to
  the shape (OpenCV's ``cv2.fillPoly`` convention: a square with corners (1,1)
  and (4,4) covers 4x4 = 16 px). See :mod:`fastmask.kernels.polygon_scan`.
- ``"center"``: a pixel belongs when its centre lies inside (ties half-open).
- ``"pil"``: exactly Pillow's ``ImageDraw.Draw(img).polygon(xy, fill=1,
  outline=1)``, the way labelme draws polygon shapes (vertices truncated to
  ints, Pillow's scanline and corner rules). See :mod:`fastmask.kernels.polygon_pil`.

Fill rules for several rings of one shape: ``"union"`` (each ring filled on
its own, then OR-ed: COCO's parts) or ``"evenodd"`` (parity over all rings, so
inner rings cut holes). ``pil`` mode takes ``"union"`` only: each ring is one
Pillow polygon call (labelme draws one polygon per shape).

Coordinates outside the image are clipped (work stays bounded by the image,
whatever the coordinates' magnitude). Fewer than 3 vertices (2 in ``pil``
mode, as Pillow), NaN/inf, an odd number of values or, in ``pil`` mode, a
coordinate beyond +-2**30 (where Pillow's int arithmetic can overflow) raise
:class:`ValueError` naming the polygon index.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._polygons import pack
from .kernels import polygon as _poly
from .rle import _obj

__all__ = [
    "CROWD_MODES",
    "FILL_RULES",
    "MODES",
    "OVERLAPS",
    "Rasterized",
    "annotation_counts",
    "paint_annotations",
    "paint_instances",
    "paint_order",
    "polygon_mask",
    "polygon_rle",
    "polygons_to_rles",
    "rasterize_annotations",
]

MODES = ("coco", "inclusive", "center", "pil")
FILL_RULES = ("union", "evenodd")


def _flatten(polygons, what: str) -> tuple[np.ndarray, np.ndarray]:
    return pack(polygons, what, min_vertices=3)


def _check(height, width, mode, fill_rule, what) -> tuple[int, int]:
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: height and width must be integers, got {height!r}, {width!r}") from None
    if h != height or w != width or h < 0 or w < 0:
        raise ValueError(f"{what}: height and width must be non-negative integers, got {height!r}, {width!r}")
    if mode not in MODES:
        raise ValueError(f"{what}: mode must be one of {MODES}, got {mode!r}")
    if fill_rule not in FILL_RULES:
        raise ValueError(f"{what}: fill_rule must be one of {FILL_RULES}, got {fill_rule!r}")
    if mode == "pil" and fill_rule != "union":
        raise ValueError(f"{what}: mode 'pil' fills each polygon as one Pillow call and unions them; "
                         f"fill_rule must be 'union', got {fill_rule!r}")
    return h, w


def _check_pil_range(xy: np.ndarray, offsets: np.ndarray, what: str) -> None:
    """``pil`` mode: every coordinate within +-2**30, where Pillow's C int arithmetic is defined."""
    from .kernels.polygon_pil import LIMIT

    if xy.shape[0] and float(np.abs(xy).max()) >= LIMIT:
        i = int(np.argmax(np.abs(xy) >= LIMIT))
        ring = int(np.searchsorted(offsets, i, side="right")) - 1
        raise ValueError(f"{what}: polygon {ring} has a coordinate ({xy[i]!r}) beyond +-2**30; "
                         f"mode 'pil' follows Pillow, whose int arithmetic can overflow there")


def _fill(xy, offsets, h, w, mode, evenodd, out) -> None:
    """OR packed rings into ``out`` with a fill mode's kernel (arguments validated)."""
    if mode == "coco":
        _poly.coco_fill(xy, offsets, h, w, evenodd, out)
    elif mode == "pil":
        from .kernels.polygon_pil import pil_fill

        pil_fill(xy, offsets, h, w, out)
    else:
        from .kernels.polygon_scan import scanline_fill

        scanline_fill(xy, offsets, h, w, mode == "inclusive", evenodd, out)


def polygon_mask(
    polygons: Sequence[Sequence[float]],
    height: int,
    width: int,
    *,
    mode: str = "coco",
    fill_rule: str = "union",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rasterize COCO flat polygons into a (height, width) uint8 0/1 mask (C order).

    ``out``: an existing C-contiguous uint8 (height, width) array to paint into,
    e.g. one plane of a preallocated ``np.zeros`` stack: the shape's pixels are
    set to 1 and the others are left as they are (nothing is cleared, so only
    the shape's bounding box is touched).

    >>> square = [1, 1, 1, 4, 4, 4, 4, 1]
    >>> int(polygon_mask([square], 6, 6, mode="inclusive").sum())
    16
    >>> int(polygon_mask([square], 6, 6, mode="center").sum())
    9
    >>> int(polygon_mask([[0.5, 0.5, 3.9, 0.5, 3.9, 2.2]], 6, 6, mode="pil").sum())  # Pillow's pixels
    7
    """
    h, w = _check(height, width, mode, fill_rule, "polygon_mask")
    if mode == "pil":
        xy, offsets = pack(polygons, "polygon_mask", min_vertices=2)
        _check_pil_range(xy, offsets, "polygon_mask")
    else:
        xy, offsets = _flatten(polygons, "polygon_mask")
    if out is None:
        out = np.zeros((h, w), np.uint8)
    else:
        if not isinstance(out, np.ndarray) or out.shape != (h, w) or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"polygon_mask: out must be a C-contiguous uint8 array of shape ({h}, {w})")
    if h == 0 or w == 0 or xy.shape[0] == 0:
        return out
    _fill(xy, offsets, h, w, mode, fill_rule == "evenodd", out)
    return out


def polygon_rle(
    polygons: Sequence[Sequence[float]],
    height: int,
    width: int,
    *,
    fill_rule: str = "union",
) -> dict:
    """Polygons -> one COCO RLE dict in ``coco`` mode, without a dense mask.

    With ``fill_rule="union"`` this equals pycocotools'
    ``merge(frPyObjects(polygons, h, w))`` bit for bit.

    >>> polygon_rle([[1, 1, 1, 4, 4, 4, 4, 1]], 6, 6)
    {'size': [6, 6], 'counts': b'733000;'}
    """
    h, w = _check(height, width, "coco", fill_rule, "polygon_rle")
    xy, offsets = _flatten(polygons, "polygon_rle")
    n = offsets.shape[0] - 1
    if n == 0:
        return _obj(np.array([h * w], np.uint32), h, w)
    if fill_rule == "evenodd":
        return _obj(_poly.coco_evenodd_counts(xy, offsets, h, w), h, w)
    return {"size": [h, w], "counts": _poly.coco_union_string(xy, offsets, h, w).tobytes()}


def polygons_to_rles(annotations: Sequence[Sequence[Sequence[float]]], height, width) -> list[dict]:
    """Many COCO polygon annotations -> one RLE dict each (parts unioned), in one kernel call.

    ``annotations`` is a list of COCO ``segmentation`` polygon lists; ``height`` and
    ``width`` are ints (one image) or sequences with one entry per annotation.
    Each result equals pycocotools' ``merge(frPyObjects(parts, h, w))``.

    >>> rles = polygons_to_rles([[[1, 1, 1, 4, 4, 4, 4, 1]], [[0, 0, 0, 2, 2, 2]]], 6, 6)
    >>> [r["counts"] for r in rles]
    [b'733000;', b'025Og0']
    """
    n = len(annotations)
    heights = np.ascontiguousarray(np.broadcast_to(np.asarray(height, dtype=np.int64), (n,)))
    widths = np.ascontiguousarray(np.broadcast_to(np.asarray(width, dtype=np.int64), (n,)))
    if n and (heights.min() < 0 or widths.min() < 0):
        raise ValueError("polygons_to_rles: heights and widths must be non-negative")
    arrays: list[np.ndarray] = []
    part_lengths = [0]
    ann_parts = [0]
    for i, ann in enumerate(annotations):
        try:
            if type(ann) is list and all(type(p) is list for p in ann):
                # fast path: convert each part; validity is checked below (finiteness at once)
                parts = [np.array(p, dtype=np.float64) for p in ann]
                if not all(a.ndim == 1 and a.shape[0] >= 6 and a.shape[0] % 2 == 0 for a in parts):
                    raise ValueError
            else:
                raise ValueError
        except (ValueError, TypeError):
            try:
                xy_i, offs = _flatten(ann, "polygons_to_rles") if len(ann) else (np.zeros(0), np.zeros(1, np.int64))
            except (ValueError, TypeError) as e:
                raise type(e)(f"annotation {i}: {e}") from None
            parts = [xy_i[offs[j] : offs[j + 1]] for j in range(offs.shape[0] - 1)]
        arrays.extend(parts)
        part_lengths.extend(a.shape[0] for a in parts)
        ann_parts.append(ann_parts[-1] + len(parts))
    xy = np.concatenate(arrays) if arrays else np.zeros(0)
    if not math.isfinite(xy.sum()):
        for i, ann in enumerate(annotations):  # name the annotation and polygon
            try:
                _flatten(ann, "polygons_to_rles")
            except (ValueError, TypeError) as e:
                raise type(e)(f"annotation {i}: {e}") from None
    part_offsets = np.cumsum(part_lengths, dtype=np.int64)
    counts, offsets = _poly.coco_annotations_counts(xy, part_offsets, np.array(ann_parts, np.int64), heights, widths)
    from .rle import from_counts

    return from_counts(counts, offsets, heights, widths)


# --------------------------------------------------------------------------- COCO annotations -> label maps

OVERLAPS = ("order", "area", "class-priority", "draw-to-back")
CROWD_MODES = ("ignore", "class")
KINDS = ("semantic", "instance")


def _ann_id(ann):
    return ann.get("id") if isinstance(ann, dict) else None


def _rle_size_ok(seg: dict, h: int, w: int) -> bool:
    try:
        return [int(seg["size"][0]), int(seg["size"][1])] == [h, w] and len(seg["size"]) == 2
    except (KeyError, TypeError, ValueError, IndexError):
        return False


def annotation_counts(annotations, height: int, width: int, *, fill: str = "coco", on_error: str = "raise"):
    """Each COCO annotation's full mask as flat RLE counts: ``(counts, offsets, problems)``.

    Segmentations may be polygon lists (filled with ``fill``: ``coco`` = pycocotools'
    ``merge(frPyObjects(...))`` bit for bit, ``inclusive``, ``center`` or ``pil``; parts
    unioned), uncompressed or compressed RLE dicts whose ``size`` is ``[height, width]``. An empty polygon list is
    an empty mask. ``counts`` (uint32) / ``offsets`` (int64, ``n + 1``) hold one
    column-major RLE per annotation (see :mod:`fastmask.kernels.rle`). An annotation
    that cannot be read raises ``ValueError`` naming its index and ``id``
    (``on_error="raise"``), or with ``on_error="skip"`` gets an empty mask and a
    ``(index, annotation id, message)`` entry in ``problems``.

    >>> c, o, problems = annotation_counts([{"id": 7, "segmentation": [[1, 1, 1, 4, 4, 4, 4, 1]]}], 6, 6)
    >>> c.tolist(), o.tolist(), problems
    ([7, 3, 3, 3, 3, 3, 14], [0, 7], [])
    """
    from . import rle as fr

    h, w = _check(height, width, fill, "union", "annotation_counts")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"annotation_counts: on_error must be 'raise' or 'skip', got {on_error!r}")
    n = len(annotations)
    pieces: list[np.ndarray | None] = [None] * n
    problems: list[tuple[int, object, str]] = []
    poly_idx: list[int] = []
    poly_xy: list[np.ndarray] = []
    poly_offs: list[np.ndarray] = []
    rle_idx: list[int] = []
    rle_objs: list[dict] = []
    empty = np.array([h * w], np.uint32)

    def bad(i, msg):
        ann = annotations[i]
        aid = _ann_id(ann)
        text = f"annotation {i} (id {aid!r}): {msg}"
        if on_error == "raise":
            raise ValueError(text)
        problems.append((i, aid, text))
        pieces[i] = empty

    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            bad(i, f"expected a dict, got {type(ann).__name__}")
            continue
        seg = ann.get("segmentation")
        if isinstance(seg, list):
            if not seg:
                pieces[i] = empty
                continue
            try:
                xy, offs = pack(seg, "segmentation", min_vertices=3)
            except (ValueError, TypeError) as e:
                bad(i, str(e))
                continue
            if fill == "coco":
                poly_idx.append(i)
                poly_xy.append(xy)
                poly_offs.append(offs)
            else:
                if fill == "pil":
                    try:
                        _check_pil_range(xy, offs, "segmentation")
                    except ValueError as e:
                        bad(i, str(e))
                        continue
                m = np.zeros((h, w), np.uint8)
                if h and w:
                    _fill(xy, offs, h, w, fill, False, m)
                c, o, _, _ = fr.counts_of(fr.encode(m))
                pieces[i] = c
        elif isinstance(seg, dict):
            if not _rle_size_ok(seg, h, w):
                bad(i, f"RLE size {seg.get('size')!r} is not the image's [{h}, {w}]")
                continue
            c = seg.get("counts")
            if isinstance(c, (str, bytes)):
                rle_idx.append(i)
                rle_objs.append(seg)
            else:
                try:
                    pieces[i] = fr.counts_of(fr.frPyObjects(seg, h, w))[0]
                except (ValueError, TypeError) as e:
                    bad(i, f"uncompressed RLE: {e}")
        else:
            bad(i, "no segmentation (neither a polygon list nor an RLE dict)")
    if rle_objs:
        try:
            c, o, _, _ = fr.counts_of(rle_objs)
            for j, i in enumerate(rle_idx):
                pieces[i] = c[o[j] : o[j + 1]]
        except (ValueError, TypeError):
            for i, seg in zip(rle_idx, rle_objs):
                try:
                    pieces[i] = fr.counts_of(seg)[0]
                except (ValueError, TypeError) as e:
                    bad(i, f"RLE: {e}")
    if poly_idx:
        part_lengths = [0]
        ann_parts = [0]
        for offs in poly_offs:
            part_lengths.extend(np.diff(offs).tolist())
            ann_parts.append(ann_parts[-1] + offs.shape[0] - 1)
        xy = np.concatenate(poly_xy)
        k = len(poly_idx)
        hh = np.full(k, h, np.int64)
        ww = np.full(k, w, np.int64)
        c, o = _poly.coco_annotations_counts(xy, np.cumsum(part_lengths, dtype=np.int64),
                                             np.array(ann_parts, np.int64), hh, ww)
        for j, i in enumerate(poly_idx):
            pieces[i] = c[o[j] : o[j + 1]]
    lengths = np.fromiter((p.shape[0] for p in pieces), np.int64, n)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    counts = np.concatenate(pieces).astype(np.uint32, copy=False) if n else np.zeros(0, np.uint32)
    return counts, offsets, problems


def paint_order(n: int, overlap: str = "order", *, areas=None, category_ids=None, class_priority=None) -> np.ndarray:
    """The order in which to paint ``n`` annotations so that the later one wins, for an overlap rule.

    - ``order``: file order, later annotations on top;
    - ``draw-to-back``: earlier annotations on top (pixels already painted are locked);
    - ``area``: smaller ``areas`` on top; equal areas by file order (later on top);
    - ``class-priority``: ``category_ids`` earlier in ``class_priority`` on top; categories
      not in the list below all listed ones; ties by file order (later on top).

    >>> paint_order(3, "area", areas=[5, 9, 5]).tolist()
    [1, 0, 2]
    >>> paint_order(3, "class-priority", category_ids=[1, 2, 3], class_priority=[2, 1]).tolist()
    [2, 0, 1]
    """
    idx = np.arange(n, dtype=np.int64)
    if overlap == "order":
        return idx
    if overlap == "draw-to-back":
        return idx[::-1].copy()
    if overlap == "area":
        if areas is None:
            raise ValueError("paint_order: overlap 'area' needs areas")
        a = np.asarray(areas, np.int64).reshape(-1)
        if a.shape[0] != n:
            raise ValueError(f"paint_order: got {a.shape[0]} areas for {n} annotations")
        return np.lexsort((idx, -a)).astype(np.int64)
    if overlap == "class-priority":
        if class_priority is None or category_ids is None:
            raise ValueError("paint_order: overlap 'class-priority' needs category_ids and class_priority")
        prio = [int(c) for c in class_priority]
        if len(set(prio)) != len(prio):
            raise ValueError(f"paint_order: class_priority lists a category twice: {prio}")
        rank_of = {c: len(prio) - k for k, c in enumerate(prio)}
        cats = list(category_ids)
        if len(cats) != n:
            raise ValueError(f"paint_order: got {len(cats)} category ids for {n} annotations")
        rank = np.array([rank_of.get(c, 0) for c in cats], np.int64)
        return np.lexsort((idx, rank)).astype(np.int64)
    raise ValueError(f"paint_order: overlap must be one of {OVERLAPS}, got {overlap!r}")


def _int_or_none(v):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


class Rasterized:
    """The result of :func:`rasterize_annotations` (one image).

    Attributes: ``mask`` (h, w) label map (None with ``paint=False``); ``height``, ``width``; ``kind``; per input annotation (arrays of length
    n, in input order): ``annotation_ids`` (list), ``category_ids`` (int64, -1 when
    missing), ``iscrowd`` (bool), ``instance_ids`` (int64; 0 for no instance: a skipped
    annotation, or a crowd one painted as ignore, or kind ``semantic``), ``mask_areas``
    (pixels of the annotation's own full mask), ``areas`` / ``bboxes`` (visible pixels and
    their ``[x, y, w, h]`` box in an ``instance`` map; ``None`` for ``semantic``);
    ``problems``: ``(index, annotation id, message)`` of skipped annotations; ``counts`` /
    ``offsets``: each annotation's full mask as flat column-major RLE counts.
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def rle(self, i: int) -> dict:
        """Annotation ``i``'s full mask as a compressed COCO RLE dict (as pycocotools' encode)."""
        from .rle import from_counts

        h, w = self.height, self.width
        o = self.offsets
        return from_counts(self.counts[o[i] : o[i + 1]], np.array([0, o[i + 1] - o[i]], np.int64), [h], [w])[0]

    def rles(self) -> list[dict]:
        """Every annotation's full mask as a compressed RLE dict, in one call (skipped ones: empty)."""
        from .rle import from_counts

        n = len(self.offsets) - 1
        return from_counts(self.counts, self.offsets, [self.height] * n, [self.width] * n)

    def mask_of(self, i: int) -> np.ndarray:
        """Annotation ``i``'s full 0/1 mask (uint8, C order), independent of overlaps."""
        from .kernels.paint import paint_colmajor

        h, w = self.height, self.width
        flat = np.zeros(h * w, np.uint8)
        paint_colmajor(self.counts, self.offsets, np.array([i], np.int64), np.ones(len(self.offsets) - 1, np.uint8), flat)
        return np.ascontiguousarray(flat.reshape(w, h).T)

    def instances(self) -> list[dict]:
        """One row per annotation: instance_id (None if none), annotation_id, category_id, iscrowd, area, mask_area, bbox."""
        rows = []
        for i in range(len(self.annotation_ids)):
            iid = int(self.instance_ids[i])
            rows.append({
                "instance_id": iid or None, "annotation_id": self.annotation_ids[i],
                "category_id": int(self.category_ids[i]) if self.category_ids[i] >= 0 else None,
                "iscrowd": bool(self.iscrowd[i]),
                "area": int(self.areas[i]) if self.areas is not None else None,
                "mask_area": int(self.mask_areas[i]),
                "bbox": [int(v) for v in self.bboxes[i]] if self.bboxes is not None else None,
            })
        return rows


def _fit_dtype(lo: int, hi: int):
    if lo >= 0 and hi <= 255:
        return np.uint8
    if lo >= 0 and hi <= 65535:
        return np.uint16
    if lo >= np.iinfo(np.int32).min and hi <= np.iinfo(np.int32).max:
        return np.int32
    return np.int64


def rasterize_annotations(
    annotations,
    height: int,
    width: int,
    *,
    kind: str = "semantic",
    values=None,
    overlap: str = "order",
    class_priority=None,
    crowd: str = "ignore",
    ignore_value: int = 255,
    fill: str = "coco",
    background: int = 0,
    dtype=None,
    on_error: str = "raise",
    paint: bool = True,
) -> Rasterized:
    """Paint the COCO annotations of one image into a class map or an instance-id map.

    ``kind="semantic"``: each annotation paints ``values[i]`` (default its
    ``category_id``); ``kind="instance"``: instance ids 1, 2, ... in input order
    (skipping ``ignore_value`` when ``crowd="ignore"``), with the id -> annotation table
    in :meth:`Rasterized.instances`. Unpainted pixels are ``background``.

    ``overlap`` decides which annotation owns a pixel several cover (see
    :func:`paint_order`): ``order`` (later wins), ``area`` (smaller on top; areas are
    rasterized pixel counts), ``class-priority`` (``class_priority`` = category ids, first
    on top), ``draw-to-back`` (pixels already painted are locked). Crowd annotations
    (``iscrowd``) take part in the order like the others and paint ``ignore_value``
    (``crowd="ignore"``) or their own value / instance id (``crowd="class"``).
    ``fill``: polygon fill mode, ``coco`` (pycocotools' ``annToMask`` bit for bit),
    ``inclusive``, ``center`` or ``pil`` (Pillow's polygon, as labelme draws it).
    ``dtype``: of the map (default: the smallest unsigned type holding every value).
    Invalid annotations raise ``ValueError`` naming the annotation id, or with
    ``on_error="skip"`` are left out and listed in ``problems``.
    ``paint=False`` skips the map (``mask`` is None): only the per-annotation RLEs and facts.

    >>> anns = [{"id": 1, "category_id": 3, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
    ...         {"id": 2, "category_id": 5, "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]}]
    >>> r = rasterize_annotations(anns, 6, 6, overlap="draw-to-back")
    >>> r.mask[3].tolist()
    [3, 3, 3, 3, 5, 5]
    >>> rasterize_annotations(anns, 6, 6, kind="instance").instances()[1]["area"]
    16
    """
    from .kernels.paint import STATUS_OK, id_stats, paint_colmajor, rle_areas

    h, w = _check(height, width, "coco", "union", "rasterize_annotations")
    if kind not in KINDS:
        raise ValueError(f"rasterize_annotations: kind must be one of {KINDS}, got {kind!r}")
    if overlap not in OVERLAPS:
        raise ValueError(f"rasterize_annotations: overlap must be one of {OVERLAPS}, got {overlap!r}")
    if crowd not in CROWD_MODES:
        raise ValueError(f"rasterize_annotations: crowd must be one of {CROWD_MODES}, got {crowd!r}")
    if fill not in MODES:
        raise ValueError(f"rasterize_annotations: fill must be one of {MODES}, got {fill!r}")
    if overlap == "class-priority" and class_priority is None:
        raise ValueError("rasterize_annotations: overlap 'class-priority' needs class_priority (category ids)")
    if _int_or_none(ignore_value) is None or _int_or_none(background) is None:
        raise ValueError(f"rasterize_annotations: ignore_value and background must be integers, "
                         f"got {ignore_value!r}, {background!r}")
    annotations = list(annotations)
    n = len(annotations)
    counts, offsets, problems = annotation_counts(annotations, h, w, fill=fill, on_error=on_error)
    ok = np.ones(n, bool)
    for i, _, _ in problems:
        ok[i] = False
    ids = [_ann_id(a) for a in annotations]
    cats = np.full(n, -1, np.int64)
    crowd_flags = np.zeros(n, bool)
    for i, a in enumerate(annotations):
        if not isinstance(a, dict):
            continue
        c = _int_or_none(a.get("category_id"))
        if c is not None:
            cats[i] = c
        crowd_flags[i] = bool(a.get("iscrowd") or False)
    if values is not None:
        vals = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
        if vals.shape != (n,) or (n and not np.issubdtype(vals.dtype, np.integer)):
            raise ValueError(f"rasterize_annotations: values must be {n} integers, got shape {vals.shape}")
        vals = vals.astype(np.int64)
    else:
        vals = cats.copy()
        if kind == "semantic":
            for i in range(n):
                if ok[i] and cats[i] < 0:
                    msg = f"annotation {i} (id {ids[i]!r}): category_id {annotations[i].get('category_id')!r} is not an integer"
                    if on_error == "raise":
                        raise ValueError(msg)
                    problems.append((i, ids[i], msg))
                    ok[i] = False
    as_ignore = crowd_flags & (crowd == "ignore")
    inst = np.zeros(n, np.int64)
    if kind == "instance":
        nxt = 1
        for i in range(n):
            if ok[i] and not as_ignore[i]:
                if crowd == "ignore" and nxt == ignore_value:
                    nxt += 1
                inst[i] = nxt
                nxt += 1
        vals = inst.copy()
    vals[as_ignore] = ignore_value
    mask_areas = rle_areas(counts, offsets)
    order = paint_order(n, overlap, areas=mask_areas, category_ids=cats.tolist(), class_priority=class_priority)
    order = order[ok[order]]
    used = vals[ok]
    lo = min([int(background)] + ([int(used.min())] if used.size else []))
    hi = max([int(background)] + ([int(used.max())] if used.size else []))
    if dtype is None:
        dtype = _fit_dtype(lo, hi)
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    if info is None or lo < info.min or hi > info.max:
        raise ValueError(f"rasterize_annotations: values {lo}..{hi} do not fit dtype {dtype}")
    if not paint:
        problems.sort()
        return Rasterized(mask=None, height=h, width=w, kind=kind, annotation_ids=ids, category_ids=cats,
                          iscrowd=crowd_flags, instance_ids=inst, mask_areas=mask_areas, areas=None, bboxes=None,
                          problems=problems, counts=counts, offsets=offsets)
    flat = np.full(h * w, background, dtype)
    status, bad_rle = paint_colmajor(counts, offsets, order, vals.astype(dtype), flat)
    if status != STATUS_OK:  # cannot happen for counts we parsed; keep the guard explicit
        raise ValueError(f"rasterize_annotations: annotation {bad_rle}: RLE runs do not add up to {h}x{w}")
    mask = np.ascontiguousarray(flat.reshape(w, h).T)
    areas = bboxes = None
    if kind == "instance":
        top = int(inst.max(initial=0)) + 1
        a, box = id_stats(mask, top)
        areas = np.where(inst > 0, a[inst], 0)
        b = box[inst]
        bboxes = np.zeros((n, 4), np.int64)
        has = (inst > 0) & (areas > 0)
        bboxes[has, 0] = b[has, 0]
        bboxes[has, 1] = b[has, 1]
        bboxes[has, 2] = b[has, 2] - b[has, 0] + 1
        bboxes[has, 3] = b[has, 3] - b[has, 1] + 1
    problems.sort()
    return Rasterized(mask=mask, height=h, width=w, kind=kind, annotation_ids=ids, category_ids=cats, iscrowd=crowd_flags,
                      instance_ids=inst, mask_areas=mask_areas, areas=areas, bboxes=bboxes, problems=problems,
                      counts=counts, offsets=offsets)


def paint_annotations(annotations, height: int, width: int, **options) -> np.ndarray:
    """COCO annotations of one image -> class map (``kind="semantic"`` of :func:`rasterize_annotations`).

    Options as :func:`rasterize_annotations` (``values, overlap, class_priority, crowd,
    ignore_value, fill, background, dtype``); invalid annotations raise ``ValueError``.

    >>> a = [{"id": 1, "category_id": 2, "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
    ...      {"id": 2, "category_id": 9, "iscrowd": 1, "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]}]
    >>> paint_annotations(a, 3, 3).tolist()
    [[2, 2, 0], [2, 255, 255], [0, 255, 255]]
    """
    options.pop("kind", None)
    return rasterize_annotations(annotations, height, width, kind="semantic", **options).mask


def paint_instances(annotations, height: int, width: int, **options) -> tuple[np.ndarray, list[dict]]:
    """COCO annotations of one image -> ``(instance-id map, rows)`` (``kind="instance"``).

    ``rows``: one per annotation, see :meth:`Rasterized.instances` (instance_id,
    annotation_id, category_id, iscrowd, visible area, mask_area, visible bbox).

    >>> a = [{"id": 11, "category_id": 2, "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}]
    >>> m, rows = paint_instances(a, 3, 3)
    >>> int(m.max()), rows[0]["annotation_id"], rows[0]["area"]
    (1, 11, 4)
    """
    options.pop("kind", None)
    r = rasterize_annotations(annotations, height, width, kind="instance", **options)
    return r.mask, r.instances()
