"""The Job interface for job authors (defined in :mod:`fastmask.engine.job`).

It lives in the engine because the engine calls it and imports only point downward
(``jobs -> engine``); this module re-exports it so a job reads naturally::

    from fastmask.jobs.base import Job, ItemResult, ItemError

    class Validate(Job):
        name = "validate"
        ...
"""
from fastmask.engine.job import (  # noqa: F401
    ENGINE_ITEM_COLUMNS,
    INTERNAL_ERROR,
    ItemError,
    ItemResult,
    Job,
    ShardResult,
    to_jsonable,
)

__all__ = ["Job", "ItemResult", "ItemError", "ShardResult", "to_jsonable", "ENGINE_ITEM_COLUMNS", "INTERNAL_ERROR"]
