"""What a dataset listing met reaches every command: problems in run.json, on stdout, in the
exit code; fastmask's own report folders inside a dataset are skipped (and noted)."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from fastmask.cli import main
from fastmask.formats import open_dataset
from fastmask.formats._fs import is_report_run_json
from fastmask.formats.coco import CocoDataset


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    m = np.zeros((8, 8), np.uint8)
    m[2:6, 2:6] = value
    Image.fromarray(m).save(buf, format="PNG")
    return buf.getvalue()


def _masks(root, names, value=1):
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(_png(value))


@pytest.fixture
def unlisted(tmp_path, monkeypatch):
    """A mask folder whose sub-folder ``locked`` cannot be listed (os.scandir refuses it, as
    permissions would; chmod is no obstacle to root), and a clean prediction folder beside it."""
    root = tmp_path / "ds"
    _masks(root, ["locked/m.png", "open/m.png"])
    _masks(tmp_path / "pred", ["locked/m.png", "open/m.png"])
    locked = str(root / "locked")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return root, "unlisted_path", locked


@pytest.fixture
def duplicate(tmp_path):
    """A zip of masks where two entries are named ``x.png`` (an appended fix)."""
    z = tmp_path / "ds.zip"
    with pytest.warns(UserWarning), zipfile.ZipFile(z, "w") as zf:
        zf.writestr("x.png", _png(1))
        zf.writestr("x.png", _png(2))
        zf.writestr("y.png", _png(1))
    _masks(tmp_path / "pred", ["x.png", "y.png"])
    return z, "duplicate_entry", f"{z}!x.png"


def _argv(command, ds, out):
    run = ["--out", str(out), "--workers", "1", "--quiet"]
    if command == "evaluate":
        return ["evaluate", "--gt", str(ds), "--pred", str(out.parent / "pred"), "--num-classes", "3", *run]
    if command == "convert":
        return ["convert", str(ds), "--to", "masks", *run]
    return [command, str(ds), *run]


COMMANDS = ("scan", "coverage", "instances", "convert", "evaluate")


@pytest.mark.parametrize("case", ["unlisted", "duplicate"])
@pytest.mark.parametrize("command", COMMANDS)
def test_listing_problems_reach_run_json_stdout_and_exit_code(command, case, request, tmp_path, capsys):
    ds, code, path = request.getfixturevalue(case)
    out = tmp_path / "report"
    assert main(_argv(command, ds, out)) == 1
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert [(p["code"], p["path"]) for p in summary["listing_problems"]] == [(code, path)]
    assert path in summary["listing_problems"][0]["message"]
    stdout = capsys.readouterr().out
    assert "listing: 1 problem" in stdout and f"  {code}: {path}" in stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_a_clean_listing_exits_0_and_records_no_problem(command, tmp_path, capsys):
    ds = tmp_path / "ds"
    _masks(ds, ["a.png", "b.png"])
    _masks(tmp_path / "pred", ["a.png", "b.png"])
    out = tmp_path / "report"
    assert main(_argv(command, ds, out)) == 0
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["listing_problems"] == [] and summary["skipped_reports"] == []
    assert "listing:" not in capsys.readouterr().out


@pytest.mark.parametrize("case", ["unlisted", "duplicate"])
def test_validate_records_listing_problems_once_as_findings(case, request, tmp_path, capsys):
    ds, code, path = request.getfixturevalue(case)
    out = tmp_path / "report"
    assert main(["validate", str(ds), "--out", str(out), "--workers", "1", "--quiet"]) == 1
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert [(p["code"], p["path"]) for p in summary["listing_problems"]] == [(code, path)]
    stdout = capsys.readouterr().out
    assert code in stdout and "listing:" not in stdout  # printed among the findings, not twice


def test_problems_beyond_the_print_limit_are_counted(tmp_path, monkeypatch, capsys):
    root = tmp_path / "ds"
    names = [f"locked{i}/m.png" for i in range(8)] + ["ok.png"]
    _masks(root, names)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)).startswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "report"
    assert main(["scan", str(root), "--out", str(out), "--workers", "1", "--quiet"]) == 1
    stdout = capsys.readouterr().out
    assert "listing: 8 problems" in stdout and "... 3 more" in stdout
    assert stdout.count("  unlisted_path: ") == 5
    assert len(json.loads((out / "run.json").read_text())["summary"]["listing_problems"]) == 8


def _tiny_coco(path):
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 1, 6, 6, 6, 6, 1]],
                         "area": 25, "bbox": [1, 1, 5, 5], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}]}))
    return path


def test_rasterize_reports_the_listing_problems_of_its_dataset(tmp_path, monkeypatch, capsys):
    # a COCO file lists no folder today: the dataset's problems are stood in for, to test the wiring
    problem = {"kind": "unlisted_path", "path": "/x/images", "message": "/x/images: cannot list this folder"}
    monkeypatch.setattr(CocoDataset, "problems", lambda self: [problem])
    out = tmp_path / "r"
    argv = ["rasterize", str(_tiny_coco(tmp_path / "a.json")), "--out", str(out), "--workers", "1", "--quiet"]
    assert main(argv) == 1
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["listing_problems"] == [{"code": "unlisted_path", "path": "/x/images",
                                            "message": "/x/images: cannot list this folder"}]
    assert "  unlisted_path: /x/images: cannot list this folder" in capsys.readouterr().out
    monkeypatch.undo()
    assert main(argv[:4] + ["--overwrite", "--workers", "1", "--quiet"]) == 0


# ---------------------------------------------------------------------- report folders


def test_a_report_folder_inside_the_dataset_is_never_read_as_masks(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    ds = tmp_path / "ds"
    _masks(ds, ["a.png", "b.png", "sub/c.png"])
    monkeypatch.chdir(ds)
    assert main(["coverage", ".", "--out", "report", "--plots", "--workers", "1", "--quiet"]) == 0
    assert list((ds / "report" / "plots").glob("*.png"))  # the charts that used to become items
    nested = ds / "sub" / "old"  # a report deeper down, written there by another run
    assert main(["scan", "sub", "--out", str(nested), "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["validate", ".", "--out", "report2", "--workers", "1", "--quiet"]) == 0
    doc = json.loads((ds / "report2" / "run.json").read_text())
    assert doc["counts"]["items"] == 3
    assert doc["summary"]["findings"].get("unknown_color") is None
    assert doc["summary"]["skipped_reports"] == [str(ds / "report"), str(nested)]
    assert doc["summary"]["listing_problems"] == []  # a note, not a problem
    assert "note: skipped 2 fastmask report folders inside the dataset" in capsys.readouterr().out
    ids = open_dataset(ds, layout="masks").manifest().column("item_id").to_pylist()
    assert ids == ["a", "b", "sub/c"]


def test_a_folder_with_another_tools_run_json_is_still_listed(tmp_path):
    ds = tmp_path / "ds"
    _masks(ds, ["a.png", "runs/b.png", "bad/c.png"])
    (ds / "runs" / "run.json").write_text(json.dumps({"status": "complete", "job": "train"}))
    (ds / "bad" / "run.json").write_text("{not json")
    d = open_dataset(ds, layout="masks")
    assert d.manifest().column("item_id").to_pylist() == ["a", "bad/c", "runs/b"]
    assert d.skipped_reports() == []


def test_a_report_folder_inside_a_zip_is_skipped(tmp_path):
    run_json = json.dumps({"report_format": 1, "fastmask_version": "0.1", "job": "coverage", "status": "complete"})
    z = tmp_path / "ds.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.png", _png(1))
        zf.writestr("report/run.json", run_json)
        zf.writestr("report/plots/class_frequency.png", _png(3))
        zf.writestr("other/run.json", "{}")
        zf.writestr("other/b.png", _png(1))
    d = open_dataset(z, layout="masks")
    assert d.manifest().column("item_id").to_pylist() == ["a", "other/b"]
    assert d.skipped_reports() == [f"{z}!report"]


@pytest.mark.parametrize("doc, expected", [
    ({"report_format": 1, "fastmask_version": "0.3", "job": "scan", "status": "stopped"}, True),
    ({"report_format": "1", "fastmask_version": "0.3", "job": "scan", "status": "complete"}, False),
    ({"fastmask_version": "0.3", "job": "scan", "status": "complete"}, False),
    ({"report_format": 1, "job": "scan", "status": "complete"}, False),
    ([1, 2], False),
])
def test_report_run_json_is_recognised_by_its_keys(doc, expected):
    assert is_report_run_json(json.dumps(doc).encode()) is expected


def test_evaluate_reports_the_listing_problems_of_the_prediction_too(tmp_path, capsys):
    _masks(tmp_path / "gt", ["x.png", "y.png"])
    pred = tmp_path / "pred.zip"
    with pytest.warns(UserWarning), zipfile.ZipFile(pred, "w") as zf:
        for name, value in (("x.png", 1), ("x.png", 2), ("y.png", 1)):
            zf.writestr(name, _png(value))
    out = tmp_path / "report"
    argv = ["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(pred), "--num-classes", "3",
            "--out", str(out), "--workers", "1", "--quiet"]
    assert main(argv) == 1
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert [(p["code"], p["path"]) for p in summary["listing_problems"]] == [("duplicate_entry", f"{pred}!x.png")]
    assert f"duplicate_entry: {pred}!x.png" in capsys.readouterr().out
