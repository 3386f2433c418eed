"""The sample dataset of ``fastmask demo``: one planted example of every validate rule, among clean masks.

:func:`make_sample` writes, from a seed, six small datasets under ``root``:

- ``voc/`` -- a Pascal VOC / CVAT "Segmentation Mask" folder (``ImageSets/Segmentation/train.txt``,
  ``SegmentationClass/`` P-mode PNGs with the VOC palette, ``SegmentationObject/``,
  ``JPEGImages/``, a CVAT ``labelmap.txt``): 128x96 street scenes (background, road,
  cars and people with VOC's 255 borders, trees). ``clean_*`` items are clean (two of
  them are CVAT-style RGB class masks, which are legitimate in this layout);
  each ``planted_<rule>`` item carries exactly one defect. Class ``boat`` is never
  drawn (``class_never_seen``). ``coverage_outlier`` needs a class present in at
  least ``coverage_min_images`` (20) images, hence 21 clean items.
- ``coco/annotations.json`` + ``coco/images/`` -- COCO instances: clean images and
  one image per annotation defect, plus an orphan annotation (``unknown_image``)
  and a reused annotation id (``duplicate_id``).
- ``panoptic/panoptic_sample.json`` + ``panoptic/panoptic_sample/`` -- COCO panoptic:
  a clean image and one whose ``segments_info`` area disagrees with the PNG.
- ``masks/`` -- two clean class masks and no label map (``no_labelmap``), and under
  ``archive/`` a chain of folders whose path (4,300+ bytes) is too long to list
  (``unlisted_path``; made with ``dir_fd``-relative calls, removable by ``shutil.rmtree``;
  left out where the system has no ``dir_fd``, i.e. Windows).
- ``zip/masks.zip`` -- a ``class_names.txt`` and three clean masks, one of them held by two
  entries (an appended fix: ``duplicate_entry``; one item, the last entry read).
- ``urls/masks.csv`` -- a URL list (layout ``urls``) of two clean masks beside it, with a
  ``class_names.txt``, and a row without an ``item_id`` (``bad_url_list``: no item).

The VOC folder also holds ``planted_animated_mask``, a class mask saved as a 2-frame APNG
(``animated_mask``: the first frame is checked, and is clean).

:attr:`SampleInfo.expected` lists every planted finding as ``(layout_key, item_id,
rule)`` (``item_id`` None for dataset-level findings; COCO item ids are the
manifest's 12-digit ids), so "every planted defect found and nothing else" is a
set comparison. Expectations assume the default :class:`RuleConfig` and that VOC
class masks may be colour-coded (``unexpected_channels`` with ``expected="color"``
for the ``voc`` layout: only a non-opaque alpha is reported there).

>>> import tempfile
>>> info = make_sample(tempfile.mkdtemp())
>>> ("voc", "planted_tiny_island", "tiny_island") in info.expected, info.voc.name
(True, 'voc')
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fastmask import rle as _rle
from fastmask.formats import voc_colormap, write_mask

__all__ = ["SampleInfo", "make_sample", "CLASSES", "N_CLEAN", "PLANTED", "LAYOUT_KEYS", "ZIP_CLASSES"]

H, W = 96, 128
BG, ROAD, CAR, PERSON, TREE, BOAT = range(6)
IGNORE = 255
#: VOC label map of the sample (ids 0..5 in VOC colours, plus 255 "ignored")
CLASSES = ("background", "road", "car", "person", "tree", "boat")
#: clean VOC items: coverage_outlier judges classes present in >= 20 images
N_CLEAN = 21

#: the sample's datasets: VOC folder, COCO JSON, panoptic JSON, a mask folder without a label map,
#: a zip of masks with a class list, a URL list
LAYOUT_KEYS = ("voc", "coco", "panoptic", "masks", "zip", "urls")

#: rule -> (layout key, item id or None, what was planted)
PLANTED: dict[str, tuple[str, str | None, str]] = {
    "unreadable": ("voc", "planted_unreadable", "class PNG whose last 40 bytes are missing (truncated)"),
    "lossy_format": ("voc", "planted_lossy_format", "class mask saved as JPEG (SegmentationClass/*.jpg)"),
    "missing_image": ("voc", "planted_missing_image", "masks without JPEGImages/<id>.jpg"),
    "missing_mask": ("voc", "planted_missing_mask", "listed in train.txt, image present, no mask"),
    "size_mismatch": ("voc", "planted_size_mismatch", "masks 127x96 for a 128x96 image"),
    "unexpected_channels": ("voc", "planted_unexpected_channels", "RGBA mask, background transparent"),
    "unexpected_value": ("voc", "planted_unexpected_value", "a 10x8 block of value 77 on the road"),
    "unknown_color": ("voc", "planted_unknown_color", "RGB mask with an orange block not in labelmap.txt"),
    "palette_mismatch": ("voc", "planted_palette_mismatch", "P mask whose palette swaps road and car colours"),
    "antialias_suspect": ("voc", "planted_antialias_suspect",
                          "bilinear-resize edge: a ring of 2 (car) between background 0 and tree 4"),
    "empty_mask": ("voc", "planted_empty_mask", "only background"),
    "tiny_island": ("voc", "planted_tiny_island", "a 3x3 speck of car in the sky"),
    "disconnected_instance": ("voc", "planted_disconnected_instance", "both cars carry instance id 1"),
    "instance_class_conflict": ("voc", "planted_instance_class_conflict",
                                "instance 1 painted 2 rows below its car, onto the road"),
    "coverage_outlier": ("voc", "planted_coverage_outlier", "a close-up car covering ~85% of the image"),
    "class_never_seen": ("voc", None, "class 5 'boat' is never drawn"),
    "invalid_polygon": ("coco", "000000000004", "a polygon with 2 points"),
    "polygon_out_of_bounds": ("coco", "000000000005", "a polygon reaching x=140 on a 128 px wide image"),
    "invalid_rle": ("coco", "000000000006", "RLE with size [128, 96] (h, w swapped)"),
    "unknown_category": ("coco", "000000000007", "category_id 7, not among the categories"),
    "empty_segmentation": ("coco", "000000000008", "empty polygon list"),
    "bbox_mismatch": ("coco", "000000000009", "bbox shifted 10 px right"),
    "image_size_mismatch": ("coco", "000000000010", "record 128x96, file 96x128 (rotated)"),
    "duplicate_annotation": ("coco", "000000000011", "one car annotated as car and as truck (IoU > 0.7)"),
    "instance_overlap": ("coco", "000000000012", "a person inside a car's mask (containment, low IoU)"),
    "unknown_image": ("coco", None, "annotation with image_id 99 (no such image)"),
    "duplicate_id": ("coco", None, "two annotations share an id"),
    "segment_mismatch": ("panoptic", "000000000002", "segments_info area 5 px off the PNG's"),
    "no_labelmap": ("masks", None, "a folder of clean masks without a label map"),
    "missing_segmentation": ("coco", "000000000013", "a car with a bbox but no segmentation (detection only)"),
    "bad_iscrowd": ("coco", "000000000014", 'a car with iscrowd "yes"'),
    "duplicate_record": ("panoptic", "000000000003", "two annotation records for one image"),
    "bad_top_level": ("panoptic", None, '"info" is a string, not an object'),
    "animated_mask": ("voc", "planted_animated_mask", "class mask saved as a 2-frame APNG (a video export)"),
    "duplicate_entry": ("zip", None, "mask_1.png twice in masks.zip (an appended fix): the last is read"),
    "unlisted_path": ("masks", None, "a folder chain of 4,300+ bytes: too long a path to list"),
    "bad_url_list": ("urls", None, "a row of masks.csv without an item_id: no item"),
}

# photo colours of the classes (JPEGImages / COCO images)
_PHOTO = np.array([[135, 185, 235], [95, 95, 100], [200, 40, 40], [235, 195, 150], [40, 130, 50],
                   [60, 60, 200]], np.int16)


@dataclass
class SampleInfo:
    """Where :func:`make_sample` wrote the sample and what a validator must find in it.

    ``voc`` is the VOC folder, ``coco`` and ``panoptic`` the JSON files, ``masks`` a plain
    mask folder without a label map, ``zip`` a zip of masks with a class list (pass them to
    ``open_dataset`` / ``fastmask validate``).
    ``expected``: sorted ``(layout_key, item_id, rule)`` triples, ``layout_key`` in
    :data:`LAYOUT_KEYS`; ``clean``: layout key -> item ids that must give no finding.
    """

    root: Path
    voc: Path
    coco: Path
    panoptic: Path | None
    seed: int
    expected: list[tuple[str, str | None, str]] = field(default_factory=list)
    clean: dict[str, list[str]] = field(default_factory=dict)
    masks: Path | None = None
    zip: Path | None = None
    urls: Path | None = None

    def path(self, layout_key: str) -> Path:
        """The dataset path of a layout key (one of :data:`LAYOUT_KEYS`)."""
        p = {"voc": self.voc, "coco": self.coco, "panoptic": self.panoptic, "masks": self.masks,
             "zip": self.zip, "urls": self.urls}[layout_key]
        if p is None:
            raise KeyError(layout_key)
        return p

    @property
    def rules(self) -> set[str]:
        """The rule codes planted."""
        return {r for _, _, r in self.expected}

    def planted(self, layout_key: str) -> dict[str | None, set[str]]:
        """item id (None: dataset level) -> rules expected, for one layout."""
        out: dict[str | None, set[str]] = {}
        for k, item, rule in self.expected:
            if k == layout_key:
                out.setdefault(item, set()).add(rule)
        return out


# ----------------------------------------------------------------------------- small helpers


def _rng(seed: int, name: str) -> np.random.Generator:
    # one stream per item: an item does not change when another one does
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _photo(paint: np.ndarray, rng: np.random.Generator) -> bytes:
    """A JPEG "photo" of a class map: class colours, a sky gradient and a little noise."""
    rgb = _PHOTO[np.minimum(paint, len(_PHOTO) - 1)]
    sky = np.arange(paint.shape[0], dtype=np.int16)[:, None] // 3 * (paint == BG)
    rgb = rgb - sky[..., None]
    rgb += rng.integers(-6, 7, size=rgb.shape, dtype=np.int16)
    return _jpeg(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB"))


def _free(occ: np.ndarray, x0: int, y0: int, w: int, h: int, margin: int) -> bool:
    ys, xs = max(0, y0 - margin), max(0, x0 - margin)
    return not occ[ys:y0 + h + margin, xs:x0 + w + margin].any()


def _place(rng, occ, w, h, ys, xs, margin=3) -> tuple[int, int]:
    """(x0, y0) of a free w x h rectangle with y0 in [ys[0], ys[1]-h], x0 in [xs[0], xs[1]-w]; marks it."""
    for _ in range(500):
        x0 = int(rng.integers(xs[0], xs[1] - w + 1))
        y0 = int(rng.integers(ys[0], ys[1] - h + 1))
        if _free(occ, x0, y0, w, h, margin):
            occ[y0:y0 + h, x0:x0 + w] = True
            return x0, y0
    raise RuntimeError(f"sample: no room for a {w}x{h} rectangle")  # pragma: no cover - sizes leave room


def _ring(shape, x0, y0, x1, y1) -> np.ndarray:
    """Boolean 1-px ring around the box [x0, x1) x [y0, y1), clipped to the image."""
    m = np.zeros(shape, bool)
    m[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = True
    m[y0:y1, x0:x1] = False
    return m


@dataclass
class _Scene:
    """A street scene: class ids, instance ids, what the photo shows, free space, object boxes."""

    cls: np.ndarray
    obj: np.ndarray
    paint: np.ndarray
    occ: np.ndarray
    horizon: int
    cars: list = field(default_factory=list)  # (x0, y0, x1, y1)
    trees: list = field(default_factory=list)


def _scene(rng, *, person: bool | None = None, tree: bool | None = None, borders: bool = True,
           big_tree: bool = False) -> _Scene:
    """Background above a horizon, road below, two cars (+ maybe a person) with 255 borders, maybe a tree."""
    cls = np.zeros((H, W), np.uint8)
    obj = np.zeros((H, W), np.uint8)
    occ = np.zeros((H, W), bool)
    horizon = int(rng.integers(46, 57))
    cls[horizon:] = ROAD
    s = _Scene(cls, obj, cls, occ, horizon)
    if tree is None:
        tree = bool(rng.random() < 0.5)
    if person is None:
        person = bool(rng.random() < 0.5)
    if tree:
        tw, th = (int(rng.integers(18, 23)), int(rng.integers(18, 23))) if big_tree else \
            (int(rng.integers(8, 13)), int(rng.integers(14, 21)))
        x0, y0 = _place(rng, occ, tw, th, (3, horizon - 3), (3, W - 3))
        cls[y0:y0 + th, x0:x0 + tw] = TREE
        s.trees.append((x0, y0, x0 + tw, y0 + th))
    boxes = []
    for _ in range(2):
        cw, ch = int(rng.integers(12, 17)), int(rng.integers(8, 11))
        x0, y0 = _place(rng, occ, cw, ch, (horizon + 3, H - 3), (3, W - 3))
        boxes.append((CAR, x0, y0, x0 + cw, y0 + ch))
        s.cars.append((x0, y0, x0 + cw, y0 + ch))
    if person:
        ph = int(rng.integers(12, 15))
        x0, y0 = _place(rng, occ, 5, ph, (horizon - 5, H - 3), (3, W - 3))
        boxes.append((PERSON, x0, y0, x0 + 5, y0 + ph))
    for k, (c, x0, y0, x1, y1) in enumerate(boxes, 1):
        cls[y0:y1, x0:x1] = c
        obj[y0:y1, x0:x1] = k
    s.paint = cls.copy()
    if borders:
        for _, x0, y0, x1, y1 in boxes:
            r = _ring(cls.shape, x0, y0, x1, y1)
            cls[r] = IGNORE
            obj[r] = IGNORE
    return s


# ----------------------------------------------------------------------------- VOC


def _voc_item(voc: Path, name: str, cls: np.ndarray | None, obj: np.ndarray | None, photo: bytes | None, *,
              cls_bytes: bytes | None = None, cls_ext: str = ".png", palette="voc") -> None:
    if cls_bytes is not None:
        _write_bytes(voc / "SegmentationClass" / (name + cls_ext), cls_bytes)
    elif cls is not None:
        write_mask(voc / "SegmentationClass" / (name + ".png"), cls, palette=palette)
    if obj is not None:
        write_mask(voc / "SegmentationObject" / (name + ".png"), obj, palette="voc")
    if photo is not None:
        _write_bytes(voc / "JPEGImages" / (name + ".jpg"), photo)


def _make_voc(voc: Path, seed: int) -> tuple[list[str], list[str]]:
    """Write the VOC folder; returns (clean ids, all ids)."""
    for d in ("ImageSets/Segmentation", "SegmentationClass", "SegmentationObject", "JPEGImages"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    cmap = voc_colormap(256)
    lines = ["# label:color_rgb:parts:actions"]
    for i, n in enumerate(CLASSES):
        lines.append(f"{n}:{','.join(str(int(v)) for v in cmap[i])}::")
    lines.append("ignored:224,224,192::")
    (voc / "labelmap.txt").write_text("\n".join(lines) + "\n")

    clean = [f"clean_{k:03d}" for k in range(N_CLEAN)]
    for k, name in enumerate(clean):
        rng = _rng(seed, name)
        s = _scene(rng)
        if k in (3, 11):  # CVAT exports colour-coded class masks: legitimate here
            cls_bytes = _png(Image.fromarray(cmap[s.cls], "RGB"))
            _voc_item(voc, name, None, s.obj, _photo(s.paint, rng), cls_bytes=cls_bytes)
        else:
            _voc_item(voc, name, s.cls, s.obj, _photo(s.paint, rng))

    ids = list(clean)

    def planted(rule: str) -> tuple[str, np.random.Generator]:
        name = f"planted_{rule}"
        ids.append(name)
        return name, _rng(seed, name)

    # unreadable: a PNG cut in half
    name, rng = planted("unreadable")
    s = _scene(rng, person=False, tree=False)
    buf = io.BytesIO()
    img = Image.frombytes("P", (W, H), s.cls.tobytes())
    img.putpalette(cmap.reshape(-1).tolist())
    img.save(buf, format="PNG")
    data = buf.getvalue()  # an interrupted copy: the pixel data ends early, IEND is missing
    _voc_item(voc, name, None, s.obj, _photo(s.paint, rng), cls_bytes=data[:len(data) - 40])

    # lossy_format: a grey JPEG whose 8x8 blocks are constant, so it decodes to the very same ids
    name, rng = planted("lossy_format")
    cls = np.zeros((H, W), np.uint8)
    obj = np.zeros((H, W), np.uint8)
    horizon = 8 * int(rng.integers(6, 8))
    cls[horizon:] = ROAD
    for k, (lo, hi) in enumerate(((1, 5), (9, 13)), 1):
        x0, y0 = 8 * int(rng.integers(lo, hi)), horizon + 8 * int(rng.integers(1, (H - horizon) // 8 - 1))
        cls[y0:y0 + 8, x0:x0 + 16] = CAR
        obj[y0:y0 + 8, x0:x0 + 16] = k
    jpg = _jpeg(Image.fromarray(cls, "L"), quality=100)
    if not np.array_equal(np.asarray(Image.open(io.BytesIO(jpg))), cls):  # pragma: no cover - libjpeg invariant
        raise RuntimeError("sample: the block-aligned JPEG mask does not decode exactly")
    _voc_item(voc, name, None, obj, _photo(cls, rng), cls_bytes=jpg, cls_ext=".jpg")

    # missing_image: masks, no JPEG
    name, rng = planted("missing_image")
    s = _scene(rng, person=False, tree=False)
    _voc_item(voc, name, s.cls, s.obj, None)

    # missing_mask: in train.txt, JPEG present, no mask
    name, rng = planted("missing_mask")
    s = _scene(rng, person=False, tree=False)
    _voc_item(voc, name, None, None, _photo(s.paint, rng))

    # size_mismatch: both masks one column narrower than the image
    name, rng = planted("size_mismatch")
    s = _scene(rng, person=False, tree=False)
    _voc_item(voc, name, np.ascontiguousarray(s.cls[:, :W - 1]), np.ascontiguousarray(s.obj[:, :W - 1]),
              _photo(s.paint, rng))

    # unexpected_channels: RGBA from a paint tool, background transparent
    name, rng = planted("unexpected_channels")
    s = _scene(rng, person=False, tree=False)
    rgba = np.dstack([cmap[s.cls], np.where(s.cls == BG, 0, 255).astype(np.uint8)])
    _voc_item(voc, name, None, s.obj, _photo(s.paint, rng), cls_bytes=_png(Image.fromarray(rgba, "RGBA")))

    # unexpected_value: a block of 77 inside the road
    name, rng = planted("unexpected_value")
    s = _scene(rng, person=False, tree=False)
    x0, y0 = _place(rng, s.occ, 10, 8, (s.horizon + 2, H - 2), (2, W - 2))
    s.cls[y0:y0 + 8, x0:x0 + 10] = 77
    _voc_item(voc, name, s.cls, s.obj, _photo(s.paint, rng))

    # unknown_color: CVAT RGB mask with a colour that labelmap.txt does not list
    name, rng = planted("unknown_color")
    s = _scene(rng, person=False, tree=False)
    rgb = cmap[s.cls].copy()
    x0, y0 = _place(rng, s.occ, 16, 8, (s.horizon + 2, H - 2), (2, W - 2))
    rgb[y0:y0 + 8, x0:x0 + 16] = (255, 128, 0)
    _voc_item(voc, name, None, s.obj, _photo(s.paint, rng), cls_bytes=_png(Image.fromarray(rgb, "RGB")))

    # palette_mismatch: indices are right, the palette shows road and car swapped
    name, rng = planted("palette_mismatch")
    s = _scene(rng, person=False, tree=False)
    pal = cmap.copy()
    pal[[ROAD, CAR]] = pal[[CAR, ROAD]]
    _voc_item(voc, name, s.cls, s.obj, _photo(s.paint, rng), palette=pal)

    # antialias_suspect: a bilinear resize turns the 0|4 edge around a tree into 2 (= car)
    name, rng = planted("antialias_suspect")
    s = _scene(rng, person=False, tree=True, borders=False, big_tree=True)
    x0, y0, x1, y1 = s.trees[0]
    s.cls[_ring(s.cls.shape, x0, y0, x1, y1)] = CAR
    _voc_item(voc, name, s.cls, s.obj, _photo(s.paint, rng))

    # empty_mask: only background
    name, rng = planted("empty_mask")
    z = np.zeros((H, W), np.uint8)
    _voc_item(voc, name, z, z, _photo(z, rng))

    # tiny_island: a 3x3 speck of car far from everything
    name, rng = planted("tiny_island")
    s = _scene(rng, person=False, tree=False)
    x0, y0 = _place(rng, s.occ, 3, 3, (3, s.horizon - 4), (3, W - 3), margin=5)
    s.cls[y0:y0 + 3, x0:x0 + 3] = CAR
    _voc_item(voc, name, s.cls, s.obj, _photo(s.paint, rng))

    # disconnected_instance: both cars carry instance id 1
    name, rng = planted("disconnected_instance")
    s = _scene(rng, person=False, tree=False)
    s.obj[s.obj == 2] = 1
    _voc_item(voc, name, s.cls, s.obj, _photo(s.paint, rng))

    # instance_class_conflict: instance 1 painted two rows below its car (border row + road)
    name, rng = planted("instance_class_conflict")
    s = _scene(rng, person=False, tree=False)
    x0, y0, x1, y1 = s.cars[0]
    s.obj[y1:y1 + 2, x0:x1] = 1
    _voc_item(voc, name, s.cls, s.obj, _photo(s.paint, rng))

    # coverage_outlier: a close-up car (cars cover ~2 % of the other images)
    name, rng = planted("coverage_outlier")
    cls = np.zeros((H, W), np.uint8)
    obj = np.zeros((H, W), np.uint8)
    x0, y0 = int(rng.integers(3, 6)), int(rng.integers(3, 6))
    x1, y1 = W - int(rng.integers(3, 6)), H - int(rng.integers(3, 6))
    cls[y0:y1, x0:x1] = CAR
    obj[y0:y1, x0:x1] = 1
    paint = cls.copy()
    r = _ring(cls.shape, x0, y0, x1, y1)
    cls[r] = IGNORE
    obj[r] = IGNORE
    _voc_item(voc, name, cls, obj, _photo(paint, rng))

    # animated_mask: a 2-frame APNG (a video tool's export); the first frame is this image's mask
    name, rng = planted("animated_mask")
    s = _scene(rng, person=False, tree=False)
    frames = []
    for cls in (s.cls, np.roll(s.cls, 4, axis=1)):  # frame 2: the scene 4 px later
        img = Image.frombytes("P", (W, H), np.ascontiguousarray(cls).tobytes())
        img.putpalette(cmap.reshape(-1).tolist())
        frames.append(img)
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:], duration=40, loop=0)
    _voc_item(voc, name, None, s.obj, _photo(s.paint, rng), cls_bytes=buf.getvalue())

    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(i + "\n" for i in sorted(ids)))
    return clean, sorted(ids)


# ----------------------------------------------------------------------------- COCO


def _blob(cx: float, cy: float, rx: float, ry: float, rng, n: int = 10) -> list[float]:
    """A convex-ish polygon around (cx, cy), coordinates rounded to 0.1 px."""
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + float(rng.uniform(0, 0.3))
    rad = rng.uniform(0.85, 1.0, n)
    xs, ys = cx + rx * rad * np.cos(ang), cy + ry * rad * np.sin(ang)
    return [round(float(v), 1) for xy in zip(xs, ys) for v in xy]


def _extent_bbox(parts, w: int | None = None, h: int | None = None) -> list[float]:
    xs = [v for p in parts for v in p[0::2]]
    ys = [v for p in parts for v in p[1::2]]
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    if w is not None:  # clipped to the image, as tools that clip do
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _poly_area(p) -> float:
    x, y = np.asarray(p[0::2]), np.asarray(p[1::2])
    return round(float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2), 2)


def _make_coco(coco: Path, seed: int) -> list[str]:
    """Write annotations.json and images/; returns the clean item ids."""
    from fastmask.raster import polygon_mask

    (coco / "images").mkdir(parents=True, exist_ok=True)
    cats = [{"id": 1, "name": "person", "supercategory": "person"},
            {"id": 2, "name": "car", "supercategory": "vehicle"},
            {"id": 3, "name": "truck", "supercategory": "vehicle"}]
    images, anns = [], []
    next_id = [1]

    def ann(image_id, cat, seg, bbox, **kw) -> dict:
        a = {"id": next_id[0], "image_id": image_id, "category_id": cat, "segmentation": seg,
             "area": kw.pop("area", _poly_area(seg[0]) if isinstance(seg, list) and seg else 0.0),
             "bbox": bbox, "iscrowd": kw.pop("iscrowd", 0)}
        next_id[0] += 1
        anns.append(a)
        return a

    def poly_ann(image_id, cat, parts, **kw) -> dict:
        return ann(image_id, cat, parts, kw.pop("bbox", None) or _extent_bbox(parts), **kw)

    def cell(rng, k, n=3):
        """A blob inside column cell k of n (cells never overlap)."""
        cw = W / n
        rx, ry = float(rng.uniform(8, cw / 2 - 6)), float(rng.uniform(10, 30))
        cx = cw * k + cw / 2 + float(rng.uniform(-3, 3))
        cy = float(rng.uniform(ry + 4, H - ry - 4))
        return _blob(cx, cy, rx, ry, rng)

    def image(image_id) -> None:
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": W, "height": H})

    plan = {1: "clean", 2: "clean", 3: "clean", 4: "invalid_polygon", 5: "polygon_out_of_bounds",
            6: "invalid_rle", 7: "unknown_category", 8: "empty_segmentation", 9: "bbox_mismatch",
            10: "image_size_mismatch", 11: "duplicate_annotation", 12: "instance_overlap",
            13: "missing_segmentation", 14: "bad_iscrowd"}
    for image_id, what in plan.items():
        rng = _rng(seed, f"coco-{image_id}")
        image(image_id)
        first = len(anns)
        if what == "clean":
            cats_here = {1: (1, 2), 2: (2, 1, 2), 3: (3, 2)}[image_id]
            for k, c in enumerate(cats_here):
                poly_ann(image_id, c, [cell(rng, k)])
            if image_id == 3:  # a clean crowd RLE, bbox as COCO computes it
                m = np.zeros((H, W), np.uint8)
                m[H - 14:H - 4, W - 40:W - 4] = 1
                r = _rle.encode(np.asfortranarray(m))
                ann(image_id, 1, {"size": [H, W], "counts": r["counts"].decode("ascii")},
                    [float(v) for v in _rle.toBbox(r)], area=int(_rle.area(r)), iscrowd=1)
        elif what == "invalid_polygon":
            poly_ann(image_id, 2, [cell(rng, 0)])
            p = [round(float(v), 1) for v in (60 + rng.uniform(0, 5), 30, 90, 34 + rng.uniform(0, 5))]
            poly_ann(image_id, 1, [p])
        elif what == "polygon_out_of_bounds":
            poly_ann(image_id, 1, [cell(rng, 0)])
            p = _blob(126.0, 50.0, 14.0, 12.0, rng)  # reaches x ~ 140 on a 128 px image
            poly_ann(image_id, 2, [p], bbox=_extent_bbox([p], W, H))
        elif what == "invalid_rle":
            poly_ann(image_id, 2, [cell(rng, 0)])
            m = np.zeros((W, H), np.uint8)  # encoded as (height, width) = (128, 96): swapped
            m[60:90, 20:60] = 1
            r = _rle.encode(np.asfortranarray(m))
            ann(image_id, 1, {"size": [W, H], "counts": r["counts"].decode("ascii")},
                [20.0, 60.0, 40.0, 30.0], area=1200, iscrowd=1)
        elif what == "unknown_category":
            poly_ann(image_id, 1, [cell(rng, 0)])
            poly_ann(image_id, 7, [cell(rng, 2)])
        elif what == "empty_segmentation":
            poly_ann(image_id, 2, [cell(rng, 1)])
            ann(image_id, 1, [], [0.0, 0.0, 0.0, 0.0], area=0.0)
        elif what == "bbox_mismatch":
            p = cell(rng, 1)
            bb = _extent_bbox([p])
            poly_ann(image_id, 2, [p], bbox=[round(bb[0] + 10, 2)] + bb[1:])
        elif what == "image_size_mismatch":
            poly_ann(image_id, 2, [cell(rng, 0)])
            poly_ann(image_id, 3, [cell(rng, 2)])
        elif what == "duplicate_annotation":
            p = cell(rng, 1)
            poly_ann(image_id, 2, [p])
            poly_ann(image_id, 3, [[round(v + 1.0, 1) if k % 2 == 0 else v for k, v in enumerate(p)]])  # 1 px right
        elif what == "instance_overlap":
            p = cell(rng, 1)
            poly_ann(image_id, 2, [p])
            xs, ys = np.asarray(p[0::2]), np.asarray(p[1::2])
            cx, cy = float(xs.mean()), float(ys.mean())
            # the same shape at a third of the size, around its centre: inside the car
            poly_ann(image_id, 1, [[round(cx + (v - cx) / 3, 1) if k % 2 == 0 else round(cy + (v - cy) / 3, 1)
                                    for k, v in enumerate(p)]])
        elif what == "missing_segmentation":
            poly_ann(image_id, 1, [cell(rng, 0)])
            del poly_ann(image_id, 2, [cell(rng, 2)])["segmentation"]
        elif what == "bad_iscrowd":
            poly_ann(image_id, 2, [cell(rng, 1)], iscrowd="yes")
        # the photo: annotations painted over a background
        paint = np.zeros((H, W), np.uint8)
        for a in anns[first:]:
            seg = a.get("segmentation")
            if isinstance(seg, list) and seg and all(len(q) >= 6 and len(q) % 2 == 0 for q in seg):
                paint[polygon_mask(seg, H, W).astype(bool)] = {1: PERSON, 2: CAR, 3: BOAT}.get(a["category_id"], TREE)
        if what == "image_size_mismatch":
            paint = np.ascontiguousarray(paint.T)  # the file is stored rotated: 96x128
        _write_bytes(coco / "images" / f"{image_id:012d}.jpg", _photo(paint, rng))

    # dataset level: an orphan annotation, and a reused annotation id (two exports merged)
    rng = _rng(seed, "coco-orphan")
    poly_ann(99, 2, [cell(rng, 1)])
    second_image_first = next(a for a in anns if a["image_id"] == 2)
    second_image_first["id"] = next(a for a in anns if a["image_id"] == 1)["id"]

    doc = {"info": {"description": "fastmask sample: one planted defect per image", "version": "1.0"},
           "licenses": [], "images": images, "annotations": anns, "categories": cats}
    (coco / "annotations.json").write_text(json.dumps(doc, indent=1) + "\n")
    return [f"{i:012d}" for i, w in plan.items() if w == "clean"]


# ----------------------------------------------------------------------------- panoptic


def _make_panoptic(pan: Path, seed: int) -> list[str]:
    """Write panoptic_sample.json and its PNG folder; returns the clean item ids."""
    png_dir = pan / "panoptic_sample"
    png_dir.mkdir(parents=True, exist_ok=True)
    cats = [{"id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60]},
            {"id": 2, "name": "road", "supercategory": "ground", "isthing": 0, "color": [128, 64, 128]}]
    images, anns = [], []
    for image_id in (1, 2, 3):
        rng = _rng(seed, f"panoptic-{image_id}")
        ids = np.zeros((H, W), np.uint32)
        horizon = int(rng.integers(46, 57))
        segs = []
        road = 128 + 64 * 256 + 128 * 65536
        ids[horizon:] = road
        occ = np.zeros((H, W), bool)
        people = []
        for k in range(2):
            ph = int(rng.integers(14, 20))
            x0, y0 = _place(rng, occ, 6, ph, (horizon - 8, H - 3), (3, W - 3))
            sid = 220 + (20 + k) * 256 + 60 * 65536
            ids[y0:y0 + ph, x0:x0 + 6] = sid
            people.append(sid)
        for sid, cat in [(road, 2)] + [(p, 1) for p in people]:
            ys, xs = np.nonzero(ids == sid)
            segs.append({"id": int(sid), "category_id": cat, "iscrowd": 0, "area": int(xs.size),
                         "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                  int(ys.max() - ys.min() + 1)]})
        if image_id == 2:
            segs[1]["area"] += 5  # computed before a last edit of the PNG
        rgb = np.dstack([(ids >> s) & 255 for s in (0, 8, 16)]).astype(np.uint8)
        fn = f"{image_id:012d}.png"
        _write_bytes(png_dir / fn, _png(Image.fromarray(rgb, "RGB")))
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": W, "height": H})
        anns.append({"image_id": image_id, "file_name": fn, "segments_info": segs})
        if image_id == 3:  # two exports merged: the image's record twice
            anns.append({"image_id": image_id, "file_name": fn, "segments_info": segs})
    # a description where COCO has an object ("info": {"description": ...})
    doc = {"info": "fastmask sample (panoptic)", "images": images, "annotations": anns, "categories": cats}
    (pan / "panoptic_sample.json").write_text(json.dumps(doc, indent=1) + "\n")
    return ["000000000001"]


# ----------------------------------------------------------------------------- entry point


def _make_masks(folder: Path, seed: int) -> list[str]:
    """Two clean class masks (road, a car) in a folder without a label map; returns their ids."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for k in range(2):
        rng = _rng(seed, f"masks-{k}")
        m = np.zeros((H, W), np.uint8)
        m[int(rng.integers(50, 60)):] = 1
        x, y = int(rng.integers(10, 60)), int(rng.integers(30, 50))
        m[y:y + 20, x:x + 40] = 2
        write_mask(folder / f"mask_{k}.png", m)
        ids.append(f"mask_{k}")
    if _DIR_FD:
        _deep_chain(folder / "archive", _png(Image.fromarray(m, "L")))
    return ids


