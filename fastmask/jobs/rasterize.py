"""The ``rasterize`` job: COCO annotations -> mask PNGs (or RLE rows), one image per item.

Kinds (``kind=``):

- ``semantic``: one class-id PNG per image in ``<out>/masks/`` (grey ``L``; ``P`` with a
  palette; 16-bit grey for every file when a category id or the ignore value exceeds 255);
- ``instance``: one instance-id map per image + table ``instances``, every file in the run's one
  format (``mask_format``): 16-bit PNG (``png16``, default) or 32-bit TIFF (``tiff32``); an image
  whose ids do not fit ``png16`` is an error row ``format_overflow``;
- ``binary``: one 0/255 PNG per annotation (``<out>/masks/<stem>/<annotation id>.png``,
  the annotation's own full mask) + table ``instances``;
- ``panoptic``: one COCO panoptic RGB PNG per image in ``<out>/panoptic/`` + table
  ``segments``; after the run :func:`write_panoptic_json` writes ``<out>/panoptic.json``;
- ``rle``: no PNG; table ``rles`` with every annotation's compressed RLE (own full mask).

After a ``semantic`` or ``binary`` run :func:`write_mask_labelmap` writes
``<out>/masks/labelmap.json`` (what the values mean); ``run.json["summary"]["validate_args"]``
holds the ``fastmask validate`` flags that check the written masks.

``out_dir`` may be a URL (``s3://bucket/run``) or a :class:`~fastmask.storage.Location`: the
masks, ``labelmap.json`` and ``panoptic.json`` are then written there as objects, each whole
in one request (workers write their items' masks directly).

Mask files are named after the image's ``file_name`` with the extension replaced by
``.png`` (sub-folders kept); an image without a usable ``file_name``, or whose mask name
another record would also get (``a.jpg`` and ``a.png``, ``A.jpg`` and ``a.jpg``, a repeated name), is named by its
``item_id`` (a safe file name for ids of any JSON type; ``id_`` in front while that name is
another image's). An annotation that cannot be rasterized is
left out of the image and reported as a ``findings`` row (rule ``invalid_annotation``);
the image is still written (status ``ok``). An image record without a usable width/height
is an error row (``bad_size``). Images without annotations get an all-background mask.

Example::

    ds = open_dataset("annotations/instances_val2017.json")
    job = RasterizeJob(ds, "out/", kind="semantic")
    run_job(job, ds.manifest(), "out/")
"""
from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .. import storage
from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import Dataset, FormatError
from ..formats._cocojson import id_key, item_base
from .listing import listing_summary

KINDS = ("semantic", "instance", "binary", "panoptic", "rle")
PALETTES = ("voc", "labelmap")

_FINDINGS = pa.schema([("annotation_index", pa.int32()), ("annotation_id", pa.int64()), ("annotation_key", pa.string()), ("rule", pa.string()),
                       ("severity", pa.string()), ("message", pa.string())])
_INSTANCES = pa.schema([("instance_id", pa.int64()), ("annotation_index", pa.int32()), ("annotation_id", pa.int64()), ("annotation_key", pa.string()),
                        ("category_id", pa.int64()), ("iscrowd", pa.bool_()), ("area", pa.int64()),
                        ("mask_area", pa.int64()), ("bbox_x", pa.int64()), ("bbox_y", pa.int64()),
                        ("bbox_w", pa.int64()), ("bbox_h", pa.int64()), ("output", pa.string())])
_SEGMENTS = pa.schema([("segment_id", pa.int64()), ("annotation_id", pa.int64()), ("annotation_key", pa.string()), ("category_id", pa.int64()),
                       ("iscrowd", pa.bool_()), ("area", pa.int64()), ("bbox_x", pa.int64()), ("bbox_y", pa.int64()),
                       ("bbox_w", pa.int64()), ("bbox_h", pa.int64())])
