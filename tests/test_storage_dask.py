"""A Dask cluster without a shared disk: datasets and reports at ``s3://`` only.

The cluster's two worker processes each run in their own temporary folder, with their own
``$FASTMASK_CACHE``, ``$HOME`` and ``$TMPDIR``, and an audit hook records every file they
open, list, create or rename under the driver's private folders (its working folder, its
cache, the local copy of the data): a worker that needed a path only the driver can see
would show up there. The reports a ``--scheduler`` run writes to S3 have the bytes of the
same dataset validated in one local process; a worker killed mid-run is replaced and the
run still ends with that report.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from fastmask.cli import main
from fastmask.engine import VOLATILE_RUN_KEYS
from fastmask.engine.sink import done_shards
from fastmask.sample import make_sample
from fastmask.storage import Location

pytest.importorskip("s3fs")
pytest.importorskip("moto")
distributed = pytest.importorskip("distributed")


class _PrivateWorkerDirs(distributed.WorkerPlugin):
    """Each worker process: its own folder (cwd, cache, home, temp) and an audit hook that
    records file-system calls under ``forbidden`` (the driver's private paths)."""

    name = "fastmask-private-dirs"

    def __init__(self, base: str, forbidden: list[str]):
        self.base, self.forbidden = base, forbidden

    def setup(self, worker):
        import tempfile

        d = tempfile.mkdtemp(prefix="worker-", dir=self.base)
        for sub in ("cache", "home", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.environ.update(FASTMASK_CACHE=os.path.join(d, "cache"), HOME=os.path.join(d, "home"),
                          TMPDIR=os.path.join(d, "tmp"))
        os.environ.pop("XDG_CACHE_HOME", None)
        tempfile.tempdir = None  # re-read TMPDIR
        os.chdir(d)
        touched = sys.modules[__name__].__dict__.setdefault("TOUCHED", [])
        forbidden = tuple(self.forbidden)

        def hook(event, args):
            if event in ("open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.remove",
                         "shutil.rmtree", "os.chdir") and args:
                path = args[0]
                if isinstance(path, bytes):
                    path = os.fsdecode(path)
                if isinstance(path, str) and os.path.abspath(path).startswith(forbidden):
                    touched.append((event, path))

        if not getattr(sys, "_fastmask_test_hook", False):
            sys.addaudithook(hook)
            sys._fastmask_test_hook = True
        worker.fastmask_dir = d


def _worker_facts(dask_worker):
    """(folder, paths under the driver's private folders it touched) of one worker."""
    mod = sys.modules.get(__name__)
    return getattr(dask_worker, "fastmask_dir", None), list(getattr(mod, "TOUCHED", []))


@pytest.fixture(scope="module")
def driver_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("dask-driver")
    dirs = {"cwd": base / "cwd", "cache": base / "cache", "data": base / "data", "canary": base / "canary"}
    for d in dirs.values():
        d.mkdir()
    return dirs


@pytest.fixture(scope="module")
def cluster(s3_server, driver_dirs, tmp_path_factory):
    """A LocalCluster of two single-threaded worker processes in private folders; yields the Client."""
    from distributed import Client, LocalCluster

    base = tmp_path_factory.mktemp("dask-workers")
    cl = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50)
    client = Client(cl)
    try:
        client.register_plugin(_PrivateWorkerDirs(str(base), [str(p) for p in driver_dirs.values()]))
        client.wait_for_workers(2, timeout=120)
        yield client
    finally:
        try:
            client.close()
        finally:
            cl.close()


@pytest.fixture
def as_driver(driver_dirs, monkeypatch):
    """The test process as the driver: its own working folder and COCO cache."""
    monkeypatch.chdir(driver_dirs["cwd"])
    monkeypatch.setenv("FASTMASK_CACHE", str(driver_dirs["cache"]))


@pytest.fixture(scope="module")
def datasets(driver_dirs, s3_server):
    """The sample's VOC folder and COCO JSON, uploaded to a bucket; the local copy stays private."""
    import fsspec

    info = make_sample(driver_dirs["data"] / "sample")
    bucket = "s3://fastmask-dask-" + os.urandom(4).hex()
    fsspec.filesystem("s3").mkdir(bucket[5:])
    for p in sorted(info.voc.rglob("*")):
        if p.is_file() and not p.is_symlink():
            (Location(bucket) / "voc" / p.relative_to(info.voc).as_posix()).write_bytes(p.read_bytes())
    (Location(bucket) / "coco" / "instances_val.json").write_bytes(info.coco.read_bytes())
    return {"bucket": bucket, "voc": f"{bucket}/voc", "coco": f"{bucket}/coco/instances_val.json"}


def remote_files(url: str) -> dict[str, bytes]:
    loc = Location(url)
    return {name: (loc / name).read_bytes() for name, _ in loc.find()}


def local_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def assert_same_report(remote: dict[str, bytes], local: dict[str, bytes]) -> None:
    assert sorted(remote) == sorted(local)
    assert any(n.startswith("items/part-") for n in local) and "manifest.parquet" in local
    for name in local:
        if name == "run.json":
            a, b = json.loads(remote[name]), json.loads(local[name])
            assert {k: v for k, v in a.items() if k not in VOLATILE_RUN_KEYS} == \
                {k: v for k, v in b.items() if k not in VOLATILE_RUN_KEYS}
        else:
            assert remote[name] == local[name], name


def validate(dataset: str, out: str, *extra) -> int:
    return main(["validate", dataset, "--out", out, "--fail-on", "never", "--quiet", "--shard-size", "1", *extra])


def reference(dataset: str, tmp_path: Path) -> dict[str, bytes]:
    """The report of one local process (the driver itself) on the same dataset."""
    out = tmp_path / "reference"
    assert validate(dataset, str(out), "--workers", "1") == 0
    return local_files(out)


def _open_canary(path):
    with open(path, "w") as f:
        f.write("x")


def assert_workers_kept_to_themselves(client, canary: Path) -> None:
    # the hook works: a file a worker writes in a private folder of the driver is recorded
    client.run(_open_canary, str(canary / "seen"))
    facts = client.run(_worker_facts)
    assert len(facts) == 2
    for addr, (folder, touched) in facts.items():
        assert folder and os.getcwd() != folder
        assert ("open", str(canary / "seen")) in touched
        assert [t for t in touched if not t[1].startswith(str(canary))] == [], (addr, touched[:5])


@pytest.mark.parametrize("layout", ["voc", "coco"])
def test_scheduler_run_reads_and_writes_s3_only(layout, cluster, datasets, as_driver, driver_dirs, tmp_path):
    address = cluster.scheduler.address
    url = f"{datasets['bucket']}/reports/{layout}"
    # the command of the storage guide: fastmask validate s3://... --out s3://... --executor dask --scheduler tcp://...
    assert validate(datasets[layout], url, "--executor", "dask", "--scheduler", address) == 0
    files = remote_files(url)
    doc = json.loads(files["run.json"])
    assert doc["status"] == "complete" and doc["execution"]["executor"] == "dask"
    assert doc["execution"]["workers"] == 2
    assert_same_report(files, reference(datasets[layout], tmp_path))
    assert_workers_kept_to_themselves(cluster, driver_dirs["canary"])
    if layout == "coco":  # each worker that read items parsed the JSON into its own cache
        folders = [f for f, _ in cluster.run(_worker_facts).values()]
        built = [f for f in folders if list(Path(f, "cache", "coco").glob("*/meta.json"))]
        assert built, folders


def test_a_worker_killed_mid_run(cluster, datasets, as_driver, tmp_path):
    """One worker process dies after the first shards are done: the scheduler hands its shard
    to the other worker (a nanny restarts the dead one) and the run ends with the report of an
    uninterrupted run; when the loss stops the run instead (exit 3), --resume finishes it."""
    address = cluster.scheduler.address
    url = f"{datasets['bucket']}/reports/killed"
    out = Location(url)
    result: dict = {}

    def run():
        result["code"] = validate(datasets["voc"], url, "--scheduler", address)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 300
    while not result and not done_shards(out, 10_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = sorted(cluster.scheduler_info()["workers"])[0]
    killed = not result
    if killed:
        try:
            cluster.run(os._exit, 1, workers=[victim], wait=False)
        except Exception:  # noqa: BLE001 - the worker dies while answering
            pass
    t.join(timeout=600)
    assert not t.is_alive()
    code = result["code"]
    assert code in (0, 3), code
    if code == 3:
        assert validate(datasets["voc"], url, "--scheduler", address, "--resume") == 0
    assert killed, "the run ended before a shard was done: nothing was killed"
    cluster.wait_for_workers(2, timeout=120)
    assert_same_report(remote_files(url), reference(datasets["voc"], tmp_path))
    print(f"worker killed mid-run: exit code {code}")
