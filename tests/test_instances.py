"""fastmask instances: instance maps vs scipy.ndimage.label partitions, id schemes, 32-bit output, errors, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmask.cli import main
from fastmask.engine import load_report_table, run_job
from fastmask.formats import open_dataset, read_mask, write_mask
from fastmask.jobs.instances import InstancesJob
from fastmask.raster import paint_annotations

STRUCT = {4: ndi.generate_binary_structure(2, 1), 8: ndi.generate_binary_structure(2, 2)}


def run_instances(src, out, **kw):
    ds = open_dataset(src)
    job = InstancesJob(ds, out, **kw)
    return run_job(job, ds.manifest(), out, workers=1, quiet=True)


def expected_instances(cls, connectivity, base, background=0, ignore=255):
    """Reference: per class, scipy components numbered by the raster order of their first pixel."""
    exp = np.zeros(cls.shape, np.int64)
    rows = []
    for c in np.unique(cls).tolist():
        if c == background or c == ignore:
            continue
        lab, n = ndi.label(cls == c, STRUCT[connectivity])  # scipy numbers in raster order of first pixel
        for k in range(1, n + 1):
            sel = lab == k
            exp[sel] = c * base + k
            rows.append((c * base + k, c, k, int(sel.sum())))
    return exp, sorted(rows)


def random_class_map(rng, h, w):
    m = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 8)):
        y, x = rng.integers(0, h), rng.integers(0, w)
        m[y:y + rng.integers(1, 9), x:x + rng.integers(1, 9)] = rng.choice([1, 2, 3, 7, 255])
    noise = rng.random((h, w)) < 0.05
    m[noise] = rng.integers(0, 4, noise.sum())
    return m


@settings(max_examples=15)
@given(st.integers(0, 2**31), st.sampled_from([4, 8]), st.sampled_from([10, 256, 1000]))
def test_instance_ids_are_scipy_partitions(tmp_path_factory, seed, connectivity, base):
    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("masks")
    (root / "masks").mkdir()
    maps = {}
    for i in range(3):
        m = random_class_map(rng, int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        maps[f"m{i}"] = m
        write_mask(root / "masks" / f"m{i}.png", m)
    out = tmp_path_factory.mktemp("out")
    result = run_instances(root, out, connectivity=connectivity, base=base)
    items = {r["item_id"]: r for r in load_report_table(out).to_pylist()}
    table = load_report_table(out, "instances").to_pylist()
    for name, m in maps.items():
        exp, rows = expected_instances(m, connectivity, base)
        if any(k >= base for _, _, k, _ in rows):  # more components than the base allows
            assert items[name]["status"] == "error" and items[name]["error_code"] == "id_overflow"
            continue
        assert items[name]["status"] == "ok"
        got = read_mask(out / items[name]["instance_file"]).array
        np.testing.assert_array_equal(got.astype(np.int64), exp)
        mine = sorted((t["instance_id"], t["class_id"], t["k"], t["area"]) for t in table if t["item_id"] == name)
        assert mine == rows
        assert items[name]["n_instances"] == len(rows)
    assert result.summary["connectivity"] == connectivity
    assert result.summary["id_scheme"] == f"class*{base}+k"


def test_large_ids_go_to_32_bit_tiff(tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    m = np.zeros((5, 6), np.uint8)
    m[0, 0] = 3
    m[2:4, 2:5] = 3
    m[4, 5] = 1
    write_mask(root / "a.png", m)
    out = tmp_path / "out"
    # base 100000: even class 1's first id exceeds 16 bits, so the folder is TIFF from the start
    result = run_instances(root, out, base=100000, connectivity=4)
    assert result.summary["mask_format"] == "tiff32"
    (row,) = load_report_table(out).to_pylist()
    assert row["instance_file"] == "masks/a.tif" and row["max_id"] == 300002
    got = read_mask(out / row["instance_file"]).array
    assert got.dtype == np.int32
    exp, _ = expected_instances(m, 4, 100000)
    np.testing.assert_array_equal(got, exp)


def _mask_types(folder):
    return sorted({p.suffix for p in folder.rglob("*") if p.is_file()})


def test_stray_value_is_an_error_row_not_a_tiff(tmp_path):
    """A label map declaring classes 1..20 (ids <= 20999 fit 16 bits): a stray pixel value 99 in one
    mask gives ids 99001+, which become an error row naming --format tiff32, never a .tif among the PNGs."""
    root = tmp_path / "masks"
    root.mkdir()
    rng = np.random.default_rng(3)
    maps = {}
    for i in range(6):
        m = rng.integers(0, 21, (7, 9)).astype(np.uint8)
        m[0, :3] = 255
        if i == 4:
            m[3, 3] = 99  # the stray value
        maps[f"m{i}"] = m
        write_mask(root / f"m{i}.png", m)
    lm = tmp_path / "labelmap.json"
    lm.write_text(json.dumps({"labels": {str(c): f"c{c}" for c in range(21)}, "ignore": [255], "background": 0}))
    ds = open_dataset(root, labelmap=lm)
    out = tmp_path / "out"
    job = InstancesJob(ds, out, base=1000)
    assert job.mask_format == "png16"
    result = run_job(job, ds.manifest(), out, workers=1, quiet=True)
    items = {r["item_id"]: r for r in load_report_table(out).to_pylist()}
    assert set(items) == set(maps)  # every item exactly once
    bad = items.pop("m4")
    assert bad["status"] == "error" and bad["error_code"] == "format_overflow"
    assert "99001" in bad["error_message"] and "--format tiff32" in bad["error_message"]
    assert all(r["status"] == "ok" and r["instance_file"].endswith(".png") for r in items.values())
    assert _mask_types(out / "masks") == [".png"]
    assert result.summary["mask_format"] == "png16"
    assert json.loads((out / "run.json").read_text())["summary"]["mask_format"] == "png16"
    # forced: every item, the stray one included, as 32-bit TIFF
    out2 = tmp_path / "out2"
    result = run_job(InstancesJob(ds, out2, base=1000, mask_format="tiff32"), ds.manifest(), out2,
                     workers=1, quiet=True)
    rows = load_report_table(out2).to_pylist()
    assert all(r["status"] == "ok" for r in rows) and _mask_types(out2 / "masks") == [".tif"]
    for r in rows:
        exp, _ = expected_instances(maps[r["item_id"]], 8, 1000)
        np.testing.assert_array_equal(read_mask(out2 / r["instance_file"]).array.astype(np.int64), exp)
    assert json.loads((out2 / "run.json").read_text())["summary"]["mask_format"] == "tiff32"


def test_coco_run_writes_one_format(real_data, tmp_path):
    """COCO categories 1..90 with class*1000+k: ids can reach 90999, so auto writes every map as TIFF;
    forcing png16 makes the items with ids above 65535 error rows, and the folder holds PNGs only."""
    src = real_data / "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"
    ds = open_dataset(src)
    n = ds.manifest().num_rows
    out = tmp_path / "auto"
    result = run_job(InstancesJob(ds, out, base=1000), ds.manifest(), out, workers=1, quiet=True)
    assert result.summary["mask_format"] == "tiff32"
    rows = load_report_table(out).to_pylist()
    assert len(rows) == n and all(r["status"] == "ok" for r in rows)
    assert _mask_types(out / "masks") == [".tif"] and len(list((out / "masks").rglob("*.tif"))) == n
    out = tmp_path / "png"
    result = run_job(InstancesJob(ds, out, base=1000, mask_format="png16"), ds.manifest(), out, workers=1, quiet=True)
    rows = load_report_table(out).to_pylist()
    big = [r for r in rows if r["status"] == "error"]
    assert big and all(r["error_code"] == "format_overflow" and "--format tiff32" in r["error_message"] for r in big)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) + len(big) == n and all(r["max_id"] <= 65535 for r in ok)
    assert _mask_types(out / "masks") == [".png"] and len(list((out / "masks").rglob("*.png"))) == len(ok)
    assert result.summary["mask_format"] == "png16"


def test_background_and_ignore_options(tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    m = np.array([[5, 5, 0, 9], [0, 0, 0, 9], [2, 0, 5, 0]], np.uint8)
    write_mask(root / "a.png", m)
    out = tmp_path / "out"
    run_instances(root, out, base=10, connectivity=8, background=5, ignore_value=9)
    (row,) = load_report_table(out).to_pylist()
    got = read_mask(out / row["instance_file"]).array
    # 5 is background, 9 ignored: neither is an instance; 0 is a class here
    assert got.tolist() == [[0, 0, 1, 0], [1, 1, 1, 0], [21, 1, 0, 1]]


def test_coco_source_is_painted_then_split(real_data, tmp_path):
    src = real_data / "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"
    ds = open_dataset(src)
    rows = ds.manifest().slice(0, 3).to_pylist()
    out = tmp_path / "out"
    job = InstancesJob(ds, out, base=1000)
    run_job(job, ds.manifest().slice(0, 3), out, workers=1, quiet=True)
    items = {r["item_id"]: r for r in load_report_table(out).to_pylist()}
    for row in rows:
        item = ds.read_item(row)
        cls = paint_annotations(item.annotations, row["height"], row["width"])
        exp, _ = expected_instances(cls, 8, 1000)
        r = items[row["item_id"]]
        assert r["status"] == "ok"
        # COCO items are named after their image file; categories up to 90 with class*1000+k can
        # exceed 16 bits, so every map of the run is a 32-bit TIFF
        assert r["instance_file"] == "masks/" + row["file_name"].rsplit(".", 1)[0] + ".tif"
        np.testing.assert_array_equal(read_mask(out / r["instance_file"]).array.astype(np.int64), exp)


def test_unreadable_items_are_error_rows(tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    write_mask(root / "ok.png", np.ones((2, 2), np.uint8))
    (root / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    result = run_instances(root, out)
    items = {r["item_id"]: r for r in load_report_table(out).to_pylist()}
    assert set(items) == {"ok", "empty"}
    assert items["empty"]["status"] == "error" and items["empty"]["error_code"] == "zero_bytes"
    assert items["ok"]["n_instances"] == 1
    assert result.counts["error"] == 1


@pytest.mark.parametrize("kw", [{"connectivity": 6}, {"base": 1}, {"base": True}, {"base": 2.5}])
def test_bad_options_raise(tmp_path, kw):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError):
        InstancesJob(open_dataset(tmp_path), tmp_path / "o", **kw)


def test_cli_end_to_end(tmp_path, capsys):
    root = tmp_path / "masks"
    root.mkdir()
    m = np.zeros((4, 4), np.uint8)
    m[0, 0] = m[3, 3] = 2
    write_mask(root / "a.png", m)
    out = tmp_path / "out"
    assert main(["instances", str(root), "--out", str(out), "--workers", "1", "--quiet",
                 "--connectivity", "4", "--id-scheme", "class*256+k"]) == 0
    text = capsys.readouterr().out
    assert "into 2 instances (class*256+k, 4-connected)" in text
    got = read_mask(out / "masks/a.png").array
    assert got[0, 0] == 513 and got[3, 3] == 514
    run = json.loads((out / "run.json").read_text())
    assert run["arguments"]["connectivity"] == 4 and run["summary"]["instances"] == 2
    # usage errors: bad base, --out in use, missing dataset
    assert main(["instances", str(root), "--out", str(tmp_path / "o2"), "--id-scheme", "x", "--quiet"]) == 2
    assert main(["instances", str(root), "--out", str(out), "--quiet"]) == 2
    assert main(["instances", str(tmp_path / "nope"), "--out", str(tmp_path / "o3"), "--quiet"]) == 2
