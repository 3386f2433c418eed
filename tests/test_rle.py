"""fastmask.rle against pycocotools 2.0.11 (the oracle), plus the documented sane answers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as pm

import fastmask.rle as fr

from strategies import binary_masks, counts_lists, layouts, polygons


def _ref_encode(stack: np.ndarray):
    return pm.encode(np.asfortranarray(stack))


# --------------------------------------------------------------------------- encode / decode


@given(binary_masks())
@settings(max_examples=300)
def test_encode_any_layout_matches_pycocotools(stack):
    ref = _ref_encode(stack)
    for arr in layouts(stack):
        assert fr.encode(arr) == ref
    assert fr.encode(stack.astype(bool)) == ref
    # 2-D input, C and Fortran
    assert fr.encode(np.ascontiguousarray(stack[:, :, 0])) == ref[0]
    assert fr.encode(np.asfortranarray(stack[:, :, 0])) == ref[0]


@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_encode_multivalued_bytes_like_pycocotools(h, w, seed):
    # pycocotools starts a new run at every change of byte value (not just 0 <-> nonzero)
    m = np.random.default_rng(seed).integers(0, 4, (h, w, 2), dtype=np.uint8)
    assert fr.encode(m) == _ref_encode(m)
    assert fr.encode(np.ascontiguousarray(m)) == _ref_encode(m)


@given(binary_masks(min_n=2, max_n=5), st.data())
@settings(max_examples=200)
def test_encode_c_order_stack_mixing_binary_and_multivalued_planes(stack, data):
    # C-ordered planes take a run-domain path for 0/1 masks and a row-by-row scan for other
    # byte values; one stack may need both, reusing the same scratch buffers
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    for i in range(stack.shape[2]):
        if data.draw(st.booleans()):
            stack[:, :, i] = stack[:, :, i] * rng.integers(1, 4, stack.shape[:2])
    c_nhw = np.ascontiguousarray(stack.transpose(2, 0, 1))
    assert fr.encode(c_nhw.transpose(1, 2, 0)) == _ref_encode(stack)
    for i in range(stack.shape[2]):
        assert fr.encode(c_nhw[i]) == _ref_encode(stack[:, :, i : i + 1])[0]


@given(binary_masks(max_n=1), st.data())
@settings(max_examples=300)
def test_decode_one_rle_lean_path_matches_list_path_and_pycocotools(stack, data):
    # one dict takes a parse-and-write kernel into uninitialised memory; a list the general
    # path: same masks for valid strings, the same error for malformed ones
    rle = _ref_encode(stack)[0]
    as_str = data.draw(st.booleans())
    counts = rle["counts"]
    if data.draw(st.booleans()):  # corrupt it: cut, change a character, or change the size
        how = data.draw(st.sampled_from(["cut", "char", "size"]))
        if how == "cut" and counts:
            counts = counts[: data.draw(st.integers(0, len(counts) - 1))]
        elif how == "char" and counts:
            i = data.draw(st.integers(0, len(counts) - 1))
            counts = counts[:i] + bytes([data.draw(st.integers(40, 120))]) + counts[i + 1 :]
        else:
            rle = {"size": [rle["size"][0] + data.draw(st.integers(0, 2)), rle["size"][1]], "counts": counts}
    one = {"size": list(rle["size"]), "counts": counts.decode("latin-1") if as_str else counts}
    try:
        expected = fr.decode([one])[:, :, 0]
    except ValueError as e:
        with pytest.raises(ValueError) as got:
            fr.decode(one)
        assert str(got.value) == str(e)
        return
    mask = fr.decode(one)
    assert mask.flags.f_contiguous and mask.dtype == np.uint8
    assert np.array_equal(mask, expected)
    if counts == rle["counts"]:
        assert np.array_equal(mask, pm.decode(rle))


def _same_answer_or_error(lean, general):
    """``lean()`` gives what ``general()`` gives, or raises the same error text."""
    try:
        expected = general()
    except (ValueError, TypeError) as e:
        with pytest.raises(type(e)) as got:
            lean()
        assert str(got.value) == str(e)
        return None
    got = lean()
    assert type(got) is type(expected)
    if isinstance(got, np.ndarray):
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    else:
        assert got == expected
    return got


@given(binary_masks(max_n=1), st.data())
@settings(max_examples=300)
def test_one_rle_lean_paths_match_general_paths_and_pycocotools(stack, data):
    # area / toBbox of one dict, merge of a one-item list and frPyObjects of one uncompressed
    # RLE each take a one-kernel path; the general (list) paths are the oracle, errors included
    rle = _ref_encode(stack)[0]
    counts = rle["counts"]
    size = list(rle["size"])
    corrupt = data.draw(st.sampled_from(["none", "cut", "char", "size"]))
    if corrupt == "cut" and counts:
        counts = counts[: data.draw(st.integers(0, len(counts) - 1))]
    elif corrupt == "char" and counts:
        i = data.draw(st.integers(0, len(counts) - 1))
        counts = counts[:i] + bytes([data.draw(st.integers(40, 120))]) + counts[i + 1 :]
    elif corrupt == "size":
        size[0] += data.draw(st.integers(1, 2))
    one = {"size": size, "counts": counts.decode("latin-1") if data.draw(st.booleans()) else counts}
    a = _same_answer_or_error(lambda: fr.area(one), lambda: fr.area([one])[0])
    b = _same_answer_or_error(lambda: fr.toBbox(one), lambda: fr.toBbox([one])[0])
    # pycocotools' merge of one RLE re-encodes its counts as they are (zero-length runs kept)
    m = _same_answer_or_error(lambda: fr.merge([one]), lambda: fr.from_counts(*fr.counts_of([one]))[0])
    if corrupt == "none":
        assert a == pm.area(rle) and np.array_equal(b, pm.toBbox(rle)) and m == pm.merge([rle])
        ucounts = fr.counts_of(rle)[0].tolist()
    else:
        ucounts = data.draw(st.lists(st.integers(-5, 2**33), max_size=6))
    unc = {"size": size, "counts": ucounts}
    got = _same_answer_or_error(lambda: fr.frPyObjects(unc, *size), lambda: fr.frPyObjects([unc], *size)[0])
    if corrupt == "none":
        assert got == pm.frPyObjects({"size": size, "counts": ucounts}, *size)


_LIST_CORRUPTIONS = [
    "none", "str", "cut", "char", "sep", "size", "mixed", "bytearray", "tuple-size", "float-size", "array-size", "list-counts",
]


def _corrupt_one(objs: list[dict], how: str, data) -> None:
    """Spoil one RLE dict of a list in place (or turn all counts to str) for the lean-path tests."""
    i = data.draw(st.integers(0, len(objs) - 1))
    o = objs[i]
    c, (h, w) = o["counts"], o["size"]
    j = data.draw(st.integers(0, len(c)))
    if how == "str":
        for x in objs:
            x["counts"] = x["counts"].decode("ascii")
    elif how == "cut":
        o["counts"] = c[:j]
    elif how == "char":
        o["counts"] = c[:j] + bytes([data.draw(st.integers(0, 255))]) + c[j + 1 :]
    elif how == "sep":  # the byte the lean path joins strings with
        o["counts"] = c[:j] + b"\x7f" + c[j:]
    elif how == "size":
        o["size"] = [h + data.draw(st.integers(-1, 2)), w]
    elif how == "mixed":
        o["counts"] = c.decode("ascii")
    elif how == "bytearray":
        o["counts"] = bytearray(c)
    elif how == "tuple-size":
        o["size"] = (h, w)
    elif how == "float-size":
        o["size"] = [float(h), float(w)]
    elif how == "array-size":
        o["size"] = np.array([h, w])
    elif how == "list-counts":
        o["counts"] = fr.counts_of(o)[0].tolist()


@given(binary_masks(min_n=1, max_n=6), st.sampled_from(_LIST_CORRUPTIONS), st.data())
@settings(max_examples=400)
def test_list_lean_paths_match_general_paths_and_pycocotools(stack, how, data):
    # a list of same-size RLE dicts is joined into one byte string (a separator outside COCO's
    # alphabet between strings) and answered by one kernel call; a tuple of the same dicts takes
    # the general path, the oracle for every answer and error text, hostile inputs included
    ref = _ref_encode(stack)
    objs = [dict(r) for r in ref]
    _corrupt_one(objs, how, data)
    crowd = data.draw(st.lists(st.integers(0, 1), min_size=len(objs), max_size=len(objs)))
    a = _same_answer_or_error(lambda: fr.area(objs), lambda: fr.area(tuple(objs)))
    b = _same_answer_or_error(lambda: fr.toBbox(objs), lambda: fr.toBbox(tuple(objs)))
    u = _same_answer_or_error(lambda: fr.merge(objs), lambda: fr.merge(tuple(objs)))
    i = _same_answer_or_error(lambda: fr.merge(objs, 1), lambda: fr.merge(tuple(objs), 1))
    o = _same_answer_or_error(
        lambda: fr.iou(objs, objs[::-1], crowd), lambda: fr.iou(tuple(objs), tuple(objs[::-1]), crowd)
    )
    if how in ("none", "str"):
        assert np.array_equal(a, pm.area(ref)) and np.array_equal(b, pm.toBbox(ref))
        assert u == pm.merge(ref) and i == pm.merge(ref, 1)
        assert np.array_equal(o, pm.iou(ref, ref[::-1], crowd))


@given(st.lists(counts_lists(max_side=8, min_side=3), min_size=2, max_size=9), st.booleans())
@settings(max_examples=300)
def test_merge_of_many_noncanonical_rles_is_the_union_or_intersection(hwcs, intersect):
    # merge walks flip positions pairwise in a tree; zero-length runs (uncompressed RLEs) and odd
    # list counts included; the oracle is the decoded masks and pycocotools on canonical strings
    h, w = hwcs[0][0], hwcs[0][1]
    rles = []
    for _, _, counts in hwcs:  # each list resized to this h x w: scale its last run
        total = sum(counts)
        fixed = list(counts[:-1]) + [counts[-1] + h * w - total] if total <= h * w else [h * w]
        rles.append(fr.frPyObjects({"size": [h, w], "counts": fixed}, h, w))
    masks = fr.decode(rles).astype(bool)
    merged = fr.merge(rles, intersect)
    expect = masks.all(axis=2) if intersect else masks.any(axis=2)
    assert np.array_equal(fr.decode(merged), expect)
    canon = [pm.encode(np.asfortranarray(masks[:, :, i : i + 1].astype(np.uint8)))[0] for i in range(len(rles))]
    assert merged == pm.merge(canon, intersect)


@given(polygons(), st.integers(1, 70), st.integers(1, 70))
@settings(max_examples=200)
def test_merge_of_own_frpyobjects_result_matches_pycocotools_and_checks_size(poly, h, w):
    # merge([r]) of a string frPyObjects just made is a copy; the same string under another
    # size is not trusted (it is parsed and refused like any RLE whose counts do not add up)
    r = fr.frPyObjects([poly], h, w)[0]
    assert fr.merge([r]) == pm.merge(pm.frPyObjects([poly], h, w))
    other = {"size": [h + 1, w], "counts": r["counts"]}
    with pytest.raises(ValueError, match="do not sum to h\\*w"):
        fr.merge([other])


@given(binary_masks())
@settings(max_examples=200)
def test_decode_area_bbox_match_pycocotools(stack):
    ref = _ref_encode(stack)
    out = fr.decode(ref)
    expect = pm.decode(ref)
    assert out.dtype == expect.dtype == np.uint8
    assert out.shape == expect.shape
    assert out.flags.f_contiguous
    assert np.array_equal(out, expect)
    assert np.array_equal(fr.decode(ref[0]), pm.decode(ref[0]))
    a = fr.area(ref)
    assert a.dtype == np.uint32 and np.array_equal(a, pm.area(ref))
    assert fr.area(ref[0]) == pm.area(ref[0])
    bb = fr.toBbox(ref)
    assert bb.dtype == np.float64 and np.array_equal(bb, pm.toBbox(ref))
    assert np.array_equal(fr.toBbox(ref[0]), pm.toBbox(ref[0]))
    # batch entry points agree with the drop-in
    assert np.array_equal(fr.decode_stack(ref), stack.transpose(2, 0, 1))
    assert fr.decode_stack(ref).flags.c_contiguous


@given(counts_lists())
@settings(max_examples=300)
def test_uncompressed_rle_and_string_codec(hwc):
    h, w, counts = hwc
    obj = {"size": [h, w], "counts": counts}
    ref = pm.frPyObjects(obj, h, w)
    got = fr.frPyObjects(obj, h, w)
    assert got == ref
    assert np.array_equal(fr.decode(got), pm.decode(ref))
    assert fr.area(got) == pm.area(ref)
    if fr.area(got) > 0:  # incl. non-canonical zero runs
        assert np.array_equal(fr.toBbox(got), pm.toBbox(ref))
    else:  # pycocotools wraps the width around for empty non-canonical RLEs; fastmask says "no box"
        assert np.array_equal(fr.toBbox(got), np.zeros(4))
    # the list form and the str form of counts are accepted too
    assert np.array_equal(fr.decode(obj), pm.decode(ref))
    assert np.array_equal(fr.decode({"size": [h, w], "counts": ref["counts"].decode()}), pm.decode(ref))


def _coco_string(counts) -> bytes:
    """The COCO compressed-string codec, written from its definition (5 bits a character,
    LSB first, 0x20 = more follows, counts from the third on coded as the difference to the
    count two before): an oracle for counts too large for pycocotools' encoder."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        while True:
            ch = x & 0x1F
            x >>= 5  # arithmetic: the sign stays
            more = x != -1 if ch & 0x10 else x != 0
            out.append((ch | (0x20 if more else 0)) + 48)
            if not more:
                break
    return bytes(out)


