"""Executors: where shards run. All of them call the same :func:`run_shard`.

* ``local``  – a pool of worker processes (``spawn``: a fresh interpreter, no state
  inherited from the driver), ``workers`` of them; ``workers=1`` runs in the driver.
* ``threads`` – a thread pool in the driver (fine when the job's kernels release the GIL).
* ``dask``   – dask.distributed: ``scheduler="tcp://host:port"`` (or a ``Client``) uses a
  running cluster; no scheduler starts a ``LocalCluster`` of ``workers`` processes.

Each executor keeps only a bounded window of shards in flight, so the driver holds
neither all tasks nor any rows; it yields ``(index, outcome)`` in completion order.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.util
import os
import signal
import sys
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from .errors import ExecutorError, RunFailedError
from .job import Job
from .manifest import ShardTask
from .shard import ensure_prepared, run_shard

log = logging.getLogger("fastmask.engine")

EXECUTORS = ("local", "threads", "dask")


class ShardFailure(Exception):
    """Raised by an executor when a shard failed as a whole; carries the shard index."""

    def __init__(self, index: int | None, cause: BaseException, in_flight: list[int] | None = None):
        super().__init__(index, cause)
        self.index, self.cause = index, cause
        self.in_flight = in_flight or ([] if index is None else [index])


def default_workers() -> int:
    """Usable CPU cores (respects CPU affinity / container limits where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- process pool -------------------------------------------------------------------

_WORKER_JOB: Job | None = None


def _init_process_worker(job: Job) -> None:
    # The job is sent once per worker (not once per shard) and prepared once.
    global _WORKER_JOB
    _WORKER_JOB = job
    ensure_prepared(job)


def _run_in_process_worker(task: ShardTask) -> dict:
    return run_shard(_WORKER_JOB, task)


def _drive(submit: Callable[[ShardTask], Future], tasks: Iterable[ShardTask], window: int
           ) -> Iterator[tuple[int, dict]]:
    """Keep ``window`` shards in flight; yield outcomes as they finish."""
    it = iter(tasks)
    pending: dict[Future, int] = {}

    def top_up():
        for task in islice(it, window - len(pending)):
            pending[submit(task)] = task.index

    top_up()
    interrupted = False
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=pending.__getitem__):
                index = pending.pop(fut)
                try:
                    outcome = fut.result()
                except KeyboardInterrupt:  # Ctrl-C in the driver, not a failure of the shard
                    raise
                except BaseException as e:  # noqa: BLE001 - reported with the shard index
                    raise ShardFailure(index, e, sorted([index, *pending.values()])) from e
                yield index, outcome
            top_up()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # On Ctrl-C the executor stops its workers and the pool fails every pending future
        # itself: cancelling them here too would race it (an InvalidStateError traceback).
        for fut in pending if not interrupted else ():
            fut.cancel()


class Executor:
    """Common shape: ``with make_executor(...) as ex: for i, outcome in ex.run(job, tasks)``."""

    name = "local"
    workers = 1
    scheduler: str | None = None
    in_driver = False  # True when shards run in this process (per-item progress possible)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        # Ctrl-C: stop now (running shards are lost, --resume redoes them); any other
        # failure: let running shards finish so their work is kept.
        self.close(abort=exc_type is not None and issubclass(exc_type, KeyboardInterrupt))

    def close(self, abort: bool = False) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "scheduler": self.scheduler}

    def run(self, job: Job, tasks: Iterable[ShardTask], progress=None) -> Iterator[tuple[int, dict]]:
        raise NotImplementedError


class InDriverExecutor(Executor):
    """Shards one after another in the driver (``local`` with one worker)."""

    in_driver = True

    def run(self, job, tasks, progress=None):
        for task in tasks:
            try:
                outcome = run_shard(job, task, progress)
            except Exception as e:  # noqa: BLE001
                raise ShardFailure(task.index, e) from e
            yield task.index, outcome


class ThreadExecutor(Executor):
    name = "threads"
    in_driver = True

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastmask-shard")

    def run(self, job, tasks, progress=None):
        yield from _drive(lambda t: self._pool.submit(run_shard, job, t, progress), tasks, 2 * self.workers)

    def close(self, abort: bool = False):
        # Threads cannot be stopped: on Ctrl-C the driver goes on without waiting for them.
        self._pool.shutdown(wait=not abort, cancel_futures=True)


