"""The audit benchmark's data: the planted-error truth matches the files, the model never
sees the planted errors, and the scoring counts what it says (no timing here)."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from benchmarks import _audit_data as data
from benchmarks import bench_audit as bench


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    meta = data.generate_scenes(root, 24, seed=3)
    return root, meta


def _items(root, meta):
    for item_id in meta["items"]:
        yield item_id, data.load_item(root, item_id)


def test_every_type_is_planted_and_recorded(scenes):
    root, meta = scenes
    kinds = Counter(e["type"] for e in meta["errors"])
    assert set(kinds) == set(data.ERROR_TYPES), kinds
    assert json.loads((root / "truth.json").read_text()) == meta
    assert len({(e["item_id"], e["k"]) for e in meta["errors"]}) == len(meta["errors"])


def test_corrupted_gt_differs_from_clean_exactly_where_planted(scenes):
    root, meta = scenes
    by_item = {}
    for e in meta["errors"]:
        by_item.setdefault(e["item_id"], []).append(e)
    for item_id, a in _items(root, meta):
        assert np.array_equal(a["gt"] != a["clean"], a["truth"] > 0), item_id
        recs = by_item.get(item_id, [])
        assert sorted(np.unique(a["truth"][a["truth"] > 0]).tolist()) == [e["k"] for e in recs]
        for e in recs:
            px = a["truth"] == e["k"]
            ys, xs = np.nonzero(px)
            assert e["area"] == px.sum() >= 30
            assert e["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            # what the record says was there and what the corrupted copy says
            assert np.isin(a["gt"][px], [e["label_class"]]).mean() > 0.5 or e["type"] == "boundary_offset"
            assert (a["clean"][px] == e["clean_class"]).mean() > 0.5 or e["type"] == "boundary_offset"
            if e["type"] == "boundary_offset":
                assert e["clean_class"] == e["label_class"] and (a["gt"][px] == e["label_class"]).any()
            else:
                assert e["clean_class"] != e["label_class"]


def test_prediction_is_made_from_the_clean_truth(scenes):
    """The model agrees with the clean truth on most of each planted error (it sees it),
    so the error shows as a disagreement with the corrupted copy."""
    root, meta = scenes
    for e in meta["errors"]:
        a = data.load_item(root, e["item_id"])
        px = a["truth"] == e["k"]
        assert (a["pred"][px] == a["clean"][px]).mean() > 0.5, e
        assert (a["pred"][px] != a["gt"][px]).mean() > 0.5, e


def test_model_errors_are_there(scenes):
    root, meta = scenes
    a_cls, b_cls = meta["confused"]
    confused = total_a = disagree = 0
    for item_id, a in _items(root, meta):
        ok = a["truth"] == 0
        disagree += int(((a["pred"] != a["clean"]) & ok).sum())
        on_a = a["clean"] == a_cls
        total_a += int(on_a.sum())
        confused += int((on_a & (a["pred"] == b_cls)).sum())
        assert a["conf"].min() >= 1
    assert disagree > 0
    assert 0.2 < confused / total_a < 0.8  # the systematic confusion A -> B


def test_real_samples(real_data, tmp_path):
    meta = data.generate_real(tmp_path, real_data, limit=6)
    assert len(meta["items"]) == 6 and meta["errors"]
    for item_id, a in _items(tmp_path, meta):
        assert np.array_equal(a["gt"] != a["clean"], a["truth"] > 0)
        assert a["gt"].shape == a["pred"].shape == a["conf"].shape


def test_scoring_on_a_known_ranking():
    # 4 planted errors; ranked regions: hit e1, miss, hit e1 again (duplicate), hit e2, miss
    rel = [{1}, set(), {1}, {2}, set()]
    s = bench.ranking_scores(rel, n_positives=4, k=4)
    assert s["precision_at_k"] == pytest.approx(3 / 4)
    assert s["recall_at_k"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 4)
    # AP with duplicates left out of the list: hits at ranks 1 and 3 of [e1, miss, e2, miss]
    assert s["ap"] == pytest.approx((1 / 1 + 2 / 3) / 4)
    perfect = bench.ranking_scores([{1}, {2}, set()], n_positives=2, k=2)
    assert perfect["ap"] == perfect["precision_at_k"] == perfect["recall"] == 1.0


def test_region_matching(scenes):
    """A region that is a planted error's pixels matches it; an edge-noise band does not."""
    root, meta = scenes
    e = next(x for x in meta["errors"] if x["type"] == "class_swap")
    a = data.load_item(root, e["item_id"])
    x, y, w, h = e["bbox"]
    region = {"item_id": e["item_id"], "gt_class": e["label_class"], "pred_class": e["clean_class"],
              "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h}
    assert bench.match_region(region, a) == {e["k"]}
    wrong = dict(region, gt_class=(e["label_class"] + 1) % 12, pred_class=(e["clean_class"] + 2) % 12)
    assert bench.match_region(wrong, a) == set()
