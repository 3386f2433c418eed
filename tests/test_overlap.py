"""Overlapping COCO annotations: duplicates vs containment, and a candidate search that scales with the overlaps."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmask import rle
from fastmask.jobs import rules_instances
from fastmask.jobs.validate_rules import RuleConfig, bbox_pairs, check_coco_image, instance_overlap

TINYCOCO = "super-gradients/tests/data/tinycoco/annotations/instances_train2017.json"


def all_pairs(boxes):
    """The reference: every pair tested (what the rule did before the sweep)."""
    b = np.asarray(boxes, float).reshape(-1, 4)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    ii, jj = np.triu_indices(len(b), k=1)
    ok = (np.minimum(x1[ii], x1[jj]) > np.maximum(x0[ii], x0[jj])) & \
         (np.minimum(y1[ii], y1[jj]) > np.maximum(y0[ii], y0[jj])) & \
         (b[ii, 2] > 0) & (b[ii, 3] > 0) & (b[jj, 2] > 0) & (b[jj, 3] > 0)
    return set(zip(ii[ok].tolist(), jj[ok].tolist()))


def sweep_pairs(boxes, **kw):
    out = []
    for i, j in bbox_pairs(boxes, **kw):
        assert (i < j).all()
        out += list(zip(i.tolist(), j.tolist()))
    assert len(out) == len(set(out))  # each pair once
    return set(out)


coord = st.integers(-5, 40)
side = st.integers(0, 15)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(coord, coord, side, side), min_size=0, max_size=40), st.integers(1, 50))
def test_sweep_finds_exactly_the_all_pairs_pairs(boxes, block):
    # ties in x0, touching edges, zero-size boxes and tiny blocks (a box's partners span blocks)
    b = np.array(boxes, float).reshape(-1, 4)
    assert sweep_pairs(b, block=block) == all_pairs(b)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.floats(0, 20), st.floats(0, 20)),
                max_size=30))
def test_sweep_matches_all_pairs_on_float_boxes(boxes):
    b = np.array(boxes, float).reshape(-1, 4)
    assert sweep_pairs(b) == all_pairs(b)


def test_sweep_ignores_nan_boxes():
    b = np.array([[0, 0, 4, 4], [np.nan, 0, 4, 4], [1, 1, 2, 2]], float)
    assert sweep_pairs(b) == {(0, 2)}


def _squares(n: int, side: int = 3, gap: int = 1):
    """n disjoint side x side squares on one image (row-major grid) as COCO polygons."""
    per_row = int(np.ceil(np.sqrt(n)))
    step = side + gap
    out = []
    for k in range(n):
        x, y = (k % per_row) * step, (k // per_row) * step
        out.append([float(x), float(y), float(x + side), float(y), float(x + side), float(y + side),
                    float(x), float(y + side)])
    return out, per_row * step


def _work(boxes):
    """Pairs the sweep looks at (along its axis), before the other axis is tested."""
    b = np.asarray(boxes, float)
    plan = rules_instances._sweep_plan(b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3])
    return 0 if plan is None else int(plan[1].sum())


def test_many_disjoint_annotations_on_one_image_give_few_candidates():
    polys, size = _squares(20_000)
    boxes = np.array([[p[0], p[1], 3, 3] for p in polys], float)
    assert sweep_pairs(boxes) == set()  # all pairs would be 199,990,000
    # a box's partners along the sweep axis are the squares of its own grid column (141 rows)
    assert _work(boxes) <= 20_000 * 141
    # full-width stripes stacked on each other meet along x only: the sweep runs along y
    stripes = np.array([[0, 2 * k, 1000, 1] for k in range(20_000)], float)
    assert sweep_pairs(stripes) == set() and _work(stripes) == 0
    assert _work(stripes[:, [1, 0, 3, 2]]) == 0  # and tall columns side by side, along x
    image = {"id": 1, "width": size, "height": size}
    anns = [{"id": k + 1, "category_id": 1, "segmentation": [p], "bbox": [p[0], p[1], 3, 3], "iscrowd": 0}
            for k, p in enumerate(polys)]
    found, stats = check_coco_image(image, anns, {1})
    assert found == [] and stats.n_polygon == 20_000


def test_duplicate_vs_containment_vs_sliver():
    h = w = 64
    big, same, inside, corner, far = rle.frPyObjects(
        [[0, 0, 20, 20], [1, 0, 20, 20], [2, 2, 6, 6], [19, 19, 10, 10], [40, 40, 5, 5]], h, w)
    f = instance_overlap([big, same, inside, corner, far], [1, 2, 3, 4, 5], category_ids=[7, 7, 9, 7, 7])
    by = {tuple(x.extra["ids"]): x for x in f}
    # IoU 380/420 = 0.90: one object annotated twice (same category)
    d = by[(1, 2)]
    assert (d.rule, d.severity, d.pixels) == ("duplicate_annotation", "warning", 380)
    assert "annotated twice" in d.message and abs(d.extra["iou"] - 380 / 420) < 1e-12
    # a small box inside both: containment, information only
    assert {by[(1, 3)].rule, by[(2, 3)].rule} == {"instance_overlap"} and by[(1, 3)].severity == "info"
    # a 1-px corner overlap: neither
    assert set(by) == {(1, 2), (1, 3), (2, 3)}
    assert [x.rule for x in f] == ["duplicate_annotation", "instance_overlap", "instance_overlap"]


def test_duplicate_threshold_is_a_parameter_and_rules_switch_off_separately():
    a, b = rle.frPyObjects([[0, 0, 10, 10], [0, 0, 10, 12]], 32, 32)  # IoU 100/120 = 0.83
    assert [x.rule for x in instance_overlap([a, b])] == ["duplicate_annotation"]
    assert "two labels" in instance_overlap([a, b], category_ids=[3, 8])[0].message
    assert [x.rule for x in instance_overlap([a, b], config=RuleConfig(duplicate_min_iou=0.9))] == ["instance_overlap"]
    # duplicates off: the pair is still an overlap; overlaps off: duplicates still found
    assert [x.rule for x in instance_overlap([a, b], config=RuleConfig(disabled={"duplicate_annotation"}))] == \
        ["instance_overlap"]
    assert [x.rule for x in instance_overlap([a, b], config=RuleConfig(disabled={"instance_overlap"}))] == \
        ["duplicate_annotation"]
    assert instance_overlap([a, b], config=RuleConfig(disabled={"instance_overlap", "duplicate_annotation"})) == []
    with pytest.raises(ValueError, match="duplicate_min_iou"):
        RuleConfig(duplicate_min_iou=0)
    with pytest.raises(ValueError, match="duplicate_min_iou"):
        RuleConfig(duplicate_min_iou=1.5)


def test_identical_one_pixel_annotations_are_duplicates():
    a, b = rle.frPyObjects([[3, 3, 1, 1], [3, 3, 1, 1]], 8, 8)
    assert [x.rule for x in instance_overlap([a, b], config=RuleConfig(overlap_min_pixels=5))] == \
        ["duplicate_annotation"]


def test_real_coco_two_double_labels_are_the_only_warnings(real_data):
    import collections

    d = json.loads((real_data / TINYCOCO).read_text())
    by = collections.defaultdict(list)
    for a in d["annotations"]:
        by[a["image_id"]].append(a)
    cats = {c["id"] for c in d["categories"]}
    found = []
    for im in d["images"]:
        found += check_coco_image(im, by.get(im["id"], []), cats)[0]
    warnings = [x for x in found if x.severity != "info"]
    assert sorted((x.rule, tuple(x.extra["ids"]), tuple(x.extra["categories"])) for x in warnings) == [
        ("duplicate_annotation", (101073, 2223647), (62, 63)),   # a chair as chair and couch, IoU 0.93
        ("duplicate_annotation", (135645, 1374126), (3, 8)),     # a car as car and truck, IoU 0.90
    ]
    ious = sorted(round(x.extra["iou"], 2) for x in warnings)
    assert ious == [0.9, 0.93]
    # the cups on tables and other containments are still there, as information
    infos = [x for x in found if x.rule == "instance_overlap"]
    assert len(infos) > 30 and all(x.severity == "info" and x.extra["iou"] < 0.7 for x in infos)


@pytest.mark.slow
def test_many_annotations_peak_memory(tmp_path):
    """20,000 disjoint 3x3 squares on one image (a ~3 MB JSON): validate's peak RSS stays small
    (the all-pairs method needed ~10 GB)."""
    polys, size = _squares(20_000)
    doc = {"images": [{"id": 1, "width": size, "height": size, "file_name": "a.jpg"}],
           "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": [p],
                            "bbox": [p[0], p[1], 3, 3], "area": 9, "iscrowd": 0} for k, p in enumerate(polys)],
           "categories": [{"id": 1, "name": "x"}]}
    path = tmp_path / "many.json"
    path.write_text(json.dumps(doc))
    code = textwrap.dedent(f"""
        import json, resource, sys
        from fastmask.cli import main
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rc = main(["validate", {str(path)!r}, "--out", {str(tmp_path / 'r')!r}, "--workers", "1", "--quiet"])
        peak = max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        print(json.dumps({{"rc": rc, "peak_kib": peak,
                           "before_kib": before}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0
    assert res["peak_kib"] < 1_000_000, res  # < 1 GB (measured 0.29 GB, of which 0.19 GB before the run)