#: Thread pools of numerical libraries, one thread each in worker processes (unless the
#: user set them): the pool already runs one process per core, and an OpenBLAS loaded in a
#: worker would otherwise start a thread per core that busy-waits for a while.
WORKER_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned worker whose environment says "one thread" to numerical libraries, and
    that leaves without the interpreter's teardown once the pool has let it go."""

    def run(self):
        # Ctrl-C reaches every process of the terminal's group: the driver handles it (and
        # stops the pool); a worker ignores it instead of printing a KeyboardInterrupt traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        super().run()  # the pool's worker loop; returns when the pool sends its stop signal
        if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
            return  # a thread a job started: the normal exit waits for it
        # Every result went back through the pool's pipe before the loop returned and every
        # part file was written and fsynced by run_shard: nothing is left to do.  The
        # interpreter's teardown of the loaded libraries (Numba/LLVM, Arrow) would take
        # ~0.3 s per worker here, a few percent of a short run.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        logging.shutdown()
        os._exit(0)

    def start(self):
        # The child copies the driver's environment when it starts: set it for that
        # moment only, so the driver's own environment stays as it was.
        added = {k: "1" for k in WORKER_THREAD_ENV if k not in os.environ}
        os.environ.update(added)
        try:
            with _sigint_ignored_by_children():
                super().start()
        finally:
            for k in added:
                os.environ.pop(k, None)


class _sigint_ignored_by_children:
    """While starting child processes: SIGINT ignored, so each new interpreter starts with it
    ignored (Python installs its KeyboardInterrupt handler only when SIGINT is at its
    default) and never prints a traceback of its own on Ctrl-C; the driver handles it.

    SIGINT is also blocked in this thread meanwhile: a blocked signal is kept pending
    rather than ignored, so a Ctrl-C pressed during the start is delivered right after it.
    Threads started meanwhile (Dask's event loop) inherit the block and leave SIGINT to the
    main thread. Main thread only (elsewhere a no-op).
    """

    def __enter__(self):
        self._old = None
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask"):
            self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            self._old = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc):
        if self._old is not None:
            try:
                # (a Ctrl-C held back may raise KeyboardInterrupt as soon as the handler is back)
                signal.signal(signal.SIGINT, self._old)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)  # a pending Ctrl-C arrives now


class _WorkerContext(multiprocessing.context.SpawnContext):
    Process = _WorkerProcess


class ProcessExecutor(Executor):
    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def run(self, job, tasks, progress=None):
        # spawn, not fork: the driver may hold threads (tqdm, Numba's pool, Dask) that a
        # forked child would inherit in a locked state.
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=_WorkerContext(),
                                         initializer=_init_process_worker, initargs=(job,))
        try:
            yield from _drive(lambda t: self._pool.submit(_run_in_process_worker, t), tasks, 2 * self.workers + 1)
        except ShardFailure as e:
            if isinstance(e.cause, BrokenProcessPool):
                # The pool cannot tell which shard's process died: name all that were running.
                e.cause = BrokenProcessPool("a worker process died (killed, out of memory, or crashed in native "
                                            f"code) while shards {e.in_flight} were in flight")
            raise

    def close(self, abort: bool = False):
        if self._pool is not None:
            if abort:  # Ctrl-C: the workers ignore SIGINT, so stop them here
                for p in list((self._pool._processes or {}).values()):
                    try:
                        p.terminate()
                    except (OSError, ValueError, AttributeError):
                        pass
            # (after a Ctrl-C the broken pool fails the pending futures itself)
            self._pool.shutdown(wait=True, cancel_futures=not abort)
            self._pool = None


