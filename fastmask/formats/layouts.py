"""Dataset layouts: detection, the :class:`Dataset` base class and :func:`open_dataset`.

Layout names (``layout=`` / ``--layout``):

``masks``          a folder (or zip) of mask images, optionally paired with an
                   images folder by file stem (:mod:`.maskdir`)
``voc``            Pascal VOC / CVAT "Segmentation Mask": ``ImageSets/Segmentation/*.txt``,
                   ``SegmentationClass/``, ``SegmentationObject/``, ``labelmap.txt``;
                   folder or ``.zip`` (:mod:`.voc`)
``coco``           COCO instances JSON (+ optional images folder) (:mod:`.coco`)
``coco_panoptic``  COCO panoptic JSON + PNG folder, id = R + 256 G + 65536 B (:mod:`.panoptic`)
``cleanzip``       ``images/ masks/ coco/ index.csv meta.json``, folder or zip (:mod:`.cleanzip`)
``labelbox``       a Labelbox NDJSON export (or import file) + mask PNGs beside it (:mod:`.labelbox`)
``nucleus``        Scale Nucleus segmentation records (JSONL or JSON list) + uint8 PNGs (:mod:`.nucleus`)
``urls``           a CSV / JSONL / Parquet list: ``item_id``, ``mask`` URL or path, optional ``image``,
                   ``width``, ``height`` (:mod:`.urllist`)

A :class:`Dataset` is light and picklable (paths and small metadata; tables are
cached per process and dropped when pickled) so it can be shipped to pool or
Dask workers. ``manifest()`` lists every item, sorted by ``item_id``, including
items whose files are missing; ``read_item(row)`` reads one item and raises
:class:`~fastmask.formats.errors.FormatError` when it cannot.
"""
from __future__ import annotations

import json
import os
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..storage import is_url
from ._fs import Root, ask, join_target, norm_target, open_path, path_kind, relative_target, sharing_listings
from .errors import FormatError
from .labelmap import LABELMAP_FILENAMES, LabelMap, load_labelmap
from .png import MaskData, read_image_size, read_mask, read_panoptic

__all__ = [
    "Item",
    "Dataset",
    "LAYOUTS",
    "detect_layout",
    "open_dataset",
    "MASK_EXTENSIONS",
    "IMAGE_EXTENSIONS",
]

LAYOUTS = ("masks", "voc", "coco", "coco_panoptic", "cleanzip", "labelbox", "nucleus", "urls")
RECORD_EXTENSIONS = (".ndjson", ".jsonl")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".jpg", ".jpeg")
#: schema metadata key of a dataset's manifest holding its listing facts (JSON)
LISTING_KEY = b"fastmask.listing"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


