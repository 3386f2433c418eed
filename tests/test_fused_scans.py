"""Fused decode + count: the histogram counted row by row while fastmask's PNG decoder
unfilters equals the histogram of the array the Pillow path decodes, for masks from
Pillow, OpenCV, fastmask's writer and a hand-made every-filter encoder; the coverage
job's report tables are byte-identical with the fused path and with Pillow.
"""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_formats_maskpng import (  # the encoders and masks of the decoder's own tests
    _CV_FILTERS, _CV_STRATEGIES, _HOW, _SETTINGS, _damaged, _filter_rows, _handmade, _mask, _opencv, _pack,
    _pillow, _read, masks, masks16)

import fastmask.formats.png as png
from fastmask.cli import main
from fastmask.formats import FormatError
from fastmask.formats.maskpng import decode_mask_png
from fastmask.formats.writers import encode_png
from fastmask.jobs.scan import value_counts
from fastmask.kernels.histogram import value_histogram
from fastmask.kernels.png import png_be16, png_unfilter, png_unfilter_hist


def _pillow_array(data: bytes) -> np.ndarray:
    kind, m = _read(data, fast=False)
    assert kind == "ok", m
    return m.array


def assert_fused_counts(data: bytes) -> None:
    """decode_mask_png(want="histogram") gives the plain decode's array and the histogram
    of the Pillow path's array; read_mask inside counting_values carries that histogram."""
    ref = _pillow_array(data)
    plain = decode_mask_png(data, None)
    fused = decode_mask_png(data, None, want="histogram")
    assert plain is not None and fused is not None and len(fused) == 5
    assert np.array_equal(fused[0], ref) and fused[0].dtype == ref.dtype
    assert np.array_equal(plain[0], ref)
    nbins = 65536 if ref.dtype == np.uint16 else 256
    hist = fused[4]
    assert hist.dtype == np.int64 and hist.shape == (nbins,)
    assert np.array_equal(hist, value_histogram(ref.reshape(-1), nbins))
    with png.counting_values():
        m = png.read_mask(data)
    assert np.array_equal(m.histogram, hist)
    values = np.flatnonzero(m.histogram)
    assert (values.tolist(), m.histogram[values].tolist()) == value_counts(ref)


# ----------------------------------------------------------------------------- the kernel


