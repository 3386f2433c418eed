"""File-level findings built from what a reader learned: thin helpers with clear messages.

Each returns a list (empty when there is nothing to report or the rule is disabled),
so a job can always write ``findings += helper(...)``.

>>> [f.rule for f in size_mismatch((640, 480), (640, 427))]
['size_mismatch']
>>> size_mismatch((640, 480), (640, 480))
[]
"""
from __future__ import annotations

from .rules_core import DEFAULT_CONFIG, Finding, RuleConfig

__all__ = [
    "unreadable",
    "lossy_format",
    "unexpected_channels",
    "size_mismatch",
    "image_size_mismatch",
    "missing_image",
    "missing_mask",
    "animated_mask",
    "listing_problem",
]


def _wh(size) -> tuple[int, int] | None:
    try:
        w, h = size
        return int(w), int(h)
    except (TypeError, ValueError, OverflowError):
        return None


def unreadable(code: str, message: str, config: RuleConfig = DEFAULT_CONFIG, *, path: str | None = None) -> list[Finding]:
    """A file the reader refused: keeps the reader's error ``code`` (``FormatError.code``) and message.

    >>> unreadable("truncated", "a.png: image file is truncated")[0].extra
    {'error_code': 'truncated'}
    """
    if not config.enabled("unreadable"):
        return []
    extra = {"error_code": str(code)}
    if path:
        extra["path"] = str(path)
    return [config.finding("unreadable", f"cannot read the file [{code}]: {message}", extra=extra)]


