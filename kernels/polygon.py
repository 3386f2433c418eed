"""Polygon -> pixels in COCO's ``coco`` mode (exactly pycocotools' rleFrPoly).

pycocotools upsamples the polygon 5x, walks every edge point by point and
keeps the points where the walk crosses the centre line of a pixel column;
each kept point toggles the column from its row down (per-column even-odd).
Walking every point costs ~10 points per pixel of perimeter and is unbounded
for huge coordinates. Here the same crossings are computed in closed form,
one per (edge, image column), with the identical floating-point expressions,
so the pixel set is bit-identical while the work is bounded by the columns an
edge spans inside the image.

In the 5x upsampled grid a crossing of pixel column ``k`` is a pair of
consecutive walk points whose ``u`` coordinates are ``5k+2`` and ``5k+3``; its
row is ``ceil(clip((min(v) + 0.5) / 5 - 0.5, 0, h))``. A row equal to ``h``
toggles nothing inside the column (pycocotools places it at the start of the
next column, where it cancels out: every column is crossed an even number of
times).
"""
from __future__ import annotations



import numpy as np
from numba import njit

from .rle import _grow

_SCALE = 5.0
_MAX_ADJUST = 64  # bound for the exact-crossing search (only float-extreme inputs need more)


@njit(cache=True, nogil=True, error_model="numpy")
def _row_of(vmin, h):
    yd = (vmin + 0.5) / _SCALE - 0.5
    if yd < 0.0:
        yd = 0.0
    elif yd > h:
        yd = float(h)
    return np.int64(np.ceil(yd))


@njit(cache=True, nogil=True, error_model="numpy")
def _walk(a, s, t):
    """The walk's rounded coordinate ``(int)(a + s*t + .5)`` of maskApi.c, kept in float64."""
    return np.trunc(a + s * t + 0.5)


@njit(cache=True, nogil=True, error_model="numpy")
def coco_crossings(xy, start, stop, h, w, cols, rows, n):
    """Append the column crossings of one polygon ``xy[start:stop]`` to ``cols``/``rows`` from index ``n``.

    Returns ``(cols, rows, n)`` (the arrays may have been reallocated).
    """
    k = (stop - start) // 2
    if k == 0:
        return cols, rows, n
    for j in range(k):
        j2 = j + 1 if j + 1 < k else 0
        xs = np.trunc(_SCALE * xy[start + 2 * j] + 0.5)
        ys = np.trunc(_SCALE * xy[start + 2 * j + 1] + 0.5)
        xe = np.trunc(_SCALE * xy[start + 2 * j2] + 0.5)
        ye = np.trunc(_SCALE * xy[start + 2 * j2 + 1] + 0.5)
        dx = abs(xe - xs)
        dy = abs(ys - ye)
        if dx == 0.0 and dy == 0.0:
            continue  # a repeated vertex: one walk point, no crossing
        if dx >= dy:
            if xs > xe:
                xs, xe = xe, xs
                ys, ye = ye, ys
            s = (ye - ys) / dx
            # pairs (t, t+1), t in [0, dx-1], with xs + t == 5c + 2
            cmin = max(0.0, np.ceil((xs - 2.0) / _SCALE))
            cmax = min(w - 1.0, np.floor((xe - 3.0) / _SCALE))
            if cmin > cmax:
                continue
            c0 = np.int64(cmin)
            c1 = np.int64(cmax)
            cols = _grow(cols, n + c1 - c0 + 1)
            rows = _grow(rows, n + c1 - c0 + 1)
            for c in range(c0, c1 + 1):
                t = _SCALE * c + 2.0 - xs
                v0 = _walk(ys, s, t)
                v1 = _walk(ys, s, t + 1.0)
                cols[n] = c
                rows[n] = _row_of(min(v0, v1), h)
                n += 1
        else:
            if ys > ye:
                xs, xe = xe, xs
                ys, ye = ye, ys
            s = (xe - xs) / dy
            if s == 0.0:
                continue  # vertical: the walk never changes column
            u0 = _walk(xs, s, 0.0)
            u1 = _walk(xs, s, dy)
            if s > 0.0:
                cmin = max(0.0, np.ceil((u0 - 2.0) / _SCALE))
                cmax = min(w - 1.0, np.floor((u1 - 3.0) / _SCALE))
            else:
                cmin = max(0.0, np.ceil((u1 - 2.0) / _SCALE))
                cmax = min(w - 1.0, np.floor((u0 - 3.0) / _SCALE))
            if cmin > cmax:
                continue
            c0 = np.int64(cmin)
            c1 = np.int64(cmax)
            cols = _grow(cols, n + c1 - c0 + 1)
            rows = _grow(rows, n + c1 - c0 + 1)
            for c in range(c0, c1 + 1):
                lo = _SCALE * c + 2.0  # the crossing pair is (lo, lo + 1) in walk columns
                # first t whose walk column is past the crossing (>= lo+1 rising, <= lo falling)
                est = (lo + 0.5 - xs) / s
                if s > 0.0:
                    t1 = np.ceil(est)
                else:
                    t1 = np.floor(est) + 1.0
                t1 = min(max(t1, 1.0), dy)
                for _ in range(_MAX_ADJUST):
                    if t1 > 1.0 and (_walk(xs, s, t1 - 1.0) >= lo + 1.0 if s > 0.0 else _walk(xs, s, t1 - 1.0) <= lo):
                        t1 -= 1.0
                    else:
                        break
                for _ in range(_MAX_ADJUST):
                    if t1 < dy and (_walk(xs, s, t1) < lo + 1.0 if s > 0.0 else _walk(xs, s, t1) > lo):
                        t1 += 1.0
                    else:
                        break
                cols[n] = c
                rows[n] = _row_of(ys + t1 - 1.0, h)
                n += 1
    return cols, rows, n


