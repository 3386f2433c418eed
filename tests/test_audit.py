"""`fastmask audit`: region types on constructed cases, scipy as the oracle of the regions,
dataset-calibrated scores (invariant to shards and workers), bad inputs, layouts, resume, report."""
from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmask.cli import main
from fastmask.formats import write_mask
from fastmask.jobs.audit_score import REGION_TYPES, DatasetStats, find_regions, label_quality, score_regions


def _write(folder, masks):
    folder.mkdir(parents=True, exist_ok=True)
    for name, m in masks.items():
        write_mask(folder / f"{name}.png", m)


def _audit(tmp_path, gt, pred, *extra, name="r"):
    out = tmp_path / name
    code = main(["audit", "--gt", str(gt), "--pred", str(pred), "--out", str(out), "--workers", "1", "--quiet", *extra])
    summary = json.loads((out / "run.json").read_text())["summary"] if (out / "run.json").exists() else None
    return code, summary, out


def _table(out, name):
    return pq.read_table(out / name).to_pylist()


def _scene() -> np.ndarray:
    """Background 0 with three objects: class 1 (20x20), class 2 (30x30), class 3 (15x20)."""
    gt = np.zeros((64, 64), np.uint8)
    gt[5:25, 5:25] = 1
    gt[30:60, 30:60] = 2
    gt[5:20, 40:60] = 3
    return gt


def _types(gt, pred, **kw):
    r = find_regions(gt, pred, num_classes=4, **kw)
    return sorted(r.regions["type"]), r


# --------------------------------------------------------------------------- region types


def test_class_swap_positive_and_negative():
    gt = _scene()
    pred = gt.copy()
    pred[30:60, 30:60] = 3  # the whole class-2 object seen as class 3
    types, r = _types(gt, pred)
    assert types == ["class_swap"] and r.regions["covered_gt"] == [1.0] and r.regions["area"] == [900]
    assert (r.regions["gt_class"], r.regions["pred_class"]) == ([2], [3])
    # negative: a third of the object seen as class 3 is an outline problem, not a swap
    pred = gt.copy()
    pred[30:60, 30:40] = 3
    types, r = _types(gt, pred)
    assert types == ["boundary_offset"] and r.regions["covered_gt"][0] == pytest.approx(1 / 3)


def test_missing_label_positive_and_negative():
    gt = _scene()
    pred = gt.copy()
    pred[40:55, 2:20] = 1  # an object the labels do not have
    types, r = _types(gt, pred)
    assert types == ["missing_label"] and r.regions["gt_class"] == [0] and r.regions["covered_pred"] == [1.0]
    # negative: the model's class-1 blob only extends the labelled object by a 5-px band
    pred = gt.copy()
    pred[5:25, 25:30] = 1
    types, r = _types(gt, pred)
    assert types == ["boundary_offset"] and r.regions["covered_pred"][0] == pytest.approx(100 / 500)


def test_spurious_label_positive_and_negative():
    gt = _scene()
    pred = gt.copy()
    pred[5:20, 40:60] = 0  # a labelled object the model sees as background
    types, r = _types(gt, pred)
    assert types == ["spurious_label"] and r.regions["pred_class"] == [0] and r.regions["covered_gt"] == [1.0]
    pred = gt.copy()
    pred[5:20, 40:45] = 0  # the model trims a quarter of it
    types, _ = _types(gt, pred)
    assert types == ["boundary_offset"]


def test_missing_and_spurious_labels_inside_a_stuff_class():
    gt = np.ones((64, 64), np.uint8)  # class 1 is a stuff class (road) around everything
    pred = gt.copy()
    pred[30:40, 30:40] = 2  # the model sees an object the labels left as road
    types, r = _types(gt, pred)
    assert types == ["missing_label"] and r.regions["covered_pred"] == [1.0] and r.regions["covered_gt"][0] < 0.2
    types, r = _types(pred, gt)  # mirrored: an object labelled where the model sees road
    assert types == ["spurious_label"] and r.regions["covered_gt"] == [1.0] and r.regions["covered_pred"][0] < 0.2
    # negative: the object relabelled as another object class is a swap (it covers the whole of both)
    other = gt.copy()
    other[30:40, 30:40] = 3
    types, _ = _types(other, pred)
    assert types == ["class_swap"]
    # negative: the surrounding area is not much larger than the object (covers >= 0.2 of it): a swap
    gt = np.zeros((64, 64), np.uint8)
    gt[30:40, 25:45] = 1  # 200 px of class 1
    pred = gt.copy()
    pred[30:40, 30:40] = 2
    types, r = _types(gt, pred)
    assert types == ["class_swap"] and r.regions["covered_gt"] == [0.5]


