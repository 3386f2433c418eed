"""Connected-component labeling: fastmask.components and fastmask.kernels.components.

References: scipy.ndimage.label (binary), cc3d.connected_components (multilabel,
numbering and partition), OpenCV (partition), and plain NumPy for statistics.
"""
from __future__ import annotations

import doctest

import cc3d
import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastmask.components as fc
from fastmask.components import (
    component_stats,
    count_small,
    instance_dtype,
    label,
    label_dtype,
    remove_small,
    split_instances,
)
from fastmask.kernels import components as K

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CROSS = ndi.generate_binary_structure(2, 1)
FULL = np.ones((3, 3), bool)


# --------------------------------------------------------------------------- helpers


def structure(connectivity: int) -> np.ndarray:
    return CROSS if connectivity == 4 else FULL


def assert_raster_order(labels: np.ndarray, count: int) -> None:
    """Labels 1..count appear, and their first pixels are in increasing raster order."""
    flat = labels.ravel()
    values, first = np.unique(flat, return_index=True)
    fg = values != 0
    assert values[fg].tolist() == list(range(1, count + 1))
    firsts = first[fg]
    assert np.all(np.diff(firsts) > 0), "labels are not numbered in raster order of first pixel"


def assert_same_partition(a: np.ndarray, b: np.ndarray) -> None:
    """a and b have the same background and a one-to-one correspondence of labels."""
    assert a.shape == b.shape
    np.testing.assert_array_equal(a == 0, b == 0)
    fg = a != 0
    pairs = np.unique(np.stack([a[fg].astype(np.int64), b[fg].astype(np.int64)]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1], "a label of a maps to several labels of b"
    assert len(np.unique(pairs[1])) == pairs.shape[1], "a label of b maps to several labels of a"


def numpy_stats(mask: np.ndarray, labels: np.ndarray, count: int):
    """Value, area, (x, y, w, h) and first pixel per label, computed directly with NumPy."""
    value, area, bbox, first = [], [], [], []
    flat = labels.ravel()
    for lab in range(1, count + 1):
        rows, cols = np.nonzero(labels == lab)
        area.append(rows.size)
        bbox.append((cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1))
        idx = int(np.argmax(flat == lab))
        r, c = divmod(idx, labels.shape[1])
        first.append((r, c))
        value.append(mask[r, c])
    return value, area, bbox, first


@st.composite
def blocky_masks(draw, max_values: int = 3, max_h: int = 40, max_w: int = 40, max_stretch: int = 50):
    """Small random grids stretched horizontally so that runs longer than the 32-px skip block occur."""
    h = draw(st.integers(1, max_h))
    w = draw(st.integers(1, max_w))
    n_values = draw(st.integers(1, max_values))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(seed)
    grid = rng.integers(1, n_values + 1, size=(h, w)) * (rng.random((h, w)) < density)
    stretch = rng.integers(1, max_stretch + 1, size=w)
    return np.repeat(grid, stretch, axis=1).astype(np.uint8)


small_masks = hnp.arrays(
    np.uint8,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
    elements=st.integers(0, 3),
)


# --------------------------------------------------------------------------- seed example


SEED = np.array(
    [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 0, 2, 2],
        [0, 1, 0, 0, 0],
        [0, 1, 0, 0, 0],
    ],
    np.uint8,
)


def test_seed_example_split_instances_4_connectivity_base_10():
    inst, table = split_instances(SEED, connectivity=4, id_scheme=10)
    pixels = {int(i): set(zip(*map(lambda a: a.tolist(), np.nonzero(inst == i)))) for i in np.unique(inst) if i}
    assert pixels == {
        11: {(0, 2), (1, 1), (1, 2), (1, 3)},
        12: {(3, 1), (4, 1)},
        21: {(2, 3), (2, 4)},
    }
    assert inst.dtype == np.uint16
    assert table.records() == [
        {"id": 11, "class_id": 1, "k": 1, "area": 4, "bbox": (1, 0, 3, 2), "first_pixel": (0, 2)},
        {"id": 21, "class_id": 2, "k": 1, "area": 2, "bbox": (3, 2, 2, 1), "first_pixel": (2, 3)},
        {"id": 12, "class_id": 1, "k": 2, "area": 2, "bbox": (1, 3, 1, 2), "first_pixel": (3, 1)},
    ]
    assert table.base == 10 and table.connectivity == 4


