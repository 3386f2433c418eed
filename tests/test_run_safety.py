"""A run's own safety: one writer per report folder (the lock), exit codes that cannot lie
(4 and run.json "failed" for a failure of the run itself), Ctrl-C at any moment (one line,
exit code 3, resumable), a closed stdout pipe, Dask faults while the cluster starts, and no
temporary file in a finished or resumed report."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fastmask.cli import main
from fastmask.engine import (
    VOLATILE_RUN_KEYS,
    FolderLockedError,
    ManifestError,
    RunError,
    RunFailedError,
    acquire_folder_lock,
    run_job,
)
from fastmask.engine.lock import FolderLock
from fastmask.engine.sink import LOCK_FILE
from fastmask.engine.testing import ToyJob, toy_manifest

N = 60
SHARD = 10


def make_masks(root: Path, n: int = N) -> Path:
    """``n`` small class masks (0..3); every 7th has a value outside the label map (an error finding)."""
    rng = np.random.default_rng(1)
    (root / "masks").mkdir(parents=True)
    (root / "class_names.txt").write_text("background\na\nb\nc\n")
    for i in range(n):
        m = rng.integers(0, 4, (12, 12)).astype(np.uint8)
        if i % 7 == 3:
            m[0, 0] = 99
        Image.fromarray(m, mode="L").save(root / "masks" / f"m{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_masks(tmp_path_factory.mktemp("safety") / "data")


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def run_args(job: str, dataset: Path, out: Path, *extra) -> list[str]:
    more = ["--fail-on", "never"] if job == "validate" else []
    return [job, str(dataset), "--out", str(out), "--workers", "1", "--shard-size", str(SHARD), "--quiet", *more,
            *extra]


def stable_run_json(out: Path) -> dict:
    doc = json.loads((out / "run.json").read_text())
    return {k: v for k, v in doc.items() if k not in VOLATILE_RUN_KEYS}


def part_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/part-*.parquet"))}


def hidden_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*") if p.is_file())


def assert_whole(out: Path, n: int = N) -> None:
    """A complete report: status complete, every item exactly once, every shard done, nothing hidden left."""
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "complete" and doc["counts"]["items"] == n
    ids = pq.read_table(out / "items", columns=["item_id"]).column("item_id").to_pylist()
    assert len(ids) == len(set(ids)) == n
    assert len(list((out / "_shards").glob("*.json"))) == doc["shards"]
    assert hidden_files(out) == []  # no lock, no temporary file


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def references(dataset, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("safety-ref")
    refs = {}
    for job in ("validate", "coverage"):
        refs[job] = base / job
        assert cli(*run_args(job, dataset, refs[job])) == 0
    return refs


# --------------------------------------------------------------------------- the lock


def hold_lock(out: Path, host: str | None = None) -> subprocess.Popen:
    """A process that takes the lock of ``out`` (as if on ``host``) and keeps it until killed."""
    code = ("import sys, time\n"
            "from fastmask.engine.lock import FolderLock\n"
            "lock = FolderLock(sys.argv[1], 'fastmask validate (the holder)')\n"
            + ("lock.info['host'] = sys.argv[2]\n" if host else "")
            + "lock.acquire()\nprint('locked', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), *([host] if host else [])], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"locked"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()


def test_a_second_run_on_a_locked_folder_is_refused_naming_the_owner(dataset, references, tmp_path, capsys):
    out = tmp_path / "r"
    assert cli(*run_args("coverage", dataset, out)) == 0
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    holder = hold_lock(out)
    try:
        for extra in ([], ["--overwrite"], ["--resume"], ["--force-unlock", "--overwrite"]):
            assert cli(*run_args("coverage", dataset, out, *extra)) == 2, extra
            line = one_line(capsys.readouterr().err)
            assert f"pid {holder.pid} on host {socket.gethostname()}" in line and "(the holder)" in line
            assert ("still running on this machine" if "--force-unlock" in extra else "in use by another") in line
        # --overwrite deleted nothing of the live run's folder
        after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE}
        assert after == before
    finally:
        stop(holder)


def test_the_lock_of_a_killed_run_is_taken_over_and_reported(dataset, references, tmp_path, caplog):
    out = tmp_path / "r"
    out.mkdir()
    holder = hold_lock(out)
    stop(holder)  # SIGKILL: the lock file stays, its flock is gone with the process
    assert (out / LOCK_FILE).is_file()
    with caplog.at_level("WARNING", logger="fastmask.engine"):
        assert cli(*run_args("coverage", dataset, out)) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("took over the lock" in w and f"pid {holder.pid}" in w and "gone" in w for w in warned), warned
    assert_whole(out)
    assert part_bytes(out) == part_bytes(references["coverage"])


def test_without_flock_the_owner_pid_decides(tmp_path, monkeypatch):
    monkeypatch.setattr("fastmask.engine.lock._flock", lambda fd: "unsupported")
    out = tmp_path / "r"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = socket.gethostname()

    def plant(pid, host):
        (out / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": host, "started": "then", "command": "x"}))

    plant(int(gone.stdout), here)  # a dead pid on this host: stale, taken over
    lock = acquire_folder_lock(out)
    assert lock.took_over["pid"] == int(gone.stdout)
    lock.release()
    assert not (out / LOCK_FILE).exists()
    plant(os.getpid(), here)  # alive here: refused, even when forced
    with pytest.raises(FolderLockedError, match="in use by another"):
        acquire_folder_lock(out)
    with pytest.raises(FolderLockedError, match="still running on this machine"):
        acquire_folder_lock(out, force=True)
    plant(1, "another-host")  # elsewhere: cannot be told, refused unless forced
    with pytest.raises(FolderLockedError, match="another-host"):
        acquire_folder_lock(out)
    lock = acquire_folder_lock(out, force=True)
    assert lock.took_over["host"] == "another-host"
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_force_unlock_takes_a_lock_held_on_another_host_and_the_old_owner_keeps_off(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    holder = hold_lock(out, host="another-host")
    try:
        with pytest.raises(FolderLockedError, match="another-host"):
            acquire_folder_lock(out)
        lock = acquire_folder_lock(out, force=True, command="the new owner")
        assert json.loads((out / LOCK_FILE).read_text())["command"] == "the new owner"
        # the old owner still holds its (now unlinked) file; releasing it leaves ours alone
        old = FolderLock(out)
        with pytest.raises(FolderLockedError, match="the new owner"):
            old.acquire()
    finally:
        stop(holder)
    assert json.loads((out / LOCK_FILE).read_text())["command"] == "the new owner"
    lock.release()
    assert not (out / LOCK_FILE).exists()


def test_lock_is_released_after_failure_and_a_refused_run_leaves_no_folder(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(RunError):
        run_job(ToyJob(), toy_manifest(30), out, shard_size=10, workers=1, quiet=True,
                finish=lambda o: 1 / 0)
    assert not (out / LOCK_FILE).exists()
    bad = tmp_path / "never"
    with pytest.raises(ManifestError, match="must be unique"):
        run_job(ToyJob(), toy_manifest(3).take([0, 0]), bad, workers=1, quiet=True)
    assert not bad.exists()


def test_two_runs_started_at_once_never_both_succeed_nor_damage_the_report(dataset, tmp_path):
    """The race: two runs on one --out at the same moment, plain or the second with --overwrite."""
    env = dict(os.environ)
    refused_by_lock = 0
    for trial in range(12):
        out = tmp_path / f"r{trial}"
        argv = [sys.executable, "-m", "fastmask", *run_args("validate", dataset, out)]
        second = argv + (["--overwrite"] if trial % 2 else [])
        procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                 for a in (argv, second)]
        results = [(p.wait(timeout=300), p.stderr.read().decode()) for p in procs]
        for p in procs:
            p.stderr.close()
        codes = sorted(code for code, _ in results)
        for code, err in results:
            assert "Traceback" not in err, err
            assert code in (0, 2), (code, err)
            if code == 2:
                refused_by_lock += "in use by another fastmask run" in err
                assert "in use by another fastmask run" in err or "already exists" in err, err
        if trial % 2 == 0:
            assert codes == [0, 2], results  # without --overwrite exactly one run writes the folder
        else:
            assert 0 in codes, results  # both succeed only one after the other (--overwrite)
        assert_whole(out)
    assert refused_by_lock > 0, "the runs never overlapped: the race was not exercised"


# --------------------------------------------------------------------------- exit code 4


@pytest.mark.parametrize("job", ["validate", "coverage"])
def test_disk_full_while_writing_the_last_tables_is_exit_4_then_resume_completes(job, dataset, references, tmp_path,
                                                                                 monkeypatch, capsys):
    import fastmask.engine.sink as sink

    real = sink.write_parquet_atomic

    def full_disk(table, path, *a, **k):
        if Path(path).parent.name == "classes":  # a table written after the shards
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(table, path, *a, **k)

    monkeypatch.setattr(sink, "write_parquet_atomic", full_disk)
    out = tmp_path / "r"
    argv = run_args(job, dataset, out)
    assert cli(*argv) == 4
    line = one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "--resume" in line
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "failed" and "No space left on device" in doc["stop_reason"]
    assert not list((out / "classes").glob("*.parquet")) if (out / "classes").exists() else True
    monkeypatch.undo()
    assert cli(*argv, "--resume") == 0
    assert_whole(out)
    assert stable_run_json(out) == stable_run_json(references[job])
    assert part_bytes(out) == part_bytes(references[job])  # the classes table included


def test_run_json_unwritable_at_the_end_is_exit_4_not_2(dataset, references, tmp_path, monkeypatch, capsys):
    import fastmask.engine.run as run

    real = run._write_run_json

    def write(path, doc):
        if doc["status"] == "complete":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, doc)

    monkeypatch.setattr(run, "_write_run_json", write)
    out = tmp_path / "r"
    argv = run_args("coverage", dataset, out)
    assert cli(*argv) == 4
    assert "No space left on device" in one_line(capsys.readouterr().err)
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    monkeypatch.undo()
    assert cli(*argv, "--resume") == 0
    assert_whole(out)
    assert stable_run_json(out) == stable_run_json(references["coverage"])


def test_an_unexpected_error_is_exit_4_one_line_and_debug_shows_the_traceback(dataset, tmp_path, monkeypatch,
                                                                              capsys):
    from fastmask.jobs.coverage import CoverageJob

    def boom(self, summaries):
        raise RuntimeError("boom in finalize")

    monkeypatch.setattr(CoverageJob, "finalize", boom)
    assert cli(*run_args("coverage", dataset, tmp_path / "a")) == 4
    assert "RuntimeError: boom in finalize" in one_line(capsys.readouterr().err)
    assert json.loads((tmp_path / "a" / "run.json").read_text())["status"] == "failed"
    assert cli(*run_args("coverage", dataset, tmp_path / "b", "--debug")) == 4
    err = capsys.readouterr().err
    assert "Traceback" in err and "boom in finalize" in err
    monkeypatch.undo()
    # outside the engine too: a crash is 4 and one line, never 1 ("findings")
    import fastmask.jobs.validate_summary as vs

    monkeypatch.setattr(vs, "print_summary", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad summary")))
    assert cli(*run_args("validate", dataset, tmp_path / "c")) == 4
    assert "ValueError: bad summary" in one_line(capsys.readouterr().err)
    with pytest.raises(ValueError, match="bad summary"):
        cli(*run_args("validate", dataset, tmp_path / "d"), "--debug")


def test_a_crash_while_opening_the_dataset_is_exit_4_not_1(dataset, tmp_path, monkeypatch, capsys):
    # e.g. two listed names that collide once decoded: an assertion in a reader (exit code 1
    # and a traceback before); whatever the reader, a crash is one line and exit code 4
    def crash(*a, **k):
        raise AssertionError("MaskDirDataset: duplicate item_id 'bad\\xff.png' in manifest")

    monkeypatch.setattr("fastmask.cli.open_dataset_arg", crash)
    for job in ("scan", "validate", "coverage", "instances", "rasterize"):
        assert cli(job, dataset, "--out", tmp_path / job, "--quiet") == 4, job
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"fastmask {job}: ") and "AssertionError: MaskDirDataset: duplicate item_id" in line


def test_exit_1_still_means_completed_with_findings(dataset, tmp_path):
    out = tmp_path / "r"
    assert cli("validate", dataset, "--out", out, "--workers", "1", "--quiet") == 1
    assert_whole(out)


# --------------------------------------------------------------------------- Ctrl-C, closed pipe


def test_ctrl_c_in_the_driver_is_one_line_exit_3_and_resumes(dataset, references, tmp_path, monkeypatch, capsys):
    from fastmask.jobs.coverage import CoverageJob

    real = CoverageJob.process
    seen = {"n": 0}

    def process(self, item):
        seen["n"] += 1
        if seen["n"] == 25:
            raise KeyboardInterrupt
        return real(self, item)

    monkeypatch.setattr(CoverageJob, "process", process)
    out = tmp_path / "r"
    argv = run_args("coverage", dataset, out)
    assert cli(*argv) == 3
    line = one_line(capsys.readouterr().err)
    assert "interrupted" in line and "--resume" in line and str(out) in line
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "stopped" and doc["stop_reason"] == "interrupted"
    monkeypatch.undo()
    assert cli(*argv, "--resume") == 0
    assert_whole(out)
    assert part_bytes(out) == part_bytes(references["coverage"])


def _interrupt(argv: list[str], out: Path, *, after_markers: int | None, after_seconds: float = 0.0):
    """Start ``fastmask ARGV`` in its own process group and press Ctrl-C (SIGINT to the group)."""
    proc = subprocess.Popen([sys.executable, "-m", "fastmask", *argv], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    if after_markers == 0:  # as soon as the run has begun (run.json written), before any shard
        while not (out / "run.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    elif after_markers is not None:
        while len(list((out / "_shards").glob("*.json"))) < after_markers and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    time.sleep(after_seconds)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=120)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return code, err


@pytest.mark.parametrize("executor,when", [("local", "start-up"), ("local", "mid-run"), ("threads", "mid-run"),
                                           ("dask", "start-up"), ("dask", "mid-run")])
def test_ctrl_c_at_any_moment_is_one_line_and_exit_3(executor, when, dataset, references, tmp_path):
    if executor == "dask":
        pytest.importorskip("distributed")
    out = tmp_path / "r"
    argv = run_args("coverage", dataset, out, "--executor", executor, "--workers", "2")
    argv[argv.index("--shard-size") + 1] = "2"  # many small shards: the run is still going
    code, err = _interrupt(argv, out, after_markers={"start-up": None, "cluster-start": 0, "mid-run": 2}[when],
                           after_seconds={"start-up": 0.5, "cluster-start": 0.3, "mid-run": 0.0}[when])
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    if code != 3:  # the signal came after the run's end
        assert code == 0, err
        assert_whole(out)
        return
    line = one_line(err)
    assert "interrupted" in line
    if (out / "run.json").exists():
        assert "--resume" in line
        assert json.loads((out / "run.json").read_text())["status"] in ("stopped", "running")
    assert cli(*argv, "--resume") == 0
    assert_whole(out)


def test_a_closed_stdout_pipe_ends_quietly_with_the_real_exit_code(dataset, tmp_path):
    argv = [sys.executable, "-m", "fastmask", "validate", str(dataset), "--workers", "1", "--quiet"]
    proc = subprocess.Popen([*argv, "--out", str(tmp_path / "a")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that already exited: every write gets EPIPE
    code = proc.wait(timeout=300)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert err == ""
    assert code == 1  # completed with error findings (values outside the label map), as without a pipe
    assert subprocess.run([*argv, "--out", str(tmp_path / "b")], stdout=subprocess.DEVNULL).returncode == 1
    assert_whole(tmp_path / "a")


# --------------------------------------------------------------------------- Dask start-up faults


def test_a_dask_worker_lost_during_scatter_is_exit_3_then_resume(dataset, references, tmp_path, monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")
    from distributed.comm.core import CommClosedError

    def scatter(self, *a, **k):
        raise CommClosedError("in <TCP (closed) ConnectionPool.scatter>: Stream is closed")

    monkeypatch.setattr(distributed.Client, "scatter", scatter)
    out = tmp_path / "r"
    argv = run_args("coverage", dataset, out)
    assert cli(*argv, "--executor", "dask", "--workers", "1") == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "a Dask worker was lost while the job was sent to the workers" in err and "--resume" in err
    assert json.loads((out / "run.json").read_text())["status"] == "stopped"
    monkeypatch.undo()
    assert cli(*argv, "--resume") == 0
    assert_whole(out)
    assert part_bytes(out) == part_bytes(references["coverage"])


@pytest.mark.parametrize("fault,code,message", [
    (RuntimeError("Nanny failed to start."), 3, "a Dask worker was lost while the cluster started"),
    (KeyError("tcp://127.0.0.1:40245"), 3, "a Dask worker was lost while the cluster started"),
    (OSError(errno.ECONNRESET, "Connection reset by peer"), 3, "a Dask worker was lost while the cluster started"),
    (ValueError("a cluster that cannot start"), 4, "the run failed: ValueError: a cluster that cannot start"),
])
def test_a_cluster_failing_to_start(fault, code, message, dataset, tmp_path, monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")

    def local_cluster(*a, **k):
        raise fault

    monkeypatch.setattr(distributed, "LocalCluster", local_cluster)
    out = tmp_path / "r"
    assert cli(*run_args("coverage", dataset, out, "--executor", "dask")) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert json.loads((out / "run.json").read_text())["status"] == ("stopped" if code == 3 else "failed")
    monkeypatch.undo()
    assert cli(*run_args("coverage", dataset, out, "--resume")) == 0
    assert_whole(out)


def test_a_real_worker_killed_as_the_cluster_starts(dataset, references, tmp_path, monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")
    real = distributed.LocalCluster

    def local_cluster(*a, **k):
        cluster = real(*a, **k)
        victim = next(iter(cluster.workers.values())).process.pid
        os.kill(victim, signal.SIGKILL)  # a worker dies in the cluster's first second
        return cluster

    monkeypatch.setattr(distributed, "LocalCluster", local_cluster)
    out = tmp_path / "r"
    argv = run_args("coverage", dataset, out)
    code = cli(*argv, "--executor", "dask", "--workers", "2")
    err = capsys.readouterr().err
    assert "Traceback" not in err and code in (0, 3), err
    monkeypatch.undo()
    if code == 3:
        assert "--resume" in err
        assert cli(*argv, "--resume") == 0
    assert_whole(out)
    assert part_bytes(out) == part_bytes(references["coverage"])


# --------------------------------------------------------------------------- temporary files


class _LeavesATemporary(ToyJob):
    """Plants the leftover of a writer that died mid-write (as a lost Dask worker does)."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out

    def process(self, item):
        if item["n"] == 7:
            Path(self.out, "items", ".part-00003.parquet.tmp-4242-deadbeef").write_bytes(b"PAR1 half")
        return super().process(item)


