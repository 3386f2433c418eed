"""Validate rules as pure functions: one positive and one negative case per rule, config, real samples, hostile input."""
from __future__ import annotations

import collections
import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmask import rle
from fastmask.jobs import rules_coco, rules_core, rules_dataset, rules_files, rules_instances, rules_panoptic
from fastmask.jobs import rules_semantic, validate_rules
from fastmask.jobs.validate_rules import (
    DEFAULT_CONFIG,
    RULES,
    CoverageHistogram,
    Finding,
    RuleConfig,
    antialias_suspect,
    apply_config,
    check_class_mask,
    check_coco_annotation,
    check_coco_dataset,
    check_coco_image,
    class_never_seen,
    coverage_bounds,
    coverage_outlier,
    disconnected_instance,
    duplicate_ids,
    empty_mask,
    fails,
    image_size_mismatch,
    instance_class_conflict,
    instance_overlap,
    lossy_format,
    missing_image,
    missing_mask,
    palette_mismatch,
    segment_mismatch,
    size_mismatch,
    tiny_island,
    unexpected_channels,
    unexpected_value,
    unknown_color,
    unknown_images,
    unreadable,
    voc_colormap,
    worst_severity,
)

ISSUE_RULES = {
    "unreadable", "lossy_format", "missing_image", "missing_mask", "size_mismatch", "unexpected_channels",
    "unexpected_value", "unknown_color", "palette_mismatch", "antialias_suspect", "empty_mask",
    "disconnected_instance", "tiny_island", "instance_class_conflict", "instance_overlap", "duplicate_annotation",
    "invalid_polygon", "polygon_out_of_bounds", "invalid_rle", "unknown_category", "unknown_image",
    "duplicate_id", "empty_segmentation", "bbox_mismatch", "image_size_mismatch", "segment_mismatch",
    "class_never_seen", "coverage_outlier",
}
NO_FLOOR = RuleConfig(island_min_image_pixels=0)


def rules_of(findings):
    return sorted(f.rule for f in findings)


def only(findings, rule=None):
    assert len(findings) == 1, findings
    if rule is not None:
        assert findings[0].rule == rule
    return findings[0]


