"""Confusion-matrix speed: fastmask vs ``np.bincount`` on 2048x1024 label maps.

Data (19 classes + ignore 255, uint8):

* ``real-like``: smooth regions (a Voronoi partition sampled at a non-integer scale, so
  boundaries are not grid aligned), an ignore band at the bottom and a few ignore
  regions; the prediction is the same partition sampled through a smooth random
  displacement field (boundaries moved by up to ~4 px), with ~8% of regions relabelled.
* ``noise``: independent uniform labels (5% ignore): the worst case for run-length tricks.

Anchors: ``np.bincount(nc * gt + pred)`` (what most code does, without even masking
ignore), the masked form used by mmsegmentation, and the memory floor
``np.count_nonzero`` of both arrays (reading the 2 x 2 MB once).
"""
from __future__ import annotations

import numpy as np

from benchmarks._timing import Table, fmt_time, median_seconds

NC = 19
IGNORE = 255


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int, amp: float) -> np.ndarray:
    """A smooth random field: bilinear upsampling of a coarse random grid."""
    ch, cw = cells, max(2, cells * w // h)
    g = rng.uniform(-amp, amp, (ch + 1, cw + 1))
    y = np.linspace(0, ch, h, endpoint=False)
    x = np.linspace(0, cw, w, endpoint=False)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    a = g[y0][:, x0]
    b = g[y0][:, x0 + 1]
    c = g[y0 + 1][:, x0]
    d = g[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def real_like_pair(h: int = 1024, w: int = 2048, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = 6.37  # coarse grid -> pixels, deliberately not an integer
    hl, wl = int(h / scale) + 2, int(w / scale) + 2
    n_seeds = 260
    sy = rng.uniform(0, hl, n_seeds)
    sx = rng.uniform(0, wl, n_seeds)
    labels = rng.integers(0, NC, n_seeds)
    yy, xx = np.mgrid[0:hl, 0:wl]
    owner = np.empty((hl, wl), np.int64)
    for r in range(0, hl, 16):  # nearest seed, in row blocks to bound memory
        d = (yy[r:r + 16, :, None] - sy) ** 2 + (xx[r:r + 16, :, None] - sx) ** 2
        owner[r:r + 16] = d.argmin(-1)
    gt_labels = labels.astype(np.uint8)
    pred_labels = gt_labels.copy()
    flip = rng.random(n_seeds) < 0.08
    pred_labels[flip] = rng.integers(0, NC, int(flip.sum()))
    gt_labels[rng.random(n_seeds) < 0.04] = IGNORE  # some void regions

    y = np.arange(h)[:, None] / scale
    x = np.arange(w)[None, :] / scale
    gy = np.clip(np.broadcast_to(y, (h, w)).astype(np.int64), 0, hl - 1)
    gx = np.clip(np.broadcast_to(x, (h, w)).astype(np.int64), 0, wl - 1)
    gt = gt_labels[owner[gy, gx]]
    dy = _smooth_field(rng, h, w, 12, 4.0) / scale
    dx = _smooth_field(rng, h, w, 12, 4.0) / scale
    py = np.clip((y + dy).astype(np.int64), 0, hl - 1)
    px = np.clip((x + dx).astype(np.int64), 0, wl - 1)
    pred = pred_labels[owner[py, px]]
    # ego-vehicle-like ignore band at the bottom, with a curved top edge
    top = (0.86 * h + 0.05 * h * np.sin(np.linspace(0, np.pi, w))).astype(np.int64)
    gt[np.arange(h)[:, None] >= top[None, :]] = IGNORE
    return np.ascontiguousarray(gt), np.ascontiguousarray(pred)


def noise_pair(h: int = 1024, w: int = 2048, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, NC, (h, w)).astype(np.uint8)
    gt[rng.random((h, w)) < 0.05] = IGNORE
    pred = rng.integers(0, NC, (h, w)).astype(np.uint8)
    return gt, pred


def _bincount_plain(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.bincount(NC * gt.ravel().astype(np.int64) + pred.ravel())


def _bincount_masked(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    g = gt.ravel()
    m = g != IGNORE
    return np.bincount(NC * g[m].astype(np.int64) + pred.ravel()[m], minlength=NC * NC).reshape(NC, NC)


def run(quick: bool = False) -> None:
    import numba

    from fastmask import metrics
    from fastmask.kernels import confusion as kc

    h, w = (512, 1024) if quick else (1024, 2048)
    repeat = 3 if quick else 15
    table = Table(f"confusion matrix, {h}x{w} uint8, {NC} classes + ignore {IGNORE}")
    for name, (gt, pred) in (("real-like", real_like_pair(h, w)), ("noise", noise_pair(h, w))):
        ref = _bincount_masked(gt, pred)
        got = metrics.confusion_matrix(gt, pred, NC, out_of_range="ignore")
        assert np.array_equal(got.matrix, ref), name  # a benchmark of a wrong answer is worthless
        g16, p16 = gt.astype(np.uint16), pred.astype(np.uint16)
        gflat, pflat = gt.ravel(), pred.ravel()

        t_plain = median_seconds(lambda: _bincount_plain(gt, pred), repeat=repeat)
        t_masked = median_seconds(lambda: _bincount_masked(gt, pred), repeat=repeat)
        t_floor = median_seconds(lambda: (np.count_nonzero(gt), np.count_nonzero(pred)), repeat=repeat)
        t_api = median_seconds(lambda: metrics.confusion_matrix(gt, pred, NC, out_of_range="ignore"), repeat=repeat)
        t_kernel = median_seconds(lambda: kc.confusion_u8(gflat, pflat, NC, IGNORE, True), repeat=repeat)
        t_par = median_seconds(lambda: metrics.confusion_matrix(gt, pred, NC, out_of_range="ignore", parallel=True),
                               repeat=repeat)
        t_u16 = median_seconds(lambda: metrics.confusion_matrix(g16, p16, NC, out_of_range="ignore"), repeat=repeat)
        t_plain16 = median_seconds(lambda: _bincount_plain(g16, p16), repeat=repeat)

        frac_uniform = _uniform_word_fraction(gflat, pflat)
        table.add(f"{name}: confusion_matrix (1 thread)", t_api, t_plain, "np.bincount(nc*gt+pred)",
                  f"{frac_uniform:.0%} of 8-px words constant in both maps")
        table.add(f"{name}: confusion_matrix (1 thread)", t_api, t_masked, "bincount, ignore masked (mmseg)")
        table.add(f"{name}: kernel confusion_u8 only", t_kernel, t_plain, "np.bincount(nc*gt+pred)")
        table.add(f"{name}: confusion_matrix parallel=True", t_par, t_plain, "np.bincount(nc*gt+pred)",
                  f"{numba.get_num_threads()} threads; erratic when the cores are busy")
        table.add(f"{name}: confusion_matrix uint16 (generic kernel)", t_u16, t_plain16, "np.bincount(nc*gt+pred) uint16")
        table.add(f"{name}: confusion_matrix (1 thread)", t_api, t_floor, "memory floor: count_nonzero x2",
                  f"fastmask takes {t_api / t_floor:.1f}x the floor ({fmt_time(t_floor)})")
    table.print()


def _uniform_word_fraction(g: np.ndarray, p: np.ndarray) -> float:
    n = g.size // 8 * 8
    g64, p64 = g[:n].view(np.uint64), p[:n].view(np.uint64)
    bc = np.uint64(0x0101010101010101)
    ff = np.uint64(0xFF)
    return float(((g64 == (g64 & ff) * bc) & (p64 == (p64 & ff) * bc)).mean())


if __name__ == "__main__":
    run(quick=False)