_RLES = pa.schema([("annotation_index", pa.int32()), ("annotation_id", pa.int64()), ("annotation_key", pa.string()), ("category_id", pa.int64()),
                   ("iscrowd", pa.bool_()), ("height", pa.int32()), ("width", pa.int32()), ("area", pa.int64()),
                   ("counts", pa.string())])


def _int_id(v):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int) and -(2**63) <= v < 2**63:
        return v
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
        return int(v)
    return None


def _ids(item: dict) -> dict:
    """The image's id columns of an ``items`` row: ``image_id`` (integers that fit) and ``image_key``."""
    return {"image_id": item.get("image_id"), "image_key": item.get("image_key")}


def _safe_id(value) -> str:
    """A file-name-safe name of an annotation id of any JSON type (as item ids are made)."""
    return item_base(value, id_key(value))


def _safe_rel(name) -> str | None:
    """A relative POSIX path inside the output folder, or None."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return None
    p = posixpath.normpath(name)
    if p.startswith("/") or any(s.startswith(".") for s in p.split("/")):  # also '.', '..', hidden names
        return None
    return p


class RasterizeJob(Job):
    """Rasterize every image's COCO annotations (see the module docstring for kinds and tables)."""

    name = "rasterize"
    item_schema = pa.schema([("width", pa.int32()), ("height", pa.int32()), ("n_annotations", pa.int32()),
                             ("n_skipped", pa.int32()), ("n_instances", pa.int32()), ("output", pa.string()),
                             ("png_mode", pa.string()), ("image_id", pa.int64()), ("image_key", pa.string())])

    def __init__(self, dataset: Dataset, out_dir, *, kind: str = "semantic", palette: str | None = None,
                 overlap: str = "order", class_priority=None, crowd: str = "ignore", ignore_value: int = 255,
                 fill: str = "coco", background: int = 0, mask_format: str = "png16"):
        from ..formats.layout_writers import MASK_FORMATS
        from ..raster import CROWD_MODES, MODES, OVERLAPS

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if palette is not None and palette not in PALETTES:
            raise ValueError(f"palette must be one of {PALETTES}, got {palette!r}")
        if palette is not None and kind != "semantic":
            raise ValueError("a palette applies to kind 'semantic' only")
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
        if mask_format != "png16" and kind != "instance":
            raise ValueError(f"a mask format (--format) applies to kind 'instance' only; {kind} writes PNGs")
        if overlap not in OVERLAPS:
            raise ValueError(f"overlap must be one of {OVERLAPS}, got {overlap!r}")
        if overlap == "class-priority" and not class_priority:
            raise ValueError("overlap 'class-priority' needs a class priority list (category ids)")
        if class_priority and overlap != "class-priority":
            raise ValueError("a class priority list needs overlap 'class-priority'")
        if crowd not in CROWD_MODES:
            raise ValueError(f"crowd must be one of {CROWD_MODES}, got {crowd!r}")
        if fill not in MODES:
            raise ValueError(f"fill must be one of {MODES}, got {fill!r}")
        if not 0 <= int(ignore_value) <= 65535 or not 0 <= int(background) <= 65535:
            raise ValueError("ignore value and background must be in 0..65535")
        if dataset.layout != "coco":
            raise ValueError(f"rasterize needs a COCO instances dataset, got layout {dataset.layout!r}")
        self._dataset = dataset
        self._out = storage.location(out_dir)  # a Location: it travels to workers with its storage options
        self.kind = kind
        self.palette = palette
        self.overlap = overlap
        self.class_priority = [int(c) for c in class_priority] if class_priority else None
        self.crowd = crowd
        self.ignore_value = int(ignore_value)
        self.fill = fill
        self.background = int(background)
        self.mask_format = mask_format
        cats = [int(c["id"]) for c in (dataset.meta().get("categories") or []) if _int_id(c.get("id")) is not None]
        top = max([self.background, *cats] + ([self.ignore_value] if crowd == "ignore" else []))
        #: every semantic PNG of the run has the same depth: 16-bit when an id can exceed 255
        self.sixteen_bit = kind == "semantic" and top > 255
        if self.sixteen_bit and palette is not None:
            raise ValueError(f"a palette PNG holds ids 0..255, but category ids / values reach {top}")
        # file names whose mask name (stem + .png) another record also gets: named by item_id instead
        by_stem: dict[str, list[str]] = {}
        for fn in dataset.manifest().column("file_name").drop_null().to_pylist():
            rel = _safe_rel(fn)
            if rel is not None:
                # names differing only in case are one file on macOS and Windows disks
                by_stem.setdefault(posixpath.splitext(rel)[0].lower(), []).append(fn)
        self._dup_names = {fn for names in by_stem.values() if len(names) > 1 for fn in names}
        # images named by their item id: never the name of another image's mask
        taken = {k.lower() for k, names in by_stem.items() if len(names) == 1}
        self._by_id: dict[str, str] = {}
        m = dataset.manifest().select(["item_id", "file_name"]).to_pylist()
        for row in m:
            fn = row["file_name"]
            if fn in self._dup_names or _safe_rel(fn) is None or not posixpath.splitext(_safe_rel(fn))[0]:
                name = row["item_id"]
                while name.lower() in taken:
                    name = "id_" + name
                taken.add(name.lower())
                self._by_id[row["item_id"]] = name
        self._pal = None

    @property
    def tables(self) -> dict[str, pa.Schema]:  # type: ignore[override]
        t = {"findings": _FINDINGS}
        if self.kind in ("instance", "binary"):
            t["instances"] = _INSTANCES
        elif self.kind == "panoptic":
            t["segments"] = _SEGMENTS
        elif self.kind == "rle":
            t["rles"] = _RLES
        return t

    def arguments(self) -> dict[str, Any]:
        return {"dataset": self._dataset.root, "layout": self._dataset.layout, "kind": self.kind,
                "palette": self.palette, "overlap": self.overlap, "class_priority": self.class_priority,
                "crowd": self.crowd, "ignore_value": self.ignore_value, "fill": self.fill,
                "background": self.background, "sixteen_bit": self.sixteen_bit,
                **({"mask_format": self.mask_format} if self.kind == "instance" else {})}

    @property
    def mask_folder(self) -> str:
        return "panoptic" if self.kind == "panoptic" else "masks"

    def prepare(self) -> None:
        from ..raster import rasterize_annotations  # noqa: F401  (loads the kernels once per process)

        if self.palette == "voc":
            from ..formats import voc_colormap

            self._pal = voc_colormap(256)
        elif self.palette == "labelmap":
            lm = self._dataset.labelmap
            if lm is None:
                from ..formats import voc_colormap

                self._pal = voc_colormap(256)
            else:
                self._pal = lm.palette(256)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pal"] = None
        return state

    def stem(self, item: dict) -> str:
        """Output name of an item without ``.png``, relative to the mask folder."""
        fn = item.get("file_name")
        rel = _safe_rel(fn) if fn not in self._dup_names else None
        if rel is not None:
            root, _ = posixpath.splitext(rel)
            if root:
                return root
        return self._by_id[item["item_id"]]

    def _target(self, rel: str):
        """Where the output ``rel`` of the mask folder goes (its local folder created)."""
        from ..formats.layout_writers import output_path

        return output_path(self._out / self.mask_folder / rel)

    def prefetch(self, item: dict[str, Any]) -> list:
        """The remote objects reading ``item`` needs (fetched ahead by the engine)."""
        return self._dataset.prefetch(item)

    def process(self, item: dict[str, Any]) -> ItemResult:
        from ..formats import writers as wr
        from ..raster import rasterize_annotations

        w, h = item.get("width"), item.get("height")
        try:
            data = self._dataset.read_item(item)
        except FormatError as e:
            raise ItemError(e.code, e.message, fields=_ids(item)) from None
        anns = data.annotations or []
        kind = "semantic" if self.kind == "semantic" else "instance"
        crowd = "class" if self.kind == "panoptic" else self.crowd
        try:
            r = rasterize_annotations(anns, h, w, kind=kind, overlap=self.overlap, class_priority=self.class_priority,
                                      crowd=crowd, ignore_value=self.ignore_value, fill=self.fill,
                                      background=self.background, on_error="skip",
                                      dtype=(np.uint16 if self.sixteen_bit else np.uint8) if kind == "semantic" else None,
                                      paint=self.kind not in ("rle", "binary"))
        except ValueError as e:  # values that do not fit the PNG (e.g. an undeclared category id > 255)
            raise ItemError("cannot_rasterize", str(e), fields={**_ids(item), "width": w,
                                                               "height": h, "n_annotations": len(anns)}) from None
        skipped = {i for i, _, _ in r.problems}
        findings = [{"annotation_index": i, "annotation_id": _int_id(aid), "annotation_key": id_key(aid),
                     "rule": "invalid_annotation",
                     "severity": "error", "message": msg} for i, aid, msg in r.problems]
        fields = {"width": w, "height": h, "n_annotations": len(anns), "n_skipped": len(skipped), **_ids(item)}
        rows: dict[str, list] = {"findings": findings}
        try:  # a write the storage refuses (forbidden, no such bucket): this item's error row
            stem = self.stem(item)
            if self.kind == "semantic":
                rel = stem + ".png"
                fields["png_mode"] = wr.write_semantic_png(self._target(rel), r.mask, palette=self._pal,
                                                           sixteen_bit=self.sixteen_bit)
                fields["output"] = f"{self.mask_folder}/{rel}"
            elif self.kind == "instance":
                top = int(r.instance_ids.max(initial=0))
                if self.mask_format == "png16" and top > 65535:
                    raise ItemError("format_overflow", f"{top} instances do not fit a 16-bit PNG, the format of this "
                                    "run's masks folder (png16, one format per folder); rerun with --format tiff32",
                                    fields={**_ids(item), "width": w, "height": h})
                if self.mask_format == "png16":
                    rel = stem + ".png"
                    fields["png_mode"] = wr.write_instance_png(self._target(rel), r.mask)
                else:
                    from ..formats import layout_writers as lw

                    rel = posixpath.dirname(stem) + "/" * ("/" in stem) + lw.write_id_map(
                        self._target(stem), r.mask, fmt="tiff32")
                    fields["png_mode"] = "I"  # Pillow's mode of a 32-bit integer TIFF
                fields["output"] = f"{self.mask_folder}/{rel}"
                fields["n_instances"] = int((r.instance_ids > 0).sum())
                rows["instances"] = self._instance_rows(r, skipped)
            elif self.kind == "binary":
                rows["instances"] = self._binary_rows(r, skipped, stem)
                fields["n_instances"] = len(anns) - len(skipped)
                fields["output"] = f"{self.mask_folder}/{stem}/"
                fields["png_mode"] = "L"
            elif self.kind == "panoptic":
                if int(r.instance_ids.max(initial=0)) >= 2**24:
                    raise ItemError("too_many_instances", "segment ids do not fit a panoptic PNG",
                                    fields={**_ids(item), "width": w, "height": h})
                rel = stem + ".png"
                fields["png_mode"] = wr.write_panoptic_png(self._target(rel), r.mask)
                fields["output"] = f"{self.mask_folder}/{rel}"
                segs = []
                for i in range(len(anns)):
                    sid = int(r.instance_ids[i])
                    if sid == 0 or r.areas[i] == 0:  # skipped, or hidden by the others: no pixel, no segment
                        continue
                    x, y, bw, bh = (int(v) for v in r.bboxes[i])
                    segs.append({"segment_id": sid, "annotation_id": _int_id(r.annotation_ids[i]),
                                 "annotation_key": id_key(r.annotation_ids[i]),
                                 "category_id": int(r.category_ids[i]), "iscrowd": bool(r.iscrowd[i]),
                                 "area": int(r.areas[i]), "bbox_x": x, "bbox_y": y, "bbox_w": bw, "bbox_h": bh})
                fields["n_instances"] = len(segs)
                rows["segments"] = segs
            else:  # rle
                out = []
                rles = r.rles()
                for i in range(len(anns)):
                    if i in skipped:
                        continue
                    rle = rles[i]
                    cat = int(r.category_ids[i])
                    out.append({"annotation_index": i, "annotation_id": _int_id(r.annotation_ids[i]),
                                "annotation_key": id_key(r.annotation_ids[i]),
                                "category_id": cat if cat >= 0 else None, "iscrowd": bool(r.iscrowd[i]),
                                "height": h, "width": w, "area": int(r.mask_areas[i]),
                                "counts": rle["counts"].decode("ascii")})
                rows["rles"] = out
                fields["n_instances"] = len(out)
        except FormatError as e:
            raise ItemError(e.code, e.message, fields={**_ids(item), "width": w, "height": h}) from None
        return ItemResult(fields, rows)

    @staticmethod
    def _instance_rows(r, skipped) -> list[dict]:
        out = []
        for i in range(len(r.annotation_ids)):
            cat = int(r.category_ids[i])
            x, y, bw, bh = (int(v) for v in r.bboxes[i])
            out.append({"instance_id": int(r.instance_ids[i]) or None, "annotation_index": i,
                        "annotation_id": _int_id(r.annotation_ids[i]), "annotation_key": id_key(r.annotation_ids[i]),
                        "category_id": cat if cat >= 0 else None,
                        "iscrowd": bool(r.iscrowd[i]), "area": None if i in skipped else int(r.areas[i]),
                        "mask_area": None if i in skipped else int(r.mask_areas[i]),
                        "bbox_x": x, "bbox_y": y, "bbox_w": bw, "bbox_h": bh, "output": None})
        return out

    def _binary_rows(self, r, skipped, stem) -> list[dict]:
        from ..formats import writers as wr

        ids = [_int_id(a) for a in r.annotation_ids]
        # file names from the annotation ids of any JSON type: an integer as it is, else the
        # file-name-safe form item ids use; a repeated or missing id: the annotation's index
        names = [str(a) if a is not None and a >= 0 else (_safe_id(v) if v is not None else None)
                 for a, v in zip(ids, r.annotation_ids)]
        seen: dict[str, int] = {}
        for n in names:
            if n is not None:
                seen[n.lower()] = seen.get(n.lower(), 0) + 1
        out = []
        for i, aid in enumerate(ids):
            cat = int(r.category_ids[i])
            row = {"instance_id": None, "annotation_index": i, "annotation_id": aid,
                   "annotation_key": id_key(r.annotation_ids[i]),
                   "category_id": cat if cat >= 0 else None, "iscrowd": bool(r.iscrowd[i]), "area": None,
                   "mask_area": None, "bbox_x": None, "bbox_y": None, "bbox_w": None, "bbox_h": None, "output": None}
            if i not in skipped:
                name = names[i] if names[i] is not None and seen[names[i].lower()] == 1 else f"index_{i}"
                rel = f"{stem}/{name}.png"
                m = r.mask_of(i)
                wr.write_binary_png(self._target(rel), m)
                row.update(area=int(r.mask_areas[i]), mask_area=int(r.mask_areas[i]), output=f"{self.mask_folder}/{rel}")
                if r.mask_areas[i]:
                    ys = np.flatnonzero(m.any(axis=1))
                    xs = np.flatnonzero(m.any(axis=0))
                    row.update(bbox_x=int(xs[0]), bbox_y=int(ys[0]), bbox_w=int(xs[-1] - xs[0] + 1),
                               bbox_h=int(ys[-1] - ys[0] + 1))
                else:
                    row.update(bbox_x=0, bbox_y=0, bbox_w=0, bbox_h=0)
            out.append(row)
        return out

    def reduce_shard(self, shard: ShardResult) -> dict:
        items = shard.items
        status = items.column("status").to_pylist()
        skipped = sum(v or 0 for v in items.column("n_skipped").to_pylist())
        anns = sum(v or 0 for v in items.column("n_annotations").to_pylist())
        return {"images": sum(s == "ok" for s in status), "errors": sum(s != "ok" for s in status),
                "annotations": anns, "skipped_annotations": skipped,
                "written": sum(1 for o in items.column("output").to_pylist() if o)}

    def finalize(self, summaries: list[dict]) -> dict:
        keys = ("images", "errors", "annotations", "skipped_annotations", "written")
        out = {k: sum(s.get(k, 0) for s in summaries) for k in keys}
        out["kind"] = self.kind
        out["mask_folder"] = None if self.kind == "rle" else self.mask_folder
        out["mask_format"] = self.output_format()
        out["validate_args"] = self.validate_args()
        return {**out, **listing_summary(self._dataset)}

    def output_format(self) -> str | None:
        """The one format of every mask file of the run (``summary["mask_format"]``): ``png8`` /
        ``png16`` (semantic: 16 bits for every file when ids can exceed 255; binary ``png8``),
        the instance ``mask_format``, ``png_rgb`` (panoptic), None for ``rle`` (no file)."""
        return {"semantic": "png16" if self.sixteen_bit else "png8", "instance": self.mask_format,
                "binary": "png8", "panoptic": "png_rgb"}.get(self.kind)

    def validate_args(self) -> list[str] | None:
        """The ``fastmask validate`` flags that check this run's output as written (None: ``rle``
        writes no file). Instance ids are no classes: no label map, no class coverage."""
        values = ["--ignore-value", str(self.ignore_value), "--background", str(self.background)]
        if self.kind == "semantic":
            return values
        if self.kind == "instance":
            return values + ["--disable", "no_labelmap", "--disable", "coverage_outlier"]
        if self.kind == "binary":  # 0/255: 255 is the object (labelmap.json), not an ignore value
            return ["--ignore-value", "-1", "--background", "0", "--disable", "coverage_outlier"]
        if self.kind == "panoptic":
            return []
        return None


