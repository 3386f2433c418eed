"""Datasets read from a URL root (the local S3 server; fsspec's in-memory filesystem for gs://):
every layout gives the report a local copy of the same files gives, row for row."""
from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastmask.cli import main
from fastmask.engine import load_report_table
from fastmask.formats import FormatError, detect_layout, open_dataset, write_mask
from fastmask.formats import _fs
from fastmask.formats._fs import Root
from fastmask.sample import make_sample
from fastmask.storage import Location

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


# ----------------------------------------------------------------------------- helpers


def mask(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mask(path, arr)


def upload(local: Path, url: str) -> str:
    """Copy a local file or folder (recursively) to ``url``; return ``url``."""
    local = Path(local)
    if local.is_file():
        Location(url).write_bytes(local.read_bytes())
        return url
    for p in sorted(local.rglob("*")):
        if p.is_file() and not p.is_symlink():
            (Location(url) / p.relative_to(local).as_posix()).write_bytes(p.read_bytes())
    return url


TIMING = ("seconds", "_ms", "time", "elapsed", "wall", "duration", "per_s")


def tables(out: Path, here: str, there: str) -> dict[str, list[dict]]:
    """Every table of a report, timing columns left out, the dataset's location ``here``
    written as ``there`` (messages and paths name their dataset)."""
    out = Path(out)
    found = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and list(p.glob("part-*.parquet"))):
        t = load_report_table(out, folder.name)
        keep = [c for c in t.column_names if not any(k in c for k in TIMING)]
        rows = t.select(keep).to_pylist()
        found[folder.name] = json.loads(json.dumps(rows, default=str).replace(here, there))
    if (out / "manifest.parquet").is_file():  # item ids and relative paths, as the run listed them
        import pyarrow.parquet as pq

        rows = pq.read_table(out / "manifest.parquet").to_pylist()
        found["manifest"] = json.loads(json.dumps(rows, default=str).replace(here, there))
    return found


def rules(found: dict) -> set[str]:
    """The rules of a report's item and dataset findings."""
    return {r["rule"] for name in ("findings", "dataset_findings") for r in found.get(name, [])}


def run(argv: list[str]) -> int:
    return main([*argv, "--workers", "1", "--quiet"])


