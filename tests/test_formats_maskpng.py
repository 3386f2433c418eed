"""fastmask's mask PNG decoder gives exactly what the Pillow path gives: arrays, facts, error codes.

The oracle is ``read_mask`` with every fast path off (Pillow). Files come from three encoders
at every compression level and filter choice -- Pillow, OpenCV (``IMWRITE_PNG_COMPRESSION``
0..9 x ``IMWRITE_PNG_STRATEGY`` x ``IMWRITE_PNG_FILTER``) and fastmask's own writer -- plus a
hand-made encoder that picks one of the five row filters per row at random, and damaged
variants of them all (bad CRCs, bad filter bytes, bad zlib, cut files, extra bytes).
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import fastmask.formats.png as png
from fastmask.formats import FormatError
from fastmask.formats.maskpng import INFLATE, decode_mask_png
from fastmask.formats.writers import encode_png
from fastmask.kernels.png import png_be16, png_unfilter, png_unpack

cv2 = pytest.importorskip("cv2")

_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- oracle


def _read(data: bytes, *, fast: bool):
    """('ok', MaskData) or ('error', code) of read_mask with fastmask's decoder on or off
    (pyspng off either way: the oracle is the Pillow path)."""
    saved = png.USE_MASKPNG, png.USE_PYSPNG
    png.USE_MASKPNG, png.USE_PYSPNG = fast, False
    try:
        return "ok", png.read_mask(data)
    except FormatError as e:
        return "error", e.code
    finally:
        png.USE_MASKPNG, png.USE_PYSPNG = saved


def _facts(m) -> dict:
    return {k: v for k, v in vars(m).items() if k not in ("array", "palette")}


def assert_same_as_pillow(data: bytes, *, accepted: bool | None = None) -> None:
    """The fast and the Pillow path agree on ``data``; ``accepted``: whether fastmask's
    decoder must take the file itself (True) or hand it over (False)."""
    if accepted is not None:
        assert (decode_mask_png(data, png.Image.MAX_IMAGE_PIXELS) is not None) == accepted
    fast, slow = _read(data, fast=True), _read(data, fast=False)
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "error":
        assert fast[1] == slow[1]
        return
    f, s = fast[1], slow[1]
    assert f.array.dtype == s.array.dtype and f.array.shape == s.array.shape
    assert np.array_equal(f.array, s.array)
    assert f.array.flags.c_contiguous and f.array.dtype.isnative
    assert (f.palette is None) == (s.palette is None)
    if f.palette is not None:
        assert f.palette.dtype == s.palette.dtype and np.array_equal(f.palette, s.palette)
    assert _facts(f) == _facts(s)


# ----------------------------------------------------------------------------- inputs


def _mask(h: int, w: int, classes: int, seed: int, dtype=np.uint8) -> np.ndarray:
    """Blobs of ``classes`` ids (rectangles and discs on a background) with some noisy pixels."""
    rng = np.random.default_rng(seed)
    hi = np.iinfo(dtype).max if dtype == np.uint16 else classes - 1
    ids = rng.integers(0, hi, classes, endpoint=True)
    a = np.full((h, w), ids[0], dtype)
    yy, xx = np.mgrid[:h, :w]
    for k in range(1, classes):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, max(2, min(h, w)))
        if rng.random() < 0.5:
            a[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = ids[k]
        else:
            a[max(0, cy - r):cy + r, max(0, cx - r):cx + r] = ids[k]
    noise = rng.random((h, w)) < 0.02
    a[noise] = rng.choice(ids, int(noise.sum()))
    return a


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _filter_rows(rows: np.ndarray, bpp: int, kinds: np.ndarray) -> bytes:
    """PNG-filtered image data of ``rows`` (uint8 (h, stride)), filter ``kinds[y]`` on row y
    (the specification's definitions, in NumPy: the encoder side of the kernel)."""
    out = []
    prev = np.zeros(rows.shape[1], np.int32)
    for y, k in enumerate(kinds):
        cur = rows[y].astype(np.int32)
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]])[: cur.size]
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])[: cur.size]
        if k == 0:
            pred = np.zeros_like(cur)
        elif k == 1:
            pred = left
        elif k == 2:
            pred = prev
        elif k == 3:
            pred = (left + prev) >> 1
        else:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out.append(bytes([k]) + ((cur - pred) & 0xFF).astype(np.uint8).tobytes())
        prev = cur
    return b"".join(out)


