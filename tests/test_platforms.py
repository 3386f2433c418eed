"""Labelbox and Scale Nucleus: readers, writers, preflight rules, round trips (fixtures built here, no network)."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastmask.cli import main
from fastmask.engine import load_report_table, run_job
from fastmask.formats import FormatError, detect_layout, open_dataset, read_mask, write_mask
from fastmask.formats._platforms import locate_mask, names_labelmap
from fastmask.formats._fs import Root
from fastmask.jobs.convert import ConvertJob, assemble, read_source
from fastmask.jobs.rules_core import RuleConfig
from fastmask.jobs.rules_platforms import check_labelbox, check_nucleus
from fastmask.jobs.validate import ValidateJob

NAMES = ["background", "car", "person", "tree", "dog"]


# ----------------------------------------------------------------------------- fixtures


def scene(seed: int, h=24, w=32):
    """(class map, instance map): one random rectangle per quadrant (instances 1..4, all visible,
    every class pixel inside an instance; neighbours may touch)."""
    rng = np.random.default_rng(seed)
    cls = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w), np.uint8)
    for k, (qy, qx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1)), 1):
        hh, ww = int(rng.integers(2, h // 2 + 1)), int(rng.integers(2, w // 2 + 1))
        y0 = qy * (h // 2) + int(rng.integers(0, h // 2 - hh + 1))
        x0 = qx * (w // 2) + int(rng.integers(0, w // 2 - ww + 1))
        cls[y0:y0 + hh, x0:x0 + ww] = int(rng.integers(1, len(NAMES)))
        inst[y0:y0 + hh, x0:x0 + ww] = k
    return cls, inst


def make_voc(root: Path, n_items=3, seed=0, ignore=False) -> Path:
    for d in ("ImageSets/Segmentation", "SegmentationClass", "SegmentationObject"):
        (root / d).mkdir(parents=True)
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n" + "".join(
        f"{n}:{i * 40},{i * 20},{i * 10}::\n" for i, n in enumerate(NAMES)))
    ids = []
    for i in range(n_items):
        cls, inst = scene(seed + i)
        if ignore:
            cls[0, :] = 255
            inst[0, :] = 255
        write_mask(root / "SegmentationClass" / f"im{i}.png", cls)
        write_mask(root / "SegmentationObject" / f"im{i}.png", inst)
        ids.append(f"im{i}")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    return root


def make_coco(path: Path, n_items=3, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n_items):
        images.append({"id": i + 1, "file_name": f"im{i}.jpg", "width": 32, "height": 24})
        for _ in range(3):
            x, y = float(rng.integers(0, 20)), float(rng.integers(0, 12))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 4)),
                         "segmentation": [[x, y, x + 9, y, x + 9, y + 8, x, y + 8]], "iscrowd": 0,
                         "area": 72.0, "bbox": [x, y, 9, 8]})
    cats = [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}, {"id": 3, "name": "tree"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def make_panoptic(root: Path, n_items=2, seed=0) -> Path:
    from fastmask.formats.layout_writers import write_panoptic_png

    (root / "pan").mkdir(parents=True)
    images, anns = [], []
    for i in range(n_items):
        cls, inst = scene(seed + i)
        ids = np.where(inst > 0, inst.astype(np.uint32) * 1000 + 7, 0)
        write_panoptic_png(root / "pan" / f"im{i}.png", ids)
        segs = [{"id": int(k) * 1000 + 7, "category_id": int(np.bincount(cls[inst == k]).argmax()), "iscrowd": 0}
                for k in np.unique(inst) if k]
        images.append({"id": i + 1, "file_name": f"im{i}.jpg", "width": 32, "height": 24})
        anns.append({"image_id": i + 1, "file_name": f"im{i}.png", "segments_info": segs})
    cats = [{"id": i, "name": n, "isthing": 1} for i, n in enumerate(NAMES) if i]
    (root / "pan.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root / "pan.json"


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def export_row(key, objects, *, labels=None, size=(32, 24), label_id="lab-1"):
    """A Labelbox export v2 line (one project, one label unless ``labels`` is given)."""
    if labels is None:
        labels = [{"id": label_id, "label_details": {}, "annotations": {"objects": objects, "classifications": [],
                                                                         "relationships": []}}]
    row = {"data_row": {"id": "dr-" + key, "global_key": key, "row_data": f"https://storage.example/img/{key}.jpg"},
           "projects": {"proj-1": {"labels": labels}}}
    if size is not None:
        row["media_attributes"] = {"width": size[0], "height": size[1], "mime_type": "image/png"}
    return row


def labelbox_export(root: Path, scenes: dict, *, composite: bool) -> Path:
    """Export NDJSON of scenes {key: (cls, inst)}: composite masks (one RGB PNG per label, colour per
    object) or the older per-object 0/255 PNGs; files under ``root`` at the URL's path."""
    lines = []
    for key, (cls, inst) in scenes.items():
        objs = []
        rgb = np.zeros(cls.shape + (3,), np.uint8)
        comp_url = f"https://api.labelbox.example/masks/{key}/composite.png?token=abc"
        for k in [int(v) for v in np.unique(inst) if v]:
            sel = inst == k
            name = NAMES[int(np.bincount(cls[sel]).argmax())]
            obj = {"feature_id": f"f-{key}-{k}", "feature_schema_id": "s-" + name, "name": name, "value": name,
                   "annotation_kind": "ImageSegmentationMask", "classifications": []}
            if composite:
                rgb[sel] = COLORS[k - 1]
                obj["composite_mask"] = {"url": comp_url, "color_rgb": list(COLORS[k - 1])}
            else:
                url = f"https://api.labelbox.example/masks/{key}/{k}.png"
                p = root / "api.labelbox.example" / "masks" / key / f"{k}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(png_bytes(np.where(sel, 255, 0).astype(np.uint8)))
                obj["mask"] = {"url": url}
            objs.append(obj)
        objs.append({"feature_id": "box", "name": "box", "annotation_kind": "ImageBoundingBox",
                     "bounding_box": {"top": 1, "left": 1, "height": 2, "width": 2}})
        if composite:
            p = root / "masks" / key / "composite.png"  # found by a suffix of the URL's path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(png_bytes(rgb))
        lines.append(export_row(key, objs))
    out = root / "export.ndjson"
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out


