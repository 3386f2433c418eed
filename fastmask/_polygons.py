"""Packing COCO flat polygons into the (xy, offsets) arrays the kernels take, with validation."""
from __future__ import annotations

import math
from itertools import accumulate

import numpy as np

_EMPTY_XY = np.zeros(0, np.float64)


def is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def pack(polygons, what: str, min_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """``[[x0, y0, x1, y1, ...], ...]`` -> ``(xy float64, coordinate offsets int64)``.

    Raises ``ValueError`` naming the first polygon with an odd number of values,
    fewer than ``min_vertices`` vertices, NaN/inf or non-numbers.
    """
    if type(polygons) is list and polygons and all(type(p) is list for p in polygons):
        # fast path for what JSON gives: a list of lists of numbers
        try:
            arrays = [np.array(p, dtype=np.float64) for p in polygons]
        except (TypeError, ValueError):
            arrays = None
        if arrays is not None:
            min_len = 2 * min_vertices
            ok = True
            for a in arrays:
                n = a.shape[0]
                if a.ndim != 1 or n % 2 or n < min_len:
                    ok = False
                    break
            if ok:
                xy = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
                if _all_finite(xy, polygons[0] if len(arrays) == 1 else None):
                    if len(arrays) == 1:
                        return xy, np.array([0, xy.shape[0]], np.int64)
                    return xy, np.array([0, *accumulate(a.shape[0] for a in arrays)], np.int64)
    return _pack_careful(polygons, what, min_vertices)


def _all_finite(xy: np.ndarray, values: list | None = None) -> bool:
    """No NaN or inf in ``xy``, cheaply and without NumPy warnings.

    NaN or inf makes a sum non-finite. Python's float sum is the cheapest test for a short
    polygon and overflows to inf quietly (a sum of huge finite values then only costs the
    careful path); a NumPy sum would warn on that overflow, so a long polygon is tested with
    ``isfinite``.
    """
    if xy.shape[0] <= 64:
        if values is not None:  # the list xy came from: no tolist() (strings of numbers: TypeError)
            try:
                return math.isfinite(sum(values))
            except (TypeError, OverflowError):  # e.g. a huge int: not convertible, let the array decide
                pass
        return math.isfinite(sum(xy.tolist()))
    return bool(np.isfinite(xy).all())


def _pack_careful(polygons, what: str, min_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(polygons, np.ndarray):
        polygons = [polygons] if polygons.ndim == 1 else list(polygons)
    elif not isinstance(polygons, (list, tuple)):
        raise TypeError(f"{what}: polygons must be a list of flat [x0, y0, x1, y1, ...] lists, got {type(polygons).__name__}")
    elif len(polygons) and is_number(polygons[0]):
        polygons = [polygons]  # one flat polygon
    arrays = []
    for i, p in enumerate(polygons):
        try:
            a = np.asarray(p, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: polygon {i} is not a flat list of numbers") from None
        if a.ndim == 2 and a.shape[1] == 2:
            a = a.reshape(-1)  # accept (k, 2) vertex arrays too
        if a.ndim != 1:
            raise ValueError(f"{what}: polygon {i} must be a flat list [x0, y0, x1, y1, ...], got shape {a.shape}")
        if a.shape[0] % 2:
            raise ValueError(f"{what}: polygon {i} has an odd number of values ({a.shape[0]})")
        if a.shape[0] < 2 * min_vertices:
            raise ValueError(f"{what}: polygon {i} has {a.shape[0] // 2} vertices; at least {min_vertices} are needed")
        if not np.isfinite(a).all():
            raise ValueError(f"{what}: polygon {i} has NaN or infinite coordinates")
        arrays.append(a)
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    xy = np.concatenate(arrays) if arrays else _EMPTY_XY
    return xy, offsets
