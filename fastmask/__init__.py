"""fastmask: fast, trustworthy segmentation masks at dataset scale.

Submodules are imported lazily so that ``import fastmask`` (and the CLI's
``--help``) stay cheap: nothing here touches Numba until a kernel is used.
"""
from importlib import import_module as _import_module

from ._version import __version__

__all__ = ["__version__", "rle", "raster", "components", "metrics"]


def __getattr__(name):
    if name in {"rle", "raster", "components", "metrics", "kernels"}:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'fastmask' has no attribute {name!r}")