def convert(src, to, out, **kw):
    ds = src if not isinstance(src, (str, Path)) else open_dataset(src)
    job = ConvertJob(ds, to, out, **kw)
    result = run_job(job, job.manifest(), out, workers=1, quiet=True)
    return assemble(job, out), result


def named(ds, class_map):
    """A class map as names (the comparison across label maps with other ids)."""
    lm = ds.labelmap

    def name(i):
        if i in lm.ignore:
            return "<ignore>"  # ignored regions are ignored whatever their name
        return "<background>" if i == (lm.background if lm.background is not None else 0) else lm.names.get(i, f"?{i}")

    lut = np.array([name(i) for i in range(int(class_map.max(initial=0)) + 1)], object)
    return lut[class_map]


def maps(ds):
    """item id -> (class names, instance map) through the convert reader (every layout)."""
    out = {}
    for row in ds.manifest().to_pylist():
        src = read_source(ds, row)
        out[row["item_id"]] = (named(ds, src.class_map), src.instance_map)
    return out


def validate(path, tmp_path, **cfg):
    ds = open_dataset(path) if not hasattr(path, "layout") else path
    job = ValidateJob(ds, RuleConfig(**cfg))
    out = tmp_path / f"val{len(list(tmp_path.glob('val*')))}"
    run_job(job, ds.manifest(), out, workers=1, quiet=True)
    return load_report_table(out, "findings").to_pylist(), load_report_table(out).to_pylist()


# ----------------------------------------------------------------------------- readers


def test_detection_and_label_map_from_names(tmp_path):
    scenes = {"b": scene(1), "a": scene(2)}
    exp = labelbox_export(tmp_path, scenes, composite=True)
    assert detect_layout(exp) == "labelbox"
    ds = open_dataset(exp)
    assert ds.layout == "labelbox" and ds.manifest().column("item_id").to_pylist() == ["a", "b"]
    used = sorted({NAMES[int(np.bincount(c[i == k]).argmax())] for c, i in scenes.values() for k in np.unique(i) if k})
    assert ds.labelmap.names == {0: "background", **{j + 1: n for j, n in enumerate(used)}}
    assert names_labelmap(reversed(used)).names == ds.labelmap.names  # order in the file does not matter
    nuc = tmp_path / "n.jsonl"
    nuc.write_text(json.dumps({"reference_id": "x", "mask_url": "m.png", "annotations": []}) + "\n")
    assert detect_layout(nuc) == "nucleus"
    lst = tmp_path / "n.json"
    lst.write_text(json.dumps([{"reference_id": "x", "mask_url": "m.png", "annotations": []}]))
    assert detect_layout(lst) == "nucleus"
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"foo": 1}\n')
    with pytest.raises(FormatError) as e:
        detect_layout(bad)
    assert e.value.code == "unknown_layout"