def test_boundary_offset_positive_and_negative():
    gt = _scene()
    pred = np.zeros_like(gt)
    pred[5:25, 5:25] = 1
    pred[5:20, 40:60] = 3
    pred[30:60, 34:64] = 2  # the class-2 outline shifted 4 px right: a band on each side
    types, r = _types(gt, pred)
    assert types == ["boundary_offset", "boundary_offset"]
    assert sorted(zip(r.regions["gt_class"], r.regions["pred_class"], r.regions["thickness"])) == [(0, 2, 4), (2, 0, 4)]
    # negative: shifted by 2 px: edge noise only, no region row
    pred[30:60, 30:64] = 0
    pred[30:60, 32:62] = 2
    types, r = _types(gt, pred)
    assert types == [] and r.counts["edge_noise"] == 2 and r.counts["edge_noise_pixels"] == 120
    # a wider edge width turns the 4-px shift into edge noise too; a narrower one keeps 2-px bands
    pred[30:60, 30:64] = 0
    pred[30:60, 34:64] = 2
    assert _types(gt, pred, edge_width=4)[0] == []
    assert len(_types(gt, pred, edge_width=1)[0]) == 2


@settings(max_examples=60)
@given(st.integers(0, 2**32 - 1), st.integers(1, 2))
def test_edge_noise_is_never_a_region(seed, width):
    """Every object's outline moved by up to ``edge_width`` px, object by object: no region row."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((40, 40), np.uint8)
    for _ in range(rng.integers(1, 5)):
        y, x, h, w = rng.integers(0, 30, 2).tolist() + rng.integers(6, 12, 2).tolist()
        gt[y:y + h, x:x + w] = rng.integers(1, 4)
    grown = ndi.grey_dilation(gt, size=(2 * width + 1, 2 * width + 1))
    for pred in (np.where(gt == 0, grown, gt), ndi.grey_erosion(gt, size=(3, 3))):
        r = find_regions(gt, pred.astype(np.uint8), num_classes=4, edge_width=2)
        thin = [t for t, th in zip(r.regions["type"], r.regions["thickness"]) if th <= 2]
        assert "edge_noise" not in r.regions["type"] and not thin
        if width == 1:  # a one-pixel growth is a band of thickness <= 2 everywhere
            assert r.regions["type"] == [] and r.counts["edge_noise_pixels"] == int((pred != gt).sum())


def _largest_square(mask: np.ndarray) -> int:
    s = np.pad(mask.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best = 0
    for k in range(1, min(mask.shape) + 1):
        win = s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]
        if (win == k * k).any():
            best = k
        else:
            break
    return best


@settings(max_examples=40)
@given(st.integers(0, 2**32 - 1), st.sampled_from([4, 8]), st.sampled_from([np.uint8, np.uint16, np.int32]))
def test_regions_equal_scipy_per_class_pair(seed, connectivity, dtype):
    """Oracle: scipy.ndimage.label of each (gt, pred) pair's disagreement mask; thickness by brute force."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 24, 2).tolist()
    gt = rng.integers(0, 3, (h, w)).astype(np.uint8)
    gt = ndi.median_filter(gt, 3)  # blobs, not salt and pepper
    pred = np.where(rng.random((h, w)) < 0.3, rng.integers(0, 3, (h, w)), gt).astype(dtype)
    gt[rng.random((h, w)) < 0.05] = 255
    gt = gt.astype(dtype)
    conf = rng.random((h, w))
    r = find_regions(gt, pred, num_classes=3, connectivity=connectivity, edge_width=0, confidence=conf)
    structure = np.ones((3, 3)) if connectivity == 8 else ndi.generate_binary_structure(2, 1)
    expected = []
    for g in range(3):
        for p in range(3):
            if g == p:
                continue
            lab, n = ndi.label((gt == g) & (pred == p), structure=structure)
            for k, sl in enumerate(ndi.find_objects(lab), start=1):
                m = lab == k
                expected.append((g, p, int(m.sum()), sl[1].start, sl[0].start, sl[1].stop - sl[1].start,
                                 sl[0].stop - sl[0].start, _largest_square(m), round(float(conf[m].mean()), 9)))
    got = sorted(zip(r.regions["gt_class"], r.regions["pred_class"], r.regions["area"], r.regions["bbox_x"],
                     r.regions["bbox_y"], r.regions["bbox_w"], r.regions["bbox_h"], r.regions["thickness"],
                     [round(c, 9) for c in r.regions["confidence"]]))
    assert got == sorted(expected)
    assert r.counts["disagree_pixels"] == int(((gt != pred) & (gt != 255)).sum())


