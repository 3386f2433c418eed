"""COCO run-length encoding kernels (bit-exact with pycocotools' maskApi.c).

Conventions (COCO's): a mask of height ``h`` and width ``w`` is scanned in
column-major order (position ``p = x * h + y``); ``counts`` alternate
background / foreground run lengths, starting with background (so a mask whose
first pixel is set starts with a 0 count). A *transition* is any change of byte
value between consecutive positions, exactly as pycocotools' encoder sees it.

Batches of RLEs are passed flat: ``counts`` (uint32, all RLEs back to back) and
``offsets`` (int64, ``n + 1`` entries; RLE ``i`` is ``counts[offsets[i]:offsets[i+1]]``).

Every kernel is ``@njit(cache=True, nogil=True, error_model="numpy")``. Malformed data never raises
from compiled code: parsers return a status per RLE (see ``STATUS_*``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Status codes returned by the string parser (one per RLE).
STATUS_OK = 0
STATUS_BAD_CHAR = 1       # a character outside the codec's range '0'..'o' (48..111)
STATUS_TRUNCATED = 2      # the string ends inside a multi-character value
STATUS_NEGATIVE = 3       # a run length decodes to a negative number
STATUS_OVERFLOW = 4       # a run length does not fit in 32 bits (or a value is too long)
STATUS_BAD_SUM = 5        # run lengths do not sum to h * w

_CHUNK = 32  # bytes compared per vectorised block before looking at single bytes


@njit(cache=True, nogil=True, error_model="numpy")
def _grow(arr, needed):
    """Return ``arr`` or a larger copy holding at least ``needed`` items."""
    if needed <= arr.shape[0]:
        return arr
    size = max(needed, 2 * arr.shape[0] + 16)
    out = np.empty(size, arr.dtype)
    out[: arr.shape[0]] = arr
    return out


# --------------------------------------------------------------------------- encode


@njit(cache=True, nogil=True, error_model="numpy")
def encode_colmajor(flat):
    """Encode masks stored column-major: ``flat[n]`` is mask ``n`` as ``h*w`` bytes.

    Compares whole blocks of bytes with their predecessors first (a vectorised
    OR-reduction) and only walks single bytes inside blocks that change.
    Returns ``(counts uint32, offsets int64)``.
    """
    n_masks, length = flat.shape
    counts = np.empty(max(16, 4 * n_masks), np.uint32)
    offsets = np.zeros(n_masks + 1, np.int64)
    k = 0
    for n in range(n_masks):
        row = flat[n]
        last = 0
        if length > 0 and row[0] != 0:
            counts = _grow(counts, k + 1)
            counts[k] = 0
            k += 1
        j0 = 1
        while j0 < length:
            j1 = min(j0 + _CHUNK, length)
            acc = np.uint8(0)
            for j in range(j0, j1):
                acc |= row[j] ^ row[j - 1]
            if acc != 0:
                for j in range(j0, j1):
                    if row[j] != row[j - 1]:
                        counts = _grow(counts, k + 1)
                        counts[k] = j - last
                        k += 1
                        last = j
            j0 = j1
        counts = _grow(counts, k + 1)
        counts[k] = length - last
        k += 1
        offsets[n + 1] = k
    return counts[:k].copy(), offsets


@njit(cache=True, nogil=True, error_model="numpy")
def encode_rowmajor(flat, h, w):
    """Encode masks stored row-major (C order): ``flat[n]`` is an (h, w) mask as ``h*w`` bytes.

    No transposed copy: rows are compared with the row above (block-wise, as in
    :func:`encode_colmajor`), transitions are collected in row order and then
    bucketed by column, which yields them in column-major order directly.
    Row 0 of column ``x`` is compared with the last row of column ``x - 1``,
    its predecessor in column-major order.
    """
    n_masks = flat.shape[0]
    counts = np.empty(max(16, 4 * n_masks), np.uint32)
    offsets = np.zeros(n_masks + 1, np.int64)
    tx = np.empty(256, np.int64)
    ty = np.empty(256, np.int64)
    colcount = np.zeros(w + 1, np.int64)
    colfill = np.zeros(w + 1, np.int64)
    pos = np.empty(256, np.int64)
    total = h * w
    k = 0
    for n in range(n_masks):
        a = flat[n]
        t = 0
        colcount[:] = 0
        # row 0: predecessor of (0, x) is (h-1, x-1); of (0, 0) it is "0"
        if w > 0 and h > 0:
            if a[0] != 0:
                tx = _grow(tx, t + 1)
                ty = _grow(ty, t + 1)
                tx[t] = 0
                ty[t] = 0
                t += 1
                colcount[0] += 1
            last_row = (h - 1) * w
            x0 = 1
            while x0 < w:
                x1 = min(x0 + _CHUNK, w)
                acc = np.uint8(0)
                for x in range(x0, x1):
                    acc |= a[x] ^ a[last_row + x - 1]
                if acc != 0:
                    for x in range(x0, x1):
                        if a[x] != a[last_row + x - 1]:
                            tx = _grow(tx, t + 1)
                            ty = _grow(ty, t + 1)
                            tx[t] = x
                            ty[t] = 0
                            t += 1
                            colcount[x] += 1
                x0 = x1
        for y in range(1, h):
            base = y * w
            x0 = 0
            while x0 < w:
                x1 = min(x0 + _CHUNK, w)
                acc = np.uint8(0)
                for x in range(x0, x1):
                    acc |= a[base + x] ^ a[base - w + x]
                if acc != 0:
                    for x in range(x0, x1):
                        if a[base + x] != a[base - w + x]:
                            tx = _grow(tx, t + 1)
                            ty = _grow(ty, t + 1)
                            tx[t] = x
                            ty[t] = y
                            t += 1
                            colcount[x] += 1
                x0 = x1
        # bucket by column (stable: rows stay increasing inside a column)
        s = 0
        for x in range(w):
            colfill[x] = s
            s += colcount[x]
        pos = _grow(pos, t)
        for i in range(t):
            x = tx[i]
            pos[colfill[x]] = x * h + ty[i]
            colfill[x] += 1
        counts = _grow(counts, k + t + 1)
        last = 0
        for i in range(t):
            counts[k] = pos[i] - last
            last = pos[i]
            k += 1
        counts[k] = total - last
        k += 1
        offsets[n + 1] = k
    return counts[:k].copy(), offsets


@njit(cache=True, nogil=True, error_model="numpy")
def encode_labelmap_rowmajor(a, h, w, values_lut):
    """Per-value RLEs of a C-ordered label map, in one pass over its transitions.

    ``a`` is the (h*w,) row-major label map (any integer type),
    ``values_lut[v]`` is the output slot of value ``v`` (or -1 to skip it).
    Every label change at column-major position ``p`` toggles the binary masks
    of the old and the new value there. Returns ``(counts, offsets)`` with one
    RLE per slot.
    """
    n_slots = 0
    for v in range(values_lut.shape[0]):
        if values_lut[v] >= 0:
            n_slots = max(n_slots, values_lut[v] + 1)
    total = h * w
    # events: (position, slot), generated in row order, then sorted column-major
    ex = np.empty(256, np.int64)
    ey = np.empty(256, np.int64)
    es = np.empty(256, np.int64)
    colcount = np.zeros(w + 1, np.int64)
    t = 0
    for y in range(h):
        for x in range(w):
            cur = a[y * w + x]
            s_new = values_lut[cur] if 0 <= cur < values_lut.shape[0] else -1
            if y == 0 and x == 0:
                # nothing precedes position 0: only the first value's mask starts here
                s_old = -1
            else:
                if y > 0:
                    prev = a[(y - 1) * w + x]
                else:
                    prev = a[(h - 1) * w + x - 1]
                if cur == prev:
                    continue
                s_old = values_lut[prev] if 0 <= prev < values_lut.shape[0] else -1
            ex = _grow(ex, t + 2)
            ey = _grow(ey, t + 2)
            es = _grow(es, t + 2)
            if s_old >= 0:
                ex[t] = x
                ey[t] = y
                es[t] = s_old
                t += 1
                colcount[x] += 1
            if s_new >= 0:
                ex[t] = x
                ey[t] = y
                es[t] = s_new
                t += 1
                colcount[x] += 1
    # column-major order of events (stable)
    colstart = np.zeros(w + 1, np.int64)
    s = 0
    for x in range(w):
        colstart[x] = s
        s += colcount[x]
    pos = np.empty(t, np.int64)
    slot = np.empty(t, np.int64)
    for i in range(t):
        x = ex[i]
        j = colstart[x]
        pos[j] = x * h + ey[i]
        slot[j] = es[i]
        colstart[x] += 1
    # stable bucket by slot
    slotcount = np.zeros(n_slots + 1, np.int64)
    for i in range(t):
        slotcount[slot[i]] += 1
    slotstart = np.zeros(n_slots + 1, np.int64)
    s = 0
    for v in range(n_slots):
        slotstart[v] = s
        s += slotcount[v]
    bypos = np.empty(t, np.int64)
    fill = slotstart.copy()
    for i in range(t):
        bypos[fill[slot[i]]] = pos[i]
        fill[slot[i]] += 1
    counts = np.empty(t + n_slots, np.uint32)
    offsets = np.zeros(n_slots + 1, np.int64)
    k = 0
    for v in range(n_slots):
        last = 0
        for i in range(slotstart[v], slotstart[v] + slotcount[v]):
            counts[k] = bypos[i] - last
            last = bypos[i]
            k += 1
        counts[k] = total - last
        k += 1
        offsets[v + 1] = k
    return counts[:k].copy(), offsets


# --------------------------------------------------------------------------- string codec


@njit(cache=True, nogil=True, error_model="numpy")
def counts_to_chars(counts, offsets):
    """COCO's compressed string form (LEB128-like, 6 bits per char, chars 48..111).

    Counts from index 3 on are stored as differences to the count two before.
    Returns ``(chars uint8, char_offsets int64)``.
    """
    n = offsets.shape[0] - 1
    out = np.empty(7 * counts.shape[0] + 1, np.uint8)
    char_offsets = np.zeros(n + 1, np.int64)
    p = 0
    for r in range(n):
        start = offsets[r]
        m = offsets[r + 1] - start
        for i in range(m):
            x = np.int64(counts[start + i])
            if i > 2:
                x -= np.int64(counts[start + i - 2])
            more = True
            while more:
                c = x & 0x1F
                x >>= 5
                if c & 0x10:
                    more = x != -1
                else:
                    more = x != 0
                if more:
                    c |= 0x20
                out[p] = c + 48
                p += 1
        char_offsets[r + 1] = p
    return out[:p].copy(), char_offsets


@njit(cache=True, nogil=True, error_model="numpy")
def chars_to_counts(chars, char_offsets, heights, widths):
    """Parse compressed strings; validate against ``h * w``.

    Returns ``(counts uint32, offsets int64, status int32[n])``. A status other
    than ``STATUS_OK`` leaves that RLE's counts empty.
    """
    n = char_offsets.shape[0] - 1
    counts = np.empty(chars.shape[0] + 1, np.uint32)
    offsets = np.zeros(n + 1, np.int64)
    status = np.zeros(n, np.int32)
    k = 0
    for r in range(n):
        p = char_offsets[r]
        end = char_offsets[r + 1]
        start = k
        total = np.int64(0)
        err = STATUS_OK
        m = 0
        while p < end and err == STATUS_OK:
            x = np.int64(0)
            shift = 0
            more = True
            while more:
                if p >= end:
                    err = STATUS_TRUNCATED
                    break
                c = np.int64(chars[p]) - 48
                if c < 0 or c > 63:
                    err = STATUS_BAD_CHAR
                    break
                if shift > 35:
                    err = STATUS_OVERFLOW
                    break
                x |= (c & 0x1F) << shift
                more = (c & 0x20) != 0
                p += 1
                shift += 5
                if not more and (c & 0x10):
                    x |= np.int64(-1) << shift
            if err != STATUS_OK:
                break
            if m > 2:
                x += np.int64(counts[start + m - 2])
            if x < 0:
                err = STATUS_NEGATIVE
                break
            if x > 0xFFFFFFFF:
                err = STATUS_OVERFLOW
                break
            counts[start + m] = x
            total += x
            m += 1
        if err == STATUS_OK and total != heights[r] * widths[r]:
            err = STATUS_BAD_SUM
        status[r] = err
        if err == STATUS_OK:
            k = start + m
        else:
            k = start
        offsets[r + 1] = k
    return counts[:k].copy(), offsets, status


# --------------------------------------------------------------------------- decode


@njit(cache=True, nogil=True, error_model="numpy")
def decode_colmajor(counts, offsets, out):
    """Write ones for the foreground runs of RLE ``n`` into ``out[n]`` (column-major, zeroed)."""
    n = offsets.shape[0] - 1
    for r in range(n):
        row = out[r]
        p = 0
        v = False
        for i in range(offsets[r], offsets[r + 1]):
            c = np.int64(counts[i])
            if v:
                row[p : p + c] = 1
            p += c
            v = not v


@njit(cache=True, nogil=True, error_model="numpy")
def decode_rowmajor(counts, offsets, h, out, value):
    """Set ``out[n, y, x] = value`` for the foreground pixels of RLE ``n`` (C-ordered output)."""
    n = offsets.shape[0] - 1
    for r in range(n):
        plane = out[r]
        p = 0
        v = False
        for i in range(offsets[r], offsets[r + 1]):
            c = np.int64(counts[i])
            if v:
                q = p
                end = p + c
                while q < end:
                    x = q // h
                    y = q - x * h
                    stop = min(end - q, h - y)
                    for yy in range(y, y + stop):
                        plane[yy, x] = value
                    q += stop
            p += c
            v = not v


@njit(cache=True, nogil=True, error_model="numpy")
def paint_rowmajor(counts, offsets, h, values, out):
    """Paint RLE ``i``'s foreground with ``values[i]`` into one C-ordered label map; later RLEs win."""
    n = offsets.shape[0] - 1
    for r in range(n):
        val = values[r]
        p = 0
        v = False
        for i in range(offsets[r], offsets[r + 1]):
            c = np.int64(counts[i])
            if v:
                q = p
                end = p + c
                while q < end:
                    x = q // h
                    y = q - x * h
                    stop = min(end - q, h - y)
                    for yy in range(y, y + stop):
                        out[yy, x] = val
                    q += stop
            p += c
            v = not v


