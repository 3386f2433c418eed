"""Command-line flags shared by every job command, and the exit codes.

Imports nothing heavy (no pyarrow, no Dask) so that building the CLI parser and
``fastmask --help`` stay fast.

Example::

    parser = argparse.ArgumentParser(prog="fastmask validate")
    add_engine_arguments(parser)
    args = parser.parse_args(["--out", "report/", "--workers", "4"])
    opts = engine_options_from_args(args)
    result = run_job(job, manifest, **opts.run_kwargs())

Exit codes (the CLI's contract):

* 0 ``EXIT_OK``: the run finished (item errors alone do not change this).
* 1 ``EXIT_FINDINGS``: the run finished and the job found problems of error severity.
* 2 ``EXIT_USAGE``: usage or configuration error (bad flags, output folder exists,
  resume mismatch, unwritable output, unreachable scheduler): nothing was run.
* 3 ``EXIT_RUN_FAILED``: the run started but stopped (interrupted, a worker died, disk
  full in a shard); the finished shards are kept and ``--resume`` continues.
* 4 ``EXIT_RUN_ERROR``: the run itself failed (an unexpected error in the driver, a
  cluster that cannot start, a full disk while finalising); ``run.json`` says
  ``"failed"`` and ``--resume`` completes the run.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from .errors import EXIT_FINDINGS, EXIT_OK, EXIT_RUN_ERROR, EXIT_RUN_FAILED, EXIT_USAGE, UsageError

__all__ = ["EngineOptions", "UsageError", "add_engine_arguments", "engine_options_from_args",
           "EXIT_OK", "EXIT_FINDINGS", "EXIT_USAGE", "EXIT_RUN_FAILED", "EXIT_RUN_ERROR", "ENGINE_ARGUMENT_NAMES"]

# Flags that choose how a run executes, not what it computes: they are left out of the
# resume fingerprint (resuming with more workers or another executor is fine).
ENGINE_ARGUMENT_NAMES = frozenset({"out", "out_dir", "resume", "overwrite", "executor", "scheduler",
                                   "workers", "shard_size", "quiet", "verbose", "log_level",
                                   "force_unlock", "debug"})


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_engine_arguments(parser: argparse.ArgumentParser, *, out_required: bool = True) -> argparse._ArgumentGroup:
    """Add ``--out --resume --overwrite --force-unlock --executor --scheduler --workers --shard-size --quiet``.

    Example::

        add_engine_arguments(sub.add_parser("validate"))
    """
    g = parser.add_argument_group("run options")
    g.add_argument("--out", metavar="DIR", required=out_required,
                   help="report folder or URL (s3://bucket/prefix; created; must be empty unless --resume or "
                        "--overwrite)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --out: finished shards are kept, the rest is run")
    mode.add_argument("--overwrite", action="store_true",
                      help="delete the report already in --out and start over")
    g.add_argument("--force-unlock", action="store_true",
                   help="take over the lock of --out when the run that holds it is gone but cannot be shown dead "
                        "(another host, or a file system without locks); never from a run alive on this machine")
    g.add_argument("--executor", choices=("local", "threads", "dask"), default=None,
                   help="local: a process pool (default); threads: a thread pool; "
                        "dask: dask.distributed (LocalCluster unless --scheduler)")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (implies --executor dask)")
    g.add_argument("--workers", metavar="N", type=_positive_int, default=None,
                   help="worker processes (default: all cores; 1 runs in this process)")
    g.add_argument("--shard-size", metavar="N", type=_positive_int, default=None,
                   help="items per shard (default: items/64, between 100 and 2000; a resumed run keeps its own)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return g


@dataclass(frozen=True)
class EngineOptions:
    """The engine flags of one command line, ready for :func:`fastmask.engine.run_job`."""

    out_dir: str
    resume: bool = False
    overwrite: bool = False
    executor: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    shard_size: int | None = None
    quiet: bool = False
    force_unlock: bool = False

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``run_job(job, manifest, **opts.run_kwargs())``."""
        return asdict(self)


def engine_options_from_args(args: argparse.Namespace) -> EngineOptions:
    """Read the flags added by :func:`add_engine_arguments` from parsed ``args``.

    ``--scheduler`` without ``--executor`` means ``dask``; ``--scheduler`` with another
    executor raises :class:`UsageError`.

    Example::

        opts = engine_options_from_args(parser.parse_args(["--out", "r", "--scheduler", "tcp://h:8786"]))
        opts.executor  # 'dask'
    """
    executor = args.executor
    if args.scheduler is not None:
        if executor not in (None, "dask"):
            raise UsageError(f"--scheduler needs --executor dask (got --executor {executor})")
        executor = "dask"
    if args.resume and args.overwrite:  # when the parser was built without the exclusive group
        raise UsageError("use either --resume or --overwrite, not both")
    return EngineOptions(out_dir=args.out, resume=bool(args.resume), overwrite=bool(args.overwrite),
                         executor=executor or "local", scheduler=args.scheduler, workers=args.workers,
                         shard_size=args.shard_size, quiet=bool(args.quiet),
                         force_unlock=bool(getattr(args, "force_unlock", False)))
