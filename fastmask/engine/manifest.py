"""Manifest (the sorted list of items) and its fixed slicing into shards.

Shards are fixed slices of the manifest sorted by ``item_id``: shard ``k`` holds rows
``[k*shard_size, (k+1)*shard_size)``. They depend on the manifest and the shard size
only, never on the executor or the number of workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ManifestError

#: schema metadata of a manifest holding what the dataset's listing saw (JSON: ``objects``,
#: ``problems``...); written by the datasets, stored with ``manifest.parquet``
LISTING_KEY = b"fastmask.listing"
DEFAULT_SHARD_SIZE = 2000  # the largest automatic shard size
MIN_AUTO_SHARD_SIZE = 100
AUTO_SHARDS = 64


def default_shard_size(n_items: int) -> int:
    """Shard size used when none is given: ``ceil(n_items / 64)`` clamped to [100, 2000].

    It depends on the number of items only (never on the workers), so reports stay
    identical across machines. Small datasets still get enough shards to keep many cores
    busy and balanced (a few slow items do not leave one worker running alone); large
    ones get shards of 2000 items, i.e. few part files.

    Example::

        default_shard_size(22_000), default_shard_size(5_000_000)  # (344, 2000)
    """
    return min(DEFAULT_SHARD_SIZE, max(MIN_AUTO_SHARD_SIZE, -(-n_items // AUTO_SHARDS)))


def normalize_manifest(manifest: pa.Table) -> pa.Table:
    """Sort a manifest by ``item_id`` and check that ids are present and unique.

    ``item_id`` must be a string or integer column. Other columns (paths, sizes...) are
    kept as they are and handed to ``Job.process`` row by row.

    Example::

        normalize_manifest(pa.table({"item_id": ["b", "a"], "path": ["b.png", "a.png"]}))
        # rows a, b
    """
    if not isinstance(manifest, pa.Table):
        raise ManifestError(f"the manifest must be a pyarrow.Table, got {type(manifest).__name__}")
    if "item_id" not in manifest.column_names:
        raise ManifestError(f"the manifest has no 'item_id' column (columns: {manifest.column_names})")
    id_type = manifest.schema.field("item_id").type
    if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
        raise ManifestError(f"item_id must be a string or integer column, got {id_type}")
    ids = manifest.column("item_id")
    if ids.null_count:
        raise ManifestError(f"{ids.null_count} manifest rows have a null item_id")
    n = manifest.num_rows
    if n > 1 and pc.all(pc.greater(ids.slice(1), ids.slice(0, n - 1))).as_py():
        return manifest.combine_chunks()  # already sorted and unique: no copy of a big manifest
    if n:
        manifest = manifest.take(pc.sort_indices(manifest, sort_keys=[("item_id", "ascending")]))
    manifest = manifest.combine_chunks()
    ids = manifest.column("item_id")
    if manifest.num_rows > 1:
        same = pc.equal(ids.slice(1), ids.slice(0, manifest.num_rows - 1))
        if pc.any(same).as_py():
            first = pc.index(same, True).as_py()
            n_dup = pc.sum(same).as_py()
            raise ManifestError(f"item_id values must be unique: {ids[first].as_py()!r} and {n_dup - 1} more repeat")
    return manifest


@dataclass(frozen=True)
class ShardTask:
    """One shard to run: its index and its own (compact) slice of the manifest.

    ``out_dir`` is the report folder: a local path, or a ``Location`` for a URL (it carries
    its storage options to the worker, which writes its parts straight there)."""

    index: int
    items: pa.Table
    out_dir: Any


def listed_objects(manifest: pa.Table) -> int | None:
    """How many files or objects the listing that made ``manifest`` saw (None: not recorded).

    >>> listed_objects(pa.table({"item_id": ["a"]}).replace_schema_metadata({LISTING_KEY: b'{"objects": 3}'}))
    3
    """
    import json

    raw = (manifest.schema.metadata or {}).get(LISTING_KEY)
    try:
        value = json.loads(raw)["objects"] if raw else None
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) else None


def shard_count(n_items: int, shard_size: int) -> int:
    """Number of shards of a manifest: ``ceil(n_items / shard_size)``."""
    return -(-n_items // shard_size)


def shard_slice(manifest: pa.Table, index: int, shard_size: int) -> pa.Table:
    """Rows of shard ``index`` as a compact copy.

    A plain ``Table.slice`` pickles the whole parent buffers (a 2000-row slice of a
    1M-row manifest pickled as 35 MB), and shards are pickled to workers; ``take``
    copies just the rows.
    """
    start = index * shard_size
    n = max(0, min(shard_size, manifest.num_rows - start))
    # (without the schema metadata: the listing facts stay in the driver)
    return manifest.slice(start, n).take(pa.array(np.arange(n, dtype=np.int64))).replace_schema_metadata(None)
