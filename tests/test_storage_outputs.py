"""Outputs on object storage: masks, converted datasets and instance maps written to s3:// URLs
(the local S3 server of conftest.py) are byte for byte the files a local run writes, and a
failed or interrupted write leaves no object behind.

The report folder of these runs is local (the jobs take their output folder separately);
the writers are also exercised directly.
"""
from __future__ import annotations

import io
import json
import tempfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from fastmask import storage
from fastmask.cli import main
from fastmask.engine import load_report_table, run_job
from fastmask.formats import FormatError, LabelMap, open_dataset, write_mask
from fastmask.formats import layout_writers as lw
from fastmask.formats import writers as wr
from fastmask.jobs.convert import ConvertJob, assemble
from fastmask.jobs.instances import InstancesJob
from fastmask.jobs.rasterize import RasterizeJob, write_mask_labelmap, write_panoptic_json

TINY = "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"


def tree(root) -> dict[str, bytes]:
    """Every file below ``root`` (a path or a URL): relative name -> bytes."""
    loc = storage.location(root)
    return {name: (loc / name).read_bytes() for name, _ in loc.find()}


def item_columns(report, *columns):
    t = load_report_table(report)
    return sorted(zip(*(t.column(c).to_pylist() for c in ("item_id", *columns))))


@pytest.fixture
def run_url(s3_bucket):
    return s3_bucket + "/runs/r1"


# ------------------------------------------------------------------------------ writers

def _arrays():
    rng = np.random.default_rng(0)
    return {"cls": rng.integers(0, 21, (30, 40)).astype(np.uint8),
            "cls16": rng.integers(0, 700, (30, 40)).astype(np.uint16),
            "ids": rng.integers(0, 5000, (30, 40)).astype(np.int64),
            "big": rng.integers(0, 2**30, (30, 40)).astype(np.int64),
            "bin": rng.integers(0, 2, (30, 40)).astype(bool),
            "pan": rng.integers(0, 2**24, (30, 40)).astype(np.int64)}


def _write_all(root):
    """Every writer once, under ``root`` (a path, a URL or a Location)."""
    a = _arrays()
    loc = storage.location(root)
    for d in ("sem", "inst", "bin", "pan", "mask"):  # these writers create no folder (a URL needs none)
        (loc / d).mkdir()
    wr.write_semantic_png(loc / "sem/a.png", a["cls"], palette="voc")
    wr.write_semantic_png(str(loc / "sem/b.png"), a["cls16"])  # a URL as a string
    wr.write_instance_png(loc / "inst/a.png", a["ids"])
    wr.write_binary_png(loc / "bin/a.png", a["bin"])
    wr.write_panoptic_png(loc / "pan/a.png", a["pan"])
    wr.atomic_write(loc / "raw.bin", b"\x00raw")
    write_mask(loc / "mask/a.png", a["cls"])
    assert lw.write_id_map(loc / "ids/png/a", a["ids"]) == "a.png"
    assert lw.write_id_map(loc / "ids/tif/a", a["big"], fmt="tiff32") == "a.tif"
    assert lw.write_class_map(loc / "deep/sub/c.png", a["cls"], palette="voc") == "P"
    assert lw.write_panoptic_png(loc / "pan2/a.png", a["pan"]) == "RGB"
    assert lw.write_coco_json(loc / "coco.json", iter([{"id": 1}, {"id": 2}]), iter(['{"id": 9}', {"id": 10}]),
                              [{"id": 1, "name": "x"}]) == (2, 2)
    lm = LabelMap(names={0: "bg", 1: "cat"}, colors={}, ignore={255})
    lw.write_index_csv(loc / "cz/index.csv", [{"item_id": "a", "mask": "masks/a.png", "width": 2, "height": 2}])
    lw.write_cleanzip_meta(loc / "cz/meta.json", lm, task="semantic", mask_encoding="png-index")
    lw.atomic_write(loc / "cz/labelmap.txt", lw.labelmap_txt(lm).encode())


def test_every_writer_writes_the_same_bytes_to_a_url(tmp_path, s3_bucket):
    _write_all(tmp_path / "local")
    _write_all(s3_bucket + "/w")
    _write_all(storage.Location(s3_bucket + "/loc"))
    local = tree(tmp_path / "local")
    assert len(local) == 15
    assert tree(s3_bucket + "/w") == local
    assert tree(s3_bucket + "/loc") == local
    # and they are what they say: a reader of the bytes gets the arrays back
    a = _arrays()
    got = np.array(Image.open(io.BytesIO(local["ids/tif/a.tif"])))
    np.testing.assert_array_equal(got, a["big"])


