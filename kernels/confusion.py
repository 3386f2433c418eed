"""Confusion-matrix kernels: ground truth x prediction pixel counts.

Arrays in, arrays out. Rows are ground-truth values, columns are predicted values,
counts are int64. Pixels whose ground truth equals the ignore value are skipped
(and counted); pixels where either value is outside ``[0, num_classes)`` are not
put in the matrix but counted, so that ``matrix.sum() + ignored + excluded`` always
equals the number of pixels. Nothing is raised: the Python layer decides what an
out-of-range value means.

Two paths:

* ``confusion_u8`` (uint8 ground truth and prediction): a joint 256 x 256 histogram
  keyed by ``gt << 8 | pred``, filled by a run-length scan. Real label maps have long
  stretches where both maps are constant, so the scan reads 8 pixels of each map as
  one 64-bit word and, when both words repeat the current (gt, pred) pair, counts 8
  pixels with one add; in other words only the positions where the pair changes
  are visited, so a run costs one add whatever its length (which also avoids the
  store-to-load dependency of incrementing one bin pixel after pixel). The histogram is then folded into the
  ``num_classes`` square and per-value out-of-range counts.
* ``confusion_generic`` (any integer dtypes, e.g. uint16 or int32): the same
  run-length idea element by element, values compared as int64.

``confusion_u8_parallel`` splits the pixels into chunks, one joint histogram per
chunk (``prange``), for callers that want to use several cores on one big image.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

# Indices into the ``counts`` array returned by the kernels.
IGNORED = 0  # gt == ignore value: skipped
EXCLUDED = 1  # gt not ignored, and gt or pred outside [0, num_classes): not in the matrix
GT_OUT = 2  # gt not ignored and gt outside [0, num_classes)
PRED_OUT = 3  # gt not ignored and pred outside [0, num_classes)
NEGATIVE = 4  # gt not ignored, and gt < 0 or pred < 0
N_COUNTS = 5


@njit(cache=True, nogil=True)
def joint_histogram_u8(gt, pred, hist):
    """Add the joint histogram of two 1-D contiguous uint8 arrays into ``hist``.

    ``hist`` is int64 of length 65536, bin ``gt << 8 | pred``. Returns nothing.

    The scan keeps a current run (key, length). A word pair equal to the run's bytes
    broadcast over 8 lanes extends it by 8. Otherwise a mask of the byte positions where
    the (gt, pred) pair changes from the previous pixel is built with SWAR arithmetic;
    with at most 3 changes (the usual case at region boundaries) only the change points
    are visited, each closing a run with one add; with more (noise) every byte is added
    on its own, branch-free.
    """
    n = gt.size
    nw = n // 8
    g64 = gt[: nw * 8].view(np.uint64)
    p64 = pred[: nw * 8].view(np.uint64)
    bc = np.uint64(0x0101010101010101)
    lo7 = np.uint64(0x7F7F7F7F7F7F7F7F)
    hi = np.uint64(0x8080808080808080)
    # (1 << 8k) * magic has k in its top byte: the byte index of an isolated lane bit
    magic = np.uint64(0x0001020304050607)
    ff = np.uint64(0xFF)
    one = np.uint64(1)
    u3 = np.uint64(3)
    u7 = np.uint64(7)
    u8 = np.uint64(8)
    u56 = np.uint64(56)
    key = np.int64(0)
    cg = np.uint64(0)  # the run's gt byte broadcast over a word
    cp = np.uint64(0)  # the run's pred byte broadcast over a word
    run = np.int64(0)
    for i in range(nw):
        gw = g64[i]
        pw = p64[i]
        if gw == cg and pw == cp:
            run += 8
            continue
        # byte j of d is non-zero when pixel j's pair differs from pixel j-1's
        # (pixel -1 being the current run)
        d = (gw ^ ((gw << u8) | (cg & ff))) | (pw ^ ((pw << u8) | (cp & ff)))
        m = (((d & lo7) + lo7) | d) & hi  # high bit of each non-zero byte
        if (((m >> u7) * bc) >> u56) > u3:
            hist[key] += run
            for s in range(0, 56, 8):
                sh = np.uint64(s)
                hist[np.int64((((gw >> sh) & ff) << u8) | ((pw >> sh) & ff))] += 1
            key = np.int64((((gw >> u56) & ff) << u8) | ((pw >> u56) & ff))
            run = 1
        else:
            last = np.int64(0)
            while m != 0:
                low = m & (~m + one)
                pos = np.int64(((low >> u7) * magic) >> u56)
                hist[key] += run + pos - last
                sh = np.uint64(pos * 8)
                key = np.int64((((gw >> sh) & ff) << u8) | ((pw >> sh) & ff))
                run = 0
                last = pos
                m ^= low
            run += 8 - last
        cg = np.uint64(key >> 8) * bc
        cp = np.uint64(key & 0xFF) * bc
    for j in range(nw * 8, n):
        k = (np.int64(gt[j]) << 8) | np.int64(pred[j])
        if k == key:
            run += 1
        else:
            hist[key] += run
            key = k
            run = 1
    hist[key] += run


@njit(cache=True, nogil=True)
def fold_u8_histogram(hist, num_classes, ignore_index, has_ignore):
    """Fold a 65536-bin joint histogram into (matrix, gt_out, pred_out, counts).

    ``gt_out[v]`` = pixels with gt == v out of range (ignored gt excluded);
    ``pred_out[v]`` = pixels with pred == v out of range whose gt is not ignored.
    """
    nc = num_classes
    cm = np.zeros((nc, nc), np.int64)
    gt_out = np.zeros(256, np.int64)
    pred_out = np.zeros(256, np.int64)
    counts = np.zeros(N_COUNTS, np.int64)
    for g in range(256):
        row = g << 8
        if has_ignore and g == ignore_index:
            s = np.int64(0)
            for p in range(256):
                s += hist[row + p]
            counts[IGNORED] += s
            continue
        total = np.int64(0)
        for p in range(256):
            total += hist[row + p]
        if total == 0:
            continue
        g_in = g < nc
        for p in range(256):
            c = hist[row + p]
            if c == 0:
                continue
            p_in = p < nc
            if g_in and p_in:
                cm[g, p] += c
            else:
                counts[EXCLUDED] += c
                if not g_in:
                    gt_out[g] += c
                    counts[GT_OUT] += c
                if not p_in:
                    pred_out[p] += c
                    counts[PRED_OUT] += c
    return cm, gt_out, pred_out, counts


@njit(cache=True, nogil=True)
def confusion_u8(gt, pred, num_classes, ignore_index, has_ignore):
    """Confusion matrix of two 1-D C-contiguous uint8 arrays of equal length.

    Returns ``(matrix (nc, nc) int64, gt_out (256,), pred_out (256,), counts (5,))``;
    ``counts`` is indexed by IGNORED, EXCLUDED, GT_OUT, PRED_OUT, NEGATIVE.
    """
    hist = np.zeros(65536, np.int64)
    joint_histogram_u8(gt, pred, hist)
    return fold_u8_histogram(hist, num_classes, ignore_index, has_ignore)


@njit(cache=True, nogil=True, parallel=True)
def confusion_u8_parallel(gt, pred, num_classes, ignore_index, has_ignore, n_chunks):
    """``confusion_u8`` with the pixels split into ``n_chunks`` chunks filled in parallel."""
    n = gt.size
    if n_chunks < 1:
        n_chunks = 1
    # chunk boundaries on multiples of 8 so that every chunk but the last is word-aligned
    step = ((n // n_chunks) // 8 + 1) * 8
    hists = np.zeros((n_chunks, 65536), np.int64)
    for c in prange(n_chunks):
        a = min(c * step, n)
        b = min(a + step, n)
        if b > a:
            joint_histogram_u8(gt[a:b], pred[a:b], hists[c])
    hist = np.zeros(65536, np.int64)
    for c in range(n_chunks):
        for k in range(65536):
            hist[k] += hists[c, k]
    return fold_u8_histogram(hist, num_classes, ignore_index, has_ignore)


@njit(cache=True, nogil=True)
def _count_excluded(counts, g, p, run, num_classes):
    # rare path: a run whose gt or pred is out of range (gt not ignored)
    counts[EXCLUDED] += run
    if not (0 <= g < num_classes):
        counts[GT_OUT] += run
    if not (0 <= p < num_classes):
        counts[PRED_OUT] += run
    if g < 0 or p < 0:
        counts[NEGATIVE] += run


@njit(cache=True, nogil=True)
def confusion_generic(gt, pred, num_classes, ignore_index, has_ignore):
    """Confusion matrix of two 1-D integer arrays (any integer dtypes) of equal length.

    Returns ``(matrix (nc, nc) int64, counts (5,))`` with ``counts`` as in ``confusion_u8``
    (out-of-range values are only counted here; the caller finds which values they are).
    Values are compared as int64 (uint64 values above 2**63 - 1 must be screened out by
    the caller).

    Blocks of 8 pixels that all repeat the current (gt, pred) pair extend a run (one add
    per run); other blocks are counted pixel by pixel. Both branches stay predictable on
    smooth maps and on noise alike.
    """
    nc = num_classes
    flat = np.zeros(nc * nc, np.int64)
    counts = np.zeros(N_COUNTS, np.int64)
    n = gt.size
    unc = np.uint64(nc)
    cg = np.int64(0)
    cp = np.int64(0)
    run = np.int64(0)
    nb = n // 8 * 8
    for b in range(0, nb, 8):
        same = True
        for j in range(b, b + 8):
            same &= (np.int64(gt[j]) == cg) & (np.int64(pred[j]) == cp)
        if same:
            run += 8
            continue
        # close the run, then count this block pixel by pixel
        if run > 0:
            if has_ignore and cg == ignore_index:
                counts[IGNORED] += run
            elif np.uint64(cg) < unc and np.uint64(cp) < unc:
                flat[cg * nc + cp] += run
            else:
                _count_excluded(counts, cg, cp, run, nc)
            run = 0
        for j in range(b, b + 8):
            g = np.int64(gt[j])
            p = np.int64(pred[j])
            if has_ignore and g == ignore_index:
                counts[IGNORED] += 1
            elif np.uint64(g) < unc and np.uint64(p) < unc:  # also rejects negatives
                flat[g * nc + p] += 1
            else:
                _count_excluded(counts, g, p, 1, nc)
        cg = np.int64(gt[b + 7])
        cp = np.int64(pred[b + 7])
    if run > 0:
        if has_ignore and cg == ignore_index:
            counts[IGNORED] += run
        elif np.uint64(cg) < unc and np.uint64(cp) < unc:
            flat[cg * nc + cp] += run
        else:
            _count_excluded(counts, cg, cp, run, nc)
    for j in range(nb, n):
        g = np.int64(gt[j])
        p = np.int64(pred[j])
        if has_ignore and g == ignore_index:
            counts[IGNORED] += 1
        elif np.uint64(g) < unc and np.uint64(p) < unc:
            flat[g * nc + p] += 1
        else:
            _count_excluded(counts, g, p, 1, nc)
    return flat.reshape((nc, nc)), counts
