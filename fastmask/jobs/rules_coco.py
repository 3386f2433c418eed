"""COCO rules: per image (its record, its annotations) and per dataset (ids across files).

Per image, :func:`check_coco_image` validates every annotation (polygons, RLEs,
category, bbox) and then the overlaps between the valid ones, and returns the
findings plus small statistics.  Nothing here raises on hostile values: a NaN, a
string, a 1e300 coordinate or a malformed RLE string is a finding.

Facts about real COCO that the checks respect (seen in real sample files from public projects):

- ``area`` is the polygon's geometric area, not a pixel count: never compared;
- crowd RLE bboxes are one pixel smaller in w and h than the RLE's: within the
  default ``bbox_tolerance`` (2 px);
- a polygon's bbox is its vertex extent, and thin parts may rasterize to nothing:
  ``bbox_mismatch`` accepts a bbox matching either the vertex extent or the mask;
- an annotation's polygons are parts, unioned.

>>> img = {"id": 1, "width": 8, "height": 8}
>>> ann = {"id": 5, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, float("nan")]]}
>>> f, st = check_coco_image(img, [ann], {1})
>>> [(x.rule, x.instance_id) for x in f]
[('invalid_polygon', 5)]
"""
from __future__ import annotations

import math
import numbers
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from fastmask import raster as _raster
from fastmask import rle as _rle

from .rules_core import DEFAULT_CONFIG, Finding, RuleConfig
from .rules_files import image_size_mismatch
from .rules_instances import instance_overlap

__all__ = [
    "CocoImageStats",
    "check_coco_image",
    "check_coco_annotation",
    "check_coco_dataset",
    "duplicate_ids",
    "unknown_images",
    "bad_top_level",
    "json_type",
]


def _int_or_none(v):
    """A 64-bit integer (what the report's columns hold), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)) and -(2**63) <= v < 2**63:
        return int(v)
    return None


def _num(v) -> float | None:
    """A finite float, or None for non-numbers, bools, NaN/inf and numbers too big for a float."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return None
    try:
        f = float(v)
    except (OverflowError, ValueError, TypeError):
        return None
    return f if math.isfinite(f) else None


def _image_hw(image: Mapping) -> tuple[int, int] | None:
    h, w = image.get("height"), image.get("width")
    h, w = _int_or_none(h), _int_or_none(w)
    if h is None or w is None or h <= 0 or w <= 0:
        return None
    return h, w


@dataclass
class _Ann:
    """What one annotation check learned (internal)."""

    rle: dict | None = None  # the annotation's mask as one compressed RLE, when valid
    kind: str = "none"  # "polygon", "rle", "none", "invalid"
    area: int | None = None


def _polygon_problems(parts) -> tuple[list[tuple[int, str]], list[list[float]]]:
    """(problems [(part index, message)], valid parts as float lists)."""
    problems, good = [], []
    for k, p in enumerate(parts):
        if not isinstance(p, (list, tuple)):
            problems.append((k, f"part {k} is not a list of numbers (got {type(p).__name__})"))
            continue
        vals = [_num(v) for v in p]
        bad = [i for i, v in enumerate(vals) if v is None]
        if bad:
            i = bad[0]
            raw = p[i]
            what = "NaN/inf" if isinstance(raw, numbers.Real) and not isinstance(raw, bool) else \
                f"a non-number ({type(raw).__name__} {raw!r:.20})"
            problems.append((k, f"part {k} has {len(bad)} bad value(s): value {i} is {what}"))
            continue
        if len(vals) % 2:
            problems.append((k, f"part {k} has an odd number of values ({len(vals)})"))
            continue
        if len(vals) < 6:
            problems.append((k, f"part {k} has {len(vals) // 2} points; at least 3 are needed"))
            continue
        good.append(vals)
    return problems, good


def _bbox_problem(bbox) -> str | None:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return f"bbox is not 4 numbers: {bbox!r:.60}"
    vals = [_num(v) for v in bbox]
    if any(v is None for v in vals):
        return f"bbox has non-finite or non-number values: {bbox!r:.60}"
    if vals[2] < 0 or vals[3] < 0:
        return f"bbox has a negative width or height: {vals}"
    return None


