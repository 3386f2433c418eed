"""`fastmask evaluate` on the real samples: scores equal a NumPy / pycocotools reference."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fastmask.cli import main
from fastmask.formats import write_mask

pycocotools_mask = pytest.importorskip("pycocotools.mask")


def _reference_scores(pairs, n):
    g = np.concatenate([a.ravel() for a, _ in pairs]).astype(np.int64)
    p = np.concatenate([b.ravel() for _, b in pairs]).astype(np.int64)
    keep = g != 255
    cm = np.bincount(n * g[keep] + p[keep], minlength=n * n).reshape(n, n)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):  # absent classes: 0/0 -> NaN on purpose
        iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    return cm, iou


def _check_summary(out, cm, iou):
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["confusion_matrix"] == cm.tolist()
    got = [np.nan if v is None else v for v in summary["iou"]]
    np.testing.assert_allclose(got, iou, rtol=1e-12)
    assert summary["miou"] == pytest.approx(float(np.nanmean(iou)))


def test_palette_pngs_against_shifted_prediction(real_data, tmp_path):
    # mmsegmentation's pseudo dataset: palette PNGs whose index is the class
    src = sorted((real_data / "mmsegmentation/tests/data/pseudo_dataset/gts").glob("*.png"))
    assert len(src) >= 5
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pairs = []
    for path in src:
        gt = np.array(Image.open(path))
        pred = np.roll(gt, (3, -2), axis=(0, 1))
        pred[pred == 255] = 0
        write_mask(pred_dir / path.name, pred)
        pairs.append((gt, pred))
    n = int(max(int(a[a != 255].max(initial=0)) for a, _ in pairs)) + 1
    out = tmp_path / "r"
    assert main(["evaluate", "--gt", str(src[0].parent), "--pred", str(pred_dir), "--num-classes", str(n),
                 "--out", str(out), "--workers", "1", "--quiet"]) == 0
    cm, iou = _reference_scores(pairs, n)
    assert cm.sum() > 0 and 0 < np.nanmean(iou) < 1  # the shift really costs something
    _check_summary(out, cm, iou)
    items = pq.read_table(out / "items").to_pylist()
    assert len(items) == len(src) and all(r["status"] == "ok" for r in items)


def _paint_reference(anns, h, w):
    # pycocotools' annToMask per annotation, later annotations on top, crowd -> ignore 255
    m = np.zeros((h, w), np.uint8)
    for a in anns:
        seg = a["segmentation"]
        if isinstance(seg, list):
            rle = pycocotools_mask.merge(pycocotools_mask.frPyObjects(seg, h, w)) if seg else None
        elif isinstance(seg["counts"], list):
            rle = pycocotools_mask.frPyObjects(seg, h, w)
        else:
            rle = seg
        if rle is None:
            continue
        m[pycocotools_mask.decode(rle).astype(bool)] = 255 if a.get("iscrowd") else a["category_id"]
    return m


def test_coco_ground_truth_against_coco_prediction(real_data, tmp_path):
    src = real_data / "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"
    coco = json.loads(src.read_text())
    # a prediction: no crowd regions, every third annotation missed, every fifth of another class
    pred_anns = []
    for k, a in enumerate(x for x in coco["annotations"] if not x.get("iscrowd")):
        if k % 3 == 2:
            continue
        b = dict(a)
        if k % 5 == 0:
            b["category_id"] = 1 if a["category_id"] != 1 else 2
        pred_anns.append(b)
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(dict(coco, annotations=pred_anns)))
    out = tmp_path / "r"
    assert main(["evaluate", "--gt", str(src), "--pred", str(pred_path), "--num-classes", "91",
                 "--out", str(out), "--workers", "2", "--shard-size", "16", "--quiet"]) == 0
    by_image = {"gt": defaultdict(list), "pred": defaultdict(list)}
    for a in coco["annotations"]:
        by_image["gt"][a["image_id"]].append(a)
    for a in pred_anns:
        by_image["pred"][a["image_id"]].append(a)
    pairs = []
    for img in sorted(coco["images"], key=lambda r: r["id"]):
        h, w = img["height"], img["width"]
        pairs.append((_paint_reference(by_image["gt"][img["id"]], h, w),
                      _paint_reference(by_image["pred"][img["id"]], h, w)))
    cm, iou = _reference_scores(pairs, 91)
    _check_summary(out, cm, iou)
    items = pq.read_table(out / "items").to_pylist()
    assert len(items) == len(coco["images"]) and all(r["status"] == "ok" for r in items)


def test_prediction_holding_the_ignore_value_scores_as_mmsegmentation(real_data, tmp_path):
    """Real palette PNGs, predictions shifted with a band of 255 (a model's "no class"
    output): a 255 on a valid ground-truth pixel is out of range, mmsegmentation's
    intersect_and_union makes it a false negative, and so does evaluate (no image dropped)."""
    from test_metrics import mmseg_intersect_and_union

    src = sorted((real_data / "mmsegmentation/tests/data/pseudo_dataset/gts").glob("*.png"))
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pairs = []
    for path in src:
        gt = np.array(Image.open(path))
        pred = np.roll(gt, (3, -2), axis=(0, 1))
        pred[: 2 + len(pairs)] = 255
        write_mask(pred_dir / path.name, pred)
        pairs.append((gt, pred))
    n = int(max(int(a[a != 255].max(initial=0)) for a, _ in pairs)) + 1
    n_out = sum(int(((g != 255) & (p >= n)).sum()) for g, p in pairs)
    assert n_out > 0  # the shifted ignore regions land on valid pixels
    out = tmp_path / "r"
    assert main(["evaluate", "--gt", str(src[0].parent), "--pred", str(pred_dir), "--num-classes", str(n),
                 "--out", str(out), "--workers", "1", "--quiet"]) == 0
    sums = sum(np.stack(mmseg_intersect_and_union(p, g, n, 255)) for g, p in pairs)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = sums[0] / sums[1]
    summary = json.loads((out / "run.json").read_text())["summary"]
    np.testing.assert_allclose([np.nan if v is None else v for v in summary["iou"]], iou, rtol=1e-15)
    assert summary["pixel_accuracy"] == pytest.approx(sums[0].sum() / sums[3].sum(), rel=1e-15)
    assert summary["scored_items"] == summary["ground_truth_items"] == len(src)
    assert summary["pred_out_of_range_pixels"] == n_out
