"""Parse a COCO (instances or panoptic) JSON once into Arrow IPC files that workers memory-map.

Why: a 118k-image / 860k-annotation instances file is ~450 MB of JSON; loading
it with ``json.load`` costs several GB of Python objects in *every* process.
Here the file is read in 16 MB chunks and each element of ``images`` and
``annotations`` is decoded on its own (``json.JSONDecoder.raw_decode``), so only
one batch of rows is ever held as Python objects. Every annotation's raw JSON
text is kept as a string column (no re-serialisation) next to typed columns.

Cache folder (``<cache root>/coco/<key>/``, key = hash of path, size, mtime
and :data:`CACHE_VERSION`; for a JSON at a URL: of the URL, size and ETag (or generation,
modification time), the JSON being streamed from the object store)::

    images.arrow       image_id, image_key, file_name, width, height, item_id, index (file order),
                       ann_start, ann_count, problem            sorted by item_id
    annotations.arrow  image_key, id_key, category_id, iscrowd, file_name, problem, raw
                       grouped by image (the images' first-occurrence order; file order within an
                       image), then the orphans (image_key matching no image, or none)
    meta.json          counts, categories, orphan annotations, duplicate ids

Ids are matched by their JSON value (:func:`id_key`): integers by value (``-5`` and
``2**70`` too), floats by their text (``1.0`` is not ``1``), strings exactly (``"1"``
is not ``1``), anything else by its canonical JSON text. ``item_id`` is a
readable, file-name-safe form of the image id (:func:`item_ids`).

The cache root is ``cache_dir`` if given, else ``$FASTMASK_CACHE``, else
``$XDG_CACHE_HOME/fastmask`` (``~/.cache/fastmask``); when that folder cannot be
created or written, a private temporary folder (removed at exit) is used and one
line on stderr says so. The cache is local to each machine: a process that finds no cache
for the file (a Dask worker on another machine, without a shared disk) builds its own
there, from the same file or URL, so nothing a worker needs is a driver-only path.
Building happens in a temporary folder renamed into place,
so concurrent builders never expose half a cache; a build is announced (with the
cache's path) on the ``fastmask.notice`` logger at INFO, which the command line prints.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..storage import is_url
from .errors import FormatError

#: One-line notices for the user (the command line prints them on stderr; a library
#: caller sees them only if it configures logging): the cache being built, and where.
_notice = logging.getLogger("fastmask.notice")

__all__ = ["stream_top_level", "build_cache", "open_table", "CACHE_VERSION", "default_cache_root"]

CACHE_VERSION = 2
_CHUNK = 1 << 24
_BATCH = 50_000
_WS = " \t\r\n"
_I64 = 2 ** 63

IMAGE_SCHEMA = pa.schema([
    ("image_id", pa.int64()), ("image_key", pa.string()), ("file_name", pa.string()), ("width", pa.int64()),
    ("height", pa.int64()), ("index", pa.int64()), ("problem", pa.string()),
])
ANN_SCHEMA = pa.schema([
    ("image_key", pa.string()), ("id_key", pa.string()), ("category_id", pa.int64()), ("iscrowd", pa.int64()),
    ("file_name", pa.string()), ("problem", pa.string()), ("raw", pa.large_string()),
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
            except ValueError:
                # an integer literal beyond Python's int-parsing limit (4,300 digits): decode this
                # value again keeping such literals as digit strings (ids stay comparable)
                try:
                    obj, end = _LONG_DECODER.raw_decode(self.buf, self.pos)
                except json.JSONDecodeError:
                    if self.fill():
                        continue
                    raise self.error("malformed value") from None
                except (ValueError, RecursionError) as e:
                    raise self.error(f"undecodable value ({str(e)[:80]})") from None
            if end >= len(self.buf) and not self.eof:
                # a number (or literal) cut at the chunk border decodes "successfully": re-read
                if self.fill():
                    continue
            start = self.pos
            return obj, start, end


def stream_top_level(path: str, array_keys=("images", "annotations")) -> Iterator[tuple[str, str, Any, str | None]]:
    """Yield ('item', key, element, raw_text) for elements of ``array_keys`` arrays and
    ('value', key, value, None) for the other top-level keys of a JSON object file (and for
    an empty ``array_keys`` array).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "c.json")
    >>> _ = open(p, "w").write('{"images": [{"id": 1}], "categories": []}')
    >>> [(k, key, v) for k, key, v, _ in stream_top_level(p)]
    [('item', 'images', {'id': 1}), ('value', 'categories', [])]
    """
    dec = json.JSONDecoder()
    try:
        f = _open_json(path)
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
                        yield "value", key, [], None  # an empty array is there all the same
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


class LongInt(str):
    """An integer literal of more digits than Python parses (kept as its digit text)."""


def _parse_int(text: str):
    try:
        return int(text)
    except ValueError:
        return LongInt(text)


_LONG_DECODER = json.JSONDecoder(parse_int=_parse_int)


def _int(v) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if -(2 ** 63) <= v < 2 ** 63 else None
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)
    return None


def _short(v) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, LongInt) else f"<integer of {len(v)} digits>"
    return text if len(text) <= 40 else text[:37] + "..."


def _text(v) -> tuple[str | None, str | None]:
    """(a string Arrow can store, problem): a lone surrogate (valid JSON, not text) is refused."""
    if not isinstance(v, str):
        return None, None
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return None, f"bad_json: file_name {json.dumps(v)[:120]} is not valid text (a lone surrogate)"
    return v, None


def id_key(v) -> str | None:
    """The canonical JSON text by which an id is matched: None for null / missing.

    Integers by value (any size), floats by their JSON text (``1.0`` is not ``1``: two
    JSON values, as ``duplicate_id`` counts them), strings exactly, booleans, lists and
    objects by their sorted compact JSON. Keys of different JSON types never
    collide (a string key keeps its quotes).

    >>> id_key(5), id_key(5.0), id_key("5"), id_key(-3), id_key(1.5), id_key(2**70), id_key(None)
    ('5', '5.0', '"5"', '-3', '1.5', '1180591620717411303424', None)
    """
    if v is None:
        return None
    if isinstance(v, LongInt):
        return str.__str__(v)
    t = type(v)
    if t is int:
        return str(v)
    if t is str:
        return json.dumps(v)
    if t is bool:
        return "true" if v else "false"
    if t is float:
        return json.dumps(v)  # always holds '.', 'e', NaN or Infinity: never an integer's key
    try:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(v)


def key_value(key: str | None):
    """The JSON value of an :func:`id_key` (a digit string for integers Python cannot parse).

    >>> key_value('"a"'), key_value("7"), key_value(None)
    ('a', 7, None)
    """
    if key is None:
        return None
    try:
        return json.loads(key)
    except ValueError:
        return key


_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_MAX_ID = 160


def _pct(text: str) -> str:
    """Percent-encode every character outside ``[A-Za-z0-9._-]`` (UTF-8; lone surrogates kept)."""
    return "".join(ch if ch in _PLAIN else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
                   for ch in text)


def item_base(v, key: str | None) -> str:
    """The item id of an image id before repeats get ``#k`` (see :func:`item_ids`)."""
    if isinstance(v, LongInt):
        s = str.__str__(v)
        base = s.zfill(12) if not s.startswith("-") else "~" + s
    elif isinstance(v, int) and not isinstance(v, bool):
        n = int(v)
        base = f"{n:012d}" if n >= 0 else f"~{n}"
    elif isinstance(v, str):
        plain = (0 < len(v) <= _MAX_ID and v[0].isascii() and v[0].isalnum() and set(v) <= _PLAIN
                 and not v.isdigit())
        base = v if plain else "~~" + _pct(v)
    else:
        base = "~" + _pct(key if key is not None else "null")
    if len(base) > _MAX_ID:  # file names stay short: a readable head and a hash of the whole id
        base = base[:_MAX_ID - 18] + "~h" + hashlib.sha1((key or "").encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return base


def default_cache_root() -> str:
    env = os.environ.get("FASTMASK_CACHE")
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "fastmask")


