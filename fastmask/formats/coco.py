"""Layout ``coco``: a COCO instances (or stuff) JSON, plus an optional images folder.

The JSON is parsed once into Arrow (see :mod:`._cocojson`): the manifest is the
``images`` table (one row per image record, annotation-less images included)
and each row carries ``ann_start``/``ann_count`` into the memory-mapped
annotations table, so reading an item touches only its own annotations.

- Ids of any JSON type: an annotation belongs to the image whose ``id`` equals its
  ``image_id`` as a JSON value (numbers by value, strings exactly: ``"1"`` is not ``1``).
- ``item_id``: a non-negative integer id zero-padded to 12 digits (``000000139077``)
  so string order is numeric order; a plain string id (``[A-Za-z0-9._-]``, not only
  digits) as it is (``frankfurt_000000_000294``); any other id ``~`` + its JSON text
  (``~-5``, ``~1.5``, ``~null``; other strings ``~~`` + the string), percent-encoded so
  that every item id is a safe file name; a repeated image id gets ``#2``, ``#3``...
  (:func:`fastmask.formats._cocojson.item_ids`).
- A record whose ``width`` / ``height`` are not positive integers is refused for that
  item: ``FormatError('bad_size')`` (no mask can be painted or compared).
- ``images=``: where ``file_name`` is resolved. Default: the first existing of
  ``<root>/<split>``, ``<root>/images/<split>``, ``<root>/images`` where the JSON
  is ``<root>/annotations/<kind>_<split>.json``; none -> no image checks.
  A ``file_name`` that is absolute or climbs out with ``..`` (or a symlink that
  leads out) is refused for that item: ``FormatError('path_outside_root')``.
- Label map: ``labelmap=`` or the file's ``categories``.
- An image record declaring more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS``
  (89,478,485 by default) is refused for that item: ``FormatError('decompression_bomb')``
  (jobs would allocate masks of that size).

Manifest columns: ``item_id``, ``image_id`` (int64, null if not an integer that fits),
``image_key`` (the id's canonical JSON text: ``5``, ``"a"``; null without an id),
``file_name``, ``width``, ``height`` (from the record), ``ann_start``,
``ann_count``, ``problem`` (why the record cannot be used, or null). ``Item.annotations`` is the list of that image's annotation
dicts exactly as in the file; ``Item.extra['record_size']`` is the record's (w, h).
"""
from __future__ import annotations

import json
import os
import posixpath

import pyarrow as pa
from PIL import Image

from . import _cocojson
from ..storage import Location, is_url
from ._fs import Root, ask, join_target, norm_target, parent_target, path_kind, relative_target
from .errors import FormatError
from .labelmap import LabelMap
from .layouts import Dataset, Item, header_size

__all__ = ["CocoDataset", "find_coco_json", "guess_images_dir"]


def find_coco_json(path: str, *, panoptic: bool | None = None) -> str:
    """The JSON file itself, or the single COCO JSON in a folder (or its ``annotations/``)."""
    from .layouts import _dir_jsons, _json_kind

    p = norm_target(path)
    kind = path_kind(p)
    if kind == "file":
        return p
    if kind != "dir":
        raise FormatError("missing_file", f"{p}: no such file or folder", path=p)
    want = {True: ("coco_panoptic",), False: ("coco",), None: ("coco", "coco_panoptic")}[panoptic]
    found = [j for j in _dir_jsons(p) if _json_kind(j) in want]
    if len(found) != 1:
        raise FormatError("unknown_layout", f"{p}: expected exactly one COCO JSON, found {len(found)}"
                          + (": " + ", ".join(relative_target(j, p) for j in found) if found else ""), path=p)
    return found[0]


def guess_images_dir(json_path: str) -> str | None:
    """The images folder of a COCO JSON by COCO's layout (a local folder or a URL prefix), or None.

    >>> guess_images_dir("/no/such/annotations/instances_val2017.json") is None
    True
    """
    d = parent_target(json_path)
    root = parent_target(d) if posixpath.basename(d.rstrip("/")) == "annotations" else d
    stem = posixpath.splitext(posixpath.basename(json_path))[0] if is_url(json_path) else \
        os.path.splitext(os.path.basename(json_path))[0]
    split = stem.split("_", 1)[1] if "_" in stem else stem
    for cand in (join_target(root, split), join_target(root, "images", split), join_target(root, "images")):
        if cand != d and (ask(Location(cand).is_dir, Location(cand)) if is_url(cand) else os.path.isdir(cand)):
            return cand
    return None


