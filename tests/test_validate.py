"""`fastmask validate` end to end: real samples, hostile files, exit codes, report tables."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fastmask.cli import main
from fastmask.formats import write_mask


def _findings(out):
    t = pq.read_table(out / "findings").to_pylist()
    d = pq.read_table(out / "dataset_findings").to_pylist()
    return t, d


@pytest.mark.parametrize(
    "rel, expected_rules, code",
    [
        # Cityscapes id masks without a label map: every value is accepted, and the run says so
        ("datumaro/tests/assets/cityscapes_dataset", {"no_labelmap"}, 0),
        ("panopticapi/sample_data/panoptic_examples.json", set(), 0),
        # a VOC id listed without its mask is a real gap in the fixture
        ("datumaro/tests/assets/voc_dataset/voc_dataset1", {"missing_mask"}, 0),
        # Datumaro's a.png is 5x5 while its JSON record says 10x5
        ("datumaro/tests/assets/coco_dataset/coco_panoptic/annotations/panoptic_train.json",
         {"segment_mismatch", "size_mismatch"}, 1),
    ],
)
def test_real_samples_without_false_alarms(real_data, tmp_path, rel, expected_rules, code):
    out = tmp_path / "r"
    assert main(["validate", str(real_data / rel), "--out", str(out), "--workers", "1", "--quiet"]) == code
    findings, dataset_level = _findings(out)
    alarms = {f["rule"] for f in findings + dataset_level if f["severity"] in ("error", "warning")}
    assert alarms == expected_rules
    items = pq.read_table(out / "items")
    run = json.loads((out / "run.json").read_text())
    assert len(items) == run["counts"]["items"] and run["status"] == "complete"


def test_real_coco_overlaps_informational_double_labels_warnings(real_data, tmp_path):
    out = tmp_path / "r"
    rel = "super-gradients/tests/data/tinycoco/annotations/instances_train2017.json"
    assert main(["validate", str(real_data / rel), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    findings, _ = _findings(out)
    assert {(f["rule"], f["severity"]) for f in findings} == {("instance_overlap", "info"),
                                                              ("duplicate_annotation", "warning")}
    # the two genuine double labels are the only warnings
    assert sorted(f["instance_id"] for f in findings if f["severity"] != "info") == [101073, 135645]
    # --fail-on warning / info turn them into a failing exit code; --disable removes them
    assert main(["validate", str(real_data / rel), "--out", str(out), "--overwrite", "--workers", "1",
                 "--quiet", "--fail-on", "warning"]) == 1
    assert main(["validate", str(real_data / rel), "--out", str(out), "--overwrite", "--workers", "1",
                 "--quiet", "--fail-on", "info", "--disable", "instance_overlap"]) == 1
    assert main(["validate", str(real_data / rel), "--out", str(out), "--overwrite", "--workers", "1",
                 "--quiet", "--fail-on", "info", "--disable", "instance_overlap",
                 "--disable", "duplicate_annotation"]) == 0


@pytest.fixture()
def hostile_folder(tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    for i in range(6):
        m = np.zeros((80, 80), np.uint8)
        m[10:60, 10:40] = 1
        m[10:60, 40:70] = 2
        write_mask(root / f"clean{i}.png", m)
    good = (root / "clean0.png").read_bytes()
    (root / "truncated.png").write_bytes(good[:40])
    (root / "empty.png").write_bytes(b"")
    (root / "garbage.png").write_bytes(b"not a png at all" * 10)
    bad = np.zeros((80, 80), np.uint8)
    bad[10:60, 10:40] = 1
    bad[0, 0] = 77  # a value outside the label map
    write_mask(root / "odd_value.png", bad)
    labelmap = tmp_path / "labels.txt"
    labelmap.write_text("background\nleft\nright\n")
    return root, labelmap


def test_hostile_files_become_findings_and_the_run_goes_on(hostile_folder, tmp_path, capsys):
    root, labelmap = hostile_folder
    out = tmp_path / "r"
    code = main(["validate", str(root), "--labelmap", str(labelmap), "--out", str(out), "--workers", "2",
                 "--shard-size", "3", "--quiet"])
    assert code == 1
    items = {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert len(items) == 10
    for name, err in (("truncated", "truncated"), ("empty", "zero_bytes"), ("garbage", "unreadable")):
        assert items[name]["status"] == "error" and items[name]["error_code"] == err
    findings, _ = _findings(out)
    by_item = {}
    for f in findings:
        by_item.setdefault(f["item_id"], set()).add(f["rule"])
    assert by_item["truncated"] == {"unreadable"} and by_item["empty"] == {"unreadable"}
    assert "unexpected_value" in by_item["odd_value"]
    assert not any(k.startswith("clean") for k in by_item)
    assert all(items[f"clean{i}"]["n_findings"] == 0 for i in range(6))
    classes = {r["class_id"]: r for r in pq.read_table(out / "classes").to_pylist()}
    assert classes[1]["images"] == 7 and classes[2]["images"] == 6 and classes[2]["name"] == "right"
    text = capsys.readouterr().out
    assert "unreadable" in text and "report:" in text


def test_usage_errors_exit_2(hostile_folder, tmp_path, capsys):
    root, _ = hostile_folder
    assert main(["validate", str(root), "--out", str(tmp_path / "a"), "--disable", "no_such_rule", "--quiet"]) == 2
    assert "unknown rule" in capsys.readouterr().err
    assert main(["validate", str(root), "--out", str(tmp_path / "b"), "--severity", "empty_mask=fatal", "--quiet"]) == 2
    assert main(["validate", str(tmp_path / "missing"), "--out", str(tmp_path / "c"), "--quiet"]) == 2


def test_prepare_compiles_only_when_the_cache_lacks_the_kernels(monkeypatch):
    """The driver's prepare() warms Numba's cache on a first run and costs nothing after."""
    import numba

    import fastmask.jobs.validate as V
    from fastmask._jit import kernels_cached
    from fastmask.kernels import validate as kv

    @numba.njit(cache=False)
    def _uncached(x):
        return x + 1

    assert kernels_cached(kv.class_mask_quick) and not kernels_cached(_uncached)
    assert not kernels_cached(kv.class_mask_quick, _uncached) and not kernels_cached(object())

    class _DS:
        layout, labelmap, root = "masks", None, "x"

    calls = []
    monkeypatch.setattr(V.R, "check_class_mask", lambda *a, **k: calls.append("full"))
    monkeypatch.setattr(V, "quick_class_mask", lambda *a, **k: calls.append("quick"))
    V.ValidateJob(_DS()).prepare()
    assert calls == []  # cached (this test process has used them): nothing to do
    monkeypatch.setattr(V, "kernels_cached", lambda *d: False)
    V.ValidateJob(_DS()).prepare()
    assert calls == ["full", "quick"]


def test_coverage_share_counts_only_non_ignore_pixels(tmp_path):
    # class 1 covers 40 px (~1 %) of every 64x64 mask; in "mostly_ignore" 4,000 px are the
    # ignore value, so its share there is 40 / 96 (42 %, far above the rest) although it
    # is still ~1 % of all pixels; "plain" has the same 40 px and no ignore: not an outlier
    root = tmp_path / "masks"
    root.mkdir()
    for i in range(30):
        m = np.zeros((64, 64), np.uint8)
        m[(i % 8) * 4:(i % 8) * 4 + 4, 10:20] = 1
        write_mask(root / f"m{i:02d}.png", m)
    m = np.zeros((64, 64), np.uint8)
    m.reshape(-1)[:4000] = 255
    m[63, 10:50] = 1
    write_mask(root / "mostly_ignore.png", m)
    m = np.zeros((64, 64), np.uint8)
    m[63, 10:50] = 1
    write_mask(root / "plain.png", m)
    labelmap = tmp_path / "labels.txt"
    labelmap.write_text("background\nthing\n")
    out = tmp_path / "r"
    assert main(["validate", str(root), "--labelmap", str(labelmap), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    cs = {(r["item_id"], r["class_id"]): r for r in pq.read_table(out / "class_stats").to_pylist()}
    assert cs[("mostly_ignore", 1)]["share"] == pytest.approx(40 / 96)
    assert cs[("plain", 1)]["share"] == pytest.approx(40 / 4096)
    assert cs[("m00", 1)]["share"] == pytest.approx(40 / 4096)
    _, dataset_level = _findings(out)
    outliers = [(f["item_id"], f["class_id"]) for f in dataset_level if f["rule"] == "coverage_outlier"]
    assert outliers == [("mostly_ignore", 1)]
    f = next(f for f in dataset_level if f["rule"] == "coverage_outlier")
    assert json.loads(f["extra"])["share"] == pytest.approx(40 / 96)
