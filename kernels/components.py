"""Connected-component labeling of 2-D label maps (run-based two-pass union-find).

Algorithm
---------
1. **Scan** (one pass over the input): every row is cut into *runs*, maximal
   horizontal stretches of equal, non-background value (boundaries are found
   64 pixels at a time as a bitmask, then visited with count-trailing-zeros).
   Each new run is merged with the runs of the previous row that touch it (column ranges overlap for
   4-connectivity, overlap or touch diagonally for 8-connectivity) *and* carry
   the same value.  Runs are the union-find nodes, so a smooth mask costs a
   handful of union-find operations per row instead of one per pixel.
   The union always links the larger root under the smaller one, so
   ``parent[i] <= i`` holds for every run and the root of a component is its
   first run in raster order (which holds the component's first pixel).
2. **Flatten** (one pass over the runs): because ``parent[i] <= i``, walking
   the runs in order turns roots into consecutive labels 1..N and every other
   run takes its parent's (already final) label.  Labels are therefore in raster
   (row-major) order of each component's first pixel -- the numbering of
   ``scipy.ndimage.label`` and of ``cc3d.connected_components``.
3. **Paint** (one write pass over the output): each row is written from its runs,
   background gaps as 0; long runs become vectorised fills.
   Statistics (value, area, bounding box, first pixel) are gathered from the
   runs, never from the pixels.

Entry points: :func:`label_2d` (label image), :func:`label_stats_2d` (label
image + statistics), :func:`runs_2d` + :func:`run_stats` (components as runs, no
label image) with :func:`paint_lut` (paint any per-component value, e.g. instance
ids) and :func:`fill_runs` (overwrite selected components in place).

Conventions: arrays in, arrays out; no exceptions for data (a status code is
returned), no prints.  The input must be C-contiguous 2-D (the Python layer calls
``np.ascontiguousarray``).  The caller passes the output array (or, for
:func:`runs_2d`, any array of the wanted dtype); its dtype (int32 or int64) is
also the dtype of the run indices, and a kernel returns ``ERR_LABEL_OVERFLOW``
instead of running when ``H * W`` does not fit it.  Run arrays start at about
``H * W / 16`` entries and double when a row might not fit.

Bounding boxes are returned as inclusive ``(row_min, col_min, row_max, col_max)``;
the Python layer converts them to ``(x, y, w, h)``.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

# Status codes returned by the kernels.
OK = 0
ERR_CONNECTIVITY = 1      # connectivity not in {4, 8}
ERR_LABEL_OVERFLOW = 2    # the component count does not fit the output dtype
ERR_SHAPE = 3             # output shape differs from the input shape

STATUS_MESSAGES = {
    OK: "ok",
    ERR_CONNECTIVITY: "connectivity must be 4 or 8",
    ERR_LABEL_OVERFLOW: "the number of components does not fit the label dtype",
    ERR_SHAPE: "output array shape differs from the input shape",
}


@njit(cache=True, nogil=True)
def _find(parent, x):
    """Root of ``x`` with full path compression."""
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit(cache=True, nogil=True)
def _grow(a, n, cap):
    b = np.empty(cap, a.dtype)
    b[:n] = a[:n]
    return b


@njit(cache=True, nogil=True)
def _grow_runs(rs, re, rv, parent, n, w, npx):
    """The run arrays with room for another row of ``w`` runs (doubling; the first ``n`` kept).

    A row adds at most ``w`` runs, so ``n + w <= npx`` always fits.
    """
    cap = min(max(2 * rs.shape[0], n + w), npx)
    return _grow(rs, n, cap), _grow(re, n, cap), _grow(rv, n, cap), _grow(parent, n, cap)


@njit(cache=True, nogil=True)
def _scan_rows(img, r0, eight, has_bg, bg, rs, re, rv, parent, row_ptr, ends, state):
    """Rows ``r0..`` of :func:`_scan_runs` until a row might not fit in the run arrays;
    returns the next row.  ``state`` = (runs so far, first run of the previous row);
    ``ends`` (int64, W + 1) is scratch for one row's run ends.

    (Its own function so that the run arrays are not reassigned inside the row loop: Numba
    reference-counts a loop-carried array on every row.  For the same reason the union
    below is written out, not a helper: an array handed to a helper, even an inlined
    one, is reference-counted on every call -- 8 atomic operations per run.)
    """
    H, W = img.shape
    n = state[0]
    prev_lo = state[1]
    prev_hi = n
    ext = 1 if eight else 0
    one = np.uint64(1)
    cap = rs.shape[0]
    r = r0
    while r < H and n + W <= cap:
        row_ptr[r] = n
        # the run ends of this row, 64 pixels a word (see _scan_runs)
        k = 0
        wb = 0
        while wb + 65 <= W:
            bits = np.uint64(0)
            for t in range(64):
                bits |= np.uint64(img[r, wb + 1 + t] != img[r, wb + t]) << np.uint64(t)
            while bits:
                ends[k] = wb + 1 + np.int64(trailing_zeros(bits))
                k += 1
                bits &= bits - one
            wb += 64
        for e in range(wb + 1, W):
            if img[r, e] != img[r, e - 1]:
                ends[k] = e
                k += 1
        ends[k] = W
        # each run of this row: a new node, united with the touching equal-valued runs
        # j..prev_hi of the previous row; parent[i] <= i holds throughout
        j = prev_lo
        s = 0
        for t in range(k + 1 if W > 0 else 0):
            e = ends[t]
            v = img[r, s]
            if not (has_bg and v == bg):
                rs[n] = s
                re[n] = e
                rv[n] = v
                # p: the new run's root so far; it starts at n, larger than any root of
                # the previous row, so the first match simply adopts that root
                p = n
                # previous-row runs ending before this run's neighbourhood touch neither
                # it nor any later run of this row: skipped for good
                lo = s - ext
                while j < prev_hi and re[j] <= lo:
                    j += 1
                hi = e + ext
                q_k = j
                while q_k < prev_hi and rs[q_k] < hi:
                    if rv[q_k] == v:
                        q = parent[q_k]
                        if parent[q] != q:
                            q = _find(parent, q)
                        if q < p:
                            parent[p] = q
                            p = q
                        elif q > p:
                            parent[q] = p
                    q_k += 1
                parent[n] = p
                n += 1
            s = e
        prev_lo = row_ptr[r]
        prev_hi = n
        r += 1
    state[0] = n
    state[1] = prev_lo
    return r


@njit(cache=True, nogil=True)
def _scan_runs(img, eight, has_bg, bg, rs, re, rv, parent, row_ptr):
    """Cut rows into runs and union touching equal-valued runs of adjacent rows.

    Fills ``rs``/``re`` (run start, exclusive end column), ``rv`` (value),
    ``parent`` (union-find forest with ``parent[i] <= i``) and ``row_ptr``
    (runs of row ``r`` are ``row_ptr[r]:row_ptr[r + 1]``).  The run arrays grow
    (doubling) when a row might not fit, so they start small: returns
    ``(n_runs, rs, re, rv, parent)``.

    Run boundaries are found 64 pixels at a time: a branch-free (vectorised)
    loop packs ``row[x] != row[x - 1]`` into a 64-bit word and the set bits are
    visited with count-trailing-zeros, so the cost does not depend on how
    predictable the run lengths are.
    """
    H, W = img.shape
    npx = H * W
    state = np.zeros(2, np.int64)
    ends = np.empty(W + 1, np.int64)
    r = 0
    while True:
        r = _scan_rows(img, r, eight, has_bg, bg, rs, re, rv, parent, row_ptr, ends, state)
        if r == H:
            break
        rs, re, rv, parent = _grow_runs(rs, re, rv, parent, state[0], W, npx)
    n = state[0]
    row_ptr[H] = n
    return n, rs, re, rv, parent


@njit(cache=True, nogil=True)
def _flatten(parent, n):
    """Replace ``parent`` in place by final labels 1..N (raster order); return N."""
    count = 0
    for i in range(n):
        p = parent[i]
        if p == i:
            count += 1
            parent[i] = count
        else:
            parent[i] = parent[p]
    return count


_SHORT = 8  # segments up to this length are written as one fixed-width (vector) store


@njit(cache=True, nogil=True, inline="always")
def _fill(orow, a, b, value, W):
    """``orow[a:b] = value``.  A short segment is written as ``_SHORT`` values from
    ``a`` (a branch-free vector store); the overhang is overwritten by the
    segments that follow, which are painted left to right."""
    if b - a <= _SHORT and a + _SHORT <= W:
        seg = orow[a:a + _SHORT]
        for t in range(_SHORT):
            seg[t] = value
    else:
        seg = orow[a:b]
        for t in range(seg.shape[0]):
            seg[t] = value


@njit(cache=True, nogil=True)
def _paint(rs, re, lab, row_ptr, out):
    """Write every row from its runs (labels) and the gaps between them (0)."""
    H, W = out.shape
    zero = out.dtype.type(0)
    for r in range(H):
        orow = out[r]
        x = 0
        for k in range(row_ptr[r], row_ptr[r + 1]):
            s = rs[k]
            _fill(orow, x, s, zero, W)
            x = re[k]
            _fill(orow, s, x, lab[k], W)
        _fill(orow, x, W, zero, W)


@njit(cache=True, nogil=True)
def _runs(img, connectivity, has_bg, bg, idx_like):
    """Shared front half: scan + flatten.  ``idx_like`` is any array whose dtype
    (int32 or int64) is used for run indices and labels.

    Returns ``(status, n_runs, count, rs, re, rv, lab, row_ptr)``; on a bad status
    ``row_ptr`` is all zeros (no runs), so the arrays are always safe to read.
    """
    H, W = img.shape
    idx = idx_like.dtype
    npx = H * W
    # initial capacity: plenty for smooth masks; _scan_runs grows it for noisy ones.
    # Small scratch keeps the allocator from mapping/trimming tens of MB per call.
    cap = min(npx, max(npx // 16, 4 * W, 1024))
    rs = np.empty(cap, idx)
    re = np.empty(cap, idx)
    rv = np.empty(cap, img.dtype)
    parent = np.empty(cap, idx)
    row_ptr = np.zeros(H + 1, idx)
    if connectivity != 4 and connectivity != 8:
        return ERR_CONNECTIVITY, 0, 0, rs, re, rv, parent, row_ptr
    if npx > np.iinfo(idx).max:
        # run indices (and so labels) could overflow the index dtype
        return ERR_LABEL_OVERFLOW, 0, 0, rs, re, rv, parent, row_ptr
    n, rs, re, rv, parent = _scan_runs(img, connectivity == 8, has_bg, bg, rs, re, rv, parent, row_ptr)
    count = _flatten(parent, n)
    return OK, n, count, rs, re, rv, parent, row_ptr


@njit(cache=True, nogil=True)
def label_2d(img, connectivity, has_bg, bg, out):
    """Label ``img`` (C-contiguous 2-D) into ``out`` (int32/int64, same shape).

    Pixels join when they are 4-/8-adjacent and have equal values; pixels equal
    to ``bg`` (when ``has_bg``) get label 0.  Returns ``(status, count)``.
    """
    if out.shape[0] != img.shape[0] or out.shape[1] != img.shape[1]:
        return ERR_SHAPE, 0
    status, n, count, rs, re, rv, lab, row_ptr = _runs(img, connectivity, has_bg, bg, out)
    if status != OK:
        return status, 0
    _paint(rs, re, lab, row_ptr, out)
    return OK, count


@njit(cache=True, nogil=True)
def run_stats(rs, re, rv, lab, row_ptr, count):
    """Per-component statistics from the runs (see :func:`label_stats_2d`)."""
    H = row_ptr.shape[0] - 1
    value = np.empty(count, rv.dtype)
    area = np.zeros(count, np.int64)
    box = np.empty((count, 4), np.int64)     # row_min, col_min, row_max, col_max (inclusive)
    first = np.empty((count, 2), np.int64)   # row, col of the first pixel in raster order
    for r in range(H):
        for k in range(row_ptr[r], row_ptr[r + 1]):
            i = lab[k] - 1
            s = rs[k]
            e = re[k] - 1
            if area[i] == 0:
                value[i] = rv[k]
                first[i, 0] = r
                first[i, 1] = s
                box[i, 0] = r
                box[i, 1] = s
                box[i, 2] = r
                box[i, 3] = e
            else:
                if s < box[i, 1]:
                    box[i, 1] = s
                if e > box[i, 3]:
                    box[i, 3] = e
                box[i, 2] = r
            area[i] += e - s + 1
    return value, area, box, first


@njit(cache=True, nogil=True)
def label_stats_2d(img, connectivity, has_bg, bg, out):
    """Like :func:`label_2d` plus per-component statistics from the runs.

    Returns ``(status, count, value, area, box, first)`` where component ``i``
    (label ``i + 1``) has value ``value[i]``, pixel count ``area[i]``, inclusive
    bounding box ``box[i] = (row_min, col_min, row_max, col_max)`` and first
    pixel in raster order ``first[i] = (row, col)``.  On a bad status the
    statistics are empty.
    """
    if out.shape[0] != img.shape[0] or out.shape[1] != img.shape[1]:
        return (ERR_SHAPE, 0, np.empty(0, img.dtype), np.zeros(0, np.int64),
                np.empty((0, 4), np.int64), np.empty((0, 2), np.int64))
    status, n, count, rs, re, rv, lab, row_ptr = _runs(img, connectivity, has_bg, bg, out)
    if status != OK:
        count = 0
    else:
        _paint(rs, re, lab, row_ptr, out)
    value, area, box, first = run_stats(rs, re, rv, lab, row_ptr, count)
    return status, count, value, area, box, first


@njit(cache=True, nogil=True)
def runs_2d(img, connectivity, has_bg, bg, idx_like):
    """Components as runs, without painting a label image.

    Returns ``(status, count, rs, re, rv, lab, row_ptr)``: the runs of row ``r``
    are ``row_ptr[r]:row_ptr[r + 1]``, run ``k`` covers columns ``rs[k]:re[k]``
    with value ``rv[k]`` and component label ``lab[k]`` (1..count).  Use with
    :func:`run_stats`, :func:`paint_lut` and :func:`fill_runs`.
    """
    status, n, count, rs, re, rv, lab, row_ptr = _runs(img, connectivity, has_bg, bg, idx_like)
    if status != OK:
        count = 0
    return status, count, rs[:n], re[:n], rv[:n], lab[:n], row_ptr


@njit(cache=True, nogil=True)
def paint_lut(rs, re, lab, row_ptr, lut, out):
    """Paint ``out`` (H, W) from runs: run ``k`` gets ``lut[lab[k]]``, gaps ``lut[0]``."""
    H, W = out.shape
    if row_ptr.shape[0] != H + 1:
        return ERR_SHAPE
    gap = lut[0]
    for r in range(H):
        orow = out[r]
        x = 0
        for k in range(row_ptr[r], row_ptr[r + 1]):
            s = rs[k]
            _fill(orow, x, s, gap, W)
            x = re[k]
            _fill(orow, s, x, lut[lab[k]], W)
        _fill(orow, x, W, gap, W)
    return OK


@njit(cache=True, nogil=True)
def fill_runs(rs, re, lab, row_ptr, selected, fill, out):
    """In place: ``out[r, rs[k]:re[k]] = fill`` for every run whose ``selected[lab[k]]``."""
    H, W = out.shape
    if row_ptr.shape[0] != H + 1:
        return ERR_SHAPE
    for r in range(H):
        orow = out[r]
        for k in range(row_ptr[r], row_ptr[r + 1]):
            if selected[lab[k]]:
                seg = orow[rs[k]:re[k]]
                for t in range(seg.shape[0]):
                    seg[t] = fill
    return OK
