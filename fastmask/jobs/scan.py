"""The ``scan`` job: read every item of a dataset and record what was found, no checks.

It is the engine's read-only throughput reference (read + decode only) and a quick
inventory of a dataset: per item the mask's mode, size, dtype and the values present
with their pixel counts; per run the pixel total of every value.

Example::

    from fastmask.formats import open_dataset
    from fastmask.engine import run_job
    ds = open_dataset("VOCdevkit/VOC2012")
    run_job(ScanJob(ds), ds.manifest(), "scan-report/")
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..engine import ItemError, ItemResult, Job, ShardResult
from ..formats import Dataset, FormatError
from ..kernels.histogram import value_histogram
from .listing import listing_summary
from .rules_core import dtype_name


def value_counts(array: np.ndarray) -> tuple[list[int], list[int]]:
    """Distinct values of an integer array and their pixel counts (bincount for 8/16-bit ids).

    >>> value_counts(np.array([[0, 0], [3, 0]], np.uint8))
    ([0, 3], [3, 1])
    """
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.size == 0:
        return [], []
    if flat.dtype in (np.uint8, np.uint16):
        counts = value_histogram(flat, 256 if flat.dtype == np.uint8 else 65536)
        values = np.flatnonzero(counts)
        return values.tolist(), counts[values].tolist()
    values, counts = np.unique(flat, return_counts=True)
    return values.tolist(), counts.tolist()


class ScanJob(Job):
    """Read each item (mask, instance mask, COCO annotations, panoptic segments) and describe it."""

    name = "scan"
    item_schema = pa.schema(
        [
            ("mask_format", pa.string()),
            ("mask_mode", pa.string()),
            ("mask_dtype", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("lossy", pa.bool_()),
            ("values", pa.list_(pa.int64())),
            ("value_pixels", pa.list_(pa.int64())),
            ("has_instance_mask", pa.bool_()),
            ("n_annotations", pa.int32()),
            ("n_segments", pa.int32()),
            ("image_width", pa.int32()),
            ("image_height", pa.int32()),
            ("missing", pa.list_(pa.string())),
        ]
    )

    def __init__(self, dataset: Dataset):
        self._dataset = dataset

    def arguments(self) -> dict[str, Any]:
        return {"dataset": self._dataset.root, "layout": self._dataset.layout}

    def prefetch(self, item: dict[str, Any]) -> list:
        """The remote objects reading ``item`` needs (fetched ahead by the engine)."""
        return self._dataset.prefetch(item)

    def process(self, item: dict[str, Any]) -> ItemResult:
        try:
            data = self._dataset.read_item(item)
        except FormatError as e:
            raise ItemError(e.code, e.message) from None
        fields: dict[str, Any] = {
            "has_instance_mask": data.instance_mask is not None,
            "n_annotations": None if data.annotations is None else len(data.annotations),
            "n_segments": None if data.segments is None else len(data.segments),
            "missing": list(data.missing),
        }
        if data.image_size is not None:
            fields["image_width"], fields["image_height"] = data.image_size
        mask = data.mask if data.mask is not None else data.instance_mask
        if mask is not None:
            values, pixels = value_counts(mask.array)
            fields.update(
                mask_format=mask.format,
                mask_mode=mask.mode,
                mask_dtype=dtype_name(mask.array.dtype),
                width=mask.width,
                height=mask.height,
                lossy=bool(mask.lossy),
                values=values,
                value_pixels=pixels,
            )
        return ItemResult(fields)

    def reduce_shard(self, shard: ShardResult) -> dict:
        totals: dict[int, int] = {}
        values = shard.items.column("values").to_pylist()
        pixels = shard.items.column("value_pixels").to_pylist()
        for vs, ps in zip(values, pixels):
            for v, p in zip(vs or (), ps or ()):
                totals[v] = totals.get(v, 0) + p
        return {"value_pixels": {str(v): totals[v] for v in sorted(totals)}}

    def finalize(self, summaries: list[dict]) -> dict:
        totals: dict[int, int] = {}
        for s in summaries:
            for v, p in s.get("value_pixels", {}).items():
                totals[int(v)] = totals.get(int(v), 0) + p
        return {"value_pixels": {str(v): totals[v] for v in sorted(totals)}, **listing_summary(self._dataset)}
