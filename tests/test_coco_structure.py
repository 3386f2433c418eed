"""`validate` on COCO and panoptic files: the checks mask layouts get (files, structure, class tables)."""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools.coco import COCO

from fastmask.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path_factory.getbasetemp() / "fmcache-structure"))


def _write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _validate(path, out, *extra):
    return main(["validate", str(path), "--out", str(out), "--workers", "1", "--quiet", *map(str, extra)])


def _findings(out):
    per_item = pq.read_table(out / "findings").to_pylist()
    dataset = pq.read_table(out / "dataset_findings").to_pylist()
    return per_item, dataset


def _rules(rows):
    return sorted((r["item_id"], r["rule"]) for r in rows)


def _jpeg(w, h) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


SQ = [[1, 1, 6, 1, 6, 4, 1, 4]]


def test_image_files_missing_text_and_truncated(tmp_path):
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "a.jpg").write_bytes(_jpeg(8, 6))
    (imgs / "c.jpg").write_text("this is not an image")
    full = _jpeg(64, 48)
    (imgs / "d.jpg").write_bytes(full[: len(full) // 2])  # header intact, data cut
    with pytest.raises(OSError):
        Image.open(imgs / "d.jpg").load()  # Pillow agrees: truncated
    images = [{"id": k, "file_name": f"{n}.jpg", "width": w, "height": h}
              for k, (n, w, h) in enumerate([("a", 8, 6), ("b", 8, 6), ("c", 8, 6), ("d", 64, 48)], 1)]
    anns = [{"id": k, "image_id": k, "category_id": 1, "segmentation": SQ, "iscrowd": 0} for k in range(1, 5)]
    p = _write(tmp_path / "instances_x.json", {"images": images, "annotations": anns,
                                              "categories": [{"id": 1, "name": "x"}]})
    out = tmp_path / "v"
    assert _validate(p, out, "--disable", "bbox_mismatch") == 1
    per_item, dataset = _findings(out)
    assert dataset == []
    assert _rules(per_item) == [("000000000002", "missing_image"), ("000000000003", "unreadable"),
                                ("000000000004", "unreadable")]
    codes = {r["item_id"]: json.loads(r["extra"]).get("error_code") for r in per_item if r["rule"] == "unreadable"}
    assert codes == {"000000000003": "unreadable", "000000000004": "truncated"}
    missing = [r for r in per_item if r["rule"] == "missing_image"][0]
    assert "b.jpg" in missing["message"]
    # scan says the same about the missing file
    assert main(["scan", str(p), "--out", str(tmp_path / "s"), "--workers", "1", "--quiet"]) == 0
    scan = {r["item_id"]: r for r in pq.read_table(tmp_path / "s" / "items").to_pylist()}
    assert scan["000000000002"]["missing"] == ["image"] and scan["000000000001"]["missing"] == []


def test_without_images_folder_no_image_findings(tmp_path):
    p = _write(tmp_path / "x.json", {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
                                     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": SQ,
                                                      "bbox": [1, 1, 5, 3], "iscrowd": 0}],
                                     "categories": [{"id": 1, "name": "x"}]})
    out = tmp_path / "v"
    assert _validate(p, out) == 0
    assert _findings(out) == ([], [])


def _png(path, ids):
    ids = np.asarray(ids, np.uint32)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def test_panoptic_structure_errors(tmp_path):
    root = tmp_path / "p"
    ids = np.zeros((3, 4), np.uint32)
    ids[:, :2] = 5
    for name in ("a", "d", "e"):
        _png(root / "panoptic_x" / f"{name}.png", ids)
    images = [{"id": k, "file_name": f"{n}.jpg", "width": 4, "height": 3}
              for k, n in enumerate(["a", "b", "c", "d", "e"], 1)]
    seg = [{"id": 5, "category_id": 1, "area": 6, "iscrowd": 0}]
    anns = [{"image_id": 1, "file_name": "a.png", "segments_info": seg},
            {"image_id": 2, "file_name": "b.png", "segments_info": seg},        # PNG absent
            # image 3: no annotation record at all
            {"image_id": 4, "file_name": "d.png", "segments_info": [{"id": 5, "category_id": 9, "area": 6}]},
            {"image_id": 5, "file_name": "e.png", "segments_info": seg},
            {"image_id": 5, "file_name": "e.png", "segments_info": seg},        # a second record
            {"image_id": 99, "file_name": "z.png", "segments_info": []}]        # no such image
    p = _write(root / "panoptic_x.json", {"images": images, "annotations": anns,
                                          "categories": [{"id": 1, "name": "x", "isthing": 1}]})
    out = tmp_path / "v"
    assert _validate(p, out) == 1
    per_item, dataset = _findings(out)
    assert _rules(per_item) == [("000000000002", "missing_mask"), ("000000000003", "missing_mask"),
                                ("000000000004", "unknown_category"), ("000000000005", "duplicate_record")]
    assert [(d["rule"], json.loads(d["extra"])["image_id"]) for d in dataset] == [("unknown_image", 99)]
    unk = [r for r in per_item if r["rule"] == "unknown_category"][0]
    assert (unk["class_id"], unk["instance_id"]) == (9, 5)
    items = {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert all((r["width"], r["height"]) == (4, 3) for r in items.values())
    assert all(r["status"] == "ok" for r in items.values())


@pytest.mark.parametrize("key, value, type_name", [("annotations", {"a": 1}, "object"), ("annotations", None, "null"),
                                                    ("categories", {"1": "x"}, "object"), ("categories", None, "null"),
                                                    ("images", {"id": 1}, "object")])
def test_top_level_fields_of_the_wrong_type(tmp_path, key, value, type_name):
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": SQ, "bbox": [1, 1, 5, 3],
                            "iscrowd": 0}],
           "categories": [{"id": 1, "name": "x"}]}
    doc[key] = value
    out = tmp_path / "v"
    assert _validate(_write(tmp_path / "instances_x.json", doc), out) == 1
    _, dataset = _findings(out)
    bad = [d for d in dataset if d["rule"] == "bad_top_level"]
    assert len(bad) == 1 and json.loads(bad[0]["extra"]) == {"key": key, "type": type_name}
    assert f"'{key}'" in bad[0]["message"] and bad[0]["severity"] == "error"


