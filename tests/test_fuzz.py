"""Fuzzing (issue 8): random and mutated inputs to the RLE codec, ``frPyObjects``, the PNG reader,
the label-map parsers and the COCO / panoptic JSON readers (through ``open_dataset``, ``read_item``
and the validate job). Nothing may crash, hang, or raise anything but the documented exceptions:

* ``fastmask.rle``: ``ValueError`` / ``TypeError``;
* readers (``read_mask``, ``load_labelmap``, ``open_dataset``, ``Dataset.read_item``): ``FormatError``;
  ``LabelMap.from_json`` / ``from_coco_categories`` on arbitrary objects: ``FormatError``,
  ``ValueError`` or ``TypeError``;
* the validate job's ``process``: ``ItemError`` only (anything else would be an
  ``internal_error`` row, i.e. a bug).

Crashers found while fuzzing are kept as explicit regression tests at the end. The long
variants (``-m slow``) run 10-20x more examples; ``HYPOTHESIS_PROFILE=long`` raises them further.
Coverage-guided harnesses (atheris) live in ``scripts/fuzz_*.py``.
"""
from __future__ import annotations

import io
import json
import signal
import struct
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import fastmask.rle as R
from fastmask.engine import ItemError
from fastmask.formats import FormatError, open_dataset, png
from fastmask.formats import labelmap as L

HANG_SECONDS = 60  # one call (kernels are compiled before, see _warm_kernels); far below a real hang


def fuzz_settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


@contextmanager
def no_hang(seconds: float = HANG_SECONDS):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"call did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def only(allowed, f, *args, **kwargs):
    """Call ``f``; the documented exceptions are fine, anything else fails the test."""
    with no_hang():
        try:
            return f(*args, **kwargs)
        except allowed:
            return None


RLE_ERRORS = (ValueError, TypeError)


@pytest.fixture(scope="module", autouse=True)
def _warm_kernels():
    """Compile (or load from Numba's cache) the kernels before any call runs under the hang alarm."""
    r = R.frPyObjects([[1, 1, 4, 1, 4, 4]], 6, 6)
    R.decode(r), R.area(r), R.toBbox(r), R.merge(r), R.iou(r, r, [0]), R.decode_stack(r)
    R.frPyObjects(np.array([[1.0, 1, 2, 2]]), 6, 6)
    png.read_mask(PNGS[0])

# --------------------------------------------------------------------------- RLE codec

alphabet = st.text(alphabet=[chr(c) for c in range(48, 112)], max_size=30)  # COCO's '0'..'o'
counts = st.one_of(alphabet, alphabet.map(str.encode), st.text(max_size=20), st.binary(max_size=20),
                   st.lists(st.integers(-2**40, 2**40), max_size=8), st.lists(st.integers(0, 30), max_size=8),
                   st.integers(), st.none(), st.floats(), st.lists(st.floats(allow_nan=True), max_size=4))
small_size = st.lists(st.integers(0, 12), min_size=2, max_size=2)
any_size = st.one_of(small_size, st.lists(st.integers(-2**70, 2**70), max_size=3),
                     st.tuples(st.floats(allow_nan=True), st.floats()), st.text(max_size=3), st.none(), st.integers(),
                     st.dictionaries(st.integers(0, 2), st.integers(), max_size=2),
                     st.lists(st.sampled_from([0, 1, 2**31, 2**32, 2**62, 2**63 - 1]), min_size=2, max_size=2))
rle_dict = st.one_of(st.fixed_dictionaries({"size": small_size, "counts": counts}),
                     st.fixed_dictionaries({"size": any_size, "counts": counts}),
                     st.dictionaries(st.text(max_size=6), counts, max_size=3))
rle_arg = st.one_of(rle_dict, st.lists(rle_dict, max_size=4), st.integers(), st.none(), st.text(max_size=4),
                    st.lists(st.lists(st.floats(), max_size=4), max_size=3))


def _fuzz_rle(a, b, crowd):
    for f in (R.area, R.toBbox, R.merge, R.counts_of):
        only(RLE_ERRORS, f, a)
    only(RLE_ERRORS, R.merge, a, 1)
    only(RLE_ERRORS, R.iou, a, b, crowd)
    only(RLE_ERRORS, R.frPyObjects, a, 5, 5)
    # decoding allocates h*w: only small declared sizes (huge ones are refused or tested below)
    objs = a if isinstance(a, list) else [a]
    if all(isinstance(o, dict) and o.get("size") in ([h, w] for h in range(13) for w in range(13)) for o in objs):
        for f in (R.decode, R.decode_stack):
            out = only(RLE_ERRORS, f, a)
            if out is not None:
                assert out.dtype == np.uint8 and set(np.unique(out).tolist()) <= {0, 1}