def realistic(h, w, k=19, seed=0, scale=24):
    """Smooth random k-class regions (no defects): argmax of smoothed noise fields."""
    from scipy import ndimage as ndi
    rng = np.random.default_rng(seed)
    lh, lw = max(h // 8, 2), max(w // 8, 2)
    f = rng.standard_normal((k, lh, lw)).astype(np.float32)
    f = ndi.gaussian_filter(f, sigma=(0, scale / 8, scale / 8))
    f = ndi.zoom(f, (1, h / lh, w / lw), order=1)[:, :h, :w]
    return np.argmax(f, axis=0).astype(np.uint8)


# ----------------------------------------------------------------------------- core


def test_registry_covers_the_issue_and_is_well_formed():
    assert ISSUE_RULES <= set(RULES)
    for code, spec in RULES.items():
        assert spec.code == code
        assert spec.severity in ("error", "warning", "info")
        assert spec.description
        for p in spec.params:
            assert hasattr(DEFAULT_CONFIG, p), (code, p)


def test_facade_exports_every_rule_and_loads_the_non_semantic_ones_on_first_use():
    import subprocess
    import sys

    for name in validate_rules.__all__:
        value = getattr(validate_rules, name)
        assert name in dir(validate_rules)
        home = next(m for m in (rules_core, rules_semantic, rules_files, rules_instances, rules_coco,
                                rules_panoptic, rules_dataset) if hasattr(m, name))
        assert value is getattr(home, name), name
    with pytest.raises(AttributeError, match="no_such_rule"):
        validate_rules.no_such_rule  # noqa: B018
    # a process validating class masks never loads the COCO / instance / panoptic rules
    # (nor the RLE and polygon kernels they bring)
    code = ("import sys, fastmask.jobs.validate as v\n"
            "print(*sorted(m for m in sys.modules if m.endswith(('rules_coco', 'rules_instances', "
            "'rules_panoptic', 'kernels.rle', 'kernels.polygon'))))\n"
            "print(v.R.check_coco_image.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["", "fastmask.jobs.rules_coco"], out.stdout


def test_doctests_of_rule_modules():
    for mod in (rules_core, rules_semantic, rules_files, rules_instances, rules_coco, rules_panoptic,
                rules_dataset, validate_rules):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__


def test_finding_validates_and_is_jsonable():
    with pytest.raises(ValueError):
        Finding("no_such_rule", "error", "x")
    with pytest.raises(ValueError):
        Finding("empty_mask", "fatal", "x")
    f = Finding("bbox_mismatch", "warning", "x", class_id=np.int64(3), bbox=(1e300, -1e300, 2.7, 5),
                extra={"a": np.float64("nan"), 1: np.arange(3)})
    assert f.class_id == 3 and isinstance(f.class_id, int)
    assert f.bbox == (2**31 - 1, -(2**31), 2, 5)
    d = f.to_dict()
    json.dumps(d)
    assert d["extra"] == {"a": "nan", "1": [0, 1, 2]}
    assert Finding("bbox_mismatch", "warning", "x", bbox=(float("nan"), 0, 1, 1)).bbox is None


def test_config_validation():
    with pytest.raises(ValueError):
        RuleConfig(disabled={"nope"})
    with pytest.raises(ValueError):
        RuleConfig(severities={"empty_mask": "fatal"})
    with pytest.raises(ValueError):
        RuleConfig(connectivity=6)
    with pytest.raises(ValueError):
        RuleConfig(bbox_tolerance=float("nan"))
    json.dumps(RuleConfig(disabled={"empty_mask"}).to_json())


def test_apply_config_disables_and_overrides():
    fs = [Finding("empty_mask", "warning", "a"), Finding("tiny_island", "warning", "b"),
          Finding("unreadable", "error", "c")]
    cfg = RuleConfig(disabled={"empty_mask"}, severities={"tiny_island": "error", "unreadable": "info"})
    out = apply_config(fs, cfg)
    assert [(f.rule, f.severity) for f in out] == [("tiny_island", "error"), ("unreadable", "info")]
    assert apply_config(out, cfg) == out  # idempotent
    assert worst_severity(out) == "error" and worst_severity([]) is None
    assert fails(out, "error") and not fails(out[1:], "warning") and fails(out[1:], "info")


def test_checks_use_configured_severity_and_skip_disabled_rules():
    m = np.zeros((8, 8), np.uint8)
    assert only(empty_mask(m)).severity == "warning"
    assert only(empty_mask(m, RuleConfig(severities={"empty_mask": "error"}))).severity == "error"
    assert empty_mask(m, RuleConfig(disabled={"empty_mask"})) == []
    f, _ = check_class_mask(m, [0, 1], RuleConfig(disabled={"empty_mask"}))
    assert f == []


# ----------------------------------------------------------------------------- unexpected_value


def test_unexpected_value_positive():
    m = np.zeros((10, 12), np.uint8)
    m[2:4, 5:9] = 7
    m[9, 11] = 255  # ignore: allowed
    f = only(unexpected_value(m, [0, 1, 2]), "unexpected_value")
    assert (f.severity, f.class_id, f.pixels, f.bbox) == ("error", 7, 8, (5, 2, 4, 2))


def test_unexpected_value_negative():
    m = np.array([[0, 1, 2, 255]], np.uint8)
    assert unexpected_value(m, [1, 2]) == []  # background 0 valid even if not listed
    assert unexpected_value(np.array([[9]], np.uint8), None) == []  # no label map: nothing to compare
    assert unexpected_value(np.array([[255]], np.uint8), [0], RuleConfig(ignore_value=None)) != []


def test_unexpected_value_wide_and_negative_values():
    m = np.zeros((4, 4), np.int32)
    m[0, 0] = -5
    m[3, 3] = 70000
    m[1, 1] = 3
    fs = unexpected_value(m, [0, 3])
    assert sorted((f.class_id, f.pixels, f.bbox) for f in fs) == [(-5, 1, (0, 0, 1, 1)), (70000, 1, (3, 3, 1, 1))]


def test_unexpected_value_caps_findings():
    m = np.arange(100, dtype=np.uint8).reshape(10, 10)
    fs = unexpected_value(m, [0], max_findings=5)
    assert len(fs) == 6 and fs[-1].class_id is None and fs[-1].pixels == 99 - 5


def test_unknown_id_goes_to_unknown_color_not_unexpected_value():
    m = np.zeros((6, 6), np.uint16)
    m[1:3, 1:3] = 65535
    f, _ = check_class_mask(m, [0, 1], unknown_id=65535)
    assert "unexpected_value" not in rules_of(f)
    u = only(unknown_color([((1, 2, 3), 4)], mask=m), "unknown_color")
    assert (u.severity, u.pixels, u.bbox) == ("error", 4, (1, 1, 2, 2))


# ----------------------------------------------------------------------------- antialias_suspect


def test_antialias_invalid_edge_positive():
    m = np.zeros((6, 8), np.uint8)
    m[:, 4:] = 2
    m[:, 3] = 1  # 1 is not a label id: a blended column between 0 and 2
    f = only(antialias_suspect(m, [0, 2]), "antialias_suspect")
    assert (f.severity, f.pixels, f.bbox) == ("warning", 6, (3, 0, 1, 6))
    assert f.extra["invalid_edge_pixels"] == 6


def test_antialias_two_pixel_wide_ramp_within_radius():
    m = np.zeros((5, 10), np.uint8)
    m[:, 6:] = 255 - 1  # 254: class id
    m[:, 4] = 85
    m[:, 5] = 170
    f = only(antialias_suspect(m, [0, 254]))
    assert f.pixels == 10 and f.bbox == (4, 0, 2, 5)
    assert antialias_suspect(m, [0, 254], RuleConfig(antialias_radius=1)) == []


def test_antialias_negative_isolated_invalid_pixel_and_invalid_region():
    m = np.zeros((9, 9), np.uint8)
    m[4, 4] = 9  # noise inside one region: unexpected, not an edge between regions
    assert antialias_suspect(m, [0, 1]) == []
    m = np.zeros((9, 9), np.uint8)
    m[:, 5:] = 9  # a large invalid region: its border touches only one valid region
    assert antialias_suspect(m, [0, 1]) == []


def test_antialias_valid_blends_positive_from_a_real_resize():
    cv2 = pytest.importorskip("cv2")
    m = realistic(120, 160, k=6, seed=3) * 3  # ids 0, 3, ..., 15
    small = cv2.resize(m, (80, 60), interpolation=cv2.INTER_NEAREST)
    aa = cv2.resize(small, (160, 120), interpolation=cv2.INTER_LINEAR)  # the classic bug
    ids = list(range(0, 16, 3))
    f = only(antialias_suspect(aa, ids))
    assert f.extra["invalid_edge_pixels"] > 0
    # even if the label map declared every blended value, blends alone give it away
    f2 = only(antialias_suspect(aa, list(range(16))))
    assert f2.extra["blend_pixels"] >= 8 and f2.extra["blend_fraction"] >= 0.1


def test_antialias_negative_clean_masks_and_slivers():
    for seed, (h, w) in enumerate([(480, 640), (256, 512)]):
        m = realistic(h, w, seed=seed)
        assert antialias_suspect(m, range(19)) == [], seed
    m = np.zeros((20, 20), np.uint8)
    m[:, 11:] = 2
    m[3:6, 10] = 1  # a 3-px sliver of a real class between 0 and 2: legitimate
    assert antialias_suspect(m, [0, 1, 2]) == []
    assert antialias_suspect(m, [0, 1, 2], RuleConfig(antialias_min_blends=3, antialias_blend_fraction=0)) != []


def test_antialias_ignore_is_not_a_class_for_blends():
    m = np.zeros((6, 6), np.uint8)
    m[:, 3:] = 255
    m[:, 2] = 200  # 200 is a class id between 0 and 255 (ignore): not a blend of two classes
    assert antialias_suspect(m, [0, 200]) == []


# ----------------------------------------------------------------------------- empty_mask


def test_empty_mask_positive_and_negative():
    m = np.zeros((4, 4), np.uint8)
    m[0] = 255
    f = only(empty_mask(m), "empty_mask")
    assert f.severity == "warning" and f.extra == {"background_pixels": 12, "ignore_pixels": 4}
    m[1, 1] = 3
    assert empty_mask(m) == []
    assert only(empty_mask(np.zeros((0, 0), np.uint8)))  # no pixels at all is empty too
    assert empty_mask(np.zeros((3, 3), np.uint8), RuleConfig(background=None)) == []


# ----------------------------------------------------------------------------- tiny_island


def _island_mask():
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 10:30] = 1  # big
    m[40, 40] = 1  # 1-px island
    m[50:52, 50:52] = 1  # 4-px island
    m[5:7, 50] = 2  # 2-px island of class 2
    m[60:64, 0:4] = 255  # small ignore area: never an island
    return m


def test_tiny_island_positive():
    fs = tiny_island(_island_mask())
    assert [(f.class_id, f.pixels, f.bbox, f.extra["count"]) for f in fs] == [
        (1, 5, (40, 40, 12, 12), 2), (2, 2, (50, 5, 1, 2), 1)]
    assert fs[0].severity == "warning" and fs[0].extra["largest_area"] == 4


def test_tiny_island_negative_and_threshold():
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 10:30] = 1
    assert tiny_island(m) == []
    assert tiny_island(_island_mask(), RuleConfig(min_island=1)) == []
    assert [f.class_id for f in tiny_island(_island_mask(), RuleConfig(min_island=3))] == [1, 2]
    assert [f.pixels for f in tiny_island(_island_mask(), RuleConfig(min_island=2))] == [1]


