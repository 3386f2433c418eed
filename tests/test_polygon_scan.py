"""Tests for kernels/polygon_scan.py: the ``inclusive`` and ``center`` fill modes.

References:
* center: brute force over every pixel centre with exact integer arithmetic
  (coordinates on a 1/4 grid, scaled by 4), or exact ``Fraction`` arithmetic for
  arbitrary floats; the half-open rule is evaluated literally.
* inclusive: ``cv2.fillPoly`` (bit-exact claim), and the geometric definition
  (lattice points inside or on the closed polygon, plus OpenCV's 8-connected
  Bresenham outline written here as the plain error-accumulating loop).
"""
from __future__ import annotations

import math
import time
from fractions import Fraction

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from fastmask.kernels.polygon_scan import scanline_fill

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- helpers

def fill(rings, h, w, inclusive, evenodd=True, out=None):
    """Call the kernel on a list of rings (each a sequence of (x, y))."""
    xy = np.concatenate([np.asarray(r, np.float64).reshape(-1) for r in rings])
    offs = np.zeros(len(rings) + 1, np.int64)
    offs[1:] = np.cumsum([2 * len(r) for r in rings])
    if out is None:
        out = np.zeros((h, w), np.uint8)
    scanline_fill(xy, offs, h, w, inclusive, evenodd, out)
    return out


def cv2_fill(rings, h, w):
    img = np.zeros((h, w), np.uint8)
    cv2.fillPoly(img, [np.asarray(r, np.int32).reshape(-1, 1, 2) for r in rings], 1)
    return img


def cv2_fill_canvas(rings, h, w):
    """cv2.fillPoly on a canvas containing every vertex, cropped to (h, w)."""
    allp = np.concatenate([np.asarray(r, np.int64) for r in rings])
    ox = max(0, -int(allp[:, 0].min()))
    oy = max(0, -int(allp[:, 1].min()))
    H = max(h, int(allp[:, 1].max()) + 1) + oy
    W = max(w, int(allp[:, 0].max()) + 1) + ox
    big = cv2_fill([[(x + ox, y + oy) for x, y in r] for r in rings], H, W)
    return big[oy:oy + h, ox:ox + w]


def pil_fill(pts, h, w):
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).polygon([tuple(map(int, p)) for p in pts], fill=1)
    return np.array(im)


def edges(ring):
    n = len(ring)
    for i in range(n):
        yield ring[i - 1], ring[i]


def ref_center_grid(rings_q, q, h, w, evenodd):
    """Center-mode reference for integer coordinates scaled by q (real = v / q, q even):
    pixel (x, y) is in when an odd number of edges with top <= Y < bottom cross at
    X <= x + 1/2 (Y = y + 1/2), all in exact int64 arithmetic."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.int64)
    PX = q * xs + q // 2
    PY = q * ys + q // 2
    total = np.zeros((h, w), bool)
    acc = np.zeros((h, w), bool)
    for ring in rings_q:
        par = np.zeros((h, w), bool)
        for (xa, ya), (xb, yb) in edges(ring):
            if ya == yb:
                continue
            (xt, yt), (xo, yo) = ((xa, ya), (xb, yb)) if ya < yb else ((xb, yb), (xa, ya))
            rows = (yt <= PY) & (PY < yo)
            cond = xt * (yo - yt) + (PY - yt) * (xo - xt) <= PX * (yo - yt)
            par ^= rows & cond
        if evenodd:
            acc ^= par
        else:
            total |= par
    return (acc if evenodd else total).astype(np.uint8)


def ref_center_fraction(rings, h, w, evenodd):
    """Center-mode reference in exact rationals for arbitrary float vertices; also
    returns, per row, the exact crossings (to locate near-ties)."""
    res = np.zeros((h, w), np.uint8)
    acc = np.zeros((h, w), np.uint8)
    crossings = [[] for _ in range(h)]
    cols = np.arange(w)
    for ring in rings:
        fr = [(Fraction(x), Fraction(y)) for x, y in ring]
        par = np.zeros((h, w), np.uint8)
        for (xa, ya), (xb, yb) in edges(fr):
            if ya == yb:
                continue
            (xt, yt), (xo, yo) = ((xa, ya), (xb, yb)) if ya < yb else ((xb, yb), (xa, ya))
            lo = max(0, math.ceil(yt - Fraction(1, 2)))
            hi = min(h, math.ceil(yo - Fraction(1, 2)))
            for r in range(lo, hi):
                Y = r + Fraction(1, 2)
                X = xt + (Y - yt) * (xo - xt) / (yo - yt)
                crossings[r].append(X)
                c = math.ceil(X - Fraction(1, 2))
                par[r] ^= cols >= c
        if evenodd:
            acc ^= par
        else:
            res |= par
    return (acc if evenodd else res), crossings


def bresenham(xa, ya, xb, yb):
    """OpenCV's 8-connected line (LineIterator, left to right) as the plain loop."""
    if xb < xa:
        xa, ya, xb, yb = xb, yb, xa, ya
    dx, dy = xb - xa, yb - ya
    sx, sy = 1, 1
    if dy < 0:
        dy, sy = -dy, -1
    vert = dy > dx
    if vert:
        dx, dy = dy, dx
    err = dx - 2 * dy
    x, y = xa, ya
    pts = []
    for _ in range(dx + 1):
        pts.append((x, y))
        step_minor = err < 0
        err += -2 * dy + (2 * dx if step_minor else 0)
        if vert:
            y += sy
            x += sx if step_minor else 0
        else:
            x += sx
            y += sy if step_minor else 0
    return pts


