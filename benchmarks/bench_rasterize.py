"""``fastmask rasterize`` against a plain pycocotools ``annToMask`` + Pillow loop.

Data: a generated COCO instances file with COCO-like sizes (640x480-ish images, about 7
annotations per image, star-shaped polygons of 8..40 vertices with log-uniform radii,
3% multi-part, 1% crowd as uncompressed RLE, 80 category ids in 1..90). Full size =
100k images / 700k annotations (``--quick``: 2k / 14k). Written once under
``$FASTMASK_BENCH_DATA`` (default /tmp/fastmask-bench-data)/rasterize/ and reused; the
Arrow cache of the JSON is built once and timed separately.

Measured:

* paired (interleaved rounds, medians) on the same subset of images: fastmask's engine
  with 1 worker writing semantic PNGs, against the pycocotools loop (``frPyObjects`` +
  ``merge`` + ``decode`` per annotation, painted into a class map in file order, crowd
  -> 255, ``Image.save``) -- end to end, from the parsed annotations to files on disk;
* the whole dataset rasterized to semantic PNGs and to RLE Parquet with 1 and 2 workers
  (each in a child process: images/s; peak RSS (VmHWM) of the driver and of the
  biggest worker process, polled);
* the projected time for COCO train2017 (118,287 images, 860,001 annotations).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("FASTMASK_BENCH_DATA", "/tmp/fastmask-bench-data")) / "rasterize"
TRAIN2017_IMAGES = 118_287
TRAIN2017_ANNOTATIONS = 860_001
SIZES = [(480, 640), (640, 480), (427, 640), (640, 427), (480, 640), (375, 500), (512, 640), (424, 640)]


def _category_ids() -> list[int]:
    missing = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}  # COCO's gaps
    return [i for i in range(1, 91) if i not in missing]


def _polygon(rng, cx, cy, r, h, w):
    k = int(rng.integers(8, 41))
    t = np.sort(rng.uniform(0, 2 * np.pi, k))
    rr = r * rng.uniform(0.55, 1.0, k)
    x = np.clip(cx + rr * np.cos(t), 0, w)
    y = np.clip(cy + rr * np.sin(t), 0, h)
    return np.round(np.c_[x, y].ravel(), 2).tolist()


def generate(n_images: int, seed: int = 0) -> Path:
    """Write (once) and return the generated COCO file with ``n_images`` images (~7 annotations each)."""
    from fastmask import rle as fr

    path = DATA / f"instances_gen{n_images}.json"
    if path.is_file():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cats = _category_ids()
    tmp = path.with_suffix(".tmp")
    n_ann = 0
    with open(tmp, "w") as f:
        f.write('{"info": {"description": "fastmask benchmark"}, "images": [')
        sizes = [SIZES[int(i)] for i in rng.integers(0, len(SIZES), n_images)]
        f.write(",".join(json.dumps({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "height": h, "width": w})
                         for i, (h, w) in enumerate(sizes)))
        f.write('], "annotations": [')
        first = True
        for i, (h, w) in enumerate(sizes):
            for _ in range(int(rng.poisson(7.0))):
                n_ann += 1
                r = float(np.exp(rng.uniform(np.log(4), np.log(min(h, w) / 2))))
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                crowd = rng.random() < 0.01
                if crowd:
                    m = np.zeros((h, w), np.uint8)
                    m[int(max(cy - r, 0)):int(cy + r), int(max(cx - r, 0)):int(cx + r)] = 1
                    c, _, _, _ = fr.counts_of(fr.encode(m))
                    seg = {"size": [h, w], "counts": c.tolist()}
                else:
                    seg = [_polygon(rng, cx, cy, r, h, w)]
                    if rng.random() < 0.03:
                        seg.append(_polygon(rng, rng.uniform(0, w), rng.uniform(0, h), r / 2, h, w))
                ann = {"id": n_ann, "image_id": i + 1, "category_id": cats[int(rng.integers(0, len(cats)))],
                       "iscrowd": int(crowd), "area": float(np.pi * r * r),
                       "bbox": [max(cx - r, 0), max(cy - r, 0), 2 * r, 2 * r], "segmentation": seg}
                f.write(("" if first else ",") + json.dumps(ann))
                first = False
        f.write('], "categories": ' + json.dumps([{"id": c, "name": f"class{c}", "supercategory": "x"} for c in cats])
                + "}")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- the anchor


def pycocotools_loop(images, anns_by_image, out_dir: Path) -> None:
    """What people write today: annToMask per annotation, paint in file order, save with Pillow."""
    from PIL import Image
    from pycocotools import mask as pm

    for img in images:
        h, w = img["height"], img["width"]
        cmap = np.zeros((h, w), np.uint8)
        for a in anns_by_image.get(img["id"], ()):
            seg = a["segmentation"]
            if isinstance(seg, list):
                rle = pm.merge(pm.frPyObjects(seg, h, w))
            elif isinstance(seg["counts"], list):
                rle = pm.frPyObjects(seg, h, w)
            else:
                rle = seg
            m = pm.decode(rle)
            cmap[m > 0] = 255 if a["iscrowd"] else a["category_id"]
        Image.fromarray(cmap).save(out_dir / (img["file_name"].rsplit(".", 1)[0] + ".png"))


def pycocotools_rle_loop(images, anns_by_image) -> list:
    """The RLE anchor: one compressed RLE per annotation (frPyObjects + merge), no file."""
    from pycocotools import mask as pm

    out = []
    for img in images:
        h, w = img["height"], img["width"]
        for a in anns_by_image.get(img["id"], ()):
            seg = a["segmentation"]
            rle = pm.merge(pm.frPyObjects(seg, h, w)) if isinstance(seg, list) else pm.frPyObjects(seg, h, w)
            out.append(rle["counts"].decode())
    return out


# --------------------------------------------------------------------------- child runs


def _hwm_kb(pid="self") -> int:
    """Peak resident set (VmHWM, kB) of a live process; unlike ru_maxrss it is not inherited across exec."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _WorkerWatch:
    """Polls the peak RSS of this process's children (the engine's worker processes)."""

    def __init__(self, period: float = 0.25):
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._period = period
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        ppid = f.read().rsplit(")", 1)[1].split()[1]
                except (OSError, IndexError):
                    continue
                if ppid == me:
                    self.peak = max(self.peak, _hwm_kb(pid))
            self._stop.wait(self._period)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _child(json_path: str, out: str, kind: str, workers: int, limit: int) -> None:
    """One measured run in a fresh process: prints a JSON line with timings and peak RSS."""
    from fastmask.engine import run_job
    from fastmask.formats import open_dataset
    from fastmask.jobs.rasterize import RasterizeJob

    ds = open_dataset(json_path)
    t0 = time.perf_counter()
    ds.prepare()
    manifest = ds.manifest()
    t_cache = time.perf_counter() - t0
    if limit:
        manifest = manifest.slice(0, limit)
    job = RasterizeJob(ds, out, kind=kind)
    watch = _WorkerWatch()
    t0 = time.perf_counter()
    res = run_job(job, manifest, out, workers=workers, quiet=True, overwrite=True)
    wall = time.perf_counter() - t0
    worker_kb = watch.stop()
    print(json.dumps({"wall": wall, "cache": t_cache, "images": res.n_items, "ok": res.n_ok,
                      "annotations": res.summary.get("annotations"), "driver_kb": _hwm_kb(),
                      "worker_kb": worker_kb}))