def test_tiny_island_connectivity():
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 10:30] = 1
    m[40, 40] = m[41, 41] = 1  # diagonal pair: one 2-px component with 8, two 1-px with 4
    assert tiny_island(m, RuleConfig(min_island=2, connectivity=8)) == []
    f = only(tiny_island(m, RuleConfig(min_island=2, connectivity=4)))
    assert f.extra["count"] == 2 and f.extra["connectivity"] == 4


def test_tiny_island_small_image_floor():
    m = np.array([[0, 1, 0, 2, 2]], np.uint8)
    assert tiny_island(m) == []  # 5 px image: every region is "tiny"
    assert [f.class_id for f in tiny_island(m, NO_FLOOR)] == [1, 2]


def test_check_class_mask_stats():
    m = _island_mask()
    m[0, 0] = 9
    f, st = check_class_mask(m, [0, 1, 2])
    assert rules_of(f) == ["tiny_island", "tiny_island", "unexpected_value"]
    assert st.class_pixels() == {0: 64 * 64 - 400 - 5 - 2 - 16 - 1, 1: 405, 2: 2, 9: 1, 255: 16}
    assert st.components == {1: 3, 2: 1, 9: 1}  # background and ignore are not counted
    row = st.to_row()
    json.dumps(row)
    assert row["component_values"] == [1, 2, 9] and row["component_counts"] == [3, 1, 1] and row["connectivity"] == 8
    shares = st.shares()
    assert math.isclose(sum(shares.values()), 1.0) and 255 not in shares


# ----------------------------------------------------------------------------- palette_mismatch / unknown_color


def test_palette_mismatch_positive_swapped_palette():
    lm_colors = {i: tuple(int(c) for c in voc_colormap(3)[i]) for i in range(3)}
    pal = voc_colormap(256).copy()
    pal[[1, 2]] = pal[[2, 1]]  # indices 1 and 2 show each other's colours
    f = only(palette_mismatch(pal, [0, 1, 2], lm_colors, counts=[10, 5, 7]), "palette_mismatch")
    assert f.severity == "warning" and f.pixels == 12 and f.class_id is None
    assert [(d["index"], d["looks_like"]) for d in f.extra["indices"]] == [(1, 2), (2, 1)]
    assert f.extra["swapped"] == 2


def test_palette_mismatch_negative():
    lm_colors = {i: tuple(int(c) for c in voc_colormap(21)[i]) for i in range(21)}
    assert palette_mismatch(voc_colormap(256), [0, 5, 255], lm_colors) == []  # 255 not in colours: skipped
    pal = np.array([[0, 0, 0], [9, 9, 9]], np.uint8)
    assert palette_mismatch(pal, [0, 1], None) == []  # no colours: not compared
    assert palette_mismatch(None, [0, 1], lm_colors) == []  # not a P-mode file
    f = only(palette_mismatch(pal, [0, 1], None, RuleConfig(compare_voc_palette=True)))
    assert f.class_id == 1 and f.extra["reference"] == "VOC colormap"


def test_palette_mismatch_index_beyond_palette():
    f = only(palette_mismatch(np.zeros((2, 3), np.uint8), [0, 5], {0: (0, 0, 0), 5: (1, 2, 3)}))
    assert f.class_id == 5 and f.extra["indices"][0]["palette"] is None


def test_palette_mismatch_real_mmseg_pngs_without_colours(real_data):
    from fastmask.formats.png import read_mask
    for p in sorted((real_data / "mmsegmentation/tests/data").rglob("*.png")):
        md = read_mask(p)
        assert md.palette is not None
        # the index is the class; their label maps carry no colours: nothing to report
        assert palette_mismatch(md.palette, np.unique(md.array), None) == []


def test_unknown_color_negative_and_nearest():
    assert unknown_color([]) == []
    f = only(unknown_color([((130, 2, 0), 3), ((0, 0, 1), 9)], label_colors={0: (0, 0, 0), 1: (128, 0, 0)}))
    assert f.extra["colors"][0] == [0, 0, 1, 9]
    assert [n["nearest_class"] for n in f.extra["nearest"]] == [0, 1]


# ----------------------------------------------------------------------------- files


