"""Reports at a URL (``--out s3://...``) against a local S3 server (moto on 127.0.0.1).

Every object of a report written to S3 has the bytes of the same report written to a local
folder (run.json: but for its timing and execution fields); a killed run resumed there ends
byte-identical; ``--overwrite`` deletes the old report but refuses a prefix holding no
report; the lock is a conditional create with a lease; ``fastmask report`` reads the tables
from S3 and writes report.html there.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastmask.cli import main
from fastmask.engine import VOLATILE_RUN_KEYS, FolderLockedError, run_job
from fastmask.engine.lock import LockLostError, ObjectFolderLock, acquire_folder_lock
from fastmask.engine.sink import LOCK_FILE, done_shards, folder_state
from fastmask.engine.testing import CrashOnceJob, ToyJob, toy_manifest
from fastmask.storage import Location

pytest.importorskip("s3fs")
pytest.importorskip("moto")

N = 40
SHARD = 4


def make_masks(root: Path, n: int = N) -> Path:
    """``n`` small class masks (0..3) and a second copy as predictions; every 7th mask has a
    value outside the label map (an error finding)."""
    rng = np.random.default_rng(3)
    for sub in ("masks", "pred"):
        (root / sub).mkdir(parents=True)
    (root / "class_names.txt").write_text("background\na\nb\nc\n")
    for i in range(n):
        m = rng.integers(0, 4, (16, 16)).astype(np.uint8)
        if i % 7 == 3:
            m[0, 0] = 99
        Image.fromarray(m, mode="L").save(root / "masks" / f"m{i:03d}.png")
        p = np.where(rng.random((16, 16)) < 0.2, (m + 1) % 4, m).astype(np.uint8)
        Image.fromarray(p, mode="L").save(root / "pred" / f"m{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_masks(tmp_path_factory.mktemp("sreport") / "data")


def job_args(job: str, data: Path, out: str, *extra, shard: int = SHARD) -> list[str]:
    if job == "evaluate":
        head = ["evaluate", "--gt", str(data / "masks"), "--pred", str(data / "pred"),
                "--labelmap", str(data / "class_names.txt")]
    else:
        head = [job, str(data / "masks"), "--labelmap", str(data / "class_names.txt")]
    more = ["--fail-on", "never"] if job == "validate" else []
    return [*head, "--out", out, "--workers", "1", "--shard-size", str(shard), "--quiet", *more, *extra]


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def local_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def remote_files(url: str) -> dict[str, bytes]:
    loc = Location(url)
    return {name: (loc / name).read_bytes() for name, _ in loc.find()}


def stable(run_json: bytes) -> dict:
    doc = json.loads(run_json)
    return {k: v for k, v in doc.items() if k not in VOLATILE_RUN_KEYS}


def assert_same_report(remote: dict[str, bytes], local: dict[str, bytes]) -> None:
    """Every object has the local file's bytes (run.json: but for timing and execution)."""
    assert sorted(remote) == sorted(local)
    assert any(name.startswith("items/part-") for name in local) and "manifest.parquet" in local
    for name in local:
        if name == "run.json":
            assert stable(remote[name]) == stable(local[name])
        else:
            assert remote[name] == local[name], name


@pytest.fixture(scope="module")
def references(data, tmp_path_factory) -> dict[str, Path]:
    """Each job's report written to a local folder: what the S3 reports must equal."""
    base = tmp_path_factory.mktemp("sreport-ref")
    refs = {}
    for job in ("validate", "coverage", "evaluate", "scan"):
        refs[job] = base / job
        assert cli(*job_args(job, data, str(refs[job]))) in (0, 1)
    return refs


# --------------------------------------------------------------------------- whole reports

@pytest.mark.parametrize("job", ["validate", "coverage", "evaluate", "scan"])
def test_report_on_s3_has_the_bytes_of_a_local_report(job, data, references, s3_bucket, capsys):
    url = f"{s3_bucket}/reports/{job}-1"
    assert cli(*job_args(job, data, url)) in (0, 1)
    assert f"report: {url}" in capsys.readouterr().out
    files = remote_files(url)
    assert LOCK_FILE not in files  # released at the end
    assert_same_report(files, local_files(references[job]))
    assert json.loads(files["run.json"])["status"] == "complete"
    assert folder_state(Location(url)) == "report"


@pytest.mark.parametrize("executor", ["local", "threads", "dask"])
def test_workers_write_their_parts_straight_to_the_url(executor, data, references, s3_bucket):
    """Spawned processes, threads and Dask workers (own processes) all upload their parts."""
    if executor == "dask":
        pytest.importorskip("distributed")
    url = f"{s3_bucket}/{executor}"
    argv = job_args("coverage", data, url, "--executor", executor)
    argv[argv.index("--workers") + 1] = "2"
    assert cli(*argv) == 0
    files = remote_files(url)
    assert_same_report(files, local_files(references["coverage"]))
    assert json.loads(files["run.json"])["execution"]["workers"] == 2


