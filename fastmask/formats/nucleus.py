"""Layout ``nucleus``: Scale Nucleus segmentation annotations (a JSONL file or a JSON list) and their masks.

One record per mask (the ``SegmentationAnnotation`` payload of the Nucleus client)::

    {"type": "mask", "reference_id": "img_1", "mask_url": "masks/img_1.png",
     "annotations": [{"label": "background", "index": 0}, {"label": "car", "index": 1,
                      "metadata": {"instance_id": 1}}], "annotation_id": "..."}

The mask is an H x W uint8 PNG whose value *v* is the segment with ``index`` *v*.
Records of other types (boxes, polygons, ...) and records without ``mask_url`` are
skipped (counted in :meth:`NucleusDataset.info`). ``item_id`` is ``reference_id``
(``item_id`` in files older fastmask versions wrote). Nucleus keeps one mask per
item: a second record for a ``reference_id`` is kept aside (``extra['nucleus']['masks']``
counts them; the first is read).

Maps: the class of a pixel is its segment's ``label`` through the label map of every
label in the file (:func:`~._platforms.names_labelmap`: sorted names, ``background`` = 0);
a segment whose ``metadata.iscrowd`` is true is an ignored region (class 255, no
instance); a value without a segment is class ``UNKNOWN_ID`` (65535, reported by
``validate``; listed in ``extra['unmapped_values']``, and ``convert`` refuses the item). The instance of a pixel is its segment's ``metadata.instance_id`` when
given (what ``convert --to nucleus`` writes, so instance ids survive; 0 = no instance), else ``index + 1``
(every non-background segment is one instance); background and ignored segments have none.

Masks are found beside the file by path or URL (:func:`~._platforms.locate_mask`), a URL
without a local copy is fetched (a failed fetch: an error row with its storage code); images,
when ``images=`` is given, by ``reference_id`` stem. Manifest columns: ``item_id``,
``n_masks``, ``image_path``, ``record`` (the first record, as JSON).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from ._fs import Root
from ..storage import Fetcher
from ._platforms import mask_source, names_labelmap, open_rgb, read_json_records, remote_masks
from .errors import FormatError
from .labelmap import UNKNOWN_ID, LabelMap
from .layouts import IMAGE_EXTENSIONS, Dataset, Item, header_size, stem
from .png import MaskData

__all__ = ["NucleusDataset", "segment_table"]


def _is_crowd(seg: dict) -> bool:
    md = seg.get("metadata")
    return isinstance(md, dict) and bool(md.get("iscrowd"))


def segment_table(record: dict, where: str) -> list[dict]:
    """The record's segments, checked: ``[{"label", "index", "metadata"}]``; FormatError('bad_json') otherwise.

    >>> segment_table({"annotations": [{"label": "car", "index": 1}]}, "x")
    [{'label': 'car', 'index': 1, 'metadata': {}}]
    """
    anns = record.get("annotations")
    if not isinstance(anns, list):
        raise FormatError("bad_json", f"{where}: 'annotations' is not a list of segments")
    out = []
    for s in anns:
        idx = s.get("index") if isinstance(s, dict) else None
        if isinstance(idx, str) and idx.isdigit():  # the client's own example writes index="1"
            idx = int(idx)
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx <= 65535 \
                or not isinstance(s.get("label"), str):  # (a PNG holds 16 bits at most: larger is no pixel value)
            raise FormatError("bad_json", f"{where}: segment {str(s)[:200]} needs a string 'label' and an integer "
                              "'index' in 0..65535")
        md = s.get("metadata")
        out.append({"label": s["label"], "index": idx, "metadata": md if isinstance(md, dict) else {}})
    return out


class NucleusDataset(Dataset):
    """Scale Nucleus segmentation records and their uint8 PNG masks.

    >>> # ds = open_dataset("segmentation.jsonl", layout="nucleus", images="images/")
    """

    layout = "nucleus"

    def __init__(self, path, *, images=None, labelmap: LabelMap | None = None):
        super().__init__(path, labelmap)
        if not os.path.isfile(self.root):
            raise FormatError("missing_file", f"{self.root}: no such file", path=self.root)
        self.path = self.root
        self.images = Root(images) if images is not None else None
        self._cache_root = None
        self.fetcher = Fetcher()  # masks by URL: the storage options, prefetch and cache of this run
        self.labelmap_from_names = False
        groups, self.skipped = self._groups()
        if self.labelmap is None:
            used, crowd = set(), set()
            for recs in groups.values():
                for r in recs:
                    for s in r.get("annotations") or []:
                        if isinstance(s, dict) and isinstance(s.get("label"), str):
                            (crowd if _is_crowd(s) else used).add(s["label"])
            self.labelmap = names_labelmap(used, ignore_names=crowd - used,
                                           source=f"nucleus labels ({os.path.basename(self.path)})")
            self.labelmap_from_names = True

    def _store(self) -> Root:
        if self._cache_root is None:
            self._cache_root = Root(os.path.dirname(self.path))
        return self._cache_root

    def _groups(self) -> tuple[dict[str, list[dict]], int]:
        groups: dict[str, list[dict]] = {}
        skipped = 0
        for n, rec in enumerate(read_json_records(self.path), 1):
            if rec.get("type") not in (None, "mask", "segmentation") or "mask_url" not in rec:
                skipped += 1
                continue
            key = rec.get("reference_id", rec.get("item_id"))
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise FormatError("bad_json", f"{self.path}: record {n} has no reference_id", path=self.path)
            groups.setdefault(str(key), []).append(rec)
        return groups, skipped

    def _build_manifest(self) -> pa.Table:
        groups, _ = self._groups()
        ids = sorted(groups)
        imgs = {}
        if self.images is not None:
            imgs = {stem(f): f for f in self.images.files() if f.lower().endswith(IMAGE_EXTENSIONS)}
        return pa.table({
            "item_id": pa.array(ids, pa.string()),
            "n_masks": pa.array([len(groups[i]) for i in ids], pa.int64()),
            "image_path": pa.array([imgs.get(i) for i in ids], pa.string()),
            "record": pa.array([json.dumps(groups[i][0]) for i in ids], pa.string()),
        })

    def prefetch(self, row: dict) -> list:
        """The mask URL of ``row`` when it has no local copy: ``[(fetcher, location)]``."""
        return remote_masks(self._store(), [json.loads(row["record"]).get("mask_url")], self.fetcher)

    def read_item(self, row: dict) -> Item:
        rec = json.loads(row["record"])
        iid = row["item_id"]
        item = Item(item_id=iid)
        if self.images is not None:
            if row.get("image_path"):
                item.image_path = self.images.display(row["image_path"])
                item.image_size = header_size(self.images, row["image_path"], item.extra)
            else:
                item.missing.append("image")
        segs = segment_table(rec, f"{self.path}: {iid}")
        store = self._store()
        src = mask_source(store, rec["mask_url"], self.fetcher)
        if isinstance(src, str):
            if not store.exists(src):
                item.missing.append("mask")
                item.extra["expected_mask"] = store.display(src)
                return item
            data, shown = store.read(src), store.display(src)
        else:  # a URL without a local copy: fetched (a fault is the item's error row)
            data, shown = self.fetcher.read(src), src.url.split("?", 1)[0]
        arr, facts = open_rgb(data, shown)
        info = {**facts, "masks": int(row.get("n_masks") or 1), "url": rec["mask_url"],
                "segments": [[s["label"], s["index"]] for s in segs]}
        item.extra["nucleus"] = info
        if arr.ndim != 2:
            raise FormatError("unsupported_mode", f"{shown}: a {facts['mode']} image; a Nucleus mask is "
                              "a single-channel uint8 PNG of segment indices")
        vals, counts = np.unique(arr, return_counts=True)
        info["values"] = [[int(v), int(n)] for v, n in zip(vals.tolist(), counts.tolist())]
        item.mask, item.instance_mask = self._maps(arr, segs, iid, self.path)
        unmapped = sorted(set(vals.tolist()) - {s["index"] for s in segs})
        if unmapped:  # class UNKNOWN_ID in the map: convert refuses the item rather than invent a class
            item.extra["unmapped_values"] = unmapped
        return item

    def _maps(self, arr: np.ndarray, segs: list[dict], iid: str, source: str) -> tuple[MaskData, MaskData]:
        lm = self.labelmap
        by_name = {n: i for i, n in lm.names.items()}
        top = max(int(arr.max(initial=0)), max((s["index"] for s in segs), default=0)) + 1
        cls_lut = np.full(top, UNKNOWN_ID, np.int64)
        inst_lut = np.zeros(top, np.int64)
        for s in segs:  # a later segment with the same index wins (reported by the preflight rules)
            v = s["index"]
            if _is_crowd(s):
                cls_lut[v] = next(iter(lm.ignore), 255)
                continue
            cid = lm.background if s["label"] == "background" else by_name.get(s["label"])
            if cid is None:
                raise FormatError("bad_labelmap", f"{iid}: label {s['label']!r} is not in the label map")
            cls_lut[v] = cid
            if cid != lm.background:
                given = s["metadata"].get("instance_id", v + 1)
                ok = isinstance(given, int) and not isinstance(given, bool) and 0 <= given < 2**31
                inst_lut[v] = given if ok else v + 1  # instance_id 0: a region of its class, no instance
        cls = cls_lut[arr]
        inst = inst_lut[arr]
        cdt = np.uint8 if int(cls.max(initial=0)) <= 255 else np.uint16
        idt = np.uint16 if int(inst.max(initial=0)) <= 65535 else np.uint32
        h, w = arr.shape
        cm = MaskData(array=cls.astype(cdt), mode="L" if cdt == np.uint8 else "I;16", format="PNG", width=w, height=h,
                      bit_depth=8 if cdt == np.uint8 else 16, channels=1, source=source, extra={"derived": "nucleus"})
        im = MaskData(array=inst.astype(idt), mode="I;16", format="PNG", width=w, height=h, bit_depth=16, channels=1,
                      source=source, extra={"derived": "nucleus"})
        return cm, im

    def info(self) -> dict:
        return {**super().info(), "skipped_records": self.skipped}
