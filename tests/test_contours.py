"""Contour tracing: round trips through the COCO fill, topology vs scipy/OpenCV, simplification."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as pcm

from fastmask.contours import (
    coco_polygons,
    coco_segmentation,
    mask_to_polygons,
    ring_area,
)
from fastmask.raster import polygon_mask, polygon_rle

STRUCT = {4: ndi.generate_binary_structure(2, 1), 8: ndi.generate_binary_structure(2, 2)}


def all_rings(shapes):
    return [r.reshape(-1).tolist() for s in shapes for r in [s.exterior, *s.holes]]


def n_holes_scipy(mask, connectivity):
    """Background regions not connected to the border (complementary connectivity)."""
    bg = np.pad(mask == 0, 1, constant_values=True)
    _, n = ndi.label(bg, STRUCT[12 - connectivity])
    return n - 1


@st.composite
def masks(draw, max_side=24):
    """Random masks: noise, blobs with holes, 1-px lines, diagonal touches, full/empty."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["noise", "blobs", "lines", "diagonal", "full", "empty"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    if kind == "noise":
        m = (rng.random((h, w)) < draw(st.floats(0.05, 0.95))).astype(np.uint8)
    elif kind == "blobs":
        for _ in range(rng.integers(1, 5)):
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            r_out = rng.integers(1, max(2, min(h, w)))
            yy, xx = np.ogrid[:h, :w]
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            m[d2 <= r_out**2] = 1
            if rng.random() < 0.6:  # punch a hole (and maybe an island inside it)
                m[d2 <= (r_out // 2) ** 2] = 0
                if rng.random() < 0.5:
                    m[d2 <= (r_out // 5) ** 2] = 1
    elif kind == "lines":
        for _ in range(rng.integers(1, 4)):
            if rng.random() < 0.5:
                m[rng.integers(0, h), rng.integers(0, w):] = 1
            else:
                m[rng.integers(0, h):, rng.integers(0, w)] = 1
    elif kind == "diagonal":
        k = min(h, w)
        m[np.arange(k), np.arange(k)] = 1
        if rng.random() < 0.5:
            m[np.arange(k), (k - 1 - np.arange(k))] = 1
    elif kind == "full":
        m[:] = 1
    return m


@given(masks(), st.sampled_from([4, 8]))
def test_rings_fill_back_exactly(m, connectivity):
    shapes = mask_to_polygons(m, connectivity=connectivity)
    h, w = m.shape
    back = polygon_mask(all_rings(shapes), h, w, mode="coco", fill_rule="evenodd") if shapes else np.zeros_like(m)
    np.testing.assert_array_equal(back, m)
    # hole-free shapes: the outer rings alone, unioned as COCO parts, give the pixels (pycocotools itself)
    if shapes and not any(s.holes for s in shapes):
        rle = pcm.merge(pcm.frPyObjects(coco_polygons(shapes), h, w))
        np.testing.assert_array_equal(pcm.decode(rle), m)


@given(masks(), st.sampled_from([4, 8]))
def test_topology_matches_scipy(m, connectivity):
    shapes = mask_to_polygons(m, connectivity=connectivity)
    _, n = ndi.label(m, STRUCT[connectivity])
    assert len(shapes) == n
    assert sum(len(s.holes) for s in shapes) == n_holes_scipy(m, connectivity)
    labels, _ = ndi.label(m, STRUCT[connectivity])
    for k, s in enumerate(shapes, 1):
        assert s.area == int((labels == k).sum())
        # orientation: outer positive, holes negative; together they enclose exactly the pixels
        assert ring_area(s.exterior) > 0
        assert all(ring_area(hole) < 0 for hole in s.holes)
        assert ring_area(s.exterior) + sum(ring_area(hole) for hole in s.holes) == pytest.approx(s.area)
        # the shape's pixels are the component in raster order
        ys, xs = np.nonzero(labels == k)
        assert s.exterior[:, 0].min() == xs.min() and s.exterior[:, 1].min() == ys.min()
        assert s.exterior[:, 0].max() == xs.max() + 1 and s.exterior[:, 1].max() == ys.max() + 1


@given(masks())
def test_counts_match_opencv_ccomp(m):
    """OpenCV RETR_CCOMP (8-connected shapes, 4-connected holes): same outer/hole counts."""
    contours, hierarchy = cv2.findContours(m.copy(), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    n_outer = n_hole = 0
    if hierarchy is not None:
        for h in hierarchy[0]:
            if h[3] < 0:
                n_outer += 1
            else:
                n_hole += 1
    shapes = mask_to_polygons(m, connectivity=8)
    assert len(shapes) == n_outer
    assert sum(len(s.holes) for s in shapes) == n_hole
    # OpenCV's points are pixel centres on the shape: each lies inside one of our shapes' pixels
    for c in contours:
        pts = c.reshape(-1, 2)
        assert m[pts[:, 1], pts[:, 0]].all()


def test_single_pixel_and_convention():
    m = np.zeros((4, 5), np.uint8)
    m[2, 3] = 1
    (s,) = mask_to_polygons(m)
    assert s.exterior.tolist() == [[3, 2], [4, 2], [4, 3], [3, 3]]
    assert s.area == 1 and s.holes == []
    assert coco_segmentation(m) == ([[3.0, 2.0, 4.0, 2.0, 4.0, 3.0, 3.0, 3.0]], "polygons")


def test_diagonal_touch_connectivity():
    m = np.array([[1, 0], [0, 1]], np.uint8)
    (s8,) = mask_to_polygons(m, connectivity=8)
    # one ring touching itself at the shared corner (1, 1)
    assert [tuple(p) for p in s8.exterior.tolist()].count((1.0, 1.0)) == 2
    assert len(mask_to_polygons(m, connectivity=4)) == 2
    # a diamond of diagonal pixels: one shape with a hole (8) or four shapes without (4)
    d = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.uint8)
    s = mask_to_polygons(d, connectivity=8)
    assert len(s) == 1 and len(s[0].holes) == 1
    s4 = mask_to_polygons(d, connectivity=4)
    assert len(s4) == 4 and not any(x.holes for x in s4)


def test_nested_holes_and_islands():
    m = np.zeros((9, 9), np.uint8)
    m[0:9, 0:9] = 1
    m[2:7, 2:7] = 0
    m[4, 4] = 1  # an island in the hole: a second shape
    shapes = mask_to_polygons(m)
    assert len(shapes) == 2
    assert len(shapes[0].holes) == 1 and shapes[1].holes == []
    assert shapes[1].exterior.tolist() == [[4, 4], [5, 4], [5, 5], [4, 5]]
    seg, kind = coco_segmentation(m)
    assert kind == "rle"
    np.testing.assert_array_equal(pcm.decode(seg | {"counts": seg["counts"].encode()}), m)


def test_empty_and_degenerate_inputs():
    assert mask_to_polygons(np.zeros((0, 0), np.uint8)) == []
    assert mask_to_polygons(np.zeros((3, 4), bool)) == []
    seg, kind = coco_segmentation(np.zeros((3, 4), np.uint8))
    assert kind == "rle" and pcm.area(seg | {"counts": seg["counts"].encode()}) == 0
    (s,) = mask_to_polygons(np.ones((1, 1), bool))
    assert s.exterior.tolist() == [[0, 0], [1, 0], [1, 1], [0, 1]]
    # any non-zero value is foreground, including negative and float
    assert len(mask_to_polygons(np.array([[-3, 0, 2.5]]), connectivity=4)) == 2


@pytest.mark.parametrize("bad, exc", [
    (np.zeros((2, 2, 2)), ValueError),
    (np.array([["a"]]), TypeError),
    (np.array([[np.nan]]), ValueError),
])
def test_hostile_masks_raise(bad, exc):
    with pytest.raises(exc):
        mask_to_polygons(bad)


@pytest.mark.parametrize("kw", [{"connectivity": 6}, {"connectivity": True}, {"tolerance": -1},
                                {"tolerance": float("nan")}, {"tolerance": "x"}])
def test_bad_options_raise(kw):
    with pytest.raises((ValueError, TypeError)):
        mask_to_polygons(np.ones((2, 2), np.uint8), **kw)


def test_offset():
    (s,) = mask_to_polygons(np.ones((1, 2), np.uint8), offset=(10, 20))
    assert s.exterior.tolist() == [[10, 20], [12, 20], [12, 21], [10, 21]]


def _dist_to_ring(p, ring):
    a = ring
    b = np.roll(ring, -1, axis=0)
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    proj = a + t[:, None] * ab
    return np.sqrt(((p - proj) ** 2).sum(1)).min()


@settings(max_examples=60)
@given(masks(max_side=40), st.floats(0.3, 3.0))
def test_simplification_stays_within_tolerance(m, tol):
    exact = mask_to_polygons(m)
    simple = mask_to_polygons(m, tolerance=tol)
    assert len(exact) == len(simple)
    for e, s in zip(exact, simple):
        for er, sr in zip([e.exterior, *e.holes], [s.exterior, *s.holes]):
            assert 3 <= len(sr) <= len(er)
            # kept vertices are original vertices, in order; dropped ones lie within tol of the result
            keys = {tuple(p) for p in er.tolist()}
            assert all(tuple(p) in keys for p in sr.tolist())
            for p in er:
                assert _dist_to_ring(p, sr) <= tol + 1e-9


def _real_annotations(real_data):
    files = sorted((real_data / "super-gradients").rglob("*.json")) + sorted(
        (real_data / "datumaro/tests/assets/coco_dataset").rglob("instances_*.json"))
    for f in files:
        d = json.loads(f.read_text())
        if not isinstance(d, dict) or "annotations" not in d:
            continue
        sizes = {im["id"]: (im["height"], im["width"]) for im in d.get("images", [])}
        for a in d["annotations"]:
            seg = a.get("segmentation")
            if isinstance(seg, list) and seg and a["image_id"] in sizes:
                yield f, a, sizes[a["image_id"]]


def test_real_coco_polygons_round_trip(real_data):
    """Every real COCO polygon: rasterize (= pycocotools) -> trace -> fill back: identical pixels;
    simplified with tolerance 1 px (84% fewer vertices) the IoU is >= 0.99 over the whole sample."""
    n = 0
    inter = union = 0
    worst = 1.0
    for _, a, (h, w) in _real_annotations(real_data):
        rle = polygon_rle(a["segmentation"], h, w)
        m = pcm.decode(rle)
        shapes = mask_to_polygons(m)
        back = polygon_mask(all_rings(shapes), h, w, fill_rule="evenodd") if shapes else np.zeros_like(m)
        np.testing.assert_array_equal(back, m)
        seg, kind = coco_segmentation(m)
        if kind == "polygons":
            np.testing.assert_array_equal(pcm.decode(pcm.merge(pcm.frPyObjects(seg, h, w))), m)
        s = mask_to_polygons(m, tolerance=1.0)
        approx = polygon_mask(all_rings(s), h, w, fill_rule="evenodd") if s else np.zeros_like(m)
        i, u = int((approx & m).sum()), int((approx | m).sum())
        inter += i
        union += u
        if u:
            worst = min(worst, i / u)
        n += 1
    assert n > 500
    assert inter / union >= 0.99


def test_docstring_examples():
    import doctest

    import fastmask.contours as fc

    result = doctest.testmod(fc, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8
    assert result.failed == 0