@dataclass
class Item:
    """One dataset item as read by :meth:`Dataset.read_item`.

    ``missing`` names the files the layout expected but did not find
    (``"mask"``, ``"image"``, ``"instance_mask"``); ``extra`` holds
    layout-specific facts (``record_size`` of a COCO image, ``splits``, ...).
    """

    item_id: str
    mask: MaskData | None = None
    instance_mask: MaskData | None = None
    segments: list | None = None
    annotations: list | None = None
    image_path: str | None = None
    image_size: tuple[int, int] | None = None
    missing: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class Dataset:
    """Base class: a layout over a :class:`~fastmask.formats._fs.Root`.

    Subclasses implement ``_build_manifest()`` and ``read_item(row)``.
    """

    layout: str = ""

    def __init__(self, root: str, labelmap: LabelMap | None = None):
        self.root = norm_target(root)  # an absolute path, or a URL as given
        self.labelmap = labelmap
        self._manifest: pa.Table | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        for k in list(state):
            if k.startswith("_cache") or k == "_manifest":
                state[k] = None  # per-process caches never travel
        return state

    def __repr__(self):
        return f"{type(self).__name__}(layout={self.layout!r}, root={self.root!r})"

    # ------------------------------------------------------------------ API
    def manifest(self) -> pa.Table:
        """One row per item, ``item_id`` unique and sorted ascending (cached per process).

        The table's schema metadata (:data:`LISTING_KEY`) holds what the listing met:
        ``objects`` (files or objects listed), ``problems`` and ``skipped_reports`` (see
        :meth:`problems`), so that a report's saved manifest brings them back on resume
        (:meth:`reuse_manifest`)."""
        if self._manifest is None:
            table = _finish_manifest(self._build_manifest(), self)
            facts = {"objects": self._objects_listed(), "problems": self._root_problems(),
                     "skipped_reports": self._root_skipped()}
            meta = dict(table.schema.metadata or {})
            meta[LISTING_KEY] = json.dumps(facts, sort_keys=True).encode("utf-8")
            self._manifest = table.replace_schema_metadata(meta)
        return self._manifest

    def reuse_manifest(self, table: pa.Table) -> None:
        """Take ``table`` (this dataset's manifest saved by an earlier run: a resumed run's
        ``manifest.parquet``) as the manifest, with the listing facts saved in it: the
        dataset is not listed again.

        >>> import tempfile
        >>> ds = open_dataset(tempfile.mkdtemp(), layout="masks"); saved = ds.manifest()
        >>> again = open_dataset(ds.root, layout="masks"); again.reuse_manifest(saved)
        >>> again.manifest() is saved, again.problems(), again.listing()["objects"]
        (True, [], 0)
        """
        self._manifest = table

    def reuse_listing(self, facts: dict) -> None:
        """Take ``facts`` (:meth:`listing` of this dataset saved by an earlier run, e.g. inside
        the manifest of a job pairing two datasets) as what the listing saw: :meth:`listing`,
        :meth:`problems` and :meth:`skipped_reports` answer from them without listing.

        >>> import tempfile
        >>> ds = open_dataset(tempfile.mkdtemp(), layout="masks")
        >>> ds.reuse_listing({"objects": 3, "problems": [], "skipped_reports": ["/r"]}); ds.skipped_reports()
        ['/r']
        """
        self._reused_listing = dict(facts)

    def listing(self) -> dict:
        """What the listing saw: ``{"objects": n, "problems": [...], "skipped_reports": [...]}``
        (from the saved manifest when it was reused). Builds the manifest first.

        >>> import tempfile
        >>> open_dataset(tempfile.mkdtemp(), layout="masks").listing()
        {'objects': 0, 'problems': [], 'skipped_reports': []}
        """
        reused = getattr(self, "_reused_listing", None)
        if reused is not None and self._manifest is None:
            return {"objects": int(reused.get("objects") or 0), "problems": list(reused.get("problems") or []),
                    "skipped_reports": list(reused.get("skipped_reports") or [])}
        raw = (self.manifest().schema.metadata or {}).get(LISTING_KEY)
        facts = json.loads(raw) if raw else {}
        if not raw:  # a manifest saved without the facts: what this process's roots met
            facts = {"objects": self._objects_listed(), "problems": self._root_problems(),
                     "skipped_reports": self._root_skipped()}
        return {"objects": int(facts.get("objects") or 0), "problems": list(facts.get("problems") or []),
                "skipped_reports": list(facts.get("skipped_reports") or [])}

    def _objects_listed(self) -> int:
        counters = {id(r.listed): r.listed for r in self._roots()}  # sub-roots share their root's counter
        return sum(c[0] for c in counters.values())

    def _root_problems(self) -> list[dict]:
        found: dict[tuple[str, str], str] = {}
        for root in self._roots():
            for key, message in root.problems.items():
                found.setdefault(key, message)
        return [{"kind": k, "path": p, "message": found[(k, p)]} for k, p in sorted(found)]

    def _root_skipped(self) -> list[str]:
        return sorted({p for root in self._roots() for p in root.skipped_reports})

    def __len__(self) -> int:
        return self.manifest().num_rows

    def _build_manifest(self) -> pa.Table:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_item(self, row: dict) -> Item:  # pragma: no cover - abstract
        raise NotImplementedError

    def prefetch(self, row: dict) -> list:
        """The remote objects :meth:`read_item` will fetch for ``row``: ``[(fetcher, location)]``
        (layouts that fetch objects one by one; the others read nothing ahead).

        >>> Dataset.__new__(Dataset).prefetch({"item_id": "a"})
        []
        """
        return []

    def problems(self) -> list[dict]:
        """What the listing met but could not make an item of, sorted: ``[{"kind", "path", "message"}]``.

        ``kind`` is ``unlisted_path`` (a folder that cannot be listed: permissions, a
        path longer than the system allows; its files are not items) or
        ``duplicate_entry`` (several zip entries with one name: one item, the last
        entry). Jobs report them as dataset-level findings. Builds the manifest first.

        >>> # [p["kind"] for p in open_dataset("masks.zip").problems()]  -> ['duplicate_entry']
        """
        return self.listing()["problems"]

    def skipped_reports(self) -> list[str]:
        """Folders the listing skipped as fastmask's own reports (a ``run.json`` that fastmask
        wrote), sorted: a report inside a dataset is never read as items. Builds the manifest first.

        >>> # open_dataset(".").skipped_reports()  -> ['/data/report']  (after --out report)
        """
        return self.listing()["skipped_reports"]

    def _roots(self) -> list[Root]:
        """The roots this dataset lists (attributes holding a :class:`Root`)."""
        return [r for r in vars(self).values() if isinstance(r, Root)]

    def iter_items(self) -> Iterator[tuple[dict, Item | FormatError]]:
        """(row, Item or the FormatError it raised) for every manifest row, in order.

        >>> # for row, item in ds.iter_items(): ...
        """
        for row in self.manifest().to_pylist():
            try:
                yield row, self.read_item(row)
            except FormatError as e:
                yield row, e

    def info(self) -> dict:
        """Small JSON-able facts about the dataset (layout, root, label map source, ...)."""
        return {"layout": self.layout, "root": self.root,
                "labelmap": self.labelmap.source if self.labelmap else None}


