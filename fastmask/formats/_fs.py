"""A dataset root that is a folder or a zip file, with path-safety checks on every read.

:class:`Root` is what dataset objects hold: a path, a sub-folder ("base") and
nothing else when pickled; the zip file is opened lazily, once per process.

Safety (all refusals raise ``FormatError("path_outside_root")``):

- zip entries with an absolute name, a drive letter, or a ``..`` part, and zip
  entries that are symlinks, are listed (so they can be reported) but never
  read or extracted;
- relative paths given to :meth:`Root.read` etc. may not be absolute or climb
  out with ``..``;
- in a folder, a path whose real location (symlinks resolved) is outside the
  root's real location is refused.

Only regular files are read (``not_a_file`` for a FIFO, a device, a socket or a
folder, decided by ``fstat`` on a descriptor opened with ``O_NONBLOCK``, so a FIFO
never blocks), and no read returns more than :data:`MAX_FILE_BYTES` (``too_large``).
A zip member is read as a stream with the same cap; its declared size is checked
first, and a member inflating more than :data:`MAX_ZIP_RATIO` times its compressed
size is a ``zip_bomb``; encrypted members are ``encrypted``.

File names that are not valid UTF-8 (possible on Linux) are listed with their
undecodable bytes as ``\\xHH`` escapes (``bad\\xffname.png``), so they fit in
reports (Arrow strings are UTF-8), and are read under their real name. The listing
is one-to-one: a name that already holds such an escape (the literal text
``bad\\xffname.png``) gets its backslashes escaped too (``bad\\x5cxffname.png``).

Zip entry names are normalised (``./a/b.png`` and ``a/./b.png`` are ``a/b.png``); two
entries with one name are one file (the last, as :mod:`zipfile` reads it) and a
listing *problem*; so is a folder that cannot be listed (permissions, a path longer
than the system allows). :attr:`Root.problems` collects them for the dataset
(:meth:`fastmask.formats.layouts.Dataset.problems`).

A folder below the root holding fastmask's own ``run.json`` (a report: its charts are PNGs,
never masks) is skipped with everything in it, and noted in :attr:`Root.skipped_reports`.

A root may also be a URL (``s3://bucket/voc``, ``gs://...``, any fsspec URL; see
:mod:`fastmask.storage`): a prefix of objects or a zip object. A prefix is listed once per
process, page by page (:meth:`fastmask.storage.Location.find`), with the same skipping of
hidden names and reports; objects are read whole (same size limit, the storage error
codes: ``not_found``, ``forbidden``...); a zip object is read through a seekable remote
file with every zip check above. Objects have no symlinks, FIFOs or devices, so those
checks do not apply; relative names, item ids and the order of a listing are those of the
same files in a local folder. Helpers for a single file given by path or URL:
:func:`norm_target`, :func:`read_path`, :func:`open_path`, :func:`path_kind`.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import posixpath
import re
import stat
import zipfile
from collections.abc import Iterator
from typing import IO

from ..storage import Fetcher, Location, ahead_peek, is_url
from .errors import FormatError

__all__ = ["Root", "unsafe_reason", "is_junk", "is_report_run_json", "MAX_FILE_BYTES", "MAX_ZIP_RATIO",
           "ZIP_RATIO_MIN_BYTES", "norm_target", "read_path", "open_path", "path_kind", "join_target",
           "parent_target", "relative_target", "is_file_target", "ask"]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${name}={os.environ[name]!r}: expected a positive integer")
    return value


#: ``$FASTMASK_MAX_FILE_BYTES`` (default 1 GiB): the most bytes one read may return -- a
#: file in a folder (its size, checked before reading) or a zip member (its declared and
#: its actual inflated size). Above it: ``too_large``. The largest mask Pillow's pixel
#: limit lets through, 89.5 M pixels of RGBA, is 358 MB uncompressed.
MAX_FILE_BYTES = _env_int("FASTMASK_MAX_FILE_BYTES", 1 << 30)
#: ``$FASTMASK_MAX_ZIP_RATIO`` (default 100): a zip member whose inflated size is more than
#: this many times its compressed size, once above :data:`ZIP_RATIO_MIN_BYTES`, is a
#: ``zip_bomb`` (deflate reaches ~1000x on zeros; PNG data inside a zip stays near 1x).
MAX_ZIP_RATIO = _env_int("FASTMASK_MAX_ZIP_RATIO", 100)
#: inflated bytes below which a zip member's ratio is not judged (small all-zero BMP or
#: TIFF masks compress 1000x and are harmless)
ZIP_RATIO_MIN_BYTES = 16 << 20
_ZIP_CHUNK = 1 << 20

_DRIVE = re.compile(r"^[A-Za-z]:")
# Reading a file with O_NOFOLLOW (where the OS has it) refuses a symlink in the same system
# call as the open, instead of an lstat before every read; a refused symlink is then
# checked (it may point inside the root) and read.  os.open + os.read also skips the file
# object Python's open() builds: ~7 us less per file.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer
# (it is then refused by fstat); it changes nothing for regular files.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_OPEN_FLAGS = os.O_RDONLY | _CLOEXEC | _NONBLOCK | getattr(os, "O_BINARY", 0)
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _too_large(name: str, size: int | str, rel: str | None) -> FormatError:
    return FormatError("too_large", f"{name}: {size} bytes, above the read limit of {MAX_FILE_BYTES} bytes "
                       "($FASTMASK_MAX_FILE_BYTES)", path=rel)


def check_regular(fd: int, name: str, rel: str | None = None, *, whole: bool = True) -> int:
    """The size of the open file ``fd``; FormatError ``not_a_file`` (and ``too_large`` when the
    whole file is to be read) before any read."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
        raise FormatError("not_a_file", f"{name}: {kind}, not a regular file; not read", path=rel)
    if whole and st.st_size > MAX_FILE_BYTES:
        raise _too_large(name, st.st_size, rel)
    return st.st_size


