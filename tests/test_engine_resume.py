"""Engine resume: a killed or crashed run, resumed, ends with the same report as an
uninterrupted one; resuming a different run is refused."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fastmask.engine import (
    VOLATILE_RUN_KEYS,
    ResumeMismatchError,
    RunFailedError,
    load_report_table,
    run_job,
)
from fastmask.engine.testing import CrashOnceJob, ToyJob, toy_manifest

N = 300
SHARD = 50


def part_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/part-*.parquet"))}


def stable_run_json(out: Path) -> dict:
    doc = json.loads((out / "run.json").read_text())
    for key in VOLATILE_RUN_KEYS:
        doc.pop(key, None)
    doc["resume_key"].pop("job_class")
    return doc


def visible_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "report"
    run_job(ToyJob(), toy_manifest(N), out, shard_size=SHARD, workers=1, quiet=True)
    return out


def assert_same_report(out: Path, reference: Path) -> None:
    assert part_bytes(out) == part_bytes(reference)
    assert stable_run_json(out) == stable_run_json(reference)
    assert visible_files(out) == visible_files(reference)
    assert not [p for p in out.rglob(".*")]  # temporaries of the interrupted run are gone
    ids = load_report_table(out).column("item_id").to_pylist()
    assert len(ids) == len(set(ids)) == N


def test_resume_after_a_worker_died_mid_run(reference, tmp_path):
    out = tmp_path / "r"
    sentinel = tmp_path / "crashed-once"
    job = CrashOnceJob(crash_n=170, sentinel=str(sentinel))  # in shard 3 of 6
    with pytest.raises(RunFailedError, match=r"worker process died.*\n.*--resume") as exc:
        run_job(job, toy_manifest(N), out, shard_size=SHARD, workers=2, quiet=True)
    assert exc.value.exit_code == 3 and sentinel.exists()
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "stopped" and "worker process died" in doc["stop_reason"]
    assert "3" in doc["stop_reason"].split("while shards")[1]  # the dying shard is named
    assert not (out / "_shards" / "00003.json").exists()
    assert not (out / "items" / "part-00003.parquet").exists()

    r = run_job(job, toy_manifest(N), out, workers=2, quiet=True, resume=True)  # shard size comes from the run
    assert r.skipped_shards >= 1 and r.n_shards == N // SHARD
    assert_same_report(out, reference)


def test_resume_repairs_partial_shards_and_leftover_temporaries(reference, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(reference, out)
    # What a kill can leave: shard 2 has its items part but neither findings part nor marker;
    # shard 4 has nothing; a writer died before its rename (hidden temporary file).
    (out / "_shards" / "00002.json").unlink()
    (out / "findings" / "part-00002.parquet").unlink()
    for f in ("_shards/00004.json", "items/part-00004.parquet", "findings/part-00004.parquet"):
        (out / f).unlink()
    (out / "items" / ".part-00004.parquet.tmp-999-deadbeef").write_bytes(b"PAR1 half a file")
    (out / "_shards" / ".00004.json.tmp-999-deadbeef").write_bytes(b"{")
    r = run_job(ToyJob(), toy_manifest(N), out, shard_size=SHARD, workers=1, quiet=True, resume=True)
    assert (r.skipped_shards, r.n_shards) == (4, 6)
    assert json.loads((out / "run.json").read_text())["timing"]["processed_items"] == 2 * SHARD
    # the speed is of the items run now, not of the finished shards kept
    assert r.processed_items == 2 * SHARD and r.items_per_second == pytest.approx(2 * SHARD / r.wall_seconds)
    assert_same_report(out, reference)


def test_resume_of_a_finished_run_changes_nothing(reference, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(reference, out)
    r = run_job(ToyJob(), None, out, workers=1, quiet=True, resume=True)  # the saved manifest is used
    assert r.skipped_shards == 6 and r.counts == json.loads((reference / "run.json").read_text())["counts"]
    assert_same_report(out, reference)


def test_resume_into_a_missing_folder_is_a_fresh_run(reference, tmp_path):
    run_job(ToyJob(), toy_manifest(N), tmp_path / "new", shard_size=SHARD, workers=1, quiet=True, resume=True)
    assert_same_report(tmp_path / "new", reference)


@pytest.mark.parametrize("change,match", [
    ({"job": ToyJob(salt=1)}, r"other settings:\n  salt: was 0, now 1\nuse --overwrite"),
    ({"manifest": toy_manifest(N + 1)}, r"manifest \(dataset items\) differs"),
    ({"manifest": toy_manifest(N, start=1)}, r"manifest \(dataset items\) differs"),
    ({"shard_size": 60}, r"shard size 60: the run in .* uses 50"),
    ({"arguments": {"mode": "strict"}}, r"\n  mode: was \(not given\), now 'strict'\n"),
    ({"labelmap": {"1": "cat"}}, r"\n  labelmap: was None, now \{'1': 'cat'\}\n"),
])
def test_resume_with_another_run_is_refused(reference, tmp_path, change, match):
    out = tmp_path / "r"
    shutil.copytree(reference, out)
    kwargs = {"job": ToyJob(), "manifest": toy_manifest(N), "shard_size": SHARD, **change}
    with pytest.raises(ResumeMismatchError, match=match) as exc:
        run_job(kwargs.pop("job"), kwargs.pop("manifest"), out, workers=1, quiet=True, resume=True, **kwargs)
    assert "--overwrite" in str(exc.value) and exc.value.exit_code == 2
    assert part_bytes(out) == part_bytes(reference)  # nothing touched


def test_resume_ignores_execution_flags(reference, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(reference, out)
    (out / "_shards" / "00005.json").unlink()
    run_job(ToyJob(), toy_manifest(N), out, workers=2, executor="threads", quiet=True, resume=True,
            arguments={"salt": 0, "sleep": 0.0, "workers": 7, "out": "elsewhere"})
    assert part_bytes(out) == part_bytes(reference)


_KILL_SCRIPT = """
import sys
from fastmask.engine import run_job
from fastmask.engine.testing import ToyJob, toy_manifest
if __name__ == "__main__":
    run_job(ToyJob(sleep=0.01), toy_manifest(400), sys.argv[1], shard_size=20, workers=2, quiet=True)
