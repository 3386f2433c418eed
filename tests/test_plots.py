"""fastmask.plots and `--plots`: charts of real run folders, their numbers against the tables."""
from __future__ import annotations

import io
import html
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fastmask import plots
from fastmask.cli import main
from fastmask.formats import open_dataset, write_mask
from fastmask.sample import make_sample

HOSTILE = 'a<b>&"q\'<script>x'  # a legal Linux file name that must never reach HTML raw


def build_runs(root: Path) -> dict[str, Path]:
    """Run folders of every kind on the demo sample: validate, coverage, evaluate (+ hostile, panoptic)."""
    info = make_sample(root / "sample")
    runs = {}
    q = ["--workers", "1", "--quiet"]
    runs["validate"] = root / "validate"
    assert main(["validate", str(info.voc), "--out", str(runs["validate"]), *q]) == 1  # planted errors
    runs["validate_coco"] = root / "validate_coco"
    assert main(["validate", str(info.coco), "--out", str(runs["validate_coco"]), *q]) == 1
    runs["coverage"] = root / "coverage"
    assert main(["coverage", str(info.voc), "--out", str(runs["coverage"]), "--plots", "--shard-size", "10", *q]) == 0
    # predictions: the clean ground truths, shifted by k % 5 px, cars turned into people every 4th image
    pred = root / "pred"
    pred.mkdir()
    ds = open_dataset(info.voc)
    for row in ds.manifest().to_pylist():
        if row["item_id"].startswith("clean_"):
            m = ds.read_item(row).mask.array.copy()
            k = int(row["item_id"][-3:])
            m = np.roll(m, k % 5, axis=1)
            if k % 4 == 0:
                m[m == 2] = 3
            m[m == 255] = 0
            write_mask(pred / f"{row['item_id']}.png", m)
    runs["evaluate"] = root / "evaluate"
    # the planted items have no prediction: --allow-missing (they are still listed as not scored)
    assert main(["evaluate", "--gt", str(info.voc), "--pred", str(pred), "--out", str(runs["evaluate"]),
                 "--plots", "--allow-missing", *q]) == 0
    runs["panoptic"] = root / "panoptic"
    assert main(["evaluate", "--gt", str(info.panoptic), "--pred", str(info.panoptic),
                 "--out", str(runs["panoptic"]), "--plots", *q]) == 0
    # hostile names: item ids and class names with HTML in them, one planted defect
    hostile = root / "hostile"
    hostile.mkdir()
    m = np.zeros((40, 50), np.uint8)
    m[5:30, 5:30] = 1
    write_mask(hostile / "plain.png", m)
    bad = m.copy()
    bad[35:37, 40:42] = 7  # a value outside the label map: an error finding
    write_mask(hostile / f"{HOSTILE}.png", bad)
    (hostile / "labelmap.txt").write_text("background\n<i>cat</i> & \"dog\"\n")
    runs["hostile"] = root / "hostile_run"
    main(["validate", str(hostile), "--out", str(runs["hostile"]), *q])
    runs["pred_dir"] = pred
    runs["voc"] = Path(info.voc)
    return runs


_RUNS: dict[str, Path] = {}


def shared_runs(tmp_path_factory) -> dict[str, Path]:
    """build_runs once per test session (tests/test_report.py uses the same folders; nobody modifies them)."""
    if not _RUNS:
        _RUNS.update(build_runs(tmp_path_factory.mktemp("runs")))
    return _RUNS


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return shared_runs(tmp_path_factory)


def _decode(path_or_bytes) -> np.ndarray:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def _nontrivial(arr: np.ndarray) -> None:
    assert arr.shape[0] >= 150 and arr.shape[1] >= 200, arr.shape
    packed = (arr[..., 0].astype(np.uint32) << 16) | (arr[..., 1].astype(np.uint32) << 8) | arr[..., 2]
    assert len(np.unique(packed)) > 8, "a chart of (nearly) one colour"
    # something is drawn beyond the white page: a good share of non-white pixels
    assert (arr.min(axis=2) < 200).mean() > 0.01