def same_report(tmp_path: Path, command: str, local_args: list[str], url_args: list[str], local_root: str,
                url_root: str, extra: tuple = ()) -> dict:
    """Run ``command`` on the local and on the URL dataset (local --out both); assert same exit code and
    the same tables row for row; return the tables."""
    out_local, out_url = tmp_path / f"{command}-local", tmp_path / f"{command}-url"
    code_local = run([command, *local_args, "--out", str(out_local), *extra])
    code_url = run([command, *url_args, "--out", str(out_url), *extra])
    assert code_url == code_local, (code_local, code_url)
    a, b = tables(out_local, local_root, "<root>"), tables(out_url, url_root, "<root>")
    assert sorted(a) == sorted(b)
    for name in a:
        assert len(a[name]) == len(b[name]), name
        for ra, rb in zip(a[name], b[name]):
            assert ra == rb, (name, ra, rb)
    assert a["items"], "the run read no item"
    return a


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The demo sample (every validate rule planted), the masks folder without its too-long path."""
    root = tmp_path_factory.mktemp("sample")
    info = make_sample(root)
    shutil.rmtree(root / "masks" / "archive", ignore_errors=True)  # a path no object key can hold
    return info


# ----------------------------------------------------------------------------- layouts at s3://


@pytest.mark.parametrize("command", ["validate", "scan", "coverage"])
def test_voc_folder_from_s3(sample, s3_bucket, tmp_path, command):
    url = upload(sample.voc, s3_bucket + "/voc")
    assert detect_layout(url) == "voc"
    found = same_report(tmp_path, command, [str(sample.voc)], [url], str(sample.voc), url)
    if command == "validate":
        assert {"unreadable", "missing_image", "unknown_color", "size_mismatch"} <= rules(found)


def test_voc_zip_from_s3_and_one_top_folder(sample, s3_bucket, tmp_path):
    z = tmp_path / "voc.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(sample.voc.rglob("*")):
            if p.is_file():
                zf.write(p, "export/" + p.relative_to(sample.voc).as_posix())
    url = upload(z, s3_bucket + "/data/voc.zip")
    assert detect_layout(url) == "voc"
    ds = open_dataset(url)
    assert ds.store.is_zip and ds.store.base == "export"
    same_report(tmp_path, "validate", [str(z)], [url], str(z), url)


@pytest.mark.parametrize("command", ["validate", "coverage"])
def test_masks_folder_and_masks_zip_from_s3(sample, s3_bucket, tmp_path, command):
    url = upload(sample.masks, s3_bucket + "/masks")
    same_report(tmp_path, command, [str(sample.masks)], [url], str(sample.masks), url)
    zurl = upload(sample.zip, s3_bucket + "/zip/masks.zip")
    (tmp_path / "zip").mkdir()
    found = same_report(tmp_path / "zip", command, [str(sample.zip)], [zurl], str(sample.zip), zurl)
    if command == "validate":  # the zip's twin entries stay a listing problem
        assert "duplicate_entry" in rules(found)


def test_coco_with_images_from_s3(sample, s3_bucket, tmp_path):
    url = upload(sample.coco.parent, s3_bucket + "/coco")
    json_url = url + "/annotations.json"
    assert detect_layout(json_url) == "coco" and detect_layout(url) == "coco"
    found = same_report(tmp_path, "validate", [str(sample.coco), "--images", str(sample.coco.parent / "images")],
                        [json_url, "--images", url + "/images"], str(sample.coco.parent), url)
    assert {"unknown_image", "duplicate_id"} <= rules(found)


def test_coco_cache_is_keyed_by_url_and_version(sample, s3_bucket, tmp_path):
    url = upload(sample.coco, s3_bucket + "/c/annotations.json")
    a = open_dataset(url, cache_dir=str(tmp_path / "cache"))
    first = a.prepare()
    assert open_dataset(url, cache_dir=str(tmp_path / "cache")).prepare() == first  # reused
    doc = json.loads(sample.coco.read_text())
    doc["images"] = doc["images"][:1]
    Location(url).write_bytes(json.dumps(doc).encode())  # replaced: a new ETag, a new cache
    b = open_dataset(url, cache_dir=str(tmp_path / "cache"))
    assert b.prepare() != first and len(b.manifest()) == 1
    # a worker elsewhere (the driver's cache folder absent) builds its own from the URL
    back = pickle.loads(pickle.dumps(b))
    shutil.rmtree(tmp_path / "cache")
    assert back.manifest().column("item_id").to_pylist() == b.manifest().column("item_id").to_pylist()


def test_coco_object_missing_is_reported_like_a_missing_file(sample, s3_bucket, tmp_path):
    """An image the JSON names and the store lacks: the same finding as a missing local file."""
    local = tmp_path / "coco"
    shutil.copytree(sample.coco.parent, local)
    first = sorted((local / "images").iterdir())[0]
    first.unlink()
    url = upload(local, s3_bucket + "/coco")
    found = same_report(tmp_path, "validate", [str(local / "annotations.json")], [url + "/annotations.json"],
                        str(local), url)
    assert "missing_image" in rules(found)


def test_panoptic_with_png_folder_from_s3(sample, s3_bucket, tmp_path):
    url = upload(sample.panoptic.parent, s3_bucket + "/pan")
    json_url = url + "/" + sample.panoptic.name
    assert detect_layout(json_url) == "coco_panoptic"
    same_report(tmp_path, "validate", [str(sample.panoptic)], [json_url], str(sample.panoptic.parent), url)


def test_real_panoptic_evaluate_gt_and_pred_on_s3(s3_bucket, tmp_path):
    ref = REAL / "_reference" / "panoptic_pq"
    if not ref.is_dir():
        pytest.skip("real panoptic sample not found")
    pngs = sorted((REAL / "panopticapi" / "sample_data" / "panoptic_examples").glob("*.png"))
    url = upload(ref, s3_bucket + "/pq")
    for p in pngs:  # the ground truth's PNG folder, wherever the sample keeps it
        (Location(url) / "gt_png" / p.name).write_bytes(p.read_bytes())
    local_gt = tmp_path / "gt_png"
    local_gt.mkdir()
    for p in pngs:
        shutil.copy(p, local_gt / p.name)
    local = ["--gt", str(ref / "gt.json"), "--pred", str(ref / "pred.json"), "--gt-masks", str(local_gt), "--pred-masks",
             str(ref / "pred")]
    remote = ["--gt", url + "/gt.json", "--pred", url + "/pred.json", "--gt-masks", url + "/gt_png", "--pred-masks", url + "/pred"]
    out_l, out_u = tmp_path / "l", tmp_path / "u"
    code_l, code_u = run(["evaluate", *local, "--out", str(out_l)]), run(["evaluate", *remote, "--out", str(out_u)])
    assert code_l == code_u
    a = tables(out_l, str(ref), "<root>")
    b = tables(out_u, url, "<root>")
    b = json.loads(json.dumps(b).replace("<root>/gt_png", str(local_gt)))
    assert a == b and a["items"]


def test_evaluate_semantic_gt_and_pred_on_s3(sample, s3_bucket, tmp_path):
    gt = tmp_path / "gt"
    pred = tmp_path / "pred"
    rng = np.random.default_rng(3)
    for i in range(4):
        g = rng.integers(0, 4, (20, 30)).astype(np.uint8)
        p = np.where(rng.random((20, 30)) < 0.2, rng.integers(0, 4, (20, 30)), g).astype(np.uint8)
        mask(gt / "masks" / f"m{i}.png", g)
        mask(pred / "masks" / f"m{i}.png", p)
    gurl, purl = upload(gt, s3_bucket + "/gt"), upload(pred, s3_bucket + "/pred")
    out_l, out_u = tmp_path / "l", tmp_path / "u"
    code_l = run(["evaluate", "--gt", str(gt), "--pred", str(pred), "--num-classes", "4", "--out", str(out_l)])
    code_u = run(["evaluate", "--gt", gurl, "--pred", purl, "--num-classes", "4", "--out", str(out_u)])
    assert code_l == code_u
    a = tables(out_l, str(tmp_path), "<root>")
    b = tables(out_u, s3_bucket, "<root>")
    assert a == b and len(a["items"]) == 4 and a["classes"]


def convert_to(src, to: str, out: Path) -> Path:
    from fastmask.engine import run_job
    from fastmask.jobs.convert import ConvertJob, assemble

    job = ConvertJob(open_dataset(src), to, out)
    run_job(job, job.manifest(), out, workers=1, quiet=True)
    return Path(assemble(job, out))


@pytest.mark.parametrize("to,name", [("cleanzip", None), ("labelbox", "labelbox.ndjson"),
                                     ("nucleus", "segments.jsonl")])
def test_converted_layouts_from_s3(sample, s3_bucket, tmp_path, to, name):
    """A clean-zip folder; Labelbox and Nucleus files with their masks beside them."""
    clean = tmp_path / "voc"
    shutil.copytree(sample.voc, clean)
    for p in clean.rglob("planted_*"):  # convert refuses broken items; keep what it can write
        p.unlink()
    made = convert_to(clean, to, tmp_path / "conv")
    target = made / name if name else made
    url = upload(made, s3_bucket + "/conv")
    turl = url + "/" + name if name else url
    assert detect_layout(turl) == to == detect_layout(target)
    same_report(tmp_path, "validate", [str(target)], [turl], str(made), url)
    (tmp_path / "cov").mkdir()
    same_report(tmp_path / "cov", "coverage", [str(target)], [turl], str(made), url)


def test_cleanzip_zip_from_s3(sample, s3_bucket, tmp_path):
    clean = tmp_path / "voc"
    shutil.copytree(sample.voc, clean)
    for p in clean.rglob("planted_*"):
        p.unlink()
    made = convert_to(clean, "cleanzip", tmp_path / "conv")
    z = tmp_path / "clean.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(made.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(made).as_posix())
    url = upload(z, s3_bucket + "/clean.zip")
    assert detect_layout(url) == "cleanzip"
    same_report(tmp_path, "validate", [str(z)], [url], str(z), url)


def test_real_datumaro_voc_and_labelmap_url(s3_bucket, tmp_path):
    src = REAL / "datumaro" / "tests" / "assets" / "voc_dataset" / "voc_dataset1"
    if not src.is_dir():
        pytest.skip("datumaro VOC sample not found")
    url = upload(src, s3_bucket + "/dvoc")
    lm = tmp_path / "labelmap.txt"
    lm.write_text("background:0,0,0::\ncat:128,0,0::\n")
    lm_url = upload(lm, s3_bucket + "/maps/labelmap.txt")
    same_report(tmp_path, "scan", [str(src)], [url], str(src), url)
    (tmp_path / "lm").mkdir()
    found = same_report(tmp_path / "lm", "validate", [str(src), "--labelmap", str(lm)],
                        [url, "--labelmap", lm_url], str(src), url)
    assert found["items"]


# ----------------------------------------------------------------------------- Root at a URL


def test_root_listing_matches_a_local_walk(s3_bucket, tmp_path):
    local = tmp_path / "d"
    for rel in ("a.png", "sub/b.png", "sub/deep/c.png", ".hidden.png", ".git/x.png", "__MACOSX/y.png",
                "sub/__MACOSX/z.png", "weird name #1.png", "sub/.cache/w.png"):
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(b"x")
    report = {"report_format": 1, "fastmask_version": "0", "job": "scan", "status": "complete"}
    (local / "rep").mkdir()
    (local / "rep" / "run.json").write_text(json.dumps(report))
    (local / "rep" / "chart.png").write_bytes(b"x")
    url = upload(local, s3_bucket + "/d")
    a, b = Root(local), Root(url)
    assert b.is_remote and not b.is_zip
    assert a.files() == b.files() and a.files(recursive=False) == b.files(recursive=False)
    assert a.sub("sub").files() == b.sub("sub").files()
    assert a.skipped_reports == {str(local / "rep")} and b.skipped_reports == {url + "/rep"}
    assert b.isdir("sub") and not b.isdir("nope") and b.exists("sub/b.png") and not b.exists("sub/nope.png")
    assert b.read("sub/deep/c.png") == b"x" and b.open("a.png").read() == b"x"
    assert b.display("sub/b.png") == url + "/sub/b.png" and b.local_path("a.png") is None
    with pytest.raises(FormatError) as e:
        b.read("../outside.png")
    assert e.value.code == "path_outside_root"
    # pickled: the URL and its options, no listing; exists then asks the store
    blob = pickle.dumps(b.sub("sub"))
    assert len(blob) < 400
    back = pickle.loads(blob)
    assert back.exists("b.png") and not back.exists("zz.png") and back.read("b.png") == b"x"


def test_missing_prefix_is_a_usage_error(s3_bucket, tmp_path, capsys):
    code = run(["validate", s3_bucket + "/no/such/prefix", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "missing_file" in err and "no/such/prefix" in err
    assert code == run(["validate", str(tmp_path / "no-such-folder"), "--out", str(tmp_path / "r2")])
    with pytest.raises(FormatError) as e:
        Root(s3_bucket + "/no/such/prefix")
    assert e.value.code == "missing_file"


def test_prefix_that_cannot_be_listed_is_a_listing_problem(tmp_path, monkeypatch):
    url = f"memory://fastmask-{tmp_path.name}/m"
    Location(url + "/a.png").write_bytes(b"x")
    root = Root(url)  # found (a prefix); its listing then fails
    monkeypatch.setattr(Location, "find", lambda self: (_ for _ in ()).throw(PermissionError("denied")))
    assert root.files() == []
    (key, message), = root.problems.items()
    assert key == ("unlisted_path", url) and "forbidden" in message and "denied" in message


def test_object_deleted_after_listing_is_not_found_row(s3_bucket, tmp_path):
    local = tmp_path / "m"
    for i in range(3):
        mask(local / f"m{i}.png", np.full((4, 5), i, np.uint8))
    url = upload(local, s3_bucket + "/m")
    ds = open_dataset(url)
    ds.manifest()
    Location(url + "/m1.png").unlink()
    got = {row["item_id"]: item for row, item in ds.iter_items()}
    assert isinstance(got["m1"], FormatError) and got["m1"].code == "not_found"
    assert got["m0"].mask.array.shape == (4, 5)


# ----------------------------------------------------------------------------- hostile objects


def _zip_bytes(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return bio.getvalue()


def test_hostile_zip_entries_at_a_url(s3_bucket, tmp_path):
    from fastmask.formats.png import _png_bytes

    good = _png_bytes(np.zeros((4, 4), np.uint8))
    data = _zip_bytes({"good.png": good, "../evil.png": good, "bomb.png": b"\0" * (40 << 20)})
    z = tmp_path / "h.zip"
    z.write_bytes(data)
    url = upload(z, s3_bucket + "/h.zip")
    out_l, out_u = tmp_path / "l", tmp_path / "u"
    assert run(["scan", str(z), "--out", str(out_l)]) == run(["scan", url, "--out", str(out_u)])
    a, b = tables(out_l, str(z), "<root>"), tables(out_u, url, "<root>")
    assert a == b
    codes = {r["item_id"]: r["error_code"] for r in b["items"]}
    assert codes == {"good": None, "../evil": "path_outside_root", "bomb": "zip_bomb"}


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_encrypted_and_duplicate_zip_entries_at_a_url(s3_bucket):
    from fastmask.formats.png import _png_bytes

    good = _png_bytes(np.zeros((4, 4), np.uint8))
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as zf:
        zf.writestr("a.png", good)
        zf.writestr("a.png", good)  # a twin entry
        info = zipfile.ZipInfo("locked.png")
        zf.writestr(info, good)
    raw = bytearray(bio.getvalue())
    # mark locked.png encrypted (general purpose flag bit 0) in its local and central headers
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        start = 0
        while (i := raw.find(sig, start)) >= 0:
            off = 6 if sig == b"PK\x03\x04" else 8
            name_off = 30 if sig == b"PK\x03\x04" else 46
            if raw[i + name_off:i + name_off + 10] == b"locked.png":
                raw[i + off] |= 1
            start = i + 4
    url = s3_bucket + "/e.zip"
    Location(url).write_bytes(bytes(raw))
    ds = open_dataset(url, layout="masks")
    got = {row["item_id"]: item for row, item in ds.iter_items()}
    assert got["locked"].code == "encrypted"
    assert [p["kind"] for p in ds.problems()] == ["duplicate_entry"]


def test_object_above_the_read_limit(s3_bucket, tmp_path, monkeypatch):
    from fastmask.formats.png import _png_bytes

    local = tmp_path / "m"
    local.mkdir()
    (local / "small.png").write_bytes(_png_bytes(np.zeros((2, 2), np.uint8)))
    (local / "big.png").write_bytes(_png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    url = upload(local, s3_bucket + "/m")
    limit = (local / "small.png").stat().st_size + 10
    monkeypatch.setenv("FASTMASK_MAX_FILE_BYTES", str(limit))
    monkeypatch.setattr(_fs, "MAX_FILE_BYTES", limit)
    out_l, out_u = tmp_path / "l", tmp_path / "u"
    assert run(["scan", str(local), "--out", str(out_l)]) == run(["scan", url, "--out", str(out_u)])
    a, b = tables(out_l, str(local), "<root>"), tables(out_u, url, "<root>")
    codes = {r["item_id"]: r["error_code"] for r in b["items"]}
    assert codes == {"big": "too_large", "small": None}
    assert [r["error_code"] for r in a["items"]] == [r["error_code"] for r in b["items"]]


# ----------------------------------------------------------------------------- nothing S3-specific


@pytest.fixture
def gs_memory(monkeypatch):
    """``gs://`` served by an in-memory fsspec filesystem (no gcsfs, no network): the URLs go
    through exactly the code path a real bucket takes."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class MemoryGCS(MemoryFileSystem):
        protocol = ("gs", "gcs")
        store: dict = {}
        pseudo_dirs = [""]

        @classmethod
        def _strip_protocol(cls, path):
            for p in ("gs://", "gcs://"):
                if path.startswith(p):
                    path = path[len(p):]
            return super()._strip_protocol(path)

    saved = fsspec.registry.get("gs")
    fsspec.register_implementation("gs", MemoryGCS, clobber=True)
    yield "gs://bucket"
    MemoryGCS.store.clear()
    if saved is not None:
        fsspec.register_implementation("gs", saved, clobber=True)
    else:
        from fsspec.registry import _registry

        _registry.pop("gs", None)


