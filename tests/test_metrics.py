"""Tests of fastmask.metrics (confusion matrix, scores, accumulators, panoptic quality)."""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmask import metrics as M
from fastmask.kernels import confusion as K

DATA = Path(os.environ.get("FASTMASK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
PQ_REF = DATA / "_reference" / "panoptic_pq"


def hsettings(max_examples: int = 100) -> settings:
    """Per-test settings (no global profile change): Numba compiles on first call, so no
    deadline."""
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def reference_cm(gt, pred, nc, ignore):
    g = np.asarray(gt).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    keep = np.ones(g.shape, bool) if ignore is None else g != ignore
    g, p = g[keep], p[keep]
    assert g.size == 0 or (g.max() < nc and p.max() < nc), "reference only for in-range data"
    return np.bincount(nc * g + p, minlength=nc * nc).reshape(nc, nc)


@st.composite
def label_pairs(draw, max_value=None, dtype=None, allow_out_of_range=False):
    """(gt, pred, num_classes, ignore) with long runs (both constant) mixed with noise,
    so that the word-at-a-time and byte-by-byte paths of the kernel are both exercised."""
    dtype = draw(st.sampled_from([np.uint8, np.uint16])) if dtype is None else dtype
    cap = 255 if dtype == np.uint8 else 300
    nc = draw(st.integers(1, cap if max_value is None else max_value))
    ignore = draw(st.sampled_from([255, None, 0, nc - 1 if nc > 1 else 0]))
    hi = nc - 1 if not allow_out_of_range else min(np.iinfo(dtype).max, nc + 20)
    values = pred_values = st.integers(0, hi)
    if ignore is not None and ignore <= np.iinfo(dtype).max:
        values = st.one_of(values, st.just(ignore))
        if allow_out_of_range:
            pred_values = values
    runs = draw(st.lists(st.tuples(values, pred_values, st.integers(1, 70)), min_size=1, max_size=12))
    gt = np.concatenate([np.full(n, g, dtype) for g, _, n in runs])
    pred = np.concatenate([np.full(n, p, dtype) for _, p, n in runs])
    noise = draw(st.integers(0, 3))
    if noise:  # sprinkle some single-pixel changes
        idx = draw(st.lists(st.integers(0, gt.size - 1), max_size=noise * 5))
        for i in idx:
            pred[i] = draw(pred_values)
    offset = draw(st.integers(0, min(7, gt.size - 1)))  # unaligned starts for the 64-bit view
    gt, pred = gt[offset:], pred[offset:]
    n = gt.size
    shape = draw(st.sampled_from(["row", "col", "2d"]))
    if shape == "row":
        gt, pred = gt.reshape(1, n), pred.reshape(1, n)
    elif shape == "col":
        gt, pred = gt.reshape(n, 1), pred.reshape(n, 1)
    else:
        w = draw(st.integers(1, n))
        h = n // w
        gt, pred = gt[: h * w].reshape(h, w), pred[: h * w].reshape(h, w)
    return gt, pred, nc, ignore


# --------------------------------------------------------------------------------------
# confusion matrix
# --------------------------------------------------------------------------------------


@given(label_pairs())
@hsettings(300)
def test_confusion_matrix_matches_bincount(case):
    gt, pred, nc, ignore = case
    cm = M.confusion_matrix(gt, pred, nc, ignore, out_of_range="error")
    assert cm.dtype == np.int64 and cm.shape == (nc, nc)
    np.testing.assert_array_equal(cm, reference_cm(gt, pred, nc, ignore))


@given(label_pairs(dtype=np.uint8))
@hsettings(100)
def test_uint8_kernel_paths_agree(case):
    gt, pred, nc, ignore = case
    ref = reference_cm(gt, pred, nc, ignore)
    np.testing.assert_array_equal(M.confusion_matrix(gt, pred, nc, ignore, parallel=True).matrix, ref)
    # the generic (any-dtype) kernel on the same data
    np.testing.assert_array_equal(M.confusion_matrix(gt.astype(np.int32), pred.astype(np.int16), nc, ignore).matrix, ref)


def test_confusion_matrix_1x1_and_all_ignore():
    one = np.array([[3]], np.uint8)
    cm = M.confusion_matrix(one, one, 4, out_of_range="error")
    assert cm.sum() == 1 and cm[3, 3] == 1
    ig = np.full((7, 9), 255, np.uint8)
    pred = np.zeros((7, 9), np.uint8)
    res = M.confusion_matrix(ig, pred, 19)
    assert res.matrix.sum() == 0 and res.ignored == 63 and res.out_of_range == 0
    assert M.confusion_matrix(ig.astype(np.uint16), pred.astype(np.uint16), 19).matrix.sum() == 0


def test_confusion_matrix_large_real_like_map():
    rng = np.random.default_rng(0)
    low = rng.integers(0, 19, (16, 32)).astype(np.uint8)
    gt = np.kron(low, np.ones((64, 64), np.uint8))
    pred = np.roll(gt, 3, axis=1)
    gt[rng.random(gt.shape) < 0.01] = 255
    for g, p in ((gt, pred), (gt.astype(np.uint16), pred.astype(np.uint16))):
        np.testing.assert_array_equal(M.confusion_matrix(g, p, 19).matrix, reference_cm(g, p, 19, 255))
    np.testing.assert_array_equal(M.confusion_matrix(gt, pred, 19, parallel=True).matrix, reference_cm(gt, pred, 19, 255))
    # non-contiguous inputs
    np.testing.assert_array_equal(M.confusion_matrix(gt.T, pred.T, 19).matrix, reference_cm(gt, pred, 19, 255))


def test_bool_masks_are_accepted():
    gt = np.array([[True, False], [True, True]])
    pred = np.array([[True, True], [False, True]])
    np.testing.assert_array_equal(M.confusion_matrix(gt, pred, 2, None).matrix, [[0, 1], [1, 2]])


@given(label_pairs(allow_out_of_range=True))
@hsettings(200)
def test_out_of_range_counted_never_dropped(case):
    gt, pred, nc, ignore = case
    res = M.confusion_matrix(gt, pred, nc, ignore, out_of_range="ignore")
    g = gt.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    keep = np.ones(g.shape, bool) if ignore is None else g != ignore
    inside = keep & (g < nc) & (p < nc)
    assert res.ignored == int((~keep).sum())
    assert res.out_of_range == int((keep & ~inside).sum())
    assert res.matrix.sum() + res.ignored + res.out_of_range == gt.size
    np.testing.assert_array_equal(res.matrix, np.bincount(nc * g[inside] + p[inside], minlength=nc * nc).reshape(nc, nc))
    bad_g = g[keep & (g >= nc)]
    bad_p = p[keep & (p >= nc)]
    assert res.gt_out_of_range == {int(v): int((bad_g == v).sum()) for v in np.unique(bad_g)}
    assert res.pred_out_of_range == {int(v): int((bad_p == v).sum()) for v in np.unique(bad_p)}
    if res.out_of_range:
        with pytest.raises(ValueError, match=rf"{res.out_of_range} pixels have class ids outside"):
            M.confusion_matrix(gt, pred, nc, ignore, out_of_range="error")
    else:
        np.testing.assert_array_equal(M.confusion_matrix(gt, pred, nc, ignore, out_of_range="error"), res.matrix)
    # per ground-truth class, the out-of-range predictions (the FN of the "fn" policy)
    on_class = keep & (g < nc) & (p >= nc)
    np.testing.assert_array_equal(res.pred_out_of_range_per_class, np.bincount(g[on_class], minlength=nc))


def test_out_of_range_error_message_names_values_and_counts():
    gt = np.array([[0, 1, 20, 20, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 0, 77]], np.uint8)
    with pytest.raises(ValueError) as exc:
        M.confusion_matrix(gt, pred, 19, out_of_range="error")
    msg = str(exc.value)
    assert "2 pixels" in msg and "{20: 2}" in msg and "77" not in msg  # 77 sits on an ignored pixel
    pred[0, 0] = 19
    with pytest.raises(ValueError) as exc:
        M.confusion_matrix(gt.astype(np.uint16), pred.astype(np.uint16), 19, out_of_range="error")
    msg = str(exc.value)
    assert "3 pixels" in msg and "{20: 2}" in msg and "{19: 1}" in msg


def test_input_errors():
    a = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        M.confusion_matrix(a, np.zeros((3, 2), np.uint8), 2)
    with pytest.raises(TypeError, match="integer"):
        M.confusion_matrix(a.astype(np.float32), a, 2)
    with pytest.raises(TypeError, match="integer"):
        M.confusion_matrix(a, a.astype(np.float64), 2)
    neg = np.array([[0, -3, 1]], np.int16)
    with pytest.raises(ValueError, match=r"negative values \{-3: 1\}"):
        M.confusion_matrix(np.zeros((1, 3), np.int16), neg, 2)
    with pytest.raises(ValueError, match="negative"):  # negatives are errors even when counting
        M.confusion_matrix(neg, np.zeros((1, 3), np.int16), 2, out_of_range="ignore")
    # a negative ignore value is fine in signed maps
    np.testing.assert_array_equal(M.confusion_matrix(np.array([[-1, 1]]), np.array([[0, 1]]), 2, -1).matrix, [[0, 0], [0, 1]])
    with pytest.raises(ValueError, match="num_classes"):
        M.confusion_matrix(a, a, 0)
    with pytest.raises(TypeError):
        M.confusion_matrix(a, a, 2.0)
    with pytest.raises(ValueError, match="out_of_range"):
        M.confusion_matrix(a, a, 2, out_of_range="drop")


def test_kernel_counts_add_up():
    rng = np.random.default_rng(3)
    g = rng.integers(0, 256, 1000).astype(np.uint8)
    p = rng.integers(0, 256, 1000).astype(np.uint8)
    cm, g_out, p_out, counts, by_class = K.confusion_u8(g, p, 100, 255, True)
    assert cm.sum() + counts[K.IGNORED] + counts[K.EXCLUDED] == 1000
    assert g_out.sum() == counts[K.GT_OUT] and p_out.sum() == counts[K.PRED_OUT]
    on_class = (g < 100) & (p >= 100)
    np.testing.assert_array_equal(by_class, np.bincount(g[on_class], minlength=100))
    cm2, counts2, by_class2 = K.confusion_generic(g, p, 100, 255, True)
    np.testing.assert_array_equal(cm, cm2)
    np.testing.assert_array_equal(counts, counts2)
    np.testing.assert_array_equal(by_class, by_class2)


# --------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------


@st.composite
def matrices(draw):
    n = draw(st.integers(1, 8))
    flat = draw(st.lists(st.integers(0, 50) | st.just(0), min_size=n * n, max_size=n * n))
    return np.array(flat, np.int64).reshape(n, n)


@given(matrices(), st.sampled_from(["nan", "one", "zero"]))
@hsettings(200)
def test_scores_match_direct_formulas(cm, policy):
    tp = np.diag(cm).astype(float)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    empty = tp + fp + fn == 0
    fill = {"nan": np.nan, "one": 1.0, "zero": 0.0}[policy]
    with np.errstate(invalid="ignore", divide="ignore"):
        exp_iou = np.where(empty, fill, tp / (tp + fp + fn))
        exp_dice = np.where(empty, fill, 2 * tp / (2 * tp + fp + fn))
        exp_prec = np.where(empty, fill, tp / (tp + fp))
        exp_rec = np.where(empty, fill, tp / (tp + fn))
    np.testing.assert_allclose(M.iou(cm, policy), exp_iou, rtol=1e-15)
    np.testing.assert_allclose(M.dice(cm, policy), exp_dice, rtol=1e-15)
    np.testing.assert_allclose(M.precision(cm, policy), exp_prec, rtol=1e-15)
    np.testing.assert_allclose(M.recall(cm, policy), exp_rec, rtol=1e-15)
    np.testing.assert_allclose(M.class_accuracy(cm, policy), exp_rec, rtol=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN
        exp_miou = np.nanmean(exp_iou)
    got = M.miou(cm, policy)
    assert (math.isnan(got) and math.isnan(exp_miou)) or got == pytest.approx(exp_miou, rel=1e-14)
    total = cm.sum()
    exp_acc = np.trace(cm) / total if total else math.nan
    got_acc = M.pixel_accuracy(cm)
    assert (math.isnan(got_acc) and math.isnan(exp_acc)) or got_acc == pytest.approx(exp_acc, rel=1e-15)


def test_empty_policy():
    cm = np.array([[4, 0, 0], [0, 0, 0], [1, 0, 3]])  # class 1 absent from gt and pred
    assert math.isnan(M.iou(cm)[1]) and math.isnan(M.dice(cm)[1])
    assert M.iou(cm, "one")[1] == 1.0 and M.iou(cm, "zero")[1] == 0.0
    assert M.dice(cm, "one")[1] == 1.0 and M.dice(cm, "zero")[1] == 0.0
    assert M.miou(cm) == pytest.approx((0.8 + 0.75) / 2)
    assert M.miou(cm, "one") == pytest.approx((0.8 + 1 + 0.75) / 3)
    assert M.miou(cm, "zero") == pytest.approx((0.8 + 0 + 0.75) / 3)
    assert M.mdice(cm) == pytest.approx((8 / 9 + 6 / 7) / 2)
    # a class present in gt only is 0, not "empty"
    cm2 = np.array([[2, 0], [3, 0]])
    assert M.iou(cm2, "one")[1] == 0.0
    # precision of a never-predicted class present in gt is 0/0 -> NaN whatever the policy
    assert math.isnan(M.precision(cm2, "one")[1]) and M.recall(cm2, "one")[1] == 0.0
    # all-empty matrix: NaN mean without warnings
    assert math.isnan(M.miou(np.zeros((3, 3), np.int64)))
    assert math.isnan(M.pixel_accuracy(np.zeros((3, 3), np.int64)))
    with pytest.raises(ValueError, match="empty_policy"):
        M.iou(cm, "skip")
    with pytest.raises(ValueError, match="square"):
        M.iou(np.zeros((2, 3)))


def test_seed_example_leaf_dice():
    gt = np.array([[0, 0, 1, 0, 0],
                   [0, 1, 1, 1, 0],
                   [0, 0, 0, 2, 2],
                   [0, 1, 0, 0, 0],
                   [0, 1, 0, 0, 0]], np.uint8)
    pred = np.where(gt == 1, 0, gt).astype(np.uint8)
    for y, x in [(0, 2), (1, 1), (1, 2), (1, 3), (3, 1)]:
        pred[y, x] = 1
    cm = M.confusion_matrix(gt, pred, 3)
    assert M.dice(cm)[1] == pytest.approx(10 / 11, rel=1e-15)
    assert M.iou(cm)[1] == pytest.approx(5 / 6, rel=1e-15)
    assert M.dice(cm)[2] == 1.0


def test_seed_example_shifted_squares():
    gt = np.zeros((8, 8), np.uint8)
    pred = np.zeros((8, 8), np.uint8)
    gt[1:5, 1:5] = 1
    pred[2:6, 2:6] = 1
    assert gt.sum() == 16 and pred.sum() == 16 and (gt & pred).sum() == 9
    cm = M.confusion_matrix(gt, pred, 2)
    assert M.iou(cm)[1] == pytest.approx(9 / 23, rel=1e-15)
    assert M.dice(cm)[1] == 0.5625


# --------------------------------------------------------------------------------------
# accumulator
# --------------------------------------------------------------------------------------


@st.composite
def image_lists(draw):
    nc = draw(st.integers(1, 6))
    n_images = draw(st.integers(1, 6))
    images = []
    for _ in range(n_images):
        h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        vals = st.integers(0, nc - 1) | st.just(255)
        gt = np.array(draw(st.lists(vals, min_size=h * w, max_size=h * w)), np.uint8).reshape(h, w)
        pred = np.array(draw(st.lists(st.integers(0, nc - 1), min_size=h * w, max_size=h * w)), np.uint8).reshape(h, w)
        images.append((gt, pred))
    cuts = sorted(draw(st.lists(st.integers(0, n_images), max_size=4)))
    return nc, images, cuts


def _assert_same_scores(a: M.SegmentationScores, b: M.SegmentationScores):
    np.testing.assert_array_equal(a.matrix, b.matrix)
    for name in ("iou", "dice", "precision", "recall", "image_iou", "image_dice", "image_miou", "image_mdice"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("miou", "mdice", "macc", "pixel_accuracy", "image_averaged_miou", "image_averaged_mdice"):
        x, y = getattr(a, name), getattr(b, name)
        assert (math.isnan(x) and math.isnan(y)) or x == y, name
    assert a.keys == b.keys


@given(image_lists())
@hsettings(150)
def test_accumulator_merge_equals_single_pass(case):
    nc, images, cuts = case
    whole = M.ConfusionAccumulator(nc)
    for i, (g, p) in enumerate(images):
        whole.add(g, p, key=i)
    bounds = [0, *cuts, len(images)]
    shards = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc = M.ConfusionAccumulator(nc)
        for i in range(a, b):
            acc.add(*images[i], key=i)
        shards.append(acc)
    left = shards[0]
    for s in shards[1:]:
        left = left.merge(s)
    right = shards[-1]
    for s in reversed(shards[:-1]):
        right = s.merge(right)
    for merged in (left, right):
        assert merged.n_images == len(images)
        _assert_same_scores(merged.scores(), whole.scores())
    # dataset scores come from summed counts
    total = sum(M.confusion_matrix(g, p, nc) for g, p in images)
    np.testing.assert_array_equal(whole.matrix, total.matrix)
    np.testing.assert_array_equal(whole.scores().iou, M.iou(total))
    # per-image scores are each image's own
    for i, (g, p) in enumerate(images):
        np.testing.assert_array_equal(whole.scores().image_iou[i], M.iou(M.confusion_matrix(g, p, nc)))


def test_accumulator_dataset_vs_image_average_differ():
    acc = M.ConfusionAccumulator(2)
    big_gt = np.ones((10, 10), np.uint8)
    big_pred = np.ones((10, 10), np.uint8)
    acc.add(big_gt, big_pred, key="big")  # class 1 perfect, class 0 absent (NaN)
    acc.add(np.array([[1, 0]], np.uint8), np.array([[0, 0]], np.uint8), key="small")
    s = acc.scores()
    # dataset: class 0 tp=1 fp=1 fn=0 -> 1/2; class 1 tp=100 fn=1 -> 100/101
    np.testing.assert_allclose(s.iou, [0.5, 100 / 101])
    assert s.miou == pytest.approx((0.5 + 100 / 101) / 2)
    # per image: big -> [nan, 1] (mIoU 1), small -> [1/2, 0] (mIoU 1/4)
    np.testing.assert_allclose(s.image_iou, [[np.nan, 1.0], [0.5, 0.0]])
    np.testing.assert_allclose(s.image_miou, [1.0, 0.25])
    assert s.image_averaged_miou == pytest.approx(0.625)
    assert s.keys == ["big", "small"]
    assert s.pixel_accuracy == pytest.approx(101 / 102)


def test_accumulator_out_of_range_and_settings():
    acc = M.ConfusionAccumulator(3, out_of_range="ignore")
    acc.add(np.array([[0, 5, 255]], np.uint8), np.array([[7, 1, 9]], np.uint8))
    acc.add(np.array([[5, 1]], np.uint16), np.array([[1, 1]], np.uint16))
    assert acc.out_of_range_pixels == 3 and acc.ignored_pixels == 1
    assert acc.gt_out_of_range == {5: 2} and acc.pred_out_of_range == {7: 1}
    assert acc.matrix.sum() == 1
    strict = M.ConfusionAccumulator(3, out_of_range="error")
    with pytest.raises(ValueError, match="outside"):
        strict.add(np.array([[0, 5]], np.uint8), np.array([[0, 1]], np.uint8))
    assert strict.n_images == 0 and strict.matrix.sum() == 0  # a failed add leaves no trace
    with pytest.raises(ValueError, match="different settings"):
        acc.merge(strict)
    with pytest.raises(ValueError, match="different settings"):
        M.ConfusionAccumulator(3).merge(M.ConfusionAccumulator(4))


# --------------------------------------------------------------------------------------
# panoptic quality
# --------------------------------------------------------------------------------------


def _read_ids(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _find_gt_png(name: str) -> Path:
    hits = list((DATA / "panopticapi").rglob(name))
    hits = [h for h in hits if "2ch" not in str(h)]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.mark.skipif(not PQ_REF.is_dir(), reason="shared panoptic reference data not present")
def test_panoptic_quality_equals_panopticapi():
    gt_json = json.loads((PQ_REF / "gt.json").read_text())
    pred_json = json.loads((PQ_REF / "pred.json").read_text())
    expected = json.loads((PQ_REF / "expected_pq.json").read_text())
    preds = {a["image_id"]: a for a in pred_json["annotations"]}
    acc = M.PanopticAccumulator(gt_json["categories"])
    shards = []
    for gt_ann in gt_json["annotations"]:
        pred_ann = preds[gt_ann["image_id"]]
        args = (_read_ids(_find_gt_png(gt_ann["file_name"])), gt_ann["segments_info"],
                _read_ids(PQ_REF / "pred" / pred_ann["file_name"]), pred_ann["segments_info"])
        acc.add(*args)
        shard = M.PanopticAccumulator(gt_json["categories"])
        shard.add(*args)
        shards.append(shard)
    assert acc.n_images == 2
    got = acc.result().to_panopticapi()
    for group in ("All", "Things", "Stuff"):
        assert got[group]["n"] == expected[group]["n"], group
        for k in ("pq", "sq", "rq"):
            assert got[group][k] == pytest.approx(expected[group][k], abs=1e-9), (group, k)
    assert {str(c) for c in got["per_class"]} == set(expected["per_class"])
    for cid, exp in expected["per_class"].items():
        for k in ("pq", "sq", "rq"):
            assert got["per_class"][int(cid)][k] == pytest.approx(exp[k], abs=1e-9), (cid, k)
    # the result is not trivial: matches, misses and false alarms all occur
    per = acc.result().per_class
    assert sum(s.tp for s in per.values()) > 0 and sum(s.fp for s in per.values()) > 0
    assert sum(s.fn for s in per.values()) > 0
    # shards merge to the same numbers
    merged = shards[0].merge(shards[1]).result().to_panopticapi()
    for group in ("All", "Things", "Stuff"):
        assert merged[group]["pq"] == pytest.approx(got[group]["pq"], abs=1e-12)
        assert merged[group]["n"] == got[group]["n"]


CATS = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 1}, {"id": 3, "isthing": 0}]


def _pq(gt, gsegs, pred, psegs):
    return M.panoptic_quality(np.array(gt), gsegs, np.array(pred), psegs, CATS)


def test_pq_perfect_and_category_mismatch():
    ids = [[1, 1, 2, 2], [1, 1, 2, 2]]
    gs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 3}]
    r = _pq(ids, gs, ids, gs)
    assert r.all.pq == 1.0 and r.all.n == 2 and r.things.n == 1 and r.stuff.n == 1
    assert math.isnan(r.per_class[2].pq)  # category 2 never appears
    assert r.to_panopticapi()["per_class"][2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    # same pixels, wrong category for segment 1: one FN for cat 1, one FP for cat 2
    ps = [{"id": 1, "category_id": 2}, {"id": 2, "category_id": 3}]
    r = _pq(ids, gs, ids, ps)
    c1, c2 = r.per_class[1], r.per_class[2]
    assert (c1.tp, c1.fp, c1.fn) == (0, 0, 1) and (c2.tp, c2.fp, c2.fn) == (0, 1, 0)
    assert c1.pq == 0.0 and c1.sq == 0.0 and c1.rq == 0.0
    assert r.all.n == 3 and r.all.pq == pytest.approx(1 / 3)


def test_pq_iou_exactly_half_is_not_a_match():
    gt = [[1, 1, 1, 1]]
    pred = [[5, 5, 6, 6]]
    gs = [{"id": 1, "category_id": 1}]
    ps = [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 1}]
    c = _pq(gt, gs, pred, ps).per_class[1]
    assert (c.tp, c.fp, c.fn) == (0, 2, 1)
    # just above one half matches
    c = _pq([[1, 1, 1, 1, 1]], gs, [[5, 5, 5, 6, 6]], ps).per_class[1]
    assert (c.tp, c.fp, c.fn) == (1, 1, 0) and c.iou_sum == pytest.approx(0.6)
    assert c.pq == pytest.approx(0.6 / (1 + 0.5))


def test_pq_void_is_left_out_of_union_and_fp():
    # gt segment 1 (4 px) next to VOID; pred covers it plus 3 void pixels
    gt = [[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]]
    pred = [[7, 7, 7, 7, 7, 7, 7, 8, 8, 8]]
    gs = [{"id": 1, "category_id": 1}]
    ps = [{"id": 7, "category_id": 1}, {"id": 8, "category_id": 2}]
    r = _pq(gt, gs, pred, ps)
    c1 = r.per_class[1]
    assert (c1.tp, c1.fp, c1.fn) == (1, 0, 0) and c1.iou_sum == 1.0  # void pixels not in the union
    c2 = r.per_class[2]
    assert (c2.tp, c2.fp, c2.fn) == (0, 0, 0)  # pred 8 lies entirely on VOID: ignored
    assert r.all.n == 1


def test_pq_crowd_rules():
    # gt: person 1 (4 px), crowd person 2 (6 px), stuff 3 (4 px)
    gt = [[1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3]]
    gs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1, "iscrowd": 1}, {"id": 3, "category_id": 3}]
    # pred 5 = person matching 1; pred 6 = person mostly on the crowd (ignored);
    # pred 9 = category 2 on the crowd (different category: a FP); nothing for stuff 3 (FN)
    pred = [[5, 5, 5, 5, 6, 6, 6, 6, 9, 9, 6, 0, 0, 0]]
    ps = [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 1}, {"id": 9, "category_id": 2}]
    r = _pq(gt, gs, pred, ps)
    c1, c2, c3 = r.per_class[1], r.per_class[2], r.per_class[3]
    assert (c1.tp, c1.fp, c1.fn) == (1, 0, 0)  # the crowd gt is not a FN, pred 6 not a FP
    assert (c2.tp, c2.fp, c2.fn) == (0, 1, 0)
    assert (c3.tp, c3.fp, c3.fn) == (0, 0, 1)
    # a crowd gt segment is never matched, even by a perfect prediction
    r = _pq([[2, 2]], [{"id": 2, "category_id": 1, "iscrowd": 1}], [[4, 4]], [{"id": 4, "category_id": 1}])
    c = r.per_class[1]
    assert (c.tp, c.fp, c.fn) == (0, 0, 0) and r.all.n == 0 and math.isnan(r.all.pq)
    # a pred half on same-category crowd (not more than half) is a FP
    crowd_and_stuff = [{"id": 2, "category_id": 1, "iscrowd": 1}, {"id": 3, "category_id": 3}]
    r = _pq([[2, 2, 3, 3, 3]], crowd_and_stuff, [[4, 4, 4, 4, 0]], [{"id": 4, "category_id": 1}])
    assert r.per_class[1].fp == 1 and r.per_class[3].fn == 1
    # crowd + VOID together above one half: ignored
    r = _pq([[2, 2, 0, 3, 3]], crowd_and_stuff, [[4, 4, 4, 4, 0]], [{"id": 4, "category_id": 1}])
    assert r.per_class[1].fp == 0 and r.per_class[3].fn == 1


