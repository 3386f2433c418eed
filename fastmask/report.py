"""One self-contained HTML page for a run folder (``fastmask report RUN_DIR``).

The page needs no server and loads nothing from elsewhere: the CSS is inline, charts and
thumbnails are ``data:`` URIs, there is no script. It shows

* a summary: job, status, dataset(s), item counts and error codes, timing, arguments;
* the charts of :mod:`fastmask.plots` (PNG from matplotlib when installed, otherwise the
  same charts as plain HTML/CSS bars and a coloured table for the confusion matrix);
* the job's tables: findings (validate), classes (coverage, evaluate), the worst items
  (evaluate), unreadable items — each capped at ``max_rows`` with a note saying how many
  rows more the Parquet table holds;
* thumbnails of the worst items with the mask drawn over the image (translucent label-map
  colours, opaque class boundaries; the mask alone on grey when there is no image):
  validate — most severe / most findings first, finding boxes drawn; evaluate — lowest
  per-image mIoU first, ground truth | prediction | wrong pixels; coverage — images holding
  the rarest classes; audit — the worst regions first, ground truth | prediction | region
  (:mod:`fastmask.report_audit`). Masks and images are reread from the dataset paths in ``run.json``.

Everything that comes from data (file names, messages, class names) is HTML-escaped.

Example::

    from fastmask.report import write_report
    write_report("report/")                      # -> report/report.html
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from ._text import plural

SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
THUMB_SIZE = 240  # longest side of a thumbnail panel, pixels
ALPHA = 0.45  # opacity of the class colours inside regions (boundaries are opaque)


def _e(s: Any) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def _num(v: Any, digits: int = 1, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if pct:
        return f"{100 * v:.{digits}f}%"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# --------------------------------------------------------------------------- rereading items


def _read_image(path: str) -> np.ndarray | None:
    """RGB uint8 array of an image file (``/x.zip!a/b.jpg`` for zip members), None when unreadable."""
    from PIL import Image

    try:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
        elif ".zip!" in path:
            zpath, member = path.split("!", 1)
            with zipfile.ZipFile(zpath) as z:
                data = z.read(member)
        else:
            return None
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, Image.DecompressionBombError):
        return None


def _class_map(dataset, row: dict, item, ignore: int) -> np.ndarray | None:
    """The item's class map: mask file, rasterized COCO annotations or panoptic categories."""
    if item.annotations is not None:
        from .jobs.coverage import coco_class_map

        w, h = row.get("width"), row.get("height")
        if not w or not h:
            return None
        return coco_class_map(item.annotations, int(h), int(w), ignore)[0]
    if item.mask is not None:
        return item.mask.array
    if item.instance_mask is not None:
        ids = item.instance_mask.array
        cats = {}
        for s in item.segments or []:
            if isinstance(s, dict) and "id" in s:
                try:
                    cats[int(s["id"])] = int(s.get("category_id", 0))
                except (TypeError, ValueError):
                    continue
        uniq, inv = np.unique(ids, return_inverse=True)
        lut = np.array([cats.get(int(u), 0 if u == 0 else 65535) for u in uniq], np.int64)
        return lut[inv].reshape(ids.shape)
    return None


def _palette(run: dict):
    from .formats import LabelMap, voc_colormap

    lm_json = run.get("labelmap")
    lm = None
    if lm_json:
        try:
            lm = LabelMap.from_json(lm_json)
        except Exception:  # noqa: BLE001 - a report must render whatever the label map holds
            lm = None
    pal = lm.palette(256) if lm is not None else voc_colormap(256)
    background = lm.background if lm is not None else 0
    ignore = set(lm.ignore) if lm is not None else {255}
    return lm, pal, background, ignore