def test_seed_example_labels_and_8_connectivity():
    labels, n = label(SEED, connectivity=4)
    assert n == 3
    np.testing.assert_array_equal(
        labels,
        [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 2, 2], [0, 3, 0, 0, 0], [0, 3, 0, 0, 0]],
    )
    # with 8-connectivity the two class-1 parts still do not touch; the class-2 pair touches
    # class 1 at (1, 3)-(2, 3) but has another value, so it stays separate
    labels8, n8 = label(SEED, connectivity=8)
    np.testing.assert_array_equal(labels8, labels)
    assert n8 == 3
    # binary labeling ignores values: classes 1 and 2 merge through that edge
    for connectivity in (4, 8):
        labels_b, n_b = label(SEED, connectivity=connectivity, binary=True)
        assert n_b == 2
        np.testing.assert_array_equal(labels_b, np.where(labels == 2, 1, np.where(labels == 3, 2, labels)))


# --------------------------------------------------------------------------- references


@SETTINGS
@given(mask=small_masks, connectivity=st.sampled_from([4, 8]))
def test_binary_matches_scipy_small(mask, connectivity):
    binary = mask > 0
    ref, ref_n = ndi.label(binary, structure=structure(connectivity))
    for m in (binary, binary.astype(np.uint8)):
        labels, n = label(m, connectivity)
        assert n == ref_n
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(labels, ref)
    # binary=True on the multilabel mask is the same thing
    labels, n = label(mask, connectivity, binary=True)
    np.testing.assert_array_equal(labels, ref)


@SETTINGS
@given(mask=blocky_masks(max_values=1), connectivity=st.sampled_from([4, 8]))
def test_binary_matches_scipy_long_runs(mask, connectivity):
    ref, ref_n = ndi.label(mask, structure=structure(connectivity))
    labels, n = label(mask, connectivity)
    assert n == ref_n
    np.testing.assert_array_equal(labels, ref)


@SETTINGS
@given(mask=small_masks, connectivity=st.sampled_from([4, 8]))
def test_multilabel_matches_cc3d_small(mask, connectivity):
    ref = cc3d.connected_components(mask, connectivity=connectivity)
    labels, n = label(mask, connectivity)
    assert n == int(ref.max())
    assert_same_partition(labels, ref)
    assert_raster_order(labels, n)
    # cc3d numbers C-ordered 2-D input in raster order too, so the arrays are identical
    np.testing.assert_array_equal(labels, ref)


@SETTINGS
@given(mask=blocky_masks(max_values=4), connectivity=st.sampled_from([4, 8]))
def test_multilabel_matches_cc3d_long_runs(mask, connectivity):
    ref = cc3d.connected_components(mask, connectivity=connectivity)
    labels, n = label(mask, connectivity)
    assert n == int(ref.max())
    assert_raster_order(labels, n)
    np.testing.assert_array_equal(labels, ref)


@SETTINGS
@given(mask=blocky_masks(max_values=1, max_h=30, max_w=30, max_stretch=8), connectivity=st.sampled_from([4, 8]))
def test_binary_partition_matches_opencv(mask, connectivity):
    n_cv, ref = cv2.connectedComponents(mask, connectivity=connectivity)
    labels, n = label(mask, connectivity)
    assert n == n_cv - 1
    assert_same_partition(labels, ref)


@SETTINGS
@given(mask=small_masks, connectivity=st.sampled_from([4, 8]))
def test_multilabel_partition_matches_opencv_per_value(mask, connectivity):
    labels, _ = label(mask, connectivity)
    for v in np.unique(mask):
        if v == 0:
            continue
        _, ref = cv2.connectedComponents((mask == v).astype(np.uint8), connectivity=connectivity)
        assert_same_partition(np.where(mask == v, labels, 0), ref)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("density", [0.3, 0.5, 0.6])
def test_large_random_noise_matches_scipy_and_cc3d(connectivity, density):
    rng = np.random.default_rng(int(density * 100) + connectivity)
    binary = rng.random((300, 517)) < density
    ref, ref_n = ndi.label(binary, structure=structure(connectivity))
    labels, n = label(binary, connectivity)
    assert n == ref_n
    np.testing.assert_array_equal(labels, ref)
    multi = (rng.integers(1, 4, binary.shape) * binary).astype(np.uint8)
    labels, n = label(multi, connectivity)
    np.testing.assert_array_equal(labels, cc3d.connected_components(multi, connectivity=connectivity))