def _read_all(fd: int, name: str = "<file>", rel: str | None = None) -> bytes:
    """The rest of an open regular file: one read when its size is known and holds still."""
    size = check_regular(fd, name, rel)
    data = os.read(fd, size + 1)  # one byte more than the size: notices a file that grew
    if len(data) == size:
        return data
    parts, total = [data], len(data)
    while True:  # grew, shrank, or a short read (some network file systems): read to EOF
        more = os.read(fd, max(size, 1 << 16))
        if not more:
            return b"".join(parts)
        total += len(more)
        if total > MAX_FILE_BYTES:
            raise _too_large(name, f"more than {MAX_FILE_BYTES}", rel)
        parts.append(more)


def read_regular_file(path: str) -> bytes:
    """All bytes of a regular file at ``path`` (FormatError ``not_a_file``, ``too_large``, ...).

    >>> read_regular_file("/dev/null")
    Traceback (most recent call last):
    ...
    fastmask.formats.errors.FormatError: [not_a_file] /dev/null: a character device, not a regular file; not read
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise FormatError("missing_file", f"{path}: no such file", path=path) from None
    except OSError as e:
        raise FormatError("unreadable", f"{path}: {e.strerror or e}", path=path) from None
    try:
        return _read_all(fd, path, path)
    except OSError as e:
        raise FormatError("unreadable", f"{path}: {e.strerror or e}", path=path) from None
    finally:
        os.close(fd)


# Decoded escapes: a backslash (\x5c) and the bytes that cannot start or continue UTF-8 text
# alone (0x80-0xff). Never '/' or '.', so a decoded name cannot climb out of its root.
_ESCAPED_BYTE = re.compile(r"\\x(5c|[89a-f][0-9a-f])")


def listed_name(name: str) -> str:
    """A name as listed: bytes that are not UTF-8 (surrogate-escaped by ``os``) become ``\\xHH``;
    a name that holds such an escape as text gets its backslashes escaped too (one-to-one).

    >>> listed_name(os.fsdecode(b"bad\\xffname.png")), listed_name("bad\\\\xffname.png")
    ('bad\\\\xffname.png', 'bad\\\\x5cxffname.png')
    """
    try:
        name.encode("utf-8")
        if "\\" not in name or not _ESCAPED_BYTE.search(name):
            return name
    except UnicodeEncodeError:
        pass
    # 0x5c is never part of a multi-byte UTF-8 sequence: escaping it first is safe
    return os.fsencode(name).replace(b"\\", b"\\x5c").decode("utf-8", "backslashreplace")


def _unescape(listed: str) -> str:
    """The OS name (surrogate-escaped) of a name :func:`listed_name` escaped."""
    return _ESCAPED_BYTE.sub(
        lambda m: "\\" if m.group(1) == "5c" else chr(0xDC00 + int(m.group(1), 16)), listed)


def _os_name(root: str, full: str) -> str:
    """The file system's path of a listed relative name under ``root`` (undoes :func:`listed_name`).

    A listed name is tried first; a name from elsewhere (an index file) that merely holds
    ``\\xHH`` text is used as written when no listed file matches it.
    """
    p = os.path.join(root, *full.split("/"))
    if "\\x" not in full:
        return p
    raw = os.path.join(root, *_unescape(full).split("/"))
    return raw if raw != p and os.path.lexists(raw) else p


def _zip_name(name: str) -> str:
    """A safe zip entry name without ``.`` parts or doubled slashes (``./a//./b`` -> ``a/b``)."""
    if "./" not in name and "//" not in name and name != ".":
        return name
    if unsafe_reason(name):
        return name  # listed as it is, refused on read
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts) + ("/" if name.endswith("/") and parts else "")


def unsafe_reason(name: str, *, backslash: bool = True) -> str | None:
    """Why a relative name may not be read under a root (None when it is fine).

    ``backslash``: a backslash separates folders too (zip entries, Windows); a folder on a
    POSIX system passes False: there ``a\\b.png`` is one file of the folder.

    >>> unsafe_reason("masks/a.png") is None, unsafe_reason("../etc/passwd"), unsafe_reason("/abs")
    (True, "contains '..'", 'is absolute')
    """
    # a backslash counts as a separator (names from Windows), except in a listed name's
    # escapes (``\\xff.png`` is a file whose name starts with the byte 0xff)
    n = _ESCAPED_BYTE.sub("_", name).replace("\\", "/") if backslash else name
    if n.startswith("/") or _DRIVE.match(n):
        return "is absolute"
    if ".." in n.split("/"):
        return "contains '..'"
    if "\x00" in n:
        return "contains a NUL byte"
    return None


def is_junk(rel: str) -> bool:
    """OS metadata that is never data: macOS ``__MACOSX/`` and ``._*`` forks, ``.DS_Store``, hidden files."""
    parts = rel.split("/")
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


#: a report's run.json is small; a larger file of that name is someone else's
_RUN_JSON_MAX = 64 << 20