@njit(cache=True, nogil=True, error_model="numpy")
def crossings_to_counts(cols, rows, n, h, w):
    """RLE counts from crossings, as maskApi.c: sort positions, difference, fold double toggles."""
    a = np.empty(n + 1, np.int64)
    for i in range(n):
        a[i] = cols[i] * h + rows[i]
    a[:n].sort()
    a[n] = h * w
    k = n + 1
    p = np.int64(0)
    for j in range(k):
        t = a[j]
        a[j] -= p
        p = t
    b = np.empty(k, np.uint32)
    m = 0
    j = 0
    b[m] = a[j]
    m += 1
    j += 1
    while j < k:
        if a[j] > 0:
            b[m] = a[j]
            m += 1
            j += 1
        else:
            j += 1
            if j < k:
                b[m - 1] += a[j]
                j += 1
    return b[:m].copy()


@njit(cache=True, nogil=True, error_model="numpy")
def coco_polygons_to_rles(xy, coord_offsets, h, w):
    """One RLE per polygon (pycocotools' frPoly): ``polygon i = xy[coord_offsets[i]:coord_offsets[i+1]]``."""
    n_poly = coord_offsets.shape[0] - 1
    cols = np.empty(1024, np.int64)
    rows = np.empty(1024, np.int64)
    counts = np.empty(max(16, 8 * n_poly), np.uint32)
    offsets = np.zeros(n_poly + 1, np.int64)
    k = 0
    for i in range(n_poly):
        cols, rows, n = coco_crossings(xy, coord_offsets[i], coord_offsets[i + 1], h, w, cols, rows, 0)
        b = crossings_to_counts(cols, rows, n, h, w)
        counts = _grow(counts, k + b.shape[0])
        counts[k : k + b.shape[0]] = b
        k += b.shape[0]
        offsets[i + 1] = k
    return counts[:k].copy(), offsets


@njit(cache=True, nogil=True, error_model="numpy")
def _toggle_fill(cols, rows, n, h, out):
    """OR the per-column parity fill of the crossings into ``out`` (work limited to their bounding box)."""
    if n == 0:
        return
    c0 = cols[0]
    c1 = cols[0]
    r0 = h
    r1 = -1
    clipped = False
    for i in range(n):
        c = cols[i]
        if c < c0:
            c0 = c
        if c > c1:
            c1 = c
        r = rows[i]
        if r < h:  # row h toggles nothing inside the column
            if r < r0:
                r0 = r
            if r > r1:
                r1 = r
        else:
            clipped = True
    if r1 < 0:
        return
    if clipped:
        # a crossing clipped to row h leaves its column filled down to the last row
        r1 = h - 1
    width = c1 - c0 + 1
    tog = np.zeros((r1 - r0 + 1, width), np.uint8)
    for i in range(n):
        r = rows[i]
        if r < h:
            tog[r - r0, cols[i] - c0] ^= 1
    # every column is toggled an even number of times, so all parities are 0 after row r1
    # (unless toggles were clipped to row h, handled above)
    cur = np.zeros(width, np.uint8)
    for r in range(r0, r1 + 1):
        trow = tog[r - r0]
        orow = out[r]
        for c in range(width):
            cur[c] ^= trow[c]
            orow[c0 + c] |= cur[c]


@njit(cache=True, nogil=True, error_model="numpy")
def coco_fill(xy, coord_offsets, h, w, evenodd, out):
    """Fill polygons into a C-ordered (h, w) uint8 ``out`` with pycocotools' pixel set.

    ``evenodd=False``: each polygon's own parity, polygons unioned (COCO parts).
    ``evenodd=True``: parity over all polygons together, so rings cut holes.
    """
    n_poly = coord_offsets.shape[0] - 1
    cols = np.empty(1024, np.int64)
    rows = np.empty(1024, np.int64)
    if evenodd:
        n = 0
        for i in range(n_poly):
            cols, rows, n = coco_crossings(xy, coord_offsets[i], coord_offsets[i + 1], h, w, cols, rows, n)
        _toggle_fill(cols, rows, n, h, out)
    else:
        for i in range(n_poly):
            cols, rows, n = coco_crossings(xy, coord_offsets[i], coord_offsets[i + 1], h, w, cols, rows, 0)
            _toggle_fill(cols, rows, n, h, out)


@njit(cache=True, nogil=True, error_model="numpy")
def coco_evenodd_counts(xy, coord_offsets, h, w):
    """RLE counts of the parity over all polygons together (rings cut holes)."""
    cols = np.empty(1024, np.int64)
    rows = np.empty(1024, np.int64)
    n = 0
    for i in range(coord_offsets.shape[0] - 1):
        cols, rows, n = coco_crossings(xy, coord_offsets[i], coord_offsets[i + 1], h, w, cols, rows, n)
    return crossings_to_counts(cols, rows, n, h, w)