def _corners(b) -> np.ndarray:
    b = np.asarray(b, np.float64)
    return np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]])


def check_coco_annotation(ann: Mapping, height: int, width: int, category_ids: Iterable[int] | None = None,
                          config: RuleConfig = DEFAULT_CONFIG, *,
                          names: Mapping[int, str] | None = None) -> tuple[list[Finding], _Ann]:
    """One annotation against its image size: category, polygons / RLE, emptiness, bbox.

    Returns ``(findings, info)``; ``info.rle`` is the annotation's mask as one
    compressed RLE when the segmentation is valid (for overlaps), else None.  An
    annotation with an invalid part gets no mask checks (no cascade of findings).
    No ``segmentation`` key (detection-only records): ``missing_segmentation``, and only the
    category and ``iscrowd`` (``bad_iscrowd`` unless 0 or 1) are checked.

    >>> f, info = check_coco_annotation({"id": 1, "category_id": 3, "segmentation": []}, 4, 4, {1})
    >>> sorted(x.rule for x in f)
    ['empty_segmentation', 'unknown_category']
    """
    out: list[Finding] = []
    info = _Ann()
    aid = _int_or_none(ann.get("id")) if isinstance(ann, Mapping) else None
    if not isinstance(ann, Mapping):
        if config.enabled("invalid_polygon"):
            out.append(config.finding("invalid_polygon", f"annotation is not an object: {ann!r:.60}"))
        info.kind = "invalid"
        return out, info
    cat = ann.get("category_id")
    cid = _int_or_none(cat)
    label = f"annotation {ann.get('id')!r}"
    kw = {"instance_id": aid, "class_id": cid}
    if aid is None:
        kw_extra = {"annotation_id": repr(ann.get("id"))}
    else:
        kw_extra = {}
    if category_ids is not None and config.enabled("unknown_category"):
        cats = category_ids if isinstance(category_ids, (set, frozenset, dict)) else set(category_ids)
        if cid is None or cid not in cats:
            out.append(config.finding("unknown_category", f"{label}: category_id {cat!r} is not in the categories",
                                      extra={"category_id": repr(cat) if cid is None else cid, **kw_extra}, **kw))
    crowd = ann.get("iscrowd", 0)
    if (isinstance(crowd, bool) or not isinstance(crowd, (int, float)) or crowd not in (0, 1)) \
            and config.enabled("bad_iscrowd"):
        out.append(config.finding("bad_iscrowd", f"{label}: iscrowd is {crowd!r:.40}, not 0 or 1",
                                  extra={"iscrowd": crowd if isinstance(crowd, (int, str)) and not
                                         isinstance(crowd, bool) else repr(crowd), **kw_extra}, **kw))
    if "segmentation" not in ann:
        if config.enabled("missing_segmentation"):
            out.append(config.finding("missing_segmentation", f"{label}: no segmentation (nothing to paint)",
                                      extra=kw_extra, **kw))
        return out, info
    seg = ann["segmentation"]
    h, w = height, width
    poly_extent = None
    if isinstance(seg, (list, tuple)):
        info.kind = "polygon"
        if len(seg) == 0:
            if config.enabled("empty_segmentation"):
                out.append(config.finding("empty_segmentation", f"{label}: empty polygon list",
                                          pixels=0, extra=kw_extra, **kw))
            info.area = 0
            return out, info
        problems, good = _polygon_problems(seg)
        if problems:
            info.kind = "invalid"
            if config.enabled("invalid_polygon"):
                msg = "; ".join(m for _, m in problems[:3]) + (f"; {len(problems) - 3} more" if len(problems) > 3 else "")
                out.append(config.finding("invalid_polygon", f"{label}: {msg}",
                                          extra={"parts": [k for k, _ in problems], **kw_extra}, **kw))
            return out, info
        xs = np.concatenate([np.asarray(p[0::2]) for p in good])
        ys = np.concatenate([np.asarray(p[1::2]) for p in good])
        poly_extent = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        tol = config.polygon_tolerance
        excess = max(-poly_extent[0], -poly_extent[1], poly_extent[2] - w, poly_extent[3] - h)
        if excess > tol and config.enabled("polygon_out_of_bounds"):
            out.append(config.finding(
                "polygon_out_of_bounds",
                f"{label}: polygon reaches ({poly_extent[0]:.6g}, {poly_extent[1]:.6g})-"
                f"({poly_extent[2]:.6g}, {poly_extent[3]:.6g}), {excess:.6g} px outside the {w}x{h} image",
                bbox=_clip_box(poly_extent),
                extra={"extent": list(poly_extent), "excess": excess, "tolerance": tol, **kw_extra}, **kw))
        try:
            info.rle = _raster.polygon_rle(good, h, w)
        except (ValueError, TypeError, OverflowError, MemoryError) as e:  # defensive: validated above
            info.kind = "invalid"
            if config.enabled("invalid_polygon"):
                out.append(config.finding("invalid_polygon", f"{label}: {e}", extra=kw_extra, **kw))
            return out, info
    elif isinstance(seg, Mapping):
        info.kind = "rle"
        problem = _rle_problem(seg, h, w)
        if problem is None:
            try:
                r = seg if isinstance(seg.get("counts"), (str, bytes)) else _rle.frPyObjects(dict(seg), h, w)
                r = {"size": [h, w], "counts": r["counts"]}
                _rle.area(r)  # parses and checks the counts
                info.rle = r
            except (ValueError, TypeError, OverflowError, KeyError) as e:
                problem = str(e)
        if problem is not None:
            info.kind = "invalid"
            if config.enabled("invalid_rle"):
                out.append(config.finding("invalid_rle", f"{label}: {problem}", extra=kw_extra, **kw))
            return out, info
    else:
        info.kind = "invalid"
        if config.enabled("invalid_polygon"):
            out.append(config.finding(
                "invalid_polygon",
                f"{label}: segmentation is neither a polygon list nor an RLE object ({type(seg).__name__})",
                extra=kw_extra, **kw))
        return out, info
    area = int(_rle.area(info.rle))
    info.area = area
    mbox = [float(v) for v in _rle.toBbox(info.rle)]
    if area == 0:
        if config.enabled("empty_segmentation"):
            out.append(config.finding("empty_segmentation", f"{label}: the {info.kind} covers no pixel of the "
                                      f"{w}x{h} image", pixels=0, extra=kw_extra, **kw))
        return out, info
    if "bbox" in ann and config.enabled("bbox_mismatch"):
        bb = ann["bbox"]
        problem = _bbox_problem(bb)
        if problem is not None:
            out.append(config.finding("bbox_mismatch", f"{label}: {problem}", pixels=area, bbox=mbox,
                                      extra=kw_extra, **kw))
        else:
            jb = _corners([float(v) for v in bb])
            diff = float(np.abs(jb - _corners(mbox)).max())
            refs = {"mask": diff}
            if poly_extent is not None:
                # COCO's polygon bboxes are vertex extents: thin parts may rasterize to nothing
                ext = np.array([max(0.0, poly_extent[0]), max(0.0, poly_extent[1]),
                                min(float(w), poly_extent[2]), min(float(h), poly_extent[3])])
                refs["polygon"] = float(np.abs(jb - ext).max())
            best = min(refs.values())
            if best > config.bbox_tolerance:
                out.append(config.finding(
                    "bbox_mismatch",
                    f"{label}: bbox {[round(float(v), 2) for v in bb]} is {diff:.3g} px from the mask's bbox "
                    f"{[int(v) for v in mbox]} (tolerance {config.bbox_tolerance:g})",
                    pixels=area, bbox=mbox,
                    extra={"json_bbox": [float(v) for v in bb], "mask_bbox": mbox,
                           "difference": {k: v for k, v in refs.items()}, "tolerance": config.bbox_tolerance,
                           **kw_extra}, **kw))
    return out, info