@given(st.lists(st.integers(0, 2**29 - 1), min_size=1, max_size=12))
def test_string_codec_matches_pycocotools_encoder(counts):
    # pycocotools' encoder allocates 6 characters per count: only values that fit (|x| < 2**29)
    total = sum(counts)
    ref = pm.frPyObjects({"size": [1, total], "counts": counts}, 1, total)
    got = fr.frPyObjects({"size": [1, total], "counts": counts}, 1, total)
    assert got == ref
    assert got["counts"] == _coco_string(counts)


@given(st.lists(st.integers(0, 2**31), min_size=1, max_size=12))
def test_string_codec_large_counts(counts):
    # large run lengths need 7 characters: they overflow pycocotools' encoder buffer (6 per
    # count; heap corruption aborted a test run once) and its decoder sign-extends them with
    # an over-wide shift, so the codec's definition is the oracle here, and the round trip
    total = sum(counts)
    got = fr.frPyObjects({"size": [1, total], "counts": counts}, 1, total)
    assert got["counts"] == _coco_string(counts)
    c, o, _, _ = fr.counts_of(got)
    assert c.tolist() == counts


# --------------------------------------------------------------------------- merge / iou


@given(binary_masks(min_n=1, max_n=5), st.booleans())
@settings(max_examples=300)
def test_merge_matches_pycocotools(stack, intersect):
    ref = _ref_encode(stack)
    assert fr.merge(ref, intersect) == pm.merge(ref, intersect)
    if intersect:
        expect = np.all(stack, axis=2)
    else:
        expect = np.any(stack, axis=2)
    assert np.array_equal(fr.decode(fr.merge(ref, intersect)), expect)