def is_report_run_json(data: bytes) -> bool:
    """Whether ``data`` is the ``run.json`` of a fastmask report: a JSON object with the keys
    every report writes (``report_format`` an integer, ``fastmask_version``, ``job`` and
    ``status`` strings), so that another tool's ``run.json`` is never mistaken for one.

    >>> is_report_run_json(b'{"report_format": 1, "fastmask_version": "0.1", "job": "scan", "status": "complete"}')
    True
    >>> is_report_run_json(b'{"status": "complete"}'), is_report_run_json(b"not json")
    (False, False)
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return (isinstance(doc, dict) and type(doc.get("report_format")) is int
            and all(isinstance(doc.get(k), str) for k in ("fastmask_version", "job", "status")))


def _is_report_folder(folder: str) -> bool:
    """Whether the folder (an OS path) holds a fastmask report's ``run.json``."""
    try:
        fd = os.open(os.path.join(folder, "run.json"), _OPEN_FLAGS | _NOFOLLOW)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _RUN_JSON_MAX:
            return False
        return is_report_run_json(_read_all(fd, folder))
    except (OSError, FormatError):
        return False
    finally:
        os.close(fd)


class Root:
    """A folder or a zip file, optionally narrowed to a sub-folder ``base``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("hi")
    >>> r = Root(d); r.files(), r.read("a.txt")
    (['a.txt'], b'hi')
    """

    def __init__(self, path: str | os.PathLike | Location, base: str = ""):
        loc = _remote_location(path)
        self.base = base.strip("/")
        #: ``[n]``: files, objects or zip entries the listings of this root saw; shared like problems
        self.listed: list[int] = [0]
        self._zf: zipfile.ZipFile | None = None
        self._zpid: int | None = None
        self._entries: dict[str, zipfile.ZipInfo] = {}
        if loc is None:
            self.path = os.path.abspath(_local_target(path))
            self._loc = None
            self._fetcher = None
            self.is_zip = os.path.isfile(self.path) and zipfile.is_zipfile(self.path)
            if not self.is_zip and not os.path.isdir(self.path):
                raise FormatError("missing_file", f"{self.path}: no such folder or zip file", path=self.path)
        self._listing: list = []  # a URL folder's listing, [_Listing], shared with the roots sub() makes
        if loc is not None:
            self.path = loc.url
            self._loc = loc
            # made here, in the process that opens the dataset: --prefetch / --cache travel with it
            self._fetcher = Fetcher(options=loc.options)
            twin = _shared_root(self)
            if twin is None:
                self.is_zip = self._open_remote_root()
            else:  # the same URL already opened in this block (detection): its listing and zip handle
                self.is_zip, self._listing, self.listed = twin.is_zip, twin._listing, twin.listed
                self._zf, self._zpid, self._entries = twin._zf, twin._zpid, twin._entries
        self._real: str | None = None
        self._real_dirs: dict[str, str] = {}
        #: listing problems, ``(kind, path) -> message``: folders that cannot be listed
        #: (``unlisted_path``), zip names held by several entries (``duplicate_entry``);
        #: shared by the roots :meth:`sub` makes, kept in this process only
        self.problems: dict[tuple[str, str], str] = {}
        #: folders below the root skipped as fastmask reports (their ``run.json``); shared like problems
        self.skipped_reports: set[str] = set()

    # pickling: paths only (a URL root: its Location, with its storage options); zip handles,
    # listings and caches are per process
    def __getstate__(self):
        state = {"path": self.path, "base": self.base, "is_zip": self.is_zip}
        if self._loc is not None:
            state["loc"] = self._loc
            state["fetcher"] = self._fetcher
        return state

    def __setstate__(self, state):
        state = dict(state)
        self._loc = state.pop("loc", None)
        self._fetcher = state.pop("fetcher", None)
        self.__dict__.update(state)
        self._zf = None
        self._zpid = None
        self._entries = {}
        self._real = None
        self._real_dirs = {}
        self._listing = []
        self.problems = {}
        self.skipped_reports = set()
        self.listed = [0]

    def __repr__(self):
        return f"Root({self.path!r}{', base=' + repr(self.base) if self.base else ''})"

    def sub(self, base: str) -> "Root":
        """The same root narrowed to a sub-folder."""
        r = Root.__new__(Root)
        state = {"path": self.path, "base": posixpath.join(self.base, base).strip("/") if base else self.base,
                 "is_zip": self.is_zip}
        if self._loc is not None:
            state["loc"] = self._loc
            state["fetcher"] = self._fetcher
        r.__setstate__(state)
        r.problems = self.problems
        r.skipped_reports = self.skipped_reports
        r.listed = self.listed
        r._listing = self._listing
        if self._loc is not None and self._zf is not None and self._zpid == os.getpid():
            r._zf, r._zpid, r._entries = self._zf, self._zpid, self._entries  # one remote zip handle
        return r

    @property
    def is_remote(self) -> bool:
        """True for a root at a URL (a prefix of objects or a zip object)."""
        return self._loc is not None

    # ------------------------------------------------------------------ zip
    def _zip(self) -> zipfile.ZipFile:
        pid = os.getpid()
        if self._zf is None or self._zpid != pid:  # a forked child must not share the parent's handle
            try:
                zf = zipfile.ZipFile(self.path if self._loc is None else _open_remote(self._loc, _ZIP_BLOCK))
            except (OSError, zipfile.BadZipFile) as e:
                raise FormatError("unreadable", f"{self.path}: {e}", path=self.path) from None
            self._set_zip(zf)
        return self._zf

    def _set_zip(self, zf: zipfile.ZipFile) -> None:
        if self._zf is None:
            self.listed[0] += len(zf.filelist)  # the central directory: the zip's listing
        self._zf = zf
        self._zpid = os.getpid()
        self._entries = self._zf.NameToInfo  # name -> entry (zipfile keeps the last of twins)
        if any(_zip_name(n) != n for n in self._entries):
            self._entries = {}
            for info in self._zf.infolist():
                self._entries[_zip_name(info.filename)] = info

    def prefetch(self, rel: str | None) -> list:
        """What :meth:`read` of ``rel`` will fetch, as ``[(fetcher, location)]`` for the engine's
        fetch-ahead (:func:`fastmask.storage.prefetching`); ``[]`` for a local root, a zip
        (one object, read by ranges) or an unsafe name (``read`` reports it).

        >>> import tempfile
        >>> Root(tempfile.mkdtemp()).prefetch("a.png")
        []
        """
        if self._loc is None or self.is_zip or not rel:
            return []
        try:
            self.check(rel)
        except FormatError:
            return []
        return [(self._fetcher, self._object(rel))]

    def _object(self, rel: str) -> Location:
        """The object of the relative name ``rel`` under a URL folder root."""
        return self._loc / _remote_key(self._full(rel))

    def _open_remote_root(self) -> bool:
        """Whether the URL root is a zip object (opened here, once) or a prefix; ``missing_file``
        when it is neither (nothing there, or an object that is not a zip: as for a local path)."""
        loc = self._loc
        if ask(loc.is_file, loc):
            try:
                self._set_zip(zipfile.ZipFile(_open_remote(loc, _ZIP_BLOCK)))
                return True
            except zipfile.BadZipFile:
                pass
            except OSError as e:
                raise FormatError("unreadable", f"{self.path}: {e}", path=self.path) from None
        elif ask(_prefix_has_objects, loc, loc):  # one bounded request, not a listing of the top level
            return False
        else:
            fs, key = loc.fs
            try:  # neither a file nor a prefix: say why when the store does (forbidden, ...)
                loc._call(fs.info, key)
            except FormatError as e:
                if e.code != "not_found":
                    raise FormatError(e.code, e.message, path=self.path) from None
        raise FormatError("missing_file", f"{self.path}: no such folder or zip file", path=self.path)

    def _zip_entries(self) -> dict[str, zipfile.ZipInfo]:
        """Normalised entry name -> entry (the last one of entries sharing a name)."""
        self._zip()
        return self._entries

    def _zip_duplicates(self, pre: str) -> None:
        """Note the names under ``pre`` that several zip entries hold (a listing problem each)."""
        infos = self._zf.infolist()
        if len(infos) == len(self._entries):
            return
        seen: dict[str, int] = {}
        for info in infos:
            n = _zip_name(info.filename)
            if n.startswith(pre) and not info.is_dir():
                seen[n] = seen.get(n, 0) + 1
        for n, k in seen.items():
            if k > 1:
                self.problems[("duplicate_entry", f"{self.path}!{n}")] = (
                    f"{self.path}!{n}: {k} zip entries have this name; only the last one is read")

    def _full(self, rel: str) -> str:
        return posixpath.join(self.base, rel) if self.base else rel

    def display(self, rel: str) -> str:
        """A human/absolute name: ``/x/y.zip!dir/a.png`` or ``/x/dir/a.png``."""
        full = self._full(rel)
        if self.is_zip:
            return f"{self.path}!{full}"
        if self._loc is not None:
            return f"{self.path}/{full}" if full else self.path
        return os.path.join(self.path, *full.split("/"))

    # ------------------------------------------------------------------ listing
    def files(self, under: str = "", *, recursive: bool = True) -> list[str]:
        """Sorted relative (posix) names of files under ``under``, junk skipped.

        Unsafe zip entries are included (they are reported, then refused on read).
        Folders are walked without following directory symlinks.
        """
        return sorted(name for chunk in self.iter_files(under, recursive=recursive) for name in chunk)

    def iter_files(self, under: str = "", *, recursive: bool = True) -> Iterator[list[str]]:
        """The names :meth:`files` lists, unsorted, one list per folder (a zip: one list), so
        that a caller can turn a million names into Arrow a folder at a time."""
        prefix = self._full(under).strip("/")
        if self.is_zip:
            out: list[str] = []
            pre = prefix + "/" if prefix else ""
            blen = len(self.base) + 1 if self.base else 0
            reports = self._zip_reports(pre)
            for name, info in self._zip_entries().items():
                if info.is_dir() or not name.startswith(pre):
                    continue
                if reports and any(name.startswith(r) for r in reports):
                    continue
                rel = name[blen:]
                sub = name[len(pre):]
                if not recursive and "/" in sub.replace("\\", "/"):
                    continue
                if unsafe_reason(rel) is None and is_junk(rel):
                    continue
                out.append(rel)
            self._zip_duplicates(pre)
            yield out
            return
        if self._loc is not None:
            yield from self._remote_files(prefix, recursive)
            return
        top = os.path.join(self.path, *prefix.split("/")) if prefix else self.path
        if not os.path.isdir(top):
            return
        baselen = len(os.path.join(self.path, *self.base.split("/")) if self.base else self.path) + 1
        for dirpath, dirnames, filenames in os.walk(top, onerror=self._unlisted):
            if "run.json" in filenames and dirpath != self.path and _is_report_folder(dirpath):
                # fastmask's own report (a chart is a PNG, not a mask): never items, wherever it sits
                self.skipped_reports.add(listed_name(dirpath))
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
            self.listed[0] += len(filenames)
            yield [listed_name(os.path.join(dirpath, f)[baselen:].replace(os.sep, "/"))
                   for f in filenames if not f.startswith(".")]
            if not recursive:
                break

    def _remote_listing(self) -> "_Listing":
        """The keys below a URL root, listed once per process (shared with :meth:`sub` roots)."""
        if not self._listing:
            self._listing.append(_Listing.of(self))
            self.listed[0] += len(self._listing[0].keys)
        listing = self._listing[0]
        self.problems.update(listing.problems)
        return listing

    def _remote_files(self, prefix: str, recursive: bool) -> Iterator[list[str]]:
        """:meth:`iter_files` of a URL folder: what a walk of the same local folder lists
        (hidden names, ``__MACOSX`` and report folders skipped), in chunks."""
        listing = self._remote_listing()
        pre = prefix + "/" if prefix else ""
        blen = len(self.base) + 1 if self.base else 0
        reports = listing.reports
        out: list[str] = []
        for key in listing.under(pre):
            if reports:
                hit = next((r for r in reports if key.startswith(r)), None)
                if hit is not None:
                    self.skipped_reports.add(f"{self.path}/{hit.rstrip('/')}")
                    continue
            parts = key[len(pre):].split("/")
            if not recursive and len(parts) > 1:
                continue
            if parts[-1].startswith(".") or any(d.startswith(".") or d == "__MACOSX" for d in parts[:-1]):
                continue
            out.append(listed_name(key[blen:]))
            if len(out) >= _LIST_CHUNK:
                yield out
                out = []
        yield out

    def _zip_reports(self, pre: str) -> list[str]:
        """Prefixes (``dir/``) of the zip folders below ``self.base`` that hold a fastmask report's
        ``run.json``; noted in :attr:`skipped_reports`."""
        out = []
        for name, info in self._zip_entries().items():
            if not name.endswith("/run.json") or not name.startswith(pre) or info.file_size > _RUN_JSON_MAX:
                continue
            folder = name[: -len("run.json")]
            if folder.rstrip("/") == self.base or unsafe_reason(name) is not None:
                continue
            try:
                data = _read_member(self._zip(), info, f"{self.path}!{name}", name)
            except (FormatError, OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError):
                continue  # not readable: not recognisably a report, so listed as usual
            if is_report_run_json(data):
                out.append(folder)
                self.skipped_reports.add(f"{self.path}!{folder.rstrip('/')}")
        return out

    def _unlisted(self, e: OSError) -> None:
        """``os.walk``'s error hook: a folder it cannot list is a listing problem, never silence."""
        where = listed_name(os.fsdecode(e.filename)) if e.filename is not None else self.path
        why = e.strerror or str(e)
        if e.errno == errno.ENAMETOOLONG:
            why += f" (a path of {len(os.fsencode(e.filename or ''))} bytes)"
        self.problems[("unlisted_path", where)] = f"{where}: cannot list this folder ({why}); its files are not items"

    def isdir(self, rel: str) -> bool:
        full = self._full(rel).strip("/")
        if self.is_zip:
            pre = full + "/"
            return any(n.startswith(pre) for n in self._zip_entries())
        if self._loc is not None:
            if full and not self._listing and _DEFERRED.get():  # one small request, no listing
                return ask(_prefix_has_objects, self._loc, self._loc / _remote_key(full))
            return not full or self._remote_listing().has_prefix(full + "/")
        return os.path.isdir(os.path.join(self.path, *full.split("/")))

    def top_dirs(self) -> list[str]:
        """Names of the top-level folders (and files) of a zip, for base detection."""
        if self.is_zip:
            return sorted({n.split("/", 1)[0] for n in self._zip_entries() if n and not is_junk(n)})
        if self._loc is not None:
            return self._remote_listing().top()
        return sorted(os.listdir(self.path))

    # ------------------------------------------------------------------ reading
    def check(self, rel: str, *, links: bool = True) -> str:
        """Validate a relative name; return the OS path (folder) or the zip entry name.

        ``links=False`` skips the test of the file itself being a symlink: for a caller that
        opens it with ``O_NOFOLLOW`` and checks a symlink only when the open refuses one.
        """
        why = unsafe_reason(rel, backslash=self._backslash())
        if why:
            raise FormatError("path_outside_root", f"{self.display(rel)}: path {why}; refused", path=rel)
        full = self._full(rel)
        if self.is_zip:
            info = self._zip_entries().get(full)
            if info is None:
                raise FormatError("missing_file", f"{self.display(rel)}: no such entry", path=rel)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise FormatError("path_outside_root", f"{self.display(rel)}: zip entry is a symlink; refused",
                                  path=rel)
            return full
        if self._loc is not None:  # an object: no symlinks to follow out of the root
            return f"{self.path}/{full}"
        p = _os_name(self.path, full)
        if self._real is None:
            self._real = os.path.realpath(self.path)
        # Resolving every file costs one lstat per path component (~50 us a mask): resolve
        # each folder once per process, then only the file itself when it is a symlink.
        folder = os.path.dirname(p)
        real_dir = self._real_dirs.get(folder)
        if real_dir is None:
            real_dir = self._inside(os.path.realpath(folder), p, rel)
            self._real_dirs[folder] = real_dir
        if links and os.path.islink(p):
            self._inside(os.path.realpath(p), p, rel)
        return p

    def _backslash(self) -> bool:
        """Whether a backslash in a name separates folders here (not in a POSIX folder)."""
        return self.is_zip or os.sep == "\\"

    def _inside(self, real: str, p: str, rel: str) -> str:
        if real != self._real and not real.startswith(self._real.rstrip(os.sep) + os.sep):
            raise FormatError("path_outside_root",
                              f"{listed_name(p)}: resolves to {listed_name(real)}, outside the dataset root "
                              f"{listed_name(self._real)}; refused", path=rel)
        return real

    def exists(self, rel: str) -> bool:
        """True when ``rel`` is a safe, existing file (unsafe names are 'existing but refused': True).

        Anything but a folder counts (a FIFO, a device): :meth:`read` then refuses it
        (``not_a_file``) rather than the item saying the file is missing.
        """
        if unsafe_reason(rel, backslash=self._backslash()):
            return True  # exists as far as listing goes; read() refuses it
        full = self._full(rel)
        if self.is_zip:
            return full in self._zip_entries()
        if self._loc is not None:
            if self._listing:  # listed in this process: no request
                return self._listing[0].has(_remote_key(full))
            obj = self._object(rel)
            ahead = ahead_peek(obj.url)  # fetched ahead for this item: its outcome says it, no request
            if ahead is not None:
                return not (isinstance(ahead, FormatError) and ahead.code in ("not_found", "missing_file"))
            return ask(obj.is_file, obj)
        try:
            return not stat.S_ISDIR(os.stat(_os_name(self.path, full)).st_mode)
        except (OSError, ValueError):
            return False

    def _open_fd(self, rel: str) -> int:
        """A descriptor of the folder file ``rel`` (checked, never blocking), or FormatError."""
        where = self.check(rel, links=not _NOFOLLOW)
        try:
            try:
                return os.open(where, _OPEN_FLAGS | _NOFOLLOW)
            except OSError as e:
                if not _NOFOLLOW or e.errno not in (errno.ELOOP, errno.EMLINK) or not os.path.islink(where):
                    raise
                # a symlink: read it only when it resolves inside the root
                self._inside(os.path.realpath(where), where, rel)
                return os.open(where, _OPEN_FLAGS)
        except FileNotFoundError:
            raise FormatError("missing_file", f"{self.display(rel)}: no such file", path=rel) from None
        except OSError as e:
            raise FormatError("unreadable", f"{self.display(rel)}: {listed_name(e.strerror or str(e))}",
                              path=rel) from None

    def _zip_member(self, rel: str, *, whole: bool = True) -> zipfile.ZipInfo:
        """The entry of ``rel``, refused before any byte is inflated when it is encrypted or
        (``whole``: to be read whole) declares more than the limits allow."""
        info = self._zip_entries()[self.check(rel)]
        name = self.display(rel)
        if info.flag_bits & 0x1:
            raise FormatError("encrypted", f"{name}: an encrypted zip member; fastmask reads no passwords", path=rel)
        if whole:
            _check_inflated(name, rel, info.file_size, info.compress_size, declared=True)
        return info

    def read(self, rel: str) -> bytes:
        """All bytes of a file (refusing unsafe names, missing files -> missing_file).

        Only regular files, at most :data:`MAX_FILE_BYTES` (see the module docs).
        """
        if self.is_zip:
            info = self._zip_member(rel)
            try:
                return _read_member(self._zip(), info, self.display(rel), rel)
            except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as e:
                # a corrupt zip member (bad CRC, truncated archive, unknown method) is this item's problem only
                msg = listed_name(str(e))
                code = "truncated" if "truncat" in msg.lower() or isinstance(e, EOFError) else "unreadable"
                raise FormatError(code, f"{self.display(rel)}: {msg}", path=rel) from None
        if self._loc is not None:
            self.check(rel)
            try:
                # fetched ahead by the engine when it could (see prefetch), else from --cache, else
                # read now: the same limit, the storage error codes
                return self._fetcher.read(self._object(rel))
            except FormatError as e:
                raise FormatError(e.code, e.message, path=rel) from None
        fd = self._open_fd(rel)
        try:
            return _read_all(fd, self.display(rel), rel)
        except OSError as e:
            msg = listed_name(str(e))
            code = "truncated" if "truncat" in msg.lower() else "unreadable"
            raise FormatError(code, f"{self.display(rel)}: {msg}", path=rel) from None
        finally:
            os.close(fd)

    def open(self, rel: str) -> IO[bytes]:
        """A binary stream (for header-only reads), of a regular file only."""
        if self.is_zip:
            info = self._zip_member(rel, whole=False)  # a header is read, not the member
            try:
                return self._zip().open(info)
            except (OSError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as e:
                raise FormatError("unreadable", f"{self.display(rel)}: {e}", path=rel) from None
        if self._loc is not None:
            self.check(rel)
            try:
                return _open_remote(self._object(rel), _HEADER_BLOCK)
            except FormatError as e:
                raise FormatError(e.code, e.message, path=rel) from None
        fd = self._open_fd(rel)
        try:
            check_regular(fd, self.display(rel), rel, whole=False)  # a header is read, not the file
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def local_path(self, rel: str) -> str | None:
        """OS path of a file in a folder root (None inside a zip or at a URL)."""
        return None if self.is_zip or self._loc is not None else os.path.join(self.path, *self._full(rel).split("/"))


def _check_inflated(name: str, rel: str, size: int, compressed: int, *, declared: bool) -> None:
    """Refuse a zip member by its inflated ``size`` (declared, or read so far)."""
    what = "declares" if declared else "inflates to"
    if size > ZIP_RATIO_MIN_BYTES and size > MAX_ZIP_RATIO * max(compressed, 1):
        raise FormatError("zip_bomb", f"{name}: zip member {what} {size} bytes from {compressed} compressed "
                          f"({size // max(compressed, 1)}x, above the limit of {MAX_ZIP_RATIO}x: "
                          "$FASTMASK_MAX_ZIP_RATIO); not read", path=rel)
    if size > MAX_FILE_BYTES:
        raise FormatError("too_large", f"{name}: zip member {what} {size} bytes, above the read limit of "
                          f"{MAX_FILE_BYTES} bytes ($FASTMASK_MAX_FILE_BYTES); not read", path=rel)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, rel: str) -> bytes:
    """A zip member's bytes, inflated a chunk at a time and refused as soon as they pass a limit
    (whatever the entry declares)."""
    if info.file_size <= _ZIP_CHUNK:
        data = zf.read(info)  # small (declared): one call; still checked below
        _check_inflated(name, rel, len(data), info.compress_size, declared=False)
        return data
    parts, total = [], 0
    with zf.open(info) as f:
        while True:
            chunk = f.read(_ZIP_CHUNK)
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            _check_inflated(name, rel, total, info.compress_size, declared=False)
            parts.append(chunk)


