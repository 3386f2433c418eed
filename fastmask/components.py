"""Connected components of 2-D masks: labels, per-component statistics, instances.

All functions take a 2-D integer or boolean mask (any memory layout; it is made
C-contiguous internally) and a ``connectivity`` of 4 or 8.  Neighbouring pixels
belong to the same component when their values are **equal** (multilabel
labeling); pixels equal to ``background`` (0 by default, ``None`` for "no
background") are not labeled.  On a 0/1 or boolean mask this is ordinary binary
labeling, and ``binary=True`` gives binary labeling of any mask (every
non-background pixel is foreground, whatever its value).

Component labels are 1..N in raster (row-major) order of each component's first
pixel: the output equals ``scipy.ndimage.label`` on binary input (structure = cross
for 4, 3x3 ones for 8) and ``cc3d.connected_components(mask, connectivity=4|8)``
on a C-ordered multilabel mask with background 0.

Bounding boxes are ``(x, y, w, h)``: ``x`` = first column, ``y`` = first row,
``w``/``h`` = width/height in pixels (the COCO convention), so the box covers
``mask[y:y + h, x:x + w]``.  First pixels are ``(row, col)``.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .kernels import components as _k

__all__ = [
    "ComponentStats",
    "InstanceTable",
    "label",
    "component_stats",
    "split_instances",
    "remove_small",
    "count_small",
    "label_dtype",
    "instance_dtype",
]

_INT32_MAX = int(np.iinfo(np.int32).max)


# --------------------------------------------------------------------------- helpers


def label_dtype(n_pixels: int) -> np.dtype:
    """Smallest label dtype (int32 or int64) that can hold any count for ``n_pixels`` pixels.

    A 2-D image never has more components than pixels, so int32 is safe up to
    2**31 - 1 pixels; larger images get int64.

    >>> label_dtype(1024 * 2048), label_dtype(2**31)
    (dtype('int32'), dtype('int64'))
    """
    n_pixels = int(n_pixels)
    if n_pixels < 0:
        raise ValueError(f"n_pixels must be >= 0, got {n_pixels}")
    return np.dtype(np.int32) if n_pixels <= _INT32_MAX else np.dtype(np.int64)


def instance_dtype(max_id: int) -> np.dtype:
    """Dtype of an instance mask whose largest id is ``max_id``: uint16, else int32, else int64.

    >>> instance_dtype(65535), instance_dtype(65536), instance_dtype(2**31)
    (dtype('uint16'), dtype('int32'), dtype('int64'))
    """
    max_id = int(max_id)
    if max_id < 0:
        raise ValueError(f"instance ids must be >= 0, got max id {max_id}")
    if max_id <= 0xFFFF:
        return np.dtype(np.uint16)
    if max_id <= _INT32_MAX:
        return np.dtype(np.int32)
    if max_id <= int(np.iinfo(np.int64).max):
        return np.dtype(np.int64)
    raise ValueError(f"instance id {max_id} does not fit in int64")


def _check_connectivity(connectivity) -> int:
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral):
        raise TypeError(f"connectivity must be the integer 4 or 8, got {connectivity!r}")
    if int(connectivity) not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    return int(connectivity)


def _prepare(mask, background, binary: bool = False):
    """Validate and convert ``mask``; return (C-contiguous array for the kernel, has_bg, bg)."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got {arr.ndim}-D array of shape {arr.shape}")
    is_bool = arr.dtype == np.bool_
    if is_bool:
        arr = arr.view(np.uint8)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"mask must be an integer or boolean array, got dtype {arr.dtype}")
    elif not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if background is not None:
        if isinstance(background, (bool, np.bool_)):
            background = int(background)
        if not isinstance(background, numbers.Integral):
            raise TypeError(f"background must be an integer or None, got {background!r}")
        background = int(background)
        info = np.iinfo(arr.dtype)
        if is_bool and background not in (0, 1):
            raise ValueError(f"background={background} is not a boolean value (0/False or 1/True) for a bool mask")
        if not info.min <= background <= info.max:
            raise ValueError(
                f"background={background} is outside the range of the mask dtype {arr.dtype} "
                f"[{info.min}, {info.max}]; pass background=None to label every pixel"
            )
    if binary:
        if background is None:
            arr = np.ones(arr.shape, np.uint8)
        else:
            arr = (arr != background).view(np.uint8)
        background = 0
    arr = np.ascontiguousarray(arr)
    has_bg = background is not None
    bg = arr.dtype.type(background if has_bg else 0)
    return arr, has_bg, bg


def _raise_status(status: int) -> None:
    if status != _k.OK:
        raise RuntimeError(f"connected-component kernel failed: {_k.STATUS_MESSAGES.get(status, status)}")


