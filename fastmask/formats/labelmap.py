"""Label maps: class ids to names and colours, and the loaders for the files people have.

A :class:`LabelMap` says which integer ids are classes, what they are called,
which colour each one has in an RGB mask, which ids are "ignore" (default
``{255}``) and which id is background (default ``0``). Loaders:

- our own JSON (schema below, also what ``run.json`` stores),
- CVAT / Datumaro ``labelmap.txt`` (``name:r,g,b:parts:actions``; ``#`` comments;
  the line index among label lines is the class id),
- ``class_names.txt`` / ``labels.txt`` (one name per line, line index = id),
- Datumaro ``dataset_meta.json`` (``label_map`` + ``segmentation_colors``),
- COCO ``categories`` (:meth:`LabelMap.from_coco_categories`),
- the standard VOC colormap (:func:`voc_colormap`, :meth:`LabelMap.voc`).

Our JSON schema (``"format"`` and ``"version"`` optional on input)::

    {"format": "fastmask-labelmap", "version": 1,
     "labels": [{"id": 0, "name": "background", "color": [0, 0, 0]},
                {"id": 1, "name": "cat", "color": "#800000"}],
     "ignore": [255], "background": 0}

``labels`` may also be an object ``{"0": "background", "1": "cat"}`` (no colours).
``background`` may be ``null`` (no background class). A label with ``"filler": true``
is a *filler*: a placeholder that keeps later ids in place (a ``labelmap.txt`` line
index is its id, so a gap needs a line), not a class: ``validate`` neither expects it
in the masks (``class_never_seen``) nor accepts it as a value. In ``labelmap.txt``
fillers are the lines named ``_unused_<id>`` (what fastmask writes for gaps).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import FormatError

__all__ = [
    "LabelMap",
    "voc_colormap",
    "load_labelmap",
    "VOC_CLASSES",
    "UNKNOWN_ID",
    "LABELMAP_FILENAMES",
    "FILLER_NAME",
]

#: Value written in an id array for an RGB pixel whose colour is not in the label map.
UNKNOWN_ID = 65535

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

#: File names looked for (in this order) next to a dataset when no label map is given.
LABELMAP_FILENAMES = (
    "labelmap.json", "labelmap.txt", "dataset_meta.json", "class_names.txt", "labels.txt",
)

# Names Datumaro/CVAT give to VOC's void class (colour (224,224,192), value 255).
_IGNORE_NAMES = {"ignored", "ignore", "void"}

#: Name of a placeholder line for id ``i`` in a written ``labelmap.txt`` (read back as a filler).
FILLER_NAME = "_unused_{}"
_FILLER_RE = re.compile(r"_unused_(\d+)")


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard Pascal VOC colormap: (n, 3) uint8, bits of the index interleaved.

    >>> cm = voc_colormap()
    >>> cm[0].tolist(), cm[1].tolist(), cm[255].tolist()
    ([0, 0, 0], [128, 0, 0], [224, 224, 192])
    """
    if not 0 <= n <= 256:
        raise ValueError(f"voc_colormap: n must be in 0..256, got {n}")
    idx = np.arange(n, dtype=np.uint32)
    cmap = np.zeros((n, 3), dtype=np.uint32)
    for shift in range(8):  # 8 passes over the bits, vectorised over all indices
        for c in range(3):
            bit = (idx >> np.uint32(c + 3 * shift)) & np.uint32(1)
            cmap[:, c] |= bit << np.uint32(7 - shift)
    return cmap.astype(np.uint8)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) uint32 key r<<16 | g<<8 | b."""
    rgb = np.asarray(rgb)
    return (
        (rgb[..., 0].astype(np.uint32) << 16)
        | (rgb[..., 1].astype(np.uint32) << 8)
        | rgb[..., 2].astype(np.uint32)
    )


def _color(value: Any, where: str) -> tuple[int, int, int]:
    """Parse [r,g,b], (r,g,b) or '#rrggbb' into a checked tuple."""
    if isinstance(value, str):
        m = re.fullmatch(r"#?([0-9a-fA-F]{6})", value.strip())
        if not m:
            raise FormatError("bad_labelmap", f"{where}: colour {value!r} is not '#rrggbb'")
        h = m.group(1)
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise FormatError("bad_labelmap", f"{where}: colour {value!r} is not [r, g, b]")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) <= 255:
            raise FormatError("bad_labelmap", f"{where}: colour {value!r} needs integers 0..255")
        out.append(int(v))
    return (out[0], out[1], out[2])


def _int_id(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise FormatError("bad_labelmap", f"{where}: id {value!r} is not an integer")
    if isinstance(value, (int, np.integer)):
        i = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        i = int(value)
    else:
        raise FormatError("bad_labelmap", f"{where}: id {value!r} is not an integer")
    if not 0 <= i < UNKNOWN_ID:
        raise FormatError("bad_labelmap", f"{where}: id {i} is outside 0..{UNKNOWN_ID - 1}")
    return i


@dataclass
class LabelMap:
    """Class ids -> names and colours, plus ignore ids and the background id.

    >>> lm = LabelMap(names={0: "bg", 1: "cat"}, colors={0: (0, 0, 0), 1: (128, 0, 0)})
    >>> ids, unknown = lm.colors_to_ids(np.array([[[128, 0, 0], [1, 2, 3]]], np.uint8))
    >>> ids.tolist(), unknown
    ([[1, 65535]], [((1, 2, 3), 1)])
    """

    names: dict[int, str] = field(default_factory=dict)
    colors: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    ignore: set[int] = field(default_factory=lambda: {255})
    background: int | None = 0
    #: where it came from ("voc-default", a file path, "coco-categories", ...): for reports
    source: str = ""
    #: placeholder ids (``_unused_<id>`` lines, ``"filler": true`` labels): not classes
    fillers: set[int] = field(default_factory=set)
    # sorted packed colours and their ids, built on first use (not compared, not pickled)
    _lut: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.names = {int(k): str(v) for k, v in self.names.items()}
        self.colors = {int(k): tuple(int(c) for c in v) for k, v in self.colors.items()}
        self.ignore = {int(i) for i in self.ignore}
        self.fillers = {int(i) for i in self.fillers}
        for k in self.colors:
            if not 0 <= k < UNKNOWN_ID:
                raise FormatError("bad_labelmap", f"colour id {k} outside 0..{UNKNOWN_ID - 1}")
        packed: dict[int, int] = {}
        for k, c in self.colors.items():
            key = (c[0] << 16) | (c[1] << 8) | c[2]
            if key in packed:
                # two classes with one colour would make RGB masks ambiguous: refuse, don't pick
                raise FormatError(
                    "bad_labelmap", f"colour {c} is used by ids {packed[key]} and {k}")
            packed[key] = k

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lut"] = None
        return state

    # ------------------------------------------------------------------ queries
    @property
    def ids(self) -> list[int]:
        """All ids with a name or a colour, sorted."""
        return sorted(set(self.names) | set(self.colors))

    @property
    def class_ids(self) -> list[int]:
        """The ids that are classes (or ignore / background): :attr:`ids` without the fillers.

        >>> LabelMap.from_cvat("bg:0,0,0::\\n_unused_1:128,0,0::\\ncat:0,128,0::").class_ids
        [0, 2]
        """
        return [i for i in self.ids if i not in self.fillers]

    def palette(self, n: int = 256) -> np.ndarray:
        """(n, 3) uint8 palette: the label map's colours at their ids, VOC colours elsewhere.

        >>> LabelMap.voc().palette()[2].tolist()
        [0, 128, 0]
        """
        pal = voc_colormap(n).copy()
        for k, c in self.colors.items():
            if k < n:
                pal[k] = c
        return pal

    def colors_to_ids(self, rgb: np.ndarray) -> tuple[np.ndarray, list[tuple[tuple[int, int, int], int]]]:
        """Map an (h, w, 3) colour array to (h, w) uint16 ids; unknown colours -> ``UNKNOWN_ID``.

        Returns ``(ids, unknown_colors)`` where ``unknown_colors`` lists
        ``((r, g, b), pixel_count)`` for colours not in the label map, sorted by
        decreasing count. Vectorised: colours are packed into uint32 keys and
        looked up with a binary search over the (few) known colours.

        >>> LabelMap.voc().colors_to_ids(np.array([[[0, 128, 0]]], np.uint8))[0].tolist()
        [[2]]
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ValueError(f"colors_to_ids: expected (h, w, 3) array, got shape {rgb.shape}")
        keys = _pack(rgb[..., :3])
        if self._lut is None:
            if self.colors:
                ks = np.array([(c[0] << 16) | (c[1] << 8) | c[2] for c in self.colors.values()], np.uint32)
                vs = np.array(list(self.colors.keys()), np.uint16)
                order = np.argsort(ks)
                self._lut = (ks[order], vs[order])
            else:
                self._lut = (np.zeros(0, np.uint32), np.zeros(0, np.uint16))
        known, values = self._lut
        if known.size == 0:
            ids = np.full(keys.shape, UNKNOWN_ID, np.uint16)
            hit = np.zeros(keys.shape, bool)
        else:
            pos = np.searchsorted(known, keys)
            np.minimum(pos, known.size - 1, out=pos)
            hit = known[pos] == keys
            ids = np.where(hit, values[pos], np.uint16(UNKNOWN_ID)).astype(np.uint16, copy=False)
        unknown: list[tuple[tuple[int, int, int], int]] = []
        if not hit.all():
            u, counts = np.unique(keys[~hit], return_counts=True)
            order = np.lexsort((u, -counts))  # most frequent first, ties by colour
            unknown = [(((int(k) >> 16) & 255, (int(k) >> 8) & 255, int(k) & 255), int(c))
                       for k, c in zip(u[order], counts[order])]
        return ids, unknown

    # ------------------------------------------------------------------ constructors
    @classmethod
    def voc(cls, n_classes: int = 21, *, all_colors: bool = False) -> "LabelMap":
        """The Pascal VOC label map: 21 classes + 255 'ignored', VOC colours.

        ``all_colors=True`` gives every VOC colour 0..255 an id (used for
        VOC ``SegmentationObject`` RGB masks, where colour *i* is instance *i*).

        >>> LabelMap.voc().colors[255]
        (224, 224, 192)
        """
        cm = voc_colormap(256)
        if all_colors:
            names = {i: (VOC_CLASSES[i] if i < len(VOC_CLASSES) else str(i)) for i in range(256)}
            colors = {i: tuple(int(x) for x in cm[i]) for i in range(256)}
        else:
            names = {i: VOC_CLASSES[i] if i < len(VOC_CLASSES) else f"class_{i}" for i in range(n_classes)}
            colors = {i: tuple(int(x) for x in cm[i]) for i in range(n_classes)}
            names[255] = "ignored"
            colors[255] = tuple(int(x) for x in cm[255])
        return cls(names=names, colors=colors, ignore={255}, background=0,
                   source="voc-instances" if all_colors else "voc-default")

    @classmethod
    def from_names(cls, names: Iterable[str], *, source: str = "") -> "LabelMap":
        """Ids are positions: ``["bg", "cat"]`` -> {0: bg, 1: cat}; no colours.

        >>> LabelMap.from_names(["bg", "cat"]).names
        {0: 'bg', 1: 'cat'}
        """
        return cls(names=dict(enumerate(names)), colors={}, source=source)

    @classmethod
    def from_coco_categories(cls, categories: Iterable[Mapping[str, Any]], *, source: str = "coco-categories") -> "LabelMap":
        """Label map from COCO ``categories`` (ids kept, gaps kept; ``color`` used if present).

        Background defaults to 0 (COCO's implicit background / panoptic void);
        ``ignore`` stays {255}.

        >>> LabelMap.from_coco_categories([{"id": 1, "name": "person"}]).names
        {1: 'person'}
        """
        names: dict[int, str] = {}
        colors: dict[int, tuple[int, int, int]] = {}
        for i, cat in enumerate(categories):
            if not isinstance(cat, Mapping) or "id" not in cat:
                raise FormatError("bad_labelmap", f"COCO category #{i} has no 'id': {cat!r}"[:200])
            cid = _int_id(cat["id"], f"COCO category #{i}")
            if cid in names:
                raise FormatError("bad_labelmap", f"COCO category id {cid} appears twice")
            names[cid] = str(cat.get("name", cid))
            if cat.get("color") is not None:
                colors[cid] = _color(cat["color"], f"COCO category {cid}")
        return cls(names=names, colors=colors, source=source)

    @classmethod
    def from_cvat(cls, text: str, *, source: str = "labelmap.txt") -> "LabelMap":
        """Parse CVAT/Datumaro ``labelmap.txt``: ``name:r,g,b:parts:actions`` per line.

        ``#`` lines and blank lines are skipped; the *n*-th label line is id *n*
        (the value for grayscale/palette masks). A label named ``ignored``/``void``
        with VOC's void colour (224,224,192) is id 255 and ignored (Datumaro's
        VOC export writes it as the last line), so VOC files map exactly onto
        the VOC colormap.

        >>> LabelMap.from_cvat("# label:color_rgb:parts:actions\\nbackground:0,0,0::\\ncat:128,0,0::").colors[1]
        (128, 0, 0)
        """
        names: dict[int, str] = {}
        colors: dict[int, tuple[int, int, int]] = {}
        ignore: set[int] = set()
        fillers: set[int] = set()
        seen: set[str] = set()
        idx = 0
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(":")
            if len(parts) > 4:
                raise FormatError("bad_labelmap", f"{source}:{lineno}: more than 4 ':'-fields in {raw!r}")
            name = parts[0].strip()
            if not name:
                raise FormatError("bad_labelmap", f"{source}:{lineno}: empty label name")
            if name in seen:
                raise FormatError("bad_labelmap", f"{source}:{lineno}: label {name!r} appears twice")
            seen.add(name)
            color = None
            if len(parts) > 1 and parts[1].strip():
                fields = parts[1].split(",")
                if len(fields) != 3 or not all(re.fullmatch(r"\s*\d{1,3}\s*", f) for f in fields):
                    raise FormatError("bad_labelmap", f"{source}:{lineno}: colour {parts[1]!r} is not r,g,b")
                color = _color([int(f) for f in fields], f"{source}:{lineno}")
            cid = idx
            if name.lower() in _IGNORE_NAMES and color == (224, 224, 192):
                cid = 255
                ignore.add(255)
            if cid in names:
                raise FormatError("bad_labelmap", f"{source}:{lineno}: id {cid} is already {names[cid]!r}")
            names[cid] = name
            if color is not None:
                colors[cid] = color
            m = _FILLER_RE.fullmatch(name)
            if m and int(m.group(1)) == cid:
                fillers.add(cid)
            idx += 1
        if not names:
            raise FormatError("bad_labelmap", f"{source}: no labels")
        return cls(names=names, colors=colors, ignore=ignore or {255}, source=source, fillers=fillers)

    @classmethod
    def from_lines(cls, text: str, *, source: str = "labels.txt") -> "LabelMap":
        """Parse ``class_names.txt``/``labels.txt``: one name per line, line index = id.

        Trailing blank lines are allowed; a blank line between names is refused
        (it would silently shift every later id).

        >>> LabelMap.from_lines("bg\\ncat\\n").names
        {0: 'bg', 1: 'cat'}
        """
        lines = [ln.strip() for ln in text.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            raise FormatError("bad_labelmap", f"{source}: no labels")
        for i, ln in enumerate(lines):
            if not ln:
                raise FormatError("bad_labelmap", f"{source}:{i + 1}: blank line between names")
        if len(set(lines)) != len(lines):
            dup = next(n for n in lines if lines.count(n) > 1)
            raise FormatError("bad_labelmap", f"{source}: label {dup!r} appears twice")
        return cls.from_names(lines, source=source)

    @classmethod
    def from_json(cls, obj: Any, *, source: str = "labelmap.json") -> "LabelMap":
        """Build from our JSON schema (a dict or a JSON string), or Datumaro's dataset_meta.json.

        >>> LabelMap.from_json({"labels": [{"id": 3, "name": "car", "color": "#ff0000"}]}).colors
        {3: (255, 0, 0)}
        """
        if isinstance(obj, (str, bytes)):
            try:
                obj = json.loads(obj)
            except (ValueError, RecursionError) as e:
                raise FormatError("bad_json", f"{source}: {e}") from None
        if not isinstance(obj, Mapping):
            raise FormatError("bad_labelmap", f"{source}: expected a JSON object, got {type(obj).__name__}")
        names: dict[int, str] = {}
        colors: dict[int, tuple[int, int, int]] = {}
        fillers: set[int] = set()
        if "label_map" in obj:  # Datumaro dataset_meta.json
            lm = obj["label_map"]
            if not isinstance(lm, Mapping):
                raise FormatError("bad_labelmap", f"{source}: 'label_map' is not an object")
            for k, v in lm.items():
                names[_int_id(k, source)] = str(v)
            segc = obj.get("segmentation_colors")
            if segc is not None:
                if not isinstance(segc, list):
                    raise FormatError("bad_labelmap", f"{source}: 'segmentation_colors' is not a list")
                for i, c in enumerate(segc):  # i-th colour belongs to id i
                    colors[i] = _color(c, f"{source}: segmentation_colors[{i}]")
            bg = obj.get("background_label", 0)
            background = None if bg is None else _int_id(bg, source)
            return cls(names=names, colors=colors, ignore={255}, background=background, source=source)
        if "categories" in obj and "labels" not in obj:
            cats = obj["categories"]
            if not isinstance(cats, list):
                raise FormatError("bad_labelmap", f"{source}: 'categories' is not a list")
            return cls.from_coco_categories(cats, source=source)
        if "labels" not in obj:
            raise FormatError("bad_labelmap", f"{source}: no 'labels' (or 'label_map'/'categories') key")
        labels = obj["labels"]
        if isinstance(labels, Mapping):
            for k, v in labels.items():
                names[_int_id(k, source)] = str(v)
        elif isinstance(labels, list):
            for i, lab in enumerate(labels):
                if not isinstance(lab, Mapping) or "id" not in lab:
                    raise FormatError("bad_labelmap", f"{source}: labels[{i}] needs an 'id'")
                cid = _int_id(lab["id"], f"{source}: labels[{i}]")
                if cid in names:
                    raise FormatError("bad_labelmap", f"{source}: id {cid} appears twice")
                names[cid] = str(lab.get("name", cid))
                if lab.get("color") is not None:
                    colors[cid] = _color(lab["color"], f"{source}: labels[{i}]")
                if lab.get("filler") is True:
                    fillers.add(cid)
        else:
            raise FormatError("bad_labelmap", f"{source}: 'labels' must be a list or an object")
        ignore_v = obj.get("ignore", [255])
        if isinstance(ignore_v, (int, str)) and not isinstance(ignore_v, bool):
            ignore_v = [ignore_v]
        if not isinstance(ignore_v, list):
            raise FormatError("bad_labelmap", f"{source}: 'ignore' must be a list of ids")
        ignore = {_int_id(i, f"{source}: ignore") for i in ignore_v}
        bg = obj.get("background", 0)
        background = None if bg is None else _int_id(bg, f"{source}: background")
        return cls(names=names, colors=colors, ignore=ignore, background=background, source=source, fillers=fillers)

    def to_json(self) -> dict:
        """JSON-serialisable dict in our schema (round-trips through :meth:`from_json`).

        >>> lm = LabelMap.voc(); LabelMap.from_json(lm.to_json()) == lm
        True
        """
        labels = []
        for i in self.ids:
            entry: dict[str, Any] = {"id": i, "name": self.names.get(i, str(i))}
            if i in self.colors:
                entry["color"] = list(self.colors[i])
            if i in self.fillers:
                entry["filler"] = True
            labels.append(entry)
        return {
            "format": "fastmask-labelmap",
            "version": 1,
            "labels": labels,
            "ignore": sorted(self.ignore),
            "background": self.background,
            "source": self.source,
        }

    def __eq__(self, other):  # source is provenance, not content
        if not isinstance(other, LabelMap):
            return NotImplemented
        return (self.names, self.colors, self.ignore, self.background) == (
            other.names, other.colors, other.ignore, other.background)


def _read_text(path: str | os.PathLike, data: bytes | None = None) -> str:
    if data is None:
        from ._fs import read_path  # (a FIFO or a device is refused, never read; a URL is read whole)

        try:
            data = read_path(os.fspath(path))
        except FormatError as e:
            if e.code in ("missing_file", "not_found"):
                raise FormatError("missing_file", f"label map {path} does not exist") from None
            raise FormatError(e.code, f"label map {e.message}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError("bad_labelmap", f"{path}: not UTF-8 text ({e})") from None


def load_labelmap(path: str | os.PathLike, *, data: bytes | None = None) -> LabelMap:
    """Load a label map, detecting the format from the name and content.

    ``*.json`` -> our schema, Datumaro ``dataset_meta.json`` or a COCO file's
    ``categories``; ``*.txt`` -> CVAT ``labelmap.txt`` when any label line has
    a ``:``, else one name per line. ``data`` gives the bytes when the file
    lives in a zip.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "labelmap.txt"
    >>> _ = p.write_text("background:0,0,0::\\ncat:128,0,0::\\n")
    >>> load_labelmap(p).names
    {0: 'background', 1: 'cat'}
    """
    name = os.fspath(path)
    text = _read_text(path, data)
    lower = name.lower()
    if lower.endswith(".json"):
        return LabelMap.from_json(text, source=name)
    if lower.endswith(".txt"):
        label_lines = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if any(":" in ln for ln in label_lines):
            return LabelMap.from_cvat(text, source=name)
        return LabelMap.from_lines(text, source=name)
    raise FormatError("bad_labelmap", f"{name}: unknown label-map format (expected .json or .txt)")
