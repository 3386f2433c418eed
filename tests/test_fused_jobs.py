"""Fused decode + scan for validate and evaluate: validate's one-call class scan run row by
row while fastmask's PNG decoder unfilters, and evaluate's joint histogram of a ground
truth and a prediction counted as the prediction is decoded, equal the unfused results
on the array the Pillow path decodes -- for masks from Pillow, OpenCV and a hand-made
every-filter encoder at every level, noisy masks (the scan's run arrays grow), damaged
and truncated files (the same error codes) -- and the jobs' reports are byte-identical
with the fused path and with Pillow.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_formats_maskpng import (  # the encoders and masks of the decoder's own tests
    _CV_FILTERS, _CV_STRATEGIES, _HOW, _SETTINGS, _damaged, _filter_rows, _handmade, _mask, _opencv, _pillow, _read,
    masks, masks16)

import fastmask.formats.png as png
from fastmask.cli import main
from fastmask.formats import UNKNOWN_ID, FormatError
from fastmask.formats.maskpng import decode_mask_png
from fastmask.jobs.rules_semantic import _quick_plan, fused_class_scan, quick_class_mask
from fastmask.jobs.validate_rules import RuleConfig
from fastmask.kernels import confusion as kc
from fastmask.kernels import validate as kv


def _noise(h: int, w: int, classes: int, seed: int) -> np.ndarray:
    """Salt-and-pepper masks: more runs than the scan's first guess holds (its arrays grow)."""
    return np.random.default_rng(seed).integers(0, classes, (h, w)).astype(np.uint8)


noisy = st.builds(_noise, st.integers(24, 64), st.integers(24, 64), st.integers(2, 40), st.integers(0, 2**32 - 1))
configs = st.builds(lambda conn, island, ignore, bg: RuleConfig(connectivity=conn, min_island=island,
                                                                ignore_value=ignore, background=bg),
                    st.sampled_from([4, 8]), st.sampled_from([0, 3, 50]), st.sampled_from([None, 255, 5]),
                    st.sampled_from([0, 3]))
label_sets = st.sampled_from([None, tuple(range(19)), tuple(range(0, 19, 2)), (0, 1)])


def _pillow_array(data: bytes) -> np.ndarray:
    kind, m = _read(data, fast=False)
    assert kind == "ok", m
    return m.array


# ----------------------------------------------------------------------------- validate


def assert_fused_class_scan(data: bytes, labels, cfg: RuleConfig) -> None:
    """The decode + scan kernel gives the Pillow path's array and class_mask_quick's array
    for it; quick_class_mask with it gives the unfused findings and statistics; read_mask
    inside the validator's block hands the same over."""
    ref = _pillow_array(data)
    fused = decode_mask_png(data, None, want="class_scan", scan=fused_class_scan(labels, cfg, UNKNOWN_ID))
    assert fused is not None and np.array_equal(fused[0], ref) and fused[0].dtype == ref.dtype
    if ref.dtype != np.uint8 or fused[1] != 8:  # 16-bit, packed palette: scanned after decoding
        assert fused[4] is None
        return
    plan = _quick_plan(labels, cfg, UNKNOWN_ID, ref.size)
    args, res = fused[4]
    assert args is plan.fused
    want = kv.class_mask_quick(ref, plan.kind, plan.eight, True, plan.bg, plan.idx_like, plan.min_island, plan.ignore)
    assert np.array_equal(res, want)
    assert (quick_class_mask(fused[0], labels, cfg, UNKNOWN_ID, scanned=fused[4])
            == quick_class_mask(ref, labels, cfg, UNKNOWN_ID))
    with png._fused_scan("class_scan", fused_class_scan(labels, cfg, UNKNOWN_ID)) as req:
        m = png.read_mask(data)
        second = png.read_mask(data)  # only the first mask of the block is scanned
    assert req.array is m.array and np.array_equal(req.result[1], want) and req.array is not second.array


@given(st.one_of(masks, noisy), st.integers(0, 9), st.booleans(), label_sets, configs)
@_SETTINGS
def test_validate_scan_pillow_masks(a, level, optimize, labels, cfg):
    assert_fused_class_scan(_pillow(a, level, optimize=optimize), labels, cfg)