@pytest.mark.parametrize("connectivity", [4, 8])
def test_large_smooth_blobs_match_scipy(connectivity):
    rng = np.random.default_rng(7)
    field = ndi.gaussian_filter(rng.random((400, 700)), 6)
    binary = field > np.median(field)
    ref, ref_n = ndi.label(binary, structure=structure(connectivity))
    labels, n = label(binary, connectivity)
    assert n == ref_n > 10
    np.testing.assert_array_equal(labels, ref)
    classes = np.digitize(field, np.quantile(field, [0.2, 0.4, 0.6, 0.8])).astype(np.uint8)
    labels, n = label(classes, connectivity)
    np.testing.assert_array_equal(labels, cc3d.connected_components(classes, connectivity=connectivity))


# --------------------------------------------------------------------------- dtypes, layout, background


@pytest.mark.parametrize(
    "dtype, values",
    [
        (np.uint8, [0, 1, 200, 255]),
        (np.uint16, [0, 1, 300, 65535]),
        (np.int32, [0, -5, 7, 2**31 - 1]),
        (np.int64, [0, -(2**40), 2**40, 2**40 + 1]),
        (np.int8, [0, -128, 1, 127]),
        (np.uint32, [0, 1, 2**32 - 1, 2**31]),
        (np.uint64, [0, 1, 2**64 - 1, 2**63]),
    ],
)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_integer_dtypes_keep_values_distinct(dtype, values, connectivity):
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(values), size=(37, 75))
    idx[:, 10:60] = idx[:, 10:11]  # long runs
    mask = np.array(values, dtype=dtype)[idx]
    ref = cc3d.connected_components(idx.astype(np.uint8), connectivity=connectivity)
    labels, n = label(mask, connectivity)
    np.testing.assert_array_equal(labels, ref)
    stats = component_stats(mask, connectivity)
    assert stats.value.dtype == mask.dtype
    np.testing.assert_array_equal(stats.value, mask.ravel()[[np.argmax(labels.ravel() == i) for i in range(1, n + 1)]])


def test_bool_input_and_bool_stats():
    mask = np.array([[True, False, True], [True, False, False]])
    labels, n = label(mask, 4)
    assert n == 2
    np.testing.assert_array_equal(labels, [[1, 0, 2], [1, 0, 0]])
    stats = component_stats(mask, 4)
    assert stats.value.dtype == np.bool_ and stats.value.tolist() == [True, True]
    # background=True labels the False pixels
    labels, n = label(mask, 4, background=True)
    np.testing.assert_array_equal(labels, [[0, 1, 0], [0, 1, 1]])


def test_big_endian_input_and_bool_background_range():
    mask = np.array([[1, 1, 0], [0, 2, 2]], dtype=">u2")
    labels, n = label(mask, 4)
    assert n == 2 and labels.tolist() == [[1, 1, 0], [0, 2, 2]]
    with pytest.raises(ValueError, match="background=2 is not a boolean value"):
        label(np.zeros((2, 2), bool), background=2)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_non_contiguous_inputs(connectivity):
    rng = np.random.default_rng(11)
    base = rng.integers(0, 3, size=(60, 90)).astype(np.uint16)
    for view in (base[::2, 1::3], base.T, np.asfortranarray(base), base[5:40, ::-1]):
        assert not view.flags.c_contiguous or view is base
        expected = cc3d.connected_components(np.ascontiguousarray(view), connectivity=connectivity)
        labels, _ = label(view, connectivity)
        np.testing.assert_array_equal(labels, expected)


@SETTINGS
@given(mask=small_masks, connectivity=st.sampled_from([4, 8]), bg=st.integers(0, 3))
def test_configurable_background(mask, connectivity, bg):
    # swap values 0 and bg, label with cc3d (background 0), compare
    swapped = mask.copy()
    swapped[mask == bg] = 0
    swapped[mask == 0] = bg
    ref = cc3d.connected_components(swapped, connectivity=connectivity)
    labels, n = label(mask, connectivity, background=bg)
    np.testing.assert_array_equal(labels, ref)
    assert np.all(labels[mask == bg] == 0)


