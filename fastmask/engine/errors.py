"""Exceptions raised by the engine (not by items: item failures become error rows).

Every :class:`EngineError` carries the process exit code the CLI should use.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3
EXIT_RUN_ERROR = 4


class EngineError(Exception):
    """Base class; ``exit_code`` tells the CLI how to exit (2: usage or configuration)."""

    exit_code = EXIT_USAGE


class UsageError(EngineError, ValueError):
    """Contradictory or invalid options (e.g. ``--scheduler`` with ``--executor local``)."""


class ManifestError(EngineError, ValueError):
    """The manifest is unusable: no ``item_id`` column, null or duplicate ids."""


class OutputExistsError(EngineError, FileExistsError):
    """The output folder already holds files and neither resume nor overwrite was asked for."""


class OutputNotWritableError(EngineError, PermissionError):
    """The output folder cannot be created or written."""


class ResumeMismatchError(EngineError):
    """``resume`` was asked for, but the folder holds a run of another job, arguments or manifest."""


class ExecutorError(EngineError):
    """The executor cannot start (unknown name, Dask missing, scheduler unreachable)."""


class RunFailedError(EngineError):
    """The run stopped: a shard failed as a whole (disk full, worker killed) or a Dask worker
    was lost while the cluster started: finished shards are kept (exit code 3).

    Rerunning with ``resume=True`` (``--resume``) continues from them.
    """

    exit_code = EXIT_RUN_FAILED


class RunError(EngineError):
    """The run itself failed (an unexpected error in the driver, a cluster that cannot start,
    a full disk while finalising): exit code 4. ``run.json`` says ``"failed"`` and
    ``resume=True`` (``--resume``) completes the run.
    """

    exit_code = EXIT_RUN_ERROR
