"""``fastmask demo``: the built-in sample, validated; ``fastmask demo --coco-rle``: the RLE round trip.

The validation demo writes the sample dataset of :mod:`fastmask.sample` (a VOC/CVAT
folder, a COCO file, a COCO panoptic pair, a mask folder and a masks zip holding one
planted example of every rule next to clean masks), runs ``fastmask validate`` on each, prints the summaries
and checks that every planted defect was found and nothing else.

The COCO RLE demo needs no files: a few hundred generated 640x480 "images" with ~7
polygon annotations each, rasterized in COCO mode, encoded to COCO RLE, decoded back
and checked, with timings.
"""
from __future__ import annotations

import sys
import time

import numpy as np

H, W = 480, 640


def generate(n_images: int, seed: int = 0) -> list[list[list[list[float]]]]:
    """COCO-like annotations: per image a list of annotations, each 1-2 star-shaped polygon parts."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        anns = []
        for _ in range(int(rng.integers(4, 11))):
            parts = []
            for _ in range(1 if rng.random() < 0.8 else 2):
                size = float(rng.uniform(20, 300))
                k = int(rng.integers(10, 61))
                cx, cy = rng.uniform(0, W), rng.uniform(0, H)
                ang = np.sort(rng.uniform(0, 2 * np.pi, k))
                rad = size / 2 * rng.uniform(0.55, 1.0, k)
                xy = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
                parts.append(np.round(xy, 2).reshape(-1).tolist())
            anns.append(parts)
        images.append(anns)
    return images


def run_demo(n_images: int = 200, seed: int = 0) -> int:
    """Run the demo; returns the process exit code (0 when every round trip is exact)."""
    import fastmask.rle as fr
    from fastmask.raster import polygon_mask, polygons_to_rles

    t0 = time.perf_counter()
    images = generate(n_images, seed)
    n_ann = sum(len(a) for a in images)
    print(f"generated {n_images} COCO-like images ({W}x{H}) with {n_ann} polygon annotations (seed {seed})")

    # warm-up: the first call compiles (or loads cached) Numba kernels
    t_jit = time.perf_counter()
    fr.decode(polygons_to_rles(images[0], H, W)[0])
    polygon_mask(images[0][0], H, W)
    print(f"kernels ready in {time.perf_counter() - t_jit:.2f} s (Numba JIT on first run, cached afterwards)")

    t = time.perf_counter()
    masks = []
    for anns in images:
        stack = np.zeros((len(anns), H, W), np.uint8)
        for i, ann in enumerate(anns):
            polygon_mask(ann, H, W, out=stack[i])
        masks.append(stack)
    t_raster = time.perf_counter() - t
    t = time.perf_counter()
    rles_from_masks = [fr.encode(stack.transpose(1, 2, 0)) for stack in masks]
    t_encode = time.perf_counter() - t
    t = time.perf_counter()
    rles_from_polys = [polygons_to_rles(anns, H, W) for anns in images]
    t_poly = time.perf_counter() - t
    t = time.perf_counter()
    decoded = [fr.decode_stack(r) for r in rles_from_masks]
    t_decode = time.perf_counter() - t

    mismatches = 0
    for stack, a, b, back in zip(masks, rles_from_masks, rles_from_polys, decoded):
        mismatches += int(a != b) + int(not np.array_equal(stack, back))
    areas = np.concatenate([fr.area(r) for r in rles_from_masks])
    pixels = sum(int(m.sum()) for m in masks)

    def rate(seconds: float) -> str:
        return f"{n_ann / seconds:,.0f} masks/s" if seconds > 0 else "n/a"

    print(f"rasterized {n_ann} annotations (coco mode, parts unioned): {t_raster:.3f} s, {rate(t_raster)}")
    print(f"encoded the masks to COCO RLE (C-ordered stacks, no copy): {t_encode:.3f} s, {rate(t_encode)}")
    print(f"polygons straight to RLE (no dense mask): {t_poly:.3f} s, {rate(t_poly)}")
    print(f"decoded all RLEs back to masks: {t_decode:.3f} s, {rate(t_decode)}")
    print(f"foreground pixels: {pixels:,} (RLE areas agree: {int(areas.sum()) == pixels})")
    example = rles_from_masks[0][0]
    print(f"example RLE: size {example['size']}, counts {example['counts'][:40]!r}...")
    sq = [1, 1, 1, 4, 4, 4, 4, 1]
    a = fr.encode(polygon_mask([sq], 8, 8, mode="inclusive"))
    b = fr.encode(polygon_mask([[v + 1 for v in sq]], 8, 8, mode="inclusive"))
    print(f"worked example: 4x4 square ({int(fr.area(a))} px, inclusive) vs the same shifted by one: "
          f"IoU {float(fr.iou([a], [b], [0])[0, 0]):.4f} (= 9/23)")
    if mismatches:
        print(f"FAILED: {mismatches} round trips differ")
        return 1
    print(f"all {n_ann} masks round-trip exactly (mask -> RLE -> mask, polygon -> RLE == mask -> RLE); "
          f"total {time.perf_counter() - t0:.2f} s")
    return 0


_DEMO_MARK = ".fastmask-demo"


def run_validation_demo(out: str | None = None, *, seed: int = 0, workers: int | None = None) -> int:
    """Write the sample, validate its five datasets, check the findings; returns the exit code."""
    import shutil
    from pathlib import Path

    import pyarrow.parquet as pq

    from .cli import main as cli_main
    from .sample import make_sample

    root = Path(out or "fastmask-demo")
    if root.exists() and any(root.iterdir()):
        if not (root / _DEMO_MARK).exists():
            print(f"fastmask demo: {root} exists and is not a demo folder; choose another --out", file=sys.stderr)
            return 2
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / _DEMO_MARK).write_text("written by `fastmask demo`; deleted and rewritten by the next demo run\n")
    info = make_sample(root / "sample", seed=seed)
    print(f"sample dataset with one planted example of each of {len(info.rules)} rules: {root / 'sample'}")
    found: set[tuple[str, object, str]] = set()
    from .sample import LAYOUT_KEYS

    for key in LAYOUT_KEYS:
        report = root / f"report-{key}"
        print(f"\n$ fastmask validate {info.path(key)} --out {report}")
        args = ["validate", str(info.path(key)), "--out", str(report), "--fail-on", "never", "--quiet"]
        if workers is not None:
            args += ["--workers", str(workers)]
        code = cli_main(args)
        if code != 0:
            return code
        for table in ("findings", "dataset_findings"):
            for f in pq.read_table(report / table, columns=["item_id", "rule"]).to_pylist():
                found.add((key, f["item_id"], f["rule"]))
    expected = set(info.expected)
    missed = sorted(expected - found, key=str)
    extra = sorted(found - expected, key=str)
    print(f"\nplanted defects found: {len(expected) - len(missed)} of {len(expected)}; "
          f"findings on clean items: {len(extra)}")
    for key, item, rule in missed:
        print(f"  MISSED {rule} in {key} {item or '(dataset)'}")
    for key, item, rule in extra:
        print(f"  UNEXPECTED {rule} in {key} {item or '(dataset)'}")
    print(f"reports: {root}/" + ", ".join(f"report-{k}" for k in LAYOUT_KEYS) + " (Parquet tables + run.json)")
    return 0 if not missed and not extra else 1
