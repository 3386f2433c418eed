"""Painting COCO annotations into class / instance maps (fastmask.raster.rasterize_annotations).

Oracles: pycocotools' annToMask (frPyObjects + merge + decode) for every real annotation;
a plain NumPy painter for every overlap rule (hypothesis).
"""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as pm

from fastmask import rle as fr
from fastmask.raster import (
    annotation_counts,
    paint_annotations,
    paint_instances,
    paint_order,
    polygon_mask,
    rasterize_annotations,
)

REAL_COCO = [
    "super-gradients/tests/data/tinycoco/annotations/instances_train2017.json",
    "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json",
    "super-gradients/tests/data/pose_minicoco/annotations/person_keypoints_val2017.json",
    "super-gradients/tests/data/pose_minicoco/annotations/person_keypoints_train2017.json",
    "datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_train.json",
    "datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json",
    "datumaro/tests/assets/coco_dataset/coco_stuff/annotations/stuff_train.json",
    "panopticapi/sample_data/panoptic_coco_detection_format.json",
]


def ann_to_mask(ann, h, w):
    """pycocotools' COCO.annToMask, written out with pycocotools.mask."""
    seg = ann["segmentation"]
    if isinstance(seg, list):
        rle = pm.merge(pm.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        rle = pm.frPyObjects(seg, h, w)
    else:
        rle = seg
    return pm.decode(rle)


def _real_images(real_data):
    for rel in REAL_COCO:
        p = real_data / rel
        if not p.is_file():
            continue
        data = json.loads(p.read_text())
        by_img = defaultdict(list)
        for a in data.get("annotations", []):
            by_img[a["image_id"]].append(a)
        for img in data["images"]:
            yield rel, img, by_img.get(img["id"], [])


def test_every_real_annotation_equals_pycocotools(real_data):
    n_checked = n_crowd = 0
    for rel, img, anns in _real_images(real_data):
        h, w = img["height"], img["width"]
        usable = [a for a in anns if not (isinstance(a["segmentation"], list) and not a["segmentation"])]
        r = rasterize_annotations(usable, h, w, kind="instance", crowd="class", overlap="order")
        assert r.problems == []
        for i, a in enumerate(usable):
            expect = ann_to_mask(a, h, w)
            got = r.mask_of(i)
            assert np.array_equal(got, expect), (rel, a["id"])
            assert r.mask_areas[i] == int(expect.sum())
            # the compressed RLE is pycocotools' canonical string
            assert r.rle(i)["counts"] == pm.encode(np.asfortranarray(expect))["counts"]
            n_checked += 1
            n_crowd += bool(a.get("iscrowd"))
        # instance map: the last annotation covering a pixel owns it (order rule), as a NumPy loop
        ref = np.zeros((h, w), np.int64)
        for i, a in enumerate(usable):
            ref[ann_to_mask(a, h, w) > 0] = i + 1
        assert np.array_equal(r.mask, ref), rel
        # semantic map with crowd -> 255 (the default)
        ref = np.zeros((h, w), np.int64)
        for a in usable:
            ref[ann_to_mask(a, h, w) > 0] = 255 if a.get("iscrowd") else a["category_id"]
        assert np.array_equal(paint_annotations(usable, h, w), ref), rel
    assert n_checked >= 570 and n_crowd >= 6


def test_instance_rows_visible_area_and_bbox():
    anns = [
        {"id": 10, "category_id": 1, "segmentation": {"size": [5, 6], "counts": [0, 30]}},  # whole image
        {"id": 11, "category_id": 2, "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]},
    ]
    m, rows = paint_instances(anns, 5, 6)
    assert m.dtype == np.uint16 or m.dtype == np.uint8
    a2 = int((m == 2).sum())
    assert rows[1]["area"] == a2 > 0
    ys, xs = np.nonzero(m == 2)
    assert rows[1]["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert rows[0]["area"] == 30 - a2 and rows[0]["mask_area"] == 30
    assert rows[0]["bbox"] == [0, 0, 6, 5]
    # fully hidden: area 0, bbox zeros, still one row
    m, rows = paint_instances(anns[::-1], 5, 6)
    assert rows[0]["area"] == 0 and rows[0]["bbox"] == [0, 0, 0, 0] and rows[0]["instance_id"] == 1


def test_crowd_modes_and_instance_ids_skip_ignore():
    crowd = {"id": 5, "category_id": 7, "iscrowd": 1, "segmentation": {"size": [2, 2], "counts": [0, 4]}}
    plain = [{"id": i, "category_id": 1, "segmentation": {"size": [2, 2], "counts": [4]}} for i in range(300)]
    assert paint_annotations([crowd], 2, 2).tolist() == [[255, 255], [255, 255]]
    assert paint_annotations([crowd], 2, 2, crowd="class").tolist() == [[7, 7], [7, 7]]
    assert paint_annotations([crowd], 2, 2, ignore_value=99).tolist() == [[99, 99], [99, 99]]
    r = rasterize_annotations(plain + [crowd], 2, 2, kind="instance")
    ids = r.instance_ids.tolist()
    assert 255 not in ids and ids[:254] == list(range(1, 255)) and ids[254] == 256 and ids[299] == 301 and ids[-1] == 0
    assert r.mask.dtype == np.uint16 and (r.mask == 255).all()
    r = rasterize_annotations(plain + [crowd], 2, 2, kind="instance", crowd="class")
    assert r.instance_ids.tolist() == list(range(1, 302)) and (r.mask == 301).all()


def test_sixteen_bit_and_dtype():
    anns = [{"id": 1, "category_id": 300, "segmentation": [[0, 0, 3, 0, 3, 3, 0, 3]]}]
    m = paint_annotations(anns, 4, 4)
    assert m.dtype == np.uint16 and m.max() == 300
    with pytest.raises(ValueError, match="do not fit"):
        paint_annotations(anns, 4, 4, dtype=np.uint8)
    assert paint_annotations(anns, 4, 4, dtype=np.int32).dtype == np.int32


def test_invalid_annotations_raise_or_skip():
    good = {"id": 1, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]}
    bad = [
        {"id": 41, "category_id": 1, "segmentation": [[0, 0, 1, 1]]},  # 2 vertices
        {"id": 42, "category_id": 1, "segmentation": [[0, 0, 1, float("nan"), 2, 2]]},
        {"id": 43, "category_id": 1, "segmentation": {"size": [9, 9], "counts": "0"}},  # wrong size
        {"id": 44, "category_id": 1, "segmentation": {"size": [4, 4], "counts": "zz"}},  # bad chars
        {"id": 45, "category_id": 1, "segmentation": {"size": [4, 4], "counts": [3, 2]}},  # sum != 16
        {"id": 46, "category_id": 1},
        {"id": 47, "category_id": "x", "segmentation": [[0, 0, 3, 0, 3, 3]]},
        {"id": 48, "category_id": 1, "segmentation": [["a", 0, 3, 0, 3, 3]]},
        "not a dict",
    ]
    for b in bad:
        with pytest.raises(ValueError, match=r"annotation 1 \(id"):
            paint_annotations([good, b], 4, 4)
    r = rasterize_annotations([good] + bad, 4, 4, on_error="skip")
    assert [p[0] for p in r.problems] == list(range(1, len(bad) + 1))
    assert [p[1] for p in r.problems][:8] == [41, 42, 43, 44, 45, 46, 47, 48]
    assert np.array_equal(r.mask, paint_annotations([good], 4, 4))
    # an empty polygon list is an empty mask, not an error
    assert paint_annotations([{"id": 1, "category_id": 1, "segmentation": []}], 2, 2).sum() == 0
    for kw in ({"overlap": "biggest"}, {"crowd": "drop"}, {"fill": "round"}, {"kind": "panoptic"},
               {"overlap": "class-priority"}):
        with pytest.raises(ValueError):
            rasterize_annotations([good], 4, 4, **kw)


def test_no_annotations_background():
    assert paint_annotations([], 3, 2, background=4).tolist() == [[4, 4], [4, 4], [4, 4]]
    m, rows = paint_instances([], 3, 2)
    assert rows == [] and not m.any()
    assert paint_annotations([], 0, 5).shape == (0, 5)


def test_inclusive_fill_matches_polygon_mask():
    sq = [1, 1, 1, 4, 4, 4, 4, 1]
    m = paint_annotations([{"id": 1, "category_id": 2, "segmentation": [sq]}], 6, 6, fill="inclusive")
    assert np.array_equal(m, 2 * polygon_mask([sq], 6, 6, mode="inclusive"))
    assert int((m > 0).sum()) == 16


def test_paint_order_rules():
    assert paint_order(3, "order").tolist() == [0, 1, 2]
    assert paint_order(3, "draw-to-back").tolist() == [2, 1, 0]
    assert paint_order(4, "area", areas=[5, 9, 5, 1]).tolist() == [1, 0, 2, 3]
    assert paint_order(4, "class-priority", category_ids=[1, 2, 3, 2], class_priority=[2, 1]).tolist() == [2, 0, 1, 3]
    with pytest.raises(ValueError, match="twice"):
        paint_order(1, "class-priority", category_ids=[1], class_priority=[1, 1])


# --------------------------------------------------------------------------- overlap rules vs a NumPy painter


def reference_paint(masks, cats, crowd, overlap, prio, ignore=255):
    """Straightforward rules on dense masks: who owns each pixel."""
    n = len(masks)
    h, w = masks[0].shape
    out = np.zeros((h, w), np.int64)
    owner = np.full((h, w), -1)
    areas = [int(m.sum()) for m in masks]
    rank = {c: len(prio) - k for k, c in enumerate(prio)}

    def beats(i, j):  # does annotation i go on top of j?
        if overlap == "order":
            return i > j
        if overlap == "draw-to-back":
            return i < j
        if overlap == "area":
            return areas[i] < areas[j] or (areas[i] == areas[j] and i > j)
        ri, rj = rank.get(cats[i], 0), rank.get(cats[j], 0)
        return ri > rj or (ri == rj and i > j)

    for i in range(n):
        for y, x in zip(*np.nonzero(masks[i])):
            j = owner[y, x]
            if j < 0 or beats(i, j):
                owner[y, x] = i
    for i in range(n):
        out[owner == i] = ignore if crowd[i] else cats[i]
    return out


@st.composite
def scenes(draw):
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 12))
    n = draw(st.integers(1, 6))
    anns = []
    for i in range(n):
        if draw(st.booleans()):
            k = draw(st.integers(3, 6))
            pts = draw(st.lists(st.floats(-2, 14, allow_nan=False), min_size=2 * k, max_size=2 * k))
            seg = [pts]
        else:
            m = np.array(draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w)), np.uint8).reshape(h, w)
            seg = fr.encode(np.asfortranarray(m))
            seg = {"size": seg["size"], "counts": seg["counts"].decode()}
        anns.append({"id": 100 + i, "category_id": draw(st.integers(1, 5)), "iscrowd": int(draw(st.integers(0, 4)) == 0),
                     "segmentation": seg})
    prio = draw(st.lists(st.integers(1, 5), unique=True, max_size=5))
    return h, w, anns, prio


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes(), st.sampled_from(["order", "area", "class-priority", "draw-to-back"]))
def test_overlap_rules_match_numpy_painter(scene, overlap):
    h, w, anns, prio = scene
    masks = [ann_to_mask(a, h, w) for a in anns]
    cats = [a["category_id"] for a in anns]
    crowd = [bool(a["iscrowd"]) for a in anns]
    got = paint_annotations(anns, h, w, overlap=overlap, class_priority=prio)
    assert np.array_equal(got, reference_paint(masks, cats, crowd, overlap, prio))
    # instance ids: same ownership, ids in input order
    r = rasterize_annotations(anns, h, w, kind="instance", crowd="class", overlap=overlap, class_priority=prio)
    owner_ref = reference_paint(masks, list(range(1, len(anns) + 1)), [False] * len(anns), overlap,
                                [], ignore=0) if overlap != "class-priority" else None
    if owner_ref is not None:
        assert np.array_equal(r.mask, owner_ref)
    for i in range(len(anns)):
        assert r.areas[i] == int((r.mask == i + 1).sum())


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.data())
def test_counts_round_trip(h, w, data):
    """mask -> RLE -> annotation counts -> mask, identical."""
    m = np.array(data.draw(st.lists(st.integers(0, 1), min_size=h * w, max_size=h * w)), np.uint8).reshape(h, w)
    rle = pm.encode(np.asfortranarray(m))
    counts, offsets, problems = annotation_counts([{"segmentation": rle}], h, w)
    assert offsets.tolist() == [0, len(counts)] and int(counts.sum()) == h * w
    r = rasterize_annotations([{"id": 1, "category_id": 1, "segmentation": rle}], h, w)
    assert np.array_equal(r.mask, m) and not problems
    assert r.rle(0)["counts"] == rle["counts"]