def test_file_helpers():
    f = only(unreadable("truncated", "a.png: image file is truncated", path="a.png"))
    assert (f.rule, f.severity, f.extra["error_code"]) == ("unreadable", "error", "truncated")
    assert only(lossy_format("JPEG")).severity == "error" and lossy_format("PNG", lossy=False) == []
    assert only(unexpected_channels("RGB", 3)).extra["mode"] == "RGB"
    assert unexpected_channels("RGB", 3, expected="color") == []
    assert unexpected_channels("L", 1) == [] and unexpected_channels("P", 1) == []
    a = only(unexpected_channels("RGBA", 4, expected="color", alpha_nonopaque=3, alpha_min=0))
    assert a.pixels == 3
    assert len(unexpected_channels("RGBA", 4, alpha_nonopaque=3)) == 2
    s = only(size_mismatch((5, 5), (10, 5), ref="COCO record"))
    assert s.severity == "error" and s.extra["ref"] == "COCO record"
    assert size_mismatch((10, 5), (10, 5)) == [] and size_mismatch(None, (1, 1)) == []
    assert "rotated" in only(image_size_mismatch((640, 480), (480, 640))).message
    assert image_size_mismatch((640, 480), (640, 480)) == []
    assert only(missing_image("a.png", "a.jpg")).severity == "error"
    assert only(missing_mask("a.jpg")).severity == "warning"
    assert missing_mask("a.jpg", config=RuleConfig(disabled={"missing_mask"})) == []


# ----------------------------------------------------------------------------- instances


def test_disconnected_instance_positive_negative_connectivity():
    m = np.zeros((10, 10), np.uint16)
    m[0:3, 0:3] = 1001
    m[6:9, 6:9] = 1001  # same id, far away
    m[0:2, 7:9] = 1002
    f = only(disconnected_instance(m, instance_classes={1001: 1}), "disconnected_instance")
    assert (f.severity, f.instance_id, f.class_id, f.pixels, f.bbox) == ("warning", 1001, 1, 18, (0, 0, 9, 9))
    assert f.extra["n_components"] == 2 and f.extra["areas"] == [9, 9]
    m2 = np.zeros((4, 4), np.uint8)
    m2[0, 0] = m2[1, 1] = 3
    assert disconnected_instance(m2) == []
    assert only(disconnected_instance(m2, RuleConfig(connectivity=4))).instance_id == 3


def test_disconnected_instance_ignores_background_and_ignore():
    m = np.zeros((6, 6), np.uint8)
    m[0, :] = 255
    m[5, :] = 255  # two separate 255 borders: not an instance
    m[2:4, 2:4] = 1
    assert disconnected_instance(m) == []


def test_instance_class_conflict_positive():
    inst = np.zeros((6, 6), np.uint8)
    cls = np.zeros((6, 6), np.uint8)
    inst[1:5, 1:5] = 1
    cls[1:5, 1:5] = 15
    cls[4, 3:5] = 8  # two pixels of instance 1 say "cat"
    inst[0, :] = 255
    cls[0, :] = 255
    f = only(instance_class_conflict(inst, cls), "instance_class_conflict")
    assert (f.severity, f.instance_id, f.class_id, f.pixels, f.bbox) == ("error", 1, 15, 2, (3, 4, 2, 1))
    assert f.extra["classes"] == {"15": 14, "8": 2}


def test_instance_class_conflict_negative_and_background():
    inst = np.zeros((6, 6), np.uint8)
    cls = np.zeros((6, 6), np.uint8)
    inst[1:5, 1:5] = 1
    cls[1:5, 1:5] = 15
    inst[1, 1:5] = 255  # ignore on one side only: says nothing about classes
    cls[2, 1] = 255
    assert instance_class_conflict(inst, cls) == []
    cls[3, 3] = 0  # background in the class mask under the instance: a conflict
    f = only(instance_class_conflict(inst, cls))
    assert f.pixels == 1 and f.extra["classes"] == {"15": 10, "0": 1}


def test_instance_class_conflict_wide_ids_and_shape():
    inst = np.zeros((5, 5), np.int32)
    inst[:2] = 260001
    inst[3:] = 7000002
    cls = np.full((5, 5), 300, np.uint16)
    cls[4, 4] = 40000
    f = only(instance_class_conflict(inst, cls))
    assert (f.instance_id, f.class_id, f.pixels) == (7000002, 300, 1)
    s = only(instance_class_conflict(inst, cls[:4]))
    assert s.rule == "size_mismatch" and s.extra["ref"] == "class mask"


def test_instance_class_conflict_real_voc_pair(real_data):
    from fastmask.formats.labelmap import LabelMap
    from fastmask.formats.png import read_mask
    root = real_data / "datumaro/tests/assets/voc_dataset/voc_dataset1"
    cls = read_mask(root / "SegmentationClass/2007_000001.png", labelmap=LabelMap.voc()).array
    inst = read_mask(root / "SegmentationObject/2007_000001.png", labelmap=LabelMap.voc(all_colors=True)).array
    assert instance_class_conflict(inst, cls) == []
    assert disconnected_instance(inst) == []


def test_instance_overlap_positive_and_threshold():
    a, b, c = rle.frPyObjects([[0, 0, 4, 4], [1, 1, 4, 4], [10, 10, 2, 2]], 16, 16)
    f = only(instance_overlap([a, b, c], [11, 12, 13], category_ids=[1, 2, 3]), "instance_overlap")
    assert (f.severity, f.instance_id, f.class_id, f.pixels, f.bbox) == ("info", 11, 1, 9, (1, 1, 3, 3))
    assert f.extra["ids"] == [11, 12] and math.isclose(f.extra["iou"], 9 / 23)
    assert instance_overlap([a, b, c], config=RuleConfig(overlap_min_fraction=0.6)) == []
    assert len(instance_overlap([a, b, c], config=RuleConfig(overlap_min_pixels=10))) == 0
    d, e = rle.frPyObjects([[0, 0, 4, 4], [3, 3, 4, 4]], 16, 16)  # 1-px corner overlap: 6 % of the smaller
    assert instance_overlap([d, e]) == []
    assert only(instance_overlap([d, e], config=RuleConfig(overlap_min_fraction=0))).pixels == 1
    assert instance_overlap([a, c]) == []


# ----------------------------------------------------------------------------- COCO per annotation / image

IMG = {"id": 1, "width": 20, "height": 10, "file_name": "x.jpg"}
SQUARE = [2.0, 2.0, 8.0, 2.0, 8.0, 6.0, 2.0, 6.0]