@given(counts_lists(max_side=12))
def test_merge_noncanonical_inputs(hwc):
    # zero-length runs (legal in uncompressed RLE) can crash pycocotools' merge (heap overflow),
    # so the oracle here is the decoded masks, and pycocotools on the canonical re-encodings
    h, w, counts = hwc
    a = fr.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    b = fr.frPyObjects({"size": [h, w], "counts": counts[::-1]}, h, w)
    ma, mb = fr.decode(a), fr.decode(b)
    canon = [pm.encode(np.asfortranarray(ma)), pm.encode(np.asfortranarray(mb))]
    for inter, op in ((0, np.logical_or), (1, np.logical_and)):
        merged = fr.merge([a, b], inter)
        assert np.array_equal(fr.decode(merged), op(ma, mb))
        assert merged == pm.merge(canon, inter)
    assert fr.merge([a]) == a  # one RLE: returned as is, like pycocotools


@given(binary_masks(min_n=1, max_n=4), binary_masks(min_n=1, max_n=4), st.data())
@settings(max_examples=300)
def test_iou_matches_pycocotools(s1, s2, data):
    h, w = s1.shape[:2]
    s2 = np.resize(s2, (h, w, s2.shape[2]))
    dt, gt = _ref_encode(s1), _ref_encode(s2)
    crowd = data.draw(st.lists(st.integers(0, 1), min_size=len(gt), max_size=len(gt)))
    got = fr.iou(dt, gt, crowd)
    ref = pm.iou(dt, gt, crowd)
    assert got.shape == (len(dt), len(gt))
    assert np.array_equal(got, ref)


