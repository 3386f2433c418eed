"""``run_job``: manifest -> shards -> executor -> Parquet report, with resume."""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from .._version import __version__
from .errors import (
    EngineError,
    OutputExistsError,
    OutputNotWritableError,
    ResumeMismatchError,
    RunError,
    RunFailedError,
    UsageError,
)
from .lock import LockLostError, acquire_folder_lock
from .executors import EXECUTORS, ShardFailure, make_executor
from .job import Job, check_job, to_jsonable
from .manifest import (ShardTask, default_shard_size, listed_objects, normalize_manifest, shard_count,
                       shard_slice)
from .options import ENGINE_ARGUMENT_NAMES
from .progress import Progress
from .shard import ensure_prepared, items_schema, table_schema
from .sink import (
    ITEMS_TABLE,
    MANIFEST_FILE,
    REPORT_FORMAT,
    RUN_JSON,
    SHARDS_DIR,
    clear_report,
    done_shards,
    ensure_dir,
    folder_state,
    is_remote,
    list_parts,
    read_json,
    read_markers,
    read_part,
    read_table_file,
    remove_temporaries,
    report_root,
    write_json_atomic,
    write_parquet_atomic,
)

log = logging.getLogger("fastmask.engine")

# run.json keys that legitimately differ between two runs of the same job on the same
# manifest (a resumed run, another executor or worker count); everything else is equal.
VOLATILE_RUN_KEYS = ("timing", "execution")


