"""fastmask convert: round trips between layouts (real samples and generated data), errors, CLI."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as pcm

from fastmask.cli import main
from fastmask.engine import load_report_table, run_job
from fastmask.formats import (
    LabelMap,
    open_dataset,
    read_mask,
    read_panoptic,
    write_mask,
)
from fastmask.jobs.convert import ConvertJob, assemble
from fastmask.raster import paint_annotations

VOC_REAL = "datumaro/tests/assets/voc_dataset/voc_dataset1"
PANOPTIC_REAL = "panopticapi/sample_data/panoptic_examples.json"
TINYCOCO = "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"


def convert(src, to, out, **kw):
    ds = open_dataset(src, labelmap=kw.pop("labelmap", None))
    job = ConvertJob(ds, to, out, **kw)
    result = run_job(job, job.manifest(), out, workers=1, quiet=True)
    return assemble(job, out), result


def items_of(ds):
    return {row["item_id"]: item for row, item in ds.iter_items()}


def make_voc(root: Path, n=4, seed=0, h=40, w=50):
    """A VOC folder: palette class/object PNGs, instances with holes, diagonal touches, ignore borders."""
    rng = np.random.default_rng(seed)
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "SegmentationObject").mkdir()
    ids = []
    for i in range(n):
        cls = np.zeros((h, w), np.uint8)
        obj = np.zeros((h, w), np.uint8)
        k = 0
        for _ in range(rng.integers(1, 6)):
            y0, x0 = rng.integers(0, h - 5), rng.integers(0, w - 5)
            y1, x1 = y0 + rng.integers(3, 20), x0 + rng.integers(3, 20)
            k += 1
            c = int(rng.integers(1, 21))
            cls[y0:y1, x0:x1] = c
            obj[y0:y1, x0:x1] = k
            if rng.random() < 0.5 and y1 - y0 > 4 and x1 - x0 > 4:  # a hole
                cls[y0 + 2:y0 + 3, x0 + 2:x0 + 3] = 0
                obj[y0 + 2:y0 + 3, x0 + 2:x0 + 3] = 0
            if rng.random() < 0.3:  # ignore border on the right edge
                cls[y0:y1, min(x1, w - 1)] = 255
                obj[y0:y1, min(x1, w - 1)] = 255
        # two diagonal pixels of one instance
        k += 1
        cls[h - 2, 0] = cls[h - 1, 1] = 7
        obj[h - 2, 0] = obj[h - 1, 1] = k
        # ids that hid entirely under later ones are gone from the maps; that is fine
        name = f"img_{i:03d}"
        ids.append(name)
        write_mask(root / "SegmentationClass" / f"{name}.png", cls, palette="voc")
        write_mask(root / "SegmentationObject" / f"{name}.png", obj, palette="voc")
    (root / "ImageSets/Segmentation/train.txt").write_text("".join(f"{x}\n" for x in ids[: n // 2]))
    (root / "ImageSets/Segmentation/val.txt").write_text("".join(f"{x}\n" for x in ids[n // 2:]))
    return root


def assert_same_voc(a_root, b_root, ids=None):
    a, b = items_of(open_dataset(a_root)), items_of(open_dataset(b_root))
    if ids is None:
        ids = [k for k, v in a.items() if not isinstance(v, Exception) and v.mask is not None]
    assert ids
    for k in ids:
        np.testing.assert_array_equal(a[k].mask.array, b[k].mask.array, err_msg=f"class mask {k}")
        np.testing.assert_array_equal(a[k].instance_mask.array, b[k].instance_mask.array, err_msg=f"objects {k}")
    return ids


@pytest.mark.parametrize("encoding", ["polygons", "rle"])
def test_voc_coco_voc_identical_generated(tmp_path, encoding):
    src = make_voc(tmp_path / "voc")
    coco, r1 = convert(src, "coco", tmp_path / "c", coco_encoding=encoding)
    assert r1.counts["ok"] == 4
    doc = json.loads((coco / "annotations.json").read_text())
    kinds = {type(a["segmentation"]).__name__ for a in doc["annotations"]}
    assert kinds == ({"dict"} if encoding == "rle" else {"list", "dict"})  # holes and crowd -> RLE
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    back, r2 = convert(coco / "annotations.json", "voc", tmp_path / "v")
    assert r2.counts["ok"] == 4
    ids = assert_same_voc(src, back)
    assert len(ids) == 4
    # split files: default lists every item under its file name (COCO has no splits)
    assert (back / "ImageSets/Segmentation/default.txt").read_text().split() == ids
    assert LabelMap.from_cvat((back / "labelmap.txt").read_text()) == open_dataset(src).labelmap


def test_voc_coco_voc_identical_real(real_data, tmp_path):
    src = real_data / VOC_REAL
    coco, _r1 = convert(src, "coco", tmp_path / "c")
    # the second item is listed in test.txt without masks: an error row, not dropped silently
    items = load_report_table(tmp_path / "c").to_pylist()
    assert sorted(r["item_id"] for r in items) == ["2007_000001", "2007_000002"]
    assert {r["item_id"]: r["error_code"] for r in items} == {"2007_000001": None, "2007_000002": "missing_mask"}
    back, _ = convert(coco / "annotations.json", "voc", tmp_path / "v")
    assert assert_same_voc(src, back, ["2007_000001"])


def test_voc_zip_round_trip(tmp_path):
    src = make_voc(tmp_path / "voc", n=2, seed=3)
    z, _ = convert(src, "voc", tmp_path / "v", zip_output=True)
    assert z.name == "dataset.zip" and zipfile.is_zipfile(z)
    assert_same_voc(src, z)
    names = zipfile.ZipFile(z).namelist()
    assert {"labelmap.txt", "ImageSets/Segmentation/default.txt", "ImageSets/Segmentation/train.txt",
            "ImageSets/Segmentation/val.txt"} <= set(names)
    # the source splits are kept
    a = {r["item_id"]: r["splits"] for r in open_dataset(src).manifest().to_pylist()}
    b = {r["item_id"]: r["splits"] for r in open_dataset(z).manifest().to_pylist()}
    assert b == {k: ",".join(sorted({"default", v})) for k, v in a.items()}


def test_panoptic_coco_panoptic_identical_ids_and_areas(real_data, tmp_path):
    src = real_data / PANOPTIC_REAL
    coco, _ = convert(src, "coco", tmp_path / "c")
    pan, r = convert(coco / "annotations.json", "coco_panoptic", tmp_path / "p")
    assert r.counts["ok"] == 2
    a = json.loads(src.read_text())
    b = json.loads((pan / "panoptic.json").read_text())
    assert [c["id"] for c in a["categories"]] == [c["id"] for c in b["categories"]]
    assert {c["id"]: c["isthing"] for c in a["categories"]} == {c["id"]: c["isthing"] for c in b["categories"]}
    assert len(a["annotations"]) == len(b["annotations"]) == 2
    for x, y in zip(a["annotations"], b["annotations"]):
        assert x["image_id"] == y["image_id"]
        ia = read_panoptic(src.parent / "panoptic_examples" / x["file_name"]).array
        ib = read_panoptic(pan / "panoptic" / y["file_name"]).array
        np.testing.assert_array_equal(ia, ib)
        key = lambda s: (s["category_id"], int(bool(s.get("iscrowd"))), s["area"], list(s["bbox"]))
        assert {s["id"]: key(s) for s in x["segments_info"]} == {s["id"]: key(s) for s in y["segments_info"]}
    # the written pair reads back through the panoptic reader
    ds = open_dataset(pan / "panoptic.json")
    assert all(not isinstance(it, Exception) and it.instance_mask is not None for it in items_of(ds).values())


def _coco_rle_dataset(path: Path, n=3, h=30, w=40, seed=0):
    """COCO with RLE annotations (disjoint instances, one crowd region)."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    aid = 100
    for i in range(n):
        images.append({"id": i + 1, "file_name": f"im{i}.jpg", "width": w, "height": h})
        taken = np.zeros((h, w), bool)
        for j in range(4):
            m = np.zeros((h, w), bool)
            y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
            m[y0:y0 + rng.integers(2, 12), x0:x0 + rng.integers(2, 12)] = True
            if j == 1:
                m[y0 + 1, x0 + 1] = False  # a hole
            m &= ~taken
            if not m.any():
                continue
            taken |= m
            r = pcm.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": aid, "image_id": i + 1, "category_id": int(rng.integers(1, 5)),
                         "iscrowd": int(j == 3), "area": int(m.sum()),
                         "bbox": [float(v) for v in pcm.toBbox(r)],
                         "segmentation": {"size": [h, w], "counts": r["counts"].decode()}})
            aid += 1
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, 5)]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _annotation_masks(doc, image_id, h, w):
    out = []
    for a in doc["annotations"]:
        if a["image_id"] != image_id:
            continue
        seg = a["segmentation"]
        if isinstance(seg, list):
            r = pcm.merge(pcm.frPyObjects(seg, h, w))
        else:
            r = pcm.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else dict(seg, counts=seg["counts"].encode())
        out.append((a["category_id"], int(a.get("iscrowd", 0)), pcm.decode(r).tobytes()))
    return sorted(out)


