"""Every byte fastmask reads or writes: local paths and URLs, in one place.

A :class:`Location` names a file or a folder, local (``/data/voc``, ``file:///data/voc``)
or remote (``s3://bucket/voc``, ``gs://bucket/voc``, ``https://host/a.png``: any fsspec
URL). Readers, writers, the report sink and the lock ask it, so a URL works wherever a
path does and the rules below hold everywhere:

- **Reads** return whole objects of at most :data:`MAX_FILE_BYTES` (``too_large``); local
  reads accept regular files only (``not_a_file``). Remote reads are retried with
  exponential backoff on transient faults (timeouts, connection resets, HTTP 429 and 5xx),
  at most :data:`RETRIES` times; a permanent fault becomes a :class:`FormatError` with a
  stable code (:func:`error_code`): ``missing_file`` (local) / ``not_found`` (remote),
  ``forbidden``, ``expired_url`` (a signed URL past its expiry), ``remote_error``.
- **Writes** are atomic: a local file is written to a hidden temporary name, flushed and
  renamed; an object is uploaded in one request (or a multipart upload completed at
  close), which object stores make visible whole or not at all.
- **Folders** of an object store are prefixes: ``mkdir`` is a no-op, listing is paged
  (``find``) and yields ``(relative name, size)``.
- **Options** (credentials, endpoints, HTTP headers) are fsspec's ``storage_options``, the
  dict pandas and Dask take; ``--storage-options JSON`` sets the process default
  (:func:`set_default_options`); a :class:`Location` captures them when made, so they
  travel with it to Dask workers. Credentials also come from the usual places (the
  environment, e.g. ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``; config files).

A URL whose filesystem is not installed raises :class:`MissingBackendError` naming the
extra to install (``pip install 'fastmask-seg[s3]'``).

>>> import tempfile
>>> out = Location(tempfile.mkdtemp()) / "report"
>>> (out / "run.json").write_json({"status": "complete"})
>>> (out / "run.json").read_json()
{'status': 'complete'}
>>> sorted(name for name, _ in out.find())
['run.json']
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import posixpath
import random
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["Location", "location", "is_url", "MissingBackendError", "set_default_options",
           "default_options", "error_code", "MAX_FILE_BYTES", "RETRIES",
           "scoped_options", "read_object", "Fetcher", "set_fetch_defaults", "prefetching"]

#: Transient faults are retried this many times (``$FASTMASK_RETRIES``, default 4), waiting
#: 0.1 s, 0.2 s, 0.4 s ... (with jitter) between attempts.
RETRIES = int(os.environ.get("FASTMASK_RETRIES", "4") or 4)
_BACKOFF = 0.1

#: the extra that brings each URL scheme's filesystem
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

_default_options: dict[str, Any] = {}


def _max_bytes() -> int:
    from .formats._fs import MAX_FILE_BYTES as limit  # one limit for every read
    return limit


class MissingBackendError(ImportError):
    """A URL whose fsspec filesystem is not installed; the message names the extra."""


def set_default_options(options: dict[str, Any] | None) -> None:
    """Set the storage options every new :class:`Location` gets (``--storage-options``).

    >>> set_default_options({"anon": True}); default_options()
    {'anon': True}
    >>> set_default_options(None)
    """
    global _default_options
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"storage options must be a dict (JSON object), got {type(options).__name__}")
    _default_options = dict(options or {})


def default_options() -> dict[str, Any]:
    """The process-wide storage options (a copy)."""
    return dict(_default_options)


def is_url(target: str | os.PathLike) -> bool:
    """True for a URL with a scheme other than ``file``.

    >>> is_url("s3://b/k"), is_url("/data/x"), is_url("file:///data/x")
    (True, False, False)
    """
    m = _SCHEME.match(os.fspath(target)) if isinstance(target, (str, os.PathLike)) else None
    return bool(m) and m.group(1).lower() != "file"


def _local_path(target: str) -> str:
    if target.lower().startswith("file://"):
        return target[len("file://"):] or "/"
    return target


class Location:
    """A file or folder, local or remote, with the operations fastmask needs.

    ``Location("s3://bucket/voc") / "SegmentationClass" / "a.png"`` joins with ``/``.
    Local locations keep their path as given (``str(loc)``); remote ones their URL.

    >>> loc = Location("s3://bucket/voc") / "masks" / "a.png"
    >>> str(loc), loc.name, str(loc.parent), loc.is_remote
    ('s3://bucket/voc/masks/a.png', 'a.png', 's3://bucket/voc/masks', True)
    """

    __slots__ = ("url", "options", "_fs_cache")

    def __init__(self, target: str | os.PathLike | Location, options: dict[str, Any] | None = None):
        if isinstance(target, Location):
            self.url = target.url
            self.options = dict(target.options if options is None else options)
        else:
            text = os.fspath(target)
            self.url = text if is_url(text) else _local_path(text)
            self.options = default_options() if options is None else dict(options)
        self._fs_cache = None

    # -- identity -----------------------------------------------------------------------
    def __getstate__(self):
        return {"url": self.url, "options": self.options}

    def __setstate__(self, state):
        self.url, self.options, self._fs_cache = state["url"], state["options"], None

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and self.url == other.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __fspath__(self) -> str:
        if self.is_remote:
            raise TypeError(f"{self.url} is a URL, not a local path")
        return self.url

    @property
    def is_remote(self) -> bool:
        """True for a URL (s3://, gs://, https://, ...)."""
        return is_url(self.url)

    @property
    def local(self) -> str | None:
        """The local path, or ``None`` for a URL."""
        return None if self.is_remote else self.url

    def __truediv__(self, rel: str) -> Location:
        rel = os.fspath(rel)
        if self.is_remote:
            url = self.url.rstrip("/") + "/" + rel.lstrip("/") if rel else self.url
        else:
            url = os.path.join(self.url, rel)
        return Location(url, self.options)

    joinpath = __truediv__

    @property
    def name(self) -> str:
        """The last part of the path (without a URL's query string)."""
        return posixpath.basename(self._path_part().rstrip("/")) if self.is_remote else os.path.basename(
            self.url.rstrip(os.sep))

    @property
    def parent(self) -> Location:
        """The folder (prefix) holding this location."""
        if not self.is_remote:
            return Location(os.path.dirname(self.url.rstrip(os.sep)) or ".", self.options)
        scheme, rest = self.url.split("://", 1)
        rest = rest.split("?", 1)[0].rstrip("/")
        head = rest.rsplit("/", 1)[0] if "/" in rest else rest
        return Location(f"{scheme}://{head}", self.options)

    def _path_part(self) -> str:
        return self.url.split("://", 1)[1].split("?", 1)[0] if self.is_remote else self.url

    # -- the filesystem -----------------------------------------------------------------
    @property
    def fs(self):
        """The fsspec filesystem and path of a URL: ``(fs, path)`` (remote only)."""
        if self._fs_cache is None:
            self._fs_cache = _filesystem(self.url, self.options)
        return self._fs_cache

    # -- reading ------------------------------------------------------------------------
    def read_bytes(self, limit: int | None = None) -> bytes:
        """All bytes of the file: at most ``limit`` (default :data:`MAX_FILE_BYTES`), else
        ``too_large``; faults as :class:`FormatError` (see :func:`error_code`)."""
        limit = _max_bytes() if limit is None else limit
        if not self.is_remote:
            from .formats._fs import read_regular_file
            return read_regular_file(self.url)  # regular files only, same limit
        fs, path = self.fs
        data = self._call(_read_at_most, fs, path, limit + 1)  # one request, never more than limit + 1 bytes
        if len(data) > limit:
            raise _format_error("too_large", f"{self.url}: more than {limit} bytes, above the read limit "
                                "($FASTMASK_MAX_FILE_BYTES)", self.url)
        return data

    def read_text(self) -> str:
        """The file as UTF-8 text."""
        return self.read_bytes().decode("utf-8")

    def read_json(self) -> Any:
        """The file parsed as JSON."""
        return json.loads(self.read_bytes())

    def open(self, mode: str = "rb") -> IO[bytes]:
        """A seekable binary file object for reading (zip files, Parquet footers), or for a
        non-atomic write (``"wb"``; prefer :meth:`writer`)."""
        if not self.is_remote:
            return open(self.url, mode)
        fs, path = self.fs
        return self._call(fs.open, path, mode)

    def size(self) -> int:
        """The size in bytes (``FileNotFoundError`` when missing)."""
        if not self.is_remote:
            return os.stat(self.url).st_size
        fs, path = self.fs
        return self._call(fs.size, path, raw=True)

    def exists(self) -> bool:
        """True when a file or folder (a non-empty prefix) is there."""
        if not self.is_remote:
            return os.path.exists(self.url)
        fs, path = self.fs
        fs.invalidate_cache(path)
        return bool(self._call(fs.exists, path, raw=True))

    def is_file(self) -> bool:
        """True for a file (an object)."""
        if not self.is_remote:
            return os.path.isfile(self.url)
        fs, path = self.fs
        fs.invalidate_cache(path)
        return bool(self._call(fs.isfile, path, raw=True))

    def is_dir(self) -> bool:
        """True for a folder (a prefix holding objects)."""
        if not self.is_remote:
            return os.path.isdir(self.url)
        fs, path = self.fs
        fs.invalidate_cache(path)
        return bool(self._call(fs.isdir, path, raw=True))

    def iterdir(self) -> list[str]:
        """Names directly inside this folder (files and sub-folders), sorted."""
        if not self.is_remote:
            return sorted(os.listdir(self.url))
        fs, path = self.fs
        base = path.rstrip("/")
        fs.invalidate_cache(base)  # another process (a worker) may have written since
        try:
            entries = self._call(fs.ls, base, detail=False, raw=True)
        except FileNotFoundError:
            return []
        return sorted({posixpath.basename(e.rstrip("/")) for e in entries if e.rstrip("/") != base})

    def find(self) -> Iterator[tuple[str, int]]:
        """Every file below this folder, recursively: ``(name relative to it, size)``.

        Object stores are listed page by page (S3: 1,000 keys per request), never one
        request per object; symlinked local folders are not followed.
        """
        if not self.is_remote:
            root = self.url
            for dirpath, _dirs, files in os.walk(root):
                for name in files:
                    full = os.path.join(dirpath, name)
                    try:
                        size = os.lstat(full).st_size
                    except OSError:
                        continue
                    yield os.path.relpath(full, root).replace(os.sep, "/"), size
            return
        fs, path = self.fs
        base = path.rstrip("/") + "/"
        fs.invalidate_cache(base.rstrip("/"))  # another process (a worker) may have written since
        try:
            found = self._call(fs.find, base, detail=True, raw=True)
        except FileNotFoundError:
            return
        for full, info in sorted(found.items()):
            if info.get("type", "file") == "directory" or not full.startswith(base):
                continue
            yield full[len(base):], int(info.get("size") or 0)

    # -- writing ------------------------------------------------------------------------
    def mkdir(self) -> None:
        """Create this folder and its parents (object stores have no folders: nothing)."""
        if not self.is_remote:
            os.makedirs(self.url, exist_ok=True)

    def write_bytes(self, data: bytes | memoryview) -> None:
        """Write the whole file atomically (local: temporary name, fsync, rename; remote:
        one upload). Parent folders are created."""
        if not self.is_remote:
            _write_local_atomic(self.url, data)
            return
        fs, path = self.fs
        self._call(fs.pipe_file, path, bytes(data), raw=True)

    def write_text(self, text: str) -> None:
        """Write UTF-8 text atomically."""
        self.write_bytes(text.encode("utf-8"))

    def write_json(self, obj: Any) -> None:
        """Write ``obj`` as indented, key-sorted, strict JSON atomically."""
        self.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")

    @contextlib.contextmanager
    def writer(self):
        """A binary file to stream into; it appears at this location, whole, only when the
        block ends without an error (local: renamed into place; remote: uploaded at close).

        >>> import tempfile
        >>> loc = Location(tempfile.mkdtemp()) / "a.txt"
        >>> with loc.writer() as f:
        ...     _ = f.write(b"abc")
        >>> loc.read_bytes()
        b'abc'
        """
        if not self.is_remote:
            with local_atomic_output(self.url, durable=False, make_parents=True) as tmp:
                with open(tmp, "wb") as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
            return
        # Remote: spool to a local temporary file, then one upload (multipart for large
        # files, completed at the end): a failed block uploads nothing.
        import tempfile
        fd, tmp = tempfile.mkstemp(prefix="fastmask-upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            fs, path = self.fs
            self._call(fs.put_file, tmp, path, raw=True)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def unlink(self, missing_ok: bool = True) -> None:
        """Delete this file."""
        try:
            if not self.is_remote:
                os.unlink(self.url)
            else:
                fs, path = self.fs
                self._call(fs.rm_file, path, raw=True)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Delete this folder and everything below it (missing: nothing)."""
        if not self.is_remote:
            if os.path.isdir(self.url) and not os.path.islink(self.url):
                shutil.rmtree(self.url)
            elif os.path.lexists(self.url):
                os.unlink(self.url)
            return
        fs, path = self.fs
        with contextlib.suppress(FileNotFoundError):
            self._call(fs.rm, path.rstrip("/"), recursive=True, raw=True)

    # -- faults -------------------------------------------------------------------------
    def _call(self, fn, *args, raw: bool = False, **kwargs):
        """``fn(*args)`` with retries of transient faults; permanent ones raise a
        :class:`FormatError` with its code, or (``raw=True``) the original exception."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - classified below
                code = error_code(e, self.url)
                if code == "transient" and attempt < RETRIES:
                    time.sleep(_BACKOFF * (2 ** attempt) * (0.5 + random.random()))
                    attempt += 1
                    continue
                if raw:
                    raise
                if code == "transient":
                    code = "remote_error"
                raise _format_error(code, f"{self.url}: {_describe(e)}"
                                    + (f" (after {attempt} retries)" if attempt else ""), self.url) from e


def location(target: str | os.PathLike | Location, options: dict[str, Any] | None = None) -> Location:
    """``target`` as a :class:`Location` (a Location passes through unchanged).

    >>> location("s3://b/x") / "y"
    Location('s3://b/x/y')
    """
    if isinstance(target, Location) and options is None:
        return target
    return Location(target, options)


# -- helpers ----------------------------------------------------------------------------

def _filesystem(url: str, options: dict[str, Any]):
    import fsspec
    scheme = _SCHEME.match(url).group(1).lower()
    options = scoped_options(url, options)  # sections per scheme; headers to http(s) only
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        extra = EXTRAS.get(scheme)
        hint = (f"pip install 'fastmask-seg[{extra}]'" if extra else "install the fsspec filesystem for it")
        raise MissingBackendError(f"{scheme}:// URLs need a filesystem that is not installed: {hint} ({e})") from None
    except ValueError as e:
        if "Protocol not known" in str(e):
            raise MissingBackendError(f"{scheme}:// is not a storage scheme fsspec knows ({url})") from None
        raise
    if scheme in ("http", "https"):
        path = url  # HTTP keeps the whole URL, query string (a signature) included
    return fs, path


def _read_at_most(fs, path: str, n: int) -> bytes:
    """The first ``n`` bytes of an object in one request: a ranged GET on object stores; a
    streamed GET over HTTP (a server may ignore ranges), stopped after ``n`` bytes."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("http", "https"):
        with fs.open(path, "rb", block_size=0) as f:  # streaming: no HEAD, no whole-body buffer
            return f.read(n)
    return fs.cat_file(path, start=0, end=n)


def _format_error(code: str, message: str, path: str):
    from .formats.errors import FormatError  # here: formats imports this module
    return FormatError(code, message, path=path)


def _describe(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN,
                     errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH}
_EXPIRED = re.compile(r"expired|expir(y|es) |request has expired|signature.*expire", re.I)


def _status(e: BaseException) -> int | None:
    for attr in ("status", "status_code", "code"):
        v = getattr(e, attr, None)
        if isinstance(v, int) and 100 <= v < 600:
            return v
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):  # botocore ClientError
        v = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(v, int):
            return v
    return None


def error_code(e: BaseException, url: str = "") -> str:
    """The stable code of a storage fault: ``not_found``, ``forbidden``, ``expired_url``,
    ``remote_error``, or ``"transient"`` for one worth retrying (timeouts, resets, 429, 5xx).

    >>> error_code(FileNotFoundError("x"), "s3://b/x"), error_code(PermissionError("x"), "s3://b/x")
    ('not_found', 'forbidden')
    >>> error_code(TimeoutError("slow"), "s3://b/x")
    'transient'
    """
    from .formats.errors import FormatError
    if isinstance(e, FormatError):
        return e.code
    remote = is_url(url)
    cause = e
    while cause is not None:  # s3fs wraps botocore's error; look through the chain
        status = _status(cause)
        text = f"{cause} {getattr(cause, 'message', '')}"
        if status in (401, 403) or isinstance(cause, PermissionError):
            return "expired_url" if _EXPIRED.search(text) or _signature_expired(url) else "forbidden"
        if status == 404 or isinstance(cause, FileNotFoundError):
            return "not_found" if remote else "missing_file"
        if status == 400 and _EXPIRED.search(text):
            return "expired_url"
        if status == 429 or (status is not None and status >= 500):
            return "transient"
        if isinstance(cause, (TimeoutError, ConnectionError)) or type(cause).__name__ in (
                "ServerTimeoutError", "ClientConnectionError", "ClientOSError", "ServerDisconnectedError",
                "ClientPayloadError", "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
            return "transient"
        if isinstance(cause, OSError) and cause.errno in _TRANSIENT_ERRNOS:
            return "transient"
        cause = cause.__cause__ or cause.__context__
    return "remote_error" if remote else "unreadable"


_SIGNED = re.compile(r"[?&](X-Amz-Date|X-Goog-Date)=(\d{8}T\d{6}Z).*?[?&]?(X-Amz-Expires|X-Goog-Expires)=(\d+)", re.I)
_EXPIRES = re.compile(r"[?&](Expires)=(\d{9,})", re.I)


def _signature_expired(url: str) -> bool:
    """True when ``url`` is a signed URL whose expiry (S3/GCS v4 ``X-*-Date`` + ``X-*-Expires``,
    or CloudFront / GCS v2 ``Expires=<epoch>``) has passed."""
    import calendar
    q = url.split("?", 1)[1] if "?" in url else ""
    if not q:
        return False
    params = {k.lower(): v for k, _, v in (p.partition("=") for p in q.split("&"))}
    now = time.time()
    for date_key, exp_key in (("x-amz-date", "x-amz-expires"), ("x-goog-date", "x-goog-expires")):
        if date_key in params and exp_key in params:
            try:
                start = calendar.timegm(time.strptime(params[date_key], "%Y%m%dT%H%M%SZ"))
                return start + int(params[exp_key]) < now
            except ValueError:
                return False
    if "expires" in params and params["expires"].isdigit():
        return int(params["expires"]) < now
    return False


def _tmp_name(path: str) -> str:
    d, name = os.path.split(path)
    return os.path.join(d, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod_like_open(path: str) -> None:
    # a temporary file may have been made 0600; an output gets what open() would give it
    with contextlib.suppress(OSError):
        if stat.S_IMODE(os.stat(path).st_mode) != 0o666 & ~_umask():
            os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def local_atomic_output(path: str | os.PathLike, *, durable: bool = True, make_parents: bool = False):
    """The one way a local file is written: a hidden temporary name beside ``path``
    (``.name.tmp-<pid>-<random>``, created empty with the mode ``open()`` gives under the
    umask) to write to, renamed over ``path`` when the block ends normally, removed when it
    raises: a killed or failed write never leaves half a file under the final name.
    ``durable``: the file is flushed to disk (fsync) before the rename (report parts, markers,
    ``run.json``); masks and converted datasets skip it (one fsync per mask would cost more
    than writing it).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> with local_atomic_output(p) as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open(p).read()
    'done'
    """
    path = os.fspath(path)
    if make_parents:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    os.close(fd)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_local_atomic(path: str | os.PathLike, data: bytes | memoryview, *, durable: bool = True,
                       make_parents: bool = True) -> None:
    """Write ``data`` to the local ``path`` through :func:`local_atomic_output`.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "sub", "x.bin"); write_local_atomic(p, b"ab"); open(p, "rb").read()
    b'ab'
    """
    # fsynced here, while the file is open (no second open for it)
    with local_atomic_output(path, durable=False, make_parents=make_parents) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())


_write_local_atomic = write_local_atomic


# -- outputs: the masks and datasets rasterize / convert / instances write -----------------
# Writers keep their own local path (a hidden temporary beside the target and a rename, no
# fsync per mask); these publish an output at a URL. A write fault that stays after the
# retries is a FormatError with the storage's code (forbidden, not_found for a missing
# bucket, remote_error), which the jobs turn into the item's error row.

def as_path(target: str | os.PathLike | Location):
    """A local target as a :class:`pathlib.Path` (what callers got before URLs), a URL as
    its :class:`Location`.

    >>> as_path("out/masks"), as_path("s3://b/out/masks")
    (PosixPath('out/masks'), Location('s3://b/out/masks'))
    """
    from pathlib import Path
    loc = location(target)
    return loc if loc.is_remote else Path(loc.url)


def put_bytes(target: str | Location, data: bytes | memoryview) -> None:
    """Write ``data`` as the object at ``target`` in one request: it appears whole or not at
    all (a local target: :meth:`Location.write_bytes`).

    >>> import tempfile
    >>> p = Location(tempfile.mkdtemp()) / "m.png"
    >>> put_bytes(p, b"png"); p.read_bytes()
    b'png'
    """
    target = location(target)
    if not target.is_remote:
        target.write_bytes(data)
        return
    fs, path = target.fs
    target._call(fs.pipe_file, path, bytes(data))


def put_file(local_path: str | os.PathLike, target: str | Location) -> None:
    """Upload the finished local file ``local_path`` as the object at ``target`` (one request,
    or a multipart upload completed at the end: visible whole or not at all). A local
    target gets a copy through a temporary name and a rename.

    >>> import tempfile, pathlib
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "a.zip"; _ = src.write_bytes(b"zip")
    >>> dst = Location(tempfile.mkdtemp()) / "b.zip"
    >>> put_file(src, dst); dst.read_bytes()
    b'zip'
    """
    target = location(target)
    if not target.is_remote:
        with open(local_path, "rb") as src, target.writer() as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return
    fs, path = target.fs
    target._call(fs.put_file, os.fspath(local_path), path)


@contextlib.contextmanager
def staged(target: str | Location):
    """A local temporary file name to write ``target``'s content to, for writers that need a
    path (a zip, a Parquet file, a streamed JSON): published at ``target`` by :func:`put_file`
    when the block ends without an error, never otherwise; removed in every case. The
    temporary file is in the system's temporary folder (``$TMPDIR``).

    >>> import tempfile
    >>> out = Location(tempfile.mkdtemp()) / "a.json"
    >>> with staged(out) as tmp:
    ...     _ = open(tmp, "w").write("{}")
    >>> out.read_text()
    '{}'
    """
    import tempfile
    target = location(target)
    fd, tmp = tempfile.mkstemp(prefix="fastmask-output-", suffix=posixpath.splitext(target.name)[1][:16])
    os.close(fd)
    try:
        yield tmp
        put_file(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# -- reading datasets at a URL: seekable object files, object versions (dataset roots, COCO cache) --

def open_object(loc: Location, block_size: int | None = None) -> IO[bytes]:
    """A seekable read-only file of ``loc`` that fetches ``block_size`` bytes a request (a zip's
    directory then its members, an image header); faults as :meth:`Location.open`.

    >>> import tempfile
    >>> loc = Location(tempfile.mkdtemp()) / "a.bin"; loc.write_bytes(b"abc")
    >>> with open_object(loc, 1 << 16) as f: f.read()
    b'abc'
    """
    if not loc.is_remote:
        return open(loc.url, "rb")
    fs, path = loc.fs
    return loc._call(fs.open, path, "rb", **({"block_size": block_size} if block_size else {}))


_VERSION_KEYS = ("ETag", "etag", "generation", "md5Hash", "LastModified", "last_modified", "updated", "mtime",
                 "created")


def object_version(loc: Location) -> tuple[int, str]:
    """``(size, version)`` of a file: what changes when it is replaced (a cache key). An object's
    version is its ETag (else its generation, checksum or modification time); a local file's,
    its modification time in nanoseconds.

    >>> import tempfile
    >>> loc = Location(tempfile.mkdtemp()) / "a.bin"; loc.write_bytes(b"abc")
    >>> object_version(loc)[0]
    3
    """
    if not loc.is_remote:
        st = os.stat(loc.url)
        return st.st_size, f"mtime_ns={st.st_mtime_ns}"
    fs, path = loc.fs
    info = loc._call(fs.info, path)
    size = int(info.get("size") or 0)
    for key in _VERSION_KEYS:
        if info.get(key) not in (None, ""):
            return size, f"{key}={info[key]}"
    return size, ""


def __getattr__(name: str):
    if name == "MAX_FILE_BYTES":
        return _max_bytes()
    raise AttributeError(name)


# ---------------------------------------------------------------------------------------
# Objects read one at a time (URL lists, platform masks by URL): options scoped per
# scheme, one GET per HTTP object (its error body classified), fetch-ahead within a shard
# (:func:`prefetching`), and an optional local cache (:class:`Fetcher`).
# ---------------------------------------------------------------------------------------

#: keys of ``--storage-options`` that hold the options of one URL scheme only
SCHEME_SECTIONS = ("http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "file")
_HTTP_ONLY = ("headers",)  # request options of HTTP: the other filesystems refuse them
#: objects fetched ahead per shard by default (``$FASTMASK_PREFETCH``; ``0`` = off)
DEFAULT_PREFETCH = 16
#: most bytes ``--cache DIR`` keeps (``$FASTMASK_CACHE_BYTES``, default 10 GiB); above it the
#: least recently used objects are deleted
DEFAULT_CACHE_BYTES = 10 << 30


def scoped_options(url: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The storage options that apply to ``url``: a section named after its scheme
    (``{"https": {"headers": ...}, "s3": {...}}``) is merged over the shared keys, other
    schemes' sections are dropped, and ``headers`` (an HTTP request option) goes to
    ``http(s)://`` only, so one ``--storage-options`` serves a list mixing schemes.

    >>> opts = {"headers": {"Authorization": "Bearer k"}, "s3": {"anon": True}}
    >>> scoped_options("s3://b/a.png", opts), scoped_options("https://h/a.png", opts)
    ({'anon': True}, {'headers': {'Authorization': 'Bearer k'}})
    """
    options = dict(options or {})
    m = _SCHEME.match(url)
    scheme = m.group(1).lower() if m else "file"
    out = {k: v for k, v in options.items() if k not in SCHEME_SECTIONS}
    if scheme not in ("http", "https"):
        for k in _HTTP_ONLY:
            out.pop(k, None)
    aliases = {"https": ("http", "https"), "http": ("http",), "gs": ("gcs", "gs"), "gcs": ("gs", "gcs"),
               "s3a": ("s3", "s3a")}.get(scheme, (scheme,))
    for key in aliases:
        section = options.get(key)
        if isinstance(section, dict):
            out.update(section)
    return out


class _HTTPStatusError(OSError):
    """An HTTP error answer, with its status and the start of its body (a signed URL's
    "Request has expired" is only said there)."""

    def __init__(self, status: int, reason: str, body: str, url: str):
        super().__init__(f"HTTP {status} {reason}: {body}".strip())
        self.status = status
        self.url = url


def _http_get(loc: Location, limit: int) -> bytes:
    """One GET of an ``http(s)://`` object through fsspec's session (its ``client_kwargs``
    and request options such as ``headers``): at most ``limit`` bytes."""
    from fsspec.asyn import sync
    fs, url = loc.fs

    async def get():
        session = await fs.set_session()
        async with session.get(fs.encode_url(url), **fs.kwargs) as r:
            if r.status >= 400:
                body = (await r.content.read(2048)).decode("utf-8", "replace")
                raise _HTTPStatusError(r.status, r.reason or "", " ".join(body.split())[:300], url)
            if r.content_length is not None and r.content_length > limit:
                raise _format_error("too_large", f"{url}: {r.content_length} bytes, above the read limit of {limit} "
                                    "bytes ($FASTMASK_MAX_FILE_BYTES)", url)
            parts, total = [], 0
            async for chunk in r.content.iter_chunked(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise _format_error("too_large", f"{url}: more than {limit} bytes", url)
                parts.append(chunk)
            return b"".join(parts)

    return sync(fs.loop, get)


def read_object(loc: Location) -> bytes:
    """All bytes of one object, remote faults retried and classified like
    :meth:`Location.read_bytes`; an ``http(s)://`` object costs one GET (no HEAD first:
    signed URLs are signed for GET only), its error body read for ``expired_url``.

    >>> import tempfile
    >>> p = Location(tempfile.mkdtemp()) / "a.bin"; p.write_bytes(b"xy"); read_object(p)
    b'xy'
    """
    if not loc.is_remote:
        return loc.read_bytes()
    if loc.url.split("://", 1)[0].lower() in ("http", "https"):
        return loc._call(_http_get, loc, _max_bytes())
    return loc.read_bytes()


def _env_prefetch() -> int:
    raw = os.environ.get("FASTMASK_PREFETCH", "").strip()
    try:
        return max(0, int(raw)) if raw else DEFAULT_PREFETCH
    except ValueError:
        return DEFAULT_PREFETCH


_fetch_defaults: dict[str, Any] = {}


def set_fetch_defaults(prefetch: int | None = None, cache: str | os.PathLike | None = None) -> None:
    """Set what new :class:`Fetcher` objects get (``--prefetch N``, ``--cache DIR``);
    ``None`` leaves ``$FASTMASK_PREFETCH`` (default 16) / ``$FASTMASK_CACHE`` (default none).

    >>> set_fetch_defaults(prefetch=4); Fetcher().prefetch
    4
    >>> set_fetch_defaults()
    """
    if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 0):
        raise ValueError(f"prefetch must be an integer >= 0, got {prefetch!r}")
    _fetch_defaults.clear()
    if prefetch is not None:
        _fetch_defaults["prefetch"] = prefetch
    if cache is not None:
        _fetch_defaults["cache"] = os.path.abspath(os.fspath(cache))


class Fetcher:
    """How a dataset reads objects named one by one (URL lists, platform masks by URL):
    the storage options captured when it was made, how many objects to fetch ahead in a
    shard (``prefetch``, 0 = none) and an optional local ``cache`` folder. Small and
    picklable: it travels with its dataset to pool and Dask workers.

    >>> import tempfile
    >>> f = Fetcher(prefetch=0); p = Location(tempfile.mkdtemp()) / "m.png"; p.write_bytes(b"PNG")
    >>> f.read(f.location(str(p)))
    b'PNG'
    """

    __slots__ = ("prefetch", "_cache", "options")

    def __init__(self, prefetch: int | None = None, cache: str | os.PathLike | None = None,
                 options: dict[str, Any] | None = None):
        self.prefetch = _fetch_defaults.get("prefetch", _env_prefetch()) if prefetch is None else int(prefetch)
        if cache is None:
            cache = _fetch_defaults.get("cache")
        # (a folder given here or by --cache travels with the fetcher; $FASTMASK_CACHE is read
        # where the objects are fetched: a worker on another machine uses its own)
        self._cache = os.path.abspath(os.fspath(cache)) if cache else None
        self.options = default_options() if options is None else dict(options)

    @property
    def cache(self) -> str | None:
        """The local cache folder: the one given (``--cache``), else ``$FASTMASK_CACHE`` of this process."""
        if self._cache:
            return self._cache
        env = os.environ.get("FASTMASK_CACHE")
        return os.path.abspath(env) if env else None

    def __getstate__(self):
        return {"prefetch": self.prefetch, "cache": self._cache, "options": self.options}

    def __setstate__(self, state):
        self.prefetch, self._cache, self.options = state["prefetch"], state["cache"], state["options"]

    def __repr__(self) -> str:
        return f"Fetcher(prefetch={self.prefetch}, cache={self.cache!r})"

    def location(self, url: str) -> Location:
        """``url`` as a :class:`Location` with this fetcher's storage options."""
        return Location(url, scoped_options(url, self.options) if is_url(url) else self.options)

    def read(self, loc: Location) -> bytes:
        """The object's bytes: fetched ahead for the current item (:func:`prefetching`),
        else from the cache, else read (and cached). Faults: :class:`FormatError` codes."""
        if not loc.is_remote:
            return loc.read_bytes()
        ahead = _ahead_take(loc.url)
        if ahead is not None:
            if isinstance(ahead, BaseException):
                raise ahead
            return ahead
        return self.fetch(loc)

    def fetch(self, loc: Location) -> bytes:
        """Read ``loc`` now (the cache first, when there is one)."""
        if self.cache:
            data = _cache_get(self.cache, loc.url)
            if data is not None:
                return data
        try:
            data = read_object(loc)
        except Exception as e:  # noqa: BLE001 - re-raised without the URL's query (a signature)
            raise _without_query(e, loc.url) from None
        if self.cache:
            _cache_put(self.cache, loc.url, data)
        return data


def _without_query(e: BaseException, url: str) -> BaseException:
    """``e`` with ``url``'s query string (a signature, a token) left out of its message."""
    from .formats.errors import FormatError
    if "?" not in url or not isinstance(e, FormatError):
        return e
    shown = url.split("?", 1)[0]
    return FormatError(e.code, e.message.replace(url, shown), path=shown)


# -- fetch-ahead within a shard -----------------------------------------------------------

import threading  # noqa: E402 - used by the fetch-ahead below only

_AHEAD = threading.local()


def _ahead_take(url: str):
    ready = getattr(_AHEAD, "ready", None)
    return ready.pop(url, None) if ready else None


def ahead_peek(url: str):
    """What the fetch-ahead got for ``url`` for the current item (its bytes, or the fault it
    met), without taking it; ``None`` when it was not fetched ahead."""
    ready = getattr(_AHEAD, "ready", None)
    return ready.get(url) if ready else None


class _Window:
    """The objects of a shard's rows, fetched ``depth`` ahead by a thread pool."""

    def __init__(self, plans: list[list], depth: int):
        from concurrent.futures import ThreadPoolExecutor
        self.flat = [(i, f, loc) for i, plan in enumerate(plans) for f, loc in plan]
        self.first = {}  # row -> index of its first object in flat
        for k, (i, _, _) in enumerate(self.flat):
            self.first.setdefault(i, k)
        self.depth, self.submitted, self.futures = depth, 0, {}
        self.pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="fastmask-fetch")

    def _fill(self, upto: int) -> None:
        # in flight or fetched but not yet used: at most ``depth`` objects (more only when
        # one row alone names more)
        while self.submitted < len(self.flat) and (self.submitted < upto or len(self.futures) < self.depth):
            i, f, loc = self.flat[self.submitted]
            self.futures[self.submitted] = self.pool.submit(_fetch_quietly, f, loc)
            self.submitted += 1

    @contextlib.contextmanager
    def row(self, i: int):
        start = self.first.get(i)
        if start is None:
            self._fill(0)
            yield
            return
        end = start
        while end < len(self.flat) and self.flat[end][0] == i:
            end += 1
        self._fill(end)
        _AHEAD.ready = {self.flat[k][2].url: self.futures.pop(k).result() for k in range(start, end)}
        self._fill(0)  # the next rows' objects start while this one is decoded
        try:
            yield
        finally:
            _AHEAD.ready = None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _fetch_quietly(fetcher: Fetcher, loc: Location):
    try:
        return fetcher.fetch(loc)
    except Exception as e:  # noqa: BLE001 - handed to the item's reader, which raises it
        return e