@pytest.mark.parametrize("scheme", ["memory", "gs"])
def test_voc_from_other_filesystems(sample, tmp_path, scheme, request):
    base = request.getfixturevalue("gs_memory") if scheme == "gs" else f"memory://fastmask-{tmp_path.name}"
    url = upload(sample.voc, base + "/voc")
    assert detect_layout(url) == "voc"
    ds = open_dataset(url)
    assert ds.store.is_remote and ds.store.path == url
    same_report(tmp_path, "validate", [str(sample.voc)], [url], str(sample.voc), url)


def test_storage_options_reach_the_dataset(s3_server, s3_bucket, tmp_path, monkeypatch, capsys):
    """--storage-options is what the dataset's Locations are made with: with the environment's
    endpoint pointing nowhere, the run reads the bucket only through the endpoint the option gives."""
    local = tmp_path / "m"
    mask(local / "a.png", np.zeros((3, 3), np.uint8))
    url = upload(local, s3_bucket + "/m")
    monkeypatch.setattr("fastmask.storage.RETRIES", 0)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing answers
    opts = json.dumps({"client_kwargs": {"endpoint_url": s3_server}, "skip_instance_cache": True})
    out = tmp_path / "r"
    assert run(["scan", url, "--out", str(out), "--storage-options", opts]) == 0
    assert [r["error_code"] for r in load_report_table(out).to_pylist()] == [None]
    # without the option the environment's endpoint is used, and nothing answers there: a usage error
    monkeypatch.setattr("s3fs.S3FileSystem.retries", 1)
    quick = {"skip_instance_cache": True, "config_kwargs": {"retries": {"max_attempts": 1}}}
    assert run(["scan", url, "--out", str(tmp_path / "r2"), "--storage-options", json.dumps(quick)]) == 2
    assert "remote_error" in capsys.readouterr().err


