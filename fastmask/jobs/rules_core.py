"""Findings, the rule registry and the rule configuration shared by every ``rules_*`` module.

A check function returns a list of :class:`Finding`; each carries a stable ``rule``
code from :data:`RULES`, a ``severity`` (``error`` > ``warning`` > ``info``) and the
class / instance / pixel count / bbox it concerns.  :class:`RuleConfig` holds the
user's choices (disabled rules, severity overrides, thresholds); checks consult it
(a disabled rule does no work) and :func:`apply_config` re-applies it to findings
built elsewhere.

>>> cfg = RuleConfig(disabled={"empty_mask"}, severities={"tiny_island": "error"})
>>> f = Finding("tiny_island", "warning", "2 islands of class 3", class_id=3, pixels=5)
>>> [x.severity for x in apply_config([f, Finding("empty_mask", "warning", "empty")], cfg)]
['error']
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Iterable, Mapping

import numpy as np

__all__ = [
    "SEVERITIES",
    "severity_rank",
    "RuleSpec",
    "RULES",
    "Finding",
    "RuleConfig",
    "DEFAULT_CONFIG",
    "apply_config",
    "worst_severity",
    "fails",
]

#: Severities, weakest first.
SEVERITIES = ("info", "warning", "error")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for error; ValueError otherwise.

    >>> severity_rank("error") > severity_rank("warning")
    True
    """
    try:
        return _RANK[severity]
    except (KeyError, TypeError):
        raise ValueError(f"unknown severity {severity!r}; expected one of {SEVERITIES}") from None


@dataclass(frozen=True)
class RuleSpec:
    """A rule's stable code, default severity, scope, one-line description and parameters."""

    code: str
    severity: str
    scope: str  # "file", "mask", "instances", "coco", "panoptic", "dataset"
    description: str
    params: tuple[str, ...] = ()


def _r(code, severity, scope, description, params=()):
    return code, RuleSpec(code, severity, scope, description, tuple(params))


