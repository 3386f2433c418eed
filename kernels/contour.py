"""Contour tracing of binary masks along pixel edges ("crack following"), and Douglas-Peucker.

Geometry: pixel ``(row, col)`` is the unit square ``[col, col+1] x [row, row+1]``;
ring vertices are pixel *corners* (integer lattice points ``(x, y)``, ``0 <= x <= W``,
``0 <= y <= H``). A boundary edge separates a foreground pixel from a background
pixel (outside the image counts as background). Edges are walked with the
foreground on the right-hand side in image coordinates (y down), so outer rings
have a positive shoelace area in ``(x, y)`` and hole rings a negative one.

Saddles (two foreground pixels touching only at a corner): with 8-connectivity
the walk turns left there (the two pixels stay in one ring, which touches itself
at that corner); with 4-connectivity it turns right (two rings).

Rings are found in raster order of their first horizontal edge (the ring's
top-left edge); a ring whose first edge runs right is an outer ring, one whose
first edge runs left is a hole. Only corners (direction changes) are emitted, like
OpenCV's ``CHAIN_APPROX_SIMPLE``; a ring starts at its top-left corner.

Statuses: ``OK``; no data errors are possible for a 2-D uint8 input.
"""
from __future__ import annotations

import numpy as np
from numba import njit

OK = 0

# directions: 0 = +x (right), 1 = +y (down), 2 = -x (left), 3 = -y (up)
_DX = (1, 0, -1, 0)
_DY = (0, 1, 0, -1)