@SETTINGS
@given(mask=small_masks, connectivity=st.sampled_from([4, 8]))
def test_background_none_labels_every_pixel(mask, connectivity):
    labels, n = label(mask, connectivity, background=None)
    assert np.all(labels > 0)
    ref = cc3d.connected_components(mask + np.uint8(1), connectivity=connectivity)
    np.testing.assert_array_equal(labels, ref)


# --------------------------------------------------------------------------- degenerate shapes


@pytest.mark.parametrize("connectivity", [4, 8])
def test_one_by_one(connectivity):
    for v, n_expected in ((0, 0), (1, 1), (9, 1)):
        labels, n = label(np.array([[v]], np.uint8), connectivity)
        assert n == n_expected
        assert labels.tolist() == [[n_expected]]


@pytest.mark.parametrize("connectivity", [4, 8])
def test_single_row_and_single_column(connectivity):
    row = np.array([[1, 1, 0, 2, 2, 1, 0, 0, 3] + [3] * 70 + [0, 1]], np.uint8)
    labels, n = label(row, connectivity)
    assert n == 5
    assert labels.tolist() == [[1, 1, 0, 2, 2, 3, 0, 0] + [4] * 71 + [0, 5]]
    col_labels, col_n = label(row.T, connectivity)
    assert col_n == 5
    np.testing.assert_array_equal(col_labels, labels.T)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_arrays(shape):
    labels, n = label(np.zeros(shape, np.uint8))
    assert n == 0 and labels.shape == shape and labels.dtype == np.int32
    stats = component_stats(np.zeros(shape, np.int64))
    assert stats.count == 0 and stats.bbox.shape == (0, 4) and stats.first_pixel.shape == (0, 2)
    inst, table = split_instances(np.zeros(shape, np.uint8))
    assert inst.shape == shape and len(table) == 0
    cleaned, removed = remove_small(np.zeros(shape, np.uint8), 5)
    assert cleaned.shape == shape and removed == 0


@pytest.mark.parametrize("connectivity", [4, 8])
def test_all_background_and_all_one_value(connectivity):
    zeros = np.zeros((33, 70), np.uint16)
    labels, n = label(zeros, connectivity)
    assert n == 0 and not labels.any()
    full = np.full((33, 70), 4, np.uint16)
    labels, n = label(full, connectivity)
    assert n == 1 and np.all(labels == 1)
    stats = component_stats(full, connectivity)
    assert stats.area.tolist() == [33 * 70]
    assert stats.bbox.tolist() == [[0, 0, 70, 33]]
    assert stats.first_pixel.tolist() == [[0, 0]]
    assert stats.value.tolist() == [4]


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (7, 9), (40, 41)])
def test_checkerboard_differs_between_4_and_8(shape):
    board = (np.indices(shape).sum(axis=0) % 2).astype(np.uint8)
    n_ones = int(board.sum())
    labels4, n4 = label(board, 4)
    assert n4 == n_ones
    np.testing.assert_array_equal(labels4, ndi.label(board, CROSS)[0])
    labels8, n8 = label(board, 8)
    assert n8 == min(1, n_ones)
    np.testing.assert_array_equal(labels8, ndi.label(board, FULL)[0])
    # multilabel checkerboard of two classes: 4 -> every pixel alone, 8 -> two diagonal families
    two = board + 1
    assert label(two, 4)[1] == board.size
    assert label(two, 8)[1] == (2 if board.size > 1 else 1)


def spiral(n: int) -> np.ndarray:
    """A one-pixel-wide square spiral wall on an n x n grid, walked inwards with one-pixel gaps."""
    grid = np.zeros((n, n), np.uint8)
    directions = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    r = c = d = 0
    grid[0, 0] = 1
    failed_turns = 0
    while failed_turns < 2:
        dr, dc = directions[d]
        r1, c1, r2, c2 = r + dr, c + dc, r + 2 * dr, c + 2 * dc
        inside1 = 0 <= r1 < n and 0 <= c1 < n
        blocked2 = 0 <= r2 < n and 0 <= c2 < n and grid[r2, c2]
        if inside1 and not grid[r1, c1] and not blocked2:
            grid[r1, c1] = 1
            r, c = r1, c1
            failed_turns = 0
        else:
            d = (d + 1) % 4
            failed_turns += 1
    return grid