def _sample(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of a 2-D (or H, W, C) array to ``size`` = (h, w)."""
    h, w = arr.shape[:2]
    rows = np.minimum((np.arange(size[0]) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum((np.arange(size[1]) * w / size[1]).astype(np.int64), w - 1)
    return arr[rows][:, cols]


def _thumb_size(h: int, w: int) -> tuple[int, int]:
    s = THUMB_SIZE / max(h, w, 1)
    return max(1, round(h * s)), max(1, round(w * s))


#: colours the overlay draws besides the palette: ignore (white) and values beyond the palette (magenta)
_FIXED_COLORS = ((255, 255, 255), (255, 0, 255))
#: candidate "no image" canvas colours: greys first, then muted tints (a class colour never hides on it)
_CANVAS_CANDIDATES = np.array([(v, v, v) for v in range(40, 232, 8)]
                              + [(r, g, b) for r in range(24, 240, 24) for g in range(24, 240, 24)
                                 for b in range(24, 240, 24)], np.int64)


def placeholder_color(colors) -> tuple[int, int, int]:
    """The "no image" canvas colour: the candidate farthest from every colour in ``colors``.

    ``colors`` are the colours drawn on the canvas (the classes present, white, magenta);
    greys are preferred when one is at least 48 (Euclidean RGB) from all of them.

    >>> placeholder_color([(128, 128, 128)]) != (128, 128, 128)
    True
    """
    used = np.asarray(list(colors) + list(_FIXED_COLORS), np.int64).reshape(-1, 3)
    d = np.sqrt(((_CANVAS_CANDIDATES[:, None, :] - used[None, :, :]) ** 2).sum(-1)).min(axis=1)
    n_grey = len(range(40, 232, 8))
    best_grey = int(np.argmax(d[:n_grey]))
    pick = best_grey if d[best_grey] >= 48 else int(np.argmax(d))
    return tuple(int(v) for v in _CANVAS_CANDIDATES[pick])


def overlay(mask: np.ndarray, image: np.ndarray | None, palette: np.ndarray, *, background: int | None = 0,
            ignore: set[int] = frozenset({255}), size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB picture of ``mask`` drawn over ``image``: translucent class colours, opaque boundaries.

    ``palette`` is an (n, 3) colour table indexed by class id (values outside it are
    magenta); ``background`` is left clear, ``ignore`` values are drawn in white. Without
    an image the mask is drawn on a canvas of :func:`placeholder_color` (a colour far from
    every class colour present, so no class region disappears into it). ``size`` = (h, w)
    resamples first (nearest for the mask, bilinear for the image).

    >>> m = np.zeros((4, 4), np.uint8); m[1:3, 1:3] = 1
    >>> pic = overlay(m, None, np.array([[0, 0, 0], [255, 0, 0]], np.uint8))
    >>> pic.shape, pic[0, 0].tolist() == list(placeholder_color([(0, 0, 0), (255, 0, 0)])), pic[1, 1].tolist()
    ((4, 4, 3), True, [255, 0, 0])
    """
    from PIL import Image

    if size is None:
        size = mask.shape[:2]
    m = _sample(np.asarray(mask), size).astype(np.int64)
    if image is not None:
        base = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR), np.float32)
    else:
        pal_i = np.asarray(palette)
        present = np.unique(m)
        present = present[(present >= 0) & (present < len(pal_i))]
        base = np.empty(size + (3,), np.float32)
        base[...] = placeholder_color([tuple(c) for c in pal_i[present]])
    pal = np.asarray(palette, np.float32)
    inside = (m >= 0) & (m < len(pal))
    colors = np.empty(size + (3,), np.float32)
    colors[...] = (255, 0, 255)
    colors[inside] = pal[m[inside]]
    for v in ignore:
        colors[m == v] = (255, 255, 255)
    alpha = np.full(size, ALPHA, np.float32)
    edge = np.zeros(size, bool)
    dh = m[:, :-1] != m[:, 1:]
    dv = m[:-1, :] != m[1:, :]
    edge[:, :-1] |= dh
    edge[:, 1:] |= dh
    edge[:-1, :] |= dv
    edge[1:, :] |= dv
    alpha[edge] = 1.0
    if background is not None:
        alpha[m == background] = 0.0  # background stays clear, its side of a boundary too
    out = base * (1 - alpha[..., None]) + colors * alpha[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _encode(pic: np.ndarray, photo: bool) -> str:
    from PIL import Image

    buf = io.BytesIO()
    if photo:
        Image.fromarray(pic).save(buf, format="JPEG", quality=85)
        return _data_uri(buf.getvalue(), "image/jpeg")
    Image.fromarray(pic).save(buf, format="PNG", optimize=True)
    return _data_uri(buf.getvalue(), "image/png")


def _boxes(pic: np.ndarray, boxes: list[tuple[float, float, float, float, str]], scale: tuple[float, float]) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(pic)
    d = ImageDraw.Draw(im)
    for x, y, w, h, sev in boxes:
        x0, y0 = x * scale[1], y * scale[0]
        x1, y1 = (x + w) * scale[1] - 1, (y + h) * scale[0] - 1
        d.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=plots.SEVERITY_COLORS.get(sev, "#7f7f7f"), width=2)
    return np.asarray(im)