def _workers_ignoring_sigint():
    """Make the LocalCluster's worker processes ignore Ctrl-C (the driver handles it).

    They are forked by multiprocessing's fork server, which ignores SIGINT: it is started
    with SIGINT ignored, and its first preloaded module (:mod:`fastmask.engine._nosigint`)
    says so again. Its children, also the workers a nanny restarts later, inherit that.
    Returns the dask config change to undo when the cluster is closed.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        return None
    from multiprocessing import forkserver

    import dask
    from distributed.utils import get_mp_context

    config = dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    get_mp_context()  # sets the fork server's preloaded modules (distributed's own choice)
    preload = list(getattr(forkserver._forkserver, "_preload_modules", None) or [])
    if "fastmask.engine._nosigint" not in preload:
        forkserver.set_forkserver_preload(["fastmask.engine._nosigint", *preload])
    # Started with SIGINT ignored (for the milliseconds of its fork and exec only), the fork
    # server never has a KeyboardInterrupt handler, not even before its preloads run.
    real_spawn = multiprocessing.util.spawnv_passfds

    def spawn(*args, **kwargs):
        with _sigint_ignored_by_children():
            return real_spawn(*args, **kwargs)

    multiprocessing.util.spawnv_passfds = spawn
    try:
        forkserver.ensure_running()
    finally:
        multiprocessing.util.spawnv_passfds = real_spawn
    return config


def _close_half_started_clusters() -> None:
    # Ctrl-C inside LocalCluster(): no object to close, and distributed's exit hook would
    # fail on the half-started cluster with a traceback. Close it now, quietly.
    import atexit

    from distributed.deploy import spec

    for cluster in list(spec.SpecCluster._instances):
        try:
            cluster.close(timeout=10)
        except BaseException as e:  # noqa: BLE001 - best effort on the way out
            log.debug("closing a half-started LocalCluster: %s", e)
    atexit.unregister(spec.close_clusters)


def _worker_lost(e: BaseException) -> bool:
    """Is ``e`` how dask.distributed reports a worker (or its nanny) lost mid-way?"""
    try:
        from distributed.comm.core import CommClosedError
    except ImportError:  # pragma: no cover - only called when distributed is there
        CommClosedError = OSError  # noqa: N806
    return (isinstance(e, (CommClosedError, OSError, TimeoutError))
            or (isinstance(e, RuntimeError) and "failed to start" in str(e))
            # the scheduler no longer knows a worker it was asked about (scatter's replicate)
            or (isinstance(e, KeyError) and "://" in str(e)))


def _lost_at_start(e: BaseException, when: str) -> RunFailedError:
    return RunFailedError(f"a Dask worker was lost {when} ({type(e).__name__}: {e}); "
                          "nothing was lost: rerun with --resume")


class DaskExecutor(Executor):
    name = "dask"

    def __init__(self, workers: int | None, scheduler: Any = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError as e:
            raise ExecutorError("executor 'dask' needs dask.distributed: pip install 'dask[distributed]'") from e
        self._cluster = None
        self._client = None
        self._own_client = True
        self._dask_config = None
        # dask.distributed logs at INFO on its own logger (nannies, connections...): say it
        # only when the user asked for INFO, like the engine's own log.
        self._dask_log = logging.getLogger("distributed")
        self._dask_log_level = self._dask_log.level
        # (tornado.application: distributed's callbacks that fail when a Ctrl-C interrupts a
        # call into the cluster; the run reports the interruption itself)
        self._tornado_log = logging.getLogger("tornado.application")
        self._tornado_log_level = self._tornado_log.level
        if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
            self._dask_log.setLevel(logging.WARNING)
            self._tornado_log.setLevel(logging.CRITICAL)
        if scheduler is None:
            n = workers or default_workers()
            self._dask_config = _workers_ignoring_sigint()
            try:
                # One single-threaded process per core, like the local executor; no dashboard
                # port to collide with on shared machines.
                self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=logging.WARNING)
                self._client = Client(self._cluster)
            except BaseException as e:  # Ctrl-C included: the cluster is closed, not left to atexit
                self.close(abort=not isinstance(e, Exception))
                if self._cluster is None:
                    _close_half_started_clusters()
                    if not isinstance(e, Exception):
                        self._kill_local_workers()  # any it forked meanwhile
                if isinstance(e, Exception) and _worker_lost(e):  # e.g. "Nanny failed to start"
                    raise _lost_at_start(e, "while the cluster started") from e
                raise
            self.scheduler = None
        elif isinstance(scheduler, str):
            try:
                self._client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as e:
                raise ExecutorError(f"cannot connect to the Dask scheduler at {scheduler}: {e}") from e
            self.scheduler = scheduler
        else:  # an existing distributed.Client
            self._client, self._own_client = scheduler, False
            self.scheduler = getattr(scheduler, "scheduler", None) and scheduler.scheduler.address
        try:
            self._client.wait_for_workers(1, timeout=60)
        except TimeoutError as e:
            self.close()
            raise ExecutorError(f"no Dask worker joined the scheduler {self.scheduler} within 60 s") from e
        except BaseException as e:
            self.close()
            if isinstance(e, Exception) and _worker_lost(e):
                raise _lost_at_start(e, "while the cluster started") from e
            raise
        self.workers = sum(self._client.nthreads().values())

    def run(self, job, tasks, progress=None):
        from distributed import as_completed

        client = self._client
        # Sent once to every worker; each worker prepares it on first use (ensure_prepared).
        try:
            job_future = client.scatter(job, broadcast=True, hash=False)
        except Exception as e:
            if _worker_lost(e):  # a worker died as the job was sent: no shard has run yet
                raise _lost_at_start(e, "while the job was sent to the workers") from e
            raise
        token = uuid.uuid4().hex[:8]
        it = iter(tasks)
        index_of = {}

        def submit(task):
            fut = client.submit(run_shard, job_future, task, key=f"fastmask-shard-{token}-{task.index:05d}", retries=0)
            index_of[fut.key] = task.index
            return fut

        window = 2 * max(1, self.workers) + 1
        ac = as_completed([submit(t) for t in islice(it, window)])
        try:
            for fut in ac:
                index = index_of.pop(fut.key)
                try:
                    outcome = fut.result()
                except KeyboardInterrupt:  # Ctrl-C in the driver while it waited
                    raise
                except BaseException as e:  # noqa: BLE001
                    raise ShardFailure(index, e) from e
                yield index, outcome
                nxt = next(it, None)
                if nxt is not None:
                    ac.add(submit(nxt))
        finally:
            for fut in list(ac.futures):
                fut.cancel()
            job_future.release()

    def close(self, abort: bool = False):
        # Best effort: a cluster that lost workers may raise while closing, and that must not
        # hide the error (or the Ctrl-C) that brought us here. Its own shutdown chatter
        # (lost workers, scattered data gone) says nothing the user needs.
        quiet = self._dask_log
        if abort:
            # Ctrl-C: stop the workers at once (they ignore SIGINT) and say nothing of the
            # cluster's teardown (lost workers, cancelled tasks): the process ends after this.
            for name in ("distributed", "asyncio", "tornado"):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
            self._kill_local_workers()
        elif self._cluster is not None:
            quiet.setLevel(logging.CRITICAL)
        try:
            for closable in ((self._client if self._own_client else None), self._cluster):
                if closable is None:
                    continue
                try:
                    closable.close()
                except Exception as e:  # noqa: BLE001
                    log.debug("closing the Dask %s: %s", type(closable).__name__, e)
        finally:
            if not abort:
                quiet.setLevel(self._dask_log_level)
                self._tornado_log.setLevel(self._tornado_log_level)
            if self._dask_config is not None and not abort:  # (a half-started cluster may still fork)
                self._dask_config.__exit__(None, None, None)
                self._dask_config = None


    def _kill_local_workers(self) -> None:
        if self._dask_config is None:
            return  # not our LocalCluster
        # The workers are children of the fork server (also those still starting, which no
        # nanny knows yet): stop it first, so that it forks no more, then them.
        import multiprocessing.forkserver as fs

        server = getattr(fs._forkserver, "_forkserver_pid", None)
        if not server:
            return
        for pid in [server, *_children_of(server)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _children_of(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc; elsewhere none)."""
    children = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return children
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    if int(f.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        children.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return children


def make_executor(executor: str, workers: int | None, scheduler: Any = None) -> Executor:
    """Build the executor named ``executor`` (``local``, ``threads`` or ``dask``).

    Example::

        with make_executor("local", 2) as ex:
            for index, outcome in ex.run(job, tasks):
                ...
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise ExecutorError(f"a scheduler address needs executor 'dask', not {executor!r}")
    if executor == "dask":
        return DaskExecutor(workers, scheduler)
    n = workers or default_workers()
    if executor == "threads":
        return ThreadExecutor(n)
    return InDriverExecutor() if n == 1 else ProcessExecutor(n)