@contextlib.contextmanager
def prefetching(plan, rows: list):
    """Fetch the remote objects of ``rows`` ahead while they are processed in order.

    ``plan(row)`` lists the ``(fetcher, location)`` pairs the row's processing will read
    (``[]`` for a local row: then nothing changes); the context yields ``ready(i)``, a
    context manager to wrap around the processing of row ``i``: inside it,
    :meth:`Fetcher.read` of those objects returns the fetched bytes (or raises the fault
    the fetch met). At most ``max(fetcher.prefetch)`` objects are in flight or waiting,
    so memory stays bounded whatever the shard's size.

    >>> with prefetching(lambda row: [], [{"item_id": "a"}]) as ready:
    ...     with ready(0):
    ...         pass
    """
    plans = []
    for row in rows:
        try:
            found = plan(row) or []
        except Exception:  # noqa: BLE001 - the item's own read meets (and reports) the fault
            found = []
        seen, unique = set(), []
        for f, loc in found:
            if loc.is_remote and loc.url not in seen:
                seen.add(loc.url)
                unique.append((f, loc))
        plans.append(unique)
    depth = max((f.prefetch for p in plans for f, _ in p), default=0)
    if depth <= 0:
        yield _no_window
        return
    window = _Window(plans, depth)
    try:
        yield window.row
    finally:
        window.close()


