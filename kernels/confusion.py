"""Confusion-matrix kernels: ground truth x prediction pixel counts.

Arrays in, arrays out. Rows are ground-truth values, columns are predicted values,
counts are int64. Pixels whose ground truth equals the ignore value are skipped
(and counted); pixels where either value is outside ``[0, num_classes)`` are not
put in the matrix but counted, so that ``matrix.sum() + ignored + excluded`` always
equals the number of pixels. The pixels whose ground truth is a class and whose
prediction is out of range are also counted per ground-truth class (``pred_out_by_class``:
the false negatives of mmsegmentation's definition). Nothing is raised: the Python layer
decides what an out-of-range value means.

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

from .png import row_scratch, unfilter_row

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
    """Fold a 65536-bin joint histogram into (matrix, gt_out, pred_out, counts, pred_out_by_class).

    ``gt_out[v]`` = pixels with gt == v out of range (ignored gt excluded);
    ``pred_out[v]`` = pixels with pred == v out of range whose gt is not ignored;
    ``pred_out_by_class[c]`` = pixels with gt == c (a class) and pred out of range.
    """
    nc = num_classes
    cm = np.zeros((nc, nc), np.int64)
    by_class = np.zeros(nc, np.int64)
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
                    if g_in:
                        by_class[g] += c
    return cm, gt_out, pred_out, counts, by_class


@njit(cache=True, nogil=True)
def confusion_u8(gt, pred, num_classes, ignore_index, has_ignore):
    """Confusion matrix of two 1-D C-contiguous uint8 arrays of equal length.

    Returns ``(matrix (nc, nc) int64, gt_out (256,), pred_out (256,), counts (5,),
    pred_out_by_class (nc,))``; ``counts`` is indexed by IGNORED, EXCLUDED, GT_OUT,
    PRED_OUT, NEGATIVE.
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
def _count_excluded(counts, by_class, g, p, run, num_classes):
    # rare path: a run whose gt or pred is out of range (gt not ignored)
    counts[EXCLUDED] += run
    g_in = 0 <= g < num_classes
    if not g_in:
        counts[GT_OUT] += run
    if not (0 <= p < num_classes):
        counts[PRED_OUT] += run
        if g_in:
            by_class[g] += run
    if g < 0 or p < 0:
        counts[NEGATIVE] += run


@njit(cache=True, nogil=True)
def confusion_generic(gt, pred, num_classes, ignore_index, has_ignore):
    """Confusion matrix of two 1-D integer arrays (any integer dtypes) of equal length.

    Returns ``(matrix (nc, nc) int64, counts (5,), pred_out_by_class (nc,))`` as in
    ``confusion_u8`` (out-of-range values are only counted here; the caller finds which
    values they are).
    Values are compared as int64 (uint64 values above 2**63 - 1 must be screened out by
    the caller).

    Blocks of 8 pixels that all repeat the current (gt, pred) pair extend a run (one add
    per run); other blocks are counted pixel by pixel. Both branches stay predictable on
    smooth maps and on noise alike.
    """
    nc = num_classes
    flat = np.zeros(nc * nc, np.int64)
    counts = np.zeros(N_COUNTS, np.int64)
    by_class = np.zeros(nc, np.int64)
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
                _count_excluded(counts, by_class, cg, cp, run, nc)
            run = 0
        for j in range(b, b + 8):
            g = np.int64(gt[j])
            p = np.int64(pred[j])
            if has_ignore and g == ignore_index:
                counts[IGNORED] += 1
            elif np.uint64(g) < unc and np.uint64(p) < unc:  # also rejects negatives
                flat[g * nc + p] += 1
            else:
                _count_excluded(counts, by_class, g, p, 1, nc)
        cg = np.int64(gt[b + 7])
        cp = np.int64(pred[b + 7])
    if run > 0:
        if has_ignore and cg == ignore_index:
            counts[IGNORED] += run
        elif np.uint64(cg) < unc and np.uint64(cp) < unc:
            flat[cg * nc + cp] += run
        else:
            _count_excluded(counts, by_class, cg, cp, run, nc)
    for j in range(nb, n):
        g = np.int64(gt[j])
        p = np.int64(pred[j])
        if has_ignore and g == ignore_index:
            counts[IGNORED] += 1
        elif np.uint64(g) < unc and np.uint64(p) < unc:
            flat[g * nc + p] += 1
        else:
            _count_excluded(counts, by_class, g, p, 1, nc)
    return flat.reshape((nc, nc)), counts, by_class