class _CocoBase(Dataset):
    """Shared by instances and panoptic: cache handling, images root, label map."""

    panoptic = False

    def __init__(self, path, *, images=None, labelmap: LabelMap | None = None, cache_dir: str | None = None):
        self._labelmap = None
        super().__init__(path, labelmap)
        self.json_path = find_coco_json(path, panoptic=self.panoptic)
        images = images if images is not None else guess_images_dir(self.json_path)
        self.images: Root | None = Root(images) if images is not None else None
        self.cache_dir = cache_dir
        self.cache: str | None = None
        self._given_labelmap = labelmap is not None
        self._cache_meta = None

    def __getstate__(self):
        # The parsed cache's folder is a path of this machine: a worker (another machine, no
        # shared disk) finds or builds its own from the JSON's path or URL (prepare()).
        state = super().__getstate__()
        state["cache"] = None
        return state

    # labelmap is filled from the file's categories on first use
    @property
    def labelmap(self) -> LabelMap | None:
        if self._labelmap is None and not getattr(self, "_given_labelmap", True):
            cats = self.meta().get("categories")
            if cats:
                self._labelmap = LabelMap.from_coco_categories(cats, source=f"{self.json_path}#categories")
        return self._labelmap

    @labelmap.setter
    def labelmap(self, value):
        self._labelmap = value

    def prepare(self, cache_dir: str | None = None) -> str:
        """Parse the JSON into the Arrow cache (once; reused across processes and runs).

        >>> # ds = open_dataset("instances_val2017.json"); ds.prepare(); pickle.dumps(ds)
        """
        if cache_dir is not None:
            self.cache_dir = cache_dir
        if self.cache is None or not os.path.isfile(os.path.join(self.cache, "meta.json")):
            self.cache = _cocojson.build_cache(self.json_path, self.cache_dir)
        return self.cache

    def meta(self) -> dict:
        """Dataset-level facts from the parse: counts, categories, orphan/duplicate ids."""
        if self._cache_meta is None:
            with open(os.path.join(self.prepare(), "meta.json")) as f:
                self._cache_meta = json.load(f)
        return self._cache_meta

    def info(self) -> dict:
        m = self.meta()
        out = super().info()
        out.update({k: m[k] for k in ("json", "n_images", "n_annotations", "n_orphan_annotations",
                                      "orphan_image_ids_sample", "duplicate_image_ids",
                                      "duplicate_annotation_ids", "images_without_integer_id")})
        return out

    def annotations_table(self) -> pa.Table:
        """The memory-mapped annotations table (sorted by image_id)."""
        return _cocojson.open_table(os.path.join(self.prepare(), "annotations.arrow"))

    def orphan_annotations(self) -> list[dict]:
        """Annotations whose image_id matches no image record (for ``unknown_image`` checks)."""
        t = self.annotations_table()
        start = int(self.meta().get("n_matched_annotations", 0))
        # integer literals beyond Python's limit come back as digit strings (they were matched as such)
        return [_cocojson._LONG_DECODER.decode(r) for r in t.column("raw").slice(start).to_pylist()]

    def _build_manifest(self) -> pa.Table:
        t = _cocojson.open_table(os.path.join(self.prepare(), "images.arrow"))
        return t.select(["item_id", "image_id", "image_key", "file_name", "width", "height", "ann_start",
                         "ann_count", "problem"])

    def _raw_annotations(self, row: dict) -> list[str]:
        n = int(row.get("ann_count") or 0)
        if n == 0:
            return []
        t = self.annotations_table()
        return t.column("raw").slice(int(row["ann_start"]), n).to_pylist()

    def _image(self, row: dict, item: Item) -> None:
        if row.get("problem"):  # "code: message", from the parse
            code, _, msg = row["problem"].partition(": ")
            raise FormatError(code, f"{self.json_path}: image {item.item_id}: {msg}", path=self.json_path)
        rec = (row.get("width"), row.get("height"))
        if any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in rec):
            raise FormatError("bad_size", f"{self.json_path}: image {item.item_id}: width {rec[0]!r}, height "
                              f"{rec[1]!r}: positive integers expected", path=self.json_path)
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and rec[0] * rec[1] > limit:
            # jobs allocate record-sized masks (rasterized annotations): same limit as a PNG's declared size
            raise FormatError("decompression_bomb", f"{self.json_path}: image {item.item_id} declares "
                              f"{rec[0]}x{rec[1]} pixels, above the limit of {limit} (Pillow's "
                              "Image.MAX_IMAGE_PIXELS)", path=self.json_path)
        item.extra["record_size"] = rec
        item.extra["image_id"] = _cocojson.key_value(row.get("image_key"))
        item.extra["file_name"] = row.get("file_name")
        if self.images is None:
            item.image_size = item.extra["record_size"]
            return
        fn = row.get("file_name")
        if not fn:
            item.missing.append("image")
            return
        self.images.check(fn)  # refuses absolute / '..' / outside symlinks before any access
        if self.images.exists(fn):
            item.image_path = self.images.display(fn)
            item.image_size = header_size(self.images, fn, item.extra)
        else:
            item.missing.append("image")
            item.extra["expected_image"] = self.images.display(fn)


class CocoDataset(_CocoBase):
    """COCO instances JSON (+ images folder).

    >>> # ds = open_dataset("annotations/instances_val2017.json", images="val2017")
    >>> # ds.read_item(ds.manifest().slice(0, 1).to_pylist()[0]).annotations
    """

    layout = "coco"

    def read_item(self, row: dict) -> Item:
        item = Item(item_id=row["item_id"])
        self._image(row, item)
        try:
            item.annotations = [json.loads(r) for r in self._raw_annotations(row)]
        except ValueError as e:  # cannot happen for a cache we wrote; a damaged cache is still an error row
            raise FormatError("bad_json", f"{self.json_path}: annotation of {row['item_id']}: {e}") from None
        return item
