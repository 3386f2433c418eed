"""One exception type for everything a reader can refuse, with a stable ``code``.

Jobs turn a :class:`FormatError` into an error row (``error_code`` = ``code``,
``error_message`` = ``message``) and go on with the next item, so the codes are
part of the report schema: add codes, never rename them.

>>> try:
...     raise FormatError("zero_bytes", "mask.png is empty (0 bytes)")
... except FormatError as e:
...     (e.code, e.message)
('zero_bytes', 'mask.png is empty (0 bytes)')
"""
from __future__ import annotations

__all__ = ["FormatError", "CODES"]

#: Every code a reader may raise, with a one-line meaning (docs/formats.md lists them too).
CODES: dict[str, str] = {
    "unreadable": "not an image Pillow can decode (or a format fastmask does not read)",
    "zero_bytes": "the file is empty",
    "truncated": "the file ends before the image data does",
    "decompression_bomb": "the declared image size exceeds Pillow's decompression-bomb limit",
    "unsupported_mode": "an image mode that cannot be read as integer ids (e.g. float 'F', CMYK)",
    "path_outside_root": "a path (zip entry, COCO file_name, symlink) leads outside the dataset root",
    "unknown_layout": "the dataset layout could not be detected (or is not the one requested)",
    "bad_labelmap": "a label-map file or object is malformed or ambiguous",
    "bad_json": "a JSON file is malformed or not the expected structure",
    "bad_index": "a clean-zip index.csv is malformed",
    "bad_size": "a COCO / panoptic image record whose width or height is not a positive integer",
    "bad_segments": "a panoptic segments_info that is not a list of objects with 24-bit integer ids",
    "missing_file": "a file the dataset refers to does not exist",
    "not_a_file": "a path that is not a regular file (FIFO, device, socket, folder): never read",
    "too_large": "a file or zip member larger than the read limit ($FASTMASK_MAX_FILE_BYTES)",
    "zip_bomb": "a zip member that inflates far beyond its compressed size ($FASTMASK_MAX_ZIP_RATIO)",
    "encrypted": "an encrypted zip member (fastmask reads no passwords)",
    "remote_mask": "a platform mask named by a URL with no copy beside the platform file, whose filesystem is "
                   "not installed (the message names the extra); other masks by URL are fetched",
    "not_found": "a remote object (s3://, gs://, https:// ...) that does not exist (HTTP 404)",
    "forbidden": "a remote object the credentials may not read (HTTP 401/403)",
    "expired_url": "a signed URL whose signature has expired (403 saying so, or its expiry time has passed)",
    "remote_error": "a remote read that failed for another reason, or still failed after the retries",
    "label_not_found": "a Labelbox data row without the label --labelbox-label chose",
    "bad_url_list": "a URL list without item_id / mask columns, or a row of it that cannot be read (an empty mask "
                    "cell, a width / height that is not a positive integer)",
}


class FormatError(Exception):
    """A file or dataset that cannot be read; ``code`` is stable (see :data:`CODES`).

    >>> FormatError("truncated", "a.png: image file is truncated").code
    'truncated'
    """

    def __init__(self, code: str, message: str, *, path: str | None = None):
        if code not in CODES:  # a typo here would silently fork the report schema
            raise ValueError(f"unknown FormatError code {code!r}")
        self.code = code
        self.message = message
        self.path = path
        super().__init__(code, message)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __reduce__(self):
        # Exceptions cross process boundaries (pools, Dask): keep code/message/path.
        return (_rebuild, (self.code, self.message, self.path))


def _rebuild(code, message, path):
    return FormatError(code, message, path=path)
