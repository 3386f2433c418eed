"""PNG mask decoding per mask: fastmask's decoder next to the inflate floor, Pillow, pyspng and OpenCV.

Generated semantic masks (19 classes, smooth blob regions: the argmax of 19 smooth random
fields, like a street scene's class map), 640x480 and 2048x1024, saved by Pillow (default
level) and by OpenCV (default level and filters), decoded from bytes in memory:

- ``inflate floor``: libdeflate alone on the same IDAT bytes, output size known (what no
  PNG decoder using it can beat);
- ``fastmask decode``: ``read_mask`` on the bytes (chunks + CRCs, inflate, the unfilter
  kernel, the ``MaskData``);
- ``Pillow``: ``np.asarray(Image.open(...))``; ``pyspng``: ``pyspng.load``;
  ``cv2.imdecode``: ``IMREAD_UNCHANGED``.

All decoders run interleaved in each round; each figure is the median over rounds of the
mean CPU time per mask of this thread (the machine is shared: CPU time moves less than the
wall clock when other processes compete for the cores, and ratios less than times). Every
call's output is dropped at once (the allocator reuses its memory). A second table times the inflate libraries
installed (libdeflate, isal, zlib-ng, zlib) on the same IDAT bytes. A third times the
coverage job per mask, before and after fusing its histogram into the decode:

- ``decode, then count``: ``read_mask`` then ``value_counts`` (two passes over the pixels);
- ``fused decode+count``: ``read_mask`` inside ``counting_values()`` (the histogram counted
  as the rows are unfiltered), its values and counts listed;
- ``coverage item, before`` / ``after``: ``CoverageJob.process`` on the same masks in a
  folder (read from the file, the counts, the report rows), with the fusion off / on.

A fourth does the same for ``validate`` (its one-call class scan run as the rows are
unfiltered) and ``evaluate`` (the prediction's joint histogram with the ground truth counted
as its rows are unfiltered), per item, with the fusion off / on, and with the decoders that
came before fastmask's (Pillow, pyspng). A fifth runs both jobs in the engine (what
``fastmask validate`` / ``evaluate`` do after parsing their arguments) at 640x480 with 1 and
2 workers and each decoder: masks/s (for evaluate, pairs/s) by the wall clock, medians of
interleaved rounds, whole runs and without the run's start-up.
"""
from __future__ import annotations

import io
import statistics
import time

import numpy as np

from benchmarks._timing import fmt_time


