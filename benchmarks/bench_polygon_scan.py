"""Polygon scanline fill (kernels/polygon_scan.py) vs cv2.fillPoly.

COCO-like data: 640 x 480 images, ~7 instances each, one ring of 10-60 vertices per
instance (star-shaped, object sizes 20-300 px), integer vertices (the inclusive
mode's semantics are cv2.fillPoly's on integer vertices). Times are per instance
mask. Rows:

* alloc + fill: a fresh zeroed (480, 640) uint8 mask and the fill (what a caller
  rasterizing one instance mask pays); inputs prepared beforehand for both sides
  (ours: flat float64 + offsets, cv2: int32 (n, 1, 2)).
* fill only: the same into a reused mask (filling is idempotent).
* from COCO list: also converting the COCO flat Python list to each side's array.
* center mode: our other mode, same data (no cv2 equivalent; anchor = cv2 anyway).
"""
from __future__ import annotations

import numpy as np


from benchmarks._timing import Table, paired_medians

H, W = 480, 640


def _coco_like(n_images: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    polys = []
    for _ in range(n_images):
        for _ in range(int(rng.integers(4, 11))):  # ~7 per image
            size = float(rng.uniform(20, 300))
            n = int(rng.integers(10, 61))
            cx = rng.uniform(size / 2, W - size / 2)
            cy = rng.uniform(min(size / 2, H / 2), max(H - size / 2, H / 2))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = size / 2 * rng.uniform(0.55, 1.0, n)
            x = np.clip(np.rint(cx + rad * np.cos(ang)), 0, W - 1)
            y = np.clip(np.rint(cy + rad * np.sin(ang)), 0, H - 1)
            polys.append(np.stack([x, y], 1).reshape(-1).tolist())  # COCO flat list
    return polys


def run(quick: bool = False) -> None:
    import cv2

    from fastmask.kernels.polygon_scan import scanline_fill

    polys = _coco_like(20 if quick else 100)
    n = len(polys)
    ours_in = [(np.asarray(p, np.float64), np.array([0, len(p)], np.int64)) for p in polys]
    cv_in = [[np.asarray(p, np.int32).reshape(-1, 1, 2)] for p in polys]

    # warm up (JIT) and check we draw the same pixels as cv2 on this data
    for (xy, offs), pts in zip(ours_in, cv_in):
        a = np.zeros((H, W), np.uint8)
        scanline_fill(xy, offs, H, W, True, True, a)
        b = np.zeros((H, W), np.uint8)
        cv2.fillPoly(b, pts, 1)
        assert np.array_equal(a, b), "inclusive fill differs from cv2.fillPoly"
    mean_px = np.mean([np.count_nonzero(cv2.fillPoly(np.zeros((H, W), np.uint8), pts, 1)) for pts in cv_in])

    def ours_alloc():
        for xy, offs in ours_in:
            out = np.zeros((H, W), np.uint8)
            scanline_fill(xy, offs, H, W, True, True, out)

    def cv_alloc():
        for pts in cv_in:
            img = np.zeros((H, W), np.uint8)
            cv2.fillPoly(img, pts, 1)

    buf_a = np.zeros((H, W), np.uint8)
    buf_b = np.zeros((H, W), np.uint8)

    def ours_only():
        for xy, offs in ours_in:
            scanline_fill(xy, offs, H, W, True, True, buf_a)

    def cv_only():
        for pts in cv_in:
            cv2.fillPoly(buf_b, pts, 1)

    def ours_list():
        for p in polys:
            out = np.zeros((H, W), np.uint8)
            scanline_fill(np.asarray(p, np.float64), np.array([0, len(p)], np.int64), H, W, True, True, out)

    def cv_list():
        for p in polys:
            img = np.zeros((H, W), np.uint8)
            cv2.fillPoly(img, [np.asarray(p, np.int32).reshape(-1, 1, 2)], 1)

    def ours_center():
        for xy, offs in ours_in:
            out = np.zeros((H, W), np.uint8)
            scanline_fill(xy, offs, H, W, False, True, out)

    repeat = 5 if quick else 25
    table = Table(f"polygon scanline fill, per instance mask ({n} COCO-like instances, "
                  f"{W}x{H}, 10-60 vertices, mean {mean_px:.0f} px)")
    rows = [
        ("inclusive: alloc + fill", ours_alloc, cv_alloc, "bit-exact"),
        ("inclusive: fill only (reused mask)", ours_only, cv_only, ""),
        ("inclusive: from COCO list (+ array conversion)", ours_list, cv_list, ""),
        ("center: alloc + fill", ours_center, cv_alloc, "other semantics"),
    ]
    for case, ours_fn, cv_fn, note in rows:
        t_ours, t_cv = paired_medians(ours_fn, cv_fn, repeat)
        table.add(case, t_ours / n, t_cv / n, "cv2.fillPoly", note)
    table.print()
