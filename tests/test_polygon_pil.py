"""The ``pil`` fill mode: bit-exact with Pillow's ``ImageDraw.polygon(xy, fill=1, outline=1)``.

The oracle is Pillow itself, called as labelme's ``shape_to_mask`` calls it: one
``polygon`` call per ring on an ``L`` image of the image size, ``xy`` a list of
(x, y) float tuples; several rings are the union of their calls.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from fastmask.cli import main
from fastmask.formats import read_mask
from fastmask.kernels.polygon_pil import LIMIT, round_down, round_up
from fastmask.raster import annotation_counts, paint_annotations, polygon_mask, rasterize_annotations

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TINY = "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"


def pillow(rings, h, w):
    """The oracle: labelme's call, one per ring, OR-ed."""
    acc = np.zeros((h, w), np.uint8)
    for r in rings:
        im = Image.new("L", (w, h), 0)
        ImageDraw.Draw(im).polygon([(float(r[i]), float(r[i + 1])) for i in range(0, len(r), 2)], fill=1, outline=1)
        acc |= np.asarray(im)
    return acc


def ours(rings, h, w):
    return polygon_mask([list(map(float, r)) for r in rings], h, w, mode="pil")


def assert_same(rings, h, w):
    got, ref = ours(rings, h, w), pillow(rings, h, w)
    assert got.dtype == np.uint8 and got.shape == (h, w)
    assert np.array_equal(got, ref), f"{int((got != ref).sum())} px differ for {rings} in {h}x{w}"


# ----------------------------------------------------------------------------- strategies

sizes = st.tuples(st.integers(1, 48), st.integers(1, 48))
int_coords = st.integers(-20, 70).map(float)
float_coords = st.one_of(
    st.floats(-20, 70, allow_nan=False),
    st.integers(-80, 280).map(lambda v: v / 4),  # exact halves and quarters (rounding ties)
    st.integers(-20, 70).map(lambda v: v + 1e-9),  # just past an integer (truncation)
    st.integers(-20, 70).map(lambda v: v - 1e-9),
)


@st.composite
def rings(draw, coords, min_vertices=2, max_vertices=16):
    """A ring: random (mostly self-crossing), star-shaped, collinear/thin, axis-aligned with repeats."""
    kind = draw(st.sampled_from(["random", "random", "star", "thin", "axis"]))
    k = draw(st.integers(min_vertices, max_vertices))
    if kind == "random":
        return [draw(coords) for _ in range(2 * k)]
    if kind == "star":
        cx, cy = draw(st.floats(-10, 60)), draw(st.floats(-10, 60))
        angles = sorted(draw(st.floats(0, 2 * math.pi)) for _ in range(k))
        out = []
        for a in angles:
            r = draw(st.floats(0.2, 40))
            out += [cx + r * math.cos(a), cy + r * math.sin(a)]
        return out
    if kind == "thin":
        x0, y0 = draw(coords), draw(coords)
        dx, dy = draw(st.floats(-3, 3)), draw(st.floats(-3, 3))
        eps = draw(st.sampled_from([0.0, 0.3, 1.0]))
        out = []
        for j in range(k):
            t = draw(st.floats(-15, 15))
            out += [x0 + t * dx + eps * (j % 2), y0 + t * dy]
        return out
    # axis-aligned staircase with repeated vertices and runs of horizontal edges
    out = []
    x, y = draw(st.integers(-5, 45)), draw(st.integers(-5, 45))
    for _ in range(k):
        if draw(st.booleans()):
            x += draw(st.integers(-12, 12))
        else:
            y += draw(st.integers(-12, 12))
        out += [float(x), float(y)]
    return out


# ----------------------------------------------------------------------------- property tests

@SETTINGS
@given(rings(int_coords), sizes)
def test_integer_polygons_equal_pillow(ring, size):
    assert_same([ring], *size)


@SETTINGS
@given(rings(float_coords), sizes)
def test_float_polygons_equal_pillow(ring, size):
    assert_same([ring], *size)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(20, 300), st.integers(0, 2**32 - 1), st.integers(30, 200), st.integers(30, 200))
