"""The ``instances`` job: class masks -> instance masks by connected components.

Per item the class map is read (mask layouts as they are; COCO annotations painted
in ``coco`` mode with crowd -> ignore; panoptic segments by category, see
:func:`fastmask.jobs.convert.read_source`) and split with
:func:`fastmask.components.split_instances`: instance id ``class * base + k``, ``k``
from 1 in raster order of each component's first pixel, ``connectivity`` 4 or 8;
background and ignore pixels get id 0. The instance maps are written to
``<out>/masks/<item>.png`` (``png16``: 16-bit grey PNG, as ``fastmask rasterize --kind instance``)
or ``<out>/masks/<item>.tif`` (``tiff32``: 32-bit integer TIFF), one format for the whole folder,
chosen before the first write (:func:`mask_format_for`) and recorded as ``summary["mask_format"]``;
an item whose ids do not fit it is an error row ``format_overflow``. Table ``instances``: one row
per instance (id -> class).

``out_dir`` may be a URL (``s3://bucket/run``) or a :class:`~fastmask.storage.Location`:
workers then upload each instance map there, whole, in one request.

Example::

    ds = open_dataset("masks/")
    job = InstancesJob(ds, "out/", connectivity=8, base=1000)
    run_job(job, ds.manifest(), "out/")
"""
from __future__ import annotations

import os
from typing import Any, ClassVar

import pyarrow as pa

from .. import storage
from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import Dataset, FormatError
from ..formats import layout_writers as lw
from .budget import DEFAULT_MAX_ITEM_MEMORY, TOO_COMPLEX, check_item_memory
from .convert import read_source
from .listing import listing_summary
from .schema import bbox_columns

#: bytes per instance beyond the labeling: the per-component arrays of
#: :func:`~fastmask.components.split_instances` (~140) and the ``instances`` table row as
#: Python values (~500)
INSTANCE_BYTES = 640

INSTANCES_DIR = "masks"


