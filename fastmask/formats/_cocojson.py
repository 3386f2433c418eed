"""Parse a COCO (instances or panoptic) JSON once into Arrow IPC files that workers memory-map.

Why: a 118k-image / 860k-annotation instances file is ~450 MB of JSON; loading
it with ``json.load`` costs several GB of Python objects in *every* process.
Here the file is read in 16 MB chunks and each element of ``images`` and
``annotations`` is decoded on its own (``json.JSONDecoder.raw_decode``), so only
one batch of rows is ever held as Python objects. Every annotation's raw JSON
text is kept as a string column (no re-serialisation) next to typed columns.

Cache folder (``<cache root>/coco/<key>/``, key = hash of path, size, mtime
and :data:`CACHE_VERSION`)::

    images.arrow       image_id, file_name, width, height, item_id, index (file order),
                       ann_start, ann_count            sorted by item_id
    annotations.arrow  image_id, id, category_id, iscrowd, file_name, raw
                       sorted by image_id (stable: file order within an image)
    meta.json          counts, categories, orphan annotations, duplicate ids

The cache root is ``cache_dir`` if given, else ``$FASTMASK_CACHE``, else
``$XDG_CACHE_HOME/fastmask`` (``~/.cache/fastmask``). Building happens in a
temporary folder renamed into place, so concurrent builders never expose half
a cache.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FormatError

__all__ = ["stream_top_level", "build_cache", "open_table", "CACHE_VERSION", "default_cache_root"]

CACHE_VERSION = 1
_CHUNK = 1 << 24
_BATCH = 50_000
_WS = " \t\r\n"
_I64_MAX = np.iinfo(np.int64).max

IMAGE_SCHEMA = pa.schema([
    ("image_id", pa.int64()), ("file_name", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
    ("index", pa.int64()), ("raw_id", pa.string()),
])
ANN_SCHEMA = pa.schema([
    ("image_id", pa.int64()), ("id", pa.int64()), ("category_id", pa.int64()), ("iscrowd", pa.int64()),
    ("file_name", pa.string()), ("raw", pa.large_string()),
])


class _Reader:
    """Incremental text buffer over a UTF-8 file."""

    def __init__(self, f, name: str):
        self.f = f
        self.name = name
        self.dec = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.consumed = 0  # characters dropped from the front of buf (for error offsets)

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.f.read(_CHUNK)
        try:
            text = self.dec.decode(data, final=not data)
        except UnicodeDecodeError as e:
            raise FormatError("bad_json", f"{self.name}: not UTF-8 ({e})") from None
        if not data:
            self.eof = True
        self.consumed += self.pos
        self.buf = self.buf[self.pos:] + text
        self.pos = 0
        return True

    def skip_ws(self) -> str:
        """Advance over whitespace; return the next character ('' at end of file)."""
        while True:
            buf, pos, n = self.buf, self.pos, len(self.buf)
            while pos < n and buf[pos] in _WS:
                pos += 1
            self.pos = pos
            if pos < n:
                return buf[pos]
            if not self.fill():
                return ""

    def error(self, what: str) -> FormatError:
        return FormatError("bad_json", f"{self.name}: {what} at character {self.consumed + self.pos}")

    def expect(self, ch: str):
        if self.skip_ws() != ch:
            got = self.buf[self.pos:self.pos + 20]
            raise self.error(f"expected {ch!r}, found {got!r}" if got else f"expected {ch!r}, found end of file")
        self.pos += 1

    def value(self, dec: json.JSONDecoder) -> tuple[Any, int, int]:
        """Decode one JSON value at pos: (value, start, end) in the current buffer."""
        self.skip_ws()
        while True:
            try:
                obj, end = dec.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.fill():  # maybe the value continues in the next chunk
                    continue
                raise FormatError("bad_json", f"{self.name}: {e.msg} at character {self.consumed + e.pos}") from None
            except RecursionError:
                raise self.error("nesting too deep") from None
            if end >= len(self.buf) and not self.eof:
                # a number (or literal) cut at the chunk border decodes "successfully": re-read
                if self.fill():
                    continue
            start = self.pos
            return obj, start, end


def stream_top_level(path: str, array_keys=("images", "annotations")) -> Iterator[tuple[str, str, Any, str | None]]:
    """Yield ('item', key, element, raw_text) for elements of ``array_keys`` arrays and
    ('value', key, value, None) for the other top-level keys of a JSON object file.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "c.json")
    >>> _ = open(p, "w").write('{"images": [{"id": 1}], "categories": []}')
    >>> [(k, key, v) for k, key, v, _ in stream_top_level(p)]
    [('item', 'images', {'id': 1}), ('value', 'categories', [])]
    """
    dec = json.JSONDecoder()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FormatError("missing_file", f"{path}: no such file", path=path) from None
    except OSError as e:
        raise FormatError("unreadable", f"{path}: {e}", path=path) from None
    with f:
        r = _Reader(f, path)
        if r.skip_ws() == "":
            raise FormatError("bad_json", f"{path}: empty file", path=path)
        r.expect("{")
        if r.skip_ws() == "}":
            r.pos += 1
        else:
            while True:
                if r.skip_ws() != '"':
                    raise r.error("expected a key")
                key, _, end = r.value(dec)
                r.pos = end
                r.expect(":")
                if key in array_keys and r.skip_ws() == "[":
                    r.pos += 1
                    if r.skip_ws() == "]":
                        r.pos += 1
                    else:
                        while True:
                            obj, start, end = r.value(dec)
                            yield "item", key, obj, r.buf[start:end]
                            r.pos = end
                            c = r.skip_ws()
                            r.pos += 1
                            if c == "]":
                                break
                            if c != ",":
                                r.pos -= 1
                                raise r.error(f"expected ',' or ']' in '{key}'")
                else:
                    obj, _, end = r.value(dec)
                    r.pos = end
                    yield "value", key, obj, None
                c = r.skip_ws()
                r.pos += 1
                if c == "}":
                    break
                if c != ",":
                    r.pos -= 1
                    raise r.error("expected ',' or '}'")
        if r.skip_ws() != "":
            raise r.error("extra data after the top-level object")


def _int(v) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if -(2 ** 63) <= v < 2 ** 63 else None
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)
    return None


def default_cache_root() -> str:
    env = os.environ.get("FASTMASK_CACHE")
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "fastmask")


def cache_key(path: str) -> str:
    st = os.stat(path)
    h = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|v{CACHE_VERSION}".encode())
    return h.hexdigest()[:20]


def item_ids(image_ids: list, raw_ids: list) -> list[str]:
    """Stable string ids: 12-digit zero-padded image id (sorts numerically), '~' + raw for odd ids,
    '#k' suffixes for repeated ids (so every image record stays an item)."""
    out, seen = [], {}
    for iid, raw in zip(image_ids, raw_ids):
        base = f"{iid:012d}" if iid is not None and iid >= 0 else "~" + (raw if raw is not None else "null")
        k = seen.get(base, 0) + 1
        seen[base] = k
        out.append(base if k == 1 else f"{base}#{k}")
    return out


def build_cache(json_path: str, cache_dir: str | None = None) -> str:
    """Parse ``json_path`` into a cache folder (reused when it already exists); return its path.

    >>> # cache = build_cache("instances_val2017.json"); open_table(cache + "/annotations.arrow")
    """
    json_path = os.path.abspath(json_path)
    if not os.path.isfile(json_path):
        raise FormatError("missing_file", f"{json_path}: no such file", path=json_path)
    root = os.path.join(cache_dir or default_cache_root(), "coco")
    final = os.path.join(root, cache_key(json_path))
    if os.path.isfile(os.path.join(final, "meta.json")):
        return final
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(final) + ".tmp-", dir=root)
    try:
        _build(json_path, tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, "meta.json")):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _build(json_path: str, out: str) -> None:
    img_cols: dict[str, list] = {k: [] for k in IMAGE_SCHEMA.names}
    ann_cols: dict[str, list] = {k: [] for k in ANN_SCHEMA.names}
    values: dict[str, Any] = {}
    n_img = n_ann = 0
    bad_images: list[int] = []
    ann_tmp = os.path.join(out, "annotations.unsorted.arrow")
    with pa.OSFile(ann_tmp, "wb") as sink, pa.ipc.new_file(sink, ANN_SCHEMA) as writer:

        def flush():
            if ann_cols["raw"]:
                writer.write_batch(pa.record_batch([pa.array(ann_cols[k], ANN_SCHEMA.field(k).type)
                                                    for k in ANN_SCHEMA.names], schema=ANN_SCHEMA))
                for v in ann_cols.values():
                    v.clear()

        for kind, key, obj, raw in stream_top_level(json_path):
            if kind == "value":
                values[key] = obj
                continue
            if not isinstance(obj, dict):
                raise FormatError("bad_json", f"{json_path}: {key}[{n_img if key == 'images' else n_ann}] "
                                  f"is {type(obj).__name__}, not an object", path=json_path)
            if key == "images":
                iid = _int(obj.get("id"))
                if iid is None:
                    bad_images.append(n_img)
                img_cols["image_id"].append(iid)
                fn = obj.get("file_name")
                img_cols["file_name"].append(fn if isinstance(fn, str) else None)
                img_cols["width"].append(_int(obj.get("width")))
                img_cols["height"].append(_int(obj.get("height")))
                img_cols["index"].append(n_img)
                img_cols["raw_id"].append(None if iid is not None else json.dumps(obj.get("id")))
                n_img += 1
            else:
                ann_cols["image_id"].append(_int(obj.get("image_id")))
                ann_cols["id"].append(_int(obj.get("id")))
                ann_cols["category_id"].append(_int(obj.get("category_id")))
                ann_cols["iscrowd"].append(_int(obj.get("iscrowd")))
                fn = obj.get("file_name")
                ann_cols["file_name"].append(fn if isinstance(fn, str) else None)
                ann_cols["raw"].append(raw)
                n_ann += 1
                if len(ann_cols["raw"]) >= _BATCH:
                    flush()
        flush()

    if "images" not in values and n_img == 0 and "annotations" not in values and n_ann == 0:
        raise FormatError("bad_json", f"{json_path}: no 'images' or 'annotations' array", path=json_path)

    # -- sort annotations by image_id (nulls last), streaming from the memory-mapped unsorted file
    with pa.memory_map(ann_tmp) as src:
        t = pa.ipc.open_file(src).read_all()
        ids = pc.fill_null(t.column("image_id"), _I64_MAX).to_numpy() if t.num_rows else np.zeros(0, np.int64)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        with pa.OSFile(os.path.join(out, "annotations.arrow"), "wb") as sink, \
                pa.ipc.new_file(sink, ANN_SCHEMA) as writer:
            for i in range(0, len(order), _BATCH):
                writer.write_table(t.take(pa.array(order[i:i + _BATCH])))
        dup_ann = _duplicates(t.column("id").to_numpy(zero_copy_only=False) if t.num_rows else [])
        del t
    os.unlink(ann_tmp)

    # -- images: offsets into the sorted annotations, item ids, sorted by item_id
    img_ids = img_cols["image_id"]
    arr = np.array([i if i is not None else _I64_MAX for i in img_ids], dtype=np.int64)
    start = np.searchsorted(sorted_ids, arr, "left")
    end = np.searchsorted(sorted_ids, arr, "right")
    null = np.array([i is None for i in img_ids], bool)
    start[null] = 0
    end[null] = 0
    iids = item_ids(img_ids, img_cols["raw_id"])
    images = pa.table({**{k: pa.array(img_cols[k], IMAGE_SCHEMA.field(k).type) for k in IMAGE_SCHEMA.names},
                       "item_id": pa.array(iids, pa.string()),
                       "ann_start": pa.array(start, pa.int64()),
                       "ann_count": pa.array(end - start, pa.int64())}).sort_by("item_id")
    with pa.OSFile(os.path.join(out, "images.arrow"), "wb") as sink, pa.ipc.new_file(sink, images.schema) as w:
        w.write_table(images)

    known = np.unique(arr[~null])
    covered = int(np.isin(sorted_ids, known).sum()) if len(sorted_ids) else 0
    dup_img = _duplicates([i for i in img_ids if i is not None])
    cats = values.get("categories")
    meta = {
        "cache_version": CACHE_VERSION,
        "json": json_path,
        "n_images": n_img,
        "n_annotations": n_ann,
        "n_orphan_annotations": n_ann - covered,
        "orphan_image_ids_sample": sorted({int(x) for x in sorted_ids[~np.isin(sorted_ids, known)][:1000]
                                           if x != _I64_MAX})[:20],
        "n_annotations_without_image_id": int((sorted_ids == _I64_MAX).sum()),
        "duplicate_image_ids": dup_img[:100],
        "duplicate_annotation_ids": dup_ann[:100],
        "images_without_integer_id": bad_images[:100],
        "categories": cats if isinstance(cats, list) else None,
        "has_categories": "categories" in values,
        "top_level_keys": sorted(values) + [k for k in ("images", "annotations") if k not in values],
        "info": values.get("info") if isinstance(values.get("info"), dict) else None,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)


def _duplicates(values) -> list[int]:
    a = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))], dtype=np.int64)
    if a.size == 0:
        return []
    u, c = np.unique(a, return_counts=True)
    return [int(x) for x in u[c > 1]]


_TABLES: dict[str, tuple[int, pa.Table]] = {}


def open_table(path: str) -> pa.Table:
    """Memory-mapped Arrow table, opened once per process (zero-copy slices for workers)."""
    pid = os.getpid()
    hit = _TABLES.get(path)
    if hit is not None and hit[0] == pid:
        return hit[1]
    try:
        src = pa.memory_map(path)
        table = pa.ipc.open_file(src).read_all()
    except (OSError, pa.ArrowInvalid) as e:
        raise FormatError("unreadable", f"{path}: COCO cache unreadable ({e}); delete it to rebuild") from None
    _TABLES[path] = (pid, table)
    return table