#: Every rule: code -> :class:`RuleSpec`. Codes are part of the report schema: add, never rename.
RULES: dict[str, RuleSpec] = dict([
    # files
    _r("unreadable", "error", "file", "the mask (or image) file cannot be decoded; the reader's error code is kept"),
    _r("lossy_format", "error", "file", "mask stored in a lossy format (JPEG, lossy WebP): ids near edges are altered"),
    _r("missing_image", "error", "file", "a mask has no image"),
    _r("missing_mask", "warning", "file", "an image has no mask"),
    _r("size_mismatch", "error", "file", "mask size differs from its image, its COCO record or its paired mask"),
    _r("unexpected_channels", "warning", "file",
       "colour (RGB/RGBA) mask where a single-channel one is expected, or an alpha channel that is not opaque"),
    _r("image_size_mismatch", "error", "coco", "COCO image record width/height differ from the image file"),
    _r("animated_mask", "warning", "file", "an animated PNG (APNG): only its first frame is read and checked"),
    # values
    _r("unexpected_value", "error", "mask", "mask values that are not label-map ids (the ignore value is allowed)",
       ["ignore_value", "background"]),
    _r("unknown_color", "error", "mask", "RGB colours that are not in the label map"),
    _r("palette_mismatch", "warning", "mask",
       "P-mode palette colours of the used indices differ from the label map's colours (palette-confusion trap)",
       ["compare_voc_palette"]),
    _r("antialias_suspect", "warning", "mask",
       "invalid values or blends of neighbouring ids on boundaries between regions (anti-aliased edges)",
       ["antialias_radius", "antialias_min_pixels", "antialias_min_blends", "antialias_blend_fraction"]),
    _r("empty_mask", "warning", "mask", "the mask holds only background and/or ignore pixels",
       ["background", "ignore_value"]),
    # components and instances
    _r("tiny_island", "warning", "mask", "connected components of a class smaller than min_island pixels",
       ["min_island", "connectivity", "island_min_image_pixels"]),
    _r("disconnected_instance", "warning", "instances", "an instance id made of several connected components",
       ["connectivity"]),
    _r("instance_class_conflict", "error", "instances",
       "an instance whose pixels span several classes in the class mask", ["background", "ignore_value"]),
    _r("instance_overlap", "info", "coco",
       "annotations of one image whose masks overlap (containment, partial overlap) below the duplicate IoU",
       ["overlap_min_pixels", "overlap_min_fraction"]),
    _r("duplicate_annotation", "warning", "coco",
       "two annotations of one image whose masks have IoU >= duplicate_min_iou: a duplicate or a double label",
       ["duplicate_min_iou"]),
    # COCO
    _r("invalid_polygon", "error", "coco", "polygon with fewer than 3 points, odd length, NaN/inf or non-numbers"),
    _r("polygon_out_of_bounds", "warning", "coco", "polygon coordinates outside [0, w] x [0, h] beyond a tolerance",
       ["polygon_tolerance"]),
    _r("invalid_rle", "error", "coco", "RLE that cannot be decoded or whose size is not the image's"),
    _r("unknown_category", "error", "coco", "annotation category_id not in the categories"),
    _r("unknown_image", "error", "dataset", "annotation image_id without an image record"),
    _r("duplicate_id", "error", "dataset", "image, annotation or category id used more than once"),
    _r("empty_segmentation", "warning", "coco", "empty polygon list or a mask with zero pixels"),
    _r("bbox_mismatch", "warning", "coco", "annotation bbox differs from its mask's bbox beyond a tolerance",
       ["bbox_tolerance"]),
    _r("missing_segmentation", "warning", "coco", "annotation without a segmentation key: nothing to paint"),
    _r("bad_iscrowd", "error", "coco", "iscrowd that is not 0 or 1 (a string, 2, ...)"),
    _r("bad_top_level", "error", "dataset",
       "a COCO top-level images / annotations / categories that is not a list (an object, null, ...)"),
    # panoptic
    _r("segment_mismatch", "error", "panoptic",
       "PNG segment ids vs segments_info: ids missing on either side, areas (or bboxes) that disagree",
       ["panoptic_area_tolerance", "panoptic_check_bbox", "bbox_tolerance"]),
    _r("duplicate_record", "error", "panoptic", "a second panoptic annotation record for one image (ignored)"),
    # dataset level
    _r("class_never_seen", "info", "dataset",
       "label-map classes that never appear in the dataset (filler entries of a written label map excluded)"),
    _r("no_labelmap", "warning", "dataset",
       "no label map was given or found: every mask value is accepted and unexpected_value is off"),
    _r("unlisted_path", "error", "dataset",
       "a folder that cannot be listed (permissions, a path longer than the system allows): its files are no items"),
    _r("duplicate_entry", "error", "dataset", "several zip entries with one name: one item, the last entry is read "
       "(a URL list: rows with one item_id, the first row is the item)"),
    _r("bad_url_list", "error", "dataset",
       "URL-list rows that make no item (no item_id, a line that is not a JSON object, more CSV fields than the header)"),
    _r("coverage_outlier", "warning", "dataset",
       "a class whose pixel share in an image is far outside the dataset's distribution (log-share median/MAD)",
       ["coverage_min_images", "coverage_k", "coverage_min_spread"]),
    # platform preflight (labelbox / nucleus layouts, or validate --preflight)
    _r("nucleus_not_uint8", "error", "preflight",
       "a Nucleus mask that is not a single-channel 8-bit PNG (or an item whose segments do not fit one)"),
    _r("nucleus_unmapped_value", "error", "preflight", "Nucleus mask values without a segment (index) in annotations"),
    _r("nucleus_missing_index", "warning", "preflight", "Nucleus segments whose index occurs in no pixel of the mask"),
    _r("nucleus_duplicate_mask", "error", "preflight", "several Nucleus segmentation masks for one reference_id"),
    _r("nucleus_size", "error", "preflight", "a Nucleus mask whose size differs from its item's image"),
    _r("labelbox_color_absent", "error", "preflight", "a Labelbox mask object whose colorRGB (or mask) has no pixel"),
    _r("labelbox_unclaimed_color", "warning", "preflight",
       "composite-mask colours no object claims (those pixels are unlabeled)"),
    _r("labelbox_not_rgb", "error", "preflight", "a Labelbox composite mask that is not a 3-channel RGB image"),
    _r("labelbox_size", "error", "preflight", "a Labelbox mask whose size differs from its data row's"),
])


