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

from .rle import _grow, counts_to_chars, merge

_SCALE = 5.0
_MAX_ADJUST = 64  # bound for the exact-crossing search (only float-extreme inputs need more)
# Coordinates are clamped to +-1e300 before the 5x upsampling: beyond ~3.6e307 it overflows to
# inf, and inf - inf = NaN walked columns past the crossing buffers (memory corruption).
_MAX_COORD = 1e300


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
def crossing_bound(xy, start, stop, w):
    """An upper bound of the number of crossings of polygon ``xy[start:stop]`` (columns each edge spans)."""
    k = (stop - start) // 2
    total = 0
    for j in range(k):
        j2 = j + 1 if j + 1 < k else 0
        # only the columns of the edge inside the image can be crossed (an edge far outside
        # it, or a huge width, must not size the buffers); the margin covers the walk's
        # rounding on huge coordinates (relative error ~1e-15)
        a = min(max(xy[start + 2 * j], -_MAX_COORD), _MAX_COORD)  # as coco_crossings (box corners may be inf)
        b = min(max(xy[start + 2 * j2], -_MAX_COORD), _MAX_COORD)
        margin = 1e-6 * max(abs(a), abs(b)) + 2.0
        lo = max(min(a, b) - margin, -1.0)
        hi = min(max(a, b) + margin, w + 1.0)
        span = max(hi - lo, 0.0) + 2.0
        total += np.int64(min(span, w + 1.0))
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def coco_crossings(xy, start, stop, h, w, cols, rows, n):
    """Write the column crossings of polygon ``xy[start:stop]`` to ``cols``/``rows`` from index ``n``.

    The arrays must hold :func:`crossing_bound` more entries. Returns the new ``n``.
    """
    k = (stop - start) // 2
    if k == 0:
        return n
    for j in range(k):
        j2 = j + 1 if j + 1 < k else 0
        xs = np.trunc(_SCALE * min(max(xy[start + 2 * j], -_MAX_COORD), _MAX_COORD) + 0.5)
        ys = np.trunc(_SCALE * min(max(xy[start + 2 * j + 1], -_MAX_COORD), _MAX_COORD) + 0.5)
        xe = np.trunc(_SCALE * min(max(xy[start + 2 * j2], -_MAX_COORD), _MAX_COORD) + 0.5)
        ye = np.trunc(_SCALE * min(max(xy[start + 2 * j2 + 1], -_MAX_COORD), _MAX_COORD) + 0.5)
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
    return n


@njit(cache=True, nogil=True, error_model="numpy")
def crossings_to_counts(cols, rows, n, h, w):
    """RLE counts from crossings, as maskApi.c: sort positions, difference, fold double toggles.

    Positions ``col * h + row`` are sorted by a counting sort on the column
    (over the columns actually crossed) and an insertion sort inside each
    column (crossings are few per column; ``ndarray.sort`` for crowded columns).
    """
    total = h * w
    if n == 0:
        out = np.empty(1, np.uint32)
        out[0] = total
        return out
    cmin = cols[0]
    cmax = cols[0]
    for i in range(n):
        c = cols[i]
        if c < cmin:
            cmin = c
        elif c > cmax:
            cmax = c
    ncol = cmax - cmin + 1
    start = np.zeros(ncol + 1, np.int64)
    for i in range(n):
        start[cols[i] - cmin + 1] += 1
    for c in range(ncol):
        start[c + 1] += start[c]
    fill = start.copy()
    a = np.empty(n, np.int64)
    for i in range(n):
        c = cols[i] - cmin
        a[fill[c]] = cols[i] * h + rows[i]
        fill[c] += 1
    for c in range(ncol):
        lo = start[c]
        hi = start[c + 1]
        if hi - lo > 32:  # a crowded column (hostile polygons): O(k log k), not insertion's O(k^2)
            a[lo:hi] = np.sort(a[lo:hi])
            continue
        for i in range(lo + 1, hi):  # insertion sort: crossings are few per column
            pos = a[i]
            j = i
            while j > lo and a[j - 1] > pos:
                a[j] = a[j - 1]
                j -= 1
            a[j] = pos
    # maskApi.c: differences of the sorted positions (and h*w); a zero difference (two toggles
    # at one position) folds the next run into the previous one
    b = np.empty(n + 1, np.uint32)
    m = 1
    b[0] = a[0]
    prev = a[0]
    j = 1
    while j <= n:
        d = (a[j] if j < n else total) - prev
        if j < n:
            prev = a[j]
        j += 1
        if d > 0:
            b[m] = d
            m += 1
        elif j <= n:
            d2 = (a[j] if j < n else total) - prev
            if j < n:
                prev = a[j]
            j += 1
            b[m - 1] += d2
    return b[:m]


@njit(cache=True, nogil=True, error_model="numpy")
def _polygon_counts(xy, start, stop, h, w):
    bound = crossing_bound(xy, start, stop, w)
    cols = np.empty(bound, np.int64)
    rows = np.empty(bound, np.int64)
    n = coco_crossings(xy, start, stop, h, w, cols, rows, 0)
    return crossings_to_counts(cols, rows, n, h, w)


@njit(cache=True, nogil=True, error_model="numpy")
def _append(counts, k, b):
    """Append one RLE's counts ``b`` at ``counts[k:]`` (growing it); returns ``(counts, new k)``."""
    counts = _grow(counts, k + b.shape[0])
    counts[k : k + b.shape[0]] = b
    return counts, k + b.shape[0]


