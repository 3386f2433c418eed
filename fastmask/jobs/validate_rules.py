"""The rules of ``fastmask validate`` as pure, engine-independent functions (arrays and dicts in, findings out).

Import everything from here; the code lives in ``rules_*`` modules:

- :mod:`.rules_core` -- :class:`Finding`, :data:`RULES`, :class:`RuleConfig`, :func:`apply_config`;
- :mod:`.rules_files` -- ``unreadable``, ``lossy_format``, ``unexpected_channels``, ``size_mismatch``,
  ``image_size_mismatch``, ``missing_image``, ``missing_mask``, ``animated_mask``, ``listing_problem``
  (``unlisted_path``, ``duplicate_entry``);
- :mod:`.rules_semantic` -- :func:`check_class_mask` (``unexpected_value``, ``antialias_suspect``,
  ``empty_mask``, ``tiny_island`` + item stats), ``palette_mismatch``, ``unknown_color``;
- :mod:`.rules_instances` -- ``disconnected_instance``, ``instance_class_conflict``, ``instance_overlap``
  (``instance_overlap`` and ``duplicate_annotation``, candidate pairs from :func:`bbox_pairs`);
- :mod:`.rules_coco` -- :func:`check_coco_image` (``invalid_polygon``, ``polygon_out_of_bounds``,
  ``invalid_rle``, ``unknown_category``, ``empty_segmentation``, ``bbox_mismatch``,
  ``image_size_mismatch``, ``instance_overlap``, ``duplicate_annotation``, ``missing_segmentation``,
  ``bad_iscrowd``), :func:`check_coco_dataset` (``bad_top_level``, ``duplicate_id``, ``unknown_image``);
- :mod:`.rules_panoptic` -- :func:`segment_mismatch`, :func:`duplicate_record`;
- :mod:`.rules_dataset` -- ``class_never_seen``, ``no_labelmap``, ``coverage_outlier`` (+ bounds / histogram).

The instance, COCO and panoptic rules load on first use (they bring the RLE and polygon
kernels; a worker validating class masks never needs them).

Every check takes a :class:`RuleConfig` (default: :data:`DEFAULT_CONFIG`), does no
work for a disabled rule and builds findings with the configured severity.
The documentation's "Validation rules" page (docs/rules.md) documents every rule.

>>> import numpy as np
>>> m = np.zeros((64, 64), np.uint8); m[:20, :20] = 1; m[30, 30] = 2
>>> findings, stats = check_class_mask(m, label_ids=[0, 1, 2], config=RuleConfig(min_island=4))
>>> [(f.rule, f.severity, f.class_id, f.pixels, f.bbox) for f in findings]
[('tiny_island', 'warning', 2, 1, (30, 30, 1, 1))]
"""
from __future__ import annotations

import importlib

from .rules_core import (
    DEFAULT_CONFIG,
    RULES,
    SEVERITIES,
    Finding,
    RuleConfig,
    RuleSpec,
    apply_config,
    fails,
    severity_rank,
    worst_severity,
)
from .rules_dataset import (
    CoverageBounds,
    CoverageHistogram,
    class_never_seen,
    coverage_bounds,
    coverage_outlier,
    no_labelmap,
)
from .rules_files import (
    animated_mask,
    image_size_mismatch,
    listing_problem,
    lossy_format,
    missing_image,
    missing_mask,
    size_mismatch,
    unexpected_channels,
    unreadable,
)
from .rules_semantic import (
    ClassMaskScan,
    ClassMaskStats,
    antialias_suspect,
    check_class_mask,
    empty_mask,
    palette_mismatch,
    scan_class_mask,
    tiny_island,
    unexpected_value,
    unknown_color,
    voc_colormap,
)

__all__ = [
    # core
    "SEVERITIES", "severity_rank", "RuleSpec", "RULES", "Finding", "RuleConfig", "DEFAULT_CONFIG",
    "apply_config", "worst_severity", "fails",
    # files
    "unreadable", "lossy_format", "unexpected_channels", "size_mismatch", "image_size_mismatch",
    "missing_image", "missing_mask", "animated_mask", "listing_problem",
    # class masks
    "ClassMaskScan", "ClassMaskStats", "scan_class_mask", "check_class_mask", "unexpected_value",
    "antialias_suspect", "empty_mask", "tiny_island", "palette_mismatch", "unknown_color", "voc_colormap",
    # instances
    "disconnected_instance", "instance_class_conflict", "instance_overlap", "instance_stats", "bbox_pairs",
    # COCO
    "CocoImageStats", "check_coco_image", "check_coco_annotation", "check_coco_dataset", "duplicate_ids",
    "unknown_images", "bad_top_level",
    # panoptic
    "panoptic_ids", "value_counts", "segment_mismatch", "duplicate_record",
    # dataset
    "class_never_seen", "no_labelmap", "CoverageBounds", "coverage_bounds", "CoverageHistogram", "coverage_outlier",
]

#: name -> module of the rules loaded on first use (PEP 562)
_LAZY = {
    **dict.fromkeys(("CocoImageStats", "check_coco_annotation", "check_coco_dataset", "check_coco_image",
                     "duplicate_ids", "unknown_images", "bad_top_level"), "rules_coco"),
    **dict.fromkeys(("disconnected_instance", "instance_class_conflict", "instance_overlap", "instance_stats",
                     "bbox_pairs"),
                    "rules_instances"),
    **dict.fromkeys(("panoptic_ids", "segment_mismatch", "value_counts", "duplicate_record"), "rules_panoptic"),
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __package__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