def test_labelbox_composite_and_per_object_exports_give_the_same_dataset(tmp_path):
    scenes = {f"k{i}": scene(10 + i) for i in range(3)}
    comp = open_dataset(labelbox_export(tmp_path / "c", scenes, composite=True))
    per = open_dataset(labelbox_export(tmp_path / "p", scenes, composite=False))
    assert comp.labelmap == per.labelmap
    for (rc, ic), (rp, ip) in zip(comp.iter_items(), per.iter_items()):
        assert rc["item_id"] == rp["item_id"]
        np.testing.assert_array_equal(ic.mask.array, ip.mask.array)
        np.testing.assert_array_equal(ic.instance_mask.array, ip.instance_mask.array)
        cls, inst = scenes[rc["item_id"]]
        np.testing.assert_array_equal(ic.instance_mask.array, inst)  # object k of the file = instance k
        np.testing.assert_array_equal(named(comp, ic.mask.array), np.array(["<background>", *NAMES[1:]], object)[cls])
        assert ic.extra["labelbox"]["ignored_objects"] == 1  # the bounding box
        assert ic.extra["labelbox"]["data_row_size"] == [32, 24]


def test_labelbox_labels_rows_without_labels_and_label_choice(tmp_path, capsys):
    a = np.zeros((24, 32), np.uint8)
    a[2:5, 2:5] = 255
    b = np.zeros((24, 32), np.uint8)
    b[10:12, 10:20] = 255
    for name, arr in (("a.png", a), ("b.png", b)):
        (tmp_path / name).write_bytes(png_bytes(arr))

    def obj(name, url):
        return {"feature_id": url, "name": name, "annotation_kind": "ImageSegmentationMask", "mask": {"url": url}}

    labels = [{"id": "L1", "annotations": {"objects": [obj("car", "a.png")]}},
              {"id": "L2", "annotations": {"objects": [obj("dog", "b.png")]}}]
    rows = [export_row("two", [], labels=labels), export_row("none", [], labels=[]),
            export_row("nosize", [], labels=[], size=None), export_row("one", [], labels=labels[:1])]
    exp = tmp_path / "e.ndjson"
    exp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = {r["item_id"]: it for r, it in open_dataset(exp).iter_items()}
    assert first["two"].mask.array.max() == 1 and np.count_nonzero(first["two"].mask.array) == 9  # L1: car
    assert first["none"].mask.array.shape == (24, 32) and not first["none"].mask.array.any()
    assert first["nosize"].mask is None and first["nosize"].missing == ["mask"]
    second = {r["item_id"]: it for r, it in open_dataset(exp, layout="labelbox", label="1").iter_items()}
    ds2 = open_dataset(exp, layout="labelbox", label="L2")
    by_id = {r["item_id"]: it for r, it in ds2.iter_items()}
    for got in (second["two"], by_id["two"]):
        assert np.count_nonzero(got.mask.array) == 20 and ds2.labelmap.names[int(got.mask.array.max())] == "dog"
    # a position beyond a data row's labels: that row is an error row, the others are read
    job = ValidateJob(open_dataset(exp, layout="labelbox", label="1"))
    run_job(job, job._dataset.manifest(), tmp_path / "r", workers=1, quiet=True)
    items = {r["item_id"]: r for r in load_report_table(tmp_path / "r").to_pylist()}
    assert items["two"]["status"] == "ok" and items["none"]["status"] == "ok"
    assert (items["one"]["status"], items["one"]["error_code"]) == ("error", "label_not_found")
    assert main(["scan", str(exp), "--labelbox-label", "L2", "--out", str(tmp_path / "s"), "--workers", "1"]) == 0
    (tmp_path / "folder").mkdir()
    write_mask(tmp_path / "folder" / "x.png", a)
    assert main(["scan", str(tmp_path / "folder"), "--labelbox-label", "1", "--out", str(tmp_path / "s2")]) == 2
    assert "--labelbox-label" in capsys.readouterr().err


def test_remote_urls_without_a_local_copy_are_fetched_or_error_rows(tmp_path, monkeypatch):
    # locate_mask finds local copies only; the readers then fetch by URL (tests/test_storage_urls.py
    # serves them), and a URL whose filesystem is not installed is an error row remote_mask naming the extra
    from fastmask import storage
    from fastmask.formats._platforms import mask_source
    root = Root(tmp_path)
    (tmp_path / "bucket.example" / "x").mkdir(parents=True)
    (tmp_path / "bucket.example" / "x" / "m.png").write_bytes(b"p")
    assert locate_mask(root, "s3://bucket.example/x/m.png") == "bucket.example/x/m.png"
    assert locate_mask(root, "gs://other/deep/bucket.example/x/m.png") == "bucket.example/x/m.png"
    for url in ("https://h.example/nothing.png", "s3://b/k.png", "gs://b/k.png", "http://h/a/../../etc/passwd"):
        with pytest.raises(FormatError) as e:
            locate_mask(root, url)
        assert e.value.code == "remote_mask" and "no copy of this mask" in e.value.message
    assert str(mask_source(root, "https://h.example/nothing.png", storage.Fetcher())) == "https://h.example/nothing.png"

    def no_backend(url, options):
        raise storage.MissingBackendError("https:// URLs need a filesystem that is not installed: "
                                          "pip install 'fastmask-seg[http]'")

    monkeypatch.setattr(storage, "_filesystem", no_backend)
    exp = tmp_path / "e.ndjson"
    exp.write_text(json.dumps(export_row("r", [{"feature_id": "f", "name": "car", "annotation_kind":
                                                "ImageSegmentationMask", "composite_mask": {
                                                    "url": "https://api.example/gone.png", "color_rgb": [1, 2, 3]}}]))
                   + "\n")
    job = ValidateJob(open_dataset(exp))
    run_job(job, job._dataset.manifest(), tmp_path / "r", workers=1, quiet=True)
    (row,) = load_report_table(tmp_path / "r").to_pylist()
    assert (row["status"], row["error_code"]) == ("error", "remote_mask")
    assert "fastmask-seg[http]" in row["error_message"]


