"""What importing the kernels does (kernels/__init__.py): Numba's cache is keyed on the whole
kernels folder, and Numba's NumPy support is loaded without its BLAS probe."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastmask.kernels import drop_stale_cache


def _cache_files(d):
    return sorted(p.name for p in d.iterdir() if p.suffix in (".nbi", ".nbc"))


def test_a_change_in_any_kernel_file_empties_the_cache(tmp_path):
    src, cache = tmp_path / "kernels", tmp_path / "kernels" / "__pycache__"
    src.mkdir()
    (src / "components.py").write_text("def f(): return 1\n")
    (src / "validate.py").write_text("from .components import f\n")
    cache.mkdir()
    for name in ("validate.g-10.py311.nbi", "validate.g-10.py311.1.nbc", "other.pyc"):
        (cache / name).write_bytes(b"x")
    assert drop_stale_cache(str(src), str(cache)) == 2  # no stamp yet: emptied
    assert _cache_files(cache) == [] and (cache / "other.pyc").exists()
    (cache / "validate.g-10.py311.nbi").write_bytes(b"fresh")  # compiled for these sources
    assert drop_stale_cache(str(src), str(cache)) == 0
    assert _cache_files(cache) == ["validate.g-10.py311.nbi"]
    # validate.py unchanged, components.py changed: Numba alone would keep validate's entry
    (src / "components.py").write_text("def f(): return 2\n")
    assert drop_stale_cache(str(src), str(cache)) == 1
    assert _cache_files(cache) == []
    assert drop_stale_cache(str(src), str(cache)) == 0


def test_an_unwritable_or_missing_place_is_left_alone(tmp_path):
    assert drop_stale_cache(str(tmp_path / "nowhere"), str(tmp_path / "c")) == 0
    src = tmp_path / "k"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert drop_stale_cache(str(src), str(blocked / "cache")) == 0
    assert os.path.isfile(blocked)


def test_the_installed_kernels_folder_has_a_current_stamp():
    import fastmask.kernels as k

    where = k._cache_dir()
    assert where is not None
    folder = os.path.dirname(os.path.abspath(k.__file__))
    assert drop_stale_cache(folder, where) == 0  # the import already stamped it


# -- Numba's NumPy support without the BLAS probe (kernels/__init__.py) ------------------

_BLAS_CHECK = r"""
import sys
import fastmask.kernels
print("arraymath" if "numba.np.arraymath" in sys.modules else "-",
      "scipy.linalg" if "scipy.linalg" in sys.modules else "-",
      "blocked" if sys.modules.get("scipy.linalg.cython_blas", 0) is None else "-")
import numpy as np
from numba import njit

@njit
def dot(a, b):
    return np.dot(a, b)

@njit
def conv(a, b):
    return np.convolve(a, b)

a = np.arange(6.0)
assert dot(a, a) == float(a @ a)
assert np.array_equal(conv(a, a[:3]), np.convolve(a, a[:3]))
print("scipy.linalg" if "scipy.linalg" in sys.modules else "-")
"""


def _fresh_python(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_kernels_load_numbas_numpy_support_without_importing_scipy_linalg():
    pytest.importorskip("scipy")  # without SciPy there is no probe to avoid
    words = _fresh_python(_BLAS_CHECK)
    # at import: NumPy support loaded, scipy.linalg not, and no import left blocked ...
    assert words[:3] == ["arraymath", "-", "-"], words
    # ... and np.dot (BLAS through scipy.linalg) and np.convolve still compile and agree
    assert words[3] == "scipy.linalg", words


def test_kernels_leave_numba_alone_when_scipy_linalg_is_already_loaded():
    pytest.importorskip("scipy")
    words = _fresh_python("import scipy.linalg\n" + _BLAS_CHECK)
    assert words == ["-", "scipy.linalg", "-", "scipy.linalg"], words  # not loaded early
    # Numba's own probe ran and found BLAS
    assert _fresh_python("import scipy.linalg, fastmask.kernels\nfrom numba.np import arraymath\n"
                         "print(arraymath._HAVE_BLAS)") == ["True"]