class InstancesJob(Job):
    """Split every class mask of a dataset into an instance mask (connected components)."""

    name = "instances"
    item_schema = pa.schema([
        ("width", pa.int32()), ("height", pa.int32()), ("n_instances", pa.int32()),
        ("max_id", pa.int64()), ("instance_file", pa.string()),
    ])
    tables: ClassVar[dict[str, pa.Schema]] = {
        "instances": pa.schema([
            ("instance_id", pa.int64()), ("class_id", pa.int64()), ("k", pa.int64()), ("area", pa.int64()),
            ("bbox_x", pa.int64()), ("bbox_y", pa.int64()), ("bbox_w", pa.int64()), ("bbox_h", pa.int64()),
            ("first_row", pa.int64()), ("first_col", pa.int64()),
        ]),
    }

    def __init__(self, dataset: Dataset, out_dir: str | os.PathLike, *, connectivity: int = 8, base: int = 1000,
                 background: int | None = 0, ignore_value: int | None = 255,
                 max_item_memory: int | None = DEFAULT_MAX_ITEM_MEMORY, mask_format: str = "auto"):
        if mask_format not in ("auto", *lw.MASK_FORMATS):
            raise ValueError(f"mask_format must be auto, png16 or tiff32, got {mask_format!r}")
        if connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
        if isinstance(base, bool) or not isinstance(base, int) or base < 2:
            raise ValueError(f"base (id = class * base + k) must be an integer >= 2, got {base!r}")
        self._dataset = dataset
        self._out = storage.location(out_dir)  # a Location: it travels to workers with its storage options
        self.connectivity = connectivity
        self.base = base
        self.background = background
        self.ignore_value = ignore_value
        self._renamed: dict[str, str] | None = None  # made in prepare(), from the run's manifest
        self.max_item_memory = max_item_memory
        self.format = mask_format
        self.mask_format = mask_format if mask_format != "auto" else mask_format_for(
            dataset, base, background=background, ignore_value=ignore_value)

    def prepare(self) -> None:
        """The renamed items: those whose output name another item would also get (COCO a.jpg
        and a.png, names differing in case), renamed as convert renames them (``__2``...) so
        none overwrites another. Made once in the driver, after the engine gave the dataset its
        manifest (a resumed run's saved one: no listing), and sent to the workers with the job."""
        if self._renamed is not None:
            return
        from .convert import output_names

        m = self._dataset.manifest()
        files = m.column("file_name").to_pylist() if "file_name" in m.column_names else None
        ids = m.column("item_id").to_pylist()
        names, bases = output_names(ids, files)
        self._renamed = {i: n for i, n, b in zip(ids, names, bases) if n != b}

    def arguments(self) -> dict[str, Any]:
        return {"dataset": self._dataset.root, "layout": self._dataset.layout, "connectivity": self.connectivity,
                "base": self.base, "background": self.background, "ignore_value": self.ignore_value,
                "max_item_memory": self.max_item_memory,
                "id_scheme": f"class*{self.base}+k", "format": self.format, "mask_format": self.mask_format}

    def prefetch(self, item: dict[str, Any]) -> list:
        """The remote objects reading ``item`` needs (fetched ahead by the engine)."""
        return self._dataset.prefetch(item)

    def process(self, row: dict[str, Any]) -> ItemResult:
        from ..components import split_instances

        src = read_source(self._dataset, row, ignore_value=self.ignore_value, background=self.background,
                          instance_map=False, segments=False)
        budget = self.max_item_memory
        check_item_memory(src.class_map, budget, "class map", per_run=INSTANCE_BYTES, background=self.background)
        try:
            inst, table = split_instances(src.class_map, connectivity=self.connectivity, id_scheme=self.base,
                                          background=self.background, ignore_value=self.ignore_value)
        except ValueError as e:
            raise ItemError("id_overflow", f"{src.item_id}: {e}") from None
        if len(table) and int(table.id.max()) > 2**31 - 1:
            raise ItemError("id_overflow", f"{src.item_id}: instance id {int(table.id.max())} does not fit 32 bits")
        if budget is not None and len(table) * INSTANCE_BYTES > budget:
            raise ItemError(TOO_COMPLEX, f"{src.item_id}: {len(table):,} instances: their rows would need about "
                                         f"{len(table) * INSTANCE_BYTES / 2**20:,.0f} MiB, above the per-item "
                                         f"budget of {budget / 2**20:,.0f} MiB (--max-item-memory)")
        rel = self._renamed.get(row["item_id"]) or lw.safe_relpath(
            os.path.splitext(src.file_name)[0] if src.file_name else src.item_id)
        try:
            name = lw.write_id_map(self._out / INSTANCES_DIR / rel, inst, fmt=self.mask_format)
        except lw.FormatOverflow:
            raise ItemError("format_overflow", f"{src.item_id}: instance id {int(table.id.max())} does not fit a "
                                               "16-bit PNG, the format of this run's masks folder (png16, one "
                                               "format per folder); rerun with --format tiff32") from None
        except FormatError as e:  # the storage refused the write (forbidden, no such bucket, ...)
            raise ItemError(e.code, e.message) from None
        parent = posixpath_parent(rel)
        # the rows as columns: a few Python values per instance, no dict per row
        rows = {"instance_id": table.id.tolist(), "class_id": table.class_id.tolist(), "k": table.k.tolist(),
                "area": table.area.tolist(), **bbox_columns(table.bbox),
                "first_row": table.first_pixel[:, 0].tolist(), "first_col": table.first_pixel[:, 1].tolist()}
        fields = {"width": src.width, "height": src.height, "n_instances": len(table),
                  "max_id": int(table.id.max()) if len(table) else 0,
                  "instance_file": f"{INSTANCES_DIR}/{parent}{name}"}
        return ItemResult(fields, {"instances": rows})

    def reduce_shard(self, shard: ShardResult) -> dict:
        n = shard.items.column("n_instances").to_pylist()
        return {"instances": sum(v for v in n if v), "max_id": max((v for v in shard.items.column("max_id").to_pylist()
                                                                    if v is not None), default=0)}

    def finalize(self, summaries: list[dict]) -> dict:
        return {"instances": sum(s["instances"] for s in summaries),
                "max_id": max((s["max_id"] for s in summaries), default=0),
                "connectivity": self.connectivity, "id_scheme": f"class*{self.base}+k",
                "mask_format": self.mask_format, "validate_args": self.validate_args(), **listing_summary(self._dataset)}

    def validate_args(self) -> list[str]:
        """The ``fastmask validate`` flags that check the written instance maps: the run's
        connectivity, background and ignore value; instance ids are no classes (no label
        map, no class coverage).

        >>> import tempfile, numpy as np
        >>> from fastmask.formats import open_dataset, write_mask
        >>> d = tempfile.mkdtemp(); _ = write_mask(d + "/a.png", np.zeros((2, 2), np.uint8))
        >>> InstancesJob(open_dataset(d), d + "/out", connectivity=4, ignore_value=None).validate_args()[:6]
        ['--connectivity', '4', '--background', '0', '--ignore-value', '-1']
        """
        def flag(v):
            return str(-1 if v is None else v)

        return ["--connectivity", str(self.connectivity), "--background", flag(self.background),
                "--ignore-value", flag(self.ignore_value), "--disable", "no_labelmap", "--disable", "coverage_outlier"]