box = st.lists(st.floats(-50, 100, allow_nan=False), min_size=4, max_size=4).map(
    lambda b: [b[0], b[1], abs(b[2]), abs(b[3])]
)


@given(st.lists(box, min_size=1, max_size=6), st.lists(box, min_size=1, max_size=6), st.data())
def test_box_iou_matches_pycocotools(dt, gt, data):
    crowd = data.draw(st.lists(st.integers(0, 1), min_size=len(gt), max_size=len(gt)))
    ref = pm.iou(np.array(dt), np.array(gt), crowd)
    # degenerate (denormal) boxes give NaN in both
    assert np.array_equal(fr.iou(np.array(dt), np.array(gt), crowd), ref, equal_nan=True)
    assert np.array_equal(fr.iou(dt, gt, crowd), ref, equal_nan=True)  # pycocotools wants arrays; lists work here


def test_iou_of_two_rle_lists_parsed_together_still_names_the_bad_side():
    # both lists are parsed in one go; a problem sends the call to the per-side path, so the
    # error names the RLE's index in its own list and sizes are compared per side
    good = fr.encode(np.eye(4, dtype=np.uint8))
    bad = {"size": [4, 4], "counts": b"5220"}
    with pytest.raises(ValueError, match="^RLE 1 \\(size"):
        fr.iou([good], [good, bad], [0, 0])
    with pytest.raises(ValueError, match="dt RLEs have size \\[4, 4\\] but gt RLEs have size \\[4, 5\\]"):
        fr.iou([good], [fr.encode(np.zeros((4, 5), np.uint8))], [0])
    with pytest.raises(ValueError, match="iscrowd has 1 entries but there are 2"):
        fr.iou([good], [good, good], [0])
    assert fr.iou([good], [good, good], None).tolist() == [[1.0, 1.0]]