def test_coco_rle_png_coco_identical_pixels(tmp_path):
    src = _coco_rle_dataset(tmp_path / "src.json")
    masks, _ = convert(src, "masks", tmp_path / "m")
    assert (masks / "labelmap.json").exists()
    # instance maps carry the instances; class maps the classes (crowd -> 255)
    back, _ = convert(masks, "coco", tmp_path / "c")
    a = json.loads(src.read_text())
    b = json.loads((back / "annotations.json").read_text())
    for im in a["images"]:
        h, w = im["height"], im["width"]
        ca = paint_annotations([x for x in a["annotations"] if x["image_id"] == im["id"]], h, w)
        other = next(x for x in b["images"] if x["file_name"].startswith(im["file_name"][:-4]))
        cb = paint_annotations([x for x in b["annotations"] if x["image_id"] == other["id"]], h, w)
        np.testing.assert_array_equal(ca, cb)


def test_coco_rle_voc_coco_identical_instances(tmp_path):
    src = _coco_rle_dataset(tmp_path / "src.json", seed=5)
    voc, _ = convert(src, "voc", tmp_path / "v")
    back, _ = convert(voc, "coco", tmp_path / "c")
    a = json.loads(src.read_text())
    b = json.loads((back / "annotations.json").read_text())
    by_name = {im["file_name"][:-4]: im for im in b["images"]}
    for im in a["images"]:
        other = by_name[im["file_name"][:-4]]
        ma = _annotation_masks(a, im["id"], im["height"], im["width"])
        mb = _annotation_masks(b, other["id"], im["height"], im["width"])
        # crowd regions come back as one ignore region with category 255
        assert [m for m in ma if not m[1]] == [m for m in mb if not m[1]]
        crowd_a = [m for m in ma if m[1]]
        crowd_b = [m for m in mb if m[1]]
        assert len(crowd_b) == (1 if crowd_a else 0)
        if crowd_a:
            assert crowd_b[0][0] == 255 and crowd_b[0][2] == crowd_a[0][2]