@njit(cache=True, nogil=True)
def _pairwise_block(a, lo, n):
    # NumPy's pairwise_sum for n <= 128: 8 accumulators, combined as a tree
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    m = n - n % 8
    for i in range(lo + 8, lo + m, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(lo + m, lo + n):
        res += a[i]
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(a, lo, n):
    """``a[lo:lo + n].sum()`` in NumPy's order (pairwise: blocks of up to 128 values with 8
    accumulators, larger ranges split in halves rounded to 8), so that a score computed
    here equals the same score computed with NumPy bit for bit.

    (NumPy recurses; this walks the same tree with an explicit stack: Numba's cache
    cannot hold a recursive function.)
    """
    if n <= 128:
        return _pairwise_block(a, lo, n)
    s_lo = np.empty(192, np.int64)
    s_n = np.empty(192, np.int64)
    s_combine = np.empty(192, np.bool_)
    vals = np.empty(192, np.float64)
    top = 0
    nv = 0
    s_lo[0] = lo
    s_n[0] = n
    s_combine[0] = False
    top = 1
    while top:
        top -= 1
        l = s_lo[top]
        m = s_n[top]
        if s_combine[top]:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
        elif m <= 128:
            vals[nv] = _pairwise_block(a, l, m)
            nv += 1
        else:
            n2 = m // 2
            n2 -= n2 % 8
            s_lo[top] = l
            s_n[top] = m
            s_combine[top] = True
            s_lo[top + 1] = l + n2  # right half, evaluated second
            s_n[top + 1] = m - n2
            s_combine[top + 1] = False
            s_lo[top + 2] = l  # left half, evaluated first
            s_n[top + 2] = n2
            s_combine[top + 2] = False
            top += 3
    return vals[0]


# header of image_scores_u8's integer result
IMG_IGNORED = 0
IMG_EXCLUDED = 1
IMG_TOTAL = 2  # pixels scored: in the matrix (+ out-of-range predictions when they are FN)
IMG_TP = 3  # pixels on its diagonal
IMG_N_PRESENT = 4
IMG_N_CELLS = 5
IMG_GT_OUT = 6  # gt not ignored and out of range
IMG_PRED_OUT = 7  # gt a class, prediction out of range
IMG_N_OUT_CELLS = 8  # cells (gt class, out-of-range predicted value)
IMG_HEADER = 9


@njit(cache=True, nogil=True)
def _nanmean(s, n):
    # metrics.mean_score: NaN left out, summed in NumPy's order (zeros in their place)
    vals = np.empty(n, np.float64)
    k = 0
    for c in range(n):
        if s[c] == s[c]:
            vals[c] = s[c]
            k += 1
        else:
            vals[c] = 0.0
    if k == 0:
        return np.nan
    return pairwise_sum(vals, 0, n) / k


@njit(cache=True, nogil=True)
def image_scores_u8(gt, pred, num_classes, ignore_index, has_ignore, fill, out_of_range_fn):
    """Everything ``evaluate`` keeps of one uint8 image pair, in one call.

    ``gt``, ``pred``: 1-D C-contiguous uint8 arrays of equal length; ``fill``: the score
    of a class absent from both (NaN, 1 or 0); ``out_of_range_fn``: a predicted value
    ``>= num_classes`` on a ground-truth class counts as a false negative of that class
    (else it is left out). Returns ``(ints, floats)``:

    - ``ints``: a header (``IMG_*``: ignored and excluded pixels as counted by
      :func:`confusion_u8`, pixels scored, the matrix's trace, ``np`` classes present in
      gt or prediction, ``nz`` non-zero cells, out-of-range gt pixels, out-of-range
      predictions on gt classes, ``no`` cells of those), then the ``np`` present classes
      and their TP, FP, FN (four sections of ``np``), then the non-zero cells in
      row-major order: ``nz`` gt classes, ``nz`` predicted classes, ``nz`` pixel counts,
      then the ``no`` out-of-range cells the same way (gt class, predicted value, pixels);
    - ``floats``: mIoU, mDice (:func:`fastmask.metrics.mean_score` over all classes),
      then the ``np`` present classes' IoU and their ``np`` Dice.

    Scores are computed as :mod:`fastmask.metrics` computes them from a
    :class:`~fastmask.metrics.ConfusionCounts` (same operations, same summation order):
    equal bit for bit. Meaningless when ground-truth values are out of range
    (``ints[IMG_GT_OUT] > 0``): the caller decides.
    """
    hist = np.zeros(65536, np.int64)
    joint_histogram_u8(gt, pred, hist)
    return image_scores_joint(hist, num_classes, ignore_index, has_ignore, fill, out_of_range_fn)


@njit(cache=True, nogil=True)
def png_unfilter_joint_u8(buf, h, w, gt, hist):
    """Undo the row filters of an 8-bit PNG's image data in place (``buf`` as for
    :func:`fastmask.kernels.png.png_unfilter`: ``h`` rows of a filter byte and ``w``
    bytes) and add the joint histogram of ``gt`` (1-D uint8, ``h * w``, C order) and the
    decoded image into ``hist`` (as :func:`joint_histogram_u8`): each band of rows counted
    right after it is written, one pass over the pixels instead of decode then count.

    Returns -1, or the index of the first row whose filter-type byte is not 0..4 (the
    histogram is then incomplete).
    """
    t = row_scratch(w)
    # counted a band of rows at a time (~16 KB, still in the L1/L2 cache): a call per row
    # would cost more than the pass it saves
    band = max(1, 16384 // w)
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        for y in range(y0, y1):
            if not unfilter_row(buf, y, w, 1, t, None):
                return y
        joint_histogram_u8(gt[y0 * w:y1 * w], buf[y0 * w:y1 * w], hist)
    return -1


@njit(cache=True, nogil=True)
def image_scores_joint(hist, num_classes, ignore_index, has_ignore, fill, out_of_range_fn):
    """:func:`image_scores_u8` from the pair's joint histogram (int64, 65536 bins, bin
    ``gt << 8 | pred``), however it was counted."""
    nc = num_classes
    cm, gt_out, pred_out, counts, by_class = fold_u8_histogram(hist, nc, ignore_index, has_ignore)
    tp = np.empty(nc, np.int64)
    fp = np.zeros(nc, np.int64)
    fn = np.zeros(nc, np.int64)
    total = np.int64(0)
    nz = 0
    for g in range(nc):
        for p in range(nc):
            c = cm[g, p]
            if c:
                nz += 1
                total += c
                fn[g] += c
                fp[p] += c
    n_oor = np.int64(0)
    no = 0
    for g in range(nc):
        n_oor += by_class[g]
        if out_of_range_fn:
            fn[g] += by_class[g]
        if by_class[g]:
            for p in range(nc, 256):
                if hist[(g << 8) | p]:
                    no += 1
    if out_of_range_fn:
        total += n_oor
    trace = np.int64(0)
    npres = 0
    for c in range(nc):
        tp[c] = cm[c, c]
        trace += tp[c]
        fp[c] -= tp[c]
        fn[c] -= tp[c]
        if tp[c] + fp[c] + fn[c] > 0:
            npres += 1
    iou = np.empty(nc, np.float64)
    dice = np.empty(nc, np.float64)
    for c in range(nc):
        if tp[c] + fp[c] + fn[c] == 0:
            iou[c] = fill
            dice[c] = fill
        else:
            iou[c] = np.float64(tp[c]) / np.float64(tp[c] + fp[c] + fn[c])
            dice[c] = np.float64(2 * tp[c]) / np.float64(2 * tp[c] + fp[c] + fn[c])
    ints = np.empty(IMG_HEADER + 4 * npres + 3 * nz + 3 * no, np.int64)
    floats = np.empty(2 + 2 * npres, np.float64)
    ints[IMG_IGNORED] = counts[IGNORED]
    ints[IMG_EXCLUDED] = counts[EXCLUDED]
    ints[IMG_TOTAL] = total
    ints[IMG_TP] = trace
    ints[IMG_N_PRESENT] = npres
    ints[IMG_N_CELLS] = nz
    ints[IMG_GT_OUT] = counts[GT_OUT]
    ints[IMG_PRED_OUT] = n_oor
    ints[IMG_N_OUT_CELLS] = no
    floats[0] = _nanmean(iou, nc)
    floats[1] = _nanmean(dice, nc)
    k = 0
    for c in range(nc):
        if tp[c] + fp[c] + fn[c] > 0:
            q = IMG_HEADER + k
            ints[q] = c
            ints[q + npres] = tp[c]
            ints[q + 2 * npres] = fp[c]
            ints[q + 3 * npres] = fn[c]
            floats[2 + k] = iou[c]
            floats[2 + npres + k] = dice[c]
            k += 1
    q = IMG_HEADER + 4 * npres
    k = 0
    for g in range(nc):
        for p in range(nc):
            c = cm[g, p]
            if c:
                ints[q + k] = g
                ints[q + nz + k] = p
                ints[q + 2 * nz + k] = c
                k += 1
    q += 3 * nz
    k = 0
    for g in range(nc):
        if by_class[g]:
            for p in range(nc, 256):
                c = hist[(g << 8) | p]
                if c:
                    ints[q + k] = g
                    ints[q + no + k] = p
                    ints[q + 2 * no + k] = c
                    k += 1
    return ints, floats
