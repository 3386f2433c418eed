"""`fastmask rasterize`: every kind end to end against pycocotools, round trips, options, errors, resume."""
from __future__ import annotations

import json
import shutil
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as pm

from fastmask.cli import main
from fastmask.formats import read_mask, read_panoptic
from fastmask.raster import paint_annotations

TINY = "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"


def ann_to_mask(ann, h, w):
    seg = ann["segmentation"]
    if isinstance(seg, list):
        return pm.decode(pm.merge(pm.frPyObjects(seg, h, w)))
    if isinstance(seg["counts"], list):
        return pm.decode(pm.frPyObjects(seg, h, w))
    return pm.decode(seg)


def load(path):
    with open(path) as f:
        data = json.loads(f.read())
    by_img = defaultdict(list)
    for a in data["annotations"]:
        by_img[a["image_id"]].append(a)
    return data, by_img


def run(*argv):
    return main(["rasterize", *map(str, argv), "--quiet", "--workers", "1"])


@pytest.fixture(scope="module")
def tiny(real_data, tmp_path_factory):
    """tinycoco val plus 2 images without annotations (a copy of the real file)."""
    data = json.loads((real_data / TINY).read_text())
    data["images"].append({"id": 900001, "file_name": "empty_a.jpg", "width": 33, "height": 17})
    data["images"].append({"id": 900002, "file_name": "sub/empty_b.jpg", "width": 8, "height": 9})
    p = tmp_path_factory.mktemp("tiny") / "instances_val2017.json"
    p.write_text(json.dumps(data))
    return p


def test_semantic_equals_pycocotools(tiny, tmp_path):
    out = tmp_path / "sem"
    assert run(tiny, "--out", out) == 0
    data, by_img = load(tiny)
    items = pq.read_table(out / "items").to_pylist()
    assert len(items) == len(data["images"]) == len({r["item_id"] for r in items})
    assert all(r["status"] == "ok" for r in items)
    by_id = {r["image_id"]: r for r in items}
    n_crowd = 0
    for img in data["images"]:
        h, w = img["height"], img["width"]
        ref = np.zeros((h, w), np.int64)
        for a in by_img[img["id"]]:
            ref[ann_to_mask(a, h, w) > 0] = 255 if a["iscrowd"] else a["category_id"]
            n_crowd += a["iscrowd"]
        row = by_id[img["id"]]
        assert row["output"] == "masks/" + img["file_name"].rsplit(".", 1)[0] + ".png"
        m = read_mask(out / row["output"])
        assert m.mode == "L" and np.array_equal(m.array, ref), img["id"]
        assert row["n_annotations"] == len(by_img[img["id"]])
    assert n_crowd >= 1
    assert not read_mask(out / "masks/empty_a.png").array.any()
    assert read_mask(out / "masks/sub/empty_b.png").array.shape == (9, 8)


