"""The Job interface: a per-item function, a per-shard reduce and a final reduce.

The interface lives in the engine (not in ``fastmask.jobs``) because the engine must
call it and imports only point downward; ``fastmask.jobs.base`` re-exports it for job
authors. A job never sees executors, shards on disk or Parquet: it turns one manifest
row into one :class:`ItemResult` (or raises :class:`ItemError`), and the engine does
the rest.

Example::

    import pyarrow as pa
    from fastmask.engine import Job, ItemResult, ItemError, run_job

    class Size(Job):
        name = "size"
        item_schema = pa.schema([("n_bytes", pa.int64())])

        def process(self, item):
            try:
                return ItemResult({"n_bytes": os.path.getsize(item["path"])})
            except FileNotFoundError as e:
                raise ItemError("missing_file", str(e)) from None

    run_job(Size(), manifest, "out/")
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping, Sequence

import pyarrow as pa

# Columns of the ``items`` table that the engine fills; a job's item_schema may not reuse them.
ENGINE_ITEM_COLUMNS = ("item_id", "status", "error_code", "error_message")
STATUS_OK = "ok"
STATUS_ERROR = "error"
INTERNAL_ERROR = "internal_error"
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ItemError(Exception):
    """An expected, item-level failure: the item gets ``status="error"`` and the run goes on.

    ``code`` is a stable machine-readable string (``"unreadable"``, ``"missing_file"``...),
    ``message`` is for humans. A job may still attach ``fields`` (items columns it did
    learn, e.g. the file size) and ``rows`` (e.g. a finding describing the failure).

    Example::

        raise ItemError("truncated_png", "file ends after 120 of 4096 bytes")
    """

    def __init__(self, code: str, message: str = "", *, fields: Mapping[str, Any] | None = None,
                 rows: Mapping[str, Sequence[Mapping[str, Any]]] | None = None):
        super().__init__(code, message)
        self.code = str(code)
        self.message = str(message)
        self.fields = dict(fields or {})
        self.rows = {k: (dict(v) if isinstance(v, Mapping) else list(v)) for k, v in (rows or {}).items()}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code

    def __reduce__(self):  # keep keyword-only arguments across pickling (Dask, process pools)
        return (_make_item_error, (self.code, self.message, self.fields, self.rows))


def _make_item_error(code, message, fields, rows):
    return ItemError(code, message, fields=fields, rows=rows)


@dataclass
class ItemResult:
    """What :meth:`Job.process` returns for one item.

    ``fields`` fills the job's columns of the ``items`` row (missing keys are null);
    ``rows`` maps a table name of :attr:`Job.tables` to the rows this item adds there
    (the engine prepends ``item_id`` to each): a list of row dicts, or -- cheaper when an
    item adds many rows -- the same rows as columns, a dict of equal-length lists
    (``{"class_id": [1, 2], "pixels": [10, 20]}``; a column left out is null).

    Example::

        ItemResult({"width": 640, "height": 480},
                   {"findings": [{"rule": "empty_mask", "severity": "warning", "message": "no labels"}]})
    """

    fields: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]] | dict[str, list[Any]]] = field(default_factory=dict)


@dataclass
class ShardResult:
    """One shard's output as Arrow tables, handed to :meth:`Job.reduce_shard`.

    ``items`` has the engine columns plus the job's; ``tables`` holds the other tables
    (``item_id`` first). Rows are sorted by ``item_id``.
    """

    index: int
    items: pa.Table
    tables: dict[str, pa.Table]


class Job:
    """Base class of every job: subclass it, set ``name`` / schemas, implement ``process``.

    Contract (the engine relies on it):

    * ``name``: short identifier, recorded in ``run.json``.
    * ``item_schema``: the job's extra columns of the ``items`` table (all nullable:
      failed items have nulls there unless :class:`ItemError` carried ``fields``).
    * ``tables``: other output tables, ``{"findings": schema, ...}``; each gets a folder of
      parts. Names are lower-case identifiers, not ``items``; schemas exclude ``item_id``.
    * ``prepare()``: runs once in the driver before workers start, and once in every worker
      process before its first item (load Numba kernels from the cache, open a label map...).
    * ``process(item)``: ``item`` is one manifest row as a dict. Returns :class:`ItemResult`.
      Raise :class:`ItemError` for an expected failure; any other exception becomes an
      error row with code ``internal_error`` and the exception text, and the run goes on.
    * ``prefetch(item)`` (optional): the remote objects ``process(item)`` will read, as
      ``(fetcher, location)`` pairs (:class:`fastmask.storage.Fetcher`); the engine fetches
      them ahead within the shard (:func:`fastmask.storage.prefetching`). Default: none.
    * ``reduce_shard(shard)``: a small JSON-able summary of one shard (:class:`ShardResult`).
      It is stored next to the shard's parts, so a resumed run finalizes from the same values.
    * ``finalize(summaries)``: summaries of all shards in shard order -> JSON-able dict,
      stored as ``run.json["summary"]``.
    * ``arguments()``: the JSON-able parameters that determine the results; recorded in
      ``run.json`` and part of the resume fingerprint. The default collects public
      instance attributes; override it when they are not plain data.

    Jobs are pickled to process pools and Dask workers: keep state picklable (open files,
    locks and compiled kernels belong in ``prepare()``, stored on ``_private`` attributes
    that ``__getstate__`` may drop).
    """

    name: str = "job"
    item_schema: pa.Schema = pa.schema([])
    tables: dict[str, pa.Schema] = {}

    def prepare(self) -> None:
        """Runs once in the driver and once per worker process before processing."""

    def process(self, item: dict[str, Any]) -> ItemResult:  # pragma: no cover - abstract
        """Turn one manifest row into an :class:`ItemResult` (or raise :class:`ItemError`)."""
        raise NotImplementedError

    def prefetch(self, item: dict[str, Any]) -> list:
        """``(fetcher, location)`` pairs of the remote objects ``process(item)`` reads (default: none)."""
        return []

    def reduce_shard(self, shard: ShardResult) -> dict:
        """Small JSON-able summary of one shard (default: nothing)."""
        return {}

    def finalize(self, summaries: list[dict]) -> dict:
        """Combine the shard summaries (in shard order) into ``run.json["summary"]``."""
        return {}

    def arguments(self) -> dict[str, Any]:
        """JSON-able parameters of this job (default: its public instance attributes).

        Example::

            class Coverage(Job):
                def __init__(self, ignore=255): self.ignore = ignore
            Coverage().arguments()  # {'ignore': 255}
        """
        out = {}
        for key, value in sorted(vars(self).items()):
            if key.startswith("_"):
                continue
            try:
                out[key] = to_jsonable(value)
            except TypeError as e:
                raise TypeError(
                    f"{type(self).__name__}.{key} is not plain data ({e}); "
                    f"override {type(self).__name__}.arguments() to describe the job's parameters"
                ) from None
        return out


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from common Python values; NaN and infinities become ``None``.

    Paths become strings, enums their value, tuples/sets lists (sets sorted), NumPy
    scalars and arrays Python numbers and lists, dataclasses dicts.

    Example::

        to_jsonable({"root": Path("/data"), "ids": (1, 2), "score": float("nan")})
        # {'root': '/data', 'ids': [1, 2], 'score': None}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    tolist = getattr(value, "tolist", None)  # NumPy scalars and arrays, without importing NumPy
    if callable(tolist) and type(value).__module__ == "numpy":
        return to_jsonable(tolist())
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def check_job(job: Job) -> None:
    """Raise ``ValueError`` when a job's schemas break the engine's contract."""
    if not isinstance(job, Job):
        raise TypeError(f"expected a fastmask Job, got {type(job).__name__}")
    if not isinstance(job.name, str) or not job.name:
        raise ValueError(f"{type(job).__name__}.name must be a non-empty string")
    if not isinstance(job.item_schema, pa.Schema):
        raise ValueError(f"{type(job).__name__}.item_schema must be a pyarrow.Schema")
    clash = [n for n in job.item_schema.names if n in ENGINE_ITEM_COLUMNS]
    if clash:
        raise ValueError(f"{type(job).__name__}.item_schema reuses engine-owned columns {clash}")
    if len(set(job.item_schema.names)) != len(job.item_schema.names):
        raise ValueError(f"{type(job).__name__}.item_schema has duplicate column names")
    for name, schema in job.tables.items():
        if not _TABLE_NAME.match(name) or name == "items":
            raise ValueError(f"table name {name!r} must be a lower-case identifier other than 'items'")
        if not isinstance(schema, pa.Schema):
            raise ValueError(f"{type(job).__name__}.tables[{name!r}] must be a pyarrow.Schema")
        if "item_id" in schema.names:
            raise ValueError(f"{type(job).__name__}.tables[{name!r}] must not declare item_id (the engine adds it)")