def test_a_run_without_resume_or_overwrite_is_refused_and_overwrite_replaces(data, references, s3_bucket, capsys):
    url = f"{s3_bucket}/r"
    assert cli(*job_args("coverage", data, url)) == 0
    before = remote_files(url)
    # a stray object a resume must not keep, and a run refused without --resume/--overwrite
    (Location(url) / "items" / "part-99999.parquet").write_bytes(b"stale")
    capsys.readouterr()
    assert cli(*job_args("coverage", data, url)) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli(*job_args("coverage", data, url, "--overwrite")) == 0
    after = remote_files(url)
    assert "items/part-99999.parquet" not in after
    assert_same_report(after, local_files(references["coverage"]))
    assert_same_report(after, before)


def test_overwrite_refuses_a_prefix_holding_no_report(data, s3_bucket, capsys):
    url = f"{s3_bucket}/photos"
    (Location(url) / "holiday.jpg").write_bytes(b"not a report")
    assert folder_state(Location(url)) == "foreign"
    for flag in ("--overwrite", "--resume"):
        assert cli(*job_args("coverage", data, url, flag)) == 2
        assert "holds no fastmask report" in capsys.readouterr().err
    assert remote_files(url) == {"holiday.jpg": b"not a report"}  # nothing deleted, nothing added


def test_folder_state_of_prefixes(s3_bucket):
    base = Location(s3_bucket)
    assert folder_state(base / "nothing") == "missing"
    (base / "lockonly" / LOCK_FILE).write_bytes(b"{}")
    assert folder_state(base / "lockonly") == "empty"
    (base / "obj").write_bytes(b"x")
    assert folder_state(base / "obj") == "foreign"  # an object, not a prefix
    (base / "rep" / "run.json").write_bytes(b"{}")
    assert folder_state(base / "rep") == "report"


# --------------------------------------------------------------------------- killed, then resumed

def test_a_killed_engine_run_resumes_byte_identical(s3_bucket, tmp_path):
    """The worker (here: the driver itself, workers=1) dies mid-run; --resume finishes it."""
    sentinel = tmp_path / "crashed"
    url = f"{s3_bucket}/toy"
    code = ("import sys\n"
            "from fastmask.engine import run_job\n"
            "from fastmask.engine.testing import CrashOnceJob, toy_manifest\n"
            "run_job(CrashOnceJob(23, sys.argv[2]), toy_manifest(50), sys.argv[1], workers=1, shard_size=5, quiet=True)\n")
    proc = subprocess.run([sys.executable, "-c", code, url, str(sentinel)], capture_output=True, timeout=300)
    assert proc.returncode == 17, proc.stderr.decode()  # died at item 23: shards 0..3 are done
    out = Location(url)
    assert done_shards(out, 10) == {0, 1, 2, 3}
    assert json.loads((out / "run.json").read_bytes())["status"] == "running"
    assert (out / LOCK_FILE).is_file()  # left by the dead run: stale (its pid is gone from this host)

    result = run_job(CrashOnceJob(23, str(sentinel)), toy_manifest(50), url, workers=1, shard_size=5, quiet=True,
                     resume=True)
    assert result.skipped_shards == 4 and result.processed_items == 30
    ref = tmp_path / "ref"
    run_job(CrashOnceJob(23, str(sentinel)), toy_manifest(50), ref, workers=1, shard_size=5, quiet=True)
    assert_same_report(remote_files(url), local_files(ref))


