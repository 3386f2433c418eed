"""kernels/validate.py: the fused scan (runs + histogram + transitions + blends, word-at-a-time
for uint8 rows) against the per-pixel scan and against scipy.ndimage's component partition."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from fastmask.jobs import rules_semantic as RS
from fastmask.jobs.rules_core import RuleConfig


@st.composite
def class_masks(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint8, np.uint16]))
    h = draw(st.integers(1, 24))
    # widths around multiples of 8 (the word path) and odd ones (the byte path); past 512
    # a row has several 64-word blocks (the block-of-words skip)
    w = draw(st.sampled_from([1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 40, 64, 65, 72, 512, 520, 1030]))
    k = draw(st.integers(1, 6))
    style = draw(st.sampled_from(["blocks", "noise", "stripes"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    vals = rng.choice(np.array([0, 1, 2, 3, 5, 9, 255], dtype), size=k)
    if style == "noise":
        m = vals[rng.integers(0, k, (h, w))]
    elif style == "stripes":
        m = np.repeat(vals[rng.integers(0, k, (h, 1))], w, axis=1)
        m[:, rng.integers(0, w)] = vals[0]
    else:
        m = np.full((h, w), vals[0], dtype)
        for _ in range(draw(st.integers(0, 6))):
            y, x = rng.integers(0, h), rng.integers(0, w)
            m[y:y + rng.integers(1, h + 1), x:x + rng.integers(1, w + 1)] = vals[rng.integers(0, k)]
    return np.ascontiguousarray(m, dtype)


def _components_reference(m, conn, background):
    structure = np.ones((3, 3), bool) if conn == 8 else None
    counts = {}
    for v in np.unique(m):
        if background is not None and v == background:
            continue
        counts[int(v)] = ndimage.label(m == v, structure=structure)[1]
    return counts


@settings(max_examples=300, deadline=None)
@given(m=class_masks(), conn=st.sampled_from([4, 8]), labels=st.sampled_from([None, (0, 1, 2, 3)]))
def test_fused_scan_equals_per_pixel_scan_and_scipy(m, conn, labels):
    cfg = RuleConfig(connectivity=conn, ignore_value=255, background=0, island_min_image_pixels=0)
    fused, stats = RS._scan_class_mask(m, labels, cfg, None, True)
    plain, none = RS._scan_class_mask(m, labels, cfg, None, False)
    assert none is None and stats is not None
    assert fused.values.tolist() == plain.values.tolist()
    assert fused.counts.tolist() == plain.counts.tolist()
    assert fused.transitions == plain.transitions
    assert fused.blend_pixels == plain.blend_pixels
    assert fused.blend_bbox == plain.blend_bbox
    # component partition: per value, the number of components scipy finds
    ref = _components_reference(m, conn, 0)
    got = {int(v): int(c) for v, c in enumerate(stats.value_counts) if c}
    assert got == {v: c for v, c in ref.items() if c}
    assert stats.labeled == int((m != 0).sum())


def test_transitions_and_blends_counted_once_per_pair():
    m = np.zeros((3, 16), np.uint8)
    m[1, :] = 1
    m[2, :] = 2
    m[2, 12:] = 0  # row 1 is a 1-px band between 0 above and 2 below (x < 12): 12 vertical blends
    s, _ = RS._scan_class_mask(m, None, RuleConfig(background=None), None, True)
    ref, _ = RS._scan_class_mask(m, None, RuleConfig(background=None), None, False)
    # transitions: 1 horizontal (row 2, x=11|12) + 16 vertical (rows 0|1) + 16 vertical (rows 1|2)
    assert (s.transitions, s.blend_pixels) == (ref.transitions, ref.blend_pixels) == (33, 12)
    assert s.blend_bbox == ref.blend_bbox == (0, 1, 12, 1)


@pytest.mark.parametrize("w", [8, 16, 64, 640, 1032, 2048])
def test_word_path_long_rows(w):
    rng = np.random.default_rng(w)
    m = np.zeros((50, w), np.uint8)
    m[10:30, w // 4: w // 2 + 3] = 3
    m[rng.integers(0, 50, 40), rng.integers(0, w, 40)] = 7
    m[20, :] = 5
    cfg = RuleConfig(connectivity=8, island_min_image_pixels=0)
    fused, stats = RS._scan_class_mask(m, None, cfg, None, True)
    plain, _ = RS._scan_class_mask(m, None, cfg, None, False)
    assert (fused.values.tolist(), fused.counts.tolist(), fused.transitions, fused.blend_pixels) == \
           (plain.values.tolist(), plain.counts.tolist(), plain.transitions, plain.blend_pixels)
    ref = _components_reference(m, 8, 0)
    assert {int(v): int(c) for v, c in enumerate(stats.value_counts) if c} == ref


@settings(max_examples=400, deadline=None)
@given(m=class_masks(), conn=st.sampled_from([4, 8]), labels=st.sampled_from([None, (0, 1, 2, 3), (0, 1, 2, 3, 5, 9)]),
       min_island=st.sampled_from([0, 1, 3, 10]), ignore=st.sampled_from([255, None, 9]),
       background=st.sampled_from([0, 1, None]))
def test_quick_path_equals_the_full_rules(m, conn, labels, min_island, ignore, background):
    """validate's one-call path gives check_class_mask's findings and statistics, or defers to it."""
    cfg = RuleConfig(connectivity=conn, ignore_value=ignore, background=background, min_island=min_island,
                     island_min_image_pixels=0, antialias_min_blends=2, antialias_blend_fraction=0.2)
    q = RS.quick_class_mask(m, labels, cfg)
    findings, stats = RS.check_class_mask(m, labels, cfg)
    rules = {f.rule for f in findings}
    if q is None:
        # deferred: only where this path does not go, or where a rule it leaves to the full path fires
        assert m.dtype != np.uint8 or background is None or rules & {"unexpected_value", "antialias_suspect",
                                                                       "empty_mask"}, rules
        return
    got, values, counts, comps = q
    assert values == stats.values.tolist() and counts == stats.counts.tolist()
    assert comps == stats.components
    assert [f.__dict__ for f in got] == [f.__dict__ for f in findings]