def _clean_bbox(bbox) -> tuple[int, int, int, int] | None:
    if bbox is None:
        return None
    if type(bbox) is tuple and len(bbox) == 4 and all(type(v) is int and -(2**31) <= v < 2**31 for v in bbox):
        return bbox
    vals = []
    for v in bbox:
        v = float(v)
        if not math.isfinite(v):
            return None
        # Parquet columns are int64; hostile coordinates must not overflow them
        vals.append(int(max(-(2**31), min(2**31 - 1, math.floor(v)))))
    return tuple(vals)  # type: ignore[return-value]


_PLAIN = (bool, int, str, type(None))


def _jsonable(x):
    t = type(x)
    if t in _PLAIN:
        return x
    if t is list and all(type(v) in _PLAIN or (type(v) is list and all(type(u) in _PLAIN for u in v)) for v in x):
        return x  # the common case: a tolist() result
    if t is dict:
        return {(k if type(k) is str else str(k)): (v if type(v) in _PLAIN else _jsonable(v)) for k, v in x.items()}
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if x is None or isinstance(x, (bool, int, str)):
        return x
    return repr(x)


@dataclass
class Finding:
    """One defect: stable ``rule`` code, ``severity``, human ``message`` and what it concerns.

    ``bbox`` is ``(x, y, w, h)`` in pixels (COCO convention); ``extra`` is a
    JSON-able dict of rule-specific facts.

    >>> f = Finding("empty_mask", "warning", "mask has only background (0) pixels", pixels=4)
    >>> f.to_dict()["rule"], f.to_dict()["bbox"]
    ('empty_mask', None)
    """

    rule: str
    severity: str
    message: str
    class_id: int | None = None
    instance_id: int | None = None
    pixels: int | None = None
    bbox: tuple[int, int, int, int] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        # findings are built in per-mask hot loops: keep this cheap for already-clean values
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}")
        if self.severity not in _RANK:
            severity_rank(self.severity)
        if self.bbox is not None:
            self.bbox = _clean_bbox(self.bbox)
        if self.class_id is not None and type(self.class_id) is not int:
            self.class_id = int(self.class_id)
        if self.instance_id is not None and type(self.instance_id) is not int:
            self.instance_id = int(self.instance_id)
        if self.pixels is not None and type(self.pixels) is not int:
            self.pixels = int(self.pixels)
        self.extra = _jsonable(self.extra) if self.extra else {}

    def to_dict(self) -> dict:
        """Plain dict (JSON-able): the shape of a ``findings`` row minus the item columns."""
        return {f.name: (list(self.bbox) if f.name == "bbox" and self.bbox else getattr(self, f.name))
                for f in fields(self)}


