"""The shard function: the one piece of code every executor runs.

``run_shard(job, task)`` processes the items of one shard in manifest order, writes one
Parquet part per table and then the shard's done-marker, and returns a small outcome
dict (counts and the job's shard summary). The driver never receives rows, so its
memory does not grow with the dataset.
"""
from __future__ import annotations

import json
import threading
import time
import weakref
from typing import Any, Callable

import pyarrow as pa

from .job import (
    INTERNAL_ERROR,
    STATUS_ERROR,
    STATUS_OK,
    ItemError,
    ItemResult,
    Job,
    ShardResult,
    to_jsonable,
)
from ..storage import prefetching
from .manifest import ShardTask
from .sink import ITEMS_TABLE, marker_path, part_name, report_root, write_json_atomic, write_parquet_atomic

MAX_MESSAGE_CHARS = 2000  # an exception text can embed a whole array; keep rows small

_PREPARED: "weakref.WeakValueDictionary[int, Job]" = weakref.WeakValueDictionary()
_PREPARE_LOCK = threading.Lock()


def ensure_prepared(job: Job) -> None:
    """Call ``job.prepare()`` once per job object per process (thread-safe)."""
    # Keyed by identity, not by a flag on the job: a flag set in the driver would be
    # pickled along and make workers skip their own prepare().
    if _PREPARED.get(id(job)) is job:
        return
    with _PREPARE_LOCK:
        if _PREPARED.get(id(job)) is not job:
            job.prepare()
            _PREPARED[id(job)] = job


