"""COCO panoptic: the PNG's segment ids (id = R + 256 G + 65536 B, 0 = void) vs ``segments_info``.

>>> import numpy as np
>>> ids = np.array([[0, 7, 7], [9, 9, 9]], np.uint32)
>>> f, st = segment_mismatch(ids, [{"id": 7, "category_id": 1, "area": 2}])
>>> [(x.instance_id, x.pixels, x.extra["problem"]) for x in f]
[(9, 3, 'not_in_json')]
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from fastmask.kernels import validate as kv

from .rules_core import DEFAULT_CONFIG, Finding, RuleConfig, bbox_from_inclusive, name_of

__all__ = ["panoptic_ids", "value_counts", "segment_mismatch", "duplicate_record"]


def duplicate_record(records: int, config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """An image with ``records`` (> 1) panoptic annotation records: only the first is read.

    >>> duplicate_record(2)[0].message
    'the image has 2 panoptic annotation records; only the first is read'
    >>> duplicate_record(1)
    []
    """
    if records < 2 or not config.enabled("duplicate_record"):
        return []
    return [config.finding("duplicate_record", f"the image has {records} panoptic annotation records; "
                           "only the first is read", extra={"records": records})]


def panoptic_ids(png) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (h, w) uint32 ids ``R + 256 G + 65536 B``; a 2-D id map is returned as is.

    >>> panoptic_ids(np.array([[[1, 2, 3]]], np.uint8)).tolist()
    [[197121]]
    """
    a = np.asarray(png)
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[2] >= 3:
        rgb = a[..., :3].astype(np.uint32)
        return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)
    raise ValueError(f"a panoptic PNG must be (h, w) ids or (h, w, 3) RGB, got shape {a.shape}")


