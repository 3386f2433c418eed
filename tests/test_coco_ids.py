"""COCO / panoptic ids of any JSON type, through every command, against pycocotools."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools.coco import COCO

from fastmask.cli import main
from fastmask.formats import _cocojson, open_dataset, read_mask, read_panoptic

# the reproducer: one image whose id is the string "a"; pycocotools paints 15 pixels
REPRO = {"images": [{"id": "a", "width": 8, "height": 6, "file_name": "a.jpg"}],
         "annotations": [{"id": 1, "image_id": "a", "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 4, 1, 4]],
                          "area": 15, "bbox": [1, 1, 5, 3], "iscrowd": 0}],
         "categories": [{"id": 1, "name": "x"}]}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path_factory.getbasetemp() / "fmcache-ids"))


def _write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _reference(path) -> dict:
    """pycocotools' annToMask of every image: image id -> union of its annotations' masks."""
    c = COCO(str(path))
    out = {}
    for img_id, img in c.imgs.items():
        m = np.zeros((img["height"], img["width"]), np.uint8)
        for a in c.imgToAnns[img_id]:
            m = np.maximum(m, c.annToMask(a) * a["category_id"])
        out[img_id] = m
    return out


def _cli(*argv):
    return main([*map(str, argv), "--workers", "1", "--quiet"])


def _items(out):
    return pq.read_table(out / "items").to_pylist()


@pytest.fixture
def repro(tmp_path):
    return _write(tmp_path / "instances_x.json", REPRO)


def test_string_id_groups_like_pycocotools(repro):
    ref = _reference(repro)
    assert int(ref["a"].sum()) == 15
    ds = open_dataset(repro)
    (row,) = ds.manifest().to_pylist()
    assert row["item_id"] == "a" and row["image_key"] == '"a"' and row["image_id"] is None
    assert ds.read_item(row).annotations == REPRO["annotations"]
    assert ds.info()["n_orphan_annotations"] == 0


def test_validate_string_id(repro, tmp_path, capsys):
    out = tmp_path / "v"
    assert _cli("validate", repro, "--out", out) == 0
    assert pq.read_table(out / "findings").num_rows == 0
    assert pq.read_table(out / "dataset_findings").num_rows == 0  # no false unknown_image
    (item,) = _items(out)
    assert (item["item_id"], item["status"], item["n_annotations"], item["width"], item["height"]) == ("a", "ok", 1, 8, 6)
    cls = pq.read_table(out / "classes").to_pylist()
    assert [(c["class_id"], c["pixels"], c["images"], c["instances"]) for c in cls] == [(1, 15, 1, 1)]


@pytest.mark.parametrize("kind", ["semantic", "instance", "binary", "panoptic", "rle"])
def test_rasterize_string_id_every_kind(repro, tmp_path, kind):
    ref = _reference(repro)["a"]
    out = tmp_path / kind
    assert _cli("rasterize", repro, "--out", out, "--kind", kind) == 0
    (item,) = _items(out)
    assert item["status"] == "ok" and item["n_annotations"] == 1 and item["image_key"] == '"a"'
    if kind == "semantic":
        got = read_mask(out / "masks/a.png").array
    elif kind == "instance":
        got = (read_mask(out / "masks/a.png").array > 0).astype(np.uint8)
    elif kind == "binary":
        got = (read_mask(out / "masks/a/1.png").array > 0).astype(np.uint8)
    elif kind == "panoptic":
        got = (read_panoptic((out / "panoptic/a.png").read_bytes()).array > 0).astype(np.uint8)
        doc = json.loads((out / "panoptic.json").read_text())
        assert [i["id"] for i in doc["images"]] == ["a"] and doc["annotations"][0]["image_id"] == "a"
        # the written panoptic file reads back with its string id
        back = open_dataset(out / "panoptic.json", masks=out / "panoptic")
        (row,) = back.manifest().to_pylist()
        assert row["item_id"] == "a" and int((back.read_item(row).instance_mask.array > 0).sum()) == 15
    else:
        from fastmask import rle

        (r,) = pq.read_table(out / "rles").to_pylist()
        got = rle.decode({"size": [r["height"], r["width"]], "counts": r["counts"].encode()})
    assert np.array_equal(got, ref), kind


def test_scan_coverage_instances_string_id(repro, tmp_path):
    assert _cli("scan", repro, "--out", tmp_path / "s") == 0
    (item,) = _items(tmp_path / "s")
    assert (item["item_id"], item["status"], item["n_annotations"]) == ("a", "ok", 1)
    assert _cli("coverage", repro, "--out", tmp_path / "c") == 0
    rows = pq.read_table(tmp_path / "c" / "class_coverage").to_pylist()
    assert [(r["item_id"], r["class_id"], r["pixels"]) for r in rows] == [("a", 1, 15)]
    assert _cli("instances", repro, "--out", tmp_path / "i") == 0
    (item,) = _items(tmp_path / "i")
    assert item["status"] == "ok" and item["n_instances"] == 1
    inst = read_mask(tmp_path / "i" / item["instance_file"]).array
    assert np.array_equal(inst > 0, _reference(repro)["a"] > 0)


def test_evaluate_string_id_against_rasterized_masks(repro, tmp_path):
    assert _cli("rasterize", repro, "--out", tmp_path / "m") == 0
    out = tmp_path / "e"
    assert _cli("evaluate", "--gt", repro, "--pred", tmp_path / "m" / "masks", "--num-classes", "2",
                "--out", out) == 0
    (item,) = _items(out)
    assert item["item_id"] == "a" and item["status"] == "ok" and item["miou"] == 1.0
    scores = {r["class_id"]: r["tp"] for r in pq.read_table(out / "image_scores").to_pylist()}
    assert scores[1] == 15


@pytest.mark.parametrize("to", ["masks", "voc", "coco", "coco_panoptic", "cleanzip", "nucleus"])
def test_convert_string_id_every_target(repro, tmp_path, to):
    ref = _reference(repro)["a"]
    out = tmp_path / to
    assert _cli("convert", repro, "--to", to, "--out", out) == 0
    (item,) = _items(out)
    assert item["status"] == "ok" and item["image_key"] == '"a"'
    d = out / "dataset"
    if to in ("masks", "cleanzip", "nucleus"):
        assert np.array_equal(read_mask(d / "masks/a.png").array > 0, ref > 0)
    if to == "voc":
        assert np.array_equal(read_mask(d / "SegmentationClass/a.png").array, ref)
    if to in ("coco", "cleanzip"):
        doc = json.loads((d / ("annotations.json" if to == "coco" else "coco/annotations.json")).read_text())
        assert [i["id"] for i in doc["images"]] == ["a"] and [a["image_id"] for a in doc["annotations"]] == ["a"]
        assert np.array_equal(_reference(d / ("annotations.json" if to == "coco" else "coco/annotations.json"))["a"],
                              ref)
    if to == "coco_panoptic":
        doc = json.loads((d / "panoptic.json").read_text())
        assert doc["images"][0]["id"] == "a" and doc["annotations"][0]["image_id"] == "a"
        png = read_panoptic((d / "panoptic/a.png").read_bytes()).array
        assert np.array_equal(png > 0, ref > 0)


def _odd_ids_doc():
    ids = [7, "frankfurt_000000_000294", -5, 2**70, "7", "a b/c", 1.5, 7.0, True]
    images = [{"id": v, "width": 4, "height": 3, "file_name": f"f{k}.jpg"} for k, v in enumerate(ids)]
    images.append({"width": 4, "height": 3, "file_name": "noid.jpg"})  # no id at all
    anns = [{"id": 100 + k, "image_id": v, "category_id": 1, "segmentation": [[0, 0, k % 4 + 1, 0, k % 4 + 1, 2]],
             "iscrowd": 0} for k, v in enumerate(ids)]
    anns.append({"id": 200, "image_id": None, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]], "iscrowd": 0})
    anns.append({"id": 201, "image_id": "-5", "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]], "iscrowd": 0})
    return ids, {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}


def test_ids_of_every_json_type_match_exactly_and_stay_distinct(tmp_path):
    ids, doc = _odd_ids_doc()
    ds = open_dataset(_write(tmp_path / "instances_odd.json", doc))
    rows = {r["item_id"]: r for r in ds.manifest().to_pylist()}
    expected = {"000000000007": 7, "frankfurt_000000_000294": "frankfurt_000000_000294", "~-5": -5,
                f"{2**70:012d}": 2**70, "~~7": "7", "~~a%20b%2Fc": "a b/c", "~1.5": 1.5, "~7.0": 7.0,
                "~true": True, "~null": None}
    assert set(rows) == set(expected)
    for iid, value in expected.items():
        anns = ds.read_item(rows[iid]).annotations
        want = [a for a in doc["annotations"] if "id" in doc["images"][0] and value is not None
                and type(a["image_id"]) is type(value) and a["image_id"] == value]
        assert anns == want, iid
    # null image_id and the string "-5" (no such image) are orphans, never another image's
    info = ds.info()
    assert info["n_orphan_annotations"] == 2 and info["orphan_image_ids_sample"] == ["-5"]
    assert sorted(a["id"] for a in ds.orphan_annotations()) == [200, 201]
    # file-name safe: nothing but [A-Za-z0-9._~%#-], never a leading dot
    for iid in rows:
        assert set(iid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~%#-") and iid[0] != "."


def test_item_ids_are_unique_and_stable_on_collisions():
    values = ["000000000001", 1, "~~x", "x", "x", "#", "a" * 400, "a" * 401, -1, "-1"]
    keys = [_cocojson.id_key(v) for v in values]
    ids = _cocojson.item_ids(values, keys)
    assert len(set(ids)) == len(ids)
    assert ids == _cocojson.item_ids(values, keys)
    assert all(len(i) <= 165 for i in ids)
    assert ids[3] == "x" and ids[4] == "x#2" and ids[8] == "~-1" and ids[9] == "~~-1"


def test_validate_rasterize_odd_ids_against_pycocotools(tmp_path):
    ids, doc = _odd_ids_doc()
    # pycocotools keys by Python equality (7 == 7.0 == True): compare images whose ids it keeps apart
    keep = [7, "frankfurt_000000_000294", -5, 2**70, "7", "a b/c", 1.5]
    sub = {"images": [i for i in doc["images"] if i.get("id", None) in keep and type(i["id"]) is not float
                      or i.get("id") == 1.5],
           "annotations": [a for a in doc["annotations"] if a["image_id"] in keep and type(a["image_id"]) is not bool],
           "categories": doc["categories"]}
    sub["annotations"] = [a for a in sub["annotations"] if not (type(a["image_id"]) is float and a["image_id"] == 7.0)]
    p = _write(tmp_path / "instances_sub.json", sub)
    ref = _reference(p)
    out = tmp_path / "r"
    assert _cli("rasterize", p, "--out", out) == 0
    items = _items(out)
    assert len(items) == len(sub["images"]) and all(i["status"] == "ok" for i in items)
    by_key = {i["image_key"]: i for i in items}
    for img in sub["images"]:
        it = by_key[_cocojson.id_key(img["id"])]
        assert it["n_annotations"] == 1
        assert np.array_equal(read_mask(out / it["output"]).array, ref[img["id"]]), img["id"]
    v = tmp_path / "v"
    assert _cli("validate", p, "--out", v) == 0
    assert pq.read_table(v / "dataset_findings").num_rows == 0


def _panoptic_doc(tmp_path, image_id="frankfurt_000000_000294"):
    """A cityscapesScripts-style panoptic file: string image ids."""
    root = tmp_path / "pan"
    (root / "panoptic_val").mkdir(parents=True)
    ids = np.zeros((4, 5), np.uint32)
    ids[:2, :3] = 33  # a stuff segment (6 px)
    ids[2:, 1:] = 24001  # a person (8 px)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1).astype(np.uint8)
    Image.fromarray(rgb).save(root / "panoptic_val" / f"{image_id}_gtFine_panoptic.png")
    doc = {"images": [{"id": image_id, "file_name": f"{image_id}_leftImg8bit.png", "width": 5, "height": 4}],
           "annotations": [{"image_id": image_id, "file_name": f"{image_id}_gtFine_panoptic.png",
                            "segments_info": [{"id": 33, "category_id": 7, "area": 6, "iscrowd": 0},
                                              {"id": 24001, "category_id": 24, "area": 8, "iscrowd": 0}]}],
           "categories": [{"id": 7, "name": "road", "isthing": 0}, {"id": 24, "name": "person", "isthing": 1}]}
    return _write(root / "panoptic_val.json", doc), ids


def test_panoptic_string_id_png_is_read(tmp_path):
    p, ids = _panoptic_doc(tmp_path)
    ds = open_dataset(p)
    (row,) = ds.manifest().to_pylist()
    assert row["item_id"] == "frankfurt_000000_000294" and row["mask_file"].endswith("_gtFine_panoptic.png")
    assert np.array_equal(ds.read_item(row).instance_mask.array, ids)
    out = tmp_path / "v"
    assert _cli("validate", p, "--out", out) == 0
    assert pq.read_table(out / "findings").num_rows == 0
    cls = {c["class_id"]: (c["pixels"], c["instances"]) for c in pq.read_table(out / "classes").to_pylist()}
    assert cls == {7: (6, 1), 24: (8, 1)}
    e = tmp_path / "e"
    assert _cli("evaluate", "--gt", p, "--pred", p, "--num-classes", "30", "--out", e) == 0
    (item,) = _items(e)
    assert item["status"] == "ok"
    run = json.loads((e / "run.json").read_text())
    assert run["summary"]["panoptic"]["all"]["pq"] == 1.0
    assert _cli("scan", p, "--out", tmp_path / "s") == 0
    (item,) = _items(tmp_path / "s")
    assert item["status"] == "ok" and item["n_segments"] == 2 and item["has_instance_mask"]
    assert _cli("coverage", p, "--out", tmp_path / "c") == 0
    rows = pq.read_table(tmp_path / "c" / "class_coverage").to_pylist()
    assert sorted((r["class_id"], r["pixels"]) for r in rows) == [(7, 6), (24, 8)]
    assert _cli("convert", p, "--to", "coco_panoptic", "--out", tmp_path / "k") == 0
    doc = json.loads((tmp_path / "k" / "dataset" / "panoptic.json").read_text())
    assert [i["id"] for i in doc["images"]] == ["frankfurt_000000_000294"]
    assert [a["image_id"] for a in doc["annotations"]] == ["frankfurt_000000_000294"]


# ---------------------------------------------------------------------------- crash cases: never a traceback


def test_lone_surrogate_in_file_name_and_id(tmp_path):
    text = json.dumps({"images": [{"id": 1, "width": 4, "height": 3, "file_name": "x\ud800.jpg"},
                                  {"id": "\ud800", "width": 4, "height": 3, "file_name": "b.jpg"}],
                       "annotations": [{"id": 1, "image_id": "\ud800", "category_id": 1,
                                        "segmentation": [[0, 0, 2, 0, 2, 2]], "iscrowd": 0}],
                       "categories": [{"id": 1, "name": "x"}]})
    assert "\\ud800" in text  # the JSON holds the escape: valid JSON, not valid text
    p = tmp_path / "instances_s.json"
    p.write_text(text)
    for cmd in ("validate", "scan", "coverage"):
        out = tmp_path / cmd
        assert _cli(cmd, p, "--out", out) in (0, 1), cmd
        items = {i["item_id"]: i for i in _items(out)}
        assert items["000000000001"]["status"] == "error" and items["000000000001"]["error_code"] == "bad_json"
        assert "surrogate" in items["000000000001"]["error_message"]
        assert items["~~%ED%A0%80"]["status"] == "ok", cmd  # the string id is an id like any other
    assert pq.read_table(tmp_path / "validate" / "dataset_findings").num_rows == 0


def test_integer_literal_beyond_pythons_limit(tmp_path):
    big = "9" * 5000
    p = tmp_path / "instances_big.json"
    p.write_text('{"images": [{"id": %s, "width": 4, "height": 3, "file_name": "a.jpg"},'
                 ' {"id": 2, "width": 4, "height": 3, "file_name": "b.jpg"}],'
                 ' "annotations": [{"id": %s, "image_id": %s, "category_id": 1, "segmentation": [[0,0,2,0,2,2]]},'
                 ' {"id": 3, "image_id": 2, "category_id": 1, "segmentation": [[0,0,2,0,2,2]]},'
                 ' {"id": 4, "image_id": 8%s, "category_id": 1, "segmentation": [[0,0,2,0,2,2]]}],'
                 ' "categories": [{"id": 1, "name": "x"}]}' % (big, big, big, big))
    out = tmp_path / "v"
    assert _cli("validate", p, "--out", out) == 1
    (orphan,) = pq.read_table(out / "dataset_findings").to_pylist()
    assert orphan["rule"] == "unknown_image" and json.loads(orphan["extra"])["image_id"] == "8" + big
    items = {i["item_id"]: i for i in _items(out)}
    assert len(items) == 2 and items["000000000002"]["status"] == "ok"
    (bad,) = [i for k, i in items.items() if k != "000000000002"]
    assert bad["status"] == "error" and bad["error_code"] == "bad_json" and len(bad["item_id"]) <= 165
    ds = open_dataset(p)
    assert ds.info()["n_orphan_annotations"] == 1  # the 5000-digit ids still match each other


def test_unwritable_home_uses_a_temporary_cache(repro, tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")  # ~/.cache cannot be created under it
    env = {k: v for k, v in os.environ.items() if k not in ("FASTMASK_CACHE", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-m", "fastmask", "scan", str(repro), "--out", str(tmp_path / "s"),
                           "--workers", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "cannot be written" in proc.stderr and "temporary cache" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _items(tmp_path / "s")[0]["n_annotations"] == 1


BAD_SIZES = [(0, 6), (-8, 6), (8, None), ("8", 6), (2**70, 6), (True, 6)]


@pytest.mark.parametrize("cmd", ["scan", "coverage", "validate", "evaluate", "rasterize", "convert"])
def test_unusable_record_sizes_are_error_rows(tmp_path, cmd):
    images = [{"id": k + 1, "file_name": f"{k}.jpg", "width": w, "height": h} for k, (w, h) in enumerate(BAD_SIZES)]
    images.append({"id": 99, "file_name": "huge.jpg", "width": 1, "height": 2**40})
    images.append({"id": 100, "file_name": "ok.jpg", "width": 8, "height": 6})
    images = [{k: v for k, v in i.items() if v is not None} for i in images]
    anns = [{"id": i["id"], "image_id": i["id"], "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 4]], "iscrowd": 0}
            for i in images]
    p = _write(tmp_path / "instances_sz.json", {"images": images, "annotations": anns,
                                               "categories": [{"id": 1, "name": "x"}]})
    out = tmp_path / cmd
    if cmd == "evaluate":
        argv = ["evaluate", "--gt", p, "--pred", p, "--num-classes", "2", "--out", out]
    elif cmd == "convert":
        argv = ["convert", p, "--to", "masks", "--out", out]
    else:
        argv = [cmd, p, "--out", out]
    assert _cli(*argv) in (0, 1)
    items = {i["item_id"]: i for i in _items(out)}
    assert len(items) == len(images)
    assert items["000000000100"]["status"] == "ok"
    assert items["000000000099"]["error_code"] == "decompression_bomb"
    for k in range(len(BAD_SIZES)):
        it = items[f"{k + 1:012d}"]
        assert it["status"] == "error" and it["error_code"] == "bad_size", (cmd, BAD_SIZES[k], it)


@pytest.mark.parametrize("segments", [[{"id": 2**70, "category_id": 1}], [5], ["x"], [{"id": "3", "category_id": 1}],
                                      [{"id": 1, "category_id": 2**70}], {"id": 1}])
@pytest.mark.parametrize("cmd", ["scan", "coverage", "validate", "evaluate", "convert"])
def test_unusable_segments_info_is_bad_segments(tmp_path, segments, cmd):
    root = tmp_path / "p"
    (root / "panoptic_x").mkdir(parents=True)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(root / "panoptic_x" / "a.png")
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(root / "panoptic_x" / "b.png")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 3},
                      {"id": 2, "file_name": "b.jpg", "width": 4, "height": 3}],
           "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": segments},
                           {"image_id": 2, "file_name": "b.png", "segments_info": []}],
           "categories": [{"id": 1, "name": "x", "isthing": 1}]}
    p = _write(root / "panoptic_x.json", doc)
    out = tmp_path / cmd
    if cmd == "evaluate":
        argv = ["evaluate", "--gt", p, "--pred", p, "--num-classes", "2", "--out", out]
    elif cmd == "convert":
        argv = ["convert", p, "--to", "masks", "--out", out]
    else:
        argv = [cmd, p, "--out", out]
    assert _cli(*argv) in (0, 1)
    items = {i["item_id"]: i for i in _items(out)}
    assert items["000000000001"]["status"] == "error" and items["000000000001"]["error_code"] == "bad_segments"
    assert items["000000000002"]["status"] == "ok"


def test_instances_and_rasterize_never_write_two_items_to_one_file(tmp_path):
    # a.jpg / a.png share a mask name; "B.jpg" / "b.jpg" share a file on case-insensitive disks;
    # a record without file_name is named by its item id, which another image's file name takes
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "a.png"}, {"id": 3, "file_name": "B.jpg"},
              {"id": 4, "file_name": "b.jpg"}, {"id": "x", "file_name": None}, {"id": 6, "file_name": "x.jpg"}]
    for k, im in enumerate(images):
        im.update(width=6, height=4)
    anns = [{"id": k + 1, "image_id": im["id"], "category_id": 1, "iscrowd": 0,
             "segmentation": [[0, 0, k + 1, 0, k + 1, 3, 0, 3]]} for k, im in enumerate(images)]
    p = _write(tmp_path / "instances_n.json", {"images": images, "annotations": anns,
                                               "categories": [{"id": 1, "name": "x"}]})
    for cmd, col in (("rasterize", "output"), ("instances", "instance_file")):
        out = tmp_path / cmd
        assert _cli(cmd, p, "--out", out) == 0
        items = _items(out)
        outputs = [i[col].lower() for i in items]
        assert len(items) == 6 and all(i["status"] == "ok" for i in items)
        assert len(set(outputs)) == 6, outputs
        # each file holds its own item's mask: widths 1..6 tell them apart
        by_key = {i["item_id"]: i for i in items}
        for k, im in enumerate(images):
            iid = f"{im['id']:012d}" if isinstance(im["id"], int) else im["id"]
            arr = read_mask(out / by_key[iid][col]).array
            assert int((arr[0] > 0).sum()) == k + 1, (cmd, iid)


def test_binary_masks_named_after_annotation_ids_of_any_type(tmp_path):
    ids = ["ann-1", 5, -3, "a b", 5, None]
    anns = [{"image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[0, 0, k + 1, 0, k + 1, 3, 0, 3]],
             **({"id": v} if v is not None else {})} for k, v in enumerate(ids)]
    p = _write(tmp_path / "instances_b.json", {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 4}],
                                               "annotations": anns, "categories": [{"id": 1, "name": "x"}]})
    out = tmp_path / "b"
    assert _cli("rasterize", p, "--out", out, "--kind", "binary") == 0
    rows = pq.read_table(out / "instances").to_pylist()
    assert [r["output"] for r in rows] == ["masks/a/ann-1.png", "masks/a/index_1.png", "masks/a/~-3.png",
                                           "masks/a/~~a%20b.png", "masks/a/index_4.png", "masks/a/index_5.png"]
    for k, r in enumerate(rows):
        assert int((read_mask(out / r["output"]).array[0] > 0).sum()) == k + 1


def test_annotation_ids_of_any_type_in_the_tables(tmp_path):
    ids = ["ann-1", 2**70, -3, 7]
    good = [{"id": v, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [[2 * k, 0, 2 * k + 1, 0, 2 * k + 1, 3, 2 * k, 3]]} for k, v in enumerate(ids)]
    bad = {"id": "bad", "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[0, 0, 1]]}
    image = [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 4}]
    cats = [{"id": 1, "name": "x"}]
    p = _write(tmp_path / "instances_t.json", {"images": image, "annotations": good + [bad], "categories": cats})
    want = [(None, '"ann-1"'), (None, str(2**70)), (-3, "-3"), (7, "7")]
    for kind, table in (("instance", "instances"), ("panoptic", "segments"), ("rle", "rles")):
        out = tmp_path / kind
        assert _cli("rasterize", p, "--out", out, "--kind", kind) == 0
        rows = pq.read_table(out / table).to_pylist()
        got = [(r["annotation_id"], r["annotation_key"]) for r in rows if r["annotation_key"] != '"bad"']
        assert got == want, kind
        (f,) = pq.read_table(out / "findings").to_pylist()
        assert (f["annotation_id"], f["annotation_key"]) == (None, '"bad"')
    # convert keeps every id as it is in the COCO it writes, and names it in its segments table
    p2 = _write(tmp_path / "instances_t2.json", {"images": image, "annotations": good, "categories": cats})
    out = tmp_path / "c"
    assert _cli("convert", p2, "--to", "coco", "--out", out) == 0
    doc = json.loads((out / "dataset" / "annotations.json").read_text())
    assert [a["id"] for a in doc["annotations"]] == ids
    segs = pq.read_table(out / "segments").to_pylist()
    assert [(r["annotation_id"], r["annotation_key"]) for r in segs] == want