def test_iou_empty_and_seed_example():
    assert fr.iou([], [], []) == []
    a = fr.frPyObjects([[0, 0, 4, 4]], 8, 8)
    b = fr.frPyObjects([[1, 1, 4, 4]], 8, 8)
    assert int(fr.area(a)[0]) == 16
    assert fr.iou(a, b, [0])[0, 0] == pytest.approx(9 / 23, abs=0)
    assert fr.iou(a, b, [1])[0, 0] == 9 / 16  # crowd gt: intersection over the detection's area


# --------------------------------------------------------------------------- frPyObjects


@given(st.lists(polygons(), min_size=1, max_size=4), st.integers(1, 70), st.integers(1, 70))
@settings(max_examples=400)
def test_frpyobjects_polygons_match_pycocotools(polys, h, w):
    if len(polys[0]) == 4:  # pycocotools would take the list for boxes (and fail)
        return
    ref = pm.frPyObjects(polys, h, w)
    assert fr.frPyObjects(polys, h, w) == ref
    assert fr.merge(fr.frPyObjects(polys, h, w)) == pm.merge(ref)


@given(polygons(min_vertices=2, max_vertices=2), polygons(), st.integers(1, 50), st.integers(1, 50))
def test_four_number_polygon_inside_a_list_is_a_polygon(short, poly, h, w):
    # pycocotools handles a 4-number polygon as a polygon when it is not first in the list
    ref = pm.frPyObjects([poly, short], h, w)
    got = fr.frPyObjects([poly, short], h, w)
    assert got == ref
    # ...and fastmask also when it comes first (pycocotools would take the list for boxes)
    assert fr.frPyObjects([short, poly], h, w) == ref[::-1]


