"""Shared pieces of the labeling-platform layouts (``labelbox``, ``nucleus``).

- :func:`locate_mask`: where a mask a platform file names (by path or URL) lies beside it;
- :func:`names_labelmap`: the label map of a file's class names (stable ids);
- :func:`read_json_records`: the records of a JSONL / NDJSON file or a JSON list;
- :func:`open_rgb`: a mask image's pixels and facts, without any colour mapping.

A mask named by an ``http(s)://``, ``s3://`` or ``gs://`` URL is looked up beside the
platform file by the URL's path first (a downloaded copy); when no copy is there it is
fetched by its URL (:func:`mask_source`, :func:`read_platform_mask`) with the storage
options of ``--storage-options`` (Labelbox: ``{"headers": {"Authorization": "Bearer <API
key>"}}``); a failed fetch is the item's error row with the storage code (``not_found``,
``forbidden``, ``expired_url``, ``remote_error``), and ``remote_mask`` is left for a URL
whose filesystem is not installed.
"""
from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

import numpy as np

from ._fs import Root, read_regular_file
from .errors import FormatError
from .labelmap import UNKNOWN_ID, LabelMap

__all__ = ["REMOTE_SCHEMES", "locate_mask", "mask_source", "read_platform_mask", "names_labelmap",
           "read_json_records", "open_rgb"]

REMOTE_SCHEMES = ("http", "https", "s3", "gs")


def _url_candidates(ref: str) -> list[str]:
    """Relative paths where the file of a remote URL may lie: ``host/path``, then the path and
    each shorter suffix of it (``a/b/c.png``, ``b/c.png``, ``c.png``)."""
    u = urlsplit(ref)
    parts = [p for p in unquote(u.path).split("/") if p not in ("", ".", "..")]
    out = ["/".join([u.netloc, *parts])] if u.netloc and parts else []
    out += ["/".join(parts[i:]) for i in range(len(parts))]
    return out


def locate_mask(root: Root, ref: str) -> str:
    """The path, relative to ``root`` (the platform file's folder), of the mask ``ref`` names.

    ``ref`` is a relative path, an absolute path inside ``root``, a ``file://`` URL, or a
    remote URL (``http(s)``, ``s3``, ``gs``) whose file was downloaded beside the platform
    file under the URL's path (``<host>/<path>``, ``<path>`` or a shorter suffix of it; the
    first that exists wins). A remote URL with no such file raises ``remote_mask``
    (:func:`mask_source` then fetches it by its URL).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "masks").mkdir(); _ = (d / "masks" / "a.png").write_bytes(b"x")
    >>> locate_mask(Root(d), "https://bucket.example/run1/masks/a.png?sig=1")
    'masks/a.png'
    """
    if not isinstance(ref, str) or not ref:
        raise FormatError("bad_json", f"mask reference {ref!r} is not a non-empty string")
    u = urlsplit(ref)
    scheme = u.scheme.lower()
    if scheme in REMOTE_SCHEMES:
        for cand in _url_candidates(ref):
            if root.exists(cand):
                root.check(cand)
                return cand
        raise FormatError("remote_mask", f"{ref.split('?', 1)[0]}: no copy of this mask beside "
                          f"{root.display('')} (looked for the URL's path under that folder)")
    if scheme == "file":
        path = unquote(u.path)
    elif scheme and len(scheme) > 1:
        raise FormatError("unreadable", f"{ref}: a mask URL scheme fastmask does not read ({scheme}://)")
    else:
        path = ref
    if os.path.isabs(path):
        rel = os.path.relpath(path, root.path).replace(os.sep, "/")
    else:
        rel = path.replace("\\", "/")
    rel = posixpath.normpath(rel)
    root.check(rel)
    return rel


def mask_source(root: Root, ref: str, fetcher):
    """Where to read the mask ``ref`` names: the relative path of its copy beside the platform
    file (:func:`locate_mask`), else -- for a URL -- the :class:`~fastmask.storage.Location` to
    fetch (``remote_mask`` when that URL's filesystem is not installed).

    >>> import tempfile
    >>> from fastmask.storage import Fetcher
    >>> mask_source(Root(tempfile.mkdtemp()), "https://h.example/m.png?sig=1", Fetcher())
    Location('https://h.example/m.png?sig=1')
    """
    try:
        return locate_mask(root, ref)
    except FormatError as e:
        if e.code != "remote_mask":
            raise
    from ..storage import MissingBackendError
    loc = fetcher.location(ref)
    try:
        loc.fs  # noqa: B018 - the filesystem of the URL's scheme, or the extra to install
    except MissingBackendError as e:
        raise FormatError("remote_mask", f"{ref.split('?', 1)[0]}: no copy beside {root.display('')} and it cannot "
                          f"be fetched: {e}", path=ref) from None
    return loc


def read_platform_mask(root: Root, ref: str, fetcher) -> tuple[bytes, str]:
    """``(bytes, name)`` of the mask ``ref`` names: its local copy, or fetched by URL
    (storage codes on failure; ``name`` drops a URL's query string, a signature).

    >>> import tempfile, pathlib
    >>> from fastmask.storage import Fetcher
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.png").write_bytes(b"x")
    >>> read_platform_mask(Root(d), "a.png", Fetcher())[0]
    b'x'
    """
    src = mask_source(root, ref, fetcher)
    if isinstance(src, str):
        return root.read(src), root.display(src)
    return fetcher.read(src), src.url.split("?", 1)[0]


