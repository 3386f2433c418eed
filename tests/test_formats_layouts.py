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


# ----------------------------------------------------------------------------- regular files, limits, listings

import threading  # noqa: E402

import fastmask.formats._fs as fs  # noqa: E402
from fastmask.formats._fs import Root  # noqa: E402


def _png_bytes(a) -> bytes:
    import io

    bio = io.BytesIO()
    Image.fromarray(np.asarray(a, np.uint8)).save(bio, "PNG")
    return bio.getvalue()


def _soon(fn, seconds=20):
    """fn() in a daemon thread: a regression that blocks (a FIFO open) fails instead of hanging."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn} blocked for {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _mknod_zero(path) -> bool:
    try:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero's numbers
        return True
    except (PermissionError, OSError, AttributeError):
        return False


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_devices_and_folders_in_a_mask_folder_are_not_a_file_at_once(tmp_path):
    root = tmp_path / "ds"
    (root / "sub").mkdir(parents=True)
    write_mask(root / "ok.png", np.ones((3, 3), np.uint8))
    os.mkfifo(root / "x.png")
    (root / "sub" / "link.png").symlink_to(root / "x.png")          # a symlink to a FIFO, inside
    os.symlink("../x.png", root / "sub" / "rel_link.png")
    has_dev = _mknod_zero(root / "zero.png")
    ds = open_dataset(root, layout="masks")
    res = _soon(lambda: {r["item_id"]: it for r, it in ds.iter_items()})
    expect = {"x", "sub/link", "sub/rel_link"} | ({"zero"} if has_dev else set())
    assert set(res) == expect | {"ok"}
    for iid in expect:
        assert isinstance(res[iid], FormatError) and res[iid].code == "not_a_file", (iid, res[iid])
    assert "FIFO" in res["x"].message
    if has_dev:
        assert "character device" in res["zero"].message
    assert isinstance(res["ok"], Item)
    from fastmask.formats.labelmap import load_labelmap

    with pytest.raises(FormatError) as e:  # a label map named on the command line, too
        _soon(lambda: load_labelmap(root / "x.png"))
    assert e.value.code == "not_a_file"
    r = Root(root)
    for name in ("x.png", "sub/link.png"):
        for fn in (r.read, r.open):
            with pytest.raises(FormatError) as e:
                _soon(lambda: fn(name))
            assert e.value.code == "not_a_file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_image_is_an_image_error_and_a_fifo_in_an_index_is_not_a_missing_mask(tmp_path):
    root = tmp_path / "ds"
    (root / "masks").mkdir(parents=True)
    (root / "images").mkdir()
    write_mask(root / "masks" / "a.png", np.ones((3, 3), np.uint8))
    write_mask(root / "masks" / "b.png", np.ones((3, 3), np.uint8))
    os.mkfifo(root / "images" / "a.jpg")
    os.mkfifo(root / "masks" / "c.png")
    (root / "index.csv").write_text("item_id,image,mask\na,images/a.jpg,masks/a.png\nc,,masks/c.png\n")
    ds = open_dataset(root)
    assert ds.layout == "cleanzip"
    res = _soon(lambda: {r["item_id"]: it for r, it in ds.iter_items()})
    assert res["a"].extra["image_error"]["code"] == "not_a_file" and res["a"].mask is not None
    assert isinstance(res["c"], FormatError) and res["c"].code == "not_a_file"


def test_reads_above_the_limit_are_too_large_in_folders_and_zips(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    root.mkdir()
    rng = np.random.default_rng(0)
    big = _png_bytes(rng.integers(0, 255, (64, 64)))   # ~4 KB, incompressible
    (root / "big.png").write_bytes(big)
    (root / "small.png").write_bytes(_png_bytes(np.zeros((2, 2))))
    with zipfile.ZipFile(tmp_path / "ds.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", big)
        z.writestr("small.png", _png_bytes(np.zeros((2, 2))))
    monkeypatch.setattr(fs, "MAX_FILE_BYTES", 1000)
    for path in (root, tmp_path / "ds.zip"):
        r = Root(path)
        assert r.read("small.png")
        with pytest.raises(FormatError) as e:
            r.read("big.png")
        assert e.value.code == "too_large" and "FASTMASK_MAX_FILE_BYTES" in e.value.message
        assert r.open("big.png").read(8) == b"\x89PNG\r\n\x1a\n"  # header reads are not bounded
    monkeypatch.setattr(fs, "MAX_FILE_BYTES", len(big))
    assert Root(root).read("big.png") == big and Root(tmp_path / "ds.zip").read("big.png") == big


def _bomb_zip(path, zeros: int, *, layout_prefix="SegmentationClass/") -> bytes:
    """A VOC zip whose member is a valid PNG followed by ``zeros`` zero bytes (inflates ~1000x)."""
    png = _png_bytes(np.ones((4, 4)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ImageSets/Segmentation/train.txt", "bomb\nok\n")
        z.writestr(layout_prefix + "ok.png", png)
        z.writestr(layout_prefix + "bomb.png", png + bytes(zeros))
    return png


def test_zip_member_that_inflates_far_beyond_its_size_is_a_zip_bomb(tmp_path, monkeypatch):
    # the real case: 3.1 MB inflating to 3 GiB; here the same shape, 1000x smaller, limits lowered
    monkeypatch.setattr(fs, "ZIP_RATIO_MIN_BYTES", 1 << 20)
    _bomb_zip(tmp_path / "voc.zip", 3 << 20)
    assert os.path.getsize(tmp_path / "voc.zip") < 10_000
    ds = open_dataset(tmp_path / "voc.zip")
    res = {r["item_id"]: it for r, it in ds.iter_items()}
    assert isinstance(res["bomb"], FormatError) and res["bomb"].code == "zip_bomb", res["bomb"]
    assert "FASTMASK_MAX_ZIP_RATIO" in res["bomb"].message
    assert isinstance(res["ok"], Item) and res["ok"].mask.array.sum() == 16
    # ratio allowed, size not: too_large, from the declared size, before inflating anything
    monkeypatch.setattr(fs, "MAX_ZIP_RATIO", 10**9)
    monkeypatch.setattr(fs, "MAX_FILE_BYTES", 2 << 20)
    with pytest.raises(FormatError) as e:
        Root(tmp_path / "voc.zip").read("SegmentationClass/bomb.png")
    assert e.value.code == "too_large" and "declares" in e.value.message


def test_zip_member_limits_also_hold_while_inflating(tmp_path, monkeypatch):
    # zipfile never returns more than an entry declares; the streamed read checks what it got
    # too, so a member that declares little and holds much cannot pass either
    _bomb_zip(tmp_path / "voc.zip", 3 << 20)
    r = Root(tmp_path / "voc.zip")
    info = r._zip_entries()["SegmentationClass/bomb.png"]
    monkeypatch.setattr(fs, "ZIP_RATIO_MIN_BYTES", 1 << 20)
    with pytest.raises(FormatError) as e:
        fs._read_member(r._zip(), info, "bomb.png", "bomb.png")  # the declared check skipped
    assert e.value.code == "zip_bomb" and "inflates to" in e.value.message
    monkeypatch.setattr(fs, "MAX_ZIP_RATIO", 10**9)
    assert len(fs._read_member(r._zip(), info, "b", "b")) == info.file_size  # streamed, whole
    # a forged entry declaring 100 bytes fewer than it holds: never more than declared, and an error
    data = bytearray((tmp_path / "voc.zip").read_bytes())
    size = info.file_size
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = data.find(sig, info.header_offset if sig == b"PK\x03\x04" else data.rfind(b"PK\x01\x02"))
        assert struct.unpack_from("<I", data, i + off)[0] == size
        struct.pack_into("<I", data, i + off, size - 100)
    (tmp_path / "forged.zip").write_bytes(bytes(data))
    with pytest.raises(FormatError) as e:
        Root(tmp_path / "forged.zip").read("SegmentationClass/bomb.png")
    assert e.value.code == "unreadable"


import struct  # noqa: E402


def _set_encrypted_flag(path, name: str) -> None:
    """Mark one zip entry as encrypted (bit 0 of its flags, local header and central directory)."""
    data = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    data[info.header_offset + 6] |= 1
    i = 0
    while (i := data.find(b"PK\x01\x02", i)) >= 0:
        n = struct.unpack_from("<H", data, i + 28)[0]
        if data[i + 46:i + 46 + n].decode() == name:
            data[i + 8] |= 1
        i += 4
    open(path, "wb").write(bytes(data))


def test_encrypted_zip_member_is_its_own_code(tmp_path):
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as z:
        z.writestr("a.png", _png_bytes(np.ones((2, 2))))
        z.writestr("b.png", _png_bytes(np.ones((2, 2))))
    _set_encrypted_flag(tmp_path / "m.zip", "b.png")
    res = {r["item_id"]: it for r, it in open_dataset(tmp_path / "m.zip", layout="masks").iter_items()}
    assert isinstance(res["a"], Item)
    assert isinstance(res["b"], FormatError) and res["b"].code == "encrypted", res["b"]
    with pytest.raises(FormatError) as e:
        Root(tmp_path / "m.zip").open("b.png")
    assert e.value.code == "encrypted"


def test_zip_names_with_dot_parts_are_normalised_and_duplicates_are_one_item_and_a_problem(tmp_path):
    ones, twos = _png_bytes(np.ones((2, 2))), _png_bytes(np.full((2, 2), 2))
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(tmp_path / "voc.zip", "w") as z:
        z.writestr("ImageSets/Segmentation/train.txt", "a\nb\nc\nd\n")
        z.writestr("./SegmentationClass/a.png", ones)        # a leading ./ (once: the item vanished)
        z.writestr("SegmentationClass/./b.png", ones)
        z.writestr("SegmentationClass//c.png", ones)
        z.writestr("SegmentationClass/d.png", ones)
        z.writestr("SegmentationClass/d.png", twos)          # the same name twice: the last is read
    ds = open_dataset(tmp_path / "voc.zip")
    assert ds.layout == "voc"
    m = ds.manifest()
    assert m.column("item_id").to_pylist() == ["a", "b", "c", "d"]
    assert m.column("class_path").to_pylist() == [f"SegmentationClass/{x}.png" for x in "abcd"]
    res = {r["item_id"]: it for r, it in ds.iter_items()}
    assert all(isinstance(it, Item) and it.mask is not None for it in res.values()), res
    assert res["d"].mask.array.tolist() == [[2, 2], [2, 2]]
    probs = ds.problems()
    assert [(p["kind"], p["path"].split("!")[1]) for p in probs] == [("duplicate_entry", "SegmentationClass/d.png")]
    assert "2 zip entries" in probs[0]["message"]
    # a masks zip: the same two entries are one item too (they used to be a duplicate item_id)
    with pytest.warns(UserWarning), zipfile.ZipFile(tmp_path / "m.zip", "w") as z:
        z.writestr("x.png", ones)
        z.writestr("x.png", twos)
        z.writestr("./y.png", ones)
    ds = open_dataset(tmp_path / "m.zip", layout="masks")
    assert ds.manifest().column("item_id").to_pylist() == ["x", "y"]
    assert [p["kind"] for p in ds.problems()] == ["duplicate_entry"]


def test_unlistable_subfolder_is_a_problem_naming_it(tmp_path, monkeypatch):
    # as root, chmod 000 is no obstacle: the listing function refuses instead
    root = tmp_path / "ds"
    (root / "locked").mkdir(parents=True)
    (root / "open").mkdir()
    for d in ("locked", "open"):
        write_mask(root / d / "m.png", np.ones((2, 2), np.uint8))
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    ds = open_dataset(root, layout="masks")
    assert ds.manifest().column("item_id").to_pylist() == ["open/m"]
    probs = ds.problems()
    assert [(p["kind"], p["path"]) for p in probs] == [("unlisted_path", str(root / "locked"))]
    assert "Permission denied" in probs[0]["message"] and "not items" in probs[0]["message"]
    assert open_dataset(root / "open", layout="masks").problems() == []


def _deep_folder(root, min_bytes: int):
    """A chain of folders under ``root`` whose path passes ``min_bytes`` bytes (made with dir fds:
    the whole path is too long for the system), a mask at its bottom; returns the first folder
    whose path is over 4,096 bytes."""
    fd = os.open(root, os.O_RDONLY)
    path, first_long = str(root), None
    try:
        while len(os.fsencode(path)) < min_bytes:
            name = "d" * 200
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            path += "/" + name
            if first_long is None and len(os.fsencode(path)) > 4096:
                first_long = path
        w = os.open("m.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(w, _png_bytes(np.ones((2, 2))))
        os.close(w)
    finally:
        os.close(fd)
    return first_long


def test_mask_paths_longer_than_the_system_allows_are_a_problem_naming_the_folder(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    write_mask(root / "ok.png", np.ones((2, 2), np.uint8))
    first_long = _deep_folder(root, 4400)
    ds = open_dataset(root, layout="masks")
    assert ds.manifest().column("item_id").to_pylist() == ["ok"]
    probs = ds.problems()
    assert [(p["kind"], p["path"]) for p in probs] == [("unlisted_path", first_long)]
    assert "bytes" in probs[0]["message"]


def test_names_that_collide_after_decoding_get_distinct_ids_and_their_own_bytes(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    with open(os.path.join(os.fsencode(root), b"bad\xff.png"), "wb") as f:   # raw byte 0xff
        f.write(_png_bytes(np.ones((2, 2))))
    (root / "bad\\xff.png").write_bytes(_png_bytes(np.full((2, 2), 2)))     # the text \xff
    (root / "bad\\x5c.png").write_bytes(_png_bytes(np.full((2, 2), 3)))     # the escape's own text
    (root / "back\\slash.png").write_bytes(_png_bytes(np.full((2, 2), 4)))  # a plain backslash: as is
    ds = open_dataset(root, layout="masks")
    ids = ds.manifest().column("item_id").to_pylist()
    assert sorted(ids) == ids and len(set(ids)) == 4
    assert set(ids) == {"bad\\xff", "bad\\x5cxff", "bad\\x5cx5c", "back\\slash"}
    got = {r["item_id"]: int(it.mask.array[0, 0]) for r, it in ds.iter_items()}
    assert got == {"bad\\xff": 1, "bad\\x5cxff": 2, "bad\\x5cx5c": 3, "back\\slash": 4}


def test_cleanzip_index_field_over_the_csv_limit_is_bad_index(tmp_path):
    # csv.field_size_limit() is 131,072 characters: csv.Error used to crash the run
    root = _cleanzip(tmp_path)
    (root / "index.csv").write_text("item_id,mask\na," + "x" * 140_000 + "\n")
    needle = "field larger than field limit"
    with pytest.raises(FormatError) as e:
        open_dataset(root).manifest()
    assert e.value.code == "bad_index" and needle in e.value.message


def test_a_file_whose_own_path_is_too_long_is_an_item_with_an_error(tmp_path):
    # its folder can be listed (under 4,096 bytes), the file's path cannot be opened
    root = tmp_path / "ds"
    root.mkdir()
    d = root
    while len(os.fsencode(str(d))) < 3900:
        d = d / ("d" * 100)
    d.mkdir(parents=True)
    name = "m" * 240 + ".png"
    fd = os.open(d, os.O_RDONLY)
    w = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(w, _png_bytes(np.ones((2, 2))))
    os.close(w)
    os.close(fd)
    assert len(os.fsencode(str(d / name))) > 4096
    ds = open_dataset(root, layout="masks")
    (row, res), = list(ds.iter_items())
    assert row["item_id"].endswith("m" * 240) and ds.problems() == []
    assert isinstance(res, FormatError) and res.code == "unreadable" and "too long" in res.message


@pytest.mark.parametrize("value, ok", [("4096", True), ("1_000_000", True), ("0", False), ("-5", False),
                                       ("lots", False)])
def test_read_limits_come_from_the_environment(value, ok):
    import subprocess
    import sys

    env = {**os.environ, "FASTMASK_MAX_FILE_BYTES": value, "FASTMASK_MAX_ZIP_RATIO": value}
    proc = subprocess.run([sys.executable, "-c", "import fastmask.formats._fs as f; print(f.MAX_FILE_BYTES, "
                           "f.MAX_ZIP_RATIO)"], env=env, capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.stdout.split() == [value.replace("_", "")] * 2
    else:
        assert proc.returncode != 0 and "FASTMASK_MAX_FILE_BYTES" in proc.stderr and "positive integer" in proc.stderr