EXPECTED = {
    "validate": ["findings", "class_frequency"],
    "validate_coco": ["findings", "class_frequency"],  # COCO classes: pixels after painting
    "coverage": ["class_frequency", "coverage_histograms", "coverage_by_shard"],
    "evaluate": ["class_scores", "confusion_matrix", "image_miou"],
    "panoptic": ["panoptic_quality"],
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_write_plots_every_job(runs, tmp_path, kind):
    paths = plots.write_plots(runs[kind], tmp_path / kind)
    assert [p.stem for p in paths] == EXPECTED[kind]
    for p in paths:
        _nontrivial(_decode(p))
    assert not list((tmp_path / kind).glob(".*")), "temporary files left behind"


@pytest.mark.parametrize("kind", ["coverage", "evaluate", "panoptic"])
def test_plots_flag_writes_into_the_run_folder(runs, kind):
    written = sorted(p.stem for p in (runs[kind] / "plots").glob("*.png"))
    assert written == sorted(EXPECTED[kind])
    for p in (runs[kind] / "plots").glob("*.png"):
        _nontrivial(_decode(p))


def test_coverage_chart_numbers_equal_the_tables(runs):
    charts = {c.name: c for c in plots.charts_for_run(runs["coverage"])}
    classes = {r["class_id"]: r for r in pq.read_table(runs["coverage"] / "classes").to_pylist()}
    names = plots.class_names(json.loads((runs["coverage"] / "run.json").read_text()))
    hist = charts["coverage_histograms"]
    assert len(hist.panels) == len([c for c in classes.values() if c["images"]])
    for label, series in hist.panels:
        cid = int(label.split()[0])
        assert series["images"] == [float(v) for v in classes[cid]["histogram"]]
        assert label == f"{cid} {names.get(cid, '')}".strip()
    freq = charts["class_frequency"]
    total = sum(c["pixels"] for c in classes.values())
    for label, share, n in zip(freq.categories, freq.series["share of pixels (%)"],
                               freq.series["images containing the class"]):
        cid = int(label.split()[0])
        assert share == pytest.approx(100 * classes[cid]["pixels"] / total)
        assert n == classes[cid]["images"]
    # largest first
    assert freq.series["share of pixels (%)"] == sorted(freq.series["share of pixels (%)"], reverse=True)
    # per shard: every line is the shard's histogram of that class in percent
    run = json.loads((runs["coverage"] / "run.json").read_text())
    shards = run["summary"]["shards"]
    assert len(shards) == run["shards"] > 1
    for label, series in charts["coverage_by_shard"].panels:
        cid = label.split()[0]
        for name, line in series.items():
            h = shards[int(name.split()[1])][cid]
            assert line == pytest.approx([100 * v / sum(h) for v in h])
            assert sum(line) == pytest.approx(100)


def test_evaluate_chart_numbers_equal_the_summary(runs):
    run = json.loads((runs["evaluate"] / "run.json").read_text())
    charts = {c.name: c for c in plots.charts_for_run(runs["evaluate"])}
    cm = np.array(run["summary"]["confusion_matrix"], dtype=float)
    present = [i for i in range(len(cm)) if cm[i].sum() or cm[:, i].sum()]
    heat = charts["confusion_matrix"]
    assert [int(lab.split()[0]) for lab in heat.labels] == present
    sub = cm[np.ix_(present, present)]
    expected = sub / sub.sum(axis=1, keepdims=True)
    assert np.allclose(np.array(heat.matrix), expected, equal_nan=True)
    scores = charts["class_scores"]
    for label, iou, dice in zip(scores.categories, scores.series["IoU"], scores.series["Dice"]):
        cid = int(label.split()[0])
        assert iou == pytest.approx(100 * run["summary"]["iou"][cid])
        assert dice == pytest.approx(100 * run["summary"]["dice"][cid])
    # the known defect: every 4th image turns cars into people, so car IoU < 100 and person precision < 100
    assert scores.series["IoU"][[lab.split()[0] for lab in scores.categories].index("2")] < 100
    miou = [v for v in pq.read_table(runs["evaluate"] / "items").column("miou").to_pylist() if v is not None]
    (_, series), = charts["image_miou"].panels
    assert sum(series["images"]) == len(miou)
    assert series["images"] == [float(sum(1 for v in miou if min(int(v * 10), 9) == k)) for k in range(10)]


def test_findings_chart_counts_equal_the_tables(runs):
    chart = next(c for c in plots.charts_for_run(runs["validate"]) if c.name == "findings")
    rows = []
    for t in ("findings", "dataset_findings"):
        rows += pq.read_table(runs["validate"] / t).select(["rule", "severity"]).to_pylist()
    counts = Counter((r["rule"], r["severity"]) for r in rows)
    got = {(rule, sev): v for sev, vals in chart.series.items() for rule, v in zip(chart.categories, vals) if v}
    assert got == {k: float(v) for k, v in counts.items()}
    assert chart.stacked and set(chart.series) <= {"error", "warning", "info"}
    assert str(len(rows)) in chart.title


def test_caps_many_classes_and_says_so():
    classes = [{"class_id": i, "pixels": i * 10, "images": 1} for i in range(1, 301)]
    chart = plots._frequency_chart(classes, {})
    assert len(chart.categories) == plots.MAX_CLASSES
    assert "largest 40 of 300" in chart.title
    kept = [int(c) for c in chart.categories]
    assert kept == list(range(300, 260, -1))  # the largest, largest first
    _nontrivial(_decode(plots.render_png(chart)))


@pytest.mark.parametrize("chart", [
    plots.BarChart("zeros", "all zero", ["a", "b"], {"n": [0.0, 0.0]}),
    plots.BarChart("nan", "IoU undefined", ["a"], {"IoU": [float("nan")], "Dice": [float("nan")]},
                   limits=(0, 100), percent=True),
    plots.BarChart("one", "one bar", ["only"], {"n": [5.0]}),
    plots.HeatMap("h1", "1x1", ["0 bg"], [[1.0]]),
    plots.HeatMap("hnan", "empty row", ["a", "b"], [[float("nan"), float("nan")], [0.25, 0.75]]),
    plots.Histograms("hz", "empty histogram", ["x", "y"], [("c", {"images": [0.0, 0.0]})]),
], ids=lambda c: c.name)
def test_degenerate_charts_still_render(chart):
    arr = _decode(plots.render_png(chart))
    assert arr.shape[0] >= 150 and arr.shape[1] >= 200
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 2  # at least title text and axes
    assert 'class="chart"' in plots.render_html(chart)


def test_run_without_classes_gives_no_charts(tmp_path):
    d = tmp_path / "masks"
    d.mkdir()
    (d / "broken.png").write_bytes(b"")  # zero bytes: the only item cannot be read
    out = tmp_path / "r"
    assert main(["coverage", str(d), "--layout", "masks", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert plots.charts_for_run(out) == []
    assert plots.write_plots(out) == []


def test_not_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run.json"):
        plots.write_plots(tmp_path)


def test_missing_matplotlib_is_a_clear_error(runs, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert not plots.matplotlib_available()
    with pytest.raises(plots.PlotsUnavailable, match=r"fastmask-seg\[plots\]"):
        plots.write_plots(runs["coverage"], tmp_path / "p")
    assert not (tmp_path / "p").exists()
    # the HTML charts need nothing
    assert all(plots.render_html(c) for c in plots.charts_for_run(runs["evaluate"]))
    # the CLI refuses --plots before running anything
    out = tmp_path / "cov"
    assert main(["coverage", str(runs["voc"]), "--out", str(out), "--plots", "--quiet"]) == 2
    assert "fastmask-seg[plots]" in capsys.readouterr().err
    assert not out.exists()
    out = tmp_path / "ev"
    assert main(["evaluate", "--gt", str(runs["voc"]), "--pred", str(runs["pred_dir"]), "--out", str(out),
                 "--plots", "--quiet"]) == 2
    assert not out.exists()


_labels = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_values = st.floats(min_value=0, max_value=1e12) | st.just(float("nan"))


@given(cats=st.lists(_labels, min_size=1, max_size=8), data=st.data(), stacked=st.booleans())
def test_render_html_escapes_and_never_fails(cats, data, stacked):
    vals = data.draw(st.lists(_values, min_size=len(cats), max_size=len(cats)))
    chart = plots.BarChart("c", "<t>", cats, {"a<b": vals, "n": [1.0] * len(cats)}, stacked=stacked)
    out = plots.render_html(chart)
    assert "<t>" not in out and "a<b" not in out
    for c in cats:
        # every label is on the page escaped; a raw '<' of a label never opens a tag (a label such
        # as '<' alone is a substring of any markup, so "not in out" cannot be the test)
        assert html.escape(c, quote=True) in out
    # and no '<' of a label reaches the page: the same chart with harmless labels has as many
    safe = plots.BarChart("c", "t", [f"c{i}" for i in range(len(cats))], {"ab": vals, "n": [1.0] * len(cats)},
                          stacked=stacked)
    assert out.count("<") == plots.render_html(safe).count("<")
    for w in (float(x) for x in re.findall(r"width:([^%;\"]+)%", out)):
        assert 0 <= w <= 100.0 + 1e-9 and not math.isnan(w)


@given(n=st.integers(1, 6), data=st.data())
def test_render_html_heatmap(n, data):
    m = data.draw(st.lists(st.lists(st.floats(0, 1) | st.just(float("nan")), min_size=n, max_size=n),
                           min_size=n, max_size=n))
    out = plots.render_html(plots.HeatMap("h", "t", [f"<{i}>" for i in range(n)], m))
    assert out.count("<tr>") == n + 1
    assert "<0>" not in out


def test_panoptic_chart_numbers_equal_the_summary(runs):
    run = json.loads((runs["panoptic"] / "run.json").read_text())
    per = run["summary"]["panoptic"]["per_class"]
    (chart,) = plots.charts_for_run(runs["panoptic"])
    assert len(chart.categories) == len(per) > 0
    for label, pq_, sq, rq in zip(chart.categories, chart.series["PQ"], chart.series["SQ"], chart.series["RQ"]):
        c = per[label.split()[0]]
        assert (pq_, sq, rq) == pytest.approx((100 * c["pq"], 100 * c["sq"], 100 * c["rq"]))
    assert all(v == pytest.approx(100) for v in chart.series["PQ"])  # the sample against itself


def test_legend_stays_clear_of_the_bars():
    """A two-series bar chart: the legend box lies outside every axes box (it covers no bar)."""
    pytest.importorskip("matplotlib")
    classes = [{"class_id": i, "pixels": 1000 - 30 * i, "images": 20 - i // 2} for i in range(1, 25)]
    charts = [plots._frequency_chart(classes, {}),
              plots.BarChart("f", "findings", ["a", "b", "c"], {"error": [5.0, 1.0, 9.0], "warning": [2.0, 7.0, 1.0]},
                             stacked=True),
              plots.BarChart("s", "scores", ["a", "b"], {"IoU": [90.0, 80.0], "Dice": [95.0, 88.0]},
                             limits=(0, 100), percent=True)]
    for chart in charts:
        fig = plots._draw_bars(chart)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        legends = [lg for ax in fig.axes if (lg := ax.get_legend()) is not None]
        if chart.name == "class_frequency":
            assert not legends  # two units: one panel per series, titled by its axis label
            continue
        assert legends, chart.name
        lb = legends[0].get_window_extent(r)
        for ax in fig.axes:
            assert not lb.overlaps(ax.get_window_extent(r)), chart.name
        assert lb.x1 <= fig.bbox.x1 + 1  # and inside the picture
