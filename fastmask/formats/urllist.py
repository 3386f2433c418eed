"""Layout ``urls``: a list of items addressed one object at a time (signed URLs, mixed buckets).

A CSV, JSONL (``.jsonl`` / ``.ndjson``) or Parquet file with one row per item::

    item_id,mask,image,width,height
    a,https://storage.example/masks/a.png?X-Amz-Signature=...,https://storage.example/img/a.jpg,640,480
    b,s3://bucket/masks/b.png,,,
    c,masks/c.png,images/c.jpg,,

Columns: ``item_id`` and ``mask`` (required), ``image``, ``width`` and ``height``
(optional; other columns are ignored). A mask or image is any fsspec URL (``https://``
with headers from ``--storage-options``, ``s3://``, ``gs://``, ...), a ``file://`` URL
or a path; a relative path is relative to the list file (a list read from a URL names
no local file: its relative paths resolve under its own URL). The label map is
``labelmap=``, else a label-map file beside a local list (as for ``masks``), else none.

Reading: the mask is fetched (remote: one GET for ``http(s)``, retried on transient
faults, ahead of time within a shard, see :func:`fastmask.storage.prefetching`) and
decoded like any mask file; a fault is the item's error row with its storage code
(``not_found``, ``forbidden``, ``expired_url``, ``remote_error``; a local path:
``missing_file``, ``not_a_file``...). The image is never downloaded: its size is the
row's ``width`` / ``height`` when given, else read from a local image's header; a local
image that does not exist is ``missing=['image']``.

Rows that make no item (no ``item_id``, a line that is not a JSON object, a CSV row with
more fields than the header) and second rows of an ``item_id`` (the first is the item)
are listing problems (:meth:`UrlListDataset.problems`: ``bad_url_list``,
``duplicate_entry``); a row with an empty ``mask`` cell or a ``width`` / ``height`` that
is not a positive integer is its item's error row ``bad_url_list``. Nothing is dropped
silently.

Manifest columns: ``item_id``, ``mask``, ``image``, ``width``, ``height``, ``line`` (the
row's line in a text list, its index + 1 in Parquet), ``row_error``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import posixpath

import pyarrow as pa

from ..storage import Fetcher, Location, is_url, read_object
from ._fs import Root
from .errors import FormatError
from .labelmap import LabelMap
from .layouts import Dataset, Item, find_labelmap, header_size
from .png import read_mask

__all__ = ["UrlListDataset", "URL_LIST_EXTENSIONS", "is_url_list", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS"]

URL_LIST_EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".parquet")
REQUIRED_COLUMNS = ("item_id", "mask")
OPTIONAL_COLUMNS = ("image", "width", "height")


def _kind(name: str) -> str | None:
    low = name.lower().split("?", 1)[0]
    if low.endswith(".csv"):
        return "csv"
    if low.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if low.endswith(".parquet"):
        return "parquet"
    return None


def _shown(url: str) -> str:
    """A URL as reports show it: without its query string (a signature is a secret)."""
    return url.split("?", 1)[0] if is_url(url) else url


def is_url_list(path: str | os.PathLike | Location) -> bool:
    """True when ``path`` is a CSV / JSONL / Parquet file whose columns (first record) include
    ``item_id`` and ``mask``. Reads the header only (a Parquet footer, a first line).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "l.csv"); _ = open(p, "w").write("item_id,mask\\na,a.png\\n")
    >>> is_url_list(p)
    True
    """
    loc = path if isinstance(path, Location) else Location(os.fspath(path))
    kind = _kind(loc.name)
    if kind is None:
        return False
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq
            with loc.open("rb") as f:
                names = pq.read_schema(f).names
            return all(c in names for c in REQUIRED_COLUMNS)
        with loc.open("rb") as f:
            head = f.read(1 << 16)
    except (OSError, ValueError, pa.ArrowException, FormatError):
        return False
    text = head.decode("utf-8-sig", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return False
    if kind == "csv":
        header = next(csv.reader([lines[0]]), [])
        return all(c in [h.strip() for h in header] for c in REQUIRED_COLUMNS)
    try:
        first = json.loads(lines[0])
    except (ValueError, RecursionError):
        return False
    return isinstance(first, dict) and all(c in first for c in REQUIRED_COLUMNS) and "mask_url" not in first


class UrlListDataset(Dataset):
    """A CSV / JSONL / Parquet list of items whose masks (and images) are URLs or paths.

    >>> import tempfile, os, numpy as np
    >>> from fastmask.formats import write_mask, open_dataset
    >>> d = tempfile.mkdtemp(); write_mask(os.path.join(d, "a.png"), np.eye(2, dtype=np.uint8))
    >>> _ = open(os.path.join(d, "list.csv"), "w").write("item_id,mask\\nx,a.png\\n")
    >>> ds = open_dataset(os.path.join(d, "list.csv")); ds.layout, int(ds.read_item(ds.manifest().to_pylist()[0]).mask.array.sum())
    ('urls', 2)
    """

    layout = "urls"

    def __init__(self, path, *, images=None, labelmap: LabelMap | None = None, fetcher: Fetcher | None = None):
        text = os.fspath(path) if not isinstance(path, Location) else path.url
        self.remote = is_url(text)
        self.root = text if self.remote else os.path.abspath(text)
        self.path = self.root
        self.labelmap = labelmap
        self._manifest = None
        self.fetcher = fetcher if fetcher is not None else Fetcher()
        if images is not None:
            raise FormatError("unknown_layout", f"{self.root}: a URL list names its images in its 'image' column; "
                              "--images is not used with it")
        if _kind(self.root) is None:
            raise FormatError("unknown_layout", f"{self.root}: a URL list is a .csv, .jsonl, .ndjson or .parquet file")
        self._problems: list[dict] = []
        if not self.remote and not os.path.isfile(self.root):
            raise FormatError("missing_file", f"{self.root}: no such file", path=self.root)
        if self.labelmap is None and not self.remote:
            self.labelmap = find_labelmap(Root(os.path.dirname(self.root)), "")

    def __getstate__(self):
        state = super().__getstate__()
        state["_problems"] = []  # the driver's listing facts: workers read rows, not the list
        return state

    # ------------------------------------------------------------------ listing
    def _list_location(self) -> Location:
        return self.fetcher.location(self.root)

    def _records(self) -> list[tuple[int, object]]:
        """``[(line, record)]`` of the list: a record is a dict, or a string saying why the row is no record."""
        loc = self._list_location()
        kind = _kind(self.root)
        if kind == "parquet":
            return self._parquet_records(loc)
        data = read_object(loc)  # the list itself: never from the cache (it may change)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise FormatError("bad_url_list", f"{self.root}: not UTF-8 ({e})", path=self.root) from None
        if kind == "csv":
            return self._csv_records(text)
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError) as e:
                out.append((n, f"not JSON ({str(e)[:100]})"))
                continue
            out.append((n, rec if isinstance(rec, dict) else f"a JSON {type(rec).__name__}, not an object"))
        first = next((r for _, r in out if isinstance(r, dict)), None)
        self._check_columns(list(first) if first is not None else [], "its first record")
        return out

    def _check_columns(self, names: list[str], where: str) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise FormatError("bad_url_list", f"{self.root}: {where} has no {' / '.join(missing)} column "
                              f"(a URL list needs {', '.join(REQUIRED_COLUMNS)})", path=self.root)

    def _csv_records(self, text: str) -> list[tuple[int, object]]:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            header = []
        except csv.Error as e:
            raise FormatError("bad_url_list", f"{self.root}: {e}", path=self.root) from None
        self._check_columns(header, "the header")
        out = []
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                out.append((reader.line_num, f"not a CSV row ({e})"))
                continue
            if not any(f.strip() for f in fields):
                continue  # a blank line
            if len(fields) > len(header):
                out.append((reader.line_num, f"{len(fields)} fields, the header has {len(header)}"))
                continue
            out.append((reader.line_num, {h: (v if v != "" else None) for h, v in zip(header, fields)}))
        return out

    def _parquet_records(self, loc: Location) -> list[tuple[int, object]]:
        import pyarrow.parquet as pq
        data = read_object(loc)  # the list itself: never from the cache (it may change)
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError) as e:
            raise FormatError("bad_url_list", f"{self.root}: not a Parquet file ({str(e)[:200]})",
                              path=self.root) from None
        self._check_columns(table.column_names, "the table")
        cols = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in table.column_names]
        return list(enumerate(table.select(cols).to_pylist(), 1))

    def _build_manifest(self) -> pa.Table:
        rows, first_line, problems = [], {}, []
        for line, rec in self._records():
            where = f"{_shown(self.root)}:{line}"
            if isinstance(rec, str):
                problems.append({"kind": "bad_url_list", "path": where, "message": f"{where}: {rec}; no item",
                                 "line": line})
                continue
            iid = rec.get("item_id")
            if isinstance(iid, float) and iid.is_integer():
                iid = int(iid)
            if iid is None or isinstance(iid, (bool, dict, list, float)) or str(iid).strip() == "":
                problems.append({"kind": "bad_url_list", "path": where, "line": line,
                                 "message": f"{where}: a row without an item_id ({str(iid)[:50]!r}); no item"})
                continue
            iid = str(iid)
            if iid in first_line:
                problems.append({"kind": "duplicate_entry", "path": where, "line": line,
                                 "message": f"{where}: item_id {iid!r} again (first on line {first_line[iid]}); "
                                            "the first row is the item"})
                continue
            first_line[iid] = line
            rows.append(self._row(iid, line, rec))
        self._problems = sorted(problems, key=lambda p: (p["kind"], p["line"]))
        cols = {c: pa.array([r[c] for r in rows], pa.string()) for c in ("item_id", "mask", "image", "row_error")}
        for c in ("width", "height", "line"):
            cols[c] = pa.array([r[c] for r in rows], pa.int64())
        return pa.table({k: cols[k] for k in ("item_id", "mask", "image", "width", "height", "line", "row_error")})

    @staticmethod
    def _row(iid: str, line: int, rec: dict) -> dict:
        errors = []
        mask = rec.get("mask")
        if not isinstance(mask, str) or not mask.strip():
            errors.append(f"an empty mask cell ({mask!r})" if mask in (None, "") else f"mask {str(mask)[:80]!r} "
                          "is not a URL or path")
            mask = None
        image = rec.get("image")
        if image is not None and (not isinstance(image, str) or not image.strip()):
            errors.append(f"image {str(image)[:80]!r} is not a URL or path")
            image = None
        size = {}
        for c in ("width", "height"):
            v = rec.get(c)
            if isinstance(v, str) and v.strip().isdigit():
                v = int(v)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**31):
                errors.append(f"{c} {str(v)[:40]!r} is not a positive integer")
                v = None
            size[c] = v
        return {"item_id": iid, "mask": mask.strip() if mask else None, "image": image.strip() if image else None,
                "width": size["width"], "height": size["height"], "line": line,
                "row_error": "; ".join(errors) or None}

    def problems(self) -> list[dict]:
        """Rows that made no item (``bad_url_list``) and second rows of an item_id (``duplicate_entry``).

        >>> # [p["kind"] for p in open_dataset("list.csv").problems()]  -> ['duplicate_entry']
        """
        return self.listing()["problems"]

    def _root_problems(self) -> list[dict]:
        return [{k: p[k] for k in ("kind", "path", "message")} for p in self._problems]

    # ------------------------------------------------------------------ reading
    def locate(self, ref: str) -> Location:
        """The :class:`~fastmask.storage.Location` a cell names (a URL, or a path relative to the list).

        >>> # open_dataset("s3://b/lists/l.csv").locate("../masks/a.png")  -> Location('s3://b/masks/a.png')
        """
        if is_url(ref):
            return self.fetcher.location(ref)
        local = ref[len("file://"):] if ref.lower().startswith("file://") else ref
        if self.remote:
            if os.path.isabs(local) or ref.lower().startswith("file://"):
                raise FormatError("path_outside_root", f"{_shown(self.root)} is read from a URL: it may not name the "
                                  f"local file {ref}", path=ref)
            scheme, rest = self.root.split("?", 1)[0].split("://", 1)
            host, _, base = rest.partition("/")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(base), local.replace("\\", "/")))
            if joined == ".." or joined.startswith("../"):
                raise FormatError("path_outside_root", f"{ref}: climbs above {scheme}://{host}", path=ref)
            return self.fetcher.location(f"{scheme}://{host}/{joined.lstrip('/')}")
        if not os.path.isabs(local):
            local = os.path.join(os.path.dirname(self.root), local)
        return Location(os.path.normpath(local), {})

    def prefetch(self, row: dict) -> list:
        """The remote objects reading ``row`` needs: ``[(fetcher, location)]`` (its mask)."""
        if row.get("row_error") or not row.get("mask") or not is_url(row["mask"]):
            return []
        return [(self.fetcher, self.locate(row["mask"]))]

    def read_item(self, row: dict) -> Item:
        iid = row["item_id"]
        if row.get("row_error"):
            raise FormatError("bad_url_list", f"{_shown(self.root)}:{row.get('line')}: item {iid!r}: "
                              f"{row['row_error']}", path=self.root)
        item = Item(item_id=iid)
        loc = self.locate(row["mask"])
        data = self.fetcher.read(loc)
        item.mask = read_mask(data, labelmap=self.labelmap, name=_shown(loc.url))
        if row.get("image"):
            self._image(row["image"], item)
        if row.get("width") and row.get("height"):
            item.image_size = (int(row["width"]), int(row["height"]))
        item.extra["url_list"] = {"line": row.get("line"), "mask": _shown(loc.url)}
        return item

    def _image(self, ref: str, item: Item) -> None:
        loc = self.locate(ref)
        item.image_path = _shown(loc.url)
        if loc.is_remote:
            return  # never downloaded: its size comes from the row's width / height
        folder, name = os.path.split(loc.url)
        if not os.path.exists(loc.url):
            item.missing.append("image")
            return
        item.image_size = header_size(Root(folder), name, item.extra)

    def info(self) -> dict:
        return {**super().info(), "prefetch": self.fetcher.prefetch, "cache": self.fetcher.cache}
