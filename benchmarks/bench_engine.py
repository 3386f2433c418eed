"""Engine overhead, scaling and memory.

* items/s of a no-op job (read + decode each mask, nothing else) run by the engine with
  1 and 2 workers, next to the same decode in a plain Pillow loop. Targets: engine
  overhead (1 worker vs plain loop) < 10 %, 2 workers >= 1.8x 1 worker.
* peak RSS of the driver and of the biggest worker for a trivial job over 10k vs 100k
  items: it must not grow with the number of items.

The dataset (20k 640x480 + 2k 2048x1024 label masks; quick mode 2k + 200) is written
once to ``$FASTMASK_BENCH_DATA`` (default /tmp/fastmask-bench-data) and reused.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from fastmask.engine import ItemResult, Job, default_shard_size, run_job

DATA = Path(os.environ.get("FASTMASK_BENCH_DATA", "/tmp/fastmask-bench-data"))
SIZES = {"small": (480, 640), "large": (1024, 2048)}


def _read_mask_function():
    """``fastmask.formats.png.read_mask`` once it exists, else Pillow + NumPy."""
    if importlib.util.find_spec("fastmask.formats.png") is not None:
        module = importlib.import_module("fastmask.formats.png")
        if hasattr(module, "read_mask"):
            return module.read_mask, "fastmask.formats.png.read_mask"
    return _pil_decode, "PIL.Image.open + np.asarray"


def _as_array(result):
    return getattr(result, "array", result)  # read_mask returns a MaskData


def _pil_decode(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


class DecodeJob(Job):
    """The no-op job: read and decode each mask, report its size."""

    name = "decode"
    item_schema = pa.schema([("height", pa.int32()), ("width", pa.int32())])

    def prepare(self):
        self._read, _ = _read_mask_function()

    def process(self, item):
        arr = _as_array(self._read(item["path"]))
        return ItemResult({"height": arr.shape[0], "width": arr.shape[1]})


# -- data --------------------------------------------------------------------------

def _write_masks(args):
    kind, start, stop = args
    from PIL import Image

    h, w = SIZES[kind]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    folder = DATA / kind
    for i in range(start, stop):
        rng = np.random.default_rng(zlib.crc32(f"{kind}/{i}".encode()))
        mask = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(3, 12)):  # overlapping blobs of random classes, like a label map
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(0.03, 0.3) * h, rng.uniform(0.03, 0.3) * w
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0
            mask[inside] = rng.integers(1, 21)
        mask[rng.integers(0, h, 50), rng.integers(0, w, 50)] = 255  # a few ignore pixels
        Image.fromarray(mask, mode="L").save(folder / f"{i:06d}.png")


def ensure_dataset(counts: dict[str, int]) -> pa.Table:
    """Write the masks that are missing; return the manifest (item_id, path)."""
    jobs = []
    for kind, n in counts.items():
        folder = DATA / kind
        folder.mkdir(parents=True, exist_ok=True)
        have = len(list(folder.glob("*.png")))
        if have < n:
            step = 250
            jobs += [(kind, s, min(n, s + step)) for s in range(have, n, step)]
    if jobs:
        print(f"writing masks to {DATA} (once)...", file=sys.stderr)
        with ProcessPoolExecutor(max_workers=2) as pool:
            list(pool.map(_write_masks, jobs))
    ids, paths = [], []
    for kind, n in counts.items():
        for i in range(n):
            ids.append(f"{kind}/{i:06d}")
            paths.append(str(DATA / kind / f"{i:06d}.png"))
    return pa.table({"item_id": ids, "path": paths})


# -- timing ------------------------------------------------------------------------

def _plain_loop(paths, read=None):
    read = read or _read_mask_function()[0]
    for p in paths:
        _as_array(read(p))


def _engine(manifest, out, workers, shard_size):
    r = run_job(DecodeJob(), manifest, out, workers=workers, shard_size=shard_size, quiet=True, overwrite=True)
    assert r.n_ok == manifest.num_rows, r.counts
    return r.wall_seconds


class MemoryProbeJob(Job):
    """Trivial job (a 200-byte row per item in a second table) whose shards report the
    worker's peak RSS (VmHWM), so the benchmark sees the workers' own memory."""

    name = "memory-probe"
    item_schema = pa.schema([("n", pa.int64())])
    tables = {"notes": pa.schema([("text", pa.string())])}

    def process(self, item):
        return ItemResult({"n": item["n"]}, {"notes": [{"text": "x" * 200}]})

    def reduce_shard(self, shard):
        return {"worker_hwm_kb": _proc_status("VmHWM")}

    def finalize(self, summaries):
        return {"worker_hwm_kb": max(s["worker_hwm_kb"] for s in summaries)}


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    try:  # Linux >= 4.0: resets VmHWM to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


_MEMORY_SCRIPT = """
import json, sys
from benchmarks.bench_engine import MemoryProbeJob, _proc_status, _reset_peak_rss
from fastmask.engine import run_job
from fastmask.engine.testing import toy_manifest
if __name__ == "__main__":
    n, out = int(sys.argv[1]), sys.argv[2]
    manifest = toy_manifest(n)
    _reset_peak_rss()  # building the manifest in Python lists is the caller's business
    before = _proc_status("VmRSS")
    r = run_job(MemoryProbeJob(), manifest, out, workers=2, shard_size=2000, quiet=True, overwrite=True)
    print(json.dumps({"driver_before_mb": before / 1024, "driver_peak_mb": _proc_status("VmHWM") / 1024,
                      "worker_mb": r.summary["worker_hwm_kb"] / 1024,
                      "manifest_mb": manifest.nbytes / 2**20, "rows_mb": n * 200 / 2**20,
                      "items_per_s": r.items_per_second}))
