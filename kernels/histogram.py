"""Value histograms of 8/16-bit label maps (the per-mask inventory of ``scan``)."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def value_histogram(flat, nbins):
    """Counts of each value of a 1-D uint8/uint16 array, int64 (nbins,).

    Four interleaved sub-histograms break the store-to-load dependency of runs
    of equal values (the common case in label maps).
    """
    sub = np.zeros((4, nbins), np.int64)
    n = flat.shape[0]
    stop = n - n % 4
    for i in range(0, stop, 4):
        sub[0, flat[i]] += 1
        sub[1, flat[i + 1]] += 1
        sub[2, flat[i + 2]] += 1
        sub[3, flat[i + 3]] += 1
    for i in range(stop, n):
        sub[0, flat[i]] += 1
    out = np.zeros(nbins, np.int64)
    for b in range(nbins):
        out[b] = sub[0, b] + sub[1, b] + sub[2, b] + sub[3, b]
    return out