def semantic_mask(h: int, w: int, seed: int, classes: int = 19) -> np.ndarray:
    """A class map of smooth blobs: per pixel, the class whose smooth random field is largest."""
    import cv2

    rng = np.random.default_rng(seed)
    gh, gw = max(2, h // 96), max(2, w // 96)
    fields = [cv2.resize(rng.random((gh, gw), np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
              for _ in range(classes)]
    return np.argmax(np.stack(fields), axis=0).astype(np.uint8)


def _idat(data: bytes) -> bytes:
    pos, parts = 8, []
    while pos + 8 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == b"IDAT":
            parts.append(data[pos + 8:pos + 8 + n])
        pos += 12 + n
    return b"".join(parts)


def _encode(masks, encoder: str) -> list[bytes]:
    import cv2
    from PIL import Image

    out = []
    for m in masks:
        if encoder == "Pillow":
            bio = io.BytesIO()
            Image.fromarray(m).save(bio, "PNG")
            out.append(bio.getvalue())
        else:
            out.append(cv2.imencode(".png", m)[1].tobytes())
    return out


def _decoders(files: list[bytes], h: int, w: int) -> dict:
    import cv2
    from PIL import Image

    import fastmask.formats.png as png
    from fastmask.formats.maskpng import _inflate

    idats = [_idat(f) for f in files]
    size = h * (w + 1)
    fns = {"inflate floor": lambda i: _inflate(idats[i], size),
           "fastmask decode": lambda i: png.read_mask(files[i]),
           "Pillow": lambda i: np.asarray(Image.open(io.BytesIO(files[i]))),
           "cv2.imdecode": lambda i: cv2.imdecode(np.frombuffer(files[i], np.uint8), cv2.IMREAD_UNCHANGED)}
    try:
        import pyspng

        fns["pyspng"] = lambda i: pyspng.load(files[i])
    except ImportError:
        pass
    ref = fns["Pillow"](0)
    for name, fn in fns.items():  # every decoder reads the same mask (and is warmed up)
        if name != "inflate floor":
            got = fn(0)
            assert np.array_equal(getattr(got, "array", got), ref), name
    assert png.USE_MASKPNG and png.decode_mask_png(files[0], None) is not None  # fastmask's own path ran
    return fns


def _inflaters(size: int) -> dict:
    """The inflate libraries installed, each decompressing a zlib stream into ``size`` bytes."""
    import zlib

    fns = {"zlib": lambda d: zlib.decompress(d, bufsize=size)}
    try:
        import deflate

        fns["libdeflate"] = lambda d: deflate.zlib_decompress(d, size)
    except ImportError:
        pass
    try:
        from isal import isal_zlib

        fns["isal"] = lambda d: isal_zlib.decompress(d, bufsize=size)
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        fns["zlib-ng"] = lambda d: zlib_ng.decompress(d, bufsize=size)
    except ImportError:
        pass
    return fns


def _inflate_table(cases: list, rounds: int) -> None:
    """Per mask, each inflate library on the same IDAT bytes (interleaved rounds)."""
    print("\n## Inflate libraries on the same IDAT bytes, per mask (the decoder's choice)\n")
    names = list(_inflaters(1))
    print("| masks | saved by | " + " | ".join(names) + " | " + " | ".join(f"zlib / {n}" for n in names[1:]) + " |")
    print("|---|---|" + "---:|" * (2 * len(names) - 1))
    for label, encoder, idats, size in cases:
        fns = _inflaters(size)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.thread_time()
                for d in idats:
                    fn(d)
                times[name].append((time.thread_time() - t0) / len(idats))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {label} | {encoder} | " + " | ".join(fmt_time(med[n]) for n in names) + " | "
              + " | ".join(f"{med['zlib'] / med[n]:.2f}x" for n in names[1:]) + " |")


def _coverage_fns(files: list[bytes], folder) -> dict:
    """The coverage timings of the module docs on ``files`` (also written to ``folder``)."""
    import contextlib

    import fastmask.formats.png as png
    import fastmask.jobs.coverage as cov
    from fastmask.formats import open_dataset
    from fastmask.jobs.scan import value_counts

    for i, f in enumerate(files):
        (folder / f"m{i:04d}.png").write_bytes(f)
    ds = open_dataset(str(folder))
    rows = ds.manifest().to_pylist()
    job = cov.CoverageJob(ds)

    def fused(i):
        with png.counting_values():
            m = png.read_mask(files[i])
        v = np.flatnonzero(m.histogram)
        return v.tolist(), m.histogram[v].tolist()

    def item(i, on):
        cov.counting_values = png.counting_values if on else contextlib.nullcontext
        try:
            return job.process(rows[i])
        finally:
            cov.counting_values = png.counting_values

    fns = {"decode, then count": lambda i: value_counts(png.read_mask(files[i]).array),
           "fused decode+count": fused,
           "coverage item, before": lambda i: item(i, False),
           "coverage item, after": lambda i: item(i, True)}
    assert fns["decode, then count"](0) == fused(0)  # the same counts (and warmed up)
    before, after = fns["coverage item, before"](0), fns["coverage item, after"](0)
    assert before.fields == after.fields and before.rows == after.rows
    return fns


def _coverage_table(cases: list, rounds: int) -> None:
    """Per mask: coverage's decode + histogram, two passes vs fused (interleaved rounds)."""
    import tempfile
    from pathlib import Path

    print("\n## Coverage per mask: decode then count vs the fused decode+count\n")
    print("| masks | saved by | decode, then count | fused decode+count | coverage item, before "
          "| coverage item, after | count: before / fused | item: before / after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, encoder, files in cases:
        with tempfile.TemporaryDirectory() as tmp:
            fns = _coverage_fns(files, Path(tmp))
            n = len(files)
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    t0 = time.thread_time()
                    for i in range(n):
                        fn(i)
                    times[name].append((time.thread_time() - t0) / n)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {label} | {encoder} | " + " | ".join(fmt_time(med[k]) for k in fns) + " | "
              f"{med['decode, then count'] / med['fused decode+count']:.2f}x | "
              f"{med['coverage item, before'] / med['coverage item, after']:.2f}x |")


def _job_folders(root, masks: list, copies: int) -> tuple:
    """A ground-truth folder of ``masks`` saved by Pillow (each ``copies`` times under other
    names), a prediction folder of the same masks shifted by 3 px (a near miss), a label
    map of their 19 classes; returns (gt dataset, pred dataset, labelmap)."""
    from fastmask.formats import LabelMap, open_dataset

    gt, pred = root / "gt", root / "pred"
    gt.mkdir()
    pred.mkdir()
    files = _encode(masks, "Pillow")
    shifted = _encode([np.roll(m, 3, axis=1) for m in masks], "Pillow")
    for c in range(copies):
        for i, (f, p) in enumerate(zip(files, shifted)):
            (gt / f"m{c:02d}{i:04d}.png").write_bytes(f)
            (pred / f"m{c:02d}{i:04d}.png").write_bytes(p)
    labelmap = LabelMap.from_names([f"class{i}" for i in range(19)])
    return open_dataset(str(gt), layout="masks", labelmap=labelmap), open_dataset(str(pred), layout="masks"), labelmap


def _use_decoder(decoder: str) -> None:
    """Decode with ``decoder`` in this process and in the workers it spawns from now on."""
    import os

    import fastmask.formats.png as png

    os.environ["FASTMASK_PNG_DECODER"] = decoder  # read at import by each worker
    png.USE_PYSPNG = decoder in ("auto", "pyspng")
    png.USE_MASKPNG = decoder in ("auto", "fastmask")


def _job_decoders() -> list[str]:
    import fastmask.formats.png as png

    return ["pillow"] + (["pyspng"] if png._spng is not None else []) + ["fastmask"]


def _items_table(root, masks: list, rounds: int) -> None:
    """Per item: ``ValidateJob.process`` / ``EvaluateJob.process`` with each earlier decoder,
    with fastmask's decoder and the fusion off, and with the fusion on (interleaved rounds;
    CPU time of this thread, which other processes on a shared machine disturb less than
    the wall clock)."""
    import contextlib

    import fastmask.formats.png as png
    import fastmask.jobs.evaluate as ev
    import fastmask.jobs.validate as va

    gt, pred, labelmap = _job_folders(root, masks, 1)
    vjob = va.ValidateJob(gt)
    ejob = ev.EvaluateJob(gt, pred, num_classes=19)
    vrows = gt.manifest().to_pylist()
    erows = ejob.manifest().to_pylist()
    fused = va._fused_scan

    @contextlib.contextmanager
    def unfused(want, scan):  # the request the decoder never fills: the job scans after decoding
        yield png._Request(want, scan, once=True)

    def setting(decoder, fuse):
        _use_decoder(decoder)
        va._fused_scan = ev._fused_scan = fused if fuse else unfused

    cases = {f"{d}": (d, False) for d in _job_decoders() if d != "fastmask"}
    cases.update({"fastmask, unfused": ("fastmask", False), "fastmask, fused": ("fastmask", True)})
    ref = {}
    try:
        for name, (decoder, fuse) in cases.items():  # the same results every way (and warmed up)
            setting(decoder, fuse)
            got = ([(r.fields, r.rows) for r in map(vjob.process, vrows)],
                   [(r.fields, r.rows) for r in map(ejob.process, erows)])
            assert not ref or got == ref, name
            ref = got
        times = {(job, name): [] for job in ("validate", "evaluate") for name in cases}
        for _ in range(rounds):
            for name, (decoder, fuse) in cases.items():
                setting(decoder, fuse)
                for job, fn, rows in (("validate", vjob.process, vrows), ("evaluate", ejob.process, erows)):
                    t0 = time.thread_time()
                    for r in rows:
                        fn(r)
                    times[job, name].append((time.thread_time() - t0) / len(rows))
    finally:
        va._fused_scan = ev._fused_scan = fused
        _use_decoder("auto")
    med = {k: statistics.median(v) for k, v in times.items()}
    h, w = masks[0].shape
    print(f"\n## validate and evaluate per item, {len(vrows)} x {w}x{h} (Pillow-saved), fusion off / on, "
          "CPU time per item\n")
    print("| job | " + " | ".join(cases) + " | unfused / fused | "
          + " | ".join(f"{d} / fused" for d in cases if not d.startswith("fastmask")) + " |")
    print("|---|" + "---:|" * (2 * len(cases) - 1))
    for job in ("validate", "evaluate"):
        f = med[job, "fastmask, fused"]
        print(f"| {job} item | " + " | ".join(fmt_time(med[job, n]) for n in cases)
              + f" | {med[job, 'fastmask, unfused'] / f:.2f}x | "
              + " | ".join(f"{med[job, d] / f:.2f}x" for d in cases if not d.startswith("fastmask")) + " |")


def _engine_table(root, masks: list, copies: int, rounds: int) -> None:
    """masks/s of ``validate`` and pairs/s of ``evaluate`` in the engine, 1 and 2 workers,
    each decoder (interleaved rounds, medians): whole runs, and without the run's start-up
    (pool, imports, first kernel load: a one-item run's seconds, subtracted), the rate a
    run of millions sees."""
    import contextlib
    import io

    from fastmask.engine import run_job
    from fastmask.jobs.evaluate import EvaluateJob
    from fastmask.jobs.validate import ValidateJob, write_dataset_tables
    from fastmask.jobs.validate_summary import print_summary

    gt, pred, _ = _job_folders(root, masks, copies)

    def validate(workers, n=None):
        job = ValidateJob(gt)
        manifest = gt.manifest().slice(0, n)
        r = run_job(job, manifest, root / "v", workers=workers, quiet=True, overwrite=True)
        assert r.n_ok == manifest.num_rows, r.counts
        t = time.perf_counter()
        found, classes = write_dataset_tables(job, r.out_dir)
        with contextlib.redirect_stdout(io.StringIO()):
            print_summary(r, "masks", found, classes, "never")
        return manifest.num_rows, r.wall_seconds + time.perf_counter() - t

    def evaluate(workers, n=None):
        job = EvaluateJob(gt, pred, num_classes=19)
        manifest = job.manifest().slice(0, n)
        r = run_job(job, manifest, root / "e", workers=workers, quiet=True, overwrite=True)
        assert r.n_ok == manifest.num_rows, r.counts
        return manifest.num_rows, r.wall_seconds  # (the run's summary is the engine's finalize)

    decoders = _job_decoders()
    rates = {(j, d, wk, k): [] for j in ("validate", "evaluate") for d in decoders for wk in (1, 2)
             for k in ("run", "steady")}
    try:
        for _ in range(rounds):
            for wk in (1, 2):
                for d in decoders:
                    _use_decoder(d)
                    for job, fn in (("validate", validate), ("evaluate", evaluate)):
                        _, fixed = fn(wk, 1)
                        n, secs = fn(wk)
                        rates[job, d, wk, "run"].append(n / secs)
                        rates[job, d, wk, "steady"].append((n - 1) / max(secs - fixed, 1e-9))
    finally:
        _use_decoder("auto")
    n = len(masks) * copies
    h, w = masks[0].shape
    print(f"\n## validate and evaluate in the engine, {n} x {w}x{h} (Pillow-saved), masks/s (evaluate: pairs/s), "
          f"medians of {rounds} interleaved rounds\n")
    print("| job | workers | rate | " + " | ".join(decoders) + " | "
          + " | ".join(f"fastmask / {d}" for d in decoders if d != "fastmask") + " |")
    print("|---|---:|---|" + "---:|" * (2 * len(decoders) - 1))
    for job in ("validate", "evaluate"):
        for wk in (1, 2):
            for k, label in (("run", "whole run"), ("steady", "without start-up")):
                med = {d: statistics.median(rates[job, d, wk, k]) for d in decoders}
                print(f"| {job} | {wk} | {label} | " + " | ".join(f"{med[d]:,.0f}" for d in decoders) + " | "
                      + " | ".join(f"{med['fastmask'] / med[d]:.2f}x" for d in decoders if d != "fastmask")
                      + " |", flush=True)


def jobs(quick: bool = False) -> None:
    """The validate / evaluate tables alone (per item, then the engine)."""
    import tempfile
    from pathlib import Path

    masks = [semantic_mask(480, 640, seed) for seed in range(40 if quick else 100)]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "items").mkdir()
        _items_table(Path(tmp) / "items", masks, 5 if quick else 11)
        (Path(tmp) / "engine").mkdir()
        _engine_table(Path(tmp) / "engine", masks, 10 if quick else 40, 1 if quick else 3)


def run(quick: bool = False) -> None:
    from fastmask.formats.maskpng import INFLATE

    sizes = [(480, 640, 40 if quick else 100), (1024, 2048, 8 if quick else 24)]
    rounds = 5 if quick else 11
    print("\n## PNG mask decoding, per mask (medians of interleaved rounds)\n")
    print(f"inflate: {INFLATE}\n")
    print("| masks | saved by | KB/mask | inflate floor | fastmask decode | Pillow | pyspng | cv2.imdecode "
          "| fastmask / floor | Pillow / fastmask | pyspng / fastmask | cv2 / fastmask |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cases, coverage_cases = [], []
    for h, w, n in sizes:
        masks = [semantic_mask(h, w, seed) for seed in range(n)]
        for encoder in ("Pillow", "OpenCV"):
            files = _encode(masks, encoder)
            cases.append((f"{n} x {w}x{h}", encoder, [_idat(f) for f in files], h * (w + 1)))
            coverage_cases.append((f"{n} x {w}x{h}", encoder, files))
            fns = _decoders(files, h, w)
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    t0 = time.thread_time()
                    for i in range(n):
                        fn(i)
                    times[name].append((time.thread_time() - t0) / n)
            med = {k: statistics.median(v) for k, v in times.items()}
            ours = med["fastmask decode"]
            sp = med.get("pyspng")
            print(f"| {n} x {w}x{h} | {encoder} | {np.mean([len(f) for f in files]) / 1e3:.1f} "
                  f"| {fmt_time(med['inflate floor'])} | {fmt_time(ours)} | {fmt_time(med['Pillow'])} "
                  f"| {fmt_time(sp) if sp else 'n/a'} | {fmt_time(med['cv2.imdecode'])} "
                  f"| {ours / med['inflate floor']:.2f}x | {med['Pillow'] / ours:.2f}x "
                  f"| {f'{sp / ours:.2f}x' if sp else 'n/a'} | {med['cv2.imdecode'] / ours:.2f}x |")
    _inflate_table(cases, rounds)
    _coverage_table(coverage_cases, rounds)
    jobs(quick)