def test_a_finished_report_holds_no_temporary_file(tmp_path):
    out = tmp_path / "r"
    run_job(_LeavesATemporary(str(out)), toy_manifest(40), out, shard_size=10, workers=1, quiet=True)
    assert hidden_files(out) == []
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_convert_resumed_after_a_kill_leaves_no_temporary_file(dataset, tmp_path):
    argv = ["convert", str(dataset), "--to", "voc", "--workers", "2", "--shard-size", "2", "--quiet"]
    ref = tmp_path / "ref"
    assert cli(*argv, "--out", ref) == 0
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "fastmask", *argv, "--out", str(out)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((out / "_shards").glob("*.json"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    # what a writer killed mid-file leaves: an empty temporary mask, a half part
    masks = out / "dataset" / "SegmentationClass"
    masks.mkdir(parents=True, exist_ok=True)
    (masks / ".m031.png.k2j4h1.tmp").write_bytes(b"")
    (out / "items" / ".part-00020.parquet.tmp-999-0badf00d").write_bytes(b"PAR1")
    assert cli(*argv, "--out", out, "--resume") == 0
    assert hidden_files(out) == []

    def files(d):
        return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
                if p.is_file() and p.name != "run.json" and "_shards" not in p.parts}

    assert files(out) == files(ref)


def test_run_failed_error_and_run_error_exit_codes():
    assert RunFailedError.exit_code == 3 and RunError.exit_code == 4 and FolderLockedError.exit_code == 2