def test_missing_segmentation_and_bad_iscrowd(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 3], "iscrowd": 0},  # detection only
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": SQ, "bbox": [1, 1, 5, 3], "iscrowd": "yes"},
            {"id": 3, "image_id": 1, "category_id": 1, "segmentation": SQ, "bbox": [1, 1, 5, 3], "iscrowd": 2},
            {"id": 4, "image_id": 1, "category_id": 1, "segmentation": SQ, "bbox": [1, 1, 5, 3], "iscrowd": 0},
            {"id": 5, "image_id": 1, "category_id": 1, "segmentation": SQ, "bbox": [1, 1, 5, 3]}]  # absent: 0
    p = _write(tmp_path / "instances_x.json", {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
                                               "annotations": anns, "categories": [{"id": 1, "name": "x"}]})
    out = tmp_path / "v"
    # the four identical squares overlap: those rules are off here, they have tests of their own
    assert _validate(p, out, "--disable", "instance_overlap", "--disable", "duplicate_annotation") == 1
    per_item, _ = _findings(out)
    got = sorted((r["rule"], r["instance_id"], r["severity"]) for r in per_item)
    assert got == [("bad_iscrowd", 2, "error"), ("bad_iscrowd", 3, "error"), ("missing_segmentation", 1, "warning")]


def _painted_reference(path):
    """Per category: pixels after painting in file order (later on top, as pycocotools' annToMask
    masks stacked), images containing it, non-crowd annotations."""
    c = COCO(str(path))
    pixels, images, inst = {}, {}, {}
    for img_id, img in c.imgs.items():
        m = np.zeros((img["height"], img["width"]), np.int64)
        for a in c.imgToAnns[img_id]:
            m[c.annToMask(a) > 0] = a["category_id"] if not a["iscrowd"] else 255
            if not a["iscrowd"]:
                inst[a["category_id"]] = inst.get(a["category_id"], 0) + 1
        for v, n in zip(*np.unique(m, return_counts=True)):
            if v not in (0, 255):
                pixels[int(v)] = pixels.get(int(v), 0) + int(n)
                images[int(v)] = images.get(int(v), 0) + 1
    return pixels, images, inst


def test_coco_class_tables_and_classes_seen(tmp_path, capsys):
    rng = np.random.default_rng(3)
    images, anns = [], []
    for i in range(1, 6):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 40, "height": 30})
        for k in range(4):
            x, y = rng.integers(0, 30), rng.integers(0, 20)
            w, h = rng.integers(3, 12), rng.integers(3, 12)
            poly = [float(v) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 4)),
                         "segmentation": [poly], "bbox": [float(x), float(y), float(w), float(h)],
                         "iscrowd": int(k == 3 and i == 2)})
    p = _write(tmp_path / "instances_x.json", {"images": images, "annotations": anns,
                                               "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]})
    out = tmp_path / "v"
    _validate(p, out, "--disable", "bbox_mismatch", "--fail-on", "never")
    pixels, imgs, inst = _painted_reference(p)
    cls = {r["class_id"]: r for r in pq.read_table(out / "classes").to_pylist()}
    assert {c: r["pixels"] for c, r in cls.items()} == pixels
    assert {c: r["images"] for c, r in cls.items()} == imgs
    assert {c: r["instances"] for c, r in cls.items()} == {c: inst.get(c, 0) for c in cls}
    items = pq.read_table(out / "items").to_pylist()
    assert all((r["width"], r["height"]) == (40, 30) for r in items)
    assert sum(r["n_annotations"] for r in items) == len(anns)
    # the summary printed without --quiet counts the classes seen
    assert main(["validate", str(p), "--out", str(tmp_path / "v3"), "--workers", "1",
                 "--disable", "bbox_mismatch", "--fail-on", "never"]) == 0
    assert f"classes seen: {len(pixels)}" in capsys.readouterr().out


def test_panoptic_class_tables_real_sample(real_data, tmp_path):
    path = real_data / "panopticapi/sample_data/panoptic_examples.json"
    d = json.loads(path.read_text())
    out = tmp_path / "v"
    assert _validate(path, out) == 0
    pixels, images, inst = {}, {}, {}
    for a in d["annotations"]:
        for s in a["segments_info"]:
            c = s["category_id"]
            pixels[c] = pixels.get(c, 0) + s["area"]  # areas equal the PNG counts on this sample
            inst[c] = inst.get(c, 0) + (0 if s["iscrowd"] else 1)
        for c in {s["category_id"] for s in a["segments_info"]}:
            images[c] = images.get(c, 0) + 1
    cls = {r["class_id"]: r for r in pq.read_table(out / "classes").to_pylist()}
    assert {c: r["pixels"] for c, r in cls.items()} == pixels
    assert {c: r["images"] for c, r in cls.items()} == images
    assert {c: r["instances"] for c, r in cls.items()} == inst
    items = pq.read_table(out / "items").to_pylist()
    sizes = {im["id"]: (im["width"], im["height"]) for im in d["images"]}
    assert sorted((r["width"], r["height"]) for r in items) == sorted(sizes.values())