# --------------------------------------------------------------------------- measures


@njit(cache=True, nogil=True, error_model="numpy")
def area(counts, offsets):
    """Foreground pixel count of each RLE (sum of odd-indexed counts), int64."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, np.int64)
    for r in range(n):
        s = np.int64(0)
        start = offsets[r]
        for i in range(start + 1, offsets[r + 1], 2):
            s += np.int64(counts[i])
        out[r] = s
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def to_bbox(counts, offsets, heights, widths):
    """``[x, y, w, h]`` of each RLE's foreground, float64 (n, 4), as pycocotools 2.0.11's rleToBbox.

    Zero-length foreground runs are skipped; a run spanning columns makes the
    box full height. An RLE without any foreground pixel gives ``[0, 0, 0, 0]``
    (pycocotools returns a wrapped-around width for such non-canonical RLEs).
    """
    n = offsets.shape[0] - 1
    bb = np.zeros((n, 4), np.float64)
    for r in range(n):
        h = heights[r]
        w = widths[r]
        start = offsets[r]
        m = offsets[r + 1] - start
        m = (m // 2) * 2
        if m == 0 or h == 0:
            continue
        xs = w
        ys = h
        xe = np.int64(0)
        ye = np.int64(0)
        cc = np.int64(0)
        found = False
        for j in range(m):
            begin = cc
            c = np.int64(counts[start + j])
            cc += c
            if j % 2 == 0 or c == 0:
                continue
            found = True
            y0 = begin % h
            x0 = (begin - y0) // h
            y1 = (cc - 1) % h
            x1 = (cc - 1 - y1) // h
            xs = min(xs, x0)
            xe = max(xe, x1)
            if x0 < x1:
                ys = 0
                ye = h - 1
            else:
                ys = min(ys, y0)
                ye = max(ye, y1)
        if not found:
            continue
        bb[r, 0] = xs
        bb[r, 2] = xe - xs + 1
        bb[r, 1] = ys
        bb[r, 3] = ye - ys + 1
    return bb


@njit(cache=True, nogil=True, error_model="numpy")
def merge(counts, offsets, intersect):
    """Union (or intersection) of all RLEs on their runs, without decoding (maskApi's rleMerge).

    All RLEs must have one size (checked by the caller). Returns the merged counts.
    Unlike maskApi.c, zero-length runs inside an RLE are stepped over instead of
    ending the walk early (which truncates the result there).
    """
    n = offsets.shape[0] - 1
    if n == 0:
        return np.zeros(0, np.uint32)
    cur = counts[offsets[0] : offsets[1]].copy()
    if n == 1:
        return cur
    total = np.int64(0)
    for i in range(cur.shape[0]):
        total += np.int64(cur[i])
    for r in range(1, n):
        a_cnt = cur
        b_cnt = counts[offsets[r] : offsets[r + 1]]
        am = a_cnt.shape[0]
        bm = b_cnt.shape[0]
        out = np.empty(am + bm + 1, np.uint32)
        ca = np.int64(a_cnt[0]) if am > 0 else np.int64(0)
        cb = np.int64(b_cnt[0]) if bm > 0 else np.int64(0)
        v = False
        va = False
        vb = False
        m = 0
        a = 1
        b = 1
        cc = np.int64(0)
        ct = np.int64(1)
        while ct > 0:
            c = min(ca, cb)
            cc += c
            ct = 0
            ca -= c
            # zero-length runs (legal in uncompressed RLE) are skipped; maskApi.c stops early on them
            while ca == 0 and a < am:
                ca = np.int64(a_cnt[a])
                a += 1
                va = not va
            ct += ca
            cb -= c
            while cb == 0 and b < bm:
                cb = np.int64(b_cnt[b])
                b += 1
                vb = not vb
            ct += cb
            vp = v
            if intersect:
                v = va and vb
            else:
                v = va or vb
            if v != vp or ct == 0:
                out[m] = cc
                m += 1
                cc = 0
        cur = out[:m].copy()
    return cur


@njit(cache=True, nogil=True, error_model="numpy")
def box_iou(dt, gt, iscrowd):
    """IoU of boxes ``[x, y, w, h]`` (maskApi's bbIou): (m, n) float64; crowd gt divides by the dt area."""
    m = dt.shape[0]
    n = gt.shape[0]
    o = np.zeros((m, n), np.float64)
    for g in range(n):
        ga = gt[g, 2] * gt[g, 3]
        crowd = iscrowd[g] != 0
        for d in range(m):
            da = dt[d, 2] * dt[d, 3]
            wd = min(dt[d, 2] + dt[d, 0], gt[g, 2] + gt[g, 0]) - max(dt[d, 0], gt[g, 0])
            if wd <= 0:
                continue
            hd = min(dt[d, 3] + dt[d, 1], gt[g, 3] + gt[g, 1]) - max(dt[d, 1], gt[g, 1])
            if hd <= 0:
                continue
            i = wd * hd
            u = da if crowd else da + ga - i
            o[d, g] = i / u
    return o


@njit(cache=True, nogil=True, error_model="numpy")
def rle_iou(dt_counts, dt_offsets, gt_counts, gt_offsets, dt_bb, gt_bb, iscrowd):
    """IoU of RLEs on their runs (maskApi's rleIou), with the box pre-check; (m, n) float64.

    A crowd gt divides the intersection by the detection's area instead of the union.
    """
    o = box_iou(dt_bb, gt_bb, iscrowd)
    m = dt_offsets.shape[0] - 1
    n = gt_offsets.shape[0] - 1
    for g in range(n):
        crowd = iscrowd[g] != 0
        g0 = gt_offsets[g]
        kb = gt_offsets[g + 1] - g0
        for d in range(m):
            if not o[d, g] > 0:
                continue
            d0 = dt_offsets[d]
            ka = dt_offsets[d + 1] - d0
            ca = np.int64(dt_counts[d0]) if ka > 0 else np.int64(0)
            cb = np.int64(gt_counts[g0]) if kb > 0 else np.int64(0)
            va = False
            vb = False
            a = 1
            b = 1
            inter = np.int64(0)
            uni = np.int64(0)
            ct = np.int64(1)
            while ct > 0:
                c = min(ca, cb)
                if va or vb:
                    uni += c
                    if va and vb:
                        inter += c
                ct = 0
                ca -= c
                while ca == 0 and a < ka:  # skip zero-length runs (see merge)
                    ca = np.int64(dt_counts[d0 + a])
                    a += 1
                    va = not va
                ct += ca
                cb -= c
                while cb == 0 and b < kb:
                    cb = np.int64(gt_counts[g0 + b])
                    b += 1
                    vb = not vb
                ct += cb
            if inter == 0:
                uni = 1
            elif crowd:
                uni = 0
                for i in range(d0 + 1, d0 + ka, 2):
                    uni += np.int64(dt_counts[i])
            o[d, g] = inter / uni
    return o