@njit(cache=True, nogil=True, error_model="numpy")
def coco_polygons_to_rles(xy, coord_offsets, h, w):
    """One RLE per polygon (pycocotools' frPoly): ``polygon i = xy[coord_offsets[i]:coord_offsets[i+1]]``."""
    n_poly = coord_offsets.shape[0] - 1
    counts = np.empty(max(16, 8 * n_poly), np.uint32)
    offsets = np.zeros(n_poly + 1, np.int64)
    k = 0
    for i in range(n_poly):
        counts, k = _append(counts, k, _polygon_counts(xy, coord_offsets[i], coord_offsets[i + 1], h, w))
        offsets[i + 1] = k
    return counts[:k], offsets


@njit(cache=True, nogil=True, error_model="numpy")
def coco_polygon_strings(xy, coord_offsets, h, w):
    """:func:`coco_polygons_to_rles` as compressed strings in the same call: ``(chars, char_offsets)``."""
    counts, offsets = coco_polygons_to_rles(xy, coord_offsets, h, w)
    return counts_to_chars(counts, offsets)


@njit(cache=True, nogil=True, error_model="numpy")
def coco_union_counts(xy, coord_offsets, h, w):
    """Counts of the union of the polygons: pycocotools' ``merge(frPyObjects(polys))`` in one call."""
    n_poly = coord_offsets.shape[0] - 1
    if n_poly == 1:
        return _polygon_counts(xy, coord_offsets[0], coord_offsets[1], h, w)
    parts, offsets = coco_polygons_to_rles(xy, coord_offsets, h, w)
    return merge(parts, offsets, False)


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
        orow = out[r, c0 : c0 + width]
        for c in range(width):
            v = np.uint8(cur[c] ^ trow[c])
            cur[c] = v
            orow[c] = np.uint8(orow[c] | v)


@njit(cache=True, nogil=True, error_model="numpy")
def coco_fill(xy, coord_offsets, h, w, evenodd, out):
    """Fill polygons into a C-ordered (h, w) uint8 ``out`` with pycocotools' pixel set.

    ``evenodd=False``: each polygon's own parity, polygons unioned (COCO parts).
    ``evenodd=True``: parity over all polygons together, so rings cut holes.
    """
    n_poly = coord_offsets.shape[0] - 1
    if evenodd:
        bound = 0
        for i in range(n_poly):
            bound += crossing_bound(xy, coord_offsets[i], coord_offsets[i + 1], w)
        cols = np.empty(bound, np.int64)
        rows = np.empty(bound, np.int64)
        n = 0
        for i in range(n_poly):
            n = coco_crossings(xy, coord_offsets[i], coord_offsets[i + 1], h, w, cols, rows, n)
        _toggle_fill(cols, rows, n, h, out)
    else:
        for i in range(n_poly):
            bound = crossing_bound(xy, coord_offsets[i], coord_offsets[i + 1], w)
            cols = np.empty(bound, np.int64)
            rows = np.empty(bound, np.int64)
            n = coco_crossings(xy, coord_offsets[i], coord_offsets[i + 1], h, w, cols, rows, 0)
            _toggle_fill(cols, rows, n, h, out)


@njit(cache=True, nogil=True, error_model="numpy")
def coco_evenodd_counts(xy, coord_offsets, h, w):
    """RLE counts of the parity over all polygons together (rings cut holes)."""
    bound = 0
    for i in range(coord_offsets.shape[0] - 1):
        bound += crossing_bound(xy, coord_offsets[i], coord_offsets[i + 1], w)
    cols = np.empty(bound, np.int64)
    rows = np.empty(bound, np.int64)
    n = 0
    for i in range(coord_offsets.shape[0] - 1):
        n = coco_crossings(xy, coord_offsets[i], coord_offsets[i + 1], h, w, cols, rows, n)
    return crossings_to_counts(cols, rows, n, h, w)


@njit(cache=True, nogil=True, error_model="numpy")
def coco_annotations_counts(xy, part_offsets, ann_offsets, heights, widths):
    """Union RLE counts of many annotations in one call.

    Annotation ``a`` has parts ``ann_offsets[a]..ann_offsets[a+1]`` (indices into
    ``part_offsets``, coordinate offsets into ``xy``) and size ``heights[a]`` x ``widths[a]``.
    Returns ``(counts uint32, offsets int64)``, one RLE per annotation.
    """
    n_ann = ann_offsets.shape[0] - 1
    counts = np.empty(max(64, 16 * n_ann), np.uint32)
    offsets = np.zeros(n_ann + 1, np.int64)
    k = 0
    for a in range(n_ann):
        p0 = ann_offsets[a]
        p1 = ann_offsets[a + 1]
        h = heights[a]
        w = widths[a]
        if p1 == p0:  # no polygon: an empty mask
            b = np.empty(1, np.uint32)
            b[0] = h * w
        else:
            b = coco_union_counts(xy, part_offsets[p0 : p1 + 1], h, w)
        counts, k = _append(counts, k, b)
        offsets[a + 1] = k
    return counts[:k], offsets


@njit(cache=True, nogil=True, error_model="numpy")
def coco_union_string(xy, coord_offsets, h, w):
    """:func:`coco_union_counts` straight to COCO's compressed string codes (one call, no counts round trip)."""
    counts = coco_union_counts(xy, coord_offsets, h, w)
    chars, _ = counts_to_chars(counts, np.array([0, counts.shape[0]], np.int64))
    return chars
