"""PNG row filters undone, and packed samples unpacked (the pixel half of the mask PNG decoder).

The inflated image data of a non-interlaced PNG is ``h`` rows of one filter-type byte and
``stride`` filtered bytes. These kernels only do arithmetic on arrays; parsing the chunks
and inflating are the caller's.

The rows are unfiltered in place, each written ``y + 1`` bytes before where it was read
(over its own filter byte and the bytes already read), so the image ends up contiguous
at the start of the buffer: no second image-sized buffer, whose fresh pages would cost
about as much as the unfiltering itself. A None or Up row's filtered bytes are first
copied to a small scratch row (in L1), so that the row is a vectorised loop; Sub, Average
and Paeth chains go 8 bytes at a time where nothing changes (most of a mask).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .histogram import histogram_add

_REP = np.uint64(0x0101010101010101)  # a byte repeated 8 times: byte * _REP
# (the word views read memory little-endian: byte j of a row's word is its bits 8j..8j+7,
# as on every platform Numba supports)


@njit(cache=True, nogil=True)
def png_unfilter(buf, h, stride, bpp):
    """Undo the five PNG row filters of ``buf`` (uint8, ``h * (1 + stride)`` bytes: each
    row's filter-type byte then its bytes) in place: afterwards ``buf[:h * stride]`` holds
    the unfiltered rows, contiguous. ``bpp``: bytes per complete pixel (at least 1).

    Returns -1 when every row was unfiltered, else the index of the first row whose
    filter-type byte is not 0..4 (the buffer is then partly overwritten).

    >>> buf = np.array([1, 5, 1, 2,   2, 1, 1, 1], np.uint8)  # Sub, then Up
    >>> png_unfilter(buf, 2, 3, 1), buf[:6].reshape(2, 3).tolist()
    (-1, [[5, 6, 8], [6, 7, 9]])
    """
    t = row_scratch(stride)
    for y in range(h):
        if not unfilter_row(buf, y, stride, bpp, t, None):
            return y
    return -1


@njit(cache=True, nogil=True)
def png_unfilter_hist(buf, h, stride, bpp, hist):
    """:func:`png_unfilter` fused with a value histogram (int64 ``hist``; 256 bins for
    8-bit samples, ``bpp`` 1; 65536 for 16-bit grey, ``bpp`` 2): one pass over the pixels
    instead of decode then count. 8-bit rows are counted inside the unfilter loops (a
    word of zero Sub / Paeth residuals on a flat stretch adds 8 to one bin); None and Up
    rows, right after they are written (still in cache). 16-bit rows are made
    native-endian in place and counted one row behind (the next row's filter reads the
    big-endian bytes), so no :func:`png_be16` pass follows. Not for packed (1/2/4-bit) rows.

    Returns -1 when every row was unfiltered, else the index of the first bad row (the
    histogram is then incomplete).

    >>> buf = np.array([1, 5, 1, 2,   2, 1, 1, 1], np.uint8)  # Sub, then Up
    >>> hist = np.zeros(256, np.int64)
    >>> png_unfilter_hist(buf, 2, 3, 1, hist), np.flatnonzero(hist).tolist(), hist[[5, 6, 8]].tolist()
    (-1, [5, 6, 7, 8, 9], [1, 2, 1])
    """
    t = row_scratch(stride)
    for y in range(h):
        if bpp == 1:  # counted inside the row's unfilter loop (8 at a time where it is flat)
            if not unfilter_row(buf, y, stride, bpp, t, hist):
                return y
        else:
            if not unfilter_row(buf, y, stride, bpp, t, None):
                return y
            if y > 0:  # 16-bit: the row above, once this row no longer reads its big-endian bytes
                _count_be16_row(buf, y - 1, stride, hist)
    if bpp == 2:
        _count_be16_row(buf, h - 1, stride, hist)
    return -1


@njit(cache=True, nogil=True, inline="always")
def _count_be16_row(buf, y, stride, hist):
    """Row ``y`` (unfiltered, big-endian 16-bit) made native in place and counted."""
    samples = buf[y * stride:(y + 1) * stride].view(np.uint16)
    png_be16(samples)
    histogram_add(samples, hist)


@njit(cache=True, nogil=True)
def row_scratch(stride):
    """The scratch :func:`unfilter_row` copies a row's filtered bytes to: ``stride`` bytes,
    then ``stride`` zeros (the row above the first row, for Average)."""
    return np.zeros(2 * stride, np.uint8)


@njit(cache=True, nogil=True, inline="always")
def unfilter_row(buf, y, stride, bpp, t, hist):
    """Row ``y`` of :func:`png_unfilter`, in place; False when its filter byte is not 0..4.
    ``t``: a :func:`row_scratch` of ``stride``. ``hist``: None, or (1-byte pixels only) the
    histogram the row's values are added to.

    None and Up rows (and 16-bit chains) first copy the row's filtered bytes to the
    scratch row: the row is written ``y + 1`` bytes before where it is read, an overlap
    that keeps the compiler from vectorising a loop reading and writing the one buffer
    (an Up row: ~4x faster with the copy).
    """
    row = 1 + stride
    kind = buf[y * row]
    if kind > 4:
        return False
    s = y * row + 1  # the filtered bytes
    d = y * stride  # where the row goes: y + 1 bytes before s, written after read
    if y == 0:
        kind = (0, 1, 0, 3, 1)[kind]  # no row above: Up is None, Paeth is Sub
    o = buf[d:d + stride]
    src = buf[s:s + stride]
    if bpp == 1 and kind != 0 and kind != 2:
        # a left-to-right chain, in place (each byte is read before the write y + 1 bytes
        # earlier can reach it), 8 bytes at a time where nothing changes (word views)
        prev = buf[d - stride:d] if y > 0 else t[stride:2 * stride]  # (zeros)
        if kind == 1:
            _sub_words(src, o, hist)
        elif kind == 3:
            _avg_words(src, o, prev, hist)
        else:
            _paeth_words(src, o, prev, hist)
        return True
    r = t[:stride]
    for x in range(stride):  # (slices, not flat indices: a flat index may be negative, which
        r[x] = src[x]  # keeps the compiler from vectorising; ~5x slower)
    if kind == 0:
        for x in range(stride):
            o[x] = r[x]
    elif kind == 2:
        prev = buf[d - stride:d]
        for x in range(stride):
            o[x] = r[x] + prev[x]
    else:
        _left_bytes(r, o, buf[d - stride:d] if y > 0 else r[:0], stride, kind, bpp, y > 0)
        return True
    if hist is not None:
        histogram_add(o, hist)
    return True


@njit(cache=True, nogil=True)
def _words(a, n):
    return a[:n * 8].view(np.uint64)


@njit(cache=True, nogil=True)
def _sub_words(r, o, hist):
    """Sub on a row of 1-byte pixels, 8 bytes at a time where it can.

    A mask row is long runs of one value, where Sub's residuals are 0: such 8-byte words
    are the left byte 8 times, written at once; other words go byte by byte (the left
    byte kept in a register). ~3x byte by byte throughout, on mask rows.

    ``hist``: None (no counting: the branches on it are compiled away), or a histogram
    the row's values are added to (8 at a time on such words).
    """
    n = r.shape[0]
    nw = n // 8
    rw, ow = _words(r, nw), _words(o, nw)
    a = 0  # the byte to the left
    pend = 0  # pixels of value ``a`` not yet added to ``hist``
    for k in range(nw):
        if rw[k] == 0:
            ow[k] = np.uint64(a) * _REP
            if hist is not None:
                pend += 8
        else:
            if hist is not None:
                hist[a] += pend
                pend = 0
            for j in range(8 * k, 8 * k + 8):
                a = (r[j] + a) & 0xFF
                o[j] = a
                if hist is not None:
                    hist[a] += 1
    if hist is not None:
        hist[a] += pend
    for j in range(nw * 8, n):
        a = (r[j] + a) & 0xFF
        o[j] = a
        if hist is not None:
            hist[a] += 1


@njit(cache=True, nogil=True)
def _paeth_words(r, o, prev, hist):
    """Paeth on a row of 1-byte pixels, 8 bytes at a time where it can. A word of zero
    residuals is written at once in two cases: under a flat stretch of the row above
    (``b == c``) the prediction is the left byte, so the word is the left byte 8 times;
    and where the left byte equals the one above-left (``a == c``) the prediction is the
    byte above (|p - b| = |a - c| = 0), so the word repeats the row above -- and the next
    word starts with ``a == c`` again: a mask row that continues the row above across its
    class boundaries is copied a word at a time."""
    n = r.shape[0]
    nw = n // 8
    rw, ow, pw = _words(r, nw), _words(o, nw), _words(prev, nw)
    a = 0  # the byte to the left
    c = 0  # the byte above-left
    pend = 0  # pixels of value ``a`` not yet added to ``hist`` (as in _sub_words)
    for k in range(nw):
        if rw[k] == 0:
            above = pw[k]
            if above == np.uint64(c) * _REP:
                ow[k] = np.uint64(a) * _REP
                if hist is not None:
                    pend += 8
                continue
            if a == c:
                ow[k] = above
                if hist is not None:
                    hist[a] += pend
                    pend = 0
                    for j in range(8 * k, 8 * k + 8):
                        hist[o[j]] += 1
                a = np.int64(prev[8 * k + 7])
                c = a
                continue
        if hist is not None:
            hist[a] += pend
            pend = 0
        a = _paeth_bytes(r, o, prev, 8 * k, 8 * k + 8, a, c, hist)
        c = np.int64(prev[8 * k + 7])
    if hist is not None:
        hist[a] += pend
    _paeth_bytes(r, o, prev, nw * 8, n, a, c, hist)


@njit(cache=True, nogil=True)
def _avg_words(r, o, prev, hist):
    """Average on a row of 1-byte pixels, 8 bytes at a time where it can: where the row
    above equals the left byte, the prediction is the left byte, so a word of zero
    residuals there is the left byte 8 times."""
    n = r.shape[0]
    nw = n // 8
    rw, ow, pw = _words(r, nw), _words(o, nw), _words(prev, nw)
    a = 0  # the byte to the left
    pend = 0  # pixels of value ``a`` not yet added to ``hist`` (as in _sub_words)
    for k in range(nw):
        fill = np.uint64(a) * _REP
        if rw[k] == 0 and pw[k] == fill:
            ow[k] = fill
            if hist is not None:
                pend += 8
        else:
            if hist is not None:
                hist[a] += pend
                pend = 0
            for x in range(8 * k, 8 * k + 8):
                a = (r[x] + ((a + np.int64(prev[x])) >> 1)) & 0xFF
                o[x] = a
                if hist is not None:
                    hist[a] += 1
    if hist is not None:
        hist[a] += pend
    for x in range(nw * 8, n):
        a = (r[x] + ((a + np.int64(prev[x])) >> 1)) & 0xFF
        o[x] = a
        if hist is not None:
            hist[a] += 1


@njit(cache=True, nogil=True, inline="always")
def _paeth_bytes(r, o, prev, start, stop, a, c, hist):
    """Paeth on bytes ``start..stop-1`` of a 1-byte-pixel row, given the left byte ``a`` and
    the above-left byte ``c``; returns the last byte written (each counted in ``hist``
    unless it is None)."""
    for x in range(start, stop):
        b = np.int64(prev[x])
        a = (r[x] + _paeth(a, b, c)) & 0xFF
        o[x] = a
        if hist is not None:
            hist[a] += 1
        c = b
    return a


@njit(cache=True, nogil=True, inline="always")
def _paeth(a, b, c):
    """The Paeth predictor of left ``a``, above ``b``, above-left ``c``."""
    if b == c:  # a flat row above (most of a mask): p = a
        return a
    p = b - c  # with p = a + b - c: |p - a|, |p - b|, |p - c|
    q = a - c
    pa = abs(p)
    pb = abs(q)
    pc = abs(p + q)
    if pa <= pb and pa <= pc:
        return a
    if pb <= pc:
        return b
    return c


@njit(cache=True, nogil=True)
def _left_bytes(r, o, prev, n, kind, bpp, has_above):
    """Sub (1), Average (3) or Paeth (4), byte by byte in order, for pixels of ``bpp`` > 1
    bytes (their bytes are interleaved chains). ``r``: the residuals; ``o``: the row
    written; ``prev``: the row above (when ``has_above``)."""
    for x in range(n):
        a = np.int64(o[x - bpp]) if x >= bpp else 0
        b = np.int64(prev[x]) if has_above else 0
        if kind == 1:
            pred = a
        elif kind == 3:
            pred = (a + b) >> 1
        else:
            pred = _paeth(a, b, np.int64(prev[x - bpp]) if x >= bpp and has_above else 0)
        o[x] = (np.int64(r[x]) + pred) & 0xFF


@njit(cache=True, nogil=True)
def png_unpack(rows, width, depth, out):
    """Samples of ``depth`` (1, 2 or 4) bits packed MSB first in each row of ``rows``
    (uint8 ``(h, stride)``) into ``out`` (uint8 ``(h, width)``), one byte per sample.

    >>> out = np.empty((1, 3), np.uint8)
    >>> png_unpack(np.array([[0b10_01_11_00]], np.uint8), 3, 2, out); out.tolist()
    [[2, 1, 3]]
    """
    per = 8 // depth
    mask = (1 << depth) - 1
    for y in range(rows.shape[0]):
        src = rows[y]
        dst = out[y]
        for x in range(width):
            shift = 8 - depth * (x % per + 1)
            dst[x] = (src[x // per] >> shift) & mask


@njit(cache=True, nogil=True)
def png_be16(buf):
    """Big-endian 16-bit samples (uint16 ``buf``, read as bytes) made native, in place.

    >>> a = np.array([1, 2, 255, 0], np.uint8).view(np.uint16)
    >>> png_be16(a); a.tolist()
    [258, 65280]
    """
    b = buf.view(np.uint8)
    for i in range(buf.shape[0]):
        buf[i] = (np.uint16(b[2 * i]) << 8) | np.uint16(b[2 * i + 1])