def _clip_box(extent):
    x0, y0, x1, y1 = extent
    lim = 2.0**31 - 1
    x0, y0, x1, y1 = (max(-lim, min(lim, v)) for v in (x0, y0, x1, y1))
    return (x0, y0, max(0.0, min(lim, x1 - x0)), max(0.0, min(lim, y1 - y0)))


def _rle_problem(seg: Mapping, h: int, w: int) -> str | None:
    if "size" not in seg or "counts" not in seg:
        return f"RLE needs 'size' and 'counts', got keys {sorted(map(str, seg))}"
    size = seg["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or any(_int_or_none(v) is None for v in size):
        return f"RLE size must be [height, width] integers, got {size!r:.60}"
    if [int(size[0]), int(size[1])] != [h, w]:
        return f"RLE size {[int(size[0]), int(size[1])]} is not the image's [{h}, {w}] (height, width)"
    counts = seg["counts"]
    if isinstance(counts, (str, bytes)):
        try:
            _rle.counts_of([{"size": [h, w], "counts": counts}])
        except (ValueError, TypeError, OverflowError) as e:
            return str(e).replace("RLE 0 ", "RLE ")
        return None
    if isinstance(counts, (list, tuple)):
        bad = [v for v in counts if _int_or_none(v) is None or v < 0]
        if bad:
            return f"uncompressed RLE counts must be non-negative integers, got {bad[0]!r:.30}"
        total = sum(int(v) for v in counts)
        if total != h * w:
            return f"RLE counts sum to {total}, not h*w = {h * w}"
        return None
    return f"RLE counts must be a string or a list of integers, got {type(counts).__name__}"


@dataclass
class CocoImageStats:
    """Per-image COCO statistics for the items/classes tables."""

    n_annotations: int = 0
    n_polygon: int = 0
    n_rle: int = 0
    n_crowd: int = 0
    n_invalid: int = 0
    #: category id -> annotation count / mask pixels (valid masks only)
    category_counts: dict = field(default_factory=dict)
    category_pixels: dict = field(default_factory=dict)
    #: each annotation's mask as a compressed RLE (None: invalid / nothing read), in file order,
    #: so that callers can paint a class map without rasterizing again; not in :meth:`to_row`
    rles: list = field(default_factory=list, repr=False)

    def to_row(self) -> dict:
        cats = sorted(self.category_counts)
        return {"n_annotations": self.n_annotations, "n_polygon": self.n_polygon, "n_rle": self.n_rle,
                "n_crowd": self.n_crowd, "n_invalid": self.n_invalid, "categories": cats,
                "category_counts": [self.category_counts[c] for c in cats],
                "category_pixels": [self.category_pixels.get(c, 0) for c in cats]}


def check_coco_image(image: Mapping, annotations: Sequence[Mapping], category_ids: Iterable[int] | None = None,
                     config: RuleConfig = DEFAULT_CONFIG, *, file_size: tuple[int, int] | None = None,
                     names: Mapping[int, str] | None = None) -> tuple[list[Finding], CocoImageStats]:
    """All per-image COCO rules for one image record and its annotations.

    ``category_ids``: the dataset's category ids (None: not checked).
    ``file_size``: the image file's (width, height) when images are given
    (``image_size_mismatch``).  Overlaps are checked between valid, non-crowd masks.
    An image record without a usable width/height gets one ``unreadable`` finding
    and no mask checks (nothing can be rasterized).

    >>> img = {"id": 1, "width": 4, "height": 4}
    >>> anns = [{"id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]], "bbox": [0, 0, 4, 4]}]
    >>> check_coco_image(img, anns, {1})[0]
    []
    """
    stats = CocoImageStats(n_annotations=len(annotations))
    out: list[Finding] = []
    hw = _image_hw(image) if isinstance(image, Mapping) else None
    if hw is None:
        if config.enabled("unreadable"):
            got = {k: image.get(k) for k in ("width", "height")} if isinstance(image, Mapping) else image
            out.append(config.finding("unreadable", f"image record has no usable width/height: {got!r:.80}",
                                      extra={"error_code": "bad_json"}))
        return out, stats
    h, w = hw
    if file_size is not None:
        out += image_size_mismatch((w, h), file_size, config, file_name=image.get("file_name"))
    cats = None
    if category_ids is not None:
        cats = category_ids if isinstance(category_ids, (set, frozenset, dict)) else set(category_ids)
    rles, ids, catl = [], [], []
    for ann in annotations:
        f, info = check_coco_annotation(ann, h, w, cats, config, names=names)
        out += f
        if info.kind == "invalid":
            stats.n_invalid += 1
        elif info.kind == "polygon":
            stats.n_polygon += 1
        elif info.kind == "rle":
            stats.n_rle += 1
        crowd = isinstance(ann, Mapping) and bool(ann.get("iscrowd"))
        stats.n_crowd += crowd
        stats.rles.append(info.rle)
        cid = _int_or_none(ann.get("category_id")) if isinstance(ann, Mapping) else None
        if cid is not None:
            stats.category_counts[cid] = stats.category_counts.get(cid, 0) + 1
            if info.area:
                stats.category_pixels[cid] = stats.category_pixels.get(cid, 0) + info.area
        if info.rle is not None and info.area and not crowd:
            rles.append(info.rle)
            ids.append(ann.get("id"))
            catl.append(cid)
    out += instance_overlap(rles, ids, config, category_ids=catl, names=names)
    return out, stats


# ----------------------------------------------------------------------------- dataset level


def _id_key(v):
    # ids are counted by JSON value: 1, 1.0, "1" and True are different ids; lists are not hashable
    if isinstance(v, np.integer):
        v = int(v)
    if isinstance(v, (bool, float)):
        return (type(v).__name__, v)
    if v is None or isinstance(v, (int, str)):
        return v
    return ("repr", repr(v))


def _id_value(key):
    return key[1] if isinstance(key, tuple) else key


def duplicate_ids(ids: Iterable, kind: str = "image", config: RuleConfig = DEFAULT_CONFIG, *,
                  max_findings: int = 1000) -> list[Finding]:
    """Ids used more than once (``kind``: "image", "annotation", "category"); one finding per id.

    An integer NumPy array is counted with NumPy (millions of ids); other ids by hashing.

    >>> [(f.extra["id"], f.extra["count"]) for f in duplicate_ids([1, 2, 2, 3, 2], "annotation")]
    [(2, 3)]
    """
    if not config.enabled("duplicate_id"):
        return []
    dups: list[tuple[Any, int]]
    if isinstance(ids, np.ndarray) and ids.ndim == 1 and np.issubdtype(ids.dtype, np.integer):
        u, c = np.unique(ids, return_counts=True)
        dups = [(int(v), int(n)) for v, n in zip(u[c > 1], c[c > 1])]
    else:
        cnt = Counter(_id_key(v) for v in ids)
        dups = [(_id_value(k), n) for k, n in cnt.items() if n > 1]
    out = []
    for v, n in dups[:max_findings]:
        iv = _int_or_none(v)
        out.append(config.finding(
            "duplicate_id", f"{kind} id {v!r} is used {n} times",
            instance_id=iv if kind == "annotation" else None, class_id=iv if kind == "category" else None,
            extra={"kind": kind, "id": v if isinstance(v, (int, str)) else repr(v), "count": n}))
    if len(dups) > max_findings:
        out.append(config.finding("duplicate_id", f"{len(dups) - max_findings} more duplicated {kind} ids",
                                  extra={"kind": kind, "more": len(dups) - max_findings}))
    return out


def unknown_images(annotation_image_ids: Iterable, image_ids: Iterable, config: RuleConfig = DEFAULT_CONFIG, *,
                   annotation_ids: Sequence | None = None, max_findings: int = 1000) -> list[Finding]:
    """Annotations whose ``image_id`` has no image record: one finding per missing image id.

    ``extra`` holds the number of annotations and (with ``annotation_ids``) the first few.

    >>> [(f.extra["image_id"], f.extra["annotations"]) for f in unknown_images([1, 9, 9], [1, 2])]
    [(9, 2)]
    """
    if not config.enabled("unknown_image"):
        return []
    a = list(annotation_image_ids)
    known = set(_id_key(v) for v in image_ids)
    missing: dict = {}
    for k, v in enumerate(a):
        key = _id_key(v)
        if key not in known:
            missing.setdefault(key, (v, []))[1].append(k)
    out = []
    for key, (v, idx) in list(missing.items())[:max_findings]:
        v = _id_value(key)
        first = [annotation_ids[k] for k in idx[:10]] if annotation_ids is not None else None
        out.append(config.finding(
            "unknown_image",
            f"{len(idx)} annotation(s) refer to image_id {v!r}, which has no image record"
            + (f" (annotation ids {first})" if first else ""),
            instance_id=_int_or_none(annotation_ids[idx[0]]) if annotation_ids is not None else None,
            extra={"image_id": v if isinstance(v, (int, str)) else repr(v), "annotations": len(idx),
                   "annotation_ids": first}))
    return out


#: top-level fields and the JSON type COCO (and pycocotools) expect of them
TOP_LEVEL = {"images": "array", "annotations": "array", "categories": "array", "info": "object"}
_ARTICLE = {"null": "null", "object": "an object", "array": "a list"}


def json_type(v) -> str:
    """The JSON type name of a decoded value.

    >>> json_type({}), json_type([]), json_type(None), json_type(1.5), json_type("a")
    ('object', 'array', 'null', 'number', 'string')
    """
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, Mapping):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, (int, float)) and not isinstance(v, str):
        return "number"
    return "string"