def bresenham_cropped(xa, ya, xb, yb, h, w):
    """The same line in closed form, only over the image's part of the major axis
    (Python ints, any magnitude): pixel at major step j has minor offset
    ceil((2 * minor * j - major) / (2 * major)), counted from the left end point."""
    if xb < xa:
        xa, ya, xb, yb = xb, yb, xa, ya
    dx, dy = xb - xa, yb - ya
    sy = 1 if dy >= 0 else -1
    dy = abs(dy)
    pts = []
    if dx == 0 and dy == 0:
        return [(xa, ya)] if 0 <= xa < w and 0 <= ya < h else []
    if dx >= dy:
        for x in range(max(xa, 0), min(xb, w - 1) + 1):
            j = x - xa
            y = ya + sy * -((dx - 2 * dy * j) // (2 * dx))
            if 0 <= y < h:
                pts.append((x, y))
    else:
        for y in range(0, h):
            j = (y - ya) * sy
            if 0 <= j <= dy:
                x = xa + -((dy - 2 * dx * j) // (2 * dy))
                if 0 <= x < w:
                    pts.append((x, y))
    return pts


def ref_inclusive(rings, h, w, evenodd):
    """Geometric inclusive definition for integer vertices: lattice points (x, y)
    strictly inside (odd number of crossings, half-open rows, strictly left) or on
    an edge, plus the Bresenham outline of every edge."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.int64)
    res = np.zeros((h, w), bool)
    acc = np.zeros((h, w), bool)
    on_any = np.zeros((h, w), bool)
    for ring in rings:
        par = np.zeros((h, w), bool)
        on = np.zeros((h, w), bool)
        for (xa, ya), (xb, yb) in edges(ring):
            cross = (xb - xa) * (ys - ya) - (yb - ya) * (xs - xa)
            on |= (cross == 0) & (min(xa, xb) <= xs) & (xs <= max(xa, xb)) & (min(ya, yb) <= ys) & (ys <= max(ya, yb))
            for x, y in bresenham_cropped(xa, ya, xb, yb, h, w):
                on[y, x] = True
            if ya == yb:
                continue
            (xt, yt), (xo, yo) = ((xa, ya), (xb, yb)) if ya < yb else ((xb, yb), (xa, ya))
            rows = (yt <= ys) & (ys < yo)
            par ^= rows & (xt * (yo - yt) + (ys - yt) * (xo - xt) < xs * (yo - yt))
        on_any |= on
        if evenodd:
            acc ^= par
        else:
            res |= par | on
    return ((acc | on_any) if evenodd else res).astype(np.uint8)


# ----------------------------------------------------------------------------- strategies

def int_ring(lo, hi, min_n=3, max_n=10):
    return st.lists(st.tuples(st.integers(lo, hi), st.integers(lo, hi)), min_size=min_n, max_size=max_n)


sizes = st.tuples(st.integers(1, 24), st.integers(1, 24))


# ----------------------------------------------------------------------------- worked examples

SQUARE = [(1, 1), (1, 4), (4, 4), (4, 1)]


def test_worked_example_inclusive_16_center_9():
    inc = fill([SQUARE], 6, 6, True)
    cen = fill([SQUARE], 6, 6, False)
    assert inc.sum() == 16 and inc[1:5, 1:5].all()
    assert cen.sum() == 9 and cen[1:4, 1:4].all()
    assert np.array_equal(inc, cv2_fill([SQUARE], 6, 6))
    assert np.array_equal(inc, pil_fill(SQUARE, 6, 6))


def test_center_half_open_ties():
    # edges exactly through pixel centres: left/top edge in, right/bottom edge out
    sq = [(0.5, 0.5), (2.5, 0.5), (2.5, 2.5), (0.5, 2.5)]
    m = fill([sq], 4, 4, False)
    exp = np.zeros((4, 4), np.uint8)
    exp[0:2, 0:2] = 1
    assert np.array_equal(m, exp)
    # a diamond whose vertices sit on pixel centres: on row 1 the crossings are 0.5
    # (left vertex: in) and 2.5 (right vertex: out); the top vertex's two crossings
    # coincide and cancel, the bottom vertex's edges end there (half-open): both out
    dia = [(1.5, 0.5), (2.5, 1.5), (1.5, 2.5), (0.5, 1.5)]
    m = fill([dia], 3, 3, False)
    assert np.array_equal(m, ref_center_grid([[(int(4 * x), int(4 * y)) for x, y in dia]], 4, 3, 3, True))
    assert m[1, 0] == 1 and m[1, 1] == 1 and m.sum() == 2


def test_or_into_out_never_clears():
    out = np.zeros((6, 6), np.uint8)
    out[0, 0] = 1
    out[2, 2] = 1
    fill([[(4, 4), (5, 4), (5, 5)]], 6, 6, False, out=out)
    assert out[0, 0] == 1 and out[2, 2] == 1
    fill([SQUARE], 6, 6, False, out=out)
    assert out[0, 0] == 1 and out[1:4, 1:4].all()


# ----------------------------------------------------------------------------- center mode

@SETTINGS
@given(st.lists(int_ring(-12, 110), min_size=1, max_size=3), sizes, st.booleans())
def test_center_matches_exact_reference_on_quarter_grid(rings_q, hw, evenodd):
    h, w = hw
    rings = [[(x / 4, y / 4) for x, y in r] for r in rings_q]
    got = fill(rings, h, w, False, evenodd)
    assert np.array_equal(got, ref_center_grid(rings_q, 4, h, w, evenodd))


coord = st.floats(-6, 30, allow_nan=False, allow_infinity=False)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.tuples(coord, coord), min_size=3, max_size=8), min_size=1, max_size=2), st.booleans())
def test_center_matches_fraction_reference_on_arbitrary_floats(rings, evenodd):
    h, w = 20, 22
    got = fill(rings, h, w, False, evenodd)
    exp, crossings = ref_center_fraction(rings, h, w, evenodd)
    bad = np.argwhere(got != exp)
    # float evaluation may only differ where a pixel centre is within 1e-9 px of an
    # exact crossing of its row
    for y, x in bad:
        c = Fraction(int(x)) + Fraction(1, 2)
        assert any(abs(float(c - X)) < 1e-9 for X in crossings[y]), (y, x)


# ----------------------------------------------------------------------------- inclusive mode

@SETTINGS
@given(st.data(), sizes, st.integers(1, 3), st.booleans())
def test_inclusive_equals_cv2_fillpoly_inside_image(data, hw, nrings, evenodd):
    h, w = hw
    rings = [data.draw(st.lists(st.tuples(st.integers(0, w - 1), st.integers(0, h - 1)), min_size=3, max_size=10))
             for _ in range(nrings)]
    got = fill(rings, h, w, True, evenodd)
    if evenodd:
        exp = cv2_fill(rings, h, w)  # cv2 pairs the crossings of all contours
    else:
        exp = np.zeros((h, w), np.uint8)
        for r in rings:
            exp |= cv2_fill([r], h, w)
    assert np.array_equal(got, exp)


@SETTINGS
@given(st.lists(int_ring(-15, 40), min_size=1, max_size=3), sizes, st.booleans())
def test_inclusive_matches_geometric_definition_and_cv2_canvas(rings, hw, evenodd):
    h, w = hw
    got = fill(rings, h, w, True, evenodd)
    assert np.array_equal(got, ref_inclusive(rings, h, w, evenodd))
    if evenodd:
        # cv2 on a canvas that contains the polygon, cropped (cv2 on the small image
        # clips edges first, which changes pixels: that is not our semantics)
        assert np.array_equal(got, cv2_fill_canvas(rings, h, w))


@SETTINGS
@given(int_ring(-15, 40), st.integers(-20, 20), st.integers(-20, 20))
def test_inclusive_and_center_are_translation_and_crop_consistent(ring, tx, ty):
    big_inc = fill([ring], 60, 60, True)
    big_cen = fill([[(x + 0.25, y - 0.5) for x, y in ring]], 60, 60, False)
    moved = [(x - tx, y - ty) for x, y in ring]
    sub_inc = fill([moved], 20, 20, True)
    sub_cen = fill([[(x + 0.25, y - 0.5) for x, y in moved]], 20, 20, False)
    # compare on the part of the small image that maps into the big one
    ys, xs = np.mgrid[0:20, 0:20]
    X, Y = xs + tx, ys + ty
    ok = (X >= 0) & (X < 60) & (Y >= 0) & (Y < 60)
    assert np.array_equal(sub_inc[ok], big_inc[Y[ok], X[ok]])
    assert np.array_equal(sub_cen[ok], big_cen[Y[ok], X[ok]])


def test_inclusive_lines_match_cv2_line():
    rng = np.random.default_rng(3)
    for _ in range(500):
        xa, ya, xb, yb = (int(v) for v in rng.integers(0, 40, 4))
        img = np.zeros((40, 40), np.uint8)
        cv2.line(img, (xa, ya), (xb, yb), 1, 1, cv2.LINE_8)
        ref = np.zeros((40, 40), np.uint8)
        for x, y in bresenham(xa, ya, xb, yb):
            ref[y, x] = 1
        assert np.array_equal(img, ref)
        # the closed form used by ref_inclusive is the same line, also when cropped
        crop = np.zeros((50, 50), np.uint8)
        for x, y in bresenham_cropped(xa - 7, ya - 5, xb - 7, yb - 5, 40, 40):
            crop[y + 5, x + 7] = 1
        assert np.array_equal(crop[5:40, 7:40], ref[5:, 7:])
        # a degenerate 3-vertex ring going there and back is exactly the line
        assert np.array_equal(fill([[(xa, ya), (xb, yb), (xa, ya)]], 40, 40, True), ref)


def test_inclusive_rounds_non_integer_vertices_half_up():
    ring = [(0.5, 0.49), (3.4999, 0.5), (3.5, 2.5), (0.6, 2.4)]
    rounded = [(1, 0), (3, 1), (4, 3), (1, 2)]
    assert np.array_equal(fill([ring], 6, 6, True), cv2_fill([rounded], 6, 6))


def test_inclusive_exact_with_long_edges_vs_cv2():
    # edges spanning >= 256 rows exercise the fixed-point slope truncation
    rng = np.random.default_rng(11)
    for _ in range(25):
        n = int(rng.integers(3, 12))
        ring = list(zip(rng.integers(0, 690, n).tolist(), rng.integers(0, 700, n).tolist()))
        assert np.array_equal(fill([ring], 700, 690, True), cv2_fill([ring], 700, 690))


def _random_convex(rng, lo, hi):
    while True:
        p = rng.integers(lo, hi, (int(rng.integers(3, 12)), 2))
        c = p.mean(0)
        ang = np.arctan2(p[:, 1] - c[1], p[:, 0] - c[0])
        p = p[np.argsort(ang)]
        # keep strictly convex, counter-clockwise rings only (gift-wrap check)
        d1 = np.roll(p, -1, 0) - p
        d2 = np.roll(p, -2, 0) - np.roll(p, -1, 0)
        if len(np.unique(p, axis=0)) == len(p) and (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] > 0).all():
            return [tuple(int(v) for v in q) for q in p]


def test_inclusive_agreement_figures_cv2_and_pil():
    """Quantified agreement (figures quoted in the module docstring / report):
    rectilinear shapes: identical to cv2 and PIL; random convex and star-shaped
    integer polygons inside the image: identical to cv2; PIL draws a thinner
    boundary: its pixels are (almost) a subset of ours and every difference lies
    within 1 px of the polygon outline."""
    rng = np.random.default_rng(7)
    h = w = 40
    for _ in range(200):
        x0, x1 = sorted(int(v) for v in rng.integers(0, 40, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, 40, 2))
        r = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        ours = fill([r], h, w, True)
        assert np.array_equal(ours, cv2_fill([r], h, w))
        assert np.array_equal(ours, pil_fill(r, h, w))
    diffs, extra_pil = [], 0
    for i in range(300):
        if i % 2:
            r = _random_convex(rng, 0, 40)
        else:
            n = int(rng.integers(5, 15))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(2, 14, n)
            r = [(int(round(20 + a * np.cos(t))), int(round(20 + a * np.sin(t)))) for a, t in zip(rad, ang)]
        ours = fill([r], h, w, True)
        assert np.array_equal(ours, cv2_fill([r], h, w))
        pil = pil_fill(r, h, w)
        d = np.argwhere(ours != pil)
        diffs.append(len(d))
        extra_pil += int(((pil == 1) & (ours == 0)).sum())
        lines = np.zeros((h, w), np.uint8)
        for (xa, ya), (xb, yb) in edges(r):
            for x, y in bresenham(xa, ya, xb, yb):
                lines[y, x] = 1
        near = cv2.dilate(lines, np.ones((3, 3), np.uint8))
        assert near[d[:, 0], d[:, 1]].all()
    diffs = np.array(diffs)
    assert (diffs == 0).mean() < 0.2  # PIL really differs (this is why cv2 is the oracle)
    assert diffs.mean() < 20 and diffs.max() <= 40
    assert extra_pil <= 0.02 * diffs.sum()  # PIL is (almost) a subset of ours


# ----------------------------------------------------------------------------- fill rules

def test_fill_rules_hole():
    outer = [(0, 0), (9, 0), (9, 9), (0, 9)]
    hole = [(3, 3), (6, 3), (6, 6), (3, 6)]
    for inclusive in (True, False):
        eo = fill([outer, hole], 10, 10, inclusive, True)
        un = fill([outer, hole], 10, 10, inclusive, False)
        assert un.all() if inclusive else un[:9, :9].all()
        if inclusive:
            # the hole's outline belongs to the shape, its interior is cut
            assert not eo[4:6, 4:6].any() and eo[3, 3:7].all() and eo.sum() == 100 - 4
            assert np.array_equal(eo, cv2_fill([outer, hole], 10, 10))
        else:
            assert not eo[3:6, 3:6].any() and eo.sum() == 81 - 9
    # two overlapping squares: evenodd cuts the overlap, union keeps it
    a = [(0, 0), (4, 0), (4, 4), (0, 4)]
    b = [(2, 2), (6, 2), (6, 6), (2, 6)]
    eo = fill([a, b], 8, 8, False, True)
    un = fill([a, b], 8, 8, False, False)
    assert un.sum() == 16 + 16 - 4 and eo.sum() == 16 + 16 - 8 and not eo[2:4, 2:4].any()


# ----------------------------------------------------------------------------- degenerate shapes

def test_degenerate_shapes():
    # collinear: center is empty; inclusive is the Bresenham segment
    col = [(1, 1), (4, 3), (7, 5)]
    assert fill([col], 8, 8, False).sum() == 0
    ref = np.zeros((8, 8), np.uint8)
    for x, y in bresenham(1, 1, 7, 5):
        ref[y, x] = 1
    assert np.array_equal(fill([col], 8, 8, True), ref)
    assert np.array_equal(fill([col], 8, 8, True), cv2_fill([col], 8, 8))
    # zero area (all vertices equal)
    pt = [(3.2, 3.7)] * 4
    assert fill([pt], 8, 8, False).sum() == 0
    one = fill([pt], 8, 8, True)
    assert one.sum() == 1 and one[4, 3] == 1
    # horizontal / vertical slivers
    assert fill([[(1, 2), (6, 2), (3, 2)]], 8, 8, False).sum() == 0
    assert fill([[(1, 2), (6, 2), (3, 2)]], 8, 8, True)[2, 1:7].all()
    # tiny sub-pixel polygons: center keeps exactly the centres they contain
    tiny = [(2.49, 2.49), (2.52, 2.49), (2.5, 2.52)]
    m = fill([tiny], 5, 5, False)
    assert m.sum() == 1 and m[2, 2] == 1
    assert fill([[(2.1, 2.1), (2.3, 2.1), (2.2, 2.3)]], 5, 5, False).sum() == 0
    # a bow tie (self-intersecting) matches the references
    bow = [(0, 0), (6, 6), (6, 0), (0, 6)]
    assert np.array_equal(fill([bow], 8, 8, True), cv2_fill([bow], 8, 8))
    q = [(4 * x, 4 * y) for x, y in bow]
    assert np.array_equal(fill([bow], 8, 8, False), ref_center_grid([q], 4, 8, 8, True))


def test_tiny_images():
    tri = [(-2, -2), (3, -1), (0, 5)]
    for h, w in ((1, 1), (1, 7), (7, 1), (2, 3)):
        for inclusive in (True, False):
            got = fill([tri], h, w, inclusive)
            if inclusive:
                exp = ref_inclusive([tri], h, w, True)
            else:
                exp = ref_center_grid([[(4 * x, 4 * y) for x, y in tri]], 4, h, w, True)
            assert np.array_equal(got, exp), (h, w, inclusive)
    assert fill([SQUARE], 1, 1, True).sum() == 0
    assert fill([[(-1, -1), (2, -1), (2, 2), (-1, 2)]], 1, 1, False)[0, 0] == 1
    assert fill([[(0.4, 0.4), (0.6, 0.4), (0.5, 0.6)]], 1, 1, False)[0, 0] == 1
    m = fill([[(0, 0), (10, 0), (10, 1)]], 1, 20, False)  # 1 x N: centre row y = 0.5
    exp = ref_center_grid([[(0, 0), (40, 0), (40, 4)]], 4, 1, 20, True)
    assert np.array_equal(m, exp) and m.sum() == 5 and m[0, 5:10].all()
    # degenerate image sizes are a no-op
    fill([SQUARE], 0, 5, True, out=np.zeros((0, 5), np.uint8))


# ----------------------------------------------------------------------------- clipping, huge coordinates

BIG = 1e300


def test_huge_coordinates_axis_aligned_exact():
    for inclusive in (True, False):
        m = fill([[(3.2, -BIG), (BIG, -BIG), (BIG, BIG), (3.2, BIG)]], 9, 11, inclusive)
        exp = np.zeros((9, 11), np.uint8)
        exp[:, 3:] = 1  # inclusive: x rounds to 3; center: centres >= 3.5 > 3.2
        assert np.array_equal(m, exp)
        full = fill([[(-BIG, -BIG), (BIG, -BIG), (BIG, BIG), (-BIG, BIG)]], 5, 6, inclusive)
        assert full.all()
        off = fill([[(-BIG, -BIG), (-5.0, -BIG), (-5.0, BIG), (-BIG, BIG)]], 5, 6, inclusive)
        assert not off.any()
    # a band crossing the image with far-away ends, a hole cut from it
    band = [(-1.7e308, 2.0), (1.7e308, 2.0), (1.7e308, 6.0), (-1.7e308, 6.0)]
    hole = [(2.0, 3.0), (5.0, 3.0), (5.0, 5.0), (2.0, 5.0)]
    m = fill([band, hole], 8, 8, False, True)
    exp = np.zeros((8, 8), np.uint8)
    exp[2:6, :] = 1
    exp[3:5, 2:5] = 0
    assert np.array_equal(m, exp)


def test_far_vertices_match_exact_geometry():
    # apex far above: nearly vertical edges; exact references in rationals / ints
    tri = [(5.0, 2.0), (12.0, 2.0), (8.5, 1e12)]
    exp, _ = ref_center_fraction([tri], 20, 20, True)
    assert np.array_equal(fill([tri], 20, 20, False), exp)
    tri_i = [(5, 2), (12, 2), (9, 10 ** 12)]
    assert np.array_equal(fill([tri_i], 20, 20, True), ref_inclusive([tri_i], 20, 20, True))
    # a wedge from 1e15 to the left, within the image it is a thin slab
    wedge = [(-1e15, 3.0), (7.0, 6.0), (-1e15, 9.0)]
    exp, _ = ref_center_fraction([wedge], 12, 12, True)
    assert np.array_equal(fill([wedge], 12, 12, False), exp)


far = st.sampled_from([-BIG, BIG, -1e18, 1e18, -1.7e308, 1.7e308, -3e9, 3e9])
mixed = st.one_of(st.integers(-10, 40).map(float), far)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(mixed, mixed), min_size=3, max_size=8), min_size=1, max_size=3),
       st.booleans(), st.booleans())
def test_huge_coordinates_never_hang_and_stay_binary(rings, inclusive, evenodd):
    t0 = time.perf_counter()
    m = fill(rings, 30, 40, inclusive, evenodd)
    assert time.perf_counter() - t0 < 1.0
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    # When no edge joins two far vertices, the float clipping is well conditioned and
    # center mode matches exact rationals (up to 1e-6 px ties). An edge between two
    # far vertices (e.g. (-1e300, -1e300) -> (1e300, 1e300)) is only known to float64
    # precision of its end points, so there we only require termination and 0/1.
    def is_far(p):
        return max(abs(p[0]), abs(p[1])) > 1e6

    conditioned = all(not (is_far(a) and is_far(b)) for r in rings for a, b in edges(r))
    if not inclusive and conditioned:
        exp, crossings = ref_center_fraction(rings, 30, 40, evenodd)
        for y, x in np.argwhere(m != exp):
            c = Fraction(int(x)) + Fraction(1, 2)
            assert any(abs(c - X) < Fraction(1, 10 ** 6) for X in crossings[y]), (y, x)


# ----------------------------------------------------------------------------- big polygons

def test_million_vertex_circle():
    n = 1_000_000
    h = w = 1000
    cx, cy, R = 500.3, 499.8, 420.0
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = np.stack([cx + R * np.cos(t), cy + R * np.sin(t)], 1)
    t0 = time.perf_counter()
    m = fill([ring], h, w, False)
    assert time.perf_counter() - t0 < 5.0
    ys, xs = np.mgrid[0:h, 0:w]
    d = np.hypot(xs + 0.5 - cx, ys + 0.5 - cy)
    inner = R * np.cos(np.pi / n) - 1e-6
    assert m[d < inner].all() and not m[d > R + 1e-6].any()
    assert abs(int(m.sum()) - np.pi * R * R) < 2 * np.pi * R * 0.01 + 10
    # inclusive: the rounded polygon (many repeated vertices) is exactly cv2's
    mi = fill([ring], h, w, True)
    ri = np.floor(ring + 0.5).astype(np.int32)
    assert np.array_equal(mi, cv2_fill([ri], h, w))


def test_banded_processing_of_crowded_rows():
    # 2 * 1100 edges each crossing all 600 rows: 1.3e6 crossings > the 2**20 budget
    h, w = 600, 1200
    k = 1100
    xs = np.arange(2 * k) * (w - 1) / (2 * k - 1)
    ys = np.where(np.arange(2 * k) % 2 == 0, 0, h - 1)
    zig = [(int(round(x)), int(y)) for x, y in zip(xs, ys)] + [(w - 1, h + 5), (0, h + 5)]
    got = fill([zig], h, w, True)
    assert np.array_equal(got, cv2_fill_canvas([zig], h, w))
    # center mode on a 1/4 grid, reference row by row in exact integers
    zq = [(4 * x + 1, 4 * y + 2) for x, y in zig]
    got = fill([[(x / 4, y / 4) for x, y in zq]], h, w, False)
    exp = np.zeros((h, w), np.uint8)
    E = np.array([(a[0], a[1], b[0], b[1]) for a, b in edges(zq)], np.int64)
    E = E[E[:, 1] != E[:, 3]]
    top = np.where(E[:, 1] < E[:, 3], 0, 2)
    xt = np.where(top == 0, E[:, 0], E[:, 2]); yt = np.minimum(E[:, 1], E[:, 3])
    xo = np.where(top == 0, E[:, 2], E[:, 0]); yo = np.maximum(E[:, 1], E[:, 3])
    for r in range(h):
        Y = 4 * r + 2
        a = (yt <= Y) & (Y < yo)
        num = xt[a] * (yo[a] - yt[a]) + (Y - yt[a]) * (xo[a] - xt[a]) - 2 * (yo[a] - yt[a])  # 4*(X - 1/2)*dy
        c = -((-num) // (4 * (yo[a] - yt[a])))  # ceil(X - 1/2)
        par = np.zeros(w + 1, np.uint8)
        np.bitwise_xor.at(par, np.clip(c, 0, w), 1)
        exp[r] = np.bitwise_xor.accumulate(par)[:w]
    assert np.array_equal(got, exp)
