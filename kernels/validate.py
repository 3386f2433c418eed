"""Kernels for ``fastmask validate``: one fused pass over a class mask, plus rare-case passes.

Arrays in, arrays out; no exceptions for data (the caller guarantees that every
value indexes ``kind``).  ``kind[v]`` classifies value ``v``:

- ``KIND_INVALID`` (0): not a label id (and not the ignore value),
- ``KIND_CLASS`` (1): a class id (background included),
- ``KIND_IGNORE`` (2): the ignore value.

Entry points:

- :func:`class_scan` -- histogram, neighbour transitions and *valid blends* in one pass;
- :func:`class_scan_runs` -- the same results as :func:`class_scan` plus the
  connected-component runs of :func:`fastmask.kernels.components.runs_2d`, in one
  pass (the histogram and the horizontal transitions/blends come from the runs);
- :func:`invalid_scan` -- only run when the histogram shows invalid values: per-value
  bounding boxes of invalid values and *invalid edge* pixels (anti-alias suspects);
- :func:`pair_hist` -- joint (instance, class) histogram for instance/class conflicts;
- :func:`value_bbox` -- bounding box of the pixels equal to one value.

Definitions (see docs/rules.md, rule ``antialias_suspect``):

- a **valid blend** is a pixel whose value ``v`` and whose two opposite 4-neighbours
  ``a``, ``b`` along one axis (left/right or up/down) are class ids with ``v`` strictly
  between ``a`` and ``b``;
- an **invalid edge** pixel has an invalid value and, along one axis, a non-invalid
  pixel within ``radius`` steps on each side, the two nearest of them with different
  values (so the pixel sits in a short invalid run between two different regions).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from .components import _find, _flatten, _grow
from .png import row_scratch, unfilter_row

KIND_INVALID = 0
KIND_CLASS = 1
KIND_IGNORE = 2

# out[] layout of class_scan
SCAN_TRANSITIONS = 0
SCAN_BLENDS = 1
SCAN_BX0 = 2
SCAN_BY0 = 3
SCAN_BX1 = 4
SCAN_BY1 = 5
SCAN_LEN = 6

# out[] layout of invalid_scan
INV_EDGE = 0
INV_X0 = 1
INV_Y0 = 2
INV_X1 = 3
INV_Y1 = 4
INV_LEN = 5


@njit(cache=True, nogil=True, inline="always")
def _between(a, v, b):
    return (a < v and v < b) or (b < v and v < a)


@njit(cache=True, nogil=True)
def class_scan(m, kind, hist, out):
    """One pass: ``hist[v] += 1``; ``out`` = transitions, blend count and blend bbox (x0, y0, x1, y1).

    ``hist`` (int64, ``len(kind)``) and ``out`` (int64, ``SCAN_LEN``) are filled in
    place (``hist`` is added to, ``out`` is overwritten).  Transitions count
    horizontally or vertically adjacent pixel pairs with different values.
    The bbox is inclusive; x0 = -1 when there are no blends.
    """
    h, w = m.shape
    n = hist.shape[0]
    # four interleaved sub-histograms: runs of equal values would otherwise serialise
    # every increment on one counter (store-to-load forwarding)
    sub = np.zeros((4, n), np.int64)
    # per-row flag buffers: comparisons written to a uint8 buffer vectorise, while
    # summing booleans inside the comparison loop does not (4x slower)
    tb = np.zeros(w, np.uint8)
    cb = np.zeros(w, np.uint8)
    trans = 0
    blends = 0
    bx0 = w
    by0 = h
    bx1 = -1
    by1 = -1
    for i in range(h):
        row = m[i]
        j = 0
        while j + 4 <= w:
            sub[0, row[j]] += 1
            sub[1, row[j + 1]] += 1
            sub[2, row[j + 2]] += 1
            sub[3, row[j + 3]] += 1
            j += 4
        while j < w:
            sub[0, row[j]] += 1
            j += 1
        for j in range(w - 1):
            tb[j] = np.uint8(row[j] != row[j + 1])
        tb[w - 1] = 0
        if i + 1 < h:
            nxt = m[i + 1]
            for j in range(w):
                tb[j] = tb[j] + np.uint8(row[j] != nxt[j])
        t = 0
        for j in range(w):
            t += tb[j]
        trans += t
        if t == 0:
            continue  # a uniform row that equals the next one has no blend candidates
        cb[0] = 0
        cb[w - 1] = 0
        for j in range(1, w - 1):
            a = row[j - 1]
            v = row[j]
            b = row[j + 1]
            cb[j] = np.uint8(((a < v) & (v < b)) | ((b < v) & (v < a)))
        if 0 < i < h - 1:
            prv = m[i - 1]
            nxt = m[i + 1]
            for j in range(w):
                a = prv[j]
                v = row[j]
                b = nxt[j]
                cb[j] = cb[j] | np.uint8(((a < v) & (v < b)) | ((b < v) & (v < a)))
        c = 0
        for j in range(w):
            c += cb[j]
        if c == 0:
            continue
        # rare: the exact test (kinds) on this row (a non-candidate is never a blend)
        rc, x0, x1 = _row_blends(m, kind, i)
        if rc:
            blends += rc
            bx0 = min(bx0, x0)
            bx1 = max(bx1, x1)
            by0 = min(by0, i)
            by1 = i
    for k in range(n):
        hist[k] += sub[0, k] + sub[1, k] + sub[2, k] + sub[3, k]
    out[SCAN_TRANSITIONS] = trans
    out[SCAN_BLENDS] = blends
    if blends == 0:
        bx0 = -1
        by0 = -1
    out[SCAN_BX0] = bx0
    out[SCAN_BY0] = by0
    out[SCAN_BX1] = bx1
    out[SCAN_BY1] = by1


@njit(cache=True, nogil=True)
def _row_blends(m, kind, i):
    """Exact blend test on every pixel of row ``i``: ``(count, x0, x1)`` (x0 = -1 if none).

    A pixel is a blend when it holds a class id strictly between two class ids on
    opposite sides (left/right or up/down).  (Written out in one loop: a helper taking
    ``m`` would be reference-counted on every pixel.)
    """
    h, w = m.shape
    c = 0
    x0 = -1
    x1 = -1
    for j in range(w):
        v = m[i, j]
        if kind[v] != KIND_CLASS:
            continue
        hit = False
        if 0 < j < w - 1:
            a = m[i, j - 1]
            b = m[i, j + 1]
            hit = _between(a, v, b) and kind[a] == KIND_CLASS and kind[b] == KIND_CLASS
        if not hit and 0 < i < h - 1:
            a = m[i - 1, j]
            b = m[i + 1, j]
            hit = _between(a, v, b) and kind[a] == KIND_CLASS and kind[b] == KIND_CLASS
        if hit:
            c += 1
            if x0 < 0:
                x0 = j
            x1 = j
    return c, x0, x1


@njit(cache=True, nogil=True)
def _row_diff(ls, lv, a, b, w, ds, de, slot):
    """Pixels where the rows in run-buffer slots ``a`` and ``b`` differ (starts ``ls``
    ending with the sentinel ``w``, values ``lv``), from a merge of their runs; the
    differing stretches are written to ``ds[slot]`` / ``de[slot]`` (start, end), their
    number returned second."""
    t = 0
    nd = 0
    pos = 0
    i = 0
    j = 0
    while pos < w:
        ea = ls[a, i + 1]
        eb = ls[b, j + 1]
        e = min(ea, eb)
        if lv[a, i] != lv[b, j]:
            t += e - pos
            if nd > 0 and de[slot, nd - 1] == pos:
                de[slot, nd - 1] = e  # extends the previous stretch
            else:
                ds[slot, nd] = pos
                de[slot, nd] = e
                nd += 1
        pos = e
        i += ea == e
        j += eb == e
    return t, nd


@njit(cache=True, nogil=True)
def _vertical_candidate(m, i, ds, de, up, nup, down, ndown):
    """True if a pixel of row ``i`` lies strictly between its upper and lower neighbours'
    values.  Such a pixel differs from both: only the overlaps of the stretches where row
    ``i`` differs from the row above (``up``) and from the row below (``down``) are read."""
    p = 0
    q = 0
    while p < nup and q < ndown:
        x0 = max(ds[up, p], ds[down, q])
        x1 = min(de[up, p], de[down, q])
        for j in range(x0, x1):
            a = m[i - 1, j]
            v = m[i, j]
            b = m[i + 1, j]
            if (a < v and v < b) or (b < v and v < a):
                return True
        if de[up, p] < de[down, q]:
            p += 1
        else:
            q += 1
    return False


@njit(cache=True, nogil=True)
def _scan_rows(m, i0, kind, hist, tb, ls, lv, ds, de, nd, flag, row_ptr, rs, re, rv, parent, ext, has_bg, bg,
               state, png):
    """Rows ``i0..`` of :func:`class_scan_runs` until the run arrays might overflow; returns
    the next row.  ``state`` = (runs so far, first run of the previous row, transitions).

    (A separate function so that the run arrays are not reassigned inside the row loop:
    a loop-carried array costs reference counting on every row, ~25 ns.  The union is
    written out for the same reason: arrays handed to a helper, even an inlined one, are
    reference-counted on every call.)

    ``png``: None, or (when ``m`` is a PNG's image data being unfiltered in place, see
    :func:`png_unfilter_class_scan`) ``(buf, t, progress)``: each row is unfiltered right
    before it is scanned, ``progress`` = (rows unfiltered, first bad row or -1).
    """
    h, w = m.shape
    nw = tb.shape[0] // 8
    tb64 = tb.view(np.uint64)
    n = state[0]
    prev_lo = state[1]
    trans = state[2]
    prev_hi = n
    cap = rs.shape[0]
    i = i0
    while i < h:
        if png is not None and i >= png[2][0]:  # the row, unfiltered while the scan waits for it
            if not unfilter_row(png[0], i, w, 1, png[1], None):
                png[2][1] = i
                break
            png[2][0] = i + 1
        for j in range(w - 1):
            tb[j] = m[i, j] != m[i, j + 1]
        slot = i % 3
        row_ptr[i] = n
        jj = prev_lo
        # run starts of this row: 0, then each boundary (a set byte of tb), eight pixels a word
        k = 1
        ls[slot, 0] = 0
        for q0 in range(0, nw, 64):
            # which words hold a boundary, as the bits of one word (branch-free), so that
            # only those words are visited: most of a row's words are zero
            nz = np.uint64(0)
            for q in range(q0, min(nw, q0 + 64)):
                nz |= np.uint64(tb64[q] != 0) << np.uint64(q - q0)
            while nz:
                q = q0 + np.int64(trailing_zeros(nz))
                bits = tb64[q]
                while bits:
                    ls[slot, k] = q * 8 + (np.int64(trailing_zeros(bits)) >> 3) + 1
                    k += 1
                    bits &= bits - np.uint64(1)
                nz &= nz - np.uint64(1)
        ls[slot, k] = w
        if n + k > cap:  # rare: perhaps no room for this row's (foreground) runs
            kf = 0
            for r in range(k):
                kf += not (has_bg and m[i, ls[slot, r]] == bg)
            if n + kf > cap:
                break  # the caller grows the arrays; the row is redone
        for r in range(k):
            s = ls[slot, r]
            e = ls[slot, r + 1]
            v = m[i, s]
            lv[slot, r] = v
            hist[v] += e - s
            if e - s == 1 and s > 0 and e < w:  # a 1-px run: a horizontal blend candidate?
                a = m[i, s - 1]
                b = m[i, e]
                if (a < v and v < b) or (b < v and v < a):
                    flag[i] = 1
            if not (has_bg and v == bg):
                # components.runs_2d's union, written out (see components._scan_rows)
                rs[n] = s
                re[n] = e
                rv[n] = v
                p = n
                lo = s - ext
                while jj < prev_hi and re[jj] <= lo:
                    jj += 1
                hi = e + ext
                u = jj
                while u < prev_hi and rs[u] < hi:
                    if rv[u] == v:
                        root = parent[u]
                        if parent[root] != root:
                            root = _find(parent, root)
                        if root < p:
                            parent[p] = root
                            p = root
                        elif root > p:
                            parent[root] = p
                    u += 1
                parent[n] = p
                n += 1
        prev_lo = row_ptr[i]
        prev_hi = n
        trans += k - 1  # horizontal transitions: the run boundaries
        if i >= 1:
            # vertical transitions with the row above, and the stretches where they differ;
            # with the previous row's stretches: its vertical blend candidates
            d = i % 2
            t, nd[d] = _row_diff(ls, lv, (i - 1) % 3, slot, w, ds, de, d)
            trans += t
            if i >= 2 and _vertical_candidate(m, i - 1, ds, de, 1 - d, nd[1 - d], d, nd[d]):
                flag[i - 1] = 1
        i += 1
    state[0] = n
    state[1] = prev_lo
    state[2] = trans
    return i


@njit(cache=True, nogil=True)
def class_scan_runs(m, kind, hist, out, eight, has_bg, bg, idx_like):
    """:func:`class_scan` fused with the run extraction of connected-component labeling.

    ``hist`` and ``out`` are filled exactly as by :func:`class_scan` (same values).
    The runs are those of :func:`fastmask.kernels.components.runs_2d` (same order,
    same union-find, same labels): returns ``(count, rs, re, rv, lab, row_ptr)`` for
    :func:`fastmask.kernels.components.run_stats`.  ``idx_like``'s dtype (int32 or
    int64, large enough for ``H * W``) is the run index dtype.

    The only per-pixel work is one vectorised comparison of each row with itself
    shifted by one, whose flags are then read eight at a time (a zero word skips eight
    pixels).  Everything else comes from the runs (all values, background included):
    the histogram (run lengths), the horizontal transitions (run boundaries), the
    vertical transitions (a merge of two rows' runs, which also gives the stretches
    where they differ), the blend candidates (a 1-px run between two runs, or a pixel in
    both the stretch that differs from the row above and the one that differs from the
    row below); the exact blend test (kinds) runs only on the rows with a candidate.
    """
    return _class_scan_runs(m, kind, hist, out, eight, has_bg, bg, idx_like, None)


@njit(cache=True, nogil=True)
def _class_scan_runs(m, kind, hist, out, eight, has_bg, bg, idx_like, png):
    """:func:`class_scan_runs`; ``png``: as in :func:`_scan_rows` (count -1: a bad filter byte)."""
    h, w = m.shape
    idx = idx_like.dtype
    npx = h * w
    cap = min(npx, max(npx // 16, 1024))
    rs = np.empty(cap, idx)
    re = np.empty(cap, idx)
    rv = np.empty(cap, m.dtype)
    parent = np.empty(cap, idx)
    row_ptr = np.zeros(h + 1, idx)
    out[:] = 0
    if npx == 0:
        out[SCAN_BX0:SCAN_BY1 + 1] = -1
        return 0, rs[:0], re[:0], rv[:0], parent[:0], row_ptr
    tb = np.zeros(((w + 7) // 8) * 8, np.uint8)
    # runs of the last three rows (all values): starts and values; row i in slot i % 3
    # (a row's starts end with a sentinel w: the merges need no bounds tests)
    # (index-typed, and no slot a row never uses: a 1 x 80,000,000 strip needs 4 bytes a
    # pixel here, not 56)
    ls = np.empty((min(h, 3), w + 2), idx)
    lv = np.empty((min(h, 3), w + 1), m.dtype)
    # stretches where a row differs from the row above: row i in slot i % 2
    ds = np.empty((2, w + 1 if h > 1 else 1), idx)
    de = np.empty((2, w + 1 if h > 1 else 1), idx)
    nd = np.zeros(2, np.int64)
    flag = np.zeros(h, np.uint8)  # rows with a blend candidate
    state = np.zeros(3, np.int64)
    ext = 1 if eight else 0
    i = 0
    while True:
        i = _scan_rows(m, i, kind, hist, tb, ls, lv, ds, de, nd, flag, row_ptr, rs, re, rv, parent, ext, has_bg, bg,
                       state, png)
        if png is not None and png[2][0] < h:
            if png[2][1] >= 0:
                return -1, rs[:0], re[:0], rv[:0], parent[:0], row_ptr
            if i < h:  # the rows left are counted below: unfiltered first
                for y in range(png[2][0], h):
                    if not unfilter_row(png[0], y, w, 1, png[1], None):
                        png[2][1] = y
                        return -1, rs[:0], re[:0], rv[:0], parent[:0], row_ptr
                png[2][0] = h
        if i == h:
            break
        # the runs outgrew the first guess (a noisy mask): room for exactly the runs left
        # (counted), not a doubling -- the old and new arrays coexist while copying
        n = state[0]
        cap = min(n + count_fg_runs(m, i, has_bg, bg), npx)
        rs, re, rv, parent = _grow(rs, n, cap), _grow(re, n, cap), _grow(rv, n, cap), _grow(parent, n, cap)
    n = state[0]
    trans = state[2]
    row_ptr[h] = n
    count = _flatten(parent, n)
    blends = 0
    bx0 = w
    by0 = h
    bx1 = -1
    by1 = -1
    for i in range(h):
        if flag[i] == 0:
            continue
        c, x0, x1 = _row_blends(m, kind, i)
        if c == 0:
            continue
        blends += c
        bx0 = min(bx0, x0)
        bx1 = max(bx1, x1)
        by0 = min(by0, i)
        by1 = i
    out[SCAN_TRANSITIONS] = trans
    out[SCAN_BLENDS] = blends
    if blends == 0:
        bx0 = -1
        by0 = -1
    out[SCAN_BX0] = bx0
    out[SCAN_BY0] = by0
    out[SCAN_BX1] = bx1
    out[SCAN_BY1] = by1
    return count, rs[:n], re[:n], rv[:n], parent[:n], row_ptr


@njit(cache=True, nogil=True, inline="always")
def _nearest_valid(m, kind, i, j, di, dj, radius):
    """Value of the first non-invalid pixel from (i, j) in direction (di, dj) within radius, else -1."""
    h, w = m.shape
    for s in range(1, radius + 1):
        y = i + di * s
        x = j + dj * s
        if y < 0 or y >= h or x < 0 or x >= w:
            return -1
        v = m[y, x]
        if kind[v] != KIND_INVALID:
            return np.int64(v)
    return -1


@njit(cache=True, nogil=True)
def invalid_scan(m, kind, radius, vbox, out):
    """Per-value bboxes of invalid values and the invalid-edge (anti-alias) pixels.

    ``vbox`` (int64, (len(kind), 4)) must be initialised to (w, h, -1, -1) rows;
    rows of invalid values get their inclusive (x0, y0, x1, y1).  ``out`` (int64,
    ``INV_LEN``) gets the invalid-edge count and its inclusive bbox (x0 = -1 if none).
    """
    h, w = m.shape
    edge = 0
    x0 = w
    y0 = h
    x1 = -1
    y1 = -1
    for i in range(h):
        for j in range(w):
            v = m[i, j]
            if kind[v] != KIND_INVALID:
                continue
            if j < vbox[v, 0]:
                vbox[v, 0] = j
            if i < vbox[v, 1]:
                vbox[v, 1] = i
            if j > vbox[v, 2]:
                vbox[v, 2] = j
            if i > vbox[v, 3]:
                vbox[v, 3] = i
            hit = False
            left = _nearest_valid(m, kind, i, j, 0, -1, radius)
            if left >= 0:
                right = _nearest_valid(m, kind, i, j, 0, 1, radius)
                hit = right >= 0 and right != left
            if not hit:
                up = _nearest_valid(m, kind, i, j, -1, 0, radius)
                if up >= 0:
                    down = _nearest_valid(m, kind, i, j, 1, 0, radius)
                    hit = down >= 0 and down != up
            if hit:
                edge += 1
                if j < x0:
                    x0 = j
                if j > x1:
                    x1 = j
                if i < y0:
                    y0 = i
                y1 = i
    out[INV_EDGE] = edge
    if edge == 0:
        x0 = -1
        y0 = -1
    out[INV_X0] = x0
    out[INV_Y0] = y0
    out[INV_X1] = x1
    out[INV_Y1] = y1


@njit(cache=True, nogil=True)
def pair_hist(a, b, nb, skip_a, skip_b, hist):
    """``hist[a[p] * nb + b[p]] += 1`` for pixels with ``skip_a[a[p]] == 0`` and ``skip_b[b[p]] == 0``.

    ``a`` and ``b`` are same-shape 2-D arrays of codes (already compact);
    ``hist`` is a flat int64 array of size ``len(skip_a) * nb``.
    """
    h, w = a.shape
    for i in range(h):
        for j in range(w):
            x = a[i, j]
            y = b[i, j]
            if skip_a[x] == 0 and skip_b[y] == 0:
                hist[np.int64(x) * nb + y] += 1


@njit(cache=True, nogil=True)
def value_bbox(m, value, out):
    """Inclusive bbox (x0, y0, x1, y1) and count of pixels equal to ``value`` into ``out`` (int64, 5).

    x0 = -1 when the value is absent.
    """
    h, w = m.shape
    x0 = w
    y0 = h
    x1 = -1
    y1 = -1
    n = 0
    for i in range(h):
        for j in range(w):
            if m[i, j] == value:
                n += 1
                if j < x0:
                    x0 = j
                if j > x1:
                    x1 = j
                if i < y0:
                    y0 = i
                y1 = i
    if n == 0:
        x0 = -1
        y0 = -1
    out[0] = x0
    out[1] = y0
    out[2] = x1
    out[3] = y1
    out[4] = n


#: tiny islands are summarised per class value, never listed one by one: a record of
#: ``ISL_LEN`` int64 per class (see :func:`island_records`), at most this many island boxes in it
ISLAND_BOXES = 10
ISL_VALUE = 0  # the value (code) of the class
ISL_COUNT = 1  # its islands
ISL_PIXELS = 2  # their pixels
ISL_X0 = 3  # union of the islands, inclusive x0, y0, x1, y1
ISL_BIG_AREA = 7  # the largest island (the first of that area in raster order): area,
ISL_BIG = 8  # its box (x, y, w, h)
ISL_NB = 12  # boxes listed (min(count, ISLAND_BOXES))
ISL_BOXES = 13  # the first islands' boxes (x, y, w, h), raster order of their first pixel
ISL_LEN = ISL_BOXES + 4 * ISLAND_BOXES


@njit(cache=True, nogil=True)
def component_values(rs, re, rv, lab, count, n):
    """Per component (label - 1) its value ``cval`` (``rv``'s dtype) and ``area`` (``lab``'s
    dtype), and per value code the number of components (``counts[n]``): the only
    per-component arrays the rules need (one value and one area each)."""
    area = np.zeros(count, lab.dtype)
    cval = np.zeros(count, rv.dtype)
    for r in range(rs.shape[0]):
        c = lab[r] - 1
        if area[c] == 0:
            cval[c] = rv[r]
        area[c] += re[r] - rs[r]
    counts = np.zeros(n, np.int64)
    for c in range(count):
        counts[cval[c]] += 1
    return cval, area, counts


@njit(cache=True, nogil=True)
def island_records(rs, re, lab, row_ptr, cval, area, kind, min_island, n):
    """``tiny_island``'s facts, one record per class value with islands (components of a
    value with ``kind == KIND_CLASS`` smaller than ``min_island`` px), by increasing value:
    a flat int64 array of ``ISL_LEN`` numbers a record (layout: the ``ISL_*`` offsets).

    Memory: ``ISL_LEN`` numbers per class with islands plus one int64 per value code;
    nothing per island (``area`` is reused as scratch: it is overwritten).
    """
    count = area.shape[0]
    K = ISLAND_BOXES
    h = row_ptr.shape[0] - 1
    dense = np.full(n, -1, np.int64)
    nd = 0
    for c in range(count):
        v = cval[c]
        if area[c] < min_island and kind[v] == KIND_CLASS and dense[v] < 0:
            dense[v] = nd
            nd += 1
    rec = np.zeros((nd, ISL_LEN), np.int64)
    big_c = np.zeros(nd, np.int64)
    for c in range(count):
        a = area[c]
        v = cval[c]
        if a < min_island and kind[v] == KIND_CLASS:
            d = dense[v]
            k = rec[d, ISL_COUNT]
            rec[d, ISL_COUNT] = k + 1
            rec[d, ISL_PIXELS] += a
            if a > rec[d, ISL_BIG_AREA]:
                rec[d, ISL_BIG_AREA] = a
                big_c[d] = c
            # area < 0 marks an island: -1, or -2 - slot when its box is wanted
            area[c] = -2 - (d * (K + 1) + k) if k < K else -1
    for d in range(nd):
        c = big_c[d]
        if area[c] == -1:
            area[c] = -2 - (d * (K + 1) + K)
    box = np.empty((nd * (K + 1), 4), np.int64)  # row_min, col_min, row_max, col_max
    box[:, 0] = h
    box[:, 1] = 1 << 62
    box[:, 2] = -1
    box[:, 3] = -1
    uni = box[:nd].copy()
    for y in range(h):
        for r in range(row_ptr[y], row_ptr[y + 1]):
            a = area[lab[r] - 1]
            if a >= 0:
                continue
            d = dense[cval[lab[r] - 1]]
            s = rs[r]
            e = re[r] - 1
            uni[d, 0] = min(uni[d, 0], y)
            uni[d, 1] = min(uni[d, 1], s)
            uni[d, 2] = max(uni[d, 2], y)
            uni[d, 3] = max(uni[d, 3], e)
            if a < -1:
                t = -2 - a
                box[t, 0] = min(box[t, 0], y)
                box[t, 1] = min(box[t, 1], s)
                box[t, 2] = max(box[t, 2], y)
                box[t, 3] = max(box[t, 3], e)
    out = np.empty(nd * ISL_LEN, np.int64)
    p = 0
    for v in range(n):
        d = dense[v]
        if d < 0:
            continue
        q = p * ISL_LEN
        out[q:q + ISL_LEN] = rec[d]
        out[q + ISL_VALUE] = v
        out[q + ISL_X0] = uni[d, 1]
        out[q + ISL_X0 + 1] = uni[d, 0]
        out[q + ISL_X0 + 2] = uni[d, 3]
        out[q + ISL_X0 + 3] = uni[d, 2]
        c = big_c[d]
        t = -2 - area[c]
        out[q + ISL_BIG] = box[t, 1]
        out[q + ISL_BIG + 1] = box[t, 0]
        out[q + ISL_BIG + 2] = box[t, 3] - box[t, 1] + 1
        out[q + ISL_BIG + 3] = box[t, 2] - box[t, 0] + 1
        nb = min(rec[d, ISL_COUNT], K)
        out[q + ISL_NB] = nb
        for k in range(nb):
            t = d * (K + 1) + k
            b = q + ISL_BOXES + 4 * k
            out[b] = box[t, 1]
            out[b + 1] = box[t, 0]
            out[b + 2] = box[t, 3] - box[t, 1] + 1
            out[b + 3] = box[t, 2] - box[t, 0] + 1
        for k in range(nb, K):
            b = q + ISL_BOXES + 4 * k
            out[b:b + 4] = 0
        p += 1
    return out


# header of class_mask_quick's packed result
QUICK_FULL = 0
QUICK_TRANSITIONS = 1
QUICK_BLENDS = 2
QUICK_N_VALUES = 3
QUICK_N_COMP = 4
QUICK_N_SMALL = 5
QUICK_HEADER = 6


@njit(cache=True, nogil=True)
def class_mask_quick(m, kind, eight, has_bg, bg, idx_like, min_island, ignore):
    """The validator's hot path, in one call: :func:`class_scan_runs` plus the component
    summary and the tiny islands, packed in one int64 array (one array to hand back to
    Python: each returned array costs a few microseconds).

    Layout: a header of ``QUICK_HEADER`` numbers -- ``full`` (1 when the mask holds an
    invalid value (``kind == KIND_INVALID``) or nothing but background and ``ignore``:
    the caller must run the full rules), transitions and blends (as by
    :func:`class_scan`), and the counts ``nv``, ``nc``, ``ns`` of the sections that
    follow: the ``nv`` values present, their ``nv`` pixel counts; the ``nc`` values with
    components (``ignore`` left out; background is not labeled when ``has_bg``), their
    ``nc`` component counts; then the ``ns`` records of :func:`island_records` (one per
    class value with components smaller than ``min_island`` px, ``ISL_LEN`` numbers each).
    Memory: the runs, one value and one area per component, nothing per island.
    """
    return _class_mask_quick(m, kind, eight, has_bg, bg, idx_like, min_island, ignore, None)


@njit(cache=True, nogil=True)
def png_unfilter_class_scan(buf, h, w, kind, eight, bg, idx_like, min_island, ignore):
    """:func:`class_mask_quick` (with a background ``bg``) of an 8-bit PNG's image data
    while its rows are unfiltered: ``buf`` as for :func:`fastmask.kernels.png.png_unfilter`
    (``h`` rows of a filter byte and ``w`` bytes), unfiltered in place, each row scanned
    right after it is written (still in cache): one pass over the pixels instead of decode
    then scan. Returns the same array as :func:`class_mask_quick` on the decoded mask, or
    an empty array when a filter-type byte is not 0..4.
    """
    m = buf[:h * w].reshape(h, w)
    progress = np.zeros(2, np.int64)
    progress[1] = -1
    res = _class_mask_quick(m, kind, eight, True, bg, idx_like, min_island, ignore,
                            (buf, row_scratch(w), progress))
    if progress[1] >= 0:
        return res[:0]
    return res


@njit(cache=True, nogil=True)
def _class_mask_quick(m, kind, eight, has_bg, bg, idx_like, min_island, ignore, png):
    n = kind.shape[0]
    hist = np.zeros(n, np.int64)
    out = np.zeros(SCAN_LEN, np.int64)
    count, rs, re, rv, lab, row_ptr = _class_scan_runs(m, kind, hist, out, eight, has_bg, bg, idx_like, png)
    if count < 0:
        return np.empty(0, np.int64)
    full = 0
    other = False
    nv = 0
    for v in range(n):
        if hist[v] > 0:
            nv += 1
            if kind[v] == KIND_INVALID:
                full = 1
            if not ((has_bg and v == bg) or v == ignore):
                other = True
    if not other:
        full = 1
    # components: a label's value is its first run's (labels are numbered in raster order);
    # one value and one area per component, nothing else
    area = np.zeros(count, lab.dtype)
    cval = np.zeros(count, m.dtype)
    for r in range(rs.shape[0]):
        c = lab[r] - 1
        if area[c] == 0:
            cval[c] = rv[r]
        area[c] += re[r] - rs[r]
    per_value = np.zeros(n, np.int64)
    small = 0
    for c in range(count):
        v = cval[c]
        per_value[v] += 1
        if area[c] < min_island and kind[v] == KIND_CLASS:
            small += 1
    nc = 0
    for v in range(n):
        if per_value[v] > 0 and v != ignore:
            nc += 1
    isl = island_records(rs, re, lab, row_ptr, cval, area, kind, min_island, n) if small else np.empty(0, np.int64)
    ns = isl.shape[0] // ISL_LEN
    res = np.empty(QUICK_HEADER + 2 * nv + 2 * nc + ISL_LEN * ns, np.int64)
    res[QUICK_FULL] = full
    res[QUICK_TRANSITIONS] = out[SCAN_TRANSITIONS]
    res[QUICK_BLENDS] = out[SCAN_BLENDS]
    res[QUICK_N_VALUES] = nv
    res[QUICK_N_COMP] = nc
    res[QUICK_N_SMALL] = ns
    p = QUICK_HEADER
    for v in range(n):
        if hist[v] > 0:
            res[p] = v
            res[p + nv] = hist[v]
            p += 1
    p += nv
    for v in range(n):
        if per_value[v] > 0 and v != ignore:
            res[p] = v
            res[p + nc] = per_value[v]
            p += 1
    p += nc
    res[p:] = isl
    return res


@njit(cache=True, nogil=True)
def count_runs(m):
    """Number of horizontal runs (maximal stretches of one value, any value) of a 2-D
    array: an upper bound of the runs and components a labeling holds."""
    h, w = m.shape
    if w == 0:
        return 0
    n = 0
    for i in range(h):
        row = m[i]
        c = 1
        for j in range(w - 1):
            c += row[j] != row[j + 1]
        n += c
    return n


@njit(cache=True, nogil=True)
def slot_boxes(rs, re, rv, row_ptr, slot, nslots):
    """Union box (inclusive row_min, col_min, row_max, col_max) of the runs of each slot:
    run ``k`` belongs to slot ``slot[rv[k]]`` (-1: none).  ``(nslots, 4)`` int64; an empty
    slot keeps row_min = -1... no: row_max = -1."""
    h = row_ptr.shape[0] - 1
    box = np.empty((nslots, 4), np.int64)
    box[:, 0] = 1 << 62
    box[:, 1] = 1 << 62
    box[:, 2] = -1
    box[:, 3] = -1
    for y in range(h):
        for r in range(row_ptr[y], row_ptr[y + 1]):
            t = slot[rv[r]]
            if t < 0:
                continue
            box[t, 0] = min(box[t, 0], y)
            box[t, 1] = min(box[t, 1], rs[r])
            box[t, 2] = max(box[t, 2], y)
            box[t, 3] = max(box[t, 3], re[r] - 1)
    return box


@njit(cache=True, nogil=True)
def minority_boxes(a, b, major, slot, skip_b, nslots):
    """Per slot, the union box (inclusive x0, y0, x1, y1) and count of the pixels ``p`` with
    ``slot[a[p]] >= 0``, ``b[p] != major[a[p]]`` and ``skip_b[b[p]] == 0``: where an
    instance (code ``a``) carries another class (code ``b``) than its majority, for all
    flagged instances in one pass."""
    h, w = a.shape
    out = np.empty((nslots, 5), np.int64)
    out[:, 0] = 1 << 62
    out[:, 1] = 1 << 62
    out[:, 2] = -1
    out[:, 3] = -1
    out[:, 4] = 0
    for i in range(h):
        for j in range(w):
            x = a[i, j]
            t = slot[x]
            if t < 0:
                continue
            y = b[i, j]
            if y == major[x] or skip_b[y] != 0:
                continue
            out[t, 0] = min(out[t, 0], j)
            out[t, 1] = min(out[t, 1], i)
            out[t, 2] = max(out[t, 2], j)
            out[t, 3] = max(out[t, 3], i)
            out[t, 4] += 1
    return out


@njit(cache=True, nogil=True)
def count_fg_runs(m, i0, has_bg, bg):
    """Runs of rows ``i0..`` whose value is not the background (when ``has_bg``)."""
    h, w = m.shape
    n = 0
    if w == 0:
        return 0
    for i in range(i0, h):
        row = m[i]
        c = 0
        if has_bg:
            c += row[0] != bg
            for j in range(w - 1):
                c += (row[j] != row[j + 1]) & (row[j + 1] != bg)
        else:
            c += 1
            for j in range(w - 1):
                c += row[j] != row[j + 1]
        n += c
    return n
