"""fastmask.report and `fastmask report`: page structure, self-containment, escaping, thumbnails, headless render."""
from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from test_plots import HOSTILE, shared_runs

from fastmask import report
from fastmask.cli import main
from fastmask.formats import open_dataset


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return shared_runs(tmp_path_factory)


class Page(HTMLParser):
    """Collects what the tests look at: sections, images, every URL-bearing attribute, figures, text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections, self.imgs, self.urls, self.tags = [], [], [], []
        self.figures: list[dict] = []
        self._fig_depth = 0
        self._in_caption = False
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(a.get("id"))
        for k in ("src", "href", "srcset", "action", "data", "poster", "background"):
            if k in a:
                self.urls.append(a[k])
        if tag == "img":
            self.imgs.append(a)
            if self.figures and self._fig_depth:
                self.figures[-1]["imgs"].append(a)
        if tag == "figure":
            self.figures.append({"imgs": [], "caption": "", "cls": a.get("class")})
            self._fig_depth += 1
        if tag == "figcaption":
            self._in_caption = True

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig_depth -= 1
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_caption and self.figures:
            self.figures[-1]["caption"] += data


def _check_self_contained(text: str) -> Page:
    page = Page(text)
    assert page.imgs or "<img" not in text
    for img in page.imgs:
        assert img["src"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), img["src"][:40]
        data = base64.b64decode(img["src"].split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.size[0] > 0 and im.size[1] > 0
    for url in page.urls:
        assert url.startswith(("data:", "#")), url[:60]
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    # no reference to any remote resource anywhere in the markup (CSS included)
    markup = text.replace("&quot;", '"')
    for attr_or_css in ("src=\"http", "href=\"http", "url(", "@import"):
        assert attr_or_css not in markup
    return page


@pytest.mark.parametrize("kind", ["validate", "validate_coco", "coverage", "evaluate", "panoptic", "hostile"])
def test_page_is_self_contained_and_has_its_sections(runs, kind):
    text = report.render_report(runs[kind], max_thumbnails=4)
    page = _check_self_contained(text)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "summary" in page.sections
    expected = {"validate": {"charts", "findings", "thumbnails", "classes", "errors"},
                "validate_coco": {"charts", "findings", "thumbnails"},
                "coverage": {"charts", "thumbnails", "classes", "errors"},
                "evaluate": {"charts", "thumbnails", "classes", "errors"},
                "panoptic": {"charts"},
                "hostile": {"charts", "findings", "thumbnails", "classes"}}[kind]
    assert expected <= set(page.sections), page.sections
    run = json.loads((runs[kind] / "run.json").read_text())
    joined = " ".join(page.text)
    assert f"fastmask {run['job']} report" in joined
    assert f"{run['counts']['items']:,}" in joined


def test_validate_thumbnails_worst_first(runs):
    page = Page(report.render_report(runs["validate"], max_thumbnails=5))
    assert len(page.figures) == 5
    findings = pq.read_table(runs["validate"] / "findings").to_pylist()
    errors = {f["item_id"] for f in findings if f["severity"] == "error"}
    captions = [f["caption"].split(" — ")[0] for f in page.figures]
    assert all(c in errors for c in captions), captions  # 7 items carry error findings: the first 5 are errors
    assert captions == sorted(captions)  # equal severity and count: by item id
    # readable masks get a picture; the truncated one says why not
    for fig, cid in zip(page.figures, captions):
        if cid == "planted_unreadable":
            assert not fig["imgs"]
        else:
            assert len(fig["imgs"]) == 1


@pytest.mark.parametrize("n", [0, 1, 3, 100])
def test_thumbnail_count_follows_the_option(runs, n):
    page = Page(report.render_report(runs["validate"], max_thumbnails=n, charts="none"))
    items_with_findings = {f["item_id"] for t in ("findings", "dataset_findings")
                           for f in pq.read_table(runs["validate"] / t).to_pylist() if f["item_id"] is not None}
    assert len(page.figures) == min(n, len(items_with_findings))
    assert ("thumbnails" in page.sections) == (n > 0)


def test_evaluate_thumbnails_lowest_miou_first_and_wrong_pixels_counted(runs):
    page = Page(report.render_report(runs["evaluate"], max_thumbnails=3))
    items = [r for r in pq.read_table(runs["evaluate"] / "items").to_pylist() if r["status"] == "ok"]
    items.sort(key=lambda r: (r["miou"], r["item_id"]))
    assert [f["caption"].split(" — ")[0] for f in page.figures] == [r["item_id"] for r in items[:3]]
    gt = open_dataset(runs["voc"])
    rows = {r["item_id"]: r for r in gt.manifest().to_pylist()}
    for fig, r in zip(page.figures, items):
        assert len(fig["imgs"]) == 3  # ground truth | prediction | wrong pixels
        g = gt.read_item(rows[r["item_id"]]).mask.array
        p = np.asarray(Image.open(runs["pred_dir"] / f"{r['item_id']}.png"))
        wrong = int(((g != p) & (g != 255)).sum())
        assert f"wrong pixels ({wrong:,})" in fig["imgs"][2]["alt"]
        assert fig["imgs"][0]["src"].startswith("data:image/jpeg")  # drawn over the JPEG photo


def test_coverage_thumbnails_rarest_class_first(runs):
    page = Page(report.render_report(runs["coverage"], max_thumbnails=2))
    # class 77 (planted unexpected value) is in one image only: that image comes first
    assert page.figures[0]["caption"].startswith("planted_unexpected_value")
    assert "in 1 image)" in page.figures[0]["caption"]


def test_hostile_names_are_escaped(runs):
    text = report.render_report(runs["hostile"])
    assert HOSTILE not in text and "<i>cat</i>" not in text and "<script>" not in text
    page = _check_self_contained(text)
    joined = "".join(page.text)
    assert HOSTILE in joined  # shown, as text
    assert '<i>cat</i> & "dog"' in joined
    assert "i" not in page.tags and "script" not in page.tags


def test_findings_table_is_capped_with_a_note(runs):
    n = sum(pq.read_table(runs["validate"] / t).num_rows for t in ("findings", "dataset_findings"))
    page = Page(report.render_report(runs["validate"], max_rows=3, charts="none", max_thumbnails=0))
    joined = " ".join(page.text)
    assert f"{n - 3:,} more findings not shown (all {n:,} are in findings/ and dataset_findings/)" in joined
    text = report.render_report(runs["validate"], max_rows=1000, charts="none", max_thumbnails=0)
    assert "more findings not shown" not in text


def test_html_charts_without_matplotlib(runs, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    text = report.render_report(runs["evaluate"], max_thumbnails=1)
    page = _check_self_contained(text)
    assert "matplotlib is not installed" in text
    assert text.count('class="chart"') == 3  # scores, confusion table, per-image mIoU
    assert len(page.imgs) == 3  # only the thumbnail panels are images
    with pytest.raises(ImportError, match=r"fastmask-seg\[plots\]"):
        report.render_report(runs["evaluate"], charts="png")


def test_png_charts_embedded(runs):
    page = Page(report.render_report(runs["evaluate"], max_thumbnails=0))
    charts = [i for i in page.imgs if i["src"].startswith("data:image/png")]
    assert len(charts) == 3


def test_moved_dataset_still_renders(runs, tmp_path):
    # a copy of the run whose dataset path no longer exists: thumbnails say so, nothing else changes
    run = tmp_path / "run"
    shutil.copytree(runs["hostile"], run)
    meta = json.loads((run / "run.json").read_text())
    meta["arguments"]["dataset"] = str(tmp_path / "gone")
    (run / "run.json").write_text(json.dumps(meta))
    page = Page(report.render_report(run))
    assert page.figures and all(not f["imgs"] for f in page.figures)
    assert "could not be opened" in " ".join(page.text)


def test_zipped_dataset_images_read_from_the_zip(runs, tmp_path):
    z = shutil.make_archive(str(tmp_path / "voc"), "zip", runs["voc"])
    out = tmp_path / "r"
    assert main(["validate", z, "--out", str(out), "--workers", "1", "--quiet"]) == 1
    page = Page(report.render_report(out, max_thumbnails=3))
    jpeg = [i for f in page.figures for i in f["imgs"] if i["src"].startswith("data:image/jpeg")]
    assert jpeg, "no thumbnail drawn over an image from the zip"


def test_overlay_known_pixels():
    img = np.zeros((6, 6, 3), np.uint8)
    img[...] = (10, 20, 30)
    m = np.zeros((6, 6), np.uint16)
    m[1:5, 1:5] = 1
    m[2:4, 2:4] = 2  # inner square: boundary pixels with class 1 around it
    m[0, 5] = 255  # ignore
    m[5, 0] = 9  # beyond the palette: magenta
    pal = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0]], np.uint8)
    pic = report.overlay(m, img, pal, background=0, ignore={255})
    assert pic[0, 0].tolist() == [10, 20, 30]  # background: the image untouched
    assert pic[1, 1].tolist() == [200, 0, 0]  # class boundary: opaque
    assert pic[2, 2].tolist() == [0, 200, 0]
    assert pic[0, 5].tolist() == [255, 255, 255]
    assert pic[5, 0].tolist() == [255, 0, 255]
    # an interior pixel is translucent: between image and colour
    m2 = np.zeros((9, 9), np.uint8)
    m2[1:8, 1:8] = 1
    pic2 = report.overlay(m2, np.full((9, 9, 3), 100, np.uint8), pal, background=0)
    a = report.ALPHA
    assert pic2[4, 4].tolist() == [round(100 * (1 - a) + 200 * a), round(100 * (1 - a)), round(100 * (1 - a))]


@given(h=st.integers(1, 40), w=st.integers(1, 40), th=st.integers(1, 60), tw=st.integers(1, 60),
       seed=st.integers(0, 2**31), with_image=st.booleans())
def test_overlay_property(h, w, th, tw, seed, with_image):
    rng = np.random.default_rng(seed)
    m = rng.choice(np.array([0, 1, 2, 255, 300, 65535], np.int64), size=(h, w)).astype(np.uint16)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if with_image else None
    pal = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    pic = report.overlay(m, img, pal, background=0, ignore={255}, size=(th, tw))
    assert pic.shape == (th, tw, 3) and pic.dtype == np.uint8
    small = report._sample(m, (th, tw))
    # background pixels show the (resized) image or the grey canvas unchanged
    if with_image:
        base = np.asarray(Image.fromarray(img).resize((tw, th), Image.BILINEAR))
    else:
        present = np.unique(small)
        drawn = [tuple(int(v) for v in c) for c in pal[present[present < len(pal)]]]
        canvas = report.placeholder_color(drawn)
        base = np.empty((th, tw, 3), np.uint8)
        base[...] = canvas
        # the "no image" canvas is far from every colour drawn on it (classes, white, magenta)
        for c in drawn + [(255, 255, 255), (255, 0, 255)]:
            assert np.linalg.norm(np.subtract(canvas, c, dtype=float)) >= 48, (canvas, c)
    bg = small == 0
    assert (pic[bg] == base[bg]).all()
    # ignore is white where opaque or blended; never darker than the base
    ign = small == 255
    assert (pic[ign].astype(int) >= base[ign].astype(int)).all()


def test_cli_report(runs, tmp_path, capsys):
    out = tmp_path / "x" / "page.html"
    assert main(["report", str(runs["coverage"]), "--out", str(out), "--max-thumbnails", "2"]) == 0
    assert str(out) in capsys.readouterr().out
    assert len(Page(out.read_text()).figures) == 2
    copy = tmp_path / "hostile"
    shutil.copytree(runs["hostile"], copy)
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").is_file()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no run.json" in capsys.readouterr().err
    assert main(["report", str(runs["coverage"]), "--max-thumbnails", "-1"]) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    assert main(["report", str(bad)]) == 2


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from fastmask.cli import build_parser; build_parser(); "
            "bad = [m for m in ('numba', 'pyarrow', 'matplotlib', 'fastmask.report', 'fastmask.plots') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install chromium)")
@pytest.mark.parametrize("kind", ["validate", "evaluate"])
def test_headless_chromium_renders_the_page(runs, tmp_path, kind):
    page = tmp_path / "page.html"
    report.write_report(runs[kind], page, max_thumbnails=6)
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           page.resolve().as_uri()]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish within 120 s")
    assert shot.is_file() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    with Image.open(shot) as im:
        arr = np.asarray(im.convert("RGB"))
    assert arr.shape[:2] == (2000, 1200)
    assert len(np.unique(arr.reshape(-1, 3)[::7], axis=0)) > 50  # text, charts and photos, not a blank page
    # the page background colour dominates but does not fill the screen
    assert (arr == arr[5, 5]).all(axis=2).mean() < 0.9


def test_panoptic_validate_thumbnail_and_scan_run(runs, tmp_path):
    pan = runs["voc"].parent / "panoptic" / "panoptic_sample.json"
    out = tmp_path / "pan"
    assert main(["validate", str(pan), "--out", str(out), "--workers", "1", "--quiet"]) == 1
    page = Page(report.render_report(out))
    # the item with a segment_mismatch, and the one planted with a duplicate_record
    assert len(page.figures) == 2 and any("duplicate_record" in f["caption"] for f in page.figures)
    (fig,) = [f for f in page.figures if "segment_mismatch" in f["caption"]]
    assert len(fig["imgs"]) == 1
    # a job without charts or thumbnails (scan) still gets its summary and error table
    scan = tmp_path / "scan"
    assert main(["scan", str(runs["voc"]), "--out", str(scan), "--workers", "1", "--quiet"]) == 0
    page = _check_self_contained(report.render_report(scan))
    assert "summary" in page.sections and "errors" in page.sections
    assert not page.figures and "charts" not in page.sections


def test_unfinished_run_says_so(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["coverage"], run)
    meta = json.loads((run / "run.json").read_text())
    meta["status"] = "stopped"
    meta["stop_reason"] = "worker <died>"
    (run / "run.json").write_text(json.dumps(meta))
    text = report.render_report(run, max_thumbnails=0, charts="none")
    assert "the tables hold finished shards only" in text
    assert "worker &lt;died&gt;" in text and "worker <died>" not in text


def test_bad_options():
    with pytest.raises(ValueError, match="charts"):
        report.render_report(".", charts="svg")
    with pytest.raises(ValueError, match="negative"):
        report.render_report(".", max_rows=-1)


def test_docstring_examples():
    import doctest

    from fastmask import plots

    for mod in (report, plots):
        result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted >= 2, (mod.__name__, result)


def test_real_coco_coverage_thumbnails_match_the_coverage_table(real_data, tmp_path):
    """tinycoco val (real COCO 2017 records, no images): the drawn masks cover what `coverage` measured."""
    coco = real_data / "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"
    out = tmp_path / "cov"
    assert main(["coverage", str(coco), "--out", str(out), "--plots", "--workers", "1", "--quiet"]) == 0
    assert sorted(p.stem for p in (out / "plots").glob("*.png")) == ["class_frequency", "coverage_histograms"]
    page = _check_self_contained(report.render_report(out, max_thumbnails=6, charts="none"))
    cc = pq.read_table(out / "class_coverage").to_pylist()
    items = {r["item_id"]: r for r in pq.read_table(out / "items").to_pylist()}
    assert len(page.figures) == 6
    for fig in page.figures:
        (img,) = fig["imgs"]
        item_id = img["alt"].split(":")[0]
        assert img["alt"].endswith("mask (no image)")
        pic = np.asarray(Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))).convert("RGB"))
        assert max(pic.shape[:2]) == report.THUMB_SIZE
        it = items[item_id]
        labelled = sum(r["fraction"] for r in cc if r["item_id"] == item_id) + it["ignore_pixels"] / (it["width"] * it["height"])
        # the "no image" canvas where the mask is background: the most frequent canvas candidate colour
        colors, counts = np.unique(pic.reshape(-1, 3), axis=0, return_counts=True)
        cand = {tuple(c) for c in report._CANVAS_CANDIDATES.tolist()}
        canvas = max((n, tuple(c)) for c, n in zip(colors.tolist(), counts) if tuple(c) in cand)[1]
        drawn = (pic != np.array(canvas, np.uint8)).any(axis=2).mean()
        assert drawn == pytest.approx(labelled, abs=0.01)


def test_an_item_that_breaks_the_reader_costs_only_its_picture(runs, monkeypatch):
    calls = []

    def boom(self, item_id, boxes=()):
        calls.append(item_id)
        raise RuntimeError("<boom>")

    monkeypatch.setattr(report._Reader, "picture", boom)
    page = Page(report.render_report(runs["validate"], max_thumbnails=3, charts="none"))
    assert len(page.figures) == 3 == len(calls)
    assert all(not f["imgs"] for f in page.figures)
    assert "no picture: RuntimeError: <boom>" in " ".join(page.text)


def test_image_without_mask_shows_the_image(runs):
    page = Page(report.render_report(runs["validate"], max_thumbnails=100, charts="none"))
    (fig,) = [f for f in page.figures if f["caption"].startswith("planted_missing_mask")]
    (img,) = fig["imgs"]
    assert "image only" in img["alt"] and img["src"].startswith("data:image/jpeg")


def test_no_image_canvas_never_hides_a_class():
    """VOC class 7 is (128, 128, 128): on a "no image" picture its region must still stand out."""
    from fastmask.formats import voc_colormap

    pal = voc_colormap(256)
    m = np.zeros((12, 12), np.uint8)
    m[2:10, 2:10] = 7
    pic = report.overlay(m, None, pal, background=0, ignore={255})
    canvas, edge, inside = pic[0, 0].astype(float), pic[2, 2].astype(float), pic[5, 5].astype(float)
    assert edge.tolist() == [128, 128, 128]  # the opaque boundary in the class colour
    assert np.linalg.norm(canvas - edge) >= 48
    assert np.linalg.norm(canvas - inside) >= 48 * report.ALPHA - 1  # the translucent interior too
    # whatever the label map's colours, the canvas keeps its distance from those drawn
    for colors in ([(40, 40, 40), (128, 128, 128), (200, 200, 200)], [tuple(c) for c in pal[:60]]):
        c = report.placeholder_color(colors)
        assert min(np.linalg.norm(np.subtract(c, x, dtype=float)) for x in colors) >= 24


def test_error_tiles_are_named_by_what_happened(runs):
    assert report._error_tiles({"job": "validate", "counts": {"error": 3}}) == [("unreadable", 3)]
    run = {"job": "evaluate", "counts": {"error": 6, "error_codes": {"missing_prediction": 2, "extra_prediction": 1,
                                                                      "size_mismatch": 3}}}
    assert report._error_tiles(run) == [("unreadable", 3), ("missing prediction", 2), ("extra prediction", 1)]
    # the demo evaluate run: planted items without prediction are "missing prediction", not "not readable"
    doc = json.loads((runs["evaluate"] / "run.json").read_text())
    missing = doc["counts"]["error_codes"]["missing_prediction"]
    assert missing > 0
    text = Page(report.render_report(runs["evaluate"], max_thumbnails=0)).text
    assert "not readable" not in " ".join(text)
    k = text.index("missing prediction")  # a card: the count, then its label
    assert text[k - 1] == f"{missing:,}"


def test_panoptic_page_has_the_pq_table_and_thumbnails(runs):
    doc = json.loads((runs["panoptic"] / "run.json").read_text())
    per = doc["summary"]["panoptic"]["per_class"]
    t = pq.read_table(runs["panoptic"] / "pq_classes").to_pylist()
    assert [r["class_id"] for r in t] == sorted(int(c) for c in per)  # numeric order
    for r in t:
        p = per[str(r["class_id"])]
        assert (r["pq"], r["sq"], r["rq"], r["tp"], r["fp"], r["fn"]) == (p["pq"], p["sq"], p["rq"], p["tp"], p["fp"], p["fn"])
    cats = {c["id"]: c for c in json.loads(Path(doc["arguments"]["gt"]).read_text())["categories"]}
    assert all(r["name"] == cats[r["class_id"]]["name"] and r["isthing"] == bool(cats[r["class_id"]]["isthing"])
               for r in t)
    # the semantic-only tables are not written for a panoptic run
    assert not (runs["panoptic"] / "confusion").exists() and not (runs["panoptic"] / "image_scores").exists()
    text = report.render_report(runs["panoptic"], max_thumbnails=3, max_rows=500)
    page = _check_self_contained(text)
    assert "classes" in page.sections and "thumbnails" in page.sections
    assert "Classes (panoptic quality)" in text and text.count("<tr>") >= len(t)
    n_items = doc["counts"]["ok"]
    assert len(page.figures) == min(3, n_items)
    for fig in page.figures:
        assert "PQ" in fig["caption"] and len(fig["imgs"]) == 3  # ground truth, prediction, wrong pixels
