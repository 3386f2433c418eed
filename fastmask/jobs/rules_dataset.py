"""Dataset-level rules: classes never seen, per-image coverage outliers.

``coverage_outlier`` definition: for each class, the per-image *share* is its
pixels / the image's non-ignore pixels, over the images where the class is
present (share > 0); work in ``log10(share)`` (shares are skewed: a car covers
0.1 % or 40 %).  With ``m`` the median and ``s = max(1.4826 * MAD,
coverage_min_spread)`` (MAD: median absolute deviation, 1.4826 makes it a normal
sigma; the floor keeps near-constant classes from flagging tiny variations), an
image is an outlier for the class when ``|log10(share) - m| > coverage_k * s``.
Classes present in fewer than ``coverage_min_images`` images are not judged.
Background and the ignore value are not judged.

Two ways to get the bounds: :func:`coverage_bounds` from all shares (exact), or a
mergeable :class:`CoverageHistogram` (0.01-decade bins, one per class; shard
reduces add them up, memory independent of the number of images), then
:func:`coverage_outlier` per item.

>>> rng = np.random.default_rng(0)
>>> shares = {1: 10 ** rng.normal(-2, 0.2, 200)}   # class 1 covers ~1 % of its images
>>> b = coverage_bounds(shares)
>>> [f.extra["direction"] for f in coverage_outlier({1: 0.9999}, b)], coverage_outlier({1: 0.02}, b)
(['high'], [])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from .rules_core import DEFAULT_CONFIG, Finding, RuleConfig, name_of

__all__ = [
    "class_never_seen",
    "no_labelmap",
    "CoverageBounds",
    "coverage_bounds",
    "CoverageHistogram",
    "coverage_outlier",
]


def class_never_seen(label_ids: Iterable[int], class_pixels: Mapping[int, int], config: RuleConfig = DEFAULT_CONFIG,
                     *, names: Mapping[int, str] | None = None) -> list[Finding]:
    """Label-map classes with no pixel in the whole dataset (background and ignore excluded).

    ``class_pixels``: class -> total pixels (summed over items; for COCO, mask
    pixels per category, or annotation counts: any count where 0 means never seen).

    >>> [f.class_id for f in class_never_seen([0, 1, 2, 255], {0: 10, 1: 5})]
    [2]
    """
    if not config.enabled("class_never_seen"):
        return []
    out = []
    for c in sorted(set(int(i) for i in label_ids)):
        if c == config.background or c == config.ignore_value:
            continue
        if int(class_pixels.get(c, 0) or 0) == 0:
            out.append(config.finding("class_never_seen", f"class {name_of(c, names)} never appears in the dataset",
                                      class_id=c, pixels=0))
    return out


def no_labelmap(config: RuleConfig = DEFAULT_CONFIG, *, layout: str | None = None) -> list[Finding]:
    """The dataset has no label map: every mask value is accepted, ``unexpected_value`` cannot fire.

    One dataset-level finding (the validate job emits it for mask layouts when no label
    map was given or found); ``extra`` says what was looked for.

    >>> [(f.rule, f.severity) for f in no_labelmap(layout="masks")]
    [('no_labelmap', 'warning')]
    """
    if not config.enabled("no_labelmap"):
        return []
    from ..formats.labelmap import LABELMAP_FILENAMES

    where = f" in this {layout} dataset" if layout else ""
    return [config.finding(
        "no_labelmap",
        f"no label map{where}: every mask value is accepted and unexpected_value is off "
        f"(give --labelmap FILE, or put one of {', '.join(LABELMAP_FILENAMES)} next to the masks); "
        "RGB masks are read through the VOC colormap",
        extra={"layout": layout, "looked_for": list(LABELMAP_FILENAMES), "unexpected_value": "off"})]


@dataclass
class CoverageBounds:
    """Robust bounds of one class's log10 share: ``median``, ``spread`` (sigma), ``lo``/``hi``, ``n`` images."""

    median: float
    spread: float
    lo: float
    hi: float
    n: int


def _bounds(median, mad_sigma, n, config) -> CoverageBounds:
    s = max(float(mad_sigma), config.coverage_min_spread)
    return CoverageBounds(float(median), s, float(median) - config.coverage_k * s, float(median) + config.coverage_k * s,
                          int(n))


def coverage_bounds(shares: Mapping[int, Iterable[float]], config: RuleConfig = DEFAULT_CONFIG) -> dict[int, CoverageBounds]:
    """Exact bounds from every image's share per class (shares <= 0 and non-finite are skipped).

    >>> coverage_bounds({3: [0.1] * 19})   # fewer than coverage_min_images (20)
    {}
    """
    out = {}
    for c, v in shares.items():
        if c == config.background or c == config.ignore_value:
            continue
        a = np.asarray(list(v) if not isinstance(v, np.ndarray) else v, np.float64)
        a = a[np.isfinite(a) & (a > 0)]
        if a.size < max(1, config.coverage_min_images):
            continue
        lg = np.log10(np.minimum(a, 1.0))
        med = np.median(lg)
        out[int(c)] = _bounds(med, 1.4826 * np.median(np.abs(lg - med)), a.size, config)
    return out


