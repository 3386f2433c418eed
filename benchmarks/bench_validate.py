"""`validate` throughput next to decoding alone and to the read-only `scan`, on the same files.

Generated semantic label masks (21 classes + ignore, overlapping blobs; the engine
benchmark's dataset in ``$FASTMASK_BENCH_DATA``): 640x480 and 2048x1024, with 1 and 2
workers. Prints masks/s, the cost of validation over decoding, and the projection per
8 hours. Target: validate at most 25% slower than scan; 40 M 640x480 and 5 M 2048x1024
masks per 8 hours on 2 cores.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.bench_engine import DATA, ensure_dataset


def _run(job, manifest, out, workers):
    from fastmask.engine import run_job

    n = manifest.num_rows
    r = run_job(job, manifest, out, workers=workers, quiet=True, overwrite=True)
    assert r.n_ok == n, r.counts
    return n / r.wall_seconds


def run(quick: bool = False) -> None:
    from benchmarks.bench_engine import DecodeJob

    from fastmask.formats import LabelMap, open_dataset
    from fastmask.jobs.scan import ScanJob
    from fastmask.jobs.validate import ValidateJob

    counts = {"small": 2000, "large": 200} if quick else {"small": 20000, "large": 2000}
    ensure_dataset(counts)
    labelmap = LabelMap.from_names([f"class{i}" for i in range(21)])
    tmp = Path(tempfile.mkdtemp(prefix="fastmask-bench-validate-"))
    print("\n## validate vs decode only and vs scan, masks/s (engine runs)\n")
    print("| masks | workers | decode only | scan | validate | validate cost over decode | over scan | validate per 8 h |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, n in counts.items():
        ds = open_dataset(DATA / kind, layout="masks", labelmap=labelmap)
        h, w = (480, 640) if kind == "small" else (1024, 2048)
        manifest = ds.manifest().slice(0, n)
        # the same files for the decode-only job (read_mask of each path, nothing else)
        paths = [str(DATA / kind / p) for p in manifest.column("mask_path").to_pylist()]
        decode_manifest = manifest.select(["item_id"]).append_column("path", [paths])
        for workers in (1, 2):
            dec = _run(DecodeJob(), decode_manifest, tmp / f"dec-{kind}-{workers}", workers)
            scan = _run(ScanJob(ds), manifest, tmp / f"scan-{kind}-{workers}", workers)
            val = _run(ValidateJob(ds), manifest, tmp / f"val-{kind}-{workers}", workers)
            print(f"| {n} x {w}x{h} | {workers} | {dec:,.0f} | {scan:,.0f} | {val:,.0f} | {dec / val - 1:+.0%} "
                  f"| {scan / val - 1:+.0%} | {val * 8 * 3600 / 1e6:.1f} M |")