@pytest.mark.parametrize("n", [5, 17, 64, 129])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_spirals(n, connectivity):
    grid = spiral(n)
    assert grid.sum() > n * n // 3
    ref, ref_n = ndi.label(grid, structure=structure(connectivity))
    labels, count = label(grid, connectivity)
    assert count == ref_n == 1
    np.testing.assert_array_equal(labels, ref)
    # the complement (the corridor) is a spiral too, and winds the union-find the other way
    ref, ref_n = ndi.label(1 - grid, structure=structure(connectivity))
    labels, count = label(1 - grid, connectivity)
    assert count == ref_n
    np.testing.assert_array_equal(labels, ref)


@pytest.mark.parametrize("shape", [(1, 1), (3, 70), (70, 3), (64, 130)])
def test_all_distinct_values_every_pixel_is_a_component(shape):
    # the worst case for the run arrays: H * W runs (they start small and must grow)
    mask = np.arange(1, shape[0] * shape[1] + 1, dtype=np.int32).reshape(shape)
    for connectivity in (4, 8):
        labels, n = label(mask, connectivity)
        assert n == mask.size
        np.testing.assert_array_equal(labels, mask)
        stats = component_stats(mask, connectivity)
        assert np.all(stats.area == 1)


def test_u_shapes_merge_late():
    # many U shapes whose arms join only at the bottom row: union-find must merge roots
    mask = np.zeros((20, 120), np.uint8)
    mask[:, ::2] = 1
    mask[-1, :] = 1
    for connectivity in (4, 8):
        labels, n = label(mask, connectivity)
        assert n == 1
        assert np.all(labels[mask == 1] == 1)


# --------------------------------------------------------------------------- statistics


@SETTINGS
@given(mask=st.one_of(small_masks, blocky_masks(max_h=15, max_w=12, max_stretch=10)), connectivity=st.sampled_from([4, 8]))
def test_stats_match_numpy(mask, connectivity):
    stats = component_stats(mask, connectivity)
    labels, n = label(mask, connectivity)
    np.testing.assert_array_equal(stats.labels, labels)
    assert stats.count == n
    assert stats.label.tolist() == list(range(1, n + 1))
    value, area, bbox, first = numpy_stats(mask, labels, n)
    assert stats.value.tolist() == [int(v) for v in value]
    assert stats.area.tolist() == area
    assert [tuple(b) for b in stats.bbox.tolist()] == [tuple(int(x) for x in b) for b in bbox]
    assert [tuple(f) for f in stats.first_pixel.tolist()] == first
    assert stats.area.sum() == np.count_nonzero(mask)
    assert set(stats.as_dict()) == {"label", "value", "area", "bbox", "first_pixel"}


# --------------------------------------------------------------------------- dtype growth


def test_label_dtype_thresholds():
    assert label_dtype(0) == np.int32
    assert label_dtype(2**31 - 1) == np.int32
    assert label_dtype(2**31) == np.int64
    assert label_dtype(10**12) == np.int64
    with pytest.raises(ValueError):
        label_dtype(-1)


def test_instance_dtype_thresholds():
    assert instance_dtype(0) == np.uint16
    assert instance_dtype(65535) == np.uint16
    assert instance_dtype(65536) == np.int32
    assert instance_dtype(2**31 - 1) == np.int32
    assert instance_dtype(2**31) == np.int64
    with pytest.raises(ValueError, match="int64"):
        instance_dtype(2**63)
    with pytest.raises(ValueError):
        instance_dtype(-1)


def test_label_uses_label_dtype_and_int64_path_is_exact(monkeypatch):
    rng = np.random.default_rng(5)
    mask = (rng.random((50, 80)) < 0.5).astype(np.uint8)
    expected, n = label(mask, 8)
    seen = []

    def fake(n_pixels):
        seen.append(n_pixels)
        return np.dtype(np.int64)

    monkeypatch.setattr(fc, "label_dtype", fake)
    labels, n64 = label(mask, 8)
    assert seen == [mask.size]
    assert labels.dtype == np.int64 and n64 == n
    np.testing.assert_array_equal(labels, expected)
    stats = component_stats(mask, 8)
    assert stats.labels.dtype == np.int64 and stats.count == n