# ---------------------------------------------------------------------------- roots at a URL

_ZIP_BLOCK = 4 << 20  # bytes a request while reading a zip object (its directory, then members)
_HEADER_BLOCK = 64 << 10  # bytes a request for an image header (and the tail checked for its end)
_LIST_CHUNK = 65536


class _Listing:
    """The keys below a URL root (relative names, sorted), from one paged listing, kept as an
    Arrow array (a million keys: tens of MB, not hundreds); ``reports``: the folders (``dir/``)
    holding a fastmask report's ``run.json``."""

    def __init__(self, keys, reports: list[str], problems: dict):
        self.keys = keys
        self.reports = reports
        self.problems = problems

    @classmethod
    def of(cls, root: "Root") -> "_Listing":
        import pyarrow as pa

        from ..storage import MissingBackendError, error_code

        names: list[str] = []
        problems = {}
        try:
            names = [name for name, _size in root._loc.find()]
        except MissingBackendError:
            raise
        except Exception as e:  # noqa: BLE001 - a prefix that cannot be listed is a listing problem, as locally
            code = error_code(e, root.path)
            why = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            problems[("unlisted_path", root.path)] = (
                f"{root.path}: cannot list this prefix ({code}: {why}); its objects are not items")
        keys = pa.array(sorted(names), pa.string())
        reports = []
        for name in names:
            if name.endswith("/run.json") and _is_report_object(root._loc / name):
                reports.append(name[: -len("run.json")])
        return cls(keys, reports, problems)

    def _bisect(self, key: str) -> int:
        keys = self.keys
        lo, hi = 0, len(keys)
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[mid].as_py() < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def has(self, key: str) -> bool:
        i = self._bisect(key)
        return i < len(self.keys) and self.keys[i].as_py() == key

    def has_prefix(self, pre: str) -> bool:
        i = self._bisect(pre)
        return i < len(self.keys) and self.keys[i].as_py().startswith(pre)

    def under(self, pre: str) -> Iterator[str]:
        """The keys starting with ``pre`` (a contiguous run of the sorted keys)."""
        i, n = (self._bisect(pre), len(self.keys)) if pre else (0, len(self.keys))
        while i < n:
            chunk = self.keys.slice(i, _LIST_CHUNK).to_pylist()
            for k in chunk:
                if not k.startswith(pre):
                    return
                yield k
            i += len(chunk)

    def top(self) -> list[str]:
        return sorted({k.split("/", 1)[0] for k in self.keys.to_pylist()})


