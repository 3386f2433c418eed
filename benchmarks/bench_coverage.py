"""`coverage` and `evaluate` throughput next to the engine's read-only throughput, on the same files.

The generated semantic datasets of the engine benchmark (``$FASTMASK_BENCH_DATA``:
21 classes + ignore, overlapping blobs; 640x480 and 2048x1024), 1 and 2 workers.

- ``read``: an engine job that only reads each item through the dataset reader
  (path checks + PNG decode) -- the floor for any job over these files;
- ``coverage``: per image and class pixel counts and coverage fractions;
- ``read pairs``: reads the ground-truth and the prediction item (two decodes);
- ``evaluate``: the same pairs plus the confusion matrix and per-image scores.

The prediction dataset is the ground-truth folder itself (scores are perfect, the
work per pixel is not data dependent: one confusion-matrix pass). Target: each job
within 25% of its read-only throughput.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow as pa

from benchmarks.bench_engine import DATA, ensure_dataset
from fastmask.engine import ItemResult, Job
from fastmask.jobs.evaluate import EvaluateJob, _class_map


class ReadJob(Job):
    """Read each item through the dataset reader and report its size (nothing else)."""

    name = "read"
    item_schema = pa.schema([("height", pa.int32()), ("width", pa.int32())])

    def __init__(self, dataset):
        self._dataset = dataset

    def process(self, item):
        a = self._dataset.read_item(item).mask.array
        return ItemResult({"height": a.shape[0], "width": a.shape[1]})


class ReadPairJob(EvaluateJob):
    """Read the ground-truth and the prediction class map of each pair as ``evaluate`` does, nothing else."""

    name = "read_pairs"
    tables = {}

    def process(self, item):
        gt = _class_map(self._gt, json.loads(item["gt_row"]), 255)
        pred = _class_map(self._pred, json.loads(item["pred_row"]), 255)
        return ItemResult({"width": gt.shape[1], "height": pred.shape[0]})

    def reduce_shard(self, shard):
        return {}

    def finalize(self, summaries):
        return {}


def _rate(job, manifest, out, workers) -> float:
    from fastmask.engine import run_job

    r = run_job(job, manifest, out, workers=workers, quiet=True, overwrite=True)
    assert r.n_ok == manifest.num_rows, r.counts
    return manifest.num_rows / r.wall_seconds


def run(quick: bool = False) -> None:
    from fastmask.formats import LabelMap, open_dataset
    from fastmask.jobs.coverage import CoverageJob

    counts = {"small": 2000, "large": 200} if quick else {"small": 20000, "large": 2000}
    ensure_dataset(counts)
    labelmap = LabelMap.from_names([f"class{i}" for i in range(21)])
    tmp = Path(tempfile.mkdtemp(prefix="fastmask-bench-coverage-"))
    rounds = 1 if quick else 3
    print(f"\n## coverage and evaluate vs reading only, masks/s (engine runs, median of {rounds} "
          "interleaved rounds)\n")
    print("| masks | workers | read | coverage | coverage cost | read pairs | evaluate | evaluate cost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, n in counts.items():
        ds = open_dataset(DATA / kind, layout="masks", labelmap=labelmap)
        h, w = (480, 640) if kind == "small" else (1024, 2048)
        manifest = ds.manifest().slice(0, n)
        # 78 classes: the validate benchmark plants id 77 in 0.3% of these files
        ev = EvaluateJob(ds, ds, 78, ignore_value=255)
        rp = ReadPairJob(ds, ds, 78, ignore_value=255)
        pairs = ev.manifest().slice(0, n)
        for workers in (1, 2):
            rates: dict[str, list[float]] = {k: [] for k in ("read", "coverage", "pairs", "evaluate")}
            for r in range(rounds):
                rates["read"].append(_rate(ReadJob(ds), manifest, tmp / f"read-{kind}-{workers}", workers))
                rates["coverage"].append(_rate(CoverageJob(ds), manifest, tmp / f"cov-{kind}-{workers}", workers))
                rates["pairs"].append(_rate(rp, pairs, tmp / f"pairs-{kind}-{workers}", workers))
                rates["evaluate"].append(_rate(ev, pairs, tmp / f"eval-{kind}-{workers}", workers))
            med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
            print(f"| {n} x {w}x{h} | {workers} | {med['read']:,.0f} | {med['coverage']:,.0f} "
                  f"| {med['read'] / med['coverage'] - 1:+.0%} | {med['pairs']:,.0f} | {med['evaluate']:,.0f} "
                  f"| {med['pairs'] / med['evaluate'] - 1:+.0%} |")
