"""The ``convert`` job: any layout ``open_dataset`` reads -> masks, VOC, COCO, COCO panoptic, clean zip, Nucleus,
Labelbox (the two platform targets: :mod:`.convert_platforms`).

Every source item is first read into one neutral form (:class:`SourceItem`): a class
map, an instance map (when the source has instances) and a list of segments
(category, crowd flag, instance id, full-resolution RLE). Workers write the per-item
files (PNGs) into ``<out>/dataset/`` and per-item JSON records into the report's
``records`` table; :func:`assemble` then writes the files that span the dataset
(COCO JSON, panoptic JSON, ``labelmap.txt``, split lists, ``index.csv``,
``meta.json``, the Nucleus segment table) by streaming the report's parts, so
memory is bounded by a shard. Items that cannot be converted are error rows; the
run goes on and they are left out of the output.

How sources become segments:

- **COCO**: the annotations as they are (ids, categories, crowd); class map painted
  in ``coco`` mode, later annotations on top, crowd -> ignore value; instance ids are
  an annotation's ``instance_id`` field when present, else 1, 2, ... in file order
  (skipping the ignore value).
- **COCO panoptic**: one segment per ``segments_info`` entry; the class map gives every
  segment its category (crowd included), void stays 0. A segment id is unique within its
  image only, so a COCO output numbers the annotations (no duplicate ids across images)
  and keeps the segment id as ``segment_id``; a panoptic output uses ``segment_id``
  (from either source) as the PNG id, so ids survive panoptic -> COCO -> panoptic.
- **masks with an instance map** (VOC ``SegmentationObject``; the ``labelbox`` and
  ``nucleus`` layouts, read as class + instance maps): one segment per
  instance id (category = the class most of its pixels have), one per class for
  class pixels outside every instance, and the ignore pixels as one crowd segment
  with ``category_id`` = the ignore value.
- **class masks only** (``masks``, ``cleanzip``, VOC without objects): one segment
  per class present (COCO-stuff style) and the ignore pixels as one crowd segment.

The output folder (``out_dir``) may be a URL (``s3://bucket/run``) or a
:class:`~fastmask.storage.Location`: workers then upload the per-item files straight
there, :func:`assemble` uploads each dataset-wide file whole, and ``--zip`` streams the
uploaded files into one zip built locally and uploaded at the end.

Example::

    ds = open_dataset("VOCdevkit/VOC2012")
    job = ConvertJob(ds, "coco", "out/")
    result = run_job(job, job.manifest(), "out/")
    assemble(job, result.out_dir)          # writes out/dataset/annotations.json
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from .. import storage
from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import UNKNOWN_ID, Dataset, FormatError, LabelMap
from ..formats import layout_writers as lw
from .listing import listing_summary
from .schema import bbox_row

FORMATS = ("masks", "voc", "coco", "coco_panoptic", "cleanzip", "nucleus", "labelbox")
DATASET_DIR = "dataset"
#: the columns :meth:`ConvertJob.manifest` adds to the dataset's manifest
_ADDED_COLUMNS = ("position", "out_name", "name_clash")


@dataclass
class SourceItem:
    """One item in neutral form (see the module docstring)."""

    item_id: str
    height: int
    width: int
    class_map: np.ndarray
    instance_map: np.ndarray | None
    segments: list[dict] = field(default_factory=list)  # id, category_id, iscrowd, instance_id, rle, segmentation
    image_path: str | None = None
    image_id: Any = None
    file_name: str | None = None
    splits: list[str] = field(default_factory=list)
    kind: str = "semantic"  # semantic | instances | panoptic (what the source held)


def _int64(v) -> int | None:
    """An id that fits the int64 ``annotation_id`` column, else None (see ``annotation_key``)."""
    return v if type(v) is int and -(2**63) <= v < 2**63 else None


def _key(v) -> str | None:
    from ..formats._cocojson import id_key

    return id_key(v)


def _image_id(row: dict) -> Any:
    """A COCO / panoptic image id as the JSON value of the source (string, integer, ...)."""
    from ..formats._cocojson import key_value

    return key_value(row.get("image_key"))


def _encode(binary: np.ndarray) -> dict:
    from .. import rle as fr

    return fr.encode(binary.view(np.uint8) if binary.dtype == np.bool_ else binary.astype(np.uint8, copy=False))


def _present(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, pixel counts) of a non-negative integer array, bincount when the values are small."""
    flat = a.reshape(-1)
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    hi = int(flat.max())
    if int(flat.min()) >= 0 and hi < (1 << 20):
        counts = np.bincount(flat, minlength=hi + 1)
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(flat, return_counts=True)


def _check_mask(md, what: str, item_id: str) -> np.ndarray:
    if md.unknown_colors:
        cols = ", ".join(f"{c}: {n} px" for c, n in md.unknown_colors[:5])
        raise ItemError("unknown_color", f"{item_id}: {what} has colours not in the label map ({cols})")
    return md.array