class _Reader:
    """Opens the run's dataset(s) lazily and rereads items by id from ``manifest.parquet``."""

    def __init__(self, run_dir: Path, run: dict, images: str | None):
        args = run.get("arguments") or {}
        # the dataset options the command was given (recorded by the CLI); --images here wins
        self.run_dir, self.run, self.images = run_dir, run, images or args.get("images")
        self.problem: str | None = None
        self._rows: dict | None = None
        self._ds: dict = {}
        self.lm, self.palette, self.background, self.ignore = _palette(run)
        args = run.get("arguments") or {}
        iv = args.get("ignore_value", (args.get("config") or {}).get("ignore_value", 255))
        self.ignore_value = 255 if iv is None else int(iv)

    def load(self, item_ids: list[str]) -> None:
        """Read the manifest rows of these items only (a large manifest never becomes Python rows)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        self._rows = {}
        from .engine.sink import read_table_file

        p = self.run_dir / "manifest.parquet"
        if not p.is_file():
            self.problem = "the report folder has no manifest.parquet"
            return
        t = read_table_file(p)  # local, or one request on object storage
        t = t.filter(pc.is_in(pc.cast(t["item_id"], pa.string()), value_set=pa.array(item_ids, pa.string())))
        for r in t.to_pylist():
            self._rows[str(r["item_id"])] = r

    def rows(self) -> dict:
        if self._rows is None:
            self.load([])
        return self._rows

    def dataset(self, role: str):
        if role in self._ds:
            return self._ds[role]
        from .formats import FormatError, open_dataset

        args = self.run.get("arguments") or {}
        path = args.get(role)
        ds = None
        if not path:
            self.problem = f"run.json names no {role} dataset"
        else:
            try:
                kw = {}
                if role != "pred" and self.lm is not None:
                    kw["labelmap"] = self.lm
                masks = args.get({"dataset": "masks", "gt": "gt_masks", "pred": "pred_masks"}[role])
                if masks:
                    kw["masks"] = masks
                if role == "dataset" and args.get("labelbox_label") is not None:
                    kw["label"] = args["labelbox_label"]
                ds = open_dataset(path, layout=args.get("layout") if role == "dataset" else None,
                                  images=self.images if role != "pred" else None, **kw)
                ds.manifest()  # COCO: builds/loads the columnar cache that rows point into
            except (FormatError, OSError, ValueError) as e:
                self.problem = f"the {role} dataset {path} could not be opened ({getattr(e, 'message', e)})"
            except Exception as e:  # noqa: BLE001 - the page renders whatever the dataset does
                self.problem = f"the {role} dataset {path} could not be opened ({type(e).__name__}: {e})"
                ds = None
        self._ds[role] = ds
        return ds

    def class_map(self, role: str, row: dict) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
        """(class map, image, problem) of one manifest row of the given dataset role."""
        from .formats import FormatError

        ds = self.dataset(role)
        if ds is None:
            return None, None, self.problem
        try:
            item = ds.read_item(row)
            m = _class_map(ds, row, item, self.ignore_value)
        except (FormatError, OSError, ValueError) as e:
            return None, None, f"{getattr(e, 'code', 'unreadable')}: {getattr(e, 'message', e)}"
        img = _read_image(item.image_path) if item.image_path else None
        if m is None:
            return None, img, "no mask"
        if m.ndim != 2:
            return None, img, f"mask of shape {m.shape} is not 2-D"
        if img is not None and img.shape[:2] != m.shape:
            from PIL import Image

            img = np.asarray(Image.fromarray(img).resize((m.shape[1], m.shape[0]), Image.BILINEAR))
        return m, img, None

    def picture(self, item_id: str, boxes=()) -> tuple[list[tuple[str, str]], str | None]:
        """[(caption, data URI)] panels for an item, or ([], problem)."""
        row = self.rows().get(item_id)
        if row is None:
            return [], self.problem or "not in the manifest"
        job = self.run.get("job")
        if job == "evaluate":
            if not row.get("gt_row") or not row.get("pred_row"):
                return [], "ground truth or prediction missing"
            gt, img, prob = self.class_map("gt", json.loads(row["gt_row"]))
            if gt is None:
                return [], f"ground truth: {prob}"
            pred, _, prob = self.class_map("pred", json.loads(row["pred_row"]))
            if pred is None:
                return [], f"prediction: {prob}"
            size = _thumb_size(*gt.shape)
            panels = [("ground truth", self._pic(gt, img, size)), ]
            if pred.shape == gt.shape:
                panels.append(("prediction", self._pic(pred, img, size)))
                wrong = (gt != pred) & (gt != self.ignore_value)
                err_pal = np.array([[0, 0, 0], [230, 20, 20]], np.uint8)
                pic = overlay(wrong.astype(np.uint8), _grey(img), err_pal, background=0, ignore=set(), size=size)
                panels.append((f"wrong pixels ({int(wrong.sum()):,})", _encode(pic, img is not None)))
            else:
                panels.append((f"prediction {pred.shape[1]}x{pred.shape[0]}", self._pic(pred, None, _thumb_size(*pred.shape))))
            return panels, None
        m, img, prob = self.class_map("dataset", row)
        if m is None and img is not None:  # e.g. an image without its mask: show the image
            from PIL import Image

            th, tw = _thumb_size(*img.shape[:2])
            return [(f"image only ({prob})", _encode(np.asarray(Image.fromarray(img).resize((tw, th))), True))], None
        if m is None:
            return [], prob
        size = _thumb_size(*m.shape)
        return [("mask over image" if img is not None else "mask (no image)", self._pic(m, img, size, boxes))], None

    def _pic(self, m, img, size, boxes=()) -> str:
        pic = overlay(m, img, self.palette, background=self.background, ignore=self.ignore, size=size)
        if boxes:
            pic = _boxes(pic, list(boxes), (size[0] / m.shape[0], size[1] / m.shape[1]))
        return _encode(pic, img is not None)


def _grey(img: np.ndarray | None) -> np.ndarray | None:
    if img is None:
        return None
    g = (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) * 0.7 + 40
    return np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


# --------------------------------------------------------------------------- page pieces


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:18px 24px 48px}
h1{font-size:22px;margin:6px 0 2px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-bottom:10px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
.card.bad b{color:#c62828}.card.warn b{color:#e65100}
table.data{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
table.data th,table.data td{border:1px solid #e1e4e8;padding:3px 6px;text-align:left;vertical-align:top}
table.data th{background:#f0f2f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.msg{max-width:560px;word-break:break-word}
.sev{border-radius:3px;padding:0 5px;color:#fff;font-size:12px}
.sev-error{background:#d62728}.sev-warning{background:#ff7f0e}.sev-info{background:#1f77b4}
.note{color:#666;font-style:italic;margin:6px 0}
.chart-grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.charts img{max-width:100%;background:#fff;border:1px solid #e1e4e8;border-radius:6px;display:block}
.chart{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px 12px;min-width:520px;max-width:100%}
.chart-title{font-weight:600;margin-bottom:6px}.series-name{color:#555;margin:6px 0 2px}
table.bars{border-collapse:collapse;width:100%;font-size:12px}
table.bars th{text-align:right;font-weight:normal;width:200px;padding-right:8px;white-space:nowrap}
table.bars td.track{background:#f3f4f6;height:14px;padding:0;white-space:nowrap;font-size:0;width:60%}
table.bars td.num{width:90px;text-align:right;font-variant-numeric:tabular-nums}
.seg{display:inline-block;height:14px}
.legend span{margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
table.heat{border-collapse:collapse;font-size:11px}table.heat td,table.heat th{border:1px solid #fff;padding:2px 5px;text-align:center}
table.heat td.nan{color:#aaa}
.multiples{display:flex;flex-wrap:wrap;gap:10px}.panel{width:200px}.panel-title{font-size:12px;font-weight:600}
.cols{display:flex;align-items:flex-end;height:70px;gap:2px;background:#f3f4f6}
.col{flex:1;height:100%;display:flex;align-items:flex-end}.col span{display:block;width:100%;background:#1f77b4}
.axis{font-size:10px;color:#777}
.thumbs{display:flex;flex-wrap:wrap;gap:12px}
figure.thumb{margin:0;background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px;width:min-content}
figure.thumb .imgs{display:flex;gap:6px}
figure.thumb .imgs div{font-size:11px;color:#666}
figure.thumb img{display:block;image-rendering:pixelated;border:1px solid #ddd;max-width:240px}
figcaption{font-size:12px;margin-top:4px;min-width:240px;word-break:break-word}
figcaption b{font-size:13px}.missing{background:#fafafa;border:1px dashed #bbb;padding:18px;color:#777;font-size:12px}
details pre{background:#fff;border:1px solid #e1e4e8;padding:8px;overflow:auto;font-size:12px}
footer{color:#888;font-size:12px;margin-top:32px}
"""


