"""Numba's on-disk cache, seen from Python: is a kernel already compiled?

Loading a cached kernel is cheap; initialising Numba for the first load in a process is
not (~0.4 s here). A job that only wants its kernels compiled before its workers start
(so that they load instead of each compiling) can ask :func:`kernels_cached` first and
skip the warm-up when the cache already holds them.
"""
from __future__ import annotations


def kernels_cached(*dispatchers) -> bool:
    """True when every dispatcher has a fresh entry in Numba's on-disk cache.

    Reads each cache index (a small pickle; no compilation, no LLVM): an index written
    for another version of the source file counts as missing.  Any surprise (no cache,
    an unreadable index, another Numba) gives False: the caller then simply compiles.

    >>> from fastmask.kernels import validate as kv
    >>> import numpy as np
    >>> _ = kv.value_bbox(np.zeros((2, 2), np.uint8), np.uint8(0), np.zeros(5, np.int64))
    >>> kernels_cached(kv.value_bbox)
    True
    """
    try:
        for d in dispatchers:
            cache = getattr(d, "_cache", None)
            if cache is None or not getattr(cache, "_enabled", False):
                return False
            if not cache._cache_file._load_index():  # {} when absent or stale
                return False
        return True
    except Exception:  # noqa: BLE001 - private Numba API: any doubt means "compile"
        return False
