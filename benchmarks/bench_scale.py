"""Scale run: N small generated masks validated with 2 workers; wall time, masks/s, peak memory.

``python -m benchmarks.bench_scale generate DIR --n N`` writes ``DIR/masks/KKKK/NNNNNNN.png``
(256x256 grey 21-class label masks, 1,000 per folder, ``DIR/class_names.txt``) and
``DIR/planted.json``: a realistic defect in every 200th file (0.5%), cycling through an id
outside the label map (``unexpected_value``), a tiny island (``tiny_island``), an
anti-aliased band (``antialias_suspect``), a truncated download (error ``truncated``) and
an empty file (error ``zero_bytes``). Clean masks are blocks aligned to a 16-px grid, so
they hold no island, no sliver and no blend: every finding is a planted one.

``python -m benchmarks.bench_scale measure DIR OUT --workers 2`` runs ``fastmask validate
DIR --out OUT --workers 2`` as a child process, samples the RSS of the driver and of every
worker process (psutil, every 0.5 s), then checks the report: one ``items`` row per file,
every planted defect found, no finding on a clean mask. Prints and writes ``OUT.json``.

``python -m benchmarks scale [--quick]`` does both for 20,000 (2,000 with --quick) masks in
a temporary folder. ``scripts/scale_run.sh`` runs the 100k and the 1M runs.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SIZE = 256
PER_FOLDER = 1000
DEFECT_EVERY = 200  # 0.5 %
N_CLASSES = 21
DEFECTS = ("unexpected_value", "tiny_island", "antialias_suspect", "truncated", "zero_bytes")
#: what must show for each planted defect: ("rule", name) = a finding, ("error", code) = the items row
EXPECTED = {
    "unexpected_value": ("rule", "unexpected_value"),
    "tiny_island": ("rule", "tiny_island"),
    "antialias_suspect": ("rule", "antialias_suspect"),
    "truncated": ("error", "truncated"),
    "zero_bytes": ("error", "zero_bytes"),
}


def _png(arr) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _clean_mask(rng):
    """A 256x256 label mask of 16-px-aligned rectangles (classes 0..20): no island, no blend."""
    import numpy as np

    m = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(2, 9))):
        y0, x0 = (int(v) * 16 for v in rng.integers(0, SIZE // 16 - 1, 2))
        h, w = (int(v) * 16 for v in rng.integers(2, 8, 2))
        m[y0:y0 + h, x0:x0 + w] = int(rng.integers(1, N_CLASSES))
    return m


def _defect_bytes(kind: str, base, clean_png: bytes) -> bytes:
    m = base.copy()
    if kind == "unexpected_value":
        m[100:104, 100:104] = 77
    elif kind == "tiny_island":
        # a 3x3 island of a class that differs from every pixel around it
        around = set(m[3:10, 3:10].ravel().tolist())
        m[5:8, 5:8] = next(c for c in range(1, N_CLASSES) if c not in around)
    elif kind == "antialias_suspect":  # a 1-px blended band between classes 2 and 6 (-> 4)
        m[: SIZE // 2] = 2
        m[SIZE // 2:] = 6
        m[SIZE // 2] = 4
    elif kind == "truncated":
        return clean_png[: len(clean_png) // 2]
    elif kind == "zero_bytes":
        return b""
    return _png(m)


def item_id(i: int) -> str:
    return f"{i // PER_FOLDER:04d}/{i:07d}"


def generate(root: str | os.PathLike, n: int, *, seed: int = 0, pool: int = 256) -> dict:
    """Write ``n`` masks under ``root/masks`` (+ label map, planted.json); returns the planted map.

    Reuses an existing complete dataset of the same ``n`` and ``seed``.
    """
    import numpy as np

    root = Path(root)
    done = root / "generated.json"
    if done.is_file():
        meta = json.loads(done.read_text())
        if meta.get("n") == n and meta.get("seed") == seed:
            return json.loads((root / "planted.json").read_text())
    rng = np.random.default_rng(seed)
    bases = [_clean_mask(rng) for _ in range(pool)]
    pngs = [_png(b) for b in bases]
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "class_names.txt").write_text("".join(["background\n"] + [f"class{c}\n" for c in range(1, N_CLASSES)]))
    planted: dict[str, str] = {}
    t0 = time.perf_counter()
    for i in range(n):
        if i % PER_FOLDER == 0:
            folder = root / "masks" / f"{i // PER_FOLDER:04d}"
            folder.mkdir(exist_ok=True)
        k = int(rng.integers(pool)) if i % 7 else (i * 31) % pool
        data = pngs[k]
        if i % DEFECT_EVERY == DEFECT_EVERY // 2:
            kind = DEFECTS[(i // DEFECT_EVERY) % len(DEFECTS)]
            data = _defect_bytes(kind, bases[k], pngs[k])
            planted[item_id(i)] = kind
        with open(folder / f"{i:07d}.png", "wb") as f:
            f.write(data)
        if i and i % 100_000 == 0:
            print(f"  generated {i:,} masks ({i / (time.perf_counter() - t0):,.0f}/s)", file=sys.stderr)
    (root / "planted.json").write_text(json.dumps(planted, sort_keys=True))
    done.write_text(json.dumps({"n": n, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}))
    return planted


class _Sampler(threading.Thread):
    """Peak RSS of a process and of all its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak: dict[int, dict] = {}
        self.total_peak = 0
        self.driver_series: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self):
        import psutil

        t0 = time.monotonic()
        while not self._halt.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    cmd = " ".join(p.cmdline())[:80]
                except psutil.Error:
                    continue
                total += rss
                rec = self.peak.setdefault(p.pid, {"pid": p.pid, "cmd": cmd, "peak_rss": 0})
                rec["peak_rss"] = max(rec["peak_rss"], rss)
                if p.pid == self.root.pid:
                    self.driver_series.append((round(time.monotonic() - t0, 1), rss))
            self.total_peak = max(self.total_peak, total)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_report(out: Path, planted: dict[str, str], n: int) -> dict:
    """One items row per file, every planted defect found, no finding on clean masks."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    items = pq.read_table(out / "items", columns=["item_id", "status", "error_code"])
    ids = items.column("item_id")
    unique = pc.count_distinct(ids).as_py()
    expected_ids = {item_id(i) for i in range(n)}
    missing = len(expected_ids - set(ids.to_pylist())) if items.num_rows != n or unique != n else 0
    findings = pq.read_table(out / "findings", columns=["item_id", "rule", "severity"])
    by_item: dict[str, set] = {}
    for iid, rule in zip(findings.column("item_id").to_pylist(), findings.column("rule").to_pylist()):
        by_item.setdefault(iid, set()).add(rule)
    errors = {iid: code for iid, st, code in zip(ids.to_pylist(), items.column("status").to_pylist(),
                                                 items.column("error_code").to_pylist()) if st == "error"}
    found = {k: 0 for k in DEFECTS}
    missed = []
    for iid, kind in planted.items():
        what, name = EXPECTED[kind]
        ok = name in by_item.get(iid, ()) if what == "rule" else errors.get(iid) == name
        if ok:
            found[kind] += 1
        else:
            missed.append(iid)
    flagged_clean = sorted(set(by_item) - set(planted))
    return {
        "items_rows": items.num_rows, "distinct_item_ids": unique, "missing_ids": missing,
        "planted": {k: sum(1 for v in planted.values() if v == k) for k in DEFECTS}, "found": found,
        "planted_missed": len(missed), "missed_examples": missed[:5],
        "clean_items_with_findings": len(flagged_clean), "flagged_clean_examples": flagged_clean[:5],
        "error_rows": len(errors), "findings_rows": findings.num_rows,
        "ok": items.num_rows == n and unique == n and not missing and not missed and not flagged_clean,
    }


def measure(root: str | os.PathLike, out: str | os.PathLike, *, workers: int = 2, extra_args=()) -> dict:
    """Run ``fastmask validate`` on ``root`` as a child process; time, memory and checks."""
    root, out = Path(root), Path(out)
    planted = json.loads((root / "planted.json").read_text())
    n = json.loads((root / "generated.json").read_text())["n"]
    cmd = [sys.executable, "-m", "fastmask", "validate", str(root), "--out", str(out), "--workers", str(workers),
           "--quiet", "--overwrite", "--fail-on", "never", *extra_args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = _Sampler(proc.pid)
    sampler.start()
    _stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop()
    import resource

    children_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # largest descendant
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"fastmask validate exited {proc.returncode}:\n{stderr[-3000:]}")
    run = json.loads((out / "run.json").read_text())
    procs = sorted(sampler.peak.values(), key=lambda r: r["pid"])
    driver = next(r for r in procs if r["pid"] == proc.pid)
    # children: the pool's worker processes plus multiprocessing's small resource tracker
    workers_seen = [r for r in procs if r["pid"] != proc.pid and "resource_tracker" not in r["cmd"]]
    worker_peaks = [r["peak_rss"] for r in workers_seen]
    helpers = [r for r in procs if r["pid"] != proc.pid and "resource_tracker" in r["cmd"]]
    series = sampler.driver_series
    # flatness: the driver's RSS in the second half of the run vs at 25 % of it
    q = [rss for t, rss in series if t >= 0.25 * wall]
    result = {
        "masks": n, "workers": workers, "wall_seconds_cli": round(wall, 1),
        "wall_seconds_engine": run["timing"]["wall_seconds"],
        "masks_per_second_cli": round(n / wall, 1), "masks_per_second_engine": run["timing"]["items_per_second"],
        "listing_seconds": round(wall - run["timing"]["wall_seconds"], 1),
        "shard_size": run["shard_size"], "shards": run["shards"],
        "driver_peak_rss_mb": round(driver["peak_rss"] / 2**20, 1),
        "driver_rss_at_25pct_mb": round(q[0] / 2**20, 1) if q else None,
        "driver_rss_last_mb": round(series[-1][1] / 2**20, 1) if series else None,
        # (seconds, MB) about every 2 % of the run: where the driver grows
        "driver_rss_series_mb": [(t, round(rss / 2**20, 1)) for t, rss in series[:: max(1, len(series) // 50)]],
        "worker_peak_rss_mb": [round(v / 2**20, 1) for v in worker_peaks],
        "all_processes_peak_rss_sum_mb": round(sampler.total_peak / 2**20, 1),
        "largest_child_maxrss_mb": round(children_maxrss / 2**20, 1),
        "helper_peak_rss_mb": [round(r["peak_rss"] / 2**20, 1) for r in helpers],
        "processes_seen": len(procs),
        "report_bytes": _du(out), "report_mb": round(_du(out) / 2**20, 1),
        "counts": run["counts"], "tables": run["tables"],
        "exit_code": proc.returncode,
    }
    result["check"] = check_report(out, planted, n)
    Path(str(out) + ".json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return result


def run(quick: bool = False) -> None:
    n = 2000 if quick else 20000
    tmp = Path(tempfile.mkdtemp(prefix="fastmask-bench-scale-"))
    generate(tmp / "data", n)
    r = measure(tmp / "data", tmp / "report", workers=2)
    print(json.dumps(r, indent=2, sort_keys=True))
    assert r["check"]["ok"], r["check"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("root")
    g.add_argument("--n", type=int, default=1_000_000)
    g.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("measure")
    m.add_argument("root")
    m.add_argument("out")
    m.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if args.cmd == "generate":
        t0 = time.perf_counter()
        planted = generate(args.root, args.n, seed=args.seed)
        print(f"{args.n:,} masks in {args.root} ({len(planted):,} planted defects), "
              f"{time.perf_counter() - t0:.1f} s")
        return 0
    r = measure(args.root, args.out, workers=args.workers)
    print(json.dumps(r, indent=2, sort_keys=True))
    return 0 if r["check"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