def test_nucleus_reader_maps_instances_and_ignored_regions(tmp_path):
    m = np.array([[0, 1, 1, 2], [0, 3, 3, 2], [4, 4, 0, 0]], np.uint8)
    write_mask(tmp_path / "m.png", m)
    rec = {"type": "mask", "reference_id": "i1", "mask_url": "m.png", "annotations": [
        {"label": "background", "index": 0}, {"label": "car", "index": 1},
        {"label": "car", "index": 2, "metadata": {"instance_id": 7}},
        {"label": "road", "index": 3, "metadata": {"instance_id": 0}},
        {"label": "void", "index": 4, "metadata": {"iscrowd": True}}]}
    other = {"type": "box", "reference_id": "i1", "label": "car", "geometry": {}}
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps(rec) + "\n" + json.dumps(other) + "\n")
    ds = open_dataset(f)
    assert ds.labelmap.names == {0: "background", 1: "car", 2: "road", 255: "void"}
    (row, item), = list(ds.iter_items())
    assert item.mask.array.tolist() == [[0, 1, 1, 1], [0, 2, 2, 1], [255, 255, 0, 0]]
    assert item.instance_mask.array.tolist() == [[0, 2, 2, 7], [0, 0, 0, 7], [0, 0, 0, 0]]
    assert ds.info()["skipped_records"] == 1


# ----------------------------------------------------------------------------- writers and round trips


@pytest.mark.parametrize("to", ["labelbox", "nucleus"])
def test_voc_round_trip(tmp_path, to):
    src = open_dataset(make_voc(tmp_path / "voc", ignore=(to == "nucleus")))
    out, result = convert(src, to, tmp_path / "out")
    assert result.counts["ok"] == 3
    back = open_dataset(out / ("labelbox.ndjson" if to == "labelbox" else "segments.jsonl"))
    assert back.layout == to
    a, b = maps(src), maps(back)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k][0], b[k][0])
        # VOC's object value 255 marks ignored pixels (no instance): read back as no instance
        np.testing.assert_array_equal(np.where(a[k][1] == 255, 0, a[k][1]), b[k][1])


def test_voc_ignore_pixels_are_unlabeled_in_labelbox(tmp_path):
    src = open_dataset(make_voc(tmp_path / "voc", n_items=1, ignore=True))
    out, _ = convert(src, "labelbox", tmp_path / "out")
    back = open_dataset(out / "labelbox.ndjson")
    (_, item), = list(back.iter_items())
    assert not item.mask.array[0].any() and not item.instance_mask.array[0].any()
    cls = src.read_item(src.manifest().to_pylist()[0]).mask.array
    np.testing.assert_array_equal(named(back, item.mask.array)[1:], named(src, cls)[1:])


@pytest.mark.parametrize("to", ["labelbox", "nucleus"])
def test_coco_and_panoptic_round_trips(tmp_path, to):
    for name, path in (("coco", make_coco(tmp_path / "c.json")), ("pan", make_panoptic(tmp_path / "p"))):
        src = open_dataset(path)
        out, result = convert(src, to, tmp_path / f"{name}-{to}")
        assert result.counts["ok"] == result.n_items > 0
        back = open_dataset(out / ("labelbox.ndjson" if to == "labelbox" else "segments.jsonl"))
        a, b = maps(src), maps(back)
        assert len(a) == len(b)
        for (ka, (ca, ia)), (kb, (cb, ib)) in zip(sorted(a.items()), sorted(b.items())):
            np.testing.assert_array_equal(ca, cb)
            if to == "nucleus" or name == "coco":  # nucleus keeps ids; COCO's are 1..n in order
                np.testing.assert_array_equal(ia, ib)
            else:  # labelbox numbers objects 1..n: the same partition, renumbered in order
                pairs = np.unique(np.stack([ia.ravel(), ib.ravel()]), axis=1)
                assert len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