def test_covered_fractions_use_the_objects_of_each_map():
    gt = np.zeros((10, 10), np.uint8)
    gt[0:10, 0:4] = 1
    pred = gt.copy()
    pred[0:10, 0:4] = 2
    pred[0:10, 4:8] = 2  # the model's class-2 blob is twice the object
    r = find_regions(gt, pred, num_classes=3, edge_width=0)
    by = {(g, p): i for i, (g, p) in enumerate(zip(r.regions["gt_class"], r.regions["pred_class"]))}
    i = by[(1, 2)]
    assert r.regions["gt_object_area"][i] == 40 and r.regions["pred_blob_area"][i] == 80
    assert (r.regions["covered_gt"][i], r.regions["covered_pred"][i]) == (1.0, 0.5)


# --------------------------------------------------------------------------- scores


def test_score_factors_follow_the_documented_formulas():
    stats = DatasetStats({("class_swap", 1, 2): [7, 700, 5], ("class_swap", 3, 4): [1, 100, 1]},
                         {1: {36: 90}, 3: {36: 40, 17: 30}}, {}, {1: 40, 3: 30}, {}, [], 0, {4: 3, 9: 5})
    cols = {"type": ["class_swap", "class_swap"], "gt_class": [1, 3], "pred_class": [2, 4], "area": [100, 10],
            "thickness": [10, 3], "covered_gt": [0.9, 0.6], "covered_pred": [1.0, 0.1], "gt_object_area": [111, 16],
            "pred_blob_area": [100, 100], "confidence": [None, None]}
    s = score_regions(cols, stats)
    typical = 2 ** (36.5 / 4)
    assert s["systematic_rate"] == pytest.approx([4 / 50, 0.0])  # items with the pair but this one / (items + 10)
    assert s["pair_factor"] == pytest.approx([1 / (1 + (4 / 50) / 0.05), 1.0])
    assert s["size_factor"] == pytest.approx([min(1, np.sqrt(100 / (0.25 * typical))), np.sqrt(10 / (0.25 * typical))])
    assert s["shape_factor"] == pytest.approx([(10 - 2) / 12, (3 - 2) / 12]) and s["coverage_factor"] == pytest.approx([0.9, 0.6])
    # the second region is a whole-object miss (covers >= half of its object, < half of the predicted blob):
    # octave floor(log2(16)) = 4 holds 30 ground-truth objects (bin 17) and 3 misses, this one left out
    assert s["miss_rate"][0] is None and s["miss_rate"][1] == pytest.approx((3 - 1) / (30 + 10))
    assert s["miss_factor"] == pytest.approx([1.0, 1 / (1 + (2 / 40) / 0.05)])
    # the mirror, a whole-blob false positive: by the octave of the predicted blob (floor(log2(40)) = 5)
    # among predicted blobs; no predicted blob of that octave in the histograms: 10 pseudo-blobs only
    stats.false_blobs = {5: 4}
    fb = score_regions({**{k: v[:1] for k, v in cols.items()}, "covered_gt": [0.1], "covered_pred": [0.9],
                        "pred_blob_area": [40]}, stats)
    assert fb["miss_rate"] == pytest.approx([(4 - 1) / (0 + 10)]) and fb["miss_factor"] == pytest.approx([1 / (1 + 0.3 / 0.05)])
    assert s["score"] == pytest.approx([np.prod([s[k][i] for k in ("pair_factor", "size_factor", "confidence_factor",
                                                                   "shape_factor", "coverage_factor", "miss_factor")])
                                        for i in range(2)])
    assert label_quality(s["score"]) == pytest.approx((1 - s["score"][0]) * (1 - s["score"][1]))


