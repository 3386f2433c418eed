"""Layout ``cleanzip``: ``images/ masks/ coco/ index.csv meta.json``, as a folder or a zip.

``index.csv`` (optional; UTF-8, header row) lists the items::

    item_id,image,mask,width,height,split
    0001,images/0001.jpg,masks/0001.png,640,480,train

Only ``image`` or ``mask`` is required per row (paths relative to the root);
``item_id`` defaults to the mask's (else the image's) stem under its folder;
other columns are kept as strings in the manifest. Without ``index.csv``,
``images/`` and ``masks/`` are paired by stem as in the ``masks`` layout.
Files in ``masks/`` that the index does not list are still items
(``in_index=False``): nothing is dropped silently.

``meta.json`` (optional)::

    {"format": "fastmask-cleanzip", "version": 1, "task": "semantic",
     "mask_encoding": "png-index",            # or "png-rgb", "png-instance16"
     "labels": [{"id": 0, "name": "background", "color": [0, 0, 0]}, ...],
     "ignore": [255], "background": 0}

``labels`` follows the label-map JSON schema (``classes`` is accepted as a
synonym: a list of names or of label objects). ``"has_images": false`` says the
dataset holds masks only (``fastmask convert`` writes it when no source image was
copied): an item without an image is then not ``missing=['image']`` (an image the
index names and the folder lacks still is, and ``images=`` overrides it).
``coco/`` may hold a COCO JSON; its relative path is in ``info()['coco_json']``
(annotations are read through the ``coco`` layout, not attached here).

Manifest columns: ``item_id``, ``image_path``, ``mask_path``, ``in_index``,
``width``, ``height`` (int64 from the index, null when absent), ``split``, and
any other index columns (strings).
"""
from __future__ import annotations

import csv
import io
import json

import pyarrow as pa

from ._fs import Root
from .errors import FormatError
from .labelmap import LabelMap
from .layouts import IMAGE_EXTENSIONS, MASK_EXTENSIONS, Dataset, Item, header_size, read_root_mask, stem, zip_base
from .maskdir import pair_by_stem

__all__ = ["CleanZipDataset"]