#: folders of the chain under ``masks/archive/``: 18 names of 240 bytes are 4,338 bytes, past
#: Linux's 4,096-byte PATH_MAX (and macOS's 1,024) wherever the sample is written
_DEEP_LEVELS, _DEEP_NAME = 18, "nested_" + "d" * 233
#: descriptor-relative mkdir/open (POSIX); without them (Windows) the chain, and so
#: ``unlisted_path``, is left out of the sample and of :attr:`SampleInfo.expected`
_DIR_FD = os.mkdir in os.supports_dir_fd and os.open in os.supports_dir_fd


def _deep_chain(top: Path, png: bytes) -> None:
    """A chain of folders too long to list by path, a mask at its bottom (``unlisted_path``).

    Every step is made relative to its parent's descriptor (``dir_fd``): the full path is
    longer than the system accepts, which is the point. ``shutil.rmtree`` removes it the
    same way (descriptor-relative), so the sample stays deletable.
    """
    top.mkdir(parents=True, exist_ok=True)
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(_DEEP_LEVELS):
            os.mkdir(_DEEP_NAME, dir_fd=fd)
            nfd = os.open(_DEEP_NAME, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        w = os.open("mask_2.png", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
        try:
            os.write(w, png)
        finally:
            os.close(w)
    finally:
        os.close(fd)


#: the zip's class list (``class_names.txt``: line index = class id)
ZIP_CLASSES = ("background", "road", "car")
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)  # fixed entry times: the same seed gives the same bytes


def _make_zip(path: Path, seed: int) -> list[str]:
    """``masks.zip``: a class list and three clean masks, ``mask_1.png`` held by two entries
    (a fixed mask appended to the archive, the way ``zip -u`` of some tools does): returns
    the clean ids (``mask_1`` is one item, read from the last entry, and clean too)."""
    import warnings
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [("class_names.txt", ("\n".join(ZIP_CLASSES) + "\n").encode())]
    ids = []
    for k in range(3):
        rng = _rng(seed, f"zip-{k}")
        m = np.zeros((H, W), np.uint8)
        m[int(rng.integers(50, 60)):] = 1
        x, y = int(rng.integers(10, 60)), int(rng.integers(30, 50))
        m[y:y + 20, x:x + 40] = 2
        if k == 1:  # the first version: the car 6 px to the left; the appended fix follows below
            entries.append((f"mask_{k}.png", _png(Image.fromarray(np.roll(m, -6, axis=1), "L"))))
        entries.append((f"mask_{k}.png", _png(Image.fromarray(m, "L"))))
        ids.append(f"mask_{k}")
    entries.append(entries.pop(3))  # the fix, appended: the archive's last entry
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name": wanted here
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), data, compress_type=zipfile.ZIP_DEFLATED)
    return ids


