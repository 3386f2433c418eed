"""fastmask.formats.writers: PNGs read back identical by Pillow, OpenCV and fastmask's reader; atomic writes."""
from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from fastmask.formats import read_mask, read_panoptic, voc_colormap
from fastmask.formats import writers as wr


def _pil(path):
    with Image.open(path) as im:
        return im.mode, np.array(im)


shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint8, shapes, elements=st.integers(0, 255)))
def test_grey8_round_trip(a):
    png = wr.encode_png(a)
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "L" and np.array_equal(np.array(im), a)
    assert np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED), a)
    assert np.array_equal(read_mask(png).array, a)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint16, shapes, elements=st.integers(0, 65535)))
def test_grey16_round_trip(a):
    png = wr.encode_png(a)
    m = read_mask(png)
    assert m.bit_depth == 16 and np.array_equal(m.array, a)
    dec = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert dec.dtype == np.uint16 and np.array_equal(dec, a)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.uint32, shapes, elements=st.integers(0, 2**24 - 1)))
def test_panoptic_round_trip(ids):
    png = wr.encode_png(wr.panoptic_rgb(ids))
    assert np.array_equal(read_panoptic(png).array, ids)
    with Image.open(io.BytesIO(png)) as im:
        rgb = np.array(im).astype(np.uint32)
    assert np.array_equal(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2], ids)


def test_semantic_modes(tmp_path):
    a = np.array([[0, 1, 2], [3, 20, 255]], np.uint8)
    assert wr.write_semantic_png(tmp_path / "l.png", a) == "L"
    assert _pil(tmp_path / "l.png")[0] == "L" and np.array_equal(_pil(tmp_path / "l.png")[1], a)
    assert wr.write_semantic_png(tmp_path / "p.png", a, palette="voc") == "P"
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P" and np.array_equal(np.array(im), a)
        pal = np.array(im.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    assert np.array_equal(pal, voc_colormap(256))
    own = np.array([[0, 0, 0], [10, 20, 30]], np.uint8)
    wr.write_semantic_png(tmp_path / "p2.png", np.array([[0, 1]]), palette=own)
    with Image.open(tmp_path / "p2.png") as im:
        assert im.getpalette()[:6] == [0, 0, 0, 10, 20, 30]
    big = np.array([[0, 300]], np.int64)
    assert wr.write_semantic_png(tmp_path / "w.png", big) == "I;16"
    assert read_mask(tmp_path / "w.png").array.tolist() == [[0, 300]]
    assert wr.write_semantic_png(tmp_path / "f.png", a, sixteen_bit=True) == "I;16"
    assert read_mask(tmp_path / "f.png").bit_depth == 16
    with pytest.raises(ValueError, match="palette"):
        wr.write_semantic_png(tmp_path / "x.png", big, palette="voc")
    with pytest.raises(ValueError, match="0..65535"):
        wr.write_semantic_png(tmp_path / "x.png", np.array([[-1]]))
    with pytest.raises(ValueError, match="integer"):
        wr.write_semantic_png(tmp_path / "x.png", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="empty"):
        wr.write_semantic_png(tmp_path / "x.png", np.zeros((0, 2), np.uint8))
    assert not (tmp_path / "x.png").exists()


def test_instance_binary(tmp_path):
    inst = np.array([[0, 1], [2, 70000 - 5000]])
    assert wr.write_instance_png(tmp_path / "i.png", inst) == "I;16"
    m = read_mask(tmp_path / "i.png")
    assert m.bit_depth == 16 and np.array_equal(m.array, inst)
    small = np.array([[0, 1]])
    wr.write_instance_png(tmp_path / "s.png", small)
    assert read_mask(tmp_path / "s.png").bit_depth == 16  # always 16-bit, even for small ids
    with pytest.raises(ValueError):
        wr.write_instance_png(tmp_path / "t.png", np.array([[70000]]))
    b = np.array([[True, False], [False, True]])
    wr.write_binary_png(tmp_path / "b.png", b)
    assert _pil(tmp_path / "b.png")[1].tolist() == [[255, 0], [0, 255]]
    with pytest.raises(ValueError):
        wr.write_binary_png(tmp_path / "c.png", np.array([[2]]))


def test_panoptic_segments_consistent():
    ids = np.zeros((6, 7), np.int64)
    ids[1:3, 2:5] = 5
    ids[4, 0] = 300
    ids[5, 6] = 300
    segs = [{"id": 5, "category_id": 1, "iscrowd": 1}, {"id": 300, "category_id": 2}, {"id": 9, "category_id": 3}]
    out = wr.panoptic_segments(ids, segs)
    assert out == [
        {"id": 5, "category_id": 1, "iscrowd": 1, "area": 6, "bbox": [2, 1, 3, 2]},
        {"id": 300, "category_id": 2, "iscrowd": 0, "area": 2, "bbox": [0, 4, 7, 2]},
    ]
    with pytest.raises(ValueError, match="no segment"):
        wr.panoptic_segments(ids, segs[:1])


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "m.png"
    wr.write_semantic_png(target, np.ones((3, 3), np.uint8))
    before = target.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        wr.write_semantic_png(target, np.zeros((3, 3), np.uint8))
    assert target.read_bytes() == before  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]  # no temporary left


def test_rle_row():
    assert wr.rle_row({"size": [2, 3], "counts": "06"}, annotation_id=1) == {
        "annotation_id": 1, "height": 2, "width": 3, "counts": "06"}


def test_docstring_examples():
    import doctest

    result = doctest.testmod(wr, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0


def test_eight_bit_forced_refuses_wide_ids(tmp_path):
    with pytest.raises(ValueError, match="8-bit"):
        wr.write_semantic_png(tmp_path / "x.png", np.array([[0, 256]]), sixteen_bit=False)
    assert wr.write_semantic_png(tmp_path / "y.png", np.array([[0, 255]]), sixteen_bit=False) == "L"
    assert not (tmp_path / "x.png").exists()