def _xywh(box: np.ndarray) -> np.ndarray:
    """Inclusive (row_min, col_min, row_max, col_max) -> (x, y, w, h)."""
    bbox = np.empty((box.shape[0], 4), np.int64)
    bbox[:, 0] = box[:, 1]
    bbox[:, 1] = box[:, 0]
    bbox[:, 2] = box[:, 3] - box[:, 1] + 1
    bbox[:, 3] = box[:, 2] - box[:, 0] + 1
    return bbox


@dataclass(frozen=True)
class _Runs:
    """Components as runs (no label image) plus their statistics."""

    runs: tuple  # (rs, re, lab, row_ptr) for paint_lut / fill_runs
    count: int
    value: np.ndarray
    area: np.ndarray
    box: np.ndarray
    first: np.ndarray


def _component_runs(mask, connectivity, background) -> _Runs:
    arr, has_bg, bg = _prepare(mask, background)
    idx_like = np.empty(0, label_dtype(arr.size))
    status, count, rs, re, rv, lab, row_ptr = _k.runs_2d(arr, connectivity, has_bg, bg, idx_like)
    _raise_status(status)
    value, area, box, first = _k.run_stats(rs, re, rv, lab, row_ptr, count)
    return _Runs((rs, re, lab, row_ptr), int(count), value, area, box, first)


# --------------------------------------------------------------------------- labeling