"""


def _memory(n: int, tmp: Path) -> dict:
    script = tmp / "mem.py"
    script.write_text(_MEMORY_SCRIPT)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, str(script), str(n), str(tmp / f"mem-{n}")],
                         capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(quick: bool = False) -> None:
    counts = {"small": 2000, "large": 200} if quick else {"small": 20_000, "large": 2_000}
    shard_size = None  # the engine's default: items/64 within [100, 2000]
    rounds = 3 if quick else 2
    manifest = ensure_dataset(counts)
    paths = manifest.column("path").to_pylist()
    n = len(paths)
    _, reader = _read_mask_function()
    tmp = Path(tempfile.mkdtemp(prefix="fastmask-bench-engine-"))
    try:
        _plain_loop(paths)  # page cache warm-up
        t_pil, t_plain, t_w1, t_w2 = [], [], [], []
        for _ in range(rounds):  # interleaved: each round sees the same machine load
            t0 = time.perf_counter()
            _plain_loop(paths, _pil_decode)
            t_pil.append(time.perf_counter() - t0)
            if reader != "PIL.Image.open + np.asarray":
                t0 = time.perf_counter()
                _plain_loop(paths)
                t_plain.append(time.perf_counter() - t0)
            else:
                t_plain.append(t_pil[-1])
            t_w1.append(_engine(manifest, tmp / "w1", 1, shard_size))
            t_w2.append(_engine(manifest, tmp / "w2", 2, shard_size))
        pil, plain, w1, w2 = (statistics.median(t) for t in (t_pil, t_plain, t_w1, t_w2))
        print(f"\n## engine: no-op job (decode only) over {n} masks "
              f"({counts['small']} x 640x480, {counts['large']} x 2048x1024), reader: {reader}\n")
        print(f"shard size {default_shard_size(n)} (default), {rounds} interleaved rounds, medians; "
              f"engine times are run_job wall times (startup, Parquet parts, run.json included)\n")
        print("| case | time | items/s | vs plain loop |")
        print("|---|---:|---:|---:|")
        print(f"| plain Pillow loop (1 core): Image.open + np.asarray | {pil:.2f} s | {n / pil:.0f} "
              f"| {plain / pil:.2f}x |")
        if reader != "PIL.Image.open + np.asarray":
            print(f"| plain loop of {reader} (1 core) | {plain:.2f} s | {n / plain:.0f} | 1.00x |")
        print(f"| engine, 1 worker (in-process) | {w1:.2f} s | {n / w1:.0f} | {plain / w1:.2f}x |")
        print(f"| engine, 2 worker processes | {w2:.2f} s | {n / w2:.0f} | {plain / w2:.2f}x |")
        overhead = (w1 / plain - 1) * 100
        print(f"\nengine overhead (1 worker vs plain loop): {overhead:+.1f} % (target < 10 %)")
        print(f"scaling 2 workers vs 1: {w1 / w2:.2f}x (target >= 1.8x); "
              f"2 workers vs plain loop: {plain / w2:.2f}x")

        sizes = (5_000, 50_000) if quick else (10_000, 100_000)
        mem = {k: _memory(k, tmp) for k in sizes}
        print("\n## engine: peak memory of a trivial job (200-byte row per item in a second table), "
              "2 workers, the same shard size (2000) for both, so only the dataset size changes\n")
        print("| items | driver RSS before run_job | driver peak during run_job | largest worker peak RSS "
              "| manifest (input) | rows written | items/s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for k, m in mem.items():
            print(f"| {k} | {m['driver_before_mb']:.0f} MB | {m['driver_peak_mb']:.0f} MB | {m['worker_mb']:.0f} MB "
                  f"| {m['manifest_mb']:.1f} MB | {m['rows_mb']:.1f} MB | {m['items_per_s']:.0f} |")
        a, b = mem[sizes[0]], mem[sizes[1]]
        grow = (b["driver_peak_mb"] - b["driver_before_mb"]) - (a["driver_peak_mb"] - a["driver_before_mb"])
        print(f"\ngrowth {sizes[0]} -> {sizes[1]} items: driver (peak - before) {grow:+.1f} MB, "
              f"worker peak {b['worker_mb'] - a['worker_mb']:+.1f} MB; rows written grew by "
              f"{b['rows_mb'] - a['rows_mb']:.0f} MB, the manifest (held by the caller) by "
              f"{b['manifest_mb'] - a['manifest_mb']:.1f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