"""


def test_sigkill_mid_run_then_resume_equals_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref"
    run_job(ToyJob(sleep=0.01), toy_manifest(400), ref, shard_size=20, workers=1, quiet=True)

    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT)
    # Own session: the driver and its worker processes form one process group, killed at once.
    proc = subprocess.Popen([sys.executable, str(script), str(out)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(list((out / "_shards").glob("*.json"))) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run did not finish 4 shards in 60 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    done = len(list((out / "_shards").glob("*.json")))
    assert 4 <= done < 20, "the kill came too late to test anything"
    # Whatever is visible is a complete Parquet file; half-written ones are hidden temporaries.
    for part in out.glob("*/part-*.parquet"):
        pq.read_table(part)
    assert json.loads((out / "run.json").read_text())["status"] == "running"

    r = run_job(ToyJob(sleep=0.01), toy_manifest(400), out, workers=2, quiet=True, resume=True)
    assert r.skipped_shards >= done
    assert part_bytes(out) == part_bytes(ref)
    a, b = (json.loads((d / "run.json").read_text()) for d in (out, ref))
    for doc in (a, b):
        for key in VOLATILE_RUN_KEYS:
            del doc[key]
    assert a == b
    assert not list(out.rglob(".*"))
    ids = load_report_table(out).column("item_id").to_pylist()
    assert ids == [f"item-{n:06d}" for n in range(400)]


def test_resume_of_a_run_killed_before_its_manifest_was_saved(reference, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    shutil.copy(reference / "run.json", out / "run.json")  # run.json is written first, then the manifest
    run_job(ToyJob(), toy_manifest(N), out, shard_size=SHARD, workers=1, quiet=True, resume=True)
    assert_same_report(out, reference)