def test_labelbox_writer_output_shape(tmp_path):
    src = open_dataset(make_voc(tmp_path / "voc", n_items=2))
    out, _ = convert(src, "labelbox", tmp_path / "o", mask_url_prefix="https://bucket.example/run1/",
                     data_row_key="id")
    lines = [json.loads(x) for x in (out / "labelbox.ndjson").read_text().splitlines()]
    assert lines and {tuple(sorted(x)) for x in lines} == {("dataRow", "mask", "name", "uuid")}
    assert len({x["uuid"] for x in lines}) == len(lines)
    for x in lines:
        key = x["dataRow"]["id"]
        assert x["mask"]["instanceURI"] == f"https://bucket.example/run1/masks/{key}.png"
        img = Image.open(out / "masks" / f"{key}.png")
        assert img.mode == "RGB"
        arr = np.asarray(img)
        assert (arr == np.array(x["mask"]["colorRGB"], np.uint8)).all(axis=-1).any()
    per_row = {}
    for x in lines:
        per_row.setdefault(x["dataRow"]["id"], []).append(tuple(x["mask"]["colorRGB"]))
    assert all(len(c) == len(set(c)) and (0, 0, 0) not in c for c in per_row.values())
    # the written files read back with the URL prefix (found beside the file by the URL's path)
    findings, items = validate(out / "labelbox.ndjson", tmp_path)
    assert all(i["status"] == "ok" for i in items) and findings == []


def test_nucleus_writer_output_shape_and_uint8_only(tmp_path):
    cls = np.zeros((20, 20), np.uint16)
    cls.reshape(-1)[:300] = np.arange(1, 301)  # 300 classes present: 300 segments
    (tmp_path / "src" / "masks").mkdir(parents=True)
    write_mask(tmp_path / "src" / "masks" / "many.png", cls)
    write_mask(tmp_path / "src" / "masks" / "few.png", (cls > 298).astype(np.uint8) * 2)
    out, result = convert(tmp_path / "src", "nucleus", tmp_path / "o", mask_url_prefix="s3://bucket/x")
    items = {r["item_id"]: r for r in load_report_table(tmp_path / "o").to_pylist()}
    assert items["many"]["status"] == "error" and items["many"]["error_code"] == "too_many_segments"
    assert "uint8" in items["many"]["error_message"]
    assert items["few"]["status"] == "ok"
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["few.png"]  # no 16-bit file, no TIFF
    (line,) = [json.loads(x) for x in (out / "segments.jsonl").read_text().splitlines()]
    assert line["type"] == "mask" and line["reference_id"] == "few" and "item_id" not in line
    assert line["mask_url"] == "s3://bucket/x/masks/few.png"
    img = Image.open(out / "masks" / "few.png")
    assert img.mode == "L"
    assert [a["index"] for a in line["annotations"]] == [0, 1]
    assert sorted(np.unique(np.asarray(img)).tolist()) == [0, 1]


# ----------------------------------------------------------------------------- preflight rules


def nucleus_file(tmp_path, records, masks):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, arr in masks.items():
        if isinstance(arr, bytes):
            (tmp_path / name).write_bytes(arr)
        else:
            write_mask(tmp_path / name, arr)
    f = tmp_path / "seg.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    return f


def rec(ref, url, *idx):
    return {"type": "mask", "reference_id": ref, "mask_url": url,
            "annotations": [{"label": "background" if i == 0 else "car", "index": i} for i in idx]}


def rules_of(findings, item=None):
    return sorted({f["rule"] for f in findings if item is None or f["item_id"] == item})


M = np.array([[0, 0, 1], [1, 1, 0]], np.uint8)


def test_preflight_nucleus_clean_file_gives_nothing(tmp_path):
    f = nucleus_file(tmp_path, [rec("a", "a.png", 0, 1)], {"a.png": M})
    findings, items = validate(f, tmp_path)
    assert findings == [] and items[0]["status"] == "ok"


def test_rule_nucleus_not_uint8(tmp_path):
    f = nucleus_file(tmp_path, [rec("a", "a.png", 0, 1)], {"a.png": M.astype(np.uint16) + np.uint16(0)})
    Image.fromarray(M.astype(np.uint16)).save(tmp_path / "a.png")  # a 16-bit PNG
    assert read_mask(tmp_path / "a.png").bit_depth == 16
    assert rules_of(validate(f, tmp_path)[0]) == ["nucleus_not_uint8"]


def test_rule_nucleus_unmapped_value(tmp_path):
    f = nucleus_file(tmp_path, [rec("a", "a.png", 0)], {"a.png": M})
    found = validate(f, tmp_path)[0]
    assert "nucleus_unmapped_value" in rules_of(found)
    (x,) = [r for r in found if r["rule"] == "nucleus_unmapped_value"]
    assert x["pixels"] == 3 and json.loads(x["extra"])["values"] == [1]


def test_rule_nucleus_missing_index(tmp_path):
    f = nucleus_file(tmp_path, [rec("a", "a.png", 0, 1, 2)], {"a.png": M})
    found = validate(f, tmp_path)[0]
    assert rules_of(found) == ["nucleus_missing_index"]
    assert json.loads(found[0]["extra"])["indices"] == [2]