def test_kernel_refuses_an_index_dtype_too_small_for_the_image():
    # the output dtype is also the run-index dtype: an image with more pixels than
    # int16 can count is refused with a status instead of overflowing silently
    board = (np.indices((200, 200)).sum(axis=0) % 2).astype(np.uint8)
    out = np.zeros(board.shape, np.int16)
    status, count = K.label_2d(board, 4, True, np.uint8(0), out)
    assert status == K.ERR_LABEL_OVERFLOW
    small = board[:100, :100]
    out = np.zeros(small.shape, np.int16)
    status, count = K.label_2d(np.ascontiguousarray(small), 4, True, np.uint8(0), out)
    assert status == K.OK and count == 5000
    np.testing.assert_array_equal(out, ndi.label(small, CROSS)[0])


def test_kernel_status_codes():
    img = np.zeros((3, 3), np.uint8)
    assert K.label_2d(img, 6, True, np.uint8(0), np.zeros((3, 3), np.int32))[0] == K.ERR_CONNECTIVITY
    assert K.label_2d(img, 4, True, np.uint8(0), np.zeros((3, 4), np.int32))[0] == K.ERR_SHAPE
    status, count, *_ = K.label_stats_2d(img, 5, True, np.uint8(0), np.zeros((3, 3), np.int32))
    assert status == K.ERR_CONNECTIVITY and count == 0


@SETTINGS
@given(mask=st.one_of(small_masks, blocky_masks(max_h=12, max_w=10, max_stretch=12)), connectivity=st.sampled_from([4, 8]))
def test_run_kernels_agree_with_label_image(mask, connectivity):
    labels, n = label(mask, connectivity)
    idx_like = np.empty(0, np.int32)
    status, count, rs, re, rv, lab, row_ptr = K.runs_2d(mask, connectivity, True, np.uint8(0), idx_like)
    assert status == K.OK and count == n
    # runs tile the non-background pixels exactly once, with the right value and label
    painted = np.full(mask.shape, -1, np.int64)
    for r in range(mask.shape[0]):
        for k in range(row_ptr[r], row_ptr[r + 1]):
            assert np.all(painted[r, rs[k]:re[k]] == -1)
            painted[r, rs[k]:re[k]] = lab[k]
            assert np.all(mask[r, rs[k]:re[k]] == rv[k])
    np.testing.assert_array_equal(np.where(painted < 0, 0, painted), labels)
    # paint_lut with a permuting table
    lut = np.r_[0, np.arange(n, 0, -1) + 100].astype(np.int64)
    out = np.empty(mask.shape, np.int64)
    assert K.paint_lut(rs, re, lab, row_ptr, lut, out) == K.OK
    np.testing.assert_array_equal(out, lut[labels])
    # fill_runs touches exactly the selected components
    selected = np.zeros(n + 1, np.bool_)
    selected[1::2] = True
    filled = mask.copy()
    assert K.fill_runs(rs, re, lab, row_ptr, selected, np.uint8(9), filled) == K.OK
    np.testing.assert_array_equal(filled, np.where(selected[labels], 9, mask))


def test_run_kernels_refuse_mismatched_shapes():
    mask = np.ones((3, 4), np.uint8)
    status, count, rs, re, rv, lab, row_ptr = K.runs_2d(mask, 8, True, np.uint8(0), np.empty(0, np.int32))
    lut = np.zeros(count + 1, np.int32)
    assert K.paint_lut(rs, re, lab, row_ptr, lut, np.zeros((4, 4), np.int32)) == K.ERR_SHAPE
    sel = np.zeros(count + 1, np.bool_)
    assert K.fill_runs(rs, re, lab, row_ptr, sel, np.uint8(0), np.zeros((2, 4), np.uint8)) == K.ERR_SHAPE
    status, count, value, area, box, first = K.label_stats_2d(mask, 8, True, np.uint8(0), np.zeros((3, 5), np.int32))
    assert status == K.ERR_SHAPE and count == 0 and value.shape == (0,) and box.shape == (0, 4)
    assert K.runs_2d(mask, 5, True, np.uint8(0), np.empty(0, np.int32))[0] == K.ERR_CONNECTIVITY


# --------------------------------------------------------------------------- split_instances


@SETTINGS
@given(mask=st.one_of(small_masks, blocky_masks(max_h=20, max_w=8, max_stretch=6)), connectivity=st.sampled_from([4, 8]),
       base=st.sampled_from([256, 1000]))
