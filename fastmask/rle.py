"""COCO run-length encoding: a drop-in for ``pycocotools.mask``, bit-exact, plus batch entry points.

Same names, arguments, return types and dtypes as pycocotools 2.0.11:
:func:`encode`, :func:`decode`, :func:`area`, :func:`toBbox`, :func:`merge`,
:func:`iou`, :func:`frPyObjects`. An RLE is a dict
``{"size": [h, w], "counts": bytes}`` (COCO's compressed string; ``str`` is
accepted too). Where pycocotools misbehaves, fastmask answers sanely:

- malformed RLEs (characters outside ``'0'..'o'``, a truncated value, counts
  not summing to ``h*w``) raise :class:`ValueError` naming the RLE and the
  problem, instead of returning uninitialised memory;
- RLEs of different sizes in :func:`merge`, :func:`iou` or a :func:`decode`
  list raise :class:`ValueError`;
- :func:`encode` takes any memory layout (C, Fortran, strided views such as
  ``stack.transpose(1, 2, 0)``) of uint8 or bool arrays, without copies;
- :func:`area` and :func:`toBbox` take any number of RLEs;
- :func:`frPyObjects` takes a list of boxes; a list mixing polygons and
  4-number polygons treats the latter as (degenerate) polygons; only a list
  whose items *all* have 4 numbers is a list of boxes;
- NaN/inf coordinates and odd-length polygons raise :class:`ValueError`;
  huge coordinates are clipped in closed form (no crash, no giant walk).
- Uncompressed RLEs (``counts`` a list of ints) are accepted wherever an RLE is.

Batch entry points without per-mask Python overhead: :func:`decode_stack`,
:func:`decode_labelmap`, :func:`encode_labelmap`, :func:`counts_of` / :func:`from_counts`.
"""
from __future__ import annotations

import sys
from array import array
from collections import deque
from itertools import chain
from typing import Iterable, Mapping, Sequence

import numpy as np

from ._polygons import is_number, pack
from .kernels import polygon as _poly
from .kernels import rle as _k

__all__ = [
    "encode",
    "decode",
    "area",
    "toBbox",
    "merge",
    "iou",
    "frPyObjects",
    "decode_stack",
    "decode_labelmap",
    "encode_labelmap",
    "counts_of",
    "from_counts",
    "RLE",
]

RLE = dict  # {"size": [h, w], "counts": bytes}

_STATUS_TEXT = {
    _k.STATUS_BAD_CHAR: "contains a character outside COCO's RLE alphabet ('0'..'o', ASCII 48-111)",
    _k.STATUS_TRUNCATED: "ends inside a multi-character run length (truncated string)",
    _k.STATUS_NEGATIVE: "decodes to a negative run length",
    _k.STATUS_OVERFLOW: "decodes to a run length that does not fit in 32 bits",
    _k.STATUS_BAD_SUM: "has run lengths that do not sum to h*w",
}



# --------------------------------------------------------------------------- internal: RLE batches


class _Batch:
    """Parsed RLEs: flat uint32 counts + int64 offsets + per-RLE heights and widths."""

    __slots__ = ("counts", "offsets", "heights", "widths", "uniform")

    def __init__(self, counts, offsets, heights, widths, uniform):
        self.counts = counts
        self.offsets = offsets
        self.heights = heights
        self.widths = widths
        self.uniform = uniform

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    def common_size(self, what: str) -> tuple[int, int]:
        if len(self) == 0:
            raise ValueError(f"{what}: needs at least one RLE")
        h, w = int(self.heights[0]), int(self.widths[0])
        if not self.uniform:
            i = int(np.flatnonzero((self.heights != h) | (self.widths != w))[0])
            raise ValueError(
                f"{what}: RLE {i} has size [{int(self.heights[i])}, {int(self.widths[i])}] "
                f"but RLE 0 has size [{h}, {w}]; all RLEs must have the same size"
            )
        return h, w


def _size_of(obj, i: int) -> tuple[int, int]:
    size = obj.get("size")
    try:
        if len(size) != 2:
            raise ValueError
        h, w = int(size[0]), int(size[1])
    except (TypeError, ValueError, OverflowError, KeyError, IndexError):  # e.g. a dict or inf as size
        raise ValueError(f"RLE {i}: 'size' must be [height, width], got {size!r}") from None
    if h < 0 or w < 0:
        raise ValueError(f"RLE {i}: size [{h}, {w}] is negative")
    if max(h, w, h * w) > _k.MAX_RLE_PIXELS:  # also a 0 x 2**63 size, which fits no int64
        raise ValueError(f"RLE {i}: size [{h}, {w}] is too large (h*w above 2**62)")
    return h, w


