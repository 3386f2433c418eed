"""Layout ``voc``: Pascal VOC / CVAT "Segmentation Mask" 1.1, as a folder or a zip.

::

    ImageSets/Segmentation/<split>.txt   one item id per line (train, val, trainval, default, ...)
    SegmentationClass/<id>.png           class mask: palette indices (VOC) or RGB colours (CVAT)
    SegmentationObject/<id>.png          instance mask: palette indices or VOC-colormap colours
    JPEGImages/<id>.jpg                  images (optional; ``images=`` overrides)
    labelmap.txt                         CVAT label map (optional; default: the VOC label map)

A zip whose entries all sit in one top folder is read from inside that folder.

Items are the union of the ids listed in ``ImageSets/Segmentation/*.txt`` and
the stems found in ``SegmentationClass/`` and ``SegmentationObject/`` (images
without any segmentation are not items: VOC ships 17k detection-only images).
An id listed without a mask file is an item with ``missing=['mask']``.

Class masks in RGB go through the label map's colours; object masks in RGB go
through the full VOC colormap (colour *i* = instance *i*, CVAT's convention).

Manifest columns: ``item_id``, ``splits`` (comma-joined split names, "" when
listed nowhere), ``class_path``, ``object_path``, ``image_path`` (relative,
null when absent).
"""
from __future__ import annotations

import posixpath

import pyarrow as pa

from ._fs import Root
from .errors import FormatError
from .labelmap import LabelMap
from .layouts import IMAGE_EXTENSIONS, MASK_EXTENSIONS, Dataset, Item, find_labelmap, header_size, read_root_mask, stem, zip_base

__all__ = ["VocDataset"]


class VocDataset(Dataset):
    """Pascal VOC / CVAT segmentation layout.

    >>> # ds = open_dataset("VOCdevkit/VOC2012"); ds.manifest().column("splits")
    """

    layout = "voc"

    def __init__(self, path, *, images=None, labelmap: LabelMap | None = None):
        super().__init__(path, labelmap)
        root = Root(path)
        base = zip_base(root)
        self.store = root.sub(base) if base else root
        self.images = Root(images) if images is not None else None
        if self.labelmap is None:
            self.labelmap = find_labelmap(self.store, "") or LabelMap.voc()
        self._cache_objmap = None
        # folder facts decided once here (a zip's namelist scan per item would be O(N^2))
        self.has_objects = self.store.isdir("SegmentationObject")
        self.has_jpeg = self.store.isdir("JPEGImages")

    def _build_manifest(self) -> pa.Table:
        s = self.store
        splits: dict[str, list[str]] = {}
        for f in s.files("ImageSets/Segmentation", recursive=False):
            if not f.endswith(".txt"):
                continue
            name = posixpath.basename(f)[:-4]
            try:
                text = s.read(f).decode("utf-8-sig")
            except UnicodeDecodeError as e:
                raise FormatError("unreadable", f"{s.display(f)}: not UTF-8 ({e})") from None
            for line in text.splitlines():
                tok = line.split()
                if tok:
                    splits.setdefault(tok[0], []).append(name)

        def by_stem(folder: str, exts) -> dict[str, str]:
            out: dict[str, str] = {}
            pre = folder + "/"
            for f in s.files(folder):
                if f.lower().endswith(exts):
                    key = stem(f[len(pre):]) if f.startswith(pre) else stem(f)
                    # first one wins (.png before .jpg by sort): a second file is not a second item
                    out.setdefault(key, f)
            return out

        cls = by_stem("SegmentationClass", MASK_EXTENSIONS)
        obj = by_stem("SegmentationObject", MASK_EXTENSIONS)
        if self.images is not None:
            imgs = {stem(f): f for f in self.images.files() if f.lower().endswith(IMAGE_EXTENSIONS)}
        else:
            imgs = by_stem("JPEGImages", IMAGE_EXTENSIONS)
        ids = sorted(set(splits) | set(cls) | set(obj))
        return pa.table({
            "item_id": pa.array(ids, pa.string()),
            "splits": pa.array([",".join(sorted(set(splits.get(i, [])))) for i in ids], pa.string()),
            "class_path": pa.array([cls.get(i) for i in ids], pa.string()),
            "object_path": pa.array([obj.get(i) for i in ids], pa.string()),
            "image_path": pa.array([imgs.get(i) for i in ids], pa.string()),
        })

    def _objmap(self) -> LabelMap:
        if self._cache_objmap is None:
            self._cache_objmap = LabelMap.voc(all_colors=True)
        return self._cache_objmap

    def prefetch(self, row: dict) -> list:
        """The class and object PNGs :meth:`read_item` fetches (a dataset at a URL; else nothing)."""
        return self.store.prefetch(row.get("class_path")) + self.store.prefetch(row.get("object_path"))

    def read_item(self, row: dict) -> Item:
        item = Item(item_id=row["item_id"], extra={"splits": row.get("splits") or ""})
        if row.get("class_path"):
            item.mask = read_root_mask(self.store, row["class_path"], labelmap=self.labelmap)
        else:
            item.missing.append("mask")
        if row.get("object_path"):
            item.instance_mask = read_root_mask(self.store, row["object_path"], labelmap=self._objmap())
        elif self.has_objects:
            item.missing.append("instance_mask")
        img_root = self.images if self.images is not None else self.store
        if row.get("image_path"):
            item.image_path = img_root.display(row["image_path"])
            item.image_size = header_size(img_root, row["image_path"], item.extra)
        elif self.images is not None or self.has_jpeg:
            item.missing.append("image")
        return item
