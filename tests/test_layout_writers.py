"""Layout writers: files read back by the readers (id maps, labelmap.txt, panoptic PNG, COCO JSON, clean zip)."""
from __future__ import annotations

import doctest
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastmask.formats.layout_writers as lw
from fastmask.formats import LabelMap, open_dataset, read_mask, read_panoptic


@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from([255, 65535, 65536, 2**31 - 1]), st.integers(0, 2**32 - 1),
       st.sampled_from(lw.MASK_FORMATS))
def test_id_map_round_trip(h, w, top, seed, fmt):
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, top, (h, w), endpoint=True).astype(np.int64)
    d = Path(tempfile.mkdtemp())
    if fmt == "png16" and ids.max() > 65535:
        # the folder's format is never changed for one file: an overflow is refused, naming the fix
        with pytest.raises(lw.FormatOverflow, match="--format tiff32"):
            lw.write_id_map(d / "sub" / "x", ids, fmt=fmt)
        assert not (d / "sub").exists() or not list((d / "sub").iterdir())
        return
    name = lw.write_id_map(d / "sub" / "x", ids, fmt=fmt)
    assert name == ("x.png" if fmt == "png16" else "x.tif")
    got = read_mask(d / "sub" / name).array
    np.testing.assert_array_equal(got.astype(np.int64), ids)
    assert not [p for p in (d / "sub").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_choose_mask_format_bounds():
    # class * 1000 + k with k <= 999: the largest class that fits 16 bits is 64 (64999 <= 65535)
    assert lw.choose_mask_format(64 * 1000 + 999) == "png16"
    assert lw.choose_mask_format(65 * 1000 + 999) == "tiff32"
    assert lw.choose_mask_format(65535) == "png16" and lw.choose_mask_format(65536) == "tiff32"
    assert lw.choose_mask_format(None) == "png16"
    assert lw.choose_mask_format(None, min_id=65536) == "tiff32"
    with pytest.raises(ValueError, match="fmt"):
        lw.write_id_map("x", np.zeros((1, 1), int), fmt="png")


@pytest.mark.parametrize("bad", [np.array([[-1]]), np.array([[2**31]]), np.zeros((2, 2, 2), int), np.zeros((2, 2), float)])
def test_id_map_refuses_bad_ids(tmp_path, bad):
    with pytest.raises(ValueError):
        lw.write_id_map(tmp_path / "x", bad)


@given(st.dictionaries(st.integers(0, 254), st.text("abcdefgh_", min_size=1, max_size=6), min_size=1, max_size=30),
       st.booleans())
def test_labelmap_txt_reads_back(names, with_ignore):
    # names must be unique for labelmap.txt; keep the first id of each name
    seen, uniq = set(), {}
    for i, n in sorted(names.items()):
        if n not in seen and not n.startswith("_unused_") and n not in ("ignored", "ignore", "void"):
            seen.add(n)
            uniq[i] = n
    if not uniq:
        return
    ignore = {255} if with_ignore else set()
    if with_ignore:
        uniq[255] = "ignored"
    lm = LabelMap(names=uniq, colors={}, ignore=ignore or {255})
    back = LabelMap.from_cvat(lw.labelmap_txt(lm))
    for i, n in uniq.items():
        assert back.names[i] == n
    assert set(back.names) == set(range(max(i for i in uniq if i != 255) + 1)) | ({255} if with_ignore else set())
    assert len(set(back.colors.values())) == len(back.colors)  # colours stay unique


def test_labelmap_txt_keeps_colours_and_refuses_big_ids():
    lm = LabelMap.voc()
    assert LabelMap.from_cvat(lw.labelmap_txt(lm)) == lm
    with pytest.raises(ValueError):
        lw.labelmap_txt(LabelMap(names={0: "a", 300: "b"}, colors={}))


def test_panoptic_png_round_trip(tmp_path):
    ids = np.array([[0, 1, 256], [65536, 2**24 - 1, 7]])
    lw.write_panoptic_png(tmp_path / "a" / "p.png", ids)
    np.testing.assert_array_equal(read_panoptic(tmp_path / "a" / "p.png").array, ids)
    with pytest.raises(ValueError):
        lw.write_panoptic_png(tmp_path / "q.png", np.array([[2**24]]))


def test_coco_json_streamed_and_read_by_the_coco_reader(tmp_path):
    images = ({"id": i, "file_name": f"{i}.jpg", "width": 4, "height": 3} for i in (1, 2))
    anns = iter([{"id": 5, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]], "iscrowd": 0},
                 json.dumps({"id": 6, "image_id": 2, "category_id": 1, "iscrowd": 1,
                             "segmentation": {"size": [3, 4], "counts": "<5"}})])
    n = lw.write_coco_json(tmp_path / "a.json", images, anns, [{"id": 1, "name": "x"}])
    assert n == (2, 2)
    doc = json.loads((tmp_path / "a.json").read_text())
    assert [a["id"] for a in doc["annotations"]] == [5, 6]
    ds = open_dataset(tmp_path / "a.json")
    assert ds.layout == "coco" and len(ds) == 2
    # empty dataset is still valid JSON
    lw.write_coco_json(tmp_path / "b.json", [], [], [])
    assert json.loads((tmp_path / "b.json").read_text())["images"] == []


def test_cleanzip_files_read_back(tmp_path):
    root = tmp_path / "cz"
    lw.write_class_map(root / "masks" / "a.png", np.array([[0, 1], [2, 255]]))
    lw.write_index_csv(root / "index.csv", [{"item_id": "a", "image": None, "mask": "masks/a.png", "width": 2,
                                            "height": 2, "split": "train"}])
    lm = LabelMap(names={0: "bg", 1: "cat", 2: "dog", 255: "ignored"}, colors={}, ignore={255})
    lw.write_cleanzip_meta(root / "meta.json", lm, task="semantic", mask_encoding="png-index",
                           image_sizes={"2x2": 1})
    ds = open_dataset(root)
    assert ds.layout == "cleanzip" and ds.labelmap.names == lm.names
    (row,) = ds.manifest().to_pylist()
    assert (row["item_id"], row["width"], row["height"], row["split"]) == ("a", 2, 2, "train")
    np.testing.assert_array_equal(ds.read_item(row).mask.array, [[0, 1], [2, 255]])
    # zipped: the same dataset; hidden temporaries are never zipped
    (root / ".junk.tmp").write_bytes(b"x")
    assert lw.zip_folder(root, tmp_path / "cz.zip") == 3
    assert ".junk.tmp" not in zipfile.ZipFile(tmp_path / "cz.zip").namelist()
    zds = open_dataset(tmp_path / "cz.zip")
    assert zds.layout == "cleanzip"
    np.testing.assert_array_equal(zds.read_item(zds.manifest().to_pylist()[0]).mask.array, [[0, 1], [2, 255]])


@pytest.mark.parametrize("item_id, expected", [
    ("a/b", "a/b"), ("../../etc/passwd", "_/_/etc/passwd"), ("/abs", "abs"), ("c:\\x", "c_/x"), ("", "_"),
    ("a/./b", "a/_/b"), ("nul\x00byte", "nul_byte"),
])
def test_safe_relpath(item_id, expected):
    assert lw.safe_relpath(item_id) == expected


def test_docstring_examples():
    result = doctest.testmod(lw, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4
    assert result.failed == 0
