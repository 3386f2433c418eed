"""Per-item memory budget of the labeling jobs: refuse an item before the work, not after.

Labeling (``validate``'s component statistics and ``tiny_island``, ``instances``) holds
the mask's *runs* (maximal horizontal stretches of one value) and one value and one area
per component -- never a Python object per component.  Its working memory is therefore
at most :func:`run_bytes` per run plus a scratch of a few bytes per pixel of a row or a
column; a smooth 640x480 mask has a few thousand runs, a one-pixel checkerboard or noise
one per pixel or two.  :func:`check_item_memory` bounds it before anything is allocated:
with the worst case (one run per pixel) under the budget, nothing more is done (the usual
case, a few arithmetic operations); else the runs are counted (one read of the pixels)
and an item whose estimate still exceeds the budget becomes an error row
``too_complex``, so one hostile file never takes its worker's memory.

>>> import numpy as np
>>> m = (np.indices((100, 100)).sum(axis=0) % 2).astype(np.uint8)   # one run per pixel
>>> run_bytes(m), estimate_bytes(m) - estimate_bytes(m, runs=0)    # 10,000 runs
(26, 260000)
>>> check_item_memory(m, 1 << 30)        # fits
>>> check_item_memory(m, 100_000)        # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
ItemError: too_complex
"""
from __future__ import annotations

import numpy as np

from ..engine import ItemError

#: the error code of an item whose work would exceed the budget
TOO_COMPLEX = "too_complex"

#: default budget (bytes of working memory per item), ``--max-item-memory``
DEFAULT_MAX_ITEM_MEMORY = 1 << 30


def parse_size(text: str) -> int | None:
    """``--max-item-memory`` values: bytes, with an optional K/M/G/T suffix (powers of
    1024); ``none`` for no limit.

    >>> parse_size("512M"), parse_size("2G"), parse_size("none")
    (536870912, 2147483648, None)
    """
    t = str(text).strip().lower().removesuffix("b").removesuffix("i")
    if t in ("none", "inf", "unlimited"):
        return None
    scale = 1
    if t and t[-1] in "kmgt":
        scale = 1024 ** ("kmgt".index(t[-1]) + 1)
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"expected a size such as 1G, 512M or none, got {text!r}") from None
    if not value >= 0 or value * scale > 2**62:
        raise ValueError(f"expected a size such as 1G, 512M or none, got {text!r}")
    return int(value * scale)


def run_bytes(mask: np.ndarray) -> int:
    """Working bytes per run: start, end, union-find parent (index-sized: 4 bytes below
    2**31 pixels, else 8) and value (the mask's item size), twice -- the run arrays grow
    by doubling and a component (at most one per run) keeps one value and one area.
    26 bytes for an 8-bit mask, 28 for a 16-bit one."""
    idx = 4 if mask.size < 2**31 else 8
    return 2 * (3 * idx + mask.dtype.itemsize)


def _fixed_bytes(mask: np.ndarray) -> int:
    # per-row / per-column scratch (run starts and differing stretches of three rows, row
    # pointers), and for values beyond 2**20 the compacted codes with their sort
    h, w = mask.shape
    extra = 24 * mask.size if mask.dtype.itemsize > 2 else 0
    return 32 * w + 16 * h + extra


def estimate_bytes(mask: np.ndarray, runs: int | None = None) -> int:
    """Working memory to label ``mask``: :func:`run_bytes` per run (``runs``: counted when
    None) plus the row and column scratch."""
    if runs is None:
        from ..kernels.validate import count_runs

        runs = int(count_runs(np.ascontiguousarray(mask))) if mask.size else 0
    return runs * run_bytes(mask) + _fixed_bytes(mask)


def check_item_memory(mask: np.ndarray, budget: int | None, what: str = "mask", per_run: int = 0,
                      background: int | None = None) -> None:
    """Raise ``ItemError("too_complex")`` when labeling ``mask`` would need more than
    ``budget`` bytes (None: no limit); ``per_run``: the caller's own bytes per run (or
    component) on top of :func:`run_bytes`; runs of ``background`` are not labeled (not
    counted).  Counts the runs only when the worst case (one run per pixel) exceeds the
    budget."""
    if budget is None or mask.ndim != 2:
        return
    per = run_bytes(mask) + per_run
    fixed = _fixed_bytes(mask)
    if mask.size * per + fixed <= budget:
        return
    from ..kernels.validate import count_fg_runs

    m = np.ascontiguousarray(mask)
    if m.dtype == np.bool_:
        m = m.view(np.uint8)
    info = np.iinfo(m.dtype) if m.dtype.kind in "iu" else None
    has_bg = info is not None and background is not None and info.min <= background <= info.max
    runs = int(count_fg_runs(m, 0, has_bg, m.dtype.type(background if has_bg else 0))) if m.size else 0
    need = runs * per + fixed
    if need > budget:
        h, w = mask.shape
        raise ItemError(TOO_COMPLEX, f"the {what} ({w}x{h}) would need about {need / 2**20:,.0f} MiB to label "
                                     f"({runs:,} runs), above the per-item budget of "
                                     f"{budget / 2**20:,.0f} MiB (--max-item-memory)")