def test_coco_to_coco_rle_equals_pycocotools(real_data, tmp_path):
    """Real COCO polygons re-encoded as RLE: every mask equals pycocotools' annToMask."""
    src = real_data / TINYCOCO
    out, _r = convert(src, "coco", tmp_path / "c", coco_encoding="rle")
    a = json.loads(src.read_text())
    b = json.loads((out / "annotations.json").read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in a["images"]}
    by_id = {x["id"]: x for x in b["annotations"]}
    assert len(by_id) == len(a["annotations"])
    for x in a["annotations"]:
        h, w = sizes[x["image_id"]]
        seg = x["segmentation"]
        ref = pcm.merge(pcm.frPyObjects(seg, h, w)) if isinstance(seg, list) else pcm.frPyObjects(seg, h, w)
        y = by_id[x["id"]]
        assert y["category_id"] == x["category_id"] and y["image_id"] == x["image_id"]
        got = dict(y["segmentation"], counts=y["segmentation"]["counts"].encode())
        assert got["counts"] == ref["counts"], x["id"]
    # and as polygons (the default) the source polygons are kept as they are
    out2, _ = convert(src, "coco", tmp_path / "p")
    b2 = {x["id"]: x for x in json.loads((out2 / "annotations.json").read_text())["annotations"]}
    for x in a["annotations"]:
        if isinstance(x["segmentation"], list):  # kept with the source's other fields (geometric area...)
            assert {k: v for k, v in b2[x["id"]].items() if k != "instance_id"} == x