def ask(question, loc: Location, *args):
    """``question(*args)`` about a URL (``loc.is_file``, ``loc.iterdir``...), its storage faults
    (after the retries of transient ones) as a :class:`FormatError` with the storage code
    (``forbidden``, ``remote_error``...) instead of the filesystem's own exception.

    >>> ask(Location("/").is_dir, Location("/"))
    True
    """
    from ..storage import MissingBackendError, error_code

    try:
        return question(*args)
    except (FormatError, MissingBackendError):
        raise
    except Exception as e:  # noqa: BLE001 - classified: a fault of the store is this location's error
        code = error_code(e, loc.url)
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise FormatError("remote_error" if code == "transient" else code, f"{loc.url}: {why}",
                          path=loc.url) from None


def _remote_key(full: str) -> str:
    """The object key of a listed name (undoes :func:`listed_name`'s escapes: keys are UTF-8 text)."""
    if "\\x" not in full:
        return full
    raw = _unescape(full)
    return full if any("\udc80" <= c <= "\udcff" for c in raw) else raw


def _is_report_object(loc: Location) -> bool:
    """Whether the object ``loc`` is a fastmask report's ``run.json``."""
    try:
        return is_report_run_json(loc.read_bytes(limit=_RUN_JSON_MAX))
    except FormatError:
        return False