@given(st.lists(box, min_size=1, max_size=6), st.integers(1, 60), st.integers(1, 60))
def test_frpyobjects_boxes(boxes, h, w):
    ref = pm.frPyObjects(np.array(boxes), h, w)
    assert fr.frPyObjects(np.array(boxes), h, w) == ref
    assert fr.frPyObjects(boxes, h, w) == ref  # a list of boxes (TypeError in pycocotools)
    assert fr.frPyObjects(boxes[0], h, w) == ref[0]  # a single box


@given(
    st.lists(st.lists(st.integers(-40, 80), min_size=4, max_size=4), min_size=1, max_size=6),
    st.integers(1, 60),
    st.integers(1, 60),
)
@settings(max_examples=300)
def test_frpyobjects_integer_boxes_closed_form_matches_pycocotools(boxes, h, w):
    # integer boxes (negative extents, partly or wholly outside, full height or width
    # included) take a closed-form rectangle instead of the polygon fill: same strings
    boxes = boxes + [[0, 0, w, h], [0, 1, w, h - 1], [-3, -2, w + 5, h + 4]]
    arr = np.array(boxes, np.float64)
    assert fr.frPyObjects(arr, h, w) == pm.frPyObjects(arr, h, w)
    assert fr.frPyObjects(boxes, h, w) == pm.frPyObjects(arr, h, w)


@given(
    st.lists(
        st.lists(st.one_of(st.integers(-40, 80), st.integers(-(2**31), 2**31)), min_size=4, max_size=4),
        min_size=0,
        max_size=6,
    ),
    st.integers(1, 70),
    st.integers(1, 70),
    st.sampled_from(["as is", "nan", "inf", "fraction", "beyond 2**31"]),
)
@settings(max_examples=300)
def test_box_strings_kernel_matches_counts_then_codec(boxes, h, w, spoil):
    # the box kernel writes each string directly (a block of '0' for the repeated columns);
    # the oracle is the closed-form counts run through the string codec; anything but
    # integers up to 2**31 must be refused (the caller then takes the general path)
    from fastmask.kernels import rle as k

    arr = np.array(boxes + [[0, 0, 1, h], [2, 0, 1, h - 1], [0, 0, w, 1]], np.float64).reshape(-1, 4)
    if spoil != "as is":
        arr[-1, 1] = {"nan": np.nan, "inf": -np.inf, "fraction": 0.5, "beyond 2**31": 2.0**31 + 1}[spoil]
    chars, offsets, ok = k.box_strings(arr, h, w)
    assert ok == (spoil == "as is")
    if ok:
        counts, roff = k.box_rles(arr, h, w)
        ref_chars, ref_offsets = k.counts_to_chars(counts, roff)
        assert chars.tobytes() == ref_chars.tobytes() and offsets.tolist() == ref_offsets.tolist()
        small = arr[np.abs(arr).max(axis=1) <= 200]  # pycocotools walks 10 points per unit of a far box
        assert fr.frPyObjects(small, h, w) == pm.frPyObjects(small, h, w)
    else:  # the general path still answers the rest, and names the bad value
        assert fr.frPyObjects(arr[:-1], h, w) == fr.frPyObjects(arr[:-1].tolist(), h, w)
        if spoil in ("nan", "inf"):
            with pytest.raises(ValueError, match="NaN or infinite"):
                fr.frPyObjects(arr, h, w)