class CleanZipDataset(Dataset):
    """Clean-zip layout (folder or zip).

    >>> # ds = open_dataset("export.zip"); ds.meta["task"]
    """

    layout = "cleanzip"

    def __init__(self, path, *, images=None, labelmap: LabelMap | None = None):
        super().__init__(path, labelmap)
        root = Root(path)
        base = zip_base(root)
        self.store = root.sub(base) if base else root
        self.images = Root(images) if images is not None else None
        self.meta: dict = {}
        if self.store.exists("meta.json"):
            try:
                self.meta = json.loads(self.store.read("meta.json").decode("utf-8-sig"))
            except (ValueError, UnicodeDecodeError) as e:
                raise FormatError("bad_json", f"{self.store.display('meta.json')}: {e}") from None
            if not isinstance(self.meta, dict):
                raise FormatError("bad_json", f"{self.store.display('meta.json')}: not a JSON object")
        if self.labelmap is None:
            self.labelmap = self._meta_labelmap()
        cocos = [f for f in self.store.files("coco") if f.lower().endswith(".json")]
        self.coco_json = cocos[0] if len(cocos) == 1 else None

    def _meta_labelmap(self) -> LabelMap | None:
        m = dict(self.meta)
        if "labels" not in m and "classes" in m:
            classes = m["classes"]
            if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
                m["labels"] = {str(i): c for i, c in enumerate(classes)}
            else:
                m["labels"] = classes
        if not any(k in m for k in ("labels", "label_map", "categories")):
            return None
        return LabelMap.from_json(m, source=self.store.display("meta.json"))

    def info(self) -> dict:
        out = super().info()
        out.update({"task": self.meta.get("task"), "mask_encoding": self.meta.get("mask_encoding"),
                    "coco_json": self.coco_json})
        return out

    def _index_rows(self) -> list[dict]:
        s = self.store
        try:
            text = s.read("index.csv").decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise FormatError("bad_index", f"{s.display('index.csv')}: not UTF-8 ({e})") from None
        reader = csv.DictReader(io.StringIO(text))
        rows = []
        try:  # csv.Error: a field over csv.field_size_limit() (131,072 characters), a NUL byte, ...
            if not reader.fieldnames or not ({"image", "mask"} & set(reader.fieldnames)):
                raise FormatError("bad_index", f"{s.display('index.csv')}: header needs an 'image' or 'mask' column")
            for n, r in enumerate(reader, 2):
                if None in r:
                    raise FormatError("bad_index", f"{s.display('index.csv')}:{n}: more fields than the header")
                rows.append({k: (v if v != "" else None) for k, v in r.items()})
        except csv.Error as e:
            raise FormatError("bad_index", f"{s.display('index.csv')}:{reader.line_num}: {e}") from None
        return rows

    def _build_manifest(self) -> pa.Table:
        s = self.store
        masks = [f for f in s.files("masks") if f.lower().endswith(MASK_EXTENSIONS)]
        if self.images is not None:
            images = [f for f in self.images.files() if f.lower().endswith(IMAGE_EXTENSIONS)]
        else:
            images = [f for f in s.files("images") if f.lower().endswith(IMAGE_EXTENSIONS)]
        out: list[dict] = []
        if s.exists("index.csv"):
            rows = self._index_rows()
            listed = set()
            for r in rows:
                m, im = r.get("mask"), r.get("image")
                iid = r.get("item_id") or _under_stem(m or im or "")
                if not iid:
                    raise FormatError("bad_index", f"{s.display('index.csv')}: a row without item_id, image or mask")
                listed.update(x for x in (m, im) if x)
                out.append({**r, "item_id": iid, "mask_path": m, "image_path": im, "in_index": True})
            taken = {r["item_id"] for r in out}
            for m in masks:
                if m not in listed:
                    iid = _under_stem(m)
                    out.append({"item_id": iid if iid not in taken else "unlisted:" + m, "mask_path": m,
                                "image_path": None, "in_index": False})
        else:
            under = "masks/"
            rel = [m[len(under):] if m.startswith(under) else m for m in masks]
            img_under = "" if self.images is not None else "images/"
            irel = [i[len(img_under):] if img_under and i.startswith(img_under) else i for i in images]
            for iid, m, im in pair_by_stem(rel, irel):
                out.append({"item_id": iid, "mask_path": under + m if m else None,
                            "image_path": (img_under + im) if im else None, "in_index": False})
        ids = [r["item_id"] for r in out]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise FormatError("bad_index", f"{s.display('index.csv')}: item_id {dup!r} appears twice")
        extra_cols = sorted({k for r in out for k in r} - {"item_id", "mask_path", "image_path", "in_index",
                                                          "mask", "image", "width", "height", "split"})
        cols = {
            "item_id": pa.array(ids, pa.string()),
            "image_path": pa.array([r.get("image_path") for r in out], pa.string()),
            "mask_path": pa.array([r.get("mask_path") for r in out], pa.string()),
            "in_index": pa.array([r["in_index"] for r in out], pa.bool_()),
            "width": pa.array([_int_or_none(r.get("width")) for r in out], pa.int64()),
            "height": pa.array([_int_or_none(r.get("height")) for r in out], pa.int64()),
            "split": pa.array([r.get("split") for r in out], pa.string()),
        }
        for c in extra_cols:
            cols[c] = pa.array([r.get(c) for r in out], pa.string())
        return pa.table(cols)

    def prefetch(self, row: dict) -> list:
        """The mask object :meth:`read_item` fetches (a dataset at a URL; else nothing)."""
        return self.store.prefetch(row.get("mask_path"))

    def read_item(self, row: dict) -> Item:
        item = Item(item_id=row["item_id"], extra={"in_index": row.get("in_index")})
        if row.get("width") is not None and row.get("height") is not None:
            item.extra["record_size"] = (row["width"], row["height"])
        m = row.get("mask_path")
        if m and self.store.exists(m):
            item.mask = read_root_mask(self.store, m, labelmap=self.labelmap)
        else:
            item.missing.append("mask")
        im = row.get("image_path")
        img_root = self.images if self.images is not None else self.store
        if im and img_root.exists(im):
            item.image_path = img_root.display(im)
            item.image_size = header_size(img_root, im, item.extra)
        elif im or self.has_images:
            item.missing.append("image")
        return item

    @property
    def has_images(self) -> bool:
        """False when ``meta.json`` says ``"has_images": false`` and no ``images=`` folder was given."""
        return self.images is not None or self.meta.get("has_images", True) is not False


def _under_stem(rel: str) -> str:
    """'masks/a/b.png' -> 'a/b' (the top folder is the layout's, not the item's)."""
    parts = rel.split("/", 1)
    return stem(parts[1] if len(parts) == 2 and parts[0] in ("masks", "images") else rel)


def _int_or_none(v) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise FormatError("bad_index", f"index.csv: width/height {v!r} is not an integer") from None
