"""Per-pixel segment keys for the ``convert`` job (class map + optional instance map -> one key map).

Key of a pixel (``m`` = largest instance id + 1, ``n`` = largest class id + 1):

* ``top = m + n``: ignore (the class or the instance is the ignore value);
* ``1 .. m-1``: the pixel's instance id (instance maps only);
* ``m + c``: class ``c`` outside every instance (``c`` not background);
* ``0``: background.

Arrays in, arrays out; no data errors (the caller checks non-negative ids).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def segment_keys(cls, inst, has_inst, background, has_bg, ignore, has_ign, m, n):
    """Key map (int64, the shape of ``cls``) as described in the module docstring."""
    h, w = cls.shape
    key = np.zeros((h, w), np.int64)
    top = m + n
    for r in range(h):
        for c in range(w):
            v = np.int64(cls[r, c])
            i = np.int64(inst[r, c]) if has_inst else np.int64(0)
            if has_ign and (v == ignore or (has_inst and i == ignore)):
                key[r, c] = top
            elif i != 0:
                key[r, c] = i
            elif not (has_bg and v == background):
                key[r, c] = m + v
    return key