_BIN = 0.01  # decades
_LOW = -12.0  # 1e-12: below any share of a real image (one pixel of 2**31)


@dataclass
class CoverageHistogram:
    """Mergeable per-class histogram of log10 shares (bins of 0.01 decade over [1e-12, 1]).

    >>> a, b = CoverageHistogram(), CoverageHistogram()
    >>> a.add({1: 0.5}); b.add({1: 0.25}); a.merge(b); a.count(1)
    2
    """

    counts: dict = field(default_factory=dict)

    _NB = int(round(-_LOW / _BIN)) + 1

    def add(self, shares: Mapping[int, float]) -> None:
        """Add one image's ``{class: share}`` (zero shares are skipped: the class is absent)."""
        for c, s in shares.items():
            s = float(s)
            if not (s > 0 and np.isfinite(s)):
                continue
            h = self.counts.get(int(c))
            if h is None:
                h = self.counts[int(c)] = np.zeros(self._NB, np.int64)
            k = int(np.clip(np.floor((np.log10(min(s, 1.0)) - _LOW) / _BIN), 0, self._NB - 1))
            h[k] += 1

    def add_many(self, classes: np.ndarray, shares: np.ndarray) -> None:
        """Add many (class, share) pairs at once (the same bins as :meth:`add`, vectorised)."""
        classes = np.asarray(classes, np.int64)
        shares = np.asarray(shares, np.float64)
        ok = (shares > 0) & np.isfinite(shares)
        classes, shares = classes[ok], shares[ok]
        if classes.size == 0:
            return
        k = np.clip(np.floor((np.log10(np.minimum(shares, 1.0)) - _LOW) / _BIN), 0, self._NB - 1).astype(np.int64)
        for c in np.unique(classes).tolist():
            h = self.counts.get(c)
            if h is None:
                h = self.counts[c] = np.zeros(self._NB, np.int64)
            h += np.bincount(k[classes == c], minlength=self._NB)

    def merge(self, other: "CoverageHistogram") -> None:
        for c, h in other.counts.items():
            if c in self.counts:
                self.counts[c] = self.counts[c] + h
            else:
                self.counts[c] = h.copy()

    def count(self, c: int) -> int:
        h = self.counts.get(int(c))
        return int(h.sum()) if h is not None else 0

    def bounds(self, config: RuleConfig = DEFAULT_CONFIG) -> dict[int, CoverageBounds]:
        """Approximate :func:`coverage_bounds` (error <= half a bin, 0.005 decade)."""
        out = {}
        centers = _LOW + (np.arange(self._NB) + 0.5) * _BIN
        for c, h in self.counts.items():
            n = int(h.sum())
            if c == config.background or c == config.ignore_value or n < max(1, config.coverage_min_images):
                continue
            med = _weighted_median(centers, h)
            dev = np.abs(centers - med)
            order = np.argsort(dev, kind="stable")
            mad = _weighted_median(dev[order], h[order])
            out[int(c)] = _bounds(med, 1.4826 * mad, n, config)
        return out

    def to_json(self) -> dict:
        return {str(c): {"nonzero_bins": np.flatnonzero(h).tolist(), "counts": h[h > 0].tolist()}
                for c, h in self.counts.items()}


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    cw = np.cumsum(weights)
    k = int(np.searchsorted(cw, cw[-1] / 2.0))
    return float(values[min(k, values.size - 1)])


def coverage_outlier(shares: Mapping[int, float], bounds: Mapping[int, CoverageBounds],
                     config: RuleConfig = DEFAULT_CONFIG, *, class_pixels: Mapping[int, int] | None = None,
                     names: Mapping[int, str] | None = None) -> list[Finding]:
    """One image's ``{class: share}`` against the dataset's bounds: one finding per outlying class.

    ``extra``: the share, the median share, the bounds (as shares), the robust z
    and the direction (``high`` / ``low``).
    """
    if not config.enabled("coverage_outlier"):
        return []
    out = []
    for c, s in sorted(shares.items()):
        b = bounds.get(int(c))
        s = float(s)
        if b is None or not (s > 0 and np.isfinite(s)):
            continue
        lg = float(np.log10(min(s, 1.0)))
        if b.lo <= lg <= b.hi:
            continue
        z = (lg - b.median) / b.spread
        direction = "high" if lg > b.hi else "low"
        out.append(config.finding(
            "coverage_outlier",
            f"class {name_of(int(c), names)} covers {s:.3%} of the image; the dataset's median is "
            f"{10 ** b.median:.3%} over {b.n} images (robust z {z:+.1f}, {direction})",
            class_id=int(c), pixels=(class_pixels or {}).get(int(c)),
            extra={"share": s, "median_share": 10 ** b.median, "lo_share": 10 ** b.lo, "hi_share": 10 ** b.hi,
                   "z": z, "direction": direction, "images": b.n}))
    return out