def lossy_format(fmt: str, lossy: bool = True, config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """A mask stored lossily (``MaskData.lossy``): compression changes ids near every edge.

    >>> lossy_format("JPEG")[0].message
    'mask stored as JPEG, a lossy format: ids near edges are altered; store masks as PNG'
    >>> lossy_format("PNG", lossy=False)
    []
    """
    if not lossy or not config.enabled("lossy_format"):
        return []
    return [config.finding(
        "lossy_format", f"mask stored as {fmt}, a lossy format: ids near edges are altered; store masks as PNG",
        extra={"format": str(fmt)})]


def unexpected_channels(mode: str, channels: int, config: RuleConfig = DEFAULT_CONFIG, *, expected: str = "single",
                        alpha_nonopaque: int = 0, alpha_min: int | None = None) -> list[Finding]:
    """Colour channels where one was expected, and alpha channels that are not fully opaque.

    ``expected``: ``"single"`` (grey / palette / 16-bit masks: an RGB(A) file is
    reported), ``"color"`` (colour-coded layouts such as VOC RGB: only alpha is
    checked) or ``"any"``.  Non-opaque alpha (``MaskData.alpha_nonopaque`` pixels)
    is reported for any ``expected``: ids are read without alpha, so what a viewer
    shows is not what training reads.

    >>> [f.message for f in unexpected_channels("RGB", 3)]
    ['RGB mask with 3 channels where a single-channel mask is expected; ids were read through the label map colours']
    >>> [f.pixels for f in unexpected_channels("RGBA", 4, expected="color", alpha_nonopaque=12, alpha_min=0)]
    [12]
    """
    if not config.enabled("unexpected_channels"):
        return []
    if expected not in ("single", "color", "any"):
        raise ValueError(f"expected must be 'single', 'color' or 'any', got {expected!r}")
    out = []
    if expected == "single" and (mode in ("RGB", "RGBA") or channels >= 3):
        out.append(config.finding(
            "unexpected_channels",
            f"{mode} mask with {channels} channels where a single-channel mask is expected; "
            "ids were read through the label map colours",
            extra={"mode": mode, "channels": int(channels), "expected": expected}))
    if alpha_nonopaque:
        out.append(config.finding(
            "unexpected_channels",
            f"{mode} mask has an alpha channel that is not opaque: {alpha_nonopaque} px with alpha < 255"
            + (f" (min {alpha_min})" if alpha_min is not None else "") + "; alpha is ignored when reading ids",
            pixels=int(alpha_nonopaque),
            extra={"mode": mode, "alpha_nonopaque": int(alpha_nonopaque), "alpha_min": alpha_min}))
    return out


def size_mismatch(mask_size, ref_size, config: RuleConfig = DEFAULT_CONFIG, *, ref: str = "image") -> list[Finding]:
    """Mask (width, height) differs from ``ref_size`` (width, height) of ``ref`` ("image", "COCO record", ...).

    >>> size_mismatch((5, 5), (10, 5), ref="COCO record")[0].message
    'mask is 5x5 (w x h) but the COCO record is 10x5'
    """
    if not config.enabled("size_mismatch"):
        return []
    a, b = _wh(mask_size), _wh(ref_size)
    if a is None or b is None or a == b:
        return []
    hint = "; the image may carry an EXIF rotation (its size turned by 90 degrees matches)" if a == (b[1], b[0]) else ""
    return [config.finding("size_mismatch", f"mask is {a[0]}x{a[1]} (w x h) but the {ref} is {b[0]}x{b[1]}{hint}",
                           extra={"mask_size": list(a), "ref_size": list(b), "ref": ref})]


def image_size_mismatch(record_size, file_size, config: RuleConfig = DEFAULT_CONFIG, *,
                        file_name: str | None = None) -> list[Finding]:
    """COCO image record (width, height) vs the image file's (width, height).

    >>> image_size_mismatch((640, 480), (480, 640))[0].extra["file_size"]
    [480, 640]
    """
    if not config.enabled("image_size_mismatch"):
        return []
    a, b = _wh(record_size), _wh(file_size)
    if a is None or b is None or a == b:
        return []
    name = f" {file_name}" if file_name else ""
    hint = " (rotated? EXIF orientation?)" if a == (b[1], b[0]) else ""
    return [config.finding("image_size_mismatch",
                           f"image record says {a[0]}x{a[1]} (w x h) but the file{name} is {b[0]}x{b[1]}{hint}",
                           extra={"record_size": list(a), "file_size": list(b)})]


def animated_mask(n_frames: int, config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """An animated PNG (``MaskData.extra["n_frames"]`` > 1): only its first frame was read.

    >>> animated_mask(3)[0].message
    'animated PNG with 3 frames: only the first frame is read and checked'
    >>> animated_mask(1)
    []
    """
    if n_frames <= 1 or not config.enabled("animated_mask"):
        return []
    return [config.finding("animated_mask",
                           f"animated PNG with {n_frames} frames: only the first frame is read and checked",
                           extra={"n_frames": int(n_frames)})]


def listing_problem(kind: str, message: str, path: str, config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """A dataset-level finding for what a listing met but could not make an item of
    (:meth:`Dataset.problems`: ``unlisted_path``, ``duplicate_entry``; the rule is the kind).

    >>> listing_problem("unlisted_path", "/d/sub: cannot list this folder", "/d/sub")[0].extra
    {'path': '/d/sub'}
    """
    if not config.enabled(kind):
        return []
    return [config.finding(kind, message, extra={"path": str(path)})]


def missing_image(mask_name: str, image_name: str | None = None, config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """A mask whose image does not exist.

    >>> missing_image("a.png", "a.jpg")[0].message
    'mask a.png has no image (looked for a.jpg)'
    """
    if not config.enabled("missing_image"):
        return []
    where = f" (looked for {image_name})" if image_name else ""
    return [config.finding("missing_image", f"mask {mask_name} has no image{where}",
                           extra={"mask": str(mask_name), "image": image_name})]


def missing_mask(image_name: str, mask_name: str | None = None, config: RuleConfig = DEFAULT_CONFIG) -> list[Finding]:
    """An image without a mask.

    >>> missing_mask("a.jpg")[0].message
    'image a.jpg has no mask'
    """
    if not config.enabled("missing_mask"):
        return []
    where = f" (looked for {mask_name})" if mask_name else ""
    return [config.finding("missing_mask", f"image {image_name} has no mask{where}",
                           extra={"image": str(image_name), "mask": mask_name})]