def value_counts(a) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts of any integer array, fast on masks.

    Runs of equal values are collapsed first (masks are mostly runs), so the sort
    is over runs, not pixels.

    >>> [x.tolist() for x in value_counts(np.array([[5, 5, 0], [0, 0, 5]], np.uint32))]
    [[0, 5], [3, 3]]
    """
    flat = np.ascontiguousarray(a).reshape(-1)
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if flat.dtype == np.uint8 or flat.dtype == np.bool_:
        c = np.bincount(flat.view(np.uint8), minlength=256)
        v = np.flatnonzero(c)
        return v.astype(np.int64), c[v].astype(np.int64)
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    lengths = np.diff(np.append(starts, flat.size))
    u, inv = np.unique(flat[starts], return_inverse=True)
    return u.astype(np.int64), np.bincount(inv, weights=lengths, minlength=u.size).astype(np.int64)


def _bbox_of(ids: np.ndarray, value: int):
    o = np.zeros(5, np.int64)
    kv.value_bbox(ids, ids.dtype.type(value), o)
    return bbox_from_inclusive(*o[:4])


def segment_mismatch(png, segments_info: Sequence[Mapping], config: RuleConfig = DEFAULT_CONFIG, *,
                     names: Mapping[int, str] | None = None, max_findings: int | None = None
                     ) -> tuple[list[Finding], dict]:
    """Compare a panoptic PNG (ids or RGB) with its ``segments_info``; returns ``(findings, stats)``.

    One finding per problem (``extra["problem"]``):

    - ``not_in_json``: an id in the PNG (not 0 = void) without a segment;
      ``pixels`` = its count, ``bbox`` its extent;
    - ``not_in_png``: a segment whose id has no pixel;
    - ``area``: |JSON area - PNG count| > ``panoptic_area_tolerance``;
    - ``bbox`` (only with ``panoptic_check_bbox``): any bbox edge differs by more than
      ``bbox_tolerance``;
    - ``void_id`` / ``duplicate`` / ``malformed``: a segment with id 0, the same id
      twice, or a record without an integer ``id``.

    ``stats``: ``segments`` (count in the JSON), ``png_ids`` (distinct non-void ids),
    ``void_pixels``, ``category_pixels`` (category -> pixels of known segments).
    A PNG of another size than its image record is the caller's ``size_mismatch``.
    Beyond ``max_findings`` (default: the config's) problems, one more finding counts the
    others by problem (``extra["summary"]``); the PNG's ids stay arrays (a noise PNG has
    millions), and an id's extent is only computed for a finding that is kept.
    """
    ids = panoptic_ids(png)
    ids = np.ascontiguousarray(ids)
    vals, counts = value_counts(ids)
    void_px = int(counts[0]) if vals.size and vals[0] == 0 else 0
    if void_px:
        vals, counts = vals[1:], counts[1:]
    png = _Counts(vals, counts)
    cap = config.max_findings if max_findings is None else max_findings
    out: list[Finding] = []
    info: dict[int, Mapping] = {}
    seen = Counter()
    stats = {"segments": len(segments_info), "png_ids": int(vals.size), "void_pixels": void_px,
             "category_pixels": {}}
    on = config.enabled("segment_mismatch")
    more: Counter = Counter()  # problems beyond the cap
    more_px = [0]

    def add(msg, problem, **kw):
        if not on:
            return
        if len(out) < cap:
            bbox = kw.pop("bbox", None)
            kw["bbox"] = bbox() if callable(bbox) else bbox
            out.append(config.finding("segment_mismatch", msg, extra={"problem": problem, **kw.pop("extra", {})}, **kw))
        else:
            more[problem] += 1
            more_px[0] += kw.get("pixels") or 0

    for k, s in enumerate(segments_info):
        sid = s.get("id") if isinstance(s, Mapping) else None
        if isinstance(sid, bool) or not isinstance(sid, (int, np.integer)):
            add(f"segments_info[{k}] has no integer id: {s!r:.80}", "malformed", extra={"index": k})
            continue
        sid = int(sid)
        seen[sid] += 1
        if sid == 0:
            add(f"segments_info[{k}] uses id 0, which is void in the PNG", "void_id", instance_id=0)
            continue
        if seen[sid] == 2:
            add(f"segment id {sid} appears more than once in segments_info", "duplicate", instance_id=sid)
        info.setdefault(sid, s)
    known = np.array([k for k in info if 0 < k < 2**63], np.int64)  # other ids match no PNG id
    unknown = np.flatnonzero(~np.isin(vals, known))
    if on and unknown.size > max(0, cap - len(out)):  # the rest only counted
        rest = unknown[max(0, cap - len(out)):]
        more["not_in_json"] += int(rest.size)
        more_px[0] += int(counts[rest].sum())
        unknown = unknown[:max(0, cap - len(out))]
    for sid, n in zip(vals[unknown].tolist(), counts[unknown].tolist()):
        add(f"id {sid} has {n} px in the PNG but no segment in segments_info", "not_in_json",
            instance_id=sid, pixels=n, bbox=lambda sid=sid: _bbox_of(ids, sid),
            extra={"rgb": [sid & 255, (sid >> 8) & 255, (sid >> 16) & 255]})
    for sid, s in info.items():
        cat = s.get("category_id")
        cid = int(cat) if isinstance(cat, (int, np.integer)) and not isinstance(cat, bool) else None
        n = png.get(sid, 0)
        if cid is not None and n:
            stats["category_pixels"][cid] = stats["category_pixels"].get(cid, 0) + n
        what = f"segment {sid}" + (f" (category {name_of(cid, names)})" if cid is not None else "")
        if n == 0:
            add(f"{what} is in segments_info but has no pixel in the PNG", "not_in_png",
                instance_id=sid, class_id=cid, pixels=0, extra={"json_area": s.get("area")})
            continue
        area = s.get("area")
        if isinstance(area, (int, float)) and not isinstance(area, bool) and np.isfinite(area):
            if abs(float(area) - n) > config.panoptic_area_tolerance:
                add(f"{what}: segments_info area {area:g} but {n} px in the PNG", "area",
                    instance_id=sid, class_id=cid, pixels=n, extra={"json_area": area, "png_area": n})
        elif "area" in s:
            add(f"{what}: area is not a number ({area!r:.30})", "malformed", instance_id=sid, class_id=cid)
        if config.panoptic_check_bbox and on and "bbox" in s:
            bb = s.get("bbox")
            got = _bbox_of(ids, sid)
            try:
                jb = np.array([float(v) for v in bb], np.float64)
                ok = jb.shape == (4,) and np.isfinite(jb).all()
            except (TypeError, ValueError):
                ok = False
            if not ok:
                add(f"{what}: bbox is not 4 finite numbers ({bb!r:.40})", "bbox", instance_id=sid, class_id=cid)
            else:
                ref = np.array(got, np.float64)
                d = np.abs(np.r_[jb[:2], jb[:2] + jb[2:]] - np.r_[ref[:2], ref[:2] + ref[2:]]).max()
                if d > config.bbox_tolerance:
                    add(f"{what}: segments_info bbox {jb.tolist()} vs {list(got)} in the PNG ({d:g} px apart)",
                        "bbox", instance_id=sid, class_id=cid, pixels=n, bbox=got,
                        extra={"json_bbox": jb.tolist(), "png_bbox": list(got)})
    if more:
        n = sum(more.values())
        out.append(config.finding(
            "segment_mismatch", f"{n} more segment problems ({', '.join(f'{k}: {v}' for k, v in sorted(more.items()))})",
            pixels=more_px[0], extra={"summary": True, "problems": dict(sorted(more.items())), "count": n}))
    return out, stats


class _Counts:
    """``png.get(id, 0)`` over sorted id / count arrays (no dict of a PNG's millions of ids)."""

    def __init__(self, vals: np.ndarray, counts: np.ndarray):
        self.vals, self.counts = vals, counts

    def get(self, sid: int, default: int = 0) -> int:
        i = int(np.searchsorted(self.vals, sid))
        return int(self.counts[i]) if i < self.vals.size and self.vals[i] == sid else default
