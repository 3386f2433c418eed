"""``convert --to labelbox`` and ``--to nucleus``: per-item files and records the platforms accept.

- **labelbox**: ``masks/<name>.png``, a composite RGB PNG per item (one unique colour per
  instance, black = unlabeled), and one import NDJSON line per object
  (``{"uuid", "dataRow": {"globalKey" | "id": <item id>}, "name", "mask": {"instanceURI",
  "colorRGB"}}``) gathered into ``labelbox.ndjson`` by :func:`write_labelbox`. Ignored
  (crowd) regions stay unlabeled: Labelbox has no ignore class.
- **nucleus**: ``masks/<name>.png``, a uint8 grey PNG of segment indices (0 = background
  when the item has background pixels, then 1, 2, ... in segment order; segments hidden
  entirely by later ones are left out), and one segmentation record per item
  (``{"type": "mask", "reference_id", "mask_url", "annotations": [{"label", "index",
  "metadata"}]}``). More than 255 visible segments do not fit a uint8 PNG: the item is an
  error row ``too_many_segments``. Crowd / ignored regions are a segment labelled with the
  ignore name and ``metadata.iscrowd = true``; every segment's ``metadata`` holds its
  ``instance_id`` (0 = not an instance), which the ``nucleus`` reader uses to give the
  same instance ids back.

``mask_url_prefix`` turns ``masks/<name>.png`` into ``<prefix>/masks/<name>.png``, the URL
the platform fetches (upload the dataset folder there); without it the URLs are relative
paths, which fastmask reads back but the platforms do not accept.
"""
from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import numpy as np

from ..engine import ItemError

if TYPE_CHECKING:  # pragma: no cover
    from .convert import ConvertJob, SourceItem

__all__ = ["labelbox_item", "nucleus_item", "mask_url", "instance_colors", "write_records", "DATA_ROW_KEYS"]

DATA_ROW_KEYS = ("globalKey", "id")
_UUID_NS = uuid.UUID("6f1c2a9e-3f0b-4f3e-9a57-0c2d1e4b7a10")  # fixed: the same item gives the same uuids


def mask_url(prefix: str | None, rel: str) -> str:
    """The URL (or relative path) of a written mask.

    >>> mask_url("s3://bucket/run1", "masks/a.png"), mask_url(None, "masks/a.png")
    ('s3://bucket/run1/masks/a.png', 'masks/a.png')
    """
    if not prefix:
        return rel
    return prefix.rstrip("/") + "/" + rel


def instance_colors(n: int) -> np.ndarray:
    """``(n + 1, 3)`` uint8: row 0 black, rows 1..n distinct non-black colours (VOC colours first).

    >>> instance_colors(2).tolist()
    [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    """
    from ..formats.labelmap import voc_colormap

    voc = voc_colormap(256)
    out = [(0, 0, 0)]
    used = {(0, 0, 0)}
    k, extra = 1, 1
    while len(out) <= n:
        if k < 256:
            c = tuple(int(v) for v in voc[k])
            k += 1
        else:  # past the VOC colours: walk the 24-bit values
            c = ((extra >> 16) & 255, (extra >> 8) & 255, extra & 255)
            extra += 1
        if c not in used:
            used.add(c)
            out.append(c)
    return np.array(out, np.uint8)


def _visible(src: "SourceItem", keep) -> tuple[np.ndarray, list[int]]:
    """Index map of the kept segments painted in order (later on top), compacted to 1..m over
    the segments that still have pixels; and the positions (in ``src.segments``) of those."""
    from .convert import _paint

    pos = [i for i, s in enumerate(src.segments) if keep(s)]
    idx = _paint([src.segments[i] for i in pos], src.height, src.width, list(range(1, len(pos) + 1)))
    counts = np.bincount(idx.reshape(-1), minlength=len(pos) + 1)
    alive = [k for k in range(1, len(pos) + 1) if counts[k]]
    lut = np.zeros(len(pos) + 1, np.int64)
    lut[alive] = np.arange(1, len(alive) + 1)
    return lut[idx], [pos[k - 1] for k in alive]


def _write_png(path, arr: np.ndarray) -> None:
    from ..formats import layout_writers as lw
    from ..formats import writers as w

    lw.atomic_write(path, w.encode_png(np.ascontiguousarray(arr)))


