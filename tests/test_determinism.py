"""Determinism (issue 8): the same input gives the same report whatever the worker count, the
executor and the shard size.

What is guaranteed, and tested here for ``scan``, ``validate`` and ``coverage`` on a mask folder
and on real COCO and VOC samples (and ``rasterize`` on the COCO sample, whose PNG masks are
byte-identical too):

* same shard size, any executor (local processes, threads, Dask) and worker count: every
  Parquet file of the report (each part of each table, the manifest, the one-part
  dataset-level tables) is byte-identical, and ``run.json`` is identical apart from its
  ``timing`` and ``execution`` keys;
* another shard size: the part files are cut differently, but each table read as a whole
  (parts concatenated in name order) is identical, row order included; one-part tables
  written after the run (``dataset_findings``, ``classes``) and ``manifest.parquet`` are
  byte-identical; ``run.json`` differs only in ``shard_size``, ``shards``, part counts and,
  for ``coverage``, the per-shard histograms of its summary (``summary.shards``, which
  describe the shards themselves).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fastmask.cli import main as cli_main
from fastmask.engine import VOLATILE_RUN_KEYS

JOBS = {"scan": [], "validate": ["--fail-on", "never"], "coverage": []}
SHARD = {"masks": 8, "coco": 8, "voc": 1}  # several shards each (the VOC sample has 2-3 items)


def make_masks(root: Path, n: int = 150, size: int = 32) -> Path:
    rng = np.random.default_rng(3)
    (root / "masks").mkdir(parents=True)
    (root / "class_names.txt").write_text("background\na\nb\nc\n")
    for i in range(n):
        m = np.zeros((size, size), np.uint8)
        for _ in range(3):
            y, x = (int(v) for v in rng.integers(0, size - 4, 2))
            m[y:y + int(rng.integers(1, 12)), x:x + int(rng.integers(1, 12))] = int(rng.integers(1, 4))
        if i % 11 == 0:
            m[0, 0] = 9  # not in the label map
        path = root / "masks" / f"g{i % 3}" / f"{i:04d}.png"
        path.parent.mkdir(exist_ok=True)
        if i % 17 == 0:
            path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        else:
            Image.fromarray(m, mode="L").save(path)
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, real_data) -> dict[str, Path]:
    return {
        "masks": make_masks(tmp_path_factory.mktemp("det") / "masks"),
        "coco": real_data / "super-gradients/tests/data/tinycoco/annotations/instances_train2017.json",
        "voc": real_data / "datumaro/tests/assets/voc_dataset/voc_dataset1",
    }


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path_factory.getbasetemp() / "fastmask-cache"))


@pytest.fixture(scope="module")
def dask_scheduler():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster:
        yield cluster.scheduler_address


def run(job: str, dataset: Path, out: Path, *flags: str) -> Path:
    assert cli_main([job, str(dataset), "--out", str(out), "--quiet", *JOBS[job], *flags]) == 0
    return out


def parquet_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}


def run_json(out: Path, *, drop_sharding: bool = False) -> dict:
    doc = json.loads((out / "run.json").read_text())
    for key in VOLATILE_RUN_KEYS:
        doc.pop(key)
    if drop_sharding:
        del doc["shard_size"], doc["shards"], doc["resume_key"]["shard_size"]
        for t in doc["tables"].values():
            del t["parts"]
        if doc["job"] == "coverage":
            del doc["summary"]["shards"]  # per-shard histograms: shard-dependent by design
    return doc


def tables(out: Path) -> dict[str, object]:
    return {p.name: pq.read_table(p) for p in sorted(out.iterdir())
            if p.is_dir() and not p.name.startswith("_") and any(p.glob("part-*.parquet"))}


@pytest.fixture(scope="module")
def references(datasets, tmp_path_factory):
    base = tmp_path_factory.mktemp("det-ref")
    return {(job, name): run(job, ds, base / f"{job}-{name}", "--workers", "1", "--shard-size", str(SHARD[name]))
            for job in JOBS for name, ds in datasets.items()}


@pytest.mark.parametrize("name", ["masks", "coco", "voc"])
@pytest.mark.parametrize("job", list(JOBS))
def test_same_bytes_for_threads_and_another_worker_count(references, datasets, tmp_path, job, name):
    ref = references[job, name]
    out = run(job, datasets[name], tmp_path / "r", "--executor", "threads", "--workers", "2",
              "--shard-size", str(SHARD[name]))
    assert parquet_files(out) == parquet_files(ref)
    assert run_json(out) == run_json(ref)
    assert len(list((ref / "items").glob("part-*.parquet"))) >= 2  # several shards


@pytest.mark.parametrize("job", ["validate", pytest.param("scan", marks=pytest.mark.slow),
                                 pytest.param("coverage", marks=pytest.mark.slow)])
def test_same_bytes_for_worker_processes(references, datasets, tmp_path, job):
    ref = references[job, "masks"]
    out = run(job, datasets["masks"], tmp_path / "r", "--workers", "2", "--shard-size", str(SHARD["masks"]))
    assert parquet_files(out) == parquet_files(ref)
    assert run_json(out) == run_json(ref)


@pytest.mark.parametrize("name", ["masks", "coco"])
@pytest.mark.parametrize("job", list(JOBS))
def test_same_bytes_on_a_dask_cluster(references, datasets, dask_scheduler, tmp_path, job, name):
    ref = references[job, name]
    out = run(job, datasets[name], tmp_path / "r", "--scheduler", dask_scheduler, "--shard-size", str(SHARD[name]))
    assert parquet_files(out) == parquet_files(ref)
    assert run_json(out) == run_json(ref)


@pytest.mark.parametrize("shard_size", [1, 7, 5000])
@pytest.mark.parametrize("name", ["masks", "coco", "voc"])
@pytest.mark.parametrize("job", list(JOBS))
def test_same_tables_for_any_shard_size(references, datasets, tmp_path, job, name, shard_size):
    if shard_size == 1 and name == "masks" and job != "validate":
        pytest.skip("one-item shards: validate on the mask folder is enough")
    ref = references[job, name]
    out = run(job, datasets[name], tmp_path / "r", "--executor", "threads", "--workers", "2",
              "--shard-size", str(shard_size))
    a, b = tables(out), tables(ref)
    assert a.keys() == b.keys()
    for t in a:
        assert a[t].equals(b[t]), t  # row order included: parts are sorted and cut from one sorted manifest
    # one-part files do not depend on sharding at all
    single = [f for f in parquet_files(ref) if "/" not in f or f.split("/")[0] in ("dataset_findings", "classes")]
    assert {f: parquet_files(out)[f] for f in single} == {f: parquet_files(ref)[f] for f in single}
    assert run_json(out, drop_sharding=True) == run_json(ref, drop_sharding=True)
    n_parts = len(list((out / "items").glob("part-*.parquet")))
    assert n_parts == -(-pq.read_metadata(ref / "manifest.parquet").num_rows // shard_size)


# --------------------------------------------------------------------------- rasterize (writes PNG masks too)


def all_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "run.json" and "_shards" not in p.parts}


@pytest.mark.parametrize("kind", ["semantic", "instance"])
def test_rasterize_same_files_for_executors_and_shard_sizes(datasets, tmp_path, kind):
    def rasterize(out, *flags):
        assert cli_main(["rasterize", str(datasets["coco"]), "--kind", kind, "--out", str(out), "--quiet",
                         *flags]) == 0
        return out

    ref = rasterize(tmp_path / "ref", "--workers", "1", "--shard-size", "8")
    files = all_files(ref)
    assert sum(f.endswith(".png") for f in files) >= 20
    threads = rasterize(tmp_path / "threads", "--executor", "threads", "--workers", "2", "--shard-size", "8")
    assert all_files(threads) == files
    assert run_json(threads) == run_json(ref)
    other = rasterize(tmp_path / "other", "--executor", "threads", "--workers", "2", "--shard-size", "5")
    a, b = tables(other), tables(ref)
    assert a.keys() == b.keys() and all(a[t].equals(b[t]) for t in a)
    pngs = {f: v for f, v in files.items() if not f.endswith(".parquet") or "/" not in f}
    assert {f: all_files(other)[f] for f in pngs} == pngs  # masks and one-part files: same bytes
