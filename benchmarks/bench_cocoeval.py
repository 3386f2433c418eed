"""A real client: pycocotools' ``COCOeval(iouType="segm")``, stock and with ``fastmask.rle`` as its mask module.

Ground truth: the real COCO samples in ``../shared/data/real/`` (polygons,
multi-part polygons, crowd RLEs), repeated to a few hundred images. Predictions:
every ground truth perturbed (shifted, eroded or dilated), some dropped, some
spurious blobs added, random scores; stored as compressed RLEs as detectors
write them. Both runs must give identical ``stats``; the table gives the time
of ``loadRes``, ``evaluate`` (with its ``_prepare`` and IoU parts apart) and
``accumulate``, medians of interleaved rounds; the speed-up is the median of the
per-round ratios.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import statistics
import time
import types

import numpy as np

from benchmarks._timing import fmt_time
from benchmarks.bench_rle import REAL


def _ground_truth(copies: int) -> dict:
    """The tinycoco instances (train + val) as one COCO dict, repeated ``copies`` times with fresh ids."""
    images, anns, cats = [], [], {}
    for name in ("instances_train2017.json", "instances_val2017.json"):
        d = json.loads((REAL / "super-gradients" / "tests" / "data" / "tinycoco" / "annotations" / name).read_text())
        cats.update({c["id"]: c for c in d["categories"]})
        images += d["images"]
        anns += [a for a in d["annotations"] if a.get("segmentation")]
    out_images, out_anns = [], []
    for k in range(copies):
        remap = {}
        for im in images:
            remap[im["id"]] = len(out_images) + 1
            out_images.append(dict(im, id=len(out_images) + 1))
        for a in anns:
            out_anns.append(dict(copy.deepcopy(a), id=len(out_anns) + 1, image_id=remap[a["image_id"]]))
    return {"images": out_images, "annotations": out_anns, "categories": list(cats.values())}


def _predictions(gt, seed: int = 0) -> list[dict]:
    """Perturbed ground truths + spurious blobs, as compressed-RLE results with random scores."""
    from pycocotools import mask as pm
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    cat_ids = sorted(gt.getCatIds())
    results = []
    for img_id in gt.getImgIds():
        info = gt.imgs[img_id]
        h, w = info["height"], info["width"]
        for a in gt.loadAnns(gt.getAnnIds(imgIds=img_id)):
            if rng.random() < 0.1:  # missed detection
                continue
            m = gt.annToMask(a)
            dy, dx = rng.integers(-4, 5, 2)
            m = np.roll(m, (dy, dx), (0, 1))
            op = rng.integers(0, 3)
            if op == 1:
                m = ndimage.binary_erosion(m, iterations=int(rng.integers(1, 3))).astype(np.uint8)
            elif op == 2:
                m = ndimage.binary_dilation(m, iterations=int(rng.integers(1, 3))).astype(np.uint8)
            results.append((img_id, a["category_id"], m))
        for _ in range(int(rng.integers(0, 3))):  # spurious detections
            m = np.zeros((h, w), np.uint8)
            y, x = rng.integers(0, h), rng.integers(0, w)
            m[y : y + rng.integers(5, 80), x : x + rng.integers(5, 80)] = 1
            results.append((img_id, int(rng.choice(cat_ids)), m))
    out = []
    for img_id, cat, m in results:
        rle = pm.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"image_id": img_id, "category_id": cat, "segmentation": rle, "score": float(rng.random())})
    return out


class _Timed:
    """Wraps a bound method and adds up the time spent in it."""

    def __init__(self, fn):
        self.fn = fn
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def _run_once(gt_dict: dict, results: list[dict], mask_module) -> tuple[dict[str, float], np.ndarray]:
    """One full COCOeval with ``mask_module`` as pycocotools' maskUtils; step times and stats."""
    import pycocotools.coco as coco_mod
    import pycocotools.cocoeval as eval_mod

    saved = coco_mod.maskUtils, eval_mod.maskUtils
    # the module's functions, with the time inside iou() added up apart
    proxy = types.SimpleNamespace(**{f: getattr(mask_module, f) for f in ("encode", "decode", "area", "toBbox", "merge", "frPyObjects")})
    mask_iou = proxy.iou = _Timed(mask_module.iou)
    coco_mod.maskUtils = eval_mod.maskUtils = proxy
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = coco_mod.COCO()
            gt.dataset = copy.deepcopy(gt_dict)
            gt.createIndex()
            t0 = time.perf_counter()
            dt = gt.loadRes(copy.deepcopy(results))
            t_load = time.perf_counter() - t0
            E = eval_mod.COCOeval(gt, dt, iouType="segm")
            prepare = E._prepare = _Timed(E._prepare)
            iou = E.computeIoU = _Timed(E.computeIoU)
            t0 = time.perf_counter()
            E.evaluate()
            t_eval = time.perf_counter() - t0
            t0 = time.perf_counter()
            E.accumulate()
            t_acc = time.perf_counter() - t0
            E.summarize()
    finally:
        coco_mod.maskUtils, eval_mod.maskUtils = saved
    times = {
        "loadRes (area + toBbox per result)": t_load,
        "evaluate": t_eval,
        "  of which _prepare (annToRLE)": prepare.seconds,
        "  of which computeIoU": iou.seconds,
        "    of which the mask module's iou()": mask_iou.seconds,
        "accumulate": t_acc,
    }
    return times, np.asarray(E.stats)


def run(quick: bool = False) -> None:
    from pycocotools import mask as pm
    from pycocotools.coco import COCO

    import fastmask.rle as fr

    copies = 2 if quick else 8
    repeat = 1 if quick else 5
    gt_dict = _ground_truth(copies)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_dict)
        gt.createIndex()
    results = _predictions(gt)
    _run_once(gt_dict, results, fr)  # warm-up (Numba cache load)
    stock, ours = [], []
    for _ in range(repeat):
        t_stock, s_stock = _run_once(gt_dict, results, pm)
        t_ours, s_ours = _run_once(gt_dict, results, fr)
        if not np.array_equal(s_stock, s_ours):
            raise AssertionError(f"COCOeval stats differ:\nstock    {s_stock}\nfastmask {s_ours}")
        stock.append(t_stock)
        ours.append(t_ours)
    print(
        f"\n## COCOeval(iouType='segm'): stock pycocotools 2.0.11 vs its mask module replaced by fastmask.rle "
        f"({len(gt_dict['images'])} images, {len(gt_dict['annotations'])} ground truths, {len(results)} detections; "
        f"identical stats: AP {s_ours[0]:.4f}; medians of {repeat} interleaved rounds)\n"
    )
    print("| step | stock | with fastmask.rle | speed-up |")
    print("|---|---:|---:|---:|")
    for step in stock[0]:
        a = statistics.median(t[step] for t in stock)
        b = statistics.median(t[step] for t in ours)
        ratio = statistics.median(x[step] / y[step] for x, y in zip(stock, ours))  # per round: same load
        print(f"| {step} | {fmt_time(a)} | {fmt_time(b)} | {ratio:.2f}x |")