_PRIVATE: list[str] = []


def _private_root(wanted: str, error: OSError) -> str:
    """A temporary cache folder for this process (removed at exit), announced once on stderr."""
    if not _PRIVATE:
        import atexit
        import sys

        d = tempfile.mkdtemp(prefix="fastmask-cache-")
        atexit.register(shutil.rmtree, d, True)
        _PRIVATE.append(d)
        print(f"fastmask: the COCO cache folder {os.path.dirname(wanted)} cannot be written "
              f"({error.strerror or error}); using a temporary cache in {d} for this run "
              "(set FASTMASK_CACHE to a writable folder to keep it)", file=sys.stderr)
    return _PRIVATE[0]


def cache_key(path: str) -> str:
    """The cache folder's name for a JSON file: a hash of where it is, its size and version
    (local: modification time; a URL: its ETag, generation or modification time).

    >>> len(cache_key(__file__))
    20
    """
    if is_url(path):
        from ..storage import Location, object_version

        size, version = object_version(Location(path))
        h = hashlib.sha1(f"{path}|{size}|{version}|v{CACHE_VERSION}".encode())
        return h.hexdigest()[:20]
    st = os.stat(path)
    h = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|v{CACHE_VERSION}".encode())
    return h.hexdigest()[:20]


def _open_json(path: str):
    """The JSON file for streaming: a local file, or an object at a URL (read 16 MB a request)."""
    if is_url(path):
        from ..storage import Location, open_object

        return open_object(Location(path), _CHUNK)
    return open(path, "rb")