def test_many_vertices_equal_pillow(k, seed, h, w):
    rng = np.random.default_rng(seed)
    ring = rng.uniform(-30, max(h, w) + 30, 2 * k).tolist()  # self-crossing, partly outside
    assert_same([ring], h, w)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rings(float_coords, min_vertices=3), min_size=1, max_size=4), sizes)
def test_several_rings_are_the_union_of_pillow_calls(parts, size):
    assert_same(parts, *size)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.floats(-(LIMIT - 1), LIMIT - 1), st.floats(-40, 90)), min_size=4, max_size=24),
       sizes)
def test_far_and_negative_coordinates_equal_pillow(values, size):
    if len(values) % 2:
        values = values[:-1]
    assert_same([values], *size)


# ----------------------------------------------------------------------------- fixed cases

@pytest.mark.parametrize("ring", [
    [2, 2, 9, 5],  # two vertices: the segment there and back
    [3, 3, 3, 3],  # two equal vertices: one pixel
    [4, 4, 4, 4, 4, 4],  # three equal vertices
    [1, 1, 8, 1, 8, 1, 8, 6, 1, 6],  # a repeated vertex
    [0, 0, 3, 0, 6, 0, 9, 0, 9, 5, 6, 5, 3, 5, 0, 5],  # runs of horizontal edges (merged by Pillow)
    [0, 0, 9, 0, 4, 0, 4, 6],  # a horizontal edge folding back on itself
    [1, 1, 5, 3, 9, 5],  # collinear
    [1, 1, 9, 9, 1, 9, 9, 1],  # bow tie (self-crossing)
    [5, 0, 6.5, 3.5, 10, 3.5, 7.2, 5.8, 8.2, 9.5, 5, 7.3, 1.8, 9.5, 2.8, 5.8, 0, 3.5, 3.5, 3.5],  # star
    [0, 0, 10, 0, 10, 10, 0, 10, 0, 0, 3, 3, 3, 7, 7, 7, 7, 3, 3, 3],  # ring with a slit "hole"
    [-0.7, -0.7, 5.9, -0.2, 5.9, 4.99, -0.99, 4.99],  # negatives truncate toward zero
    [0.5, 0.5, 3.5, 0.5, 3.5, 3.5, 0.5, 3.5],  # half-pixel square
    [-50, -50, -10, -50, -10, -10],  # wholly above-left
    [20, 2, 40, 4, 30, 9],  # wholly right
    [-5, 3, 14, -6, 16, 12, 2, 15],  # partly outside on every side
    [-(2**30 - 1), 5, 2**30 - 1, 5.5, 2**30 - 1, 7, -(2**30 - 1), 8],  # far ends, thin band
    [3, -(2**30 - 1), 9, 2**30 - 1, 4, 6],  # far vertical extent
    [0, 0, 1e-7, 9, 0.999, 0],  # sub-pixel wide
])
def test_fixed_cases_equal_pillow(ring):
    assert_same([ring], 10, 12)


def test_zigzag_many_corners_on_one_row_equals_pillow():
    """Thousands of edge end points on the same rows: Pillow's corner search, grouped here."""
    xs = np.arange(0, 1500, dtype=np.float64) * 0.37
    ys = np.where(np.arange(xs.size) % 2, 1.0, 6.0)
    ring = np.stack([xs, ys], 1).reshape(-1).tolist() + [600.0, 9.0, 0.0, 9.0]
    assert_same([ring], 12, 560)