@dataclass
class RunResult:
    """What :func:`run_job` returns (the same facts as ``run.json``).

    Example::

        r = run_job(job, manifest, "out/")
        print(r.n_items, r.counts["error"], f"{r.items_per_second:.0f} items/s", r.run_json)
    """

    out_dir: Path
    run_json: Path
    job: str
    n_items: int
    counts: dict[str, Any]
    tables: dict[str, int]
    summary: dict[str, Any]
    n_shards: int
    skipped_shards: int
    wall_seconds: float
    items_per_second: float
    execution: dict[str, Any] = field(default_factory=dict)
    finished: Any = None  #: what ``run_job``'s ``finish`` callback returned
    #: items run by this call (a resumed run skips the finished shards' items); the speed
    #: ``items_per_second`` is of these items only
    processed_items: int = 0
    #: the dataset's listing: ``{"objects": n, "seconds": s, "reused": bool}`` (``seconds``: of
    #: this call, 0 when a resumed run reused the saved manifest); empty when the manifest was
    #: given as a table (its listing was not timed here)
    listing: dict[str, Any] = field(default_factory=dict)

    @property
    def n_ok(self) -> int:
        return self.counts["ok"]

    @property
    def n_error(self) -> int:
        return self.counts["error"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _schema_text(schema: pa.Schema) -> list[str]:
    return [f"{f.name}: {f.type}" for f in schema]


def _resume_key(job: Job, job_arguments: dict, arguments: dict, labelmap: Any, shard_size: int, n_items: int,
                id_type: pa.DataType) -> dict[str, Any]:
    # Everything that decides the content of the parts; compared key by key on resume so
    # the refusal can say what changed.
    return {
        "report_format": REPORT_FORMAT,
        "fastmask_version": __version__,
        "job": job.name,
        "job_class": f"{type(job).__module__}.{type(job).__qualname__}",
        "job_arguments": job_arguments,
        "arguments": ({k: v for k, v in arguments.items() if k not in ENGINE_ARGUMENT_NAMES}
                      if isinstance(arguments, dict) else arguments),
        "labelmap": labelmap,
        "shard_size": shard_size,
        "items": n_items,
        "schemas": {ITEMS_TABLE: _schema_text(items_schema(job, id_type)),
                    **{n: _schema_text(table_schema(job, n, id_type)) for n in sorted(job.tables)}},
    }


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


_ABSENT = object()
# Keys of the resume key whose entries are the run's arguments: a difference there is
# named by the argument alone (``min_island``), and once although both record it.
_ARGUMENT_KEYS = ("job_arguments", "arguments")


def _differences(old: Any, new: Any, path: tuple = ()):
    """``(path, old, new)`` for every leaf that differs; dicts are compared key by key."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            yield from _differences(old.get(k, _ABSENT), new.get(k, _ABSENT), path + (k,))
    elif old != new:
        yield path, old, new


def _value_text(value: Any) -> str:
    return "(not given)" if value is _ABSENT else _short(value)


def _resume_differences(old: dict, new: dict) -> list[str]:
    """One line per setting that differs between two resume keys: ``name: was X, now Y``.

    >>> _resume_differences({"arguments": {"min_island": 16, "ignore": 255}},
    ...                     {"arguments": {"min_island": 8, "ignore": 255}})
    ['min_island: was 16, now 8']
    """
    lines = []
    for path, a, b in _differences(old, new):
        name = ".".join(map(str, path[1:] if path[0] in _ARGUMENT_KEYS and len(path) > 1 else path))
        line = f"{name}: was {_value_text(a)}, now {_value_text(b)}"
        if line not in lines:
            lines.append(line)
    return lines


def _check_resume(stored: dict, key: dict, out: Path) -> None:
    old = stored.get("resume_key")
    if not isinstance(old, dict):
        raise ResumeMismatchError(f"{out / RUN_JSON} has no resume information; use --overwrite to start over")
    diffs = _resume_differences({k: old.get(k, _ABSENT) for k in key}, key)
    if diffs:
        raise ResumeMismatchError(f"cannot resume: the run in {out} was made with other settings:\n  "
                                  + "\n  ".join(diffs) + "\nuse --overwrite to start over, or another --out")


def _write_run_json(path: Path, doc: dict) -> None:
    write_json_atomic(path, doc)


def run_job(job: Job, manifest: pa.Table | None, out_dir: str | Path, *, shard_size: int | None = None,
            executor: str = "local", workers: int | None = None, scheduler: Any = None, resume: bool = False,
            overwrite: bool = False, quiet: bool = False, arguments: dict | None = None,
            labelmap: Any = None, force_unlock: bool = False, finish: Callable[[Path], Any] | None = None,
            command: str | None = None) -> RunResult:
    """Run ``job`` over every item of ``manifest`` and write the report folder ``out_dir``.

    * ``manifest``: a ``pyarrow.Table`` with a unique ``item_id`` column (string or
      integer) plus whatever the job reads (paths...). Sorted by ``item_id`` here. May be
      ``None`` with ``resume=True``: the manifest saved in the folder is used. Or a
      *manifest source* (a dataset): an object whose ``manifest()`` builds the table (it is
      timed: ``run.json["timing"]["listing_seconds"]``) and, optionally,
      ``reuse_manifest(table)``; a resumed run never calls ``manifest()`` but hands it the
      saved table, so the dataset is listed once per run.
    * ``shard_size``: items per shard (default ``ceil(n/64)`` within [100, 2000]; a resumed
      run keeps its own).
    * ``executor``: ``"local"`` (processes; ``workers=1`` runs in this process),
      ``"threads"`` or ``"dask"``; ``workers`` defaults to all cores; ``scheduler`` is a
      Dask scheduler address (or a ``distributed.Client``), ``None`` starts a LocalCluster.
    * ``resume``: keep finished shards of the run in ``out_dir`` and run the rest;
      ``overwrite``: delete the report in ``out_dir`` first. Without either, a non-empty
      ``out_dir`` raises :class:`OutputExistsError`.
    * ``arguments`` (default ``job.arguments()``) and ``labelmap`` (any JSON-able value)
      are recorded in ``run.json``.
    * ``finish(out_dir)``: writes the job's dataset-wide tables and files after the shards;
      ``run.json`` says ``"complete"`` only once it has returned (its value is
      ``RunResult.finished``).
    * The folder is locked for the run (see :mod:`fastmask.engine.lock`): another run on
      it is refused; ``force_unlock`` takes over a lock whose run cannot be shown alive;
      ``command`` is recorded in the lock (default: this process's command line).

    Raises :class:`EngineError` subclasses (exit code 2) before any work starts,
    :class:`RunFailedError` (exit code 3) when a shard fails as a whole, and
    :class:`RunError` (exit code 4, ``run.json`` says ``"failed"``) when the run itself
    fails (an unexpected error, a full disk while finalising). ``KeyboardInterrupt`` is
    re-raised after ``run.json`` says ``"stopped"``. Both are resumable.

    Example::

        manifest = pa.table({"item_id": ["a", "b"], "path": ["a.png", "b.png"]})
        result = run_job(MyJob(), manifest, "report/", workers=2)
        pq.read_table("report/items")  # one row per item
    """
    t_start = time.perf_counter()
    started = _now()
    check_job(job)
    if resume and overwrite:
        raise UsageError("use either resume or overwrite, not both")
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise UsageError(f"a scheduler needs executor 'dask', not {executor!r}")
    for name, value in (("workers", workers), ("shard_size", shard_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UsageError(f"{name} must be a positive integer, got {value!r}")

    out = report_root(out_dir)  # a Path, or a Location for a URL (s3://bucket/reports/voc-1)
    remote = is_remote(out)
    if remote:
        created = False  # a prefix: nothing to create, nothing to remove
        if out.is_file():  # an object at the prefix's own key
            raise OutputExistsError(f"output folder {out} already exists and is not a folder: choose another --out")
    else:
        if out.exists() and not out.is_dir():
            raise OutputExistsError(f"output folder {out} already exists and is not a folder: choose another --out")
        created = not out.exists()
    try:
        ensure_dir(out)
        lock = acquire_folder_lock(out, force=force_unlock, command=command)
    except OSError as e:
        _remove_if_empty(out, created)
        raise OutputNotWritableError(f"cannot write the report to {out}: {e.strerror or e}") from e
    except BaseException:
        _remove_if_empty(out, created)
        raise
    try:
        return _run_locked(job, manifest, out, t_start=t_start, started=started, shard_size=shard_size,
                           executor=executor, workers=workers, scheduler=scheduler, resume=resume,
                           overwrite=overwrite, quiet=quiet, arguments=arguments, labelmap=labelmap,
                           finish=finish, heartbeat=lock.touch)
    finally:
        lock.release()
        _remove_if_empty(out, created)  # a run refused before writing leaves no folder behind


def _remove_if_empty(out: Path, created: bool) -> None:
    if created and not is_remote(out):
        try:
            out.rmdir()
        except OSError:
            pass


def _run_locked(job: Job, manifest: pa.Table | None, out: Path, *, t_start: float, started: str,
                shard_size: int | None, executor: str, workers: int | None, scheduler: Any, resume: bool,
                overwrite: bool, quiet: bool, arguments: dict | None, labelmap: Any,
                finish: Callable[[Path], Any] | None, heartbeat: Callable[[], None] = lambda: None) -> RunResult:
    job_arguments = to_jsonable(job.arguments())
    recorded_arguments = to_jsonable(arguments) if arguments is not None else job_arguments
    state = folder_state(out)
    if state == "foreign" and (overwrite or resume):
        raise OutputExistsError(f"{out} is not empty and holds no fastmask report (no {RUN_JSON}); "
                                f"refusing to {'delete' if overwrite else 'resume'} it: choose another --out")
    if state in ("report", "foreign") and not (resume or overwrite):
        raise OutputExistsError(f"output folder {out} already exists and is not empty: "
                                "pass --resume to continue the run in it, --overwrite to replace it, "
                                "or choose another --out")

    source = None
    if manifest is not None and not isinstance(manifest, pa.Table) and callable(getattr(manifest, "manifest", None)):
        source, manifest = manifest, None  # built only when the run does not resume
    listing: dict[str, Any] = {}
    resuming = resume and state == "report"
    if resuming and not (out / MANIFEST_FILE).is_file():
        # Killed between writing run.json and the manifest: no shard can have run yet.
        log.info("the run in %s never started its shards: starting it again", out)
        resuming, overwrite = False, True
    if resuming:
        try:
            stored = read_json(out / RUN_JSON)
        except (OSError, ValueError) as e:
            raise ResumeMismatchError(f"cannot read {out / RUN_JSON} ({e}); use --overwrite to start over") from e
        stored_manifest = read_table_file(out / MANIFEST_FILE)
        if manifest is None:
            manifest = stored_manifest
            if source is not None:  # the dataset takes the saved manifest: it is not listed again
                reuse = getattr(source, "reuse_manifest", None)
                if reuse is not None:
                    reuse(stored_manifest)
                listing = {"seconds": 0.0, "reused": True}
        else:
            manifest = normalize_manifest(manifest)
            if not manifest.equals(stored_manifest):
                raise ResumeMismatchError(f"cannot resume: the manifest (dataset items) differs from the one "
                                          f"saved in {out / MANIFEST_FILE}; use --overwrite to start over")
        stored_size = stored.get("shard_size")
        if shard_size is not None and shard_size != stored_size:
            raise ResumeMismatchError(f"cannot resume with shard size {shard_size}: the run in {out} uses "
                                      f"{stored_size}; drop --shard-size or use --overwrite")
        shard_size = stored_size
        id_type = manifest.schema.field("item_id").type
        key = _resume_key(job, job_arguments, recorded_arguments, to_jsonable(labelmap), shard_size,
                          manifest.num_rows, id_type)
        _check_resume(stored, key, out)
    else:
        if source is not None:
            t_list = time.perf_counter()
            manifest = source.manifest()
            listing = {"seconds": time.perf_counter() - t_list, "reused": False}
        if manifest is None:
            raise UsageError("a manifest is needed (only resume=True can reuse the saved one)")
        manifest = normalize_manifest(manifest)
        shard_size = shard_size or default_shard_size(manifest.num_rows)
        id_type = manifest.schema.field("item_id").type
        key = _resume_key(job, job_arguments, recorded_arguments, to_jsonable(labelmap), shard_size,
                          manifest.num_rows, id_type)

    n_items = manifest.num_rows
    n_shards = max(1, shard_count(n_items, shard_size))  # an empty run still writes empty parts
    objects = listed_objects(manifest)
    if listing:
        listing["objects"] = objects
    doc: dict[str, Any] = {
        "report_format": REPORT_FORMAT,
        "fastmask_version": __version__,
        "status": "running",
        "job": job.name,
        "arguments": recorded_arguments,
        "labelmap": to_jsonable(labelmap),
        "resume_key": key,
        "shard_size": shard_size,
        "shards": n_shards,
        "tables": [ITEMS_TABLE] + sorted(job.tables),
    }
    if objects is not None:  # what the dataset's listing saw (saved with the manifest: equal on resume)
        doc["listing"] = {"objects": objects}

    try:
        if state == "report" and overwrite:
            clear_report(out)
        ensure_dir(out)
        if not is_remote(out):  # object storage has no folders: prefixes appear with their objects
            for name in doc["tables"]:
                (out / name).mkdir(exist_ok=True)
            (out / SHARDS_DIR).mkdir(exist_ok=True)
        if resuming:
            removed = remove_temporaries(out)
            if removed:
                log.info("removed %d temporary files left by an interrupted run", removed)
        else:
            # run.json first: from then on the folder is recognisably a report (resumable).
            _write_run_json(out / RUN_JSON, {**doc, "timing": {"started": started}})
            # Row groups bound the writer's buffers: the manifest can have millions of rows.
            write_parquet_atomic(manifest, out / MANIFEST_FILE, row_group_size=65536)
    except OSError as e:
        raise OutputNotWritableError(f"cannot write the report to {out}: {e.strerror or e}") from e

    # From here on run.json exists: a failure is recorded in it ("stopped" or "failed").
    try:
        return _execute(job, manifest, out, doc, t_start=t_start, started=started, n_items=n_items,
                        n_shards=n_shards, shard_size=shard_size, resuming=resuming, executor=executor,
                        workers=workers, scheduler=scheduler, quiet=quiet, finish=finish, heartbeat=heartbeat,
                        listing=listing)
    except LockLostError:  # the folder is another run's now: write nothing more into it
        raise
    except RunError as e:
        _mark_stopped(out, doc, started, str(e), status="failed")
        raise
    except EngineError as e:  # a stopped run (exit 3), or an executor that cannot start (exit 2)
        _mark_stopped(out, doc, started, str(e).split("\n")[0])
        raise
    except KeyboardInterrupt:
        _mark_stopped(out, doc, started, "interrupted")
        log.info("interrupted: finished shards are kept in %s; rerun with --resume to continue", out)
        raise
    except Exception as e:  # noqa: BLE001 - a failure of the run itself, never a finding
        reason = _describe(e)
        _mark_stopped(out, doc, started, reason, status="failed")
        raise RunError(f"the run failed: {reason}; finished shards are kept in {out}: "
                       "fix the cause and rerun with --resume") from e


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror}{where}"
    return f"{type(e).__name__}: {e}"


def _execute(job: Job, manifest: pa.Table, out: Path, doc: dict, *, t_start: float, started: str, n_items: int,
             n_shards: int, shard_size: int, resuming: bool, executor: str, workers: int | None, scheduler: Any,
             quiet: bool, finish: Callable[[Path], Any] | None,
             heartbeat: Callable[[], None] = lambda: None, listing: dict | None = None) -> RunResult:
    done = done_shards(out, n_shards) if resuming else set()
    done_items = sum(min(shard_size, n_items - i * shard_size) for i in done)
    if done:
        log.info("resuming: %d of %d shards already done (%d items)", len(done), n_shards, done_items)

    ensure_prepared(job)  # once in the driver, before workers start (warms Numba's cache)
    # A local folder travels as its path; a URL as its Location (with its storage options).
    target = out if is_remote(out) else str(out)
    tasks = (ShardTask(i, shard_slice(manifest, i, shard_size), target) for i in range(n_shards) if i not in done)
    processed = 0
    # Nothing left to run (a resume after a failure while finalising): no executor to start.
    execution: dict[str, Any] = {"executor": executor, "workers": 0,
                                 "scheduler": scheduler if isinstance(scheduler, str) else None}
    if len(done) < n_shards:
        progress = Progress(n_items, initial=done_items, quiet=quiet, desc=job.name)
        try:
            with make_executor(executor, workers, scheduler) as ex:
                execution = ex.describe()
                log.info("%s: %d items in %d shards of %d, executor %s with %d workers", job.name, n_items,
                         n_shards, shard_size, execution["executor"], execution["workers"])
                for _index, outcome in ex.run(job, tasks, progress.update if ex.in_driver else None):
                    processed += outcome["items"]
                    progress.update(outcome["items"] - outcome.get("reported", 0))
                    heartbeat()  # a lock on object storage: push its lease forward
        except ShardFailure as e:
            raise RunFailedError(f"shard {e.index} failed: {_describe(e.cause)}\n"
                                 f"finished shards are kept in {out}; fix the cause and rerun with --resume"
                                 ) from e.cause
        finally:
            progress.close()

    heartbeat()  # before the final writes: a run whose lock was taken over stops here
    # Final reduce from the markers (not from what this invocation saw), so a resumed run
    # and an uninterrupted one finalize from exactly the same values.
    markers = []
    for i, m in enumerate(read_markers(out, n_shards)):
        if m is None:
            raise RunFailedError(f"shard {i} has no done-marker after the run; rerun with --resume")
        markers.append(m)
    error_codes: dict[str, int] = {}
    for m in markers:
        for code, n in m["error_codes"].items():
            error_codes[code] = error_codes.get(code, 0) + n
    counts = {"items": sum(m["items"] for m in markers), "ok": sum(m["ok"] for m in markers),
              "error": sum(m["error"] for m in markers), "error_codes": dict(sorted(error_codes.items()))}
    if counts["items"] != n_items:
        raise RunError(f"the shards hold {counts['items']} items, the manifest {n_items}; "
                       "the report folder was modified: use --overwrite")
    table_rows = {name: sum(m["rows"][name] for m in markers) for name in doc["tables"]}
    summary = to_jsonable(job.finalize([m["summary"] for m in markers]) or {})

    doc.update(counts=counts, tables={name: {"rows": table_rows[name], "parts": n_shards} for name in doc["tables"]},
               summary=summary)
    # A worker lost mid-write (SIGKILL, a Dask worker gone) leaves its temporary file: a
    # finished report holds none.
    remove_temporaries(out)
    finished = None
    if finish is not None:
        # The job's post-run tables read the summary from run.json; "complete" comes after them.
        _write_run_json(out / RUN_JSON, {**doc, "timing": {"started": started}})
        finished = finish(out)
    wall = time.perf_counter() - t_start
    rate = processed / wall if wall > 0 else 0.0
    doc.update(status="complete", execution=execution,
               timing={"started": started, "finished": _now(), "wall_seconds": round(wall, 3),
                       "items_per_second": round(rate, 1), "processed_items": processed,
                       "skipped_shards": len(done)})
    if listing:
        doc["timing"].update(listing_seconds=round(listing["seconds"], 3), listing_reused=listing["reused"])
    _write_run_json(out / RUN_JSON, doc)
    log.info("%s: %d items (%d ok, %d error) in %.1f s, %.0f items/s -> %s", job.name, counts["items"],
             counts["ok"], counts["error"], wall, rate, out)
    return RunResult(out_dir=out, run_json=out / RUN_JSON, job=job.name, n_items=n_items, counts=counts,
                     tables=table_rows, summary=summary, n_shards=n_shards, skipped_shards=len(done),
                     wall_seconds=wall, items_per_second=rate, execution=execution, finished=finished,
                     processed_items=processed, listing=dict(listing or {}))


def _mark_stopped(out: Path, doc: dict, started: str, reason: str, status: str = "stopped") -> None:
    # Best effort (the disk may be full): tell readers of run.json that this report is not complete.
    try:
        _write_run_json(out / RUN_JSON, {**doc, "status": status, "stop_reason": reason,
                                         "timing": {"started": started, "stopped": _now()}})
    except (OSError, ValueError):
        pass


def load_report_table(out_dir: str | Path, table: str = ITEMS_TABLE) -> pa.Table:
    """Read one table of a report (all parts, in shard order).

    Example::

        items = load_report_table("report/", "items").to_pandas()
    """
    folder = report_root(out_dir) / table
    parts = list_parts(out_dir, table)
    if not parts:
        raise EngineError(f"no parts in {folder}")
    return pa.concat_tables([read_part(p) for p in parts])