def _seg_rows(job: "ConvertJob", src: "SourceItem", index_map: np.ndarray, order: list[int],
              metadata: bool) -> list[dict]:
    from .. import rle as fr
    from .convert import _encode, _int64, _key
    from .schema import bbox_row

    rows = []
    areas = np.bincount(index_map.reshape(-1), minlength=len(order) + 1)
    for k, i in enumerate(order, 1):
        s = src.segments[i]
        r = _encode(index_map == k)
        rows.append({"index": k, "annotation_id": _int64(s["id"]), "annotation_key": _key(s["id"]),
                     "category_id": s["category_id"], "label": job._label(s["category_id"]),
                     "instance_id": s["instance_id"], "iscrowd": bool(s["iscrowd"]), "area": int(areas[k]),
                     **bbox_row(fr.toBbox(r)),
                     "metadata": json.dumps(_segment_metadata(s)) if metadata else None})
    return rows


def _segment_metadata(s: dict) -> dict:
    return {"iscrowd": bool(s["iscrowd"]), "instance_id": 0 if s["iscrowd"] else int(s["instance_id"] or 0)}


def labelbox_item(job: "ConvertJob", src: "SourceItem", rel: str) -> tuple[str, list[dict], list[dict]]:
    """Write the item's composite mask; ``(mask file, records, segment rows)``."""
    index_map, order = _visible(src, lambda s: not s["iscrowd"])
    if len(order) >= (1 << 24) - 1:
        raise ItemError("too_many_segments", f"{src.item_id}: {len(order)} objects do not fit 24-bit colours")
    colors = instance_colors(len(order))
    name = f"masks/{rel}.png"
    _write_png(job._dir / name, colors[index_map])
    url = mask_url(job.mask_url_prefix, name)
    records = []
    for k, i in enumerate(order, 1):
        s = src.segments[i]
        line = {"uuid": str(uuid.uuid5(_UUID_NS, f"{src.item_id}\x00{k}")),
                "dataRow": {job.data_row_key: str(src.item_id)}, "name": job._label(s["category_id"]),
                "mask": {"instanceURI": url, "colorRGB": [int(c) for c in colors[k]]}}
        records.append({"kind": "labelbox", "json": json.dumps(line)})
    return name, records, _seg_rows(job, src, index_map, order, metadata=False)


def nucleus_item(job: "ConvertJob", src: "SourceItem", rel: str) -> tuple[str, list[dict], list[dict]]:
    """Write the item's uint8 index PNG; ``(mask file, records, segment rows)``."""
    index_map, order = _visible(src, lambda s: True)
    if len(order) > 255:
        raise ItemError("too_many_segments", f"{src.item_id}: {len(order)} segments; a Nucleus mask is a uint8 PNG "
                        "(at most 256 values, index 0 included): split the item or merge segments")
    has_bg = bool((index_map == 0).any())
    if not has_bg and order:  # no background pixel: indices start at 0 (every index must occur)
        index_map = index_map - 1
    name = f"masks/{rel}.png"
    _write_png(job._dir / name, index_map.astype(np.uint8))
    rows = _seg_rows(job, src, index_map + (0 if has_bg else 1), order, metadata=True)
    base = 0 if has_bg else -1
    anns = []
    if has_bg:
        bg = job.background if job.background is not None else 0
        anns.append({"label": job._label(bg) if job._dataset.labelmap and bg in job._dataset.labelmap.names
                     else "background", "index": 0})
    for k, i in enumerate(order, 1):
        s = src.segments[i]
        anns.append({"label": job._label(s["category_id"]), "index": k + base, "metadata": _segment_metadata(s)})
    for r in rows:
        r["index"] += base
    rec = {"type": "mask", "reference_id": str(src.item_id), "mask_url": mask_url(job.mask_url_prefix, name),
           "annotations": anns}
    return name, [{"kind": "nucleus", "json": json.dumps(rec)}], rows


def write_records(report, path, kind: str) -> int:
    """Stream the report's ``kind`` records into a JSON-lines file (atomically; ``path`` may be a
    URL: uploaded whole at the end); returns the line count."""
    from ..formats import layout_writers as lw
    from ..formats import writers as w
    from .convert import _records

    n = 0
    with w.atomic_output(lw.output_path(path)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for text in _records(report, kind):
            f.write(text + "\n")
            n += 1
    return n
