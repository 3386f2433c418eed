"""Layout ``labelbox``: a Labelbox NDJSON file (an export, or an import file) and its mask PNGs.

Two shapes are read, told apart line by line:

- **export** (export v2 / streamable export; one line per data row)::

      {"data_row": {"id", "global_key", "row_data"}, "media_attributes": {"height", "width"},
       "projects": {"<project id>": {"labels": [{"id", "annotations": {"objects": [...]}}]}}}

  A mask object (``annotation_kind: "ImageSegmentationMask"``) has a ``name`` and either
  ``composite_mask: {url, color_rgb}`` (one RGB PNG per label shared by its objects: a
  pixel of the object's colour is the object's) or, in older exports, ``mask: {url}`` (a
  0/255 PNG per object: a non-zero pixel is the object's). Other objects (boxes,
  polygons, ...) are counted in ``extra['labelbox']['ignored_objects']``.
- **import** (one line per annotation, what ``convert --to labelbox`` writes)::

      {"uuid", "dataRow": {"id" | "globalKey"}, "name" | "schemaId",
       "mask": {"instanceURI", "colorRGB"} | {"png": <base64 PNG of 0/1>}}

Items: one per data row (``item_id`` = the global key when there is one, else the data row
id; a data row listed twice is read from its first line, ``extra['labelbox']['duplicate_rows']``
counts the others), data rows without labels included (no annotations: all background when the export
gives the size, else ``missing=['mask']``). A data row with several labels uses the first;
``label=`` (``--labelbox-label``) picks another: an integer is a position (``0`` = first; a
data row with fewer labels is an error row ``label_not_found``), anything else a label id
(the data row holding it uses that label, the others their first).

Maps: ``Item.mask`` is the class map (ids from :func:`~._platforms.names_labelmap` over
every object name in the file: sorted names, 0 = background), ``Item.instance_mask``
the instance map (object *k* of the label, in file order, is instance *k*). Later objects
are drawn over earlier ones (composite masks have no overlaps). Mask files are found
beside the NDJSON (:func:`~._platforms.locate_mask`); a URL with no local copy is fetched
(Labelbox wants the API key: ``--storage-options '{"headers": {"Authorization": "Bearer <key>"}}'``),
a failed fetch is an error row with its storage code (an expired URL: ``expired_url``).
Facts for the preflight rules are in ``extra['labelbox']``.

Manifest columns: ``item_id``, ``data_row_id``, ``global_key``, ``label_id``, ``n_labels``,
``width``, ``height`` (null when not given), ``record`` (the chosen label, as JSON).
"""
from __future__ import annotations

import base64
import json
import os

import numpy as np
import pyarrow as pa

from ._fs import Root
from ..storage import Fetcher
from ._platforms import locate_mask, names_labelmap, open_rgb, read_json_records, read_platform_mask, remote_masks
from .errors import FormatError
from .labelmap import LabelMap
from .layouts import Dataset, Item
from .png import MaskData

__all__ = ["LabelboxDataset", "MASK_KIND"]

MASK_KIND = "ImageSegmentationMask"


def _object_name(o: dict) -> str | None:
    n = o.get("name") or o.get("title") or o.get("value") or o.get("feature_schema_id") or o.get("schemaId")
    return str(n) if n is not None else None


def _export_objects(label: dict) -> tuple[list[dict], int]:
    """Mask objects of an export label in neutral form, and the count of other objects."""
    anns = label.get("annotations") or {}
    objs = anns.get("objects") if isinstance(anns, dict) else None
    out, other = [], 0
    for o in objs or []:
        if not isinstance(o, dict):
            other += 1
            continue
        comp, mask = o.get("composite_mask"), o.get("mask")
        if isinstance(comp, dict) and comp.get("url"):
            out.append({"name": _object_name(o), "id": o.get("feature_id"), "url": comp["url"],
                        "color": comp.get("color_rgb")})
        elif isinstance(mask, dict) and (mask.get("url") or mask.get("instanceURI")):
            out.append({"name": _object_name(o), "id": o.get("feature_id"),
                        "url": mask.get("url") or mask.get("instanceURI"), "color": None})
        else:
            other += 1
    return out, other


def _import_object(line: dict) -> dict | None:
    m = line.get("mask")
    if not isinstance(m, dict):
        return None
    name = line.get("name") or line.get("schemaId")
    if m.get("instanceURI"):
        return {"name": str(name) if name is not None else None, "id": line.get("uuid"), "url": m["instanceURI"],
                "color": m.get("colorRGB")}
    if m.get("png"):
        return {"name": str(name) if name is not None else None, "id": line.get("uuid"), "png": m["png"],
                "color": None}
    return None