def _segments_from_maps(class_map: np.ndarray, inst: np.ndarray | None, background: int | None,
                        ignore: int | None) -> list[dict]:
    """Segments of a class map (+ instance map): a partition of the labelled pixels.

    Ignore pixels (ignore in the class or the instance map) -> one crowd segment; else a
    pixel with an instance id -> that instance (category: the class most of its pixels
    have); else a class pixel -> one segment per class. Background is no segment.
    """
    from .. import rle as fr

    cls = class_map
    if cls.dtype.kind not in "iu" or (cls.size and int(cls.min()) < 0):
        raise ItemError("not_convertible", "class ids must be non-negative integers")
    from ..kernels.segments import segment_keys

    n_cls = int(cls.max()) + 1 if cls.size else 1
    m = int(inst.max()) + 1 if inst is not None and inst.size else 1
    if ignore is not None and ignore >= n_cls:
        n_cls = ignore + 1  # keys m + c stay below the ignore key
    top = m + n_cls
    key = segment_keys(np.ascontiguousarray(cls), np.ascontiguousarray(inst if inst is not None else cls),
                       inst is not None, -1 if background is None else background, background is not None,
                       -1 if ignore is None else ignore, ignore is not None, m, n_cls)
    values, _ = _present(key)
    cats: dict[int, int] = {}
    if inst is not None:
        inst_vals = values[(values > 0) & (values < m)]
        if inst_vals.size:
            sel = (key > 0) & (key < m)
            joint_v, joint_n = _present(key[sel] * n_cls + cls[sel])
            best: dict[int, tuple[int, int]] = {}
            for v, n in zip(joint_v.tolist(), joint_n.tolist()):
                i, c = divmod(v, n_cls)
                if c == background or c == ignore:
                    continue
                if (n, c) > best.get(i, (0, -1)):
                    best[i] = (n, c)
            cats = {i: c for i, (_, c) in best.items()}
    rles = fr.encode_labelmap(key, [int(v) for v in values if v != 0], background=0)
    segs: list[dict] = []
    for v in values.tolist():
        if v == 0:
            continue
        if v < m:
            if v not in cats:
                continue  # an instance only on background pixels: not a segment
            segs.append({"id": None, "category_id": int(cats[v]), "iscrowd": 0, "instance_id": int(v),
                         "rle": rles[v]})
        elif v < top:
            segs.append({"id": None, "category_id": int(v - m), "iscrowd": 0, "instance_id": 0, "rle": rles[v]})
        else:
            segs.append({"id": None, "category_id": int(ignore), "iscrowd": 1, "instance_id": int(ignore),
                         "rle": rles[v]})
    return segs


def read_source(dataset: Dataset, row: dict, *, ignore_value: int | None = 255,
                background: int | None = 0, instance_map: bool = True, segments: bool = True,
                fill: str = "coco") -> SourceItem:
    """Read one manifest row into a :class:`SourceItem`; raises :class:`ItemError` when impossible.

    ``fill``: the polygon fill mode of COCO sources (see :data:`fastmask.raster.MODES`).

    ``instance_map=False`` skips painting COCO instance maps (``SourceItem.instance_map`` is None);
    ``segments=False`` skips the segments of mask layouts (only the maps are wanted).
    """
    from ..raster import rasterize_annotations

    try:
        item = dataset.read_item(row)
    except FormatError as e:
        raise ItemError(e.code, e.message) from None
    iid = str(row["item_id"])
    if item.extra.get("unmapped_values"):  # mask values no segment names (nucleus): no class to give them
        raise ItemError("unmapped_value", f"{iid}: mask values without a segment: {item.extra['unmapped_values'][:20]}")
    splits = [s for s in (item.extra.get("splits") or row.get("split") or "").split(",") if s]
    ign = 255 if ignore_value is None else ignore_value
    if item.annotations is not None:  # COCO
        w, h = row.get("width"), row.get("height")
        if not w or not h:
            raise ItemError("unreadable", f"{iid}: the COCO image record has no usable width/height")
        h, w = int(h), int(w)
        anns = item.annotations
        inst_ids, k = [], 1
        for a in anns:
            if isinstance(a, dict) and a.get("iscrowd"):
                inst_ids.append(0)
                continue
            given = a.get("instance_id") if isinstance(a, dict) else None
            if isinstance(given, int) and not isinstance(given, bool) and given >= 0:  # 0: not an instance
                inst_ids.append(given)
                continue
            if k == ign:
                k += 1
            inst_ids.append(k)
            k += 1
        try:
            r = rasterize_annotations(anns, h, w, kind="semantic", crowd="ignore", ignore_value=ign, fill=fill)
            ri = rasterize_annotations(anns, h, w, kind="semantic", values=inst_ids, crowd="ignore",
                                       ignore_value=ign, fill=fill) if instance_map else None
        except (ValueError, TypeError) as e:
            raise ItemError("invalid_annotation", f"{iid}: {e}") from None
        segs = []
        for i, a in enumerate(anns):
            segs.append({"id": a.get("id"), "category_id": int(a["category_id"]),
                         "iscrowd": 1 if a.get("iscrowd") else 0, "instance_id": int(inst_ids[i]),
                         "rle": r.rle(i), "segmentation": a.get("segmentation"), "source": a})
        return SourceItem(iid, h, w, r.mask, ri.mask if ri is not None else None, segs, item.image_path,
                          _image_id(row),
                          row.get("file_name"), splits, "instances")
    if item.segments is not None or dataset.layout == "coco_panoptic":  # panoptic
        if item.instance_mask is None:
            raise ItemError("missing_mask", f"{iid}: no panoptic PNG")
        ids = item.instance_mask.array.astype(np.int64)
        h, w = ids.shape
        rec = item.extra.get("record_size")
        if rec and tuple(rec) != (w, h):
            raise ItemError("size_mismatch", f"{iid}: panoptic PNG is {w}x{h}, the image record says {rec[0]}x{rec[1]}")
        from .. import rle as fr

        segs = []
        present = set(_present(ids)[0].tolist())
        sids, scats = [], []
        for s in item.segments or []:
            try:
                sid, cat = int(s["id"]), int(s["category_id"])
            except (KeyError, TypeError, ValueError):
                raise ItemError("bad_segments", f"{iid}: a segments_info entry without integer id/category_id") from None
            if sid not in present or sid == 0:
                raise ItemError("segment_mismatch", f"{iid}: segment {sid} has no pixel in the PNG")
            if sid in sids:
                raise ItemError("segment_mismatch", f"{iid}: segment id {sid} appears twice in segments_info")
            sids.append(sid)
            scats.append(cat)
            # a segment id is unique in its image only: not an annotation id (COCO output numbers
            # them), kept as ``segment_id`` so that a panoptic output keeps the PNG ids
            segs.append({"id": None, "segment_id": sid, "category_id": cat,
                         "iscrowd": 1 if s.get("iscrowd") else 0, "instance_id": sid})
        missing = present - {0} - set(sids)
        if missing:
            raise ItemError("segment_mismatch", f"{iid}: PNG ids without a segment: {sorted(missing)[:10]}")
        rles = fr.encode_labelmap(ids, sids, background=0) if sids else {}
        for seg in segs:
            seg["rle"] = rles[seg["segment_id"]]
        # class map: void -> 0, each segment id -> its category (sorted lookup, one pass)
        order = np.argsort(np.array([0, *sids], np.int64), kind="stable")
        keys = np.array([0, *sids], np.int64)[order]
        vals = np.array([0, *scats], np.int64)[order]
        class_map = vals[np.searchsorted(keys, ids)]
        from ..components import instance_dtype

        cm = class_map.astype(instance_dtype(int(class_map.max(initial=0))))
        return SourceItem(iid, h, w, cm, ids, segs, item.image_path, _image_id(row),
                          row.get("file_name"), splits, "panoptic")
    if item.mask is None:
        raise ItemError("missing_mask", f"{iid}: no class mask")
    cm = _check_mask(item.mask, "the class mask", iid)
    inst = None
    if item.instance_mask is not None:
        inst = _check_mask(item.instance_mask, "the instance mask", iid)
        if inst.shape != cm.shape:
            raise ItemError("size_mismatch", f"{iid}: instance mask {inst.shape[::-1]} vs class mask {cm.shape[::-1]}")
    if (cm == UNKNOWN_ID).any() and cm.dtype == np.uint16 and item.mask.mode in ("RGB", "RGBA"):
        raise ItemError("unknown_color", f"{iid}: class mask has colours not in the label map")
    h, w = cm.shape
    segs = _segments_from_maps(cm, inst, background, ignore_value) if segments else []
    return SourceItem(iid, h, w, cm, inst, segs, item.image_path, None, None, splits,
                      "instances" if inst is not None else "semantic")