def ann(seg, **kw):
    a = {"id": 7, "image_id": 1, "category_id": 1, "segmentation": seg, "iscrowd": 0}
    a.update(kw)
    return a


def test_clean_annotation_has_no_findings():
    r = rle.merge(rle.frPyObjects([SQUARE], 10, 20))
    bb = [float(v) for v in rle.toBbox(r)]
    for seg, bbox in [([SQUARE], [2, 2, 6, 4]), (r, bb), ({"size": [10, 20], "counts": [0, 5, 195]}, [0, 0, 1, 5])]:
        f, info = check_coco_annotation(ann(seg, bbox=bbox), 10, 20, {1})
        assert f == [] and info.area > 0


@pytest.mark.parametrize("seg, needle", [
    ([[0, 0, 4, 0, 4, float("nan")]], "NaN/inf"),
    ([[0, 0, 4, 0, 4, float("inf")]], "NaN/inf"),
    ([[0, 0, 4, 0, 4]], "odd number"),
    ([[0, 0, 4, 0]], "2 points"),
    ([[]], "0 points"),
    ([[0, 0, "4", 0, 4, 4]], "non-number"),
    ([[0, 0, True, 0, 4, 4]], "non-number"),
    ([[0, 0, None, 0, 4, 4]], "non-number"),
    ([[0, 0, 10**400, 0, 4, 4]], "NaN/inf"),
    ([SQUARE, "abc"], "part 1 is not a list"),
    ([None], "part 0 is not a list"),
    ("polygon", "neither a polygon list nor an RLE"),
    (42, "neither a polygon list nor an RLE"),
])
def test_invalid_polygon(seg, needle):
    f, info = check_coco_annotation(ann(seg, bbox=[0, 0, 1, 1]), 10, 20, {1})
    x = only(f, "invalid_polygon")
    assert x.severity == "error" and x.instance_id == 7 and x.class_id == 1 and needle in x.message
    assert info.rle is None  # no cascade into bbox/empty/overlap checks


def test_polygon_out_of_bounds():
    f, _ = check_coco_annotation(ann([[2, 2, 8, 2, 8, 6, 2, 6.9]]), 10, 20)  # inside
    assert f == []
    f, _ = check_coco_annotation(ann([[-0.5, 2, 20.9, 2, 20.9, 10.5, 2, 6]]), 10, 20)  # within 1 px tolerance
    assert f == []
    f, info = check_coco_annotation(ann([[2, 2, 25, 2, 25, 6, 2, 6]]), 10, 20)
    x = only(f, "polygon_out_of_bounds")
    assert x.severity == "warning" and math.isclose(x.extra["excess"], 5.0) and x.bbox == (2, 2, 23, 4)
    assert info.area > 0  # still rasterized (clipped)
    assert check_coco_annotation(ann([[2, 2, 25, 2, 25, 6, 2, 6]]), 10, 20,
                                 config=RuleConfig(polygon_tolerance=6))[0] == []


def test_polygon_huge_coordinates_give_findings_not_exceptions():
    f, info = check_coco_annotation(ann([[0, 0, 1e300, 0, 1e300, 1e30, 0, 1e30]], bbox=[0, 0, 20, 10]), 10, 20)
    assert rules_of(f) == ["polygon_out_of_bounds"]
    assert info.area == 200
    json.dumps([x.to_dict() for x in f])


@pytest.mark.parametrize("seg, needle", [
    ({"size": [10, 20], "counts": "0~~"}, "alphabet"),
    ({"size": [10, 20], "counts": [5, 5]}, "sum to 10, not h*w = 200"),
    ({"size": [10, 20], "counts": [-5, 205]}, "non-negative"),
    ({"size": [10, 20], "counts": [5.5, 194.5]}, "non-negative integers"),
    ({"size": [20, 10], "counts": [0, 200]}, "is not the image's [10, 20]"),
    ({"size": ["10", 20], "counts": [0, 200]}, "[height, width] integers"),
    ({"size": [10, 20], "counts": None}, "string or a list"),
    ({"size": [10, 20]}, "needs 'size' and 'counts'"),
    ({"size": [10, 20], "counts": b"5"}, "do not sum"),
])
def test_invalid_rle(seg, needle):
    f, info = check_coco_annotation(ann(seg, iscrowd=1), 10, 20, {1})
    x = only(f, "invalid_rle")
    assert x.severity == "error" and x.instance_id == 7 and needle in x.message, x.message
    assert info.rle is None


def test_unknown_category():
    f, _ = check_coco_annotation(ann([SQUARE], category_id=99), 10, 20, {1, 2})
    x = only(f, "unknown_category")
    assert (x.severity, x.class_id, x.instance_id) == ("error", 99, 7)
    f, _ = check_coco_annotation(ann([SQUARE], category_id="1"), 10, 20, {1, 2})
    assert only(f).class_id is None
    assert check_coco_annotation(ann([SQUARE], category_id=99), 10, 20, None)[0] == []  # no categories given


def test_empty_segmentation():
    x = only(check_coco_annotation(ann([]), 10, 20)[0], "empty_segmentation")
    assert x.severity == "warning" and x.pixels == 0
    # a valid polygon entirely outside the image covers no pixel
    f, _ = check_coco_annotation(ann([[30, 0, 40, 0, 40, 5]]), 10, 20, config=RuleConfig(polygon_tolerance=100))
    assert rules_of(f) == ["empty_segmentation"]
    x = only(check_coco_annotation(ann({"size": [10, 20], "counts": [200]}), 10, 20)[0])
    assert x.rule == "empty_segmentation"