def test_rule_nucleus_duplicate_mask(tmp_path):
    f = nucleus_file(tmp_path, [rec("a", "a.png", 0, 1), rec("a", "a.png", 0, 1)], {"a.png": M})
    found, items = validate(f, tmp_path)
    assert len(items) == 1 and rules_of(found) == ["nucleus_duplicate_mask"]


def test_rule_nucleus_size(tmp_path):
    f = nucleus_file(tmp_path, [rec("a", "a.png", 0, 1)], {"a.png": M})
    (tmp_path / "img").mkdir()
    Image.new("RGB", (5, 4)).save(tmp_path / "img" / "a.jpg")
    ds = open_dataset(f, images=tmp_path / "img")
    found = validate(ds, tmp_path)[0]
    assert "nucleus_size" in rules_of(found)
    Image.new("RGB", (3, 2)).save(tmp_path / "img" / "a.jpg")
    assert "nucleus_size" not in rules_of(validate(open_dataset(f, images=tmp_path / "img"), tmp_path)[0])


def composite_file(tmp_path, rgb, colors, size=None, mode=None):
    img = Image.fromarray(rgb)
    if mode:
        img = img.convert(mode)
    img.save(tmp_path / "c.png")
    objs = [{"feature_id": f"f{i}", "name": "car", "annotation_kind": "ImageSegmentationMask",
             "composite_mask": {"url": "https://x.example/c.png", "color_rgb": list(c)}} for i, c in enumerate(colors)]
    h, w = rgb.shape[:2]
    f = tmp_path / "e.ndjson"
    f.write_text(json.dumps(export_row("a", objs, size=size or (w, h))) + "\n")
    return f


RGB = np.zeros((4, 5, 3), np.uint8)
RGB[0, :2] = (255, 0, 0)
RGB[2, 1:] = (0, 255, 0)


def test_preflight_labelbox_clean_file_gives_nothing(tmp_path):
    assert validate(composite_file(tmp_path, RGB, [(255, 0, 0), (0, 255, 0)]), tmp_path)[0] == []


def test_rule_labelbox_color_absent(tmp_path):
    f = composite_file(tmp_path, RGB, [(255, 0, 0), (0, 255, 0), (9, 9, 9)])
    found = validate(f, tmp_path)[0]
    assert rules_of(found) == ["labelbox_color_absent"]
    assert json.loads(found[0]["extra"])["color"] == [9, 9, 9]


def test_rule_labelbox_unclaimed_color(tmp_path):
    found = validate(composite_file(tmp_path, RGB, [(255, 0, 0)]), tmp_path)[0]
    assert rules_of(found) == ["labelbox_unclaimed_color"]
    assert found[0]["pixels"] == 4


def test_rule_labelbox_not_rgb(tmp_path):
    found = validate(composite_file(tmp_path, RGB, [(255, 0, 0), (0, 255, 0)], mode="RGBA"), tmp_path)[0]
    assert rules_of(found) == ["labelbox_not_rgb"]


def test_rule_labelbox_size(tmp_path):
    found = validate(composite_file(tmp_path, RGB, [(255, 0, 0), (0, 255, 0)], size=(6, 4)), tmp_path)[0]
    assert "labelbox_size" in rules_of(found)


def test_preflight_option_on_other_layouts(tmp_path):
    cls = np.zeros((20, 20), np.uint16)
    cls.reshape(-1)[:300] = np.arange(1, 301)
    (tmp_path / "d" / "masks").mkdir(parents=True)
    write_mask(tmp_path / "d" / "masks" / "many.png", cls)
    write_mask(tmp_path / "d" / "masks" / "few.png", (cls > 298).astype(np.uint8))
    found, _ = validate(tmp_path / "d", tmp_path, preflight=("nucleus",), disabled=frozenset({"unexpected_value"}))
    assert "nucleus_not_uint8" in rules_of(found, "many") and rules_of(found, "few") == []
    found, _ = validate(tmp_path / "d", tmp_path, disabled=frozenset({"unexpected_value"}))
    assert not any(r.startswith("nucleus") for r in rules_of(found))
    rep = tmp_path / "cli"
    assert main(["validate", str(tmp_path / "d"), "--preflight", "nucleus", "--out", str(rep), "--workers", "1",
                 "--disable", "unexpected_value"]) == 1
    assert json.loads((rep / "run.json").read_text())["arguments"]["config"]["preflight"] == ["nucleus"]


