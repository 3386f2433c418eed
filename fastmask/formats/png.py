"""Mask images -> integer id arrays plus what was learned about the file.

Masks are read as integers, never as colours (a design convention):

====================  =========================================================
Pillow mode           ``MaskData.array``
====================  =========================================================
``1``                 uint8 0/1
``L`` / ``LA``        uint8 values (2- and 4-bit grey PNGs: the stored values,
                      not Pillow's rescaled 0..255); alpha kept aside
``P`` / ``PA``        uint8 palette *indices*; ``palette`` holds the colours
``I;16*``             uint16 (native byte order)
``LA;16``             uint16 grey of a 16-bit grey+alpha PNG (which Pillow
                      would read as 8-bit RGBA); alpha kept aside
``I``                 int32
``RGB`` / ``RGBA``    uint16 class ids through the label map's colours;
                      colours not in it -> :data:`UNKNOWN_ID` (65535) and
                      listed in ``unknown_colors`` with their pixel counts
====================  =========================================================

RGB without a label map: the VOC colormap is the default palette, so
colour *i* of the VOC colormap is id *i* (0..255) and every other colour is
unknown; ``labelmap_source`` says ``"voc-colormap"`` so a report can say so. A
label map with names but no colours gets VOC colours at its ids, for the same
reason.

Lossy files (JPEG, lossy WebP) are read and flagged ``lossy=True``, whatever
their name. Empty, truncated, undecodable files and decompression bombs raise
:class:`~fastmask.formats.errors.FormatError` with codes ``zero_bytes``,
``truncated``, ``unreadable``, ``decompression_bomb``; Pillow's limit
(``Image.MAX_IMAGE_PIXELS``) is never changed here.

A PNG whose image data ends before its last row (its IDAT stream is complete but
short, or cut, even with ``IEND`` present) is ``truncated``: Pillow would fill
the missing rows with 0 (background) without a word. The image memory is filled
with a sentinel value before decoding, so a last pixel that changed proves every
row was decoded; otherwise (or for an interlaced file) the image data is inflated
once more and its bytes counted. libspng and fastmask's mask decoder (the fast paths) hand
such files over to Pillow. An animated PNG (APNG) is read as its first frame, with
``extra["n_frames"]`` telling how many there are.

Plain non-interlaced 8/16-bit grey and 1/2/4/8-bit palette PNGs (what masks are) are
decoded by :mod:`fastmask.formats.maskpng` (libdeflate + a Numba unfilter kernel) when
it accepts them, with the same ``MaskData``; everything else, and every damaged file,
is read here as before (``$FASTMASK_PNG_DECODER`` chooses).
"""
from __future__ import annotations

import contextlib
import contextvars
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..storage import is_url
from ._fs import check_regular, read_regular_file
from .errors import FormatError
from .labelmap import UNKNOWN_ID, LabelMap, voc_colormap
from .maskpng import decode_mask_png

__all__ = [
    "MaskData",
    "read_mask",
    "counting_values",
    "read_panoptic",
    "read_image_size",
    "write_mask",
    "UNKNOWN_ID",
]

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_LOSSY_FORMATS = {"JPEG", "MPO", "JPEG2000"}
_VOC_ALL: LabelMap | None = None  # built once per process


@dataclass
class MaskData:
    """An integer mask and the facts about its file.

    >>> m = read_mask(_png_bytes(np.array([[0, 1], [1, 2]], np.uint8)))
    >>> m.array.tolist(), m.mode, m.format, (m.width, m.height), m.bit_depth, m.lossy
    ([[0, 1], [1, 2]], 'L', 'PNG', (2, 2), 8, False)
    """

    array: np.ndarray
    mode: str
    format: str
    width: int
    height: int
    bit_depth: int
    channels: int
    palette: np.ndarray | None = None
    lossy: bool = False
    has_alpha: bool = False
    #: pixels whose alpha is not 255 (0 when there is no alpha channel)
    alpha_nonopaque: int = 0
    alpha_min: int | None = None
    unknown_colors: list = field(default_factory=list)
    #: label map used to turn colours into ids ("" when no colour mapping happened)
    labelmap_source: str = ""
    #: where the bytes came from (path or "<bytes>"), for messages
    source: str = ""
    #: more facts: "rgb_is_gray", "precision_lost", "missing_iend", "png_color_type", ...
    extra: dict = field(default_factory=dict)
    #: the count of each value of ``array`` (int64, 256 or 65536 bins) when the decoder
    #: counted them while decoding (inside :func:`counting_values`), else None
    histogram: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), PIL's order."""
        return (self.width, self.height)

    @property
    def has_unknown_colors(self) -> bool:
        return bool(self.unknown_colors)