def _paint(segs: list[dict], h: int, w: int, values: list[int], dtype=np.int64) -> np.ndarray:
    from .. import rle as fr

    if not segs:
        return np.zeros((h, w), dtype)
    return fr.decode_labelmap([s["rle"] for s in segs], values).astype(dtype, copy=False)


def _rle_json(r: dict) -> dict:
    c = r["counts"]
    return {"size": [int(v) for v in r["size"]], "counts": c.decode("ascii") if isinstance(c, bytes) else c}


class ConvertJob(Job):
    """Convert one dataset into ``to`` (one of :data:`FORMATS`); per-item files go to ``<out>/dataset``."""

    name = "convert"
    item_schema = pa.schema([
        ("width", pa.int32()), ("height", pa.int32()), ("image_id", pa.int64()), ("image_key", pa.string()),
        ("n_segments", pa.int32()),
        ("mask_file", pa.string()), ("instance_file", pa.string()), ("image_file", pa.string()),
        ("splits", pa.string()), ("name", pa.string()), ("renamed", pa.bool_()),
    ])
    tables: ClassVar[dict[str, pa.Schema]] = {
        "records": pa.schema([("kind", pa.string()), ("json", pa.string())]),
        "segments": pa.schema([
            ("index", pa.int32()), ("annotation_id", pa.int64()), ("annotation_key", pa.string()),
            ("category_id", pa.int64()), ("label", pa.string()),
            ("instance_id", pa.int64()), ("iscrowd", pa.bool_()), ("area", pa.int64()),
            ("bbox_x", pa.int64()), ("bbox_y", pa.int64()), ("bbox_w", pa.int64()), ("bbox_h", pa.int64()),
            ("metadata", pa.string()),
        ]),
    }

    def __init__(self, dataset: Dataset, to: str, out_dir: str | os.PathLike, *, coco_encoding: str = "polygons",
                 tolerance: float = 0.0, connectivity: int = 8, ignore_value: int | None = 255,
                 background: int | None = 0, zip_output: bool = False, fill: str = "coco",
                 mask_url_prefix: str | None = None, data_row_key: str = "globalKey", mask_format: str = "auto",
                 keep_folder: bool = False):
        from ..raster import MODES

        if to not in FORMATS:
            raise ValueError(f"unknown target format {to!r}; one of {', '.join(FORMATS)}")
        if coco_encoding not in ("polygons", "rle"):
            raise ValueError(f"coco_encoding must be 'polygons' or 'rle', got {coco_encoding!r}")
        if connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
        if not (float(tolerance) >= 0):
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        if zip_output and to not in ("voc", "cleanzip"):
            raise ValueError("a .zip output is for voc and cleanzip")
        if keep_folder and not zip_output:
            raise ValueError("keep_folder (--keep-folder) goes with a .zip output (--zip)")
        if mask_format not in ("auto", *lw.MASK_FORMATS):
            raise ValueError(f"mask_format must be auto, png16 or tiff32, got {mask_format!r}")
        if mask_format != "auto" and to != "masks":
            raise ValueError("a mask format (--format) applies to --to masks (its instances/ folder); "
                             f"{to} writes PNGs only")
        if fill not in MODES:
            raise ValueError(f"fill must be one of {MODES}, got {fill!r}")
        from .convert_platforms import DATA_ROW_KEYS

        if data_row_key not in DATA_ROW_KEYS:
            raise ValueError(f"data_row_key must be one of {', '.join(DATA_ROW_KEYS)}, got {data_row_key!r}")
        self.mask_url_prefix = mask_url_prefix or None
        self.data_row_key = data_row_key
        self._dataset = dataset
        self._out = storage.location(out_dir)  # a Location: it travels to workers with its storage options
        self.to = to
        self.coco_encoding = coco_encoding
        self.tolerance = float(tolerance)
        self.connectivity = int(connectivity)
        self.ignore_value = ignore_value
        self.background = background
        self.zip_output = bool(zip_output)
        self.keep_folder = bool(keep_folder)
        self.fill = fill
        self.format = mask_format
        #: the format of the ``instances/`` id maps (``--to masks``), chosen before the first write:
        #: panoptic segment ids are 24-bit (``tiff32``); other sources number instances per image (``png16``)
        self.mask_format = (mask_format if mask_format != "auto"
                            else "tiff32" if dataset.layout == "coco_panoptic" else "png16")

    def arguments(self) -> dict[str, Any]:
        return {"dataset": self._dataset.root, "layout": self._dataset.layout, "to": self.to,
                "coco_encoding": self.coco_encoding, "tolerance": self.tolerance, "connectivity": self.connectivity,
                "ignore_value": self.ignore_value, "background": self.background, "zip_output": self.zip_output,
                "fill": self.fill, **self._platform_arguments(), **self._format_arguments()}

    def _format_arguments(self) -> dict[str, Any]:
        """The id-map format, recorded only for ``--to masks`` (the one target with id maps)."""
        return {"format": self.format, "mask_format": self.mask_format} if self.to == "masks" else {}

    def _platform_arguments(self) -> dict[str, Any]:
        """The platform options, recorded only for the platform targets."""
        if self.to == "labelbox":
            return {"mask_url_prefix": self.mask_url_prefix, "data_row_key": self.data_row_key}
        if self.to == "nucleus":
            return {"mask_url_prefix": self.mask_url_prefix}
        return {}

    @property
    def dataset_dir(self):
        """The converted dataset's folder: a :class:`~pathlib.Path`, or a
        :class:`~fastmask.storage.Location` for a URL."""
        return storage.as_path(self._dir)

    @property
    def _dir(self) -> storage.Location:
        return self._out / DATASET_DIR

    def manifest(self) -> pa.Table:
        """The dataset's manifest plus ``position`` (row number: image ids of non-COCO sources)
        and ``out_name``, each item's output name (:func:`output_names`: unique)."""
        m = self._dataset.manifest()
        m = m.append_column("position", pa.array(np.arange(m.num_rows, dtype=np.int64)))
        files = m.column("file_name").to_pylist() if "file_name" in m.column_names else None
        names, bases = output_names(m.column("item_id").to_pylist(), files)
        m = m.append_column("out_name", pa.array(names, pa.string()))
        return m.append_column("name_clash", pa.array([n != b for n, b in zip(names, bases)], pa.bool_()))

    def reuse_manifest(self, table: pa.Table) -> None:
        """A resumed run's saved manifest: the dataset takes it back (without the columns
        :meth:`manifest` added; its listing facts ride in the schema metadata) and is not listed."""
        self._dataset.reuse_manifest(table.drop_columns([c for c in _ADDED_COLUMNS if c in table.column_names]))

    def _label(self, cat: int) -> str:
        lm = self._dataset.labelmap
        return lm.names.get(cat, f"class_{cat}") if lm else f"class_{cat}"

    # ------------------------------------------------------------------ per item
    def prefetch(self, item: dict[str, Any]) -> list:
        """The remote objects reading ``item`` needs (fetched ahead by the engine)."""
        return self._dataset.prefetch(item)

    def process(self, row: dict[str, Any]) -> ItemResult:
        src = read_source(self._dataset, row, fill=self.fill, ignore_value=self.ignore_value, background=self.background,
                          instance_map=self.to in ("masks", "voc"))
        # the source's id, whatever its JSON type; sources without ids are numbered by position
        image_id = src.image_id if src.image_id is not None else int(row["position"]) + 1
        rel = row.get("out_name") or _base_name(src.item_id, src.file_name)
        d = self._dir
        h, w = src.height, src.width
        fields = {"width": w, "height": h, "n_segments": len(src.segments),
                  "image_id": image_id if type(image_id) is int and -(2**63) <= image_id < 2**63 else None,
                  "image_key": json.dumps(image_id),
                  "splits": ",".join(src.splits), "name": rel, "renamed": bool(row.get("name_clash"))}
        records: list[dict] = []
        seg_rows: list[dict] = []
        ext = os.path.splitext(src.image_path)[1].lower() if src.image_path else ""
        file_name = src.file_name or (rel + (ext or ".jpg"))  # no image: COCO still needs a file name
        image_rec = {"id": image_id, "file_name": file_name, "width": w, "height": h}
        try:
            if self.to == "masks":
                fields["mask_file"] = self._write_class(d / "masks" / (rel + ".png"), src, rel)
                if src.kind != "semantic":
                    ids = self._instance_map(src)
                    try:
                        fields["instance_file"] = self._write_ids("instances", rel, ids)
                    except lw.FormatOverflow:
                        raise ItemError("format_overflow", f"{src.item_id}: instance id {int(ids.max())} does not fit "
                                        "a 16-bit PNG, the format of this run's instances folder (png16, one format "
                                        "per folder); rerun with --format tiff32") from None
            elif self.to == "voc":
                pal = self._voc_palette()
                cm = src.class_map
                if cm.size and int(cm.max()) > 255:
                    raise ItemError("too_many_classes", f"{src.item_id}: class ids above 255 do not fit a VOC PNG")
                lw.write_class_map(d / "SegmentationClass" / (rel + ".png"), cm, palette=pal)
                fields["mask_file"] = "SegmentationClass/" + rel + ".png"
                if src.kind != "semantic":
                    om = self._voc_objects(src)
                    lw.write_class_map(d / "SegmentationObject" / (rel + ".png"), om, palette="voc")
                    fields["instance_file"] = "SegmentationObject/" + rel + ".png"
            elif self.to in ("coco", "cleanzip"):
                records.append({"kind": "image", "json": json.dumps(image_rec)})
                for s in src.segments:
                    records.append({"kind": "annotation", "json": json.dumps(self._coco_annotation(s, image_id))})
                if self.to == "cleanzip":
                    fields["mask_file"] = self._write_class(d / "masks" / (rel + ".png"), src, rel)
                    fields["image_file"] = self._copy_image(src, d, rel)
            elif self.to == "coco_panoptic":
                ids, infos = self._panoptic(src)
                png = rel + ".png"
                lw.write_panoptic_png(d / "panoptic" / png, ids)
                fields["mask_file"] = "panoptic/" + png
                records.append({"kind": "image", "json": json.dumps(image_rec)})
                records.append({"kind": "panoptic", "json": json.dumps(
                    {"image_id": image_id, "file_name": png, "segments_info": infos})})
            elif self.to in ("nucleus", "labelbox"):
                from .convert_platforms import labelbox_item, nucleus_item

                make = nucleus_item if self.to == "nucleus" else labelbox_item
                fields["mask_file"], records, seg_rows = make(self, src, rel)
        except ValueError as e:  # a writer refused the data (ids out of range, ...)
            raise ItemError("not_convertible", f"{src.item_id}: {e}") from None
        except FormatError as e:  # the storage refused a write (forbidden, no such bucket, ...)
            raise ItemError(e.code, e.message) from None
        if self.to not in ("nucleus", "labelbox"):
            from .. import rle as fr

            for i, s in enumerate(src.segments, 1):
                seg_rows.append({"index": i, "annotation_id": _int64(s["id"]), "annotation_key": _key(s["id"]),
                                 "category_id": s["category_id"], "label": self._label(s["category_id"]),
                                 "instance_id": s["instance_id"], "iscrowd": bool(s["iscrowd"]),
                                 "area": int(fr.area(s["rle"])), **bbox_row(fr.toBbox(s["rle"])),
                                 "metadata": None})
        return ItemResult(fields, {"records": records, "segments": seg_rows})

    def _write_ids(self, folder: str, rel: str, ids: np.ndarray) -> str:
        """An id map as ``<folder>/<rel>.png`` (png16) or ``.tif`` (tiff32), the run's one format; the path
        relative to the dataset."""
        name = lw.write_id_map(self._dir / folder / rel, ids, fmt=self.mask_format)
        parent = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
        return f"{folder}/{parent}{name}"

    def _voc_palette(self):
        pal = getattr(self, "_cache_palette", None)
        if pal is None:
            pal = self._cache_palette = _palette(self._dataset.labelmap)
        return pal

    def _write_class(self, path: storage.Location, src: SourceItem, rel: str) -> str:
        cm = src.class_map
        if cm.size and (int(cm.min()) < 0 or int(cm.max()) > 65535):
            raise ItemError("not_convertible", f"{src.item_id}: class ids outside 0..65535")
        lw.write_class_map(path, cm)
        return f"masks/{rel}.png"

    def _instance_map(self, src: SourceItem) -> np.ndarray:
        if src.instance_map is not None:
            return src.instance_map
        return _paint(src.segments, src.height, src.width, [s["instance_id"] for s in src.segments])

    def _voc_objects(self, src: SourceItem) -> np.ndarray:
        ign = 255 if self.ignore_value is None else self.ignore_value
        im = src.instance_map
        if im is not None and src.kind == "instances" and (im.size == 0 or int(im.max()) <= 255):
            return im.astype(np.uint8)
        # renumber 1, 2, ... (skipping the ignore value); crowd segments paint the ignore value
        vals, k = [], 1
        for s in src.segments:
            if s["iscrowd"]:
                vals.append(ign)
                continue
            if k == ign:
                k += 1
            vals.append(k)
            k += 1
        if k > 256:
            raise ItemError("too_many_instances", f"{src.item_id}: {k - 1} instances do not fit a VOC object PNG")
        return _paint(src.segments, src.height, src.width, vals).astype(np.uint8)

    def _coco_annotation(self, s: dict, image_id: Any) -> dict:
        from .. import rle as fr
        from ..contours import coco_segmentation

        seg = s.get("segmentation")
        if isinstance(seg, list) and seg and self.coco_encoding == "polygons":
            pass  # COCO polygons of the source are kept as they are
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), str):
            pass  # compressed RLE of the source, kept
        elif s["iscrowd"] or self.coco_encoding == "rle" or seg is not None:
            seg = _rle_json(s["rle"])  # RLE asked for, crowd, or a source RLE in uncompressed form
        else:
            seg, _ = coco_segmentation(fr.decode(s["rle"]), connectivity=self.connectivity,
                                       tolerance=self.tolerance)
        out = {"id": s["id"] if isinstance(s["id"], int) else None, "image_id": image_id,
               "category_id": s["category_id"], "segmentation": seg, "area": int(fr.area(s["rle"])),
               "bbox": [float(v) for v in fr.toBbox(s["rle"])], "iscrowd": int(s["iscrowd"])}
        source = s.get("source")
        if source is not None:  # a COCO source: its other fields (and its area/bbox when seg is kept) stay
            kept = source.get("segmentation") is seg
            out = {**source, **{k: v for k, v in out.items() if not (kept and k in ("area", "bbox") and k in source)}}
            out["id"] = source.get("id")
        if s.get("instance_id") is not None and not s["iscrowd"]:
            out["instance_id"] = int(s["instance_id"])  # kept so that instance maps come back with the same ids
        if s.get("segment_id") is not None:
            out["segment_id"] = int(s["segment_id"])  # a panoptic source's PNG id (annotation ids are renumbered)
        return out

    def _panoptic(self, src: SourceItem) -> tuple[np.ndarray, list[dict]]:
        from ..formats.writers import panoptic_segments

        ids, used, k = [], set(), 1
        for s in src.segments:
            # the source's segment id (panoptic, or a COCO file written from one), else its annotation id
            cand = s.get("segment_id")
            if cand is None and isinstance(s.get("source"), dict):
                cand = s["source"].get("segment_id")
            if cand is None:
                cand = s["id"]
            ok = isinstance(cand, int) and not isinstance(cand, bool) and 0 < cand < (1 << 24)
            sid = cand if ok else None
            if sid is None or sid in used:
                while k in used:
                    k += 1
                sid = k
            used.add(sid)
            ids.append(sid)
        png = _paint(src.segments, src.height, src.width, ids, np.uint32)  # later on top, crowd included
        segs = [{"id": sid, "category_id": s["category_id"], "iscrowd": s["iscrowd"]}
                for s, sid in zip(src.segments, ids)]
        # area and bbox measured on the PNG; segments hidden entirely by later ones are left out
        return png, panoptic_segments(png, segs)

    def _copy_image(self, src: SourceItem, d: storage.Location, rel: str) -> str | None:
        p = src.image_path
        if not p or not storage.location(p).is_file():
            return None
        ext = os.path.splitext(storage.location(p).name if storage.is_url(p) else p)[1].lower()
        name = "images/" + rel + ext
        target = lw.output_path(d / name)
        if storage.is_url(p):  # a remote image: its bytes (read limit, retries) to the target
            lw.atomic_write(target, storage.location(p).read_bytes())
        elif isinstance(target, storage.Location):
            storage.put_file(p, target)
        else:
            from ..formats.writers import atomic_output

            with atomic_output(target) as tmp:  # never half an image under the final name
                shutil.copyfile(p, tmp)
        return name

    # ------------------------------------------------------------------ reduces
    def reduce_shard(self, shard: ShardResult) -> dict:
        segs = shard.tables["segments"]
        cats = sorted({v for v in segs.column("category_id").to_pylist() if v is not None})
        ann_ids = [v for v in segs.column("annotation_id").to_pylist() if v is not None]
        items = shard.items
        sizes: dict[str, int] = {}
        for w, h in zip(items.column("width").to_pylist(), items.column("height").to_pylist()):
            if w is not None:
                sizes[f"{w}x{h}"] = sizes.get(f"{w}x{h}", 0) + 1
        things = sorted({c for c, i, crowd in zip(segs.column("category_id").to_pylist(),
                                                   segs.column("instance_id").to_pylist(),
                                                   segs.column("iscrowd").to_pylist()) if i and not crowd})
        renamed = sum(1 for r in items.column("renamed").to_pylist() if r)
        images = sum(1 for r in items.column("image_file").to_pylist() if r)
        return {"categories": cats, "things": things, "max_annotation_id": max(ann_ids, default=0),
                "segments": segs.num_rows, "sizes": sizes, "renamed": renamed, "images_copied": images}

    def finalize(self, summaries: list[dict]) -> dict:
        cats = sorted({c for s in summaries for c in s["categories"]})
        sizes: dict[str, int] = {}
        for s in summaries:
            for k, v in s["sizes"].items():
                sizes[k] = sizes.get(k, 0) + v
        return {"to": self.to, "categories": cats, "things": sorted({c for s in summaries for c in s["things"]}),
                "max_annotation_id": max((s["max_annotation_id"] for s in summaries), default=0),
                "segments": sum(s["segments"] for s in summaries), "image_sizes": sizes,
                "renamed": sum(s.get("renamed", 0) for s in summaries),
                "images_copied": sum(s.get("images_copied", 0) for s in summaries),
                "mask_format": self.mask_format if self.to == "masks" else "png",
                "validate_args": self.validate_args(), **listing_summary(self._dataset)}

    def validate_args(self) -> list[str]:
        """The ``fastmask validate`` flags that check the written dataset as written: the run's
        background and ignore value; Nucleus index masks hold segment numbers, no classes (no
        label map, no class coverage)."""
        def flag(v):
            return str(-1 if v is None else v)

        args = ["--background", flag(self.background), "--ignore-value", flag(self.ignore_value)]
        if self.to == "nucleus":
            args += ["--disable", "no_labelmap", "--disable", "coverage_outlier"]
        return args


