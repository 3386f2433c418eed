"""Real COCO records from ../shared/data/real against their pycocotools 2.0.11 reference values."""
from __future__ import annotations

import hashlib
import json

import numpy as np

import fastmask.rle as fr
from fastmask.raster import polygon_mask, polygon_rle


def _reference_files(real):
    ref_root = real / "_reference" / "pycocotools-2.0.11"
    files = sorted(ref_root.rglob("*.expected.json"))
    assert files, f"no reference files under {ref_root}"
    return files


def _sha(mask: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(mask, dtype=np.uint8).tobytes()).hexdigest()


def test_real_records_match_reference(real_data):
    checked = {"polygon": 0, "rle_uncompressed": 0, "rle_compressed": 0, "empty_polygon_list": 0}
    for ref_file in _reference_files(real_data):
        ref = json.loads(ref_file.read_text())
        source = json.loads((real_data / ref["source"]).read_text())
        anns = source["annotations"] if isinstance(source, dict) else source
        for rec in ref["records"]:
            ann = anns[rec["index"]]
            assert ann["id"] == rec["id"]
            seg = ann["segmentation"]
            kind = rec["kind"]
            checked[kind] += 1
            if kind == "empty_polygon_list":
                assert fr.frPyObjects(seg, 10, 10) == []
                continue
            h, w = rec["h"], rec["w"]
            if kind == "polygon":
                rle = fr.merge(fr.frPyObjects(seg, h, w))
                assert polygon_rle(seg, h, w) == rle
                assert _sha(polygon_mask(seg, h, w)) == rec["mask_sha256"], rec["id"]
            elif kind == "rle_uncompressed":
                rle = fr.frPyObjects(seg, h, w)
            else:
                rle = seg
                assert fr.decode_stack([seg])[0].sum() == rec["area"]
            if kind == "rle_compressed":  # pycocotools' canonical string of the stored one
                assert fr.merge([rle])["counts"].decode() == rec["counts"]
            else:
                assert rle["counts"].decode() == rec["counts"]
            assert int(fr.area(rle)) == rec["area"], rec["id"]
            assert fr.toBbox(rle).tolist() == rec["bbox"], rec["id"]
            assert _sha(fr.decode(rle)) == rec["mask_sha256"], rec["id"]
    # the data README promises: 570+ polygons, crowd masks as uncompressed RLE, 50 compressed panoptic RLEs
    assert checked["polygon"] >= 570
    assert checked["rle_uncompressed"] >= 6
    assert checked["rle_compressed"] == 50
    assert checked["empty_polygon_list"] == 1


def test_real_records_batch_decode(real_data):
    # all 50 panoptic RLEs of one image decoded in one call equal the one-by-one decodes
    ref_file = real_data / "_reference/pycocotools-2.0.11/panopticapi/sample_data/panoptic_coco_detection_format.expected.json"
    ref = json.loads(ref_file.read_text())
    source = json.loads((real_data / ref["source"]).read_text())
    anns = source["annotations"] if isinstance(source, dict) else source
    by_image: dict[int, list] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a["segmentation"])
    for segs in by_image.values():
        stack = fr.decode_stack(segs)
        for i, s in enumerate(segs):
            assert np.array_equal(stack[i], fr.decode(s))
        labels = fr.decode_labelmap(segs, np.arange(1, len(segs) + 1))
        # later segments win; panoptic segments do not overlap, so every segment keeps its area
        for i, s in enumerate(segs):
            assert int((labels == i + 1).sum()) == int(fr.area(s))