def test_pure_checks():
    ok = {"format": "PNG", "mode": "L", "bit_depth": 8}
    assert check_nucleus(ok, {0: 1, 1: 2}, [("bg", 0), ("car", 1)], mask_size=(2, 2), image_size=(2, 2)) == []
    assert [f.rule for f in check_nucleus(ok, {0: 1}, [("bg", 0)], mask_size=(2, 2), image_size=(3, 2))] == [
        "nucleus_size"]
    cfg = RuleConfig(disabled=frozenset({"labelbox_size"}))
    m = [{"url": "a", "mode": "RGB", "channels": 3, "size": [2, 2], "composite": True}]
    assert check_labelbox(m, [], [], cfg, data_row_size=(3, 3)) == []
    assert [f.rule for f in check_labelbox(m, [], [], data_row_size=(3, 3))] == ["labelbox_size"]


def test_cli_convert_to_platforms_and_back(tmp_path):
    voc = make_voc(tmp_path / "voc")
    assert main(["convert", str(voc), "--to", "labelbox", "--out", str(tmp_path / "lb"), "--workers", "1",
                 "--mask-url-prefix", "https://cdn.example/ds"]) == 0
    assert main(["convert", str(tmp_path / "lb" / "dataset" / "labelbox.ndjson"), "--to", "voc",
                 "--out", str(tmp_path / "back"), "--workers", "1"]) == 0
    back = open_dataset(tmp_path / "back" / "dataset")
    a, b = maps(open_dataset(voc)), maps(back)
    for k in a:
        np.testing.assert_array_equal(a[k][0], b[k][0])
        np.testing.assert_array_equal(a[k][1], b[k][1])
    assert main(["convert", str(voc), "--to", "nucleus", "--out", str(tmp_path / "nu"), "--workers", "1"]) == 0
    assert main(["convert", str(tmp_path / "nu" / "dataset" / "segments.jsonl"), "--to", "coco",
                 "--coco-encoding", "rle", "--out", str(tmp_path / "coco"), "--workers", "1"]) == 0
    c = maps(open_dataset(tmp_path / "coco" / "dataset" / "annotations.json"))
    assert len(c) == len(a)
    for (_, (ca, ia)), (_, (cc, ic)) in zip(sorted(a.items()), sorted(c.items())):  # COCO ids follow item order
        np.testing.assert_array_equal(ca, cc)
        np.testing.assert_array_equal(ia, ic)


def test_import_file_with_base64_png_masks(tmp_path):
    a = np.zeros((4, 4), np.uint8)
    a[1:3, 1:3] = 1
    line = {"uuid": "u1", "dataRow": {"globalKey": "g"}, "name": "car",
            "mask": {"png": base64.b64encode(png_bytes(a)).decode()}}
    f = tmp_path / "imp.ndjson"
    f.write_text(json.dumps(line) + "\n")
    (_, item), = list(open_dataset(f).iter_items())
    assert item.mask.array.tolist() == a.tolist() and item.instance_mask.array.tolist() == a.tolist()


def test_label_choice_is_recorded_and_reopened_by_the_report(tmp_path):
    scenes = {"a": scene(3)}
    exp = labelbox_export(tmp_path, scenes, composite=True)
    rep = tmp_path / "rep"
    assert main(["coverage", str(exp), "--labelbox-label", "0", "--out", str(rep), "--workers", "1"]) == 0
    run = json.loads((rep / "run.json").read_text())
    assert run["arguments"]["labelbox_label"] == "0" and run["arguments"]["layout"] == "labelbox"
    assert {lab["name"] for lab in run["labelmap"]["labels"]} >= {"background"}
    assert main(["report", str(rep)]) == 0


def test_evaluate_platform_files_against_other_layouts_shares_ids(tmp_path):
    voc = make_voc(tmp_path / "voc", ignore=True)
    out, _ = convert(voc, "nucleus", tmp_path / "nu")
    out_lb, _ = convert(voc, "labelbox", tmp_path / "lb")
    for gt, pred, name in ((voc, out / "segments.jsonl", "e1"), (out / "segments.jsonl", voc, "e2"),
                           (out / "segments.jsonl", out_lb / "labelbox.ndjson", "e3")):
        rep = tmp_path / name
        assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(rep), "--workers", "1"]) == 0
        classes = load_report_table(rep, "classes").to_pylist()
        present = [c for c in classes if c["tp"] + c["fn"] > 0]
        assert present and all(c["iou"] == 1.0 for c in present), (name, classes)


