"""`fastmask coverage`: known answers on generated masks, COCO against a pycocotools reference."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pycocotools import mask as pm

from fastmask.cli import main
from fastmask.formats import write_mask
from fastmask.jobs.coverage import BINS, coverage_bin


def test_bins():
    assert [coverage_bin(f) for f in (0.0, 0.0009, 0.001, 0.0099, 0.2, 0.5, 0.74, 0.75, 1.0)] == [0, 0, 1, 1, 4, 6, 6, 7, 7]
    assert len(BINS) == 9


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    for i in range(10):
        m = np.zeros((10, 10), np.uint8)
        m[:5, :] = 1          # class 1: 50% of every image
        m[5:5 + i // 2, :] = 2  # class 2: 0..40%
        m[9, 9] = 255         # one ignore pixel
        write_mask(root / f"m{i:02d}.png", m)
    return root


def test_known_answers(folder, tmp_path):
    out = tmp_path / "r"
    assert main(["coverage", str(folder), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    rows = pq.read_table(out / "class_coverage").to_pylist()
    c1 = [r for r in rows if r["class_id"] == 1]
    assert len(c1) == 10 and all(r["pixels"] == 50 and r["fraction"] == 0.5 and r["bin"] == 6 for r in c1)
    c2 = {r["item_id"]: r for r in rows if r["class_id"] == 2}
    assert sorted(c2) == [f"m{i:02d}" for i in range(2, 10)]  # images 0 and 1 have no class 2
    assert c2["m09"]["pixels"] == 40 and c2["m09"]["bin"] == 5
    items = {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert all(r["ignore_pixels"] == 1 for r in items.values())
    classes = {r["class_id"]: r for r in pq.read_table(out / "classes").to_pylist()}
    assert set(classes) == {1, 2}
    assert classes[1]["images"] == 10 and classes[1]["pixels"] == 500 and classes[1]["dataset_fraction"] == 0.5
    assert classes[2]["images"] == 8 and sum(classes[2]["histogram"]) == 8
    assert classes[2]["histogram"][4] == 4 and classes[2]["histogram"][5] == 4  # 10-20% -> 10-25%, 30-40% -> 25-50%
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["images"] == 10 and run["summary"]["bins"] == list(BINS)
    assert len(run["summary"]["shards"]) == run["shards"]


def test_worker_and_shard_independence(folder, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["coverage", str(folder), "--out", str(a), "--workers", "1", "--quiet"]) == 0
    assert main(["coverage", str(folder), "--out", str(b), "--workers", "2", "--shard-size", "3", "--quiet"]) == 0
    assert pq.read_table(a / "class_coverage").equals(pq.read_table(b / "class_coverage"))
    assert pq.read_table(a / "classes").equals(pq.read_table(b / "classes"))


def test_coco_coverage_equals_pycocotools_reference(real_data, tmp_path):
    path = real_data / "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"
    out = tmp_path / "r"
    assert main(["coverage", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    coco = json.loads(path.read_text())
    got: dict[tuple[str, int], int] = {}
    for r in pq.read_table(out / "class_coverage").to_pylist():
        got[(r["item_id"], r["class_id"])] = r["pixels"]
    expect: dict[tuple[str, int], int] = {}
    for img in coco["images"]:
        h, w = img["height"], img["width"]
        lm = np.zeros((h, w), np.int64)
        for ann in [a for a in coco["annotations"] if a["image_id"] == img["id"]]:  # file order: later wins
            seg = ann["segmentation"]
            rle = pm.merge(pm.frPyObjects(seg, h, w)) if isinstance(seg, list) else pm.frPyObjects(seg, h, w)
            lm[pm.decode(rle) > 0] = 255 if ann["iscrowd"] else ann["category_id"]
        values, counts = np.unique(lm, return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist()):
            if v not in (0, 255):
                expect[(f"{img['id']:012d}", v)] = c
    assert got == expect