def write_mask_labelmap(job: RasterizeJob, out_dir=None):
    """After a ``semantic`` or ``binary`` run: ``<out>/masks/labelmap.json``, what the values mean.

    ``semantic``: the COCO categories at their ids, the background and (crowd ``ignore``) the
    ignore value; ``binary``: 0 background, 255 the annotation. ``validate`` finds it next to
    the masks, in the job's output folder (``out_dir``, the report folder, is not read). Returns
    the path (a :class:`~fastmask.storage.Location` for a URL; None for the other kinds).

    >>> # write_mask_labelmap(job, "out/")  -> out/masks/labelmap.json
    """
    import json

    from ..formats import LabelMap
    from ..formats import layout_writers as lw

    if job.kind == "semantic":
        names = {}
        for c in job._dataset.meta().get("categories") or []:
            cid = _int_id(c.get("id")) if isinstance(c, dict) else None
            if cid is not None and 0 <= cid < 65535:
                names[cid] = str(c.get("name", cid))
        names.setdefault(job.background, "background")
        ignore = set()
        if job.crowd == "ignore":
            names.setdefault(job.ignore_value, "crowd")
            ignore = {job.ignore_value}
        lm = LabelMap(names=names, ignore=ignore, background=job.background, source="fastmask rasterize")
    elif job.kind == "binary":
        lm = LabelMap(names={0: "background", 255: "annotation"}, ignore=set(), background=0,
                      source="fastmask rasterize")
    else:
        return None
    target = job._out / job.mask_folder / "labelmap.json"
    lw.atomic_write(target, (json.dumps(lm.to_json(), indent=1) + "\n").encode())
    return storage.as_path(target)


