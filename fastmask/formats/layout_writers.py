"""Writers of dataset layouts: id maps, VOC/CVAT files, COCO JSON (streamed), clean zip, zips.

Every file is written to a hidden temporary name in its folder and renamed, so a
reader never sees half a file (a killed run leaves only complete files). Every target may
also be a URL or a :class:`~fastmask.storage.Location` (``s3://bucket/out/dataset/a.png``):
the object is uploaded whole, in one request, or not at all.

PNG encoding is :mod:`fastmask.formats.writers` (shared with ``fastmask rasterize``).

- :func:`write_id_map`: an instance-id map in the format of its folder (:data:`MASK_FORMATS`):
  ``png16`` (16-bit PNG, ids <= 65535) or ``tiff32`` (32-bit TIFF, Pillow mode ``I``), both read
  back by :func:`~fastmask.formats.read_mask`; :func:`choose_mask_format` picks one per folder.
- :func:`write_class_map`: a class map as 8-bit grey (or palette) PNG, 16-bit above 255.
- :func:`write_panoptic_png`: COCO panoptic RGB PNG, id = R + 256 G + 65536 B.
- :func:`labelmap_txt`: a CVAT/Datumaro ``labelmap.txt`` that
  :meth:`~fastmask.formats.LabelMap.from_cvat` reads back to the same ids.
- :func:`write_coco_json`: COCO JSON from iterables of images / annotations (streamed:
  nothing holds all annotations).
- :func:`write_cleanzip_meta`, :func:`write_index_csv`, :func:`zip_folder`.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> write_id_map(os.path.join(d, "a"), np.array([[0, 70000]]), fmt="tiff32")
'a.tif'
"""
from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import shutil
import stat
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from .. import storage
from . import writers as _w
from .labelmap import FILLER_NAME, LabelMap, voc_colormap

__all__ = [
    "CLEANZIP_FORMAT",
    "MASK_FORMATS",
    "FormatOverflow",
    "atomic_write",
    "choose_mask_format",
    "labelmap_json",
    "labelmap_txt",
    "output_path",
    "safe_relpath",
    "write_class_map",
    "write_cleanzip_meta",
    "write_coco_json",
    "write_id_map",
    "write_index_csv",
    "write_panoptic_png",
    "zip_folder",
]

CLEANZIP_FORMAT = "fastmask-cleanzip"

#: the formats of an id-map folder: every file of one folder has the same type (a loader that
#: globs ``*.png`` must not lose the items that happened to need 32 bits)
MASK_FORMATS = ("png16", "tiff32")
_EXT = {"png16": ".png", "tiff32": ".tif"}
PNG16_MAX = 65535


class FormatOverflow(ValueError):
    """An id map whose ids do not fit its folder's format (``png16``: ids above 65535)."""


def choose_mask_format(max_id: int | None, min_id: int | None = None) -> str:
    """The format of an id-map folder, chosen once before the first write.

    ``max_id``: the largest id the run can write (from declared categories and the id
    scheme), None when unknown; ``min_id``: the smallest non-zero id it can write. ``tiff32``
    when ids are known to exceed 16 bits (``max_id`` above 65535, or even ``min_id``), else ``png16``.

    >>> choose_mask_format(64 * 1000 + 999), choose_mask_format(90 * 1000 + 999), choose_mask_format(None)
    ('png16', 'tiff32', 'png16')
    >>> choose_mask_format(None, min_id=100001)
    'tiff32'
    """
    if (max_id is not None and max_id > PNG16_MAX) or (min_id is not None and min_id > PNG16_MAX):
        return "tiff32"
    return "png16"


def output_path(path: str | os.PathLike | storage.Location):
    """An output target ready to write: a local :class:`~pathlib.Path` whose folder exists, or a
    remote :class:`~fastmask.storage.Location` (object stores have no folders to create).

    >>> import tempfile, os
    >>> output_path(os.path.join(tempfile.mkdtemp(), "sub", "a.png")).parent.is_dir()
    True
    """
    target = _w.output_target(path)
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    return target


