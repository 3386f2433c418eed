"""Work per item bounded by its pixels: hostile masks (one-pixel checkerboards, 1-px strips,
noise) give a bounded number of findings with the totals kept, the labeling never builds a
Python object per component, and an item above the per-item memory budget is an error row
``too_complex`` (the run goes on).

Oracles: scipy.ndimage's component labeling (islands, split instances) and brute-force NumPy
(conflict extents, totals). The slow tests run ``fastmask validate`` in a child process on
adversarial files and bound its peak RSS.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from fastmask.engine import ItemError
from fastmask.jobs import rules_semantic as RS
from fastmask.jobs import validate_rules as R
from fastmask.jobs.budget import check_item_memory, estimate_bytes, parse_size, run_bytes
from fastmask.kernels.validate import count_runs

EIGHT = np.ones((3, 3), bool)


def _islands_reference(m, cfg, label_ids=None):
    """Per class value: the components smaller than min_island (scipy), in raster order of
    their first pixel, as (area, (x, y, w, h))."""
    out = {}
    structure = EIGHT if cfg.connectivity == 8 else None
    for v in np.unique(m).tolist():
        if v in (cfg.background, cfg.ignore_value) or (label_ids is not None and v not in label_ids):
            continue
        lab, n = ndimage.label(m == v, structure=structure)
        if not n:
            continue
        objs = ndimage.find_objects(lab)
        areas = np.bincount(lab.ravel())[1:]
        first = [int(np.flatnonzero(lab.ravel() == i + 1)[0]) for i in range(n)]
        isl = []
        for i in np.argsort(first, kind="stable"):
            if areas[i] < cfg.min_island:
                sy, sx = objs[i]
                isl.append((int(areas[i]), (sx.start, sy.start, sx.stop - sx.start, sy.stop - sy.start)))
        if isl:
            out[v] = isl
    return out


def _check_islands(findings, ref, cfg):
    got = [f for f in findings if f.rule == "tiny_island"]
    k = cfg.max_findings
    classes = sorted(ref)
    assert len(got) == min(len(classes), k) + (len(classes) > k)
    for f, c in zip(got, classes[:k]):
        isl = ref[c]
        areas = [a for a, _ in isl]
        boxes = np.array([b for _, b in isl])
        big = areas.index(max(areas))
        assert f.class_id == c and f.pixels == sum(areas) and f.extra["count"] == len(isl)
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        assert f.bbox == (x0, y0, (boxes[:, 0] + boxes[:, 2]).max() - x0, (boxes[:, 1] + boxes[:, 3]).max() - y0)
        assert f.extra["largest_area"] == areas[big] and tuple(f.extra["largest_bbox"]) == isl[big][1]
        assert [tuple(b) for b in f.extra["bboxes"]] == [b for _, b in isl[:10]]
    if len(classes) > k:  # the summary keeps the totals of the other classes
        rest = [ref[c] for c in classes[k:]]
        s = got[-1]
        assert s.class_id is None and s.extra["summary"] and s.extra["classes"] == len(rest)
        assert s.extra["count"] == sum(len(r) for r in rest)
        assert s.pixels == sum(a for r in rest for a, _ in r)


@st.composite
def hostile_masks(draw):
    kind = draw(st.sampled_from(["checker", "tiles", "strip", "noise", "blobs"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 64))
    if kind == "checker":
        m = (np.indices((h, w)).sum(axis=0) % 2).astype(np.uint8) * draw(st.sampled_from([1, 7]))
    elif kind == "tiles":  # 2x2 tiling of four values: no pixel touches its own value (one component each)
        m = (np.array([[1, 2], [3, 4]], np.uint8)[np.indices((h, w))[0] % 2, np.indices((h, w))[1] % 2])
    elif kind == "strip":
        m = (np.arange(h * w) % 3).astype(np.uint8).reshape(1, -1)
    elif kind == "noise":
        m = rng.integers(0, draw(st.sampled_from([2, 5, 200])), (h, w)).astype(np.uint8)
    else:
        m = np.zeros((h, w), np.uint8)
        for _ in range(5):
            y, x = rng.integers(0, h), rng.integers(0, w)
            m[y:y + rng.integers(1, 9), x:x + rng.integers(1, 9)] = rng.integers(1, 6)
    return np.ascontiguousarray(m)


@settings(max_examples=150, deadline=None)
@given(m=hostile_masks(), conn=st.sampled_from([4, 8]), k=st.sampled_from([0, 1, 3, 100]),
       min_island=st.sampled_from([1, 2, 5]), labels=st.sampled_from([None, (0, 1, 2, 3, 4)]))
def test_tiny_island_summaries_equal_scipy_and_are_capped(m, conn, k, min_island, labels):
    cfg = R.RuleConfig(connectivity=conn, min_island=min_island, island_min_image_pixels=0, max_findings=k)
    ref = _islands_reference(m, cfg, labels)
    findings, stats = R.check_class_mask(m, labels, cfg)
    _check_islands(findings, ref, cfg)
    quick = RS.quick_class_mask(m, labels, cfg)
    if quick is not None:  # the one-call path gives the same capped findings
        assert [f.__dict__ for f in quick[0] if f.rule == "tiny_island"] == \
               [f.__dict__ for f in findings if f.rule == "tiny_island"]
    # the public function, with and without precomputed component statistics
    from fastmask.components import component_stats

    assert [f.__dict__ for f in R.tiny_island(m, cfg, label_ids=labels)] == \
           [f.__dict__ for f in findings if f.rule == "tiny_island"]
    cs = component_stats(m, connectivity=conn, background=0)
    assert [f.__dict__ for f in R.tiny_island(m, cfg, cstats=cs, label_ids=labels)] == \
           [f.__dict__ for f in findings if f.rule == "tiny_island"]


def test_many_island_classes_one_summary_with_totals():
    # 200 classes, each 3 one-pixel islands: 100 findings and one summary of the other 100
    m = np.zeros((64, 640), np.uint8)
    for c in range(1, 201):
        for r in (5, 25, 45):
            m[r, 3 * c] = c
    cfg = R.RuleConfig(island_min_image_pixels=0)
    findings, stats = R.check_class_mask(m, None, cfg)
    isl = [f for f in findings if f.rule == "tiny_island"]
    assert len(isl) == 101 and [f.class_id for f in isl[:100]] == list(range(1, 101))
    s = isl[-1]
    assert (s.class_id, s.extra["classes"], s.extra["count"], s.pixels) == (None, 100, 300, 300)
    assert s.extra["class_ids"] == list(range(101, 121))
    assert s.bbox == (303, 5, 600 - 303 + 1, 41)
    assert stats.components == {c: 3 for c in range(1, 201)}  # the per-class totals are all kept
    assert RS.quick_class_mask(m, None, cfg)[0] == isl


def test_adversarial_masks_give_bounded_findings_and_exact_totals():
    h = w = 120
    tiles = np.array([[1, 2], [3, 4]], np.uint8)[np.indices((h, w))[0] % 2, np.indices((h, w))[1] % 2]
    strip = (np.arange(40_000) % 3).astype(np.uint8).reshape(1, -1)
    noise = np.random.default_rng(0).integers(0, 256, (h, w)).astype(np.uint8)
    for m in (tiles, strip, noise):
        cfg = R.RuleConfig(connectivity=8, max_findings=10)
        findings, stats = R.check_class_mask(m, None, cfg)
        by_rule: dict[str, int] = {}
        for f in findings:
            by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
        assert all(n <= 11 for n in by_rule.values()), by_rule
        # every component counted, and every island, though at most 11 findings
        ref = {}
        for v in np.unique(m).tolist():
            if v not in (0, 255):
                ref[v] = ndimage.label(m == v, structure=EIGHT)[1]
        assert stats.components == ref
        isl = [f for f in findings if f.rule == "tiny_island"]
        islands = _islands_reference(m, cfg)
        assert sum(f.extra["count"] for f in isl) == sum(len(v) for v in islands.values())


def _split_reference(inst, conn):
    out = {}
    for v in np.unique(inst).tolist():
        if v in (0, 255):
            continue
        lab, n = ndimage.label(inst == v, structure=EIGHT if conn == 8 else None)
        if n > 1:
            out[v] = sorted(np.bincount(lab.ravel())[1:].tolist(), reverse=True)
    return out


@pytest.mark.parametrize("conn", [4, 8])
def test_disconnected_instance_capped_with_totals(conn):
    # 300 instance ids (uint16), each in two separate squares
    inst = np.zeros((40, 1200), np.uint16)
    for i in range(300):
        inst[2:4, 4 * i:4 * i + 2] = i + 1
        inst[30:33, 4 * i:4 * i + 3] = i + 1
    ref = _split_reference(inst, conn)
    cfg = R.RuleConfig(connectivity=conn, max_findings=50)
    f = R.disconnected_instance(inst, cfg)
    assert len(f) == 51
    for x, v in zip(f[:50], sorted(ref)[:50]):
        assert x.instance_id == v and x.extra["areas"] == ref[v] and x.pixels == sum(ref[v])
    s = f[-1]
    rest = sorted(ref)[50:]
    assert s.extra["summary"] and s.extra["instances"] == len(rest) and s.instance_id is None
    assert s.extra["n_components"] == sum(len(ref[v]) for v in rest)
    assert s.pixels == sum(sum(ref[v]) for v in rest)
    assert s.bbox == (200, 2, 1200 - 200 - 1, 31)
    # without the cap: one finding per split instance, as many as scipy finds
    assert len(R.disconnected_instance(inst, R.RuleConfig(connectivity=conn, max_findings=10**6))) == len(ref)


@pytest.mark.parametrize("n_ids", [300, 5000])  # dense joint histogram / sorted pairs
def test_instance_class_conflict_capped_boxes_equal_brute_force(n_ids):
    rng = np.random.default_rng(n_ids)
    inst = rng.integers(1, n_ids, (60, 90)).astype(np.uint16)
    cls = rng.integers(0, 3000 if n_ids > 1000 else 4, (60, 90)).astype(np.uint16)
    cfg = R.RuleConfig(max_findings=20)
    f = R.instance_class_conflict(inst, cls, cfg)
    seen = cls != 255  # the ignore value is no class
    flagged = [v for v in np.unique(inst).tolist() if v != 255 and np.unique(cls[(inst == v) & seen]).size > 1]
    assert len(f) == min(20, len(flagged)) + (len(flagged) > 20)
    minority_total = 0
    for v in flagged:
        vals, cnt = np.unique(cls[(inst == v) & seen], return_counts=True)
        minority_total += int(cnt.sum() - cnt.max())
    for x, v in zip(f[:20], flagged[:20]):
        vals, cnt = np.unique(cls[(inst == v) & seen], return_counts=True)
        major = int(vals[np.argmax(cnt)])
        ys, xs = np.nonzero((inst == v) & (cls != major) & seen)
        assert (x.instance_id, x.class_id, x.pixels) == (v, major, int(cnt.sum() - cnt.max()))
        assert x.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    s = f[-1]
    assert s.extra["summary"] and s.extra["instances"] == len(flagged) - 20
    assert sum(x.pixels for x in f) == minority_total  # totals kept


def test_segment_mismatch_capped_extent_only_for_kept_findings():
    ids = np.arange(1, 501, dtype=np.uint32).repeat(3).reshape(30, 50)
    f, st = R.segment_mismatch(ids, [{"id": 1, "category_id": 1, "area": 3}], R.RuleConfig(max_findings=30))
    assert len(f) == 31 and st["png_ids"] == 500
    assert all(x.extra["problem"] == "not_in_json" and x.bbox is not None for x in f[:30])
    s = f[-1]
    assert s.extra["summary"] and s.extra["problems"] == {"not_in_json": 469} and s.pixels == 469 * 3


def test_unexpected_value_summary_lists_are_capped():
    m = (np.arange(3000, dtype=np.uint16) + 300).reshape(30, 100)  # 255 (ignore) left out
    f = R.unexpected_value(m, [0], max_findings=20)
    s = f[-1]
    assert s.extra["n_values"] == 2980 and len(s.extra["values"]) == 1000 and s.pixels == 2980
    assert s.bbox == (0, 0, 100, 30)


# --------------------------------------------------------------------------- the budget


def test_budget_estimate_counts_runs():
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.uint8)
    smooth = np.zeros((64, 64), np.uint8)
    smooth[10:30, 5:40] = 3
    assert count_runs(checker) == 64 * 64 and count_runs(smooth) == 64 + 2 * 20
    assert run_bytes(checker) == 26 and run_bytes(checker.astype(np.uint16)) == 28
    assert estimate_bytes(checker) - estimate_bytes(checker, runs=0) == 64 * 64 * 26
    budget = estimate_bytes(smooth) + 1
    check_item_memory(smooth, budget)  # same size, few runs: fits
    with pytest.raises(ItemError) as e:
        check_item_memory(checker, budget)
    assert e.value.code == "too_complex" and "4,096 runs" in e.value.message
    with pytest.raises(ItemError) as e:  # background runs are not labeled: not counted
        check_item_memory(checker, budget, background=0)
    assert "2,048 runs" in e.value.message
    check_item_memory(checker, None)


def test_parse_size():
    assert parse_size("1G") == 2**30 and parse_size("512MiB") == 512 * 2**20 and parse_size("1000") == 1000
    assert parse_size("none") is None and parse_size("1.5k") == 1536
    for bad in ("", "x", "-1G", "1Q"):
        with pytest.raises(ValueError):
            parse_size(bad)


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    return subprocess.run([sys.executable, "-m", "fastmask", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def small_hostile(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_small")
    d = root / "masks"
    d.mkdir()
    Image.fromarray((np.indices((300, 300)).sum(axis=0) % 2).astype(np.uint8)).save(d / "checker.png")
    smooth = np.zeros((300, 300), np.uint8)
    smooth[50:120, 60:200] = 1
    smooth[200, 200] = 2
    Image.fromarray(smooth).save(d / "smooth.png")
    return d


@pytest.mark.parametrize("command", ["validate", "instances"])
def test_item_over_budget_is_a_too_complex_row(small_hostile, tmp_path, command):
    out = tmp_path / "out"
    p = _cli(command, str(small_hostile), "--out", str(out), "--workers", "1", "--quiet",
             "--max-item-memory", "1M")
    assert p.returncode in (0, 1), p.stderr[-2000:]
    items = {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert set(items) == {"checker", "smooth"}
    assert (items["checker"]["status"], items["checker"]["error_code"]) == ("error", "too_complex")
    assert "above the per-item budget" in items["checker"]["error_message"]
    assert items["smooth"]["status"] == "ok"
    if command == "validate":
        assert (items["checker"]["width"], items["checker"]["height"]) == (300, 300)
        # an unchecked item is an error finding: the exit code says the run did less than asked
        assert p.returncode == 1
        found = [(f["item_id"], f["rule"], json.loads(f["extra"])["error_code"])
                 for f in pq.read_table(out / "findings").to_pylist() if f["rule"] == "unreadable"]
        assert found == [("checker", "unreadable", "too_complex")]
    # with a budget that fits, both are done
    p = _cli(command, str(small_hostile), "--out", str(out), "--workers", "1", "--quiet", "--overwrite")
    assert p.returncode in (0, 1), p.stderr[-2000:]
    assert {r["status"] for r in pq.read_table(out / "items").to_pylist()} == {"ok"}


def test_bad_budget_is_a_usage_error(small_hostile, tmp_path):
    p = _cli("validate", str(small_hostile), "--out", str(tmp_path / "o"), "--max-item-memory", "lots")
    assert p.returncode == 2 and "--max-item-memory" in p.stderr


# --------------------------------------------------------------------------- peak memory (slow)


def _peak_rss_mb(*args: str) -> tuple[int, float]:
    """Run ``python -m fastmask ARGS`` in a child whose address space is capped at 6 GB;
    returns its exit code and peak RSS (MB), measured with a fresh grandchild rusage."""
    code = ("import resource, subprocess, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))\n"
            "p = subprocess.run([sys.executable, '-m', 'fastmask', *sys.argv[1:]], capture_output=True)\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=1200)
    rc, kb = p.stdout.split()
    return int(rc), int(kb) / 1024


@pytest.fixture(scope="module")
def adversarial(tmp_path_factory) -> dict[str, Path]:
    """A 4000x4000 one-pixel checkerboard, a 1 x 16,000,000 strip of 0/1/2 and 4000x4000
    noise (values 0..255), one per folder (16 M pixels each)."""
    root = tmp_path_factory.mktemp("adversarial")
    n = 4000
    row = (np.arange(n) % 2).astype(np.uint8)
    checker = np.empty((n, n), np.uint8)
    checker[0::2], checker[1::2] = row, 1 - row
    arrays = {"checker": checker, "strip": (np.arange(n * n) % 3).astype(np.uint8).reshape(1, -1),
              "noise": np.random.default_rng(0).integers(0, 256, (n, n)).astype(np.uint8)}
    out = {}
    for name, a in arrays.items():
        (root / name).mkdir()
        Image.fromarray(a).save(root / name / "a.png")
        out[name] = root / name
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["checker", "strip", "noise"])
def test_validate_peak_memory_is_bounded_by_the_pixels(adversarial, tmp_path, name):
    """16 M pixels: validate (labeling every component, no budget) stays within 40 bytes a
    pixel above scan's peak and within 2.5x scan; before the bounded labeling the strip
    took ~3.4 GB and the noise ~5 GB here."""
    ds = str(adversarial[name])
    rc, scan = _peak_rss_mb("scan", ds, "--out", str(tmp_path / "s"), "--workers", "1", "--quiet")
    assert rc == 0
    rc, val = _peak_rss_mb("validate", ds, "--out", str(tmp_path / "v"), "--workers", "1", "--quiet",
                           "--max-item-memory", "none")
    assert rc in (0, 1)
    items = pq.read_table(tmp_path / "v" / "items").to_pylist()
    assert [r["status"] for r in items] == ["ok"]
    assert val - scan < 40 * 16, (val, scan)
    assert val < 2.5 * scan, (val, scan)
    f = pq.read_table(tmp_path / "v" / "findings").to_pylist()
    assert sum(r["rule"] == "tiny_island" for r in f) <= 101


@pytest.mark.slow
def test_over_budget_item_costs_about_what_scan_does(adversarial, tmp_path):
    ds = str(adversarial["noise"])
    rc, scan = _peak_rss_mb("scan", ds, "--out", str(tmp_path / "s"), "--workers", "1", "--quiet")
    rc, val = _peak_rss_mb("validate", ds, "--out", str(tmp_path / "v"), "--workers", "1", "--quiet",
                           "--max-item-memory", "64M")
    items = pq.read_table(tmp_path / "v" / "items").to_pylist()
    assert [r["error_code"] for r in items] == ["too_complex"]
    assert val < 1.3 * scan, (val, scan)


def test_coverage_panoptic_counts_as_arrays_equal_a_dict_reference():
    """coverage's panoptic path (arrays, not one Python object per PNG id) against the
    per-id dict it replaced: unknown ids and void count as background, a repeated
    segment id keeps its last record."""
    from types import SimpleNamespace

    from fastmask.jobs.coverage import CoverageJob

    rng = np.random.default_rng(3)
    ids = rng.integers(0, 3000, (50, 70)).astype(np.uint32)
    segs = [{"id": int(i), "category_id": int(rng.integers(1, 9))} for i in rng.choice(3000, 800, replace=False)]
    segs += [{"id": segs[0]["id"], "category_id": 42}, {"id": 2**70, "category_id": 5}, {"category_id": 1}]
    cat = {int(s["id"]): int(s["category_id"]) for s in segs if "id" in s and "category_id" in s}
    ref: dict[int, int] = {}
    for i, n in zip(*np.unique(ids, return_counts=True)):
        c = cat.get(int(i), 0)
        ref[c] = ref.get(c, 0) + int(n)
    data = SimpleNamespace(annotations=None, segments=segs,
                           instance_mask=SimpleNamespace(array=ids, width=70, height=50))
    job = CoverageJob.__new__(CoverageJob)
    values, pixels, w, h, skipped = job._class_counts({}, data)
    assert dict(zip(values, pixels)) == ref and values == sorted(ref) and (w, h) == (70, 50)


def test_instances_per_class_equals_the_2d_unique():
    from fastmask.jobs.validate import _instances_per_class

    rng = np.random.default_rng(5)
    for t in range(200):
        n = int(rng.integers(1, 400))
        cls = rng.integers(-3 if t % 4 == 0 else 0, int(rng.integers(1, 300)), n)
        cls = cls.astype(np.int64 if t % 4 == 0 else np.uint16)
        inst = rng.integers(0, int(rng.integers(1, 3000)), n).astype(np.uint16)
        pairs = np.unique(np.stack([cls.astype(np.int64), inst.astype(np.int64)]), axis=1)
        ref = np.unique(pairs[0], return_counts=True)
        got = _instances_per_class(cls, inst)
        assert got[0].tolist() == ref[0].tolist() and got[1].tolist() == ref[1].tolist()