def _scene_set(n=12):
    """n items of the scene; the model confuses 1 -> 2 systematically (every item), and one item
    has a planted 3 -> 2 relabel of the same size."""
    gts, preds = {}, {}
    for k in range(n):
        gt = _scene()
        pred = gt.copy()
        pred[5:25, 5:25] = 2  # the model's systematic confusion
        pred[5:25, 4] = 1  # + 1-px edge noise
        if k == 7:
            gt[5:20, 40:60] = 2  # a class-3 object labelled as class 2 (the model sees 3)
        gts[f"im{k:02d}"], preds[f"im{k:02d}"] = gt, pred
    return gts, preds


def test_systematic_confusion_ranks_below_a_lone_relabel(tmp_path, capsys):
    gts, preds = _scene_set()
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    code, summary, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4")
    assert code == 0 and summary["regions_by_type"]["class_swap"] == 13
    regions = _table(out, "regions")
    lone = [r for r in regions if r["item_id"] == "im07" and r["gt_class"] == 2]
    systematic = [r for r in regions if r["gt_class"] == 1]
    assert len(lone) == 1 and len(systematic) == 12
    assert lone[0]["score"] > 0.9 and all(r["score"] < 0.2 for r in systematic)
    assert all(r["systematic_rate"] == pytest.approx(11 / 22) for r in systematic)
    items = {r["item_id"]: r for r in _table(out, "items")}
    assert min(items, key=lambda i: items[i]["label_quality"]) == "im07"
    assert all(r["edge_noise"] == 1 and r["edge_noise_pixels"] == 20 for r in items.values())
    classes = _table(out, "classes")
    assert [(r["gt_class"], r["pred_class"], r["type"], r["regions"], r["pixels"], r["items"], r["class_items"])
            for r in classes] == [(1, 2, "class_swap", 12, 4800, 12, 12), (2, 3, "class_swap", 1, 300, 1, 12)]
    assert classes[0]["systematic_rate"] == pytest.approx(12 / 22)
    printed = capsys.readouterr().out
    first = printed.split("worst regions")[1].splitlines()[2]
    assert "im07" in first and "class_swap" in first and "2 -> 3" in first


def test_confidence_orders_equal_regions(tmp_path):
    gt = _scene()
    gts, preds, confs = {}, {}, {}
    for k, c in enumerate((40, 250, 120)):
        pred = gt.copy()
        pred[40:55, 2:20] = 1  # the same missing label in every item, at different confidence
        conf = np.full(gt.shape, 255, np.uint8)
        conf[40:55, 2:20] = c
        gts[f"i{k}"], preds[f"i{k}"], confs[f"i{k}"] = gt, pred, conf
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    _write(tmp_path / "conf", confs)
    code, summary, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4",
                                "--confidence", str(tmp_path / "conf"))
    assert code == 0 and summary["confidence_given"]
    regions = {r["item_id"]: r for r in _table(out, "regions")}
    assert [regions[i]["confidence"] for i in ("i0", "i1", "i2")] == pytest.approx([40 / 255, 250 / 255, 120 / 255])
    assert regions["i1"]["score"] > regions["i2"]["score"] > regions["i0"]["score"]
    assert [regions[i]["confidence_factor"] for i in ("i0", "i2", "i1")] == pytest.approx([1 / 6, 3 / 6, 5 / 6])
    # 16-bit maps scale by 65535
    _write(tmp_path / "conf16", {k: (v.astype(np.uint16) * 257) for k, v in confs.items()})
    code, _, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4",
                          "--confidence", str(tmp_path / "conf16"), name="r16")
    assert code == 0
    assert {r["item_id"]: r["confidence"] for r in _table(out, "regions")} == pytest.approx(
        {i: r["confidence"] for i, r in regions.items()})


