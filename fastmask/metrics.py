"""Segmentation metrics: confusion matrices, IoU / Dice / precision / recall, dataset
accumulation over images and shards, and COCO panoptic quality (PQ / SQ / RQ).

Conventions (the documentation's design page, "Metrics"):

* A confusion matrix has ground truth in rows and prediction in columns, int64 counts.
* Pixels whose ground truth equals ``ignore_index`` (default 255) count nowhere.
* A predicted value ``>= num_classes`` on a ground-truth class is, by default
  (``out_of_range="fn"``, mmsegmentation's and cityscapesScripts' definition), a false
  negative of that class and nothing else; ``"ignore"`` leaves it out, ``"error"``
  raises. Either way it is reported (:class:`ConfusionCounts`), so that
  ``matrix.sum() + ignored + out_of_range == gt.size``: nothing is dropped silently.
  A ground-truth value ``>= num_classes`` (not the ignore index) raises, except under
  ``"ignore"``.
* IoU = TP / (TP + FP + FN), Dice = 2 TP / (2 TP + FP + FN). A class absent from both
  ground truth and prediction follows ``empty_policy``: ``"nan"`` (default, left out of
  means), ``"one"`` or ``"zero"``.
* Dataset scores sum TP / FP / FN over all images before dividing (mmsegmentation's
  definition). Per-image scores, and their mean, are reported separately under names
  starting with ``image_``.

The array API never reads files.
"""
from __future__ import annotations

import math
import operator
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, overload

import numba
import numpy as np

from .kernels import confusion as _k

__all__ = [
    "EmptyPolicy",
    "ConfusionCounts",
    "OutOfRange",
    "OutOfRangeError",
    "confusion_matrix",
    "iou",
    "dice",
    "precision",
    "recall",
    "class_accuracy",
    "pixel_accuracy",
    "mean_score",
    "miou",
    "mdice",
    "ConfusionAccumulator",
    "SegmentationScores",
    "PQClassScore",
    "PQGroupScore",
    "PanopticResult",
    "PanopticAccumulator",
    "panoptic_quality",
]

EmptyPolicy = Literal["nan", "one", "zero"]
OutOfRange = Literal["fn", "ignore", "error"]
OUT_OF_RANGE_POLICIES = ("fn", "ignore", "error")

_EMPTY_FILL = {"nan": math.nan, "one": 1.0, "zero": 0.0}
_INT64_MAX = np.iinfo(np.int64).max
_MAX_LISTED = 10