def label(
    mask,
    connectivity: int = 8,
    background: int | None = 0,
    *,
    binary: bool = False,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Label the connected components of a 2-D mask.

    Returns ``(labels, count)``: ``labels`` has the mask's shape, dtype int32
    (int64 when the image has more than 2**31 - 1 pixels), 0 on background and
    1..count in raster order of each component's first pixel.  Equal-valued
    neighbours join (multilabel); ``binary=True`` joins all non-background pixels.
    ``out`` may be a reusable C-contiguous int32/int64 array of the mask's shape
    (int64 required above 2**31 - 1 pixels); it is overwritten and returned.

    >>> import numpy as np
    >>> labels, n = label(np.array([[1, 1, 0, 2], [0, 1, 0, 2]]), connectivity=4)
    >>> n, labels.tolist()
    (2, [[1, 1, 0, 2], [0, 1, 0, 2]])
    """
    connectivity = _check_connectivity(connectivity)
    arr, has_bg, bg = _prepare(mask, background, binary)
    need = label_dtype(arr.size)
    if out is None:
        out = np.empty(arr.shape, need)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
        if out.shape != arr.shape:
            raise ValueError(f"out has shape {out.shape}, expected the mask's shape {arr.shape}")
        if out.dtype not in (np.dtype(np.int32), np.dtype(np.int64)) or out.dtype.itemsize < need.itemsize:
            raise TypeError(f"out must have dtype {need} or int64, got {out.dtype}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be a writeable C-contiguous array")
    status, count = _k.label_2d(arr, connectivity, has_bg, bg, out)
    _raise_status(status)
    return out, int(count)


@dataclass(frozen=True)
class ComponentStats:
    """Per-component statistics; row ``i`` describes label ``label[i] == i + 1``.

    ``value``: the mask value of the component (its class); ``area``: pixel count;
    ``bbox``: (N, 4) ``(x, y, w, h)``; ``first_pixel``: (N, 2) ``(row, col)`` of the
    first pixel in raster order.  ``labels`` is the label image, ``connectivity``
    the connectivity used.
    """

    labels: np.ndarray
    label: np.ndarray
    value: np.ndarray
    area: np.ndarray
    bbox: np.ndarray
    first_pixel: np.ndarray
    connectivity: int

    @property
    def count(self) -> int:
        """Number of components."""
        return int(self.label.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        """The per-component columns as a dict of arrays (without ``labels``)."""
        return {
            "label": self.label,
            "value": self.value,
            "area": self.area,
            "bbox": self.bbox,
            "first_pixel": self.first_pixel,
        }


def component_stats(mask, connectivity: int = 8, background: int | None = 0, *, binary: bool = False) -> ComponentStats:
    """Label ``mask`` and return per-component value, area, bbox (x, y, w, h) and first pixel.

    The statistics come from the same run-based pass as the labels (no extra
    pass over the pixels).  With ``binary=True`` every ``value`` is 1.

    >>> import numpy as np
    >>> s = component_stats(np.array([[0, 3, 3], [0, 0, 3], [5, 0, 0]]), connectivity=4)
    >>> s.value.tolist(), s.area.tolist(), s.bbox.tolist(), s.first_pixel.tolist()
    ([3, 5], [3, 1], [[1, 0, 2, 2], [0, 2, 1, 1]], [[0, 1], [2, 0]])
    """
    connectivity = _check_connectivity(connectivity)
    arr, has_bg, bg = _prepare(mask, background, binary)
    out = np.empty(arr.shape, label_dtype(arr.size))
    status, count, value, area, box, first = _k.label_stats_2d(arr, connectivity, has_bg, bg, out)
    _raise_status(status)
    count = int(count)
    bbox = _xywh(box)
    orig = np.asarray(mask)
    if orig.dtype == np.bool_ and not binary:
        value = value.astype(np.bool_)
    return ComponentStats(
        labels=out,
        label=np.arange(1, count + 1, dtype=out.dtype),
        value=value,
        area=area,
        bbox=bbox,
        first_pixel=first,
        connectivity=connectivity,
    )


# --------------------------------------------------------------------------- instances


@dataclass(frozen=True)
class InstanceTable:
    """One row per instance: ``id = class * base + k``.

    Columns: ``id``, ``class_id`` (mask value), ``k`` (1-based index within the
    class, raster order of first pixel), ``area``, ``bbox`` (N, 4) ``(x, y, w, h)``,
    ``first_pixel`` (N, 2) ``(row, col)``.  Rows are in raster order of first
    pixel (the component-label order).  ``base`` and ``connectivity`` record the
    scheme used.
    """

    id: np.ndarray
    class_id: np.ndarray
    k: np.ndarray
    area: np.ndarray
    bbox: np.ndarray
    first_pixel: np.ndarray
    base: int
    connectivity: int

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        """Columns as a dict of arrays."""
        return {
            "id": self.id,
            "class_id": self.class_id,
            "k": self.k,
            "area": self.area,
            "bbox": self.bbox,
            "first_pixel": self.first_pixel,
        }

    def records(self) -> list[dict]:
        """Rows as a list of plain-Python dicts (id, class_id, k, area, bbox, first_pixel)."""
        return [
            {
                "id": int(self.id[i]),
                "class_id": int(self.class_id[i]),
                "k": int(self.k[i]),
                "area": int(self.area[i]),
                "bbox": tuple(int(v) for v in self.bbox[i]),
                "first_pixel": tuple(int(v) for v in self.first_pixel[i]),
            }
            for i in range(len(self))
        ]


def _rank_within_class(classes: np.ndarray) -> np.ndarray:
    """For components in label order, 1-based rank among components of the same class."""
    n = classes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(classes, kind="stable")
    sorted_cls = classes[order]
    starts = np.flatnonzero(np.r_[True, sorted_cls[1:] != sorted_cls[:-1]])
    group_len = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, group_len)
    k = np.empty(n, np.int64)
    k[order] = pos + 1
    return k


def split_instances(
    class_mask,
    connectivity: int = 8,
    id_scheme: int = 1000,
    background: int | None = 0,
    ignore_value: int | None = None,
) -> tuple[np.ndarray, InstanceTable]:
    """Turn a semantic (class) mask into an instance mask with ``id = class * base + k``.

    ``id_scheme`` is the base: 10, 256 and 1000 are the usual ones; any integer
    >= 2 is accepted.  ``k`` counts the components of each class from 1, in
    raster order of each component's first pixel.  Background and
    ``ignore_value`` pixels are not instances and get id 0.  The instance mask
    is uint16 when the largest id fits, else int32, else int64.  Raises
    ``ValueError`` if a class has ``base`` or more components (ids would collide
    with the next class) or if a class value is negative.

    >>> import numpy as np
    >>> m = np.array([[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 2, 2],
    ...               [0, 1, 0, 0, 0], [0, 1, 0, 0, 0]])
    >>> inst, table = split_instances(m, connectivity=4, id_scheme=10)
    >>> table.id.tolist(), int(inst[3, 1]), int(inst[2, 4])
    ([11, 21, 12], 12, 21)
    """
    connectivity = _check_connectivity(connectivity)
    if isinstance(id_scheme, bool) or not isinstance(id_scheme, numbers.Integral):
        raise TypeError(f"id_scheme must be an integer base such as 10, 256 or 1000, got {id_scheme!r}")
    base = int(id_scheme)
    if base < 2:
        raise ValueError(f"id_scheme (the base of class * base + k) must be >= 2, got {base}")
    if ignore_value is not None and (isinstance(ignore_value, bool) or not isinstance(ignore_value, numbers.Integral)):
        raise TypeError(f"ignore_value must be an integer or None, got {ignore_value!r}")

    comp = _component_runs(class_mask, connectivity, background)
    values = comp.value.astype(np.int64)
    keep = np.ones(comp.count, bool)
    if ignore_value is not None:
        keep &= values != int(ignore_value)
    if keep.any() and values[keep].min() < 0:
        bad = int(values[keep].min())
        raise ValueError(f"class values must be >= 0 to form ids class * base + k, found class {bad}")
    kept = np.flatnonzero(keep)
    classes = values[kept]
    k = _rank_within_class(classes)
    if k.size and k.max() >= base:
        cls = int(classes[k >= base][0])
        n_cls = int(np.count_nonzero(classes == cls))
        raise ValueError(
            f"class {cls} has {n_cls} components but id_scheme base {base} allows at most {base - 1} "
            f"per class (ids class*{base}+k would collide); use a larger base"
        )
    if classes.size and int(classes.max()) > (int(np.iinfo(np.int64).max) - base) // base:
        raise ValueError(f"class {int(classes.max())} * base {base} + k does not fit in int64")
    ids = classes * base + k
    dtype = instance_dtype(int(ids.max()) if ids.size else 0)
    lut = np.zeros(comp.count + 1, dtype)
    lut[kept + 1] = ids.astype(dtype)
    inst = np.empty(np.shape(class_mask), dtype)
    rs, re, lab, row_ptr = comp.runs
    _raise_status(_k.paint_lut(rs, re, lab, row_ptr, lut, inst))
    table = InstanceTable(
        id=ids.astype(dtype),
        class_id=classes,
        k=k,
        area=comp.area[kept],
        bbox=_xywh(comp.box)[kept],
        first_pixel=comp.first[kept],
        base=base,
        connectivity=connectivity,
    )
    return inst, table


# --------------------------------------------------------------------------- small components


def _check_min_area(min_area) -> int:
    if isinstance(min_area, bool) or not isinstance(min_area, numbers.Integral):
        raise TypeError(f"min_area must be an integer pixel count, got {min_area!r}")
    if int(min_area) < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    return int(min_area)


def count_small(mask, min_area: int, connectivity: int = 8, background: int | None = 0) -> int:
    """Number of components with fewer than ``min_area`` pixels (background excluded).

    >>> import numpy as np
    >>> count_small(np.array([[1, 0, 2, 2], [0, 0, 0, 0], [3, 3, 3, 0]]), min_area=3)
    2
    """
    min_area = _check_min_area(min_area)
    connectivity = _check_connectivity(connectivity)
    comp = _component_runs(mask, connectivity, background)
    return int(np.count_nonzero(comp.area < min_area))


def remove_small(
    mask,
    min_area: int,
    connectivity: int = 8,
    background: int | None = 0,
    fill: int | None = None,
) -> tuple[np.ndarray, int]:
    """Erase components with fewer than ``min_area`` pixels; return ``(cleaned, n_removed)``.

    Components are found as in :func:`label` (equal-valued neighbours); the
    pixels of every component whose area is strictly below ``min_area`` are set
    to ``fill`` (default: ``background``; required when ``background`` is
    ``None``).  The input is not modified; ``cleaned`` has the input's dtype.
    ``n_removed`` counts components, not pixels.

    >>> import numpy as np
    >>> cleaned, n = remove_small(np.array([[1, 0, 2, 2], [0, 0, 0, 0], [3, 3, 3, 0]]), min_area=2)
    >>> n, cleaned.tolist()
    (1, [[0, 0, 2, 2], [0, 0, 0, 0], [3, 3, 3, 0]])
    """
    min_area = _check_min_area(min_area)
    if fill is None:
        if background is None:
            raise ValueError("remove_small needs fill= when background is None")
        fill = background
    if isinstance(fill, bool) or not isinstance(fill, numbers.Integral):
        raise TypeError(f"fill must be an integer, got {fill!r}")
    connectivity = _check_connectivity(connectivity)
    arr = np.asarray(mask)
    if arr.ndim == 2 and (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)):
        lo, hi = (0, 1) if arr.dtype == np.bool_ else (int(np.iinfo(arr.dtype).min), int(np.iinfo(arr.dtype).max))
        if not lo <= int(fill) <= hi:
            raise ValueError(f"fill={fill} is outside the range of the mask dtype {arr.dtype} [{lo}, {hi}]")
    comp = _component_runs(arr, connectivity, background)
    small = comp.area < min_area
    n_removed = int(np.count_nonzero(small))
    cleaned = np.array(arr, copy=True, order="C")
    if n_removed:
        selected = np.zeros(comp.count + 1, np.bool_)
        selected[1:] = small
        work = cleaned.view(np.uint8) if cleaned.dtype == np.bool_ else cleaned
        rs, re, lab, row_ptr = comp.runs
        _raise_status(_k.fill_runs(rs, re, lab, row_ptr, selected, work.dtype.type(int(fill)), work))
    return cleaned, n_removed
