"""Data of the audit benchmark: clean masks, model predictions, planted label errors.

One dataset folder holds, per item ``ID`` (grey 8-bit PNGs, class id = pixel value, 255 =
ignore):

- ``clean/ID.png``: the clean ground truth;
- ``gt/ID.png``: the audited ground truth, a copy of ``clean`` with planted label errors;
- ``pred/ID.png`` and ``conf/ID.png``: a model's prediction made from the CLEAN truth with
  realistic model errors, and its confidence in the predicted class (0..255 -> 0..1);
- ``truth/ID.png``: which planted error changed each pixel (0 = none, k = error k of the
  item), so ``gt != clean`` exactly where ``truth > 0``;
- ``truth.json``: ``{"errors": [...], "items": [...], ...}``, one record per planted error
  (``item_id``, ``k``, ``type``, ``clean_class``, ``label_class``, ``area``, ``bbox``).

Model errors (in ``pred``, never label errors): a 1-2 px jitter of every outline, small
false-positive blobs, a systematic confusion (class ``A`` predicted as ``B`` on a large
fraction of the ``A`` objects of the whole dataset), occasional low-confidence confusions
of one object, and missed small objects. Confidence: 0.86-0.99 per pixel, capped per
object at 0.7-1.0 (some objects are harder), 0.45-0.8 along predicted outlines; the
systematic confusion is confidently wrong (0.75-0.97), missed objects 0.5-0.9, false
positives 0.4-0.85, the one-object confusions 0.35-0.65. Planted label errors (in ``gt``), on objects the
model predicts as their clean class: ``class_swap`` (an object relabelled), ``missing_label``
(an object deleted: painted with the class around it), ``spurious_label`` (a blob of a
class painted where there is none) and ``boundary_offset`` (an outline shifted or inflated
by 3-6 px).

Sources: ``generate_scenes`` (random scenes of stuff bands and thing objects of varied
sizes) and ``generate_real`` (the real COCO samples in ``../shared/data/real``: the
tinycoco instance annotations rasterized with pycocotools, and the panoptic sample's
class channel), both through the same model-error and planting code; objects are the
connected components of each thing class.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

IGNORE = 255
ERROR_TYPES = ("class_swap", "missing_label", "spurious_label", "boundary_offset")
SUBDIRS = ("clean", "gt", "pred", "conf", "truth")
_EIGHT = np.ones((3, 3), bool)


@dataclass
class Spec:
    """Class layout of a dataset and how often each model / label error happens."""

    num_classes: int
    things: tuple[int, ...]              # classes whose connected components are objects
    confused: tuple[int, int]            # the model predicts class A as class B ...
    confused_rate: float = 0.45          # ... on this fraction of A's objects
    random_confusion_rate: float = 0.04  # an object predicted as another thing, low confidence
    missed_area: int = 120               # objects smaller than this ...
    missed_rate: float = 0.35            # ... are missed at this rate
    false_positives: float = 1.5         # mean number of false-positive blobs per item
    error_item_rate: float = 0.35        # fraction of items that get planted errors (1 or 2)
    names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- writing / reading


def _save(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L").save(path, format="PNG", compress_level=1)


def load(path: str | os.PathLike) -> np.ndarray:
    """A grey PNG as a 2-D uint8 array."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def load_item(root: str | os.PathLike, item_id: str) -> dict[str, np.ndarray]:
    """The five arrays of one item: ``{"clean", "gt", "pred", "conf", "truth"}``."""
    return {d: load(Path(root) / d / f"{item_id}.png") for d in SUBDIRS}


# ---------------------------------------------------------------- scenes


