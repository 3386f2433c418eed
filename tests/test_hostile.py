"""Hostile inputs (issue 8), through the CLI and the job level: each gets a clear error row
(``items.error_code``) or finding, and the run goes on with the other items.

The validate runs go through ``python -m fastmask`` in a child process with its address space
capped (``RLIMIT_AS``): a regression that allocates a declared 30000x30000 or 1e9x1e9 mask fails
the test with a MemoryError instead of exhausting the machine.
"""
from __future__ import annotations

import io
import json
import os
import resource
import stat
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fastmask.rle as R
from fastmask.formats import FormatError, load_labelmap, open_dataset

MEMORY_CAP = 6 * 2**30  # address space of the child run: far above its needs (~0.4 GB RSS)


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def png_declaring(w: int, h: int) -> bytes:
    """A valid-looking grey PNG whose header declares w x h pixels, with a few rows of data."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    rows = zlib.compress(b"\x00" * (w + 1) * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def validate(dataset: Path, out: Path, *extra: str, expect: tuple[int, ...] = (0, 1), timeout: float = 300,
             env: dict | None = None) -> subprocess.CompletedProcess:
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    env = {**os.environ, "FASTMASK_CACHE": str(out.parent / "cache"), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "fastmask", "validate", str(dataset), "--out", str(out),
                           "--workers", "1", "--quiet", *extra], check=False, capture_output=True, text=True,
                          preexec_fn=cap,
                          env=env, timeout=timeout)
    assert proc.returncode in expect, proc.stderr[-3000:]
    return proc


def rows(out: Path) -> dict[str, dict]:
    items = pq.read_table(out / "items", columns=["item_id", "status", "error_code", "error_message"]).to_pylist()
    ids = [r["item_id"] for r in items]
    assert len(ids) == len(set(ids)), "an item was reported twice"
    return {r["item_id"]: r for r in items}


def findings(out: Path) -> dict[str, set[str]]:
    got: dict[str, set[str]] = {}
    for r in pq.read_table(out / "findings", columns=["item_id", "rule"]).to_pylist():
        got.setdefault(r["item_id"], set()).add(r["rule"])
    return got


# --------------------------------------------------------------------------- a mask folder


@pytest.fixture(scope="module")
def hostile_masks(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("hostile")
    root = base / "ds"
    masks = root / "masks"
    (masks / "sub").mkdir(parents=True)
    (root / "class_names.txt").write_text("background\na\nb\n")
    ok = np.zeros((20, 20), np.uint8)
    ok[5:15, 5:15] = 1
    for i in range(4):
        (masks / f"ok{i}.png").write_bytes(png_bytes(ok))
    (masks / "bomb.png").write_bytes(png_declaring(100_000, 100_000))      # 10^10 pixels declared
    (masks / "big30k.png").write_bytes(png_declaring(30_000, 30_000))      # 9x10^8: above Pillow's limit
    (masks / "tiny1x1.png").write_bytes(png_bytes(np.ones((1, 1), np.uint8)))
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes(np.full((3, 3), 2, np.uint8)))
    os.symlink(outside / "secret.png", masks / "abs_link.png")               # absolute symlink out
    os.symlink("../../outside/secret.png", masks / "rel_link.png")         # relative symlink out
    os.symlink(outside, masks / "sub" / "dir_link")                        # a folder symlink out
    (masks / "inside_link.png").symlink_to(masks / "ok0.png")              # a symlink that stays inside
    with open(os.path.join(os.fsencode(masks), b"caf\xe9-latin1.png"), "wb") as f:  # not UTF-8
        f.write(png_bytes(ok))
    out = base / "report"
    validate(root, out)
    return root, out


def test_every_hostile_file_is_one_row_with_a_clear_code(hostile_masks):
    _, out = hostile_masks
    got = rows(out)
    expected = {
        "bomb": "decompression_bomb", "big30k": "decompression_bomb",
        "abs_link": "path_outside_root", "rel_link": "path_outside_root",
    }
    for item, code in expected.items():
        assert got[item]["status"] == "error" and got[item]["error_code"] == code, got[item]
        assert got[item]["error_message"]
    assert "limit" in got["bomb"]["error_message"] and "outside the dataset root" in got["abs_link"]["error_message"]
    for item in ("ok0", "ok1", "ok2", "ok3", "tiny1x1", "inside_link"):
        assert got[item]["status"] == "ok", got[item]
    # the run went on: every file is in the report once, and nothing from the linked folder
    assert not [i for i in got if i.startswith("sub/")]
    assert len(got) == 4 + 2 + 1 + 2 + 1 + 1


def test_refused_files_are_also_findings(hostile_masks):
    _, out = hostile_masks
    f = findings(out)
    for item in ("bomb", "big30k", "abs_link", "rel_link"):
        assert f[item] == {"unreadable"}


def test_non_utf8_file_name_is_reported_and_read(hostile_masks):
    _, out = hostile_masks
    got = rows(out)
    assert got["caf\\xe9-latin1"]["status"] == "ok"  # listed with a \xHH escape, read under its real name
    pq.read_table(out / "items")  # the Parquet strings are valid UTF-8


def test_one_by_one_mask_is_handled(hostile_masks):
    root, _ = hostile_masks
    ds = open_dataset(root)
    item = ds.read_item(next(r for r in ds.manifest().to_pylist() if r["item_id"] == "tiny1x1"))
    assert item.mask.array.shape == (1, 1)


# --------------------------------------------------------------------------- zips: zip slip, absolute names, symlinks


def _voc_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ImageSets/Segmentation/train.txt", "a\nb\n")
        zf.writestr("SegmentationClass/a.png", png_bytes(np.zeros((4, 4), np.uint8)))
        zf.writestr("SegmentationClass/b.png", png_bytes(np.ones((4, 4), np.uint8)))
        zf.writestr("SegmentationClass/../../evil.png", png_bytes(np.ones((4, 4), np.uint8)))
        zf.writestr("/tmp/fastmask-abs-evil.png", png_bytes(np.ones((4, 4), np.uint8)))
        link = zipfile.ZipInfo("SegmentationClass/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return path


def test_voc_zip_with_zip_slip_entries(tmp_path):
    z = _voc_zip(tmp_path / "voc.zip")
    out = tmp_path / "r"
    validate(z, out)
    got = rows(out)
    assert got["a"]["status"] == got["b"]["status"] == "ok"
    for item_id, r in got.items():
        if item_id not in ("a", "b"):  # whatever else is listed is refused, never read
            assert r["status"] == "error" and r["error_code"] == "path_outside_root", r
    assert got["link"]["error_code"] == "path_outside_root"
    assert not (tmp_path.parent / "evil.png").exists() and not Path("/tmp/fastmask-abs-evil.png").exists()


def test_mask_zip_lists_unsafe_entries_as_refused_items(tmp_path):
    z = tmp_path / "masks.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.png", png_bytes(np.zeros((4, 4), np.uint8)))
        zf.writestr("../../../evil.png", png_bytes(np.ones((4, 4), np.uint8)))
        zf.writestr("/abs/evil2.png", png_bytes(np.ones((4, 4), np.uint8)))
    out = tmp_path / "r"
    validate(z, out, "--layout", "masks")
    got = rows(out)
    assert got["ok"]["status"] == "ok"
    refused = [r for i, r in got.items() if i != "ok"]
    assert len(refused) == 2 and all(r["error_code"] == "path_outside_root" for r in refused)


def test_cleanzip_index_pointing_outside(tmp_path):
    z = tmp_path / "clean.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("meta.json", json.dumps({"format": "fastmask-cleanzip", "version": 1, "task": "semantic",
                                             "mask_encoding": "png-index", "classes": ["background", "a"]}))
        zf.writestr("index.csv", "item_id,image,mask\n"
                                 "good,,masks/good.png\n"
                                 "dots,,../../etc/passwd\n"
                                 "abs,,/etc/passwd\n")
        zf.writestr("masks/good.png", png_bytes(np.zeros((4, 4), np.uint8)))
    out = tmp_path / "r"
    validate(z, out)
    got = rows(out)
    assert got["good"]["status"] == "ok"
    assert got["dots"]["error_code"] == got["abs"]["error_code"] == "path_outside_root"


# --------------------------------------------------------------------------- files that are not files, limits, listings


def dataset_findings(out: Path) -> list[dict]:
    return pq.read_table(out / "dataset_findings", columns=["rule", "severity", "message", "extra"]).to_pylist()


def _chunk(t: bytes, d: bytes) -> bytes:
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))


def _grey_png(a: np.ndarray, *, rows: int | None = None, depth: int = 8, color: int = 0) -> bytes:
    """A hand-written PNG (filter 0); ``rows``: a complete zlib stream of only the first rows."""
    h, w = a.shape[:2]
    samples = a.astype(">u2") if depth == 16 else a.astype(np.uint8)
    raw = b"".join(b"\0" + r.tobytes() for r in samples[:rows])
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def _deep(root: Path, min_bytes: int) -> str:
    """Folders nested past ``min_bytes`` bytes of path (made through dir fds), a mask at the bottom;
    returns the first folder whose path is longer than 4,096 bytes."""
    fd, path, first = os.open(root, os.O_RDONLY), str(root), ""
    while len(os.fsencode(path)) < min_bytes:
        os.mkdir("d" * 200, dir_fd=fd)
        nfd = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd, path = nfd, path + "/" + "d" * 200
        first = first or (path if len(os.fsencode(path)) > 4096 else "")
    w = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(w, png_bytes(np.ones((2, 2), np.uint8)))
    os.close(w)
    os.close(fd)
    return first


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("hostile2")
    masks = base / "ds" / "masks"
    (masks / "sub").mkdir(parents=True)
    (base / "ds" / "class_names.txt").write_text("background\na\nb\n")
    ok = np.zeros((480, 640), np.uint8)
    ok[100:200, 100:300] = 1
    (masks / "ok.png").write_bytes(png_bytes(ok))
    facts = {"fifo": hasattr(os, "mkfifo")}
    if facts["fifo"]:
        os.mkfifo(masks / "fifo.png")                                    # used to hang the run forever
        (masks / "sub" / "fifo_link.png").symlink_to(masks / "fifo.png")  # a link to it, inside the root
    try:
        os.mknod(masks / "zero.png", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero: read until OOM
        facts["device"] = True
    except (PermissionError, OSError, AttributeError):
        facts["device"] = False
    (masks / "short.png").write_bytes(_grey_png(ok, rows=100))         # 100 of 480 rows, IEND present
    la = np.zeros((4, 4, 2), np.uint16)
    la[..., 0] = 1
    la[..., 1] = 65535
    la[0, 0, 1] = 0
    (masks / "la16.png").write_bytes(_grey_png(la, depth=16, color=4))  # used to read as 8-bit RGBA
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (1, 2, 1)]
    bio = io.BytesIO()
    frames[0].save(bio, "PNG", save_all=True, append_images=frames[1:])
    (masks / "anim.png").write_bytes(bio.getvalue())
    with open(os.path.join(os.fsencode(masks), b"bad\xff.png"), "wb") as f:    # a raw byte 0xff
        f.write(png_bytes(np.ones((2, 2), np.uint8)))
    (masks / "bad\\xff.png").write_bytes(png_bytes(np.full((2, 2), 2, np.uint8)))  # the text "\xff"
    facts["deep"] = _deep(masks, 4400)
    out = base / "report"
    validate(base / "ds", out, timeout=120)
    return base / "ds", out, facts


def test_fifos_and_devices_are_not_a_file_and_never_block(hostile_files):
    _, out, facts = hostile_files
    got = rows(out)
    expected = (["fifo", "sub/fifo_link"] if facts["fifo"] else []) + (["zero"] if facts["device"] else [])
    if not expected:
        pytest.skip("this OS makes neither FIFOs nor devices")
    for item in expected:
        assert got[item]["status"] == "error" and got[item]["error_code"] == "not_a_file", got[item]
    assert findings(out)[expected[0]] == {"unreadable"}
    assert got["ok"]["status"] == "ok"


def test_png_with_missing_rows_is_truncated_in_a_run(hostile_files):
    _, out, _ = hostile_files
    got = rows(out)
    assert got["short"]["status"] == "error" and got["short"]["error_code"] == "truncated", got["short"]


def test_sixteen_bit_grey_alpha_and_animated_masks_in_a_run(hostile_files):
    _, out, _ = hostile_files
    items = {r["item_id"]: r for r in pq.read_table(out / "items", columns=["item_id", "status", "mask_dtype",
                                                                            "mask_mode"]).to_pylist()}
    assert items["la16"]["status"] == "ok" and items["la16"]["mask_dtype"] == "uint16"
    assert items["la16"]["mask_mode"] == "LA;16"
    f = findings(out)
    assert "unexpected_channels" in f["la16"]  # the transparent pixel: alpha checked like RGBA's
    assert "animated_mask" in f["anim"] and items["anim"]["status"] == "ok"


def test_colliding_listed_names_are_two_items(hostile_files):
    _, out, _ = hostile_files
    got = rows(out)  # (rows() fails on a duplicate id; this used to crash: duplicate item_id)
    assert got["bad\\xff"]["status"] == got["bad\\x5cxff"]["status"] == "ok"


def test_folder_too_deep_to_list_is_a_dataset_finding_naming_it(hostile_files):
    _, out, facts = hostile_files
    found = [f for f in dataset_findings(out) if f["rule"] == "unlisted_path"]
    assert len(found) == 1 and found[0]["severity"] == "error"
    assert json.loads(found[0]["extra"])["path"] == facts["deep"]
    assert not [i for i in rows(out) if "deep" in i]


def _forge_encrypted(path: Path, name: str) -> None:
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        data[z.getinfo(name).header_offset + 6] |= 1            # local header flag bit 0
    i = data.find(b"PK\x01\x02")
    while i >= 0:                                               # central directory entries
        n = struct.unpack_from("<H", data, i + 28)[0]
        if bytes(data[i + 46:i + 46 + n]) == name.encode():
            data[i + 8] |= 1
        i = data.find(b"PK\x01\x02", i + 4)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def hostile_voc_zip(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hostile_zip")
    z = base / "voc.zip"
    one = png_bytes(np.ones((4, 4), np.uint8))
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ImageSets/Segmentation/train.txt", "a\nb\nc\nbomb\ndup\nenc\n")
        zf.writestr("SegmentationClass/a.png", one)
        zf.writestr("./SegmentationClass/b.png", one)            # used to be no row at all
        zf.writestr("SegmentationClass/./c.png", one)
        # a valid PNG followed by 32 MiB of zeros: 32 KB in the zip (the real case: 3 GiB from 3.1 MB)
        zf.writestr("SegmentationClass/bomb.png", one + bytes(32 << 20))
        zf.writestr("SegmentationClass/dup.png", one)
        zf.writestr("SegmentationClass/dup.png", png_bytes(np.full((4, 4), 2, np.uint8)))
        zf.writestr("SegmentationClass/enc.png", one)
    _forge_encrypted(z, "SegmentationClass/enc.png")
    assert z.stat().st_size < 100_000
    return z


def test_voc_zip_bomb_encrypted_normalised_and_duplicate_entries(hostile_voc_zip, tmp_path):
    out = tmp_path / "r"
    validate(hostile_voc_zip, out)
    got = rows(out)
    assert set(got) == {"a", "b", "c", "bomb", "dup", "enc"}  # one row each, dup once
    for item in ("a", "b", "c", "dup"):
        assert got[item]["status"] == "ok", got[item]
    assert got["bomb"]["error_code"] == "zip_bomb" and "FASTMASK_MAX_ZIP_RATIO" in got["bomb"]["error_message"]
    assert got["enc"]["error_code"] == "encrypted"
    dups = [f for f in dataset_findings(out) if f["rule"] == "duplicate_entry"]
    assert len(dups) == 1 and "SegmentationClass/dup.png" in dups[0]["message"]


def test_read_limit_is_configured_by_environment(hostile_voc_zip, tmp_path):
    out = tmp_path / "r"
    validate(hostile_voc_zip, out, env={"FASTMASK_MAX_FILE_BYTES": "50"})
    got = rows(out)
    for item in ("a", "b", "c", "dup"):  # each a PNG of ~70 bytes
        assert got[item]["error_code"] == "too_large" and "FASTMASK_MAX_FILE_BYTES" in got[item]["error_message"]


def test_cleanzip_index_field_over_the_csv_limit_is_a_clear_error(tmp_path):
    root = tmp_path / "clean"
    (root / "masks").mkdir(parents=True)
    (root / "masks" / "a.png").write_bytes(png_bytes(np.zeros((2, 2), np.uint8)))
    (root / "index.csv").write_text("item_id,mask\na," + "x" * 140_000 + "\n")
    proc = validate(root, tmp_path / "r", expect=(2,))
    assert "bad_index" in proc.stderr and "field larger than field limit" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_size_mismatch_of_a_turned_image_names_exif_rotation(tmp_path):
    root = tmp_path / "ds"
    (root / "masks").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "masks" / "a.png").write_bytes(png_bytes(np.zeros((3, 4), np.uint8)))   # 4 x 3
    Image.new("RGB", (3, 4)).save(root / "images" / "a.jpg")                       # 3 x 4: turned
    (root / "masks" / "b.png").write_bytes(png_bytes(np.zeros((3, 4), np.uint8)))
    Image.new("RGB", (5, 4)).save(root / "images" / "b.jpg")                       # just another size
    out = tmp_path / "r"
    validate(root, out)
    msgs = {r["item_id"]: r["message"] for r in pq.read_table(out / "findings").to_pylist()
            if r["rule"] == "size_mismatch"}
    assert "EXIF rotation" in msgs["a"] and "EXIF" not in msgs["b"]


# --------------------------------------------------------------------------- COCO: paths, sizes, RLEs, polygons


@pytest.fixture(scope="module")
def hostile_coco(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hostile-coco")
    images = base / "images"
    images.mkdir()
    (base / "secret").mkdir()
    jpg = np.zeros((6, 8, 3), np.uint8)
    Image.fromarray(jpg).save(images / "a.jpg")
    Image.fromarray(jpg).save(base / "secret" / "s.jpg")
    os.symlink(base / "secret" / "s.jpg", images / "link.jpg")
    rng = np.random.default_rng(0)
    million = (rng.random(2 * 10**6) * 8).round(2).tolist()  # 10^6 vertices
    img = [
        (1, "a.jpg", 8, 6), (2, "../secret/s.jpg", 8, 6), (3, str(base / "secret" / "s.jpg"), 8, 6),
        (4, "link.jpg", 8, 6), (5, "a.jpg", 30000, 30000), (6, "a.jpg", 10**9, 10**9), (7, "a.jpg", 8, 6),
        (8, "a.jpg", 8, 6), (9, "a.jpg", 8, 6), (10, "a.jpg", 1, 1),
    ]
    ann = [
        (1, 1, [[1, 1, 5, 1, 5, 4]]),
        (2, 5, [[1, 1, 29000, 1, 29000, 29000]]),
        (3, 6, [[1, 1, 5e8, 1, 5e8, 5e8]]),
        (4, 7, {"size": [6, 8], "counts": [2**32 + 5, 3]}),                  # a run above 32 bits
        (5, 7, {"size": [6, 8], "counts": "0" * 8 + "ooooooo1"}),            # a compressed value above 32 bits
        (6, 8, [million]),
        (7, 9, [[1e300, 1, -1e300, 4, 5, 1e300]]),
        (8, 10, [[0, 0, 1, 0, 1, 1]]),
    ]
    doc = {"images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in img],
           "annotations": [{"id": a, "image_id": i, "category_id": 1, "segmentation": s, "bbox": [0, 0, 1, 1],
                            "iscrowd": int(isinstance(s, dict))} for a, i, s in ann],
           "categories": [{"id": 1, "name": "thing"}]}
    (base / "instances.json").write_text(json.dumps(doc))
    out = base / "report"
    validate(base / "instances.json", out, "--images", str(images))
    return out


def test_coco_file_names_leaving_the_images_folder_are_refused(hostile_coco):
    got = rows(hostile_coco)
    for image_id in (2, 3, 4):  # '..', absolute, symlink out
        r = got[f"{image_id:012d}"]
        assert r["status"] == "error" and r["error_code"] == "path_outside_root", r
    assert got["000000000001"]["status"] == "ok"


def test_coco_records_declaring_huge_images_are_refused_by_the_pixel_limit(hostile_coco):
    got = rows(hostile_coco)
    for image_id in (5, 6):  # 30000x30000 and 1e9 x 1e9 records: no mask of that size is ever allocated
        r = got[f"{image_id:012d}"]
        assert r["error_code"] == "decompression_bomb" and "MAX_IMAGE_PIXELS" in r["error_message"], r


def test_coco_rle_counts_beyond_32_bits_are_invalid_rle(hostile_coco):
    assert rows(hostile_coco)["000000000007"]["status"] == "ok"
    assert "invalid_rle" in findings(hostile_coco)["000000000007"]


def test_coco_polygons_with_a_million_vertices_or_huge_coordinates(hostile_coco):
    got, f = rows(hostile_coco), findings(hostile_coco)
    assert got["000000000008"]["status"] == got["000000000009"]["status"] == "ok"
    assert "polygon_out_of_bounds" in f["000000000009"]  # coordinates of 1e300: clipped and reported
    assert got["000000000010"]["status"] == "ok"  # a 1x1 image


# --------------------------------------------------------------------------- JSON nesting and size bombs


def test_deeply_nested_coco_json_is_a_clear_error(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    p = tmp_path / "instances_deep.json"
    p.write_text('{"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}], "annotations": '
                 f'[{{"id": 1, "image_id": 1, "category_id": 1, "segmentation": {deep}}}], '
                 '"categories": [{"id": 1, "name": "a"}]}')
    proc = validate(p, tmp_path / "r", expect=(2,))
    assert "bad_json" in proc.stderr and "nesting too deep" in proc.stderr


def test_deeply_nested_labelmap_json_is_a_clear_error(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "a.png").write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))
    (tmp_path / "labelmap.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FormatError) as e:
        load_labelmap(tmp_path / "labelmap.json")
    assert e.value.code == "bad_json" or e.value.code == "bad_labelmap"
    proc = validate(tmp_path, tmp_path / "r", expect=(2,))
    assert "labelmap.json" in proc.stderr


def test_large_coco_json_is_streamed(tmp_path):
    # 20,000 images and 200,000 annotations (~25 MB): parsed in chunks, one row per image
    n_img, per = 20_000, 10
    with open(tmp_path / "instances_big.json", "w") as f:
        f.write('{"images": [')
        f.write(",".join(f'{{"id": {i}, "file_name": "{i}.jpg", "width": 16, "height": 16}}' for i in range(n_img)))
        f.write('], "annotations": [')
        f.write(",".join(f'{{"id": {k}, "image_id": {k // per}, "category_id": 1, '
                         f'"segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]], "bbox": [1, 1, 8, 8], "iscrowd": 0}}'
                         for k in range(n_img * per)))
        f.write('], "categories": [{"id": 1, "name": "a"}]}')
    ds = open_dataset(tmp_path / "instances_big.json", cache_dir=str(tmp_path / "cache"))
    m = ds.manifest()
    assert m.num_rows == n_img and sum(m.column("ann_count").to_pylist()) == n_img * per


# --------------------------------------------------------------------------- the array API


def test_rle_counts_overflowing_32_bits_raise_value_error():
    with pytest.raises(ValueError, match="32 bits"):
        R.decode({"size": [6, 8], "counts": b"0" * 8 + b"ooooooo1"})
    with pytest.raises(ValueError, match=r"2\*\*32"):
        R.frPyObjects({"size": [6, 8], "counts": [2**32 + 5, 3]}, 6, 8)
    with pytest.raises(ValueError, match="too large"):
        R.area([{"size": [2**32, 2**32], "counts": b""}])  # h*w wraps int64 to 0


def test_polygon_of_a_million_vertices_and_huge_coordinates_are_bounded():
    rng = np.random.default_rng(1)
    poly = (rng.random(2 * 10**6) * 64).tolist()
    rle = R.frPyObjects([poly], 64, 64)[0]
    assert 0 < int(R.area(rle)) <= 64 * 64
    huge = R.frPyObjects([[1e300, 1, -1e300, 4, 5, 1e300], [0, 0, 3.5e307, 0, 3.5e307, 3.5e307]], 16, 16)
    assert all(0 <= int(a) <= 256 for a in R.area(huge))


# --------------------------------------------------------------------------- the reported zip bomb, full size


def _voc_zip_declaring(path: Path, declared: int) -> Path:
    """A VOC zip whose member holds a valid PNG followed by 3 MiB of zeros (3 KB deflated) but
    whose headers declare ``declared`` inflated bytes (the reported file: 3 GiB from 3.1 MB)."""
    one = png_bytes(np.ones((4, 4), np.uint8))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ImageSets/Segmentation/train.txt", "a\nbomb\n")
        zf.writestr("SegmentationClass/a.png", one)
        zf.writestr("SegmentationClass/bomb.png", one + bytes(3 << 20))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("SegmentationClass/bomb.png")
    struct.pack_into("<I", data, info.header_offset + 22, declared)      # local header: size
    i = data.find(b"PK\x01\x02")
    while i >= 0:
        n = struct.unpack_from("<H", data, i + 28)[0]
        if bytes(data[i + 46:i + 46 + n]) == b"SegmentationClass/bomb.png":
            struct.pack_into("<I", data, i + 24, declared)                # central directory: size
        i = data.find(b"PK\x01\x02", i + 4)
    path.write_bytes(bytes(data))
    return path


def test_zip_member_declaring_three_gib_is_refused_before_inflating(tmp_path):
    z = _voc_zip_declaring(tmp_path / "voc.zip", 3 << 30)
    out = tmp_path / "r"
    validate(z, out)  # in a child capped at 6 GB of address space: nothing is inflated
    got = rows(out)
    assert got["a"]["status"] == "ok"
    assert got["bomb"]["error_code"] == "zip_bomb" and str(3 << 30) in got["bomb"]["error_message"]
    out2 = tmp_path / "r2"  # the ratio allowed: the size alone is refused, still before inflating
    validate(z, out2, env={"FASTMASK_MAX_ZIP_RATIO": str(10**9)})
    assert rows(out2)["bomb"]["error_code"] == "too_large"


@pytest.mark.slow
def test_zip_member_inflating_to_three_gib_is_refused_and_memory_stays_small(tmp_path):
    # the reported file itself: a valid PNG and 3 GiB of zeros, ~3 MB deflated (takes ~20 s to build)
    z = tmp_path / "voc.zip"
    one = png_bytes(np.ones((4, 4), np.uint8))
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ImageSets/Segmentation/train.txt", "a\nbomb\n")
        zf.writestr("SegmentationClass/a.png", one)
        with zf.open("SegmentationClass/bomb.png", "w", force_zip64=True) as f:
            f.write(one)
            zeros = bytes(64 << 20)
            for _ in range(48):
                f.write(zeros)
    assert z.stat().st_size < 5_000_000
    out = tmp_path / "r"
    proc = validate(z, out, env={"FASTMASK_MAX_ZIP_RATIO": str(10**9)})  # the size limit alone
    assert proc.returncode in (0, 1)
    assert rows(out)["bomb"]["error_code"] == "too_large"
    out2 = tmp_path / "r2"
    validate(z, out2)
    assert rows(out2)["bomb"]["error_code"] == "zip_bomb"
    # the largest child so far (these runs included): far from the 6.5 GB the member used to take
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak < 2 * 2**30, peak