def _parse(objs: Sequence[Mapping]) -> _Batch:
    """Parse a list of RLE dicts (compressed or uncompressed counts) into one validated batch.

    The common case (well-formed dicts with bytes or str counts) costs a few
    list comprehensions and one kernel call; anything else takes the careful
    path that names the offending RLE.
    """
    n = len(objs)
    try:
        strings = [o["counts"] for o in objs]
        size_lists = [o["size"] for o in objs]
        if n and set(map(len, size_lists)) != {2}:
            return _parse_careful(objs)
        sizes = np.fromiter(chain.from_iterable(size_lists), np.int64, 2 * n).reshape(n, 2)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        return _parse_careful(objs)
    if not all(type(c) is bytes for c in strings):
        try:  # JSON gives str counts
            strings = [c if type(c) is bytes else c.encode("ascii") for c in strings]
        except (AttributeError, UnicodeEncodeError):
            return _parse_careful(objs)
    lengths = np.fromiter(map(len, strings), np.int64, n)
    chars = np.frombuffer(b"".join(strings), np.uint8)
    counts, offsets, bad, status, uniform = _k.chars_to_counts(chars, lengths, sizes, _NO_SKIP[:n] if n <= 4096 else np.zeros(n, np.bool_))
    if bad >= 0:
        _raise_status(bad, status, sizes)
    return _Batch(counts, offsets, sizes[:, 0], sizes[:, 1], uniform)


_NO_SKIP = np.zeros(4096, np.bool_)


def _raise_status(i: int, status: int, sizes: np.ndarray):
    h, w = int(sizes[i, 0]), int(sizes[i, 1])
    if status == _k.STATUS_BAD_SIZE:
        if h < 0 or w < 0:
            raise ValueError(f"RLE {i}: size [{h}, {w}] is negative")
        raise ValueError(f"RLE {i}: size [{h}, {w}] is too large (h*w above 2**62)")
    raise ValueError(f"RLE {i} (size [{h}, {w}]) is malformed: its counts string {_STATUS_TEXT[status]}")


def _parse_careful(objs: Sequence[Mapping]) -> _Batch:
    """Validate each RLE dict with precise errors; accepts str, bytes or list (uncompressed) counts."""
    n = len(objs)
    sizes = np.empty((n, 2), np.int64)
    strings: list[bytes] = []
    lists: dict[int, np.ndarray] = {}
    for i, obj in enumerate(objs):
        if not isinstance(obj, Mapping) or "counts" not in obj or "size" not in obj:
            raise TypeError(f"RLE {i}: expected a dict with 'size' and 'counts', got {type(obj).__name__}")
        h, w = sizes[i] = _size_of(obj, i)
        c = obj["counts"]
        if isinstance(c, bytes):
            strings.append(c)
        elif isinstance(c, str):
            try:
                strings.append(c.encode("ascii"))
            except UnicodeEncodeError:
                raise ValueError(f"RLE {i}: counts string {_STATUS_TEXT[_k.STATUS_BAD_CHAR]}") from None
        else:
            lists[i] = _uncompressed_counts(c, i, int(h), int(w))
            strings.append(b"")
    lengths = np.fromiter(map(len, strings), np.int64, n)
    chars = np.frombuffer(b"".join(strings), np.uint8)
    skip = np.zeros(n, np.bool_)
    skip[list(lists)] = True
    counts, offsets, bad, status, uniform = _k.chars_to_counts(chars, lengths, sizes, skip)
    if bad >= 0:
        _raise_status(bad, status, sizes)
    if lists:
        counts, offsets = _splice(counts, offsets, lists)
    return _Batch(counts, offsets, sizes[:, 0], sizes[:, 1], uniform)


def _splice(counts, offsets, lists):
    """Insert the uncompressed RLEs' counts at their places in a parsed batch."""
    n = offsets.shape[0] - 1
    parts = []
    new_offsets = np.zeros(n + 1, np.int64)
    for i in range(n):
        part = lists[i] if i in lists else counts[offsets[i] : offsets[i + 1]]
        parts.append(part)
        new_offsets[i + 1] = new_offsets[i] + part.shape[0]
    return np.concatenate(parts).astype(np.uint32, copy=False), new_offsets