def _tables_without_volatile(out):
    regions = sorted(_table(out, "regions"), key=lambda r: (r["item_id"], r["region"]))
    items = sorted(_table(out, "items"), key=lambda r: r["item_id"])
    classes = _table(out, "classes")
    summary = json.loads((out / "run.json").read_text())["summary"]
    return regions, items, classes, summary


def test_scores_invariant_to_workers_and_shard_size(tmp_path):
    rng = np.random.default_rng(3)
    gts, preds = _scene_set(10)
    for k, p in preds.items():  # some variety: random blobs of each kind
        y, x = rng.integers(0, 50, 2)
        p[y:y + 8, x:x + 8] = rng.integers(0, 4)
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    runs = []
    for name, extra in (("a", ["--workers", "1", "--shard-size", "100"]), ("b", ["--workers", "2", "--shard-size", "3"]),
                        ("c", ["--workers", "1", "--shard-size", "1"])):
        out = tmp_path / name
        assert main(["audit", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--num-classes", "4",
                     "--out", str(out), "--quiet", *extra]) == 0
        runs.append(_tables_without_volatile(out))
    assert runs[0][0] and runs[0] == runs[1] == runs[2]


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_error_rows_as_in_evaluate(tmp_path, capsys):
    g = _scene()
    _write(tmp_path / "gt", {"ok": g, "small": g, "broken": g, "nopred": g, "noconf": g})
    _write(tmp_path / "pred", {"ok": g, "small": g[:20], "broken": g, "extra": g, "noconf": g})
    (tmp_path / "pred/broken.png").write_bytes(b"not a png")
    _write(tmp_path / "conf", {k: np.full(g.shape, 200, np.uint8) for k in ("ok", "small", "broken", "nopred")})
    code, summary, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4",
                                "--confidence", str(tmp_path / "conf"))
    assert code == 1
    items = {r["item_id"]: r for r in _table(out, "items")}
    assert sorted(items) == ["broken", "extra", "noconf", "nopred", "ok", "small"]  # every item once
    codes = {k: r["error_code"] for k, r in items.items()}
    assert codes == {"ok": None, "small": "size_mismatch", "broken": codes["broken"], "nopred": "missing_prediction",
                     "extra": "extra_prediction", "noconf": "missing_confidence"}
    assert codes["broken"] not in (None, "internal_error")
    assert items["ok"]["label_quality"] == 1.0 and items["small"]["label_quality"] is None
    assert summary["scored_items"] == 1 and summary["ground_truth_items"] == 5 and summary["extra_predictions"] == 1
    # the same error codes as evaluate for the pairs both read
    assert main(["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--num-classes", "4",
                 "--out", str(tmp_path / "ev"), "--workers", "1", "--quiet"]) == 1
    ev = {r["item_id"]: r["error_code"] for r in _table(tmp_path / "ev", "items")}
    assert {k: v for k, v in ev.items() if k != "noconf"} == {k: v for k, v in codes.items() if k != "noconf"}
    err = capsys.readouterr().err
    assert "fastmask audit: exit 1" in err and "not audited: missing_prediction" in err
    # a confidence map of the wrong size is a size_mismatch row naming the confidence
    _write(tmp_path / "conf", {"noconf": np.zeros((3, 3), np.uint8)})
    code, _, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4",
                          "--confidence", str(tmp_path / "conf"), name="r2")
    row = {r["item_id"]: r for r in _table(out, "items")}["noconf"]
    assert row["error_code"] == "size_mismatch" and "confidence" in row["error_message"]