@given(st.one_of(masks, noisy), st.integers(0, 9), st.sampled_from([1, 2, 4, 8]), label_sets, configs)
@_SETTINGS
def test_validate_scan_palette_masks_at_every_bit_depth(a, level, bits, labels, cfg):
    assert_fused_class_scan(_pillow((a.astype(np.int64) % (1 << bits)).astype(np.uint8), level, bits=bits,
                                    palette=True), labels, cfg)


@given(st.one_of(masks, noisy, masks16), st.integers(0, 9), st.sampled_from(_CV_STRATEGIES),
       st.sampled_from(_CV_FILTERS), label_sets, configs)
@_SETTINGS
def test_validate_scan_opencv_masks_every_level_strategy_and_filter(a, level, strategy, filt, labels, cfg):
    assert_fused_class_scan(_opencv(a, level, strategy, filt), labels, cfg)


@given(st.one_of(masks, noisy), st.integers(0, 9), st.integers(0, 2**32 - 1), label_sets, configs)
@_SETTINGS
def test_validate_scan_every_filter_on_every_row(a, level, seed, labels, cfg):
    kinds = np.random.default_rng(seed).integers(0, 5, a.shape[0])
    assert_fused_class_scan(_handmade(a, 8, 0, kinds, level), labels, cfg)


