"""PNG/mask reader: real samples vs _reference/png_stats.json, and hostile files."""
from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fastmask.formats.errors import FormatError
from fastmask.formats.labelmap import UNKNOWN_ID, LabelMap, voc_colormap
from fastmask.formats.png import MaskData, read_image_size, read_mask, read_panoptic, write_mask


def _stats(real_data):
    return json.loads((real_data / "_reference" / "png_stats.json").read_text())["files"]


def _counts(a: np.ndarray) -> dict[str, int]:
    u, c = np.unique(a, return_counts=True)
    return {str(int(x)): int(n) for x, n in zip(u, c)}


def _png(arr, mode=None) -> bytes:
    bio = io.BytesIO()
    Image.fromarray(np.asarray(arr), mode=mode).save(bio, format="PNG")
    return bio.getvalue()


def _raw_png(w, h, bit_depth, color_type, raw: bytes) -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- real samples


def test_every_reference_png_matches(real_data):
    stats = _stats(real_data)
    assert len(stats) >= 50
    for rel, exp in stats.items():
        m = read_mask(real_data / rel)
        assert m.mode == exp["mode"], rel
        assert [m.width, m.height] == exp["size_wh"], rel
        assert m.array.shape == tuple(exp["shape"][:2]), rel
        assert m.format == "PNG" and not m.lossy, rel
        if "values" in exp:
            # integer modes: the array is exactly the stored values
            assert m.array.dtype == np.dtype(exp["dtype"]), rel
            assert _counts(m.array) == exp["values"], rel
        else:
            # RGB: panoptic ids R + 256G + 65536B must match the reference counts
            p = read_panoptic(real_data / rel)
            assert p.array.dtype == np.uint32
            assert _counts(p.array) == exp["panoptic_id_R+256G+65536B"], rel


def test_palette_pngs_keep_indices_and_report_their_palette(real_data):
    stats = _stats(real_data)
    for rel, exp in stats.items():
        if exp["mode"] != "P":
            continue
        m = read_mask(real_data / rel)
        assert m.palette is not None and m.palette.shape == (exp["palette_len_entries"], 3)
        assert m.palette[:8].tolist() == exp["palette_first8"]
        # these palettes are not VOC's: a checker can see it from the returned palette
        assert not np.array_equal(m.palette, voc_colormap(len(m.palette))), rel
        assert m.bit_depth == 4 and m.array.dtype == np.uint8


def test_voc_rgb_class_mask_maps_through_voc_colours(real_data):
    p = real_data / "datumaro/tests/assets/voc_dataset/voc_dataset1/SegmentationClass/2007_000001.png"
    m = read_mask(p, labelmap=LabelMap.voc())
    assert m.array.dtype == np.uint16
    assert _counts(m.array) == {"2": 200}  # (0,128,0) is VOC's bicycle
    assert m.unknown_colors == [] and m.labelmap_source == "voc-default"


def test_rgb_without_labelmap_uses_voc_colormap_and_reports_others(real_data):
    p = real_data / "datumaro/tests/assets/common_semantic_segmentation_dataset/dataset/masks/0001.png"
    m = read_mask(p)  # (0,128,192) and (128,64,128) are VOC indices 44 and 81? compute, not guess
    cm = voc_colormap()
    expect = {}
    for col, n in [((0, 128, 192), 4), ((128, 64, 128), 1)]:
        idx = np.flatnonzero((cm == col).all(1))
        expect[str(int(idx[0])) if idx.size else str(UNKNOWN_ID)] = n
    assert _counts(m.array) == expect
    assert m.labelmap_source == "voc-colormap"


def test_rgb_unknown_colour_is_reported_not_guessed(real_data):
    meta = real_data / "datumaro/tests/assets/common_semantic_segmentation_dataset/dataset/dataset_meta.json"
    from fastmask.formats.labelmap import load_labelmap

    lm = load_labelmap(meta)
    # the non-standard dataset's mask uses (128,128,128), which the standard meta does not define
    p = real_data / "datumaro/tests/assets/common_semantic_segmentation_dataset/non_standard_dataset/masks/gt_0002.png"
    m = read_mask(p, labelmap=lm)
    assert m.unknown_colors == [((128, 128, 128), 2)]
    assert _counts(m.array) == {"1": 2, "5": 1, str(UNKNOWN_ID): 2}


# ----------------------------------------------------------------------------- modes


