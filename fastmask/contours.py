"""Masks -> polygons: contour tracing with holes kept as interior rings.

**Polygon convention (pixel corners).** Pixel ``(row, col)`` is the unit square
``[col, col+1] x [row, row+1]``; ring vertices are pixel corners, so a single
pixel at ``(row=2, col=3)`` becomes the ring ``(3, 2) (4, 2) (4, 3) (3, 3)``.
Rings follow the pixel edges between foreground and background, so filling them
back in ``coco`` mode (:func:`fastmask.raster.polygon_mask`, i.e. pycocotools)
gives exactly the original pixels: outer rings alone with ``fill_rule="union"``
when there are no holes, outer rings and holes together with
``fill_rule="evenodd"``. (OpenCV's ``findContours`` gives pixel *centres*
instead: its points are ours shifted by up to half a pixel, and it cannot be
filled back exactly by COCO readers.)

Outer rings have a positive shoelace area in ``(x, y)`` (clockwise on screen,
y down), holes a negative one. Only corners are kept (like
``CHAIN_APPROX_SIMPLE``). With ``tolerance > 0`` every ring is simplified with
Douglas-Peucker (maximum distance ``tolerance`` pixels); the pixels then no
longer round-trip exactly.

**Connectivity.** 8 (default): diagonal neighbours are one shape, whose outer ring
touches itself at the shared corner; holes are 4-connected background regions.
4: diagonal neighbours are separate shapes; holes are 8-connected background
regions. Shapes come in raster order of their first pixel (the numbering of
:func:`fastmask.components.label`), holes in raster order of their top-left edge.

**COCO.** COCO polygons cannot hold holes (a reader unions the parts), so
:func:`coco_segmentation` returns an RLE for masks with holes and polygons
otherwise.

>>> import numpy as np
>>> m = np.zeros((5, 5), np.uint8); m[1:4, 1:4] = 1; m[2, 2] = 0
>>> [s.exterior.tolist() for s in mask_to_polygons(m)]
[[[1.0, 1.0], [4.0, 1.0], [4.0, 4.0], [1.0, 4.0]]]
>>> [h.tolist() for h in mask_to_polygons(m)[0].holes]
[[[2.0, 2.0], [2.0, 3.0], [3.0, 3.0], [3.0, 2.0]]]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import rle as _rle
from .components import label
from .kernels import contour as _k

__all__ = ["CONNECTIVITIES", "Shape", "coco_polygons", "coco_segmentation", "mask_to_polygons", "ring_area"]

CONNECTIVITIES = (4, 8)


@dataclass
class Shape:
    """One connected component: its outer ring and its holes, as (n, 2) float64 ``(x, y)`` arrays."""

    exterior: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)
    area: int = 0  # pixels of the component (holes excluded)

    def flat(self) -> list[float]:
        """The exterior as a COCO flat list ``[x0, y0, x1, y1, ...]``."""
        return self.exterior.reshape(-1).tolist()


def ring_area(ring: np.ndarray) -> float:
    """Signed shoelace area of a ring in ``(x, y)``: positive for outer rings, negative for holes.

    >>> ring_area(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float))
    1.0
    """
    r = np.asarray(ring, np.float64)
    if r.shape[0] < 3:
        return 0.0
    x, y = r[:, 0], r[:, 1]
    s = np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]) + x[-1] * y[0] - x[0] * y[-1]
    return float(0.5 * s)


def _as_binary(mask) -> np.ndarray:
    """A 2-D uint8 array whose non-zero pixels are the foreground (uint8 and bool: no copy)."""
    a = np.asarray(mask)
    if a.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {a.shape}")
    if a.dtype == np.bool_:
        return a.view(np.uint8)
    if a.dtype == np.uint8:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"mask must be a numeric or bool array, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise ValueError("mask holds NaN or inf")
    return (a != 0).view(np.uint8)


def _check_options(connectivity, tolerance) -> tuple[int, float]:
    if isinstance(connectivity, bool) or connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    try:
        tol = float(tolerance)
    except (TypeError, ValueError):
        raise TypeError(f"tolerance must be a number, got {tolerance!r}") from None
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    return int(connectivity), tol


def mask_to_polygons(mask, *, connectivity: int = 8, tolerance: float = 0.0,
                     offset: tuple[float, float] = (0, 0)) -> list[Shape]:
    """Trace a binary mask (non-zero = foreground) into :class:`Shape` s (outer ring + holes).

    ``offset`` ``(x, y)`` is added to every vertex (for masks cropped out of an image).

    >>> import numpy as np
    >>> m = np.array([[1, 0], [0, 1]], np.uint8)
    >>> len(mask_to_polygons(m, connectivity=8)), len(mask_to_polygons(m, connectivity=4))
    (1, 2)
    """
    conn, tol = _check_options(connectivity, tolerance)
    binary = _as_binary(mask)
    box = _bbox(binary) if binary.size else None
    if box is None:
        return []
    r0, r1, c0, c1 = box
    crop = np.ascontiguousarray(binary[r0:r1, c0:c1])  # work in the foreground's bounding box
    _, xy, offsets, is_hole, first = _k.trace_rings(crop, conn == 8)
    hole_flags = is_hole.tolist()
    n = hole_flags.count(0)
    if n == 1 or n == len(hole_flags):
        # outer rings come in raster order of the component's first pixel (label order); with one
        # shape every hole is its own, without holes nothing needs a parent: no labeling
        comp, k = [], 0
        for h in hole_flags:
            k += not h
            comp.append(k if not h else 1)
    else:
        labels, n = label(crop, connectivity=conn, background=0, binary=True)
        comp = labels[first[:, 0], first[:, 1]].tolist()
    area2 = _k.ring_areas2(xy, offsets).tolist()  # outer rings positive, holes negative
    pts = xy.astype(np.float64)
    ox, oy = float(offset[0]) + c0, float(offset[1]) + r0
    if ox or oy:
        pts += (ox, oy)
    bounds = offsets.tolist()
    shapes: list[Shape | None] = [None] * (n + 1)
    holes: list[list[np.ndarray]] = [[] for _ in range(n + 1)]
    areas = [0] * (n + 1)
    for i, c in enumerate(comp):
        ring = pts[bounds[i]:bounds[i + 1]]
        areas[c] += area2[i]
        if tol > 0:
            ring = _k.simplify_ring(ring, tol)
        if hole_flags[i]:
            holes[c].append(ring)
        else:
            shapes[c] = Shape(exterior=ring)
    out = []
    for c in range(1, n + 1):
        s = shapes[c]
        if s is None:  # pragma: no cover - every component has exactly one outer ring
            raise RuntimeError(f"contour tracing found no outer ring for component {c}")
        s.holes = holes[c]
        s.area = areas[c] // 2
        out.append(s)
    return out


def coco_polygons(shapes: list[Shape]) -> list[list[float]]:
    """The outer rings of ``shapes`` as a COCO polygon list (holes are dropped: see :func:`coco_segmentation`).

    >>> import numpy as np
    >>> coco_polygons(mask_to_polygons(np.ones((2, 2), np.uint8)))
    [[0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0]]
    """
    return [s.flat() for s in shapes]


def _bbox(binary: np.ndarray) -> tuple[int, int, int, int] | None:
    """Half-open ``(r0, r1, c0, c1)`` of the non-zero pixels of a uint8 mask, None when there are none."""
    if binary.flags.f_contiguous and not binary.flags.c_contiguous:  # e.g. pycocotools' decode: scan it as C
        found, c0, c1, r0, r1 = _k.nonzero_bbox(binary.T)
    else:
        found, r0, r1, c0, c1 = _k.nonzero_bbox(np.ascontiguousarray(binary))
    return (int(r0), int(r1), int(c0), int(c1)) if found else None


def coco_segmentation(mask, *, connectivity: int = 8, tolerance: float = 0.0,
                      encoding: str = "polygons") -> tuple[list[list[float]] | dict, str]:
    """A COCO ``segmentation`` for a binary mask: ``(segmentation, kind)``, kind ``"polygons"`` or ``"rle"``.

    ``encoding="polygons"``: the outer rings (pixel-corner convention; a COCO reader
    fills them back to exactly these pixels when ``tolerance == 0``), unless the mask
    has a hole: COCO polygons cannot express holes, so such masks (and empty
    masks) are written as a compressed RLE. ``encoding="rle"``: always RLE.

    >>> import numpy as np
    >>> m = np.zeros((4, 4), np.uint8); m[1:3, 1:3] = 1
    >>> coco_segmentation(m)
    ([[1.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 3.0]], 'polygons')
    >>> m[0:4, 0:4] = 1; m[1, 1] = 0
    >>> coco_segmentation(m)[1]
    'rle'
    """
    conn, tol = _check_options(connectivity, tolerance)
    if encoding not in ("polygons", "rle"):
        raise ValueError(f"encoding must be 'polygons' or 'rle', got {encoding!r}")
    binary = _as_binary(mask)
    if encoding == "polygons":
        shapes = mask_to_polygons(binary, connectivity=conn, tolerance=tol)
        if shapes and not any(s.holes for s in shapes):
            return coco_polygons(shapes), "polygons"
    r = _rle.encode((binary != 0).view(np.uint8))
    return {"size": [int(binary.shape[0]), int(binary.shape[1])], "counts": r["counts"].decode("ascii")}, "rle"