_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("fastmask_shared_roots", default=None)
_DEFERRED: contextvars.ContextVar[bool] = contextvars.ContextVar("fastmask_deferred_listing", default=False)


@contextlib.contextmanager
def deferred_listing():
    """Within the block, a URL root not listed yet answers :meth:`Root.isdir` with one small
    request (is anything below that prefix) instead of listing the whole root: opening a
    dataset whose saved manifest will be reused (a resumed run) lists nothing.

    >>> with deferred_listing():
    ...     pass
    """
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def _prefix_has_objects(loc: Location) -> bool:
    from ..storage import prefix_has_objects

    return prefix_has_objects(loc)


@contextlib.contextmanager
def sharing_listings():
    """Within the block, roots made for the same URL (with the same options) share one listing
    and one zip handle: detecting a layout, then opening the dataset, lists a prefix once.

    >>> with sharing_listings():
    ...     pass
    """
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _shared_root(root: "Root") -> "Root | None":
    """The root already made for ``root``'s URL in a :func:`sharing_listings` block (None: the first)."""
    shared = _SHARED.get()
    if shared is None:
        return None
    key = (root.path, json.dumps(root._loc.options, sort_keys=True, default=str))
    twin = shared.get(key)
    if twin is None:
        shared[key] = root
    return twin