def test_modes_dtypes():
    assert read_mask(_png(np.array([[True, False]]))).array.tolist() == [[1, 0]]
    assert read_mask(_png(np.array([[True, False]]))).mode == "1"
    m = read_mask(_png(np.array([[0, 300, 65535]], np.uint16)))
    assert (m.mode, m.array.dtype, m.bit_depth, m.array.tolist()) == ("I;16", np.uint16, 16, [[0, 300, 65535]])
    bio = io.BytesIO()
    Image.fromarray(np.array([[-5, 70000]], np.int32), mode="I").save(bio, format="TIFF")
    m = read_mask(bio.getvalue())
    assert (m.mode, m.array.dtype, m.array.tolist(), m.format) == ("I", np.int32, [[-5, 70000]], "TIFF")


def test_low_bit_grey_pngs_give_stored_values_not_rescaled():
    # 2-bit grey: values 0,1,2,3 (Pillow would give 0,85,170,255)
    m = read_mask(_raw_png(4, 1, 2, 0, bytes([0, 0b00011011])))
    assert m.array.tolist() == [[0, 1, 2, 3]] and m.bit_depth == 2
    m = read_mask(_raw_png(2, 1, 4, 0, bytes([0, 0x1F])))
    assert m.array.tolist() == [[1, 15]] and m.bit_depth == 4


def test_sixteen_bit_where_eight_expected_is_visible():
    m = read_mask(_png(np.array([[1, 2], [3, 1000]], np.uint16)))
    assert m.bit_depth == 16 and m.array.dtype == np.uint16 and int(m.array.max()) == 1000


def test_sixteen_bit_rgb_precision_loss_flagged():
    raw = bytes([0]) + bytes([0, 1, 0, 2, 0, 3])
    m = read_mask(_raw_png(1, 1, 16, 2, raw))
    assert m.bit_depth == 16 and "precision_lost" in m.extra


def test_rgba_alpha_is_reported():
    a = np.zeros((2, 3, 4), np.uint8)
    a[..., :3] = (128, 0, 0)
    a[..., 3] = 255
    a[0, 0, 3] = 0
    a[1, 2, 3] = 10
    m = read_mask(_png(a))
    assert m.mode == "RGBA" and m.has_alpha and m.channels == 4
    assert m.alpha_nonopaque == 2 and m.alpha_min == 0
    assert m.array.tolist() == [[1, 1, 1], [1, 1, 1]]  # colour mapped regardless of alpha
    opaque = a.copy()
    opaque[..., 3] = 255
    m2 = read_mask(_png(opaque))
    assert m2.has_alpha and m2.alpha_nonopaque == 0


def test_palette_not_the_labelmaps_is_reported_with_indices_kept():
    arr = np.array([[0, 1], [2, 1]], np.uint8)
    bio = io.BytesIO()
    img = Image.frombytes("P", (2, 2), arr.tobytes())
    img.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60])
    img.save(bio, format="PNG")
    m = read_mask(bio.getvalue(), labelmap=LabelMap.voc())
    assert m.array.tolist() == arr.tolist()  # indices are the classes, never the colours
    assert m.palette.tolist() == [[0, 0, 0], [10, 20, 30], [40, 50, 60]]
    assert not np.array_equal(m.palette, LabelMap.voc().palette(3))


def test_grey_saved_as_rgb_is_flagged():
    a = np.stack([np.array([[3, 4]], np.uint8)] * 3, axis=-1)
    m = read_mask(_png(a), labelmap=LabelMap(names={0: "bg"}, colors={0: (0, 0, 0)}))
    assert m.extra.get("rgb_is_gray") is True
    assert sorted(m.unknown_colors) == [((3, 3, 3), 1), ((4, 4, 4), 1)]


# ----------------------------------------------------------------------------- hostile files


def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(FormatError) as e:
        read_mask(p)
    assert e.value.code == "zero_bytes"
    with pytest.raises(FormatError) as e:
        read_mask(b"")
    assert e.value.code == "zero_bytes"


@pytest.mark.parametrize("keep", [0.5, 0.9, 40 / 1000, 20 / 1000])
def test_truncated_png(tmp_path, keep):
    rng = np.random.default_rng(0)
    data = _png(rng.integers(0, 255, (100, 100), dtype=np.uint8))
    cut = data[: max(9, int(len(data) * keep))]
    p = tmp_path / "cut.png"
    p.write_bytes(cut)
    with pytest.raises(FormatError) as e:
        read_mask(p)
    assert e.value.code == "truncated", e.value.message
    assert str(p) in e.value.message


def test_garbage_is_unreadable(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"this is not an image at all")
    with pytest.raises(FormatError) as e:
        read_mask(p)
    assert e.value.code == "unreadable"