def atomic_write(path: str | os.PathLike | storage.Location, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (folders are created;
    a URL: one upload)."""
    _w.atomic_write(output_path(path), data)


def safe_relpath(item_id: str) -> str:
    """An item id as a relative POSIX path that cannot leave its folder.

    ``/`` keeps sub-folders; empty, ``.`` and ``..`` parts, backslashes and drive colons are replaced.

    >>> safe_relpath("a/b"), safe_relpath("../x"), safe_relpath("/abs//c:d")
    ('a/b', '_/x', 'abs/c_d')
    """
    text = str(item_id).replace("\\", "/").replace(":", "_").replace("\x00", "_")
    parts = [p for p in text.split("/") if p != ""]
    parts = ["_" if p in (".", "..") else p for p in parts]
    return "/".join(parts) or "_"


def _image(arr: np.ndarray, mode: str) -> Image.Image:
    h, w = arr.shape
    if mode == "I":
        return Image.frombytes("I", (w, h), np.ascontiguousarray(arr.astype("<i4")).tobytes())
    raise ValueError(mode)


def _save(img: Image.Image, path, fmt: str) -> None:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    atomic_write(path, buf.getvalue())


def write_id_map(path_stem: str | os.PathLike, ids: np.ndarray, *, fmt: str = "png16") -> str:
    """Write an instance-id map as ``<stem>.png`` (``fmt="png16"``: 16-bit grey, ids 0..65535) or
    ``<stem>.tif`` (``"tiff32"``: 32-bit integer TIFF, ids up to 2**31 - 1); returns the file name.

    The format is the folder's, never chosen per file: ids above 65535 in ``png16`` raise
    :class:`FormatOverflow`; negative ids raise ``ValueError``.

    >>> import tempfile, os
    >>> write_id_map(os.path.join(tempfile.mkdtemp(), "a"), np.array([[0, 7]]))
    'a.png'
    """
    if fmt not in MASK_FORMATS:
        raise ValueError(f"write_id_map: fmt must be one of {', '.join(MASK_FORMATS)}, got {fmt!r}")
    arr = np.asarray(ids)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"write_id_map: expected a 2-D integer array, got {arr.dtype} {arr.shape}")
    lo = int(arr.min()) if arr.size else 0
    hi = int(arr.max()) if arr.size else 0
    if lo < 0 or hi > np.iinfo(np.int32).max:
        raise ValueError(f"write_id_map: ids must be in 0..2**31-1, got {lo}..{hi}")
    if fmt == "png16" and hi > PNG16_MAX:
        raise FormatOverflow(f"id {hi} does not fit a 16-bit PNG (this folder is png16: one format per folder); "
                             "rerun with --format tiff32")
    stem = output_path(path_stem)
    if isinstance(stem, Path):
        out, name = stem.with_name(stem.name + _EXT[fmt]), stem.name + _EXT[fmt]
    else:  # the URL as given plus the extension (no parsing of the key)
        out, name = storage.Location(stem.url + _EXT[fmt], stem.options), stem.url.rsplit("/", 1)[-1] + _EXT[fmt]
    if fmt == "png16":
        _w.write_instance_png(out, arr)
    else:
        _save(_image(arr, "I"), out, "TIFF")
    return name


def write_class_map(path: str | os.PathLike, classes: np.ndarray, *, palette=None) -> str:
    """Write a class map PNG (:func:`fastmask.formats.writers.write_semantic_png`): ``L`` (ids <= 255),
    ``P`` with ``palette`` ((n, 3) or ``"voc"``), ``I;16`` above 255. Returns the mode."""
    return _w.write_semantic_png(output_path(path), classes, palette=palette)


def write_panoptic_png(path: str | os.PathLike, ids: np.ndarray) -> str:
    """Write segment ids (0..2**24-1) as a COCO panoptic RGB PNG (id = R + 256 G + 65536 B).

    The RGB bytes are the low three bytes of each little-endian uint32 id (one copy), encoded by
    :func:`fastmask.formats.writers.encode_png`.
    """
    a = np.asarray(ids)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"write_panoptic_png: expected a 2-D integer array, got {a.dtype} {a.shape}")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= 1 << 24):
        raise ValueError(f"write_panoptic_png: segment ids must be in 0..2**24-1, got {int(a.min())}..{int(a.max())}")
    h, w = a.shape
    rgb = np.ascontiguousarray(a.astype("<u4", copy=False).view(np.uint8).reshape(h, w, 4)[:, :, :3])
    _w.atomic_write(output_path(path), _w.encode_png(rgb))
    return "RGB"


def _colors_for(labelmap: LabelMap | None, ids: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    """The label map's colours, VOC colours for the others (unique: no colour used twice)."""
    voc = voc_colormap(256)
    given = dict(labelmap.colors) if labelmap is not None else {}
    used = set(given.values())
    out = {}
    for i in ids:
        if i in given:
            out[i] = tuple(int(v) for v in given[i])
            continue
        c = tuple(int(v) for v in voc[i % 256]) if i < 256 else None
        k = 0
        while c is None or c in used:  # a colour not used yet (ids >= 256, or a clash)
            k += 1
            c = ((i * 37 + k * 101) % 256, (i * 91 + k * 53) % 256, (i * 13 + k * 197) % 256)
        used.add(c)
        out[i] = c
    return out


def labelmap_txt(labelmap: LabelMap) -> str:
    """CVAT/Datumaro ``labelmap.txt`` text: the *n*-th label line is id *n*, so ids 0..max are
    written with placeholder names (``_unused_<id>``, read back as fillers) in the gaps; id 255,
    named and in ``ignore``, is written as ``ignored:224,224,192::`` (the reader's convention).
    Ids above 254 are refused.

    >>> lm = LabelMap(names={0: "bg", 2: "cat", 255: "ignored"}, colors={}, ignore={255})
    >>> print(labelmap_txt(lm))
    # label:color_rgb:parts:actions
    bg:0,0,0::
    _unused_1:128,0,0::
    cat:0,128,0::
    ignored:224,224,192::
    <BLANKLINE>
    """
    ids = sorted(i for i in labelmap.names if not (i == 255 and 255 in labelmap.ignore))
    if ids and (ids[0] < 0 or ids[-1] > 254):
        raise ValueError(f"labelmap.txt holds ids 0..254 (+255 ignored), got {ids[0]}..{ids[-1]}")
    top = ids[-1] if ids else 0
    cols = _colors_for(labelmap, range(top + 1))
    lines = ["# label:color_rgb:parts:actions"]
    for i in range(top + 1):
        name = FILLER_NAME.format(i) if i in labelmap.fillers else labelmap.names.get(i, FILLER_NAME.format(i))
        name = name.replace(":", "_")
        r, g, b = cols[i]
        lines.append(f"{name}:{r},{g},{b}::")
    if 255 in labelmap.ignore and 255 in labelmap.names:
        lines.append("ignored:224,224,192::")
    return "\n".join(lines) + "\n"


def labelmap_json(labelmap: LabelMap) -> dict:
    """The fastmask label-map JSON of ``labelmap`` (colours filled in, so RGB masks stay readable)."""
    doc = labelmap.to_json()
    return doc


def write_coco_json(path: str | os.PathLike, images: Iterable[dict], annotations: Iterable[dict | str],
                    categories: list[dict], *, info: dict | None = None, key: str = "annotations") -> tuple[int, int]:
    """Stream a COCO JSON file: ``images`` and ``annotations`` (dicts or JSON text) are written one
    by one, so memory does not grow with the dataset. Returns ``(n_images, n_annotations)``.

    ``key="annotations"`` (instances); a panoptic file uses the same key with
    ``segments_info`` inside each annotation.
    """
    path = output_path(path)
    n_img = n_ann = 0
    with _w.atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write('{"info": ' + json.dumps(info or {"description": "written by fastmask"}) + ',\n"images": [')
        for im in images:
            f.write(("\n" if n_img == 0 else ",\n") + json.dumps(im))
            n_img += 1
        f.write(f'\n],\n"{key}": [')
        for a in annotations:
            f.write(("\n" if n_ann == 0 else ",\n") + (a if isinstance(a, str) else json.dumps(a)))
            n_ann += 1
        f.write('\n],\n"categories": ' + json.dumps(categories) + "\n}\n")
    return n_img, n_ann


def write_index_csv(path: str | os.PathLike, rows: Iterable[dict], extra_columns: list[str] = ()) -> int:
    """Clean-zip ``index.csv``: ``item_id,image,mask,width,height,split`` (+ ``extra_columns``)."""
    cols = ["item_id", "image", "mask", "width", "height", "split", *extra_columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    n = 0
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
        n += 1
    atomic_write(path, buf.getvalue().encode("utf-8"))
    return n


def write_cleanzip_meta(path: str | os.PathLike, labelmap: LabelMap | None, *, task: str,
                        mask_encoding: str, image_sizes: dict | None = None, extra: dict | None = None,
                        has_images: bool | None = None) -> dict:
    """Clean-zip ``meta.json`` as :class:`~fastmask.formats.cleanzip.CleanZipDataset` reads it.

    ``has_images=False``: the dataset holds masks only (its items are not missing their images).
    """
    doc: dict = {"format": CLEANZIP_FORMAT, "version": 1, "task": task, "mask_encoding": mask_encoding}
    if has_images is not None:
        doc["has_images"] = bool(has_images)
    if labelmap is not None:
        lm = labelmap.to_json()
        doc["labels"] = lm.get("labels", [])
        doc["ignore"] = lm.get("ignore", [255])
        doc["background"] = lm.get("background", 0)
    else:
        doc.update({"labels": [], "ignore": [255], "background": 0})
    if image_sizes is not None:
        doc["image_sizes"] = image_sizes
    doc.update(extra or {})
    atomic_write(path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    return doc


def zip_folder(folder: str | os.PathLike | storage.Location, zip_path: str | os.PathLike | storage.Location) -> int:
    """Zip every file under ``folder`` (relative names, sorted, hidden temporaries skipped); returns the count.

    Either may be a URL: the objects of a remote folder are streamed into the zip one by one
    (in the order a local folder is walked: a folder's files, then its sub-folders), and a
    remote zip is built in a local temporary file and uploaded whole at the end.
    """
    n = 0
    with _w.atomic_output(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        src = _w.output_target(folder)
        if isinstance(src, Path):
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                for f in sorted(filenames):
                    if f.startswith("."):
                        continue
                    full = Path(dirpath) / f
                    z.write(full, posixpath.join(*full.relative_to(src).parts))
                    n += 1
            return n
        when = time.localtime(time.time())[:6]
        mode = (stat.S_IFREG | (0o666 & ~_w._umask())) << 16  # what a local file of this run would get
        for name, size in sorted(src.find(), key=_walk_order):
            if posixpath.basename(name).startswith("."):
                continue
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type, info.external_attr, info.file_size = zipfile.ZIP_DEFLATED, mode, size
            with (src / name).open("rb") as f, z.open(info, "w") as dst:
                shutil.copyfileobj(f, dst, 1 << 20)
            n += 1
    return n


def _walk_order(entry: tuple[str, int]) -> tuple:
    """Sort key of a relative name in ``os.walk`` order with sorted names: a folder's files
    first, then each sub-folder's contents.

    >>> sorted(["b/x", "a", "c", "b/c/y"], key=lambda n: _walk_order((n, 0)))
    ['a', 'c', 'b/x', 'b/c/y']
    """
    parts = entry[0].split("/")
    return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)