crowd_arg = st.one_of(st.lists(st.integers(0, 1), max_size=4), st.none(), st.integers(), st.text(max_size=2))


@fuzz_settings(400)
@given(rle_arg, rle_arg, crowd_arg)
def test_rle_functions_on_random_input_raise_only_value_or_type_errors(a, b, crowd):
    _fuzz_rle(a, b, crowd)


@pytest.mark.slow
@fuzz_settings(8000)
@given(rle_arg, rle_arg, crowd_arg)
def test_rle_functions_on_random_input_slow(a, b, crowd):
    _fuzz_rle(a, b, crowd)


@fuzz_settings(300)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(1, 9), st.integers(1, 9))
def test_valid_rles_from_random_counts_round_trip(runs, h, w):
    # counts summing to h*w: must decode, re-encode to the same string, and area = pixels set
    total = h * w
    cs, acc = [], 0
    for r in runs:
        r = min(r, total - acc)
        cs.append(r)
        acc += r
    cs.append(total - acc)
    rle = R.frPyObjects({"size": [h, w], "counts": cs}, h, w)
    m = R.decode(rle)
    # NumPy oracle: alternating runs of 0 and 1, column-major
    expected = np.repeat(np.arange(len(cs)) % 2, cs).astype(np.uint8).reshape((h, w), order="F")
    assert np.array_equal(m, expected)
    assert int(R.area(rle)) == int(expected.sum())
    assert R.decode(R.encode(np.asfortranarray(m))).tolist() == m.tolist()


# --------------------------------------------------------------------------- frPyObjects

number = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.none(), st.text(max_size=2), st.just(1e300), st.just(-1e300))
nested = st.recursive(st.one_of(number, st.lists(number, max_size=12)),
                      lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["size", "counts", "x"]), c,
                                                                            max_size=3), max_leaves=12)
hw = st.one_of(st.integers(-3, 40), st.integers(), st.floats(), st.none(), st.booleans())


@fuzz_settings(400)
@given(nested, hw, hw)
def test_frpyobjects_on_random_nested_input(obj, h, w):
    out = only(RLE_ERRORS, R.frPyObjects, obj, h, w)
    if out is not None:
        for r in out if isinstance(out, list) else [out]:
            assert isinstance(r["counts"], bytes) and len(r["size"]) == 2


@pytest.mark.slow
@fuzz_settings(8000)
@given(nested, hw, hw)
def test_frpyobjects_on_random_nested_input_slow(obj, h, w):
    only(RLE_ERRORS, R.frPyObjects, obj, h, w)


@fuzz_settings(100)
@given(st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=6, max_size=40).filter(lambda v: len(v) % 2 == 0),
       st.integers(1, 64), st.integers(1, 64))
def test_polygons_with_huge_coordinates_are_bounded_by_the_image(poly, h, w):
    rle = R.frPyObjects([poly], h, w)[0]
    assert rle["size"] == [h, w]
    assert 0 <= int(R.area(rle)) <= h * w


# --------------------------------------------------------------------------- PNG reader