def _uncompressed_counts(c, i: int, h: int, w: int) -> np.ndarray:
    try:
        arr = np.asarray(c)
    except (TypeError, ValueError):
        raise TypeError(f"RLE {i}: counts must be a string, bytes or a list of ints") from None
    if arr.ndim != 1 or not (arr.dtype.kind in "iu" or arr.size == 0):
        raise TypeError(f"RLE {i}: counts must be a string, bytes or a list of ints, got {arr.dtype} array of shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFFFFFF):
        raise ValueError(f"RLE {i}: uncompressed counts must be in [0, 2**32), got min {arr.min()} max {arr.max()}")
    arr = arr.astype(np.uint32)
    total = int(arr.sum(dtype=np.int64))
    if total != h * w:
        raise ValueError(f"RLE {i} (size [{h}, {w}]) is malformed: its counts sum to {total}, not h*w = {h * w}")
    return arr


def _to_objs(counts, offsets, heights, widths) -> list[dict]:
    """Compressed-string dicts, as pycocotools' _toString; ``heights``/``widths`` are ints or sequences."""
    chars, char_offsets = _k.counts_to_chars(counts, offsets)
    if isinstance(heights, (int, np.integer)) and isinstance(widths, (int, np.integer)):
        return _strings_to_objs(chars, char_offsets, int(heights), int(widths))
    raw = chars.tobytes()
    co = char_offsets.tolist()
    n = len(co) - 1
    hs = np.broadcast_to(heights, (n,)).tolist()
    ws = np.broadcast_to(widths, (n,)).tolist()
    return [{"size": [hs[i], ws[i]], "counts": raw[co[i] : co[i + 1]]} for i in range(n)]


def _strings_to_objs(chars: np.ndarray, char_offsets: np.ndarray, h: int, w: int) -> list[dict]:
    """RLE dicts of size ``[h, w]`` from compressed strings back to back in ``chars``."""
    raw = chars.tobytes()
    co = char_offsets.tolist()
    return [{"size": [h, w], "counts": raw[a:b]} for a, b in zip(co, co[1:])]


def _obj(counts: np.ndarray, h: int, w: int) -> dict:
    """One compressed RLE dict from one RLE's counts."""
    return {"size": [h, w], "counts": _k.counts_to_bytes(counts).tobytes()}


def _single_or_list(objs, what: str) -> tuple[list, bool]:
    if type(objs) is list:  # the common cases first: exact type checks are cheaper than ABC ones
        return objs, False
    if type(objs) is dict or isinstance(objs, Mapping):
        return [objs], True
    if isinstance(objs, (list, tuple)):
        return list(objs), False
    raise TypeError(f"{what}: expected an RLE dict or a list of them, got {type(objs).__name__}")


# --------------------------------------------------------------------------- pycocotools API


def _as_mask_bytes(mask: np.ndarray) -> np.ndarray:
    if mask.dtype == np.bool_:
        return mask.view(np.uint8)
    if mask.dtype == np.uint8:
        return mask
    if mask.dtype.kind in "iu":
        if mask.size and (mask.min() < 0 or mask.max() > 1):
            raise ValueError(
                f"encode: a {mask.dtype} mask must hold only 0 and 1 (got values in [{mask.min()}, {mask.max()}]); "
                "pass uint8 to encode other byte values as pycocotools does"
            )
        return mask.astype(np.uint8)
    raise TypeError(f"encode: mask must be uint8 or bool (or 0/1 integers), got {mask.dtype}")


_LITTLE = sys.byteorder == "little"


def _words(buf: np.ndarray) -> np.ndarray:
    """The uint64 view the word scans need (empty: bytes only, e.g. on big-endian machines)."""
    if not _LITTLE or buf.__array_interface__["data"][0] % 8:
        return np.zeros(0, np.uint64)
    return buf[: buf.shape[0] // 8 * 8].view(np.uint64)


def _encode_stack(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of an (h, w, n) byte stack in whatever layout it comes, avoiding copies."""
    h, w, n = stack.shape
    if n == 0:
        return np.zeros(0, np.uint32), np.zeros(1, np.int64)
    if h * w == 0:
        return np.zeros(n, np.uint32), np.arange(n + 1, dtype=np.int64)
    colmajor = stack.transpose(2, 1, 0)  # (n, w, h): each plane in column-major order
    planes = stack.transpose(2, 0, 1)  # (n, h, w): each plane in row-major order
    if not colmajor.flags.c_contiguous and not planes.flags.c_contiguous:
        # planes spaced out or oddly strided: one compact copy in the cheaper order
        st = stack.strides
        if abs(st[0]) <= abs(st[1]):
            colmajor = np.ascontiguousarray(colmajor)
        else:
            planes = np.ascontiguousarray(planes)
    if colmajor.flags.c_contiguous:
        buf = colmajor.reshape(-1)
        return _k.encode_colmajor(_words(buf), buf, n, h * w)
    buf = planes.reshape(-1)
    return _k.encode_rowmajor(_words(buf), buf, n, h, w)


def _encode_one(mask: np.ndarray) -> dict:
    """The lean path for one contiguous 2-D uint8/bool mask (else the general path)."""
    h, w = mask.shape
    if h * w and (mask.flags.f_contiguous or mask.flags.c_contiguous):
        buf = mask.view(np.uint8).ravel(order="K")  # a view in memory order
        if mask.flags.f_contiguous:
            counts, _ = _k.encode_colmajor(_words(buf), buf, 1, h * w)
        else:
            counts, _ = _k.encode_rowmajor(_words(buf), buf, 1, h, w)
        return {"size": [h, w], "counts": _k.counts_to_bytes(counts).tobytes()}
    counts, offsets = _encode_stack(_as_mask_bytes(mask)[:, :, None])
    return _to_objs(counts, offsets, h, w)[0]


def encode(bimask: np.ndarray):
    """Encode a binary mask (h, w) -> RLE dict, or a stack (h, w, n) -> list of RLE dicts.

    Any memory layout and uint8/bool dtype; like pycocotools, every change of
    byte value starts a new run (use 0/1 masks).

    >>> import numpy as np
    >>> m = np.zeros((4, 4), np.uint8); m[1:3, 1:3] = 1
    >>> encode(m)
    {'size': [4, 4], 'counts': b'52203'}
    """
    if type(bimask) is np.ndarray and bimask.ndim == 2 and (bimask.dtype == np.uint8 or bimask.dtype == np.bool_):
        return _encode_one(bimask)
    mask = np.asarray(bimask)
    if mask.ndim == 2:
        h, w = mask.shape
        counts, offsets = _encode_stack(_as_mask_bytes(mask)[:, :, None])
        return _to_objs(counts, offsets, h, w)[0]
    if mask.ndim == 3:
        h, w, n = mask.shape
        counts, offsets = _encode_stack(_as_mask_bytes(mask))
        return _to_objs(counts, offsets, h, w)
    raise ValueError(f"encode: mask must be 2-D (h, w) or 3-D (h, w, n), got shape {mask.shape}")


_LEAN_DECODE_PIXELS = 1 << 26


def _lean_one(obj: dict, max_pixels: int = _k.MAX_RLE_PIXELS):
    """``(counts bytes, h, w)`` of one plainly well-typed RLE dict with a compressed string, else None.

    The lean one-RLE paths take it; None (or a kernel's "malformed" answer) sends
    the call down the general path, which answers or raises the documented error.
    """
    c = obj.get("counts")
    size = obj.get("size")
    if type(c) is str:
        if not c.isascii():
            return None
        c = c.encode("ascii")
    if type(c) is not bytes or type(size) is not list or len(size) != 2:
        return None
    h, w = size
    if type(h) is not int or type(w) is not int or h < 0 or w < 0 or h * w > max_pixels:
        return None
    return c, h, w  # the kernels read bytes directly


_SEP_BYTES = bytes([_k.SEP])
_SEP_STR = chr(_k.SEP)


def _lean_list(objs: list):
    """``(joined bytes, n, h, w)`` of a non-empty list of same-size RLE dicts whose counts are all
    bytes or all str, else None.

    The strings are joined by :data:`kernels.rle.SEP` (outside COCO's alphabet), so one kernel call
    parses them without per-string lengths; None, or a kernel's "malformed" answer, sends the
    call down the general path, which answers or raises the documented error.
    """
    try:
        strings = [o["counts"] for o in objs]
        sizes = [o["size"] for o in objs]
        s0 = sizes[0]
        if type(s0) is not list or len(s0) != 2 or sizes.count(s0) != len(sizes):
            return None
    except (KeyError, TypeError, IndexError, ValueError):  # ValueError: an ndarray size compared
        return None
    h, w = s0
    if type(h) is not int or type(w) is not int or h < 0 or w < 0 or h * w > _k.MAX_RLE_PIXELS:
        return None
    kinds = set(map(type, strings))
    if kinds == {bytes}:
        chars = _SEP_BYTES.join(strings)
    elif kinds == {str}:  # JSON gives str counts
        text = _SEP_STR.join(strings)
        if not text.isascii():
            return None
        chars = text.encode("ascii")
    else:  # bytearrays, lists (uncompressed), a mix: the general path sorts them out
        return None
    return chars, len(strings), h, w


def _decode_one(obj: dict):
    """One RLE decoded by a single kernel that parses and writes each byte once, or None (general path)."""
    one = _lean_one(obj, _LEAN_DECODE_PIXELS)  # a huge mask is allocated only once its string is known valid
    if one is None:
        return None
    chars, h, w = one
    out = np.empty((w, h), np.uint8)  # column-major: the transpose is the (h, w) Fortran mask
    if not _k.decode_string(chars, out.reshape(-1)):
        return None
    return out.T


def decode(rleObjs):
    """Decode an RLE -> (h, w) uint8, or a list -> (h, w, n) uint8; Fortran order, as pycocotools.

    >>> int(decode({'size': [4, 4], 'counts': b'52203'}).sum())
    4
    """
    if type(rleObjs) is dict:
        mask = _decode_one(rleObjs)
        if mask is not None:
            return mask
    objs, single = _single_or_list(rleObjs, "decode")
    batch = _parse(objs)
    h, w = batch.common_size("decode")
    n = len(batch)
    out = np.empty((n, w * h), np.uint8)  # every byte written once by the kernel
    _k.decode_colmajor(batch.counts, batch.offsets, out)
    stack = out.reshape(n, w, h).transpose(2, 1, 0)  # (h, w, n), Fortran-contiguous
    return stack[:, :, 0] if single else stack


def area(rleObjs):
    """Foreground pixel count: uint32 for one RLE, uint32 array for a list.

    >>> int(area({'size': [4, 4], 'counts': b'52203'}))
    4
    """
    if type(rleObjs) is dict:
        one = _lean_one(rleObjs)
        if one is not None:
            a = _k.area_one(*one)
            if a >= 0:
                return np.uint32(a)
    elif type(rleObjs) is list and rleObjs:
        lean = _lean_list(rleObjs)
        if lean is not None:
            chars, n, h, w = lean
            a = _k.area_joined(chars, n, h * w)
            if a.shape[0]:
                return a
    objs, single = _single_or_list(rleObjs, "area")
    batch = _parse(objs)
    a = _k.area(batch.counts, batch.offsets).astype(np.uint32)
    return a[0] if single else a


def toBbox(rleObjs):
    """Bounding box ``[x, y, w, h]`` (float64): (4,) for one RLE, (n, 4) for a list.

    >>> toBbox({'size': [4, 4], 'counts': b'52203'}).tolist()
    [1.0, 1.0, 2.0, 2.0]
    """
    if type(rleObjs) is dict:
        one = _lean_one(rleObjs)
        if one is not None:
            bb = _k.bbox_one(*one)
            if bb.shape[0]:
                return bb
    elif type(rleObjs) is list and rleObjs:
        lean = _lean_list(rleObjs)
        if lean is not None:
            bb = _k.bbox_joined(*lean)
            if bb.shape[0]:
                return bb
    objs, single = _single_or_list(rleObjs, "toBbox")
    batch = _parse(objs)
    bb = _k.to_bbox(batch.counts, batch.offsets, batch.heights, batch.widths)
    return bb[0] if single else bb


def merge(rleObjs, intersect: int = 0):
    """Union (or, with ``intersect=1``, intersection) of a list of same-size RLEs -> one RLE.

    >>> a = {'size': [4, 4], 'counts': b'52203'}
    >>> merge([a, a])['counts']
    b'52203'
    """
    if type(rleObjs) is list and len(rleObjs) == 1 and type(rleObjs[0]) is dict:
        # merge of one RLE, as annToRLE does for every one-part polygon: a string this module
        # just made for this size is canonical, so the merge is a copy; else one kernel call
        obj = rleObjs[0]
        c = obj.get("counts")
        made = _MADE.get(id(c))
        if made is not None and made[0] is c and obj.get("size") == made[1]:
            return {"size": list(made[1]), "counts": c}
        one = _lean_one(obj)
        if one is not None:
            chars, ok = _k.recode_one(one[0], one[1] * one[2])
            if ok:
                return {"size": [one[1], one[2]], "counts": chars.tobytes()}
    elif type(rleObjs) is list and len(rleObjs) > 1:
        lean = _lean_list(rleObjs)
        if lean is not None:
            chars, n, h, w = lean
            out = _k.merge_joined(chars, n, h * w, bool(intersect))
            if out.shape[0]:
                return {"size": [h, w], "counts": out.tobytes()}
    objs, _ = _single_or_list(rleObjs, "merge")
    batch = _parse(objs)
    h, w = batch.common_size("merge")
    return _obj(_k.merge(batch.counts, batch.offsets, bool(intersect)), h, w)


def _iou_operand(objs, what: str):
    """Boxes (n, 4) float64 or an RLE batch, following pycocotools' _preproc."""
    if isinstance(objs, np.ndarray):
        arr = objs.astype(np.float64)
        if arr.ndim == 1 and arr.shape[0] == 4:
            arr = arr.reshape(1, 4)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"iou: {what} as an ndarray must be boxes of shape (n, 4), got {objs.shape}")
        return arr
    if isinstance(objs, (list, tuple)):
        if len(objs) == 0:
            return np.zeros((0, 4))
        if all(type(o) is dict for o in objs) or all(isinstance(o, Mapping) for o in objs):
            return _parse(list(objs))
        try:
            arr = np.asarray(objs, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.ndim == 2 and arr.shape[1] == 4:
            return arr
        if arr is not None and arr.ndim == 1 and arr.shape[0] == 4:
            return arr.reshape(1, 4)
        raise ValueError(f"iou: {what} must be a list of RLEs or boxes [x, y, w, h] (n x 4)")
    raise TypeError(f"iou: {what} must be a list of RLEs, a list of boxes or an (n, 4) ndarray, got {type(objs).__name__}")


def _iou_joint(dt: list, gt: list, pyiscrowd):
    """IoU of two non-empty lists of same-size RLE dicts in one kernel call (COCOeval's many small calls).

    None for anything else (boxes, mixed sizes, malformed RLEs, bad iscrowd): the
    general path then answers or raises its documented error, naming the right side.
    """
    d = _lean_list(dt)
    if d is None:
        return None
    g = _lean_list(gt)
    if g is None or d[2:] != g[2:]:
        return None
    n = g[1]
    if pyiscrowd is None:
        crowd = np.zeros(n, np.uint8)
    else:
        try:
            crowd = np.asarray(pyiscrowd).astype(np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            return None
        if crowd.shape[0] != n:
            return None
    o = _k.iou_joined(d[0] + _SEP_BYTES + g[0], d[1], n, d[2], d[3], crowd)
    return o if o.shape[0] else None


def iou(dt, gt, pyiscrowd):
    """IoU between detections and ground truths (RLEs or boxes) -> (len(dt), len(gt)) float64.

    For a crowd gt, the intersection is divided by the detection's area. Returns
    ``[]`` when either side is empty, as pycocotools does.

    >>> a = frPyObjects([[0, 0, 4, 4]], 8, 8); b = frPyObjects([[1, 1, 4, 4]], 8, 8)
    >>> round(float(iou(a, b, [0])[0, 0]), 4)   # 9 / 23
    0.3913
    """
    if type(dt) is list and type(gt) is list and dt and gt:
        joint = _iou_joint(dt, gt, pyiscrowd)
        if joint is not None:
            return joint
    d = _iou_operand(dt, "dt")
    g = _iou_operand(gt, "gt")
    m, n = len(d), len(g)
    if m == 0 or n == 0:
        return []
    if type(d) is not type(g):
        raise ValueError("iou: dt and gt must be of the same kind (both RLEs or both boxes)")
    if pyiscrowd is None:
        crowd = np.zeros(n, np.uint8)
    else:
        try:
            crowd = np.asarray(pyiscrowd).astype(np.uint8).reshape(-1)
        except OverflowError:  # an integer beyond 64 bits: a bad value, as for every other argument
            raise ValueError(f"iou: iscrowd holds an integer too large for a flag: {pyiscrowd!r}"[:200]) from None
        if crowd.shape[0] != n:
            raise ValueError(f"iou: iscrowd has {crowd.shape[0]} entries but there are {n} ground truths")
    if isinstance(d, np.ndarray):
        if not (np.isfinite(d).all() and np.isfinite(g).all()):
            raise ValueError("iou: boxes must be finite")
        return _k.box_iou(d, g, crowd)
    hd, wd = d.common_size("iou (dt)")
    hg, wg = g.common_size("iou (gt)")
    if (hd, wd) != (hg, wg):
        raise ValueError(f"iou: dt RLEs have size [{hd}, {wd}] but gt RLEs have size [{hg}, {wg}]")
    return _k.rle_iou(d.counts, d.offsets, d.heights, d.widths, g.counts, g.offsets, g.heights, g.widths, crowd)


# --------------------------------------------------------------------------- frPyObjects


def _check_hw(h, w) -> tuple[int, int]:
    if type(h) is int and type(w) is int and 0 <= h and 0 <= w and h * w <= _k.MAX_RLE_PIXELS and max(h, w) <= _k.MAX_RLE_PIXELS:
        return h, w  # plain ints in range: nothing to convert
    try:
        hi, wi = int(h), int(w)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        raise TypeError(f"height and width must be integers, got {h!r}, {w!r}") from None
    if hi != h or wi != w or hi < 0 or wi < 0:
        raise ValueError(f"height and width must be non-negative integers, got {h!r}, {w!r}")
    if max(hi, wi, hi * wi) > _k.MAX_RLE_PIXELS:
        raise ValueError(f"height and width {hi} x {wi} are too large (h*w above 2**62)")
    return hi, wi


def _boxes_to_polys(boxes: np.ndarray) -> np.ndarray:
    """maskApi's rleFrBbox: box [x, y, w, h] -> polygon (xs,ys, xs,ye, xe,ye, xe,ys)."""
    xs, ys = boxes[:, 0], boxes[:, 1]
    xe, ye = xs + boxes[:, 2], ys + boxes[:, 3]
    return np.stack([xs, ys, xs, ye, xe, ye, xe, ys], axis=1)


def _check_runs_fit(h: int, w: int) -> None:
    # COCO RLE runs are 32-bit: a polygon/box RLE of a 2**32-pixel image could need one run
    # of 2**32 or more, which would wrap around silently
    if h * w >= 1 << 32:
        raise ValueError(f"frPyObjects: a {h} x {w} image has 2**32 pixels or more; COCO RLE runs are 32-bit")


_BOX_EXACT = float(1 << 31)  # integer box coordinates up to this take the closed form


def _fr_boxes(boxes, h, w) -> list[dict]:
    _check_runs_fit(h, w)
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"frPyObjects: boxes must have shape (n, 4), got {arr.shape}")
    if h and w:  # integer boxes (the common case): their strings in one kernel call
        chars, char_offsets, ok = _k.box_strings(arr, h, w)
        if ok:
            return _strings_to_objs(chars, char_offsets, h, w)
    big = float(np.abs(arr).max()) if arr.size else 0.0
    if not big < np.inf:  # also NaN
        raise ValueError("frPyObjects: boxes have NaN or infinite values")
    n = arr.shape[0]
    if h == 0 or w == 0:  # no pixel: nothing to walk (as _fr_polys)
        return [{"size": [h, w], "counts": b"0"} for _ in range(n)]
    if big <= _BOX_EXACT and (arr == np.floor(arr)).all():  # integer boxes: the rectangle itself
        counts, roff = _k.box_rles(arr, h, w)
        return _to_objs(counts, roff, h, w)
    if big > 8e307:
        # x + w may pass the float maximum: inf, as in maskApi's double arithmetic (the fill
        # clips it), without a NumPy overflow warning for a valid, if extreme, box
        with np.errstate(over="ignore"):
            polys = _boxes_to_polys(arr)
    else:
        polys = _boxes_to_polys(arr)
    offsets = np.arange(0, 8 * n + 1, 8, dtype=np.int64)
    counts, roff = _poly.coco_polygons_to_rles(polys.reshape(-1), offsets, h, w)
    return _to_objs(counts, roff, h, w)


# The compressed strings of the last few frPyObjects results, by id, with their size: merge([r])
# of such a result needs no parsing (the registry holds the bytes, so an id is never reused
# while registered; the size is checked, since a string is only valid for its own size).
_MADE: dict[int, tuple[bytes, list]] = {}
_MADE_ORDER: deque = deque()
_MADE_MAX = 256


def _remember(objs: list[dict]) -> list[dict]:
    for o in objs:
        c = o["counts"]
        _MADE[id(c)] = (c, list(o["size"]))
        _MADE_ORDER.append(id(c))
    while len(_MADE_ORDER) > _MADE_MAX:
        _MADE.pop(_MADE_ORDER.popleft(), None)
    return objs


def _fr_polys(polys, h, w) -> list[dict]:
    _check_runs_fit(h, w)
    xy, offsets = pack(polys, "frPyObjects", min_vertices=0)
    if h == 0 or w == 0:  # no pixel: nothing to walk (a huge other side must not size buffers)
        return [{"size": [h, w], "counts": b"0"} for _ in range(len(offsets) - 1)]
    chars, char_offsets = _poly.coco_polygon_strings(xy, offsets, h, w)
    return _remember(_strings_to_objs(chars, char_offsets, h, w))


def _fr_uncompressed(objs) -> list[dict]:
    batch = _parse(objs)
    return _to_objs(batch.counts, batch.offsets, batch.heights, batch.widths)


def _lean_uncompressed(obj: dict):
    """One uncompressed RLE of plain ints compressed by one kernel call, or None (general path)."""
    size = obj.get("size")
    if type(size) is not list or len(size) != 2 or type(size[0]) is not int or type(size[1]) is not int:
        return None
    h, w = size
    if h < 0 or w < 0 or h * w > _k.MAX_RLE_PIXELS:
        return None
    counts = obj["counts"]
    if counts and type(counts[0]) is bool:  # a list of flags is no list of counts: the general path says so
        return None
    try:  # array.array takes ints (and NumPy integers) only: floats, strings, nested or huge values raise
        arr = np.frombuffer(array("q", counts), np.int64)
    except (TypeError, ValueError, OverflowError):
        return None
    chars, ok = _k.compress_counts(arr, h * w)
    if not ok:
        return None
    return {"size": [h, w], "counts": chars.tobytes()}


def frPyObjects(pyobj, h, w):
    """Polygons, boxes or uncompressed RLEs -> compressed RLE(s), as pycocotools.

    A list gives a list (one RLE per polygon / box / RLE); a single flat polygon,
    box or RLE dict gives one RLE. Polygon parts are not merged (use :func:`merge`).

    >>> r = frPyObjects([[1, 1, 1, 4, 4, 4, 4, 1]], 6, 6)
    >>> int(area(r)[0])
    9
    """
    h, w = _check_hw(h, w)
    if isinstance(pyobj, np.ndarray):
        return _fr_boxes(pyobj, h, w)
    if type(pyobj) is dict and type(pyobj.get("counts")) is list:
        one = _lean_uncompressed(pyobj)
        if one is not None:
            return one
    if isinstance(pyobj, Mapping):
        if "counts" in pyobj and "size" in pyobj:
            return _fr_uncompressed([pyobj])[0]
        raise TypeError("frPyObjects: a dict must be an RLE with 'size' and 'counts'")
    if isinstance(pyobj, (list, tuple)):
        if len(pyobj) == 0:
            return []
        first = pyobj[0]
        if is_number(first):  # one flat polygon or box
            if len(pyobj) == 4:
                return _fr_boxes([pyobj], h, w)[0]
            return _fr_polys([pyobj], h, w)[0]
        if isinstance(first, (list, tuple, np.ndarray)):
            if not all(isinstance(o, (list, tuple, np.ndarray)) for o in pyobj):
                raise TypeError("frPyObjects: a list must hold only polygons/boxes or only RLE dicts")
            if all(len(o) == 4 for o in pyobj):
                return _fr_boxes(pyobj, h, w)
            return _fr_polys(pyobj, h, w)
        if all(isinstance(o, Mapping) for o in pyobj):
            for i, o in enumerate(pyobj):
                if "counts" not in o or "size" not in o:
                    raise TypeError(f"frPyObjects: dict {i} is not an RLE (needs 'size' and 'counts')")
            return _fr_uncompressed(list(pyobj))
    raise TypeError(
        "frPyObjects: input must be a list of polygons, a list or (n, 4) array of boxes, "
        f"or (a list of) uncompressed RLE dicts; got {type(pyobj).__name__}"
    )


# --------------------------------------------------------------------------- batch entry points


def counts_of(rleObjs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse RLEs once into flat arrays ``(counts uint32, offsets int64, heights, widths)``.

    >>> c, o, h, w = counts_of([{'size': [4, 4], 'counts': b'52203'}])
    >>> c.tolist(), o.tolist()
    ([5, 2, 2, 2, 5], [0, 5])
    """
    objs, _ = _single_or_list(rleObjs, "counts_of")
    b = _parse(objs)
    return b.counts, b.offsets, b.heights, b.widths


def from_counts(counts, offsets, heights, widths) -> list[dict]:
    """Flat counts back to compressed RLE dicts (inverse of :func:`counts_of`)."""
    counts = np.ascontiguousarray(counts, dtype=np.uint32)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    return _to_objs(counts, offsets, heights, widths)


def decode_stack(rleObjs) -> np.ndarray:
    """Decode same-size RLEs straight into one C-ordered (n, h, w) uint8 stack.

    >>> decode_stack([{'size': [4, 4], 'counts': b'52203'}]).shape
    (1, 4, 4)
    """
    objs, _ = _single_or_list(rleObjs, "decode_stack")
    batch = _parse(objs)
    h, w = batch.common_size("decode_stack")
    out = np.zeros((len(batch), h, w), np.uint8)
    _k.decode_rowmajor(batch.counts, batch.offsets, h, out, 1)
    return out


def decode_labelmap(rleObjs, values: Iterable[int], *, background: int = 0, dtype=None) -> np.ndarray:
    """Paint RLEs into one (h, w) label map, RLE ``i`` with ``values[i]``; later RLEs win.

    >>> r = frPyObjects([[0, 0, 2, 2], [1, 1, 2, 2]], 4, 4)
    >>> decode_labelmap(r, [1, 2]).tolist()[1]
    [1, 2, 2, 0]
    """
    objs, _ = _single_or_list(rleObjs, "decode_labelmap")
    batch = _parse(objs)
    h, w = batch.common_size("decode_labelmap")
    vals = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
    if vals.shape != (len(batch),):
        raise ValueError(f"decode_labelmap: got {vals.shape[0] if vals.ndim else 1} values for {len(batch)} RLEs")
    if dtype is None:
        hi = max(int(vals.max(initial=0)), background)
        lo = min(int(vals.min(initial=0)), background)
        dtype = np.uint8 if lo >= 0 and hi <= 255 else np.uint16 if lo >= 0 and hi <= 65535 else np.int64
    out = np.full((h, w), background, dtype=dtype)
    vals = vals.astype(dtype)
    _k.paint_rowmajor(batch.counts, batch.offsets, h, vals, out)
    return out


def encode_labelmap(labelmap: np.ndarray, values: Iterable[int] | None = None, *, background: int | None = 0) -> dict:
    """Encode each value of an (h, w) integer label map as its own RLE: ``{value: rle}``.

    ``values`` selects which values (default: every value present except ``background``).

    >>> lm = np.array([[0, 1], [2, 1]], np.uint8)
    >>> sorted(encode_labelmap(lm))
    [1, 2]
    """
    lm = np.asarray(labelmap)
    if lm.ndim != 2:
        raise ValueError(f"encode_labelmap: expected a 2-D label map, got shape {lm.shape}")
    if lm.dtype.kind not in "iub":
        raise TypeError(f"encode_labelmap: label map must be integer, got {lm.dtype}")
    if lm.dtype == np.bool_:
        lm = lm.view(np.uint8)
    h, w = lm.shape
    if values is None:
        present = np.unique(lm)
        vals = [int(v) for v in present if background is None or v != background]
    else:
        vals = [int(v) for v in values]
    if not vals:
        return {}
    lo = min(vals)
    if lo < 0:
        raise ValueError("encode_labelmap: negative label values are not supported")
    lut = np.full(max(vals) + 1, -1, np.int64)
    for slot, v in enumerate(vals):
        lut[v] = slot
    if lm.size == 0:
        counts = np.zeros(len(vals), np.uint32)
        offsets = np.arange(len(vals) + 1, dtype=np.int64)
    else:
        a = np.ascontiguousarray(lm).reshape(-1)
        if a.dtype not in (np.uint8, np.uint16, np.int32, np.int64):
            a = a.astype(np.int64)  # one compiled variant per common dtype; the rest widen
        counts, offsets = _k.encode_labelmap_rowmajor(a, h, w, lut)
    objs = _to_objs(counts, offsets, h, w)
    return dict(zip(vals, objs))
