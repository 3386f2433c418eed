"""Fault injection (issue 8): a run killed at any point, a Dask worker lost, a full disk and an
unwritable output folder. In every case the report ends identical to an uninterrupted run's
(after ``--resume``), with every item exactly once, or the run stops with a clear error and a
resumable state (exit code 3), or refuses to start (exit code 2)."""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fastmask.cli import main as cli_main
from fastmask.engine import VOLATILE_RUN_KEYS

SHARD = 25
VOLATILE_COLUMNS = ()  # no table column depends on time; run.json's timing/execution do


# --------------------------------------------------------------------------- helpers


def make_masks(root: Path, n: int, size: int = 40, seed: int = 0) -> Path:
    """A mask folder: ``n`` grey label masks (classes 0..5, 8-px blocks), defects in every 10th."""
    rng = np.random.default_rng(seed)
    masks = root / "masks"
    masks.mkdir(parents=True)
    (root / "class_names.txt").write_text("background\na\nb\nc\nd\ne\n")
    for i in range(n):
        m = np.zeros((size, size), np.uint8)
        for _ in range(3):
            y, x = (int(v) * 8 for v in rng.integers(0, size // 8 - 1, 2))
            m[y:y + 16, x:x + 16] = int(rng.integers(1, 6))
        path = masks / f"{i // 100:02d}" / f"m{i:05d}.png"
        path.parent.mkdir(exist_ok=True)
        kind = i % 40
        if kind == 5:
            m[1:3, 1:3] = 77  # unexpected value
        if kind == 15:
            path.write_bytes(b"")  # zero bytes
            continue
        Image.fromarray(m, mode="L").save(path)
        if kind == 25:
            path.write_bytes(path.read_bytes()[:40])  # truncated
    return root


def read_sorted(out: Path, table: str) -> pa.Table:
    t = pq.read_table(out / table)
    t = t.drop_columns([c for c in VOLATILE_COLUMNS if c in t.column_names])
    sortable = [c for c in t.column_names if c != "item_id" and (pa.types.is_primitive(t.schema.field(c).type)
                                                               or pa.types.is_string(t.schema.field(c).type))]
    keys = [(c, "ascending") for c in (["item_id"] if "item_id" in t.column_names else []) + sortable]
    return t.sort_by(keys)


def part_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/part-*.parquet"))}


def stable_run_json(out: Path) -> dict:
    doc = json.loads((out / "run.json").read_text())
    for key in VOLATILE_RUN_KEYS:
        doc.pop(key, None)
    return doc


def assert_same_report(out: Path, ref: Path, n_items: int) -> None:
    """Same rows (sorted by item id), same part files, same run.json apart from timing; every item once."""
    for table in sorted(p.name for p in ref.iterdir() if p.is_dir() and not p.name.startswith("_")):
        assert read_sorted(out, table).equals(read_sorted(ref, table)), table
    assert part_bytes(out) == part_bytes(ref)
    assert stable_run_json(out) == stable_run_json(ref)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    ids = pq.read_table(out / "items", columns=["item_id"]).column("item_id").to_pylist()
    assert len(ids) == len(set(ids)) == n_items
    assert ids == sorted(ids)
    assert not list(out.rglob(".*tmp-*"))  # no temporary file left behind


def cli(*argv: str) -> int:
    return cli_main(list(argv))


def run_cli_process(argv: list[str]) -> subprocess.Popen:
    # Own session: the driver and its spawned workers form one process group, killed at once.
    return subprocess.Popen([sys.executable, "-m", "fastmask", *argv], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


N_ITEMS = 1200


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_masks(tmp_path_factory.mktemp("faults") / "data", N_ITEMS)


@pytest.fixture(scope="module")
def references(dataset, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted runs (in this process, one worker) of validate and coverage."""
    base = tmp_path_factory.mktemp("faults-ref")
    refs = {}
    for job in ("validate", "coverage"):
        refs[job] = base / job
        extra = ["--fail-on", "never"] if job == "validate" else []
        assert cli(job, str(dataset), "--out", str(refs[job]), "--workers", "1", "--shard-size", str(SHARD),
                   "--quiet", *extra) == 0
    return refs


def _kill_and_resume(dataset: Path, ref: Path, out: Path, job: str, *, after_markers: int | None = None,
                     after_seconds: float | None = None) -> int:
    """Start ``fastmask JOB`` with 2 workers, SIGKILL the whole process group, resume; returns shards done."""
    extra = ["--fail-on", "never"] if job == "validate" else []
    argv = [job, str(dataset), "--out", str(out), "--workers", "2", "--shard-size", str(SHARD), "--quiet", *extra]
    proc = run_cli_process(argv)
    markers = out / "_shards"
    try:
        deadline = time.monotonic() + 120
        if after_seconds is not None:
            time.sleep(after_seconds)
        else:
            while len(list(markers.glob("*.json"))) < after_markers:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, f"the run did not finish {after_markers} shards in 120 s"
                time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    done = len(list(markers.glob("*.json"))) if markers.is_dir() else 0
    # whatever a reader can see is a complete Parquet file (half-written ones are hidden temporaries)
    for part in out.glob("*/part-*.parquet"):
        pq.read_table(part)
    # resume with another worker count: the result must not depend on it. The shard size is
    # given again: a kill before the manifest was saved leaves nothing to resume, a fresh run
    # starts (with the default shard size unless told)
    assert cli(job, str(dataset), "--out", str(out), "--workers", "1", "--shard-size", str(SHARD), "--quiet",
               "--resume", *extra) == 0
    assert_same_report(out, ref, N_ITEMS)
    return done


# --------------------------------------------------------------------------- SIGKILL + resume

N_SHARDS = N_ITEMS // SHARD


@pytest.mark.parametrize("seed", [1, 2])
def test_validate_killed_after_some_shards_then_resumed_equals_uninterrupted(dataset, references, tmp_path, seed):
    k = random.Random(seed).randrange(1, N_SHARDS // 2)
    done = _kill_and_resume(dataset, references["validate"], tmp_path / "r", "validate", after_markers=k)
    assert k <= done < N_SHARDS, "the kill did not land mid-run"


def test_coverage_killed_mid_run_then_resumed_equals_uninterrupted(dataset, references, tmp_path):
    done = _kill_and_resume(dataset, references["coverage"], tmp_path / "r", "coverage", after_markers=7)
    assert 7 <= done < N_SHARDS


def test_validate_killed_at_a_random_moment_of_start_up_then_resumed(dataset, references, tmp_path):
    # Anywhere from before run.json exists to mid-run: every state must resume to the same report.
    _kill_and_resume(dataset, references["validate"], tmp_path / "r", "validate",
                     after_seconds=random.Random(7).uniform(0.5, 3.0))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 22))
def test_validate_killed_many_seeds_slow(dataset, references, tmp_path, seed):
    rnd = random.Random(seed)
    if seed % 2:
        _kill_and_resume(dataset, references["validate"], tmp_path / "r", "validate",
                         after_seconds=rnd.uniform(0.1, 6.0))
    else:
        _kill_and_resume(dataset, references["validate"], tmp_path / "r", "validate",
                         after_markers=rnd.randrange(1, N_SHARDS - 1))


@pytest.mark.slow
def test_killed_twice_then_resumed_slow(dataset, references, tmp_path):
    out = tmp_path / "r"
    argv = ["validate", str(dataset), "--out", str(out), "--workers", "2", "--shard-size", str(SHARD), "--quiet",
            "--fail-on", "never"]
    for resume, k in ((False, 5), (True, 20)):
        proc = run_cli_process(argv + (["--resume"] if resume else []))
        deadline = time.monotonic() + 120
        while len(list((out / "_shards").glob("*.json"))) < k and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stderr.close()
    assert cli(*argv, "--resume") == 0
    assert_same_report(out, references["validate"], N_ITEMS)


# --------------------------------------------------------------------------- a Dask worker dies


def test_dask_worker_killed_mid_run_job_still_completes(dataset, references, tmp_path):
    distributed = pytest.importorskip("distributed")
    from fastmask.engine import run_job
    from fastmask.formats import open_dataset
    from fastmask.jobs.validate import ValidateJob

    ds = open_dataset(str(dataset))
    out = tmp_path / "r"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)  # {worker address: pid}
        victim = min(pids.values())
        result: dict = {}

        def go():
            try:
                result["r"] = run_job(ValidateJob(ds), ds.manifest(), out, shard_size=SHARD, executor="dask",
                                      scheduler=client, quiet=True,
                                      labelmap=ds.labelmap.to_json() if ds.labelmap else None)
            except BaseException as e:  # noqa: BLE001 - reported below
                result["e"] = e

        t = threading.Thread(target=go)
        t.start()
        deadline = time.monotonic() + 120
        while len(list((out / "_shards").glob("*.json"))) < 3:
            assert t.is_alive(), result
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)  # the nanny restarts it; its tasks are rescheduled
        t.join(timeout=180)
        assert not t.is_alive(), "the run did not finish after a worker was killed"
    assert "e" not in result, result.get("e")
    assert result["r"].n_items == N_ITEMS
    assert len(list((out / "_shards").glob("*.json"))) == N_SHARDS
    # the dataset-level tables are written by the CLI after the run; compare the engine's tables
    for table in ("items", "findings", "class_stats"):
        assert read_sorted(out, table).equals(read_sorted(references["validate"], table)), table
        assert ({k: v for k, v in part_bytes(out).items() if k.startswith(table + "/")}
                == {k: v for k, v in part_bytes(references["validate"]).items() if k.startswith(table + "/")})
    assert stable_run_json(out) == stable_run_json(references["validate"])


# --------------------------------------------------------------------------- full disk, unwritable folder


def _fail_writes_after(monkeypatch, n_ok: int, err: int, what: str = "parquet"):
    """Make the n_ok+1-th Parquet part write fail with ``err`` after writing some bytes (a real full disk)."""
    calls = {"n": 0}
    real = pq.write_table

    def write_table(table, where, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            where.write(b"PAR1 half a file")
            raise OSError(err, os.strerror(err))
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    return calls


def test_disk_full_mid_run_stops_with_exit_3_and_resumes(dataset, references, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    argv = ["validate", str(dataset), "--out", str(out), "--workers", "1", "--shard-size", str(SHARD), "--quiet",
            "--fail-on", "never"]
    # the manifest + 3 tables x 4 shards fit, then the disk is full
    _fail_writes_after(monkeypatch, 1 + 3 * 4, errno.ENOSPC)
    assert cli(*argv) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "stopped" and "No space left on device" in doc["stop_reason"]
    assert len(list((out / "_shards").glob("*.json"))) == 4
    assert not list(out.rglob(".*tmp-*")), "the half-written temporary file was left behind"
    for part in out.glob("*/part-*.parquet"):
        pq.read_table(part)
    monkeypatch.undo()  # space freed
    assert cli(*argv, "--resume") == 0
    assert_same_report(out, references["validate"], N_ITEMS)


def test_disk_full_before_the_first_shard_is_a_clear_error(dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    _fail_writes_after(monkeypatch, 0, errno.ENOSPC)  # the manifest cannot be written
    code = cli("coverage", str(dataset), "--out", str(out), "--workers", "1", "--quiet")
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the report" in err and "No space left on device" in err
    monkeypatch.undo()
    # a resume starts over cleanly (run.json exists, the manifest does not)
    assert cli("coverage", str(dataset), "--out", str(out), "--workers", "1", "--quiet", "--resume") == 0
    assert json.loads((out / "run.json").read_text())["counts"]["items"] == N_ITEMS


def test_output_folder_that_cannot_be_created_exit_2(dataset, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli("validate", str(dataset), "--out", str(blocker / "report"), "--workers", "1", "--quiet") == 2
    err = capsys.readouterr().err
    assert "cannot write the report" in err and "a-file" in err
    assert blocker.read_text() == ""


def test_output_folder_becoming_unwritable_mid_run_exit_3_then_resume(dataset, references, tmp_path,
                                                                      monkeypatch, capsys):
    # root ignores file modes, so the folder's permission error is simulated at the rename
    out = tmp_path / "r"
    argv = ["validate", str(dataset), "--out", str(out), "--workers", "1", "--shard-size", str(SHARD), "--quiet",
            "--fail-on", "never"]
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst, *a, **k):
        calls["n"] += 1
        if calls["n"] > 20:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    assert cli(*argv) == 3
    err = capsys.readouterr().err
    assert "Permission denied" in err and "--resume" in err
    assert not list(out.rglob(".*tmp-*"))
    monkeypatch.undo()
    assert cli(*argv, "--resume") == 0
    assert_same_report(out, references["validate"], N_ITEMS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes")
def test_read_only_output_folder_exit_2(dataset, tmp_path, capsys):  # pragma: no cover - non-root CI only
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert cli("validate", str(dataset), "--out", str(ro / "report"), "--workers", "1", "--quiet") == 2
        assert "cannot write the report" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


# --------------------------------------------------------------------------- rasterize: killed, resumed


def test_rasterize_killed_mid_run_then_resumed_writes_the_same_masks(tmp_path, real_data, monkeypatch):
    # the real COCO sample's 32 images, repeated under new ids: 640 images, 64 shards of 10
    src = json.loads((real_data / "super-gradients/tests/data/tinycoco/annotations/instances_train2017.json")
                     .read_text())
    images, anns = [], []
    for k in range(20):
        for im in src["images"]:
            images.append({**im, "id": im["id"] * 100 + k, "file_name": f"{k}_{im['file_name']}"})
        for a in src["annotations"]:
            anns.append({**a, "id": a["id"] * 100 + k, "image_id": a["image_id"] * 100 + k})
    coco = tmp_path / "instances_big.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns, "categories": src["categories"]}))
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "cache"))  # inherited by the killed run
    argv = ["rasterize", str(coco), "--shard-size", "10", "--quiet"]
    ref = tmp_path / "ref"
    assert cli(*argv, "--out", str(ref), "--workers", "1") == 0
    out = tmp_path / "r"
    proc = run_cli_process([*argv, "--out", str(out), "--workers", "2"])
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "_shards").glob("*.json"))) < 5:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert len(list((out / "_shards").glob("*.json"))) < 64, "the kill came after the end"
    assert cli(*argv, "--out", str(out), "--workers", "1", "--resume") == 0

    def files(d):
        return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
                if p.is_file() and p.name != "run.json" and "_shards" not in p.parts}

    assert files(out) == files(ref)  # every mask PNG and Parquet part, byte for byte
    assert not [p for p in out.rglob(".*") if p.is_file()]
    assert stable_run_json(out) == stable_run_json(ref)
