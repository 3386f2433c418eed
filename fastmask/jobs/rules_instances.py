"""Instance rules: split instances, instances spanning several classes, overlapping COCO masks.

>>> import numpy as np
>>> inst = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [2, 2, 0, 0]], np.uint8)
>>> [(f.instance_id, f.extra["n_components"]) for f in disconnected_instance(inst)]
[(1, 2)]
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from fastmask import components
from fastmask import rle as _rle
from fastmask.kernels import components as _kc
from fastmask.kernels import validate as kv

from .rules_core import DEFAULT_CONFIG, Finding, RuleConfig, as_2d_int, name_of, union_bbox
from .._text import plural

__all__ = [
    "disconnected_instance",
    "instance_class_conflict",
    "bbox_pairs",
    "instance_overlap",
    "instance_stats",
]

_PAIR_MAX = 1 << 22  # joint-histogram cells before compacting ids
_DIRECT_MAX = 1 << 20  # values up to this index per-value arrays directly; beyond: compacted


def _as_2d(a, what) -> np.ndarray:
    return as_2d_int(a, what)


def _non_instance(v, config: RuleConfig) -> bool:
    return v == config.background or (config.ignore_value is not None and v == config.ignore_value)


def disconnected_instance(instance_mask, config: RuleConfig = DEFAULT_CONFIG, *, cstats=None,
                          instance_classes: Mapping[int, int] | None = None,
                          names: Mapping[int, str] | None = None) -> list[Finding]:
    """Instance ids made of several connected components (``connectivity`` from the config).

    Background and the ignore value (VOC's 255 object borders) are not instances.
    One finding per split instance: ``instance_id``, ``class_id`` (from
    ``instance_classes`` if given), ``pixels`` = the instance's area, ``bbox`` = its
    extent, ``extra`` = number of components and their areas (largest first).
    Beyond ``max_findings`` split instances (in increasing id order), one more finding
    sums the others (``extra["summary"]``).  Occlusion can split a real object (a person
    behind a pole): a warning, not an error.  Memory: the runs and one value and one area
    per component (no label image, no Python object per component).

    >>> m = np.zeros((3, 3), np.uint8); m[0, 0] = m[1, 1] = 5
    >>> len(disconnected_instance(m)), len(disconnected_instance(m, RuleConfig(connectivity=4)))
    (0, 1)
    """
    if not config.enabled("disconnected_instance"):
        return []
    m = _as_2d(instance_mask, "an instance mask")
    if cstats is not None:
        return _split_from_stats(cstats, config, instance_classes, names)
    if m.size == 0:
        return []
    codes, lut, n, has_bg, bg = _label_codes(m, config.background)
    conn = components._check_connectivity(config.connectivity)
    idx_like = np.empty(0, components.label_dtype(m.size))
    status, count, rs, re, rv, lab, row_ptr = _kc.runs_2d(codes, conn, has_bg, bg, idx_like)
    components._raise_status(status)
    cval, area, per_value = kv.component_values(rs, re, rv, lab, count, n)
    split = np.flatnonzero(per_value > 1)
    values = split.astype(np.int64) if lut is None else lut[split].astype(np.int64)
    keep = _instance_values(values, config)
    split, values = split[keep], values[keep]
    if split.size == 0:
        return []
    k = min(split.size, max(0, int(config.max_findings)))
    slot = np.full(n, -1, np.int64)
    slot[split[:k]] = np.arange(k)
    slot[split[k:]] = k  # the rest: one slot, for the summary
    box = kv.slot_boxes(rs, re, rv, row_ptr, slot, k + 1)
    s = slot[cval]
    sel = np.flatnonzero(s >= 0)
    s, a = s[sel], area[sel].astype(np.int64)
    order = np.lexsort((-a, s))  # by slot, largest first
    s, a = s[order], a[order]
    starts = np.searchsorted(s, np.arange(k + 2))
    groups = [(int(values[t]), a[starts[t]:starts[t + 1]], _xywh_incl(box[t])) for t in range(k)]
    rest = None
    if split.size > k:
        ra = a[starts[k]:starts[k + 1]]
        rest = (values[k:], int(ra.size), int(ra.sum()), _xywh_incl(box[k]))
    return _split_findings(groups, rest, config, instance_classes, names)


def _instance_values(values: np.ndarray, config: RuleConfig) -> np.ndarray:
    """Which of ``values`` are instances (neither background nor the ignore value)."""
    keep = np.ones(values.shape, bool)
    for v in (config.background, config.ignore_value):
        if v is not None:
            keep &= values != v
    return keep


def _xywh_incl(b) -> tuple[int, int, int, int] | None:
    # inclusive (row_min, col_min, row_max, col_max) -> (x, y, w, h)
    if b[2] < 0:
        return None
    return (int(b[1]), int(b[0]), int(b[3] - b[1] + 1), int(b[2] - b[0] + 1))


def _label_codes(m: np.ndarray, background):
    """``(codes, lut, n, has_bg, bg)``: ``m`` as values that index per-value arrays of
    ``n`` entries (``lut``: the values of compacted codes, None when ``m``'s own values do)
    and the background as the labeling kernels take it."""
    arr, has_bg, bg = components._prepare(m, background)
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        return arr, None, int(np.iinfo(arr.dtype).max) + 1, has_bg, bg
    mn, mx = int(arr.min()), int(arr.max())
    if mn >= 0 and mx < _DIRECT_MAX:
        return arr, None, mx + 1, has_bg, bg
    lut, inv = np.unique(arr, return_inverse=True)
    codes = inv.reshape(arr.shape).astype(np.int32)
    pos = int(np.searchsorted(lut, bg)) if has_bg else -1
    has_bg = has_bg and pos < lut.size and lut[pos] == bg
    return codes, lut, lut.size, has_bg, np.int32(pos if has_bg else 0)


def _split_from_stats(st, config: RuleConfig, instance_classes, names) -> list[Finding]:
    """:func:`disconnected_instance` from a :class:`~fastmask.components.ComponentStats`."""
    if st.value.size == 0:
        return []
    vals = st.value.astype(np.int64)
    u, inv, cnt = np.unique(vals, return_inverse=True, return_counts=True)
    split = np.flatnonzero((cnt > 1) & _instance_values(u, config))
    k = min(split.size, max(0, int(config.max_findings)))
    groups = []
    for g in split[:k]:
        sel = inv == g
        groups.append((int(u[g]), np.sort(st.area[sel].astype(np.int64))[::-1], union_bbox(st.bbox[sel])))
    rest = None
    if split.size > k:
        sel = np.isin(inv, split[k:])
        rest = (u[split[k:]], int(sel.sum()), int(st.area[sel].sum()), union_bbox(st.bbox[sel]))
    return _split_findings(groups, rest, config, instance_classes, names)


def _split_findings(groups, rest, config: RuleConfig, instance_classes, names) -> list[Finding]:
    """The findings of :func:`disconnected_instance`: ``groups`` = ``[(id, areas largest
    first, bbox)]``; ``rest`` = ``(ids, components, pixels, bbox)`` of the split instances
    beyond the cap, or None."""
    out = []
    for v, areas, bbox in groups:
        cls = instance_classes.get(v) if instance_classes else None
        what = f"instance {v}" + (f" (class {name_of(cls, names)})" if cls is not None else "")
        out.append(config.finding(
            "disconnected_instance",
            f"{what} has {int(areas.size)} separate parts ({config.connectivity}-connected), areas {areas[:5].tolist()}"
            + (" ..." if areas.size > 5 else ""),
            class_id=cls, instance_id=v, pixels=int(areas.sum()), bbox=bbox,
            extra={"n_components": int(areas.size), "areas": areas[:20].tolist(), "connectivity": config.connectivity}))
    if rest is not None:
        ids, n, px, bbox = rest
        out.append(config.finding(
            "disconnected_instance",
            f"{plural(len(ids), 'more instance', '')} made of several parts: {plural(n, 'part', '')}, {px} px "
            f"({config.connectivity}-connected)",
            pixels=px, bbox=bbox,
            extra={"summary": True, "instances": int(len(ids)), "n_components": n,
                   "instance_ids": np.asarray(ids)[:20].tolist(), "connectivity": config.connectivity}))
    return out


def _codes(a: np.ndarray):
    """(codes, values): values[codes] == a, codes small non-negative ints."""
    if a.dtype == np.uint8:
        return a, None, 256
    mn, mx = int(a.min()), int(a.max())
    if mn >= 0 and mx < 4096:
        return a, None, mx + 1
    u, inv = np.unique(a, return_inverse=True)
    return inv.reshape(a.shape).astype(np.int32), u.astype(np.int64), u.size


def instance_class_conflict(instance_mask, class_mask, config: RuleConfig = DEFAULT_CONFIG, *,
                            names: Mapping[int, str] | None = None) -> list[Finding]:
    """Instances whose pixels carry several classes in the class mask (VOC SegmentationObject vs SegmentationClass).

    Counted: pixels whose instance id is neither background nor ignore *and* whose
    class is not the ignore value (VOC draws the same 255 border in both files; a
    255 on one side only says nothing about classes).  A class-mask background
    pixel under an instance *is* a conflict (the class mask says "nothing here").
    One finding per conflicting instance: ``class_id`` = its majority class,
    ``pixels`` = its pixels in other classes, ``bbox`` = their extent,
    ``extra["classes"]`` = class -> pixel count.  Masks of different shapes give a
    ``size_mismatch`` finding instead.

    >>> inst = np.array([[1, 1, 1], [2, 2, 0]], np.uint8)
    >>> cls = np.array([[8, 8, 12], [3, 3, 0]], np.uint8)
    >>> [(f.instance_id, f.class_id, f.pixels, f.bbox) for f in instance_class_conflict(inst, cls)]
    [(1, 8, 1, (2, 0, 1, 1))]
    """
    if not config.enabled("instance_class_conflict"):
        return []
    inst = _as_2d(instance_mask, "an instance mask")
    cls = _as_2d(class_mask, "a class mask")
    if inst.shape != cls.shape:
        if not config.enabled("size_mismatch"):
            return []
        return [config.finding(
            "size_mismatch",
            f"instance mask is {inst.shape[1]}x{inst.shape[0]} (w x h) but the class mask is {cls.shape[1]}x{cls.shape[0]}",
            extra={"mask_size": [inst.shape[1], inst.shape[0]], "ref_size": [cls.shape[1], cls.shape[0]],
                   "ref": "class mask"})]
    if inst.size == 0:
        return []
    ic, iv, ni = _codes(inst)
    cc, cv, nc = _codes(cls)
    if ni * nc > _PAIR_MAX:  # many ids on both sides: compact the ones that are not yet
        if iv is None:
            u, inv = np.unique(inst, return_inverse=True)
            ic, iv, ni = inv.reshape(inst.shape).astype(np.int32), u.astype(np.int64), u.size
        if cv is None:
            u, inv = np.unique(cls, return_inverse=True)
            cc, cv, nc = inv.reshape(cls.shape).astype(np.int32), u.astype(np.int64), u.size
    ivals = np.arange(ni, dtype=np.int64) if iv is None else iv
    cvals = np.arange(nc, dtype=np.int64) if cv is None else cv
    skip_i = np.zeros(ni, np.uint8)
    skip_c = np.zeros(nc, np.uint8)
    skip_i[ivals == (config.background if config.background is not None else -1)] = 1
    if config.ignore_value is not None:
        skip_i[ivals == config.ignore_value] = 1
        skip_c[cvals == config.ignore_value] = 1
    # the (instance, class) pairs present with their pixel counts, sorted by instance then
    # class: from a dense joint histogram when it is no larger than the pixels, else sorted
    if ni * nc <= max(_PAIR_MAX, inst.size):
        hist = np.zeros(ni * nc, np.int64)
        kv.pair_hist(ic, cc, nc, skip_i, skip_c, hist)
        keys = np.flatnonzero(hist)
        cnt = hist[keys]
        del hist
    else:
        valid = (skip_i[ic] == 0) & (skip_c[cc] == 0)
        keys, cnt = np.unique(ic[valid].astype(np.int64) * nc + cc[valid], return_counts=True)
        del valid
    pi, pc = keys // nc, keys % nc
    n_classes = np.bincount(pi, minlength=ni)
    flagged = np.flatnonzero(n_classes > 1)
    if flagged.size == 0:
        return []
    starts = np.searchsorted(pi, flagged)
    # majority class of each flagged instance: the largest count, the smallest class on ties
    order = np.lexsort((pc, -cnt, pi))
    major = pc[order[starts]]
    k = min(flagged.size, max(0, int(config.max_findings)))
    # the minority pixels' extents, for every flagged instance in one pass (the rest: one slot)
    slot = np.full(ni, -1, np.int64)
    slot[flagged[:k]] = np.arange(k)
    slot[flagged[k:]] = k
    major_of = np.full(ni, -1, np.int64)
    major_of[flagged] = major
    boxes = kv.minority_boxes(ic, cc, major_of, slot, skip_c, k + 1)
    out = []
    for t in range(k):
        a = int(flagged[t])
        sl = slice(int(starts[t]), int(starts[t]) + int(n_classes[a]))
        mj = int(major[t])
        iid, mcls = int(ivals[a]), int(cvals[mj])
        b = boxes[t]
        bbox = (int(b[0]), int(b[1]), int(b[2] - b[0] + 1), int(b[3] - b[1] + 1)) if b[4] else None
        classes = {int(cvals[c]): int(n) for c, n in zip(pc[sl].tolist(), cnt[sl].tolist())}
        minority = int(cnt[sl].sum()) - classes[mcls]
        desc = ", ".join(f"{name_of(c, names)}: {n} px" for c, n in sorted(classes.items(), key=lambda x: -x[1]))
        out.append(config.finding(
            "instance_class_conflict",
            f"instance {iid} spans {len(classes)} classes in the class mask ({desc})",
            class_id=mcls, instance_id=iid, pixels=minority, bbox=bbox, extra={"classes": classes}))
    if flagged.size > k:
        b = boxes[k]
        ids = ivals[flagged[k:]]
        px = int(b[4])
        out.append(config.finding(
            "instance_class_conflict",
            f"{ids.size} more instances span several classes in the class mask ({px} px in their minority classes)",
            pixels=px, bbox=(int(b[0]), int(b[1]), int(b[2] - b[0] + 1), int(b[3] - b[1] + 1)) if px else None,
            extra={"summary": True, "instances": int(ids.size), "instance_ids": ids[:20].tolist()}))
    return out


def instance_stats(instance_mask, config: RuleConfig = DEFAULT_CONFIG) -> dict:
    """Instance ids present (background and ignore excluded) with pixel counts.

    >>> instance_stats(np.array([[0, 3, 3, 255]], np.uint8))
    {'instances': [3], 'instance_pixels': [2]}
    """
    m = _as_2d(instance_mask, "an instance mask")
    u, c = np.unique(m, return_counts=True)
    keep = [not _non_instance(int(v), config) for v in u]
    return {"instances": u[keep].astype(np.int64).tolist(), "instance_pixels": c[keep].astype(np.int64).tolist()}


#: bbox pairs built per block of the sweep (bounds the memory of one block: ~24 bytes a pair)
_SWEEP_BLOCK = 1 << 18


def _sweep_plan(x0, y0, x1, y1):
    """``(order, counts)`` of the sweep: the live boxes sorted along the axis where fewer pairs
    of boxes overlap, and each sorted box's number of partners (boxes starting at or after it,
    before its end along that axis); None when fewer than two boxes can meet anything."""
    live = np.flatnonzero(np.isfinite(x0) & np.isfinite(y0) & (x1 > x0) & (y1 > y0))  # NaN: False
    if live.size < 2:
        return None
    best = None
    for lo, hi in ((x0, x1), (y0, y1)):
        order = live[np.argsort(lo[live], kind="stable")]
        end = np.searchsorted(lo[order], hi[order], side="left")
        counts = np.maximum(end - np.arange(order.size) - 1, 0)
        if best is None or counts.sum() < best[1].sum():
            best = (order, counts)
    return best


def bbox_pairs(boxes, *, block: int = _SWEEP_BLOCK):
    """Pairs of boxes whose interiors intersect, by a sweep: yields ``(i, j)`` index arrays, ``i < j``.

    ``boxes``: an (n, 4) array of ``(x, y, w, h)``; a box with ``w <= 0`` or ``h <= 0``
    (or a NaN) meets nothing.  Boxes are sorted by ``x0`` (or by ``y0``, whichever axis has
    fewer overlapping pairs: stacked full-width stripes overlap along x only); each box is
    paired with the boxes that start before it ends along that axis (a binary search), and
    those pairs are kept when they intersect along the other axis too.  Work and memory
    follow the number of pairs overlapping along the sweep axis, handed out in blocks of at
    most ``block`` pairs (plus one box's partners), never the n*(n-1)/2 pairs of all the
    boxes: 20,000 disjoint squares cost two sorts and searches, not 200 million pairs.  The
    result is the same set of pairs as testing every pair (``min(x1) > max(x0)`` and
    ``min(y1) > max(y0)``).

    >>> b = np.array([[0, 0, 4, 4], [1, 1, 4, 4], [10, 10, 2, 2], [2, 9, 1, 1]], float)
    >>> [(i.tolist(), j.tolist()) for i, j in bbox_pairs(b)]
    [([0], [1])]
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0 = b[:, 0], b[:, 1]
    x1, y1 = x0 + b[:, 2], y0 + b[:, 3]
    plan = _sweep_plan(x0, y0, x1, y1)
    if plan is None:
        return
    order, counts = plan
    total = np.cumsum(counts)
    start = 0
    while start < order.size:
        done = int(total[start - 1]) if start else 0
        stop = int(np.searchsorted(total, done + block, side="right"))
        stop = max(stop, start + 1)
        c = counts[start:stop]
        n = int(c.sum())
        if n:
            ks = np.repeat(np.arange(start, stop), c)
            # position of each pair within its box's run of partners: 0, 1, ... per box
            first = np.repeat(np.cumsum(c) - c, c)
            partner = ks + 1 + (np.arange(n) - first)
            a, p = order[ks], order[partner]
            keep = (np.minimum(y1[a], y1[p]) > np.maximum(y0[a], y0[p])) & \
                   (np.minimum(x1[a], x1[p]) > np.maximum(x0[a], x0[p]))
            if keep.any():
                a, p = a[keep], p[keep]
                i, j = np.minimum(a, p), np.maximum(a, p)
                o = np.lexsort((j, i))
                yield i[o], j[o]
        start = stop


def instance_overlap(rles: Sequence[dict], ids: Sequence | None = None, config: RuleConfig = DEFAULT_CONFIG, *,
                     category_ids: Sequence | None = None, names: Mapping[int, str] | None = None,
                     max_findings: int = 100) -> list[Finding]:
    """Pairs of masks of one image that overlap (COCO annotations; instance PNGs cannot overlap).

    ``rles``: same-size RLE dicts (``fastmask.rle`` / pycocotools form); ``ids``: the
    annotation ids (default: positions).  Crowd annotations should be left out by
    the caller (a crowd region covers its members by design; :func:`check_coco_image`
    does).  Two kinds of finding:

    - ``duplicate_annotation`` (warning): the pair's IoU is at least ``duplicate_min_iou``
      (default 0.7): one object annotated twice, with one category (a duplicate) or two
      (a double label, e.g. a car as car and truck);
    - ``instance_overlap`` (info): any other pair whose intersection has at least
      ``overlap_min_pixels`` pixels and at least ``overlap_min_fraction`` of the smaller
      mask (containment -- a cup on a table -- and large partial overlaps; boundary
      slivers of adjacent polygons are not news).  With ``duplicate_annotation``
      disabled, high-IoU pairs are judged here.

    Candidate pairs come from a bounding-box sweep (:func:`bbox_pairs`), so the cost
    follows the pairs whose boxes meet, not the square of the annotation count; only
    those are intersected exactly.  One finding per pair (at most ``max_findings`` of
    each rule): ``instance_id`` = the first annotation, ``extra`` = both ids, the
    overlap, both areas, the IoU; ``bbox`` = the overlap's extent.

    >>> from fastmask import rle
    >>> a, b, c = rle.frPyObjects([[0, 0, 4, 4], [1, 1, 4, 4], [0, 0, 4, 5]], 8, 8)
    >>> [(f.rule, f.pixels, f.extra["ids"]) for f in instance_overlap([a, b, c], [11, 12, 13])]
    [('duplicate_annotation', 16, [11, 13]), ('instance_overlap', 9, [11, 12]), ('instance_overlap', 12, [12, 13])]
    """
    dup_on = config.enabled("duplicate_annotation")
    ovl_on = config.enabled("instance_overlap")
    if not (dup_on or ovl_on) or len(rles) < 2:
        return []
    ids = list(range(len(rles))) if ids is None else list(ids)
    rles = list(rles)
    areas = np.asarray(_rle.area(rles), dtype=np.int64).reshape(-1)
    boxes = np.asarray(_rle.toBbox(rles), dtype=np.float64).reshape(-1, 4)
    boxes[areas <= 0, 2:] = 0  # an empty mask meets nothing
    found: dict[str, list[tuple[int, int, Finding]]] = {"duplicate_annotation": [], "instance_overlap": []}
    for ii, jj in bbox_pairs(boxes):
        for i, j in zip(ii.tolist(), jj.tolist()):
            f = _overlap_finding(rles, areas, ids, i, j, config, dup_on, ovl_on, category_ids, names)
            if f is not None and len(found[f.rule]) < max_findings:
                found[f.rule].append((i, j, f))
        if all(len(v) >= max_findings or not config.enabled(k) for k, v in found.items()):
            break
    # duplicates first, each rule's pairs in annotation order
    return [f for rule in ("duplicate_annotation", "instance_overlap")
            for _, _, f in sorted(found[rule], key=lambda t: t[:2])]


def _overlap_finding(rles, areas, ids, i, j, config, dup_on, ovl_on, category_ids, names) -> Finding | None:
    """The finding of one candidate pair (exact intersection), or None."""
    inter_rle = _rle.merge([rles[i], rles[j]], intersect=1)
    inter = int(_rle.area(inter_rle))
    if inter < 1:
        return None
    union = int(areas[i] + areas[j] - inter)
    iou = inter / union
    smaller = int(min(areas[i], areas[j]))
    frac = inter / smaller
    if dup_on and iou >= config.duplicate_min_iou:
        rule = "duplicate_annotation"
    elif ovl_on and inter >= max(1, config.overlap_min_pixels) and frac >= config.overlap_min_fraction:
        rule = "instance_overlap"
    else:
        return None
    ci = category_ids[i] if category_ids is not None else None
    cj = category_ids[j] if category_ids is not None else None
    cat = ""
    if ci is not None:
        cat = f" (categories {name_of(ci, names)} and {name_of(cj, names)})"
    if rule == "duplicate_annotation":
        what = "the same object annotated twice" if ci == cj else "one object with two labels"
        msg = f"annotations {ids[i]} and {ids[j]} overlap with IoU {iou:.2f}: {what}{cat}"
    else:
        msg = f"annotations {ids[i]} and {ids[j]} overlap by {inter} px ({frac:.0%} of the smaller){cat}"
    return config.finding(
        rule, msg,
        class_id=ci if isinstance(ci, int) else None,
        instance_id=ids[i] if isinstance(ids[i], (int, np.integer)) else None,
        pixels=inter, bbox=tuple(_rle.toBbox(inter_rle)),
        extra={"ids": [ids[i], ids[j]], "areas": [int(areas[i]), int(areas[j])], "iou": iou,
               "fraction_of_smaller": frac, "categories": [ci, cj]})