# --------------------------------------------------------------------------- input


def _load_bytes(source: Source) -> tuple[bytes, str]:
    """All bytes of the source and a name for messages (masks are small: one read)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if is_url(name):  # an object at a URL: the same limit, the storage error codes
            from ..storage import Location

            return Location(name).read_bytes(), name
        return read_regular_file(name), name  # regular files only, at most the read limit
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<stream>"))
        try:
            return source.read(), name
        except OSError as e:
            raise FormatError("unreadable", f"{name}: {e}", path=name) from None
    raise TypeError(f"read_mask: source must be a path, bytes or a binary file, got {type(source).__name__}")


def _png_ihdr(data: bytes) -> tuple[int, int] | None:
    """(bit_depth, color_type) from a PNG's IHDR, or None if not a PNG."""
    if len(data) >= 29 and data[:8] == _PNG_SIG and data[12:16] == b"IHDR":
        return data[24], data[25]
    return None


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_chunks(data: bytes, *, to_idat: bool = False) -> tuple[list[memoryview], bool]:
    """(IDAT payloads, has an ``acTL`` chunk) of a PNG, from the chunk headers only.

    ``to_idat``: stop at the first IDAT (an ``acTL`` must come before it).
    """
    mv, pos, n = memoryview(data), 8, len(data)
    idat: list[memoryview] = []
    animated = False
    while pos + 8 <= n:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            if to_idat:
                break
            idat.append(mv[pos + 8:min(pos + 8 + length, n)])
        elif kind == b"acTL":
            animated = True
        elif kind == b"IEND":
            break
        pos += 12 + length
    return idat, animated