def test_bbox_mismatch():
    f, _ = check_coco_annotation(ann([SQUARE], bbox=[2, 2, 6, 4]), 10, 20)
    assert f == []
    poly = [5, 3, 12, 3, 12, 8, 5, 8]
    f, _ = check_coco_annotation(ann([poly], bbox=[5, 3, 12, 8]), 10, 20)  # xyxy written as xywh
    x = only(f, "bbox_mismatch")
    assert x.severity == "warning" and x.bbox == (5, 3, 7, 5) and x.extra["json_bbox"] == [5, 3, 12, 8]
    assert x.pixels == 35 and x.instance_id == 7
    assert check_coco_annotation(ann([poly], bbox=[5, 3, 12, 8]), 10, 20, config=RuleConfig(bbox_tolerance=5))[0] == []
    f, _ = check_coco_annotation(ann([poly], bbox=[5.9, 3.5, 7, 4.2]), 10, 20)  # float jitter within 2 px
    assert f == []
    for bad in ([1, 2, 3], [0, 0, float("nan"), 1], [0, 0, -3, 2], "0,0,1,1"):
        assert rules_of(check_coco_annotation(ann([SQUARE], bbox=bad), 10, 20)[0]) == ["bbox_mismatch"]


def test_bbox_of_polygon_with_thin_parts_matches_vertex_extent():
    # real COCO (tinycoco ann 390340): a sliver part rasterizes to nothing, the bbox spans it
    parts = [[1.0, 5.0, 1.2, 5.0, 1.1, 5.1], [10, 2, 18, 2, 18, 8, 10, 8]]
    f, info = check_coco_annotation(ann(parts, bbox=[1.0, 2.0, 17.0, 6.0]), 10, 20)
    assert f == [] and info.area > 0


def test_bbox_crowd_rle_one_pixel_smaller_is_not_an_alarm():
    r = {"size": [10, 20], "counts": [0, 20, 180]}  # columns 0-1, all rows: bbox [0, 0, 2, 10]
    f, _ = check_coco_annotation(ann(r, iscrowd=1, bbox=[0, 0, 1, 9]), 10, 20)
    assert f == []


def test_check_coco_image_overlap_crowd_and_size():
    # annotation 2 is inside 1 (IoU 0.5: an overlap, not a duplicate)
    anns = [ann([SQUARE], id=1, bbox=[2, 2, 6, 4]), ann([[5, 2, 8, 2, 8, 6, 5, 6]], id=2, category_id=2),
            ann({"size": [10, 20], "counts": [0, 200]}, id=3, iscrowd=1)]
    f, st = check_coco_image(IMG, anns, {1, 2}, file_size=(20, 11))
    assert rules_of(f) == ["image_size_mismatch", "instance_overlap"]  # the crowd covers both: not reported
    o = [x for x in f if x.rule == "instance_overlap"][0]
    assert o.extra["ids"] == [1, 2]
    assert (st.n_annotations, st.n_polygon, st.n_rle, st.n_crowd) == (3, 2, 1, 1)
    assert st.category_counts == {1: 2, 2: 1} and st.category_pixels[1] > 200 - 1
    json.dumps(st.to_row())
    f, _ = check_coco_image(IMG, anns[:1], {1, 2}, file_size=(20, 10))
    assert f == []


def test_check_coco_image_bad_record():
    x = only(check_coco_image({"id": 1, "width": "20"}, [ann([SQUARE])])[0], "unreadable")
    assert "width/height" in x.message