@given(st.integers(1, 12), st.integers(1, 40), st.sampled_from([1, 2]), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_fused_kernel_is_unfilter_then_count(h, width, bpp, seed):
    # any bytes, any filter per row: same buffer and same counts as unfilter, (be16), histogram
    rng = np.random.default_rng(seed)
    stride = width * bpp
    rows = rng.integers(0, 256, (h, stride)).astype(np.uint8)
    if rng.random() < 0.5:  # mask-like rows: long runs (the word-at-a-time paths)
        rows = _pack(_mask(h, width, 5, seed, np.uint16 if bpp == 2 else np.uint8), 8 * bpp).copy()
    raw = np.frombuffer(_filter_rows(rows, bpp, rng.integers(0, 5, h)), np.uint8)
    ref = raw.copy()
    assert png_unfilter(ref, h, stride, bpp) == -1
    flat = ref[:h * stride].view(np.uint16) if bpp == 2 else ref[:h * stride]
    if bpp == 2:
        png_be16(flat)
    got, hist = raw.copy(), np.zeros(65536 if bpp == 2 else 256, np.int64)
    assert png_unfilter_hist(got, h, stride, bpp, hist) == -1
    assert np.array_equal(got[:h * stride], ref[:h * stride])
    assert np.array_equal(hist, value_histogram(flat, hist.size))
    bad = raw.copy()
    y = int(rng.integers(0, h))
    bad[y * (stride + 1)] = rng.integers(5, 256)
    assert png_unfilter_hist(bad, h, stride, bpp, np.zeros_like(hist)) == y


# ----------------------------------------------------------------------------- encoders


@given(st.one_of(masks, masks16), st.integers(0, 9), st.booleans())
@_SETTINGS
def test_pillow_masks(a, level, optimize):
    assert_fused_counts(_pillow(a, level, optimize=optimize and a.dtype == np.uint8))


@given(masks, st.integers(0, 9), st.sampled_from([1, 2, 4, 8]))
@_SETTINGS
def test_pillow_palette_masks_at_every_bit_depth(a, level, bits):
    assert_fused_counts(_pillow((a.astype(np.int64) % (1 << bits)).astype(np.uint8), level, bits=bits, palette=True))


@given(st.one_of(masks, masks16), st.integers(0, 9), st.sampled_from(_CV_STRATEGIES), st.sampled_from(_CV_FILTERS))
@_SETTINGS
def test_opencv_masks_every_level_strategy_and_filter(a, level, strategy, filt):
    assert_fused_counts(_opencv(a, level, strategy, filt))


@given(st.one_of(masks, masks16), st.integers(0, 9), st.booleans())
@_SETTINGS
def test_fastmask_writer_masks(a, level, voc):
    palette = png.voc_colormap(256) if voc and a.dtype == np.uint8 else None
    assert_fused_counts(encode_png(a, palette=palette, level=level))


@given(masks, st.sampled_from([1, 2, 4, 8, 16]), st.integers(0, 9), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_every_filter_on_every_row(a, depth, level, seed):
    kinds = np.random.default_rng(seed).integers(0, 5, a.shape[0])
    if depth == 16:
        data = _handmade(a.astype(np.uint16) * 2029, 16, 0, kinds, level)
    elif depth == 8:
        data = _handmade(a, 8, 0, kinds, level)
    else:
        data = _handmade(a % (1 << depth), depth, 3, kinds, level, palette=bytes(range(3 << depth)))
    assert_fused_counts(data)


@given(masks, st.integers(0, 9), st.sampled_from(_HOW), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_damaged_files_give_the_same_outcome_while_counting(a, level, how, seed):
    # counting changes no answer: the same error code (or array) as the Pillow path
    data = _damaged(_pillow(a, level), how, np.random.default_rng(seed))
    slow = _read(data, fast=False)
    saved, png.USE_PYSPNG = png.USE_PYSPNG, False  # (as in the decoder's tests: the oracle is Pillow)
    try:
        with png.counting_values():
            fast = "ok", png.read_mask(data)
    except FormatError as e:
        fast = "error", e.code
    finally:
        png.USE_PYSPNG = saved
    assert fast[0] == slow[0]
    if fast[0] == "error":
        assert fast[1] == slow[1]
    else:
        assert np.array_equal(fast[1].array, slow[1].array)
        if fast[1].histogram is not None:
            assert np.array_equal(fast[1].histogram, value_histogram(slow[1].array.reshape(-1), 256))


def test_counting_values_scope_and_other_decoders(monkeypatch):
    data = _pillow(_mask(9, 11, 4, 1), 6)
    assert png.read_mask(data).histogram is None  # outside the block: no counting
    with png.counting_values():
        assert png.read_mask(data).histogram is not None
        monkeypatch.setattr(png, "USE_MASKPNG", False)
        assert png.read_mask(data).histogram is None  # another decoder: the caller counts
    assert png._WANT.get() is None
    with pytest.raises(ValueError, match="want"):
        decode_mask_png(data, None, want="runs")


# ----------------------------------------------------------------------------- the coverage job


def _dataset(root) -> None:
    """Masks of every kind the folder layout reads: 8-bit grey from three encoders, 16-bit,
    palette at 8 and 4 bits, RGB (the Pillow path), a damaged file."""
    root.mkdir()
    for i in range(6):
        a = _mask(31 + i, 47 - i, 19, i)
        a[0, :3] = 255  # ignore pixels
        (root / f"p{i}.png").write_bytes(_pillow(a, i))
        (root / f"c{i}.png").write_bytes(_opencv(a, 9 - i, _CV_STRATEGIES[i % 5], _CV_FILTERS[i % len(_CV_FILTERS)]))
        (root / f"f{i}.png").write_bytes(encode_png(a, palette=png.voc_colormap(256) if i % 2 else None, level=i))
        (root / f"s{i}.png").write_bytes(_pillow(_mask(20, 9 + i, 6, i, np.uint16), i))
        (root / f"q{i}.png").write_bytes(_pillow(a % 16, i, bits=4, palette=True))
    (root / "rgb.png").write_bytes(_pillow(np.dstack([_mask(12, 12, 3, 7)] * 3), 6))
    (root / "bad.png").write_bytes(_pillow(_mask(12, 12, 3, 8), 6)[:-30])


def test_coverage_reports_are_byte_identical_with_pillow(tmp_path, monkeypatch):
    _dataset(tmp_path / "masks")
    fused, pillow = tmp_path / "fused", tmp_path / "pillow"
    args = ["coverage", str(tmp_path / "masks"), "--workers", "1", "--quiet"]
    wants = []
    decode = png.decode_mask_png

    def spy(data, max_pixels, *, want=None, scan=None):
        wants.append(want)
        return decode(data, max_pixels, want=want, scan=scan)

    monkeypatch.setattr(png, "decode_mask_png", spy)
    assert main(args + ["--out", str(fused)]) == 0
    status = dict(zip(*pq.read_table(fused / "items", columns=["item_id", "status"]).to_pydict().values()))
    assert len(status) == 32 and status.pop("bad") != "ok" and set(status.values()) == {"ok"}
    assert wants and set(wants) == {"histogram"}  # every mask went through the fused path first
    monkeypatch.setattr(png, "USE_MASKPNG", False)  # what FASTMASK_PNG_DECODER=pillow sets
    monkeypatch.setattr(png, "USE_PYSPNG", False)
    main(args + ["--out", str(pillow)])
    tables = sorted(p.relative_to(pillow) for p in pillow.rglob("*.parquet"))
    assert {t.parts[0] for t in tables} >= {"items", "class_coverage", "classes"}
    assert tables == sorted(p.relative_to(fused) for p in fused.rglob("*.parquet"))
    for t in tables:
        assert (fused / t).read_bytes() == (pillow / t).read_bytes(), t