def test_paint_false_gives_the_same_rles():
    anns = [{"id": 1, "category_id": 2, "segmentation": [[0, 0, 5, 0, 5, 4, 0, 4]]},
            {"id": 2, "category_id": 3, "segmentation": [[0, 0, 1]]},
            {"id": 3, "category_id": 3, "iscrowd": 1, "segmentation": {"size": [6, 7], "counts": [3, 39]}}]
    full = rasterize_annotations(anns, 6, 7, kind="instance", on_error="skip")
    lean = rasterize_annotations(anns, 6, 7, kind="instance", on_error="skip", paint=False)
    assert lean.mask is None and lean.problems == full.problems and [p[1] for p in lean.problems] == [2]
    assert lean.rles() == [full.rle(i) for i in range(3)]
    assert lean.rles()[0] == pm.merge(pm.frPyObjects(anns[0]["segmentation"], 6, 7))
    assert lean.rles()[1]["counts"] == pm.encode(np.zeros((6, 7), np.uint8, order="F"))["counts"]  # skipped: empty
    assert np.array_equal(lean.mask_of(2), ann_to_mask(anns[2], 6, 7))


_HOSTILE = [
    None, 5, "polygon", [], [[]], [[1, 2, 3]], [[0, 0, 1, 1]], [["x", 0, 1, 0, 1, 1]], [[0, 0, 1e308, 0, 0, float("inf")]],
    [[True, 0, 1, 0, 1, 1]], {"size": [3, 3]}, {"counts": "0"}, {"size": "3x3", "counts": "0"},
    {"size": [3, 3], "counts": [-1, 10]}, {"size": [3, 3], "counts": "zz"}, {"size": [3, 3], "counts": 9},
    {"size": [4, 4], "counts": [16]}, [[0, 0, 1e300, 0, 1e300, 1e300]], [[-1e9, -1e9, 1e9, -1e9, 0, 1e9]],
    [[0, 0, 2, 0, 2, 2]], {"size": [3, 3], "counts": [2, 5, 2]}, {"size": [3, 3], "counts": "11"},  # valid ones
]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_HOSTILE) - 1), st.integers(1, 4)), max_size=6),
       st.sampled_from(["order", "area", "draw-to-back"]))