def _make_urls(folder: Path, seed: int) -> list[str]:
    """``masks.csv``: a URL list of two clean masks beside it (paths relative to the list; the
    same list works with ``https://`` / ``s3://`` cells) and a row without an ``item_id``."""
    (folder / "m").mkdir(parents=True, exist_ok=True)
    (folder / "class_names.txt").write_text("\n".join(ZIP_CLASSES) + "\n")
    ids = []
    for k in range(2):
        rng = _rng(seed, f"urls-{k}")
        m = np.zeros((H, W), np.uint8)
        m[int(rng.integers(50, 60)):] = 1
        x, y = int(rng.integers(10, 60)), int(rng.integers(30, 50))
        m[y:y + 20, x:x + 40] = 2
        write_mask(folder / "m" / f"mask_{k}.png", m)
        ids.append(f"mask_{k}")
    rows = [f"{i},m/{i}.png,,{W},{H}" for i in ids] + [f",m/{ids[0]}.png,,{W},{H}"]  # the id was lost
    (folder / "masks.csv").write_text("item_id,mask,image,width,height\n" + "\n".join(rows) + "\n")
    return ids


def make_sample(root: str | Path, *, seed: int = 0, overwrite: bool = False) -> SampleInfo:
    """Write the sample datasets under ``root`` (``voc/ coco/ panoptic/ masks/ zip/ urls/``); say what is planted.

    The same ``seed`` gives byte-identical files. An existing dataset folder (one of
    :data:`LAYOUT_KEYS`) under ``root`` is an error unless ``overwrite`` (then they are replaced).
    Every rule of :data:`fastmask.jobs.validate_rules.RULES` is planted once (see
    :data:`PLANTED`); clean items must give no finding with the default configuration.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    parts = [root / k for k in LAYOUT_KEYS]
    for p in parts:
        if p.exists():
            if not overwrite:
                raise FileExistsError(f"{p} exists; pass overwrite=True to replace the sample")
            shutil.rmtree(p)
    voc_clean, _ = _make_voc(root / "voc", seed)
    coco_clean = _make_coco(root / "coco", seed)
    pan_clean = _make_panoptic(root / "panoptic", seed)
    masks_clean = _make_masks(root / "masks", seed)
    zip_clean = _make_zip(root / "zip" / "masks.zip", seed)
    urls_clean = _make_urls(root / "urls", seed)
    expected = sorted(((k, item, rule) for rule, (k, item, _) in PLANTED.items()
                       if rule != "unlisted_path" or _DIR_FD),
                      key=lambda t: (t[0], t[1] or "", t[2]))
    return SampleInfo(root=root, voc=root / "voc", coco=root / "coco" / "annotations.json",
                      panoptic=root / "panoptic" / "panoptic_sample.json", seed=seed, expected=expected,
                      clean={"voc": voc_clean, "coco": coco_clean, "panoptic": pan_clean, "masks": masks_clean,
                             "zip": zip_clean, "urls": urls_clean},
                      masks=root / "masks", zip=root / "zip" / "masks.zip", urls=root / "urls" / "masks.csv")