def _png_data_size(data: bytes) -> int | None:
    """Bytes the IHDR says the inflated image data holds (filter bytes included), or None."""
    if len(data) < 29:
        return None
    w, h, depth, kind, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    bits = depth * _CHANNELS.get(kind, 0)
    if not bits:
        return None

    def size(pw: int, ph: int) -> int:
        return ph * (1 + (pw * bits + 7) // 8) if pw and ph else 0

    if interlace != 1:
        return size(w, h)
    return sum(size((w - x0 + dx - 1) // dx if w > x0 else 0, (h - y0 + dy - 1) // dy if h > y0 else 0)
               for x0, y0, dx, dy in _ADAM7)


# Pixel values unlikely in a mask, per Pillow mode: a PNG's image memory is filled with one
# before decoding (Pillow would start from 0), so a last pixel still holding it says the
# decoder may never have reached the last row.
_SENTINELS: dict[str, Any] = {"1": 255, "L": 0xA5, "P": 0xA5, "LA": (0xA5, 0x5A), "PA": (0xA5, 0x5A),
                              "I;16": 0xA55A, "I": 0x5AA5A55A, "RGB": (0xA5, 0x5A, 0xC3),
                              "RGBA": (0xA5, 0x5A, 0xC3, 0x3C)}


def _prefill(img: Image.Image, data: bytes) -> Any:
    """Fill a non-interlaced PNG's image memory with its mode's sentinel before ``load()``
    (Pillow keeps an image memory that exists); returns the sentinel, or None."""
    sentinel = _SENTINELS.get(img.mode)
    if sentinel is None or img.format != "PNG" or data[28:29] != b"\x00" or _png_ihdr(data) is None:
        return None
    img.im = Image.core.fill(img.mode, img.size, sentinel)
    return sentinel


def _png_rows_missing(img: Image.Image, data: bytes, sentinel: Any) -> bool:
    """True when the PNG's image data inflates to less than its header declares.

    A non-interlaced PNG is decoded top to bottom, whole rows at a time, so when its last
    pixel no longer holds the ``sentinel`` (:func:`_prefill`) every row was written: ~1 us.
    Otherwise (and for interlaced files) the image data is inflated once more and its
    bytes counted (about half a decode).
    """
    w, h = img.size
    if sentinel is not None and img.im.getpixel((w - 1, h - 1)) != sentinel:
        return False
    expected = _png_data_size(data)
    if expected is None:
        return False
    idat, _ = _png_chunks(data)
    try:
        return len(zlib.decompressobj().decompress(b"".join(idat), expected)) < expected
    except zlib.error:
        return True


def _looks_truncated(data: bytes) -> bool:
    """The file is a PNG/JPEG whose end marker is missing."""
    if data[:8] == _PNG_SIG or _PNG_SIG.startswith(data[:8]):
        return b"IEND" not in data[-12:]
    if data[:2] == b"\xff\xd8":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    return False


def _open_image(data: bytes, name: str) -> Image.Image:
    """Open and fully decode, mapping every Pillow failure to a FormatError code."""
    if len(data) == 0:
        raise FormatError("zero_bytes", f"{name}: file is empty (0 bytes)", path=name)
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that: a mask
            # that large is a bomb for us too, so the warning becomes the error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and img.size[0] * img.size[1] > limit:
                raise Image.DecompressionBombError(
                    f"{img.size[0]}x{img.size[1]} pixels exceeds the limit of {limit}")
            sentinel = _prefill(img, data)
            img.load()
            if img.format == "PNG" and _png_ihdr(data) is not None and _png_rows_missing(img, data, sentinel):
                w, h = img.size
                img.close()
                raise FormatError("truncated", f"{name}: the image data ends before the last of its {h} rows "
                                  "(the rows after it would read as 0)", path=name)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise FormatError(
            "decompression_bomb",
            f"{name}: declared image size is too large ({e}); Pillow's decompression-bomb "
            f"limit is Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}",
            path=name) from None
    except UnidentifiedImageError:
        code = "truncated" if _looks_truncated(data) else "unreadable"
        raise FormatError(code, f"{name}: cannot identify an image ({len(data)} bytes)"
                          + (", the file ends early" if code == "truncated" else ""), path=name) from None
    except (OSError, EOFError, SyntaxError, ValueError, struct.error, MemoryError) as e:
        msg = str(e) or type(e).__name__
        code = "truncated" if ("truncat" in msg.lower() or _looks_truncated(data)) else "unreadable"
        raise FormatError(code, f"{name}: {msg}", path=name) from None
    return img


# --------------------------------------------------------------------------- decode


def _voc_all() -> LabelMap:
    global _VOC_ALL
    if _VOC_ALL is None:
        _VOC_ALL = LabelMap.voc(all_colors=True)
        _VOC_ALL.source = "voc-colormap"
    return _VOC_ALL


def _color_labelmap(labelmap: LabelMap | None) -> LabelMap:
    if labelmap is None:
        return _voc_all()
    if not labelmap.colors:
        # names only: the VOC colormap is the default palette
        cm = voc_colormap(256)
        ids = [i for i in labelmap.ids if i < 256]
        lm = LabelMap(names=dict(labelmap.names), colors={i: tuple(int(x) for x in cm[i]) for i in ids},
                      ignore=set(labelmap.ignore), background=labelmap.background,
                      source=(labelmap.source or "labelmap") + "+voc-colormap")
        return lm
    return labelmap


def _bit_depth(img: Image.Image, ihdr) -> int:
    if ihdr is not None:
        return ihdr[0]
    return {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}.get(img.mode, 8)


def _is_lossy(img: Image.Image, data: bytes) -> bool:
    fmt = (img.format or "").upper()
    if fmt in _LOSSY_FORMATS:
        return True
    if fmt == "WEBP":
        return b"VP8L" not in data[:64]  # VP8L = lossless WebP; VP8 / VP8X+VP8 = lossy
    return False


def _alpha_facts(alpha: np.ndarray) -> tuple[int, int]:
    opaque = np.iinfo(alpha.dtype).max  # 255, or 65535 for 16-bit alpha
    nonopaque = int(np.count_nonzero(alpha != opaque))
    return nonopaque, int(alpha.min()) if alpha.size else opaque


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _read_la16(data: bytes, name: str, *, panoptic: bool) -> MaskData:
    """A 16-bit grey+alpha PNG as uint16 grey, alpha kept aside.

    Pillow reads it as 8-bit RGBA (high bytes only). Its filtered rows are byte for byte
    those of an 8-bit RGBA PNG (4 bytes a pixel: grey hi, lo, alpha hi, lo; PNG filters
    work on bytes), so the same image data under an 8-bit RGBA header decodes to the
    16-bit samples' bytes.
    """
    idat, animated = _png_chunks(data)
    ihdr = bytearray(data[16:29])
    ihdr[8], ihdr[9] = 8, 6  # bit depth 8, colour type RGBA
    rgba = (_PNG_SIG + _png_chunk(b"IHDR", bytes(ihdr)) + b"".join(_png_chunk(b"IDAT", bytes(d)) for d in idat)
            + _png_chunk(b"IEND", b""))
    img = _open_image(rgba, name)
    try:
        a = np.asarray(img)
    finally:
        img.close()
    grey = (a[..., 0].astype(np.uint16) << 8) | a[..., 1]
    alpha = (a[..., 2].astype(np.uint16) << 8) | a[..., 3]
    extra: dict[str, Any] = {"png_color_type": 4}
    if animated:
        extra["animated"] = True  # the frame count is Pillow's to read; this path keeps the first
    nonopaque, amin = _alpha_facts(alpha)
    return MaskData(array=grey.astype(np.uint32) if panoptic else grey, mode="LA;16", format="PNG",
                    width=int(grey.shape[1]), height=int(grey.shape[0]), bit_depth=16, channels=2, source=name,
                    has_alpha=True, alpha_nonopaque=nonopaque, alpha_min=amin, extra=extra)


def _decode(img: Image.Image, data: bytes, name: str, *, labelmap: LabelMap | None, panoptic: bool) -> MaskData:
    ihdr = _png_ihdr(data)
    mode = img.mode
    fmt = img.format or "UNKNOWN"
    w, h = img.size
    extra: dict[str, Any] = {}
    if ihdr is not None:
        extra["png_color_type"] = ihdr[1]
        if b"IEND" not in data[-12:]:
            extra["missing_iend"] = True
    if getattr(img, "n_frames", 1) > 1:
        extra["n_frames"] = int(img.n_frames)
    md = dict(mode=mode, format=fmt, width=w, height=h, bit_depth=_bit_depth(img, ihdr),
              channels=len(img.getbands()), lossy=_is_lossy(img, data), source=name, extra=extra)
    palette = None
    if mode == "1":
        arr = np.asarray(img, dtype=np.uint8)  # bool -> 0/1
    elif mode in ("L", "LA"):
        a = np.asarray(img)
        arr = np.ascontiguousarray(a[..., 0] if mode == "LA" else a)
        if ihdr is not None and ihdr[1] == 0 and ihdr[0] in (2, 4):
            # Pillow rescales 2/4-bit grey to 0..255; the stored value is the id
            arr = arr // (85 if ihdr[0] == 2 else 17)
        if mode == "LA":
            md["has_alpha"] = True
            md["alpha_nonopaque"], md["alpha_min"] = _alpha_facts(a[..., 1])
    elif mode in ("P", "PA"):
        a = np.asarray(img)
        arr = np.ascontiguousarray(a[..., 0] if mode == "PA" else a)
        pal = img.getpalette("RGB")
        if pal:
            palette = np.asarray(pal, dtype=np.uint8).reshape(-1, 3)
        if mode == "PA":
            md["has_alpha"] = True
            md["alpha_nonopaque"], md["alpha_min"] = _alpha_facts(a[..., 1])
        elif "transparency" in img.info:
            md["has_alpha"] = True
            extra["transparency"] = img.info["transparency"] if isinstance(img.info["transparency"], int) else "table"
    elif mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.uint16, copy=False)  # native byte order
        if not arr.dtype.isnative:
            arr = arr.astype(np.uint16)
    elif mode == "I":
        arr = np.asarray(img).astype(np.int32, copy=False)
    elif mode in ("RGB", "RGBA"):
        a = np.asarray(img)
        rgb = a[..., :3]
        if mode == "RGBA":
            md["has_alpha"] = True
            md["alpha_nonopaque"], md["alpha_min"] = _alpha_facts(a[..., 3])
        if ihdr is not None and ihdr[0] == 16:
            extra["precision_lost"] = "16-bit colour PNG: Pillow keeps the high byte of each channel"
        if panoptic:
            arr = (rgb[..., 0].astype(np.uint32) + (rgb[..., 1].astype(np.uint32) << 8)
                   + (rgb[..., 2].astype(np.uint32) << 16))
            md["labelmap_source"] = "panoptic-rgb"
        else:
            lm = _color_labelmap(labelmap)
            arr, unknown = lm.colors_to_ids(rgb)
            md["unknown_colors"] = unknown
            md["labelmap_source"] = lm.source or "labelmap"
            if unknown and bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                extra["rgb_is_gray"] = True  # likely a grey mask saved as RGB: say so
    else:
        raise FormatError("unsupported_mode", f"{name}: image mode {mode!r} cannot be read as integer ids",
                          path=name)
    if panoptic and arr.dtype != np.uint32:
        arr = arr.astype(np.uint32)
    return MaskData(array=arr, palette=palette, **md)


try:  # optional faster PNG decoder (extra "fast"): libspng, ~1.4x Pillow on grey label masks
    import pyspng as _spng
except ImportError:  # pragma: no cover - depends on the environment
    _spng = None

#: ``$FASTMASK_PNG_DECODER``: ``auto`` (default: fastmask's own decoder for the plain grey
#: and palette PNGs it accepts, then pyspng for plain grey PNGs when it is installed, else
#: Pillow), ``pillow`` (always Pillow), ``fastmask`` (fastmask's decoder, else Pillow) or
#: ``pyspng`` (pyspng, else Pillow). An environment variable, so that it reaches the
#: engine's worker processes too.
PNG_DECODERS = ("auto", "pillow", "fastmask", "pyspng")


def _decoder_setting() -> str:
    value = os.environ.get("FASTMASK_PNG_DECODER", "auto").strip().lower() or "auto"
    if value not in PNG_DECODERS:
        raise ValueError(f"FASTMASK_PNG_DECODER={value!r}: choose one of {', '.join(PNG_DECODERS)}")
    return value


#: use fastmask's mask PNG decoder (:mod:`fastmask.formats.maskpng`) for the PNGs it accepts
USE_MASKPNG = _decoder_setting() in ("auto", "fastmask")
#: use pyspng for plain 8/16-bit grey PNGs when it is installed (set False to force Pillow)
USE_PYSPNG = _decoder_setting() in ("auto", "pyspng")


class _Request:
    """What ``read_mask`` computes while decoding (see :func:`counting_values`,
    :func:`_fused_scan`); ``array`` / ``result``: the first mask's array and what was
    computed for it (None when it was not)."""

    __slots__ = ("want", "scan", "once", "used", "array", "result")

    def __init__(self, want: str, scan: Any = None, once: bool = False):
        self.want, self.scan, self.once, self.used = want, scan, once, False
        self.array: np.ndarray | None = None
        self.result: Any = None


#: set by :func:`counting_values` / :func:`_fused_scan`: what ``read_mask`` computes while
#: decoding (per thread)
_WANT: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("fastmask_png_want", default=None)


@contextlib.contextmanager
def counting_values():
    """Within the block, masks that fastmask's PNG decoder reads come with
    ``MaskData.histogram``: their values counted row by row as the rows are unfiltered
    (one pass over the pixels instead of decode, then count). Other masks (other
    decoders, formats) have ``histogram`` None: count them yourself.

    >>> with counting_values():
    ...     m = read_mask(_png_bytes(np.array([[0, 3], [3, 3]], np.uint8)))
    >>> m.histogram[[0, 3]].tolist()
    [1, 3]
    """
    token = _WANT.set(_Request("histogram"))
    try:
        yield
    finally:
        _WANT.reset(token)


@contextlib.contextmanager
def _fused_scan(want: str, scan: Any):
    """Within the block, the *first* mask ``read_mask`` reads is, when fastmask's PNG
    decoder accepts it, scanned row by row as its rows are unfiltered
    (:func:`~fastmask.formats.maskpng.decode_mask_png`'s ``want``): ``"class_scan"``
    (``scan``: a callable ``(h, w) -> kernel arguments or None``) or ``"joint"`` (``scan``:
    the uint8 ground truth). Yields the request: afterwards, when ``request.array is``
    the mask's array, ``request.result`` is what was computed for it. Only the first mask:
    a dataset item may read a second one (an instance mask) that has no use for it."""
    req = _Request(want, scan, once=True)
    token = _WANT.set(req)
    try:
        yield req
    finally:
        _WANT.reset(token)


def _read_mask_png(data: bytes, name: str, req: _Request | None) -> MaskData | None:
    """fastmask's decoder on a plain grey or palette PNG, giving exactly the Pillow path's
    MaskData; None (read it with Pillow) for anything it does not accept."""
    want = req.want if req is not None else None
    got = decode_mask_png(data, Image.MAX_IMAGE_PIXELS, want=want, scan=req.scan if req is not None else None)
    if got is None:
        return None
    arr, depth, colour, palette = got[:4]
    h, w = arr.shape
    mode = "P" if colour == 3 else ("L" if depth == 8 else "I;16")
    md = MaskData(array=arr, palette=palette, mode=mode, format="PNG", width=int(w), height=int(h),
                  bit_depth=int(depth), channels=1, lossy=False, source=name, extra={"png_color_type": int(colour)})
    if want == "histogram":
        md.histogram = got[4]
    elif want is not None and got[4] is not None:
        req.array, req.result = arr, got[4]
    return md


def _read_grey_png_fast(data: bytes, name: str) -> MaskData | None:
    """pyspng decode of a plain 8/16-bit greyscale PNG, giving exactly the Pillow path's MaskData.

    Returns None (the caller falls back to Pillow, which reports errors precisely)
    for anything else: other colour types or bit depths, animated PNGs, sizes over
    Pillow's decompression-bomb limit, or any decoding problem.
    """
    ihdr = _png_ihdr(data)
    if ihdr is None or ihdr[1] != 0 or ihdr[0] not in (8, 16) or (b"acTL" in data and _png_chunks(data, to_idat=True)[1]):
        return None  # (an animated PNG: Pillow counts its frames)
    w, h = struct.unpack(">II", data[16:24])
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and w * h > limit:
        return None
    if b"IEND" not in data[-12:]:
        return None  # truncated or trailing bytes: Pillow decides what it is
    try:
        arr = _spng.load(data)
    except Exception:  # noqa: BLE001 - any libspng failure: let Pillow read (and name) it
        return None
    if arr.ndim != 2 or arr.shape != (h, w):
        return None
    mode = "L" if ihdr[0] == 8 else "I;16"
    arr = np.ascontiguousarray(arr, dtype=np.uint8 if ihdr[0] == 8 else np.uint16)
    return MaskData(array=arr, palette=None, mode=mode, format="PNG", width=int(w), height=int(h),
                    bit_depth=int(ihdr[0]), channels=1, lossy=False, source=name,
                    extra={"png_color_type": 0})


def read_mask(source: Source, *, labelmap: LabelMap | None = None, name: str | None = None) -> MaskData:
    """Read a mask file (path, bytes or binary file object) as integer ids.

    ``labelmap`` is only used for RGB/RGBA masks (see the module docs).
    ``name`` labels bytes in messages and ``MaskData.source``.

    >>> m = read_mask(_png_bytes(np.array([[0, 128]], np.uint8)))
    >>> m.array.dtype, m.array.tolist()
    (dtype('uint8'), [[0, 128]])
    """
    data, name0 = _load_bytes(source)
    name = name or name0
    req = _WANT.get()
    if req is not None and req.once:
        if req.used:
            req = None
        else:
            req.used = True
    if USE_MASKPNG:
        fast = _read_mask_png(data, name, req)
        if fast is not None:
            return fast
    if _spng is not None and USE_PYSPNG:
        fast = _read_grey_png_fast(data, name)
        if fast is not None:
            return fast
    if _png_ihdr(data) == (16, 4):
        return _with_frames(_read_la16(data, name, panoptic=False), data, name)
    img = _open_image(data, name)
    try:
        return _decode(img, data, name, labelmap=labelmap, panoptic=False)
    finally:
        img.close()


def read_panoptic(source: Source, *, name: str | None = None) -> MaskData:
    """Read a COCO-panoptic PNG: uint32 segment ids ``R + 256*G + 65536*B`` (0 = void).

    Non-RGB files are returned as their integer values (as uint32) so a checker
    can still report them; ``mode`` tells which it was.

    >>> rgb = np.array([[[7, 0, 0], [1, 1, 0]]], np.uint8)
    >>> read_panoptic(_png_bytes(rgb)).array.tolist()
    [[7, 257]]
    """
    data, name0 = _load_bytes(source)
    name = name or name0
    if _png_ihdr(data) == (16, 4):
        return _with_frames(_read_la16(data, name, panoptic=True), data, name)
    img = _open_image(data, name)
    try:
        return _decode(img, data, name, labelmap=None, panoptic=True)
    finally:
        img.close()


def _with_frames(md: MaskData, data: bytes, name: str) -> MaskData:
    """``extra["n_frames"]`` of an animated PNG read by a path that decodes one frame itself."""
    if md.extra.pop("animated", False):
        try:
            with Image.open(io.BytesIO(data)) as img:
                md.extra["n_frames"] = int(getattr(img, "n_frames", 1))
        except Exception:  # noqa: BLE001 - the frame count is a fact about the file, not needed to read it
            md.extra["n_frames"] = 2
    return md


def read_image_size(source: Source) -> tuple[int, int]:
    """(width, height) from the image header only (no pixel decode).

    >>> read_image_size(_png_bytes(np.zeros((3, 5), np.uint8)))
    (5, 3)
    """
    if isinstance(source, (str, os.PathLike)) and is_url(os.fspath(source)):
        from ._fs import open_path

        with open_path(os.fspath(source), 1 << 16) as f:  # a header: one small ranged read
            return read_image_size(f)
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
            try:
                size = check_regular(fd, name, name, whole=False)  # a FIFO, a device: refused
            except BaseException:
                os.close(fd)
                raise
            stream: IO[bytes] = os.fdopen(fd, "rb")
            if size == 0:
                stream.close()
                raise FormatError("zero_bytes", f"{name}: file is empty (0 bytes)", path=name)
        except FileNotFoundError:
            raise FormatError("missing_file", f"{name}: no such file", path=name) from None
        except OSError as e:
            raise FormatError("unreadable", f"{name}: {e}", path=name) from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name = "<bytes>"
        if len(source) == 0:
            raise FormatError("zero_bytes", "<bytes>: empty", path=name)
        stream = io.BytesIO(bytes(source))
    else:
        name = str(getattr(source, "name", "<stream>"))
        stream = source
        try:
            if not stream.read(1):
                raise FormatError("zero_bytes", f"{name}: file is empty (0 bytes)", path=name)
            stream.seek(0)
        except (OSError, ValueError) as e:
            raise FormatError("unreadable", f"{name}: {e}", path=name) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # size only: nothing decoded
            with Image.open(stream) as img:
                return (int(img.size[0]), int(img.size[1]))
    except Image.DecompressionBombError:
        # the header declares it; reading the size is harmless, so report the size anyway
        raise FormatError("decompression_bomb", f"{name}: declared image size exceeds Pillow's limit",
                          path=name) from None
    except UnidentifiedImageError:
        raise FormatError("unreadable", f"{name}: cannot identify an image", path=name) from None
    except (OSError, EOFError, SyntaxError, ValueError, struct.error) as e:
        raise FormatError("unreadable", f"{name}: {e}", path=name) from None
    finally:
        if isinstance(source, (str, os.PathLike)):
            stream.close()


# --------------------------------------------------------------------------- write


def write_mask(path, array: np.ndarray, *, palette: np.ndarray | str | None = None) -> None:
    """Write an integer mask as PNG: ``L`` (ids <= 255), ``P`` with ``palette``, ``I;16`` (ids > 255).

    ``palette`` is an (n, 3) uint8 array or ``"voc"``. The file is written to a
    temporary name in the same folder and renamed, so readers never see half a
    file (``path`` may also be a URL or a :class:`~fastmask.storage.Location`: one upload). Negative ids, ids > 65535, or a palette with ids > 255 raise ValueError.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.png"
    >>> write_mask(p, np.array([[0, 1], [2, 300]], np.uint16))
    >>> read_mask(p).mode, read_mask(p).array.tolist()
    ('I;16', [[0, 1], [2, 300]])
    """
    from .writers import write_semantic_png  # the one PNG mask encoder (writers imports this module)

    write_semantic_png(path, array, palette=palette)


def _png_bytes(arr: np.ndarray) -> bytes:
    """PNG bytes of an array (doctest and test helper)."""
    bio = io.BytesIO()
    Image.fromarray(np.asarray(arr)).save(bio, format="PNG")
    return bio.getvalue()