@dataclass
class RuleConfig:
    """What the user chose: disabled rules, severity overrides and every threshold.

    >>> RuleConfig(connectivity=4).connectivity
    4
    >>> RuleConfig(severities={"empty_mask": "error"}).severity_for("empty_mask")
    'error'
    """

    #: rule codes that produce no findings (and whose checks do no work)
    disabled: frozenset = frozenset()
    #: rule code -> severity, overriding :data:`RULES` defaults
    severities: Mapping[str, str] = field(default_factory=dict)
    #: tiny_island: components with fewer pixels are islands
    min_island: int = 16
    #: tiny_island: only images with at least this many pixels (None: 256 * min_island),
    #: so that a 5x5 fixture is not "all islands"
    island_min_image_pixels: int | None = None
    #: 4 or 8, for tiny_island, disconnected_instance and component counts
    connectivity: int = 8
    #: value allowed everywhere and never a class (None: no ignore value)
    ignore_value: int | None = 255
    #: background value (None: no background)
    background: int | None = 0
    #: antialias_suspect: how far (px) to look for the valid regions around an invalid run
    antialias_radius: int = 2
    #: antialias_suspect: invalid edge pixels needed to report
    antialias_min_pixels: int = 1
    #: antialias_suspect: valid-blend pixels needed to report (and the fraction below)
    antialias_min_blends: int = 8
    #: antialias_suspect: valid blends needed as a fraction of the neighbour transitions
    antialias_blend_fraction: float = 0.1
    #: palette_mismatch: compare against the VOC colormap when the label map has no colours
    compare_voc_palette: bool = False
    #: bbox_mismatch / segment_mismatch: allowed difference of any bbox edge, px
    bbox_tolerance: float = 2.0
    #: polygon_out_of_bounds: allowed excess beyond [0, w] x [0, h], px
    polygon_tolerance: float = 1.0
    #: instance_overlap: minimum overlap pixels and minimum fraction of the smaller mask
    overlap_min_pixels: int = 1
    overlap_min_fraction: float = 0.5
    #: duplicate_annotation: IoU at or above which two annotations are one object annotated twice
    duplicate_min_iou: float = 0.7
    #: segment_mismatch: allowed |JSON area - PNG pixel count|
    panoptic_area_tolerance: int = 0
    #: segment_mismatch: also compare segments_info bboxes (one pass per segment)
    panoptic_check_bbox: bool = False
    #: coverage_outlier: images where the class is present needed before judging it
    coverage_min_images: int = 20
    #: coverage_outlier: robust z (in log10 share) beyond which a share is an outlier
    coverage_k: float = 5.0
    #: coverage_outlier: floor of the robust spread, decades of share
    coverage_min_spread: float = 0.25
    #: findings of one rule on one item that can be many (tiny_island classes, split or
    #: conflicting instances, panoptic segments): beyond this many, one more finding sums
    #: the rest (totals kept)
    max_findings: int = 100
    #: bytes of working memory one item may need (estimated from its runs before any
    #: labeling); above: an error row ``too_complex`` instead of the work (None: no limit)
    max_item_memory: int | None = 1 << 30  # fastmask.jobs.budget.DEFAULT_MAX_ITEM_MEMORY
    #: platforms whose preflight rules run on any layout (``labelbox``, ``nucleus``); on those
    #: layouts their own rules always run
    preflight: tuple = ()

    def __post_init__(self):
        self.disabled = frozenset(self.disabled or ())
        unknown = [c for c in self.disabled if c not in RULES]
        if unknown:
            raise ValueError(f"unknown rule code(s) to disable: {sorted(unknown)}")
        self.severities = dict(self.severities or {})
        for code, sev in self.severities.items():
            if code not in RULES:
                raise ValueError(f"unknown rule code {code!r} in severity overrides")
            severity_rank(sev)
        self.preflight = tuple(sorted(set(self.preflight or ())))
        bad = [p for p in self.preflight if p not in ("labelbox", "nucleus")]
        if bad:
            raise ValueError(f"preflight: unknown platform(s) {bad}; labelbox or nucleus")
        if self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity!r}")
        if self.min_island < 0:
            raise ValueError(f"min_island must be >= 0, got {self.min_island}")
        if self.max_findings < 0:
            raise ValueError(f"max_findings must be >= 0, got {self.max_findings}")
        if self.max_item_memory is not None and self.max_item_memory < 0:
            raise ValueError(f"max_item_memory must be >= 0 or None, got {self.max_item_memory}")
        if self.antialias_radius < 1:
            raise ValueError(f"antialias_radius must be >= 1, got {self.antialias_radius}")
        if not (isinstance(self.duplicate_min_iou, (int, float)) and 0 < self.duplicate_min_iou <= 1):
            raise ValueError(f"duplicate_min_iou must be in (0, 1], got {self.duplicate_min_iou!r}")
        for name in ("bbox_tolerance", "polygon_tolerance", "overlap_min_fraction", "coverage_k",
                     "coverage_min_spread", "antialias_blend_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")

    def enabled(self, rule: str) -> bool:
        """False when the rule is disabled."""
        return rule not in self.disabled

    def severity_for(self, rule: str) -> str:
        """The configured severity of a rule (override, else the registry default)."""
        return self.severities.get(rule, RULES[rule].severity)

    @property
    def island_image_floor(self) -> int:
        return 256 * self.min_island if self.island_min_image_pixels is None else self.island_min_image_pixels

    def finding(self, rule: str, message: str, **kw) -> Finding:
        """Build a finding with the configured severity."""
        return Finding(rule, self.severity_for(rule), message, **kw)

    def to_json(self) -> dict:
        """JSON-able parameters (for ``run.json``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["disabled"] = sorted(self.disabled)
        d["severities"] = dict(sorted(self.severities.items()))
        d["preflight"] = list(self.preflight)
        return d


DEFAULT_CONFIG = RuleConfig()


def apply_config(findings: Iterable[Finding], config: RuleConfig) -> list[Finding]:
    """Drop findings of disabled rules and set configured severities (idempotent).

    >>> cfg = RuleConfig(severities={"empty_mask": "info"})
    >>> apply_config([Finding("empty_mask", "warning", "x")], cfg)[0].severity
    'info'
    """
    out = []
    for f in findings:
        if not config.enabled(f.rule):
            continue
        sev = config.severities.get(f.rule)
        if sev is not None and sev != f.severity:
            f = Finding(f.rule, sev, f.message, f.class_id, f.instance_id, f.pixels, f.bbox, f.extra)
        out.append(f)
    return out


def worst_severity(findings: Iterable[Finding]) -> str | None:
    """The highest severity among findings, None when there are none.

    >>> worst_severity([Finding("empty_mask", "warning", "x"), Finding("unreadable", "error", "y")])
    'error'
    """
    best = -1
    for f in findings:
        best = max(best, _RANK[f.severity])
    return SEVERITIES[best] if best >= 0 else None


def fails(findings: Iterable[Finding], fail_on: str) -> bool:
    """True when a finding is at or above ``fail_on`` (the CLI's exit-code rule).

    >>> fails([Finding("empty_mask", "warning", "x")], "error")
    False
    """
    level = severity_rank(fail_on)
    return any(_RANK[f.severity] >= level for f in findings)


# ----------------------------------------------------------------------------- helpers shared by rule modules


def bbox_from_inclusive(x0, y0, x1, y1) -> tuple[int, int, int, int] | None:
    """Inclusive corners -> (x, y, w, h); None when x0 < 0 (nothing found)."""
    if x0 < 0:
        return None
    return (int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1))


def union_bbox(boxes) -> tuple[int, int, int, int] | None:
    """Union of (x, y, w, h) boxes (an (n, 4) array or list); None for none."""
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if b.shape[0] == 0:
        return None
    x0 = int(b[:, 0].min())
    y0 = int(b[:, 1].min())
    x1 = int((b[:, 0] + b[:, 2]).max())
    y1 = int((b[:, 1] + b[:, 3]).max())
    return (x0, y0, x1 - x0, y1 - y0)


def name_of(class_id, names: Mapping[int, str] | None) -> str:
    """``3 ('cat')`` when a name is known, else ``3``."""
    if names and class_id in names:
        return f"{class_id} ({names[class_id]!r})"
    return str(class_id)


def as_2d_int(a, what: str) -> np.ndarray:
    """A 2-D C-contiguous integer view of ``a`` (bool as uint8); ValueError naming ``what`` otherwise."""
    m = np.asarray(a)
    if m.ndim != 2:
        raise ValueError(f"{what} must be 2-D, got shape {m.shape}")
    if m.dtype == np.bool_:
        m = m.view(np.uint8)
    elif not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, got dtype {m.dtype}")
    return np.ascontiguousarray(m)


_DTYPE_NAMES: dict = {}


def dtype_name(dtype: np.dtype) -> str:
    """``str(dtype)``, cached (str() of a dtype costs ~3 us: per item, that shows).

    >>> dtype_name(np.dtype(np.uint16))
    'uint16'
    """
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name
