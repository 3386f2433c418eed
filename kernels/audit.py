"""Kernels of ``fastmask audit``: the thickness of labeled regions.

:func:`max_square` gives, per label of a label image, the side of the largest
axis-aligned square of pixels that lies entirely inside that label's region (the
classic dynamic programme ``s = min(up, left, up-left) + 1``, where a neighbour counts
only when it carries the same label). A band ``w`` pixels wide has thickness ``w``
(once it is at least ``w`` long); a 1-pixel line, diagonal or not, has thickness 1.

Conventions: arrays in, arrays out; no exceptions, no prints. Labels are ``1..count``
(0 = no region); a label outside that range is skipped.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def max_square(labels, count):
    """Per label ``1..count``: the side of the largest square inside its region (int64[count])."""
    return _square_pass(labels, count, np.zeros((1, 1)), False)[0]


@njit(cache=True, nogil=True)
def max_square_sums(labels, count, values):
    """:func:`max_square` and, in the same pass, per label ``1..count`` the sum of ``values``
    (a float map of the labels' shape) over its pixels: ``(int64[count], float64[count])``."""
    return _square_pass(labels, count, values, True)


@njit(cache=True, nogil=True)
def disagreement(gt, pred, n, has_ignore, ignore, code):
    """One pass over two class maps of one shape (C-contiguous 2-D): ``code`` (int32/int64,
    same shape) gets ``gt * n + pred + 1`` where both are in ``[0, n)``, the ground truth is
    not ``ignore`` (when ``has_ignore``) and they differ, else 0. Returns the pixel counts
    ``(compared, differing, ignored, gt_out, pred_out)``: ``gt_out`` ground truth outside
    ``[0, n)`` (not ignore), ``pred_out`` prediction outside it on a ground truth in range."""
    H, W = gt.shape
    compared = 0
    differing = 0
    ignored = 0
    gt_out = 0
    pred_out = 0
    for r in range(H):
        for c in range(W):
            g = np.int64(gt[r, c])
            p = np.int64(pred[r, c])
            code[r, c] = 0
            if has_ignore and g == ignore:
                ignored += 1
            elif g < 0 or g >= n:
                gt_out += 1
            elif p < 0 or p >= n:
                pred_out += 1
            else:
                compared += 1
                if g != p:
                    differing += 1
                    code[r, c] = g * n + p + 1
    return compared, differing, ignored, gt_out, pred_out


@njit(cache=True, nogil=True)
def _square_pass(labels, count, values, with_values):
    """The pass behind :func:`max_square` / :func:`max_square_sums`."""
    H, W = labels.shape
    out = np.zeros(count, np.int64)
    sums = np.zeros(count, np.float64)
    prev = np.zeros(W, np.int64)
    cur = np.zeros(W, np.int64)
    for r in range(H):
        for c in range(W):
            lab = labels[r, c]
            if lab <= 0 or lab > count:
                cur[c] = 0
                continue
            if with_values:
                sums[lab - 1] += values[r, c]
            s = 1
            if r > 0 and c > 0 and labels[r - 1, c] == lab and labels[r, c - 1] == lab and labels[r - 1, c - 1] == lab:
                a = prev[c]
                b = cur[c - 1]
                d = prev[c - 1]
                m = a if a < b else b
                m = m if m < d else d
                s = m + 1
            cur[c] = s
            if s > out[lab - 1]:
                out[lab - 1] = s
        tmp = prev
        prev = cur
        cur = tmp
    return out, sums
