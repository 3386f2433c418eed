"""Layout ``coco_panoptic``: a COCO panoptic JSON + its folder of RGB id PNGs.

The PNG folder is ``masks=`` or, by COCO's convention, the JSON's path without
``.json`` (``annotations/panoptic_val2017.json`` -> ``annotations/panoptic_val2017/``).
Segment ids are ``R + 256 G + 65536 B`` (0 = void), read as uint32 into
``Item.instance_mask``; ``Item.segments`` is the annotation's ``segments_info``
list as in the file. ``Item.mask`` stays None: class maps are derived by jobs.

Items are the ``images`` records (see :mod:`.coco` for ``item_id``); an image
without a panoptic annotation has ``missing=['instance_mask']``; a PNG named in
the JSON but absent also gives ``missing=['instance_mask']``. Nothing is
reconciled here: a PNG whose size differs from its record (Datumaro's
``panoptic_train/a.png``, 5x5 vs 10x5) is returned as is, with
``extra['record_size']`` for the checker.

Manifest columns: those of :mod:`.coco` plus ``mask_file`` (the PNG's
``file_name`` from the first annotation of the image, null when none).
"""
from __future__ import annotations

import json
import os

import pyarrow as pa

from ..storage import is_url
from ._fs import Root, ask, join_target, norm_target
from .coco import _CocoBase
from .errors import FormatError
from .layouts import Item, read_root_mask

__all__ = ["PanopticDataset"]


def _is_int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v < hi


def _check_segments(segs, json_path: str, item_id: str) -> None:
    """Refuse ``segments_info`` no job can use: not a list, an entry that is not an object, a
    segment id that is not an integer a PNG can hold (0 .. 2**24 - 1), a ``category_id``
    that is not a 64-bit integer: ``FormatError('bad_segments')`` for that item."""
    if segs is None:
        return
    if not isinstance(segs, list):
        raise FormatError("bad_segments", f"{json_path}: image {item_id}: segments_info is "
                          f"{type(segs).__name__}, not a list", path=json_path)
    for k, s in enumerate(segs):
        if not isinstance(s, dict):
            raise FormatError("bad_segments", f"{json_path}: image {item_id}: segments_info[{k}] is "
                              f"{type(s).__name__}, not an object", path=json_path)
        sid, cat = s.get("id"), s.get("category_id")
        if not _is_int(sid, 0, 1 << 24):
            raise FormatError("bad_segments", f"{json_path}: image {item_id}: segments_info[{k}] id "
                              f"{str(sid)[:40]!s} is not an integer in 0..{(1 << 24) - 1} (R + 256 G + 65536 B)",
                              path=json_path)
        if not _is_int(cat, -(1 << 63), 1 << 63):
            raise FormatError("bad_segments", f"{json_path}: image {item_id}: segments_info[{k}] category_id "
                              f"{str(cat)[:40]!s} is not a 64-bit integer", path=json_path)


class PanopticDataset(_CocoBase):
    """COCO panoptic JSON + PNG folder.

    >>> # ds = open_dataset("annotations/panoptic_val2017.json", images="val2017")
    """

    layout = "coco_panoptic"
    panoptic = True

    def __init__(self, path, *, images=None, labelmap=None, cache_dir=None, masks=None):
        super().__init__(path, images=images, labelmap=labelmap, cache_dir=cache_dir)
        if masks is None:  # (a URL too: its path is split the same way)
            masks = os.path.splitext(self.json_path)[0]
        self.masks_dir = norm_target(masks)
        if images is None and self.images is not None and self.images.path == self.masks_dir:
            self.images = None  # the guess found the PNG folder itself (panoptic.json beside panoptic/)
        self._cache_png = None
        self._cache_png_dir = None

    def masks_present(self) -> bool:
        """Whether the PNG folder is there: asked once per process for a URL (a request), every
        item for a local folder (as it always was).

        >>> # open_dataset("s3://bucket/annotations/panoptic_val2017.json").masks_present()
        """
        if not is_url(self.masks_dir):
            return os.path.isdir(self.masks_dir)
        if self._cache_png_dir is None:
            from ..storage import Location

            loc = Location(self.masks_dir)
            self._cache_png_dir = ask(loc.is_dir, loc)
        return self._cache_png_dir

    def _png_root(self) -> Root:
        if self._cache_png is None:
            self._cache_png = Root(self.masks_dir)
        return self._cache_png

    def _build_manifest(self) -> pa.Table:
        base = super()._build_manifest()
        ann = self.annotations_table()
        starts = base.column("ann_start").to_numpy()
        counts = base.column("ann_count").to_numpy()
        names = ann.column("file_name")
        problems = ann.column("problem")
        mask_file = [names[int(s)].as_py() if c > 0 else None for s, c in zip(starts, counts)]
        # a PNG name that is not text makes the record unusable, as an image name does
        prob = [p if p is not None or c == 0 else problems[int(s)].as_py()
                for p, s, c in zip(base.column("problem").to_pylist(), starts, counts)]
        base = base.set_column(base.column_names.index("problem"), "problem", pa.array(prob, pa.string()))
        return base.append_column("mask_file", pa.array(mask_file, pa.string()))

    def prefetch(self, row: dict) -> list:
        """The PNG :meth:`read_item` fetches (a PNG folder at a URL; else nothing)."""
        fn = row.get("mask_file")
        if not fn or not is_url(self.masks_dir) or not self.masks_present():
            return []
        return self._png_root().prefetch(fn)

    def read_item(self, row: dict) -> Item:
        item = Item(item_id=row["item_id"])
        self._image(row, item)
        raws = self._raw_annotations(row)
        if not raws:
            item.missing.append("instance_mask")
            return item
        try:
            ann = json.loads(raws[0])
        except ValueError as e:
            raise FormatError("bad_json", f"{self.json_path}: annotation of {row['item_id']}: {e}") from None
        if len(raws) > 1:
            item.extra["duplicate_annotations"] = len(raws)
        segs = ann.get("segments_info")
        _check_segments(segs, self.json_path, row["item_id"])
        item.segments = segs if isinstance(segs, list) else None
        if segs is not None and not isinstance(segs, list):
            item.extra["bad_segments_info"] = True
        fn = row.get("mask_file")
        if not fn:
            item.missing.append("instance_mask")
            return item
        if not self.masks_present():
            item.missing.append("instance_mask")
            item.extra["expected_mask"] = join_target(self.masks_dir, fn)
            return item
        png = self._png_root()
        png.check(fn)
        if not png.exists(fn):
            item.missing.append("instance_mask")
            item.extra["expected_mask"] = png.display(fn)
            return item
        item.instance_mask = read_root_mask(png, fn, panoptic=True)
        return item
