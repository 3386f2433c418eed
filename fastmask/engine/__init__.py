"""The dataset engine: manifest -> shards -> executor (local | dask) -> sink (Parquet) ; resume.

It knows nothing about masks: it runs any :class:`Job` over any list of items (a
``pyarrow.Table`` with an ``item_id`` column). See the documentation (docs/engine.md) for the report
layout, schemas, flags, exit codes and resume semantics.

Example::

    from fastmask.engine import Job, ItemResult, ItemError, run_job

    result = run_job(MyJob(), manifest, "report/", workers=4)

Names are imported lazily, so ``fastmask.engine.options`` (used to build the CLI
parser) does not pull in pyarrow.
"""
from importlib import import_module as _import_module

_EXPORTS = {
    "Job": "job", "ItemResult": "job", "ItemError": "job", "ShardResult": "job", "to_jsonable": "job",
    "INTERNAL_ERROR": "job", "ENGINE_ITEM_COLUMNS": "job",
    "run_job": "run", "RunResult": "run", "load_report_table": "run", "VOLATILE_RUN_KEYS": "run",
    "EngineError": "errors", "ManifestError": "errors", "OutputExistsError": "errors",
    "OutputNotWritableError": "errors", "ResumeMismatchError": "errors", "ExecutorError": "errors",
    "RunFailedError": "errors", "RunError": "errors", "UsageError": "errors",
    "EXIT_OK": "errors", "EXIT_FINDINGS": "errors", "EXIT_USAGE": "errors", "EXIT_RUN_FAILED": "errors",
    "EXIT_RUN_ERROR": "errors", "FolderLockedError": "lock", "acquire_folder_lock": "lock",
    "add_engine_arguments": "options", "engine_options_from_args": "options", "EngineOptions": "options",
    "DEFAULT_SHARD_SIZE": "manifest", "default_shard_size": "manifest", "normalize_manifest": "manifest",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastmask.engine' has no attribute {name!r}")
    return getattr(_import_module(f"{__name__}.{module}"), name)


def __dir__():
    return __all__
