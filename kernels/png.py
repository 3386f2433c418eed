"""PNG row filters undone, and packed samples unpacked (the pixel half of the mask PNG decoder).

The inflated image data of a non-interlaced PNG is ``h`` rows of one filter-type byte and
``stride`` filtered bytes. These kernels only do arithmetic on arrays; parsing the chunks
and inflating are the caller's.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def png_unfilter(raw, h, stride, bpp, out):
    """Undo the five PNG row filters of ``raw`` (uint8, ``h * (1 + stride)`` bytes) into
    ``out`` (uint8, ``(h, stride)``); ``bpp``: bytes per complete pixel (at least 1).

    Returns -1 when every row was unfiltered, else the index of the first row whose
    filter-type byte is not 0..4 (the rows from it on are left unwritten).

    >>> raw = np.array([1, 5, 1, 2,   2, 1, 1, 1], np.uint8)  # Sub, then Up
    >>> out = np.empty((2, 3), np.uint8)
    >>> png_unfilter(raw, 2, 3, 1, out), out.tolist()
    (-1, [[5, 6, 8], [6, 7, 9]])
    """
    row = 1 + stride
    for y in range(h):
        base = y * row + 1
        kind = raw[base - 1]
        cur = out[y]
        if kind == 0:
            for x in range(stride):
                cur[x] = raw[base + x]
        elif kind == 1:
            for x in range(min(bpp, stride)):
                cur[x] = raw[base + x]
            for x in range(bpp, stride):
                cur[x] = np.uint8(raw[base + x] + cur[x - bpp])
        elif kind == 2:
            if y == 0:
                for x in range(stride):
                    cur[x] = raw[base + x]
            else:
                prev = out[y - 1]
                for x in range(stride):
                    cur[x] = np.uint8(raw[base + x] + prev[x])
        elif kind == 3:
            if y == 0:
                for x in range(min(bpp, stride)):
                    cur[x] = raw[base + x]
                for x in range(bpp, stride):
                    cur[x] = np.uint8(raw[base + x] + (cur[x - bpp] >> 1))
            else:
                prev = out[y - 1]
                for x in range(min(bpp, stride)):
                    cur[x] = np.uint8(raw[base + x] + (prev[x] >> 1))
                for x in range(bpp, stride):
                    cur[x] = np.uint8(raw[base + x] + ((np.int32(cur[x - bpp]) + np.int32(prev[x])) >> 1))
        elif kind == 4:
            if y == 0:  # no row above: Paeth picks the left byte
                for x in range(min(bpp, stride)):
                    cur[x] = raw[base + x]
                for x in range(bpp, stride):
                    cur[x] = np.uint8(raw[base + x] + cur[x - bpp])
            else:
                prev = out[y - 1]
                for x in range(min(bpp, stride)):
                    cur[x] = np.uint8(raw[base + x] + prev[x])
                for x in range(bpp, stride):
                    a = np.int32(cur[x - bpp])
                    b = np.int32(prev[x])
                    c = np.int32(prev[x - bpp])
                    p = b - c  # pa = |p - a| with p = a + b - c
                    q = a - c
                    pa = abs(p)
                    pb = abs(q)
                    pc = abs(p + q)
                    if pa <= pb and pa <= pc:
                        pred = a
                    elif pb <= pc:
                        pred = b
                    else:
                        pred = c
                    cur[x] = np.uint8(raw[base + x] + pred)
        else:
            return y
    return -1


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
def png_be16(rows, out):
    """Big-endian 16-bit samples (uint8 ``(h, 2*w)``) as native uint16 ``out`` ``(h, w)``.

    >>> out = np.empty((1, 2), np.uint16)
    >>> png_be16(np.array([[1, 2, 255, 0]], np.uint8), out); out.tolist()
    [[258, 65280]]
    """
    for y in range(out.shape[0]):
        src = rows[y]
        dst = out[y]
        for x in range(out.shape[1]):
            dst[x] = (np.uint16(src[2 * x]) << 8) | np.uint16(src[2 * x + 1])