def test_cleanzip_write_read_identical(tmp_path):
    src = make_voc(tmp_path / "voc", n=3, seed=7)
    for zip_output in (False, True):
        out = tmp_path / f"z{int(zip_output)}"
        target, _r = convert(src, "cleanzip", out, zip_output=zip_output)
        ds = open_dataset(target)
        assert ds.layout == "cleanzip"
        assert ds.labelmap == open_dataset(src).labelmap
        info = ds.info()
        assert info["task"] == "semantic" and info["mask_encoding"] == "png-index"
        assert info["coco_json"] == "coco/annotations.json"
        a, b = items_of(open_dataset(src)), items_of(ds)
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_array_equal(a[k].mask.array, b[k].mask.array)
            assert b[k].extra["record_size"] == (50, 40)
        rows = ds.manifest().to_pylist()
        assert {r["split"] for r in rows} == {"train", "val"}
        meta = json.loads((target / "meta.json").read_text()) if not zip_output else json.loads(
            zipfile.ZipFile(target).read("meta.json"))
        assert meta["format"] == "fastmask-cleanzip" and meta["image_sizes"] == {"50x40": 3}


def test_nucleus_segment_table(tmp_path):
    src = make_voc(tmp_path / "voc", n=2, seed=11)
    out, _r = convert(src, "nucleus", tmp_path / "n")
    table = pq.read_table(out / "segments.parquet").to_pylist()
    lines = [json.loads(x) for x in (out / "segments.jsonl").read_text().splitlines()]
    # Nucleus' upload shape: reference_id, "type": "mask", index 0 = background (every index occurs)
    assert [x["reference_id"] for x in lines] == ["img_000", "img_001"]
    assert all(x["type"] == "mask" for x in lines)
    src_items = items_of(open_dataset(src))
    lm = open_dataset(src).labelmap
    for line in lines:
        index_map = read_mask(out / line["mask_url"]).array
        assert index_map.dtype == np.uint8
        rows = [t for t in table if t["item_id"] == line["reference_id"]]
        assert line["annotations"][0] == {"label": "background", "index": 0}
        assert [t["index"] for t in rows] == [a["index"] for a in line["annotations"][1:]] == list(
            range(1, len(rows) + 1))
        cls = src_items[line["reference_id"]].mask.array
        obj = src_items[line["reference_id"]].instance_mask.array
        assert set(np.unique(index_map).tolist()) == set(range(len(rows) + 1))
        for t in rows:
            sel = index_map == t["index"]
            assert int(sel.sum()) == t["area"] > 0
            assert t["label"] == lm.names[t["category_id"]]
            if t["iscrowd"]:
                assert (cls[sel] == 255).all()
            else:
                assert (cls[sel] == t["category_id"]).all()
                if t["instance_id"]:
                    np.testing.assert_array_equal(sel, obj == t["instance_id"])
        # every labelled pixel is in exactly one segment
        np.testing.assert_array_equal(index_map > 0, cls > 0)


def test_masks_output_with_instances(tmp_path):
    src = make_voc(tmp_path / "voc", n=2, seed=2)
    out, _ = convert(src, "masks", tmp_path / "m")
    a = items_of(open_dataset(src))
    for k, it in a.items():
        np.testing.assert_array_equal(read_mask(out / "masks" / f"{k}.png").array, it.mask.array)
        np.testing.assert_array_equal(read_mask(out / "instances" / f"{k}.png").array, it.instance_mask.array)