def test_allow_missing_and_out_of_range(tmp_path):
    g = _scene()
    p = g.copy()
    p[0, :5] = 9  # predicted values >= --num-classes
    _write(tmp_path / "gt", {"a": g, "b": g})
    _write(tmp_path / "pred", {"a": p})
    code, summary, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4", "--allow-missing")
    assert code == 0 and summary["not_scored"] == {"missing_prediction": 1}
    items = {r["item_id"]: r for r in _table(out, "items")}
    assert items["a"]["pred_out_of_range"] == 5 and items["a"]["disagree_pixels"] == 0
    code, _, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4", "--allow-missing",
                          "--out-of-range", "error", name="r2")
    assert code == 1 and {r["item_id"]: r for r in _table(out, "items")}["a"]["error_code"] == "out_of_range"
    gbad = g.copy()
    gbad[0, 0] = 7
    _write(tmp_path / "gt2", {"a": gbad})
    code, _, out = _audit(tmp_path, tmp_path / "gt2", tmp_path / "pred", "--num-classes", "4", name="r3")
    assert code == 1 and _table(out, "items")[0]["error_code"] == "gt_out_of_range"
    code, _, out = _audit(tmp_path, tmp_path / "gt2", tmp_path / "pred", "--num-classes", "4", "--out-of-range",
                          "ignore", name="r4")
    (row,) = _table(out, "items")
    assert code == 0 and row["status"] == "ok" and row["gt_out_of_range"] == 1
    assert row["pred_out_of_range"] == 4  # on ground-truth pixels in range, as evaluate counts them


def test_usage_errors(tmp_path, capsys):
    _write(tmp_path / "gt", {"a": _scene()})
    assert main(["audit", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "gt"), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert "give --num-classes or a --labelmap" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- layouts, resume, report


def test_coco_ground_truth_against_mask_predictions(tmp_path):
    """COCO pairs with masks by file_name (rasterized COCO); instance counts need instances on both sides."""
    images, anns = [], []
    for i in range(4):
        images.append({"id": i + 1, "file_name": f"f{i}.jpg", "width": 40, "height": 30})
        anns.append({"id": 2 * i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                     "segmentation": [[2, 2, 20, 2, 20, 20, 2, 20]]})
        anns.append({"id": 2 * i + 2, "image_id": i + 1, "category_id": 2, "iscrowd": 0,
                     "segmentation": [[24, 4, 38, 4, 38, 26, 24, 26]]})
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    assert main(["rasterize", str(coco), "--out", str(tmp_path / "ras"), "--workers", "1", "--quiet"]) == 0
    from fastmask.formats import read_mask

    m = read_mask(tmp_path / "ras/masks/f2.png").array.copy()
    m[m == 2] = 1  # the model sees the dog as a cat
    write_mask(tmp_path / "ras/masks/f2.png", m)
    code, summary, out = _audit(tmp_path, coco, tmp_path / "ras/masks")
    assert code == 0 and summary["scored_items"] == 4 and summary["paired_by_file_name"] == 4
    (r,) = _table(out, "regions")
    assert (r["item_id"], r["type"], r["gt_name"], r["pred_name"], r["covered_gt"]) == \
        ("000000000003", "class_swap", "dog", "cat", 1.0)
    # COCO against itself: instances on both sides, all matched
    code, summary, out = _audit(tmp_path, coco, coco, name="self")
    assert code == 0 and summary["regions"] == 0
    items = _table(out, "items")
    assert all(r["gt_instances"] == r["pred_instances"] == r["matched_instances"] == 2 for r in items)
    # a COCO prediction with the dog of image 2 called a cat: that instance no longer matches
    doc = json.loads(coco.read_text())
    doc["annotations"][3]["category_id"] = 1
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(doc))
    code, summary, out = _audit(tmp_path, coco, pred, name="relabelled")
    items = {r["item_id"]: r for r in _table(out, "items")}
    assert code == 0 and items["000000000002"]["matched_instances"] == 1
    assert items["000000000002"]["gt_instances"] == items["000000000002"]["pred_instances"] == 2
    (r,) = _table(out, "regions")
    assert (r["item_id"], r["type"], r["gt_name"], r["pred_name"]) == ("000000000002", "class_swap", "dog", "cat")
    # masks against masks: no instances, the columns stay null
    code, _, out = _audit(tmp_path, tmp_path / "ras/masks", tmp_path / "ras/masks", "--num-classes", "3", name="m")
    assert code == 0 and all(r["matched_instances"] is None for r in _table(out, "items"))