def test_dense_circle_equals_pillow_and_a_million_vertices_stay_bounded():
    t = np.linspace(0, 2 * np.pi, 20_000, endpoint=False)
    circle = np.stack([100 + 80 * np.cos(t), 100 + 80 * np.sin(t)], 1).reshape(-1)
    assert_same([circle.tolist()], 200, 200)  # ~100 vertices end on each row: many corner searches
    # Pillow's corner search is quadratic in the vertices (hours here); the kernel's is not
    t = np.linspace(0, 2 * np.pi, 1_000_000, endpoint=False)
    circle = np.stack([100 + 80 * np.cos(t), 100 + 80 * np.sin(t)], 1).reshape(-1)
    m = polygon_mask([circle], 200, 200, mode="pil")
    assert abs(int(m.sum()) - np.pi * 80**2) < 2 * np.pi * 80  # within one boundary ring


def test_rounding_macros_are_pillows():
    f32 = np.float32
    # the positive side is evaluated in float32: 0.49999997f + 0.5f rounds to 1.0f
    assert round_up(f32(0.49999997)) == 1 and round_up(f32(-0.49999997)) == 0
    assert round_up(f32(2.5)) == 3 and round_up(f32(-2.5)) == -3
    assert round_down(f32(2.5)) == 2 and round_down(f32(-2.5)) == -2
    assert round_down(f32(2.6)) == 3 and round_up(f32(2.4)) == 2


def test_errors_and_limits():
    with pytest.raises(ValueError, match="at least 2"):
        polygon_mask([[1, 1]], 5, 5, mode="pil")
    with pytest.raises(ValueError, match="2\\*\\*30"):
        polygon_mask([[0, 0, 4, 0, 4, 4], [0, 0, LIMIT, 0, 0, 3]], 5, 5, mode="pil")
    with pytest.raises(ValueError, match="fill_rule"):
        polygon_mask([[0, 0, 4, 0, 4, 4]], 5, 5, mode="pil", fill_rule="evenodd")
    with pytest.raises(ValueError, match="NaN"):
        polygon_mask([[0, 0, float("nan"), 0, 4, 4]], 5, 5, mode="pil")
    # just inside the limit works and matches Pillow
    assert_same([[0, 0, LIMIT - 1, 0, 0, 3]], 5, 5)
    assert polygon_mask([[0, 0, 4, 0, 4, 4]], 0, 5, mode="pil").shape == (0, 5)
    out = np.zeros((6, 6), np.uint8)
    out[5, 5] = 1
    polygon_mask([[0, 0, 3, 0, 3, 3]], 6, 6, mode="pil", out=out)
    assert out[5, 5] == 1 and np.array_equal(out[:5, :5], pillow([[0, 0, 3, 0, 3, 3]], 6, 6)[:5, :5])