def _finish_manifest(table: pa.Table, ds: Dataset) -> pa.Table:
    """Sort by item_id and check uniqueness: a duplicate id is a bug in a layout, not data."""
    if "item_id" not in table.column_names:
        raise AssertionError(f"{type(ds).__name__} manifest has no item_id column")
    table = table.sort_by("item_id")
    ids = table.column("item_id")
    if len(ids) > 1:  # sorted: a duplicate sits next to its twin (compared in Arrow: no Python strings)
        same = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        if pc.any(same).as_py():
            k = pc.index(same, True).as_py()
            raise AssertionError(f"{type(ds).__name__}: duplicate item_id {ids[k].as_py()!r} in manifest")
    return table


# ---------------------------------------------------------------------------- shared helpers


def stem(rel: str) -> str:
    """Relative path without its extension (posix)."""
    base, ext = posixpath.splitext(rel)
    return base if ext else rel


def find_labelmap(root: Root, *dirs: str) -> LabelMap | None:
    """The first label-map file found in ``dirs`` of ``root`` (see LABELMAP_FILENAMES)."""
    for d in dirs:
        for name in LABELMAP_FILENAMES:
            rel = posixpath.join(d, name) if d else name
            if root.exists(rel):
                return load_labelmap(root.display(rel), data=root.read(rel))
    return None


def header_size(root: Root, rel: str, extra: dict) -> tuple[int, int] | None:
    """Image (w, h) from its header; a broken image is noted in ``extra['image_error']``, not raised.

    The item's mask may be perfectly fine when its image is not, so image
    problems are facts about the item, not a failure to read it.
    """
    try:
        with root.open(rel) as f:
            size = read_image_size(f)
            if not root.is_zip:  # a zip member's seek inflates it: folders only
                _check_complete(f, root.display(rel))
            return size
    except FormatError as e:
        if e.code == "path_outside_root":
            raise
        extra["image_error"] = {"code": e.code, "message": e.message}
        return None