def _base_name(item_id: Any, file_name: str | None) -> str:
    """An item's output name before clashes are resolved: its file name without the
    extension (COCO sources), else its item id, as a safe relative path."""
    return lw.safe_relpath(os.path.splitext(file_name)[0] if file_name else str(item_id))


def output_names(item_ids: list, file_names: list | None = None) -> tuple[list[str], list[str]]:
    """Unique output names for items: ``(names, bases)``, in the order given.

    Two items whose names would be the same file -- COCO images ``a.jpg`` and ``a.png``,
    or names differing only in letter case (one file on macOS and Windows) -- would
    overwrite each other's masks.  The first in item-id order keeps its name; each later
    one gets ``__2``, ``__3``, ... (the first free suffix).

    >>> output_names(["1", "2", "3"], ["a.jpg", "a.png", "A.jpg"])[0]
    ['a', 'a__2', 'A__3']
    """
    n = len(item_ids)
    bases = [_base_name(i, f) for i, f in zip(item_ids, file_names or [None] * n)]
    names = list(bases)
    taken: set[str] = set()
    for k in sorted(range(n), key=lambda k: item_ids[k]):  # the engine's order: deterministic
        name = bases[k]
        suffix = 2
        while name.lower() in taken:
            name = f"{bases[k]}__{suffix}"
            suffix += 1
        taken.add(name.lower())
        names[k] = name
    return names, bases