def test_background_comes_from_the_label_map(tmp_path):
    gt = _scene()
    pred = gt.copy()
    pred[30:60, 30:60] = 1  # the class-2 object seen as class 1 over all of it
    _write(tmp_path / "gt", {"a": gt})
    _write(tmp_path / "pred", {"a": pred})
    lm = tmp_path / "labelmap.json"
    lm.write_text(json.dumps({"labels": {"0": "sky", "1": "road", "2": "void", "3": "car"}, "background": 2}))
    code, summary, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--labelmap", str(lm))
    (r,) = _table(out, "regions")
    assert code == 0 and summary["background"] == 2 and summary["num_classes"] == 4
    assert (r["type"], r["gt_name"], r["pred_name"]) == ("missing_label", "void", "road")
    # --background overrides it (-1: no background, every disagreement is between two classes)
    code, summary, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--labelmap", str(lm),
                                "--background", "-1", name="r2")
    assert summary["background"] is None and _table(out, "regions")[0]["type"] == "class_swap"


def test_panoptic_on_real_samples(real_data, tmp_path):
    """The panopticapi example: audited on class maps; the instance matching is panopticapi's
    (its TP / FP / FN segment counts, summed, from the reference)."""
    ref = real_data / "_reference/panoptic_pq"
    code, summary, out = _audit(tmp_path, ref / "gt.json", ref / "pred.json", "--gt-masks",
                                str(real_data / "panopticapi/sample_data/panoptic_examples"), "--pred-masks",
                                str(ref / "pred"))
    assert code == 0 and summary["scored_items"] == summary["ground_truth_items"] > 0
    items = {r["item_id"]: r for r in _table(out, "items")}
    # the same matching as evaluate's panoptic quality (checked against panopticapi elsewhere)
    assert main(["evaluate", "--gt", str(ref / "gt.json"), "--pred", str(ref / "pred.json"), "--gt-masks",
                 str(real_data / "panopticapi/sample_data/panoptic_examples"), "--pred-masks", str(ref / "pred"),
                 "--out", str(tmp_path / "ev"), "--workers", "1", "--quiet"]) == 0
    counts: dict = {}
    for r in _table(tmp_path / "ev", "pq_counts"):
        c = counts.setdefault(r["item_id"], [0, 0, 0])
        c[0], c[1], c[2] = c[0] + r["tp"], c[1] + r["tp"] + r["fn"], c[2] + r["tp"] + r["fp"]
    assert counts and all(items[i]["matched_instances"] == tp and items[i]["gt_instances"] == ngt
                          and items[i]["pred_instances"] == npred for i, (tp, ngt, npred) in counts.items())
    items = list(items.values())
    assert all(r["matched_instances"] is not None and r["matched_instances"] <= min(r["gt_instances"], r["pred_instances"])
               for r in items)
    assert summary["regions"] == len(_table(out, "regions")) > 0


def test_sample_layouts_smoke(tmp_path):
    from fastmask.sample import make_sample

    info = make_sample(tmp_path / "sample")
    for name, gt, extra in (("voc", info.voc, ["--allow-missing"]), ("masks", info.masks, ["--num-classes", "256"]),
                            ("zip", info.zip, ["--num-classes", "256"]), ("coco", info.coco, []),
                            ("panoptic", info.panoptic, [])):
        code, summary, out = _audit(tmp_path, gt, gt, *extra, name=name)
        assert code in (0, 1), name  # 1: the sample's planted unreadable items
        assert json.loads((out / "run.json").read_text())["status"] == "complete", name
        assert summary["scored_items"] > 0 and summary["regions"] == 0, name


