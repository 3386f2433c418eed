"""Painting kernels: many COCO RLEs into one label map with a draw order, and per-id statistics.

RLEs are passed flat as in :mod:`fastmask.kernels.rle` (``counts`` uint32, ``offsets``
int64 with ``n + 1`` entries). Every overlap rule (later wins, smaller on top, class
priority, draw-to-back) is a permutation ``order`` of the RLEs painted so that the
later one wins, so a single kernel serves them all.

The label map is painted in column-major order (a flat array of ``h * w`` values,
position ``p = x * h + y``, COCO's run order), where every run is one contiguous slice;
the caller transposes it once at the end.
"""
from __future__ import annotations

import numpy as np
from numba import njit

STATUS_OK = 0
STATUS_BAD_SUM = 1  # an RLE's runs do not add up to the plane's size


@njit(cache=True, nogil=True, error_model="numpy")
def paint_colmajor(counts, offsets, order, values, out):
    """Paint RLE ``order[j]`` with ``values[order[j]]`` into flat column-major ``out``, for j ascending.

    Later RLEs in ``order`` win. Returns ``(status, rle index)``: ``STATUS_BAD_SUM`` and the
    index of the first RLE whose runs do not add up to ``out.shape[0]`` (nothing of it is painted
    beyond the plane), else ``(STATUS_OK, -1)``.
    """
    n = out.shape[0]
    for j in range(order.shape[0]):
        r = order[j]
        v = values[r]
        p = 0
        fg = False
        for i in range(offsets[r], offsets[r + 1]):
            c = np.int64(counts[i])
            e = p + c
            if e > n:
                return STATUS_BAD_SUM, r
            if fg:
                out[p:e] = v
            p = e
            fg = not fg
        if p != n:
            return STATUS_BAD_SUM, r
    return STATUS_OK, -1


@njit(cache=True, nogil=True, error_model="numpy")
def rle_areas(counts, offsets):
    """Foreground pixels of each RLE (int64)."""
    m = offsets.shape[0] - 1
    out = np.zeros(m, np.int64)
    for r in range(m):
        s = np.int64(0)
        for i in range(offsets[r] + 1, offsets[r + 1], 2):
            s += np.int64(counts[i])
        out[r] = s
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def id_stats(labels, n_ids):
    """Per id ``0..n_ids-1`` of a C-ordered 2-D map: pixel count and bbox (x0, y0, x1, y1 inclusive).

    Ids outside ``0..n_ids-1`` are not counted. An id without pixels has area 0 and
    bbox ``(-1, -1, -1, -1)``. Returns ``(area int64[n_ids], box int64[n_ids, 4])``.
    """
    area = np.zeros(n_ids, np.int64)
    box = np.full((n_ids, 4), -1, np.int64)
    h, w = labels.shape
    for y in range(h):
        row = labels[y]
        x = 0
        while x < w:
            v = np.int64(row[x])
            x0 = x
            x += 1
            while x < w and np.int64(row[x]) == v:  # runs of one id: one update per run
                x += 1
            if v < 0 or v >= n_ids:
                continue
            area[v] += x - x0
            if box[v, 0] < 0:
                box[v, 0] = x0
                box[v, 1] = y
                box[v, 2] = x - 1
                box[v, 3] = y
            else:
                box[v, 0] = min(box[v, 0], x0)
                box[v, 2] = max(box[v, 2], x - 1)
                box[v, 3] = y
    return area, box

