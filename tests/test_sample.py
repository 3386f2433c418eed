"""The demo's sample dataset: every planted defect is found by the rules, clean items give nothing.

The validate job is emulated at the rule level (read each item, call the rule
functions with the default configuration), the way ``fastmask validate`` combines them.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from fastmask.formats import UNKNOWN_ID, FormatError, open_dataset, read_image_size, read_mask
from fastmask.jobs import validate_rules as vr
from fastmask.sample import LAYOUT_KEYS, N_CLEAN, PLANTED, ZIP_CLASSES, make_sample

CFG = vr.DEFAULT_CONFIG


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("sample") / "s", seed=0)


# ----------------------------------------------------------------------------- rule-level emulation of the job


def _voc_item(ds, row):
    """(findings, class-mask stats or None) of one VOC item."""
    try:
        item = ds.read_item(row)
    except FormatError as e:
        return vr.unreadable(e.code, e.message), None
    lm = ds.labelmap
    out = []
    if "mask" in item.missing:
        out += vr.missing_mask(row["item_id"])
        return out, None
    if "image" in item.missing:
        out += vr.missing_image(row["item_id"])
    m = item.mask
    out += vr.lossy_format(m.format, m.lossy)
    out += vr.animated_mask(m.extra.get("n_frames", 1))
    out += vr.unexpected_channels(m.mode, m.channels, expected="color", alpha_nonopaque=m.alpha_nonopaque,
                                  alpha_min=m.alpha_min)
    if item.image_size is not None:
        out += vr.size_mismatch(m.size, item.image_size)
    colour = m.mode in ("RGB", "RGBA")
    f, stats = vr.check_class_mask(m.array, lm.ids, unknown_id=UNKNOWN_ID if colour else None, names=lm.names)
    out += f
    if m.palette is not None:
        out += vr.palette_mismatch(m.palette, stats.values, lm.colors, counts=stats.counts)
    out += vr.unknown_color(m.unknown_colors, mask=m.array, label_colors=lm.colors)
    inst = item.instance_mask
    assert inst is not None, row["item_id"]
    out += vr.lossy_format(inst.format, inst.lossy)
    out += vr.unexpected_channels(inst.mode, inst.channels, expected="color", alpha_nonopaque=inst.alpha_nonopaque)
    out += vr.disconnected_instance(inst.array)
    out += vr.instance_class_conflict(inst.array, m.array)
    return out, stats


def _voc_findings(path):
    """{item_id or None: [findings]} for the whole VOC dataset, dataset-level rules included."""
    ds = open_dataset(path)
    assert ds.layout == "voc"
    found, stats = {}, {}
    for row in ds.manifest().to_pylist():
        found[row["item_id"]], st = _voc_item(ds, row)
        if st is not None:
            stats[row["item_id"]] = st
    pixels = defaultdict(int)
    shares = defaultdict(list)
    for st in stats.values():
        for v, c in st.class_pixels().items():
            pixels[v] += c
        for v, s in st.shares(CFG.ignore_value).items():
            shares[v].append(s)
    bounds = vr.coverage_bounds(shares)
    for i, st in stats.items():
        found[i] += vr.coverage_outlier(st.shares(CFG.ignore_value), bounds)
    found[None] = vr.class_never_seen(ds.labelmap.ids, pixels) + _listing(ds)
    return found, ds, bounds


def _coco_findings(json_path, cache):
    ds = open_dataset(json_path, cache_dir=str(cache))
    assert ds.layout == "coco"
    doc = json.loads(Path(json_path).read_text())
    cats = {c["id"] for c in doc["categories"]}
    found, cat_pixels = {}, defaultdict(int)
    for row in ds.manifest().to_pylist():
        item = ds.read_item(row)
        rec = {"id": row["image_id"], "width": row["width"], "height": row["height"], "file_name": row["file_name"]}
        out = vr.missing_image(row["file_name"]) if "image" in item.missing else []
        f, st = vr.check_coco_image(rec, item.annotations, cats, file_size=item.image_size)
        found[row["item_id"]] = out + f
        for c, n in st.category_pixels.items():
            cat_pixels[c] += n
    found[None] = vr.check_coco_dataset(doc) + vr.class_never_seen(cats, cat_pixels) + _listing(ds)
    return found, ds


def _panoptic_findings(json_path, cache):
    ds = open_dataset(json_path, cache_dir=str(cache))
    assert ds.layout == "coco_panoptic"
    doc = json.loads(Path(json_path).read_text())
    found, cat_pixels = {}, defaultdict(int)
    for row in ds.manifest().to_pylist():
        item = ds.read_item(row)
        assert not item.missing, item.missing
        out = vr.size_mismatch(item.instance_mask.size, item.extra["record_size"], ref="COCO record")
        f, st = vr.segment_mismatch(item.instance_mask.array, item.segments)
        found[row["item_id"]] = out + f + vr.duplicate_record(item.extra.get("duplicate_annotations") or 0)
        for c, n in st["category_pixels"].items():
            cat_pixels[c] += n
    found[None] = (vr.check_coco_dataset(doc) + vr.class_never_seen([c["id"] for c in doc["categories"]], cat_pixels)
                   + _listing(ds))
    return found, ds


def _listing(ds):
    """The dataset-level findings of what the listing met (``unlisted_path``, ``duplicate_entry``)."""
    return [f for p in ds.problems() for f in vr.listing_problem(p["kind"], p["message"], p["path"])]


def _triples(key, found):
    return {(key, item, f.rule) for item, fs in found.items() for f in fs}


def _masks_findings(path):
    ds = open_dataset(path)
    assert ds.layout == "masks" and ds.labelmap is None
    found = {}
    for row in ds.manifest().to_pylist():
        found[row["item_id"]], _ = vr.check_class_mask(ds.read_item(row).mask.array, None)
    found[None] = vr.no_labelmap(layout="masks") + _listing(ds)
    return found


def _zip_findings(path, layout="masks"):
    """A masks zip (or a URL list) with a class list: class checks per mask, class_never_seen and the listing."""
    ds = open_dataset(path)
    assert ds.layout == layout and ds.labelmap.names == dict(enumerate(ZIP_CLASSES))
    found, pixels = {}, defaultdict(int)
    for row in ds.manifest().to_pylist():
        m = ds.read_item(row).mask
        f, st = vr.check_class_mask(m.array, ds.labelmap.ids, names=ds.labelmap.names)
        found[row["item_id"]] = vr.lossy_format(m.format, m.lossy) + vr.animated_mask(m.extra.get("n_frames", 1)) + f
        for v, c in st.class_pixels().items():
            pixels[v] += c
    found[None] = vr.class_never_seen(ds.labelmap.ids, pixels) + _listing(ds)
    return found


def _files(root):
    """{relative path: bytes} of every file under ``root``, the too-long folder chain included
    (``os.fwalk`` opens each folder relative to its parent: no full path is ever used)."""
    out = {}
    for dirpath, _, filenames, dfd in os.fwalk(root):
        for name in filenames:
            fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
            with os.fdopen(fd, "rb") as f:
                out[os.path.relpath(os.path.join(dirpath, name), root)] = f.read()
    return out


@pytest.fixture(scope="module")
def all_findings(sample, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    voc, _, _ = _voc_findings(sample.voc)
    coco, _ = _coco_findings(sample.coco, cache)
    pan, _ = _panoptic_findings(sample.panoptic, cache)
    return {"voc": voc, "coco": coco, "panoptic": pan, "masks": _masks_findings(sample.masks),
            "zip": _zip_findings(sample.zip), "urls": _zip_findings(sample.urls, "urls")}


# ----------------------------------------------------------------------------- tests


def test_every_rule_is_planted_once(sample):
    # the platform preflight rules need Labelbox / Nucleus files: tests/test_platforms.py has one test each
    rules = {code for code, spec in vr.RULES.items() if spec.scope != "preflight"}
    assert sample.rules == rules
    assert len(sample.expected) == len(rules) == len(PLANTED)
    assert len(set(sample.expected)) == len(sample.expected)
    for key, item, rule in sample.expected:
        assert key in LAYOUT_KEYS
        assert (item is None) == (rule in ("class_never_seen", "unknown_image", "duplicate_id", "no_labelmap",
                                           "bad_top_level", "unlisted_path", "duplicate_entry",
                                           "bad_url_list")), rule


def test_layouts_are_detected_and_items_listed(sample, tmp_path):
    ds = open_dataset(sample.voc)
    ids = ds.manifest().column("item_id").to_pylist()
    assert ds.layout == "voc" and ds.labelmap.names[5] == "boat" and ds.labelmap.ignore == {255}
    assert set(sample.clean["voc"]) <= set(ids) and len(sample.clean["voc"]) == N_CLEAN
    assert {i for k, i, _ in sample.expected if k == "voc" and i} <= set(ids)
    assert len(ids) == N_CLEAN + len(sample.planted("voc")) - 1  # - the dataset-level entry
    assert open_dataset(sample.coco, cache_dir=str(tmp_path)).layout == "coco"
    assert open_dataset(sample.coco.parent, cache_dir=str(tmp_path)).layout == "coco"
    assert open_dataset(sample.panoptic.parent, cache_dir=str(tmp_path)).layout == "coco_panoptic"


def test_files_are_small(sample):
    files = _files(sample.root)  # (rglob cannot: the deep chain is too long a path to list)
    assert len(files) < 140  # (the URL list adds 4 files)
    assert sum(len(b) for b in files.values()) < 400_000
    deep = [rel for rel in files if rel.startswith("masks/archive/")]
    assert len(deep) == 1 and len(os.fsencode(deep[0])) > 4096  # too long wherever the sample is
    for p in list(sample.voc.rglob("*.png")) + list(sample.voc.rglob("*.jpg")):
        w, h = read_image_size(p)
        assert w <= 128 and h <= 96


def test_every_planted_defect_is_found_and_nothing_else(sample, all_findings):
    got = set()
    for key, found in all_findings.items():
        got |= _triples(key, found)
    assert got == set(sample.expected)


def test_planted_voc_items_carry_exactly_their_rule(sample, all_findings):
    found = all_findings["voc"]
    for item, rules in sample.planted("voc").items():
        assert {f.rule for f in found[item]} == rules, (item, [f.message for f in found[item]])


def test_clean_items_give_no_finding(sample, all_findings):
    for key, ids in sample.clean.items():
        for i in ids:
            assert all_findings[key][i] == [], (key, i, [f.message for f in all_findings[key][i]])


def test_voc_planted_items_read_as_intended(sample):
    ds = open_dataset(sample.voc)
    rows = {r["item_id"]: r for r in ds.manifest().to_pylist()}
    with pytest.raises(FormatError) as e:
        ds.read_item(rows["planted_unreadable"])
    assert e.value.code == "truncated"
    it = ds.read_item(rows["planted_lossy_format"])
    assert it.mask.format == "JPEG" and it.mask.lossy and it.mask.mode == "L"
    assert set(np.unique(it.mask.array).tolist()) <= {0, 1, 2}  # block-aligned: decodes to the exact ids
    assert ds.read_item(rows["planted_missing_image"]).missing == ["image"]
    assert set(ds.read_item(rows["planted_missing_mask"]).missing) == {"mask", "instance_mask"}
    it = ds.read_item(rows["planted_size_mismatch"])
    assert it.mask.size == (127, 96) and it.image_size == (128, 96)
    it = ds.read_item(rows["planted_unexpected_channels"])
    assert it.mask.mode == "RGBA" and it.mask.alpha_nonopaque > 0 and not it.mask.unknown_colors
    it = ds.read_item(rows["planted_unknown_color"])
    assert it.mask.mode == "RGB" and [c for c, _ in it.mask.unknown_colors] == [(255, 128, 0)]
    it = ds.read_item(rows["planted_palette_mismatch"])
    assert it.mask.mode == "P" and it.mask.palette[1].tolist() == [0, 128, 0]
    assert 77 in np.unique(ds.read_item(rows["planted_unexpected_value"]).mask.array)
    for i in ("clean_003", "clean_011"):  # CVAT-style colour masks are clean
        it = ds.read_item(rows[i])
        assert it.mask.mode == "RGB" and not it.mask.unknown_colors
    for i in sample.clean["voc"]:
        it = ds.read_item(rows[i])
        assert it.mask.size == it.image_size == it.instance_mask.size == (128, 96) and not it.missing
        assert {1, 2} <= set(np.unique(it.mask.array).tolist())


def test_planted_findings_say_the_right_thing(sample, all_findings):
    voc, coco, pan = all_findings["voc"], all_findings["coco"], all_findings["panoptic"]

    def one(found, item, rule):
        fs = [f for f in found[item] if f.rule == rule]
        assert len(fs) == 1, (item, rule, fs)
        return fs[0]

    assert one(voc, "planted_unexpected_value", "unexpected_value").class_id == 77
    assert one(voc, "planted_unexpected_value", "unexpected_value").pixels == 80
    assert one(voc, "planted_tiny_island", "tiny_island").pixels == 9
    f = one(voc, "planted_palette_mismatch", "palette_mismatch")
    assert {d["index"]: d["looks_like"] for d in f.extra["indices"]} == {1: 2, 2: 1}
    assert one(voc, "planted_antialias_suspect", "antialias_suspect").extra["blend_pixels"] >= 8
    assert one(voc, "planted_disconnected_instance", "disconnected_instance").instance_id == 1
    f = one(voc, "planted_instance_class_conflict", "instance_class_conflict")
    assert (f.instance_id, f.class_id) == (1, 2) and f.pixels >= 12
    f = one(voc, "planted_coverage_outlier", "coverage_outlier")
    assert f.class_id == 2 and f.extra["direction"] == "high"
    assert one(voc, None, "class_never_seen").class_id == 5
    assert one(voc, "planted_unknown_color", "unknown_color").pixels == 128
    assert "not the image's [96, 128]" in one(coco, "000000000006", "invalid_rle").message
    assert one(coco, "000000000010", "image_size_mismatch").extra["file_size"] == [96, 128]
    f = one(coco, "000000000011", "duplicate_annotation")
    assert f.extra["categories"] == [2, 3] and f.severity == "warning" and f.extra["iou"] >= 0.7
    f = one(coco, "000000000012", "instance_overlap")
    assert f.extra["fraction_of_smaller"] == 1.0 and f.extra["iou"] < 0.7 and f.severity == "info"
    assert one(coco, None, "unknown_image").extra["image_id"] == 99
    assert one(coco, None, "duplicate_id").extra["kind"] == "annotation"
    assert one(pan, "000000000002", "segment_mismatch").extra["problem"] == "area"
    f = one(voc, "planted_animated_mask", "animated_mask")
    assert f.extra["n_frames"] == 2 and f.severity == "warning"
    f = one(all_findings["zip"], None, "duplicate_entry")
    assert f.extra["path"] == f"{sample.zip}!mask_1.png" and "2 zip entries" in f.message
    f = one(all_findings["urls"], None, "bad_url_list")
    assert f.extra["path"] == f"{sample.urls}:4" and "without an item_id" in f.message
    f = one(all_findings["masks"], None, "unlisted_path")
    assert f.extra["path"].startswith(str(sample.masks / "archive") + os.sep) and "bytes" in f.message


def test_zip_duplicate_is_one_item_read_from_the_last_entry(sample):
    import zipfile

    ds = open_dataset(sample.zip)
    assert ds.manifest().column("item_id").to_pylist() == sample.clean["zip"] == ["mask_0", "mask_1", "mask_2"]
    with zipfile.ZipFile(sample.zip) as z:
        twins = [i for i in z.infolist() if i.filename == "mask_1.png"]
        assert len(twins) == 2 and z.infolist()[-1] is twins[1]
        first, last = (read_mask(z.open(i).read()).array for i in twins)
    got = ds.read_item(ds.manifest().to_pylist()[1]).mask.array
    assert np.array_equal(got, last) and not np.array_equal(got, first)


def test_animated_mask_first_frame_is_the_clean_mask(sample):
    from PIL import Image

    ds = open_dataset(sample.voc)
    row = next(r for r in ds.manifest().to_pylist() if r["item_id"] == "planted_animated_mask")
    it = ds.read_item(row)
    assert it.mask.mode == "P" and it.mask.extra["n_frames"] == 2
    with Image.open(sample.voc / "SegmentationClass" / "planted_animated_mask.png") as img:
        assert img.n_frames == 2
        assert np.array_equal(it.mask.array, np.asarray(img))  # frame 0
        img.seek(1)
        assert not np.array_equal(it.mask.array, np.asarray(img))


def test_coverage_statistic_has_enough_clean_images(sample):
    _, _, bounds = _voc_findings(sample.voc)
    assert bounds[2].n >= vr.DEFAULT_CONFIG.coverage_min_images + 1  # car: judged even without the outlier
    assert 1 in bounds  # road is judged too, and never flagged


def test_same_seed_same_bytes_other_seed_still_valid(tmp_path):
    a = make_sample(tmp_path / "a", seed=3)
    b = make_sample(tmp_path / "b", seed=3)
    fa, fb = _files(a.root), _files(b.root)
    assert sorted(fa) == sorted(fb) and len(fa) > 100
    for rel in fa:
        assert fa[rel] == fb[rel], rel
    c = make_sample(tmp_path / "c", seed=4)
    assert (c.voc / "SegmentationClass" / "clean_000.png").read_bytes() != \
        (a.voc / "SegmentationClass" / "clean_000.png").read_bytes()
    got = set()
    got |= _triples("voc", _voc_findings(c.voc)[0])
    got |= _triples("coco", _coco_findings(c.coco, tmp_path / "cache")[0])
    got |= _triples("panoptic", _panoptic_findings(c.panoptic, tmp_path / "cache")[0])
    got |= _triples("masks", _masks_findings(c.masks))
    got |= _triples("zip", _zip_findings(c.zip))
    got |= _triples("urls", _zip_findings(c.urls, "urls"))
    assert got == set(c.expected)


def test_existing_sample_needs_overwrite(tmp_path):
    make_sample(tmp_path, seed=1)
    with pytest.raises(FileExistsError):
        make_sample(tmp_path, seed=1)
    (tmp_path / "voc" / "stale.txt").write_text("x")
    info = make_sample(tmp_path, seed=1, overwrite=True)
    assert not (tmp_path / "voc" / "stale.txt").exists() and info.voc.is_dir()