def _remote_location(path) -> Location | None:
    """The Location of a URL root (no trailing slash), None for a local path."""
    if isinstance(path, Location):
        return Location(path.url.rstrip("/"), path.options) if path.is_remote else None
    if isinstance(path, (str, os.PathLike)) and is_url(os.fspath(path)):
        return Location(os.fspath(path).rstrip("/"))
    return None


def _local_target(path) -> str:
    """A local path given as a path, a ``file://`` URL or a local :class:`Location`."""
    text = os.fspath(path)
    return (text[len("file://"):] or "/") if text[:7].lower() == "file://" else text


def _open_remote(loc: Location, block_size: int) -> IO[bytes]:
    from ..storage import open_object

    return open_object(loc, block_size)


def norm_target(path: str | os.PathLike | Location) -> str:
    """A dataset path as fastmask records it: an absolute local path, or the URL as given
    (without a trailing slash).

    >>> norm_target("s3://bucket/voc/"), norm_target("file:///data/voc")
    ('s3://bucket/voc', '/data/voc')
    """
    loc = _remote_location(path)
    if loc is not None:
        return loc.url
    return os.path.abspath(_local_target(path))


def path_kind(path: str) -> str | None:
    """``"file"``, ``"dir"`` or None (nothing, or neither) at a local path or a URL (an object
    is a file, a prefix holding objects a folder).

    >>> path_kind("/"), path_kind("/no/such/thing")
    ('dir', None)
    """
    loc = _remote_location(path)
    if loc is None:
        return "file" if os.path.isfile(path) else "dir" if os.path.isdir(path) else None
    if ask(loc.is_file, loc):
        return "file"
    return "dir" if ask(loc.is_dir, loc) else None


