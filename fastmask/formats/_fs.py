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

File names that are not valid UTF-8 (possible on Linux) are listed with their
undecodable bytes as ``\\xHH`` escapes (``bad\\xffname.png``), so they fit in
reports (Arrow strings are UTF-8), and are read under their real name.
"""
from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
import zipfile
from collections.abc import Iterator
from typing import IO

from .errors import FormatError

__all__ = ["Root", "unsafe_reason", "is_junk"]

_DRIVE = re.compile(r"^[A-Za-z]:")
# Reading a file with O_NOFOLLOW (where the OS has it) refuses a symlink in the same system
# call as the open, instead of an lstat before every read; a refused symlink is then
# checked (it may point inside the root) and read.  os.open + os.read also skips the file
# object Python's open() builds: ~7 us less per file.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _read_all(fd: int) -> bytes:
    """The rest of an open file: one read when its size is known and holds still."""
    size = os.fstat(fd).st_size
    data = os.read(fd, size + 1)  # one byte more than the size: notices a file that grew
    if len(data) == size:
        return data
    parts = [data]
    while True:  # grew, shrank, or a short read (some network file systems): read to EOF
        more = os.read(fd, max(size, 1 << 16))
        if not more:
            return b"".join(parts)
        parts.append(more)
_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def listed_name(name: str) -> str:
    """A name as listed: bytes that are not UTF-8 (surrogate-escaped by ``os``) become ``\\xHH``.

    >>> listed_name(os.fsdecode(b"bad\\xffname.png"))
    'bad\\\\xffname.png'
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def _os_name(p: str) -> str:
    """The file system's name for a listed path (undoes :func:`listed_name` when needed)."""
    if "\\x" not in p or os.path.lexists(p):
        return p
    raw = _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), p)
    return raw if os.path.lexists(raw) else p


def unsafe_reason(name: str) -> str | None:
    """Why a relative name may not be read under a root (None when it is fine).

    >>> unsafe_reason("masks/a.png") is None, unsafe_reason("../etc/passwd"), unsafe_reason("/abs")
    (True, "contains '..'", 'is absolute')
    """
    n = name.replace("\\", "/")
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