def _pack(a: np.ndarray, depth: int) -> np.ndarray:
    """Rows of ``a``'s samples at ``depth`` bits, big-endian / MSB first, as uint8 (h, stride)."""
    if depth == 16:
        return a.astype(">u2").view(np.uint8).reshape(a.shape[0], -1)
    if depth == 8:
        return a.astype(np.uint8)
    return np.packbits(np.unpackbits(a.astype(np.uint8)[..., None], axis=2)[..., 8 - depth:]
                       .reshape(a.shape[0], -1), axis=1)


def _handmade(a: np.ndarray, depth: int, colour: int, kinds: np.ndarray, level: int,
              palette: bytes | None = None, extra: bytes = b"") -> bytes:
    rows = _pack(a, depth)
    raw = _filter_rows(rows, 2 if depth == 16 else 1, kinds)
    ihdr = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra
            + (_chunk(b"PLTE", palette) if palette is not None else b"")
            + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b""))


def _plain(w: int, h: int, depth: int, colour: int, raw: bytes, interlace: int = 0) -> bytes:
    """A PNG of already filtered image data ``raw``."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def _pillow(a: np.ndarray, level: int, *, bits: int = 8, palette: bool = False, optimize: bool = False) -> bytes:
    bio = io.BytesIO()
    if palette:
        im = Image.fromarray(a.astype(np.uint8), "P")
        im.putpalette(list(np.arange(3 * (1 << bits)) % 256))
        im.save(bio, "PNG", compress_level=level, bits=bits, optimize=optimize)
    else:
        Image.fromarray(a).save(bio, "PNG", compress_level=level, optimize=optimize)
    return bio.getvalue()


_CV_STRATEGIES = ["IMWRITE_PNG_STRATEGY_DEFAULT", "IMWRITE_PNG_STRATEGY_FILTERED", "IMWRITE_PNG_STRATEGY_FIXED",
                  "IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY", "IMWRITE_PNG_STRATEGY_RLE"]
_CV_FILTERS = [None] + [f for f in ("IMWRITE_PNG_FILTER_NONE", "IMWRITE_PNG_FILTER_SUB", "IMWRITE_PNG_FILTER_UP",
                                    "IMWRITE_PNG_FILTER_AVG", "IMWRITE_PNG_FILTER_PAETH",
                                    "IMWRITE_PNG_FAST_FILTERS", "IMWRITE_PNG_ALL_FILTERS") if hasattr(cv2, f)]


def _opencv(a: np.ndarray, level: int, strategy: str, filt: str | None) -> bytes:
    params = [cv2.IMWRITE_PNG_COMPRESSION, level, cv2.IMWRITE_PNG_STRATEGY, getattr(cv2, strategy)]
    if filt is not None:
        params += [cv2.IMWRITE_PNG_FILTER, getattr(cv2, filt)]
    ok, buf = cv2.imencode(".png", a, params)
    assert ok
    return buf.tobytes()


masks = st.builds(_mask, st.integers(1, 48), st.integers(1, 48), st.integers(1, 19), st.integers(0, 2**32 - 1))
masks16 = st.builds(_mask, st.integers(1, 40), st.integers(1, 40), st.integers(1, 19), st.integers(0, 2**32 - 1),
                    st.just(np.uint16))


# ----------------------------------------------------------------------------- the kernel


@given(st.integers(1, 9), st.integers(1, 40), st.sampled_from([1, 2, 3, 4, 6, 8]), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_unfilter_kernel_inverts_every_filter(h, stride, bpp, seed):
    # any bytes, any filter per row, any bytes-per-pixel: the kernel undoes the NumPy encoder
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, (h, stride)).astype(np.uint8)
    kinds = rng.integers(0, 5, h)
    raw = np.frombuffer(_filter_rows(rows, bpp, kinds), np.uint8)
    buf = raw.copy()
    assert png_unfilter(buf, h, stride, bpp) == -1
    assert np.array_equal(buf[:h * stride].reshape(h, stride), rows)
    bad = raw.copy()
    y = int(rng.integers(0, h))
    bad[y * (stride + 1)] = rng.integers(5, 256)
    assert png_unfilter(bad, h, stride, bpp) == y


@given(st.integers(1, 30), st.integers(1, 70), st.integers(1, 19), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_unfilter_kernel_on_mask_rows(h, w, classes, seed):
    # long runs: the kernel's 8-bytes-at-a-time paths (flat rows above, zero residuals)
    rows = _mask(h, w, classes, seed)
    kinds = np.random.default_rng(seed).integers(0, 5, h)
    buf = np.frombuffer(_filter_rows(rows, 1, kinds), np.uint8).copy()
    assert png_unfilter(buf, h, w, 1) == -1
    assert np.array_equal(buf[:h * w].reshape(h, w), rows)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_unpack_and_be16_kernels(depth):
    rng = np.random.default_rng(depth)
    a = rng.integers(0, 1 << depth, (7, 13)).astype(np.uint8)
    out = np.empty_like(a)
    png_unpack(_pack(a, depth), 13, depth, out)
    assert np.array_equal(out, a)
    b = rng.integers(0, 65536, (3, 5)).astype(np.uint16)
    out16 = _pack(b, 16).copy().view(np.uint16).ravel()
    png_be16(out16)
    assert np.array_equal(out16.reshape(3, 5), b)


# ----------------------------------------------------------------------------- three encoders


@given(masks, st.integers(0, 9), st.booleans())
@_SETTINGS
def test_pillow_grey_masks(a, level, optimize):
    assert_same_as_pillow(_pillow(a, level, optimize=optimize), accepted=True)


@given(masks16, st.integers(0, 9))
@_SETTINGS
def test_pillow_sixteen_bit_masks(a, level):
    assert_same_as_pillow(_pillow(a, level), accepted=True)


@given(masks, st.integers(0, 9), st.sampled_from([1, 2, 4, 8]))
@_SETTINGS
def test_pillow_palette_masks_at_every_bit_depth(a, level, bits):
    data = _pillow((a.astype(np.int64) % (1 << bits)).astype(np.uint8), level, bits=bits, palette=True)
    assert_same_as_pillow(data, accepted=True)
    assert png.read_mask(data).mode == "P"


@given(st.one_of(masks, masks16), st.integers(0, 9), st.sampled_from(_CV_STRATEGIES), st.sampled_from(_CV_FILTERS))
@_SETTINGS
def test_opencv_masks_every_level_strategy_and_filter(a, level, strategy, filt):
    assert_same_as_pillow(_opencv(a, level, strategy, filt), accepted=True)


@given(st.one_of(masks, masks16), st.integers(0, 9), st.booleans())
@_SETTINGS
def test_fastmask_writer_masks(a, level, voc):
    palette = png.voc_colormap(256) if voc and a.dtype == np.uint8 else None
    assert_same_as_pillow(encode_png(a, palette=palette, level=level), accepted=True)


@given(masks, st.sampled_from([1, 2, 4, 8, 16]), st.integers(0, 9), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_every_filter_on_every_row(a, depth, level, seed):
    # a hand-made encoder choosing one of the five filters per row at random
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 5, a.shape[0])
    if depth == 16:
        data = _handmade((a.astype(np.uint16) * 2029), 16, 0, kinds, level)
    elif depth == 8:
        data = _handmade(a, 8, 0, kinds, level)
    else:
        data = _handmade(a % (1 << depth), depth, 3, kinds, level, palette=bytes(range(3 << depth)))
    assert_same_as_pillow(data, accepted=True)


# ----------------------------------------------------------------------------- damaged files


def _chunk_spans(data: bytes) -> list[tuple[bytes, int, int]]:
    """(kind, start, end) of every chunk."""
    spans, pos = [], 8
    while pos + 8 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        spans.append((data[pos + 4:pos + 8], pos, pos + 12 + n))
        pos += 12 + n
    return spans


def _refresh_crc(data: bytearray, start: int, end: int) -> None:
    data[end - 4:end] = struct.pack(">I", zlib.crc32(bytes(data[start + 4:end - 4])))


def _damaged(data: bytes, how: str, rng: np.random.Generator) -> bytes:
    d = bytearray(data)
    spans = _chunk_spans(data)
    idat = [s for s in spans if s[0] == b"IDAT"]
    if how == "crc":  # one byte of any chunk after the signature changed, CRC left alone
        i = int(rng.integers(8, len(d)))
        d[i] ^= int(rng.integers(1, 256))
    elif how == "filter_byte":  # a row's filter type outside 0..4, a valid stream and CRC
        _, s, e = idat[0]
        raw = bytearray(zlib.decompress(b"".join(data[a + 8:b - 4] for _, a, b in idat)))
        ihdr = struct.unpack(">IIBB", data[16:26])
        stride = (ihdr[0] * ihdr[2] * (2 if ihdr[3] == 4 else 1) + 7) // 8
        raw[int(rng.integers(0, ihdr[1])) * (stride + 1)] = int(rng.integers(5, 256))
        z = zlib.compress(bytes(raw))
        d = bytearray(data[:s] + _chunk(b"IDAT", z) + data[idat[-1][2]:])
    elif how == "zlib":  # a byte of the zlib stream changed, CRC recomputed (a valid chunk, bad data)
        _, s, e = idat[int(rng.integers(0, len(idat)))]
        if e - s > 12:
            d[int(rng.integers(s + 8, e - 4))] ^= int(rng.integers(1, 256))
            _refresh_crc(d, s, e)
    elif how == "cut":
        d = d[: int(rng.integers(0, len(d)))]
    elif how == "no_iend":
        d = d[:spans[-1][1]]
    elif how == "trailing":
        d += bytes(rng.integers(0, 256, int(rng.integers(1, 20))).astype(np.uint8))
    elif how == "short_stream":  # a complete zlib stream holding fewer rows than declared
        _, s, _ = idat[0]
        raw = zlib.decompress(b"".join(data[a + 8:b - 4] for _, a, b in idat))
        z = zlib.compress(raw[: int(rng.integers(0, len(raw)))])
        d = bytearray(data[:s] + _chunk(b"IDAT", z) + data[idat[-1][2]:])
    elif how == "long_stream":  # more bytes than declared
        _, s, _ = idat[0]
        raw = zlib.decompress(b"".join(data[a + 8:b - 4] for _, a, b in idat))
        z = zlib.compress(raw + raw[: int(rng.integers(1, len(raw) + 1))])
        d = bytearray(data[:s] + _chunk(b"IDAT", z) + data[idat[-1][2]:])
    elif how == "adler":  # the zlib checksum wrong, chunk CRC right: Pillow never reads it
        _, s, e = idat[-1]
        d[e - 5] ^= 0xFF
        _refresh_crc(d, s, e)
    return bytes(d)


_HOW = ["crc", "filter_byte", "zlib", "cut", "no_iend", "trailing", "short_stream", "long_stream", "adler"]


def _any_encoder(a: np.ndarray, which: int, level: int) -> bytes:
    if which == 0:
        return _pillow(a, level)
    if which == 1:
        return _opencv(a, level, "IMWRITE_PNG_STRATEGY_DEFAULT", None)
    if which == 2:
        return _pillow(a % 16, level, bits=4, palette=True)
    return encode_png(a, level=level)


@given(masks, st.integers(0, 3), st.integers(0, 9), st.sampled_from(_HOW), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_damaged_files_give_the_same_outcome(a, which, level, how, seed):
    data = _damaged(_any_encoder(a, which, level), how, np.random.default_rng(seed))
    assert_same_as_pillow(data)


@pytest.mark.parametrize("how", _HOW)
def test_each_damage_is_handed_to_the_general_reader(how):
    # the decoder takes none of them itself, and the answer (an error code, or what Pillow
    # reads) is the general reader's
    a = _mask(60, 70, 9, 3)
    data = _damaged(_pillow(a, 6), how, np.random.default_rng(11))
    assert data != _pillow(a, 6)
    assert_same_as_pillow(data, accepted=False)


def test_damage_codes_are_the_existing_ones():
    a = _mask(60, 70, 9, 3)
    good = _pillow(a, 6)
    rng = np.random.default_rng(0)
    assert _read(_damaged(good, "short_stream", rng), fast=True) == ("error", "truncated")
    assert _read(good[: len(good) // 2], fast=True) == ("error", "truncated")
    assert _read(_damaged(good, "filter_byte", rng), fast=True) == ("error", "unreadable")


# ----------------------------------------------------------------------------- what it hands over


def _grey(a=None) -> np.ndarray:
    return _mask(20, 30, 5, 1) if a is None else a


@pytest.mark.parametrize("case", ["rgb", "rgba", "la", "grey_low_bit", "interlaced", "trns", "text", "apng",
                                  "plte_on_grey", "palette_without_plte", "private_chunk", "bomb"])
def test_what_the_decoder_hands_over(case, monkeypatch):
    a = _grey()
    kinds = np.zeros(a.shape[0], np.int64)
    if case == "rgb":
        data = _pillow(np.dstack([a, a, a]), 6)
    elif case == "rgba":
        data = _pillow(np.dstack([a, a, a, a]), 6)
    elif case == "la":
        data = _plain(30, 20, 8, 4, b"".join(b"\0" + r.tobytes() for r in np.dstack([a, a]).reshape(20, -1)))
    elif case == "grey_low_bit":
        data = _handmade(a % 4, 2, 0, kinds, 6)
    elif case == "interlaced":  # Adam7: the seven passes' rows, filter 0
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
        raw = b"".join(b"\0" + r.tobytes() for x0, y0, dx, dy in passes for r in a[y0::dy, x0::dx] if r.size)
        data = _plain(30, 20, 8, 0, raw, interlace=1)
        m = png.read_mask(data)
        assert np.array_equal(m.array, a)  # a valid interlaced file
    elif case == "trns":
        data = _handmade(a, 8, 3, kinds, 6, palette=bytes(range(48)), extra=b"")
        s = _chunk_spans(data)
        plte_end = [e for k, _, e in s if k == b"PLTE"][0]
        data = data[:plte_end] + _chunk(b"tRNS", b"\x00") + data[plte_end:]
    elif case == "text":
        data = _handmade(a, 8, 0, kinds, 6, extra=_chunk(b"tEXt", b"Software\x00test"))
    elif case == "apng":
        data = _handmade(a, 8, 0, kinds, 6, extra=_chunk(b"acTL", struct.pack(">II", 1, 0)))
    elif case == "plte_on_grey":
        data = _handmade(a, 8, 0, kinds, 6, palette=bytes(range(48)))
    elif case == "palette_without_plte":
        data = _handmade(a, 8, 3, kinds, 6)
    elif case == "private_chunk":
        data = _handmade(a, 8, 0, kinds, 6, extra=_chunk(b"prVt", b"1234"))
    else:
        data = _handmade(a, 8, 0, kinds, 6)
        monkeypatch.setattr(png.Image, "MAX_IMAGE_PIXELS", a.size - 1)
    assert_same_as_pillow(data, accepted=False)


def test_harmless_chunks_are_accepted():
    a = _grey()
    extra = (_chunk(b"gAMA", struct.pack(">I", 45455)) + _chunk(b"sRGB", b"\x00")
             + _chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1)))
    assert_same_as_pillow(_handmade(a, 8, 0, np.zeros(20, np.int64), 6, extra=extra), accepted=True)
    # the same chunk with another length is not one the decoder knows
    odd = _chunk(b"gAMA", b"\x00\x00")
    assert_same_as_pillow(_handmade(a, 8, 0, np.zeros(20, np.int64), 6, extra=odd), accepted=False)


def test_split_idat_and_zero_length_idat():
    a = _grey()
    data = _handmade(a, 8, 0, np.arange(20) % 5, 9)
    s = _chunk_spans(data)
    _, i0, i1 = [x for x in s if x[0] == b"IDAT"][0]
    z = data[i0 + 8:i1 - 4]
    parts = [z[:3], b"", z[3:10], z[10:]]
    split = data[:i0] + b"".join(_chunk(b"IDAT", p) for p in parts) + data[i1:]
    assert_same_as_pillow(split, accepted=True)


def test_inflate_library_is_named():
    assert INFLATE in ("libdeflate", "zlib")


@pytest.mark.parametrize("how", _HOW)
def test_zlib_fallback_is_as_strict_as_libdeflate(how, monkeypatch):
    # without the deflate package the decoder inflates with zlib: the same files taken,
    # the same handed over
    from fastmask.formats import maskpng

    monkeypatch.setattr(maskpng, "_inflate", maskpng._inflate_zlib)
    a = _mask(60, 70, 9, 3)
    for good in (_pillow(a, 6), _opencv(a, 9, "IMWRITE_PNG_STRATEGY_RLE", None), encode_png(a)):
        assert_same_as_pillow(good, accepted=True)
        assert_same_as_pillow(_damaged(good, how, np.random.default_rng(5)), accepted=False)
