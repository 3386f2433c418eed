"""COCO RLE: fastmask.rle vs pycocotools 2.0.11 and rlemasklib, per call and in batch.

Two data sets: (a) generated COCO-like images (640x480, ~7 polygon annotations
of 10-60 vertices each) and (b) every RLE of the real COCO samples in
``../shared/data/real/`` (pycocotools' canonical strings, grouped per image).
Each operation is called as the drop-in is used (one call per mask or per
image); the contenders run back to back in every round and the table gives
medians per call and the anchors' time over fastmask's (above 1 = fastmask
faster). The "floor" rows time the bare memory work of decode / encode with
NumPy (allocate + write, read) on the same masks.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._timing import fmt_time

H, W = 480, 640
REAL = Path(os.environ.get("FASTMASK_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"))


def coco_like_annotations(n_images: int, seed: int = 0) -> list[list[list[list[float]]]]:
    """Per image, a list of annotations; each annotation a list of 1-2 polygon parts (the demo's generator)."""
    from fastmask.demo import generate

    return generate(n_images, seed)


def real_rles() -> list[list[dict]]:
    """Every RLE of the real COCO samples (pycocotools' compressed strings), one list per image."""
    groups: dict[tuple, list[dict]] = {}
    for f in sorted((REAL / "_reference" / "pycocotools-2.0.11").rglob("*.expected.json")):
        for r in json.loads(f.read_text())["records"]:
            if "counts" in r:
                groups.setdefault((f.name, r["image_id"]), []).append(
                    {"size": [r["h"], r["w"]], "counts": r["counts"].encode()}
                )
    return list(groups.values())


def real_polygons() -> tuple[list[list[list[float]]], list[tuple[int, int]]]:
    """Polygon annotations of the real COCO samples with their image sizes."""
    anns, sizes = [], []
    for f in sorted((REAL / "super-gradients").rglob("*.json")):
        d = json.loads(f.read_text())
        hw = {im["id"]: (im["height"], im["width"]) for im in d.get("images", [])}
        for a in d.get("annotations", []):
            seg = a.get("segmentation")
            if isinstance(seg, list) and seg and all(len(p) >= 6 for p in seg):
                anns.append(seg)
                sizes.append(hw[a["image_id"]])
    return anns, sizes


def interleaved_medians(fns: list, repeat: int) -> tuple[list[float], list[float]]:
    """Median time of each function, all run back to back in every round (same machine load),
    and the median over rounds of each one's time over the last one's (the ratio in one round
    is steadier than the ratio of medians on a shared, noisy machine)."""
    for f in fns:
        if f is not None:
            f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            if f is not None:
                f()
            times[i].append(time.perf_counter() - t0 if f is not None else float("nan"))
    last = times[-1]
    medians = [statistics.median(t) for t in times]
    ratios = [statistics.median(a / b for a, b in zip(t, last)) for t in times]
    return medians, ratios


class Table3:
    """Rows ``(operation, pycocotools, rlemasklib, fastmask)`` with the anchors' time over fastmask's."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[tuple] = []

    def add(self, op: str, timed: tuple[list[float], list[float]], count: int, note: str = "") -> None:
        times, ratios = timed
        self.rows.append((op, *(t / count for t in times), ratios[0], ratios[1], note))

    def print(self) -> None:
        print(f"\n## {self.title}\n")
        print("| operation | pycocotools | rlemasklib | fastmask | pycocotools / fastmask | rlemasklib / fastmask | note |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for op, tp, tr, tf, rp, rr, note in self.rows:
            cell = lambda t: "—" if t != t else fmt_time(t)  # noqa: E731 (NaN: no equivalent)
            ratio = lambda r: "—" if r != r else f"{r:.2f}x"  # noqa: E731
            print(f"| {op} | {cell(tp)} | {cell(tr)} | {cell(tf)} | {ratio(rp)} | {ratio(rr)} | {note} |")


def _per_call_rows(table: Table3, per_image: list[list[dict]], repeat: int, label: str) -> None:
    """decode / encode / area / toBbox / iou / merge, one call per mask or per image."""
    import rlemasklib as rl
    from pycocotools import mask as pm

    import fastmask.rle as fr

    rles = [r for img in per_image for r in img]
    n = len(rles)
    masks_f = [pm.decode(r) for r in rles]  # Fortran (h, w), as pycocotools decodes
    masks_c = [np.ascontiguousarray(m) for m in masks_f]  # C order, as most pipelines hold masks
    pairs = sum(len(r) ** 2 for r in per_image)
    n_img = len(per_image)
    crowd0 = [np.zeros(len(r), np.uint8) for r in per_image]
    crowd1 = [np.arange(len(r), dtype=np.uint8) % 2 for r in per_image]

    def loop(fn, items):
        def run():
            for x in items:  # results dropped at once, as a per-call loop that keeps only what it needs
                fn(x)

        return run

    rows = [
        ("decode", loop(pm.decode, rles), loop(rl.decode, rles), loop(fr.decode, rles), n, "per RLE"),
        ("encode, Fortran-ordered mask", loop(pm.encode, masks_f), loop(rl.encode, masks_f), loop(fr.encode, masks_f), n, "per mask"),
        (
            "encode, C-ordered mask",
            loop(lambda m: pm.encode(np.asfortranarray(m)), masks_c),
            loop(rl.encode, masks_c),
            loop(fr.encode, masks_c),
            n,
            "per mask; pycocotools needs a Fortran copy",
        ),
        ("area", loop(pm.area, per_image), loop(rl.area, per_image), loop(fr.area, per_image), n_img, "per image list"),
        ("toBbox", loop(pm.toBbox, per_image), loop(rl.to_bbox, per_image), loop(fr.toBbox, per_image), n_img, "per image list"),
        (
            "iou, no crowd",
            lambda: [pm.iou(r, r[::-1], c) for r, c in zip(per_image, crowd0)],
            None,
            lambda: [fr.iou(r, r[::-1], c) for r, c in zip(per_image, crowd0)],
            n_img,
            f"per image, all pairs ({pairs / n_img:.0f} per image); rlemasklib has no pairwise matrix",
        ),
        (
            "iou, crowd",
            lambda: [pm.iou(r, r[::-1], c) for r, c in zip(per_image, crowd1)],
            None,
            lambda: [fr.iou(r, r[::-1], c) for r, c in zip(per_image, crowd1)],
            n_img,
            "per image, every other gt a crowd",
        ),
        ("merge, union", loop(pm.merge, per_image), loop(rl.union, per_image), loop(fr.merge, per_image), n_img, "per image list"),
        (
            "merge, intersection",
            loop(lambda r: pm.merge(r, 1), per_image),
            loop(rl.intersection, per_image),
            loop(lambda r: fr.merge(r, 1), per_image),
            n_img,
            "per image list",
        ),
    ]
    ucounts = [{"size": r["size"], "counts": fr.counts_of(r)[0].tolist()} for r in rles]
    rl_ucounts = [{"size": r["size"], "ucounts": r["counts"]} for r in ucounts]
    rows.append(
        (
            "frPyObjects, uncompressed RLE",
            loop(lambda u: pm.frPyObjects(u, *u["size"]), ucounts),
            loop(rl.compress, rl_ucounts),
            loop(lambda u: fr.frPyObjects(u, *u["size"]), ucounts),
            n,
            "per RLE",
        )
    )
    boxes = [pm.toBbox(img) for img in per_image]
    hw = [img[0]["size"] for img in per_image]
    rows.append(
        (
            "frPyObjects, boxes",
            lambda: [pm.frPyObjects(b, h, w) for b, (h, w) in zip(boxes, hw)],
            lambda: [rl.from_bbox(b, imshape=(h, w)) for b, (h, w) in zip(boxes, hw)],
            lambda: [fr.frPyObjects(b, h, w) for b, (h, w) in zip(boxes, hw)],
            n_img,
            "per image (n, 4) array",
        )
    )
    for op, p, r, f, count, note in rows:
        table.add(f"{op} [{label}]", interleaved_medians([p, r, f], repeat), count, note)


def _polygon_rows(table: Table3, anns, sizes, repeat: int, label: str) -> None:
    """frPyObjects(polygons) and the merge(frPyObjects(...)) pattern, one call per annotation."""
    import rlemasklib as rl
    from pycocotools import mask as pm

    import fastmask.rle as fr

    n = len(anns)
    items = list(zip(anns, sizes))
    rows = [
        (
            "frPyObjects, polygons",
            lambda: [pm.frPyObjects(a, h, w) for a, (h, w) in items],
            lambda: [[rl.from_polygon(p, imshape=(h, w)) for p in a] for a, (h, w) in items],
            lambda: [fr.frPyObjects(a, h, w) for a, (h, w) in items],
            "per annotation (its polygon parts)",
        ),
        (
            "merge(frPyObjects(polygons))",
            lambda: [pm.merge(pm.frPyObjects(a, h, w)) for a, (h, w) in items],
            lambda: [rl.union([rl.from_polygon(p, imshape=(h, w)) for p in a]) for a, (h, w) in items],
            lambda: [fr.merge(fr.frPyObjects(a, h, w)) for a, (h, w) in items],
            "per annotation",
        ),
    ]
    for op, p, r, f, note in rows:
        table.add(f"{op} [{label}]", interleaved_medians([p, r, f], repeat), n, note)


def _batch_rows(table: Table3, per_image: list[list[dict]], anns, repeat: int) -> None:
    """Batch entry points vs the anchors' fastest equivalent (their per-call loop or list call)."""
    import rlemasklib as rl
    from pycocotools import mask as pm

    import fastmask.rle as fr
    from fastmask.raster import polygons_to_rles

    rles = [r for img in per_image for r in img]
    n = len(rles)
    stack_c = np.ascontiguousarray(pm.decode(rles).transpose(2, 0, 1))  # (n, h, w)
    values = np.arange(1, n + 1) % 250 + 1
    labelmaps = []
    for img in per_image:
        lm = np.zeros((H, W), np.uint8)
        for v, r in enumerate(img, 1):
            lm[pm.decode(r).astype(bool)] = v
        labelmaps.append(lm)
    n_lm_values = sum(len(np.unique(lm)) - 1 for lm in labelmaps)

    def rl_labelmap():
        for img in per_image:
            out = np.zeros((H, W), np.uint8)
            for v, r in enumerate(img, 1):
                out[rl.decode(r).astype(bool)] = v

    def pm_labelmap():
        for img in per_image:
            out = np.zeros((H, W), np.uint8)
            for v, r in enumerate(img, 1):
                out[pm.decode(r).astype(bool)] = v

    def fr_labelmap():
        for img in per_image:
            fr.decode_labelmap(img, range(1, len(img) + 1))

    def enc_lm(encode):
        def run():
            for lm in labelmaps:
                for v in np.unique(lm)[1:]:
                    encode(lm == v)

        return run

    rows = [
        (
            "decode many -> (n, h, w) stack",
            lambda: np.ascontiguousarray(pm.decode(rles).transpose(2, 0, 1)),
            lambda: np.stack([rl.decode(r) for r in rles]),
            lambda: fr.decode_stack(rles),
            n,
            "fastmask: decode_stack",
        ),
        ("decode many -> label map", pm_labelmap, rl_labelmap, fr_labelmap, n, "fastmask: decode_labelmap, per image"),
        (
            "encode a (n, h, w) stack",
            lambda: pm.encode(np.asfortranarray(stack_c.transpose(1, 2, 0))),
            lambda: rl.encode(stack_c, batch_first=True),
            lambda: fr.encode(stack_c.transpose(1, 2, 0)),
            n,
            "fastmask: encode of the (h, w, n) view",
        ),
        (
            "encode a label map",
            enc_lm(lambda m: pm.encode(np.asfortranarray(m.view(np.uint8)))),
            enc_lm(rl.encode),
            lambda: [fr.encode_labelmap(lm) for lm in labelmaps],
            n_lm_values,
            "fastmask: encode_labelmap; anchors: one mask per value",
        ),
        (
            "area of many",
            lambda: [pm.area(rles[i : i + 255]) for i in range(0, n, 255)],
            lambda: rl.area(rles),
            lambda: fr.area(rles),
            n,
            "one list call (pycocotools: 255 at a time, its uint8 limit)",
        ),
        ("bbox of many", lambda: pm.toBbox(rles), lambda: rl.to_bbox(rles), lambda: fr.toBbox(rles), n, "one list call"),
        (
            "iou matrix of many",
            lambda: pm.iou(rles[:300], rles[:300], [0] * len(rles[:300])),
            None,
            lambda: fr.iou(rles[:300], rles[:300], [0] * len(rles[:300])),
            min(n, 300) ** 2,
            "per pair, one call",
        ),
        (
            "polygons of many annotations -> RLEs",
            lambda: [pm.merge(pm.frPyObjects(a, H, W)) for a in anns],
            lambda: [rl.union([rl.from_polygon(p, imshape=(H, W)) for p in a]) for a in anns],
            lambda: polygons_to_rles(anns, H, W),
            len(anns),
            "fastmask: polygons_to_rles (one call); anchors: per-annotation loop",
        ),
    ]
    for op, p, r, f, count, note in rows:
        table.add(f"{op} [generated]", interleaved_medians([p, r, f], repeat), count, note)


def _floor_rows(table: Table3, per_image: list[list[dict]], repeat: int) -> None:
    """The bare memory work of decode / encode for one 640x480 mask, against fastmask's per-call time."""
    from pycocotools import mask as pm

    import fastmask.rle as fr

    rles = [r for img in per_image for r in img]
    masks = [pm.decode(r) for r in rles]
    n = len(rles)

    def alloc_fill():  # decode writes h*w bytes into fresh memory
        for _ in range(n):
            np.empty((W, H), np.uint8).fill(1)

    def read_all():  # encode reads h*w bytes at least once
        for m in masks:
            np.count_nonzero(m)

    def dec():
        for r in rles:
            fr.decode(r)

    def enc():
        for m in masks:
            fr.encode(m)

    nan = float("nan")
    (t_dec, t_alloc), (r_dec, _) = interleaved_medians([dec, alloc_fill], repeat)
    table.add("floor: allocate + write 640x480 bytes (np.empty + fill)", ([nan, nan, t_alloc], [nan, nan]), n, "decode's memory work")
    table.add("decode, one RLE per call", ([nan, nan, t_dec], [nan, nan]), n, f"{r_dec:.2f}x the floor")
    (t_enc, t_read), (r_enc, _) = interleaved_medians([enc, read_all], repeat)
    table.add("floor: read 640x480 bytes (np.count_nonzero)", ([nan, nan, t_read], [nan, nan]), n, "encode's memory work")
    table.add("encode, Fortran-ordered, one mask per call", ([nan, nan, t_enc], [nan, nan]), n, f"{r_enc:.2f}x the floor")


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


def run(quick: bool = False, startup: bool = True) -> None:
    from pycocotools import mask as pm

    n_images = 12 if quick else 24
    repeat = 5 if quick else 21
    images = coco_like_annotations(n_images)
    anns = [a for img in images for a in img]
    gen = [[pm.merge(pm.frPyObjects(a, H, W)) for a in img] for img in images]
    real = real_rles()
    real_anns, real_sizes = real_polygons()
    table = Table3(
        f"COCO RLE: pycocotools 2.0.11, rlemasklib, fastmask.rle (time per call; ratio = anchor time / fastmask time, "
        f"above 1 = fastmask faster). Generated: {len(anns)} COCO-like annotations on {n_images} {W}x{H} images; "
        f"real: {sum(map(len, real))} RLEs of {len(real)} images and {len(real_anns)} polygon annotations of the real COCO samples"
    )
    _per_call_rows(table, gen, repeat, "generated")
    _polygon_rows(table, anns, [(H, W)] * len(anns), repeat, "generated")
    _per_call_rows(table, real, repeat, "real")
    _polygon_rows(table, real_anns, real_sizes, repeat, "real")
    _batch_rows(table, gen, anns, repeat)
    _floor_rows(table, gen, repeat)
    table.print()

    if startup and not quick:
        print("\n## Start-up\n")
        print("| what | time |")
        print("|---|---:|")
        for what, t in _startup_times():
            print(f"| {what} | {fmt_time(t)} |")