def test_bad_items_are_error_rows_and_run_goes_on(tmp_path):
    root = tmp_path / "masks"
    (root / "masks").mkdir(parents=True)
    good = np.zeros((6, 6), np.uint8)
    good[1:4, 1:4] = 3
    write_mask(root / "masks" / "a.png", good)
    (root / "masks" / "b.png").write_bytes(b"")  # zero bytes
    (root / "masks" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out, _r = convert(root, "coco", tmp_path / "c")
    items = load_report_table(tmp_path / "c").to_pylist()
    assert sorted(x["item_id"] for x in items) == ["a", "b", "c"]
    assert {x["item_id"]: x["status"] for x in items} == {"a": "ok", "b": "error", "c": "error"}
    doc = json.loads((out / "annotations.json").read_text())
    assert [im["file_name"] for im in doc["images"]] == ["a.jpg"]
    (ann,) = doc["annotations"]
    assert ann["category_id"] == 3 and ann["segmentation"] == [[1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0]]
    assert ann["area"] == 9 and ann["bbox"] == [1.0, 1.0, 3.0, 3.0]


def test_panoptic_size_mismatch_is_an_error_row(real_data, tmp_path):
    src = real_data / "datumaro/tests/assets/coco_dataset/coco_panoptic/annotations/panoptic_train.json"
    if not src.exists():
        pytest.skip("datumaro panoptic sample missing")
    _, _r = convert(src, "coco", tmp_path / "c")
    items = load_report_table(tmp_path / "c").to_pylist()
    assert "size_mismatch" in {x["error_code"] for x in items}


def test_invalid_options_raise(tmp_path):
    ds = open_dataset(make_voc(tmp_path / "voc", n=1))
    for kw in ({"to": "yolo"}, {"to": "coco", "coco_encoding": "mesh"}, {"to": "coco", "tolerance": -1},
               {"to": "coco", "connectivity": 6}, {"to": "coco", "zip_output": True}):
        with pytest.raises(ValueError):
            ConvertJob(ds, out_dir=tmp_path / "x", **kw)


def test_cli_end_to_end(tmp_path, capsys):
    src = make_voc(tmp_path / "voc", n=2)
    out = tmp_path / "out"
    assert main(["convert", str(src), "--to", "coco", "--out", str(out), "--workers", "1", "--quiet",
                 "--tolerance", "0.5"]) == 0
    assert "converted 2 of 2 items (voc -> coco)" in capsys.readouterr().out
    assert json.loads((out / "dataset/annotations.json").read_text())["images"]
    # out not empty -> usage error (2); --overwrite works
    assert main(["convert", str(src), "--to", "coco", "--out", str(out), "--workers", "1", "--quiet"]) == 2
    assert main(["convert", str(src), "--to", "coco", "--out", str(out), "--workers", "1", "--quiet",
                 "--overwrite"]) == 0
    # zip for a format without a zip form, a missing source: usage errors
    assert main(["convert", str(src), "--to", "coco", "--zip", "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert main(["convert", str(tmp_path / "nope"), "--to", "coco", "--out", str(tmp_path / "o3"), "--quiet"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["convert", str(src), "--to", "yolo", "--out", str(tmp_path / "o4")])
    assert e.value.code == 2


@settings(max_examples=80)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1), st.booleans())
def test_segments_partition_the_labelled_pixels(h, w, seed, with_instances):
    """Class (+ instance) maps -> segments, against a NumPy reference of the documented rules."""
    from fastmask.jobs.convert import _segments_from_maps

    rng = np.random.default_rng(seed)
    cls = rng.choice(np.array([0, 1, 2, 5, 255], np.uint8), (h, w))
    inst = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), (h, w)) if with_instances else None
    segs = _segments_from_maps(cls, inst, 0, 255)
    masks = [pcm.decode(dict(s["rle"])).astype(bool) for s in segs]
    ign = (cls == 255) | ((inst == 255) if inst is not None else False)
    got = np.zeros((h, w), int)
    for m in masks:
        got += m
    assert got.max(initial=0) <= 1  # disjoint
    expected = []
    if inst is not None:
        for i in (1, 2, 3):
            px = (inst == i) & ~ign
            classes = [(int(((cls == c) & px).sum()), c) for c in (1, 2, 5)]
            n, c = max(classes)
            if n:
                expected.append(("inst", c, i, px))
        rest = ~ign & (inst == 0) & (cls != 0)
    else:
        rest = ~ign & (cls != 0)
    for c in (1, 2, 5):
        if (rest & (cls == c)).any():
            expected.append(("class", c, 0, rest & (cls == c)))
    if ign.any():
        expected.append(("crowd", 255, 255, ign))
    assert len(segs) == len(expected)
    for s, m, (kind, c, i, px) in zip(segs, masks, expected):
        assert (s["category_id"], s["instance_id"], s["iscrowd"]) == (c, i, int(kind == "crowd"))
        np.testing.assert_array_equal(m, px)


def test_unknown_colour_and_invalid_annotation_are_error_rows(tmp_path):
    from PIL import Image

    voc = make_voc(tmp_path / "voc", n=2, seed=4)
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[5:9, 5:9] = (1, 2, 3)  # not a VOC colour
    Image.fromarray(rgb, "RGB").save(voc / "SegmentationClass" / "img_000.png")
    _, r = convert(voc, "coco", tmp_path / "c")
    items = {x["item_id"]: x for x in load_report_table(tmp_path / "c").to_pylist()}
    assert items["img_000"]["error_code"] == "unknown_color" and items["img_001"]["status"] == "ok"
    assert r.counts["ok"] == 1

    src = tmp_path / "bad.json"
    src.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4},
                   {"id": 2, "file_name": "b.jpg", "width": 4, "height": 4}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1]]},
                        {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]]}],
        "categories": [{"id": 1, "name": "x"}]}))
    out, r = convert(src, "voc", tmp_path / "v")
    items = {x["item_id"]: x for x in load_report_table(tmp_path / "v").to_pylist()}
    assert items["000000000001"]["error_code"] == "invalid_annotation"
    assert items["000000000002"]["status"] == "ok"
    assert (out / "ImageSets/Segmentation/default.txt").read_text() == "b\n"