@njit(cache=True, nogil=True)
def _pad(mask):
    """0/1 copy of ``mask`` with a 1-pixel background border, and which padded rows hold foreground.

    Pixel ``(r, c)`` of the mask is ``p[r + 1, c + 1]``: lattice vertex ``(y, x)`` has the
    pixels ``p[y, x]`` (up-left), ``p[y, x + 1]`` (up-right), ``p[y + 1, x]`` (down-left) and
    ``p[y + 1, x + 1]`` (down-right) around it, all inside ``p`` for ``0 <= y <= H, 0 <= x <= W``.
    """
    h, w = mask.shape
    wp = ((w + 2 + 7) // 8) * 8  # rows padded to whole 64-bit words (the scan compares 8 pixels at once)
    p = np.zeros((h + 2, wp), np.uint8)
    row_any = np.zeros(h + 2, np.uint8)
    for r in range(h):
        any_fg = 0
        for c in range(w):
            if mask[r, c] != 0:
                p[r + 1, c + 1] = 1
                any_fg = 1
        row_any[r + 1] = any_fg
    return p, row_any


@njit(cache=True, nogil=True)
def _has_out(p, y, x, d):
    # around vertex (y, x): a = p[y, x], b = p[y, x+1], c = p[y+1, x], dd = p[y+1, x+1]
    if d == 0:
        return p[y + 1, x + 1] != 0 and p[y, x + 1] == 0
    if d == 1:
        return p[y + 1, x] != 0 and p[y + 1, x + 1] == 0
    if d == 2:
        return p[y, x] != 0 and p[y + 1, x] == 0
    return p[y, x + 1] != 0 and p[y, x] == 0


@njit(cache=True, nogil=True)
def _count_padded(p, row_any):
    h = p.shape[0] - 2
    w = p.shape[1] - 2  # padded width: the extra columns are background and add no edge
    n = 0
    for y in range(h + 1):  # horizontal edges between padded rows y and y + 1
        if row_any[y] == 0 and row_any[y + 1] == 0:
            continue
        for x in range(1, w + 1):
            n += p[y, x] != p[y + 1, x]
    for y in range(1, h + 1):  # vertical edges in padded row y
        if row_any[y] == 0:
            continue
        for x in range(w + 1):
            n += p[y, x] != p[y, x + 1]
    return n


@njit(cache=True, nogil=True)
def count_boundary_edges(mask):
    """Number of pixel edges between foreground and background (an upper bound of the corners)."""
    p, row_any = _pad(mask)
    return _count_padded(p, row_any)


@njit(cache=True, nogil=True)
def trace_rings(mask, eight):
    """Trace every boundary ring of a 2-D mask (non-zero = foreground).

    Returns ``(status, xy, ring_offsets, is_hole, first_pixel)``: ``xy`` (n, 2) int32
    corner coordinates ``(x, y)``, ring ``i`` is ``xy[ring_offsets[i]:ring_offsets[i+1]]``;
    ``is_hole`` uint8 per ring; ``first_pixel`` (rings, 2) int64 ``(row, col)`` of a
    foreground pixel touching the ring (the pixel below/above its first edge).
    """
    h, w = mask.shape
    p, row_any = _pad(mask)
    n_edges = _count_padded(p, row_any)
    xy = np.empty((n_edges + 1, 2), np.int32)
    max_rings = n_edges // 4 + 1
    offsets = np.zeros(max_rings + 1, np.int64)
    is_hole = np.zeros(max_rings, np.uint8)
    first = np.zeros((max_rings, 2), np.int64)
    hvis = np.zeros((h + 1, max(w, 1)), np.uint8)  # horizontal edge (y, x): from x to x+1 on lattice row y
    n_pts = 0
    n_rings = 0
    words = p.view(np.uint64)
    n_words = words.shape[1]
    for y0 in range(h + 1):
        if row_any[y0] == 0 and row_any[y0 + 1] == 0:
            continue
        for k in range(n_words):
            if words[y0, k] == words[y0 + 1, k]:
                continue  # no horizontal edge under these 8 pixels
            for col in range(8 * k, 8 * k + 8):
                x0 = col - 1
                if x0 < 0 or x0 >= w:
                    continue
                above = p[y0, col]
                below = p[y0 + 1, col]
                if below == above or hvis[y0, x0]:
                    continue
                if below:
                    sd = 0
                    sy, sx = y0, x0
                    first[n_rings, 0] = y0
                    first[n_rings, 1] = x0
                    is_hole[n_rings] = 0
                else:
                    sd = 2
                    sy, sx = y0, x0 + 1
                    first[n_rings, 0] = y0 - 1
                    first[n_rings, 1] = x0
                    is_hole[n_rings] = 1
                ring_start = n_pts
                vy, vx, d = sy, sx, sd
                while True:
                    # walk edge (vy, vx) in direction d
                    if d == 0:
                        hvis[vy, vx] = 1
                    elif d == 2:
                        hvis[vy, vx - 1] = 1
                    vy += _DY[d]
                    vx += _DX[d]
                    # choose the next direction: 8-conn prefers left turns at saddles, 4-conn right turns
                    if eight:
                        c0, c1, c2 = (d + 3) % 4, d, (d + 1) % 4
                    else:
                        c0, c1, c2 = (d + 1) % 4, d, (d + 3) % 4
                    if _has_out(p, vy, vx, c0):
                        nd = c0
                    elif _has_out(p, vy, vx, c1):
                        nd = c1
                    else:
                        nd = c2
                    if nd != d:
                        xy[n_pts, 0] = vx
                        xy[n_pts, 1] = vy
                        n_pts += 1
                    d = nd
                    if vy == sy and vx == sx and d == sd:
                        break
                # an outer ring's start vertex is its top-left corner and was emitted last: rotate it
                # to the front (a hole's walk reaches its top-left corner first anyway)
                if sd == 0 and n_pts > ring_start + 1:
                    lx = xy[n_pts - 1, 0]
                    ly = xy[n_pts - 1, 1]
                    for i in range(n_pts - 1, ring_start, -1):
                        xy[i, 0] = xy[i - 1, 0]
                        xy[i, 1] = xy[i - 1, 1]
                    xy[ring_start, 0] = lx
                    xy[ring_start, 1] = ly
                n_rings += 1
                offsets[n_rings] = n_pts
    return OK, xy[:n_pts].copy(), offsets[: n_rings + 1].copy(), is_hole[:n_rings].copy(), first[:n_rings].copy()


@njit(cache=True, nogil=True)
def ring_areas2(xy, offsets):
    """Twice the signed shoelace area of every ring (int64; outer rings positive, holes negative)."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, np.int64)
    for i in range(n):
        a = offsets[i]
        b = offsets[i + 1]
        s = np.int64(0)
        for j in range(a, b):
            k = j + 1 if j + 1 < b else a
            s += np.int64(xy[j, 0]) * xy[k, 1] - np.int64(xy[k, 0]) * xy[j, 1]
        out[i] = s
    return out


@njit(cache=True, nogil=True)
def _seg_dist2(px, py, ax, ay, bx, by):
    dx = bx - ax
    dy = by - ay
    l2 = dx * dx + dy * dy
    if l2 == 0.0:
        ex = px - ax
        ey = py - ay
        return ex * ex + ey * ey
    t = ((px - ax) * dx + (py - ay) * dy) / l2
    if t < 0.0:
        t = 0.0
    elif t > 1.0:
        t = 1.0
    ex = px - (ax + t * dx)
    ey = py - (ay + t * dy)
    return ex * ex + ey * ey


@njit(cache=True, nogil=True)
def _dp_chain(pts, i0, i1, tol2, keep):
    """Douglas-Peucker on pts[i0..i1] (indices modulo n), marking kept points."""
    n = pts.shape[0]
    stack = np.empty((2 * n + 4, 2), np.int64)
    top = 0
    stack[0, 0] = i0
    stack[0, 1] = i1
    top = 1
    while top > 0:
        top -= 1
        a = stack[top, 0]
        b = stack[top, 1]
        if b - a < 2:
            continue
        ax = pts[a % n, 0]
        ay = pts[a % n, 1]
        bx = pts[b % n, 0]
        by = pts[b % n, 1]
        best = -1.0
        bi = -1
        for i in range(a + 1, b):
            d2 = _seg_dist2(pts[i % n, 0], pts[i % n, 1], ax, ay, bx, by)
            if d2 > best:
                best = d2
                bi = i
        if best > tol2:
            keep[bi % n] = 1
            stack[top, 0] = a
            stack[top, 1] = bi
            top += 1
            stack[top, 0] = bi
            stack[top, 1] = b
            top += 1


@njit(cache=True, nogil=True)
def simplify_ring(pts, tolerance):
    """Douglas-Peucker simplification of a closed ring ``pts`` (n, 2) float64; keeps >= 3 points.

    The ring is cut at point 0 and the point farthest from it; both chains are
    simplified with the maximum distance ``tolerance``. Returns the kept points in order.
    """
    n = pts.shape[0]
    if n <= 3 or tolerance <= 0.0:
        return pts.copy()
    keep = np.zeros(n, np.uint8)
    keep[0] = 1
    far = 0
    best = -1.0
    for i in range(1, n):
        dx = pts[i, 0] - pts[0, 0]
        dy = pts[i, 1] - pts[0, 1]
        d2 = dx * dx + dy * dy
        if d2 > best:
            best = d2
            far = i
    keep[far] = 1
    tol2 = tolerance * tolerance
    _dp_chain(pts, 0, far, tol2, keep)
    _dp_chain(pts, far, n, tol2, keep)
    m = 0
    for i in range(n):
        m += keep[i]
    if m < 3:
        # keep the point farthest from the chord 0-far so that the ring stays a polygon
        bi = -1
        best = -1.0
        for i in range(n):
            if keep[i]:
                continue
            d2 = _seg_dist2(pts[i, 0], pts[i, 1], pts[0, 0], pts[0, 1], pts[far, 0], pts[far, 1])
            if d2 > best:
                best = d2
                bi = i
        keep[bi] = 1
        m += 1
    out = np.empty((m, 2), np.float64)
    j = 0
    for i in range(n):
        if keep[i]:
            out[j, 0] = pts[i, 0]
            out[j, 1] = pts[i, 1]
            j += 1
    return out


@njit(cache=True, nogil=True)
def nonzero_bbox(mask):
    """``(found, r0, r1, c0, c1)``: half-open row/column range of the non-zero pixels of a 2-D uint8 mask."""
    h, w = mask.shape
    r0 = -1
    r1 = -1
    for r in range(h):
        acc = np.uint8(0)  # a uint8 OR-reduction vectorizes (an int accumulator does not)
        for c in range(w):
            acc |= mask[r, c]
        if acc != 0:
            if r0 < 0:
                r0 = r
            r1 = r + 1
    if r0 < 0:
        return False, 0, 0, 0, 0
    cols = np.zeros(w, np.uint8)
    for r in range(r0, r1):  # column OR-reduction over the foreground rows (vectorizes)
        for c in range(w):
            cols[c] |= mask[r, c]
    c0 = 0
    while cols[c0] == 0:
        c0 += 1
    c1 = w
    while cols[c1 - 1] == 0:
        c1 -= 1
    return True, r0, r1, c0, c1