def test_pq_input_errors():
    gs = [{"id": 1, "category_id": 1}]
    with pytest.raises(ValueError, match="not in its segments list"):
        _pq([[1, 1]], gs, [[1, 4]], gs)
    with pytest.raises(ValueError, match="not in its segments list"):
        _pq([[1, 3]], gs, [[1, 1]], gs)
    with pytest.raises(ValueError, match="no pixels"):
        _pq([[1, 1]], gs, [[1, 1]], gs + [{"id": 2, "category_id": 1}])
    with pytest.raises(ValueError, match="unknown category"):
        _pq([[1, 1]], gs, [[1, 1]], [{"id": 1, "category_id": 42}])
    with pytest.raises(ValueError, match="same shape"):
        _pq([[1, 1]], gs, [[1], [1]], gs)
    with pytest.raises(ValueError, match="not unique"):
        _pq([[1, 1]], gs + gs, [[1, 1]], gs)
    with pytest.raises(ValueError, match="VOID"):
        _pq([[1, 1]], gs, [[1, 1]], gs + [{"id": 0, "category_id": 1}])
    with pytest.raises(TypeError, match="integer"):
        _pq(np.ones((1, 2), np.float32), gs, [[1, 1]], gs)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(M, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20 and result.failed == 0


# --------------------------------------------------------------------------------------
# out-of-range predictions: mmsegmentation's definition
# --------------------------------------------------------------------------------------


def mmseg_intersect_and_union(pred, label, num_classes, ignore_index):
    """mmsegmentation's ``intersect_and_union``, in NumPy, from its definition:
    ``mask = label != ignore_index; pred_label = pred[mask]; label = label[mask]``;
    ``intersect = pred_label[pred_label == label]``; areas are ``torch.histc(x.float(),
    bins=num_classes, min=0, max=num_classes - 1)``, which on integer values is one bin per
    class and does not count values outside ``[0, num_classes - 1]`` -- so an out-of-range
    prediction adds to ``area_label`` (FN of its gt class) and to nothing else."""
    pred = np.asarray(pred).astype(np.int64).ravel()
    label = np.asarray(label).astype(np.int64).ravel()
    if ignore_index is not None:
        mask = label != ignore_index
        pred, label = pred[mask], label[mask]

    def histc(x):
        x = x[(x >= 0) & (x <= num_classes - 1)]
        return np.bincount(x, minlength=num_classes).astype(np.float64)

    intersect = pred[pred == label]
    area_intersect, area_pred, area_label = histc(intersect), histc(pred), histc(label)
    return area_intersect, area_pred + area_label - area_intersect, area_pred, area_label


def _ratio(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN, as in mmsegmentation
        return a / b


@st.composite
def out_of_range_pairs(draw):
    """label_pairs with predictions out of range (ground truth kept in range or ignore)."""
    gt, pred, nc, ignore = draw(label_pairs(allow_out_of_range=True))
    bad = (gt >= nc) & ((gt != ignore) if ignore is not None else True)
    gt = np.where(bad, gt % nc, gt).astype(gt.dtype)
    # a few predictions at the dtype's top value too (255 is the usual "no class" output)
    k = draw(st.integers(0, 3))
    flat = pred.reshape(-1)
    for i in draw(st.lists(st.integers(0, flat.size - 1), min_size=k, max_size=k)):
        flat[i] = np.iinfo(pred.dtype).max
    return gt, pred, nc, ignore


def test_out_of_range_prediction_is_a_false_negative_of_its_class():
    gt = np.array([[0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 0, 1, 255]], np.uint8)
    for g, p in ((gt, pred), (gt.astype(np.uint16), pred.astype(np.uint16))):
        c = M.confusion_matrix(g, p, 2)  # ignore_index 255 is a ground-truth value: pred 255 is out of range
        np.testing.assert_array_equal(M.iou(c), [1.0, 0.5])
        np.testing.assert_array_equal(c.tp_fp_fn()[2], [0, 1])
        assert c.pred_out_of_range == {255: 1} and c.out_of_range == 1
        assert M.pixel_accuracy(c) == 0.75
        np.testing.assert_array_equal(M.iou(M.confusion_matrix(g, p, 2, out_of_range="ignore")), [1.0, 1.0])
        with pytest.raises(ValueError, match=r"pred has 1 pixels with values >= num_classes=2: \{255: 1\}"):
            M.confusion_matrix(g, p, 2, out_of_range="error")


@given(out_of_range_pairs())
@hsettings(300)
def test_fn_policy_equals_mmsegmentation_intersect_and_union(case):
    gt, pred, nc, ignore = case
    ai, au, ap, al = mmseg_intersect_and_union(pred, gt, nc, ignore)
    c = M.confusion_matrix(gt, pred, nc, ignore)
    tp, fp, fn = c.tp_fp_fn()
    np.testing.assert_array_equal(tp, ai)
    np.testing.assert_array_equal(tp + fp, ap)
    np.testing.assert_array_equal(tp + fn, al)
    np.testing.assert_array_equal(M.iou(c), _ratio(ai, au))
    np.testing.assert_array_equal(M.dice(c), _ratio(2 * ai, ap + al))
    np.testing.assert_array_equal(M.recall(c), _ratio(ai, al))  # mmsegmentation's per-class Acc
    total = al.sum()
    assert (M.pixel_accuracy(c) == ai.sum() / total) if total else math.isnan(M.pixel_accuracy(c))
    # the same through the accumulator and the generic kernel
    acc = M.ConfusionAccumulator(nc, ignore)
    acc.add(gt.astype(np.int32), pred.astype(np.int32))
    np.testing.assert_array_equal(acc.scores().iou, _ratio(ai, au))


@given(st.lists(out_of_range_pairs(), min_size=1, max_size=4))
@hsettings(60)
def test_fn_policy_dataset_scores_equal_mmsegmentation_totals(cases):
    # total_intersect_and_union: areas summed over images, then divided
    nc, ignore = cases[0][2], cases[0][3]
    images = []
    for gt, pred, _, _ in cases:  # the first case's class count and ignore value for all
        bad = (gt >= nc) & ((gt != ignore) if ignore is not None else True)
        images.append((np.where(bad, 0, gt).astype(gt.dtype), pred))
    acc = M.ConfusionAccumulator(nc, ignore)
    for gt, pred in images:
        acc.add(gt, pred)
    sums = sum(np.stack(mmseg_intersect_and_union(pred, gt, nc, ignore)) for gt, pred in images)
    s = acc.scores()
    np.testing.assert_array_equal(s.iou, _ratio(sums[0], sums[1]))
    assert (s.pixel_accuracy == sums[0].sum() / sums[3].sum()) if sums[3].sum() else math.isnan(s.pixel_accuracy)
    total = sum(M.confusion_matrix(gt, pred, nc, ignore) for gt, pred in images)
    np.testing.assert_array_equal(M.iou(total), s.iou)


def test_ground_truth_out_of_range_is_refused_unless_ignored():
    gt = np.array([[0, 7, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 3]], np.uint8)
    for policy in ("fn", "error"):
        with pytest.raises(M.OutOfRangeError, match=r"gt has 1 pixels with values >= num_classes=2: \{7: 1\}") as e:
            M.confusion_matrix(gt, pred, 2, out_of_range=policy)
        assert e.value.gt_out_of_range == {7: 1}
        with pytest.raises(ValueError, match="gt has 1 pixels"):
            M.ConfusionAccumulator(2, out_of_range=policy).add(gt.astype(np.int64), pred)
    c = M.confusion_matrix(gt, pred, 2, out_of_range="ignore")
    assert c.gt_out_of_range == {7: 1} and c.matrix.sum() == 2 and c.ignored == 1 and c.out_of_range == 1


def test_count_is_a_deprecated_alias_of_ignore():
    gt = np.array([[0, 1]], np.uint8)
    pred = np.array([[0, 9]], np.uint8)
    with pytest.warns(DeprecationWarning, match="'ignore'"):
        c = M.confusion_matrix(gt, pred, 2, out_of_range="count")
    assert c.policy == "ignore" and c.pred_out_of_range == {9: 1}
    np.testing.assert_array_equal(M.iou(c), [1.0, np.nan])
    with pytest.warns(DeprecationWarning):
        assert M.ConfusionAccumulator(2, out_of_range="count").out_of_range == "ignore"
    with pytest.raises(ValueError, match="'fn', 'ignore', 'error'"):
        M.confusion_matrix(gt, pred, 2, out_of_range="drop")


def test_confusion_counts_add_only_alike():
    a = M.confusion_matrix(np.array([[0, 1]], np.uint8), np.array([[0, 5]], np.uint8), 2)
    b = M.confusion_matrix(np.array([[1, 1]], np.uint8), np.array([[1, 6]], np.uint8), 2)
    s = a + b
    assert s.pred_out_of_range == {5: 1, 6: 1} and s.pred_out_of_range_per_class.tolist() == [0, 2]
    np.testing.assert_array_equal(M.iou(s), [1.0, 1 / 3])
    with pytest.raises(ValueError, match="policies"):
        a + M.confusion_matrix(np.array([[0, 1]], np.uint8), np.array([[0, 5]], np.uint8), 2, out_of_range="ignore")