@contextlib.contextmanager
def _no_window(i: int):
    yield


# -- the local cache (--cache DIR) ----------------------------------------------------------

_cache_usage: dict[str, int] = {}
_cache_lock = threading.Lock()


def _cache_file(cache: str, url: str) -> str:
    import hashlib
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
    return os.path.join(cache, digest[:2], digest[2:])


def _cache_get(cache: str, url: str) -> bytes | None:
    from .formats._fs import read_regular_file
    from .formats.errors import FormatError
    path = _cache_file(cache, url)
    try:
        data = read_regular_file(path)
    except FormatError:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: evicted last
    return data


def _cache_limit() -> int:
    raw = os.environ.get("FASTMASK_CACHE_BYTES", "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_CACHE_BYTES


def _cache_put(cache: str, url: str, data: bytes) -> None:
    path = _cache_file(cache, url)
    try:
        _write_local_atomic(path, data)
    except OSError:
        return  # a cache that cannot be written is no cache, not a failed item
    with _cache_lock:
        if cache not in _cache_usage:
            _cache_usage[cache] = sum(size for _, size in Location(cache, {}).find())
        else:
            _cache_usage[cache] += len(data)
        if _cache_usage[cache] > _cache_limit():
            _cache_usage[cache] = _evict(cache, int(_cache_limit() * 0.8))


def _evict(cache: str, keep: int) -> int:
    """Delete the least recently used cached objects until at most ``keep`` bytes remain."""
    files = []
    for dirpath, _, names in os.walk(cache):
        for n in names:
            p = os.path.join(dirpath, n)
            with contextlib.suppress(OSError):
                st = os.stat(p)
                files.append((st.st_mtime, st.st_size, p))
    total = sum(s for _, s, _ in files)
    for _, size, p in sorted(files):
        if total <= keep:
            break
        with contextlib.suppress(OSError):
            os.unlink(p)
            total -= size
    return total


# -- listing at scale (a resumed run lists nothing; a prefix's presence costs one request) --


def prefix_has_objects(loc: Location) -> bool:
    """Whether any object sits below the prefix ``loc``, asked with one bounded listing
    request (S3: ``ListObjectsV2`` with a page of one key) instead of listing the prefix's
    whole top level (a flat prefix of a million masks: a thousand pages). Other
    filesystems: their ``isdir``. Local: ``os.path.isdir``.

    >>> import tempfile
    >>> prefix_has_objects(Location(tempfile.mkdtemp())), prefix_has_objects(Location("/no/such/dir"))
    (True, False)
    """
    if not loc.is_remote:
        return os.path.isdir(loc.url)
    fs, path = loc.fs
    base = path.rstrip("/")
    lsdir = getattr(fs, "_lsdir", None)
    if lsdir is None or "/" not in base or type(fs).__module__.split(".")[0] != "s3fs":
        return loc.is_dir()
    from fsspec.asyn import sync

    def ask() -> bool:
        try:
            found = sync(fs.loop, lsdir, base, refresh=True, max_items=1)
        except FileNotFoundError:
            return False
        finally:
            fs.invalidate_cache(base)  # a one-key page is no listing to keep
        return any(e.get("name", "").rstrip("/") != base for e in found)

    return bool(loc._call(ask, raw=True))
