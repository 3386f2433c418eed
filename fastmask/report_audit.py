"""The parts of ``fastmask report``'s page that are an audit run's own.

* the worst regions first: per region the ground truth, the prediction and the region
  outlined, side by side -- crops around the region (three times its box, at least 48 px)
  so a small region stays visible; the region's pixels (its class pair inside its box) in
  red over the grey ground truth, its box outlined;
* the class pairs (``classes``): regions, pixels, items, systematic rate, mean score.

Everything is drawn with Pillow and embedded as PNG ``data:`` URIs (no matplotlib).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import plots

#: the regions columns the page reads
COLUMNS = ["item_id", "region", "type", "gt_class", "gt_name", "pred_class", "pred_name", "area", "bbox_x", "bbox_y",
           "bbox_w", "bbox_h", "covered_gt", "covered_pred", "thickness", "confidence", "score"]
MIN_CROP = 48


def worst_regions(run_dir: Path, n: int) -> list[dict]:
    """The ``n`` highest-scored regions (ties: item id, then region), as row dicts."""
    t = plots.read_table(run_dir, "regions", COLUMNS)
    if t is None or t.num_rows == 0 or n <= 0:
        return []
    import pyarrow as pa
    import pyarrow.compute as pc

    t = t.set_column(0, "item_id", pc.cast(t["item_id"], pa.string()))
    t = t.filter(pc.is_valid(t["score"]))
    return t.sort_by([("score", "descending"), ("item_id", "ascending"), ("region", "ascending")]).slice(0, n).to_pylist()


def crop_box(r: dict, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the crop around a region: its box grown to three times its size
    (at least :data:`MIN_CROP` px a side), inside the image.

    >>> crop_box({"bbox_x": 10, "bbox_y": 10, "bbox_w": 4, "bbox_h": 4}, (100, 30))
    (0, 48, 0, 30)
    """
    h, w = shape
    out = []
    for start, size, limit in ((r["bbox_y"], r["bbox_h"], h), (r["bbox_x"], r["bbox_w"], w)):
        side = min(limit, max(3 * size, MIN_CROP))
        lo = max(0, min(start + size // 2 - side // 2, limit - side))
        out += [lo, lo + side]
    return out[0], out[1], out[2], out[3]


def _caption(r: dict, e) -> str:
    def cls(c, name):
        return f"{c} {name}" if name else str(c)

    conf = "" if r.get("confidence") is None else f", confidence {r['confidence']:.2f}"
    return (f"<b>{e(r['item_id'])}</b> — score {r['score']:.3f} <code>{e(r['type'])}</code> "
            f"{e(cls(r['gt_class'], r.get('gt_name')))} → {e(cls(r['pred_class'], r.get('pred_name')))}: "
            f"{r['area']:,} px, box {r['bbox_x']}, {r['bbox_y']}, {r['bbox_w']}, {r['bbox_h']}, "
            f"thickness {r['thickness']}, covers {100 * r['covered_gt']:.0f}% of the ground-truth object and "
            f"{100 * r['covered_pred']:.0f}% of the predicted blob{e(conf)}")


def _panels(reader, r: dict) -> tuple[list[tuple[str, str]], str | None]:
    from .report import _encode, _grey, _thumb_size, overlay

    row = reader.rows().get(str(r["item_id"]))
    if row is None:
        return [], reader.problem or "not in the manifest"
    if not row.get("gt_row") or not row.get("pred_row"):
        return [], "ground truth or prediction missing"
    gt, img, prob = reader.class_map("gt", json.loads(row["gt_row"]))
    if gt is None:
        return [], f"ground truth: {prob}"
    pred, _, prob = reader.class_map("pred", json.loads(row["pred_row"]))
    if pred is None or pred.shape != gt.shape:
        return [], f"prediction: {prob or 'another size'}"
    y0, y1, x0, x1 = crop_box(r, gt.shape)
    g, p = gt[y0:y1, x0:x1], pred[y0:y1, x0:x1]
    im = img[y0:y1, x0:x1] if img is not None else None
    size = _thumb_size(*g.shape)
    region = np.zeros(g.shape, np.uint8)
    by, bx = r["bbox_y"] - y0, r["bbox_x"] - x0
    box = (slice(by, by + r["bbox_h"]), slice(bx, bx + r["bbox_w"]))
    region[box] = (g[box] == r["gt_class"]) & (p[box] == r["pred_class"])
    pal = np.array([[0, 0, 0], [230, 20, 20]], np.uint8)
    base = _grey(im) if im is not None else _grey(reader.palette[np.minimum(g, reader.palette.shape[0] - 1).astype(np.int64)])
    pic = overlay(region, base, pal, background=0, ignore=set(), size=size)
    pic = _outline(pic, (bx, by, r["bbox_w"], r["bbox_h"]), (size[0] / g.shape[0], size[1] / g.shape[1]))
    return [("ground truth", reader._pic(g, im, size)), ("prediction", reader._pic(p, im, size)),
            ("region", _encode(pic, False))], None


def _outline(pic: np.ndarray, box: tuple[int, int, int, int], scale: tuple[float, float]) -> np.ndarray:
    from PIL import Image, ImageDraw

    x, y, w, h = box
    im = Image.fromarray(pic)
    x0, y0 = x * scale[1] - 1, y * scale[0] - 1
    x1, y1 = (x + w) * scale[1], (y + h) * scale[0]
    ImageDraw.Draw(im).rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline="#ffd400", width=2)
    return np.asarray(im)


def thumbnails(run: dict, run_dir: Path, n: int, images: str | None) -> str:
    """The "Worst regions" section: ground truth | prediction | region, worst first."""
    from .report import _Reader, _e

    picks = worst_regions(run_dir, n)
    if not picks:
        return ('<section id="thumbnails"><h2>Worst regions</h2><p>No region to rank: ground truth and prediction '
                "agree but for edge noise.</p></section>")
    reader = _Reader(run_dir, run, images)
    reader.load(sorted({str(r["item_id"]) for r in picks}))
    out = ['<section id="thumbnails"><h2>Worst regions</h2><p class="sub">highest score first (how likely a label '
           "error rather than a model error); crops around each region: ground truth, prediction, and the region "
           "in red with its box outlined.</p><div class=\"thumbs\">"]
    for r in picks:
        try:
            panels, problem = _panels(reader, r)
        except Exception as e:  # noqa: BLE001 - one odd item must not cost the whole page
            panels, problem = [], f"{type(e).__name__}: {e}"
        if panels:
            imgs = "".join(f'<div><img alt="{_e(r["item_id"])}: {_e(label)}" src="{uri}">{_e(label)}</div>'
                           for label, uri in panels)
        else:
            imgs = f'<div class="missing">no picture: {_e(problem)}</div>'
        out.append(f'<figure class="thumb"><div class="imgs">{imgs}</div><figcaption>{_caption(r, _e)}</figcaption></figure>')
    out.append("</div></section>")
    return "".join(out)


def classes_section(classes, max_rows: int) -> str:
    """The class pairs, most regions first."""
    from .report import _more, _num, _table

    if classes is None or classes.num_rows == 0:
        return ""
    rows = sorted(classes.to_pylist(), key=lambda r: (-r["regions"], r["gt_class"], r["pred_class"], r["type"]))

    def cls(c: Any, name: Any) -> str:
        return f"{c} {name}" if name else str(c)

    body = [[cls(r["gt_class"], r.get("gt_name")), cls(r["pred_class"], r.get("pred_name")), r["type"],
             _num(r["regions"]), _num(r["pixels"]), f"{r['items']:,} of {r['class_items']:,}",
             _num(r["systematic_rate"], 1, pct=True),
             _num(r["mean_score"], 3)] for r in rows[:max_rows]]
    head = ["ground truth", "prediction", "type", "regions", "pixels", "items (of those holding the class)",
            "systematic rate", "mean score"]
    return ('<section id="classes"><h2>Class pairs</h2>' + _table(head, body, numeric={3, 4, 5, 6, 7})
            + _more(len(body), len(rows), "class pairs", "classes/") + "</section>")


def summary_cards(s: dict, card) -> list[str]:
    """Cards of an audit run: items audited, regions by type, edge noise."""
    out = [card("ground-truth items audited", f"{s.get('scored_items', 0):,} of {s.get('ground_truth_items', 0):,}",
                "bad" if s.get("scored_items", 0) < s.get("ground_truth_items", 0) else "")]
    out.append(card("regions scored", f"{s.get('regions', 0):,}"))
    for t, n in (s.get("regions_by_type") or {}).items():
        out.append(card(t, f"{n:,}"))
    out.append(card("edge noise (not scored)", f"{s.get('edge_noise_pixels', 0):,} px"))
    return out
