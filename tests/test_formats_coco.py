"""COCO instances and panoptic readers: real samples, streaming parser, cache, safety."""
from __future__ import annotations

import json
import os
import pickle
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from fastmask.formats import _cocojson
from fastmask.formats.errors import FormatError
from fastmask.formats.layouts import Item, open_dataset

TINY = "super-gradients/tests/data/tinycoco/annotations"
DM = "datumaro/tests/assets/coco_dataset"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # never write into the user's ~/.cache from tests
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path_factory.getbasetemp() / "fmcache"))


def _by_image(d):
    out = defaultdict(list)
    for a in d.get("annotations", []):
        out[a["image_id"]].append(a)
    return out


@pytest.mark.parametrize("rel", [f"{TINY}/instances_train2017.json", f"{TINY}/instances_val2017.json",
                                 f"{DM}/coco_instances/annotations/instances_train.json",
                                 f"{DM}/coco_instances/annotations/instances_val.json",
                                 f"{DM}/coco_stuff/annotations/stuff_train.json",
                                 "panopticapi/sample_data/panoptic_coco_detection_format.json"])
def test_coco_items_equal_json_load(real_data, rel):
    path = real_data / rel
    d = json.loads(path.read_text())
    ds = open_dataset(path)
    assert ds.layout == "coco"
    m = ds.manifest()
    assert m.num_rows == len(d["images"])  # every image is an item, annotated or not
    ids = m.column("item_id").to_pylist()
    assert ids == sorted(ids) and ids == [f"{im['id']:012d}" for im in sorted(d["images"], key=lambda i: i["id"])]
    expected = _by_image(d)
    recs = {im["id"]: im for im in d["images"]}
    total = 0
    for row, item in ds.iter_items():
        assert isinstance(item, Item)
        # exactly the file's annotation dicts, in file order
        assert item.annotations == expected.get(row["image_id"], [])
        rec = recs[row["image_id"]]
        assert item.image_size == (rec["width"], rec["height"]) == item.extra["record_size"]
        assert item.mask is None and item.missing == []
        total += len(item.annotations)
    assert total == len(d["annotations"])
    assert ds.info()["n_orphan_annotations"] == 0
    assert ds.labelmap.names == {c["id"]: c["name"] for c in d["categories"]}


def test_tinycoco_has_annotationless_images(real_data):
    ds = open_dataset(real_data / TINY / "instances_train2017.json")
    counts = ds.manifest().column("ann_count").to_pylist()
    assert 0 in counts and sum(counts) == ds.info()["n_annotations"]


def test_panoptic_real_sample(real_data):
    path = real_data / "panopticapi/sample_data/panoptic_examples.json"
    stats = json.loads((real_data / "_reference/png_stats.json").read_text())["files"]
    d = json.loads(path.read_text())
    ds = open_dataset(path)
    assert ds.layout == "coco_panoptic" and len(ds.labelmap.names) == 133
    rows = ds.manifest().to_pylist()
    assert [r["mask_file"] for r in rows] == ["000000142238.png", "000000439180.png"]
    anns = {a["image_id"]: a for a in d["annotations"]}
    for row in rows:
        item = ds.read_item(row)
        assert item.segments == anns[row["image_id"]]["segments_info"]
        exp = stats[f"panopticapi/sample_data/panoptic_examples/{row['mask_file']}"]["panoptic_id_R+256G+65536B"]
        u, c = np.unique(item.instance_mask.array, return_counts=True)
        assert {str(int(a)): int(b) for a, b in zip(u, c)} == exp
        # every segment's area is its pixel count in the PNG (real data, consistent)
        px = dict(zip(u.tolist(), c.tolist()))
        assert all(px[s["id"]] == s["area"] for s in item.segments)
        assert item.instance_mask.size == item.extra["record_size"]


def test_datumaro_panoptic_size_mismatch_is_reportable(real_data):
    ds = open_dataset(real_data / DM / "coco_panoptic/annotations/panoptic_train.json")
    (row,) = ds.manifest().to_pylist()
    item = ds.read_item(row)
    assert item.instance_mask.size == (5, 5)
    assert item.extra["record_size"] == (10, 5)  # JSON says 10x5: a checker flags size_mismatch
    assert [s["id"] for s in item.segments] == [460551]
    assert np.unique(item.instance_mask.array).tolist() == [460551]
    ok = open_dataset(real_data / DM / "coco/annotations/panoptic_train.json")
    it = ok.read_item(ok.manifest().to_pylist()[0])
    assert it.instance_mask.size == it.extra["record_size"] == (10, 5)
    assert sorted(np.unique(it.instance_mask.array).tolist()) == [0, 7]


