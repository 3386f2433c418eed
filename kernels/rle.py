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
STATUS_BAD_SIZE = 6       # a negative height or width, or h * w above MAX_RLE_PIXELS (2**62)



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
#
# A naive byte loop is slower than pycocotools' C encoder. The scans below read
# whole 64-bit words: for two byte ranges A and B they compare 8 bytes at a
# time (B realigned to A's word grid with two loads and shifts) and only look
# at single bytes inside words that differ. Transitions are sparse in real
# masks, so the cost is about one word compare per 8 pixels. ``words`` is the
# uint64 view of the same (8-byte aligned, little-endian) buffer as ``buf``;
# an empty ``words`` makes every scan fall back to bytes.

_U8 = np.uint64(8)
_U64 = np.uint64(64)
_UFF = np.uint64(0xFF)


@njit(cache=True, nogil=True, error_model="numpy")
def _scan_pair(words, buf, a, b, length, base, out, k):
    """Write ``base + i`` to ``out[k:]`` for each ``i < length`` where ``buf[a+i] != buf[b+i]``.

    Never reallocates: stops when ``out`` could overflow and returns how far it
    got, as ``(k, examined)``; the caller grows ``out`` and resumes.
    """
    cap = out.shape[0]
    nbw = words.shape[0] * 8
    i = 0
    while i < length and (a + i) & 7:  # head: up to A's next word boundary
        if k >= cap:
            return k, i
        if buf[a + i] != buf[b + i]:
            out[k] = base + i
            k += 1
        i += 1
    # whole words of A; B realigned with two loads and shifts (or one when aligned alike)
    n_words = min((length - i) // 8, (nbw - a - i) // 8, (nbw - b - i - 8) // 8)
    sh = np.uint64(((b + i) & 7) * 8)
    rsh = _U64 - sh
    ia = (a + i) >> 3
    ib = (b + i) >> 3
    for j in range(max(n_words, 0)):
        if sh == 0:
            wb = words[ib + j]
        else:
            wb = (words[ib + j] >> sh) | (words[ib + j + 1] << rsh)
        d = words[ia + j] ^ wb
        if d != 0:
            if k + 8 > cap:
                return k, i
            for t in range(8):
                if (d >> np.uint64(8 * t)) & _UFF:
                    out[k] = base + i + t
                    k += 1
        i += 8
    while i < length:  # tail
        if k >= cap:
            return k, i
        if buf[a + i] != buf[b + i]:
            out[k] = base + i
            k += 1
        i += 1
    return k, length


@njit(cache=True, nogil=True, error_model="numpy")
def _scan_prev(words, buf, a, length, base, out, k):
    """:func:`_scan_pair` for ``b = a - 1`` (each byte against its predecessor): one load per word."""
    cap = out.shape[0]
    nbw = words.shape[0] * 8
    i = 0
    while i < length and (a + i) & 7:
        if k >= cap:
            return k, i
        if buf[a + i] != buf[a + i - 1]:
            out[k] = base + i
            k += 1
        i += 1
    n_words = min((length - i) // 8, (nbw - a - i) // 8)
    ia = (a + i) >> 3
    if n_words > 0 and ia > 0:
        prev = words[ia - 1]
        for j in range(n_words):
            wa = words[ia + j]
            d = wa ^ ((wa << _U8) | (prev >> np.uint64(56)))
            prev = wa
            if d != 0:
                if k + 8 > cap:
                    return k, i
                for t in range(8):
                    if (d >> np.uint64(8 * t)) & _UFF:
                        out[k] = base + i + t
                        k += 1
            i += 8
    while i < length:
        if k >= cap:
            return k, i
        if buf[a + i] != buf[a + i - 1]:
            out[k] = base + i
            k += 1
        i += 1
    return k, length


@njit(cache=True, nogil=True, error_model="numpy")
def _collect_prev(words, buf, a, length, base, out, k):
    """:func:`_scan_prev` with growth: returns ``(out, k)``."""
    done = 0
    while True:
        k, got = _scan_prev(words, buf, a + done, length - done, base + done, out, k)
        done += got
        if done >= length:
            return out, k
        out = _grow(out, 2 * out.shape[0] + 64)


@njit(cache=True, nogil=True, error_model="numpy")
def _collect(words, buf, a, b, length, base, out, k):
    """:func:`_scan_pair` with growth: returns ``(out, k)``."""
    done = 0
    while True:
        k, got = _scan_pair(words, buf, a + done, b + done, length - done, base + done, out, k)
        done += got
        if done >= length:
            return out, k
        out = _grow(out, 2 * out.shape[0] + 64)


@njit(cache=True, nogil=True, error_model="numpy")
def _append_counts(pos, t, total, counts, k):
    """Append the run lengths between sorted transition positions ``pos[:t]`` (and ``total``)."""
    counts = _grow(counts, k + t + 1)
    last = 0
    for i in range(t):
        counts[k] = pos[i] - last
        last = pos[i]
        k += 1
    counts[k] = total - last
    return counts, k + 1


@njit(cache=True, nogil=True, error_model="numpy")
def encode_colmajor(words, buf, n_masks, length):
    """Encode masks stored column-major back to back in ``buf`` (mask ``n`` = bytes ``[n*length, (n+1)*length)``).

    Returns ``(counts uint32, offsets int64)``.
    """
    counts = np.empty(max(16, 4 * n_masks), np.uint32)
    offsets = np.zeros(n_masks + 1, np.int64)
    pos = np.empty(1024, np.int64)
    k = 0
    for n in range(n_masks):
        s = n * length
        t = 0
        if length > 0:
            if buf[s] != 0:  # position 0 follows a virtual background pixel
                pos[0] = 0
                t = 1
            pos, t = _collect_prev(words, buf, s + 1, length - 1, 1, pos, t)
        counts, k = _append_counts(pos, t, length, counts, k)
        offsets[n + 1] = k
    return counts[:k].copy(), offsets


@njit(cache=True, nogil=True, error_model="numpy")
def _vertical_changes(hpos, t, w, total, out):
    """Where a row-major mask differs from the row above, as sorted intervals of row-major positions.

    ``hpos[:t]`` are the mask's transitions in row-major order (the flat sequence
    starts at 0). The sequence shifted by one row changes at ``hpos + w``; the
    XOR of the two changes where exactly one of them does (a merge of two sorted
    lists, equal positions cancelling). Writes the XOR's change points to
    ``out`` (grown as needed) and returns ``(out, count)``; the XOR is 1 on
    ``[out[0], out[1])``, ``[out[2], out[3])``, ... (the last up to ``total``).
    """
    out = _grow(out, 2 * t + 2)
    i = 0
    j = 0
    m = 0
    while True:
        a = hpos[i] if i < t else total
        b = hpos[j] + w if j < t else total
        if b > total:  # shifted past the end: no more changes from the shifted sequence
            b = total
        if a == total and b == total:
            break
        if a < b:
            out[m] = a
            i += 1
        elif b < a:
            out[m] = b
            j += 1
        else:  # both change here: the XOR does not
            i += 1
            j += 1
            continue
        m += 1
    return out, m


@njit(cache=True, nogil=True, error_model="numpy")
def _place_vertical(xs, m, w, total, colstart, pos, h, placing):
    """Count (``placing`` False) or place at ``pos[colstart[x]]`` the pixels of rows 1.. in the XOR intervals."""
    for q in range(0, m, 2):
        a = max(xs[q], np.int64(w))  # row 0 is handled apart (its predecessor is the column before)
        b = xs[q + 1] if q + 1 < m else total
        if a >= b:
            continue
        y = a // w
        x = a - y * w
        for _ in range(a, b):
            if placing:
                pos[colstart[x]] = x * h + y
            colstart[x] += 1
            x += 1
            if x == w:
                x = 0
                y += 1


@njit(cache=True, nogil=True, error_model="numpy")
def _rowmajor_any_bytes(words, buf, s, h, w, tx, ty, colcount, pos):
    """Column-major transition positions of one row-major mask at ``buf[s:]`` of any byte values.

    Each row is compared with the row above; row 0 of column ``x`` with the last
    row of column ``x - 1`` (its predecessor in column-major order). The
    transitions, found in row order, are bucketed by column. Returns
    ``(tx, ty, pos, t)`` (the scratch arrays, possibly grown, and ``pos[:t]``).
    """
    t = 0
    if buf[s] != 0:
        tx[0] = 0
        t = 1
    tx, t = _collect(words, buf, s + 1, s + (h - 1) * w, w - 1, 1, tx, t)
    ty = _grow(ty, t)
    ty[:t] = 0
    for y in range(1, h):
        t0 = t
        tx, t = _collect(words, buf, s + y * w, s + (y - 1) * w, w, 0, tx, t)
        if t > t0:
            ty = _grow(ty, t)
            ty[t0:t] = y
    colcount[:] = 0
    for i in range(t):
        colcount[tx[i]] += 1
    acc = 0
    for x in range(w):
        c = colcount[x]
        colcount[x] = acc
        acc += c
    pos = _grow(pos, t)
    for i in range(t):
        x = tx[i]
        pos[colcount[x]] = x * h + ty[i]
        colcount[x] += 1
    return tx, ty, pos, t


@njit(cache=True, nogil=True, error_model="numpy")
def encode_rowmajor(words, buf, n_masks, h, w):
    """Encode (h, w) masks stored row-major (C order) back to back in ``buf``, without a transposed copy.

    One word scan finds the transitions in row-major order (as for a
    column-major mask); in that run domain, the pixels that differ from the row
    above are the intervals where the row-major sequence XOR itself shifted by
    one row is 1. Those pixels, plus row 0's against the last row of the column
    before, are COCO's transitions: bucketed by column (a counting sort), they
    come out in column-major order. Masks with byte values other than 0 and 1
    take :func:`_rowmajor_any_bytes`. Returns ``(counts uint32, offsets int64)``.
    """
    total = h * w
    counts = np.empty(max(16, 4 * n_masks), np.uint32)
    offsets = np.zeros(n_masks + 1, np.int64)
    hpos = np.empty(1024, np.int64)
    xs = np.empty(1024, np.int64)
    colstart = np.zeros(w + 1, np.int64)
    pos = np.empty(1024, np.int64)
    k = 0
    for n in range(n_masks):
        s = n * total
        t = 0
        if buf[s] != 0:
            hpos[0] = 0
            t = 1
        hpos, t = _collect_prev(words, buf, s + 1, total - 1, 1, hpos, t)
        binary = True
        for i in range(t):  # each run's value is the byte where it starts
            if buf[s + hpos[i]] > 1:
                binary = False
                break
        if not binary:  # the XOR below needs 0/1 values: compare each row with the one above
            hpos, xs, pos, acc = _rowmajor_any_bytes(words, buf, s, h, w, hpos, xs, colstart, pos)
            counts, k = _append_counts(pos, acc, total, counts, k)
            offsets[n + 1] = k
            continue
        xs, m = _vertical_changes(hpos, t, w, total, xs)
        colstart[:] = 0
        last = s + (h - 1) * w - 1  # row 0 of column x follows the last row of column x - 1
        if buf[s] != 0:
            colstart[0] += 1
        for x in range(1, w):
            if buf[s + x] != buf[last + x]:
                colstart[x] += 1
        _place_vertical(xs, m, w, total, colstart, pos, h, False)
        acc = 0
        for x in range(w):
            c = colstart[x]
            colstart[x] = acc
            acc += c
        pos = _grow(pos, acc)
        if buf[s] != 0:
            pos[colstart[0]] = 0
            colstart[0] += 1
        for x in range(1, w):
            if buf[s + x] != buf[last + x]:
                pos[colstart[x]] = x * h
                colstart[x] += 1
        _place_vertical(xs, m, w, total, colstart, pos, h, True)
        counts, k = _append_counts(pos, acc, total, counts, k)
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
        p = _write_counts(counts[offsets[r] : offsets[r + 1]], out, p)
        char_offsets[r + 1] = p
    return out[:p].copy(), char_offsets


@njit(cache=True, nogil=True, error_model="numpy")
def counts_to_bytes(counts):
    """The compressed string of one RLE's counts, as uint8 codes (a view of a scratch buffer:
    callers take ``.tobytes()``)."""
    out = np.empty(7 * counts.shape[0] + 1, np.uint8)
    p = _write_counts(counts, out, 0)
    return out[:p]


@njit(cache=True, nogil=True, error_model="numpy")
def chars_to_counts(chars, lengths, sizes, skip):
    """Parse compressed strings back to back in ``chars`` (string ``r`` has ``lengths[r]`` chars).

    Fast path: one vectorised pass checks every character is in the codec's
    range and every string ends on a final character; then values decode
    without per-character checks. Anything suspicious goes to
    :func:`_chars_to_counts_checked`, which finds and names the problem.
    Same returns as :func:`_chars_to_counts_checked`.
    """
    n = lengths.shape[0]
    bad = np.uint8(0)
    for i in range(chars.shape[0]):
        bad |= np.uint8(chars[i] - np.uint8(48)) > np.uint8(63)
    if bad:
        return _chars_to_counts_checked(chars, lengths, sizes, skip)
    p = 0
    for r in range(n):
        p += lengths[r]
        if lengths[r] > 0 and (np.int64(chars[p - 1]) - 48) & 0x20:
            return _chars_to_counts_checked(chars, lengths, sizes, skip)
        if sizes[r, 0] < 0 or sizes[r, 1] < 0 or skip[r] or _size_too_large(sizes[r, 0], sizes[r, 1]):
            return _chars_to_counts_checked(chars, lengths, sizes, skip)
    counts = np.empty(chars.shape[0] + 1, np.uint32)
    offsets = np.zeros(n + 1, np.int64)
    k = 0
    p = 0
    uniform = True
    for r in range(n):
        if sizes[r, 0] != sizes[0, 0] or sizes[r, 1] != sizes[0, 1]:
            uniform = False
        end = p + lengths[r]
        start = k
        total = np.int64(0)
        m = 0
        back1 = np.int64(0)  # the last two counts, kept in registers for the delta coding
        back2 = np.int64(0)
        while p < end:
            c = np.int64(chars[p]) - 48
            p += 1
            x = c & 0x1F
            if c & 0x20:
                shift = 5
                while True:
                    c = np.int64(chars[p]) - 48
                    p += 1
                    x |= (c & 0x1F) << shift
                    shift += 5
                    if not (c & 0x20):
                        break
                    if shift > 35:  # too long for 32-bit counts: let the checked parser report it
                        return _chars_to_counts_checked(chars, lengths, sizes, skip)
                if c & 0x10:
                    x |= np.int64(-1) << shift
            elif c & 0x10:
                x -= 32  # sign extension of a one-character value
            if m > 2:
                x += back2
            if x < 0 or x > 0xFFFFFFFF:
                return _chars_to_counts_checked(chars, lengths, sizes, skip)
            back2 = back1
            back1 = x
            counts[start + m] = x
            total += x
            m += 1
        if total != sizes[r, 0] * sizes[r, 1]:
            return _chars_to_counts_checked(chars, lengths, sizes, skip)
        k = start + m
        offsets[r + 1] = k
        p = end
    return counts[:k], offsets, -1, STATUS_OK, uniform


#: largest h * w an RLE may declare: above it the int64 sum of its counts could wrap around
MAX_RLE_PIXELS = 1 << 62


@njit(cache=True, nogil=True)
def _size_too_large(h, w):
    return w > 0 and h > MAX_RLE_PIXELS // w


@njit(cache=True, nogil=True, error_model="numpy")
def _chars_to_counts_checked(chars, lengths, sizes, skip):
    """Parse compressed strings back to back in ``chars`` (string ``r`` has ``lengths[r]`` chars).

    ``sizes`` is (n, 2) ``[h, w]``; counts must sum to ``h * w``. RLEs with
    ``skip[r]`` set are left empty (the caller fills them). Returns
    ``(counts uint32, offsets int64, bad, status, uniform)``: ``bad`` is the
    index of the first malformed RLE (-1 if none) and ``status`` its
    ``STATUS_*``; ``uniform`` tells whether all sizes are equal.
    """
    n = lengths.shape[0]
    counts = np.empty(chars.shape[0] + 1, np.uint32)
    offsets = np.zeros(n + 1, np.int64)
    k = 0
    p = 0
    uniform = True
    for r in range(n):
        if sizes[r, 0] != sizes[0, 0] or sizes[r, 1] != sizes[0, 1]:
            uniform = False
        if sizes[r, 0] < 0 or sizes[r, 1] < 0 or _size_too_large(sizes[r, 0], sizes[r, 1]):
            return counts[:0], offsets, r, STATUS_BAD_SIZE, uniform
        if skip[r]:
            offsets[r + 1] = k
            continue
        end = p + lengths[r]
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
        if err == STATUS_OK and total != sizes[r, 0] * sizes[r, 1]:
            err = STATUS_BAD_SUM
        if err != STATUS_OK:
            return counts[:0], offsets, r, err, uniform
        k = start + m
        offsets[r + 1] = k
        p = end
    return counts[:k], offsets, -1, STATUS_OK, uniform


@njit(cache=True, nogil=True, error_model="numpy")
def _parse_one(chars, total):
    """One compressed string -> ``(counts uint32, ok)``; ``ok`` is False for any malformation.

    The lean path of one-RLE calls; the caller reparses a malformed string with
    :func:`chars_to_counts` for the error message.
    """
    end = len(chars)  # an array or bytes
    counts = np.empty(end + 1, np.uint32)
    p = 0
    m = 0
    acc = np.int64(0)
    back1 = np.int64(0)
    back2 = np.int64(0)
    while p < end:
        c = np.int64(chars[p]) - 48
        p += 1
        if c < 0 or c > 63:
            return counts[:0], False
        x = c & 0x1F
        if c & 0x20:
            shift = 5
            while True:
                if p >= end or shift > 35:
                    return counts[:0], False
                c = np.int64(chars[p]) - 48
                p += 1
                if c < 0 or c > 63:
                    return counts[:0], False
                x |= (c & 0x1F) << shift
                shift += 5
                if not (c & 0x20):
                    break
            if c & 0x10:
                x |= np.int64(-1) << shift
        elif c & 0x10:
            x -= 32
        if m > 2:
            x += back2
        if x < 0 or x > 0xFFFFFFFF:
            return counts[:0], False
        back2 = back1
        back1 = x
        counts[m] = x
        acc += x
        m += 1
    return counts[:m], acc == total


@njit(cache=True, nogil=True, error_model="numpy")
def area_one(chars, h, w):
    """Foreground pixel count of one compressed string, or -1 if it is malformed."""
    counts, ok = _parse_one(chars, h * w)
    if not ok:
        return np.int64(-1)
    s = np.int64(0)
    for i in range(1, counts.shape[0], 2):
        s += np.int64(counts[i])
    return s


@njit(cache=True, nogil=True, error_model="numpy")
def bbox_one(chars, h, w):
    """``[x, y, w, h]`` (4,) float64 of one compressed string, or an empty array if it is malformed."""
    counts, ok = _parse_one(chars, h * w)
    if not ok:
        return np.zeros(0, np.float64)
    hw = np.empty(1, np.int64)
    hw[0] = h
    ww = np.empty(1, np.int64)
    ww[0] = w
    offsets = np.empty(2, np.int64)
    offsets[0] = 0
    offsets[1] = counts.shape[0]
    return to_bbox(counts, offsets, hw, ww)[0]


@njit(cache=True, nogil=True, error_model="numpy")
def recode_one(chars, total):
    """One compressed string parsed and written back canonically (a one-RLE merge): ``(chars uint8, ok)``."""
    counts, ok = _parse_one(chars, total)
    if not ok:
        return np.zeros(0, np.uint8), False
    return counts_to_bytes(counts), True


@njit(cache=True, nogil=True, error_model="numpy")
def compress_counts(counts, total):
    """Uncompressed int64 counts -> ``(compressed chars uint8, ok)``; ``ok`` is False unless every
    count is in ``[0, 2**32)`` and they sum to ``total``."""
    s = np.int64(0)
    for i in range(counts.shape[0]):
        c = counts[i]
        if c < 0 or c > 0xFFFFFFFF:
            return np.zeros(0, np.uint8), False
        s += c
    if s != total:
        return np.zeros(0, np.uint8), False
    return counts_to_bytes(counts), True


@njit(cache=True, nogil=True, error_model="numpy")
def _clipped_rect(box, h, w):
    """``(x0, y0, x1, y1)`` of box ``[x, y, w, h]``, negative extents mirrored, clipped to the image."""
    bx = box[0]
    by = box[1]
    bw = box[2]
    bh = box[3]
    if bw < 0:
        bx += bw
        bw = -bw
    if bh < 0:
        by += bh
        bh = -bh
    x0 = np.int64(min(max(bx, 0.0), float(w)))
    x1 = np.int64(min(max(bx + bw, 0.0), float(w)))
    y0 = np.int64(min(max(by, 0.0), float(h)))
    y1 = np.int64(min(max(by + bh, 0.0), float(h)))
    return x0, y0, x1, y1


@njit(cache=True, nogil=True, error_model="numpy")
def _box_counts(x0, y0, x1, y1, h, w, counts, k):
    """Write the counts of the clipped rectangle ``[x0, x1) x [y0, y1)`` at ``counts[k]``; returns the new end."""
    if x1 <= x0 or y1 <= y0:
        counts[k] = h * w
        k += 1
    elif y1 - y0 == h:  # full height: the columns join into one run
        counts[k] = x0 * h
        counts[k + 1] = (x1 - x0) * h
        k += 2
        if x1 < w:
            counts[k] = (w - x1) * h
            k += 1
    else:
        counts[k] = x0 * h + y0
        k += 1
        for x in range(x0, x1):
            counts[k] = y1 - y0
            k += 1
            if x + 1 < x1:
                counts[k] = h - (y1 - y0)
                k += 1
        tail = (w - x1) * h + (h - y1)
        if tail > 0:
            counts[k] = tail
            k += 1
    return k


@njit(cache=True, nogil=True, error_model="numpy")
def box_rles(boxes, h, w):
    """RLEs of integer-valued boxes ``[x, y, w, h]`` (float64 (n, 4)) in closed form.

    For integer coordinates pycocotools' polygon fill of the box gives exactly the
    rectangle ``[x, x + w) x [y, y + h)`` (negative extents mirrored), clipped to
    the image: one background run, then a foreground run per column (one run
    when the box spans the full height), no zero-length runs except a leading one.
    """
    n = boxes.shape[0]
    rects = np.empty((n, 4), np.int64)
    size = 0
    for i in range(n):
        x0, y0, x1, y1 = _clipped_rect(boxes[i], h, w)
        rects[i, 0] = x0
        rects[i, 1] = y0
        rects[i, 2] = x1
        rects[i, 3] = y1
        size += 2 * max(x1 - x0, 0) + 3
    counts = np.empty(size, np.uint32)
    offsets = np.zeros(n + 1, np.int64)
    k = 0
    for i in range(n):
        k = _box_counts(rects[i, 0], rects[i, 1], rects[i, 2], rects[i, 3], h, w, counts, k)
        offsets[i + 1] = k
    return counts[:k].copy(), offsets


@njit(cache=True, nogil=True, error_model="numpy")
def box_strings(boxes, h, w):
    """Compressed strings of integer-valued boxes (:func:`box_rles`) in one pass: ``(chars, char_offsets, ok)``.

    ``ok`` is False unless every coordinate is an integer of magnitude at most 2**31
    (NaN and infinities included): the caller then takes the general box path.
    """
    n = boxes.shape[0]
    char_offsets = np.zeros(n + 1, np.int64)
    for i in range(n):
        for j in range(4):
            v = boxes[i, j]
            if not (abs(v) <= 2147483648.0 and v == np.floor(v)):
                return np.zeros(0, np.uint8), char_offsets, False
    size = 0
    for i in range(n):
        x0, y0, x1, y1 = _clipped_rect(boxes[i], h, w)
        size += 2 * max(x1 - x0, 0) + 32  # one char per zero difference; up to 7 for each of 4 others
    out = np.empty(size, np.uint8)
    p = 0
    for i in range(n):
        x0, y0, x1, y1 = _clipped_rect(boxes[i], h, w)
        p = _box_chars(x0, y0, x1, y1, h, w, out, p)
        char_offsets[i + 1] = p
    return out[:p].copy(), char_offsets, True


@njit(cache=True, nogil=True, error_model="numpy")
def _box_chars(x0, y0, x1, y1, h, w, out, p):
    """Append the compressed string of the rectangle ``[x0, x1) x [y0, y1)`` (:func:`_box_counts`) at ``p``.

    Its counts repeat (foreground, gap) per column, so every value from the fourth to the
    one before the tail is a zero difference: one '0' each, written as a block.
    """
    if x1 <= x0 or y1 <= y0:
        return _write_value(h * w, out, p)
    if y1 - y0 == h:
        p = _write_value(x0 * h, out, p)
        p = _write_value((x1 - x0) * h, out, p)
        if x1 < w:
            p = _write_value((w - x1) * h, out, p)
        return p
    bw = x1 - x0
    bh = y1 - y0
    gap = h - bh
    tail = (w - x1) * h + (h - y1)
    p = _write_value(x0 * h + y0, out, p)
    p = _write_value(bh, out, p)
    if bw == 1:
        if tail > 0:
            p = _write_value(tail, out, p)
        return p
    p = _write_value(gap, out, p)
    zeros = 2 * bw - 3
    out[p : p + zeros] = 48
    p += zeros
    if tail > 0:
        p = _write_value(tail - gap, out, p)
    return p


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _write_value(x, out, p):
    """Append one (difference) value in COCO's 5-bits-per-character form at ``p``; returns the new end."""
    if -16 <= x < 16:  # one character, the common case (no continuation bit)
        out[p] = (x & 0x1F) + 48
        return p + 1
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
    return p


@njit(cache=True, nogil=True, error_model="numpy")
def _write_counts(counts, out, p):
    """Append the compressed string of one RLE's counts to ``out`` at ``p``; returns the new end."""
    for i in range(counts.shape[0]):
        x = np.int64(counts[i])
        if i > 2:
            x -= np.int64(counts[i - 2])
        p = _write_value(x, out, p)
    return p


# --------------------------------------------------------------------------- decode


@njit(cache=True, nogil=True, error_model="numpy")
def decode_colmajor(counts, offsets, out):
    """Write RLE ``n``'s runs (0s and 1s) into ``out[n]`` (column-major), each byte once.

    The counts of each RLE must sum to ``out.shape[1]`` (the parser checks it),
    so ``out`` may be uninitialised memory.
    """
    n = offsets.shape[0] - 1
    for r in range(n):
        row = out[r]
        p = 0
        v = np.uint8(0)
        for i in range(offsets[r], offsets[r + 1]):
            c = np.int64(counts[i])
            row[p : p + c] = v
            p += c
            v = np.uint8(1) - v


@njit(cache=True, nogil=True, error_model="numpy")
def decode_string(chars, out):
    """Parse one compressed string and write its runs straight into ``out`` (flat, column-major), each byte once.

    The lean path of a one-RLE decode: no counts array. Returns False, with
    ``out`` partly written, when the string is malformed in any way (bad
    character, truncated, negative or 32-bit-overflowing run, runs not
    summing to ``out``'s size); the caller then reparses with
    :func:`chars_to_counts` for the error message.
    """
    total = out.shape[0]
    end = len(chars)  # an array or bytes
    p = 0
    pos = np.int64(0)
    m = 0
    back1 = np.int64(0)
    back2 = np.int64(0)
    v = np.uint8(0)
    while p < end:
        c = np.int64(chars[p]) - 48
        p += 1
        if c < 0 or c > 63:
            return False
        x = c & 0x1F
        if c & 0x20:
            shift = 5
            while True:
                if p >= end or shift > 35:
                    return False
                c = np.int64(chars[p]) - 48
                p += 1
                if c < 0 or c > 63:
                    return False
                x |= (c & 0x1F) << shift
                shift += 5
                if not (c & 0x20):
                    break
            if c & 0x10:
                x |= np.int64(-1) << shift
        elif c & 0x10:
            x -= 32
        if m > 2:
            x += back2
        if x < 0 or x > 0xFFFFFFFF or x > total - pos:
            return False
        back2 = back1
        back1 = x
        out[pos : pos + x] = v
        pos += x
        v = np.uint8(1) - v
        m += 1
    return pos == total


@njit(cache=True, nogil=True, error_model="numpy")
def _paint_one(counts, start, stop, h, plane, value):
    """Set the foreground pixels of one RLE (``counts[start:stop]``) to ``value`` in a C-ordered plane."""
    p = 0
    v = False
    for i in range(start, stop):
        c = np.int64(counts[i])
        if v:
            q = p
            end = p + c
            while q < end:  # a run may span columns: paint it column piece by column piece
                x = q // h
                y = q - x * h
                seg = min(end - q, h - y)
                for yy in range(y, y + seg):
                    plane[yy, x] = value
                q += seg
        p += c
        v = not v


@njit(cache=True, nogil=True, error_model="numpy")
def decode_rowmajor(counts, offsets, h, out, value):
    """Set ``out[n, y, x] = value`` for the foreground pixels of RLE ``n`` (C-ordered output)."""
    for r in range(offsets.shape[0] - 1):
        _paint_one(counts, offsets[r], offsets[r + 1], h, out[r], value)


@njit(cache=True, nogil=True, error_model="numpy")
def paint_rowmajor(counts, offsets, h, values, out):
    """Paint RLE ``i``'s foreground with ``values[i]`` into one C-ordered label map; later RLEs win."""
    for r in range(offsets.shape[0] - 1):
        _paint_one(counts, offsets[r], offsets[r + 1], h, out, values[r])


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


_FLOAT_EXACT = 1 << 50  # positions below this are exact in float64, with room for the product's rounding


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _col_row(p, h, inv):
    """``(p // h, p % h)`` for ``0 <= p < 2**50`` from a float reciprocal ``inv = 1 / h``, corrected."""
    x = np.int64(p * inv)
    y = p - x * h
    if y < 0:
        x -= 1
        y += h
    elif y >= h:
        x += 1
        y -= h
    return x, y


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
        # a float reciprocal instead of two integer divisions per run (one off at most, corrected)
        exact = h * w < _FLOAT_EXACT
        inv = 1.0 / h
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
            if exact:
                x0, y0 = _col_row(begin, h, inv)
                x1, y1 = _col_row(cc - 1, h, inv)
            else:
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
def _merge_two(a, a0, a1, b, b0, b1, out, k, intersect):
    """Toggle positions of the union / intersection of two sorted toggle lists, appended to ``out`` at ``k``.

    A list's state flips at each of its positions; the result flips where the
    combined state changes. Two flips at one position cancel (no empty runs).
    """
    start = k
    i = a0
    j = b0
    va = False
    vb = False
    v = False
    while i < a1 or j < b1:
        if j >= b1 or (i < a1 and a[i] <= b[j]):
            p = a[i]
            va = not va
            i += 1
        else:
            p = b[j]
            vb = not vb
            j += 1
        nv = (va and vb) if intersect else (va or vb)
        if nv != v:
            v = nv
            if k > start and out[k - 1] == p:
                k -= 1
            else:
                out[k] = p
                k += 1
    return k


@njit(cache=True, nogil=True, error_model="numpy")
def merge(counts, offsets, intersect):
    """Union (or intersection) of all RLEs on their runs, without decoding (maskApi's rleMerge).

    All RLEs must have one size (checked by the caller). Returns the merged counts.
    Each RLE becomes the positions where its value flips; lists merge pairwise in a
    tree (log2(n) passes over the positions instead of n-1 passes over a growing
    union). Zero-length runs inside an RLE are stepped over (maskApi.c ends its
    walk early on them, truncating the result).
    """
    n = offsets.shape[0] - 1
    if n == 0:
        return np.zeros(0, np.uint32)
    if n == 1:
        return counts[offsets[0] : offsets[1]].copy()
    total = np.int64(0)
    for i in range(offsets[0], offsets[1]):
        total += np.int64(counts[i])
    size = max(np.int64(counts.shape[0]), np.int64(1))
    pos = np.empty(size, np.int64)
    tmp = np.empty(2 * size, np.int64)  # the union's levels use half; the intersection ping-pongs
    bounds = np.empty(n + 1, np.int64)
    k = 0
    for r in range(n):
        bounds[r] = k
        acc = np.int64(0)
        for i in range(offsets[r], offsets[r + 1] - 1):  # the last run ends at the image's end: no flip
            acc += np.int64(counts[i])
            pos[k] = acc
            k += 1
    bounds[n] = k
    if intersect:
        return _intersect_sequential(pos, bounds, tmp, total)
    nb = n
    while nb > 1:
        k = 0
        half = 0
        for q in range(0, nb - 1, 2):
            lo = k
            k = _merge_two(pos, bounds[q], bounds[q + 1], pos, bounds[q + 1], bounds[q + 2], tmp, k, intersect)
            bounds[half] = lo
            half += 1
        if nb % 2:  # an odd list out: copied to the next level as it is
            lo = k
            for i in range(bounds[nb - 1], bounds[nb]):
                tmp[k] = pos[i]
                k += 1
            bounds[half] = lo
            half += 1
        bounds[half] = k
        nb = half
        pos, tmp = tmp, pos
    return _flips_to_counts(pos, bounds[1], total)


@njit(cache=True, nogil=True, error_model="numpy")
def _flips_to_counts(pos, m, total):
    """Counts of the flip positions ``pos[:m]`` of an image of ``total`` pixels."""
    while m > 0 and pos[m - 1] >= total:  # a flip where the image ends changes nothing
        m -= 1
    out = np.empty(m + 1, np.uint32)
    prev = np.int64(0)
    for i in range(m):
        out[i] = pos[i] - prev
        prev = pos[i]
    out[m] = total - prev
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _intersect_sequential(pos, bounds, tmp, total):
    """Intersection of the flip lists ``pos[bounds[r]:bounds[r+1]]`` one after the other into
    ``tmp``: once it is empty (masks rarely overlap) the rest need no walk."""
    n = bounds.shape[0] - 1
    size = tmp.shape[0] // 2
    k = _merge_two(pos, bounds[0], bounds[1], pos, bounds[1], bounds[2], tmp, 0, True)
    lo = 0
    for r in range(2, n):
        if k == lo:
            break
        nlo = size - lo  # the other half of tmp
        k = _merge_two(tmp, lo, k, pos, bounds[r], bounds[r + 1], tmp, nlo, True)
        lo = nlo
    return _flips_to_counts(tmp[lo:], k - lo, total)


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
def _fg_intervals(counts, offsets):
    """Foreground runs of each RLE as absolute ``[start, end)`` positions (empty runs dropped)."""
    n = offsets.shape[0] - 1
    starts = np.empty(counts.shape[0] // 2 + 1, np.int64)
    ends = np.empty(counts.shape[0] // 2 + 1, np.int64)
    ioff = np.zeros(n + 1, np.int64)
    k = 0
    for r in range(n):
        p = np.int64(0)
        for i in range(offsets[r], offsets[r + 1]):
            c = np.int64(counts[i])
            if (i - offsets[r]) & 1 and c > 0:
                starts[k] = p
                ends[k] = p + c
                k += 1
            p += c
        ioff[r + 1] = k
    return starts, ends, ioff


@njit(cache=True, nogil=True, error_model="numpy")
def _first_ending_after(ends, lo, hi, p):
    """Index of the first interval in ``ends[lo:hi]`` ending after ``p`` (binary search)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if ends[mid] <= p:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, error_model="numpy")
def rle_iou(dt_counts, dt_offsets, dt_h, dt_w, gt_counts, gt_offsets, gt_h, gt_w, iscrowd):
    """IoU of RLEs (maskApi's rleIou), with the box pre-check; (m, n) float64.

    A crowd gt divides the intersection by the detection's area instead of the union.
    Same numbers as maskApi.c, computed differently: each RLE's foreground runs
    become absolute intervals once, and a pair only intersects the intervals
    inside the overlap of the two boxes' column ranges (two pointers, binary
    search to the start); union = area_d + area_g - intersection.
    """
    dt_bb = to_bbox(dt_counts, dt_offsets, dt_h, dt_w)
    gt_bb = to_bbox(gt_counts, gt_offsets, gt_h, gt_w)
    o = box_iou(dt_bb, gt_bb, iscrowd)
    m = dt_offsets.shape[0] - 1
    n = gt_offsets.shape[0] - 1
    da = area(dt_counts, dt_offsets)
    ga = area(gt_counts, gt_offsets)
    ds, de, doff = _fg_intervals(dt_counts, dt_offsets)
    gs, ge, goff = _fg_intervals(gt_counts, gt_offsets)
    for g in range(n):
        crowd = iscrowd[g] != 0
        h = gt_h[g]
        for d in range(m):
            if not o[d, g] > 0:
                continue
            # positions before the later box's first column or after the earlier box's last cannot overlap
            p0 = np.int64(max(dt_bb[d, 0], gt_bb[g, 0])) * h
            p1 = np.int64(min(dt_bb[d, 0] + dt_bb[d, 2], gt_bb[g, 0] + gt_bb[g, 2])) * h
            i = _first_ending_after(de, doff[d], doff[d + 1], p0)
            j = _first_ending_after(ge, goff[g], goff[g + 1], p0)
            iend = doff[d + 1]
            jend = goff[g + 1]
            inter = np.int64(0)
            while i < iend and j < jend:
                s0 = ds[i]
                t0 = gs[j]
                if s0 >= p1 or t0 >= p1:
                    break
                e0 = de[i]
                u0 = ge[j]
                lo = s0 if s0 > t0 else t0
                hi = e0 if e0 < u0 else u0
                if hi > lo:
                    inter += hi - lo
                if e0 < u0:
                    i += 1
                else:
                    j += 1
            if inter == 0:
                o[d, g] = 0.0
            elif crowd:
                o[d, g] = inter / da[d]
            else:
                o[d, g] = inter / (da[d] + ga[g] - inter)
    return o


# --------------------------------------------------------------------------- joined strings (lean list calls)

#: the byte between two compressed strings of a joined list (outside the codec's range '0'..'o')
SEP = 0x7F


@njit(cache=True, nogil=True, error_model="numpy")
def parse_joined(chars, n, total):
    """``n`` compressed strings joined by :data:`SEP`, each summing to ``total``: ``(counts, offsets, ok)``.

    The lean path of list calls on same-size RLEs: one pass, no per-string
    lengths. ``ok`` is False for any malformation (a bad character, a truncated
    or too long value, a negative or 33-bit run, a wrong sum, another number of
    strings than ``n``); the caller then takes the general path for the error.
    """
    end = len(chars)  # an array or bytes
    counts = np.empty(end + 1, np.uint32)
    offsets = np.zeros(n + 1, np.int64)
    p = 0
    m = 0
    for r in range(n):
        start = m
        acc = np.int64(0)
        back1 = np.int64(0)
        back2 = np.int64(0)
        while p < end:
            c = np.int64(chars[p]) - 48
            if c == SEP - 48:
                break
            p += 1
            if c < 0 or c > 63:
                return counts[:0], offsets, False
            x = c & 0x1F
            if c & 0x20:
                shift = 5
                while True:
                    if p >= end or shift > 35:
                        return counts[:0], offsets, False
                    c = np.int64(chars[p]) - 48
                    p += 1
                    if c < 0 or c > 63:  # also SEP: a string ending inside a value
                        return counts[:0], offsets, False
                    x |= (c & 0x1F) << shift
                    shift += 5
                    if not (c & 0x20):
                        break
                if c & 0x10:
                    x |= np.int64(-1) << shift
            elif c & 0x10:
                x -= 32
            if m - start > 2:
                x += back2
            if x < 0 or x > 0xFFFFFFFF:
                return counts[:0], offsets, False
            back2 = back1
            back1 = x
            counts[m] = x
            acc += x
            m += 1
        if acc != total:
            return counts[:0], offsets, False
        offsets[r + 1] = m
        if r < n - 1:  # a separator must follow, and the last string must end the bytes
            if p >= end:
                return counts[:0], offsets, False
            p += 1
        elif p != end:
            return counts[:0], offsets, False
    return counts[:m], offsets, True


@njit(cache=True, nogil=True, error_model="numpy")
def area_joined(chars, n, total):
    """uint32 areas of ``n`` joined strings (:func:`parse_joined`); empty if any is malformed.

    The same parse and checks as :func:`parse_joined`, summing the odd counts as it goes
    instead of storing them.
    """
    end = len(chars)
    out = np.empty(n, np.uint32)
    p = 0
    for r in range(n):
        acc = np.int64(0)
        fg = np.int64(0)
        back1 = np.int64(0)
        back2 = np.int64(0)
        m = 0
        while p < end:
            c = np.int64(chars[p]) - 48
            if c == SEP - 48:
                break
            p += 1
            if c < 0 or c > 63:
                return out[:0]
            x = c & 0x1F
            if c & 0x20:
                shift = 5
                while True:
                    if p >= end or shift > 35:
                        return out[:0]
                    c = np.int64(chars[p]) - 48
                    p += 1
                    if c < 0 or c > 63:
                        return out[:0]
                    x |= (c & 0x1F) << shift
                    shift += 5
                    if not (c & 0x20):
                        break
                if c & 0x10:
                    x |= np.int64(-1) << shift
            elif c & 0x10:
                x -= 32
            if m > 2:
                x += back2
            if x < 0 or x > 0xFFFFFFFF:
                return out[:0]
            back2 = back1
            back1 = x
            acc += x
            fg += x if m & 1 else 0
            m += 1
        if acc != total:
            return out[:0]
        out[r] = fg
        if r < n - 1:
            if p >= end:
                return out[:0]
            p += 1
        elif p != end:
            return out[:0]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def bbox_joined(chars, n, h, w):
    """(n, 4) float64 boxes of ``n`` joined strings of size ``h`` x ``w``; (0, 4) if any is malformed."""
    counts, offsets, ok = parse_joined(chars, n, h * w)
    if not ok:
        return np.zeros((0, 4), np.float64)
    return to_bbox(counts, offsets, np.full(n, h, np.int64), np.full(n, w, np.int64))


@njit(cache=True, nogil=True, error_model="numpy")
def merge_joined(chars, n, total, intersect):
    """The compressed string of the union / intersection of ``n`` joined strings; empty if any is malformed."""
    counts, offsets, ok = parse_joined(chars, n, total)
    if not ok:
        return np.zeros(0, np.uint8)
    return counts_to_bytes(merge(counts, offsets, intersect))


@njit(cache=True, nogil=True, error_model="numpy")
def iou_joined(chars, m, n, h, w, iscrowd):
    """IoU of the first ``m`` joined strings (dt) against the next ``n`` (gt), all ``h`` x ``w``;
    an empty (0, 0) array if any is malformed (:func:`rle_iou`)."""
    counts, offsets, ok = parse_joined(chars, m + n, h * w)
    if not ok:
        return np.zeros((0, 0), np.float64)
    hs = np.full(m + n, h, np.int64)
    ws = np.full(m + n, w, np.int64)
    return rle_iou(counts, offsets[: m + 1], hs[:m], ws[:m], counts, offsets[m:], hs[m:], ws[m:], iscrowd)
