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


# ----------------------------------------------------------------------------- what a decoder cannot vouch for

import fastmask.formats.png as png_mod  # noqa: E402
from PIL import ImageFile  # noqa: E402

_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def _png_of(a: np.ndarray, bit_depth: int, color_type: int, *, interlace: bool = False, rows: int | None = None,
            cut: float | None = None, extra_chunks: bytes = b"") -> bytes:
    """A PNG of ``a`` written by hand (filter 0): big-endian samples, optionally Adam7-interlaced;
    ``rows``: only the first rows in a complete zlib stream; ``cut``: the stream cut at that share."""
    h, w = a.shape[:2]
    big = a.astype(">u2") if bit_depth == 16 else a.astype(np.uint8)

    def raw_rows(sub):
        return b"".join(b"\0" + r.tobytes() for r in sub)

    if interlace:
        raw = b"".join(raw_rows(big[y0::dy, x0::dx]) for x0, y0, dx, dy in _ADAM7 if w > x0 and h > y0)
    else:
        raw = raw_rows(big)
    if rows is not None:
        raw = raw[: rows * (len(raw) // h)]
    z = zlib.compress(raw)
    if cut is not None:
        z = z[: int(len(z) * cut)]
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra_chunks + _chunk(b"IDAT", z) + _chunk(b"IEND", b""))


@pytest.fixture(params=["pillow", "auto", "fastmask"])
def decoder(request, monkeypatch):
    """The decoder paths ($FASTMASK_PNG_DECODER): Pillow only; fastmask's mask decoder then
    pyspng (when installed) first; fastmask's decoder first."""
    if request.param == "auto" and png_mod._spng is None:
        pytest.skip("pyspng is not installed")
    monkeypatch.setattr(png_mod, "USE_PYSPNG", request.param == "auto")
    monkeypatch.setattr(png_mod, "USE_MASKPNG", request.param in ("auto", "fastmask"))
    return request.param


@pytest.mark.parametrize("load_truncated", [False, True])
@pytest.mark.parametrize("kind", ["short_stream", "cut_stream"])
@pytest.mark.parametrize("mode", ["L", "P", "L16", "LA", "RGB", "RGBA"])
def test_png_whose_image_data_ends_early_is_truncated(decoder, monkeypatch, load_truncated, kind, mode):
    # 100 of 480 rows in the IDAT, IEND present: Pillow fills the rest with 0 (even without
    # LOAD_TRUNCATED_IMAGES, when the zlib stream itself is complete); never an ok mask
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    depth, ctype, nch = {"L": (8, 0, 1), "P": (8, 3, 1), "L16": (16, 0, 1), "LA": (8, 4, 2), "RGB": (8, 2, 3),
                         "RGBA": (8, 6, 4)}[mode]
    a = np.arange(480 * 640 * nch).reshape((480, 640, nch)[: 3 if nch > 1 else 2]) % 7 + 1
    a = a.astype(np.uint16 if depth == 16 else np.uint8)
    extra = _chunk(b"PLTE", bytes(range(24))) if mode == "P" else b""
    kw = {"rows": 100} if kind == "short_stream" else {"cut": 0.2}
    data = _png_of(a, depth, ctype, extra_chunks=extra, **kw)
    with pytest.raises(FormatError) as e:
        read_mask(data)
    assert e.value.code == "truncated", e.value
    whole = read_mask(_png_of(a, depth, ctype, extra_chunks=extra))
    assert whole.width == 640 and whole.height == 480
    if nch == 1:
        assert np.array_equal(whole.array, a)


@pytest.mark.parametrize("mode", ["L", "P", "LA", "RGB", "L16"])
def test_whole_png_whose_last_pixel_is_the_fill_sentinel_is_read(decoder, mode):
    # the fast test cannot vouch for such a file: the bytes are counted, and it is whole
    sentinel = png_mod._SENTINELS["I;16" if mode == "L16" else mode]
    depth, ctype = {"L": (8, 0), "P": (8, 3), "LA": (8, 4), "RGB": (8, 2), "L16": (16, 0)}[mode]
    shape = (5, 6) if np.ndim(sentinel) == 0 else (5, 6, len(sentinel))
    a = np.zeros(shape, np.uint16 if depth == 16 else np.uint8)
    a[-1, -1] = sentinel
    extra = _chunk(b"PLTE", bytes(range(256)) * 3) if mode == "P" else b""
    m = read_mask(_png_of(a, depth, ctype, extra_chunks=extra))
    assert (m.width, m.height) == (6, 5)
    with pytest.raises(FormatError) as e:
        read_mask(_png_of(a, depth, ctype, extra_chunks=extra, rows=4))
    assert e.value.code == "truncated"


@pytest.mark.parametrize("h, w", [(1, 1), (3, 5), (8, 8), (9, 17), (33, 7)])
def test_interlaced_png_whole_is_read_and_short_is_truncated(decoder, h, w):
    rng = np.random.default_rng(h * 100 + w)
    a = rng.integers(0, 5, (h, w)).astype(np.uint8)
    a[-1] = 0  # a zero last row: the check runs, and must not refuse a whole file
    m = read_mask(_png_of(a, 8, 0, interlace=True))
    ref = np.asarray(Image.open(io.BytesIO(_png_of(a, 8, 0, interlace=True))))  # Pillow: the oracle
    assert np.array_equal(m.array, a) and np.array_equal(m.array, ref)
    if h * w >= 8:
        with pytest.raises(FormatError) as e:
            read_mask(_png_of(a, 8, 0, interlace=True, cut=0.5) if h * w < 64 else
                      _png_of(a, 8, 0, interlace=True, rows=h // 2))
        assert e.value.code == "truncated"


def test_whole_pngs_with_zero_last_rows_are_not_refused(decoder):
    # the check's trigger (a zero last row) is common in real masks: it must not misfire
    rng = np.random.default_rng(7)
    for h, w in ((1, 1), (2, 3), (50, 40), (375, 500)):
        a = np.zeros((h, w), np.uint8)
        a[: max(1, h // 2)] = rng.integers(0, 21, (max(1, h // 2), w))
        for data in (_png(a), _png_of(a, 8, 0)):
            assert np.array_equal(read_mask(data).array, a)
        p = Image.fromarray(a, mode="L").convert("P")
        bio = io.BytesIO()
        p.save(bio, "PNG")
        assert np.array_equal(read_mask(bio.getvalue()).array, np.asarray(p))


@pytest.mark.parametrize("interlace", [False, True])
def test_sixteen_bit_grey_alpha_is_read_as_sixteen_bit_grey_with_alpha_checked(decoder, interlace):
    rng = np.random.default_rng(1)
    la = np.zeros((13, 11, 2), np.uint16)
    la[..., 0] = rng.integers(0, 65536, (13, 11))
    la[..., 1] = 65535
    la[2, 3, 1] = 0
    la[4, 5, 1] = 65534  # not opaque either: 16-bit alpha is opaque at 65535 only
    data = _png_of(la, 16, 4, interlace=interlace)
    m = read_mask(data)
    assert (m.mode, m.array.dtype, m.bit_depth, m.channels) == ("LA;16", np.uint16, 16, 2)
    assert np.array_equal(m.array, la[..., 0])
    assert m.has_alpha and m.alpha_nonopaque == 2 and m.alpha_min == 0
    # oracle: Pillow reads the same file as 8-bit RGBA holding the high bytes
    ref = np.asarray(Image.open(io.BytesIO(data)))
    assert Image.open(io.BytesIO(data)).mode == "RGBA"
    assert np.array_equal(m.array >> 8, ref[..., 0]) and np.array_equal(ref[..., 0], ref[..., 1])
    assert np.array_equal(la[..., 1] >> 8, ref[..., 3])
    assert np.array_equal(read_panoptic(data).array, la[..., 0].astype(np.uint32))
    with pytest.raises(FormatError) as e:
        read_mask(_png_of(la, 16, 4, interlace=interlace, cut=0.5))
    assert e.value.code == "truncated"


def _apng(frames: list[np.ndarray], *, text_before: int = 0) -> bytes:
    bio = io.BytesIO()
    ims = [Image.fromarray(f) for f in frames]
    info = None
    if text_before:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("comment", "x" * text_before)  # pushes acTL far from the file's start
    ims[0].save(bio, "PNG", save_all=True, append_images=ims[1:], pnginfo=info)
    data = bio.getvalue()
    assert b"acTL" in data
    return data


@pytest.mark.parametrize("text_before", [0, 10_000])
def test_animated_png_is_read_as_its_first_frame_and_counted(decoder, text_before):
    frames = [np.full((6, 5), i, np.uint8) for i in (1, 2, 3)]
    data = _apng(frames, text_before=text_before)
    if text_before:
        assert data.index(b"acTL") > 4096
    m = read_mask(data)
    assert np.array_equal(m.array, frames[0]) and m.extra.get("n_frames") == 3
    assert read_mask(_png(frames[0])).extra.get("n_frames", 1) == 1


def test_sixteen_bit_grey_alpha_animated_is_counted():
    la = np.zeros((4, 4, 2), np.uint16)
    la[..., 1] = 65535
    actl = _chunk(b"acTL", struct.pack(">II", 2, 0))
    data = _png_of(la, 16, 4, extra_chunks=actl)
    m = read_mask(data)
    # Pillow's count (the default image outside the animation counts too): the oracle
    assert m.mode == "LA;16" and m.extra["n_frames"] == Image.open(io.BytesIO(data)).n_frames > 1


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs here")
def test_paths_that_are_not_regular_files_are_refused_at_once(tmp_path):
    import os

    os.mkfifo(tmp_path / "x.png")  # opening it for reading would wait for a writer forever
    for fn in (read_mask, read_panoptic, read_image_size):
        for p in (tmp_path / "x.png", tmp_path):
            with pytest.raises(FormatError) as e:
                fn(p)
            assert e.value.code == "not_a_file", (fn, p)
    with pytest.raises(FormatError) as e:
        read_mask("/dev/zero")  # a character device: read until memory ran out
    assert e.value.code == "not_a_file" and "character device" in e.value.message