def test_voc_output_with_category_ids_above_254(tmp_path):
    src = tmp_path / "big.json"
    src.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4},
                   {"id": 2, "file_name": "b.jpg", "width": 4, "height": 4}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 300, "segmentation": [[0, 0, 2, 0, 2, 2]]},
                        {"id": 2, "image_id": 2, "category_id": 3, "segmentation": [[0, 0, 2, 0, 2, 2]]}],
        "categories": [{"id": 3, "name": "small"}, {"id": 300, "name": "big"}]}))
    out, r = convert(src, "voc", tmp_path / "v")
    assert r.counts == {**r.counts, "ok": 1, "error": 1}
    items = {x["item_id"]: x for x in load_report_table(tmp_path / "v").to_pylist()}
    assert items["000000000001"]["error_code"] == "too_many_classes"
    lm = LabelMap.from_cvat((out / "labelmap.txt").read_text())
    assert lm.names[3] == "small" and 300 not in lm.names


def test_output_independent_of_workers_and_shards_and_resume(tmp_path):
    src = make_voc(tmp_path / "voc", n=5, seed=9)
    ds = open_dataset(src)
    outs = []
    for name, kw in (("a", {"workers": 1, "shard_size": 100}), ("b", {"workers": 2, "shard_size": 2, "executor": "threads"})):
        job = ConvertJob(ds, "coco", tmp_path / name)
        run_job(job, job.manifest(), tmp_path / name, quiet=True, **kw)
        outs.append((assemble(job, tmp_path / name) / "annotations.json").read_bytes())
    assert outs[0] == outs[1]
    # resuming a finished run re-assembles the same files
    job = ConvertJob(ds, "coco", tmp_path / "b")
    r = run_job(job, job.manifest(), tmp_path / "b", quiet=True, workers=1, shard_size=2, resume=True)
    assert r.skipped_shards == r.n_shards == 3
    assert (assemble(job, tmp_path / "b") / "annotations.json").read_bytes() == outs[0]


def test_panoptic_from_voc_marks_things(tmp_path):
    src = make_voc(tmp_path / "voc", n=2, seed=1)
    out, _r = convert(src, "coco_panoptic", tmp_path / "p")
    doc = json.loads((out / "panoptic.json").read_text())
    cats = {c["id"]: c["isthing"] for c in doc["categories"]}
    used = {s["category_id"] for a in doc["annotations"] for s in a["segments_info"] if not s["iscrowd"]}
    assert used and all(cats[c] == 1 for c in used)  # every VOC class here comes from an instance
    assert cats[255] == 0 and cats[1] in (0, 1)
    ds = open_dataset(out / "panoptic.json")
    for row, item in ds.iter_items():  # segments_info consistent with the PNG
        ids = item.instance_mask.array
        for seg in item.segments:
            assert int((ids == seg["id"]).sum()) == seg["area"]
        assert set(np.unique(ids).tolist()) - {0} == {seg["id"] for seg in item.segments}


def test_nested_item_names_keep_their_folders(tmp_path):
    root = tmp_path / "src" / "masks"
    (root / "city" / "a").mkdir(parents=True)
    m = np.zeros((5, 5), np.uint16)
    m[1:3, 1:3] = 300  # 16-bit class id
    m[4, 4] = 2
    write_mask(root / "city" / "a" / "x.png", m)
    for to in ("masks", "nucleus", "cleanzip"):
        out, _r = convert(tmp_path / "src", to, tmp_path / to)
        (row,) = load_report_table(tmp_path / to).to_pylist()
        assert row["status"] == "ok" and row["name"] == "city/a/x"
        assert row["mask_file"] == "masks/city/a/x.png"
        got = read_mask(out / row["mask_file"]).array
        if to == "nucleus":
            assert sorted(np.unique(got).tolist()) == [0, 1, 2]
        else:
            np.testing.assert_array_equal(got, m)
    src = tmp_path / "nested.json"
    src.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "sub/dir/x.jpg", "width": 4, "height": 4}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}],
        "categories": [{"id": 3, "name": "c"}]}))
    out, _ = convert(src, "masks", tmp_path / "cm")
    (row,) = load_report_table(tmp_path / "cm").to_pylist()
    assert (row["mask_file"], row["instance_file"]) == ("masks/sub/dir/x.png", "instances/sub/dir/x.png")
    assert read_mask(out / row["instance_file"]).array.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0] * 4, [0] * 4]