def _write(tmp_path, obj, name="instances_x.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def test_file_name_outside_image_root_refused(tmp_path):
    imgs = tmp_path / "images"
    imgs.mkdir()
    Image.new("RGB", (4, 3)).save(imgs / "ok.jpg")
    Image.new("RGB", (4, 3)).save(tmp_path / "secret.jpg")
    os.symlink(tmp_path / "secret.jpg", imgs / "link.jpg")
    coco = {"images": [{"id": 1, "file_name": "ok.jpg", "width": 4, "height": 3},
                       {"id": 2, "file_name": "../secret.jpg", "width": 4, "height": 3},
                       {"id": 3, "file_name": "/etc/passwd", "width": 4, "height": 3},
                       {"id": 4, "file_name": "link.jpg", "width": 4, "height": 3},
                       {"id": 5, "file_name": "gone.jpg", "width": 4, "height": 3}],
            "annotations": [], "categories": []}
    ds = open_dataset(_write(tmp_path, coco), images=imgs)
    res = {r["image_id"]: it for r, it in ds.iter_items()}
    assert isinstance(res[1], Item) and res[1].image_size == (4, 3) and res[1].image_path.endswith("ok.jpg")
    for i in (2, 3, 4):
        assert isinstance(res[i], FormatError) and res[i].code == "path_outside_root", i
    assert res[5].missing == ["image"] and res[5].extra["expected_image"].endswith("gone.jpg")


def test_orphans_duplicates_and_odd_ids(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 2, "height": 2},
                       {"id": 1, "file_name": "a2.jpg", "width": 2, "height": 2},
                       {"id": "x", "file_name": "b.jpg", "width": 2, "height": 2}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]},
                            {"id": 10, "image_id": 99, "category_id": 1, "segmentation": []},
                            {"id": 12, "category_id": 1}],
            "categories": [{"id": 1, "name": "a"}]}
    ds = open_dataset(_write(tmp_path, coco))
    rows = ds.manifest().to_pylist()
    assert [r["item_id"] for r in rows] == ["000000000001", "000000000001#2", "x"]
    info = ds.info()
    assert info["duplicate_image_ids"] == [1] and info["duplicate_annotation_ids"] == [10]
    assert info["n_orphan_annotations"] == 2 and info["orphan_image_ids_sample"] == [99]
    assert sorted(a["id"] for a in ds.orphan_annotations()) == [10, 12]
    assert ds.read_item(rows[0]).annotations[0]["segmentation"] == [[0, 0, 1, 0, 1, 1]]
    assert ds.read_item(rows[2]).annotations == []


@pytest.mark.parametrize("text", ["", "[]", "{", '{"images": [1, 2]}', '{"images": [{"id": 1}] "x": 1}',
                                  '{"images": [{"id": 1},]}', '{"annotations": []} trailing', "\xff"])
def test_bad_json(tmp_path, text):
    p = tmp_path / "instances_bad.json"
    p.write_bytes(text.encode("latin-1"))
    with pytest.raises(FormatError) as e:
        _cocojson.build_cache(str(p), str(tmp_path / "c"))
    assert e.value.code == "bad_json"
    assert not [d for d in (tmp_path / "c" / "coco").iterdir()] if (tmp_path / "c" / "coco").exists() else True


def test_streaming_parser_across_chunk_borders(real_data, monkeypatch):
    # tiny chunks force every value (numbers included) to straddle buffer borders
    monkeypatch.setattr(_cocojson, "_CHUNK", 7)
    path = real_data / TINY / "instances_val2017.json"
    d = json.loads(path.read_text())
    items = {"images": [], "annotations": []}
    values = {}
    for kind, key, obj, raw in _cocojson.stream_top_level(str(path)):
        if kind == "item":
            items[key].append(obj)
            assert json.loads(raw) == obj
        else:
            values[key] = obj
    assert items["images"] == d["images"] and items["annotations"] == d["annotations"]
    assert values == {k: v for k, v in d.items() if k not in ("images", "annotations")}