def test_instance_kind_and_table(tiny, tmp_path):
    out = tmp_path / "inst"
    assert run(tiny, "--out", out, "--kind", "instance", "--crowd", "class") == 0
    data, by_img = load(tiny)
    rows = pq.read_table(out / "instances").to_pylist()
    assert len(rows) == len(data["annotations"])
    per_item = defaultdict(list)
    for r in rows:
        per_item[r["item_id"]].append(r)
    items = {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    for img in data["images"]:
        h, w = img["height"], img["width"]
        item = next(r for r in items.values() if r["image_id"] == img["id"])
        m = read_mask(out / item["output"])
        assert m.bit_depth == 16
        ref = np.zeros((h, w), np.int64)
        for k, a in enumerate(by_img[img["id"]]):
            ref[ann_to_mask(a, h, w) > 0] = k + 1
        assert np.array_equal(m.array, ref)
        for r, a in zip(per_item[item["item_id"]], by_img[img["id"]]):
            assert r["annotation_id"] == a["id"] and r["category_id"] == a["category_id"]
            assert r["area"] == int((m.array == r["instance_id"]).sum())
            assert r["mask_area"] == int(ann_to_mask(a, h, w).sum())
            assert r["iscrowd"] == bool(a["iscrowd"])


def test_binary_kind(tiny, tmp_path):
    out = tmp_path / "bin"
    assert run(tiny, "--out", out, "--kind", "binary") == 0
    data, _by_img = load(tiny)
    rows = {r["annotation_id"]: r for r in pq.read_table(out / "instances").to_pylist()}
    images = {i["id"]: i for i in data["images"]}
    for a in data["annotations"]:
        img = images[a["image_id"]]
        with Image.open(out / rows[a["id"]]["output"]) as im:
            got = np.array(im)
        assert set(np.unique(got)) <= {0, 255}
        assert np.array_equal(got, ann_to_mask(a, img["height"], img["width"]) * 255)


def test_panoptic_png_and_json_consistent(tiny, tmp_path):
    out = tmp_path / "pan"
    assert run(tiny, "--out", out, "--kind", "panoptic") == 0
    pan = json.loads((out / "panoptic.json").read_text())
    data, by_img = load(tiny)
    assert len(pan["images"]) == len(data["images"]) and len(pan["annotations"]) == len(data["images"])
    assert {c["id"] for c in pan["categories"]} == {c["id"] for c in data["categories"]}
    n_seg = n_crowd = 0
    for ann in pan["annotations"]:
        ids = read_panoptic(out / "panoptic" / ann["file_name"]).array
        segs = {s["id"]: s for s in ann["segments_info"]}
        present = set(np.unique(ids).tolist()) - {0}
        assert present == set(segs)
        for sid, s in segs.items():
            ys, xs = np.nonzero(ids == sid)
            assert s["area"] == len(ys)
            assert s["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            n_seg += 1
            n_crowd += s["iscrowd"]
        # the same pixels as the instance painting, crowd kept as iscrowd segments
        img = next(i for i in data["images"] if i["id"] == ann["image_id"])
        cats = np.zeros(ids.shape, np.int64)
        for sid, s in segs.items():
            cats[ids == sid] = s["category_id"]
        ref = paint_annotations(by_img[img["id"]], img["height"], img["width"], crowd="class")
        assert np.array_equal(cats, ref)
    assert n_seg > 50 and n_crowd >= 1
    # fastmask's own checker finds the pair consistent
    assert main(["validate", str(out / "panoptic.json"), "--out", str(tmp_path / "v"), "--quiet", "--workers", "1",
                 "--fail-on", "error"]) == 0


def test_rle_kind_round_trips(tiny, tmp_path):
    out = tmp_path / "rle"
    assert run(tiny, "--out", out, "--kind", "rle") == 0
    assert not (out / "masks").exists()
    data, _by_img = load(tiny)
    rows = pq.read_table(out / "rles").to_pylist()
    assert len(rows) == len(data["annotations"])
    anns = {a["id"]: a for a in data["annotations"]}
    for r in rows:
        rle = {"size": [r["height"], r["width"]], "counts": r["counts"].encode()}
        expect = ann_to_mask(anns[r["annotation_id"]], r["height"], r["width"])
        assert np.array_equal(pm.decode(rle), expect)  # RLE parquet -> decode equals the mask
        assert r["area"] == int(expect.sum())
        assert pm.encode(np.asfortranarray(pm.decode(rle)))["counts"] == rle["counts"]  # mask -> RLE -> mask
    # COCO (RLE) -> PNG -> COCO: a COCO file made of the RLE rows rasterizes to the same pixels,
    # and the PNGs encoded back to RLE give the same strings
    data2 = dict(data)
    data2["annotations"] = [dict(anns[r["annotation_id"]], segmentation={"size": [r["height"], r["width"]],
                                                                          "counts": r["counts"]}) for r in rows]
    p2 = tmp_path / "from_rle" / "instances_x.json"
    p2.parent.mkdir()
    p2.write_text(json.dumps(data2))
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(tiny, "--out", a, "--kind", "binary") == 0
    assert run(p2, "--out", b, "--kind", "binary") == 0
    ra = {r["annotation_id"]: r for r in pq.read_table(a / "instances").to_pylist()}
    rb = {r["annotation_id"]: r for r in pq.read_table(b / "instances").to_pylist()}
    by_counts = {r["annotation_id"]: r["counts"] for r in rows}
    for aid, r in ra.items():
        pa_ = np.array(Image.open(a / r["output"]))
        pb_ = np.array(Image.open(b / rb[aid]["output"]))
        assert np.array_equal(pa_, pb_)
        assert pm.encode(np.asfortranarray((pb_ > 0).astype(np.uint8)))["counts"].decode() == by_counts[aid]


def _coco(tmp_path, images, annotations, categories=None, name="instances_gen.json"):
    d = tmp_path / "gen"
    d.mkdir(exist_ok=True)
    p = d / name
    cats = categories or [{"id": i, "name": f"c{i}"} for i in range(1, 6)]
    p.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return p


def _sq(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_invalid_annotations_are_findings_and_run_goes_on(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
              {"id": 2, "file_name": "b.jpg", "width": 10},  # no height
              {"id": 3, "file_name": "c.jpg", "width": 10, "height": 10}]
    anns = [{"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": _sq(1, 1, 5, 5)},
            {"id": 12, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": [[1, 2, 3]]},
            {"id": 13, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": {"size": [5, 5], "counts": "0"}},
            {"id": 14, "image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": _sq(0, 0, 2, 2)},
            {"id": 15, "image_id": 3, "category_id": 3, "iscrowd": 0, "segmentation": _sq(0, 0, 4, 4)}]
    p = _coco(tmp_path, images, anns)
    out = tmp_path / "r"
    assert run(p, "--out", out) == 0
    items = {r["image_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert len(items) == 3
    assert items[1]["status"] == "ok" and items[1]["n_skipped"] == 2
    assert items[2]["status"] == "error" and items[2]["error_code"] == "bad_size" and items[2]["output"] is None
    assert items[3]["status"] == "ok" and items[3]["n_skipped"] == 0
    f = pq.read_table(out / "findings").to_pylist()
    assert [(r["annotation_id"], r["rule"]) for r in f] == [(12, "invalid_annotation"), (13, "invalid_annotation")]
    assert "12" in f[0]["message"] and "odd number" in f[0]["message"] and "size" in f[1]["message"]
    m = read_mask(out / "masks/a.png").array
    assert np.array_equal(m, paint_annotations([anns[0]], 10, 10))
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["summary"]["skipped_annotations"] == 2 and run_json["summary"]["errors"] == 1


def test_options(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 12, "height": 10}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": _sq(0, 0, 10, 8)},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": _sq(2, 2, 6, 6)},
            {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": 1, "segmentation": _sq(5, 5, 11, 9)}]
    p = _coco(tmp_path, images, anns)
    cases = {
        ("--overlap", "order"): {"overlap": "order"},
        ("--overlap", "area"): {"overlap": "area"},
        ("--overlap", "draw-to-back"): {"overlap": "draw-to-back"},
        ("--overlap", "class-priority", "--class-priority", "3,1"): {"overlap": "class-priority",
                                                                        "class_priority": [3, 1]},
        ("--crowd", "class"): {"crowd": "class"},
        ("--ignore-value", "7", "--background", "9"): {"ignore_value": 7, "background": 9},
        ("--fill", "inclusive"): {"fill": "inclusive"},
    }
    seen = set()
    for k, (flags, kw) in enumerate(cases.items()):
        out = tmp_path / f"o{k}"
        assert run(p, "--out", out, *flags) == 0
        got = read_mask(out / "masks/a.png").array
        assert np.array_equal(got, paint_annotations(anns, 10, 12, **kw)), flags
        seen.add(got.tobytes())
    assert len(seen) >= 6  # the options do change the result
    # palette: P mode, indices are the class ids
    assert run(p, "--out", tmp_path / "pal", "--palette", "voc") == 0
    m = read_mask(tmp_path / "pal/masks/a.png")
    assert m.mode == "P" and np.array_equal(m.array, paint_annotations(anns, 10, 12))
    assert run(p, "--out", tmp_path / "pal2", "--palette", "labelmap") == 0
    assert read_mask(tmp_path / "pal2/masks/a.png").mode == "P"


def test_sixteen_bit_when_ids_exceed_255(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 6, "height": 5},
              {"id": 2, "file_name": "b.jpg", "width": 6, "height": 5}]
    anns = [{"id": 1, "image_id": 1, "category_id": 300, "iscrowd": 0, "segmentation": _sq(0, 0, 3, 3)},
            {"id": 2, "image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": _sq(0, 0, 3, 3)}]
    p = _coco(tmp_path, images, anns, categories=[{"id": 1, "name": "a"}, {"id": 300, "name": "b"}])
    out = tmp_path / "r"
    assert run(p, "--out", out) == 0
    a, b = read_mask(out / "masks/a.png"), read_mask(out / "masks/b.png")
    assert a.bit_depth == b.bit_depth == 16  # every file of the run has the same depth
    assert a.array.max() == 300 and b.array.max() == 1
    assert run(p, "--out", tmp_path / "x", "--palette", "voc") == 2  # a palette cannot hold 300


def test_usage_errors(tiny, tmp_path, real_data, capsys):
    assert run(tiny, "--out", tmp_path / "a", "--overlap", "class-priority") == 2
    assert "class priority" in capsys.readouterr().err
    assert run(tiny, "--out", tmp_path / "b", "--class-priority", "1,2") == 2
    assert run(tiny, "--out", tmp_path / "c", "--kind", "instance", "--palette", "voc") == 2
    assert run(tiny, "--out", tmp_path / "d", "--ignore-value", "70000") == 2
    voc = real_data / "mmsegmentation/tests/data"
    assert run(voc, "--out", tmp_path / "e") == 2
    assert "COCO" in capsys.readouterr().err
    assert run(tmp_path / "nope.json", "--out", tmp_path / "f") == 2
    with pytest.raises(SystemExit) as e:
        main(["rasterize", str(tiny), "--out", str(tmp_path / "g"), "--class-priority", "a,b"])
    assert e.value.code == 2
    # an existing report without --resume / --overwrite
    assert run(tiny, "--out", tmp_path / "h") == 0
    assert run(tiny, "--out", tmp_path / "h") == 2
    assert run(tiny, "--out", tmp_path / "h", "--overwrite", "--kind", "rle") == 0
    assert not (tmp_path / "h" / "masks").exists()  # overwrite removed the old masks


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".png", ".parquet") and "_shards" not in p.parts}


def test_resume_and_worker_independence(tiny, tmp_path):
    full = tmp_path / "full"
    assert run(tiny, "--out", full, "--kind", "instance", "--shard-size", "2") == 0
    two = tmp_path / "two"
    assert main(["rasterize", str(tiny), "--out", str(two), "--kind", "instance", "--shard-size", "2",
                 "--workers", "2", "--quiet"]) == 0
    assert _tree(full) == _tree(two)
    # simulate a run killed during shard 1: its marker and parts gone, a half-written temporary PNG left
    part = tmp_path / "part"
    shutil.copytree(full, part)
    for p in list((part / "_shards").glob("00001*")) + list(part.glob("*/part-00001.parquet")):
        p.unlink()
    items = pq.read_table(full / "items/part-00001.parquet").to_pylist()
    for r in items:
        (part / r["output"]).unlink()
    (part / "masks" / ".000000471345.png.abc.tmp").write_bytes(b"\x89PNG half")
    doc = json.loads((part / "run.json").read_text())
    doc["status"] = "stopped"
    (part / "run.json").write_text(json.dumps(doc))
    assert run(tiny, "--out", part, "--kind", "instance", "--resume") == 0
    assert _tree(part) == _tree(full)
    assert not list((part / "masks").glob(".*"))
    # resuming with other options is refused
    assert run(tiny, "--out", part, "--kind", "semantic", "--resume") == 2


def test_help_is_light():
    import subprocess
    import sys

    code = ("import sys; from fastmask.cli import build_parser; build_parser(); "
            "sys.exit(1 if 'numba' in sys.modules or 'pyarrow' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    with pytest.raises(SystemExit) as e:
        main(["rasterize", "--help"])
    assert e.value.code == 0


def test_mask_names_never_collide(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4},
              {"id": 2, "file_name": "a.png", "width": 4, "height": 4},
              {"id": 3, "file_name": "../evil.jpg", "width": 4, "height": 4},
              {"id": 4, "file_name": "d/b.jpg", "width": 4, "height": 4},
              {"id": 5, "width": 4, "height": 4}]
    anns = [{"id": k, "image_id": k, "category_id": k, "iscrowd": 0, "segmentation": _sq(0, 0, 3, 3)} for k in range(1, 6)]
    out = tmp_path / "r"
    assert run(_coco(tmp_path, images, anns), "--out", out) == 0
    items = {r["image_id"]: r["output"] for r in pq.read_table(out / "items").to_pylist()}
    assert items == {1: "masks/000000000001.png", 2: "masks/000000000002.png", 3: "masks/000000000003.png",
                     4: "masks/d/b.png", 5: "masks/000000000005.png"}
    for k, rel in items.items():
        assert read_mask(out / rel).array.max() == k
    assert not (tmp_path / "evil.png").exists()


def test_category_beyond_the_declared_ones_is_an_error_row(tmp_path):
    """Depth is chosen from the categories; an annotation with an undeclared id > 255 cannot wrap around."""
    images = [{"id": 1, "file_name": "a.jpg", "width": 5, "height": 5},
              {"id": 2, "file_name": "b.jpg", "width": 5, "height": 5}]
    anns = [{"id": 1, "image_id": 1, "category_id": 300, "iscrowd": 0, "segmentation": _sq(0, 0, 3, 3)},
            {"id": 2, "image_id": 2, "category_id": 4, "iscrowd": 0, "segmentation": _sq(0, 0, 3, 3)}]
    out = tmp_path / "r"
    assert run(_coco(tmp_path, images, anns), "--out", out) == 0
    items = {r["image_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert items[1]["status"] == "error" and items[1]["error_code"] == "cannot_rasterize"
    assert "300" in items[1]["error_message"] and not (out / "masks/a.png").exists()
    assert items[2]["status"] == "ok" and read_mask(out / "masks/b.png").array.max() == 4


def test_instance_format_is_one_per_folder(tmp_path):
    """An image with 65,790 instances: png16 makes it an error row naming --format tiff32 (the folder
    stays all PNG); tiff32 writes every image as a 32-bit TIFF with the same ids."""
    side = 258  # 258 * 255 one-pixel squares > 65535
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": _sq(x, y, x + 1, y + 1),
             "area": 1.0, "bbox": [x, y, 1, 1], "iscrowd": 0}
            for k, (y, x) in enumerate((y, x) for y in range(255) for x in range(side))]
    anns.append({"id": 10**6, "image_id": 2, "category_id": 2, "segmentation": _sq(1, 1, 4, 4), "area": 9.0,
                 "bbox": [1, 1, 3, 3], "iscrowd": 0})
    images = [{"id": 1, "file_name": "many.jpg", "width": side, "height": 255},
              {"id": 2, "file_name": "few.jpg", "width": 6, "height": 6}]
    src = _coco(tmp_path, images, anns)
    out = tmp_path / "png"
    assert run(src, "--out", out, "--kind", "instance") == 0
    items = {r["image_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert items[1]["status"] == "error" and items[1]["error_code"] == "format_overflow"
    assert "--format tiff32" in items[1]["error_message"]
    assert items[2]["status"] == "ok" and items[2]["output"] == "masks/few.png"
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["few.png"]
    assert json.loads((out / "run.json").read_text())["summary"]["mask_format"] == "png16"
    out = tmp_path / "tif"
    assert run(src, "--out", out, "--kind", "instance", "--format", "tiff32") == 0
    items = {r["image_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert [items[i]["output"] for i in (1, 2)] == ["masks/many.tif", "masks/few.tif"]
    assert sorted(p.suffix for p in (out / "masks").iterdir()) == [".tif", ".tif"]
    got = read_mask(out / "masks/many.tif").array
    ids = np.arange(1, 255 * side + 2)
    ids = ids[ids != 255]  # the ignore value (crowd) is never an instance id
    np.testing.assert_array_equal(got, ids.reshape(255, side))
    assert read_mask(out / "masks/few.tif").array[1:4, 1:4].tolist() == [[1] * 3] * 3
    assert json.loads((out / "run.json").read_text())["summary"]["mask_format"] == "tiff32"
    # the format is for instance maps only
    assert run(src, "--out", tmp_path / "x", "--format", "tiff32") == 2