def test_a_cli_run_killed_mid_way_resumes_byte_identical(data, references, s3_bucket):
    for attempt in range(3):  # a loaded machine may let the run finish before the kill lands: again
        url = f"{s3_bucket}/killed-{attempt}"
        argv = job_args("validate", data, url, shard=1)  # 40 shards: still running when killed
        proc = subprocess.Popen([sys.executable, "-m", "fastmask", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        out = Location(url)
        deadline = time.monotonic() + 240
        while len(done_shards(out, N)) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stderr.close()
        done = done_shards(out, N)
        if not (proc.returncode == 0 and len(done) == N):
            break
    assert proc.returncode == -signal.SIGKILL and 3 <= len(done) < N, (proc.returncode, len(done))
    assert cli(*argv, "--resume") == 0
    ref = references["validate"].parent / "validate-shard1"
    if not ref.exists():
        assert cli(*job_args("validate", data, str(ref), shard=1)) == 0
    assert_same_report(remote_files(url), local_files(ref))
    assert json.loads((out / "run.json").read_bytes())["timing"]["skipped_shards"] == len(done)


def _default_sigint() -> None:
    # The command starts as a user's shell starts it: SIGINT at its default and not blocked,
    # whatever an earlier in-process test (Dask clusters, executors) left in this process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_is_exit_3_with_the_url_in_its_line_and_resumes(data, references, s3_bucket):
    for attempt in range(3):  # a loaded machine may let the run finish before the signal lands: again
        url = f"{s3_bucket}/interrupted-{attempt}"
        argv = job_args("coverage", data, url, shard=1)
        proc = subprocess.Popen([sys.executable, "-m", "fastmask", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_default_sigint)
        out = Location(url)
        deadline = time.monotonic() + 240
        while not done_shards(out, N) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
        err = proc.stderr.read().decode()
        proc.stderr.close()
        if not (code == 0 and len(done_shards(out, N)) == N):
            break
    assert code == 3, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"finished shards are kept in {url}; rerun with --resume" in lines[0], err
    assert json.loads((out / "run.json").read_bytes())["status"] == "stopped"
    assert not (out / LOCK_FILE).exists()  # released on the way out
    assert cli(*argv, "--resume") == 0
    ref = references["coverage"].parent / "coverage-shard1"
    if not ref.exists():
        assert cli(*job_args("coverage", data, str(ref), shard=1)) == 0
    assert_same_report(remote_files(url), local_files(ref))


def test_resume_lists_the_markers_once(s3_bucket, monkeypatch):
    """One paged listing of _shards/ decides which shards are done (no request per shard)."""
    url = f"{s3_bucket}/listing"
    run_job(ToyJob(), toy_manifest(30), url, workers=1, shard_size=3, quiet=True)
    (Location(url) / "_shards" / "00004.json").unlink()
    fs = Location(url).fs[0]
    calls = {"find": 0, "cat_file": 0, "exists": 0, "info": 0}
    for name in list(calls):
        real = getattr(fs, name)

        def counted(*a, _real=real, _name=name, **k):
            if "_shards" in str(a[0] if a else "") and not str(a[0]).endswith(LOCK_FILE):
                calls[_name] += 1
            return _real(*a, **k)
        monkeypatch.setattr(fs, name, counted)
    assert done_shards(Location(url), 10) == set(range(10)) - {4}
    assert calls == {"find": 1, "cat_file": 0, "exists": 0, "info": 0}
    monkeypatch.undo()
    result = run_job(ToyJob(), None, url, workers=1, quiet=True, resume=True)
    assert result.skipped_shards == 9 and result.processed_items == 3


# --------------------------------------------------------------------------- the lock

def test_a_lock_held_refuses_a_second_run_naming_the_owner(data, s3_bucket, capsys):
    url = f"{s3_bucket}/locked"
    lock = acquire_folder_lock(url, command="fastmask validate (the holder)")
    try:
        assert isinstance(lock, ObjectFolderLock) and lock.conditional
        assert cli(*job_args("coverage", data, url)) == 2
        err = capsys.readouterr().err
        assert "in use by another fastmask run" in err and "(the holder)" in err and "lease runs until" in err
        with pytest.raises(FolderLockedError, match="still running on this machine"):
            acquire_folder_lock(url, force=True)  # --force-unlock never takes a live local run's lock
    finally:
        lock.release()
    assert not (Location(url) / LOCK_FILE).exists()
    assert cli(*job_args("coverage", data, url)) == 0


def test_two_creates_at_once_give_one_lock(s3_bucket):
    """The conditional create decides a race: of many lockers started together, one wins."""
    from concurrent.futures import ThreadPoolExecutor

    url = f"{s3_bucket}/race"

    def take(_):
        try:
            return ObjectFolderLock(Location(url), lease=60).acquire()
        except FolderLockedError:
            return None

    with ThreadPoolExecutor(8) as pool:
        got = [lk for lk in pool.map(take, range(8)) if lk is not None]
    assert len(got) == 1
    owner = json.loads((Location(url) / LOCK_FILE).read_bytes())
    assert owner["token"] == got[0].info["token"]
    got[0].release()


def test_a_lock_past_its_lease_is_taken_over_with_a_warning(s3_bucket, caplog):
    url = f"{s3_bucket}/lease"
    old = ObjectFolderLock(Location(url), command="the old run", lease=0.5)
    old.info["host"] = "another-host"  # not provably dead: only the lease can free it
    old.acquire()
    old._stop.set()  # the old owner stops refreshing (cut off, or gone)
    with pytest.raises(FolderLockedError, match="another-host"):
        ObjectFolderLock(Location(url), lease=60).acquire()
    time.sleep(0.8)
    new = ObjectFolderLock(Location(url), lease=60).acquire()
    assert new.took_over["command"] == "the old run"
    assert "its lease ended" in caplog.text
    with pytest.raises(LockLostError):  # the old owner finds out at its next refresh and stops
        old.refresh()
    old.release()  # not its lock any more: left alone
    assert json.loads((Location(url) / LOCK_FILE).read_bytes())["token"] == new.info["token"]
    new.release()
    assert not (Location(url) / LOCK_FILE).exists()


def test_the_owner_refreshes_its_lease(s3_bucket):
    url = f"{s3_bucket}/refresh"
    lock = ObjectFolderLock(Location(url), lease=0.6).acquire()
    try:
        first = json.loads((Location(url) / LOCK_FILE).read_bytes())["expires_epoch"]
        time.sleep(1.0)  # the background refresh runs every lease/3
        later = json.loads((Location(url) / LOCK_FILE).read_bytes())["expires_epoch"]
        assert later > first
        with pytest.raises(FolderLockedError):
            ObjectFolderLock(Location(url), lease=60).acquire()  # still alive: refused
    finally:
        lock.release()


def test_force_unlock_takes_a_lock_from_another_host(data, references, s3_bucket, caplog):
    url = f"{s3_bucket}/forced"
    other = ObjectFolderLock(Location(url), command="elsewhere", lease=3600)
    other.info["host"] = "another-host"
    other.acquire()
    other._stop.set()
    assert cli(*job_args("coverage", data, url)) == 2
    assert cli(*job_args("coverage", data, url, "--force-unlock")) == 0
    assert "forced by --force-unlock" in caplog.text
    assert_same_report(remote_files(url), local_files(references["coverage"]))


def test_a_lock_of_a_dead_local_run_is_taken_over(s3_bucket, caplog):
    url = f"{s3_bucket}/dead"
    code = ("import sys, os\n"
            "from fastmask.engine.lock import acquire_folder_lock\n"
            "acquire_folder_lock(sys.argv[1], command='the dead run')\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, url], check=True, timeout=120)
    lock = acquire_folder_lock(url)
    assert lock.took_over["command"] == "the dead run" and "the run that held it is gone" in caplog.text
    lock.release()


# --------------------------------------------------------------------------- fastmask report

def test_fastmask_report_reads_and_writes_at_the_url(data, s3_bucket, tmp_path, capsys):
    url = f"{s3_bucket}/page"
    assert cli(*job_args("validate", data, url)) == 0
    capsys.readouterr()
    assert cli("report", url, "--charts", "html", "--max-thumbnails", "2") == 0
    assert f"report page: {url}/report.html" in capsys.readouterr().out
    remote = (Location(url) / "report.html").read_text()
    # the same report copied to a local folder renders the same page, but for the folder's name
    copy = tmp_path / "copy"
    for name, body in remote_files(url).items():
        if name != "report.html":
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes(body)
    assert cli("report", copy, "--charts", "html", "--max-thumbnails", "2") == 0
    assert remote.replace(url, "FOLDER") == (copy / "report.html").read_text().replace(str(copy), "FOLDER")
    assert "Findings" in remote and 'id="thumbnails"' in remote and "<img" in remote


def test_plots_are_written_into_the_url(data, s3_bucket):
    pytest.importorskip("matplotlib")
    from fastmask import plots

    url = f"{s3_bucket}/plots"
    assert cli(*job_args("coverage", data, url, "--plots")) == 0
    names = sorted(name for name, _ in (Location(url) / "plots").find())
    assert names and all(n.endswith(".png") for n in names)
    assert (Location(url) / "plots" / names[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in plots.write_plots(url)) == names


def test_a_missing_bucket_is_exit_2_with_one_line(data, s3_server, capsys):
    assert cli(*job_args("coverage", data, "s3://fastmask-no-such-bucket/r")) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "cannot write the report to s3://fastmask-no-such-bucket/r" in err[0], err


def test_without_conditional_writes_the_lock_is_best_effort(s3_bucket, monkeypatch, caplog):
    """A store whose writes take no condition: create-then-read-back, and a warning says so."""
    url = f"{s3_bucket}/plain"
    fs = Location(url).fs[0]
    real = fs.pipe_file

    def plain_put(path, data, mode="overwrite", **kwargs):
        if mode == "create" or "IfMatch" in kwargs:
            raise TypeError("conditional writes are not supported here")
        return real(path, data, **kwargs)

    monkeypatch.setattr(fs, "pipe_file", plain_put)
    lock = ObjectFolderLock(Location(url), lease=60).acquire()
    assert not lock.conditional and "best effort" in caplog.text
    with pytest.raises(FolderLockedError, match="in use by another fastmask run"):
        ObjectFolderLock(Location(url), lease=60).acquire()
    lock.refresh()  # still ours: rewritten
    (Location(url) / LOCK_FILE).write_bytes(b'{"token": "someone else", "host": "h", "pid": 1}')
    with pytest.raises(LockLostError):
        lock.refresh()
    lock.release()
    assert (Location(url) / LOCK_FILE).is_file()  # not ours: left alone
