"""Hypothesis strategies shared by the tests: masks, polygons, RLE counts."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


@st.composite
def binary_masks(draw, max_side: int = 48, min_n: int = 1, max_n: int = 4):
    """(h, w, n) uint8 0/1 stacks: noise, blobs (long runs), empty and full, incl. 1xN and Nx1."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    n = draw(st.integers(min_n, max_n))
    kind = draw(st.sampled_from(["noise", "blobs", "empty", "full", "raw"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return (rng.random((h, w, n)) < draw(st.floats(0, 1))).astype(np.uint8)
    if kind == "empty":
        return np.zeros((h, w, n), np.uint8)
    if kind == "full":
        return np.ones((h, w, n), np.uint8)
    if kind == "raw":
        return draw(hnp.arrays(np.uint8, (h, w, n), elements=st.integers(0, 1)))
    out = np.zeros((h, w, n), np.uint8)
    for i in range(n):
        for _ in range(rng.integers(0, 5)):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            out[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1), i] = rng.integers(0, 2)
    return out


def layouts(stack: np.ndarray) -> list[np.ndarray]:
    """The same (h, w, n) stack in several memory layouts: Fortran, C, transposed (n,h,w) view, strided."""
    c_nhw = np.ascontiguousarray(stack.transpose(2, 0, 1))
    big = np.zeros(stack.shape[:2] + (2 * stack.shape[2],), np.uint8)
    big[:, :, ::2] = stack
    return [np.asfortranarray(stack), np.ascontiguousarray(stack), c_nhw.transpose(1, 2, 0), big[:, :, ::2]]


coordinates = st.one_of(
    st.floats(-20, 80, allow_nan=False),
    st.integers(-20, 80).map(float),
    st.integers(-40, 160).map(lambda v: v / 2),  # half-pixel ties
    st.floats(-1e6, 1e6, allow_nan=False),  # far outside the image; pycocotools walks (and allocates) 10 points per unit
)


@st.composite
def polygons(draw, min_vertices: int = 3, max_vertices: int = 12, coords=coordinates):
    """A flat COCO polygon: random, collinear, sub-pixel or axis-aligned."""
    kind = draw(st.sampled_from(["random", "random", "collinear", "subpixel", "box", "star"]))
    k = draw(st.integers(min_vertices, max_vertices))
    if kind == "random":
        return [draw(coords) for _ in range(2 * k)]
    if kind == "collinear":
        x0, y0 = draw(coords), draw(coords)
        dx, dy = draw(st.floats(-5, 5)), draw(st.floats(-5, 5))
        ts = [draw(st.floats(-10, 10)) for _ in range(k)]
        return [v for t in ts for v in (x0 + t * dx, y0 + t * dy)]
    if kind == "subpixel":
        x0, y0 = draw(st.floats(0, 40)), draw(st.floats(0, 40))
        return [v for _ in range(k) for v in (x0 + draw(st.floats(0, 0.9)), y0 + draw(st.floats(0, 0.9)))]
    if kind == "star":
        cx, cy = draw(st.floats(-5, 50)), draw(st.floats(-5, 50))
        rs = [draw(st.floats(0.5, 40)) for _ in range(k)]
        angles = np.sort([draw(st.floats(0, 2 * np.pi)) for _ in range(k)])
        return [float(v) for r, a in zip(rs, angles) for v in (cx + r * np.cos(a), cy + r * np.sin(a))]
    x0, y0 = draw(coords), draw(coords)
    x1, y1 = x0 + draw(st.floats(0, 50)), y0 + draw(st.floats(0, 50))
    return [x0, y0, x0, y1, x1, y1, x1, y0]


@st.composite
def counts_lists(draw, max_side: int = 40, min_side: int = 1):
    """Uncompressed RLE ``(h, w, counts)`` with counts summing to h*w, zeros allowed (non-canonical)."""
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    total = h * w
    cuts = sorted(draw(st.lists(st.integers(0, total), max_size=30)))
    bounds = [0] + cuts + [total]
    return h, w, [b - a for a, b in zip(bounds[:-1], bounds[1:])]
