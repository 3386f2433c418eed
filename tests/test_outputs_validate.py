"""fastmask's outputs pass fastmask's checks: every writer's output, validated with the flags the writer
recorded (``run.json["summary"]["validate_args"]``), gives no finding its source did not have."""
from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fastmask.cli import main
from fastmask.formats import LabelMap, load_labelmap, open_dataset
from fastmask.sample import make_sample

W, H = 80, 60  # 4,800 px: above the tiny_island image floor, so islands are judged


def _rect(x, y, w, h):
    return [float(x), float(y), float(x + w), float(y), float(x + w), float(y + h), float(x), float(y + h)]


def _coco_doc():
    """Three clean images; category ids with gaps (1, 3, 7: a VOC labelmap.txt needs fillers); no image files."""
    images, anns, aid = [], [], 1
    for i in range(1, 4):
        images.append({"id": i, "file_name": f"frame_{i:04d}.jpg", "width": W, "height": H})
        for cat, box in [(1, (4, 4, 20, 16)), (3, (34, 6, 30, 14)), (7, (10, 30 + i, 40, 16))]:
            anns.append({"id": aid, "image_id": i, "category_id": cat, "segmentation": [_rect(*box)],
                         "area": float(box[2] * box[3]), "bbox": [float(v) for v in box], "iscrowd": 0})
            aid += 1
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 7, "name": "dog"}]}


@pytest.fixture(scope="module")
def coco_source(tmp_path_factory):
    p = tmp_path_factory.mktemp("coco") / "instances.json"
    p.write_text(json.dumps(_coco_doc()))
    return p