def _palette(labelmap: LabelMap | None):
    if labelmap is None or not labelmap.colors:
        return "voc"
    cols = lw._colors_for(labelmap, range(256))
    return np.array([cols[i] for i in range(256)], np.uint8)


# ---------------------------------------------------------------------- final assembly
def report_parts(report, table: str) -> list:
    """The Parquet parts of a report table in shard order: local paths, or
    :class:`~fastmask.storage.Location` objects of a report at a URL.

    >>> report_parts("no-such-report", "items")
    []
    """
    import fnmatch

    loc = storage.location(report) / table
    if not loc.is_remote:
        return sorted(Path(loc.url).glob("part-*.parquet"))
    return [loc / name for name in loc.iterdir() if fnmatch.fnmatchcase(name, "part-*.parquet")]


def read_part(part, columns: list[str] | None = None) -> pa.Table:
    """One Parquet part (a local path or a :class:`~fastmask.storage.Location`) as a table."""
    import pyarrow.parquet as pq

    if isinstance(part, storage.Location) and part.is_remote:
        return pq.read_table(pa.BufferReader(part.read_bytes()), columns=columns)
    return pq.read_table(part, columns=columns)


@contextlib.contextmanager
def parquet_file(path):
    """A :class:`pyarrow.parquet.ParquetFile` of a local path or a URL, read batch by batch
    (a remote file is read through a seekable file object: only the row groups asked for)."""
    import pyarrow.parquet as pq

    loc = storage.location(path)
    if not loc.is_remote:
        yield pq.ParquetFile(loc.url)
        return
    with loc.open("rb") as f:
        yield pq.ParquetFile(f)