def _labels(rec: dict) -> list[dict]:
    out = []
    projects = rec.get("projects") or {}
    for p in (projects.values() if isinstance(projects, dict) else []):
        for lab in (p.get("labels") or []) if isinstance(p, dict) else []:
            if isinstance(lab, dict):
                out.append(lab)
    return out


def _choose(labels: list[dict], label: str | None) -> tuple[dict | None, str | None]:
    """(chosen label, error message) for one data row."""
    if not labels:
        return None, None
    if label is None:
        return labels[0], None
    if label.lstrip("-").isdigit():
        k = int(label)
        if 0 <= k < len(labels):
            return labels[k], None
        return None, f"label #{k} asked, the data row has {len(labels)}"
    for lab in labels:
        if str(lab.get("id")) == label:
            return lab, None
    return labels[0], None


class LabelboxDataset(Dataset):
    """A Labelbox NDJSON export (or import file) and the mask PNGs beside it.

    >>> # ds = open_dataset("export.ndjson", layout="labelbox", label="0")
    """

    layout = "labelbox"

    def __init__(self, path, *, images=None, labelmap: LabelMap | None = None, label: str | int | None = None):
        super().__init__(path, labelmap)
        if not os.path.isfile(self.root):
            raise FormatError("missing_file", f"{self.root}: no such file", path=self.root)
        self.path = self.root
        self.label = None if label is None else str(label)
        self.images = Root(images) if images is not None else None
        self._cache_root = None
        self.fetcher = Fetcher()  # masks by URL: the storage options, prefetch and cache of this run
        self.labelmap_from_names = False
        names: set = set()
        self._rows(names)
        if self.labelmap is None:  # every label's names, whichever label is chosen: stable ids
            self.labelmap = names_labelmap(names, source=f"labelbox names ({os.path.basename(self.path)})")
            self.labelmap_from_names = True

    def _store(self) -> Root:
        if self._cache_root is None:
            self._cache_root = Root(os.path.dirname(self.path))
        return self._cache_root

    def _rows(self, names: set | None = None) -> list[dict]:
        """Manifest rows; ``names`` (when given) receives the class names of every label."""
        rows_by_id: dict[str, dict] = {}
        for n, rec in enumerate(read_json_records(self.path), 1):
            if isinstance(rec.get("data_row"), dict):
                dr = rec["data_row"]
                key = dr.get("global_key") or dr.get("id")
                if key is None:
                    raise FormatError("bad_json", f"{self.path}: line {n}: data_row without id or global_key")
                if str(key) in rows_by_id:  # a data row listed twice: the first line is read
                    rows_by_id[str(key)]["record"]["duplicate_rows"] = \
                        rows_by_id[str(key)]["record"].get("duplicate_rows", 0) + 1
                    continue
                media = rec.get("media_attributes") or {}
                labels = _labels(rec)
                if names is not None:
                    names.update(o["name"] for lab in labels for o in _export_objects(lab)[0] if o.get("name"))
                chosen, err = _choose(labels, self.label)
                objs, other = _export_objects(chosen) if chosen else ([], 0)
                record = {"objects": objs, "ignored_objects": other, "error": err,
                          "row_data": dr.get("row_data")}
                rows_by_id[str(key)] = {"item_id": str(key), "data_row_id": dr.get("id"),
                                        "global_key": dr.get("global_key"),
                                        "label_id": chosen.get("id") if chosen else None, "n_labels": len(labels),
                                        "width": media.get("width"), "height": media.get("height"),
                                        "record": record}
            elif isinstance(rec.get("dataRow"), dict):
                dr = rec["dataRow"]
                key = dr.get("globalKey") or dr.get("id")
                if key is None:
                    raise FormatError("bad_json", f"{self.path}: line {n}: dataRow without id or globalKey")
                row = rows_by_id.setdefault(str(key), {
                    "item_id": str(key), "data_row_id": dr.get("id"), "global_key": dr.get("globalKey"),
                    "label_id": None, "n_labels": 1, "width": None, "height": None,
                    "record": {"objects": [], "ignored_objects": 0, "error": None, "row_data": None}})
                obj = _import_object(rec)
                if obj is not None and names is not None and obj.get("name"):
                    names.add(obj["name"])
                if obj is None:
                    row["record"]["ignored_objects"] += 1
                else:
                    row["record"]["objects"].append(obj)
            else:
                raise FormatError("bad_json", f"{self.path}: line {n}: neither an export row (data_row) nor an "
                                  "import annotation (dataRow)", path=self.path)
        for r in rows_by_id.values():
            r["record"] = json.dumps(r["record"])
        return list(rows_by_id.values())

    def _build_manifest(self) -> pa.Table:
        rows = self._rows()
        cols = ("item_id", "data_row_id", "global_key", "label_id", "record")
        table = {c: pa.array([r[c] if r[c] is None else str(r[c]) for r in rows], pa.string()) for c in cols}
        for c in ("n_labels", "width", "height"):
            table[c] = pa.array([r[c] if isinstance(r[c], int) else None for r in rows], pa.int64())
        return pa.table(table)

    # ------------------------------------------------------------------ reading
    def _read_png(self, obj: dict, cache: dict, facts: list) -> tuple[np.ndarray, dict]:
        key = obj["_key"]
        if key in cache:
            return cache[key]
        if "png" in obj:
            try:
                data = base64.b64decode(obj["png"], validate=True)
            except (ValueError, TypeError):
                raise FormatError("bad_json", f"{self.path}: object {obj.get('id')}: mask.png is not base64") from None
            name = f"{self.path}: mask.png of {obj.get('id')}"
        else:
            data, name = read_platform_mask(self._store(), obj["url"], self.fetcher)
        arr, f = open_rgb(data, name, rgb=True)
        f = {**f, "url": obj.get("url") or "mask.png", "size": [int(arr.shape[1]), int(arr.shape[0])]}
        facts.append(f)
        cache[key] = (arr, f)
        return cache[key]

    def prefetch(self, row: dict) -> list:
        """The mask URLs of ``row`` without a local copy: ``[(fetcher, location)]``."""
        rec = json.loads(row["record"])
        if rec.get("error"):
            return []
        return remote_masks(self._store(), [o.get("url") for o in rec["objects"]], self.fetcher)

    def read_item(self, row: dict) -> Item:
        rec = json.loads(row["record"])
        item = Item(item_id=row["item_id"])
        if rec.get("error"):
            raise FormatError("label_not_found", f"{row['item_id']}: {rec['error']}")
        w, h = row.get("width"), row.get("height")
        size = (int(w), int(h)) if w and h else None
        info = {"data_row_size": list(size) if size else None, "masks": [], "absent": [], "unclaimed": [],
                "ignored_objects": rec.get("ignored_objects", 0), "overlap_pixels": 0, "objects": len(rec["objects"]),
                "duplicate_rows": rec.get("duplicate_rows", 0)}
        item.extra["labelbox"] = info
        self._image(rec.get("row_data"), item)
        cache: dict = {}
        for i, obj in enumerate(rec["objects"]):
            obj["_key"] = obj.get("url") or f"png#{i}"
            self._read_png(obj, cache, info["masks"])
        sizes = {tuple(f["size"]) for f in info["masks"]}
        if len(sizes) > 1:
            raise FormatError("unreadable", f"{row['item_id']}: the masks of one label differ in size: "
                              + ", ".join(f"{a}x{b}" for a, b in sorted(sizes)))
        shape = next(iter(sizes), size)
        if shape is None:
            item.missing.append("mask")
            return item
        mw, mh = shape
        cls, inst = _paint_objects(rec["objects"], cache, self.labelmap, (mh, mw), info, row["item_id"])
        item.mask = MaskData(array=cls, mode="L" if cls.dtype == np.uint8 else "I;16", format="PNG", width=mw,
                             height=mh, bit_depth=cls.dtype.itemsize * 8, channels=1, source=self.path,
                             extra={"derived": "labelbox"})
        item.image_size = _header_size(item)
        item.instance_mask = MaskData(array=inst, mode="I;16", format="PNG", width=mw, height=mh, bit_depth=16,
                                      channels=1, source=self.path, extra={"derived": "labelbox"})
        return item

    def _image(self, row_data, item: Item) -> None:
        """The data row's image when a copy lies beside the NDJSON (or in ``images=``); never an error."""
        if not isinstance(row_data, str) or not row_data:
            return
        for root in ([self.images] if self.images is not None else []) + [self._store()]:
            try:
                rel = locate_mask(root, row_data)
            except FormatError:
                continue
            if root.exists(rel):
                item.image_path = root.display(rel)
                return

    def info(self) -> dict:
        return {**super().info(), "label": self.label}