def test_annotation_with_far_coordinate_is_a_problem_not_a_crash():
    anns = [{"id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]]},
            {"id": 2, "category_id": 2, "segmentation": [[0, 0, 2e9, 0, 4, 4]]}]
    counts, offsets, problems = annotation_counts(anns, 6, 6, fill="pil", on_error="skip")
    assert [p[:2] for p in problems] == [(1, 2)] and "2**30" in problems[0][2]
    with pytest.raises(ValueError, match="id 2"):
        annotation_counts(anns, 6, 6, fill="pil")


# ----------------------------------------------------------------------------- real polygons, API and CLI

def _by_image(data):
    by_img = defaultdict(list)
    for a in data["annotations"]:
        by_img[a["image_id"]].append(a)
    return by_img


def _pillow_paint(anns, h, w):
    """labelme-style painting: each annotation's parts drawn with Pillow, later annotations on top."""
    ref = np.zeros((h, w), np.int64)
    for a in anns:
        if isinstance(a["segmentation"], list):
            ref[pillow(a["segmentation"], h, w) > 0] = 255 if a["iscrowd"] else a["category_id"]
    return ref


def test_real_coco_polygons_equal_pillow(real_data):
    """Every polygon of the real COCO 2017 sample (float vertices, multi-part) against Pillow."""
    n = differs_from_coco = 0
    for name in ("instances_val2017.json", "instances_train2017.json"):
        data = json.loads((real_data / TINY).with_name(name).read_text())
        size = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
        for a in data["annotations"]:
            if not isinstance(a["segmentation"], list):
                continue
            h, w = size[a["image_id"]]
            got, ref = ours(a["segmentation"], h, w), pillow(a["segmentation"], h, w)
            assert np.array_equal(got, ref), a["id"]
            differs_from_coco += not np.array_equal(got, polygon_mask(a["segmentation"], h, w))
            n += 1
    assert n >= 400 and differs_from_coco >= n // 2  # pil is its own convention, not coco's


def test_rasterize_annotations_pil_paints_pillow_masks(real_data):
    data = json.loads((real_data / TINY).read_text())
    by_img = _by_image(data)
    for img in data["images"][:30]:
        anns = [a for a in by_img[img["id"]] if isinstance(a["segmentation"], list)]
        h, w = img["height"], img["width"]
        assert np.array_equal(paint_annotations(anns, h, w, fill="pil"), _pillow_paint(anns, h, w)), img["id"]
        r = rasterize_annotations(anns, h, w, kind="instance", fill="pil")
        for i, a in enumerate(anns):
            assert np.array_equal(r.mask_of(i), pillow(a["segmentation"], h, w))


def test_cli_rasterize_fill_pil_equals_pillow(real_data, tmp_path):
    data = json.loads((real_data / TINY).read_text())
    keep = {img["id"] for img in data["images"]}
    data["annotations"] = [a for a in data["annotations"]
                           if a["image_id"] in keep and isinstance(a["segmentation"], list)]
    by_img = _by_image(data)
    far = {"id": 987654321, "image_id": data["images"][0]["id"], "category_id": 1, "iscrowd": 0,
           "segmentation": [[0, 0, 3e9, 0, 5, 5]], "area": 1, "bbox": [0, 0, 5, 5]}
    data["annotations"].append(far)  # beyond Pillow's int range: a finding, the run goes on
    src = tmp_path / "instances.json"
    src.write_text(json.dumps(data))
    out = tmp_path / "masks_pil"
    assert main(["rasterize", str(src), "--out", str(out), "--fill", "pil", "--quiet", "--workers", "1"]) == 0
    f = pq.read_table(out / "findings").to_pylist()
    assert [(r["annotation_id"], r["rule"]) for r in f] == [(far["id"], "invalid_annotation")]
    assert "2**30" in f[0]["message"]
    for img in data["images"]:
        h, w = img["height"], img["width"]
        got = read_mask(out / "masks" / (img["file_name"].rsplit(".", 1)[0] + ".png")).array
        assert np.array_equal(got, _pillow_paint(by_img[img["id"]], h, w)), img["id"]
    run = json.loads((out / "run.json").read_text())
    assert run["arguments"]["fill"] == "pil"


def test_cli_convert_fill_pil_equals_pillow(real_data, tmp_path):
    """COCO -> class masks with --fill pil: each mask is labelme's painting (Pillow, later on top)."""
    from fastmask.engine import load_report_table

    data = json.loads((real_data / TINY).read_text())
    data["annotations"] = [a for a in data["annotations"] if isinstance(a["segmentation"], list)]
    src = tmp_path / "instances.json"
    src.write_text(json.dumps(data))
    outs = {}
    for fill in ("pil", "coco"):
        out = tmp_path / f"conv_{fill}"
        assert main(["convert", str(src), "--to", "masks", "--out", str(out), "--fill", fill,
                     "--quiet", "--workers", "1"]) == 0
        assert json.loads((out / "run.json").read_text())["arguments"]["fill"] == fill
        rows = {r["image_id"]: r for r in load_report_table(out).to_pylist()}
        outs[fill] = {i: np.asarray(Image.open(out / "dataset" / r["mask_file"])) for i, r in rows.items()}
    by_img = _by_image(data)
    for img in data["images"]:
        ref = _pillow_paint(by_img[img["id"]], img["height"], img["width"])
        assert np.array_equal(outs["pil"][img["id"]], ref), img["id"]
    assert any(not np.array_equal(outs["pil"][i], outs["coco"][i]) for i in outs["pil"])  # the flag is used