def scene(rng: np.random.Generator, h: int = 240, w: int = 320, n_classes: int = 12) -> np.ndarray:
    """A street-like scene: stuff bands (0 background, 1 road, 2 sky, 3 building) under
    15-40 thing objects (classes 4..n-1: ellipses, boxes, polygons, radius 3-60 px,
    log-uniform) that occlude each other."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    xs = np.linspace(0, w, 9)
    sky = (h * rng.uniform(0.15, 0.35) + rng.normal(0, 6, xs.size)).clip(0, h)
    road = (h * rng.uniform(0.55, 0.75) + rng.normal(0, 5, xs.size)).clip(0, h)
    d.polygon([(0, 0), (w, 0)] + [(float(x), float(y)) for x, y in zip(xs[::-1], sky[::-1])], fill=2)
    d.polygon([(0, h), (w, h)] + [(float(x), float(y)) for x, y in zip(xs[::-1], road[::-1])], fill=1)
    for _ in range(int(rng.integers(1, 4))):  # buildings between sky and road
        x0 = float(rng.uniform(0, w - 40))
        bw, top = float(rng.uniform(30, 110)), float(rng.uniform(h * 0.1, h * 0.4))
        d.rectangle([x0, top, x0 + bw, float(road.mean())], fill=3)
    for _ in range(int(rng.integers(15, 41))):
        c = int(rng.integers(4, n_classes))
        r = float(np.exp(rng.uniform(np.log(3), np.log(60))))
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(h * 0.15, h))
        ar = float(rng.uniform(0.5, 2.0))
        rx, ry = r * np.sqrt(ar), r / np.sqrt(ar)
        kind = int(rng.integers(3))
        if kind == 0:
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=c)
        elif kind == 1:
            d.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=c)
        else:
            t = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 10))))
            rad = rng.uniform(0.6, 1.0, t.size)
            d.polygon([(float(cx + rx * a * np.cos(b)), float(cy + ry * a * np.sin(b))) for a, b in zip(rad, t)], fill=c)
    return np.asarray(im).copy()


# ---------------------------------------------------------------- objects


def objects(m: np.ndarray, things) -> list[tuple[int, np.ndarray]]:
    """``(class, boolean mask)`` of every 8-connected component of each thing class."""
    out = []
    for c in np.unique(m):
        if int(c) not in things:
            continue
        lab, n = ndimage.label(m == c, structure=_EIGHT)
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            obj = np.zeros(m.shape, bool)
            obj[sl] = lab[sl] == i
            out.append((int(c), obj))
    return out


def surround(m: np.ndarray, obj: np.ndarray) -> int:
    """The most common class in a 2-px ring around ``obj`` (what deleting it leaves)."""
    ring = ndimage.binary_dilation(obj, iterations=2) & ~obj
    vals = m[ring]
    vals = vals[vals != IGNORE]
    if vals.size == 0:
        return 0
    return int(np.bincount(vals).argmax())


def _blob(rng, shape, r_min: float, r_max: float) -> np.ndarray:
    h, w = shape
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(r_min, r_max), rng.uniform(r_min, r_max)
    yy, xx = np.ogrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _field(rng, shape, sigma: float = 6.0) -> np.ndarray:
    """Smooth noise in [0, 1]: which stretches of an outline move."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    lo, hi = f.min(), f.max()
    return (f - lo) / (hi - lo + 1e-12)


def _shifted(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
    h, w = m.shape
    p = np.pad(m, ((abs(dy), abs(dy)), (abs(dx), abs(dx))), mode="edge")
    return p[abs(dy) - dy: abs(dy) - dy + h, abs(dx) - dx: abs(dx) - dx + w]


# ---------------------------------------------------------------- model predictions


def predict(clean: np.ndarray, rng: np.random.Generator, spec: Spec) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """A model's prediction and confidence made from the clean truth.

    Returns ``(pred, conf, seen)``: ``seen[i]`` is True when object ``i`` of
    ``objects(clean, spec.things)`` is predicted as its own class over most of it (the
    objects planted label errors may use)."""
    h, w = clean.shape
    pred = np.where(clean == IGNORE, 0, clean).astype(np.uint8)
    conf = rng.uniform(0.86, 0.99, (h, w))
    objs = objects(clean, set(spec.things))
    for c, obj in objs:  # some objects are harder than others for the model
        conf[obj] = np.minimum(conf[obj], rng.uniform(0.7, 1.0))
    seen = []
    a, b = spec.confused
    others = [c for c in spec.things]
    for c, obj in objs:
        area = int(obj.sum())
        if c == a and rng.random() < spec.confused_rate:  # systematic: A seen as B over 80-100 %
            part = obj & (_field(rng, (h, w), 8) < rng.uniform(0.8, 1.01))
            pred[part] = b
            conf[part] = rng.uniform(0.75, 0.97)  # learnt: often confidently wrong
            seen.append(False)
        elif area < spec.missed_area and rng.random() < spec.missed_rate:  # missed small object
            pred[obj] = surround(clean, obj)
            conf[obj] = rng.uniform(0.5, 0.9)
            seen.append(False)
        elif rng.random() < spec.random_confusion_rate:  # an uncertain confusion of one object
            part = obj & (_field(rng, (h, w), 8) < rng.uniform(0.5, 1.01))
            pred[part] = int(rng.choice([o for o in others if o != c]))
            conf[part] = rng.uniform(0.35, 0.65)
            seen.append(False)
        else:
            seen.append(True)
    for _ in range(int(rng.poisson(spec.false_positives))):  # small false positives
        blob = _blob(rng, (h, w), 2, 6)
        pred[blob] = int(rng.choice(others))
        conf[blob] = rng.uniform(0.4, 0.85)
    # outline jitter: stretches of every outline move by 1-2 px, each its own way
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (0, 2), (-2, 0), (0, -2)):
        moved = _field(rng, (h, w)) > 0.62
        pred = np.where(moved, _shifted(pred, dy, dx), pred)
    edge = np.zeros((h, w), bool)
    for dy, dx in ((1, 0), (0, 1), (2, 0), (0, 2)):
        s = _shifted(pred, dy, dx)
        edge |= (s != pred) | (_shifted(pred, -dy, -dx) != pred)
    conf[edge] = np.minimum(conf[edge], rng.uniform(0.45, 0.8, int(edge.sum())))
    return pred, np.clip(np.round(conf * 255), 1, 255).astype(np.uint8), seen