def items_schema(job: Job, id_type: pa.DataType) -> pa.Schema:
    """Schema of the ``items`` table: engine columns, then the job's (all nullable)."""
    engine = [
        pa.field("item_id", id_type, nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
    ]
    return pa.schema(engine + [f.with_nullable(True) for f in job.item_schema])


def table_schema(job: Job, name: str, id_type: pa.DataType) -> pa.Schema:
    """Schema of another table: ``item_id`` first, then the job's columns."""
    return pa.schema([pa.field("item_id", id_type, nullable=False)] + list(job.tables[name]))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "\u2026"


def _exception_text(e: BaseException) -> str:
    return _clip(f"{type(e).__name__}: {e}")


class _Item:
    __slots__ = ("item_id", "status", "code", "message", "fields", "rows")

    def __init__(self, item_id, status, code, message, fields, rows):
        self.item_id, self.status, self.code, self.message = item_id, status, code, message
        self.fields, self.rows = fields, rows

    def fail(self, message: str) -> None:
        self.status, self.code, self.message = STATUS_ERROR, INTERNAL_ERROR, _clip(message)
        self.fields, self.rows = {}, {}

    def item_row(self) -> dict:
        row = dict(self.fields)
        row.update(item_id=self.item_id, status=self.status, error_code=self.code, error_message=self.message)
        return row

    def add_rows(self, name: str, columns: dict[str, list]) -> None:
        """Append this item's rows of table ``name`` to ``columns`` (one list per column)."""
        rows = self.rows.get(name)
        if not rows:
            return
        if isinstance(rows, dict):  # columnar: equal-length lists (checked in _process_one)
            n = len(next(iter(rows.values())))
            if n == 0:
                return
            for k, col in columns.items():
                col.extend(rows[k] if k in rows else [None] * n)
            columns["item_id"][-n:] = [self.item_id] * n
        else:
            for k, col in columns.items():
                col.extend([r.get(k) for r in rows])
            columns["item_id"][-len(rows):] = [self.item_id] * len(rows)


def _equal_length_lists(columns: dict) -> bool:
    n = -1
    for v in columns.values():
        if not isinstance(v, (list, tuple)) or (n >= 0 and len(v) != n):
            return False
        n = len(v)
    return True


def _process_one(job: Job, row: dict, field_names: frozenset, table_columns: dict) -> _Item:
    item_id = row["item_id"]
    try:
        result = job.process(row)
        if not isinstance(result, ItemResult):
            raise TypeError(f"{type(job).__name__}.process() returned {type(result).__name__}, expected ItemResult")
        item = _Item(item_id, STATUS_OK, None, None, result.fields, result.rows)
    except ItemError as e:
        item = _Item(item_id, STATUS_ERROR, e.code, _clip(e.message), e.fields, e.rows)
    except Exception as e:  # noqa: BLE001 - the contract: one bad item never stops the run
        return _Item(item_id, STATUS_ERROR, INTERNAL_ERROR, _exception_text(e), {}, {})
    # Keys outside the schemas would be dropped silently by Arrow: a job bug, made visible.
    if not field_names.issuperset(item.fields):
        item.fail(f"result has fields not in {type(job).__name__}.item_schema: "
                  f"{sorted(set(item.fields) - field_names)}")
        return item
    for name, rows in item.rows.items():
        columns = table_columns.get(name)
        if columns is None:
            item.fail(f"result has rows for unknown table {name!r} (tables: {sorted(table_columns)})")
            return item
        if isinstance(rows, dict):
            if not columns.issuperset(rows):
                item.fail(f"{name} rows have columns not in the table's schema: {sorted(set(rows) - columns)}")
                return item
            if not _equal_length_lists(rows):
                lengths = {k: len(v) if isinstance(v, (list, tuple)) else None for k, v in rows.items()}
                item.fail(f"{name} rows given as columns must be lists of one length, got {lengths}")
                return item
            continue
        for r in rows:
            extra = set(r) - columns
            if extra:
                item.fail(f"{name} row has columns not in the table's schema: {sorted(extra)}")
                return item
    return item


def _build_tables(items: list[_Item], schemas: dict[str, pa.Schema]) -> dict[str, pa.Table]:
    out = {ITEMS_TABLE: pa.Table.from_pylist([it.item_row() for it in items], schema=schemas[ITEMS_TABLE])}
    for name, schema in schemas.items():
        if name != ITEMS_TABLE:
            columns: dict[str, list] = {k: [] for k in schema.names}
            for it in items:
                it.add_rows(name, columns)
            out[name] = pa.Table.from_pydict(columns, schema=schema)
    return out


def run_shard(job: Job, task: ShardTask, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Process one shard, write its parts and marker, return its outcome (counts, summary).

    ``progress(n)`` (optional, in-process executors only) is told about finished items
    every ~0.2 s; the outcome's ``"reported"`` says how many were already announced.

    Example::

        task = ShardTask(0, shard_slice(manifest, 0, 2000), "out/")
        run_shard(job, task)["ok"]
    """
    t0 = time.perf_counter()
    ensure_prepared(job)
    id_type = task.items.schema.field("item_id").type
    schemas = {ITEMS_TABLE: items_schema(job, id_type)}
    for name in sorted(job.tables):
        schemas[name] = table_schema(job, name, id_type)
    field_names = frozenset(job.item_schema.names)
    table_columns = {name: frozenset(schema.names) for name, schema in job.tables.items()}

    items: list[_Item] = []
    reported, last = 0, time.monotonic()
    rows = task.items.to_pylist()
    with prefetching(job.prefetch, rows) as ready:  # remote objects fetched ahead, a bounded number
        for i, row in enumerate(rows):
            with ready(i):
                items.append(_process_one(job, row, field_names, table_columns))
            if progress is not None and time.monotonic() - last > 0.2:
                progress(len(items) - reported)
                reported, last = len(items), time.monotonic()

    try:
        tables = _build_tables(items, schemas)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        # Some item's values do not fit the declared types: find which, turn those items
        # into internal errors and keep the others.
        for it in items:
            try:
                _build_tables([it], schemas)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
                it.fail(f"result does not fit the job's schema: {_exception_text(e)}")
        tables = _build_tables(items, schemas)

    summary = job.reduce_shard(ShardResult(task.index, tables[ITEMS_TABLE],
                                           {k: v for k, v in tables.items() if k != ITEMS_TABLE}))
    # The driver finalizes from the JSON form in every case, so a resumed run (which reads
    # summaries back from markers) sees exactly the same values as an uninterrupted one.
    summary = json.loads(json.dumps(to_jsonable(summary if summary is not None else {}), sort_keys=True))

    out = report_root(task.out_dir)  # a local path, or a URL's Location
    for name, table in tables.items():
        write_parquet_atomic(table, out / name / part_name(task.index))

    error_codes: dict[str, int] = {}
    for it in items:
        if it.status == STATUS_ERROR:
            error_codes[it.code] = error_codes.get(it.code, 0) + 1
    n_error = sum(error_codes.values())
    marker = {
        "shard": task.index,
        "items": len(items),
        "ok": len(items) - n_error,
        "error": n_error,
        "error_codes": dict(sorted(error_codes.items())),
        "rows": {name: t.num_rows for name, t in tables.items()},
        "first_item_id": items[0].item_id if items else None,
        "last_item_id": items[-1].item_id if items else None,
        "summary": summary,
    }
    write_json_atomic(marker_path(out, task.index), marker)  # last: the shard is now done
    return {**marker, "reported": reported, "seconds": time.perf_counter() - t0}
