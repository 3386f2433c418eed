"""Layout ``masks``: a folder (or zip) of mask images, optionally paired with images by stem.

- The path may be the mask folder itself, or a folder holding ``masks/`` (and
  then ``images/`` next to it is used unless ``images=`` is given).
- Masks are found recursively; ``item_id`` is the mask's relative path without
  extension (``city/a_gtFine_labelIds``). Two masks with the same stem and
  different extensions keep their extension in the id.
- Pairing with images (relative stem first, then after removing a known mask
  suffix such as ``_gt``/``_mask``/``_label``, then by base name when unique).
  Images without a mask become items too (``missing=['mask']``); masks without
  an image get ``missing=['image']`` when an images folder is in use.
- Label map: ``labelmap=``, else the first of ``labelmap.json``, ``labelmap.txt``,
  ``dataset_meta.json``, ``class_names.txt``, ``labels.txt`` in the mask folder
  or its parent, else none (RGB masks then use the VOC colormap, see :mod:`.png`).

Manifest columns: ``item_id``, ``mask_path``, ``image_path`` (relative to
their roots, null when absent).
"""
from __future__ import annotations

import os
import posixpath
from collections import defaultdict
from collections.abc import Iterable

import pyarrow as pa

from ._fs import Root, parent_target
from .errors import FormatError
from .labelmap import LabelMap
from .layouts import (IMAGE_EXTENSIONS, MASK_EXTENSIONS, Dataset, Item, find_labelmap, header_size,
                      read_root_mask, stem, zip_base)

__all__ = ["MaskDirDataset", "pair_by_stem", "MASK_SUFFIXES"]

#: suffixes stripped from a mask stem to find its image (``0001_gt.png`` <-> ``0001.jpg``)
MASK_SUFFIXES = ("_gtFine_labelIds", "_gtFine_labelTrainIds", "_gtFine_instanceIds", "_gt", "_mask",
                 "_masks", "_label", "_labels", "_labelIds", "_seg", "_segmentation", "_annotation")


def _unique_ids(paths: list[str]) -> dict[str, str]:
    """rel path -> item id (stem, or the full name when two files share a stem)."""
    by_stem: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        by_stem[stem(p)].append(p)
    out = {}
    for s, ps in by_stem.items():
        for p in ps:
            out[p] = s if len(ps) == 1 else p
    return out


def pair_by_stem(masks: list[str], images: list[str]) -> list[tuple[str, str | None, str | None]]:
    """[(item_id, mask_rel, image_rel)], union of both lists, each file used once.

    >>> pair_by_stem(["a.png", "b_gt.png"], ["a.jpg", "b.jpg", "c.jpg"])
    [('a', 'a.png', 'a.jpg'), ('b_gt', 'b_gt.png', 'b.jpg'), ('c', None, 'c.jpg')]
    """
    mask_ids = _unique_ids(masks)
    img_by_stem: dict[str, list[str]] = defaultdict(list)
    img_by_base: dict[str, list[str]] = defaultdict(list)
    for im in images:
        img_by_stem[stem(im)].append(im)
        img_by_base[posixpath.basename(stem(im))].append(im)
    used: set[str] = set()
    rows = []

    def pick(cands: list[str]) -> str | None:
        free = [c for c in cands if c not in used]
        return free[0] if len(free) == 1 else None  # ambiguous pairing is no pairing

    for m in masks:
        s = stem(m)
        keys = [s] + [s[: -len(suf)] for suf in MASK_SUFFIXES if s.endswith(suf) and len(s) > len(suf)]
        im = None
        for k in keys:
            im = pick(img_by_stem.get(k, []))
            if im:
                break
        if im is None:
            for k in keys:
                im = pick(img_by_base.get(posixpath.basename(k), []))
                if im:
                    break
        if im:
            used.add(im)
        rows.append((mask_ids[m], m, im))
    taken = {r[0] for r in rows}
    for im, iid in _unique_ids([i for i in images if i not in used]).items():
        if iid in taken:
            iid = "image:" + im  # never collide with a mask's id
        rows.append((iid, None, im))
    rows.sort(key=lambda r: r[0])
    return rows