# ---------------------------------------------------------------- planted label errors


def _plant_one(kind: str, gt: np.ndarray, clean: np.ndarray, pred: np.ndarray, objs, seen, rng, spec: Spec):
    """The corrupted pixels and record of one planted error of ``kind``, or None."""
    h, w = gt.shape
    eligible = [i for i, (c, o) in enumerate(objs) if seen[i]]
    if kind == "spurious_label":
        for _ in range(20):
            blob = _blob(rng, (h, w), 6, 20) & (clean != IGNORE)
            under = clean[blob]
            if blob.sum() < 60 or np.isin(under, spec.things).any():
                continue
            c = int(rng.choice(spec.things))
            if (pred[blob] == c).mean() > 0.05:
                continue
            new = gt.copy()
            new[blob] = c
            return new, {"clean_class": int(np.bincount(under).argmax()), "label_class": c}
        return None
    sizes = {"class_swap": 150, "missing_label": 80, "boundary_offset": 300}[kind]
    cand = [i for i in eligible if objs[i][1].sum() >= sizes]
    if not cand:
        return None
    i = int(rng.choice(cand))
    c, obj = objs[i]
    new = gt.copy()
    if kind == "class_swap":
        to = int(rng.choice([t for t in spec.things if t != c]))
        new[obj] = to
        return new, {"clean_class": c, "label_class": to}
    around = surround(clean, obj)
    if kind == "missing_label":
        new[obj] = around
        return new, {"clean_class": c, "label_class": around}
    # boundary_offset: the outline shifted by 3-6 px, or inflated by 3-5 px, over its surroundings
    if rng.random() < 0.5:
        d = int(rng.integers(3, 7))
        dy, dx = [(d, 0), (-d, 0), (0, d), (0, -d), (d, d), (-d, d)][int(rng.integers(6))]
        moved = _shifted(obj, dy, dx)
        new[obj] = around
        new[moved & (obj | (clean == around))] = c
    else:
        grown = ndimage.binary_dilation(obj, iterations=int(rng.integers(3, 6)))
        new[grown & (clean == around)] = c
    return new, {"clean_class": c, "label_class": c}