def _color_of(obj: dict, item_id: str) -> tuple[int, int, int]:
    c = obj.get("color")
    if not (isinstance(c, list) and len(c) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)):
        raise FormatError("bad_json", f"{item_id}: object {obj.get('id')}: colour {c!r} is not [r, g, b] in 0..255")
    return (c[0], c[1], c[2])


def _paint_objects(objects: list[dict], cache: dict, lm: LabelMap, shape: tuple[int, int], info: dict,
                   item_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Class and instance maps of a label's objects (object *k* = instance *k*).

    A composite mask is matched once for all its colours (one sorted lookup over its pixels)
    and painted when its first object comes; a per-object mask (any non-black pixel) when its
    object comes: later over earlier. Fills ``info``: absent objects, unclaimed colours,
    overlap pixels, each mask file's ``composite`` flag.
    """
    by_name = {n: i for i, n in lm.names.items()}
    classes = np.zeros(len(objects) + 1, np.int64)
    for k, obj in enumerate(objects, 1):
        cid = lm.background if obj.get("name") == "background" else by_name.get(obj.get("name"))
        if cid is None:  # a label map given by the user without this name
            raise FormatError("bad_labelmap", f"{item_id}: class {obj.get('name')!r} is not in the label map")
        classes[k] = cid
    cls = np.zeros(shape, np.uint16 if max(lm.names, default=0) > 255 else np.uint8)
    inst = np.zeros(shape, np.uint16 if len(objects) < 65535 else np.uint32)
    groups: dict[str, dict[tuple, int]] = {}  # composite url -> colour -> object (the last one claiming it)
    for k, obj in enumerate(objects, 1):
        if obj.get("color") is not None:
            groups.setdefault(obj["_key"], {})[_color_of(obj, item_id)] = k
    counts = np.zeros(len(objects) + 1, np.int64)
    painted: set = set()

    def paint(kmap: np.ndarray) -> None:
        sel = kmap > 0
        info["overlap_pixels"] += int(np.count_nonzero(inst[sel]))
        inst[sel] = kmap[sel]
        cls[sel] = classes[kmap[sel]]

    for k, obj in enumerate(objects, 1):
        arr = cache[obj["_key"]][0]
        if obj["_key"] in groups:
            if obj["_key"] in painted:
                continue
            painted.add(obj["_key"])
            colors = groups[obj["_key"]]
            key = (arr[..., 0].astype(np.uint32) << 16) | (arr[..., 1].astype(np.uint32) << 8) | arr[..., 2]
            ck = np.array(sorted((c[0] << 16) | (c[1] << 8) | c[2] for c in colors), np.uint32)
            kk = np.array([colors[(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255)] for v in ck], np.int64)
            pos = np.minimum(np.searchsorted(ck, key), ck.size - 1)
            hit = ck[pos] == key
            kmap = np.where(hit, kk[pos], 0)
            counts += np.bincount(kmap.reshape(-1), minlength=len(objects) + 1)
            paint(kmap)
            rest = key[~hit & (key != 0)]
            if rest.size:
                vals, n = np.unique(rest, return_counts=True)
                info["unclaimed"] += [{"color": [int(v >> 16), int((v >> 8) & 255), int(v & 255)], "pixels": int(c),
                                       "url": cache[obj["_key"]][1]["url"]} for v, c in zip(vals.tolist(), n.tolist())]
        else:
            px = arr.any(axis=-1)
            counts[k] = int(np.count_nonzero(px))
            paint(np.where(px, k, 0))
    for k, obj in enumerate(objects, 1):
        if counts[k] == 0 or (obj["_key"] in groups and groups[obj["_key"]].get(_color_of(obj, item_id)) != k):
            info["absent"].append({"name": obj.get("name"), "color": obj.get("color"),
                                   "url": cache[obj["_key"]][1]["url"], "id": obj.get("id")})
    for key, (_, f) in cache.items():
        f["composite"] = key in groups
    return cls, inst


def _header_size(item: Item) -> tuple[int, int] | None:
    """The image's size when a copy of it was found (the data row's size is checked by ``labelbox_size``)."""
    if not item.image_path:
        return None
    from .png import read_image_size

    try:
        with open(item.image_path, "rb") as f:
            return read_image_size(f)
    except (OSError, FormatError):
        return None
