"""`validate` throughput next to decoding alone and to the read-only `scan`, on the same files.

``decode only`` reads each file with the PNG decoder and nothing else; ``read`` is the
engine's read-only job over the dataset (the reader's path checks + decode); ``validate``
is everything ``fastmask validate`` does after parsing its arguments: the engine run, the
dataset-level rules over the report and the summary.

Generated semantic label masks (21 classes + ignore, overlapping blobs; the engine
benchmark's dataset in ``$FASTMASK_BENCH_DATA``, with realistic defects planted in 1% of
the files): 640x480 and 2048x1024, with 1 and 2 workers, decoding with Pillow, with
pyspng (when the ``fast`` extra is installed) and with fastmask's mask PNG decoder (the
default). Prints masks/s (medians of
interleaved rounds), the cost of validation over decoding, and the projection per 8 hours;
then the two-worker 640x480 runs at scale (the files ten times over: 200,000 items in the
default shards of 2,000, the start-up paid once). Target: validate at most 25% slower than
reading alone; 40 M 640x480 and 5 M 2048x1024 masks per 8 hours on 2 cores.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.bench_engine import DATA, ensure_dataset

from fastmask.engine.manifest import default_shard_size


def plant_defects(counts: dict[str, int]) -> dict[str, int]:
    """Plant a realistic defect in 1% of the masks (every 100th file), once; returns planted counts.

    Defects cycle through: an id outside the label map (77), a tiny island of another
    class, and an anti-aliased boundary (a blended value between two classes). The
    files stay valid PNGs, so decode-only and scan timings are unaffected.
    """
    import numpy as np
    from PIL import Image

    planted = {}
    for kind, n in counts.items():
        folder = DATA / kind
        marker = folder / f".defects-v1-{n}"
        idx = list(range(50, n, 100))
        planted[kind] = len(idx)
        if marker.exists():
            continue
        for k, i in enumerate(idx):
            path = folder / f"{i:06d}.png"
            m = np.array(Image.open(path))
            h, w = m.shape
            if k % 3 == 0:
                m[h // 2 : h // 2 + 4, w // 2 : w // 2 + 4] = 77
            elif k % 3 == 1:
                m[5:8, 5:8] = 20 if m[6, 6] != 20 else 19
            else:  # a 1-px blended band between two flat regions (classes 2 and 6 -> 4)
                m[: h // 2, :] = 2
                m[h // 2 :, :] = 6
                m[h // 2, :] = 4
            Image.fromarray(m, mode="L").save(path)
        marker.write_text("planted\n")
    return planted


def _run(job, manifest, out, workers):
    from fastmask.engine import run_job

    n = manifest.num_rows
    r = run_job(job, manifest, out, workers=workers, quiet=True, overwrite=True)
    assert r.n_ok == n, r.counts
    return n / r.wall_seconds


def _run_validate(job, manifest, out, workers):
    """masks/s of what ``fastmask validate`` does: the engine run, then the dataset-level
    pass (``class_never_seen``, ``coverage_outlier``: two reads of the report's parts) and
    the summary (its worst-items pass reads the ``items`` parts again; printed to nowhere)."""
    import contextlib
    import io
    import time

    from fastmask.engine import run_job
    from fastmask.jobs.validate import write_dataset_tables
    from fastmask.jobs.validate_summary import print_summary

    n = manifest.num_rows
    r = run_job(job, manifest, out, workers=workers, quiet=True, overwrite=True)
    assert r.n_ok == n, r.counts
    t = time.perf_counter()
    found, classes = write_dataset_tables(job, r.out_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        print_summary(r, "masks", found, classes, "never")
    return n / (r.wall_seconds + time.perf_counter() - t)


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _startup(job, manifest, out, workers) -> float:
    """Seconds of a run of one mask: the run's fixed cost (pool start, imports, first kernel load)."""
    from fastmask.engine import run_job

    r = run_job(job, manifest.slice(0, 1), out, workers=workers, quiet=True, overwrite=True)
    assert r.n_ok == 1, r.counts
    return r.wall_seconds


def _print_steady(steady: dict) -> None:
    """The multi-worker rows again without the per-run start-up: the per-mask rates a run of
    millions of masks sees (rate = masks / (run seconds - start-up seconds))."""
    if not steady:
        return
    print("\nWithout the run's start-up (the per-mask cost at scale; start-up measured on one-mask runs):\n")
    print("| masks | decoder | workers | start-up decode only / validate | decode only | validate "
          "| validate cost over decode | validate per 8 h |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (kind, label, workers), (n, w, h, dec, val, fixed) in steady.items():
        dec_s = n / (n / dec - fixed["dec"])
        val_s = n / (n / val - fixed["val"])
        print(f"| {n} x {w}x{h} | {label} | {workers} | {fixed['dec']:.2f} s / {fixed['val']:.2f} s "
              f"| {dec_s:,.0f} | {val_s:,.0f} | {dec_s / val_s - 1:+.0%} | {val_s * 8 * 3600 / 1e6:.1f} M |",
              flush=True)


def _use_decoder(decoder: str) -> None:
    """Decode with ``decoder`` in this process and in the workers it spawns from now on."""
    from fastmask.formats import png

    os.environ["FASTMASK_PNG_DECODER"] = decoder  # read at import by each worker
    png.USE_PYSPNG = decoder in ("auto", "pyspng")
    png.USE_MASKPNG = decoder in ("auto", "fastmask")


def _decoders() -> list[tuple[str, str]]:
    """(setting, label): Pillow, pyspng when the `fast` extra is there, and fastmask's own
    mask PNG decoder (the default)."""
    from fastmask.formats import png

    out = [("pillow", "Pillow")]
    if png._spng is not None:
        out.append(("pyspng", "pyspng (`fast`)"))
    out.append(("fastmask", "fastmask"))
    return out


def _flagged(out) -> int:
    import pyarrow.parquet as pq

    items = pq.read_table(out / "items", columns=["worst_severity"]).column("worst_severity").to_pylist()
    return sum(1 for s in items if s in ("error", "warning"))


def run(quick: bool = False) -> None:
    from benchmarks.bench_coverage import ReadJob
    from benchmarks.bench_engine import DecodeJob

    from fastmask.formats import LabelMap, open_dataset
    from fastmask.jobs.scan import ScanJob
    from fastmask.jobs.validate import ValidateJob

    counts = {"small": 2000, "large": 200} if quick else {"small": 20000, "large": 2000}
    # 640x480 is where validation is closest to its target: median of 3 rounds there, one
    # round of the (long, stable) 2048x1024 runs
    rounds = {"small": 1 if quick else 3, "large": 1}
    ensure_dataset(counts)
    planted = plant_defects(counts)
    labelmap = LabelMap.from_names([f"class{i}" for i in range(21)])
    tmp = Path(tempfile.mkdtemp(prefix="fastmask-bench-validate-"))
    before = os.environ.get("FASTMASK_PNG_DECODER")
    steady: dict[tuple, tuple] = {}
    print(f"\n## validate vs decode only and vs read, masks/s (engine runs, median of {rounds['small']} "
          f"interleaved rounds at 640x480, {rounds['large']} at 2048x1024; defects planted in 1%: {planted})\n")
    print("| masks | decoder | workers | decode only | read | scan | validate | validate cost over decode "
          "| over read | validate per 8 h |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for kind, n in counts.items():
            ds = open_dataset(DATA / kind, layout="masks", labelmap=labelmap)
            h, w = (480, 640) if kind == "small" else (1024, 2048)
            manifest = ds.manifest().slice(0, n)
            if kind == "small":
                ds_small, manifest_small = ds, manifest
            # the same files for the decode-only job (read_mask of each path, nothing else)
            paths = [str(DATA / kind / p) for p in manifest.column("mask_path").to_pylist()]
            decode_manifest = manifest.select(["item_id"]).append_column("path", [paths])
            for decoder, label in _decoders():
                _use_decoder(decoder)
                for workers in (1, 2):
                    rates: dict[str, list[float]] = {k: [] for k in ("dec", "read", "scan", "val")}
                    for _ in range(rounds[kind]):
                        rates["dec"].append(_run(DecodeJob(), decode_manifest, tmp / "dec", workers))
                        rates["read"].append(_run(ReadJob(ds), manifest, tmp / "read", workers))
                        rates["scan"].append(_run(ScanJob(ds), manifest, tmp / "scan", workers))
                        rates["val"].append(_run_validate(ValidateJob(ds), manifest, tmp / "val", workers))
                        flagged = _flagged(tmp / "val")
                        assert flagged >= planted[kind], (kind, flagged, planted[kind])
                    dec, read, scan, val = (_median(v) for v in rates.values())
                    print(f"| {n} x {w}x{h} | {label} | {workers} | {dec:,.0f} | {read:,.0f} | {scan:,.0f} "
                          f"| {val:,.0f} | {dec / val - 1:+.0%} | {read / val - 1:+.0%} "
                          f"| {val * 8 * 3600 / 1e6:.1f} M |", flush=True)
                    if workers > 1:
                        # the pool's start-up (spawn, imports, Numba's first kernel load) is paid
                        # once per run: measured on a one-mask run, it is what a run of millions
                        # does not pay per mask
                        fixed = {"dec": _median([_startup(DecodeJob(), decode_manifest, tmp / "dec", workers)
                                                 for _ in range(3)]),
                                 "val": _median([1 / _run_validate(ValidateJob(ds), manifest.slice(0, 1),
                                                                   tmp / "val", workers) for _ in range(3)])}
                        steady[(kind, label, workers)] = (n, w, h, dec, val, fixed)
        if not quick:
            _at_scale(ds_small, manifest_small, planted["small"], tmp)
    finally:
        _use_decoder(before or "auto")
        if before is None:
            os.environ.pop("FASTMASK_PNG_DECODER", None)
    _print_steady(steady)


#: copies of the 20,000 640x480 files in the run at scale
SCALE_COPIES = 10


def _at_scale(ds, manifest, planted: int, tmp: Path) -> None:
    """Two-worker runs over ten times the 640x480 files (200,000 items, the default shards
    of 2,000): what a long run sees, where the pool's start-up and the dataset-level pass
    are paid once for ten times the masks, with the shard size a large dataset gets. Each
    file is read ten times under distinct item ids (the decode-only job too), from the page
    cache like every other run here."""
    import pyarrow as pa
    from benchmarks.bench_engine import DecodeJob

    from fastmask.jobs.validate import ValidateJob

    k = SCALE_COPIES
    ids = manifest.column("item_id").to_pylist()
    masks = manifest.column("mask_path").to_pylist()
    big = pa.table({"item_id": [f"{c:02d}/{i}" for c in range(k) for i in ids], "mask_path": masks * k,
                    "image_path": pa.nulls(len(ids) * k, pa.string())})
    paths = [str(DATA / "small" / p) for p in masks] * k
    decode_big = pa.table({"item_id": big.column("item_id"), "path": paths})
    n = big.num_rows
    print(f"\nAt scale: {n:,} items ({k} copies of the 640x480 files, shards of "
          f"{default_shard_size(n):,}), two workers, one round:\n")
    print("| masks | decoder | workers | decode only | validate | validate cost over decode | validate per 8 h |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for decoder, label in _decoders():
        _use_decoder(decoder)
        dec = _run(DecodeJob(), decode_big, tmp / "dec", 2)
        val = _run_validate(ValidateJob(ds), big, tmp / "val", 2)
        flagged = _flagged(tmp / "val")
        assert flagged >= planted * k, (flagged, planted * k)
        print(f"| {n:,} x 640x480 | {label} | 2 | {dec:,.0f} | {val:,.0f} | {dec / val - 1:+.1%} "
              f"| {val * 8 * 3600 / 1e6:.1f} M |", flush=True)
