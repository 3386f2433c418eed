"""`fastmask evaluate`: known answers, the seed example, pairing, NumPy reference."""
from __future__ import annotations

import collections
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------------------
# pairing, partial answers, exit codes, out-of-range predictions
# --------------------------------------------------------------------------------------


def _evaluate(tmp_path, gt, pred, *extra, name="r"):
    out = tmp_path / name
    code = main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(out), "--workers", "1", "--quiet",
                 *extra])
    summary = json.loads((out / "run.json").read_text())["summary"] if (out / "run.json").exists() else None
    items = {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()} if (out / "items").exists() else None
    return code, summary, items


def _frames_coco(path, n=12):
    """A COCO file whose file names are not the zero-padded ids (frame_0000.jpg...), one in a sub-folder."""
    images, anns = [], []
    for i in range(n):
        fn = f"frame_{i:04d}.jpg" if i < n - 1 else f"cam1/frame_{i:04d}.jpg"
        images.append({"id": i + 1, "file_name": fn, "width": 16, "height": 12})
        x = 1 + i % 5
        anns.append({"id": 2 * i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "iscrowd": 0, "area": 30.0,
                     "bbox": [x, 1, 6, 5], "segmentation": [[x, 1, x + 6, 1, x + 6, 6, x, 6]]})
        anns.append({"id": 2 * i + 2, "image_id": i + 1, "category_id": 2, "iscrowd": 0, "area": 10.0,
                     "bbox": [9, 7, 5, 3], "segmentation": [[9, 7, 14, 7, 11, 10]]})
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return path


def test_rasterize_then_evaluate_pairs_by_file_name(tmp_path):
    coco = _frames_coco(tmp_path / "coco.json")
    assert main(["rasterize", str(coco), "--out", str(tmp_path / "ras"), "--workers", "1", "--quiet"]) == 0
    assert (tmp_path / "ras/masks/cam1/frame_0011.png").is_file()
    code, summary, items = _evaluate(tmp_path, coco, tmp_path / "ras/masks", "--num-classes", "3")
    assert code == 0
    assert (summary["scored_items"], summary["ground_truth_items"], summary["not_scored"]) == (12, 12, {})
    assert summary["paired_by_file_name"] == 12 and summary["extra_predictions"] == 0
    assert all(r["status"] == "ok" and r["paired_by"] == "file_name" for r in items.values())
    assert items["000000000012"]["pred_item"] == "cam1/frame_0011"
    scores = pq.read_table(tmp_path / "r/image_scores").to_pylist()
    assert {r["item_id"] for r in scores} == set(items) and all(r["iou"] == 1.0 for r in scores)
    assert summary["miou"] == 1.0
    # the other way round: masks as ground truth, the COCO file as prediction
    code, summary, items = _evaluate(tmp_path, tmp_path / "ras/masks", coco, "--num-classes", "3", name="r2")
    assert code == 0 and summary["scored_items"] == 12 and summary["extra_predictions"] == 0
    assert items["cam1/frame_0011"]["pred_item"] == "000000000012" and items["cam1/frame_0011"]["paired_by"] == "file_name"
    assert summary["miou"] == 1.0


def test_ambiguous_pairing_is_an_error_row_naming_both(tmp_path):
    coco = _frames_coco(tmp_path / "coco.json", n=2)
    m = np.zeros((12, 16), np.uint8)
    _write(tmp_path / "pred", {"frame_0000": m, "000000000001": m})
    (tmp_path / "pred/cam1").mkdir()
    write_mask(tmp_path / "pred/cam1/frame_0001.png", m)
    code, summary, items = _evaluate(tmp_path, coco, tmp_path / "pred", "--num-classes", "3", "--allow-missing")
    assert code == 1
    row = items["000000000001"]
    assert row["error_code"] == "ambiguous_pairing"
    assert "'000000000001'" in row["error_message"] and "'frame_0000'" in row["error_message"]
    assert items["000000000002"]["status"] == "ok"
    assert summary["not_scored"] == {"ambiguous_pairing": 1} and summary["extra_predictions"] == 0
    assert len(items) == 2  # both candidates are accounted for by the error row, not listed as extra