def is_file_target(path: str) -> bool:
    """``os.path.isfile`` for a local path; for a URL, whether an object is there.

    >>> is_file_target("/"), is_file_target("/dev/null")
    (False, False)
    """
    return path_kind(path) == "file"


def read_path(path: str) -> bytes:
    """All bytes of a regular local file or of an object at a URL (at most :data:`MAX_FILE_BYTES`;
    ``missing_file`` / ``not_found``, ``too_large``, ...).

    >>> read_path("/dev/null")
    Traceback (most recent call last):
    ...
    fastmask.formats.errors.FormatError: [not_a_file] /dev/null: a character device, not a regular file; not read
    """
    loc = _remote_location(path)
    if loc is None:
        return read_regular_file(_local_target(path))
    return loc.read_bytes()


def open_path(path: str, block_size: int = _ZIP_BLOCK) -> IO[bytes]:
    """A seekable binary file of a local path or an object at a URL (read ``block_size`` bytes a request).

    >>> with open_path("/dev/null") as f: f.read(3)
    b''
    """
    loc = _remote_location(path)
    if loc is None:
        return open(_local_target(path), "rb")
    return _open_remote(loc, block_size)


def join_target(base: str, *names: str) -> str:
    """``base`` / ``names`` for a local path (``os.path.join``) or a URL (``/``).

    >>> join_target("s3://b/coco", "annotations", "x.json")
    's3://b/coco/annotations/x.json'
    """
    if is_url(base):
        return "/".join([base.rstrip("/"), *(n.strip("/") for n in names)])
    return os.path.join(base, *names)


def parent_target(path: str) -> str:
    """The folder (prefix) holding a local path or a URL.

    >>> parent_target("s3://b/coco/x.json"), parent_target("/data/x.json")
    ('s3://b/coco', '/data')
    """
    if is_url(path):
        return str(Location(path.rstrip("/")).parent)
    return os.path.dirname(path)


def relative_target(path: str, start: str) -> str:
    """``path`` relative to the folder ``start`` (for messages), local or URL.

    >>> relative_target("s3://b/coco/annotations/x.json", "s3://b/coco")
    'annotations/x.json'
    """
    if is_url(path):
        pre = start.rstrip("/") + "/"
        return path[len(pre):] if path.startswith(pre) else path
    return os.path.relpath(path, start)