def _png(mode: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, (7, 9)).astype(np.uint8)
    if mode == "P":
        im = Image.fromarray(a, "L").convert("P")
    elif mode == "RGB":
        im = Image.fromarray(np.stack([a * 60] * 3, -1), "RGB")
    elif mode == "I;16":
        im = Image.fromarray(a.astype(np.uint16) * 1000)
    elif mode == "RGBA":
        im = Image.fromarray(np.stack([a * 60] * 4, -1), "RGBA")
    else:
        im = Image.fromarray(a, "L")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _hand_png(a: np.ndarray, depth: int, color_type: int, interlace: bool = False) -> bytes:
    """A PNG written by hand (filter 0), for what Pillow does not write: 16-bit grey+alpha, Adam7."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    h, w = a.shape[:2]
    s = a.astype(">u2") if depth == 16 else a.astype(np.uint8)
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    subs = [s[y0::dy, x0::dx] for x0, y0, dx, dy in passes] if interlace else [s]
    raw = b"".join(b"\0" + r.tobytes() for sub in subs if sub.size for r in sub)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace)))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _apng_bytes() -> bytes:
    frames = [Image.fromarray(np.full((7, 9), v, np.uint8)) for v in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    return buf.getvalue()


PNGS = [_png(m, i) for i, m in enumerate(["L", "P", "RGB", "I;16", "RGBA"])] + [
    _hand_png(np.random.default_rng(5).integers(0, 65536, (7, 9, 2)), 16, 4),             # 16-bit grey+alpha
    _hand_png(np.random.default_rng(6).integers(0, 4, (7, 9)), 8, 0, interlace=True),    # Adam7
    _apng_bytes(),                                                                        # animated
]
READERS = (png.read_mask, png.read_panoptic, png.read_image_size)


def _fuzz_png(k, flips, cut, fix_crc):
    d = bytearray(PNGS[k])
    for pos, val in flips:
        if pos < len(d):
            d[pos] = val
    if fix_crc and len(d) > 33:  # keep IHDR's CRC right so the mutation reaches the decoder
        d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])))
    data = bytes(d[:cut]) if cut < len(d) else bytes(d)
    for f in READERS:
        out = only((FormatError,), f, data)
        if f is png.read_mask and out is not None:
            assert out.array.shape == (out.height, out.width)


png_args = (st.integers(0, len(PNGS) - 1), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
            st.integers(0, 500), st.booleans())


@fuzz_settings(300)
@given(*png_args)
def test_png_reader_on_mutated_files(k, flips, cut, fix_crc):
    _fuzz_png(k, flips, cut, fix_crc)


@pytest.mark.slow
@fuzz_settings(6000)
@given(*png_args)
def test_png_reader_on_mutated_files_slow(k, flips, cut, fix_crc):
    _fuzz_png(k, flips, cut, fix_crc)


@fuzz_settings(200)
@given(st.integers(0, len(PNGS) - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.sampled_from([0, 1, 2, 3, 4, 8, 16, 32]), st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
def test_png_reader_with_any_ihdr(k, w, h, depth, color_type):
    # declared sizes up to 4G x 4G, invalid depth/colour combinations, with a correct CRC
    d = bytearray(PNGS[k])
    body = b"IHDR" + struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    d[12:29] = body
    d[29:33] = struct.pack(">I", zlib.crc32(body))
    for f in READERS:
        only((FormatError,), f, bytes(d))


@fuzz_settings(150)
@given(st.binary(max_size=300))
def test_png_reader_on_random_bytes(data):
    for f in READERS:
        only((FormatError,), f, data)
        only((FormatError,), f, b"\x89PNG\r\n\x1a\n" + data)


@fuzz_settings(200)
@given(st.integers(0, len(PNGS) - 1), st.integers(1, 64), st.integers(1, 64), st.sampled_from([1, 2, 4, 8, 16]),
       st.sampled_from([0, 2, 3, 4, 6]), st.integers(0, 2), st.integers(0, 120))
def test_png_reader_with_any_ihdr_interlace_and_cut_data(k, w, h, depth, color_type, interlace, cut):
    # the missing-rows check sizes the data from the IHDR (Adam7 passes included): any IHDR,
    # any cut of the image data, never anything but a FormatError; a read mask is whole
    d = bytearray(PNGS[k])
    body = b"IHDR" + struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace)
    d[12:29] = body
    d[29:33] = struct.pack(">I", zlib.crc32(body))
    i = d.find(b"IDAT")
    n = struct.unpack(">I", d[i - 4:i])[0]
    if cut < n:  # a shorter IDAT, CRC made right: the decoder sees a short stream
        payload = bytes(d[i + 4:i + 4 + cut])
        d[i - 4:i + 8 + n] = struct.pack(">I", cut) + b"IDAT" + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload))
    for f in READERS:
        out = only((FormatError,), f, bytes(d))
        if f is png.read_mask and out is not None:
            assert out.array.shape == (out.height, out.width) == (h, w)


# --------------------------------------------------------------------------- listed names, zip names

_NAME_BYTES = st.lists(st.sampled_from([b"a", b"b", b"\\", b"x", b"f", b"5", b"c", b"\xff", b"\xe9", b"\xc3\xa9",
                                        b".", b"-"]), min_size=1, max_size=8).map(b"".join)


@fuzz_settings(150)
@given(st.lists(_NAME_BYTES, min_size=1, max_size=12, unique=True))
def test_listed_names_are_one_to_one_and_read_their_own_file(tmp_path_factory, names):
    # names that are not UTF-8, names holding "\\xHH" as text, plain backslashes: every file is
    # one item with its own id, and reading the item reads that file
    import os

    from fastmask.formats._fs import Root, listed_name

    root = tmp_path_factory.mktemp("names")
    names = [n for n in names if not n.startswith(b".")]  # hidden files are never items
    for k, n in enumerate(names):
        with open(os.path.join(os.fsencode(root), n), "wb") as f:
            f.write(str(k).encode())
    listed = [listed_name(os.fsdecode(n)) for n in names]
    assert len(set(listed)) == len(names)
    r = Root(root)
    assert sorted(r.files()) == sorted(listed)
    for k, name in enumerate(listed):
        name.encode("utf-8")  # fits a report
        assert r.read(name) == str(k).encode(), name


_ZIP_PARTS = st.lists(st.sampled_from(["a", "b", ".", "", "c.png", "d.png"]), min_size=1, max_size=4)


@fuzz_settings(150)
@given(st.lists(_ZIP_PARTS.map(lambda p: "/".join(p)), min_size=1, max_size=10))
def test_zip_names_are_normalised_and_each_name_is_one_item(tmp_path_factory, names):
    import warnings
    import zipfile

    from fastmask.formats._fs import Root, _zip_name

    path = tmp_path_factory.mktemp("zipnames") / "m.zip"
    names = [n for n in names if n.endswith(".png") and not n.startswith("/")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        with zipfile.ZipFile(path, "w") as z:
            for k, n in enumerate(names):
                z.writestr(n, str(k))
    r = Root(path)
    listed = r.files()
    norm = {_zip_name(n) for n in names}
    assert len(listed) == len(set(listed)) and set(listed) == {n for n in norm if not n.startswith(".")
                                                               and "/." not in n}
    last = {_zip_name(n): str(k).encode() for k, n in enumerate(names)}
    for name in listed:
        assert r.read(name) == last[name] and "./" not in name and "//" not in name
    twice = {n for n in norm if sum(_zip_name(m) == n for m in names) > 1} & set(listed)
    assert {p[1].split("!", 1)[1] for p in r.problems} == twice


# --------------------------------------------------------------------------- label maps

json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.text(max_size=8),
              st.sampled_from(["#800000", "#zzzzzz", "ignored", "background"])),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["labels", "id", "name", "color", "ignore", "background", "format", "version", "categories",
                         "label_map", "segmentation_colors", "background_label", "0", "1", "255"]), c, max_size=5),
    max_leaves=20)
labelmap_lines = st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda n, r, g, b: f"{n}:{r},{g},{b}::", st.text(alphabet="abc _#", max_size=5), st.integers(-5, 300),
              st.integers(), st.text(max_size=3)),
    st.sampled_from(["# comment", "", "ignored:224,224,192::", "background:0,0,0::"])), max_size=8).map("\n".join)
LABELMAP_NAMES = ["labelmap.txt", "class_names.txt", "labels.txt", "labelmap.json", "dataset_meta.json", "x.json"]


def _fuzz_labelmap(tmp_path, text, obj, name, as_json):
    p = tmp_path / name
    content = json.dumps(obj) if as_json else text
    p.write_bytes(content.encode("utf-8", "surrogatepass"))
    lm = only((FormatError,), L.load_labelmap, str(p))
    if lm is not None:  # a label map that loads survives its own JSON round trip
        again = L.LabelMap.from_json(lm.to_json())
        assert (again.names, again.colors, again.ignore, again.background) == (
            lm.names, lm.colors, lm.ignore, lm.background)
    only((FormatError, ValueError, TypeError), L.LabelMap.from_json, obj)
    only((FormatError, ValueError, TypeError), L.LabelMap.from_coco_categories, obj)


lm_args = (st.one_of(st.text(max_size=200), labelmap_lines), json_value, st.sampled_from(LABELMAP_NAMES), st.booleans())


@fuzz_settings(300)
@given(*lm_args)
def test_labelmap_parsers_on_random_text_and_json(tmp_path, text, obj, name, as_json):
    _fuzz_labelmap(tmp_path, text, obj, name, as_json)


@pytest.mark.slow
@fuzz_settings(6000)
@given(*lm_args)
def test_labelmap_parsers_on_random_text_and_json_slow(tmp_path, text, obj, name, as_json):
    _fuzz_labelmap(tmp_path, text, obj, name, as_json)


# --------------------------------------------------------------------------- COCO and panoptic JSON

COCO = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6},
               {"id": 2, "file_name": "b.jpg", "width": 5, "height": 5}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 4]], "area": 6,
         "bbox": [1, 1, 4, 3], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "segmentation": {"size": [5, 5], "counts": "52203"}, "area": 4,
         "bbox": [1, 1, 2, 2], "iscrowd": 1},
        {"id": 3, "image_id": 2, "category_id": 2, "segmentation": {"size": [5, 5], "counts": [5, 2, 3, 2, 13]},
         "area": 4, "bbox": [1, 1, 2, 2], "iscrowd": 1}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b", "color": [1, 2, 3]}],
}
PANOPTIC = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 5, "height": 4}],
    "annotations": [{"image_id": 1, "file_name": "a.png",
                     "segments_info": [{"id": 7, "category_id": 1, "area": 4, "bbox": [1, 1, 2, 2], "iscrowd": 0}]}],
    "categories": [{"id": 1, "name": "x", "isthing": 1}],
}
KEYS = ["id", "image_id", "file_name", "width", "height", "segmentation", "size", "counts", "category_id", "iscrowd",
        "bbox", "segments_info", "images", "annotations", "categories"]
mutation_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.text(max_size=6),
              st.sampled_from(["../../etc/passwd", "/etc/passwd", "a.png", "52203", "0", ""])),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(KEYS), c, max_size=4), max_leaves=10)


def _paths(o, p=()):
    yield p
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _paths(v, (*p, k))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _paths(v, (*p, i))


def mutate(doc, picks, values):
    """Replace (or delete) the nodes chosen by ``picks`` with ``values``."""
    doc = json.loads(json.dumps(doc))
    for pick, value in zip(picks, values):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = paths[pick % len(paths)]
        node = doc
        for k in path[:-1]:
            node = node[k]
        if pick % 5 == 0 and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return doc


@pytest.fixture(scope="module")
def coco_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz-coco")
    mp = pytest.MonkeyPatch()
    mp.setenv("FASTMASK_CACHE", str(base / "cache"))
    pan = base / "pan"
    (pan / "panoptic").mkdir(parents=True)
    seg = np.zeros((4, 5, 3), np.uint8)
    seg[1:3, 1:3, 0] = 7
    Image.fromarray(seg).save(pan / "panoptic" / "a.png")
    (base / "coco").mkdir()
    yield {"coco": base / "coco", "pan": pan, "n": [0]}
    mp.undo()


def _read_everything(path: str):
    """open_dataset + manifest + read_item + the validate job: FormatError / ItemError only."""
    from fastmask.jobs.validate import ValidateJob

    with no_hang():
        try:
            ds = open_dataset(path)
            manifest = ds.manifest()
            job = ValidateJob(ds)  # may raise FormatError for a bad label map (categories)
        except FormatError:
            return
        for row in manifest.to_pylist():
            try:
                ds.read_item(row)
            except FormatError:
                pass
            try:
                job.process(row)
            except ItemError:
                pass


def _write_doc(dirs, panoptic: bool, text: str) -> str:
    dirs["n"][0] += 1
    # panoptic: the PNG folder is the JSON path without .json; every file is new (fresh cache key)
    if panoptic:
        (dirs["pan"] / f"p{dirs['n'][0]}").symlink_to(dirs["pan"] / "panoptic")
        p = dirs["pan"] / f"p{dirs['n'][0]}.json"
    else:
        p = dirs["coco"] / f"c{dirs['n'][0]}.json"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    return str(p)


coco_args = (st.booleans(), st.lists(st.integers(0, 10**6), min_size=1, max_size=3),
             st.lists(mutation_value, min_size=3, max_size=3))


@fuzz_settings(120)
@given(*coco_args)
def test_coco_and_panoptic_readers_on_mutated_documents(coco_dirs, panoptic, picks, values):
    doc = mutate(PANOPTIC if panoptic else COCO, picks, values)
    _read_everything(_write_doc(coco_dirs, panoptic, json.dumps(doc)))


@pytest.mark.slow
@fuzz_settings(3000)
@given(*coco_args)
def test_coco_and_panoptic_readers_on_mutated_documents_slow(coco_dirs, panoptic, picks, values):
    doc = mutate(PANOPTIC if panoptic else COCO, picks, values)
    _read_everything(_write_doc(coco_dirs, panoptic, json.dumps(doc)))


@fuzz_settings(120)
@given(st.booleans(), st.integers(0, 800), st.binary(max_size=4), st.booleans())
def test_coco_and_panoptic_readers_on_corrupted_bytes(coco_dirs, panoptic, pos, junk, cut):
    text = json.dumps(PANOPTIC if panoptic else COCO)
    text = text[:pos] if cut else text[:pos] + junk.decode("latin-1") + text[pos + len(junk):]
    _read_everything(_write_doc(coco_dirs, panoptic, text))


# --------------------------------------------------------------------------- regressions (found by fuzzing)


@pytest.mark.parametrize("size", [[2**32, 2**32], [2**31, 2**33], [2**62, 4]])
@pytest.mark.parametrize("counts", [b"", [0], []])
def test_regression_rle_size_whose_pixel_count_overflows_is_refused(size, counts):
    # h*w wrapped around in int64 (2**64 -> 0), so an empty RLE "summed to h*w" and was accepted
    for f in (R.area, R.toBbox, R.merge, R.decode):
        with pytest.raises(ValueError, match="too large"):
            f([{"size": size, "counts": counts}])


@pytest.mark.parametrize("size", [[1e300, 5], [float("inf"), 1], [float("-inf"), 2], [2**70, 1], [0, 2**63],
                                  [0.0, 9.223372036854776e18]])
def test_regression_huge_or_infinite_rle_size_is_a_value_error(size):
    # was OverflowError ("cannot convert float infinity to integer", "Python int too large"); 0 x 2**63 has
    # h*w = 0 but does not fit int64
    for f in (R.area, R.toBbox, R.merge, R.counts_of):
        with pytest.raises(ValueError, match="size"):
            f([{"size": size, "counts": [1]}])
    with pytest.raises(ValueError, match="size"):
        R.frPyObjects({"size": size, "counts": [1]}, 1, 1)


def test_regression_rle_size_given_as_a_mapping_is_a_value_error():
    # was KeyError: 0
    with pytest.raises(ValueError, match="'size' must be"):
        R.frPyObjects({"size": {"a": 1, "b": 2}, "counts": []}, 3, 3)
    with pytest.raises(ValueError, match="'size' must be"):
        R.area([{"size": {"counts": None, "size": 1}, "counts": []}])


@pytest.mark.parametrize("h, w", [(float("-inf"), 18), (5, float("inf")), (float("nan"), 3)])
def test_regression_frpyobjects_with_infinite_height_is_a_type_error(h, w):
    # was OverflowError
    with pytest.raises((TypeError, ValueError), match="height and width"):
        R.frPyObjects([[1, 1, 4, 1, 4, 4]], h, w)


@pytest.mark.parametrize("poly", [[0.0, 3.595386269724632e307], [0.0, 3.595386269724632e307, 0.0, 0.0],
                                  [0, 0, 1.7e308, 0, 1.7e308, 1.7e308, -1.7e308, 3],
                                  [-4.3532773233971046e17, 0.0, 0.0, 4.407212831701244e20, 0.0, 0.0],
                                  [1.7e308, 0.0, 3.6e307, 0.0],
                                  [1e308, 1.0, 1e308, 4.0, 1.0, 4.0] * 12])
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_regression_polygon_coordinates_near_the_float_maximum(poly):
    # 5x upsampling overflowed to inf, inf - inf = NaN, and the kernel wrote past its crossing
    # buffers (heap corruption: a later segfault; found with NUMBA_BOUNDSCHECK=1); a steep edge from
    # -4e17 walked past a crossing bound clipped to the image; a box corner of inf gave a NaN bound.
    # Sums that overflow on the way (the packing's finiteness test of a short or a long polygon,
    # a box's end) must not reach the user as NumPy RuntimeWarnings: the filter makes one an error
    for rle in R.frPyObjects([poly], 5, 5):
        assert 0 <= int(R.area(rle)) <= 25


def test_regression_polygon_with_many_crossings_per_column_is_not_quadratic():
    # 4x10^4 random vertices over 64 columns: ~13,000 crossings per column, insertion-sorted
    # (quadratic, tens of seconds for 10^5 vertices); now sorted per crowded column
    poly = (np.random.default_rng(1).random(8 * 10**4) * 64).tolist()
    with no_hang(30):
        rle = R.frPyObjects([poly], 64, 64)[0]
    m = R.decode(rle)
    assert m.shape == (64, 64) and int(R.area(rle)) == int(m.sum())


def test_regression_frpyobjects_with_a_width_beyond_int64_is_a_value_error():
    # was OverflowError ("int too big to convert") from the kernel call
    with pytest.raises(ValueError, match="too large"):
        R.frPyObjects([[]], 0, 9.223372036854776e18)


@pytest.mark.parametrize("obj, h, w", [([1e300, 1e300, 1e300, 0], 0, 1_579_753_975),
                                       ([[1e300, 1e300, 1e300, 0]], 1, 1_579_753_975),
                                       ([[1e300, 1, 2e300, 1, 2e300, 5]], 2, 1_579_753_975)])
def test_regression_polygons_outside_a_very_wide_image_need_no_memory(obj, h, w):
    # the crossing buffers were sized by the edge's span clipped only to w+1: ~100 GB here
    with no_hang(30):
        out = R.frPyObjects(obj, h, w)
    for r in out if isinstance(out, list) else [out]:
        assert int(R.area(r)) == 0


def test_regression_polygon_rle_of_an_image_of_2_32_pixels_or_more_is_refused():
    # its background run would not fit COCO's 32-bit counts: it wrapped around (a malformed RLE)
    with pytest.raises(ValueError, match="32-bit"):
        R.frPyObjects([[1, 1, 5, 1, 5, 5]], 3, 1_579_753_975)
    with pytest.raises(ValueError, match="32-bit"):
        R.frPyObjects([[1, 1, 2, 2]], 2**16, 2**16)
    rle = R.frPyObjects([[1, 1, 5, 1, 5, 5]], 2, 2**31 - 1)[0]  # just below: fine
    assert int(R.area(rle)) > 0


def test_rle_size_limit_still_accepts_large_real_sizes():
    # the limit is far above any real mask: 2**31 x 2 pixels, counts in 32-bit runs
    h, w = 2**31, 2
    rle = R.frPyObjects({"size": [h, w], "counts": [2**32 - 1, 1]}, h, w)
    assert int(R.area(rle)) == 1
    assert R.toBbox(rle).tolist() == [1.0, 2**31 - 1, 1.0, 1.0]


def test_regression_colliding_listed_names_were_a_duplicate_item_id(tmp_path):
    # a raw byte name bad\xff.png and the text "bad\\xff.png": AssertionError: duplicate item_id
    import os

    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff.png"), "wb") as f:
        f.write(b"x")
    (tmp_path / "bad\\xff.png").write_bytes(b"y")
    ids = open_dataset(tmp_path, layout="masks").manifest().column("item_id").to_pylist()
    assert ids == ["bad\\x5cxff", "bad\\xff"]


def test_regression_encrypted_zip_member_was_an_internal_error(tmp_path):
    # zipfile raised RuntimeError ("password required"): an internal_error row
    import zipfile

    from fastmask.formats._fs import Root

    with zipfile.ZipFile(tmp_path / "e.zip", "w") as z:
        z.writestr("a.png", b"x")
    data = bytearray((tmp_path / "e.zip").read_bytes())
    data[6] |= 1                                     # the local header's flags
    data[data.find(b"PK\x01\x02") + 8] |= 1          # the central directory's
    (tmp_path / "e.zip").write_bytes(bytes(data))
    with pytest.raises(FormatError) as e:
        Root(tmp_path / "e.zip").read("a.png")
    assert e.value.code == "encrypted"


def test_regression_names_starting_with_an_escape_or_a_backslash_were_refused_as_absolute(tmp_path):
    # found by test_listed_names_are_one_to_one...: b"\xff.png" is listed "\\xff.png", and a
    # backslash counted as a separator even in a POSIX folder: "path is absolute; refused"
    import os

    from fastmask.formats._fs import Root

    with open(os.path.join(os.fsencode(tmp_path), b"\xff.png"), "wb") as f:
        f.write(b"1")
    (tmp_path / "\\lead.png").write_bytes(b"2")
    r = Root(tmp_path)
    assert sorted(r.files()) == ["\\lead.png", "\\xff.png"]
    assert r.read("\\xff.png") == b"1" and r.read("\\lead.png") == b"2"
    with pytest.raises(FormatError) as e:  # in a zip, a backslash still separates: refused
        import zipfile

        with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
            z.writestr("..\\evil.png", b"x")
        Root(tmp_path / "z.zip").read("..\\evil.png")
    assert e.value.code == "path_outside_root"