def test_hostile_annotations_are_skipped_and_named(picks, overlap):
    """Every annotation is either painted or listed once in problems; the rest paints as if it were absent."""
    h, w = 3, 3
    anns = [{"id": 500 + k, "category_id": c, "segmentation": _HOSTILE[i]} for k, (i, c) in enumerate(picks)]
    r = rasterize_annotations(anns, h, w, overlap=overlap, on_error="skip")
    bad = [p[0] for p in r.problems]
    assert len(bad) == len(set(bad)) and all(r.problems[j][1] == 500 + i for j, i in enumerate(bad))
    good = [a for k, a in enumerate(anns) if k not in bad]
    assert np.array_equal(r.mask, paint_annotations(good, h, w, overlap=overlap))
    for k, a in enumerate(good):
        seg = a["segmentation"]
        # fastmask.rle's frPyObjects + merge (pycocotools crashes on the huge coordinates)
        if isinstance(seg, list):
            ref = fr.decode(fr.merge(fr.frPyObjects(seg, h, w))) if seg else np.zeros((h, w), np.uint8)
        else:
            ref = fr.decode(fr.frPyObjects(seg, h, w))
        assert np.array_equal(rasterize_annotations([a], h, w).mask > 0, ref > 0), k


def test_docstring_examples():
    import doctest

    import fastmask.raster as fraster

    result = doctest.testmod(fraster, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0