def test_split_instances_properties(mask, connectivity, base):
    labels, n = label(mask, connectivity)
    stats = component_stats(mask, connectivity)
    per_class = np.bincount(stats.value.astype(np.int64), minlength=4)
    if per_class.max() >= base:
        with pytest.raises(ValueError, match=f"has {per_class.max()} components"):
            split_instances(mask, connectivity, id_scheme=base)
        return
    inst, table = split_instances(mask, connectivity, id_scheme=base)
    assert len(table) == n
    np.testing.assert_array_equal(inst == 0, mask == 0)
    # each instance is exactly one component of one class
    assert_same_partition(inst, labels)
    np.testing.assert_array_equal(inst // base, np.where(inst > 0, mask, 0))
    # k runs 1..n_c per class in raster order of first pixel
    flat = inst.ravel()
    for cls in np.unique(mask[mask > 0]):
        ids = table.id[table.class_id == cls]
        firsts = [int(np.argmax(flat == i)) for i in ids]
        assert firsts == sorted(firsts)
        assert (ids % base).tolist() == list(range(1, len(ids) + 1))
        assert table.k[table.class_id == cls].tolist() == list(range(1, len(ids) + 1))
    np.testing.assert_array_equal(table.id, table.class_id * base + table.k)
    for i, a in zip(table.id, table.area):
        assert a == np.count_nonzero(inst == i)
    assert inst.dtype == instance_dtype(int(table.id.max()) if len(table) else 0)


def test_split_instances_dtype_grows():
    mask = np.array([[70, 0, 70], [0, 0, 0]], np.uint8)
    inst, table = split_instances(mask, 4, id_scheme=1000)
    assert inst.dtype == np.int32
    assert inst.tolist() == [[70001, 0, 70002], [0, 0, 0]]
    inst, table = split_instances(mask, 4, id_scheme=256)
    assert inst.dtype == np.uint16 and inst[0, 2] == 70 * 256 + 2
    big = np.array([[3_000_000, 0, 3_000_000]], np.int64)
    inst, table = split_instances(big, 4, id_scheme=1000)
    assert inst.dtype == np.int64 and inst.tolist() == [[3_000_000_001, 0, 3_000_000_002]]


def test_split_instances_raises_when_k_reaches_base():
    mask = np.zeros((3, 40), np.uint8)
    mask[1, ::2] = 4  # 20 isolated pixels of class 4
    inst, table = split_instances(mask, 8, id_scheme=256)
    assert table.k.max() == 20
    with pytest.raises(ValueError, match=r"class 4 has 20 components.*base 10"):
        split_instances(mask, 8, id_scheme=10)
    mask[1, :] = 0
    mask[1, :18:2] = 4  # 9 components: the largest k that base 10 allows
    inst, table = split_instances(mask, 8, id_scheme=10)
    assert table.id.tolist() == list(range(41, 50))


def test_split_instances_ignore_value_and_background():
    mask = np.array(
        [
            [255, 255, 1, 1],
            [0, 0, 255, 1],
            [2, 255, 255, 0],
        ],
        np.uint8,
    )
    inst, table = split_instances(mask, 4, id_scheme=1000, ignore_value=255)
    assert inst.tolist() == [[0, 0, 1001, 1001], [0, 0, 0, 1001], [2001, 0, 0, 0]]
    assert table.class_id.tolist() == [1, 2]
    # without ignore_value, 255 is an ordinary class (two components)
    inst, table = split_instances(mask, 4, id_scheme=1000)
    assert sorted(table.id.tolist()) == [1001, 2001, 255001, 255002]
    # background 255: class 0 pixels become instances 1..k
    inst, table = split_instances(mask, 4, id_scheme=1000, background=255)
    assert table.id.tolist() == [1001, 1, 2001, 2]
    assert inst[1, 0] == 1 and inst[2, 3] == 2 and inst[0, 0] == 0


def test_split_instances_rejects_negative_classes_and_bad_schemes():
    with pytest.raises(ValueError, match="class values must be >= 0"):
        split_instances(np.array([[-1, 0]], np.int16))
    with pytest.raises(ValueError, match="id_scheme"):
        split_instances(SEED, id_scheme=1)
    with pytest.raises(TypeError, match="id_scheme"):
        split_instances(SEED, id_scheme=10.0)
    with pytest.raises(TypeError, match="ignore_value"):
        split_instances(SEED, ignore_value="255")


# --------------------------------------------------------------------------- small components


@SETTINGS
@given(mask=st.one_of(small_masks, blocky_masks(max_h=15, max_w=10, max_stretch=5)), connectivity=st.sampled_from([4, 8]),
       min_area=st.integers(0, 12))
def test_remove_small_properties(mask, connectivity, min_area):
    before = mask.copy()
    cleaned, removed = remove_small(mask, min_area, connectivity)
    np.testing.assert_array_equal(mask, before)  # input untouched
    assert cleaned.dtype == mask.dtype
    labels, n = label(mask, connectivity)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    small = np.flatnonzero(areas[1:] < min_area) + 1
    expected = mask.copy()
    expected[np.isin(labels, small)] = 0
    np.testing.assert_array_equal(cleaned, expected)
    assert removed == small.size
    assert count_small(mask, min_area, connectivity) == small.size
    # filling with background leaves the surviving components unchanged: none is small
    assert count_small(cleaned, min_area, connectivity) == 0
    assert label(cleaned, connectivity)[1] == n - small.size


def test_remove_small_fill_and_background():
    mask = np.array([[1, 1, 1, 0, 2], [0, 0, 0, 0, 0], [3, 3, 0, 0, 5]], np.uint8)
    cleaned, removed = remove_small(mask, 2, 4, fill=9)
    assert removed == 2
    assert cleaned.tolist() == [[1, 1, 1, 0, 9], [0, 0, 0, 0, 0], [3, 3, 0, 0, 9]]
    # background=None: background-valued regions count as components too
    cleaned, removed = remove_small(mask, 3, 4, background=None, fill=7)
    assert removed == 3  # {2}, {5}, {3,3}
    assert cleaned.tolist() == [[1, 1, 1, 0, 7], [0, 0, 0, 0, 0], [7, 7, 0, 0, 7]]
    with pytest.raises(ValueError, match="fill"):
        remove_small(mask, 3, background=None)
    with pytest.raises(ValueError, match="fill=300"):
        remove_small(mask, 3, fill=300)
    booleans = np.array([[True, False, True, True]])
    cleaned, removed = remove_small(booleans, 2, 4)
    assert removed == 1 and cleaned.dtype == np.bool_ and cleaned.tolist() == [[False, False, True, True]]
    assert count_small(booleans, 3, 4) == 2
    assert count_small(booleans, 0, 4) == 0


# --------------------------------------------------------------------------- validation


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="2-D"):
        label(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        label(np.zeros(5, np.uint8))
    with pytest.raises(TypeError, match="integer or boolean.*float64"):
        label(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="connectivity must be 4 or 8, got 6"):
        label(SEED, connectivity=6)
    with pytest.raises(TypeError, match="connectivity"):
        label(SEED, connectivity="8")
    with pytest.raises(TypeError, match="connectivity"):
        label(SEED, connectivity=True)
    with pytest.raises(ValueError, match="background=-1 is outside the range of the mask dtype uint8"):
        label(SEED, background=-1)
    with pytest.raises(TypeError, match="background"):
        label(SEED, background=0.5)
    with pytest.raises(ValueError, match="min_area"):
        remove_small(SEED, -1)
    with pytest.raises(TypeError, match="min_area"):
        count_small(SEED, 2.5)
    with pytest.raises(ValueError, match="connectivity"):
        split_instances(SEED, connectivity=6)


def test_label_out_parameter():
    rng = np.random.default_rng(9)
    mask = rng.integers(0, 3, size=(40, 90)).astype(np.uint8)
    expected, n = label(mask, 4)
    for dtype in (np.int32, np.int64):
        buf = np.full(mask.shape, 77, dtype)
        labels, count = label(mask, 4, out=buf)
        assert labels is buf and count == n
        np.testing.assert_array_equal(buf, expected)
    with pytest.raises(ValueError, match="shape"):
        label(mask, out=np.empty((40, 91), np.int32))
    with pytest.raises(TypeError, match="dtype"):
        label(mask, out=np.empty(mask.shape, np.int16))
    with pytest.raises(ValueError, match="C-contiguous"):
        label(mask, out=np.empty((90, 40), np.int32).T)
    with pytest.raises(TypeError, match="numpy array"):
        label(mask, out=[[0]])


def test_docstring_examples():
    result = doctest.testmod(fc, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 6
    assert result.failed == 0