def remove_mask_temporaries(out_dir) -> int:
    """Delete the hidden temporary PNGs an interrupted run left in the mask folders (before a resume).

    An object store has none (an object is uploaded whole or not at all): 0 for a URL."""
    n = 0
    if storage.location(out_dir).is_remote:
        return 0
    for folder in ("masks", "panoptic"):
        root = Path(storage.location(out_dir).url) / folder
        if not root.is_dir():
            continue
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.startswith(".") and f.endswith(".tmp"):
                    try:
                        os.unlink(os.path.join(dirpath, f))
                        n += 1
                    except OSError:
                        pass
    return n


def write_panoptic_json(job: RasterizeJob, out_dir):
    """After a ``panoptic`` run: ``<out>/panoptic.json`` from the items and ``segments`` parts.

    ``out_dir`` is the run's report folder (a path, URL or :class:`~fastmask.storage.Location`)
    whose manifest and parts are read; the file goes to the job's output folder beside its
    ``panoptic/`` PNGs (the same folder when run by the CLI). Returns its path (a Location
    for a URL).

    COCO panoptic format: ``images`` (the records' id, file_name, width, height),
    ``annotations`` (image_id, file_name of the PNG relative to ``<out>/panoptic/``,
    ``segments_info`` with id, category_id, iscrowd, area, bbox) and ``categories``
    (the source's, with ``isthing`` = 1 unless it says otherwise). Written shard by shard
    to a temporary file and renamed (a URL: uploaded whole at the end). Images whose
    rasterization failed have no annotation.
    """
    import json

    from ..formats import writers as wr
    from ..formats._cocojson import key_value
    from .convert import parquet_file, read_part, report_parts

    report = storage.location(out_dir)
    cats = []
    for c in job._dataset.meta().get("categories") or []:
        c = dict(c)
        c.setdefault("isthing", 1)
        cats.append(c)
    item_parts = report_parts(report, "items")
    seg_parts = report_parts(report, "segments")
    target = job._out / "panoptic.json"
    with wr.atomic_output(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write('{"info": {"description": "fastmask rasterize --kind panoptic"}, "licenses": [], "images": [')
        first = True
        seen: set[str] = set()
        with parquet_file(report / "manifest.parquet") as manifest:
            batches = manifest.iter_batches(columns=["image_key", "file_name", "width", "height"])
            for row in (r for batch in batches for r in batch.to_pylist()):
                key = row["image_key"]
                if key is None or key in seen:
                    continue
                seen.add(key)
                f.write(("" if first else ",") + json.dumps({"id": key_value(key), "file_name": row["file_name"],
                                                            "width": row["width"], "height": row["height"]}))
                first = False
        f.write('], "annotations": [')
        first = True
        done: set[str] = set()
        for pi, ps in zip(item_parts, seg_parts):
            items = read_part(pi, columns=["item_id", "image_key", "status", "output"]).to_pylist()
            segs = read_part(ps).to_pylist()
            by_item: dict[str, list] = {}
            for s in segs:
                by_item.setdefault(s["item_id"], []).append(
                    {"id": s["segment_id"], "category_id": s["category_id"], "iscrowd": int(s["iscrowd"]),
                     "area": s["area"], "bbox": [s["bbox_x"], s["bbox_y"], s["bbox_w"], s["bbox_h"]]})
            for it in items:
                key = it["image_key"]
                if it["status"] != "ok" or key is None or key in done:
                    continue
                done.add(key)
                fn = it["output"][len(job.mask_folder) + 1:]
                f.write(("" if first else ",") + json.dumps({"image_id": key_value(key), "file_name": fn,
                                                            "segments_info": by_item.get(it["item_id"], [])}))
                first = False
        f.write('], "categories": ' + json.dumps(cats) + "}")
        f.flush()
        os.fsync(f.fileno())
    return storage.as_path(target)