def test_zip_of_a_remote_folder_is_the_zip_of_the_local_one(tmp_path, s3_bucket):
    _write_all(tmp_path / "local")
    _write_all(s3_bucket + "/w")
    storage.put_bytes(s3_bucket + "/w/.hidden", b"skipped")  # hidden names are left out, as locally
    (tmp_path / "local" / ".hidden").write_bytes(b"skipped")
    n_local = lw.zip_folder(tmp_path / "local", tmp_path / "local.zip")
    n_remote = lw.zip_folder(s3_bucket + "/w", s3_bucket + "/w.zip")
    assert n_local == n_remote == 15
    z_local = zipfile.ZipFile(tmp_path / "local.zip")
    z_remote = zipfile.ZipFile(io.BytesIO(storage.location(s3_bucket + "/w.zip").read_bytes()))
    assert z_remote.namelist() == z_local.namelist()  # os.walk order: a folder's files, then sub-folders
    for a, b in zip(z_local.infolist(), z_remote.infolist()):
        assert z_remote.read(b) == z_local.read(a), a.filename
        assert (b.compress_type, b.external_attr) == (a.compress_type, a.external_attr), a.filename
    assert z_remote.testzip() is None
    # mixed: a remote folder into a local zip, a local folder into a remote zip
    lw.zip_folder(s3_bucket + "/w", tmp_path / "mixed.zip")
    lw.zip_folder(tmp_path / "local", s3_bucket + "/mixed.zip")
    for z in (zipfile.ZipFile(tmp_path / "mixed.zip"),
              zipfile.ZipFile(io.BytesIO(storage.location(s3_bucket + "/mixed.zip").read_bytes()))):
        assert z.namelist() == z_local.namelist()
        assert all(z.read(n) == z_local.read(n) for n in z.namelist())


@pytest.fixture
def spool(tmp_path, monkeypatch):
    """The system temporary folder of this test (where remote outputs are staged)."""
    d = tmp_path / "spool"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def test_a_failed_streamed_write_leaves_no_object_and_no_temporary(s3_bucket, spool):
    def images():
        yield {"id": 1}
        raise RuntimeError("the source broke half way")

    target = s3_bucket + "/coco.json"
    with pytest.raises(RuntimeError):
        lw.write_coco_json(target, images(), [], [])
    with pytest.raises(KeyboardInterrupt):  # a run interrupted while writing a zip
        with wr.atomic_output(s3_bucket + "/dataset.zip") as tmp, open(tmp, "wb") as f:
            f.write(b"PK half a zip")
            raise KeyboardInterrupt
    assert not storage.location(target).exists()
    assert not storage.location(s3_bucket + "/dataset.zip").exists()
    assert list(storage.location(s3_bucket).find()) == []
    assert list(spool.iterdir()) == []
    # a finished one is published and its temporary removed
    lw.write_coco_json(target, iter([{"id": 1}]), [], [])
    assert json.loads(storage.location(target).read_bytes())["images"] == [{"id": 1}]
    assert list(spool.iterdir()) == []


def test_a_failing_upload_is_retried_then_a_coded_error_and_no_object(s3_bucket, spool, monkeypatch):
    monkeypatch.setattr(storage, "_BACKOFF", 0.0)
    target = storage.location(s3_bucket + "/a.png")
    fs, _ = target.fs
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(fs, "pipe_file", broken)
    monkeypatch.setattr(fs, "put_file", broken)
    with pytest.raises(FormatError) as e:
        wr.write_binary_png(target, np.eye(3, dtype=bool))
    assert e.value.code == "remote_error" and len(calls) == storage.RETRIES + 1
    with pytest.raises(FormatError) as e:
        lw.write_coco_json(target.parent / "c.json", [], [], [])
    assert e.value.code == "remote_error"
    monkeypatch.undo()
    assert list(storage.location(s3_bucket).find()) == []
    assert list(spool.iterdir()) == []


def test_a_missing_bucket_is_not_found(s3_server):
    with pytest.raises(FormatError) as e:
        wr.atomic_write("s3://fastmask-no-such-bucket-x1/a.bin", b"x")
    assert e.value.code == "not_found"


# ---------------------------------------------------------------------------- rasterize