def _parts(report, table: str):
    for p in report_parts(report, table):
        yield read_part(p)


def _ok_items(report):
    for t in _parts(report, "items"):
        for r in t.to_pylist():
            if r["status"] == "ok":
                yield r


def _records(report, kind: str):
    for t in _parts(report, "records"):
        kinds = t.column("kind").to_pylist()
        for k, j in zip(kinds, t.column("json").to_pylist()):
            if k == kind:
                yield j


def _source_categories(job: ConvertJob) -> dict[int, dict]:
    """The source's COCO category records (COCO / panoptic sources), by id."""
    meta = getattr(job._dataset, "meta", None)
    try:
        cats = (meta() if callable(meta) else {}).get("categories") or []
    except FormatError:
        cats = []
    out = {}
    for c in cats:
        if isinstance(c, dict) and isinstance(c.get("id"), int):
            out[c["id"]] = c
    return out


def _categories(job: ConvertJob, used: list[int], *, things: list[int] | None = None) -> list[dict]:
    """COCO ``categories``: the source's records when it has them (kept as they are), else from the
    label map (background left out), plus every category id seen in the data. ``things``: panoptic
    output; a category without a source record is a thing (``isthing: 1``) when it has instances."""
    lm = job._dataset.labelmap
    given = _source_categories(job)
    ids = set(used) | set(given)
    if lm is not None:
        ids |= {i for i in lm.names if i != lm.background}
    out = []
    for i in sorted(ids):
        c = dict(given.get(i) or {"id": int(i), "name": job._label(i), "supercategory": ""})
        if things is not None:
            c.setdefault("isthing", int(i in things))
        out.append(c)
    return out