def test_panoptic_png_folder_named_on_the_command_line(real_data, tmp_path):
    # gt.json's PNGs are not in a folder beside it: --masks names the folder
    src = real_data / "_reference/panoptic_pq/gt.json"
    pngs = real_data / "panopticapi/sample_data/panoptic_examples"
    out = tmp_path / "r"
    assert main(["convert", str(src), "--masks", str(pngs), "--to", "masks", "--out", str(out),
                 "--workers", "1", "--quiet"]) == 0
    items = pq.read_table(out / "items").to_pylist()
    assert len(items) == 2 and all(r["status"] == "ok" for r in items)
    bad = main(["convert", str(tmp_path / "r"), "--masks", str(pngs), "--to", "masks", "--out", str(tmp_path / "x"),
                "--quiet"])
    assert bad == 2


def test_output_names_are_unique_and_deterministic():
    from fastmask.jobs.convert import output_names

    names, bases = output_names(["3", "1", "2", "4"], ["A.jpg", "a.jpg", "a.png", "a__2.png"])
    # item-id order decides: "1" keeps "a"; "2" and "3" (case only) get the first free suffixes;
    # a real "a__2" coming later is renamed in turn
    assert names == ["A__3", "a", "a__2", "a__2__2"] and bases == ["A", "a", "a", "a__2"]
    assert output_names(["x", "y"], None) == (["x", "y"], ["x", "y"])
    assert output_names(["b", "a"], ["d/im.png", "d/im.jpg"])[0] == ["d/im__2", "d/im"]