def _check_complete(f, name: str) -> None:
    """``FormatError('truncated')`` for a PNG / JPEG whose end marker is missing and which
    Pillow then fails to decode (a file cut short). The usual file costs one 4 KB read of
    its tail; only a file without its end marker (or with data after it) is decoded."""
    from PIL import Image

    f.seek(0)
    head = f.read(8)
    if head.startswith(b"\x89PNG"):
        marker = b"IEND"
    elif head.startswith(b"\xff\xd8"):
        marker = b"\xff\xd9"
    else:
        return
    end = f.seek(0, 2)
    f.seek(max(0, end - 4096))
    if marker in f.read():
        return
    f.seek(0)
    try:
        with Image.open(f) as img:
            img.load()
    except Exception as e:  # noqa: BLE001 -- Pillow raises OSError, SyntaxError, ValueError... on bad data
        raise FormatError("truncated", f"{name}: the image cannot be decoded to its end ({e})", path=name) from None


def read_root_mask(root: Root, rel: str, *, labelmap: LabelMap | None = None, panoptic: bool = False) -> MaskData:
    """Read a mask stored under a root (folder or zip), refusing unsafe names."""
    data = root.read(rel)
    if panoptic:
        return read_panoptic(data, name=root.display(rel))
    return read_mask(data, labelmap=labelmap, name=root.display(rel))


# ---------------------------------------------------------------------------- detection


def _json_kind(path: str) -> str | None:
    """'coco_panoptic' / 'coco' / None by scanning the JSON text (no full parse)."""
    seen_images = seen_annotations = False
    tail = b""
    with open_path(path) as f:
        while True:
            chunk = f.read(1 << 24)
            if not chunk:
                break
            buf = tail + chunk
            if b'"segments_info"' in buf:
                return "coco_panoptic"
            seen_images = seen_images or b'"images"' in buf
            seen_annotations = seen_annotations or b'"annotations"' in buf
            tail = buf[-32:]
    if seen_images or seen_annotations:
        return "coco"
    return None


def _platform_kind(path: str) -> str | None:
    """'labelbox' / 'nucleus' / None from the first record of a JSONL file or a JSON list.

    A Labelbox line has ``data_row`` (export) or ``dataRow`` (import); a Nucleus record
    has ``mask_url``. A JSON object file (COCO) is never a platform file.
    """
    import json

    with open_path(path, 1 << 16) as f:
        head = f.read(1 << 16).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if not any(k in head for k in (b'"data_row"', b'"dataRow"', b'"mask_url"')):
        return None  # no platform key near the start: never parse (a COCO file is decided elsewhere)
    first = None
    if head.startswith(b"["):
        from ._platforms import read_json_records

        try:
            recs = read_json_records(path)
        except FormatError:
            return None
        first = recs[0] if recs else None
    elif head.startswith(b"{"):
        line = head.split(b"\n", 1)[0]
        try:
            first = json.loads(line)
        except (ValueError, RecursionError):
            if path.lower().endswith(RECORD_EXTENSIONS):  # a line longer than the peek
                with open_path(path) as f:
                    try:
                        first = json.loads(f.readline())
                    except (ValueError, RecursionError):
                        return None
            else:
                return None
    if not isinstance(first, dict):
        return None
    if "data_row" in first or "dataRow" in first:
        return "labelbox"
    if "mask_url" in first:
        return "nucleus"
    return None


def _dir_jsons(path: str) -> list[str]:
    if is_url(path):  # a prefix: its objects (and those of annotations/) named *.json
        from ..storage import Location

        out = []
        for d in (path, join_target(path, "annotations")):
            loc = Location(d)
            out += [join_target(d, f) for f in ask(loc.iterdir, loc) if f.lower().endswith(".json")]
        return out
    out = []
    for d in (path, os.path.join(path, "annotations")):
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.lower().endswith(".json")]
    return out