def declared_max_class(dataset: Dataset, *, background: int | None = 0, ignore_value: int | None = 255) -> int | None:
    """The largest class id a dataset declares (label map names, COCO categories), background and
    ignore values left out; None when it declares none (a mask folder without a label map).

    >>> import tempfile, numpy as np
    >>> from fastmask.formats import open_dataset, write_mask
    >>> d = tempfile.mkdtemp(); _ = write_mask(d + "/a.png", np.zeros((2, 2), np.uint8))
    >>> declared_max_class(open_dataset(d)) is None
    True
    """
    lm = dataset.labelmap
    skip = {background, ignore_value} | (set(lm.ignore) if lm is not None else set())
    ids = {i for i in (lm.names if lm is not None else ()) if isinstance(i, int)}
    if dataset.layout in ("coco", "coco_panoptic"):
        try:
            cats = dataset.meta().get("categories") or []
        except FormatError:  # an unreadable file: its items are error rows anyway
            cats = []
        ids |= {c["id"] for c in cats if isinstance(c, dict) and type(c.get("id")) is int}
    ids -= skip
    return max(ids) if ids else None


def mask_format_for(dataset: Dataset, base: int, *, background: int | None = 0,
                    ignore_value: int | None = 255) -> str:
    """The id-map format of an ``instances`` run, chosen before the first write: ``tiff32`` when
    the largest id the scheme can give, ``(max declared class + 1) * base - 1`` (k <= base - 1),
    exceeds 16 bits, or when even the smallest (``lowest class * base + 1``) does; else ``png16``
    (undeclared classes whose ids overflow become ``format_overflow`` error rows).

    >>> import tempfile, numpy as np
    >>> from fastmask.formats import open_dataset, write_mask
    >>> d = tempfile.mkdtemp(); _ = write_mask(d + "/a.png", np.zeros((2, 2), np.uint8))
    >>> mask_format_for(open_dataset(d), 1000), mask_format_for(open_dataset(d), 100000)
    ('png16', 'tiff32')
    """
    top = declared_max_class(dataset, background=background, ignore_value=ignore_value)
    lowest = next(c for c in range(3) if c not in (background, ignore_value))
    return lw.choose_mask_format(None if top is None else (top + 1) * base - 1, min_id=lowest * base + 1)


def posixpath_parent(rel: str) -> str:
    """'a/b' -> 'a/'; 'b' -> ''."""
    i = rel.rfind("/")
    return rel[: i + 1] if i >= 0 else ""