def test_missing_file(tmp_path):
    with pytest.raises(FormatError) as e:
        read_mask(tmp_path / "nope.png")
    assert e.value.code == "missing_file"


def test_jpeg_named_png_is_read_and_flagged_lossy(tmp_path):
    p = tmp_path / "mask.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(p, format="JPEG")
    m = read_mask(p)
    assert m.format == "JPEG" and m.lossy and m.mode == "L"
    assert m.array.shape == (8, 8)


def test_lossless_webp_not_lossy():
    bio = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(bio, format="WEBP", lossless=True)
    assert read_mask(bio.getvalue()).lossy is False
    bio = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(bio, format="WEBP", quality=50)
    assert read_mask(bio.getvalue()).lossy is True


def test_decompression_bomb_declared_size():
    # a valid header declaring 100000 x 100000 pixels: Pillow's limit must stop it before decoding
    data = _raw_png(100_000, 100_000, 8, 0, b"\x00")
    with pytest.raises(FormatError) as e:
        read_mask(data)
    assert e.value.code == "decompression_bomb"
    assert "MAX_IMAGE_PIXELS" in e.value.message
    assert Image.MAX_IMAGE_PIXELS is not None  # the limit stayed on


def test_decompression_bomb_warning_level_is_an_error(monkeypatch):
    # between MAX_IMAGE_PIXELS and 2x Pillow only warns; for masks that is an error too
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(FormatError) as e:
        read_mask(_png(np.zeros((12, 12), np.uint8)))  # 144 px: warning zone
    assert e.value.code == "decompression_bomb"
    assert read_mask(_png(np.zeros((10, 10), np.uint8))).array.shape == (10, 10)


def test_float_mode_is_unsupported():
    bio = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.float32), mode="F").save(bio, format="TIFF")
    with pytest.raises(FormatError) as e:
        read_mask(bio.getvalue())
    assert e.value.code == "unsupported_mode"


def test_file_object_and_bytes_sources(tmp_path):
    data = _png(np.array([[1, 2]], np.uint8))
    assert read_mask(io.BytesIO(data)).array.tolist() == [[1, 2]]
    assert read_mask(bytearray(data)).array.tolist() == [[1, 2]]
    assert read_mask(data, name="zip!a.png").source == "zip!a.png"


def test_read_image_size_header_only(tmp_path):
    # a bomb-sized header is still cheap to size (no decode), but reported as a bomb
    with pytest.raises(FormatError) as e:
        read_image_size(_raw_png(100_000, 100_000, 8, 0, b"\x00"))
    assert e.value.code == "decompression_bomb"
    assert read_image_size(_png(np.zeros((3, 7), np.uint8))) == (7, 3)
    p = tmp_path / "z.jpg"
    p.write_bytes(b"")
    with pytest.raises(FormatError) as e:
        read_image_size(p)
    assert e.value.code == "zero_bytes"


# ----------------------------------------------------------------------------- writer


def test_write_mask_modes_roundtrip(tmp_path):
    a = np.array([[0, 1], [2, 255]], np.uint8)
    write_mask(tmp_path / "l.png", a)
    m = read_mask(tmp_path / "l.png")
    assert m.mode == "L" and m.array.tolist() == a.tolist()
    write_mask(tmp_path / "p.png", a, palette="voc")
    m = read_mask(tmp_path / "p.png")
    assert m.mode == "P" and m.array.tolist() == a.tolist()
    assert np.array_equal(m.palette[:256], voc_colormap())
    b = np.array([[0, 256], [65535, 7]], np.int64)
    write_mask(tmp_path / "i16.png", b)
    m = read_mask(tmp_path / "i16.png")
    assert m.mode == "I;16" and m.array.tolist() == b.tolist()
    write_mask(tmp_path / "b.png", np.array([[True, False]]))
    assert read_mask(tmp_path / "b.png").array.tolist() == [[1, 0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "i16.png", "l.png", "p.png"]  # no temp left


@pytest.mark.parametrize("bad,kw", [(np.array([[-1]]), {}), (np.array([[70000]]), {}),
                                    (np.array([[300]]), {"palette": "voc"}), (np.zeros((2, 2, 3), np.uint8), {}),
                                    (np.array([[0.5]]), {})])
def test_write_mask_refuses(tmp_path, bad, kw):
    with pytest.raises(ValueError):
        write_mask(tmp_path / "x.png", bad, **kw)
    assert list(tmp_path.iterdir()) == []


def test_maskdata_is_plain_dataclass():
    m = read_mask(_png(np.zeros((2, 3), np.uint8)))
    assert isinstance(m, MaskData) and m.size == (3, 2) and m.channels == 1 and m.palette is None