@given(st.one_of(masks, noisy), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_validate_scan_kernel_stops_at_a_bad_filter_byte(a, seed):
    # a filter-type byte outside 0..4 on any row (before or after the run arrays grow): no result
    rng = np.random.default_rng(seed)
    h, w = a.shape
    raw = np.frombuffer(_filter_rows(a, 1, rng.integers(0, 5, h)), np.uint8).copy()
    plan = _quick_plan(tuple(range(19)), RuleConfig(), UNKNOWN_ID, a.size)
    good = kv.png_unfilter_class_scan(raw.copy(), h, w, *plan.fused)
    assert good.size and np.array_equal(good, kv.class_mask_quick(a, plan.kind, plan.eight, True, plan.bg,
                                                                   plan.idx_like, plan.min_island, plan.ignore))
    raw[int(rng.integers(0, h)) * (w + 1)] = rng.integers(5, 256)
    assert kv.png_unfilter_class_scan(raw, h, w, *plan.fused).size == 0


def test_validate_scan_not_asked_for():
    # a background outside 0..255 leaves the one-call path: the decoder scans nothing
    data = _pillow(_mask(9, 11, 4, 1), 6)
    assert fused_class_scan(None, RuleConfig(background=None))(9, 11) is None
    assert decode_mask_png(data, None, want="class_scan", scan=fused_class_scan(None, RuleConfig(background=None)))[4] \
        is None
    assert png.read_mask(data).array.shape == (9, 11) and png._WANT.get() is None


# ----------------------------------------------------------------------------- evaluate


def assert_fused_joint(data: bytes, gt: np.ndarray) -> None:
    """The joint histogram counted while decoding equals the one of the Pillow path's array
    (and the image scores from it equal image_scores_u8's); None when it cannot be counted."""
    ref = _pillow_array(data)
    fused = decode_mask_png(data, None, want="joint", scan=gt)
    assert fused is not None and np.array_equal(fused[0], ref)
    if ref.dtype != np.uint8 or fused[1] != 8 or gt.shape != ref.shape or gt.dtype != np.uint8:
        assert fused[4] is None
        return
    want = np.zeros(65536, np.int64)
    kc.joint_histogram_u8(gt.reshape(-1), ref.reshape(-1), want)
    assert np.array_equal(fused[4], want)
    for args in ((19, 255, True, np.nan, True), (7, 0, False, 1.0, False)):
        a, b = kc.image_scores_joint(fused[4], *args), kc.image_scores_u8(gt.reshape(-1), ref.reshape(-1), *args)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
    with png._fused_scan("joint", gt) as req:
        m = png.read_mask(data)
    assert req.array is m.array and np.array_equal(req.result, want)


def _gt_for(a: np.ndarray, seed: int, mode: int) -> np.ndarray:
    """A ground truth for prediction ``a``: near it (some ignore pixels), unrelated, another
    shape or another dtype."""
    rng = np.random.default_rng(seed)
    if mode == 0:
        g = a.copy()
        g[rng.random(a.shape) < 0.1] = 255
        return g
    if mode == 1:
        return rng.integers(0, 30, a.shape).astype(np.uint8)
    if mode == 2:
        return np.zeros((a.shape[0] + 1, a.shape[1]), np.uint8)
    return a.astype(np.uint16)


@given(st.one_of(masks, noisy, masks16), st.integers(0, 9), st.sampled_from(_CV_STRATEGIES),
       st.sampled_from(_CV_FILTERS), st.integers(0, 2**32 - 1), st.integers(0, 3))
@_SETTINGS
def test_evaluate_joint_opencv_masks(a, level, strategy, filt, seed, mode):
    assert_fused_joint(_opencv(a, level, strategy, filt), _gt_for(a, seed, mode))


@given(st.one_of(masks, noisy), st.integers(0, 9), st.sampled_from([1, 4, 8]), st.booleans(),
       st.integers(0, 2**32 - 1), st.integers(0, 3))
@_SETTINGS
def test_evaluate_joint_pillow_masks(a, level, bits, palette, seed, mode):
    a = (a.astype(np.int64) % (1 << bits)).astype(np.uint8)
    assert_fused_joint(_pillow(a, level, bits=bits if palette else 8, palette=palette), _gt_for(a, seed, mode))


@given(st.one_of(masks, noisy), st.integers(0, 9), st.integers(0, 2**32 - 1), st.integers(0, 3))
@_SETTINGS
def test_evaluate_joint_every_filter_on_every_row(a, level, seed, mode):
    kinds = np.random.default_rng(seed).integers(0, 5, a.shape[0])
    assert_fused_joint(_handmade(a, 8, 0, kinds, level), _gt_for(a, seed, mode))


def test_evaluate_joint_kernel_stops_at_a_bad_filter_byte():
    a = _mask(20, 30, 5, 3)
    raw = np.frombuffer(_filter_rows(a, 1, np.arange(20) % 5), np.uint8).copy()
    raw[7 * 31] = 9
    assert kc.png_unfilter_joint_u8(raw, 20, 30, a.reshape(-1), np.zeros(65536, np.int64)) == 7


# ----------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("want", ["class_scan", "joint"])
@given(masks, st.integers(0, 9), st.sampled_from(_HOW), st.integers(0, 2**32 - 1))
@_SETTINGS
def test_damaged_files_give_the_same_outcome_while_scanning(want, a, level, how, seed):
    # scanning changes no answer: the same error code (or array) as the Pillow path
    data = _damaged(_pillow(a, level), how, np.random.default_rng(seed))
    slow = _read(data, fast=False)
    scan = fused_class_scan(tuple(range(19)), RuleConfig(), UNKNOWN_ID) if want == "class_scan" else a
    saved, png.USE_PYSPNG = png.USE_PYSPNG, False  # (as in the decoder's tests: the oracle is Pillow)
    try:
        with png._fused_scan(want, scan) as req:
            fast = "ok", png.read_mask(data)
    except FormatError as e:
        fast = "error", e.code
    finally:
        png.USE_PYSPNG = saved
    assert fast[0] == slow[0]
    if fast[0] == "error":
        assert fast[1] == slow[1] and req.result is None
        return
    assert np.array_equal(fast[1].array, slow[1].array)
    if req.array is fast[1].array:  # scanned: the unfused result on the Pillow path's array
        if want == "joint":
            ref = np.zeros(65536, np.int64)
            kc.joint_histogram_u8(a.reshape(-1), slow[1].array.reshape(-1), ref)
            assert np.array_equal(req.result, ref)
        else:
            plan = _quick_plan(tuple(range(19)), RuleConfig(), UNKNOWN_ID, a.size)
            assert np.array_equal(req.result[1], kv.class_mask_quick(slow[1].array, plan.kind, plan.eight, True,
                                                                     plan.bg, plan.idx_like, plan.min_island,
                                                                     plan.ignore))


# ----------------------------------------------------------------------------- the jobs


def _folder(root, seed: int, *, palette_every: int = 3) -> None:
    """8-bit grey masks from Pillow and OpenCV, palette masks, 16-bit, a damaged file, a
    noisy mask, masks with values outside the label map and with islands."""
    root.mkdir()
    for i in range(8):
        a = _mask(31 + i, 47 - i, 19, seed + i)
        a[0, :3] = 255  # ignore pixels
        if i == 5:
            a[10:12, 10:12] = 40  # not a class id
        if i % palette_every == 1:
            (root / f"m{i}.png").write_bytes(_pillow(a, i, palette=True))
        elif i % 2:
            filt = _CV_FILTERS[i % len(_CV_FILTERS)]
            (root / f"m{i}.png").write_bytes(_opencv(a, 9 - i, _CV_STRATEGIES[i % 5], filt))
        else:
            (root / f"m{i}.png").write_bytes(_pillow(a, i))
    (root / "noise.png").write_bytes(_pillow(_noise(40, 50, 19, seed), 6))
    (root / "wide.png").write_bytes(_pillow(_mask(20, 9, 6, seed, np.uint16), 6))
    (root / "bad.png").write_bytes(_pillow(_mask(12, 12, 3, seed), 6)[:-30])


def _tables_equal(a, b) -> None:
    tables = sorted(p.relative_to(b) for p in b.rglob("*.parquet"))
    assert {t.parts[0] for t in tables} >= {"items"}
    assert tables == sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    for t in tables:
        assert (a / t).read_bytes() == (b / t).read_bytes(), t


def _spy(monkeypatch) -> list:
    wants = []
    decode = png.decode_mask_png

    def spy(data, max_pixels, *, want=None, scan=None):
        got = decode(data, max_pixels, want=want, scan=scan)
        wants.append((want, got is not None and len(got) == 5 and got[4] is not None))  # (scanned?)
        return got

    monkeypatch.setattr(png, "decode_mask_png", spy)
    return wants


def _pillow_only(monkeypatch) -> None:
    monkeypatch.setattr(png, "USE_MASKPNG", False)  # what FASTMASK_PNG_DECODER=pillow sets
    monkeypatch.setattr(png, "USE_PYSPNG", False)


def test_validate_reports_are_byte_identical_with_pillow(tmp_path, monkeypatch):
    _folder(tmp_path / "masks", 0)
    (tmp_path / "labels.json").write_text(json.dumps({"labels": {str(i): f"c{i}" for i in range(19)}}))
    fused, pillow = tmp_path / "fused", tmp_path / "pillow"
    args = ["validate", str(tmp_path / "masks"), "--labelmap", str(tmp_path / "labels.json"), "--workers", "1",
            "--quiet"]
    wants = _spy(monkeypatch)
    main(args + ["--out", str(fused)])
    status = dict(zip(*pq.read_table(fused / "items", columns=["item_id", "status"]).to_pydict().values()))
    assert len(status) == 11 and status["bad"] != "ok"
    assert {w for w, _ in wants} == {"class_scan"}  # every mask went through the fused path first
    assert sum(done for _, done in wants) >= 8  # and the 8-bit ones were scanned while decoded
    findings = pq.read_table(fused / "findings").column("rule").to_pylist()
    assert "unexpected_value" in findings  # (m5's 40) the full rules ran after the fused scan said so
    _pillow_only(monkeypatch)
    main(args + ["--out", str(pillow)])
    _tables_equal(fused, pillow)


def test_evaluate_reports_are_byte_identical_with_pillow(tmp_path, monkeypatch):
    _folder(tmp_path / "gt", 0)
    _folder(tmp_path / "pred", 100, palette_every=4)
    fused, pillow = tmp_path / "fused", tmp_path / "pillow"
    args = ["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--num-classes", "19",
            "--workers", "1", "--quiet"]
    wants = _spy(monkeypatch)
    main(args + ["--out", str(fused)])
    scores = pq.read_table(fused / "items", columns=["item_id", "status", "miou"]).to_pylist()
    assert sum(r["status"] == "ok" and r["miou"] is not None for r in scores) >= 8
    assert sum(w == "joint" and done for w, done in wants) >= 8  # the predictions were counted while decoded
    _pillow_only(monkeypatch)
    main(args + ["--out", str(pillow)])
    _tables_equal(fused, pillow)
