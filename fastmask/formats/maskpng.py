"""A PNG decoder made for masks: plain grey and palette PNGs at the speed of inflate.

It accepts what masks are -- non-interlaced 8/16-bit greyscale and 1/2/4/8-bit palette
PNGs whose chunks are all ones it knows (``IHDR``, ``PLTE``, ``IDAT``, ``IEND`` and the
harmless ``gAMA``, ``cHRM``, ``sRGB``, ``pHYs``, ``tIME``) -- and nothing else: every chunk's
CRC is checked, the image data is inflated in one call into a buffer of the size IHDR
declares (libdeflate through the ``deflate`` package; zlib when it is missing), and the
row filters are undone in place by a Numba kernel (:mod:`fastmask.kernels.png`): the
array returned is a view of the inflated buffer (its last ``h`` bytes unused).

Anything it is not sure of returns ``None``: other colour types, interlacing, animation,
transparency, text, a bad CRC, a bad filter byte, a zlib stream that is damaged or
inflates to more or fewer bytes than declared, bytes after ``IEND``, a size over Pillow's
decompression-bomb limit. The caller then reads the file with the general reader, which
names the problem exactly as before (``truncated``, ``unreadable``, ``decompression_bomb``)
or reads what it can; so this decoder never changes an answer, it only gives the
accepted ones sooner.
"""
from __future__ import annotations

import struct
import zlib
from typing import Callable

import numpy as np

try:  # libdeflate: ~5x zlib on mask image data (docs/benchmarks.md)
    import deflate as _deflate
except ImportError:  # pragma: no cover - depends on the environment
    _deflate = None

__all__ = ["decode_mask_png", "INFLATE"]

_SIG = b"\x89PNG\r\n\x1a\n"
#: ancillary chunks that change nothing a mask reader reports, with their lengths
_HARMLESS = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"tIME": 7}


def _inflate_libdeflate(data: bytes, size: int) -> bytearray | None:
    try:
        out = _deflate.zlib_decompress(data, size)  # fails when the data inflates to more
    except _deflate.DeflateError:
        return None
    return out if len(out) == size else None


def _inflate_zlib(data: bytes, size: int) -> bytearray | None:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, size + 1)
    except zlib.error:
        return None
    # as strict as libdeflate: the whole stream, its checksum, and exactly ``size`` bytes
    return bytearray(out) if len(out) == size and d.eof else None


#: the inflate in use: ``"libdeflate"`` or ``"zlib"``
INFLATE = "libdeflate" if _deflate is not None else "zlib"
_inflate: Callable[[bytes, int], bytearray | None] = _inflate_libdeflate if _deflate is not None else _inflate_zlib
_crc32 = _deflate.crc32 if _deflate is not None else zlib.crc32


def _chunks(data: bytes) -> tuple[bytes, bytes | None, list[memoryview]] | None:
    """(IHDR payload, PLTE payload or None, IDAT payloads) of a PNG whose chunks are all
    known, well formed and CRC-correct, in order, ending with ``IEND`` at the end of the
    bytes; else None."""
    mv, n = memoryview(data), len(data)
    if n < 57 or data[:8] != _SIG or data[12:16] != b"IHDR" or data[8:12] != b"\x00\x00\x00\x0d":
        return None
    pos, ihdr, plte, idat = 8, b"", None, []
    seen_idat = ended_idat = False
    while True:
        if pos + 12 > n:
            return None
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > n or int.from_bytes(data[end - 4:end], "big") != _crc32(mv[pos + 8:end - 4], _crc32(kind)):
            return None
        payload = mv[pos + 8:end - 4]
        if kind == b"IDAT":
            if ended_idat:
                return None  # IDATs must be consecutive
            seen_idat = True
            idat.append(payload)
        else:
            ended_idat = seen_idat
            if kind == b"IEND":
                return (ihdr, plte, idat) if seen_idat and length == 0 and end == n else None
            if kind == b"IHDR":
                if pos != 8:
                    return None
                ihdr = bytes(payload)
            elif kind == b"PLTE":
                if plte is not None or seen_idat or length == 0 or length % 3 or length > 768:
                    return None
                plte = bytes(payload)
            elif _HARMLESS.get(kind) != length:
                return None
        pos = end