def _card(label: str, value: Any, cls: str = "") -> str:
    return f'<div class="card {cls}"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] = frozenset(), raw: set[int] = frozenset()) -> str:
    out = ['<table class="data">' + ("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>" if any(headers) else "")]
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            cls = ' class="n"' if i in numeric else (' class="msg"' if headers[i] == "message" else "")
            cells.append(f"<td{cls}>{v if i in raw else _e(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _more(shown: int, total: int, what: str, where: str) -> str:
    if total <= shown:
        return ""
    return f'<p class="note">{total - shown:,} more {_e(what)} not shown (all {total:,} are in {_e(where)}).</p>'


def _sev(s: Any) -> str:
    return f'<span class="sev sev-{_e(s)}">{_e(s)}</span>'


def _evaluate_facts(s: dict) -> list[list[str]]:
    """What an evaluate run did not score, by reason; extra predictions; the out-of-range policy."""
    facts = []
    examples = s.get("not_scored_examples") or {}
    for code, n in (s.get("not_scored") or {}).items():
        ids = examples.get(code) or []
        facts.append([f"not scored: {code}", f"{n:,} ({', '.join(map(str, ids))}{', ...' if n > len(ids) else ''})"])
    if s.get("extra_predictions"):
        facts.append(["predictions without ground truth", f"{s['extra_predictions']:,}"])
    if s.get("paired_by_file_name"):
        facts.append(["paired by COCO file_name", f"{s['paired_by_file_name']:,}"])
    if s.get("out_of_range"):
        facts.append(["predictions >= num_classes", f"{s.get('pred_out_of_range_pixels', 0):,} px in "
                      f"{plural(s.get('items_with_pred_out_of_range', 0), 'item')} (--out-of-range {s['out_of_range']})"])
    return facts


def _error_tiles(run: dict) -> list[tuple[str, int]]:
    """(label, count) tiles of the items not read: evaluate splits out missing and extra predictions."""
    counts = run.get("counts") or {}
    codes = counts.get("error_codes") or {}
    errors = int(counts.get("error", 0) or 0)
    if run.get("job") not in ("evaluate", "audit"):
        return [("unreadable", errors)]
    missing, extra = int(codes.get("missing_prediction", 0)), int(codes.get("extra_prediction", 0))
    tiles = [("unreadable", errors - missing - extra), ("missing prediction", missing)]
    return tiles + [("extra prediction", extra)] if extra else tiles


def _summary(run: dict) -> str:
    counts = run.get("counts") or {}
    timing = run.get("timing") or {}
    args = run.get("arguments") or {}
    out = ['<section id="summary"><h2>Summary</h2><div class="cards">']
    out.append(_card("items", f"{counts.get('items', 0):,}"))
    out.append(_card("read / evaluated", f"{counts.get('ok', 0):,}"))
    s = run.get("summary") or {}
    for label, n in _error_tiles(run):
        out.append(_card(label, f"{n:,}", "bad" if n else ""))
    if run.get("job") == "validate":
        by_sev: dict[str, int] = {}
        for k, n in (s.get("findings") or {}).items():
            sev = k.rpartition(":")[2]
            by_sev[sev] = by_sev.get(sev, 0) + int(n)
        for sev in ("error", "warning", "info"):
            out.append(_card(f"{sev} findings", f"{by_sev.get(sev, 0):,}",
                             {"error": "bad", "warning": "warn"}.get(sev, "") if by_sev.get(sev) else ""))
    scored = ""
    if run.get("job") == "evaluate" and "scored_items" in s:
        n, m = s.get("scored_items", 0), s.get("ground_truth_items", 0)
        scored = f", scored {n:,} of {m:,} ground-truth items"
        out.append(_card("ground-truth items scored", f"{n:,} of {m:,}", "bad" if n < m or not n else ""))
    if run.get("job") == "evaluate" and "miou" in s:
        out.append(_card(f"mIoU (summed{scored})", _num(s.get("miou"), pct=True)))
        out.append(_card(f"mDice (summed{scored})", _num(s.get("mdice"), pct=True)))
        out.append(_card(f"pixel accuracy{scored}", _num(s.get("pixel_accuracy"), pct=True)))
        out.append(_card(f"mean of per-image mIoU{scored}", _num(s.get("image_averaged_miou"), pct=True)))
    if run.get("job") == "evaluate" and "panoptic" in s:
        for g in ("all", "things", "stuff"):
            out.append(_card(f"PQ {g}{scored}", _num((s["panoptic"].get(g) or {}).get("pq"), pct=True)))
    if run.get("job") == "audit":
        from .report_audit import summary_cards

        out += summary_cards(s, _card)
    if timing.get("wall_seconds") is not None:
        out.append(_card("wall time", f"{timing['wall_seconds']:.2f} s"))
    if timing.get("items_per_second") is not None:
        out.append(_card("items / s", f"{timing['items_per_second']:,.0f}"))
    out.append("</div>")
    facts = [["job", run.get("job")], ["status", run.get("status") + (f" ({run['stop_reason']})" if run.get("stop_reason") else "")],
             ["fastmask version", run.get("fastmask_version")]]
    for k in ("dataset", "layout", "gt", "pred"):
        if args.get(k) is not None:
            facts.append([k, args[k]])
    if run.get("job") == "validate" and "labelmap" in s:
        facts.append(["label map", (s.get("labelmap") or {}).get("text") or "none"])
    elif (run.get("labelmap") or {}).get("source"):
        facts.append(["label map", run["labelmap"]["source"]])
    facts.append(["started / finished", f"{timing.get('started', '?')} / {timing.get('finished', '?')}"])
    ex = run.get("execution") or {}
    facts.append(["execution", (f"{ex.get('executor', '?')}, {ex.get('workers', '?')} workers, "
                               f"{run.get('shards', '?')} shards of {run.get('shard_size', '?')}")])
    if counts.get("error_codes"):
        facts.append(["not read or not scored, by code", ", ".join(f"{k}: {v}" for k, v in sorted(counts["error_codes"].items()))])
    if run.get("job") in ("evaluate", "audit"):
        facts.extend(_evaluate_facts(s))
    out.append(_table(["", ""], facts))
    out.append("<details><summary>arguments</summary><pre>" + _e(json.dumps(args, indent=2, sort_keys=True))
               + "</pre></details></section>")
    return "".join(out)


def _charts(run_dir: Path, mode: str) -> str:
    charts = plots.charts_for_run(run_dir)
    if not charts:
        return ""
    use_png = mode == "png" or (mode == "auto" and plots.matplotlib_available())
    out = ['<section id="charts" class="charts"><h2>Charts</h2>']
    if not use_png and mode == "auto":
        out.append('<p class="note">matplotlib is not installed: simple HTML charts '
                   "(<code>pip install 'fastmask-seg[plots]'</code> for the PNG charts).</p>")
    out.append('<div class="chart-grid">')
    for c in charts:
        if use_png:
            out.append(f'<div><img alt="{_e(c.title)}" src="{_data_uri(plots.render_png(c), "image/png")}"></div>')
        else:
            out.append(plots.render_html(c))
    out.append("</div></section>")
    return "".join(out)


FINDING_COLUMNS = ["item_id", "rule", "severity", "class_id", "pixels", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "message"]


def _findings_table(run_dir: Path):
    """findings + dataset_findings (display columns, ``item_id`` as string, ``_rank`` of the severity), or None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for name in ("findings", "dataset_findings"):
        t = plots.read_table(run_dir, name, FINDING_COLUMNS)
        if t is None or t.num_rows == 0:
            continue
        cols = {c: (pc.cast(t[c], pa.string()) if c == "item_id" else t[c]) if c in t.column_names
                else pa.nulls(t.num_rows, pa.string() if c in ("rule", "severity", "message") else pa.int64())
                for c in FINDING_COLUMNS}
        parts.append(pa.table(cols))
    if not parts:
        return None
    t = pa.concat_tables(parts)
    rank = pc.fill_null(pc.index_in(t["severity"], value_set=pa.array(list(SEVERITY_RANK), pa.string())), 9)
    return t.append_column("_rank", pc.cast(rank, pa.int64()))


def _findings_section(findings, max_rows: int) -> str:
    if findings is None:
        return '<section id="findings"><h2>Findings</h2><p>No findings.</p></section>'
    shown = findings.sort_by([("_rank", "ascending"), ("rule", "ascending"), ("item_id", "ascending")])
    shown = shown.slice(0, max_rows).to_pylist()
    body = []
    for r in shown:
        bbox = "" if r.get("bbox_x") is None else f"{r['bbox_x']}, {r['bbox_y']}, {r['bbox_w']}, {r['bbox_h']}"
        body.append([_e(r.get("item_id") if r.get("item_id") is not None else "(dataset)"), _sev(r.get("severity")),
                     _e(r.get("rule")), _e(r.get("class_id") if r.get("class_id") is not None else ""),
                     _e(_num(r["pixels"]) if r.get("pixels") is not None else ""), _e(bbox), _e(r.get("message"))])
    return ('<section id="findings"><h2>Findings</h2>'
            + _table(["item", "severity", "rule", "class", "pixels", "bbox (x, y, w, h)", "message"], body,
                     numeric={3, 4}, raw=set(range(7)))
            + _more(len(shown), findings.num_rows, "findings", "findings/ and dataset_findings/")
            + "</section>")


def _errors_section(items, max_rows: int) -> str:
    import pyarrow.compute as pc

    if items is None or "status" not in items.column_names:
        return ""
    bad = items.filter(pc.not_equal(items["status"], "ok"))
    if bad.num_rows == 0:
        return ""
    body = [[r["item_id"], r.get("error_code"), r.get("error_message")] for r in bad.slice(0, max_rows).to_pylist()]
    return ('<section id="errors"><h2>Items not read or not evaluated</h2>'
            + _table(["item", "error code", "message"], body) + _more(len(body), bad.num_rows, "items", "items/")
            + "</section>")


def _classes_section(run: dict, classes, max_rows: int) -> str:
    if classes is None or classes.num_rows == 0:
        return ""
    rows = classes.to_pylist()
    job = run.get("job")
    if job == "coverage":
        from .jobs.coverage import BIN_LABELS

        rows.sort(key=lambda r: -(r.get("pixels") or 0))
        body = [[r["class_id"], r.get("name") or "", _num(r.get("pixels")), _num(r.get("images")),
                 _num(r.get("dataset_fraction"), 2, pct=True), " ".join(str(v) for v in r.get("histogram") or [])]
                for r in rows[:max_rows]]
        head = ["class", "name", "pixels", "images", "share of pixels", f"images per bin ({', '.join(BIN_LABELS)})"]
        num = {0, 2, 3, 4}
    elif job == "evaluate":
        body = [[r["class_id"], r.get("name") or "", _num(r.get("iou"), pct=True), _num(r.get("dice"), pct=True),
                 _num(r.get("precision"), pct=True), _num(r.get("recall"), pct=True),
                 _num(r.get("tp")), _num(r.get("fp")), _num(r.get("fn"))] for r in rows[:max_rows]]
        head = ["class", "name", "IoU", "Dice", "precision", "recall", "TP px", "FP px", "FN px"]
        num = {0, 2, 3, 4, 5, 6, 7, 8}
    else:
        rows.sort(key=lambda r: -(r.get("pixels") or 0))
        cols = [c for c in ("pixels", "images", "components", "instances") if c in classes.column_names]
        body = [[r["class_id"], r.get("name") or ""] + [_num(r.get(c)) for c in cols] for r in rows[:max_rows]]
        head = ["class", "name"] + cols
        num = set(range(2, 2 + len(cols))) | {0}
    return ('<section id="classes"><h2>Classes</h2>' + _table(head, body, numeric=num)
            + _more(len(body), len(rows), "classes", "classes/") + "</section>")


def _worst(run: dict, run_dir: Path, findings, items, n: int) -> list[tuple[str, str, list]]:
    """[(item_id, caption HTML, boxes)] of the items to draw, worst first (Arrow compute: no full row lists)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    job = run.get("job")
    if n <= 0:
        return []
    if job == "validate":
        if findings is None:
            return []
        f = findings.filter(pc.is_valid(findings["item_id"]))
        if f.num_rows == 0:
            return []
        g = f.group_by("item_id").aggregate([("_rank", "min"), ([], "count_all")])
        g = g.sort_by([("_rank_min", "ascending"), ("count_all", "descending"), ("item_id", "ascending")]).slice(0, n)
        order = g["item_id"].to_pylist()
        per: dict[str, list[dict]] = {i: [] for i in order}
        for r in f.filter(pc.is_in(f["item_id"], value_set=g["item_id"])).to_pylist():
            per[r["item_id"]].append(r)
        out = []
        for i in order:
            fs = sorted(per[i], key=lambda r: r["_rank"])
            lines = "".join(f"<br>{_sev(f.get('severity'))} <code>{_e(f.get('rule'))}</code> {_e(f.get('message'))}"
                            for f in fs[:4])
            more = f"<br>… {len(fs) - 4} more" if len(fs) > 4 else ""
            boxes = [(f["bbox_x"], f["bbox_y"], f["bbox_w"], f["bbox_h"], f.get("severity")) for f in fs
                     if f.get("bbox_x") is not None and f.get("bbox_w") is not None][:50]
            out.append((i, f"<b>{_e(i)}</b> — {len(fs)} finding(s){lines}{more}", boxes))
        return out
    if job == "evaluate" and (run.get("summary") or {}).get("panoptic") is not None:
        return _worst_panoptic(run_dir, n)
    if job == "evaluate":
        if items is None or "miou" not in items.column_names:
            return []
        t = items.select([c for c in ("item_id", "status", "miou", "accuracy") if c in items.column_names])
        t = t.filter(pc.and_(pc.equal(t["status"], "ok"), pc.is_valid(t["miou"])))
        t = t.filter(pc.invert(pc.is_nan(t["miou"])))
        t = t.sort_by([("miou", "ascending"), ("item_id", "ascending")]).slice(0, n)
        return [(str(r["item_id"]), (f"<b>{_e(r['item_id'])}</b> — mIoU {_num(r['miou'], pct=True)}, "
                                     f"pixel accuracy {_num(r.get('accuracy'), pct=True)}"), []) for r in t.to_pylist()]
    if job == "coverage":
        cc = plots.read_table(run_dir, "class_coverage", ["item_id", "class_id", "fraction"])
        classes = plots.read_table(run_dir, "classes", ["class_id", "images"])
        if cc is None or classes is None or cc.num_rows == 0:
            return []
        cc = cc.set_column(0, "item_id", pc.cast(cc["item_id"], pa.string()))
        j = cc.join(classes, keys="class_id", join_type="left outer")
        j = j.set_column(j.column_names.index("images"), "images", pc.fill_null(j["images"], 0))
        g = j.group_by("item_id").aggregate([("images", "min")])
        g = g.sort_by([("images_min", "ascending"), ("item_id", "ascending")]).slice(0, n)
        order = g["item_id"].to_pylist()
        per: dict[str, list[dict]] = {i: [] for i in order}
        for r in j.filter(pc.is_in(j["item_id"], value_set=g["item_id"])).to_pylist():
            per[r["item_id"]].append(r)
        names = plots.class_names(run)
        out = []
        for i in order:
            rows = sorted(per[i], key=lambda r: (-r["fraction"], r["class_id"]))
            parts = ", ".join(f"{_e(plots._label(r['class_id'], names))} {_num(r['fraction'], 2, pct=True)}"
                              for r in rows[:6])
            rare = min(rows, key=lambda r: (r["images"], r["class_id"]))
            out.append((i, (f"<b>{_e(i)}</b> — rarest class {_e(plots._label(rare['class_id'], names))} "
                            f"(in {plural(rare['images'], 'image')}); {parts}"), []))
        return out
    return []


def _worst_panoptic(run_dir: Path, n: int) -> list[tuple[str, str, list]]:
    """Items by their own PQ over all categories (sum of matched IoU / (TP + FP/2 + FN/2)), lowest first."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = plots.read_table(run_dir, "pq_counts", ["item_id", "tp", "fp", "fn", "iou_sum"])
    if t is None or t.num_rows == 0:
        return []
    t = t.set_column(0, "item_id", pc.cast(t["item_id"], pa.string()))
    g = t.group_by("item_id").aggregate([("tp", "sum"), ("fp", "sum"), ("fn", "sum"), ("iou_sum", "sum")])
    den = pc.add(pc.cast(g["tp_sum"], pa.float64()), pc.multiply(pc.cast(pc.add(g["fp_sum"], g["fn_sum"]), pa.float64()), 0.5))
    g = g.append_column("pq", pc.divide(g["iou_sum_sum"], den))
    g = g.sort_by([("pq", "ascending"), ("item_id", "ascending")]).slice(0, n)
    return [(r["item_id"], (f"<b>{_e(r['item_id'])}</b> — PQ {_num(r['pq'], pct=True)} (TP {r['tp_sum']}, "
                            f"FP {r['fp_sum']}, FN {r['fn_sum']} segments)"), []) for r in g.to_pylist()]


def _pq_section(run_dir: Path, max_rows: int) -> str:
    """The panoptic per-class table (``pq_classes``): PQ / SQ / RQ and segment counts."""
    t = plots.read_table(run_dir, "pq_classes")
    if t is None or t.num_rows == 0:
        return ""
    rows = t.to_pylist()
    body = [[r["class_id"], r.get("name") or "", "thing" if r.get("isthing") else "stuff",
             _num(r.get("pq"), pct=True), _num(r.get("sq"), pct=True), _num(r.get("rq"), pct=True),
             _num(r.get("tp")), _num(r.get("fp")), _num(r.get("fn"))] for r in rows[:max_rows]]
    head = ["class", "name", "kind", "PQ", "SQ", "RQ", "TP", "FP", "FN"]
    return ('<section id="classes"><h2>Classes (panoptic quality)</h2>' + _table(head, body, numeric={0, 3, 4, 5, 6, 7, 8})
            + _more(len(body), len(rows), "classes", "pq_classes/") + "</section>")


def _thumbnails(run: dict, run_dir: Path, findings, items, n: int, images: str | None) -> str:
    picks = _worst(run, run_dir, findings, items, n)
    panoptic = (run.get("summary") or {}).get("panoptic") is not None
    what = {"validate": "most severe findings first",
            "evaluate": "lowest per-image PQ first" if panoptic else "lowest per-image mIoU first",
            "coverage": "images holding the rarest classes first"}.get(run.get("job"), "")
    if not picks:
        return ""
    reader = _Reader(run_dir, run, images)
    reader.load([p[0] for p in picks])
    out = [f'<section id="thumbnails"><h2>Worst items</h2><p class="sub">{_e(what)}; the mask in the label map\'s '
           "colours over the image (boundaries opaque)" + ("; finding boxes outlined" if run.get("job") == "validate" else "")
           + '.</p><div class="thumbs">']
    for item_id, caption, boxes in picks:
        try:
            panels, problem = reader.picture(item_id, boxes)
        except Exception as e:  # noqa: BLE001 - one odd item must not cost the whole page
            panels, problem = [], f"{type(e).__name__}: {e}"
        if panels:
            imgs = "".join(f'<div><img alt="{_e(item_id)}: {_e(label)}" src="{uri}">{_e(label)}</div>' for label, uri in panels)
        else:
            imgs = f'<div class="missing">no picture: {_e(problem)}</div>'
        out.append(f'<figure class="thumb"><div class="imgs">{imgs}</div><figcaption>{caption}</figcaption></figure>')
    out.append("</div></section>")
    return "".join(out)


def _where(run_dir) -> str:
    """The report folder as shown on the page: an absolute path, or the URL."""
    from .engine.sink import is_remote

    return str(run_dir) if is_remote(run_dir) else str(run_dir.resolve())


def render_report(run_dir: str | os.PathLike, *, max_thumbnails: int = 12, max_rows: int = 200,
                  images: str | os.PathLike | None = None, charts: str = "auto") -> str:
    """The HTML page of a run folder as a string (see :func:`write_report`).

    >>> # html = render_report("report/", max_thumbnails=6)
    """
    if charts not in ("auto", "png", "html", "none"):
        raise ValueError(f"charts must be auto, png, html or none, not {charts!r}")
    if max_thumbnails < 0 or max_rows < 0:
        raise ValueError("max_thumbnails and max_rows must not be negative")
    from .engine.sink import report_root

    run_dir = report_root(run_dir)  # a local folder, or a URL's Location
    run = plots.read_run(run_dir)
    items = plots.read_table(run_dir, "items", ["item_id", "status", "error_code", "error_message", "miou", "accuracy"])
    classes = plots.read_table(run_dir, "classes")
    job = run.get("job") or "?"
    title = f"fastmask {job} report"
    ds = (run.get("arguments") or {}).get("dataset") or (run.get("arguments") or {}).get("gt") or str(run_dir)
    parts = [(f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)} — {_e(ds)}</title>"
             f"<style>{CSS}</style></head><body><main>"),
             f"<h1>{_e(title)}</h1><div class=\"sub\">{_e(ds)} · report folder {_e(_where(run_dir))}</div>"]
    if run.get("status") != "complete":
        parts.append(f'<p class="note">run status: {_e(run.get("status"))} — the tables hold finished shards only.</p>')
    parts.append(_summary(run))
    if charts != "none":
        parts.append(_charts(run_dir, charts))
    findings_html, findings = "", None
    if job == "validate":
        findings = _findings_table(run_dir)
        findings_html = _findings_section(findings, max_rows)
    if job == "audit":  # the worst regions, then the class pairs
        from . import report_audit

        parts.append(report_audit.thumbnails(run, run_dir, max_thumbnails, None if images is None else str(images)))
        parts.append(report_audit.classes_section(classes, max_rows))
    else:
        parts.append(_thumbnails(run, run_dir, findings, items, max_thumbnails, None if images is None else str(images)))
        parts.append(findings_html)
        parts.append(_classes_section(run, classes, max_rows))
    if job == "evaluate":
        parts.append(_pq_section(run_dir, max_rows))
    parts.append(_errors_section(items, max_rows))
    parts.append(f"<footer>written by fastmask from {_e(_where(run_dir))}; tables: "
                 + _e(", ".join(f"{k} ({v.get('rows', '?')} rows)" for k, v in sorted((run.get("tables") or {}).items())))
                 + "</footer></main></body></html>")
    return "".join(parts)


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, **options: Any) -> Path:
    """Write the self-contained HTML page of a run folder; returns its path.

    ``out`` defaults to ``run_dir/report.html``. ``options``: ``max_thumbnails`` (12),
    ``max_rows`` (200, per table), ``images`` (a folder of images when the run's dataset
    paths found none), ``charts`` (``auto``: PNG with matplotlib, HTML bars without;
    ``png``, ``html``, ``none``). ``FileNotFoundError`` when ``run_dir`` has no ``run.json``.

    >>> # write_report("report/") -> PosixPath('report/report.html')
    """
    from .engine.sink import is_remote, report_root

    page = render_report(run_dir, **options)
    path = report_root(out) if out is not None else report_root(run_dir) / "report.html"
    if is_remote(path):  # object storage: one upload, visible whole or not at all
        path.write_text(page)
        return path
    from .storage import write_local_atomic
    write_local_atomic(path, page.encode("utf-8"), durable=False)  # the one local write path
    return path