def _is_zip(path: str) -> bool:
    """Whether the file at a local path or a URL is a zip archive."""
    if not is_url(path):
        return zipfile.is_zipfile(path)
    with open_path(path, 1 << 16) as f:
        return zipfile.is_zipfile(f)


def _root_kind(root: Root, *, markers_only: bool = False) -> str | None:
    """Layout of a folder/zip root from its entries (None when nothing matches)."""
    if root.isdir("ImageSets/Segmentation") or root.isdir("SegmentationClass") or root.isdir("SegmentationObject"):
        return "voc"
    if (root.exists("index.csv") or root.exists("meta.json")) and (root.isdir("masks") or root.isdir("images")):
        return "cleanzip"
    if root.isdir("masks"):
        return "masks"
    if not markers_only and any(f.lower().endswith(MASK_EXTENSIONS) for f in root.files()):
        return "masks"
    return None


def zip_base(root: Root) -> str:
    """A zip holding one top folder (``export/ImageSets/...``) is read from inside that folder."""
    if not root.is_zip:
        return ""
    tops = [t for t in root.top_dirs() if t]
    if len(tops) == 1 and root.isdir(tops[0]):
        inner = root.sub(tops[0])
        if _root_kind(inner) is not None and _root_kind(root) in (None, "masks"):
            return tops[0]
    return ""


def detect_layout(path: str | os.PathLike) -> str:
    """Name of the layout at ``path`` (see :data:`LAYOUTS`); FormatError('unknown_layout') otherwise.

    Rules, in order:

    0. a ``.csv``, ``.parquet``, ``.jsonl`` or ``.ndjson`` file (local or a URL) whose columns (first
       record) include ``item_id`` and ``mask``: ``urls``;
       a ``.ndjson`` / ``.jsonl`` file, or a ``.json`` file holding a list: ``labelbox`` when its
       first record has ``data_row`` / ``dataRow``, ``nucleus`` when it has ``mask_url``;
    1. a ``.json`` file: ``coco_panoptic`` if it contains ``"segments_info"``,
       else ``coco`` if it has ``"images"``/``"annotations"``;
    2. a folder or zip (a zip with a single top folder is looked into):
       ``voc`` if it has ``ImageSets/Segmentation/``, ``SegmentationClass/`` or
       ``SegmentationObject/``; ``cleanzip`` if it has ``index.csv`` or
       ``meta.json`` next to ``masks/`` or ``images/``; ``masks`` if it has a
       ``masks/`` folder
       (checked before step 3: ``masks`` by mask images only comes after it);
    3. a folder holding exactly one COCO JSON (itself or in ``annotations/``):
       that JSON's kind; several COCO JSONs: ``unknown_layout`` naming them;
    4. a folder or zip with any mask image: ``masks``;
    5. otherwise ``unknown_layout`` (several JSONs are listed in the message).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "SegmentationClass").mkdir()
    >>> detect_layout(d)
    'voc'
    """
    from .urllist import URL_LIST_EXTENSIONS, is_url_list
    if os.fspath(path).lower().split("?", 1)[0].endswith(URL_LIST_EXTENSIONS) and is_url_list(path):
        return "urls"
    p = norm_target(path)
    kind = path_kind(p) if is_url(p) else None  # a URL: one look (an object, a prefix, nothing)
    if not (kind is not None if is_url(p) else os.path.exists(p)):
        raise FormatError("missing_file", f"{p}: no such file or folder", path=p)
    is_file = kind == "file" if is_url(p) else os.path.isfile(p)
    if is_file and p.lower().endswith(RECORD_EXTENSIONS + (".json",)):
        kind = _platform_kind(p)
        if kind is not None:
            return kind
        if not p.lower().endswith(".json"):
            raise FormatError("unknown_layout", f"{p}: records that are neither Labelbox rows (data_row / dataRow) "
                              "nor Nucleus segmentation records (mask_url)", path=p)
        kind = _json_kind(p)
        if kind is None:
            raise FormatError("unknown_layout", f"{p}: JSON without 'images', 'annotations' or "
                              "'segments_info': not a COCO file", path=p)
        return kind
    if is_file and not _is_zip(p):
        if p.lower().split("?", 1)[0].endswith(URL_LIST_EXTENSIONS):
            raise FormatError("unknown_layout", f"{p}: a list without 'item_id' and 'mask' columns: not a URL list",
                              path=p)
        raise FormatError("unknown_layout", f"{p}: a file that is neither a COCO .json nor a .zip", path=p)
    root = Root(p)
    base = zip_base(root)
    inner = root.sub(base) if base else root
    kind = _root_kind(inner, markers_only=True)  # structural markers first
    if kind is not None:
        return kind
    if not root.is_zip:
        jsons = _dir_jsons(p)
        kinds = [(j, _json_kind(j)) for j in jsons]
        coco = [(j, k) for j, k in kinds if k]
        if len(coco) == 1:
            return coco[0][1]
        if len(coco) > 1:
            raise FormatError("unknown_layout", f"{p}: several COCO files, pass one of them: "
                              + ", ".join(relative_target(j, p) for j, _ in coco), path=p)
    kind = _root_kind(inner)  # then: any folder of mask images
    if kind is not None:
        return kind
    raise FormatError("unknown_layout", f"{p}: no known layout ({', '.join(LAYOUTS)})",
                      path=p)


