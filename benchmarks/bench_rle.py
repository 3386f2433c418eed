"""COCO RLE and coco-mode polygon fill vs pycocotools (and start-up costs).

COCO-like data: 640x480 images, ~7 polygons of 10-60 vertices per image (object
sizes 20-300 px). Times are per mask (or per annotation / per pair), medians of
paired rounds (ours and theirs back to back in each round).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks._timing import Table, fmt_time, paired_medians

H, W = 480, 640


def coco_like_annotations(n_images: int, seed: int = 0) -> list[list[list[list[float]]]]:
    """Per image, a list of annotations; each annotation a list of 1-2 polygon parts (the demo's generator)."""
    from fastmask.demo import generate

    return generate(n_images, seed)


def _startup_times() -> list[tuple[str, float]]:
    """First call with an empty Numba cache (JIT compile) vs a warm on-disk cache, in fresh processes."""
    code = (
        "import time; t0 = time.perf_counter(); import numpy as np; import fastmask.rle as fr; "
        "from fastmask.raster import polygon_mask; "
        "m = polygon_mask([[1, 1, 1, 9, 9, 9]], 16, 16); r = fr.encode(m); fr.decode(r); "
        "fr.iou([r], [r], [0]); fr.merge([r, r]); fr.toBbox(r); fr.area(r); "
        "fr.frPyObjects([[1, 1, 1, 9, 9, 9]], 16, 16); "
        "print(time.perf_counter() - t0)"
    )
    out = []
    with tempfile.TemporaryDirectory() as cold:
        env = dict(os.environ, NUMBA_CACHE_DIR=cold)
        t = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
        out.append(("import + first calls, empty Numba cache (JIT compile)", t))
        t = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
        out.append(("import + first calls, warm Numba cache", t))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fastmask", "--help"], capture_output=True, check=True)
    out.append(("`fastmask --help` (whole process)", time.perf_counter() - t0))
    return out


def run(quick: bool = False) -> None:
    from pycocotools import mask as pm

    import fastmask.rle as fr
    from fastmask.raster import polygon_mask, polygon_rle, polygons_to_rles

    n_images = 12 if quick else 40
    repeat = 5 if quick else 11
    images = coco_like_annotations(n_images)
    anns = [a for img in images for a in img]
    n = len(anns)
    rles = [pm.merge(pm.frPyObjects(a, H, W)) for a in anns]
    masks_f = pm.decode(rles)  # (H, W, n) Fortran, what pycocotools wants
    masks_c = np.ascontiguousarray(masks_f.transpose(2, 0, 1))  # (n, H, W), as most pipelines hold them
    per_image = []
    k = 0
    for img in images:
        per_image.append(rles[k : k + len(img)])
        k += len(img)
    pairs = sum(len(r) ** 2 for r in per_image)
    crowd = [np.zeros(len(r), np.uint8) for r in per_image]

    def enc_f_ours():
        fr.encode(masks_f)

    def enc_f_ref():
        pm.encode(masks_f)

    def enc_c_ours():
        fr.encode(masks_c.transpose(1, 2, 0))

    def enc_c_ref():
        pm.encode(np.asfortranarray(masks_c.transpose(1, 2, 0)))

    def dec_ours():
        for r in rles:
            fr.decode(r)

    def dec_ref():
        for r in rles:
            pm.decode(r)

    def dec_batch_ours():
        fr.decode_stack(rles)

    def dec_batch_ref():
        pm.decode(rles)

    def area_ours():
        for r in per_image:
            fr.area(r)

    def area_ref():
        for r in per_image:
            pm.area(r)

    def bbox_ours():
        for r in per_image:
            fr.toBbox(r)

    def bbox_ref():
        for r in per_image:
            pm.toBbox(r)

    def iou_ours():
        for r, c in zip(per_image, crowd):
            fr.iou(r, r[::-1], c)

    def iou_ref():
        for r, c in zip(per_image, crowd):
            pm.iou(r, r[::-1], c)

    def merge_ours():
        for r in per_image:
            fr.merge(r)

    def merge_ref():
        for r in per_image:
            pm.merge(r)

    def poly_rle_ours():
        for a in anns:
            fr.merge(fr.frPyObjects(a, H, W))

    def poly_rle_ref():
        for a in anns:
            pm.merge(pm.frPyObjects(a, H, W))

    def poly_rle_direct():
        for a in anns:
            polygon_rle(a, H, W)

    def poly_batch_ours():
        polygons_to_rles(anns, H, W)

    singles = [p for a in anns for p in a]

    def fr_single_ours():
        for p in singles:
            fr.frPyObjects([p], H, W)

    def fr_single_ref():
        for p in singles:
            pm.frPyObjects([p], H, W)

    def poly_mask_ours():
        for a in anns:
            polygon_mask(a, H, W)

    def poly_mask_ref():
        for a in anns:
            pm.decode(pm.merge(pm.frPyObjects(a, H, W)))

    table = Table(
        f"COCO RLE vs pycocotools {pm.__name__.split('.')[0]} ({n} COCO-like annotations on {n_images} "
        f"{W}x{H} images; per mask unless noted)"
    )
    rows = [
        ("encode, Fortran (H,W,N) stack", enc_f_ours, enc_f_ref, n, ""),
        ("encode, C-ordered (N,H,W) stack", enc_c_ours, enc_c_ref, n, "pycocotools needs a Fortran copy"),
        ("decode, one RLE per call (string parse incl.)", dec_ours, dec_ref, n, ""),
        ("decode, list of RLEs in one call", dec_batch_ours, dec_batch_ref, n, "ours: decode_stack (C order)"),
        ("area, per image list", area_ours, area_ref, n, ""),
        ("toBbox, per image list", bbox_ours, bbox_ref, n, ""),
        ("iou, per image all pairs (per pair)", iou_ours, iou_ref, pairs, ""),
        ("merge, per image list (per mask)", merge_ours, merge_ref, n, ""),
        ("frPyObjects + merge (per annotation)", poly_rle_ours, poly_rle_ref, n, ""),
        ("polygon -> RLE, polygon_rle (per annotation)", poly_rle_direct, poly_rle_ref, n, "vs frPyObjects+merge"),
        ("polygon -> RLE, batch polygons_to_rles (per annotation)", poly_batch_ours, poly_rle_ref, n, "one call for all"),
        ("frPyObjects, one polygon per call (per polygon)", fr_single_ours, fr_single_ref, len(singles), ""),
        ("polygon -> mask, coco mode (per annotation)", poly_mask_ours, poly_mask_ref, n, "vs frPyObjects+merge+decode"),
    ]
    for case, ours, theirs, count, note in rows:
        t_ours, t_ref = paired_medians(ours, theirs, repeat)
        table.add(case, t_ours / count, t_ref / count, "pycocotools", note)
    table.print()

    print("\n## Start-up\n")
    print("| what | time |")
    print("|---|---:|")
    for what, t in _startup_times():
        print(f"| {what} | {fmt_time(t)} |")