def test_not_scored_items_are_counted_by_reason_and_fail_the_run(tmp_path, capsys):
    g = np.zeros((4, 4), np.uint8)
    _write(tmp_path / "gt", {"ok": g, "small": g, "broken": g, "nopred": g})
    _write(tmp_path / "pred", {"ok": g, "small": g[:2], "extra": g})
    (tmp_path / "pred/broken.png").write_bytes(b"not a png")
    code, summary, items = _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2")
    assert code == 1
    assert summary["scored_items"] == 1 and summary["ground_truth_items"] == 4 and summary["extra_predictions"] == 1
    assert summary["not_scored"]["size_mismatch"] == 1 and summary["not_scored"]["missing_prediction"] == 1
    assert sum(summary["not_scored"].values()) == 3
    assert summary["not_scored_examples"]["missing_prediction"] == ["nopred"]
    out = capsys.readouterr()
    assert "scored 1 of 4 ground-truth items" in out.out and "not scored, size_mismatch: 1 (small)" in out.out
    assert "mIoU" in out.out and "(summed over images; scored 1 of 4 ground-truth items)" in out.out
    assert "exit 1" in out.err
    # --allow-missing accepts the missing prediction only: a size mismatch or unreadable file still fails
    assert _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2", "--allow-missing",
                     name="r2")[0] == 1
    (tmp_path / "pred/broken.png").unlink()
    (tmp_path / "pred/small.png").unlink()
    code, summary, _ = _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2",
                                 "--allow-missing", name="r3")
    assert code == 0 and summary["not_scored"] == {"missing_prediction": 3}
    assert _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2", name="r4")[0] == 1


def test_nothing_paired_exits_1_even_with_allow_missing(tmp_path, capsys):
    g = np.zeros((4, 4), np.uint8)
    _write(tmp_path / "gt", {"a": g, "b": g})
    _write(tmp_path / "pred", {"c": g, "d": g})
    code, summary, _ = _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2", "--allow-missing")
    assert code == 1 and summary["scored_items"] == 0 and summary["miou"] is None
    assert "no ground-truth item was scored" in capsys.readouterr().err


def test_one_prediction_with_out_of_range_pixels_no_longer_drops_the_image(tmp_path):
    rng = np.random.default_rng(1)
    gts = {k: rng.integers(0, 3, (10, 12)).astype(np.uint8) for k in "ab"}
    preds = {k: v.copy() for k, v in gts.items()}
    preds["b"][0, :3] = 200  # three pixels >= --num-classes
    preds["b"][5, 5] = (gts["b"][5, 5] + 1) % 3
    _write(tmp_path / "gt", gts)
    _write(tmp_path / "pred", preds)
    code, summary, items = _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "3")
    assert code == 0 and summary["scored_items"] == 2
    assert items["b"]["status"] == "ok" and items["b"]["pred_out_of_range"] == 3 and items["a"]["pred_out_of_range"] == 0
    assert summary["pred_out_of_range_pixels"] == 3 and summary["items_with_pred_out_of_range"] == 1
    sums = sum(np.stack(_mmseg(preds[k], gts[k], 3, 255)) for k in "ab")
    assert summary["iou"] == pytest.approx((sums[0] / sums[1]).tolist(), rel=1e-15)
    assert summary["pixel_accuracy"] == pytest.approx(sums[0].sum() / sums[3].sum(), rel=1e-15)
    classes = {r["class_id"]: r for r in pq.read_table(tmp_path / "r/classes").to_pylist()}
    assert sum(r["pred_out_of_range"] for r in classes.values()) == 3
    assert [classes[c]["tp"] + classes[c]["fn"] for c in range(3)] == sums[3].tolist()


@pytest.mark.parametrize("policy, iou, code", [("fn", [1.0, 0.5], 0), ("ignore", [1.0, 1.0], 0), ("error", None, 1)])
def test_out_of_range_policies_on_the_reference_example(tmp_path, policy, iou, code):
    _write(tmp_path / "gt", {"x": np.array([[0, 0, 1, 1]], np.uint8)})
    _write(tmp_path / "pred", {"x": np.array([[0, 0, 1, 255]], np.uint8)})
    got, summary, items = _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2",
                                    "--out-of-range", policy)
    assert got == code and items["x"]["pred_out_of_range"] == 1 and summary["out_of_range"] == policy
    if iou is None:
        assert items["x"]["error_code"] == "out_of_range" and summary["not_scored"] == {"out_of_range": 1}
    else:
        assert summary["iou"] == iou and items["x"]["status"] == "ok"


def test_ground_truth_out_of_range_is_an_error_row_unless_ignored(tmp_path):
    _write(tmp_path / "gt", {"x": np.array([[0, 7, 1, 1]], np.uint8), "y": np.array([[0, 1]], np.uint8)})
    _write(tmp_path / "pred", {"x": np.array([[0, 1, 1, 1]], np.uint8), "y": np.array([[0, 1]], np.uint8)})
    code, summary, items = _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2")
    assert code == 1 and items["x"]["error_code"] == "gt_out_of_range" and "{7: 1}" in items["x"]["error_message"]
    assert items["x"]["gt_out_of_range"] == 1 and summary["not_scored"] == {"gt_out_of_range": 1}
    code, summary, items = _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2",
                                     "--out-of-range", "ignore", name="r2")
    assert code == 0 and items["x"]["status"] == "ok" and items["x"]["gt_out_of_range"] == 1
    assert summary["gt_out_of_range_pixels"] == 1 and items["x"]["pixels"] == 3