def test_prefix_is_listed_once_for_detection_and_dataset(sample, s3_bucket, monkeypatch):
    url = upload(sample.voc, s3_bucket + "/voc")
    calls = []
    real = Location.find

    def spy(self):
        calls.append(self.url)
        return real(self)

    monkeypatch.setattr(Location, "find", spy)
    ds = open_dataset(url)
    assert ds.layout == "voc" and len(ds.manifest()) == len(open_dataset(sample.voc).manifest())
    assert calls == [url]
    # shipped to a worker: URLs and options, no listing, no handle, no manifest
    blob = pickle.dumps(ds)
    back = pickle.loads(blob)
    assert len(blob) < 20_000 and back.store._listing == [] and back._manifest is None
    row = ds.manifest().slice(0, 1).to_pylist()[0]
    assert back.read_item(row).item_id == row["item_id"] and calls == [url]  # read without listing


def test_worker_processes_read_the_url_dataset(sample, s3_bucket, tmp_path):
    """Two spawned worker processes get the dataset pickled (URLs and options) and read the objects
    themselves, without the driver's listing: the same tables as one local process."""
    clean = tmp_path / "voc"
    shutil.copytree(sample.voc, clean)
    for p in clean.rglob("planted_*"):
        p.unlink()
    made = convert_to(clean, "cleanzip", tmp_path / "conv")  # its reader asks exists() per item
    url = upload(made, s3_bucket + "/conv")
    out_l, out_u = tmp_path / "l", tmp_path / "u"
    assert main(["validate", str(made), "--out", str(out_l), "--workers", "1", "--quiet"]) == \
        main(["validate", url, "--out", str(out_u), "--workers", "2", "--shard-size", "5", "--quiet"])
    a, b = tables(out_l, str(made), "<root>"), tables(out_u, url, "<root>")
    assert a == b and len(a["items"]) > 5