@pytest.fixture
def tiny_coco(real_data, tmp_path):
    data = json.loads((real_data / TINY).read_text())
    data["images"], keep = data["images"][:4], {i["id"] for i in data["images"][:4]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    src = tmp_path / "src" / "instances_val2017.json"
    src.parent.mkdir()
    src.write_text(json.dumps(data))
    return src


def rasterize_to(src, out, report, workers=1, **kw):
    """A rasterize run whose outputs go to ``out`` and report to ``report``, finished as the CLI does."""
    ds = open_dataset(src)
    job = RasterizeJob(ds, out, **kw)
    result = run_job(job, ds.manifest(), report, workers=workers, quiet=True)
    if job.kind == "panoptic":
        return write_panoptic_json(job, report), result
    return write_mask_labelmap(job, report), result


KIND_ARGS = [
    ("semantic", []), ("semantic", ["--palette", "voc"]), ("instance", []), ("instance", ["--format", "tiff32"]),
    ("binary", []), ("panoptic", []), ("rle", []),
]


@pytest.mark.parametrize("kind,extra", KIND_ARGS, ids=["-".join([k, *e]) for k, e in KIND_ARGS])
def test_rasterize_outputs_on_s3_equal_a_local_run(tiny_coco, tmp_path, run_url, kind, extra):
    local = tmp_path / "local"
    assert main(["rasterize", str(tiny_coco), "--out", str(local), "--kind", kind, *extra,
                 "--workers", "1", "--quiet"]) == 0
    kw = {"palette": "voc"} if "--palette" in extra else {}
    if "tiff32" in extra:
        kw["mask_format"] = "tiff32"
    written, result = rasterize_to(tiny_coco, run_url, tmp_path / "report", kind=kind, **kw)
    assert result.counts["ok"] == 4
    folder = {"panoptic": "panoptic", "rle": None}.get(kind, "masks")
    expected = {}
    if folder:
        expected = {f"{folder}/{k}": v for k, v in tree(local / folder).items()}
    if kind == "panoptic":
        expected["panoptic.json"] = (local / "panoptic.json").read_bytes()
        assert written == storage.location(run_url) / "panoptic.json"
    elif kind in ("semantic", "binary"):
        assert written == storage.location(run_url) / "masks" / "labelmap.json"
    got = tree(run_url)
    assert got == expected  # every object byte-identical, nothing more at the URL
    assert len(got) >= (0 if kind == "rle" else 4)
    cols = ("status", "output", "png_mode", "n_instances")
    assert item_columns(tmp_path / "report", *cols) == item_columns(local, *cols)


def test_rasterize_workers_write_to_the_url_with_their_options(tiny_coco, tmp_path, s3_server, s3_bucket,
                                                               monkeypatch):
    """Spawned worker processes get the output Location, and its storage options, with the job:
    the environment they inherit points at a closed port, only the options name the server."""
    local = tmp_path / "local"
    assert main(["rasterize", str(tiny_coco), "--out", str(local), "--kind", "instance", "--workers", "1",
                 "--quiet"]) == 0
    out = storage.Location(s3_bucket + "/r2", {"endpoint_url": s3_server})
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    ds = open_dataset(tiny_coco)
    job = RasterizeJob(ds, out, kind="instance")
    result = run_job(job, ds.manifest(), tmp_path / "report", workers=2, shard_size=1, quiet=True)
    assert result.counts["ok"] == 4 and result.execution["workers"] == 2
    assert tree(out) == {f"masks/{k}": v for k, v in tree(local / "masks").items()}


def test_a_refused_write_is_the_item_error_row_and_the_run_goes_on(tiny_coco, tmp_path, s3_server):
    ds = open_dataset(tiny_coco)
    job = RasterizeJob(ds, "s3://fastmask-no-such-bucket-x2/run")
    result = run_job(job, ds.manifest(), tmp_path / "report", workers=1, quiet=True)
    assert result.counts == {"items": 4, "ok": 0, "error": 4, "error_codes": {"not_found": 4}}
    items = load_report_table(tmp_path / "report").to_pylist()
    assert all("fastmask-no-such-bucket-x2/run/masks/" in r["error_message"] for r in items)
    # a dataset-wide file that cannot be written fails the run's finish (the CLI: exit code 4)
    with pytest.raises(FormatError, match="not_found"):
        write_mask_labelmap(job, tmp_path / "report")


# ------------------------------------------------------------------------------ convert

def make_voc(root, n=3, seed=0, h=24, w=32):
    """A VOC folder with JPEG images, class and object PNGs, two splits."""
    rng = np.random.default_rng(seed)
    for d in ("ImageSets/Segmentation", "SegmentationClass", "SegmentationObject", "JPEGImages"):
        (root / d).mkdir(parents=True)
    ids = []
    for i in range(n):
        cls = np.zeros((h, w), np.uint8)
        obj = np.zeros((h, w), np.uint8)
        for k in range(1, 4):
            y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
            cls[y:y + 6, x:x + 6] = rng.integers(1, 21)
            obj[y:y + 6, x:x + 6] = k
        cls[0, :3] = obj[0, :3] = 255
        name = f"img_{i:03d}"
        ids.append(name)
        write_mask(root / "SegmentationClass" / f"{name}.png", cls, palette="voc")
        write_mask(root / "SegmentationObject" / f"{name}.png", obj, palette="voc")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "ImageSets/Segmentation/train.txt").write_text("".join(f"{x}\n" for x in ids[:2]))
    (root / "ImageSets/Segmentation/val.txt").write_text("".join(f"{x}\n" for x in ids[2:]))
    return root


