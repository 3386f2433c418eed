"""Label maps: VOC colormap, CVAT labelmap.txt, names files, JSON, COCO categories, colour lookup."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmask.formats.errors import FormatError
from fastmask.formats.labelmap import UNKNOWN_ID, VOC_CLASSES, LabelMap, load_labelmap, voc_colormap


def _voc_reference(n=256):
    # the devkit's own loop, written independently of the vectorised version
    def bit(v, i):
        return (v >> i) & 1
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= bit(c, 0) << (7 - j)
            g |= bit(c, 1) << (7 - j)
            b |= bit(c, 2) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def test_voc_colormap_matches_devkit():
    cm = voc_colormap()
    assert cm.dtype == np.uint8 and cm.shape == (256, 3)
    assert [tuple(x) for x in cm.tolist()] == _voc_reference()
    assert cm[0].tolist() == [0, 0, 0] and cm[1].tolist() == [128, 0, 0] and cm[255].tolist() == [224, 224, 192]
    assert len({tuple(x) for x in cm.tolist()}) == 256  # a bijection: every colour names one index
    assert voc_colormap(21).shape == (21, 3)


def test_real_cvat_labelmap_is_exactly_voc(real_data):
    lm = load_labelmap(real_data / "datumaro/tests/assets/voc_dataset/voc_dataset2/labelmap.txt")
    assert lm == LabelMap.voc()
    assert lm.names[0] == "background" and lm.names[20] == "tvmonitor"
    assert lm.names[255] == "ignored" and lm.colors[255] == (224, 224, 192) and lm.ignore == {255}
    assert 21 not in lm.names  # the 'ignored' line is VOC's void (255), not class 21


def test_real_labels_txt_and_dataset_meta(real_data):
    lm = load_labelmap(real_data / "datumaro/tests/assets/mots_dataset/train/instances/labels.txt")
    assert lm.names == {0: "a", 1: "b", 2: "c", 3: "d"} and lm.colors == {}
    meta = load_labelmap(real_data / "datumaro/tests/assets/common_semantic_segmentation_dataset/"
                         "non_standard_dataset/dataset_meta.json")
    assert meta.names[7] == "SignSymbol" and meta.colors[7] == (128, 128, 128) and meta.background == 0


def test_coco_categories_real(real_data):
    d = json.loads((real_data / "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json").read_text())
    lm = LabelMap.from_coco_categories(d["categories"])
    assert len(lm.names) == 80 and lm.names[1] == "person" and lm.names[90] == "toothbrush"
    assert 12 not in lm.names  # gaps stay gaps
    pan = json.loads((real_data / "panopticapi/panoptic_coco_categories.json").read_text())
    lmp = LabelMap.from_coco_categories(pan)
    assert len(lmp.names) == 133 and all(len(c) == 3 for c in lmp.colors.values())


def test_cvat_parsing_details():
    lm = LabelMap.from_cvat("# comment\n\ncar:255,0,0:wheel,door:occluded\nroad::\nsky\n")
    assert lm.names == {0: "car", 1: "road", 2: "sky"} and lm.colors == {0: (255, 0, 0)}
    for bad in ["a:1,2\n", "a:1,2,300\n", "a:0,0,0\nb:0,0,0\n", "a\na\n", ":1,2,3\n", "a:1,2,3:x:y:z\n", "# only\n"]:
        with pytest.raises(FormatError) as e:
            LabelMap.from_cvat(bad)
        assert e.value.code == "bad_labelmap", bad


def test_names_file_details(tmp_path):
    p = tmp_path / "class_names.txt"
    p.write_text("bg\ncat\n\n\n")
    assert load_labelmap(p).names == {0: "bg", 1: "cat"}
    p.write_text("bg\n\ncat\n")
    with pytest.raises(FormatError) as e:
        load_labelmap(p)
    assert e.value.code == "bad_labelmap" and "blank line" in e.value.message


def test_json_schema_roundtrip_and_variants(tmp_path):
    lm = LabelMap(names={0: "bg", 3: "car", 255: "void"}, colors={3: (1, 2, 3)}, ignore={255, 254}, background=None)
    j = lm.to_json()
    assert json.loads(json.dumps(j)) == j
    back = LabelMap.from_json(j)
    assert back == lm and back.background is None and back.ignore == {254, 255}
    assert LabelMap.from_json('{"labels": {"0": "bg", "1": "cat"}}').names == {0: "bg", 1: "cat"}
    assert LabelMap.from_json({"labels": [{"id": 1, "name": "x", "color": "#0a0B0c"}]}).colors == {1: (10, 11, 12)}
    p = tmp_path / "labelmap.json"
    p.write_text(json.dumps(j))
    assert load_labelmap(p) == lm
    for bad in ['{"labels": [{"name": "x"}]}', '{"labels": [{"id": -1}]}', '{"labels": 3}', "[1]", "{",
                '{"labels": [{"id": 1, "color": [1, 2]}]}', '{"nothing": 1}',
                '{"labels": [{"id": 1, "color": [0,0,0]}, {"id": 2, "color": [0,0,0]}]}']:
        with pytest.raises(FormatError) as e:
            LabelMap.from_json(bad)
        assert e.value.code in ("bad_labelmap", "bad_json"), bad


def test_load_labelmap_errors(tmp_path):
    with pytest.raises(FormatError) as e:
        load_labelmap(tmp_path / "missing.txt")
    assert e.value.code == "missing_file"
    p = tmp_path / "labels.yaml"
    p.write_text("a: 1")
    with pytest.raises(FormatError) as e:
        load_labelmap(p)
    assert e.value.code == "bad_labelmap"
    p = tmp_path / "labels.txt"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(FormatError) as e:
        load_labelmap(p)
    assert e.value.code == "bad_labelmap"


def test_colors_to_ids_and_pickle():
    lm = LabelMap.voc()
    rgb = np.array([[[0, 0, 0], [128, 0, 0], [224, 224, 192]], [[1, 1, 1], [1, 1, 1], [0, 128, 0]]], np.uint8)
    ids, unknown = lm.colors_to_ids(rgb)
    assert ids.dtype == np.uint16
    assert ids.tolist() == [[0, 1, 255], [UNKNOWN_ID, UNKNOWN_ID, 2]]
    assert unknown == [((1, 1, 1), 2)]
    lm2 = pickle.loads(pickle.dumps(lm))
    assert lm2 == lm and lm2._lut is None
    assert lm2.colors_to_ids(rgb)[0].tolist() == ids.tolist()
    empty = LabelMap(names={0: "a"})
    ids, unknown = empty.colors_to_ids(rgb[:1, :1])
    assert ids.tolist() == [[UNKNOWN_ID]] and unknown == [((0, 0, 0), 1)]


@settings(max_examples=60)
@given(st.data())
def test_colors_to_ids_matches_naive_lookup(data):
    n = data.draw(st.integers(1, 12))
    palette = data.draw(st.lists(st.tuples(*[st.integers(0, 3)] * 3), min_size=n, max_size=n, unique=True))
    ids = data.draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n, unique=True))
    lm = LabelMap(names={i: str(i) for i in ids}, colors=dict(zip(ids, palette)))
    h, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    rgb = np.array(data.draw(st.lists(st.tuples(*[st.integers(0, 3)] * 3), min_size=h * w, max_size=h * w)),
                   np.uint8).reshape(h, w, 3)
    got, unknown = lm.colors_to_ids(rgb)
    inv = {c: i for i, c in zip(ids, palette)}
    want = [[inv.get(tuple(int(v) for v in rgb[y, x]), UNKNOWN_ID) for x in range(w)] for y in range(h)]
    assert got.tolist() == want
    counts: dict = {}
    for y in range(h):
        for x in range(w):
            c = tuple(int(v) for v in rgb[y, x])
            if c not in inv:
                counts[c] = counts.get(c, 0) + 1
    assert dict(unknown) == counts
    assert [c for _, c in unknown] == sorted((c for _, c in unknown), reverse=True)


_text = st.text(alphabet=st.sampled_from(list("ab:,#0129 \n\t{}[]\"-x")), max_size=80)


@settings(max_examples=300)
@given(_text)
def test_parsers_on_random_text_only_succeed_or_raise_formaterror(text):
    for parse in (LabelMap.from_cvat, LabelMap.from_lines, LabelMap.from_json):
        try:
            lm = parse(text)
        except FormatError as e:
            assert e.code in ("bad_labelmap", "bad_json")
            continue
        # whatever parsed must be a usable label map
        assert all(isinstance(k, int) and 0 <= k < UNKNOWN_ID for k in lm.names)
        assert LabelMap.from_json(lm.to_json()) == lm


@settings(max_examples=100)
@given(st.binary(max_size=60), st.sampled_from(["labelmap.txt", "labels.txt", "x.json"]))
def test_load_labelmap_random_bytes(tmp_path_factory, data, name):
    p = tmp_path_factory.mktemp("lm") / name
    p.write_bytes(data)
    try:
        load_labelmap(p)
    except FormatError as e:
        assert e.code in ("bad_labelmap", "bad_json")


def test_voc_classes_constant():
    assert len(VOC_CLASSES) == 21 and LabelMap.voc(all_colors=True).colors[21] == tuple(voc_colormap()[21])
