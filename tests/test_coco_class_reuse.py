"""validate's per-class pixels of COCO images come from the masks the checks built: same class map as a fresh rasterization."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmask import rle
from fastmask.cli import main
from fastmask.jobs import coverage
from fastmask.jobs.rules_coco import check_coco_image

TINYCOCO = "super-gradients/tests/data/tinycoco/annotations/instances_train2017.json"

H, W = 13, 17
xy = st.floats(-4, 22, allow_nan=False).map(lambda v: round(v, 1))
part = st.lists(xy, min_size=6, max_size=14).map(lambda p: p[: len(p) // 2 * 2])
bad_part = st.one_of(st.lists(xy, min_size=1, max_size=5), st.just([1, 2, 3, 4, 5, 6, 7]),
                     st.just([0, 0, float("nan"), 3, 4, 4]), st.just(["a", 1, 2, 3, 4, 5]), st.just(7))


@st.composite
def segmentation(draw, kinds=("poly", "poly", "rle", "crle", "empty", "bad_poly", "bad_rle", "none", "zero")):
    kind = draw(st.sampled_from(kinds))
    if kind == "poly":
        return draw(st.lists(part, min_size=1, max_size=3))
    if kind in ("rle", "crle", "zero"):
        m = np.zeros((H, W), np.uint8) if kind == "zero" else \
            np.array(draw(st.lists(st.booleans(), min_size=H * W, max_size=H * W)), np.uint8).reshape(H, W)
        r = rle.encode(np.asfortranarray(m))
        if kind == "crle":
            return {"size": [H, W], "counts": r["counts"].decode()}
        flat = m.reshape(-1, order="F")
        runs, cur, n = [], 0, 0
        for v in flat:
            if v != cur:
                runs.append(n)
                cur, n = v, 0
            n += 1
        runs.append(n)
        return {"size": [H, W], "counts": runs}
    if kind == "empty":
        return []
    if kind == "bad_poly":
        return draw(st.lists(st.one_of(part, bad_part), min_size=1, max_size=3))
    if kind == "bad_rle":
        return draw(st.sampled_from([{"size": [H + 1, W], "counts": [H * W + W]}, {"size": [H, W], "counts": [5]},
                                     {"size": [H, W], "counts": "!!"}, {"counts": [H * W]},
                                     {"size": [float(H), W], "counts": [H * W]}]))
    return None


@st.composite
def annotation(draw):
    a = {"id": draw(st.integers(1, 50)),
         "category_id": draw(st.one_of(st.integers(1, 6), st.sampled_from([0, 300, 70000, -3, None, "2", 2.0, True])))}
    seg = draw(segmentation())
    if seg is not None:
        a["segmentation"] = seg
    crowd = draw(st.sampled_from([0, 0, 0, 1, None, 2]))
    if crowd is not None:
        a["iscrowd"] = crowd
    return a


def reference_and_reused(anns, ignore):
    _, stats = check_coco_image({"id": 1, "width": W, "height": H}, anns, {1, 2, 3, 4, 5, 6})
    try:
        ref = coverage.coco_class_map(anns, H, W, ignore)[0]
    except (ValueError, TypeError):
        ref = None
    return ref, coverage.coco_class_map_from_rles(anns, stats.rles, H, W, ignore)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(annotation(), st.just("not a dict")), max_size=8), st.sampled_from([255, 0, 7, 1000, -1]))
def test_reused_class_map_equals_the_rasterized_one(anns, ignore):
    ref, new = reference_and_reused(anns, ignore)
    if new is not None:  # None: the caller rasterizes as before
        assert ref is not None
        assert new.dtype == ref.dtype and new.shape == ref.shape
        np.testing.assert_array_equal(new, ref)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"id": st.integers(1, 9), "category_id": st.integers(0, 70000),
                                       "iscrowd": st.sampled_from([0, 0, 1]),
                                       "segmentation": segmentation(("poly", "rle", "crle", "empty", "zero"))}),
                max_size=8))
def test_valid_images_take_the_reuse_path(anns):
    # every annotation readable: the class map is reused (no second rasterization), and equal
    ref, new = reference_and_reused(anns, 255)
    assert new is not None
    np.testing.assert_array_equal(new, ref)
    assert new.dtype == ref.dtype


def _tables(out):
    return {t: pq.read_table(out / t).to_pylist() for t in ("class_stats", "classes")} | {
        "items": pq.read_table(out / "items").drop_columns(
            [c for c in pq.read_table(out / "items").column_names if "time" in c or c.endswith("_s")]).to_pylist()}


def _both_paths(path, tmp_path, monkeypatch):
    new = tmp_path / "new"
    reused, fast = [], coverage.coco_class_map_from_rles
    monkeypatch.setattr(coverage, "coco_class_map_from_rles", lambda *a: reused.append(fast(*a)) or reused[-1])
    assert main(["validate", str(path), "--out", str(new), "--workers", "1", "--quiet"]) in (0, 1, 2)
    monkeypatch.setattr(coverage, "coco_class_map_from_rles", lambda *a, **k: None)  # the rasterizing path
    old = tmp_path / "old"
    assert main(["validate", str(path), "--out", str(old), "--workers", "1", "--quiet"]) in (0, 1, 2)
    assert any(m is not None for m in reused)  # the new path did run
    return _tables(new), _tables(old), reused


def test_real_coco_class_tables_identical(real_data, tmp_path, monkeypatch):
    new, old, reused = _both_paths(real_data / TINYCOCO, tmp_path, monkeypatch)
    assert all(m is not None for m in reused)  # every image of the sample reuses its masks
    assert new["class_stats"] and new == old


def test_generated_coco_class_tables_identical(tmp_path, monkeypatch):
    # overlaps, crowd RLEs, multi-part polygons, invalid / empty annotations, unknown categories
    rng = np.random.default_rng(5)
    images, anns = [], []
    aid = 0
    for i in range(60):
        images.append({"id": i + 1, "width": W, "height": H, "file_name": f"{i}.jpg"})
        for _ in range(int(rng.integers(0, 7))):
            aid += 1
            k = int(rng.integers(0, 8))
            a = {"id": aid, "image_id": i + 1, "category_id": int(rng.choice([1, 2, 3, 3, 9])), "iscrowd": 0,
                 "bbox": [0, 0, 5, 5]}
            if k <= 2:
                a["segmentation"] = [rng.uniform(-2, 19, 2 * int(rng.integers(3, 7))).round(1).tolist()
                                     for _ in range(int(rng.integers(1, 4)))]
            elif k == 3:
                m = np.asfortranarray(rng.random((H, W)) < 0.3, np.uint8)
                a["segmentation"] = {"size": [H, W], "counts": rle.encode(m)["counts"].decode()}
                a["iscrowd"] = 1
            elif k == 4:
                a["segmentation"] = []
            elif k == 5:
                a["segmentation"] = [[1, 2, 3]]
            elif k == 6:
                a["segmentation"] = {"size": [H + 2, W], "counts": [H * W]}
            else:
                a["segmentation"] = [[0, 0, 9, 0, 9, 9, 0, 9], [4, 4, 16, 4, 16, 12]]
            anns.append(a)
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    p = tmp_path / "gen.json"
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    new, old, _ = _both_paths(p, tmp_path, monkeypatch)
    assert new["class_stats"] and new == old