def test_dataset_duplicate_and_unknown_image():
    d = {"images": [{"id": 1}, {"id": 2}, {"id": 2}],
         "annotations": [{"id": 5, "image_id": 1}, {"id": 5, "image_id": 9}, {"id": 6, "image_id": 9}],
         "categories": [{"id": 1}, {"id": 1}]}
    f = check_coco_dataset(d)
    assert rules_of(f) == ["duplicate_id"] * 3 + ["unknown_image"]
    dup = {x.extra["kind"]: x for x in f if x.rule == "duplicate_id"}
    assert dup["image"].extra["id"] == 2 and dup["annotation"].instance_id == 5 and dup["category"].class_id == 1
    u = [x for x in f if x.rule == "unknown_image"][0]
    assert u.extra["image_id"] == 9 and u.extra["annotations"] == 2 and u.extra["annotation_ids"] == [5, 6]
    assert check_coco_dataset({"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1}]}) == []
    # sections of the wrong type are findings, never an exception
    bad = check_coco_dataset({"images": "oops", "annotations": None})
    assert [(x.rule, x.extra["key"], x.extra["type"]) for x in bad] == [("bad_top_level", "images", "string"),
                                                                        ("bad_top_level", "annotations", "null")]


def test_duplicate_ids_numpy_and_mixed():
    ids = np.arange(1_000_000, dtype=np.int64)
    ids[-1] = 17
    assert [x.extra["id"] for x in duplicate_ids(ids, "annotation")] == [17]
    assert duplicate_ids([1, "1", 1.0, True]) == []  # distinct JSON values
    assert unknown_images([1, 2], np.array([1, 2])) == []


# ----------------------------------------------------------------------------- real COCO samples


def _coco_files(real_data):
    yield from sorted((real_data / "super-gradients/tests/data").glob("*/annotations/*.json"))
    yield from sorted((real_data / "datumaro/tests/assets/coco_dataset").glob("*/annotations/*.json"))
    yield real_data / "panopticapi/sample_data/panoptic_coco_detection_format.json"


def _validate_coco(d, config=DEFAULT_CONFIG):
    out = check_coco_dataset(d, config)
    cats = {c["id"] for c in d.get("categories", [])}
    anns = [a for a in d.get("annotations", []) if "segments_info" not in a]
    by = collections.defaultdict(list)
    for a in anns:
        by[a["image_id"]].append(a)
    for im in d["images"]:
        f, _ = check_coco_image(im, by.get(im["id"], []), cats, config)
        out += f
    return out


def test_real_coco_samples_raise_no_false_alarms(real_data):
    seen = {}
    n_crowd = 0
    for p in _coco_files(real_data):
        d = json.loads(p.read_text())
        n_crowd += sum(1 for a in d.get("annotations", []) if a.get("iscrowd"))
        f = _validate_coco(d)
        alarms = [x for x in f if x.severity != "info"]
        name = str(p.relative_to(real_data))
        if name.endswith("coco_instances/annotations/instances_train.json"):
            # genuinely inconsistent: Datumaro's fixture has an empty polygon list
            assert [(x.rule, x.instance_id) for x in alarms] == [("empty_segmentation", 1)]
        elif name.endswith("tinycoco/annotations/instances_train2017.json"):
            # two genuine double labels (a chair as chair and couch, a car as car and truck)
            assert sorted((x.rule, x.instance_id) for x in alarms) == [
                ("duplicate_annotation", 101073), ("duplicate_annotation", 135645)]
        else:
            assert alarms == [], (name, [x.message for x in alarms[:5]])
        seen[name] = collections.Counter(x.rule for x in f)
    assert n_crowd >= 6  # crowd RLEs (one pixel smaller bboxes) were exercised
    # info: overlaps in tinycoco are real (e.g. one chair labelled chair and couch, IoU 0.93)
    tiny = seen["super-gradients/tests/data/tinycoco/annotations/instances_train2017.json"]
    assert set(tiny) <= {"instance_overlap", "duplicate_annotation"}


def test_real_coco_duplicate_double_label_found(real_data):
    d = json.loads((real_data / "super-gradients/tests/data/tinycoco/annotations/instances_train2017.json").read_text())
    f = [x for x in _validate_coco(d) if x.rule == "duplicate_annotation" and x.extra["iou"] > 0.9]
    assert {tuple(x.extra["ids"]) for x in f} == {(101073, 2223647)}


def test_real_coco_corrupted_copies_are_caught(real_data):
    d = json.loads((real_data / "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json").read_text())
    a = next(x for x in d["annotations"] if isinstance(x["segmentation"], list) and not x["iscrowd"])
    a["segmentation"][0][3] = float("nan")
    b = next(x for x in d["annotations"] if x is not a and isinstance(x["segmentation"], list))
    b["bbox"] = [b["bbox"][0] + 30, b["bbox"][1], b["bbox"][2], b["bbox"][3]]
    c = next(x for x in d["annotations"] if x["iscrowd"])
    c["segmentation"]["counts"] = c["segmentation"]["counts"][:-1]
    d["annotations"].append(dict(d["annotations"][0], image_id=-1))
    f = [x for x in _validate_coco(d) if x.severity != "info"]
    got = {(x.rule, x.instance_id) for x in f}
    assert ("invalid_polygon", a["id"]) in got and ("bbox_mismatch", b["id"]) in got
    assert ("invalid_rle", c["id"]) in got
    assert ("duplicate_id", d["annotations"][0]["id"]) in got and "unknown_image" in rules_of(f)


# ----------------------------------------------------------------------------- panoptic


def test_segment_mismatch_positive_cases():
    ids = np.zeros((6, 6), np.uint32)
    ids[:2, :3] = 7
    ids[4:, 4:] = 9
    info = [{"id": 7, "category_id": 1, "area": 5}, {"id": 8, "category_id": 2, "area": 3},
            {"id": 7, "category_id": 1, "area": 6}, {"id": 0, "category_id": 1}, {"category_id": 3}]
    f, st = segment_mismatch(ids, info)
    got = sorted((x.extra["problem"], x.instance_id, x.pixels) for x in f)
    assert got == [("area", 7, 6), ("duplicate", 7, None), ("malformed", None, None), ("not_in_json", 9, 4),
                   ("not_in_png", 8, 0), ("void_id", 0, None)]
    assert all(x.rule == "segment_mismatch" and x.severity == "error" for x in f)
    nj = [x for x in f if x.extra["problem"] == "not_in_json"][0]
    assert nj.bbox == (4, 4, 2, 2) and nj.extra["rgb"] == [9, 0, 0]
    assert st["void_pixels"] == 36 - 10 and st["png_ids"] == 2


def test_segment_mismatch_negative_rgb_input_and_bbox():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1:3, 1:4] = (1, 2, 0)  # id 513
    info = [{"id": 513, "category_id": 4, "area": 6, "bbox": [1, 1, 3, 2]}]
    f, st = segment_mismatch(rgb, info, RuleConfig(panoptic_check_bbox=True))
    assert f == [] and st["category_pixels"] == {4: 6}
    info[0]["bbox"] = [0, 0, 5, 4]
    f, _ = segment_mismatch(rgb, info, RuleConfig(panoptic_check_bbox=True, bbox_tolerance=0))
    assert only(f).extra["problem"] == "bbox"
    assert segment_mismatch(rgb, info, RuleConfig(disabled={"segment_mismatch"}))[0] == []


def test_segment_mismatch_real_samples(real_data):
    from fastmask.formats.png import read_panoptic
    results = {}
    for jf in [real_data / "panopticapi/sample_data/panoptic_examples.json",
               *sorted((real_data / "datumaro/tests/assets/coco_dataset").glob("*/annotations/panoptic_*.json"))]:
        d = json.loads(jf.read_text())
        images = {i["id"]: i for i in d["images"]}
        folder = jf.parent / "panoptic_examples" if jf.name == "panoptic_examples.json" else jf.with_suffix("")
        for a in d["annotations"]:
            md = read_panoptic(folder / a["file_name"])
            im = images[a["image_id"]]
            f = size_mismatch((md.width, md.height), (im["width"], im["height"]), ref="image record")
            f += segment_mismatch(md.array, a["segments_info"], RuleConfig(panoptic_check_bbox=True))[0]
            results[str((folder / a["file_name"]).relative_to(real_data))] = f
    bad = "datumaro/tests/assets/coco_dataset/coco_panoptic/annotations/panoptic_train/a.png"
    assert rules_of(results.pop(bad)) == ["segment_mismatch", "size_mismatch"]  # 5x5 PNG, 10x5 in JSON
    assert len(results) == 5 and all(f == [] for f in results.values()), results


# ----------------------------------------------------------------------------- dataset level


def test_class_never_seen():
    f = class_never_seen([0, 1, 2, 3, 255], {0: 100, 1: 5, 3: 0}, names={2: "cat"})
    assert [(x.class_id, x.severity) for x in f] == [(2, "info"), (3, "info")] and "'cat'" in f[0].message
    assert class_never_seen([0, 1, 255], {1: 1}) == []


def test_coverage_outlier_positive_negative():
    rng = np.random.default_rng(1)
    shares = {c: 10 ** rng.normal(-2 + c / 10, 0.3, 500) for c in range(1, 19)}
    b = coverage_bounds(shares)
    assert set(b) == set(range(1, 19))
    # clean: no image of the dataset itself is an outlier
    for k in range(500):
        assert coverage_outlier({c: float(shares[c][k]) for c in shares}, b) == []
    f = only(coverage_outlier({1: 0.95, 2: 0.01}, b, class_pixels={1: 9500}))
    assert (f.rule, f.severity, f.class_id, f.pixels, f.extra["direction"]) == ("coverage_outlier", "warning", 1,
                                                                                 9500, "high")
    f = only(coverage_outlier({5: 1e-7}, b))
    assert f.extra["direction"] == "low"


def test_coverage_min_images_and_spread_floor():
    b = coverage_bounds({1: [0.1] * 19})
    assert b == {}
    b = coverage_bounds({1: [0.1] * 40})  # zero MAD: the floor keeps small variations quiet
    assert coverage_outlier({1: 0.2}, b) == [] and coverage_outlier({1: 0.9}, b) == []
    assert coverage_outlier({1: 1e-4}, b) != []
    assert coverage_bounds({0: [0.5] * 40, 255: [0.1] * 40}) == {}  # background/ignore not judged


def test_coverage_histogram_matches_exact_bounds():
    rng = np.random.default_rng(2)
    shares = {3: 10 ** rng.normal(-1.5, 0.4, 3000), 4: 10 ** rng.normal(-0.5, 0.1, 3000)}
    parts = [CoverageHistogram() for _ in range(3)]
    for k in range(3000):
        parts[k % 3].add({c: float(v[k]) for c, v in shares.items()})
    h = parts[0]
    h.merge(parts[1])
    h.merge(parts[2])
    assert h.count(3) == 3000
    approx, exact = h.bounds(), coverage_bounds(shares)
    for c in (3, 4):
        assert abs(approx[c].median - exact[c].median) <= 0.01
        assert abs(approx[c].spread - exact[c].spread) <= 0.02
    json.dumps(h.to_json())


# ----------------------------------------------------------------------------- real class masks


def test_real_semantic_masks(real_data):
    from fastmask.formats.png import read_mask
    a = real_data / "datumaro/tests/assets"
    cases = {  # mask -> label ids (from each dataset's own label map)
        a / "mapillary_vistas_dataset/val/v2.0/labels/1.png": [0, 1, 2],
        a / "cityscapes_dataset/train_dataset/gtFine/train/defaultcity/defaultcity_000002_000045_gtFine_labelTrainIds.png":
            list(range(20)),
    }
    for p in sorted((real_data / "mmsegmentation/tests/data/pseudo_dataset/gts").glob("*.png")):
        cases[p] = [0, 1, 2, 3]
    for p, ids in cases.items():
        f, st = check_class_mask(read_mask(p).array, ids)
        assert f == [], (p, [x.message for x in f])
        assert st.components


# ----------------------------------------------------------------------------- hostile input never raises

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6) | st.binary(max_size=6),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.sampled_from(
        ["size", "counts", "id", "bbox", "x"]), inner, max_size=4),
    max_leaves=30)