def open_dataset(path: str | os.PathLike, *, layout: str | None = None, images: str | os.PathLike | None = None,
                 labelmap: LabelMap | str | os.PathLike | None = None, **options: Any) -> Dataset:
    """Open a dataset, detecting its layout unless ``layout`` is given.

    ``images``: a folder of images (paired by stem for ``masks``, COCO
    ``file_name`` root for ``coco``/``coco_panoptic``). ``labelmap``: a
    :class:`LabelMap` or a label-map file; without it each layout looks for
    its own (``labelmap.txt`` etc., COCO categories, VOC default). Extra
    ``options`` go to the layout (e.g. ``masks=`` PNG folder for panoptic,
    ``cache_dir=`` for COCO, ``label=`` for Labelbox: which label of a data row).

    >>> import tempfile, pathlib, numpy as np
    >>> from fastmask.formats.png import write_mask
    >>> d = pathlib.Path(tempfile.mkdtemp()); write_mask(d / "a.png", np.zeros((2, 2), np.uint8))
    >>> ds = open_dataset(d); ds.layout, ds.manifest().column("item_id").to_pylist()
    ('masks', ['a'])
    """
    with sharing_listings():  # a prefix at a URL is listed once, for detection and the dataset
        return _open(path, layout, images, labelmap, options)


def _open(path, layout, images, labelmap, options) -> Dataset:
    if layout is None:
        layout = detect_layout(path)
    if layout not in LAYOUTS:
        raise FormatError("unknown_layout", f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if labelmap is not None and not isinstance(labelmap, LabelMap):
        labelmap = load_labelmap(labelmap)
    if layout == "masks":
        from .maskdir import MaskDirDataset as cls
    elif layout == "voc":
        from .voc import VocDataset as cls
    elif layout == "coco":
        from .coco import CocoDataset as cls
    elif layout == "coco_panoptic":
        from .panoptic import PanopticDataset as cls
    elif layout == "labelbox":
        from .labelbox import LabelboxDataset as cls
    elif layout == "nucleus":
        from .nucleus import NucleusDataset as cls
    elif layout == "urls":
        from .urllist import UrlListDataset as cls
    else:
        from .cleanzip import CleanZipDataset as cls
    return cls(path, images=images, labelmap=labelmap, **options)