def _mmseg(pred, label, num_classes, ignore_index):
    from test_metrics import mmseg_intersect_and_union

    return mmseg_intersect_and_union(pred, label, num_classes, ignore_index)


@st.composite
def _datasets(draw):
    nc = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    maps = []
    for _ in range(draw(st.integers(1, 3))):
        h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        gt = rng.integers(0, nc, (h, w))
        gt[rng.random((h, w)) < 0.15] = 255
        pred = np.where(rng.random((h, w)) < 0.6, gt, rng.integers(0, nc + 3, (h, w)))
        pred[rng.random((h, w)) < 0.1] = 255
        maps.append((gt.astype(dtype), pred.astype(dtype)))
    return nc, maps


@given(_datasets())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
def test_cli_scores_equal_mmsegmentation_on_random_maps(tmp_path_factory, case):
    nc, maps = case
    tmp = tmp_path_factory.mktemp("mm")
    _write(tmp / "gt", {f"m{i}": g for i, (g, _) in enumerate(maps)})
    _write(tmp / "pred", {f"m{i}": p for i, (_, p) in enumerate(maps)})
    code, summary, items = _evaluate(tmp, tmp / "gt", tmp / "pred", "--num-classes", str(nc))
    sums = sum(np.stack(_mmseg(p, g, nc, 255)) for g, p in maps)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = sums[0] / sums[1]
    assert [np.nan if v is None else v for v in summary["iou"]] == pytest.approx(iou.tolist(), rel=1e-15, nan_ok=True)
    assert summary["scored_items"] == len(maps) and code == 0
    n_out = sum(int(((g != 255) & (p >= nc)).sum()) for g, p in maps)
    assert summary["pred_out_of_range_pixels"] == n_out
    assert sum(r["pred_out_of_range"] for r in items.values()) == n_out


def test_panoptic_pngs_not_found_names_the_folder(real_data, tmp_path, capsys):
    ref = real_data / "_reference/panoptic_pq"
    # gt.json's PNGs are not beside it and --gt-masks is not given
    code, summary, items = _evaluate(tmp_path, ref / "gt.json", ref / "pred.json")
    assert code == 1 and summary["scored_items"] == 0 and summary["not_scored"] == {"missing_mask": len(items)}
    searched = str(ref / "gt")
    assert all(searched in r["error_message"] and "--gt-masks" in r["error_message"] for r in items.values())
    out = capsys.readouterr().out
    assert f"ground-truth panoptic PNG folder not found: {searched} (give --gt-masks)" in out
    assert f"scored 0 of {len(items)} ground-truth items" in out


def test_html_report_says_what_was_scored(tmp_path):
    from fastmask.report import render_report

    g = np.zeros((4, 4), np.uint8)
    _write(tmp_path / "gt", {"a": g, "b": g, "c": g})
    p = g.copy()
    p[0, 0] = 9
    _write(tmp_path / "pred", {"a": p, "b": g[:2]})
    _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "2")
    page = render_report(tmp_path / "r", max_thumbnails=0, charts="none")
    assert "<b>1 of 3</b><span>ground-truth items scored</span>" in page
    assert "mIoU (summed, scored 1 of 3 ground-truth items)" in page
    assert "not scored: missing_prediction</td><td>1 (c)" in page and "not scored: size_mismatch</td><td>1 (b)" in page
    assert "1 px in 1 item (--out-of-range fn)" in page


def test_not_scored_counts_add_up_over_shards(tmp_path):
    g = np.zeros((3, 3), np.uint8)
    _write(tmp_path / "gt", {f"i{k:02d}": g for k in range(10)})
    _write(tmp_path / "pred", {"i03": g, "i07": g, "x": g})
    code, summary, items = _evaluate(tmp_path, tmp_path / "gt", tmp_path / "pred", "--num-classes", "1",
                                     "--shard-size", "3", "--allow-missing")
    assert code == 0 and len(items) == 11
    assert (summary["scored_items"], summary["ground_truth_items"], summary["extra_predictions"]) == (2, 10, 1)
    assert summary["not_scored"] == {"missing_prediction": 8}
    assert summary["not_scored_examples"] == {"missing_prediction": ["i00", "i01", "i02", "i04", "i05"]}