def item_ids(values: list, keys: list) -> list[str]:
    """Stable, unique, file-name-safe item ids for image ids (``values`` with their :func:`id_key`).

    A non-negative integer: zero-padded to 12 digits (string order = numeric order); a
    string of ``[A-Za-z0-9._-]`` starting with a letter or digit, not only digits, at most
    160 characters: itself; any other string: ``~~`` + the string percent-encoded; any other
    value (negative or non-integral number, boolean, list, object, null or no id): ``~`` +
    its JSON text percent-encoded; an id longer than 160 characters is cut and ends with
    ``~h`` + a hash of the whole id. A repeated id gets ``#2``, ``#3``... so every record
    stays an item. Only ``[A-Za-z0-9._~%#-]`` is used, and no id starts with ``.``.

    >>> item_ids([7, "frankfurt_000000_000294", -5, "a b", "12", 1.5, None, 7], [id_key(v) for v in
    ...          [7, "frankfurt_000000_000294", -5, "a b", "12", 1.5, None, 7]])
    ['000000000007', 'frankfurt_000000_000294', '~-5', '~~a%20b', '~~12', '~1.5', '~null', '000000000007#2']
    """
    out, seen = [], {}
    for v, key in zip(values, keys):
        base = item_base(v, key)
        k = seen.get(base, 0) + 1
        seen[base] = k
        out.append(base if k == 1 else f"{base}#{k}")
    return out