@pytest.fixture(scope="module")
def voc_source(tmp_path_factory):
    """The demo sample's clean VOC items (P-mode and CVAT RGB masks, objects, 255 borders, images)."""
    root = tmp_path_factory.mktemp("sample")
    voc = make_sample(root / "s").voc
    clean = root / "voc"
    for sub in ("SegmentationClass", "SegmentationObject", "JPEGImages"):
        (clean / sub).mkdir(parents=True)
        for f in (voc / sub).glob("clean_*"):
            shutil.copy(f, clean / sub / f.name)
    (clean / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = sorted(f.stem for f in (clean / "SegmentationClass").iterdir())
    (clean / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    shutil.copy(voc / "labelmap.txt", clean / "labelmap.txt")
    return clean


def _findings(report: Path) -> collections.Counter:
    rows = []
    for table in ("findings", "dataset_findings"):
        if (report / table).exists():
            rows += pq.read_table(report / table, columns=["rule"]).to_pylist()
    return collections.Counter(r["rule"] for r in rows)


def _validate(path, report, args=()) -> collections.Counter:
    code = main(["validate", str(path), "--out", str(report), "--workers", "1", "--quiet", "--fail-on", "never",
                 *args])
    assert code == 0
    return _findings(report)


def _recorded_args(report: Path) -> list[str]:
    args = json.loads((report / "run.json").read_text())["summary"]["validate_args"]
    assert isinstance(args, list)
    return args


def _no_new_findings(source: collections.Counter, output: collections.Counter):
    new = {rule: n for rule, n in output.items() if n > source.get(rule, 0)}
    assert not new, f"findings the source did not have: {new} (source {dict(source)})"


def _convert_target(out: Path, to: str) -> Path:
    d = out / "dataset"
    return {"coco": d / "annotations.json", "coco_panoptic": d / "panoptic.json"}.get(to, d)


TARGETS = ["masks", "voc", "coco", "coco_panoptic", "cleanzip", "nucleus"]


@pytest.mark.parametrize("to", TARGETS)
def test_coco_source_converted_validates_clean(coco_source, tmp_path, to):
    source = _validate(coco_source, tmp_path / "v-src")
    assert source == collections.Counter()  # a clean source
    out = tmp_path / "c"
    assert main(["convert", str(coco_source), "--to", to, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    got = _validate(_convert_target(out, to), tmp_path / "v-out", _recorded_args(out))
    _no_new_findings(source, got)


@pytest.mark.parametrize("to", ["voc", "cleanzip"])
def test_coco_source_converted_to_a_zip_validates_clean(coco_source, tmp_path, to):
    out = tmp_path / "c"
    assert main(["convert", str(coco_source), "--to", to, "--zip", "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    assert _validate(out / "dataset.zip", tmp_path / "v-out", _recorded_args(out)) == collections.Counter()


@pytest.mark.parametrize("to", TARGETS)
def test_voc_source_converted_validates_clean(voc_source, tmp_path, to):
    source = _validate(voc_source, tmp_path / "v-src")
    assert set(source) <= {"class_never_seen"}  # boat is never drawn
    out = tmp_path / "c"
    assert main(["convert", str(voc_source), "--to", to, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    got = _validate(_convert_target(out, to), tmp_path / "v-out", _recorded_args(out))
    _no_new_findings(source, got)


def test_coco_to_voc_fillers_are_marked_and_never_reported(coco_source, tmp_path):
    # the reproducer: COCO ids 1, 3, 7 -> labelmap.txt lines 0..7, four of them placeholders
    out = tmp_path / "c"
    assert main(["convert", str(coco_source), "--to", "voc", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    lm = load_labelmap(out / "dataset" / "labelmap.txt")
    assert lm.fillers == {2, 4, 5, 6} and lm.names[2] == "_unused_2"
    assert lm.class_ids == [0, 1, 3, 7]
    found = _validate(out / "dataset", tmp_path / "v")
    assert "class_never_seen" not in found and found == collections.Counter()
    run = json.loads((tmp_path / "v" / "run.json").read_text())
    assert "4 filler entries" in run["summary"]["labelmap"]["text"]


def test_filler_values_in_a_mask_are_unexpected(tmp_path):
    # a filler is a placeholder, not a class: a mask holding it is reported
    from fastmask.formats import write_mask

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "labelmap.txt").write_text("background:0,0,0::\n_unused_1:128,0,0::\ncat:0,128,0::\n")
    a = np.zeros((8, 8), np.uint8)
    a[:4] = 2
    a[6:, 6:] = 1
    write_mask(tmp_path / "m" / "x.png", a)
    found = _validate(tmp_path / "m", tmp_path / "v")
    assert found["unexpected_value"] == 1 and "class_never_seen" not in found


def test_labelmap_json_round_trips_fillers():
    lm = LabelMap(names={0: "bg", 1: "_unused_1", 2: "cat"}, fillers={1})
    doc = lm.to_json()
    assert [x.get("filler", False) for x in doc["labels"]] == [False, True, False]
    assert LabelMap.from_json(doc).fillers == {1}


def test_coco_without_images_to_cleanzip_says_so(coco_source, tmp_path):
    # the reproducer: every item used to be flagged missing_image
    out = tmp_path / "c"
    assert main(["convert", str(coco_source), "--to", "cleanzip", "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    meta = json.loads((out / "dataset" / "meta.json").read_text())
    assert meta["has_images"] is False
    assert _validate(out / "dataset", tmp_path / "v") == collections.Counter()
    ds = open_dataset(out / "dataset")
    assert not ds.has_images and all(not ds.read_item(r).missing for r in ds.manifest().to_pylist())
    # a source with images gives a dataset that has them: an item without its image is still reported
    out2 = tmp_path / "c2"
    voc = make_sample(tmp_path / "s2").voc  # planted_missing_image has masks and no image
    assert main(["convert", str(voc), "--to", "cleanzip", "--out", str(out2), "--workers", "1", "--quiet"]) == 0
    assert json.loads((out2 / "dataset" / "meta.json").read_text())["has_images"] is True
    found = pq.read_table(_validate_report(out2 / "dataset", tmp_path / "v2") / "findings").to_pylist()
    assert [r["item_id"] for r in found if r["rule"] == "missing_image"] == ["planted_missing_image"]


def _validate_report(path, report):
    _validate(path, report)
    return report


@pytest.mark.parametrize("kind", ["semantic", "instance", "binary", "panoptic"])
def test_rasterize_outputs_validate_clean(coco_source, tmp_path, kind):
    source = _validate(coco_source, tmp_path / "v-src")
    out = tmp_path / "r"
    assert main(["rasterize", str(coco_source), "--out", str(out), "--kind", kind, "--workers", "1",
                 "--quiet"]) == 0
    target = out / "panoptic.json" if kind == "panoptic" else out / "masks"
    got = _validate(target, tmp_path / "v-out", _recorded_args(out))
    _no_new_findings(source, got)
    if kind in ("semantic", "binary"):
        lm = load_labelmap(out / "masks" / "labelmap.json")
        assert set(lm.names) == ({0, 1, 3, 7, 255} if kind == "semantic" else {0, 255})


def test_rasterize_semantic_labelmap_catches_a_stray_value(coco_source, tmp_path):
    # the written label map is a real check, not a blanket pass: a value no category has is reported
    from fastmask.formats import write_mask

    out = tmp_path / "r"
    assert main(["rasterize", str(coco_source), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    a = np.zeros((H, W), np.uint8)
    a[:10, :10] = 5
    write_mask(out / "masks" / "stray.png", a)
    assert _validate(out / "masks", tmp_path / "v", _recorded_args(out))["unexpected_value"] == 1


def test_rasterize_rle_records_no_validation(coco_source, tmp_path):
    out = tmp_path / "r"
    assert main(["rasterize", str(coco_source), "--out", str(out), "--kind", "rle", "--workers", "1",
                 "--quiet"]) == 0
    assert json.loads((out / "run.json").read_text())["summary"]["validate_args"] is None


@pytest.mark.parametrize("source_name", ["coco", "voc"])
def test_instances_output_validates_clean(coco_source, voc_source, tmp_path, source_name):
    src = coco_source if source_name == "coco" else voc_source
    source = _validate(src, tmp_path / "v-src")
    out = tmp_path / "i"
    assert main(["instances", str(src), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    args = _recorded_args(out)
    assert args[:2] == ["--connectivity", "8"]
    got = _validate(out / "masks", tmp_path / "v-out", args)
    _no_new_findings(source, got)


#: rules the COCO and panoptic layouts do not run (they have no class masks to judge): a mask
#: output of such a source may state these facts about its data for the first time
CLASS_MASK_ONLY = {"tiny_island", "disconnected_instance", "class_never_seen"}


@pytest.mark.parametrize("to", TARGETS)
def test_real_panoptic_source_converted_validates_clean(real_data, tmp_path, to):
    src = real_data / "panopticapi/sample_data/panoptic_examples.json"
    source = _validate(src, tmp_path / "v-src")
    assert source == collections.Counter()
    out = tmp_path / "c"
    assert main(["convert", str(src), "--to", to, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    got = _validate(_convert_target(out, to), tmp_path / "v-out", _recorded_args(out))
    if to in ("coco", "coco_panoptic"):
        _no_new_findings(source, got)  # segment ids repeat across images: COCO ids must not
    else:
        assert set(got) - set(source) <= CLASS_MASK_ONLY, got


def test_panoptic_to_coco_numbers_annotations_and_keeps_segment_ids(real_data, tmp_path):
    # the reproducer: segment ids are unique per image, and 4 of this sample's repeat across its
    # 2 images; used as COCO annotation ids they were duplicate_id errors
    src = real_data / "panopticapi/sample_data/panoptic_examples.json"
    doc = json.loads(src.read_text())
    seg_ids = [s["id"] for a in doc["annotations"] for s in a["segments_info"]]
    assert len(seg_ids) > len(set(seg_ids))
    out = tmp_path / "c"
    assert main(["convert", str(src), "--to", "coco", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    anns = json.loads((out / "dataset" / "annotations.json").read_text())["annotations"]
    assert len({a["id"] for a in anns}) == len(anns) == len(seg_ids)
    assert sorted(a["segment_id"] for a in anns) == sorted(seg_ids)


@pytest.mark.parametrize("to", ["masks", "voc", "cleanzip"])
def test_fillers_survive_a_second_conversion(coco_source, tmp_path, to):
    # COCO -> VOC (fillers 2, 4, 5, 6) -> any mask layout: still fillers, still not reported
    voc = tmp_path / "voc"
    assert main(["convert", str(coco_source), "--to", "voc", "--out", str(voc), "--workers", "1", "--quiet"]) == 0
    out = tmp_path / "c"
    assert main(["convert", str(voc / "dataset"), "--to", to, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert open_dataset(out / "dataset").labelmap.fillers == {2, 4, 5, 6}
    assert _validate(out / "dataset", tmp_path / "v", _recorded_args(out)) == collections.Counter()