def test_cache_is_reused_and_dataset_pickles_light(real_data, tmp_path):
    path = real_data / TINY / "instances_train2017.json"
    ds = open_dataset(path, cache_dir=str(tmp_path / "cache"))
    cache = ds.prepare()
    assert cache.startswith(str(tmp_path / "cache")) and os.path.isfile(os.path.join(cache, "annotations.arrow"))
    mtime = os.path.getmtime(os.path.join(cache, "meta.json"))
    rows = ds.manifest().to_pylist()
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # paths + label map, not the tables
    ds2 = pickle.loads(blob)
    # the cache's folder is a path of this machine: not sent; the receiver finds it by its key
    assert ds2.cache is None and ds2._manifest is None
    assert ds2.read_item(rows[3]).annotations == ds.read_item(rows[3]).annotations
    assert ds2.cache == cache
    open_dataset(path, cache_dir=str(tmp_path / "cache")).prepare()
    assert os.path.getmtime(os.path.join(cache, "meta.json")) == mtime


def test_panoptic_missing_png_and_unannotated_image(tmp_path):
    (tmp_path / "panoptic_x").mkdir()
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (1, 1, 0)
    Image.fromarray(rgb).save(tmp_path / "panoptic_x" / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 3, "height": 2},
                       {"id": 2, "file_name": "b.jpg", "width": 3, "height": 2},
                       {"id": 3, "file_name": "c.jpg", "width": 3, "height": 2}],
            "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": [{"id": 257, "category_id": 1}]},
                            {"image_id": 2, "file_name": "b.png", "segments_info": []},
                            {"image_id": 3, "file_name": "../../x.png", "segments_info": []}],
            "categories": [{"id": 1, "name": "a", "isthing": 1}]}
    ds = open_dataset(_write(tmp_path, coco, "panoptic_x.json"))
    assert ds.layout == "coco_panoptic"
    res = {r["image_id"]: it for r, it in ds.iter_items()}
    assert res[1].instance_mask.array.tolist() == [[257, 0, 0], [0, 0, 0]]
    assert res[2].missing == ["instance_mask"] and res[2].segments == []
    assert isinstance(res[3], FormatError) and res[3].code == "path_outside_root"


# ----------------------------------------------------------------------------- ids of any JSON type

from hypothesis import given, strategies as st  # noqa: E402

_ids = st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=6), st.floats(allow_nan=False, allow_infinity=False),
                 st.booleans(), st.none())


def _ref_key(v):
    """The JSON value an id is: its JSON type and value (1, 1.0, "1" and true are four ids)."""
    return (type(v).__name__, repr(v))


@given(st.lists(_ids, max_size=8), st.lists(st.tuples(st.integers(0, 20), _ids), max_size=12))
def test_annotations_belong_to_the_image_with_the_same_json_id(tmp_path_factory, image_ids, refs):
    # each annotation points at one of the images' ids (by index) or at a random id
    image_ids = list(image_ids)
    anns = [{"id": k, "image_id": image_ids[i] if i < len(image_ids) else v, "category_id": 1}
            for k, (i, v) in enumerate(refs)]
    images = [{"id": v, "width": 2, "height": 2, "file_name": f"{k}.jpg"} for k, v in enumerate(image_ids)]
    p = tmp_path_factory.mktemp("ids") / "instances_h.json"
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    ds = open_dataset(p, cache_dir=str(p.parent / "c"))
    rows = ds.manifest().to_pylist()
    assert len(rows) == len(images) and len({r["item_id"] for r in rows}) == len(rows)
    known = {_ref_key(v) for v in image_ids if v is not None}
    by_file = {r["file_name"]: r for r in rows}
    for k, v in enumerate(image_ids):
        want = [a for a in anns if v is not None and _ref_key(a["image_id"]) == _ref_key(v)]
        assert ds.read_item(by_file[f"{k}.jpg"]).annotations == want, (v, rows)
    orphans = [a for a in anns if a["image_id"] is None or _ref_key(a["image_id"]) not in known]
    assert ds.info()["n_orphan_annotations"] == len(orphans)
    assert sorted(a["id"] for a in ds.orphan_annotations()) == sorted(a["id"] for a in orphans)


def test_unwritable_cache_root_falls_back_to_a_temporary_folder(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(_cocojson, "_PRIVATE", [])
    p = _write(tmp_path, {"images": [{"id": "a", "width": 2, "height": 2}], "annotations": [], "categories": []})
    cache = _cocojson.build_cache(str(p), str(blocker / "cache"))  # a file where a folder should be
    assert os.path.isfile(os.path.join(cache, "meta.json")) and not cache.startswith(str(blocker))
    err = capsys.readouterr().err
    assert "cannot be written" in err and "temporary cache" in err and err.count("\n") == 1
    assert _cocojson.build_cache(str(p), str(blocker / "cache")) == cache  # reused, said once
    assert capsys.readouterr().err == ""
