"""Column conventions shared by every job's report tables.

- a box is four ``int64`` columns ``bbox_x``, ``bbox_y``, ``bbox_w``, ``bbox_h`` (COCO's
  ``x, y, w, h`` in pixels; null when there is no box), never a list column: filters and
  joins in pandas / DuckDB / Polars need no list indexing;
- ``iscrowd`` is ``bool``;
- per-class tables are sorted numerically by their class id;
- a table is only written when the command can fill it.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa

#: the four box columns, in table order
BBOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
#: their Arrow fields
BBOX_FIELDS = [pa.field(c, pa.int64()) for c in BBOX_COLUMNS]


def bbox_row(box) -> dict[str, Any]:
    """One ``(x, y, w, h)`` box (or None) as the four box columns of a row.

    >>> bbox_row([1.0, 2.0, 3.0, 4.0])
    {'bbox_x': 1, 'bbox_y': 2, 'bbox_w': 3, 'bbox_h': 4}
    >>> bbox_row(None)["bbox_w"] is None
    True
    """
    if box is None:
        return dict.fromkeys(BBOX_COLUMNS)
    return {c: int(v) for c, v in zip(BBOX_COLUMNS, box)}


def bbox_columns(boxes) -> dict[str, list]:
    """An ``(n, 4)`` array of boxes as the four box columns (lists of ints).

    >>> import numpy as np
    >>> bbox_columns(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]))["bbox_w"]
    [3, 7]
    """
    return {c: [int(v) for v in boxes[:, k]] if len(boxes) else [] for k, c in enumerate(BBOX_COLUMNS)}