def remote_masks(root: Root, refs, fetcher) -> list:
    """``[(fetcher, location)]`` of the masks among ``refs`` that will be fetched by URL (no local copy)."""
    out = []
    for ref in refs:
        if not isinstance(ref, str) or urlsplit(ref).scheme.lower() not in REMOTE_SCHEMES:
            continue
        try:
            src = mask_source(root, ref, fetcher)
        except FormatError:
            continue  # the read reports it
        if not isinstance(src, str):
            out.append((fetcher, src))
    return out


def names_labelmap(names: Iterable[str], *, background: str = "background", ignore_names: Iterable[str] = (),
                   source: str = "") -> LabelMap:
    """Label map of class names: 0 = ``background`` (always), the other names sorted get 1, 2, ...
    (255 skipped: it stays the ignore id), ``ignore_names`` (names used only for ignored
    regions) get 255. Same names, same ids, whatever their order in the file.

    >>> names_labelmap(["dog", "cat", "dog"]).names
    {0: 'background', 1: 'cat', 2: 'dog'}
    """
    ign = sorted(set(ignore_names))
    if len(ign) > 1:
        raise FormatError("bad_labelmap", f"several names mark ignored regions ({', '.join(ign)}); one at most")
    ordered = sorted({n for n in names if n != background} - set(ign))
    out = {0: background}
    k = 1
    for n in ordered:
        if k == 255:
            k += 1
        if k >= UNKNOWN_ID:
            raise FormatError("bad_labelmap", f"more than {UNKNOWN_ID - 2} class names")
        out[k] = n
        k += 1
    if ign:
        out[255] = ign[0]
    return LabelMap(names=out, colors={}, ignore={255}, background=0, source=source)


def read_json_records(path: str) -> list[dict]:
    """The records of a JSON list file or of a JSONL / NDJSON file (one object a line, blank lines skipped).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.jsonl"); _ = open(p, "w").write('{"a": 1}\\n\\n{"a": 2}\\n')
    >>> read_json_records(p)
    [{'a': 1}, {'a': 2}]
    """
    data = read_regular_file(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError("bad_json", f"{path}: not UTF-8 ({e})", path=path) from None
    head = text.lstrip()[:1]
    if head == "[":
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise FormatError("bad_json", f"{path}: {e}", path=path) from None
        except RecursionError:
            raise FormatError("bad_json", f"{path}: JSON nesting too deep", path=path) from None
        records = doc
    else:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as e:
                raise FormatError("bad_json", f"{path}: line {n}: {e}", path=path) from None
            except RecursionError:
                raise FormatError("bad_json", f"{path}: line {n}: JSON nesting too deep", path=path) from None
    bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
    if bad is not None:
        raise FormatError("bad_json", f"{path}: record {bad + 1} is not a JSON object", path=path)
    return records


def open_rgb(data: bytes, name: str, *, rgb: bool = False) -> tuple[np.ndarray, dict]:
    """(pixels, facts) of a mask image: ``(h, w, 3)`` uint8 for colour images (every image with
    ``rgb=True``: grey and palette images shown as their colours), else ``(h, w)`` grey values or
    palette indices. Facts (of the file as stored): ``format``, ``mode``, ``channels``, ``bit_depth``."""
    from .png import _open_image

    img = _open_image(data, name)
    mode = img.mode
    facts = {"format": img.format, "mode": mode, "channels": len(img.getbands()),
             "bit_depth": {"I;16": 16, "I;16B": 16, "I": 32, "1": 1}.get(mode, 8)}
    if rgb and mode in ("I;16", "I;16B", "I"):
        raise FormatError("unsupported_mode", f"{name}: a {mode} image; a colour (RGB) mask is expected", path=name)
    if rgb or mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(img.convert("RGB") if mode != "RGB" else img)
    elif mode in ("L", "P", "1", "I;16", "I;16B", "I"):
        arr = np.asarray(img)
        if mode == "1":
            arr = arr.astype(np.uint8)
    else:
        raise FormatError("unsupported_mode", f"{name}: image mode {mode} is not a mask", path=name)
    return np.ascontiguousarray(arr), facts


def share_names_labelmap(*datasets) -> None:
    """Make the ids of platform datasets (label maps built from their own names) agree with the
    other datasets of a job (``evaluate``): with another dataset that has a label map, the platform
    datasets take its ids for the names it has (new names after its largest id); between platform
    files only, one label map of all their names.

    >>> share_names_labelmap()  # nothing to share
    """
    own = [d for d in datasets if getattr(d, "labelmap_from_names", False)]
    others = [d for d in datasets if d not in own and getattr(d, "labelmap", None) is not None]
    if own and others:
        base = others[0].labelmap
        names = dict(base.names)
        known = set(names.values())
        nxt = max(names, default=0) + 1
        for d in own:
            lm = d.labelmap
            for i, n in sorted(lm.names.items()):
                if i == lm.background or i in lm.ignore or n in known:
                    continue  # background and ignored regions map to the base's ids, not by name
                while nxt in names or nxt in base.ignore:
                    nxt += 1
                names[nxt] = n
                known.add(n)
        shared = LabelMap(names=names, colors=dict(base.colors), ignore=set(base.ignore), background=base.background,
                          source=f"{base.source} + platform names")
        for d in own:
            d.labelmap = shared
        return
    if len(own) < 2:
        return
    names, ignore = set(), set()
    for d in own:
        lm = d.labelmap
        names |= {n for i, n in lm.names.items() if i != lm.background and i not in lm.ignore}
        ignore |= {n for i, n in lm.names.items() if i in lm.ignore}
    shared = names_labelmap(names, ignore_names=ignore - names, source="names of " + ", ".join(
        os.path.basename(d.root) for d in own))
    for d in own:
        d.labelmap = shared
