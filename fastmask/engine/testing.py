"""Toy jobs for the engine's tests and benchmarks.

They live in the package (not in ``tests/``) so that spawned worker processes and Dask
workers can unpickle them by import, exactly like real jobs.

Example::

    from fastmask.engine.testing import ToyJob, toy_manifest
    run_job(ToyJob(), toy_manifest(100), "out/", workers=2)
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa

from .job import ItemError, ItemResult, Job, ShardResult


def toy_manifest(n: int, *, start: int = 0, shuffle: bool = True) -> pa.Table:
    """``n`` items ``item-000000``... with an integer column ``n``; shuffled (deterministically)
    so the engine's sorting is exercised."""
    order = list(range(start, start + n))
    if shuffle:
        order = order[1::2] + order[0::2][::-1]
    return pa.table({"item_id": pa.array([f"item-{i:06d}" for i in order], pa.string()),
                     "n": pa.array(order, pa.int64())})


class ToyJob(Job):
    """Squares ``n``; fails on purpose so every engine path is used.

    * ``n % 7 == 3``  -> ``ItemError("bad_item")`` (with a finding attached)
    * ``n % 11 == 5`` -> ``ValueError`` (becomes ``internal_error``)
    * otherwise ``n % 3`` findings rows.
    """

    name = "toy"
    item_schema = pa.schema([("value", pa.int64()), ("label", pa.string())])
    tables = {"findings": pa.schema([("rule", pa.string()), ("severity", pa.string()), ("message", pa.string())])}

    def __init__(self, salt: int = 0, sleep: float = 0.0):
        self.salt = salt
        self.sleep = sleep

    def prepare(self) -> None:
        self._pid_prepared = os.getpid()

    def process(self, item):
        if self.sleep:
            time.sleep(self.sleep)
        n = item["n"]
        if n % 7 == 3:
            raise ItemError("bad_item", f"item {n} is bad on purpose",
                            rows={"findings": [{"rule": "bad", "severity": "error", "message": f"n={n}"}]})
        if n % 11 == 5:
            raise ValueError(f"unexpected crash at {n}")
        rows = [{"rule": f"r{k}", "severity": "warning", "message": f"{n}/{k}"} for k in range(n % 3)]
        return ItemResult({"value": n * n + self.salt, "label": f"L{n % 5}"}, {"findings": rows})

    def reduce_shard(self, shard: ShardResult) -> dict:
        values = shard.items.column("value").to_pylist()
        return {"sum": sum(v for v in values if v is not None), "findings": shard.tables["findings"].num_rows,
                "by_label": {str(k): 1 for k in shard.items.column("label").to_pylist() if k}}

    def finalize(self, summaries):
        return {"sum": sum(s["sum"] for s in summaries), "findings": sum(s["findings"] for s in summaries),
                "labels": sorted({k for s in summaries for k in s["by_label"]})}


class CrashOnceJob(ToyJob):
    """A :class:`ToyJob` whose worker process dies (``os._exit``) at ``crash_n``, once:
    it leaves ``sentinel`` behind, so the next run goes through."""

    name = "toy"

    def __init__(self, crash_n: int, sentinel: str, salt: int = 0):
        super().__init__(salt)
        self.crash_n = crash_n
        self.sentinel = sentinel

    def arguments(self):
        return {"salt": self.salt, "sleep": self.sleep}  # same report as ToyJob

    def process(self, item):
        if item["n"] == self.crash_n and not Path(self.sentinel).exists():
            Path(self.sentinel).touch()
            os._exit(17)
        return super().process(item)


class BadSchemaJob(ToyJob):
    """Returns a string where an integer is declared for ``n % 4 == 1``, and an undeclared
    field for ``n % 4 == 2``: those items must become ``internal_error`` rows."""

    def process(self, item):
        result = super().process(item)
        if item["n"] % 4 == 1:
            result.fields["value"] = "not a number"
        elif item["n"] % 4 == 2:
            result.fields["surprise"] = 1
        return result


class NullJob(Job):
    """Does nothing per item except, optionally, emit ``payload`` bytes of findings text
    (used to show that the driver's memory does not grow with the number of items)."""

    name = "null"
    item_schema = pa.schema([("n", pa.int64())])
    tables = {"notes": pa.schema([("text", pa.string())])}

    def __init__(self, payload: int = 0):
        self.payload = payload

    def process(self, item):
        rows = [{"text": "x" * self.payload}] if self.payload else []
        return ItemResult({"n": item["n"]}, {"notes": rows})


class PrepareProbeJob(Job):
    """Records in every row which process ran it and which process ran ``prepare()``
    on this job object: they must match in every worker."""

    name = "probe"
    item_schema = pa.schema([("pid", pa.int64()), ("prepared_pid", pa.int64())])

    def prepare(self) -> None:
        self._prepared_pid = os.getpid()

    def process(self, item):
        return ItemResult({"pid": os.getpid(), "prepared_pid": getattr(self, "_prepared_pid", None)})


class EnvProbeJob(Job):
    """Records the thread-count environment variables each worker process sees."""

    name = "env_probe"
    item_schema = pa.schema([("pid", pa.int64()), ("openblas", pa.string()), ("omp", pa.string())])

    def process(self, item):
        return ItemResult({"pid": os.getpid(), "openblas": os.environ.get("OPENBLAS_NUM_THREADS"),
                           "omp": os.environ.get("OMP_NUM_THREADS")})


class ThreadProbeJob(Job):
    """Starts, in ``prepare()``, a non-daemon thread that writes ``<folder>/thread-<pid>.txt``
    after a delay: a worker must not exit before such a thread is done."""

    name = "thread_probe"
    item_schema = pa.schema([("pid", pa.int64())])

    def __init__(self, folder: str, delay: float = 0.5):
        self.folder, self.delay = folder, delay

    def prepare(self) -> None:
        import threading
        import time

        def write_later(path=f"{self.folder}/thread-{os.getpid()}.txt"):
            time.sleep(self.delay)
            with open(path, "w") as f:
                f.write("done\n")

        threading.Thread(target=write_later).start()

    def process(self, item):
        return ItemResult({"pid": os.getpid()})
