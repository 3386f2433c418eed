"""fastmask.raster: coco mode against pycocotools, fill rules, validation, the worked examples."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as pm

import fastmask.rle as fr
from fastmask.raster import polygon_mask, polygon_rle, polygons_to_rles

from strategies import polygons

SQUARE = [1, 1, 1, 4, 4, 4, 4, 1]


@given(st.lists(polygons(), min_size=1, max_size=4), st.integers(1, 70), st.integers(1, 70))
@settings(max_examples=400)
def test_coco_mode_matches_pycocotools(polys, h, w):
    parts = [p for p in polys if len(p) >= 6]
    if not parts:
        return
    ref = pm.merge(pm.frPyObjects(parts, h, w))
    mask = polygon_mask(parts, h, w)
    assert mask.dtype == np.uint8 and mask.shape == (h, w) and mask.flags.c_contiguous
    assert np.array_equal(mask, pm.decode(ref))
    assert polygon_rle(parts, h, w) == ref


@given(st.lists(polygons(), min_size=1, max_size=4), st.integers(1, 50), st.integers(1, 50))
def test_evenodd_is_parity_of_parts(polys, h, w):
    parts = [p for p in polys if len(p) >= 6]
    if not parts:
        return
    # per-column even-odd is linear: the parity over all rings is the XOR of each ring's pixels
    each = pm.decode(pm.frPyObjects(parts, h, w))
    expect = np.bitwise_xor.reduce(each, axis=2)
    assert np.array_equal(polygon_mask(parts, h, w, fill_rule="evenodd"), expect)
    assert np.array_equal(fr.decode(polygon_rle(parts, h, w, fill_rule="evenodd")), expect)


def test_ring_with_hole():
    outer = [0, 0, 0, 20, 20, 20, 20, 0]
    inner = [5, 5, 5, 15, 15, 15, 15, 5]
    for mode in ("coco", "inclusive", "center"):
        union = polygon_mask([outer, inner], 24, 24, mode=mode)
        holed = polygon_mask([outer, inner], 24, 24, mode=mode, fill_rule="evenodd")
        assert union[10, 10] == 1 and holed[10, 10] == 0
        assert holed[2, 2] == 1 and union.sum() > holed.sum()


def test_worked_example_square():
    inc = polygon_mask([SQUARE], 6, 6, mode="inclusive")
    assert inc.sum() == 16
    assert inc[1:5, 1:5].all()
    assert polygon_mask([SQUARE], 6, 6, mode="center").sum() == 9
    shifted = [x + 1 for x in SQUARE]
    other = polygon_mask([shifted], 6, 6, mode="inclusive")
    a, b = fr.encode(inc), fr.encode(other)
    assert fr.iou([a], [b], [0])[0, 0] == 9 / 23


def test_coco_mode_of_the_square():
    # pycocotools' edge walk puts a square with corners (1,1)-(4,4) on 3x3 pixels
    m = polygon_mask([SQUARE], 6, 6)
    assert np.array_equal(m, pm.decode(pm.merge(pm.frPyObjects([SQUARE], 6, 6))))
    assert m.sum() == 9


def test_clipping_and_huge_coordinates():
    big = 1e300
    for mode in ("coco", "inclusive", "center"):
        full = polygon_mask([[-big, -big, -big, big, big, big, big, -big]], 5, 7, mode=mode)
        assert full.all(), mode
        assert not polygon_mask([[-9, -9, -9, -2, -2, -2]], 5, 7, mode=mode).any()
    assert int(fr.area(polygon_rle([[-big, -big, -big, big, big, big, big, -big]], 5, 7))) == 35


def test_million_vertex_polygon():
    t = np.linspace(0, 2 * np.pi, 1_000_000, endpoint=False)
    circle = np.stack([100 + 80 * np.cos(t), 100 + 80 * np.sin(t)], 1).reshape(-1)
    area = np.pi * 80**2
    for mode in ("coco", "center"):
        m = polygon_mask([circle], 200, 200, mode=mode)
        assert abs(int(m.sum()) - area) < 2 * np.pi * 80  # within one boundary ring
    r = polygon_rle([circle], 200, 200)
    assert np.array_equal(fr.decode(r), polygon_mask([circle], 200, 200))


@pytest.mark.parametrize(
    "polys, message",
    [
        ([[0, 0, 1, 1]], "polygon 0 has 2 vertices"),
        ([SQUARE, [0, 0, 1, 1, 2]], "polygon 1 has an odd number"),
        ([SQUARE, SQUARE, [0, 0, np.nan, 1, 2, 2]], "polygon 2 has NaN"),
        ([[0, 0, np.inf, 1, 2, 2]], "polygon 0 has NaN or infinite"),
        ([["a", 0, 1, 1, 2, 2]], "polygon 0 is not"),
    ],
)
def test_invalid_polygons_raise(polys, message):
    with pytest.raises(ValueError, match=message):
        polygon_mask(polys, 8, 8)
    with pytest.raises(ValueError, match=message):
        polygon_rle(polys, 8, 8)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="mode"):
        polygon_mask([SQUARE], 8, 8, mode="nearest")
    with pytest.raises(ValueError, match="fill_rule"):
        polygon_mask([SQUARE], 8, 8, fill_rule="nonzero")
    with pytest.raises(ValueError, match="non-negative"):
        polygon_mask([SQUARE], -1, 8)
    with pytest.raises(TypeError):
        polygon_mask("square", 8, 8)


def test_input_forms():
    flat = polygon_mask(SQUARE, 6, 6)  # one flat polygon
    assert np.array_equal(flat, polygon_mask([SQUARE], 6, 6))
    pairs = np.array(SQUARE, float).reshape(-1, 2)
    assert np.array_equal(polygon_mask([pairs], 6, 6), flat)
    assert polygon_mask([], 6, 6).sum() == 0
    assert polygon_mask([SQUARE], 0, 6).shape == (0, 6)


def test_out_parameter():
    stack = np.zeros((2, 6, 6), np.uint8)
    stack[1, 0, 0] = 1
    got = polygon_mask([SQUARE], 6, 6, mode="inclusive", out=stack[1])
    assert np.shares_memory(got, stack)
    # painted onto: the shape's 16 px are set, the pixel already set stays, the other plane is untouched
    assert stack[1].sum() == 17 and stack[1, 0, 0] == 1 and stack[0].sum() == 0
    assert np.array_equal(stack[1][1:5, 1:5], np.ones((4, 4)))
    with pytest.raises(ValueError, match="out must be"):
        polygon_mask([SQUARE], 6, 6, out=np.zeros((6, 5), np.uint8))


@given(st.lists(st.lists(polygons(), min_size=0, max_size=3), min_size=1, max_size=5), st.integers(1, 60), st.integers(1, 60))
def test_polygons_to_rles_matches_pycocotools(annotations, h, w):
    anns = [[p for p in ann if len(p) >= 6] for ann in annotations]
    got = polygons_to_rles(anns, h, w)
    assert len(got) == len(anns)
    for ann, rle in zip(anns, got):
        if ann:
            assert rle == pm.merge(pm.frPyObjects(ann, h, w))
        else:  # an annotation without polygons is an empty mask
            assert int(fr.area(rle)) == 0 and rle["size"] == [h, w]


def test_polygons_to_rles_sizes_and_errors():
    rles = polygons_to_rles([[SQUARE], [SQUARE]], [6, 8], [6, 9])
    assert [r["size"] for r in rles] == [[6, 6], [8, 9]]
    with pytest.raises(ValueError, match="annotation 1: .*polygon 0 has NaN"):
        polygons_to_rles([[SQUARE], [[0, 0, np.nan, 1, 2, 2]]], 6, 6)
    with pytest.raises(ValueError, match="annotation 0: .*odd number"):
        polygons_to_rles([[[0, 0, 1]]], 6, 6)
