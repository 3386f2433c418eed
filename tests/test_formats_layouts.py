"""Dataset layouts: detection, masks folders, VOC (folder and zip), clean zip, safety, pickling."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import zipfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from PIL import Image

from fastmask.formats.errors import FormatError
from fastmask.formats.labelmap import LabelMap
from fastmask.formats.layouts import Item, detect_layout, open_dataset
from fastmask.formats.png import write_mask

VOC1 = "datumaro/tests/assets/voc_dataset/voc_dataset1"


def _counts(a):
    u, c = np.unique(a, return_counts=True)
    return {str(int(x)): int(n) for x, n in zip(u, c)}


def _stats(real_data):
    return json.loads((real_data / "_reference" / "png_stats.json").read_text())["files"]


@pytest.mark.parametrize("rel,layout", [
    (VOC1, "voc"),
    ("datumaro/tests/assets/cityscapes_dataset/train_dataset/gtFine", "masks"),
    ("datumaro/tests/assets/kitti_dataset/kitti_segmentation/training/instance", "masks"),
    ("datumaro/tests/assets/mots_dataset/train/instances", "masks"),
    ("datumaro/tests/assets/mapillary_vistas_dataset/val/v2.0/instances", "masks"),
    ("datumaro/tests/assets/common_semantic_segmentation_dataset/dataset", "masks"),
    ("mmsegmentation/tests/data/pseudo_dataset/gts", "masks"),
    ("datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_train.json", "coco"),
    ("datumaro/tests/assets/coco_dataset/coco_stuff/annotations/stuff_val.json", "coco"),
    ("datumaro/tests/assets/coco_dataset/coco_panoptic/annotations/panoptic_val.json", "coco_panoptic"),
    ("panopticapi/sample_data/panoptic_examples.json", "coco_panoptic"),
    ("super-gradients/tests/data/tinycoco/annotations/instances_train2017.json", "coco"),
])
def test_detect_real(real_data, rel, layout):
    assert detect_layout(real_data / rel) == layout


def test_detect_ambiguous_and_unknown(real_data, tmp_path):
    with pytest.raises(FormatError) as e:
        detect_layout(real_data / "datumaro/tests/assets/coco_dataset/coco_panoptic")
    assert e.value.code == "unknown_layout" and "panoptic_train.json" in e.value.message
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FormatError) as e:
        detect_layout(tmp_path)
    assert e.value.code == "unknown_layout"
    with pytest.raises(FormatError) as e:
        detect_layout(tmp_path / "nope")
    assert e.value.code == "missing_file"
    with pytest.raises(FormatError) as e:
        open_dataset(tmp_path, layout="bogus")
    assert e.value.code == "unknown_layout"


@pytest.mark.parametrize("rel", [
    "datumaro/tests/assets/cityscapes_dataset/train_dataset/gtFine",
    "datumaro/tests/assets/cityscapes_dataset/dataset/gtFine",
    "datumaro/tests/assets/kitti_dataset/kitti_segmentation/training/instance",
    "datumaro/tests/assets/mots_dataset",
    "datumaro/tests/assets/mapillary_vistas_dataset/train/v1.2",
    "mmsegmentation/tests/data/pseudo_dataset/gts",
])
def test_masks_layout_reads_real_values(real_data, rel):
    stats = _stats(real_data)
    ds = open_dataset(real_data / rel, layout="masks")
    m = ds.manifest()
    ids = m.column("item_id").to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and len(ids) > 0
    checked = 0
    for row, item in ds.iter_items():
        assert isinstance(item, Item), item
        full = f"{rel}/{row['mask_path']}"
        exp = stats.get(full)
        if exp is None or "values" not in exp:
            continue
        assert item.mask.mode == exp["mode"]
        assert _counts(item.mask.array) == exp["values"], full
        checked += 1
    assert checked == len(ids) or rel.endswith("v1.2")  # v1.2 also holds RGB panoptic PNGs


def test_masks_layout_with_meta_labelmap(real_data):
    ds = open_dataset(real_data / "datumaro/tests/assets/common_semantic_segmentation_dataset/dataset")
    assert ds.labelmap is not None and ds.labelmap.names[5] == "Road"
    items = {r["item_id"]: it for r, it in ds.iter_items()}
    assert set(items) == {"0001", "0002"}
    assert _counts(items["0001"].mask.array) == {"3": 4, "5": 1}
    assert _counts(items["0002"].mask.array) == {"1": 3, "4": 2}
    assert all(it.mask.unknown_colors == [] for it in items.values())


def test_masks_pairing_with_images(tmp_path):
    masks, imgs = tmp_path / "m", tmp_path / "i"
    (masks / "sub").mkdir(parents=True)
    imgs.mkdir()
    write_mask(masks / "a.png", np.zeros((4, 6), np.uint8))
    write_mask(masks / "b_gt.png", np.ones((4, 6), np.uint8))
    write_mask(masks / "sub" / "c.png", np.ones((2, 2), np.uint8))
    write_mask(masks / "only_mask.png", np.ones((2, 2), np.uint8))
    for n, size in [("a.jpg", (6, 4)), ("b.jpg", (5, 4)), ("c.png", (2, 2)), ("only_image.jpg", (3, 3))]:
        Image.new("RGB", size).save(imgs / n)
    ds = open_dataset(masks, images=imgs)
    rows = ds.manifest().to_pylist()
    assert [(r["item_id"], r["mask_path"], r["image_path"]) for r in rows] == [
        ("a", "a.png", "a.jpg"), ("b_gt", "b_gt.png", "b.jpg"), ("only_image", None, "only_image.jpg"),
        ("only_mask", "only_mask.png", None), ("sub/c", "sub/c.png", "c.png")]
    items = {r["item_id"]: it for r, it in ds.iter_items()}
    assert items["a"].image_size == (6, 4) and items["a"].missing == []
    assert items["b_gt"].image_size == (5, 4)  # a size mismatch a checker can see (mask is 6x4)
    assert items["only_image"].mask is None and items["only_image"].missing == ["mask"]
    assert items["only_mask"].missing == ["image"] and items["only_mask"].image_path is None


def test_masks_layout_broken_image_is_a_fact_not_a_failure(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    write_mask(tmp_path / "masks" / "a.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "images" / "a.jpg").write_bytes(b"")
    (tmp_path / "masks" / "b.png").write_bytes(b"")
    ds = open_dataset(tmp_path)
    assert ds.layout == "masks"
    out = dict((r["item_id"], it) for r, it in ds.iter_items())
    assert out["a"].mask is not None and out["a"].extra["image_error"]["code"] == "zero_bytes"
    assert isinstance(out["b"], FormatError) and out["b"].code == "zero_bytes"


# ----------------------------------------------------------------------------- VOC


def _check_voc(ds):
    rows = ds.manifest().to_pylist()
    assert [r["item_id"] for r in rows] == ["2007_000001", "2007_000002"]
    assert [r["splits"] for r in rows] == ["train", "test"]
    one = ds.read_item(rows[0])
    assert one.mask.mode == "RGB" and _counts(one.mask.array) == {"2": 200}  # bicycle
    assert _counts(one.instance_mask.array) == {"1": 200}  # VOC colour 1 = instance 1
    assert one.mask.unknown_colors == [] and one.missing == []
    two = ds.read_item(rows[1])  # listed in test.txt, no mask: still an item, reported missing
    assert two.mask is None and two.missing == ["mask", "instance_mask"]


def test_voc_folder_real(real_data):
    ds = open_dataset(real_data / VOC1)
    assert ds.layout == "voc" and ds.labelmap == LabelMap.voc()
    _check_voc(ds)


def _zip_dir(src, dst, prefix="", extra=()):
    with zipfile.ZipFile(dst, "w") as z:
        for dirpath, _, files in os.walk(src):
            for f in files:
                full = os.path.join(dirpath, f)
                z.write(full, prefix + os.path.relpath(full, src).replace(os.sep, "/"))
        for name, data in extra:
            z.writestr(name, data)
    return dst


@pytest.mark.parametrize("prefix", ["", "export/"])
def test_voc_zip_real_with_labelmap(real_data, tmp_path, prefix):
    src = tmp_path / "voc"
    shutil.copytree(real_data / VOC1, src)
    shutil.copy(real_data / "datumaro/tests/assets/voc_dataset/voc_dataset2/labelmap.txt", src / "labelmap.txt")
    for p in src.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    z = _zip_dir(src, tmp_path / "voc.zip", prefix)
    assert detect_layout(z) == "voc"
    ds = open_dataset(z)
    assert ds.labelmap.source.endswith("labelmap.txt") and ds.labelmap == LabelMap.voc()
    _check_voc(ds)
    # shipped to another process: the zip is reopened there, lazily
    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2.store._zf is None and ds2._manifest is None
    _check_voc(ds2)


def test_zip_slip_entry_refused_and_never_extracted(tmp_path):
    src = tmp_path / "src"
    (src / "SegmentationClass").mkdir(parents=True)
    write_mask(src / "SegmentationClass" / "ok.png", np.zeros((2, 2), np.uint8), palette="voc")
    evil = b"\x89PNG not really"
    z = _zip_dir(src, tmp_path / "d.zip", extra=[("SegmentationClass/../../evil.png", evil),
                                                  ("/abs/evil2.png", evil)])
    ds = open_dataset(z, layout="voc")
    for layout in ("voc", "masks"):
        ds = open_dataset(z, layout=layout)
        results = {r["item_id"]: it for r, it in ds.iter_items()}
        assert any(isinstance(v, Item) and v.mask is not None for v in results.values())
        refused = [v for v in results.values() if isinstance(v, FormatError)]
        if layout == "masks":  # the unsafe entries are listed (reported), then refused
            assert len(refused) == 2 and all(e.code == "path_outside_root" for e in refused)
    assert not (tmp_path.parent / "evil.png").exists() and not (tmp_path / "evil.png").exists()
    from fastmask.formats._fs import Root
    with pytest.raises(FormatError) as e:
        Root(z).read("SegmentationClass/../../evil.png")
    assert e.value.code == "path_outside_root"


def test_zip_symlink_entry_refused(tmp_path):
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("masks/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("masks/ok.png", b"x")
    ds = open_dataset(z, layout="masks")
    res = {r["item_id"]: it for r, it in ds.iter_items()}
    assert isinstance(res["link"], FormatError) and res["link"].code == "path_outside_root"
    assert isinstance(res["ok"], FormatError) and res["ok"].code == "unreadable"


def test_symlink_leaving_root_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_mask(outside / "secret.png", np.ones((2, 2), np.uint8))
    root = tmp_path / "ds"
    root.mkdir()
    write_mask(root / "fine.png", np.zeros((2, 2), np.uint8))
    os.symlink(outside / "secret.png", root / "leak.png")
    (root / "inside.png").symlink_to(root / "fine.png")
    ds = open_dataset(root, layout="masks")
    res = {r["item_id"]: it for r, it in ds.iter_items()}
    assert isinstance(res["leak"], FormatError) and res["leak"].code == "path_outside_root"
    assert isinstance(res["inside"], Item) and res["fine"].mask is not None
    assert np.array_equal(res["inside"].mask.array, res["fine"].mask.array)


def test_root_read_follows_inside_links_and_names_what_it_cannot_read(tmp_path):
    from fastmask.formats._fs import Root

    root = tmp_path / "r"
    root.mkdir()
    (root / "a.bin").write_bytes(b"abc")
    (root / "empty.bin").write_bytes(b"")
    (root / "link.bin").symlink_to(root / "a.bin")  # absolute, stays inside
    os.symlink("a.bin", root / "rel.bin")  # relative, stays inside
    os.symlink(root / "gone.bin", root / "dangling.bin")
    (root / "dir").mkdir()
    r = Root(str(root))
    assert [r.read(n) for n in ("a.bin", "empty.bin", "link.bin", "rel.bin")] == [b"abc", b"", b"abc", b"abc"]
    # a folder is not a regular file: refused before any read (it used to be "unreadable")
    for name, code in (("nope.bin", "missing_file"), ("dangling.bin", "missing_file"), ("dir", "not_a_file")):
        with pytest.raises(FormatError) as e:
            r.read(name)
        assert e.value.code == code, name


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs procfs")
def test_read_all_reads_past_a_stale_size():
    from fastmask.formats._fs import _read_all

    # procfs files report size 0 and have content: the read goes on to the end of the file
    fd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        data = _read_all(fd)
    finally:
        os.close(fd)
    assert data.startswith(b"Name:") and b"VmRSS" in data


# ----------------------------------------------------------------------------- clean zip


def _cleanzip(tmp_path, with_index=True):
    root = tmp_path / "clean"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "coco").mkdir()
    for n in ("0001", "0002", "0003"):
        Image.new("RGB", (4, 3)).save(root / "images" / f"{n}.jpg")
    write_mask(root / "masks" / "0001.png", np.array([[0, 1, 1, 0]] * 3, np.uint8))
    write_mask(root / "masks" / "0002.png", np.array([[2, 2, 2, 2]] * 3, np.uint8))
    write_mask(root / "masks" / "extra.png", np.zeros((3, 4), np.uint8))
    (root / "coco" / "instances.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    (root / "meta.json").write_text(json.dumps({"format": "fastmask-cleanzip", "version": 1, "task": "semantic",
                                                "mask_encoding": "png-index",
                                                "classes": ["background", "cat", "dog"]}))
    if with_index:
        (root / "index.csv").write_text(
            "item_id,image,mask,width,height,split,source\n"
            "0001,images/0001.jpg,masks/0001.png,4,3,train,cam1\n"
            "0002,images/0002.jpg,masks/0002.png,4,3,val,\n"
            "0003,images/0003.jpg,masks/0003.png,4,3,val,cam2\n")
    return root


@pytest.mark.parametrize("as_zip", [False, True])
def test_cleanzip(tmp_path, as_zip):
    root = _cleanzip(tmp_path)
    path = _zip_dir(root, tmp_path / "clean.zip") if as_zip else root
    assert detect_layout(path) == "cleanzip"
    ds = open_dataset(path)
    assert ds.labelmap.names == {0: "background", 1: "cat", 2: "dog"}
    assert ds.info()["task"] == "semantic" and ds.info()["coco_json"] == "coco/instances.json"
    rows = ds.manifest().to_pylist()
    assert [r["item_id"] for r in rows] == ["0001", "0002", "0003", "extra"]
    assert [r["in_index"] for r in rows] == [True, True, True, False]
    assert rows[0]["split"] == "train" and rows[0]["source"] == "cam1" and rows[0]["width"] == 4
    res = {r["item_id"]: ds.read_item(r) for r in rows}
    assert _counts(res["0001"].mask.array) == {"0": 6, "1": 6}
    assert res["0001"].image_size == (4, 3) and res["0001"].extra["record_size"] == (4, 3)
    assert res["0003"].mask is None and res["0003"].missing == ["mask"]
    assert res["extra"].missing == ["image"]
    assert pickle.loads(pickle.dumps(ds)).read_item(rows[1]).mask.array.max() == 2


def test_cleanzip_without_index_pairs_by_stem(tmp_path):
    root = _cleanzip(tmp_path, with_index=False)
    ds = open_dataset(root)
    rows = ds.manifest().to_pylist()
    assert [(r["item_id"], r["mask_path"], r["image_path"]) for r in rows] == [
        ("0001", "masks/0001.png", "images/0001.jpg"), ("0002", "masks/0002.png", "images/0002.jpg"),
        ("0003", None, "images/0003.jpg"), ("extra", "masks/extra.png", None)]


def test_cleanzip_bad_index(tmp_path):
    root = _cleanzip(tmp_path)
    (root / "index.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(FormatError) as e:
        open_dataset(root).manifest()
    assert e.value.code == "bad_index"
    (root / "index.csv").write_text("item_id,mask\na,masks/0001.png\na,masks/0002.png\n")
    with pytest.raises(FormatError) as e:
        open_dataset(root).manifest()
    assert e.value.code == "bad_index"


def _read_all(ds):
    return [(r["item_id"], None if isinstance(it, FormatError) else
             (None if it.mask is None else it.mask.array.tolist()))
            for r, it in ds.iter_items()]


def test_datasets_work_in_worker_processes(real_data, tmp_path):
    root = _cleanzip(tmp_path)
    z = _zip_dir(root, tmp_path / "c.zip")
    datasets = [open_dataset(z), open_dataset(real_data / VOC1)]
    for ds in datasets:
        ds.manifest()  # the parent opened the zip and cached the manifest; none of it may travel
        assert len(pickle.dumps(ds)) < 4000
    with ProcessPoolExecutor(2) as ex:
        remote = list(ex.map(_read_all, datasets))
    assert remote == [_read_all(ds) for ds in datasets]


def test_unpaired_manifest_equals_pair_by_stem():
    from fastmask.formats.maskdir import _unpaired_manifest, pair_by_stem

    names = ["b/x_gt.png", "a.png", "c.d.png", "z/y.tif", "\\xe9t\\xe9.png", "m/n/o.PNG"]
    table = _unpaired_manifest([names[:2], [], names[2:]]).sort_by("item_id")
    rows = list(zip(*(table.column(c).to_pylist() for c in ("item_id", "mask_path", "image_path"))))
    assert rows == pair_by_stem(names, [])
    assert _unpaired_manifest([["a.png"], ["a.tif"]]) is None  # a repeated stem: ids need the careful path
    assert _unpaired_manifest([]).num_rows == 0
    assert _unpaired_manifest([["notes.txt"]]).num_rows == 0  # only mask extensions count