def _annotations_with_ids(report, start: int):
    nxt = start + 1
    for text in _records(report, "annotation"):
        a = json.loads(text)
        if a.get("id") is None:
            a["id"] = nxt
            nxt += 1
        yield a


def output_labelmap(job: ConvertJob, categories: list[int]) -> LabelMap:
    """The label map of the output: the source's, plus any category seen without a name."""
    lm = job._dataset.labelmap
    names = dict(lm.names) if lm else {}
    colors = dict(lm.colors) if lm else {}
    ignore = set(lm.ignore) if lm else ({job.ignore_value} if job.ignore_value is not None else set())
    for c in categories:
        names.setdefault(c, f"class_{c}")
    bg = lm.background if lm else job.background
    if bg is not None:
        names.setdefault(bg, "background")
    fillers = set(lm.fillers) - set(categories) if lm else set()  # placeholders stay placeholders
    return LabelMap(names=names, colors=colors, ignore=ignore, background=bg, source="fastmask convert",
                    fillers=fillers)


def assemble(job: ConvertJob, report_dir: str | os.PathLike | storage.Location):
    """Write the dataset-wide files of a finished convert run; returns the dataset folder (or zip).

    ``report_dir`` is the run's report folder (read: ``run.json`` and the parts); the files go
    to the job's output folder (the same folder when run by the CLI). Either may be a URL; the
    return value is then a :class:`~fastmask.storage.Location`.

    With ``zip_output`` the folder is zipped and then removed (kept with ``keep_folder``); a rerun
    of an assembled run (``--resume``) finds the zip and no folder, and leaves the zip as it is.
    """
    report = storage.location(report_dir)
    summary = (report / "run.json").read_json()["summary"]
    d = job._dir
    zpath = job._out / (DATASET_DIR + ".zip")
    if job.zip_output and zpath.is_file() and not d.exists():
        return storage.as_path(zpath)  # assembled and zipped already: the per-item files live only in the zip now
    d.mkdir()
    cats = summary["categories"]
    lm = output_labelmap(job, cats)
    if job.to == "masks":
        lw.atomic_write(d / "labelmap.json", (json.dumps(lm.to_json(), indent=1) + "\n").encode())
    elif job.to == "voc":
        # a VOC PNG holds 8 bits: ids above 254 (other than a named ignore 255) cannot appear
        # (their items are error rows) and are left out of labelmap.txt
        voc_lm = LabelMap(names={i: n for i, n in lm.names.items() if i < 255 or (i == 255 and i in lm.ignore)},
                          colors={i: c for i, c in lm.colors.items() if i <= 255}, ignore=lm.ignore,
                          background=lm.background, source=lm.source, fillers=lm.fillers)
        lw.atomic_write(d / "labelmap.txt", lw.labelmap_txt(voc_lm).encode())
        _write_splits(report, d / "ImageSets" / "Segmentation")
    elif job.to in ("coco", "cleanzip"):
        target = d / ("annotations.json" if job.to == "coco" else "coco/annotations.json")
        lw.write_coco_json(target, (json.loads(t) for t in _records(report, "image")),
                           _annotations_with_ids(report, summary["max_annotation_id"]), _categories(job, cats))
        if job.to == "cleanzip":
            rows = ({"item_id": r["name"], "image": r.get("image_file"), "mask": r.get("mask_file"),
                     "width": r["width"], "height": r["height"], "split": r.get("splits") or None}
                    for r in _ok_items(report))
            lw.write_index_csv(d / "index.csv", rows)
            # a source without images gives a masks-only dataset: say so, so that its items
            # are not each "missing" an image
            lw.write_cleanzip_meta(d / "meta.json", lm, task="semantic", mask_encoding="png-index",
                                   image_sizes=summary["image_sizes"],
                                   has_images=bool(summary.get("images_copied", 1)))
    elif job.to == "coco_panoptic":
        cats_doc = _categories(job, cats, things=summary.get("things", []))
        lw.write_coco_json(d / "panoptic.json", (json.loads(t) for t in _records(report, "image")),
                           _records(report, "panoptic"), cats_doc)
    elif job.to == "nucleus":
        _write_nucleus(job, report, d)
    elif job.to == "labelbox":
        from .convert_platforms import write_records

        write_records(report, d / "labelbox.ndjson", "labelbox")
        lw.atomic_write(d / "labelmap.json", (json.dumps(lm.to_json(), indent=1) + "\n").encode())
    if job.zip_output:
        lw.zip_folder(d, zpath)
        if not job.keep_folder:
            d.rmtree()
        return storage.as_path(zpath)
    return storage.as_path(d)


