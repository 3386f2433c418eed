"""`fastmask validate` says what it checked values against: the label map in use, where it came from, or none."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fastmask.cli import main
from fastmask.formats import LabelMap, write_mask
from fastmask.jobs.validate import labelmap_info
from fastmask.jobs.validate_rules import RuleConfig, no_labelmap
from fastmask.report import render_report


def _stray_masks(root):
    """Three masks of class 1 with stray values 77 and 200 (the reproducer)."""
    root.mkdir(parents=True)
    for i in range(3):
        a = np.zeros((64, 64), np.uint8)
        a[10:30, 10:30] = 1
        a[40:42, 40:42] = 77
        a[50, 50] = 200
        write_mask(root / f"{i}.png", a)
    return root


def _run(args, capsys):
    code = main(args)
    return code, capsys.readouterr().out


def _rules(out):
    t = pq.read_table(out / "findings").to_pylist() + pq.read_table(out / "dataset_findings").to_pylist()
    return t


def test_no_labelmap_is_a_warning_in_every_summary(tmp_path, capsys):
    masks = _stray_masks(tmp_path / "masks")
    out = tmp_path / "r"
    code, stdout = _run(["validate", str(masks), "--out", str(out), "--workers", "1"], capsys)
    assert code == 0  # a warning: below --fail-on error
    rows = _rules(out)
    nolm = [r for r in rows if r["rule"] == "no_labelmap"]
    assert len(nolm) == 1 and nolm[0]["severity"] == "warning" and nolm[0]["item_id"] is None
    assert "every mask value is accepted" in nolm[0]["message"] and "unexpected_value is off" in nolm[0]["message"]
    assert not any(r["rule"] == "unexpected_value" for r in rows)  # what the warning warns about
    # stdout: the label-map line and the warning repeated, before the findings
    assert "label map: none: every value is accepted, unexpected_value is off" in stdout
    assert "  warning: no label map in this masks dataset" in stdout
    assert stdout.index("label map:") < stdout.index("findings:")
    # run.json and the HTML report
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["labelmap"] == {"kind": "none", "source": None, "classes": 0,
                                          "text": "none: every value is accepted, unexpected_value is off"}
    html = render_report(out)
    assert "<td>label map</td><td>none: every value is accepted, unexpected_value is off</td>" in html
    assert "no_labelmap" in html
    # --fail-on warning fails on it; --disable no_labelmap leaves the summary line
    assert main(["validate", str(masks), "--out", str(out), "--overwrite", "--workers", "1", "--quiet",
                 "--fail-on", "warning", "--disable", "tiny_island"]) == 1
    capsys.readouterr()
    code, stdout = _run(["validate", str(masks), "--out", str(out), "--overwrite", "--workers", "1",
                         "--disable", "no_labelmap"], capsys)
    assert "label map: none" in stdout and " no_labelmap " not in stdout and "warning: no label map" not in stdout


@pytest.mark.parametrize("where", ["next to the masks", "--labelmap"])
def test_a_found_or_given_labelmap_is_named_and_checks_values(tmp_path, capsys, where):
    masks = _stray_masks(tmp_path / "masks")
    lm_path = (masks if where == "next to the masks" else tmp_path) / "labelmap.txt"
    lm_path.write_text("background:0,0,0::\ncat:128,0,0::\n")
    out = tmp_path / "r"
    args = ["validate", str(masks), "--out", str(out), "--workers", "1"]
    if where == "--labelmap":
        args += ["--labelmap", str(lm_path)]
    code, stdout = _run(args, capsys)
    assert code == 1  # unexpected_value errors now
    rows = _rules(out)
    assert sorted({r["class_id"] for r in rows if r["rule"] == "unexpected_value"}) == [77, 200]
    assert not any(r["rule"] == "no_labelmap" for r in rows)
    info = json.loads((out / "run.json").read_text())["summary"]["labelmap"]
    assert info["kind"] == "file" and info["source"].endswith("labelmap.txt") and info["classes"] == 2
    assert f"label map: {info['text']}" in stdout and "(file): 2 classes" in info["text"]
    assert info["text"] in render_report(out)


def test_coco_names_its_categories(tmp_path, capsys):
    doc = {"images": [{"id": 1, "width": 8, "height": 6, "file_name": "a.jpg"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 4, 1, 4]],
                            "area": 15, "bbox": [1, 1, 5, 3], "iscrowd": 0}],
           "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}]}
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    out = tmp_path / "r"
    _, stdout = _run(["validate", str(p), "--out", str(out), "--workers", "1"], capsys)
    info = json.loads((out / "run.json").read_text())["summary"]["labelmap"]
    assert info["kind"] == "coco-categories" and info["classes"] == 2
    assert f"label map: COCO categories of {p}: 2 categories" in stdout
    assert not any(r["rule"] == "no_labelmap" for r in _rules(out))  # COCO checks categories instead


def test_labelmap_info_kinds():
    assert labelmap_info(LabelMap.voc(), "voc")["kind"] == "layout-default"
    assert labelmap_info(LabelMap.voc(all_colors=True), "masks")["kind"] == "voc-colormap"
    lm = LabelMap.from_cvat("bg:0,0,0::\n_unused_1:128,0,0::\ncat:0,128,0::", source="/d/labelmap.txt")
    i = labelmap_info(lm, "voc")
    assert (i["kind"], i["source"], i["classes"]) == ("file", "/d/labelmap.txt", 2)
    assert i["text"].endswith("2 classes + ignore 255, 1 filler entry")  # singular for one
    assert labelmap_info(LabelMap(names={0: "a"}), "masks")["kind"] == "given"
    assert labelmap_info(None, "coco")["text"] == "none"


def test_no_labelmap_rule_respects_the_config():
    assert no_labelmap(RuleConfig(disabled={"no_labelmap"})) == []
    f = no_labelmap(RuleConfig(severities={"no_labelmap": "error"}), layout="voc")[0]
    assert f.severity == "error" and f.extra["unexpected_value"] == "off"