def test_hostile_references_and_records(tmp_path):
    root = Root(tmp_path)
    for ref in ("/etc/passwd", "file:///etc/passwd", "../x.png"):
        with pytest.raises(FormatError) as e:
            locate_mask(root, ref)
        assert e.value.code == "path_outside_root"
    with pytest.raises(FormatError) as e:
        locate_mask(root, "ftp://host/x.png")
    assert e.value.code == "unreadable"
    write_mask(tmp_path / "m.png", M)
    bad = {"reference_id": "a", "mask_url": "m.png", "annotations": [{"label": "car", "index": 10**12}]}
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps(bad) + "\n")
    job = ValidateJob(open_dataset(f))
    run_job(job, job._dataset.manifest(), tmp_path / "r", workers=1, quiet=True)
    (row,) = load_report_table(tmp_path / "r").to_pylist()
    assert (row["status"], row["error_code"]) == ("error", "bad_json")
    lb = tmp_path / "e.ndjson"
    (tmp_path / "c.png").write_bytes(png_bytes(RGB))
    lb.write_text(json.dumps(export_row("a", [{"feature_id": "f", "name": "car", "annotation_kind":
                                               "ImageSegmentationMask", "composite_mask": {
                                                   "url": "c.png", "color_rgb": [300, 0, 0]}}])) + "\n")
    job = ValidateJob(open_dataset(lb))
    run_job(job, job._dataset.manifest(), tmp_path / "r2", workers=1, quiet=True)
    (row,) = load_report_table(tmp_path / "r2").to_pylist()
    assert (row["status"], row["error_code"]) == ("error", "bad_json")


def test_convert_refuses_unmapped_nucleus_values(tmp_path):
    f = nucleus_file(tmp_path / "n", [rec("a", "a.png", 0), rec("b", "b.png", 0, 1)], {"a.png": M, "b.png": M})
    out, result = convert(f, "coco", tmp_path / "o")
    items = {r["item_id"]: r for r in load_report_table(tmp_path / "o").to_pylist()}
    assert (items["a"]["status"], items["a"]["error_code"]) == ("error", "unmapped_value")
    assert items["b"]["status"] == "ok"


def test_deeply_nested_platform_files_are_clear_errors(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    for name, text in (("a.jsonl", '{"mask_url": ' + deep + "}\n"), ("b.json", '[{"dataRow": ' + deep + "}]")):
        p = tmp_path / name
        p.write_text(text)
        for layout in ("labelbox", "nucleus"):
            with pytest.raises(FormatError) as e:
                open_dataset(p, layout=layout)
            assert e.value.code == "bad_json" and "too deep" in e.value.message


def test_instance_colors_are_unique_and_never_black():
    from fastmask.jobs.convert_platforms import instance_colors

    c = instance_colors(2000)
    assert c.shape == (2001, 3) and c[0].tolist() == [0, 0, 0]
    keys = {tuple(x) for x in c[1:].tolist()}
    assert len(keys) == 2000 and (0, 0, 0) not in keys


@pytest.mark.parametrize("to", ["labelbox", "nucleus"])
def test_real_panoptic_sample_round_trip(real_data, tmp_path, to):
    # panopticapi's sample: 2 images, 50 segments, 3 crowd. Crowd regions are ignored regions on
    # both platforms: Nucleus keeps them as ignore (255), Labelbox leaves them unlabeled.
    src = open_dataset(real_data / "panopticapi/sample_data/panoptic_examples.json")
    out, result = convert(src, to, tmp_path / "o")
    assert result.counts["ok"] == result.n_items == 2
    back = open_dataset(out / ("labelbox.ndjson" if to == "labelbox" else "segments.jsonl"))
    n_crowd = 0
    for row in src.manifest().to_pylist():
        s = read_source(src, row)
        n_crowd += sum(1 for seg in s.segments if seg["iscrowd"])
        (brow,) = [r for r in back.manifest().to_pylist() if r["item_id"] == row["item_id"]]
        b = read_source(back, brow)
        crowd = np.zeros(s.class_map.shape, bool)
        for seg in s.segments:
            if seg["iscrowd"]:
                crowd |= s.instance_map == seg["segment_id"]  # the PNG id (annotation ids are renumbered)
        want = named(src, s.class_map)
        want[crowd] = "<ignore>" if to == "nucleus" else "<background>"
        np.testing.assert_array_equal(named(back, b.class_map), want)
        inst = np.where(crowd, 0, s.instance_map)
        if to == "nucleus":
            np.testing.assert_array_equal(b.instance_map, inst)
        else:
            pairs = np.unique(np.stack([inst.ravel(), b.instance_map.ravel().astype(np.int64)]), axis=1)
            assert len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]
    assert n_crowd == 3


def test_labelbox_data_row_listed_twice_reads_the_first_line(tmp_path):
    a = np.zeros((24, 32), np.uint8)
    a[1:3, 1:3] = 255
    (tmp_path / "a.png").write_bytes(png_bytes(a))
    obj = {"feature_id": "f", "name": "car", "annotation_kind": "ImageSegmentationMask", "mask": {"url": "a.png"}}
    f = tmp_path / "e.ndjson"
    f.write_text(json.dumps(export_row("x", [obj])) + "\n" + json.dumps(export_row("x", [])) + "\n")
    (_, item), = list(open_dataset(f).iter_items())
    assert np.count_nonzero(item.mask.array) == 4 and item.extra["labelbox"]["duplicate_rows"] == 1
