"""Numba kernels (installed as ``fastmask.kernels``).

Arrays in, arrays out: no I/O, no Python objects, no prints. A data error is a
returned status code, never an exception raised from compiled code; the public
API in ``fastmask`` turns statuses into clear exceptions.

The one file access here is Numba's own on-disk cache (``cache=True`` reads and writes it
anyway): at import, :func:`drop_stale_cache` keeps it consistent with the sources and
:data:`COLD_CACHE` tells whether anything is compiled yet.
At import, Numba's NumPy support is also loaded without its eager BLAS probe
(:func:`_import_numpy_support`).
"""
from __future__ import annotations

import hashlib
import os
import sys

_STAMP = "fastmask-kernels.stamp"


def drop_stale_cache(src_dir: str, cache_dir: str) -> int:
    """Remove Numba's cache files in ``cache_dir`` unless they were written for the
    current sources of ``src_dir``; returns how many files were removed.

    Numba keys a cached kernel on the source of its own file only, so a kernel that
    calls (and inlines) kernels of another file -- ``validate`` uses ``components`` --
    would keep running old compiled code after that other file changed, e.g. after an
    upgrade. Keying the whole folder closes that hole: a stamp (a hash of every
    ``*.py`` here) is kept beside the cache, and a different stamp empties the cache.
    Best effort: any OS error leaves things as they are (Numba then simply compiles
    or loads as before); concurrent processes may both empty it, which only costs a
    compilation.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "k.py").write_text("x = 1")
    5
    >>> (d / "c").mkdir(); (d / "c" / "k.f-1.py311.nbi").write_bytes(b"old")
    3
    >>> drop_stale_cache(str(d), str(d / "c")), drop_stale_cache(str(d), str(d / "c"))
    (1, 0)
    """
    try:
        digest = hashlib.sha256()
        for name in sorted(os.listdir(src_dir)):
            if name.endswith(".py"):
                with open(os.path.join(src_dir, name), "rb") as f:
                    digest.update(name.encode() + b"\0" + f.read() + b"\0")
        stamp = digest.hexdigest()
        marker = os.path.join(cache_dir, _STAMP)
        try:
            with open(marker, encoding="ascii") as f:
                if f.read().strip() == stamp:
                    return 0
        except (OSError, UnicodeDecodeError):
            pass
        removed = 0
        if os.path.isdir(cache_dir):
            for name in os.listdir(cache_dir):
                if name.endswith((".nbi", ".nbc")):
                    try:
                        os.remove(os.path.join(cache_dir, name))
                        removed += 1
                    except FileNotFoundError:
                        pass
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{marker}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(stamp + "\n")
        os.replace(tmp, marker)
        return removed
    except OSError:
        return 0


def _cache_dir() -> str | None:
    """Where Numba caches the kernels of this folder (in-tree ``__pycache__``, or the
    user-wide / ``NUMBA_CACHE_DIR`` place Numba picks when that is not writable)."""
    try:
        from numba import njit

        @njit(cache=True)
        def _probe():  # never called: its cache locator is the folder's
            return 0

        return _probe._cache._cache_path  # private Numba attribute: any surprise -> None
    except Exception:  # noqa: BLE001
        return None


def _import_numpy_support() -> bool:
    """Import Numba's NumPy support (``numba.np.arraymath``, loaded anyway by the first
    kernel a process runs) with its BLAS probe answered "absent"; True when done here.

    At import that module probes for BLAS by importing ``scipy.linalg`` when SciPy is
    installed: ~0.12 s in every worker process, for kernels that use no BLAS. The probe's
    answer only picks how Numba code computes ``np.correlate`` / ``np.convolve`` (its own
    loop instead of ``np.dot``); ``np.dot`` and ``np.linalg`` in Numba code still import
    SciPy when they are compiled, and work as before. Nothing is done when the module or
    ``scipy.linalg`` is already loaded.
    """
    blas = "scipy.linalg.cython_blas"
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules or blas in sys.modules:
        return False
    sys.modules[blas] = None  # an import of it now fails at once, without importing scipy.linalg
    try:
        import numba.np.arraymath  # noqa: F401
    except Exception:  # noqa: BLE001 - another Numba: its first kernel load imports it as usual
        return False
    finally:
        if blas in sys.modules and sys.modules[blas] is None:
            del sys.modules[blas]
    return True


def has_compiled(cache_dir: str | None) -> bool:
    """True when ``cache_dir`` holds any compiled kernel (a Numba cache index); one listing.

    >>> import tempfile
    >>> has_compiled(tempfile.mkdtemp()), has_compiled(None)
    (False, False)
    """
    try:
        return cache_dir is not None and any(n.endswith(".nbi") for n in os.listdir(cache_dir))
    except OSError:
        return False


_import_numpy_support()
_where = _cache_dir()
if _where is not None:
    drop_stale_cache(os.path.dirname(os.path.abspath(__file__)), _where)
#: True when no kernel of these sources was compiled yet (a new install, an upgrade, an
#: emptied cache): the first job compiles them (~30 s). Read by the command line, which
#: says so once; kernels themselves never print.
COLD_CACHE = not has_compiled(_where)
del _where
