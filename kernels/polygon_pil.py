"""Polygon fill in the ``pil`` mode: Pillow's ``ImageDraw.polygon`` pixel for pixel.

labelme draws a polygon shape with ``ImageDraw.Draw(mask).polygon(xy, fill=1,
outline=1)``. With equal fill and outline inks Pillow draws the fill only (the
outline would repaint the same ink), so the pixels are those of Pillow's
scanline fill (``polygon_generic`` in libImaging/Draw.c, unchanged from Pillow
11.2.1 through 13). This kernel re-derives that procedure step by step, with the
same integer and single-precision (float32) arithmetic:

1. Vertices: each coordinate is cast to C ``int``, i.e. truncated toward zero
   (``-0.7 -> 0``, ``2.9 -> 2``).
2. Edges, in vertex order: a horizontal segment that continues the previous
   horizontal segment in the same direction extends it; the closing edge is
   added unless the last vertex equals the first. A horizontal edge (a repeated
   vertex is one, of one pixel) paints its row from ``xmin`` to ``xmax``.
3. Rows ``y`` from the smallest to the largest vertex row: every other edge with
   ``ymin <= y <= ymax`` gives the float32 crossing
   ``x = float(y - y_start) * dx + float(x_start)`` with
   ``dx = float(x_end - x_start) / float(y_end - y_start)`` (start = the edge's
   first vertex in drawing order). An edge ending on this row (not the polygon's
   last row) gives its crossing twice. An edge with a slope whose end point lies
   on this row otherwise looks for the first earlier such edge whose crossing
   rounds (``roundf``) to the same column and that also spans the next row (an
   edge's first row) or the previous row (its last row); if found and the
   crossing lies more than 1 px beyond both edges' crossings on that row, it is
   pulled to 1 px past the nearer one (Pillow's "connect discontiguous corners").
4. The row's crossings are sorted and paired (1st-2nd, 3rd-4th, ...: even-odd,
   so self-crossing polygons get holes where they overlap an even number of
   times); each pair paints columns ``ROUND_UP(left) .. ROUND_DOWN(right)``
   (nearest integer, halves away from zero resp. toward zero, the positive side
   evaluated in float32 and the negative side in double, as Pillow's macros do).

Two vertices give Pillow's degenerate polygon (the segment there and back); a
single vertex draws nothing here (Pillow refuses one vertex; the caller raises).
Every coordinate must be within ``+-2**30`` (checked by the caller): beyond it
Pillow's int arithmetic overflows, which C leaves undefined.

Work: rows are restricted to the image before any loop; edges enter and leave an
active list sorted by start row, and the corner search groups the row's end-point
edges by rounded crossing, so each row costs O(active edges log) whatever the
polygon (Pillow's own search is quadratic). Rings are filled one by one and OR-ed
into ``out`` (1s set, nothing cleared).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# Coordinates must satisfy |v| < LIMIT: then every int difference of Pillow's fits a C int.
LIMIT = float(1 << 30)

_F_HALF = np.float32(0.5)
_F_ONE = np.float32(1.0)


@njit(cache=True, nogil=True)
def _roundf(x):
    """C ``roundf`` (halves away from zero) of a float32, exact in double."""
    a = math.floor(abs(np.float64(x)) + 0.5)
    return np.float32(a if x >= 0 else -a)


@njit(cache=True, nogil=True)
def round_up(f):
    """Pillow's ``ROUND_UP`` of a float32 crossing (left end of a span)."""
    if f >= 0:
        return np.int64(math.floor(np.float64(np.float32(f + _F_HALF))))
    return -np.int64(math.floor(abs(np.float64(f)) + 0.5))


@njit(cache=True, nogil=True)
def round_down(f):
    """Pillow's ``ROUND_DOWN`` of a float32 crossing (right end of a span)."""
    if f >= 0:
        return np.int64(math.ceil(np.float64(np.float32(f - _F_HALF))))
    return -np.int64(math.ceil(abs(np.float64(f)) - 0.5))


@njit(cache=True, nogil=True)
def _x_at(y, ex0, ey0, edx):
    """Pillow's crossing of an edge with row ``y``: float32 multiply, then float32 add."""
    p = np.float32(np.float32(y - ey0) * edx)
    return np.float32(p + np.float32(ex0))


@njit(cache=True, nogil=True)
def _hline(out, y, x0, x1, h, w):
    if y < 0 or y >= h:
        return
    if x0 < 0:
        x0 = 0
    if x1 > w - 1:
        x1 = w - 1
    if x0 <= x1:
        out[y, x0:x1 + 1] = 1


@njit(cache=True, nogil=True)
def _edges(ix, iy):
    """Pillow's edge list of one ring (int vertices): arrays x0, y0, xmin, xmax, ymin, ymax, dx and count."""
    count = ix.shape[0]
    ex0 = np.empty(count, np.int64)
    ey0 = np.empty(count, np.int64)
    exmin = np.empty(count, np.int64)
    exmax = np.empty(count, np.int64)
    eymin = np.empty(count, np.int64)
    eymax = np.empty(count, np.int64)
    edx = np.zeros(count, np.float32)
    n = 0
    for i in range(count):
        if i < count - 1:
            x0, y0, x1, y1 = ix[i], iy[i], ix[i + 1], iy[i + 1]
            if y0 == y1 and i != 0 and y0 == iy[i - 1]:
                # a horizontal segment continuing the previous one in the same direction extends it
                if x1 > x0 and x0 > ix[i - 1]:
                    exmax[n - 1] = x1
                    continue
                if x1 < x0 and x0 < ix[i - 1]:
                    exmin[n - 1] = x1
                    continue
        else:
            x0, y0, x1, y1 = ix[i], iy[i], ix[0], iy[0]
            if x0 == x1 and y0 == y1:
                break
        ex0[n] = x0
        ey0[n] = y0
        exmin[n] = min(x0, x1)
        exmax[n] = max(x0, x1)
        eymin[n] = min(y0, y1)
        eymax[n] = max(y0, y1)
        if y0 != y1:
            edx[n] = np.float32(np.float32(x1 - x0) / np.float32(y1 - y0))
        n += 1
    return ex0, ey0, exmin, exmax, eymin, eymax, edx, n