def _run_child(json_path: Path, out: Path, kind: str, workers: int, limit: int = 0) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_rasterize", "--child", str(json_path), str(out), kind,
           str(workers), str(limit)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.png"))


def run(quick: bool = False, n_images: int | None = None) -> dict:
    from fastmask.engine import run_job
    from fastmask.formats import open_dataset
    from fastmask.jobs.rasterize import RasterizeJob

    n = n_images or (2_000 if quick else 100_000)
    t0 = time.perf_counter()
    path = generate(n)
    gen_s = time.perf_counter() - t0
    print(f"\n## rasterize: {n:,} generated images ({path}, {path.stat().st_size / 1e6:.0f} MB"
          f"{f', generated in {gen_s:.0f} s' if gen_s > 1 else ''})\n")
    work = Path(tempfile.mkdtemp(prefix="fm-bench-rasterize-"))
    try:
        # ---- paired rounds on a subset: ours (engine, 1 worker, in this process) vs pycocotools + Pillow
        subset = 200 if quick else 500
        t0 = time.perf_counter()
        with open(path) as f:
            data = json.load(f)  # what COCO(path) does first; its share per image is reported apart
        load_per_image = (time.perf_counter() - t0) / n
        images = data["images"][:subset]
        keep = {i["id"] for i in images}
        by_img: dict[int, list] = {}
        for a in data["annotations"]:
            if a["image_id"] in keep:
                by_img.setdefault(a["image_id"], []).append(a)
        n_sub_ann = sum(len(v) for v in by_img.values())
        del data
        ds = open_dataset(str(path))
        cache_dir = work / "cache"
        t0 = time.perf_counter()
        ds.prepare(cache_dir=str(cache_dir))  # timed: a fresh cache, as on a first run over a new file
        cache = time.perf_counter() - t0
        ds = open_dataset(str(path))
        ds.prepare()  # the shared cache (reused by the child runs)
        manifest = ds.manifest().slice(0, subset)
        ours_dir, theirs_dir = work / "ours", work / "theirs"
        theirs_dir.mkdir()

        def ours():
            run_job(RasterizeJob(ds, ours_dir, kind="semantic"), manifest, ours_dir, workers=1, quiet=True,
                    overwrite=True)

        def theirs():
            pycocotools_loop(images, by_img, theirs_dir)

        rounds = 3 if quick else 5
        ours()
        theirs()  # warm-up (Numba cache, page cache)
        to, tt = [], []
        for k in range(rounds):
            for first, second, a, b in ((ours, theirs, to, tt), (theirs, ours, tt, to))[k % 2: k % 2 + 1]:
                t = time.perf_counter()
                first()
                a.append(time.perf_counter() - t)
                t = time.perf_counter()
                second()
                b.append(time.perf_counter() - t)
        mo, mt = statistics.median(to), statistics.median(tt)
        # same pixels?
        same = all(np.array_equal(np.asarray(__import__("PIL.Image").Image.open(p)),
                                  np.asarray(__import__("PIL.Image").Image.open(ours_dir / "masks" / p.name)))
                   for p in sorted(theirs_dir.glob("*.png"))[:50])
        # RLE: ours = engine rle kind, theirs = frPyObjects + merge per annotation (no file)
        rle_dir = work / "ours_rle"

        def ours_rle():
            run_job(RasterizeJob(ds, rle_dir, kind="rle"), manifest, rle_dir, workers=1, quiet=True, overwrite=True)

        ro, rt = [], []
        ours_rle()
        pycocotools_rle_loop(images, by_img)
        for _ in range(rounds):
            t = time.perf_counter()
            ours_rle()
            ro.append(time.perf_counter() - t)
            t = time.perf_counter()
            pycocotools_rle_loop(images, by_img)
            rt.append(time.perf_counter() - t)
        mro, mrt = statistics.median(ro), statistics.median(rt)
        size_ours = _du(ours_dir / "masks") / subset
        size_theirs = _du(theirs_dir) / subset
        print(f"paired, {subset} images / {n_sub_ann} annotations, medians of {rounds} interleaved rounds, 1 process:\n")
        print("| output | fastmask (engine, 1 worker) | pycocotools loop | speed-up |")
        print("|---|---:|---:|---:|")
        print(f"| semantic PNGs | {subset / mo:,.0f} images/s | {subset / mt:,.0f} images/s | {mt / mo:.1f}x |")
        print(f"| RLE (Parquet / in memory) | {subset / mro:,.0f} images/s | {subset / mrt:,.0f} images/s "
              f"| {mrt / mro:.1f}x |")
        print(f"\nthe pycocotools loops start from parsed JSON; json.load of the file costs "
              f"{load_per_image * 1e3:.2f} ms per image more (fastmask's per-image JSON parse is inside its time)")
        print(f"\nidentical PNG pixels on the first 50 images: {same}; PNG bytes per image: fastmask "
              f"{size_ours / 1e3:.1f} kB, Pillow default {size_theirs / 1e3:.1f} kB")

        # ---- whole dataset, child processes, 1 and 2 workers
        print(f"\nwhole dataset ({n:,} images), one child process per run:\n")
        print("| output | workers | wall | images/s | projected train2017 | peak RSS driver / worker |")
        print("|---|---:|---:|---:|---:|---:|")
        results = {"paired_png": mt / mo, "paired_rle": mrt / mro}
        for kind in ("semantic", "rle"):
            for workers in (1, 2):
                out = work / f"full_{kind}_{workers}"
                r = _run_child(path, out, kind, workers)
                ips = r["images"] / r["wall"]
                ann_per_img = (r["annotations"] or 0) / max(r["images"], 1)
                # projected: train2017 has 7.27 annotations per image; scale by annotations when they differ
                scale = (TRAIN2017_ANNOTATIONS / TRAIN2017_IMAGES) / ann_per_img if ann_per_img else 1.0
                proj = TRAIN2017_IMAGES / ips * scale
                print(f"| {kind} | {workers} | {r['wall']:.1f} s | {ips:,.0f} | {proj / 60:.1f} min "
                      f"| {r['driver_kb'] / 1024:.0f} / {r['worker_kb'] / 1024:.0f} MB |")
                results[f"{kind}_{workers}"] = ips
                shutil.rmtree(out, ignore_errors=True)
        theirs_ips = subset / mt
        print(f"\nJSON -> Arrow cache (once per file, before the first run): {cache:.1f} s for {n:,} images "
              f"(train2017 projected: {cache * TRAIN2017_IMAGES / n:.0f} s)")
        print(f"pycocotools loop projected for train2017 (1 process): {TRAIN2017_IMAGES / theirs_ips / 60:.1f} min; "
              f"fastmask vs the pycocotools loop (whole-dataset runs vs the paired loop figure): "
              f"1 worker {results['semantic_1'] / theirs_ips:.1f}x, 2 workers {results['semantic_2'] / theirs_ips:.1f}x; "
              f"paired, same rounds: {mt / mo:.1f}x (target >= 5x)")
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        import argparse

        ap = argparse.ArgumentParser()
        ap.add_argument("--quick", action="store_true")
        ap.add_argument("--images", type=int, default=None)
        a = ap.parse_args()
        run(quick=a.quick, n_images=a.images)