def test_frpyobjects_single_objects_and_empty():
    poly = [1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0, 1.0]
    assert fr.frPyObjects(poly, 6, 6) == pm.frPyObjects([poly], 6, 6)[0]
    assert fr.frPyObjects([], 6, 6) == []
    with pytest.raises(TypeError):
        fr.frPyObjects("nope", 6, 6)


def test_huge_coordinates_do_not_crash():
    # 1e300 would overflow pycocotools' int walk; here edges are clipped in closed form
    big = 1e300
    whole = fr.frPyObjects([[-big, -big, -big, big, big, big, big, -big]], 7, 5)
    assert int(fr.area(whole)[0]) == 35
    tri = fr.frPyObjects([[0, 0, big, 1, 0, 3]], 7, 5)
    m = fr.decode(tri[0])
    assert m.shape == (7, 5) and m.max() <= 1
    # a polygon entirely outside the image is empty
    assert int(fr.area(fr.frPyObjects([[-big, -big, -big, -1, -1, -1]], 7, 5))[0]) == 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "counts, message",
    [
        (b"5220", "do not sum to h\\*w"),
        (b"52203 ", "outside COCO's RLE alphabet"),
        (b"5220\x7f", "outside COCO's RLE alphabet"),
        (b"522P", "truncated"),
        (b"", "do not sum"),
        ("5220é", "outside COCO's RLE alphabet"),
        (b"ooooooo0", "32 bits"),  # eight characters: more than a 32-bit count can need
    ],
)
def test_malformed_rle_raises(counts, message):
    bad = {"size": [4, 4], "counts": counts}
    for fn in (fr.decode, fr.area, fr.toBbox, lambda r: fr.merge([r, r])):
        with pytest.raises(ValueError, match=message):
            fn(bad)


def test_malformed_rle_names_the_index():
    good = fr.encode(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="RLE 1"):
        fr.decode([good, {"size": [4, 4], "counts": b"9"}])
    with pytest.raises(ValueError, match="negative"):
        fr.decode({"size": [4, 4], "counts": b"000O"})  # count 3 = count 1 + (-1)
    with pytest.raises(ValueError, match="sum to 15"):
        fr.frPyObjects({"size": [4, 4], "counts": [5, 10]}, 4, 4)
    with pytest.raises(ValueError, match="size"):
        fr.decode({"size": [4], "counts": b"0"})
    with pytest.raises(TypeError):
        fr.decode([{"counts": b"0"}])


def test_size_mismatches_raise():
    a = fr.encode(np.zeros((4, 4), np.uint8))
    b = fr.encode(np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="same size"):
        fr.merge([a, b])
    with pytest.raises(ValueError, match="same size"):
        fr.decode([a, b])
    with pytest.raises(ValueError, match="size"):
        fr.iou([a], [b], [0])
    with pytest.raises(ValueError, match="iscrowd"):
        fr.iou([a], [a, a], [0])
    with pytest.raises(ValueError, match="at least one"):
        fr.merge([])


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        fr.encode(np.zeros(5, np.uint8))
    with pytest.raises(TypeError, match="uint8 or bool"):
        fr.encode(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="only 0 and 1"):
        fr.encode(np.full((3, 3), 7, np.int64))
    assert fr.encode(np.ones((3, 3), np.int64)) == fr.encode(np.ones((3, 3), np.uint8))


def test_polygon_errors():
    with pytest.raises(ValueError, match="polygon 1 has an odd number"):
        fr.frPyObjects([[0, 0, 1, 1, 2, 0], [0, 0, 1, 1, 2]], 4, 4)
    with pytest.raises(ValueError, match="polygon 0 has NaN"):
        fr.frPyObjects([[0, 0, np.nan, 1, 2, 0]], 4, 4)
    with pytest.raises(ValueError, match="infinite"):
        fr.frPyObjects([[0, 0, np.inf, 1, 2, 0]], 4, 4)
    # short and long polygons take different finiteness tests (see _polygons._all_finite)
    long_poly = [0.0, 0.0, 3.0, 0.0, 3.0, 3.0] * 12
    with pytest.raises(ValueError, match="polygon 1 has NaN"):
        fr.frPyObjects([long_poly, long_poly[:-1] + [np.nan]], 4, 4)
    with pytest.raises(ValueError, match="polygon 1 has NaN"):
        fr.frPyObjects([[0, 0, 1, 1, 2, 0], [0, 0, -np.inf, 1, 2, 0]], 4, 4)
    [rle] = fr.frPyObjects([long_poly], 4, 4)
    assert rle["size"] == [4, 4]