def build_cache(json_path: str, cache_dir: str | None = None) -> str:
    """Parse ``json_path`` into a cache folder (reused when it already exists); return its path.

    >>> # cache = build_cache("instances_val2017.json"); open_table(cache + "/annotations.arrow")
    """
    if is_url(json_path):  # streamed from the object store; the key asks for its version
        try:
            key = cache_key(json_path)
        except FormatError as e:
            code = "missing_file" if e.code == "not_found" else e.code
            raise FormatError(code, e.message, path=json_path) from None
    else:
        json_path = os.path.abspath(json_path)
        if not os.path.isfile(json_path):
            raise FormatError("missing_file", f"{json_path}: no such file", path=json_path)
        key = cache_key(json_path)
    root = os.path.join(cache_dir or default_cache_root(), "coco")
    final = os.path.join(root, key)
    if os.path.isfile(os.path.join(final, "meta.json")):
        return final
    try:
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=os.path.basename(final) + ".tmp-", dir=root)
    except OSError as e:  # a read-only or foreign HOME: build in a private temporary folder
        root = os.path.join(_private_root(root, e), "coco")
        final = os.path.join(root, os.path.basename(final))
        if os.path.isfile(os.path.join(final, "meta.json")):
            return final
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=os.path.basename(final) + ".tmp-", dir=root)
    _notice.info("indexing %s once into a cache: %s (reused while the file is unchanged; "
                 "FASTMASK_CACHE chooses the folder)", json_path, final)
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
    img_values: list = []  # the images' id values (for their item ids)
    ann_cols: dict[str, list] = {k: [] for k in ANN_SCHEMA.names}
    a_image_key, a_id_key, a_category, a_crowd, a_file, a_problem, a_raw = (ann_cols[k] for k in ANN_SCHEMA.names)
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
                v = obj.get("id")
                iid = v if type(v) is int and -(2 ** 63) <= v < 2 ** 63 else None
                if iid is None:
                    bad_images.append(n_img)
                img_values.append(v)
                img_cols["image_id"].append(iid)
                img_cols["image_key"].append(id_key(v))
                fn, problem = _text(obj.get("file_name"))
                img_cols["file_name"].append(fn)
                img_cols["problem"].append(problem)
                w, h = _int(obj.get("width")), _int(obj.get("height"))
                if problem is None and (w is None or h is None):
                    problem = (f"bad_size: width {_short(obj.get('width'))}, height {_short(obj.get('height'))}: "
                               "positive integers expected")
                img_cols["problem"][-1] = problem
                img_cols["width"].append(w)
                img_cols["height"].append(h)
                img_cols["index"].append(n_img)
                n_img += 1
            else:
                # the usual integer ids and values inline: this loop runs once per annotation
                v = obj.get("image_id")
                a_image_key.append(str(v) if type(v) is int else id_key(v))
                v = obj.get("id")
                a_id_key.append(str(v) if type(v) is int else id_key(v))
                v = obj.get("category_id")
                a_category.append(v if type(v) is int and -_I64 <= v < _I64 else _int(v))
                v = obj.get("iscrowd")
                a_crowd.append(v if type(v) is int and -_I64 <= v < _I64 else _int(v))
                v = obj.get("file_name")
                if v is None:
                    a_file.append(None)
                    a_problem.append(None)
                else:
                    fn, problem = _text(v)
                    a_file.append(fn)
                    a_problem.append(problem)
                a_raw.append(raw)
                n_ann += 1
                if len(a_raw) >= _BATCH:
                    flush()
        flush()

    if "images" not in values and n_img == 0 and "annotations" not in values and n_ann == 0:
        raise FormatError("bad_json", f"{json_path}: no 'images' or 'annotations' array", path=json_path)

    # -- the distinct image keys, in first-occurrence order: annotations are grouped by them
    img_keys = img_cols["image_key"]
    position: dict[str, int] = {}
    for k in img_keys:
        if k is not None and k not in position:
            position[k] = len(position)
    uniq = pa.array(list(position), pa.string())
    with pa.memory_map(ann_tmp) as src:
        t = pa.ipc.open_file(src).read_all()
        if t.num_rows:
            pos = pc.index_in(t.column("image_key"), value_set=uniq)
            ann_pos = pc.fill_null(pos, len(position)).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            ann_pos = np.zeros(0, np.int64)
        order = np.argsort(ann_pos, kind="stable")  # orphans (position = len) last, file order kept
        sorted_pos = ann_pos[order]
        with pa.OSFile(os.path.join(out, "annotations.arrow"), "wb") as sink, \
                pa.ipc.new_file(sink, ANN_SCHEMA) as writer:
            for i in range(0, len(order), _BATCH):
                writer.write_table(t.take(pa.array(order[i:i + _BATCH])))
        dup_ann = _duplicates(t.column("id_key")) if t.num_rows else []
        orphan_keys = t.column("image_key").take(pa.array(order[np.searchsorted(sorted_pos, len(position)):]))
        n_orphan_without = orphan_keys.null_count
        orphan_sample = pc.unique(orphan_keys.drop_null()).slice(0, 20).to_pylist()
        del t
    os.unlink(ann_tmp)

    # -- images: offsets into the grouped annotations, item ids, sorted by item_id
    ups = np.arange(len(position) + 1)
    starts = np.searchsorted(sorted_pos, ups, "left")
    ends = np.searchsorted(sorted_pos, ups, "right")
    img_pos = np.array([position[k] if k is not None else len(position) for k in img_keys], np.int64)
    start, end = starts[img_pos], ends[img_pos]
    null = np.array([k is None for k in img_keys], bool)
    start[null] = 0
    end[null] = 0
    iids = item_ids(img_values, img_keys)
    images = pa.table({**{k: pa.array(img_cols[k], IMAGE_SCHEMA.field(k).type) for k in IMAGE_SCHEMA.names},
                       "item_id": pa.array(iids, pa.string()),
                       "ann_start": pa.array(start, pa.int64()),
                       "ann_count": pa.array(end - start, pa.int64())}).sort_by("item_id")
    with pa.OSFile(os.path.join(out, "images.arrow"), "wb") as sink, pa.ipc.new_file(sink, images.schema) as w:
        w.write_table(images)

    n_matched = int(starts[len(position)]) if len(sorted_pos) else 0
    cats = values.get("categories")
    meta = {
        "cache_version": CACHE_VERSION,
        "json": json_path,
        "n_images": n_img,
        "n_annotations": n_ann,
        "n_matched_annotations": n_matched,
        "n_orphan_annotations": n_ann - n_matched,
        "orphan_image_ids_sample": [key_value(k) for k in sorted(orphan_sample, key=_sort_key)],
        "n_annotations_without_image_id": n_orphan_without,
        "duplicate_image_ids": _duplicates(pa.array(img_keys, pa.string())),
        "duplicate_annotation_ids": dup_ann,
        "images_without_integer_id": bad_images[:100],
        "categories": cats if isinstance(cats, list) else None,
        "has_categories": "categories" in values,
        "top_level_types": {k: _json_type(v) for k, v in values.items()},
        "top_level_keys": sorted(values) + [k for k in ("images", "annotations") if k not in values],
        "info": values.get("info") if isinstance(values.get("info"), dict) else None,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)


def _json_type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number" if isinstance(v, (int, float)) else "string")


def _sort_key(key: str):
    v = key_value(key)
    return (0, v, "") if isinstance(v, int) else (1, 0, key)


def _duplicates(keys: pa.Array | pa.ChunkedArray, limit: int = 100) -> list:
    """JSON values of the keys used more than once (at most ``limit``, in key order)."""
    keys = keys.drop_null() if hasattr(keys, "drop_null") else keys
    if len(keys) == 0:
        return []
    vc = pc.value_counts(keys)
    counts = vc.field("counts").to_numpy()
    dup = vc.field("values").filter(pa.array(counts > 1)).to_pylist()
    return [key_value(k) for k in sorted(dup, key=_sort_key)[:limit]]


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