def test_resume_ends_with_the_same_report(tmp_path):
    gts, preds = _scene_set(8)
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    args = ["audit", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--num-classes", "4",
            "--workers", "1", "--shard-size", "3", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    assert main(args + ["--out", str(tmp_path / "cut")]) == 0
    # as if stopped before shard 1 finished: its marker and parts gone, run.json not complete
    cut = tmp_path / "cut"
    (cut / "_shards/00001.json").unlink()
    for t in ("items", "regions", "objects"):
        (cut / t / "part-00001.parquet").unlink()
    doc = json.loads((cut / "run.json").read_text())
    (cut / "run.json").write_text(json.dumps({**doc, "status": "stopped"}))
    assert main(args + ["--out", str(cut), "--resume"]) == 0
    assert _tables_without_volatile(cut) == _tables_without_volatile(tmp_path / "full")
    # resuming a finished run rescores from the region columns: the same again
    assert main(args + ["--out", str(cut), "--resume"]) == 0
    assert _tables_without_volatile(cut) == _tables_without_volatile(tmp_path / "full")


def test_report_shows_the_worst_regions_first(tmp_path, monkeypatch):
    from fastmask import plots
    from fastmask.report import render_report

    gts, preds = _scene_set(8)
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    code, _, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4")
    assert code == 0
    monkeypatch.setattr(plots, "matplotlib_available", lambda: False)
    page = render_report(out)
    worst = page.index("Worst regions")
    section = page[worst:page.index("</section>", worst)]
    # the lone relabel (im07) first, then the regions of the systematic confusion
    captions = re.findall(r"<figcaption><b>([^<]+)</b>", section)
    assert captions[0] == "im07" and sorted(captions[1:]) == [f"im{k:02d}" for k in range(8)]
    assert section.count("data:image/png;base64,") >= 3  # ground truth | prediction | region outlined
    assert "class_swap" in section and "ground truth" in section and "prediction" in section
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()


def test_tables_follow_the_report_conventions(tmp_path):
    import pyarrow as pa

    gts, preds = _scene_set(8)
    preds["im03"][40:55, 2:20] = 1  # a missing label, a second kind of pair
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    code, summary, out = _audit(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "4", "--shard-size", "3")
    assert code == 0
    regions = pq.read_table(out / "regions")
    for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"):
        assert regions.schema.field(c).type == pa.int64()
    assert "bbox" not in regions.column_names and set(regions.column("type").to_pylist()) <= set(REGION_TYPES[:-1])
    keys = list(zip(regions.column("item_id").to_pylist(), regions.column("region").to_pylist()))
    assert keys == sorted(keys) and all(0.0 <= s <= 1.0 for s in regions.column("score").to_pylist())
    classes = _table(out, "classes")
    order = [(r["gt_class"], r["pred_class"], r["type"]) for r in classes]
    assert order == sorted(order) and len(set(order)) == len(order)
    assert sum(r["regions"] for r in classes) == summary["regions"] == regions.num_rows
    items = _table(out, "items")
    assert sum(r["regions"] for r in items) == regions.num_rows
    assert all(0.0 <= r["label_quality"] <= 1.0 for r in items)
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "complete" and doc["arguments"]["connectivity"] == 8 and doc["summary"]["connectivity"] == 8


def test_report_at_a_url_equals_the_local_report(tmp_path, s3_bucket):
    """--out s3://...: the dataset pass reads and rewrites the parts on object storage; every
    object has the bytes of the local report's file (run.json: but for timing and execution)."""
    from fastmask.engine import VOLATILE_RUN_KEYS
    from fastmask.storage import Location

    gts, preds = _scene_set(6)
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    args = ["audit", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--num-classes", "4",
            "--workers", "1", "--shard-size", "2", "--quiet"]
    url = f"{s3_bucket}/audit-1"
    assert main(args + ["--out", str(tmp_path / "local")]) == 0
    assert main(args + ["--out", url]) == 0
    local = {p.relative_to(tmp_path / "local").as_posix(): p.read_bytes()
             for p in sorted((tmp_path / "local").rglob("*")) if p.is_file()}
    loc = Location(url)
    remote = {name: (loc / name).read_bytes() for name, _ in loc.find()}
    assert sorted(remote) == sorted(local) and "regions/part-00002.parquet" in local
    for name in local:
        if name == "run.json":
            def stable(b):
                return {k: v for k, v in json.loads(b).items() if k not in VOLATILE_RUN_KEYS}

            assert stable(remote[name]) == stable(local[name])
        else:
            assert remote[name] == local[name], name
    assert main(["report", url]) == 0
    assert b"Worst regions" in (loc / "report.html").read_bytes()