def bad_top_level(types: Mapping[str, str], config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Top-level fields of the wrong JSON type (``types``: key -> JSON type name, absent keys
    are not checked): ``images``, ``annotations``, ``categories`` must be lists, ``info`` an object.

    >>> [f.message for f in bad_top_level({"images": "object", "annotations": "array"})]
    ["'images' is an object, not a list: no image is an item"]
    """
    if not config.enabled("bad_top_level"):
        return []
    what = {"images": ": no image is an item", "annotations": ": no annotation is read",
            "categories": ": no category is known", "info": ""}
    out = []
    for key, want in TOP_LEVEL.items():
        t = types.get(key)
        if t is not None and t != want:
            out.append(config.finding("bad_top_level", f"'{key}' is {_ARTICLE.get(t, 'a ' + t)}, not "
                                      f"{_ARTICLE[want]}{what[key]}", extra={"key": key, "type": t}))
    return out


def check_coco_dataset(coco: Mapping, config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Dataset-level COCO rules on a parsed JSON: top-level types, duplicate image/annotation/category ids,
    unknown images.

    Tolerates missing or malformed sections (a missing list is an empty one).

    >>> check_coco_dataset({"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 2}]})[0].rule
    'unknown_image'
    """
    def rows(key):
        v = coco.get(key) if isinstance(coco, Mapping) else None
        return [r for r in v if isinstance(r, Mapping)] if isinstance(v, list) else []

    images, anns, cats = rows("images"), rows("annotations"), rows("categories")
    out = bad_top_level({k: json_type(v) for k, v in coco.items()} if isinstance(coco, Mapping) else {}, config)
    out += duplicate_ids([r.get("id") for r in images], "image", config)
    # panoptic files have no annotation ids (one record per image): nothing to compare
    aids = [r.get("id") for r in anns if "id" in r]
    out += duplicate_ids(aids, "annotation", config)
    out += duplicate_ids([r.get("id") for r in cats], "category", config)
    out += unknown_images([r.get("image_id") for r in anns], [r.get("id") for r in images], config,
                          annotation_ids=[r.get("id") for r in anns])
    return out