# --------------------------------------------------------------------------------------
# confusion matrix
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfusionCounts:
    """A confusion matrix together with every pixel that is not in it.

    ``matrix.sum() + ignored + out_of_range == number of pixels``.

    Attributes:
        matrix: (num_classes, num_classes) int64, rows = ground truth, columns = prediction.
        ignored: pixels skipped because the ground truth is ``ignore_index``.
        out_of_range: pixels not in ``matrix`` because gt or pred (or both) is ``>= num_classes``.
        gt_out_of_range: ``{value: pixels}`` for out-of-range ground-truth values.
        pred_out_of_range: ``{value: pixels}`` for out-of-range predicted values (pixels
            whose ground truth is ignored are not included).
        pred_out_of_range_per_class: (num_classes,) int64: per ground-truth class, the
            pixels whose prediction is out of range.
        policy: ``"fn"``: those pixels are false negatives of their ground-truth class
            (in :meth:`tp_fp_fn` and every score computed from these counts);
            ``"ignore"``: they count nowhere (reported only).

    Counts of several images add up with ``+`` (and ``sum``).

    >>> gt = np.array([[0, 0, 1, 1]], np.uint8); pred = np.array([[0, 0, 1, 255]], np.uint8)
    >>> c = confusion_matrix(gt, pred, 2, None)
    >>> c.pred_out_of_range_per_class, iou(c)
    (array([0, 1]), array([1. , 0.5]))
    """

    matrix: np.ndarray
    ignored: int
    out_of_range: int
    gt_out_of_range: dict[int, int] = field(default_factory=dict)
    pred_out_of_range: dict[int, int] = field(default_factory=dict)
    pred_out_of_range_per_class: np.ndarray | None = None
    policy: str = "fn"

    def __post_init__(self):
        if self.pred_out_of_range_per_class is None:
            object.__setattr__(self, "pred_out_of_range_per_class", np.zeros(self.matrix.shape[0], np.int64))
        if self.policy not in ("fn", "ignore"):
            raise ValueError(f"policy must be 'fn' or 'ignore', got {self.policy!r}")

    def tp_fp_fn(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-class TP, FP, FN; under ``policy="fn"`` FN includes the out-of-range predictions.

        >>> ConfusionCounts(np.array([[2, 0], [0, 1]]), 0, 1, {}, {9: 1}, np.array([0, 1])).tp_fp_fn()
        (array([2, 1]), array([0, 0]), array([0, 1]))
        """
        tp, fp, fn = _tp_fp_fn(self.matrix)
        if self.policy == "fn":
            fn = fn + self.pred_out_of_range_per_class
        return tp, fp, fn

    def __add__(self, other: "ConfusionCounts") -> "ConfusionCounts":
        if not isinstance(other, ConfusionCounts):
            return NotImplemented
        if other.matrix.shape != self.matrix.shape or other.policy != self.policy:
            raise ValueError("cannot add ConfusionCounts of different class counts or out-of-range policies")
        return ConfusionCounts(self.matrix + other.matrix, self.ignored + other.ignored,
                               self.out_of_range + other.out_of_range,
                               _add_counts(self.gt_out_of_range, other.gt_out_of_range),
                               _add_counts(self.pred_out_of_range, other.pred_out_of_range),
                               self.pred_out_of_range_per_class + other.pred_out_of_range_per_class, self.policy)

    def __radd__(self, other: Any) -> "ConfusionCounts":
        if isinstance(other, int) and other == 0:  # sum() starts from 0
            return self
        return NotImplemented


def _add_counts(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    out = dict(a)
    for v, n in b.items():
        out[v] = out.get(v, 0) + n
    return dict(sorted(out.items()))


def _check_label_array(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > _INT64_MAX:
        raise ValueError(f"{name} has values above 2**63 - 1 (max {int(arr.max())})")
    return arr


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool):
        raise TypeError("num_classes must be an int, got bool")
    try:
        nc = operator.index(num_classes)
    except TypeError:
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}") from None
    if nc < 1:
        raise ValueError(f"num_classes must be >= 1, got {nc}")
    return nc


def _check_ignore(ignore_index: Any) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool):
        raise TypeError("ignore_index must be an int or None, got bool")
    try:
        ig = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an int or None, got {type(ignore_index).__name__}") from None
    if not (-(2**63) <= ig <= _INT64_MAX):
        raise ValueError(f"ignore_index {ig} does not fit in int64")
    return ig


def _check_out_of_range(out_of_range: Any, stacklevel: int = 3) -> str:
    """The policy name; ``"count"`` (the former name of ``"ignore"``) still works, with a warning
    (``stacklevel``: where the caller's caller is)."""
    if out_of_range == "count":
        warnings.warn("out_of_range='count' is deprecated: it is now called 'ignore' (note that the default, "
                      "'fn', scores out-of-range predictions as false negatives)", DeprecationWarning,
                      stacklevel=stacklevel)
        return "ignore"
    if out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ValueError(f"out_of_range must be one of 'fn', 'ignore', 'error', got {out_of_range!r}")
    return out_of_range


def _value_counts(values: np.ndarray) -> dict[int, int]:
    u, c = np.unique(values, return_counts=True)
    return {int(v): int(n) for v, n in zip(u, c)}


def _fmt_values(d: dict[int, int]) -> str:
    items = sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{v}: {n}" for v, n in items[:_MAX_LISTED])
    more = f", ... ({len(items) - _MAX_LISTED} more values)" if len(items) > _MAX_LISTED else ""
    return "{" + shown + more + "}"


class OutOfRangeError(ValueError):
    """Class ids outside ``[0, num_classes)`` that the policy does not accept.

    ``gt_out_of_range`` / ``pred_out_of_range``: ``{value: pixels}`` as in :class:`ConfusionCounts`.
    """

    def __init__(self, message: str, gt_out_of_range: dict[int, int], pred_out_of_range: dict[int, int]):
        super().__init__(message)
        self.gt_out_of_range = gt_out_of_range
        self.pred_out_of_range = pred_out_of_range


def _confusion(gt: Any, pred: Any, num_classes: Any, ignore_index: Any, out_of_range: str,
               parallel: bool = False) -> ConfusionCounts:
    policy = _check_out_of_range(out_of_range, stacklevel=4)  # user -> confusion_matrix -> here
    nc = _check_num_classes(num_classes)
    ig = _check_ignore(ignore_index)
    g = _check_label_array(gt, "gt")
    p = _check_label_array(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(f"gt and pred must have the same shape, got {g.shape} and {p.shape}")
    g = np.ascontiguousarray(g).reshape(-1)
    p = np.ascontiguousarray(p).reshape(-1)
    has_ignore = ig is not None
    ig_val = 0 if ig is None else ig

    if g.dtype == np.uint8 and p.dtype == np.uint8:
        u8_ignore = has_ignore and 0 <= ig_val <= 255
        kernel_args = (g, p, nc, ig_val if u8_ignore else 0, u8_ignore)
        if parallel:
            cm, g_out, p_out, counts, by_class = _k.confusion_u8_parallel(*kernel_args, numba.get_num_threads())
        else:
            cm, g_out, p_out, counts, by_class = _k.confusion_u8(*kernel_args)
        gt_bad = {int(v): int(g_out[v]) for v in np.flatnonzero(g_out)}
        pred_bad = {int(v): int(p_out[v]) for v in np.flatnonzero(p_out)}
    else:
        cm, counts, by_class = _k.confusion_generic(g, p, nc, ig_val, has_ignore)
        gt_bad, pred_bad = {}, {}
        if counts[_k.EXCLUDED]:
            keep = (g != ig_val) if has_ignore else np.ones(g.shape, bool)
            gt_bad = _value_counts(g[keep & ((g < 0) | (g >= nc))])
            pred_bad = _value_counts(p[keep & ((p < 0) | (p >= nc))])

    if counts[_k.NEGATIVE]:
        neg_g = {v: n for v, n in gt_bad.items() if v < 0}
        neg_p = {v: n for v, n in pred_bad.items() if v < 0}
        parts = []
        if neg_g:
            parts.append(f"gt has {sum(neg_g.values())} pixels with negative values {_fmt_values(neg_g)}")
        if neg_p:
            parts.append(f"pred has {sum(neg_p.values())} pixels with negative values {_fmt_values(neg_p)}")
        raise ValueError("class ids must be >= 0: " + "; ".join(parts))

    n_out = int(counts[_k.EXCLUDED])
    # ground-truth values out of range are refused unless the caller asked to leave them out:
    # no definition scores them (mmsegmentation would make them false positives of the
    # prediction, cityscapesScripts stops), and they usually mean a wrong num_classes
    refuse_gt = policy != "ignore" and counts[_k.GT_OUT]
    if refuse_gt or (n_out and policy == "error"):
        parts = []
        if gt_bad:
            parts.append(f"gt has {int(counts[_k.GT_OUT])} pixels with values >= num_classes={nc}: {_fmt_values(gt_bad)}")
        if pred_bad and policy == "error":
            parts.append(f"pred has {int(counts[_k.PRED_OUT])} pixels with values >= num_classes={nc}: {_fmt_values(pred_bad)}")
        ig_note = f"ignore_index={ig}" if has_ignore else "no ignore_index"
        n_shown = n_out if policy == "error" else int(counts[_k.GT_OUT])
        raise OutOfRangeError(
            f"{n_shown} pixels have class ids outside [0, {nc}) ({ig_note}): " + "; ".join(parts)
            + ". Pass out_of_range='ignore' to leave them out of the matrix and get them reported.",
            gt_bad, pred_bad,
        )
    return ConfusionCounts(cm, int(counts[_k.IGNORED]), n_out, gt_bad, pred_bad, by_class,
                           "ignore" if policy == "ignore" else "fn")


@overload
def confusion_matrix(gt: Any, pred: Any, num_classes: int, ignore_index: int | None = ..., *,
                     out_of_range: Literal["error"], parallel: bool = ...) -> np.ndarray: ...
@overload
def confusion_matrix(gt: Any, pred: Any, num_classes: int, ignore_index: int | None = ..., *,
                     out_of_range: Literal["fn", "ignore", "count"] = ..., parallel: bool = ...) -> ConfusionCounts: ...


def confusion_matrix(gt, pred, num_classes, ignore_index=255, *, out_of_range="fn", parallel=False):
    """Pixel confusion matrix, rows = ground truth, columns = prediction (int64).

    ``gt`` and ``pred`` are integer (or bool) arrays of the same shape. Pixels where
    ``gt == ignore_index`` are skipped (``None``: nothing is ignored). A predicted value
    ``>= num_classes`` on a pixel whose ground truth is a class follows ``out_of_range``:

    * ``"fn"`` (default; mmsegmentation's ``intersect_and_union`` and cityscapesScripts):
      a false negative of the ground-truth class and nothing else;
    * ``"ignore"``: left out (reported only; ``"count"`` is its deprecated former name);
    * ``"error"``: ``ValueError`` naming the values and pixel counts.

    A ground-truth value ``>= num_classes`` that is not ``ignore_index`` raises
    (:class:`OutOfRangeError`, a ``ValueError``) except under ``"ignore"``, where it is
    left out and reported. Negative values always raise. ``"error"`` returns the matrix
    itself (nothing can be missing from it); ``"fn"`` and ``"ignore"`` return a
    :class:`ConfusionCounts` (its ``matrix`` plus every pixel that is not in it), which
    :func:`iou`, :func:`dice` and the other scores take as they take a matrix.
    ``parallel=True`` splits uint8 inputs over Numba's threads: ~1.5x on a large image
    with idle cores, but much slower when the cores are busy (measured 0.4 ms vs 24 ms on
    2 loaded cores), so jobs that already run one image per worker should leave it off.

    >>> gt = np.array([[0, 1], [1, 255]], np.uint8)
    >>> pred = np.array([[0, 1], [0, 1]], np.uint8)
    >>> confusion_matrix(gt, pred, num_classes=2, out_of_range="error")
    array([[1, 0],
           [1, 1]])
    >>> c = confusion_matrix(gt, np.array([[0, 1], [7, 1]], np.uint8), 2)
    >>> c.matrix.tolist(), c.pred_out_of_range, c.pred_out_of_range_per_class.tolist(), iou(c).tolist()
    ([[1, 0], [0, 1]], {7: 1}, [0, 1], [1.0, 0.5])
    """
    res = _confusion(gt, pred, num_classes, ignore_index, out_of_range, parallel)
    return res.matrix if out_of_range == "error" else res


# --------------------------------------------------------------------------------------
# scores from a confusion matrix
# --------------------------------------------------------------------------------------


def _check_policy(empty_policy: str) -> float:
    try:
        return _EMPTY_FILL[empty_policy]
    except KeyError:
        raise ValueError(f"empty_policy must be one of 'nan', 'one', 'zero', got {empty_policy!r}") from None


def _as_cm(cm: Any) -> np.ndarray:
    m = np.asarray(cm)
    if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
        raise ValueError(f"a confusion matrix must be square (..., n, n), got shape {m.shape}")
    if m.dtype.kind not in "iuf":
        raise TypeError(f"a confusion matrix must hold numbers, got dtype {m.dtype}")
    if m.dtype.kind == "f" and not np.all(np.isfinite(m)):
        raise ValueError("a confusion matrix must hold finite counts")
    if np.any(m < 0):
        raise ValueError("a confusion matrix must hold counts >= 0")
    return m


def _tp_fp_fn(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    fp = m.sum(axis=-2) - tp
    fn = m.sum(axis=-1) - tp
    return tp, fp, fn


def _ratio(num: np.ndarray, den: np.ndarray, empty: np.ndarray, fill: float) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    out[empty] = fill
    return out


def _score(kind: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, fill: float) -> np.ndarray:
    empty = (tp + fp + fn) == 0
    if kind == "iou":
        return _ratio(tp, tp + fp + fn, empty, fill)
    if kind == "dice":
        return _ratio(2 * tp, 2 * tp + fp + fn, empty, fill)
    if kind == "precision":
        return _ratio(tp, tp + fp, empty, fill)
    if kind == "recall":
        return _ratio(tp, tp + fn, empty, fill)
    raise AssertionError(kind)


def _counts_of(cm: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN of a matrix or of a :class:`ConfusionCounts` (its out-of-range policy applied)."""
    if isinstance(cm, ConfusionCounts):
        return cm.tp_fp_fn()
    return _tp_fp_fn(_as_cm(cm))


def _score_cm(kind: str, cm: Any, empty_policy: str) -> np.ndarray:
    fill = _check_policy(empty_policy)
    return _score(kind, *_counts_of(cm), fill)


def iou(cm: Any, empty_policy: EmptyPolicy = "nan") -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN) from a confusion matrix (rows = gt).

    A class absent from both gt and prediction gets ``empty_policy`` (NaN by default).
    Works on a stack of matrices (..., n, n) too, and on a :class:`ConfusionCounts`
    (out-of-range predictions are then FN under its ``"fn"`` policy), as do the other
    scores below.

    >>> iou(np.array([[9, 7], [7, 0]]))
    array([0.39130435, 0.        ])
    """
    return _score_cm("iou", cm, empty_policy)


def dice(cm: Any, empty_policy: EmptyPolicy = "nan") -> np.ndarray:
    """Per-class Dice (F1) = 2 TP / (2 TP + FP + FN) from a confusion matrix.

    >>> dice(np.array([[9, 7], [7, 0]]))
    array([0.5625, 0.    ])
    """
    return _score_cm("dice", cm, empty_policy)


def precision(cm: Any, empty_policy: EmptyPolicy = "nan") -> np.ndarray:
    """Per-class precision = TP / (TP + FP). A class never predicted but present in the
    ground truth is NaN (0 / 0); a class absent from both follows ``empty_policy``.

    >>> precision(np.array([[3, 1], [0, 4]]))
    array([1. , 0.8])
    """
    return _score_cm("precision", cm, empty_policy)


def recall(cm: Any, empty_policy: EmptyPolicy = "nan") -> np.ndarray:
    """Per-class recall = TP / (TP + FN) (mmsegmentation's per-class "Acc"). A class
    predicted but absent from the ground truth is NaN; absent from both: ``empty_policy``.

    >>> recall(np.array([[3, 1], [0, 4]]))
    array([0.75, 1.  ])
    """
    return _score_cm("recall", cm, empty_policy)


def class_accuracy(cm: Any, empty_policy: EmptyPolicy = "nan") -> np.ndarray:
    """Per-class accuracy: the fraction of each class's gt pixels predicted as that class
    (= :func:`recall`).

    >>> class_accuracy(np.array([[3, 1], [0, 4]]))
    array([0.75, 1.  ])
    """
    return recall(cm, empty_policy)


def pixel_accuracy(cm: Any) -> float:
    """Overall pixel accuracy = trace / total (NaN for an empty matrix).

    >>> pixel_accuracy(np.array([[3, 1], [0, 4]]))
    0.875
    """
    if isinstance(cm, ConfusionCounts):
        extra = int(cm.pred_out_of_range_per_class.sum()) if cm.policy == "fn" else 0
        total = cm.matrix.sum() + extra  # an out-of-range prediction is a wrong pixel under "fn"
        return float(np.trace(cm.matrix) / total) if total > 0 else math.nan
    m = _as_cm(cm)
    if m.ndim != 2:
        raise ValueError(f"pixel_accuracy takes one (n, n) matrix, got shape {m.shape}")
    total = m.sum()
    return float(np.trace(m) / total) if total > 0 else math.nan


def mean_score(scores: Any, axis: int = -1) -> Any:
    """Mean over classes with NaN entries left out (nanmean); all-NaN gives NaN, silently.

    >>> mean_score(np.array([0.5, np.nan, 1.0]))
    0.75
    """
    s = np.asarray(scores, np.float64)
    valid = ~np.isnan(s)
    n = valid.sum(axis=axis)
    tot = np.where(valid, s, 0.0).sum(axis=axis)
    out = np.divide(tot, n, out=np.full(np.shape(tot), np.nan), where=n > 0)
    return float(out) if out.ndim == 0 else out


def miou(cm: Any, empty_policy: EmptyPolicy = "nan") -> float:
    """Mean IoU over classes (classes absent from gt and pred left out under ``"nan"``).

    >>> miou(np.array([[9, 7, 0], [7, 0, 0], [0, 0, 0]]))
    0.1956521739130435
    """
    return mean_score(iou(cm, empty_policy))


def mdice(cm: Any, empty_policy: EmptyPolicy = "nan") -> float:
    """Mean Dice over classes (classes absent from gt and pred left out under ``"nan"``).

    >>> mdice(np.array([[9, 7], [7, 0]]))
    0.28125
    """
    return mean_score(dice(cm, empty_policy))


# --------------------------------------------------------------------------------------
# accumulation over images / shards
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of a :class:`ConfusionAccumulator`.

    Dataset scores (per class, from TP / FP / FN summed over all images):
    ``iou``, ``dice``, ``precision``, ``recall`` and their means ``miou``, ``mdice``,
    ``macc`` (mean per-class accuracy = mean recall), plus ``pixel_accuracy``.

    Per-image scores: ``image_iou`` / ``image_dice`` (n_images, num_classes), each
    image's ``image_miou`` / ``image_mdice`` (n_images,), and the mean of per-image
    scores ``image_averaged_miou`` / ``image_averaged_mdice`` (images whose mean is NaN
    are left out) -- a different aggregation from the dataset ``miou``. With
    ``keep_per_image=False`` the per-image arrays have 0 rows and their means are NaN.
    """

    num_classes: int
    matrix: np.ndarray
    iou: np.ndarray
    dice: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    miou: float
    mdice: float
    macc: float
    pixel_accuracy: float
    keys: list[Any]
    image_iou: np.ndarray
    image_dice: np.ndarray
    image_miou: np.ndarray
    image_mdice: np.ndarray
    image_averaged_miou: float
    image_averaged_mdice: float


class ConfusionAccumulator:
    """Sums confusion matrices over images and shards; keeps per-image TP / FP / FN.

    ``add(gt, pred)`` adds one image; ``merge(other)`` returns a new accumulator holding
    both (associative: any split of a dataset into shards merges to the same result,
    images in shard order); ``scores()`` gives dataset and per-image scores.
    ``out_of_range`` is :func:`confusion_matrix`'s (``"fn"`` by default).

    >>> acc = ConfusionAccumulator(num_classes=2)
    >>> _ = acc.add(np.array([[0, 1]], np.uint8), np.array([[0, 1]], np.uint8), key="a")
    >>> _ = acc.add(np.array([[1, 1]], np.uint8), np.array([[0, 1]], np.uint8), key="b")
    >>> acc.scores().iou.round(3), acc.scores().image_miou
    (array([0.5  , 0.667]), array([1.  , 0.25]))
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, empty_policy: EmptyPolicy = "nan",
                 *, out_of_range: OutOfRange = "fn", keep_per_image: bool = True):
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = _check_ignore(ignore_index)
        _check_policy(empty_policy)
        self.empty_policy = empty_policy
        self.out_of_range = _check_out_of_range(out_of_range)
        self.keep_per_image = bool(keep_per_image)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.ignored_pixels = 0
        self.out_of_range_pixels = 0
        self.gt_out_of_range: dict[int, int] = {}
        self.pred_out_of_range: dict[int, int] = {}
        #: per ground-truth class, pixels whose prediction was out of range (FN under "fn")
        self.pred_out_of_range_per_class = np.zeros(self.num_classes, np.int64)
        self.n_images = 0
        self.keys: list[Any] = []
        self._image_counts: list[np.ndarray] = []  # each (3, nc): tp, fp, fn

    def _settings(self) -> tuple:
        return (self.num_classes, self.ignore_index, self.empty_policy, self.out_of_range, self.keep_per_image)

    def _counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tp, fp, fn = _tp_fp_fn(self.matrix)
        if self.out_of_range == "fn":
            fn = fn + self.pred_out_of_range_per_class
        return tp, fp, fn

    def add(self, gt: Any, pred: Any, key: Any = None) -> np.ndarray:
        """Add one image (any shape, gt and pred alike); returns its confusion matrix
        (out-of-range predictions, not in it, are FN of the image under ``"fn"``)."""
        res = _confusion(gt, pred, self.num_classes, self.ignore_index, self.out_of_range)
        cm = res.matrix
        self.matrix += cm
        self.ignored_pixels += res.ignored
        self.out_of_range_pixels += res.out_of_range
        self.pred_out_of_range_per_class += res.pred_out_of_range_per_class
        self.gt_out_of_range = _add_counts(self.gt_out_of_range, res.gt_out_of_range)
        self.pred_out_of_range = _add_counts(self.pred_out_of_range, res.pred_out_of_range)
        self.n_images += 1
        if self.keep_per_image:
            self.keys.append(key)
            self._image_counts.append(np.stack(res.tp_fp_fn() if self.out_of_range != "error" else _tp_fp_fn(cm)))
        return cm

    def merge(self, other: "ConfusionAccumulator") -> "ConfusionAccumulator":
        """A new accumulator with this one's images followed by ``other``'s."""
        if not isinstance(other, ConfusionAccumulator):
            raise TypeError(f"can only merge a ConfusionAccumulator, got {type(other).__name__}")
        if other._settings() != self._settings():
            raise ValueError(f"cannot merge accumulators with different settings: {self._settings()} vs {other._settings()}")
        out = ConfusionAccumulator(self.num_classes, self.ignore_index, self.empty_policy,
                                   out_of_range=self.out_of_range, keep_per_image=self.keep_per_image)
        out.matrix = self.matrix + other.matrix
        out.ignored_pixels = self.ignored_pixels + other.ignored_pixels
        out.out_of_range_pixels = self.out_of_range_pixels + other.out_of_range_pixels
        out.pred_out_of_range_per_class = self.pred_out_of_range_per_class + other.pred_out_of_range_per_class
        for name in ("gt_out_of_range", "pred_out_of_range"):
            setattr(out, name, _add_counts(getattr(self, name), getattr(other, name)))
        out.n_images = self.n_images + other.n_images
        out.keys = self.keys + other.keys
        out._image_counts = self._image_counts + other._image_counts
        return out

    def image_counts(self) -> np.ndarray:
        """Per-image (n_images, 3, num_classes) int64 array of TP, FP, FN."""
        if not self.keep_per_image:
            raise ValueError("per-image counts were not kept (keep_per_image=False)")
        if not self._image_counts:
            return np.zeros((0, 3, self.num_classes), np.int64)
        return np.stack(self._image_counts)

    def scores(self) -> SegmentationScores:
        """Dataset scores from summed counts, plus per-image scores and their mean."""
        fill = _check_policy(self.empty_policy)
        tp, fp, fn = self._counts()
        ds = {k: _score(k, tp, fp, fn, fill) for k in ("iou", "dice", "precision", "recall")}
        if self.keep_per_image:
            c = self.image_counts()
            im_iou = _score("iou", c[:, 0], c[:, 1], c[:, 2], fill)
            im_dice = _score("dice", c[:, 0], c[:, 1], c[:, 2], fill)
        else:
            im_iou = im_dice = np.zeros((0, self.num_classes))
        im_miou = np.asarray(mean_score(im_iou, axis=-1), np.float64).reshape(-1)
        im_mdice = np.asarray(mean_score(im_dice, axis=-1), np.float64).reshape(-1)
        return SegmentationScores(
            num_classes=self.num_classes,
            matrix=self.matrix.copy(),
            miou=mean_score(ds["iou"]),
            mdice=mean_score(ds["dice"]),
            macc=mean_score(ds["recall"]),
            pixel_accuracy=float(tp.sum() / (tp + fn).sum()) if (tp + fn).sum() > 0 else math.nan,
            keys=list(self.keys),
            image_iou=im_iou,
            image_dice=im_dice,
            image_miou=im_miou,
            image_mdice=im_mdice,
            image_averaged_miou=mean_score(im_miou),
            image_averaged_mdice=mean_score(im_mdice),
            **ds,
        )


# --------------------------------------------------------------------------------------
# panoptic quality
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PQClassScore:
    """PQ / SQ / RQ of one category with its counts (``iou_sum`` = sum of matched IoUs).

    A category with no TP, FP or FN has NaN scores (panopticapi writes 0.0 for it; see
    :meth:`PanopticResult.to_panopticapi`). SQ is 0 when there is no TP (panopticapi).
    """

    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int
    iou_sum: float


@dataclass(frozen=True)
class PQGroupScore:
    """Mean PQ / SQ / RQ over the ``n`` categories of a group that have TP + FP + FN > 0."""

    pq: float
    sq: float
    rq: float
    n: int


@dataclass(frozen=True)
class PanopticResult:
    """PQ for All / Things / Stuff and per category (keys = category ids)."""

    all: PQGroupScore
    things: PQGroupScore
    stuff: PQGroupScore
    per_class: dict[int, PQClassScore]

    def to_panopticapi(self) -> dict[str, Any]:
        """The dict panopticapi's ``pq_compute`` returns: ``All``, ``Things``, ``Stuff``
        (pq, sq, rq, n) and ``per_class`` {category id: {pq, sq, rq}} with 0.0 for
        categories that have no TP, FP or FN."""
        def grp(g: PQGroupScore) -> dict[str, Any]:
            return {"pq": g.pq, "sq": g.sq, "rq": g.rq, "n": g.n}

        per = {}
        for cid, s in self.per_class.items():
            if s.tp + s.fp + s.fn == 0:
                per[cid] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            else:
                per[cid] = {"pq": s.pq, "sq": s.sq, "rq": s.rq}
        return {"All": grp(self.all), "Things": grp(self.things), "Stuff": grp(self.stuff), "per_class": per}


def _parse_categories(categories: Any) -> tuple[np.ndarray, np.ndarray]:
    """-> (sorted category ids int64, isthing bool) from a list of COCO category dicts or
    a mapping {id: dict with 'isthing'} or {id: isthing}."""
    if isinstance(categories, Mapping):
        items = []
        for cid, info in categories.items():
            isthing = info.get("isthing") if isinstance(info, Mapping) else info
            items.append((cid, isthing))
    else:
        items = []
        for c in categories:
            if not isinstance(c, Mapping) or "id" not in c or "isthing" not in c:
                raise ValueError(f"each category must be a mapping with 'id' and 'isthing', got {c!r}")
            items.append((c["id"], c["isthing"]))
    if not items:
        raise ValueError("categories is empty")
    ids = []
    things = []
    for cid, isthing in items:
        if isinstance(cid, bool):
            raise TypeError("category ids must be ints")
        ids.append(operator.index(cid))
        if isthing not in (0, 1, True, False):
            raise ValueError(f"category {cid}: isthing must be 0/1 or a bool, got {isthing!r}")
        things.append(bool(isthing))
    ids_a = np.asarray(ids, np.int64)
    if len(np.unique(ids_a)) != len(ids_a):
        raise ValueError("category ids are not unique")
    order = np.argsort(ids_a)
    return ids_a[order], np.asarray(things, bool)[order]


def _parse_segments(segments: Iterable[Mapping[str, Any]], name: str, cat_ids: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (segment ids sorted, category index into cat_ids, iscrowd) (all aligned)."""
    ids, cats, crowd = [], [], []
    for s in segments:
        if not isinstance(s, Mapping) or "id" not in s or "category_id" not in s:
            raise ValueError(f"each {name} segment must be a mapping with 'id' and 'category_id', got {s!r}")
        sid = operator.index(s["id"])
        if sid <= 0:
            raise ValueError(f"{name} segment id {sid} is invalid: 0 is VOID and ids are positive")
        ids.append(sid)
        cats.append(operator.index(s["category_id"]))
        crowd.append(bool(s.get("iscrowd", 0)))
    ids_a = np.asarray(ids, np.int64)
    cats_a = np.asarray(cats, np.int64)
    if len(np.unique(ids_a)) != len(ids_a):
        u, c = np.unique(ids_a, return_counts=True)
        raise ValueError(f"{name} segment ids are not unique: {u[c > 1][:_MAX_LISTED].tolist()}")
    ci = np.searchsorted(cat_ids, cats_a)
    bad = (ci >= len(cat_ids)) | (cat_ids[np.minimum(ci, len(cat_ids) - 1)] != cats_a)
    if bad.any():
        raise ValueError(f"{name} segments {ids_a[bad][:_MAX_LISTED].tolist()} have unknown category ids "
                         f"{np.unique(cats_a[bad])[:_MAX_LISTED].tolist()}")
    order = np.argsort(ids_a)
    return ids_a[order], ci[order], np.asarray(crowd, bool)[order]


def _index_map(id_map: np.ndarray, seg_ids: np.ndarray, name: str) -> np.ndarray:
    """Map segment ids to 1..n (0 = VOID); unknown non-zero ids raise."""
    flat = id_map.reshape(-1).astype(np.int64, copy=False)
    if len(seg_ids) == 0:
        unknown = flat != 0
        idx = np.zeros(flat.shape, np.int64)
    else:
        pos = np.searchsorted(seg_ids, flat)
        posc = np.minimum(pos, len(seg_ids) - 1)
        found = seg_ids[posc] == flat
        unknown = ~found & (flat != 0)
        idx = np.where(found, posc + 1, 0)
    if unknown.any():
        u, c = np.unique(flat[unknown], return_counts=True)
        raise ValueError(f"{name} id map has {int(c.sum())} pixels of {len(u)} segment ids not in its segments list: "
                         f"{u[:_MAX_LISTED].tolist()}")
    return idx


def _check_id_map(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer id map (id = R + 256 G + 65536 B), got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"{name} has negative ids")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > _INT64_MAX:
        raise ValueError(f"{name} has ids above 2**63 - 1")
    return arr


class PanopticAccumulator:
    """Panoptic quality over images, with panopticapi's ``pq_compute`` rules.

    Per image (``add``): id 0 is VOID; a gt and a pred segment match when their
    categories agree, the gt is not crowd, and IoU > 0.5, where the union leaves out the
    pred's pixels on gt VOID. Unmatched non-crowd gt segments are FN; unmatched pred
    segments are FP unless more than half of their pixels lie on gt VOID or on crowd gt
    of the same category. Areas are pixel counts of the id maps. Non-zero ids missing
    from the segment lists, or listed pred segments absent from the map, are errors;
    a listed gt segment absent from the map is an (unmatchable) FN unless crowd.
    Segment areas are always counted from the id maps (panopticapi takes gt areas from
    the JSON ``area`` field, which equals the pixel count in COCO files).
    (panopticapi uses only the last crowd segment of a category in an image for the FP
    rule; COCO has at most one per category, and here all of them count.)

    >>> cats = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 0}]
    >>> gt = np.array([[1, 1, 2, 2]]); pred = np.array([[1, 1, 1, 2]])
    >>> segs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}]
    >>> acc = PanopticAccumulator(cats)
    >>> acc.add(gt, segs, pred, segs)
    >>> r = acc.result(); round(r.all.pq, 4), r.per_class[1].tp, r.per_class[2].fn
    (0.3333, 1, 1)
    """

    def __init__(self, categories: Any):
        self.category_ids, self.isthing = _parse_categories(categories)
        n = len(self.category_ids)
        self.tp = np.zeros(n, np.int64)
        self.fp = np.zeros(n, np.int64)
        self.fn = np.zeros(n, np.int64)
        self.iou_sum = np.zeros(n, np.float64)
        self.n_images = 0

    def add(self, gt_ids: Any, gt_segments: Iterable[Mapping[str, Any]],
            pred_ids: Any, pred_segments: Iterable[Mapping[str, Any]]) -> None:
        """Add one image: integer id maps (already decoded, R + 256 G + 65536 B) and
        their ``segments_info`` lists (``id``, ``category_id``, ``iscrowd``)."""
        g = _check_id_map(gt_ids, "gt_ids")
        p = _check_id_map(pred_ids, "pred_ids")
        if g.shape != p.shape:
            raise ValueError(f"gt_ids and pred_ids must have the same shape, got {g.shape} and {p.shape}")
        cats = self.category_ids
        g_ids, g_cat, g_crowd = _parse_segments(gt_segments, "gt", cats)
        p_ids, p_cat, _ = _parse_segments(pred_segments, "pred", cats)
        gi = _index_map(g, g_ids, "gt")
        pi = _index_map(p, p_ids, "pred")
        ng, np_ = len(g_ids) + 1, len(p_ids) + 1

        # sparse intersection table: (gt index, pred index, pixels)
        if ng * np_ <= (1 << 24):
            inter = np.bincount(gi * np_ + pi, minlength=ng * np_)
            keys = np.flatnonzero(inter)
            cnt = inter[keys]
        else:
            keys, cnt = np.unique(gi * np_ + pi, return_counts=True)
        pg, pp = keys // np_, keys % np_
        g_area = np.zeros(ng, np.int64)
        p_area = np.zeros(np_, np.int64)
        np.add.at(g_area, pg, cnt)
        np.add.at(p_area, pp, cnt)
        absent = np.flatnonzero(p_area[1:] == 0)
        if absent.size:
            raise ValueError(f"pred segments {p_ids[absent][:_MAX_LISTED].tolist()} are listed but have no pixels in pred_ids")
        void_overlap = np.zeros(np_, np.int64)
        on_void = pg == 0
        void_overlap[pp[on_void]] = cnt[on_void]

        # matches (unique when IoU > 0.5)
        g_cat1 = np.concatenate(([-1], g_cat))
        p_cat1 = np.concatenate(([-2], p_cat))
        g_crowd1 = np.concatenate(([False], g_crowd))
        cand = (pg > 0) & (pp > 0) & ~g_crowd1[pg] & (g_cat1[pg] == p_cat1[pp])
        cg, cp, ci = pg[cand], pp[cand], cnt[cand]
        union = p_area[cp] + g_area[cg] - ci - void_overlap[cp]
        ious = ci / union
        hit = ious > 0.5
        g_matched = np.zeros(ng, bool)
        p_matched = np.zeros(np_, bool)
        g_matched[cg[hit]] = True
        p_matched[cp[hit]] = True
        for c, v in zip(g_cat1[cg[hit]], ious[hit]):
            self.tp[c] += 1
            self.iou_sum[c] += v

        # false negatives: unmatched, non-crowd gt segments
        fn_mask = ~g_matched[1:] & ~g_crowd
        np.add.at(self.fn, g_cat[fn_mask], 1)

        # false positives: unmatched pred segments not mostly on VOID / same-category crowd
        crowd_overlap = np.zeros(np_, np.int64)
        on_crowd = (pg > 0) & (pp > 0) & g_crowd1[pg] & (g_cat1[pg] == p_cat1[pp])
        np.add.at(crowd_overlap, pp[on_crowd], cnt[on_crowd])
        covered = (void_overlap + crowd_overlap)[1:] / p_area[1:]
        fp_mask = ~p_matched[1:] & ~(covered > 0.5)
        np.add.at(self.fp, p_cat[fp_mask], 1)
        self.n_images += 1

    def merge(self, other: "PanopticAccumulator") -> "PanopticAccumulator":
        """A new accumulator with the counts of both (same categories required)."""
        if not isinstance(other, PanopticAccumulator):
            raise TypeError(f"can only merge a PanopticAccumulator, got {type(other).__name__}")
        if not (np.array_equal(self.category_ids, other.category_ids) and np.array_equal(self.isthing, other.isthing)):
            raise ValueError("cannot merge PanopticAccumulators with different categories")
        out = PanopticAccumulator.__new__(PanopticAccumulator)
        out.category_ids = self.category_ids
        out.isthing = self.isthing
        out.tp = self.tp + other.tp
        out.fp = self.fp + other.fp
        out.fn = self.fn + other.fn
        out.iou_sum = self.iou_sum + other.iou_sum
        out.n_images = self.n_images + other.n_images
        return out

    def result(self) -> PanopticResult:
        """PQ / SQ / RQ per category and averaged over All / Things / Stuff."""
        per: dict[int, PQClassScore] = {}
        pq = np.full(len(self.category_ids), np.nan)
        sq = pq.copy()
        rq = pq.copy()
        for i, cid in enumerate(self.category_ids.tolist()):
            tp, fp, fn, s = int(self.tp[i]), int(self.fp[i]), int(self.fn[i]), float(self.iou_sum[i])
            if tp + fp + fn > 0:
                pq[i] = s / (tp + 0.5 * fp + 0.5 * fn)
                sq[i] = s / tp if tp != 0 else 0.0
                rq[i] = tp / (tp + 0.5 * fp + 0.5 * fn)
            per[cid] = PQClassScore(float(pq[i]), float(sq[i]), float(rq[i]), tp, fp, fn, s)

        def group(mask: np.ndarray) -> PQGroupScore:
            sel = mask & ~np.isnan(pq)
            n = int(sel.sum())
            if n == 0:
                return PQGroupScore(math.nan, math.nan, math.nan, 0)
            # plain left-to-right sums in category order, like panopticapi
            return PQGroupScore(sum(pq[sel].tolist()) / n, sum(sq[sel].tolist()) / n, sum(rq[sel].tolist()) / n, n)

        everything = np.ones(len(self.category_ids), bool)
        return PanopticResult(group(everything), group(self.isthing), group(~self.isthing), per)


def panoptic_quality(gt_ids: Any, gt_segments: Iterable[Mapping[str, Any]], pred_ids: Any,
                     pred_segments: Iterable[Mapping[str, Any]], categories: Any) -> PanopticResult:
    """Panoptic quality of one image (see :class:`PanopticAccumulator` for the rules).

    >>> cats = [{"id": 1, "isthing": 1}]
    >>> ids = np.array([[0, 5, 5, 5]])
    >>> r = panoptic_quality(ids, [{"id": 5, "category_id": 1}], ids, [{"id": 5, "category_id": 1}], cats)
    >>> r.all.pq, r.per_class[1].tp
    (1.0, 1)
    """
    acc = PanopticAccumulator(categories)
    acc.add(gt_ids, gt_segments, pred_ids, pred_segments)
    return acc.result()