class Root:
    """A folder or a zip file, optionally narrowed to a sub-folder ``base``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("hi")
    >>> r = Root(d); r.files(), r.read("a.txt")
    (['a.txt'], b'hi')
    """

    def __init__(self, path: str | os.PathLike, base: str = ""):
        self.path = os.path.abspath(os.fspath(path))
        self.base = base.strip("/")
        self.is_zip = os.path.isfile(self.path) and zipfile.is_zipfile(self.path)
        if not self.is_zip and not os.path.isdir(self.path):
            raise FormatError("missing_file", f"{self.path}: no such folder or zip file", path=self.path)
        self._zf: zipfile.ZipFile | None = None
        self._zpid: int | None = None
        self._real: str | None = None
        self._real_dirs: dict[str, str] = {}

    # pickling: paths only; zip handles and caches are per process
    def __getstate__(self):
        return {"path": self.path, "base": self.base, "is_zip": self.is_zip}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._zf = None
        self._zpid = None
        self._real = None
        self._real_dirs = {}

    def __repr__(self):
        return f"Root({self.path!r}{', base=' + repr(self.base) if self.base else ''})"

    def sub(self, base: str) -> "Root":
        """The same root narrowed to a sub-folder."""
        r = Root.__new__(Root)
        r.__setstate__({"path": self.path, "base": posixpath.join(self.base, base).strip("/") if base else self.base,
                        "is_zip": self.is_zip})
        return r

    # ------------------------------------------------------------------ zip
    def _zip(self) -> zipfile.ZipFile:
        pid = os.getpid()
        if self._zf is None or self._zpid != pid:  # a forked child must not share the parent's handle
            try:
                self._zf = zipfile.ZipFile(self.path)
            except (OSError, zipfile.BadZipFile) as e:
                raise FormatError("unreadable", f"{self.path}: {e}", path=self.path) from None
            self._zpid = pid
        return self._zf

    def _full(self, rel: str) -> str:
        return posixpath.join(self.base, rel) if self.base else rel

    def display(self, rel: str) -> str:
        """A human/absolute name: ``/x/y.zip!dir/a.png`` or ``/x/dir/a.png``."""
        full = self._full(rel)
        return f"{self.path}!{full}" if self.is_zip else os.path.join(self.path, *full.split("/"))

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
            for info in self._zip().infolist():
                name = info.filename
                if info.is_dir() or not name.startswith(pre):
                    continue
                rel = name[blen:]
                sub = name[len(pre):]
                if not recursive and "/" in sub.replace("\\", "/"):
                    continue
                if unsafe_reason(rel) is None and is_junk(rel):
                    continue
                out.append(rel)
            yield out
            return
        top = os.path.join(self.path, *prefix.split("/")) if prefix else self.path
        if not os.path.isdir(top):
            return
        baselen = len(os.path.join(self.path, *self.base.split("/")) if self.base else self.path) + 1
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
            yield [listed_name(os.path.join(dirpath, f)[baselen:].replace(os.sep, "/"))
                   for f in filenames if not f.startswith(".")]
            if not recursive:
                break

    def isdir(self, rel: str) -> bool:
        full = self._full(rel).strip("/")
        if self.is_zip:
            pre = full + "/"
            return any(n.startswith(pre) for n in self._zip().namelist())
        return os.path.isdir(os.path.join(self.path, *full.split("/")))

    def top_dirs(self) -> list[str]:
        """Names of the top-level folders (and files) of a zip, for base detection."""
        if self.is_zip:
            return sorted({n.split("/", 1)[0] for n in self._zip().namelist() if n and not is_junk(n)})
        return sorted(os.listdir(self.path))

    # ------------------------------------------------------------------ reading
    def check(self, rel: str, *, links: bool = True) -> str:
        """Validate a relative name; return the OS path (folder) or the zip entry name.

        ``links=False`` skips the test of the file itself being a symlink: for a caller that
        opens it with ``O_NOFOLLOW`` and checks a symlink only when the open refuses one.
        """
        why = unsafe_reason(rel)
        if why:
            raise FormatError("path_outside_root", f"{self.display(rel)}: path {why}; refused", path=rel)
        full = self._full(rel)
        if self.is_zip:
            try:
                info = self._zip().getinfo(full)
            except KeyError:
                raise FormatError("missing_file", f"{self.display(rel)}: no such entry", path=rel) from None
            if stat.S_ISLNK(info.external_attr >> 16):
                raise FormatError("path_outside_root", f"{self.display(rel)}: zip entry is a symlink; refused",
                                  path=rel)
            return full
        p = _os_name(os.path.join(self.path, *full.split("/")))
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

    def _inside(self, real: str, p: str, rel: str) -> str:
        if real != self._real and not real.startswith(self._real.rstrip(os.sep) + os.sep):
            raise FormatError("path_outside_root",
                              f"{listed_name(p)}: resolves to {listed_name(real)}, outside the dataset root "
                              f"{listed_name(self._real)}; refused", path=rel)
        return real

    def exists(self, rel: str) -> bool:
        """True when ``rel`` is a safe, existing file (unsafe names are 'existing but refused': True)."""
        if unsafe_reason(rel):
            return True  # exists as far as listing goes; read() refuses it
        full = self._full(rel)
        if self.is_zip:
            try:
                self._zip().getinfo(full)
                return True
            except KeyError:
                return False
        return os.path.isfile(_os_name(os.path.join(self.path, *full.split("/"))))

    def read(self, rel: str) -> bytes:
        """All bytes of a file (refusing unsafe names, missing files -> missing_file)."""
        where = self.check(rel, links=not _NOFOLLOW)  # (a zip entry is checked before links matter)
        try:
            if self.is_zip:
                return self._zip().read(where)
            if _NOFOLLOW:
                try:
                    fd = os.open(where, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.EMLINK) or not os.path.islink(where):
                        raise
                    # a symlink: read it only when it resolves inside the root
                    self._inside(os.path.realpath(where), where, rel)
                    fd = os.open(where, os.O_RDONLY | _CLOEXEC)
                try:
                    return _read_all(fd)
                finally:
                    os.close(fd)
            with open(where, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise FormatError("missing_file", f"{self.display(rel)}: no such file", path=rel) from None
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            # a corrupt zip member (bad CRC, truncated archive) is this item's problem only
            msg = listed_name(str(e))
            code = "truncated" if "truncat" in msg.lower() or isinstance(e, EOFError) else "unreadable"
            raise FormatError(code, f"{self.display(rel)}: {msg}", path=rel) from None

    def open(self, rel: str) -> IO[bytes]:
        """A binary stream (for header-only reads)."""
        where = self.check(rel)
        if self.is_zip:
            return self._zip().open(where)
        try:
            return open(where, "rb")
        except FileNotFoundError:
            raise FormatError("missing_file", f"{self.display(rel)}: no such file", path=rel) from None
        except OSError as e:
            raise FormatError("unreadable", f"{self.display(rel)}: {e}", path=rel) from None

    def local_path(self, rel: str) -> str | None:
        """OS path of a file in a folder root (None inside a zip)."""
        return None if self.is_zip else os.path.join(self.path, *self._full(rel).split("/"))