def _write_splits(report, folder: storage.Location) -> None:
    """``default.txt`` (every converted item) and one ``<split>.txt`` per source split, streamed:
    each to a temporary file, all published only when every one is complete."""
    from ..formats.writers import atomic_output

    files: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:

        def open_split(name: str):
            target = lw.output_path(folder / (lw.safe_relpath(name).replace("/", "_") + ".txt"))
            return stack.enter_context(open(stack.enter_context(atomic_output(target)), "w", encoding="utf-8"))

        for r in _ok_items(report):
            names = ["default"] + [x for x in (r.get("splits") or "").split(",") if x and x != "default"]
            for name in names:
                if name not in files:
                    files[name] = open_split(name)
                files[name].write(r["name"] + "\n")
        if "default" not in files:
            files["default"] = open_split("default")


def _write_nucleus(job: ConvertJob, report, d: storage.Location) -> None:
    """``segments.parquet`` (all segment rows) and ``segments.jsonl`` (one line per converted item,
    Nucleus' segmentation upload shape: the items' ``nucleus`` records), streamed shard by shard."""
    import pyarrow.parquet as pq

    from ..formats.writers import atomic_output

    parts = _parts(report, "segments")
    first = next(parts, None)
    if first is not None:
        with atomic_output(lw.output_path(d / "segments.parquet")) as tmp, pq.ParquetWriter(tmp, first.schema) as w:
            w.write_table(first)
            for segs in parts:
                w.write_table(segs)
    with atomic_output(lw.output_path(d / "segments.jsonl")) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for text in _records(report, "nucleus"):
            out.write(text + "\n")
