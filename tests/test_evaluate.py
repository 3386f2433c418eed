"""`fastmask evaluate`: known answers, the seed example, pairing, NumPy reference."""
from __future__ import annotations

import collections
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fastmask.cli import main
from fastmask.formats import write_mask


def _write(folder, masks):
    folder.mkdir()
    for name, m in masks.items():
        write_mask(folder / f"{name}.png", m)


def test_seed_example_and_pairing(tmp_path):
    gt = np.zeros((8, 8), np.uint8)
    gt[0:4, 0:4] = 1
    pred = np.zeros((8, 8), np.uint8)
    pred[1:5, 1:5] = 1  # the same 4x4 square shifted by one: 9 px overlap
    _write(tmp_path / "gt", {"a": gt, "b": gt, "only_gt": gt})
    _write(tmp_path / "pred", {"a": pred, "b": gt, "only_pred": pred})
    out = tmp_path / "r"
    args = ["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--num-classes", "2",
            "--workers", "1", "--quiet"]
    # a ground-truth item without a prediction: exit 1, unless --allow-missing
    assert main(args + ["--out", str(tmp_path / "strict")]) == 1
    assert main(args + ["--out", str(out), "--allow-missing"]) == 0
    items = {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert items["only_gt"]["error_code"] == "missing_prediction"
    assert items["only_pred"]["error_code"] == "extra_prediction"
    scores = {(r["item_id"], r["class_id"]): r for r in pq.read_table(out / "image_scores").to_pylist()}
    assert scores[("a", 1)]["iou"] == pytest.approx(9 / 23) and scores[("a", 1)]["dice"] == pytest.approx(0.5625)
    assert scores[("b", 1)]["iou"] == 1.0
    summary = json.loads((out / "run.json").read_text())["summary"]
    # dataset scores from summed counts: class 1 has TP 16+9, FP 7, FN 7
    assert summary["iou"][1] == pytest.approx(25 / 39)
    assert summary["image_averaged_miou"] != summary["miou"]  # a different aggregation, reported apart
    classes = {r["class_id"]: r for r in pq.read_table(out / "classes").to_pylist()}
    assert (classes[1]["tp"], classes[1]["fp"], classes[1]["fn"]) == (25, 7, 7)


def test_matches_numpy_reference_with_ignore_and_empty_class(tmp_path):
    rng = np.random.default_rng(0)
    gts, preds = {}, {}
    for i in range(6):
        g = rng.integers(0, 4, (20, 30)).astype(np.uint8)  # class 4 never appears: NaN, left out
        g[:2] = 255
        p = g.copy()
        p[rng.random(g.shape) < 0.2] = rng.integers(0, 4)
        p[p == 255] = 0
        gts[f"i{i}"], preds[f"i{i}"] = g, p
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    out = tmp_path / "r"
    assert main(["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--num-classes", "5",
                 "--out", str(out), "--workers", "2", "--shard-size", "2", "--quiet"]) == 0
    g = np.concatenate([m.ravel() for m in gts.values()]).astype(np.int64)
    p = np.concatenate([m.ravel() for m in preds.values()]).astype(np.int64)
    keep = g != 255
    cm = np.bincount(5 * g[keep] + p[keep], minlength=25).reshape(5, 5)
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["confusion_matrix"] == cm.tolist()
    tp = np.diag(cm)
    with np.errstate(invalid="ignore"):  # class 4: 0/0 on purpose
        iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    assert summary["iou"][:4] == pytest.approx(iou[:4].tolist()) and summary["iou"][4] is None
    assert summary["miou"] == pytest.approx(float(np.mean(iou[:4])))


def test_out_of_range_prediction_is_an_error_row_with_out_of_range_error(tmp_path):
    g = np.zeros((4, 4), np.uint8)
    p = g.copy()
    p[0, 0] = 9
    _write(tmp_path / "gt", {"x": g})
    _write(tmp_path / "pred", {"x": p})
    out = tmp_path / "r"
    assert main(["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--num-classes", "2",
                 "--out-of-range", "error", "--out", str(out), "--workers", "1", "--quiet"]) == 1
    row = pq.read_table(out / "items").to_pylist()[0]
    assert row["status"] == "error" and row["error_code"] == "out_of_range"
    assert row["pred_out_of_range"] == 1 and "{9: 1}" in row["error_message"]


def test_panoptic_quality_equals_panopticapi(real_data, tmp_path):
    from fastmask.engine import run_job
    from fastmask.formats import open_dataset
    from fastmask.jobs.evaluate import EvaluateJob

    ref = real_data / "_reference/panoptic_pq"
    gt = open_dataset(ref / "gt.json", masks=real_data / "panopticapi/sample_data/panoptic_examples")
    pred = open_dataset(ref / "pred.json", masks=ref / "pred")
    job = EvaluateJob(gt, pred, 1)
    result = run_job(job, job.manifest(), tmp_path / "r", workers=1, quiet=True)
    assert result.counts["error"] == 0
    got = result.summary["panoptic"]
    expected = json.loads((ref / "expected_pq.json").read_text())
    for ours, theirs in (("all", "All"), ("things", "Things"), ("stuff", "Stuff")):
        for k in ("pq", "sq", "rq"):
            assert got[ours][k] == pytest.approx(expected[theirs][k], abs=1e-12)
        assert got[ours]["n"] == expected[theirs]["n"]


def test_panoptic_quality_from_the_command_line(real_data, tmp_path):
    ref = real_data / "_reference/panoptic_pq"
    out = tmp_path / "r"
    # gt.json's PNGs are not beside it: --gt-masks names them; pred.json has pred/ beside it
    assert main(["evaluate", "--gt", str(ref / "gt.json"), "--pred", str(ref / "pred.json"),
                 "--gt-masks", str(real_data / "panopticapi/sample_data/panoptic_examples"),
                 "--out", str(out), "--workers", "1", "--quiet"]) == 0
    got = json.loads((out / "run.json").read_text())["summary"]["panoptic"]
    expected = json.loads((ref / "expected_pq.json").read_text())
    assert got["all"]["pq"] == pytest.approx(expected["All"]["pq"], abs=1e-12)
    assert got["things"]["n"] == expected["Things"]["n"]


def test_masks_flag_is_refused_for_a_non_panoptic_dataset(tmp_path, capsys):
    _write(tmp_path / "gt", {"a": np.zeros((2, 2), np.uint8)})
    code = main(["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "gt"), "--num-classes", "2",
                 "--gt-masks", str(tmp_path), "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2 and "--masks is the PNG folder of a COCO panoptic dataset" in capsys.readouterr().err


def _reference_result(gt, pred, num_classes, ignore, policy, out_of_range):
    """evaluate's per-image fields and rows computed with fastmask.metrics from the counts
    (None when the policy refuses the pair's values)."""
    from fastmask import metrics

    try:
        res = metrics.confusion_matrix(gt, pred, num_classes, ignore, out_of_range=out_of_range)
    except ValueError:
        return None
    if out_of_range == "error":
        res = metrics.ConfusionCounts(res, int((gt == ignore).sum()) if ignore is not None else 0, 0)
    cm = res.matrix
    iou, dice = metrics.iou(res, policy), metrics.dice(res, policy)
    tp, fp, fn = res.tp_fp_fn()
    present = np.flatnonzero(tp + fp + fn)
    nan = lambda x: None if x != x else float(x)  # noqa: E731
    n_out = int(res.pred_out_of_range_per_class.sum())
    total = int(cm.sum()) + (n_out if out_of_range == "fn" else 0)
    fields = {"width": gt.shape[1], "height": gt.shape[0], "pixels": total, "ignored": res.ignored,
              "accuracy": float(tp.sum() / total) if total else None,
              "miou": nan(metrics.mean_score(iou)), "mdice": nan(metrics.mean_score(dice)),
              "pred_out_of_range": n_out, "gt_out_of_range": sum(res.gt_out_of_range.values())}
    rows = {"class_id": present.tolist(), "tp": tp[present].tolist(), "fp": fp[present].tolist(),
            "fn": fn[present].tolist(), "iou": [nan(v) for v in iou[present]], "dice": [nan(v) for v in dice[present]]}
    g, p = np.nonzero(cm)
    cells = {"gt_class": g.tolist(), "pred_class": p.tolist(), "pixels": cm[g, p].tolist()}
    # then the out-of-range predicted values per ground-truth class, by class then value
    keep = (gt < num_classes) & (pred >= num_classes) & ((gt != ignore) if ignore is not None else True)
    oor = sorted(collections.Counter(zip(gt[keep].tolist(), pred[keep].tolist())).items())
    cells = {"gt_class": cells["gt_class"] + [k[0] for k, _ in oor],
             "pred_class": cells["pred_class"] + [k[1] for k, _ in oor],
             "pixels": cells["pixels"] + [n for _, n in oor]}
    return fields, rows, cells


@pytest.mark.parametrize("num_classes", [1, 3, 9, 21, 150, 256])
@pytest.mark.parametrize("policy", ["nan", "one", "zero"])
@pytest.mark.parametrize("ignore", [255, None, 0, 300])
@pytest.mark.parametrize("out_of_range", ["fn", "ignore", "error"])
def test_one_call_scores_equal_the_metrics_module_bit_for_bit(num_classes, policy, ignore, out_of_range):
    """The per-image kernel (uint8 pairs) gives exactly what fastmask.metrics gives from the
    counts, under every out-of-range policy; pairs the policy refuses go to the general path."""
    from fastmask.jobs.evaluate import EvaluateJob

    class _DS:  # the job's constructor reads only .layout
        layout = "masks"

    job = EvaluateJob(_DS(), _DS(), num_classes, ignore_value=ignore, empty_policy=policy, out_of_range=out_of_range)
    rng = np.random.default_rng(num_classes * 7 + len(policy))
    n_refused = n_oor = 0
    for k in range(40):
        h, w = rng.integers(1, 40, 2)
        top = min(num_classes + (2 if k % 5 == 0 else 0), 256)  # some pairs with values out of range
        gt = rng.integers(0, top, (h, w)).astype(np.uint8)
        pred = np.where(rng.random((h, w)) < 0.7, gt, rng.integers(0, top, (h, w))).astype(np.uint8)
        if k % 5 == 0 and k % 2 == 0:  # predictions out of range on in-range ground truth only
            gt = np.minimum(gt, num_classes - 1).astype(np.uint8)
        if k % 3 == 0:
            gt[: h // 2] = 255 if ignore is None or ignore > 255 else ignore
        got = job._scores_u8(gt, pred)
        ref = _reference_result(gt, pred, num_classes, ignore, policy, out_of_range)
        if ref is None:
            n_refused += 1
            assert got is None  # the general path names the refused values
            continue
        n_oor += ref[0]["pred_out_of_range"] > 0
        assert got.fields == ref[0]
        assert got.rows == {"image_scores": ref[1], "confusion": ref[2]}
        general = job._scores_general("x", gt, pred)
        assert (general.fields, general.rows) == (got.fields, got.rows)
    if 1 < num_classes < 255:
        assert n_oor if out_of_range != "error" else n_refused  # the out-of-range cases were exercised


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 200, 256, 1000, 65536])
def test_pairwise_sum_is_numpys_sum_bit_for_bit(n):
    from fastmask.kernels.confusion import pairwise_sum

    a = np.random.default_rng(n).random(n) * 10.0 ** np.random.default_rng(n + 1).integers(-8, 8, n)
    assert pairwise_sum(a, 0, n) == a.sum()


def test_16_bit_maps_take_the_general_path_with_the_same_results(monkeypatch):
    """uint8 pairs go through the one-call kernel, other dtypes through
    metrics.confusion_matrix: the same values give the same fields and rows."""
    import json

    import fastmask.jobs.evaluate as E

    class _DS:
        layout = "masks"

    rng = np.random.default_rng(5)
    for policy in ("nan", "one"):
        job = E.EvaluateJob(_DS(), _DS(), 7, ignore_value=255, empty_policy=policy)
        for k in range(20):
            gt = rng.integers(0, 6, (17, 23)).astype(np.uint8)
            pred = np.where(rng.random(gt.shape) < 0.8, gt, rng.integers(0, 6, gt.shape)).astype(np.uint8)
            gt[: k % 4] = 255
            results = {}
            for dtype in (np.uint8, np.uint16, np.int32):
                maps = iter([gt.astype(dtype), pred.astype(dtype)])
                monkeypatch.setattr(E, "_class_map", lambda ds, row, ignore: next(maps))
                r = job.process({"item_id": "x", "gt_row": json.dumps({}), "pred_row": json.dumps({})})
                results[dtype] = (r.fields, r.rows)
            assert results[np.uint8] == results[np.uint16] == results[np.int32]
