"""Preflight rules of the labeling platforms: what Scale Nucleus and Labelbox refuse, found before the upload.

Pure checks (facts in, findings out):

- :func:`check_nucleus` -- ``nucleus_not_uint8``, ``nucleus_unmapped_value``,
  ``nucleus_missing_index``, ``nucleus_duplicate_mask``, ``nucleus_size``;
- :func:`check_labelbox` -- ``labelbox_color_absent``, ``labelbox_unclaimed_color``,
  ``labelbox_not_rgb``, ``labelbox_size``.

:func:`preflight` runs them in ``validate``: on ``nucleus`` / ``labelbox`` datasets over
the files as they are, and, for ``--preflight PLATFORM`` on any other layout, over what
``convert --to PLATFORM`` would write for the item (built in memory, nothing written).

>>> facts = {"format": "PNG", "mode": "L", "bit_depth": 8}
>>> [f.rule for f in check_nucleus(facts, {0: 10, 3: 2}, [("background", 0), ("car", 1)])]
['nucleus_unmapped_value', 'nucleus_missing_index']
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .rules_core import DEFAULT_CONFIG, Finding, RuleConfig

__all__ = ["check_nucleus", "check_labelbox", "preflight"]


def _size_text(s) -> str:
    return f"{s[0]}x{s[1]}"


def check_nucleus(facts: Mapping[str, Any], values: Mapping[int, int], segments: Sequence[tuple[str, int]],
                  config: RuleConfig = DEFAULT_CONFIG, *, n_masks: int = 1, mask_size=None,
                  image_size=None) -> list[Finding]:
    """Nucleus' conditions on one item's mask.

    ``facts``: the file's ``format``, ``mode``, ``bit_depth`` (or ``segments_over`` = the
    number of segments when they do not fit a uint8 PNG); ``values``: pixel value -> count;
    ``segments``: ``(label, index)`` pairs; ``n_masks``: masks given for the item;
    ``mask_size`` / ``image_size``: ``(w, h)`` (the size rule runs when both are known).

    >>> f = check_nucleus({"format": "PNG", "mode": "I;16", "bit_depth": 16}, {0: 4}, [("bg", 0)])
    >>> [(x.rule, x.severity) for x in f]
    [('nucleus_not_uint8', 'error')]
    """
    out: list[Finding] = []
    c = config
    if c.enabled("nucleus_not_uint8"):
        over = facts.get("segments_over")
        if over:
            out.append(c.finding("nucleus_not_uint8", f"{over} segments do not fit a uint8 PNG (at most 256 "
                                 "indices): Nucleus takes uint8 masks only", extra={"segments": int(over)}))
        elif (facts.get("format"), facts.get("mode"), facts.get("bit_depth")) != ("PNG", "L", 8):
            out.append(c.finding("nucleus_not_uint8", f"the mask is a {facts.get('format')} image of mode "
                                 f"{facts.get('mode')} ({facts.get('bit_depth')} bits); Nucleus takes single-channel "
                                 "uint8 PNGs", extra={k: facts.get(k) for k in ("format", "mode", "bit_depth")}))
    indices = {int(i) for _, i in segments}
    if c.enabled("nucleus_unmapped_value"):
        unmapped = sorted(v for v in values if v not in indices)
        if unmapped:
            px = sum(int(values[v]) for v in unmapped)
            out.append(c.finding("nucleus_unmapped_value", f"mask values without a segment: {unmapped[:20]} "
                                 f"({px} px)", pixels=px, extra={"values": unmapped[:100]}))
    if c.enabled("nucleus_missing_index"):
        absent = sorted(indices - {int(v) for v in values})
        if absent:
            labels = {int(i): lab for lab, i in segments}
            out.append(c.finding("nucleus_missing_index", "segments whose index occurs in no pixel: "
                                 + ", ".join(f"{i} ({labels[i]!r})" for i in absent[:20]),
                                 extra={"indices": absent[:100]}))
    if c.enabled("nucleus_duplicate_mask") and n_masks > 1:
        out.append(c.finding("nucleus_duplicate_mask", f"{n_masks} segmentation masks for this item; Nucleus keeps "
                             "one ground-truth mask per item (the first is read here)", extra={"masks": int(n_masks)}))
    if c.enabled("nucleus_size") and mask_size and image_size and tuple(mask_size) != tuple(image_size):
        out.append(c.finding("nucleus_size", f"mask is {_size_text(mask_size)}, the image {_size_text(image_size)}",
                             extra={"mask": list(mask_size), "image": list(image_size)}))
    return out


def check_labelbox(masks: Sequence[Mapping], absent: Sequence[Mapping], unclaimed: Sequence[Mapping],
                   config: RuleConfig = DEFAULT_CONFIG, *, data_row_size=None) -> list[Finding]:
    """Labelbox's conditions on one data row's masks.

    ``masks``: per mask file ``{"url", "mode", "channels", "size": [w, h], "composite": bool}``;
    ``absent``: objects whose colour (or mask) has no pixel ``{"name", "color", "url"}``;
    ``unclaimed``: composite colours no object claims ``{"color", "pixels", "url"}``;
    ``data_row_size``: ``(w, h)`` of the data row when known.

    >>> m = [{"url": "a.png", "mode": "RGBA", "channels": 4, "size": [4, 4], "composite": True}]
    >>> [f.rule for f in check_labelbox(m, [], [], data_row_size=(4, 5))]
    ['labelbox_not_rgb', 'labelbox_size']
    """
    out: list[Finding] = []
    c = config
    if c.enabled("labelbox_color_absent"):
        for a in absent:
            what = f"colorRGB {a['color']}" if a.get("color") is not None else "its mask"
            out.append(c.finding("labelbox_color_absent", f"object {a.get('name')!r}: {what} has no pixel in "
                                 f"{a.get('url')}", extra=dict(a)))
    if c.enabled("labelbox_unclaimed_color") and unclaimed:
        px = sum(int(u["pixels"]) for u in unclaimed)
        cols = ", ".join(f"{tuple(u['color'])}: {u['pixels']} px" for u in unclaimed[:10])
        out.append(c.finding("labelbox_unclaimed_color", f"composite colours no object claims (unlabeled): {cols}",
                             pixels=px, extra={"colors": [dict(u) for u in unclaimed[:100]]}))
    for m in masks:
        if c.enabled("labelbox_not_rgb") and m.get("composite") and (m.get("mode") != "RGB" or m.get("channels") != 3):
            out.append(c.finding("labelbox_not_rgb", f"{m.get('url')}: a {m.get('mode')} image with "
                                 f"{m.get('channels')} channels; composite masks are 3-channel RGB",
                                 extra={"url": m.get("url"), "mode": m.get("mode"), "channels": m.get("channels")}))
        if c.enabled("labelbox_size") and data_row_size and tuple(m["size"]) != tuple(data_row_size):
            out.append(c.finding("labelbox_size", f"{m.get('url')}: mask is {_size_text(m['size'])}, the data row "
                                 f"{_size_text(data_row_size)}", extra={"url": m.get("url"), "mask": list(m["size"]),
                                                                         "data_row": list(data_row_size)}))
    return out


# ----------------------------------------------------------------------------- in validate


def _from_nucleus_item(data, config) -> list[Finding]:
    info = data.extra.get("nucleus")
    if info is None:
        return []
    values = {int(v): int(n) for v, n in info.get("values", [])}
    size = (data.mask.width, data.mask.height) if data.mask is not None else None
    return check_nucleus(info, values, [tuple(s) for s in info["segments"]], config, n_masks=info.get("masks", 1),
                         mask_size=size, image_size=data.image_size)


def _from_labelbox_item(data, config) -> list[Finding]:
    info = data.extra.get("labelbox")
    if info is None:
        return []
    masks = info["masks"]  # each with "composite": objects of that file are found by colour
    return check_labelbox(masks, info["absent"], info["unclaimed"], config, data_row_size=info.get("data_row_size"))


def _simulated(dataset, row, data, platform: str, config) -> list[Finding]:
    """The preflight findings of what ``convert --to platform`` would write for this item (in memory)."""
    import numpy as np

    from ..engine import ItemError
    from .convert import read_source
    from .convert_platforms import _visible

    try:
        src = read_source(dataset, row, ignore_value=config.ignore_value, background=config.background,
                          instance_map=False)
    except ItemError:
        return []  # the item's own rules report why it cannot be read or converted
    size = (src.width, src.height)
    if platform == "nucleus":
        index_map, order = _visible(src, lambda s: True)
        if len(order) > 255:
            return check_nucleus({"segments_over": len(order)}, {}, [], config)
        has_bg = bool((index_map == 0).any())
        values = {int(v) - (0 if has_bg else 1): int(n) for v, n in
                  zip(*np.unique(index_map, return_counts=True))}
        segs = ([("background", 0)] if has_bg else []) + [("", k - (0 if has_bg else 1))
                                                          for k in range(1, len(order) + 1)]
        return check_nucleus({"format": "PNG", "mode": "L", "bit_depth": 8}, values, segs, config,
                             mask_size=size, image_size=data.image_size)
    masks = [{"url": "composite", "mode": "RGB", "channels": 3, "size": list(size), "composite": True}]
    return check_labelbox(masks, [], [], config, data_row_size=data.image_size)


def preflight(dataset, row: dict, data, config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """The platform findings of one item in ``validate`` (see the module docstring).

    >>> # findings += preflight(dataset, row, dataset.read_item(row), RuleConfig(preflight=("nucleus",)))
    """
    out: list[Finding] = []
    if dataset.layout == "nucleus":
        out += _from_nucleus_item(data, config)
    elif dataset.layout == "labelbox":
        out += _from_labelbox_item(data, config)
    for platform in config.preflight:
        if platform != dataset.layout:
            out += _simulated(dataset, row, data, platform, config)
    return out