def decode_mask_png(data: bytes, max_pixels: int | None, *, want: str | None = None, scan=None) -> tuple | None:
    """``(array, bit_depth, colour_type, palette)`` of a plain mask PNG, or None (see the
    module docs). ``array`` is uint8 (grey 8-bit, palette indices) or native uint16 (grey
    16-bit); ``palette`` is the ``PLTE`` colours, ``(n, 3)`` uint8, for palette PNGs.
    ``max_pixels``: larger images return None (the caller's bomb limit applies).

    ``want`` asks for a fifth item, counted row by row as the rows are unfiltered (one
    pass over the pixels):

    - ``"histogram"``: the count of each value of ``array`` (int64, 256 bins, or 65536 for
      16-bit; packed 1/2/4-bit rows are counted after unpacking);
    - ``"class_scan"``: ``scan`` is a callable ``(h, w) -> (kind, eight, bg, idx_like,
      min_island, ignore)`` or None, the arguments of
      :func:`fastmask.kernels.validate.class_mask_quick`; the item is ``(arguments,
      that kernel's array for array)`` (8-bit images only, else None);
    - ``"joint"``: ``scan`` is a uint8 ``(h, w)`` array (a ground truth); the item is the
      joint histogram of ``scan`` and ``array`` (int64, 65536 bins, bin ``scan << 8 |
      array``), or None when ``array`` is not 8-bit or its shape differs.

    >>> import io
    >>> from PIL import Image
    >>> bio = io.BytesIO(); Image.fromarray(np.array([[0, 7], [7, 3]], np.uint8)).save(bio, "PNG")
    >>> a, depth, colour, pal = decode_mask_png(bio.getvalue(), None)
    >>> a.tolist(), depth, colour, pal
    ([[0, 7], [7, 3]], 8, 0, None)
    >>> hist = decode_mask_png(bio.getvalue(), None, want="histogram")[4]
    >>> np.flatnonzero(hist).tolist(), int(hist[7])
    ([0, 3, 7], 2)
    >>> joint = decode_mask_png(bio.getvalue(), None, want="joint", scan=np.full((2, 2), 1, np.uint8))[4]
    >>> [(int(b) >> 8, int(b) & 255, int(joint[b])) for b in np.flatnonzero(joint)]
    [(1, 0, 1), (1, 3, 1), (1, 7, 2)]
    """
    if want not in _WANTS:
        raise ValueError(f"want={want!r}: one of {', '.join(map(repr, _WANTS))}")
    parts = _chunks(data)
    if parts is None:
        return None
    ihdr, plte, idat = parts
    w, h, depth, colour, method, filt, interlace = struct.unpack(">IIBBBBB", ihdr)
    if method or filt or interlace or not w or not h or w >= 2**31 or h >= 2**31:
        return None
    if max_pixels is not None and w * h > max_pixels:
        return None
    if colour == 0:
        if depth not in (8, 16) or plte is not None:
            return None
    elif colour != 3 or depth not in (1, 2, 4, 8) or plte is None:
        return None
    stride = (w * depth + 7) // 8
    raw = _inflate(b"".join(idat), h * (stride + 1))
    if raw is None:
        return None
    buf = np.frombuffer(raw, np.uint8)  # unfiltered in place: the array is a view of it
    extra = _unfilter(buf, h, w, stride, depth, want, scan)
    if extra is _BAD:
        return None  # a filter-type byte outside 0..4
    from ..kernels.png import png_be16, png_unpack

    if depth == 16:
        arr = buf[:h * stride].view(np.uint16)
        if want != "histogram":  # (the fused kernel made each row native as it counted it)
            png_be16(arr)
        arr = arr.reshape(h, w)
    elif depth < 8:
        arr = np.empty((h, w), np.uint8)
        png_unpack(buf[:h * stride].reshape(h, stride), w, depth, arr)
    else:
        arr = buf[:h * stride].reshape(h, w)
    palette = np.frombuffer(plte, np.uint8).reshape(-1, 3).copy() if plte is not None else None
    if want is None:
        return arr, depth, colour, palette
    if want == "histogram" and extra is None:  # packed rows: counted once unpacked
        from ..kernels.histogram import value_histogram

        extra = value_histogram(arr.reshape(-1), 256)
    return arr, depth, colour, palette, extra


_WANTS = (None, "histogram", "class_scan", "joint")
_BAD = object()  # _unfilter's answer for a bad filter-type byte


def _unfilter(buf: np.ndarray, h: int, w: int, stride: int, depth: int, want: str | None, scan):
    """The rows of ``buf`` unfiltered in place, with what ``want`` asks for counted as they
    are (see :func:`decode_mask_png`): that, None when it is not counted here, or ``_BAD``."""
    from ..kernels import png as kp  # Numba: loaded on first use

    bpp = 2 if depth == 16 else 1
    if want == "histogram" and depth >= 8:
        hist = np.zeros(65536 if depth == 16 else 256, np.int64)
        return hist if kp.png_unfilter_hist(buf, h, stride, bpp, hist) < 0 else _BAD
    if want == "class_scan" and depth == 8:
        args = scan(h, w)
        if args is not None:
            from ..kernels.validate import png_unfilter_class_scan

            res = png_unfilter_class_scan(buf, h, w, *args)
            return (args, res) if res.size else _BAD
    if (want == "joint" and depth == 8 and type(scan) is np.ndarray and scan.dtype == np.uint8
            and scan.shape == (h, w) and scan.flags.c_contiguous):
        from ..kernels.confusion import png_unfilter_joint_u8

        joint = np.zeros(65536, np.int64)
        return joint if png_unfilter_joint_u8(buf, h, w, scan.reshape(-1), joint) < 0 else _BAD
    return None if kp.png_unfilter(buf, h, stride, bpp) < 0 else _BAD