def test_clashing_coco_file_names_keep_every_item(tmp_path, capsys):
    # "a.jpg" and "a.png" would both give masks/a.png: the second must not overwrite the first
    h, w = 20, 30
    images = [{"id": i, "file_name": f, "width": w, "height": h} for i, f in ((1, "a.jpg"), (2, "a.png"), (3, "A.jpg"))]
    anns = [{"id": i, "image_id": i, "category_id": i, "iscrowd": 0, "area": 16, "bbox": [i, i, 4, 4],
             "segmentation": [[i, i, i + 4, i, i + 4, i + 4, i, i + 4]]} for i in (1, 2, 3)]
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    src = tmp_path / "ann.json"
    src.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    out = tmp_path / "out"
    assert main(["convert", str(src), "--to", "masks", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "2 items renamed" in capsys.readouterr().out
    rows = {r["image_id"]: r for r in load_report_table(out).to_pylist()}
    assert [rows[i]["mask_file"] for i in (1, 2, 3)] == ["masks/a.png", "masks/a__2.png", "masks/A__3.png"]
    assert [rows[i]["renamed"] for i in (1, 2, 3)] == [False, True, True]
    for i in (1, 2, 3):  # each mask holds its own image's annotation (category i)
        m = np.asarray(Image.open(out / "dataset" / rows[i]["mask_file"]))
        assert set(np.unique(m).tolist()) == {0, i}


def test_resume_with_other_dataset_options_is_refused(tmp_path, capsys):
    src = _coco_rle_dataset(tmp_path / "ann.json", n=2)
    (tmp_path / "im1").mkdir()
    (tmp_path / "im2").mkdir()
    out = str(tmp_path / "out")
    base = ["convert", str(src), "--to", "masks", "--out", out, "--workers", "1", "--quiet"]
    assert main(base + ["--images", str(tmp_path / "im1")]) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["arguments"]["images"] == str(tmp_path / "im1")
    capsys.readouterr()
    assert main(base + ["--images", str(tmp_path / "im2"), "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main(base + ["--images", str(tmp_path / "im1"), "--resume"]) == 0


def _suffixes(folder: Path) -> list[str]:
    return sorted({p.suffix for p in folder.rglob("*") if p.is_file()})


def _coco_with_instance_ids(path: Path) -> Path:
    """Three images of squares; image 2 carries an ``instance_id`` above 16 bits."""
    images, anns = [], []
    for i, top in ((1, 7), (2, 70000), (3, 12)):
        images.append({"id": i, "file_name": f"im{i}.jpg", "width": 20, "height": 16})
        for j, (x, iid) in enumerate(((1, 3), (10, top))):
            sq = [x, 2, x + 6, 2, x + 6, 9, x, 9]
            anns.append({"id": i * 10 + j, "image_id": i, "category_id": 1 + j, "segmentation": [sq],
                         "area": 49.0, "bbox": [x, 2, 6, 7], "iscrowd": 0, "instance_id": iid})
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return path


def test_masks_instances_folder_has_one_format(tmp_path):
    """A COCO image whose instance ids exceed 16 bits: an error row naming --format tiff32 (the folder
    stays all PNG), or every instance map as TIFF when tiff32 is asked for; run.json records the format."""
    src = _coco_with_instance_ids(tmp_path / "src.json")
    out = tmp_path / "png"
    assert main(["convert", str(src), "--to", "masks", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    items = {r["item_id"]: r for r in load_report_table(out).to_pylist()}
    assert len(items) == 3
    bad = [r for r in items.values() if r["status"] == "error"]
    assert len(bad) == 1 and bad[0]["error_code"] == "format_overflow"
    assert "70000" in bad[0]["error_message"] and "--format tiff32" in bad[0]["error_message"]
    assert _suffixes(out / "dataset" / "instances") == [".png"]
    assert len(list((out / "dataset" / "instances").iterdir())) == 2
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["mask_format"] == "png16" and run["arguments"]["format"] == "auto"
    out = tmp_path / "tif"
    assert main(["convert", str(src), "--to", "masks", "--out", str(out), "--format", "tiff32", "--workers", "1",
                 "--quiet"]) == 0
    rows = load_report_table(out).to_pylist()
    assert all(r["status"] == "ok" and r["instance_file"].endswith(".tif") for r in rows)
    assert _suffixes(out / "dataset" / "instances") == [".tif"]
    ids = read_mask(out / "dataset" / "instances" / "im2.tif").array
    assert sorted(np.unique(ids).tolist()) == [0, 3, 70000]
    assert json.loads((out / "run.json").read_text())["summary"]["mask_format"] == "tiff32"
    # the format is for the one target with id maps
    assert main(["convert", str(src), "--to", "coco", "--format", "tiff32", "--out", str(tmp_path / "x"),
                 "--quiet"]) == 2


def test_panoptic_source_to_masks_is_all_tiff(real_data, tmp_path):
    # panoptic segment ids are 24-bit (R + 256 G + 65536 B): the instances folder is TIFF up front
    out, r = convert(real_data / PANOPTIC_REAL, "masks", tmp_path / "m")
    assert r.summary["mask_format"] == "tiff32" and r.counts["ok"] == 2
    assert _suffixes(out / "instances") == [".tif"] and _suffixes(out / "masks") == [".png"]
    src = open_dataset(real_data / PANOPTIC_REAL)
    for row, item in src.iter_items():
        got = read_mask(out / "instances" / (row["file_name"].rsplit(".", 1)[0] + ".tif")).array
        np.testing.assert_array_equal(got.astype(np.int64), item.instance_mask.array.astype(np.int64))


def test_zip_leaves_only_the_zip_unless_keep_folder(tmp_path):
    src = make_voc(tmp_path / "voc", n=2, seed=5)
    out = tmp_path / "z"
    base = ["convert", str(src), "--to", "voc", "--zip", "--workers", "1", "--quiet"]
    assert main([*base, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("dataset")) == ["dataset.zip"]
    assert_same_voc(src, out / "dataset.zip")
    data = (out / "dataset.zip").read_bytes()
    # a rerun of the finished run leaves the zip as it was (its files live only in the zip now)
    assert main([*base, "--out", str(out), "--resume"]) == 0
    assert (out / "dataset.zip").read_bytes() == data and not (out / "dataset").exists()
    kept = tmp_path / "k"
    assert main([*base, "--out", str(kept), "--keep-folder"]) == 0
    assert (kept / "dataset").is_dir() and (kept / "dataset.zip").is_file()
    assert_same_voc(src, kept / "dataset")
    assert sorted(zipfile.ZipFile(kept / "dataset.zip").namelist()) == sorted(
        p.relative_to(kept / "dataset").as_posix() for p in (kept / "dataset").rglob("*") if p.is_file())
    assert main(["convert", str(src), "--to", "voc", "--keep-folder", "--out", str(tmp_path / "x"), "--quiet"]) == 2
