"""`fastmask scan`: the readers run by the engine, end to end through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fastmask.cli import main
from fastmask.formats import write_mask


@pytest.fixture()
def mask_folder(tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        m = np.zeros((24, 32), np.uint8)
        m[rng.integers(0, 12) :, rng.integers(0, 16) :] = i % 5
        write_mask(root / f"m{i:03d}.png", m)
    good = (root / "m000.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "empty.png").write_bytes(b"")
    return root


def _items(out):
    return {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()}


def test_scan_reports_every_file_once(mask_folder, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["scan", str(mask_folder), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    items = _items(out)
    assert len(items) == 32 and len(pq.read_table(out / "items")) == 32
    assert items["truncated"]["status"] == "error" and items["truncated"]["error_code"] == "truncated"
    assert items["empty"]["status"] == "error" and items["empty"]["error_code"] == "zero_bytes"
    m = items["m003"]
    assert m["status"] == "ok" and (m["width"], m["height"]) == (32, 24) and m["mask_mode"] == "L"
    assert set(m["values"]) <= {0, 3} and sum(m["value_pixels"]) == 24 * 32
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["items"] == 32 and run["counts"]["error"] == 2
    total = sum(run["summary"]["value_pixels"].values())
    assert total == 30 * 24 * 32
    assert "scanned 32 items" in capsys.readouterr().out


def test_scan_worker_count_and_resume_give_the_same_report(mask_folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["scan", str(mask_folder), "--out", str(one), "--workers", "1", "--shard-size", "7", "--quiet"]) == 0
    assert main(["scan", str(mask_folder), "--out", str(two), "--workers", "2", "--shard-size", "7", "--quiet"]) == 0
    assert pq.read_table(one / "items").equals(pq.read_table(two / "items"))
    # a finished run resumed is unchanged
    assert main(["scan", str(mask_folder), "--out", str(one), "--resume", "--quiet"]) == 0
    assert pq.read_table(one / "items").equals(pq.read_table(two / "items"))


def test_scan_refuses_existing_report_and_unknown_layout(mask_folder, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["scan", str(mask_folder), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert main(["scan", str(mask_folder), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert main(["scan", str(nothing), "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    assert "unknown_layout" in capsys.readouterr().err


def test_scan_real_layouts(real_data, tmp_path):
    cases = {
        "datumaro/tests/assets/voc_dataset/voc_dataset1": "voc",
        "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json": "coco",
        "panopticapi/sample_data/panoptic_examples.json": "coco_panoptic",
        "datumaro/tests/assets/cityscapes_dataset": "masks",
    }
    for i, (rel, layout) in enumerate(cases.items()):
        out = tmp_path / f"r{i}"
        assert main(["scan", str(real_data / rel), "--out", str(out), "--workers", "1", "--quiet"]) == 0
        run = json.loads((out / "run.json").read_text())
        assert run["arguments"]["layout"] == layout
        items = pq.read_table(out / "items")
        assert len(items) == run["counts"]["items"] > 0
        assert run["counts"]["error"] == 0, items.filter(items["status"] == "error").to_pylist()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_value_counts_matches_numpy(dtype):
    from fastmask.jobs.scan import value_counts

    rng = np.random.default_rng(1)
    for shape in [(1, 1), (1, 7), (5, 1), (33, 47)]:
        hi = min(np.iinfo(dtype).max, 70000)
        a = rng.integers(0, hi, shape, endpoint=True).astype(dtype)
        values, counts = value_counts(a)
        u, k = np.unique(a, return_counts=True)
        assert values == u.tolist() and counts == k.tolist()
    assert value_counts(np.zeros((0, 3), np.uint8)) == ([], [])
    assert value_counts(np.zeros((4, 4), np.uint8)[:, ::2]) == ([0], [8])  # strided input
