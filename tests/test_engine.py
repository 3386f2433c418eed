"""Engine: every item once, error rows, determinism across executors/shard sizes, report layout,
refusals, progress, CLI options. Resume and kill tests are in test_engine_resume.py."""
from __future__ import annotations

import argparse
import io
import json
import pickle
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastmask.engine import (
    VOLATILE_RUN_KEYS,
    EngineError,
    ItemError,
    ItemResult,
    ManifestError,
    OutputExistsError,
    OutputNotWritableError,
    UsageError,
    add_engine_arguments,
    engine_options_from_args,
    load_report_table,
    run_job,
)
from fastmask.engine.manifest import shard_slice
from fastmask.engine.progress import Progress
from fastmask.engine.testing import (
    BadSchemaJob,
    EnvProbeJob,
    NullJob,
    PrepareProbeJob,
    ThreadProbeJob,
    ToyJob,
    toy_manifest,
)

N = 300
SHARD = 50


def part_bytes(out: Path) -> dict[str, bytes]:
    """Every visible part file of a report, by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/part-*.parquet"))}


def stable_run_json(out: Path, drop: tuple[str, ...] = ()) -> dict:
    doc = json.loads((out / "run.json").read_text())
    for key in VOLATILE_RUN_KEYS + drop:
        doc.pop(key, None)
    return doc


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """ToyJob over 300 items, shards of 50, run in-process: the report others must equal."""
    out = tmp_path_factory.mktemp("ref") / "report"
    run_job(ToyJob(), toy_manifest(N), out, shard_size=SHARD, workers=1, quiet=True)
    return out


def expected_row(n: int) -> dict:
    if n % 7 == 3:
        return {"status": "error", "error_code": "bad_item", "error_message": f"item {n} is bad on purpose",
                "value": None, "label": None}
    if n % 11 == 5:
        return {"status": "error", "error_code": "internal_error",
                "error_message": f"ValueError: unexpected crash at {n}", "value": None, "label": None}
    return {"status": "ok", "error_code": None, "error_message": None, "value": n * n, "label": f"L{n % 5}"}


def test_every_item_exactly_once_with_error_rows(reference):
    items = load_report_table(reference, "items")
    ids = items.column("item_id").to_pylist()
    assert ids == sorted(toy_manifest(N).column("item_id").to_pylist())  # all, once, sorted
    for row in items.to_pylist():
        n = int(row.pop("item_id").split("-")[1])
        assert row == expected_row(n), n
    assert items.schema.names == ["item_id", "status", "error_code", "error_message", "value", "label"]
    assert not items.schema.field("item_id").nullable and not items.schema.field("status").nullable

    findings = load_report_table(reference, "findings")
    want = []
    for n in range(N):
        if n % 7 == 3:
            want.append((f"item-{n:06d}", "bad", "error", f"n={n}"))  # rows attached to an ItemError
        elif n % 11 != 5:
            want += [(f"item-{n:06d}", f"r{k}", "warning", f"{n}/{k}") for k in range(n % 3)]
    got = list(zip(*(findings.column(c).to_pylist() for c in ["item_id", "rule", "severity", "message"])))
    assert got == want

    doc = json.loads((reference / "run.json").read_text())
    n_bad = sum(1 for n in range(N) if n % 7 == 3)
    n_internal = sum(1 for n in range(N) if n % 7 != 3 and n % 11 == 5)
    assert doc["counts"] == {"items": N, "ok": N - n_bad - n_internal, "error": n_bad + n_internal,
                             "error_codes": {"bad_item": n_bad, "internal_error": n_internal}}
    assert doc["status"] == "complete" and doc["job"] == "toy" and doc["arguments"] == {"salt": 0, "sleep": 0.0}
    assert doc["tables"] == {"items": {"rows": N, "parts": N // SHARD},
                             "findings": {"rows": len(want), "parts": N // SHARD}}
    ok_values = [expected_row(n)["value"] for n in range(N) if expected_row(n)["status"] == "ok"]
    assert doc["summary"] == {"sum": sum(ok_values), "findings": len(want), "labels": ["L0", "L1", "L2", "L3", "L4"]}
    assert doc["shard_size"] == SHARD and doc["shards"] == N // SHARD
    assert doc["execution"] == {"executor": "local", "workers": 1, "scheduler": None}
    assert doc["timing"]["processed_items"] == N and doc["timing"]["items_per_second"] > 0


def test_layout_one_sorted_part_per_shard_and_table(reference):
    names = sorted(p.name for p in reference.iterdir())
    assert names == ["_shards", "findings", "items", "manifest.parquet", "run.json"]
    for table in ("items", "findings"):
        parts = sorted(p.name for p in (reference / table).iterdir())
        assert parts == [f"part-{i:05d}.parquet" for i in range(N // SHARD)]  # nothing else (no temp files)
        for i, name in enumerate(parts):
            ids = pq.read_table(reference / table / name).column("item_id").to_pylist()
            assert ids == sorted(ids)
            if table == "items":  # part i holds exactly shard i of the sorted manifest
                assert ids == [f"item-{n:06d}" for n in range(i * SHARD, (i + 1) * SHARD)]
    assert pq.read_table(reference / "manifest.parquet").column("item_id").to_pylist() == [
        f"item-{n:06d}" for n in range(N)]
    # The whole folder reads as a dataset with the usual tools' conventions.
    import pyarrow.dataset as ds

    assert ds.dataset(reference / "items", format="parquet").count_rows() == N


def test_read_part_reads_what_read_table_reads(reference):
    from fastmask.engine.sink import read_part

    for table in ("items", "findings"):
        for part in sorted((reference / table).glob("part-*.parquet")):
            assert read_part(part).equals(pq.read_table(part))
            cols = pq.read_table(part).column_names[:2]
            assert read_part(part, cols).equals(pq.read_table(part, columns=cols))
    assert load_report_table(reference).num_rows == N
    with pytest.raises(FileNotFoundError):
        read_part(reference / "items" / "part-99999.parquet")


@pytest.mark.parametrize("executor,workers", [("local", 2), ("threads", 2)])
def test_parts_byte_identical_across_workers(reference, tmp_path, executor, workers):
    out = tmp_path / "r"
    run_job(ToyJob(), toy_manifest(N), out, shard_size=SHARD, executor=executor, workers=workers, quiet=True)
    assert part_bytes(out) == part_bytes(reference)
    assert stable_run_json(out) == stable_run_json(reference)


@pytest.mark.parametrize("shard_size", [1, 37, 1000])
def test_tables_independent_of_shard_size(reference, tmp_path, shard_size):
    out = tmp_path / "r"
    r = run_job(ToyJob(), toy_manifest(N), out, shard_size=shard_size, workers=2 if shard_size == 37 else 1, quiet=True)
    assert r.n_shards == -(-N // shard_size)
    for table in ("items", "findings"):
        assert load_report_table(out, table).equals(load_report_table(reference, table))
    a, b = stable_run_json(out), stable_run_json(reference)
    for doc in (a, b):
        del doc["shard_size"], doc["shards"], doc["resume_key"]["shard_size"]
        for t in doc["tables"].values():
            del t["parts"]
    assert a == b


def test_dask_local_cluster_report_equals_local(reference, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "r"
    r = run_job(ToyJob(), toy_manifest(N), out, shard_size=SHARD, executor="dask", workers=2, quiet=True)
    assert r.execution["executor"] == "dask" and r.execution["workers"] == 2
    assert part_bytes(out) == part_bytes(reference)
    assert stable_run_json(out) == stable_run_json(reference)


def test_prepare_runs_in_driver_and_in_every_worker(tmp_path):
    import os

    job = PrepareProbeJob()
    run_job(job, toy_manifest(40), tmp_path / "r", shard_size=5, workers=2, quiet=True)
    assert job._prepared_pid == os.getpid()  # the driver prepared before workers started
    items = load_report_table(tmp_path / "r")
    pids = items.column("pid").to_pylist()
    assert os.getpid() not in pids  # really ran in worker processes...
    assert pids == items.column("prepared_pid").to_pylist()  # ...each of which prepared its own copy


def test_workers_get_one_blas_thread_unless_the_user_chose(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice is kept
    run_job(EnvProbeJob(), toy_manifest(20), tmp_path / "r", shard_size=5, workers=2, quiet=True)
    items = load_report_table(tmp_path / "r")
    assert os.getpid() not in items.column("pid").to_pylist()
    assert set(items.column("openblas").to_pylist()) == {"1"}
    assert set(items.column("omp").to_pylist()) == {"3"}
    assert "OPENBLAS_NUM_THREADS" not in os.environ  # the driver's environment is unchanged


def test_workers_wait_for_threads_a_job_started(tmp_path):
    # workers skip the interpreter's teardown when they are let go, but not while a
    # (non-daemon) thread started by the job is still running
    folder = tmp_path / "threads"
    folder.mkdir()
    run_job(ThreadProbeJob(str(folder)), toy_manifest(20), tmp_path / "r", shard_size=5, workers=2, quiet=True)
    pids = set(load_report_table(tmp_path / "r").column("pid").to_pylist())
    assert {p.name for p in folder.iterdir()} >= {f"thread-{pid}.txt" for pid in pids}


def test_results_not_fitting_the_schema_become_internal_errors(tmp_path):
    run_job(BadSchemaJob(), toy_manifest(60), tmp_path / "r", shard_size=25, workers=1, quiet=True)
    for row in load_report_table(tmp_path / "r").to_pylist():
        n = int(row["item_id"].split("-")[1])
        base = expected_row(n)
        if base["status"] == "ok" and n % 4 == 1:
            assert row["error_code"] == "internal_error" and "does not fit the job's schema" in row["error_message"]
        elif base["status"] == "ok" and n % 4 == 2:
            assert row["error_code"] == "internal_error" and "surprise" in row["error_message"]
        else:
            assert row["status"] == base["status"] and row["value"] == base["value"], n
    findings_ids = set(load_report_table(tmp_path / "r", "findings").column("item_id").to_pylist())
    assert not any(int(i.split("-")[1]) % 4 in (1, 2) and int(i.split("-")[1]) % 7 != 3 for i in findings_ids)


def test_empty_tables_and_empty_manifest_still_get_parts_with_schema(tmp_path):
    r = run_job(NullJob(), toy_manifest(30), tmp_path / "a", shard_size=10, workers=1, quiet=True)
    assert r.tables == {"items": 30, "notes": 0}
    notes = sorted((tmp_path / "a" / "notes").glob("part-*.parquet"))
    assert len(notes) == 3 and all(pq.read_table(p).schema.names == ["item_id", "text"] for p in notes)

    empty = toy_manifest(0)
    r = run_job(NullJob(), empty, tmp_path / "b", workers=1, quiet=True)
    assert r.n_items == 0 and r.counts["items"] == 0 and r.n_shards == 1
    items = pq.read_table(tmp_path / "b" / "items" / "part-00000.parquet")
    assert items.num_rows == 0 and items.schema.names == ["item_id", "status", "error_code", "error_message", "n"]


def test_integer_item_ids_sort_numerically(tmp_path):
    manifest = pa.table({"item_id": pa.array([10, 2, 33, 1], pa.int64()), "n": pa.array([10, 2, 33, 1], pa.int64())})
    run_job(NullJob(), manifest, tmp_path / "r", shard_size=3, workers=1, quiet=True)
    items = load_report_table(tmp_path / "r")
    assert items.column("item_id").to_pylist() == [1, 2, 10, 33]
    assert items.schema.field("item_id").type == pa.int64()


@pytest.mark.parametrize("manifest,match", [
    (pa.table({"id": ["a"]}), "no 'item_id' column"),
    (pa.table({"item_id": ["a", "b", "a"], "n": [1, 2, 3]}), "unique.*'a'"),
    (pa.table({"item_id": ["a", None], "n": [1, 2]}), "null item_id"),
    (pa.table({"item_id": [1.5, 2.5], "n": [1, 2]}), "string or integer"),
])
def test_bad_manifests_are_refused(tmp_path, manifest, match):
    with pytest.raises(ManifestError, match=match):
        run_job(NullJob(), manifest, tmp_path / "r", workers=1, quiet=True)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_shard_slices_pickle_small():
    big = toy_manifest(200_000, shuffle=False)
    one = shard_slice(big, 3, 100)
    assert one.column("n").to_pylist() == list(range(300, 400))
    assert len(pickle.dumps(one)) < 20_000  # not the parent's buffers (~3 MB)


def test_existing_folder_refused_without_resume_or_overwrite(reference, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(reference, out)
    with pytest.raises(OutputExistsError, match=r"--resume.*--overwrite") as exc:
        run_job(ToyJob(), toy_manifest(N), out, shard_size=SHARD, workers=1, quiet=True)
    assert exc.value.exit_code == 2
    # overwrite replaces the report (and gives the same one back)
    (out / "items" / "stale.txt").write_text("x")
    run_job(ToyJob(), toy_manifest(N), out, shard_size=SHARD, workers=1, quiet=True, overwrite=True)
    assert not (out / "items" / "stale.txt").exists()
    assert part_bytes(out) == part_bytes(reference)

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(OutputExistsError, match="choose another --out"):
            run_job(ToyJob(), toy_manifest(5), foreign, workers=1, quiet=True, **flags)
    assert (foreign / "holiday.jpg").exists()  # never deleted

    empty = tmp_path / "empty"
    empty.mkdir()
    run_job(ToyJob(), toy_manifest(5), empty, workers=1, quiet=True)  # an empty folder is fine


def test_unwritable_output_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(OutputNotWritableError, match=r"cannot write the report to .*not-a-dir"):
        run_job(ToyJob(), toy_manifest(5), blocker / "report", workers=1, quiet=True)


def test_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not both"):
        run_job(ToyJob(), toy_manifest(5), tmp_path / "r", resume=True, overwrite=True)
    with pytest.raises(UsageError, match="unknown executor"):
        run_job(ToyJob(), toy_manifest(5), tmp_path / "r", executor="spark")
    with pytest.raises(UsageError, match="scheduler needs executor 'dask'"):
        run_job(ToyJob(), toy_manifest(5), tmp_path / "r", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(UsageError, match="workers must be a positive integer"):
        run_job(ToyJob(), toy_manifest(5), tmp_path / "r", workers=0)
    with pytest.raises(EngineError):
        run_job(ToyJob(), None, tmp_path / "r")  # no manifest and nothing to resume


def test_item_error_survives_pickling():
    e = pickle.loads(pickle.dumps(ItemError("code", "msg", fields={"a": 1}, rows={"t": [{"x": 1}]})))
    assert (e.code, e.message, e.fields, e.rows) == ("code", "msg", {"a": 1}, {"t": [{"x": 1}]})


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal_and_not_quiet(monkeypatch, tmp_path, capfd):
    # Under pytest stderr is not a terminal: a normal run prints no bar.
    run_job(ToyJob(), toy_manifest(20), tmp_path / "a", shard_size=5, workers=1)
    assert "item" not in capfd.readouterr().err

    fake = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    p = Progress(100, initial=10, desc="toy")
    assert p.enabled
    p.update(40)
    p.close()
    assert "50/100" in fake.getvalue() and "item/s" in fake.getvalue()

    before = len(fake.getvalue())
    quiet = Progress(100, quiet=True)
    quiet.update(5)
    quiet.close()
    assert not quiet.enabled
    run_job(ToyJob(), toy_manifest(20), tmp_path / "b", shard_size=5, workers=1, quiet=True)
    assert fake.getvalue()[before:] == ""  # quiet wins even on a terminal


def test_engine_arguments_round_trip():
    parser = argparse.ArgumentParser(prog="fastmask validate")
    add_engine_arguments(parser)
    opts = engine_options_from_args(parser.parse_args(
        ["--out", "r", "--resume", "--workers", "3", "--shard-size", "500", "--quiet"]))
    assert opts.run_kwargs() == {"out_dir": "r", "resume": True, "overwrite": False, "executor": "local",
                                 "scheduler": None, "workers": 3, "shard_size": 500, "quiet": True,
                                 "force_unlock": False}
    assert engine_options_from_args(parser.parse_args(["--out", "r", "--force-unlock"])).force_unlock
    opts = engine_options_from_args(parser.parse_args(["--out", "r", "--scheduler", "tcp://h:8786"]))
    assert (opts.executor, opts.scheduler) == ("dask", "tcp://h:8786")
    with pytest.raises(UsageError, match="--scheduler needs --executor dask"):
        engine_options_from_args(parser.parse_args(["--out", "r", "--executor", "local", "--scheduler", "tcp://h:1"]))
    for bad in (["--out", "r", "--resume", "--overwrite"], ["--workers", "2"], ["--out", "r", "--workers", "0"],
                ["--out", "r", "--executor", "spark"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(bad)
        assert exc.value.code == 2


def test_options_module_stays_light():
    import subprocess

    code = ("import sys, fastmask.engine.options; "
            "print(any(m.split('.')[0] in ('pyarrow', 'numba', 'distributed') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_job_arguments_and_json_conversion():
    import enum
    import math

    import numpy as np

    from fastmask.engine import Job, to_jsonable
    from fastmask.jobs.base import Job as JobFromJobs

    assert JobFromJobs is Job

    class Mode(enum.Enum):
        STRICT = "strict"

    class J(Job):
        def __init__(self):
            self.root = Path("/data")
            self.mode = Mode.STRICT
            self.ids = (1, np.int64(2))
            self.score = math.nan
            self._cache = object()  # private: not an argument

    assert J().arguments() == {"ids": [1, 2], "mode": "strict", "root": "/data", "score": None}
    assert to_jsonable({1: {3, 1}, "a": np.arange(3)}) == {"1": [1, 3], "a": [0, 1, 2]}

    class Opaque(Job):
        def __init__(self):
            self.model = object()

    with pytest.raises(TypeError, match=r"Opaque.model is not plain data.*override Opaque.arguments\(\)"):
        Opaque().arguments()


def test_job_contract_is_checked_before_running(tmp_path):
    class Clash(NullJob):
        item_schema = pa.schema([("status", pa.string())])

    class BadTable(NullJob):
        tables = {"items": pa.schema([("x", pa.int64())])}

    for job, match in ((Clash(), "engine-owned columns"), (BadTable(), "other than 'items'")):
        with pytest.raises(ValueError, match=match):
            run_job(job, toy_manifest(3), tmp_path / "r", workers=1, quiet=True)
    assert not (tmp_path / "r").exists()


def test_default_shard_size_depends_on_the_number_of_items_only(tmp_path):
    from fastmask.engine import default_shard_size

    assert [default_shard_size(n) for n in (0, 500, 22_000, 64 * 2000, 10**7)] == [100, 100, 344, 2000, 2000]
    r = run_job(NullJob(), toy_manifest(1000), tmp_path / "r", workers=1, quiet=True)
    assert (r.n_shards, json.loads((tmp_path / "r" / "run.json").read_text())["shard_size"]) == (10, 100)


class _ColumnarToyJob(ToyJob):
    """ToyJob giving its findings as columns (every other item), the same rows in the end."""

    def process(self, item):
        n = item["n"]
        try:
            r = super().process(item)
        except ItemError as e:
            if n % 2:
                rows = e.rows["findings"]
                e.rows["findings"] = {k: [row[k] for row in rows] for k in ("rule", "severity", "message")}
            raise
        if n % 2:
            rows = r.rows["findings"]
            # "severity" left out when there are no rows; a column left out is null
            cols = {k: [row[k] for row in rows] for k in ("rule", "severity", "message")} if rows else {"rule": []}
            r.rows["findings"] = cols
        return r


def test_columnar_rows_give_the_same_tables(reference, tmp_path):
    run_job(_ColumnarToyJob(), toy_manifest(N), tmp_path / "c", shard_size=SHARD, workers=1, quiet=True)
    assert part_bytes(tmp_path / "c") == part_bytes(reference)


class _BadColumnsJob(ToyJob):
    def process(self, item):
        n = item["n"]
        bad = [{"rule": ["a", "b"], "message": ["x"]},            # lengths differ
               {"rule": ["a"], "nope": ["x"]},                     # unknown column
               {"rule": "abc"},                                    # not a list
               {"rule": ["a"], "severity": [None], "message": [None]}]  # fine: one row with nulls
        return ItemResult({"value": n}, {"findings": bad[n % 4]})


def test_bad_columnar_rows_become_internal_errors(tmp_path):
    manifest = toy_manifest(8)
    n_of = dict(zip(manifest.column("item_id").to_pylist(), manifest.column("n").to_pylist()))
    run_job(_BadColumnsJob(), manifest, tmp_path / "r", workers=1, quiet=True)
    items = {r["item_id"]: r for r in load_report_table(tmp_path / "r").to_pylist()}
    assert {n % 4 for n in n_of.values()} == {0, 1, 2, 3}
    for item_id, row in items.items():
        n = n_of[item_id]
        if n % 4 == 3:
            assert row["status"] == "ok"
        else:
            assert row["error_code"] == "internal_error", row
            assert ("one length" in row["error_message"]) if n % 4 != 1 else ("nope" in row["error_message"])
    findings = load_report_table(tmp_path / "r", "findings").to_pylist()
    assert [(n_of[f["item_id"]] % 4, f["rule"], f["severity"]) for f in findings] == [(3, "a", None)] * 2