def plant(clean: np.ndarray, pred: np.ndarray, seen, rng, spec: Spec, kinds) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``clean`` with one planted error per entry of ``kinds`` (when a place is found).

    Returns ``(gt, truth, records)``; errors never touch each other (3-px margin), and
    ``truth`` marks exactly the pixels each one changed."""
    objs = objects(clean, set(spec.things))
    gt = clean.copy()
    truth = np.zeros(clean.shape, np.uint8)
    records = []
    for kind in kinds:
        for _ in range(8):
            got = _plant_one(kind, gt, clean, pred, objs, seen, rng, spec)
            if got is None:
                break
            new, rec = got
            changed = new != gt
            area = int(changed.sum())
            if area < 30 or (ndimage.binary_dilation(changed, iterations=3) & (truth > 0)).any():
                continue
            k = len(records) + 1
            gt = new
            truth[changed] = k
            ys, xs = np.nonzero(changed)
            x0, y0 = int(xs.min()), int(ys.min())
            records.append({"k": k, "type": kind, **rec, "area": area,
                            "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]})
            break
    return gt, truth, records


# ---------------------------------------------------------------- datasets


def _write_item(root: Path, item_id: str, clean, gt, pred, conf, truth) -> None:
    for d, a in zip(SUBDIRS, (clean, gt, pred, conf, truth)):
        _save(root / d / f"{item_id}.png", a)


def build(root: str | os.PathLike, cleans, spec: Spec, *, seed: int = 0, kinds_offset: int = 0) -> dict:
    """Predict, plant and write every ``(item_id, clean)`` of ``cleans`` under ``root``.

    Items that get errors cycle through the four types (one or two errors each)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    errors, items = [], []
    turn = kinds_offset
    for item_id, clean in cleans:
        pred, conf, seen = predict(clean, rng, spec)
        kinds = []
        if rng.random() < spec.error_item_rate:
            for _ in range(1 + int(rng.random() < 0.3)):
                kinds.append(ERROR_TYPES[turn % len(ERROR_TYPES)])
                turn += 1
        gt, truth, recs = plant(clean, pred, seen, rng, spec, kinds)
        _write_item(root, item_id, clean, gt, pred, conf, truth)
        errors += [{"item_id": item_id, **r} for r in recs]
        items.append(item_id)
    meta = {"num_classes": spec.num_classes, "things": list(spec.things), "confused": list(spec.confused),
            "items": items, "errors": errors}
    (root / "truth.json").write_text(json.dumps(meta))
    if spec.names:
        (root / "class_names.txt").write_text("".join(n + "\n" for n in spec.names))
    return meta


SCENE_SPEC = Spec(num_classes=12, things=tuple(range(4, 12)), confused=(9, 8),
                  names=["background", "road", "sky", "building", "person", "rider", "car", "bus",
                         "truck", "van", "bicycle", "sign"])


def generate_scenes(root: str | os.PathLike, n: int, *, seed: int = 0, h: int = 240, w: int = 320) -> dict:
    """``n`` generated scenes (ids ``s00000``...) with model errors and planted errors."""
    rng = np.random.default_rng(seed + 1000)
    cleans = ((f"s{i:05d}", scene(rng, h, w, SCENE_SPEC.num_classes)) for i in range(n))
    return build(root, cleans, SCENE_SPEC, seed=seed)


def _coco_class_maps(ann_file: Path):
    """``(image id, class map)`` of a COCO instances file: annotations painted largest first
    (small objects stay on top), crowd regions = ignore."""
    from pycocotools import mask as mask_utils

    data = json.loads(ann_file.read_text())
    by_image: dict[int, list] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for img in sorted(data["images"], key=lambda r: r["id"]):
        h, w = img["height"], img["width"]
        m = np.zeros((h, w), np.uint8)
        for a in sorted(by_image.get(img["id"], []), key=lambda a: -a.get("area", 0)):
            seg = a["segmentation"]
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if seg else None
            elif isinstance(seg.get("counts"), list):
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                rle = seg
            if rle is None:
                continue
            px = mask_utils.decode(rle).astype(bool)
            m[px] = IGNORE if a.get("iscrowd") else int(a["category_id"])
        yield img["id"], m


def real_class_maps(real: str | os.PathLike):
    """``(item_id, class map)`` of the real samples: tinycoco's COCO instances (train and val)
    rasterized, and the panoptic sample's category channel (0 = void = background)."""
    from PIL import Image

    real = Path(real)
    for split in ("train2017", "val2017"):
        f = real / "super-gradients/tests/data/tinycoco/annotations" / f"instances_{split}.json"
        if f.is_file():
            for image_id, m in _coco_class_maps(f):
                yield f"coco_{split[:-4]}_{image_id:012d}", m
    for p in sorted((real / "panopticapi/sample_data/panoptic_examples_2ch_format").glob("*.png")):
        with Image.open(p) as im:
            yield f"panoptic_{p.stem}", np.asarray(im.convert("RGB"))[:, :, 0].copy()


REAL_SPEC = Spec(num_classes=201, things=tuple(range(1, 91)), confused=(3, 8))  # car seen as truck


def generate_real(root: str | os.PathLike, real: str | os.PathLike, *, seed: int = 0, limit: int | None = None) -> dict:
    """The real samples with model errors and planted errors (see ``real_class_maps``)."""
    maps = real_class_maps(real)
    if limit is not None:
        maps = (x for i, x in zip(range(limit), maps))
    spec = Spec(**{**REAL_SPEC.__dict__, "error_item_rate": 0.5})
    return build(root, maps, spec, seed=seed + 7)
