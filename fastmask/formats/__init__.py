"""Readers and writers of mask files, label maps and dataset layouts (no metrics, no engine).

>>> from fastmask.formats import open_dataset, read_mask, LabelMap, FormatError  # doctest: +SKIP

See docs/formats.md for layouts, detection rules, label-map formats and error codes.
"""
from .errors import CODES, FormatError
from .labelmap import UNKNOWN_ID, LabelMap, load_labelmap, voc_colormap
from .layouts import LAYOUTS, Dataset, Item, detect_layout, open_dataset
from .png import MaskData, read_image_size, read_mask, read_panoptic, write_mask

__all__ = [
    "FormatError", "CODES",
    "LabelMap", "load_labelmap", "voc_colormap", "UNKNOWN_ID",
    "MaskData", "read_mask", "read_panoptic", "read_image_size", "write_mask",
    "Dataset", "Item", "LAYOUTS", "detect_layout", "open_dataset",
]