def test_box_errors_and_empty():
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="boxes have NaN or infinite values"):
            fr.frPyObjects(np.array([[0.0, 0.0, 2.0, 2.0], [1.0, bad, 1.0, 1.0]]), 4, 4)
    assert fr.frPyObjects(np.zeros((0, 4)), 4, 4) == []


# --------------------------------------------------------------------------- sane answers past pycocotools' limits


def test_area_and_bbox_of_many_rles():
    # pycocotools' area() overflows a uint8 length on more than 255 RLEs under NumPy 2
    stack = (np.random.default_rng(0).random((9, 7, 600)) < 0.4).astype(np.uint8)
    rles = fr.encode(stack)
    a = fr.area(rles)
    assert a.shape == (600,) and a.dtype == np.uint32
    assert np.array_equal(a, stack.sum(axis=(0, 1)))
    bb = fr.toBbox(rles)
    assert bb.shape == (600, 4)
    for i in (0, 299, 599):
        assert np.array_equal(bb[i], pm.toBbox(rles[i]))


def test_zero_size_masks():
    r = fr.encode(np.zeros((0, 5), np.uint8))
    assert r == {"size": [0, 5], "counts": b"0"}
    assert fr.decode(r).shape == (0, 5)
    assert fr.area(r) == 0
    assert np.array_equal(fr.toBbox(r), np.zeros(4))


# --------------------------------------------------------------------------- batch entry points


@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_label_map_round_trip(h, w, n_values, seed):
    rng = np.random.default_rng(seed)
    lm = rng.integers(0, n_values + 1, (h, w)).astype(np.uint8)
    if rng.random() < 0.5:  # blocky maps: long runs
        lm = np.repeat(np.repeat(lm[: max(1, h // 4), : max(1, w // 4)], 4, 0), 4, 1)[:h, :w]
        lm = np.ascontiguousarray(np.pad(lm, ((0, h - lm.shape[0]), (0, w - lm.shape[1]))))
    per_value = fr.encode_labelmap(lm)
    assert sorted(per_value) == sorted(int(v) for v in np.unique(lm) if v != 0)
    for v, r in per_value.items():
        assert r == pm.encode(np.asfortranarray((lm == v).astype(np.uint8)))
    with_bg = fr.encode_labelmap(lm.astype(np.int32), values=[0, n_values + 5])
    assert with_bg[0] == pm.encode(np.asfortranarray((lm == 0).astype(np.uint8)))
    assert fr.area(with_bg[n_values + 5]) == 0
    vals = list(per_value)
    if vals:
        painted = fr.decode_labelmap([per_value[v] for v in vals], vals)
        assert np.array_equal(painted, lm)
        assert painted.dtype == np.uint8


def test_decode_labelmap_later_wins_and_dtype():
    r = fr.frPyObjects([[0, 0, 3, 3], [1, 1, 3, 3]], 5, 5)
    lm = fr.decode_labelmap(r, [300, 7])
    assert lm.dtype == np.uint16
    assert lm[0, 0] == 300 and lm[1, 1] == 7 and lm[4, 4] == 0
    with pytest.raises(ValueError, match="values"):
        fr.decode_labelmap(r, [1])


@pytest.mark.parametrize("crowd", [[-(2**63) - 1], [2**64], -(2**63) - 1])
def test_iou_crowd_flag_beyond_64_bits_is_a_value_error(crowd):
    # Hypothesis found it: NumPy's OverflowError escaped (pycocotools raises it too); our errors are
    # ValueError / TypeError
    a = fr.encode(np.asfortranarray(np.ones((3, 3), np.uint8)))
    with pytest.raises(ValueError, match="iscrowd"):
        fr.iou([a], [a], crowd)