@given(seg=json_values, bbox=json_values, cat=json_values, crowd=json_values)
def test_hostile_annotations_give_findings_never_exceptions(seg, bbox, cat, crowd):
    a = {"id": 3, "image_id": 1, "category_id": cat, "segmentation": seg, "bbox": bbox, "iscrowd": crowd}
    b = {"id": 4, "image_id": 1, "category_id": 1, "segmentation": [SQUARE], "iscrowd": 0}
    f, st_ = check_coco_image(IMG, [a, b, seg], {1})
    json.dumps([x.to_dict() for x in f])
    json.dumps(st_.to_row())


@given(counts=st.text(max_size=12) | st.binary(max_size=12), h=st.integers(0, 6), w=st.integers(0, 6))
def test_malformed_rle_strings_never_raise(counts, h, w):
    f, info = check_coco_annotation(ann({"size": [h, w], "counts": counts}), h or 1, w or 1)
    if info.rle is None:
        assert rules_of(f) in (["invalid_rle"], [])
        assert f or info.kind == "rle"


@given(ids=st.lists(json_values, max_size=10))
def test_hostile_ids_never_raise(ids):
    duplicate_ids(ids)
    unknown_images(ids, ids[:2])
    check_coco_dataset({"images": [{"id": i} for i in ids], "annotations": [{"image_id": i} for i in ids]})


@given(info=st.lists(st.dictionaries(st.sampled_from(["id", "category_id", "area", "bbox"]), json_values,
                                     max_size=4) | json_values, max_size=5))
def test_hostile_segments_info_never_raises(info):
    ids = np.array([[0, 1, 1], [2, 2, 0]], np.uint32)
    f, _ = segment_mismatch(ids, info, RuleConfig(panoptic_check_bbox=True))
    json.dumps([x.to_dict() for x in f])


@given(m=st.lists(st.lists(st.integers(-3, 300), min_size=3, max_size=3), min_size=1, max_size=6),
       conn=st.sampled_from([4, 8]))
def test_class_mask_checks_on_arbitrary_values(m, conn):
    a = np.array(m, np.int32)
    f, s = check_class_mask(a, [0, 1, 2, 3], RuleConfig(connectivity=conn, island_min_image_pixels=0))
    assert int(s.counts.sum()) == a.size
    assert sorted(s.values.tolist()) == sorted(set(a.ravel().tolist()))
    bad = {v for v in a.ravel().tolist() if v not in (0, 1, 2, 3, 255)}
    assert {x.class_id for x in f if x.rule == "unexpected_value"} == bad


def test_coverage_histogram_add_many_equals_add():
    rng = np.random.default_rng(3)
    cls = rng.integers(0, 5, 500)
    share = 10 ** rng.uniform(-13, 0.5, 500)  # below the lowest bin, above 1, and everything between
    share[::37] = 0.0
    share[::41] = np.nan
    one, many = CoverageHistogram(), CoverageHistogram()
    for c, s in zip(cls.tolist(), share.tolist()):
        one.add({c: s})
    many.add_many(cls, share)
    assert one.counts.keys() == many.counts.keys()
    assert all(np.array_equal(one.counts[c], many.counts[c]) for c in one.counts)