@pytest.fixture(scope="module")
def voc_src(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc") / "voc")


def convert_to(src, to, out, report, **kw):
    ds = open_dataset(src)
    job = ConvertJob(ds, to, out, **kw)
    result = run_job(job, job.manifest(), report, workers=1, quiet=True)
    return assemble(job, report), result


TARGETS = [("masks", []), ("masks", ["--format", "tiff32"]), ("voc", []), ("coco", []), ("coco", ["--coco-encoding", "rle"]),
           ("coco_panoptic", []), ("cleanzip", []), ("nucleus", ["--mask-url-prefix", "s3://b/up"]), ("labelbox", [])]


@pytest.mark.parametrize("to,extra", TARGETS, ids=["-".join([t, *e]).replace("/", "_") for t, e in TARGETS])
def test_convert_outputs_on_s3_equal_a_local_run(voc_src, tmp_path, run_url, to, extra):
    local = tmp_path / "local"
    assert main(["convert", str(voc_src), "--to", to, *extra, "--out", str(local), "--workers", "1", "--quiet"]) == 0
    kw = {"mask_format": "tiff32"} if "tiff32" in extra else {}
    if "rle" in extra:
        kw["coco_encoding"] = "rle"
    if "--mask-url-prefix" in extra:
        kw["mask_url_prefix"] = "s3://b/up"
    dataset, result = convert_to(voc_src, to, run_url, tmp_path / "report", **kw)
    assert result.counts["ok"] == 3
    assert dataset == storage.location(run_url) / "dataset"
    expected = {f"dataset/{k}": v for k, v in tree(local / "dataset").items()}
    assert len(expected) >= (1 if to == "coco" else 4)
    if to == "cleanzip":
        assert sum(k.startswith("dataset/images/") for k in expected) == 3  # the images are copied too
    assert tree(run_url) == expected
    cols = ("status", "mask_file", "instance_file", "image_file", "name")
    assert item_columns(tmp_path / "report", *cols) == item_columns(local, *cols)


@pytest.mark.parametrize("to", ["voc", "cleanzip"])
@pytest.mark.parametrize("keep", [False, True])
def test_convert_zip_to_s3_equals_the_local_zip(voc_src, tmp_path, run_url, to, keep):
    local = tmp_path / "local"
    assert main(["convert", str(voc_src), "--to", to, "--zip", *(["--keep-folder"] if keep else []),
                 "--out", str(local), "--workers", "1", "--quiet"]) == 0
    z, _ = convert_to(voc_src, to, run_url, tmp_path / "report", zip_output=True, keep_folder=keep)
    assert z == storage.location(run_url) / "dataset.zip"
    data = z.read_bytes()
    remote, ref = zipfile.ZipFile(io.BytesIO(data)), zipfile.ZipFile(local / "dataset.zip")
    assert remote.namelist() == ref.namelist() and len(ref.namelist()) >= 6
    assert all(remote.read(n) == ref.read(n) for n in ref.namelist())
    objects = tree(run_url)
    if keep:
        assert objects == {"dataset.zip": data, **{f"dataset/{k}": v for k, v in tree(local / "dataset").items()}}
    else:
        assert objects == {"dataset.zip": data}  # the uploaded per-item files are gone
        # a rerun of the assembled run finds the zip and no folder, and leaves the zip as it is
        ds = open_dataset(voc_src)
        again = assemble(ConvertJob(ds, to, run_url, zip_output=True), tmp_path / "report")
        assert again == z and tree(run_url) == {"dataset.zip": data}


# ---------------------------------------------------------------------------- instances

@pytest.mark.parametrize("fmt", ["png16", "tiff32"])
def test_instances_outputs_on_s3_equal_a_local_run(voc_src, tmp_path, run_url, fmt):
    local = tmp_path / "local"
    src = voc_src / "SegmentationClass"
    assert main(["instances", str(src), "--out", str(local), "--format", fmt, "--workers", "1", "--quiet"]) == 0
    ds = open_dataset(src)
    job = InstancesJob(ds, run_url, mask_format=fmt)
    result = run_job(job, ds.manifest(), tmp_path / "report", workers=1, quiet=True)
    assert result.counts["ok"] == 3
    expected = {f"masks/{k}": v for k, v in tree(local / "masks").items()}
    assert len(expected) == 3 and all(k.endswith(".png" if fmt == "png16" else ".tif") for k in expected)
    assert tree(run_url) == expected
    cols = ("status", "instance_file", "n_instances", "max_id")
    assert item_columns(tmp_path / "report", *cols) == item_columns(local, *cols)