def _unpaired_manifest(chunks: Iterable[list[str]]) -> pa.Table | None:
    """The manifest of masks without images when every stem is unique (the usual case), built
    in Arrow a folder at a time (``chunks``: lists of names, e.g. :meth:`Root.iter_files`):
    :func:`pair_by_stem`'s dicts and tuples cost ~0.3 KB per file in the driver (a million
    masks: +300 MB while listing). None: some stems repeat, pair the careful way."""
    import pyarrow.compute as pc

    ids, paths = [], []
    for names in chunks:
        masks = [f for f in names if f.lower().endswith(MASK_EXTENSIONS)]
        ids.append(pa.array([stem(m) for m in masks], pa.string()))
        paths.append(pa.array(masks, pa.string()))
    ids = pa.chunked_array(ids, pa.string()).combine_chunks()
    if len(ids) and pc.count_distinct(ids).as_py() != len(ids):
        return None
    return pa.table({"item_id": ids, "mask_path": pa.chunked_array(paths, pa.string()).combine_chunks(),
                     "image_path": pa.nulls(len(ids), pa.string())})


class MaskDirDataset(Dataset):
    """A folder (or zip) of masks, optionally paired with images.

    >>> # open_dataset("gtFine/", layout="masks", images="leftImg8bit/")
    """

    layout = "masks"

    def __init__(self, path, *, images=None, labelmap: LabelMap | None = None, masks_subdir: str | None = None):
        super().__init__(path, labelmap)
        root = Root(path)
        base = zip_base(root)
        if base:
            root = root.sub(base)
        if masks_subdir is None:
            masks_subdir = "masks" if root.isdir("masks") else ""
        self.masks = root.sub(masks_subdir) if masks_subdir else root
        self.images: Root | None = None
        if images is not None:
            self.images = Root(images)
        elif masks_subdir and root.isdir("images"):
            self.images = root.sub("images")
        if self.labelmap is None:
            self.labelmap = find_labelmap(root, masks_subdir, "") if masks_subdir else find_labelmap(root, "")
            if self.labelmap is None and not root.is_zip:
                parent = parent_target(self.root)
                if parent and parent != self.root:
                    try:
                        self.labelmap = find_labelmap(Root(parent), "")
                    except FormatError:
                        self.labelmap = None

    def _build_manifest(self) -> pa.Table:
        # unsafe zip entries (``../x.png``) stay in the list: read_item refuses them, so they are reported
        if self.images is None:
            table = _unpaired_manifest(self.masks.iter_files())
            if table is not None:
                return table
        masks = [f for f in self.masks.files() if f.lower().endswith(MASK_EXTENSIONS)]
        imgs = [f for f in self.images.files() if f.lower().endswith(IMAGE_EXTENSIONS)] if self.images else []
        rows = pair_by_stem(masks, imgs)
        return pa.table({
            "item_id": pa.array([r[0] for r in rows], pa.string()),
            "mask_path": pa.array([r[1] for r in rows], pa.string()),
            "image_path": pa.array([r[2] for r in rows], pa.string()),
        })

    def prefetch(self, row: dict) -> list:
        """The mask object :meth:`read_item` fetches (a dataset at a URL; else nothing)."""
        return self.masks.prefetch(row.get("mask_path"))

    def read_item(self, row: dict) -> Item:
        item = Item(item_id=row["item_id"])
        if row.get("mask_path"):
            item.mask = read_root_mask(self.masks, row["mask_path"], labelmap=self.labelmap)
        else:
            item.missing.append("mask")
        if self.images is not None:
            if row.get("image_path"):
                item.image_path = self.images.display(row["image_path"])
                item.image_size = header_size(self.images, row["image_path"], item.extra)
            else:
                item.missing.append("image")
        return item