@njit(cache=True, nogil=True)
def _corners(y, act, na, xv, ex0, ey0, eymin, eymax, edx, ymax_all, keys, order):
    """Pillow's corner connection for row ``y`` over the active edges ``act[:na]`` (in
    edge order) whose crossings are ``xv[:na]``; adjusts ``xv`` in place."""
    m = 0
    for a in range(na):
        e = act[a]
        if (y == eymin[e] or y == eymax[e]) and edx[e] != 0:
            keys[m] = _roundf(xv[a])
            order[m] = a
            m += 1
    if m < 2:
        return
    srt = np.argsort(keys[:m], kind="mergesort")  # stable: edge order within equal keys
    g = 0
    while g < m:
        k = keys[srt[g]]
        first_up = -1  # first earlier edge of the group spanning row y + 1
        first_down = -1  # ... spanning row y - 1
        q = g
        while q < m and keys[srt[q]] == k:
            a = order[srt[q]]
            e = act[a]
            # the duplicate branch (an edge's last row before the polygon's last) skips the search
            searches = not (y == eymax[e] and y < ymax_all)
            if searches:
                off = -1 if y == eymax[e] else 1
                b = first_down if off == -1 else first_up
                if b >= 0:
                    o = act[b]
                    adj = _x_at(y + off, ex0[e], ey0[e], edx[e])
                    adjo = _x_at(y + off, ex0[o], ey0[o], edx[o])
                    x = xv[a]
                    if x > np.float32(adj + _F_ONE) and x > np.float32(adjo + _F_ONE):
                        xv[a] = np.float32(_roundf(max(adj, adjo)) + _F_ONE)
                    elif x < np.float32(adj - _F_ONE) and x < np.float32(adjo - _F_ONE):
                        xv[a] = np.float32(_roundf(min(adj, adjo)) - _F_ONE)
            if first_up < 0 and eymin[e] <= y + 1 <= eymax[e]:
                first_up = a
            if first_down < 0 and eymin[e] <= y - 1 <= eymax[e]:
                first_down = a
            q += 1
        g = q


@njit(cache=True, nogil=True)
def _fill_ring(ix, iy, h, w, out):
    ex0, ey0, exmin, exmax, eymin, eymax, edx, n = _edges(ix, iy)
    if n == 0:
        return
    ymin_all = eymin[:n].min()
    ymax_all = eymax[:n].max()
    slanted = np.empty(n, np.int64)  # the non-horizontal edges, in edge order
    ns = 0
    for e in range(n):
        if eymin[e] == eymax[e]:
            _hline(out, eymin[e], exmin[e], exmax[e], h, w)
        else:
            slanted[ns] = e
            ns += 1
    r0 = max(ymin_all, 0)
    r1 = min(ymax_all, h - 1)
    if ns == 0 or r0 > r1:
        return
    slanted = slanted[:ns]
    by_start = slanted[np.argsort(eymin[slanted], kind="mergesort")]
    act = np.empty(ns, np.int64)  # active edges, kept in edge order
    na = 0
    nxt = 0
    xv = np.empty(ns, np.float32)
    xx = np.empty(2 * ns, np.float32)
    keys = np.empty(ns, np.float32)
    order = np.empty(ns, np.int64)
    for y in range(r0, r1 + 1):
        k = 0
        for a in range(na):  # drop edges that ended above this row
            if eymax[act[a]] >= y:
                act[k] = act[a]
                k += 1
        na = k
        added = False
        while nxt < ns and eymin[by_start[nxt]] <= y:
            e = by_start[nxt]
            nxt += 1
            if eymax[e] >= y:
                act[na] = e
                na += 1
                added = True
        if added:
            act[:na].sort()
        if na == 0:
            continue
        for a in range(na):
            e = act[a]
            xv[a] = _x_at(y, ex0[e], ey0[e], edx[e])
        _corners(y, act, na, xv, ex0, ey0, eymin, eymax, edx, ymax_all, keys, order)
        j = 0
        for a in range(na):
            xx[j] = xv[a]
            j += 1
            if y == eymax[act[a]] and y < ymax_all:
                xx[j] = xv[a]
                j += 1
        s = np.sort(xx[:j])
        for i in range(1, j, 2):
            _hline(out, y, round_up(s[i - 1]), round_down(s[i]), h, w)


@njit(cache=True, nogil=True)
def pil_fill(xy, ring_offsets, h, w, out):
    """OR each ring's Pillow polygon fill into ``out`` (uint8, (h, w), C-contiguous).

    ``xy``: float64 coordinates of all rings, x/y interleaved; ``ring_offsets``: int64
    (R + 1) offsets into ``xy`` in coordinates (even lengths >= 4, finite, |v| < LIMIT,
    validated by the caller). See the module docstring.
    """
    nr = ring_offsets.shape[0] - 1
    if h <= 0 or w <= 0:
        return
    for r in range(nr):
        s = ring_offsets[r]
        k = (ring_offsets[r + 1] - s) // 2
        ix = np.empty(k, np.int64)
        iy = np.empty(k, np.int64)
        for i in range(k):
            ix[i] = np.int64(xy[s + 2 * i])  # C's (int) cast: truncation toward zero
            iy[i] = np.int64(xy[s + 2 * i + 1])
        _fill_ring(ix, iy, h, w, out)
