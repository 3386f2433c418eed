"""One writer per report folder: the lock file ``.fastmask-lock.json`` in ``--out``.

A run takes the lock before it writes or deletes anything in the folder and releases it
when it ends (completed, failed or interrupted). The lock file names its owner (pid,
host, start time, command). Taking it is atomic: the file is created with
``O_CREAT | O_EXCL`` and then held with ``flock``, which the kernel drops when the owner
dies, so a lock left by a killed run is recognised as stale for certain (on file systems
without ``flock``: the owner is on this host and its pid is gone) and taken over with a
warning. A lock whose owner may still be running is refused (:class:`FolderLockedError`,
exit code 2) unless ``force=True`` (``--force-unlock``), which is itself refused when the
owner is provably running on this machine.

The storage-specific part is :class:`FolderLock` (``acquire`` / ``release``). A report
at a URL (``s3://...``) gets :class:`ObjectFolderLock`, the same two methods on object
storage: the lock object is created with a conditional PUT that fails when the key
exists (S3 ``If-None-Match: *``) and held by a lease instead of ``flock``: it names an
expiry time (:data:`LEASE_SECONDS` ahead) that the owner pushes forward while it runs
(a background refresh, and at each shard's done-marker). A lock past its lease is stale
and taken over with a warning (a conditional replace, ``If-Match`` its ETag, so two
takers cannot both win); a lock of a run that is gone from this host is stale at once.

Example::

    lock = acquire_folder_lock("report/", command="fastmask validate ds --out report/")
    try:
        ...  # write the report
    finally:
        lock.release()
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the O_EXCL creation and the pid decide
    fcntl = None

from .errors import EXIT_RUN_FAILED, EngineError
from .sink import LOCK_FILE, is_remote, report_root

log = logging.getLogger("fastmask.engine")

#: flags whose value may hold credentials (inline JSON): recorded as ``<redacted>``
SECRET_FLAGS = ("--storage-options",)
REDACTED = "<redacted>"


def redact_command(command: str | list[str]) -> str:
    """A command line as recorded (lock file, messages): the inline value of
    ``--storage-options`` (credentials, an ``Authorization`` header) is ``<redacted>``; an
    ``@file.json`` value, which names a file and holds no secret, is kept.

    >>> redact_command(["fastmask", "validate", "s3://b/voc", "--storage-options", '{"secret": "s"}'])
    'fastmask validate s3://b/voc --storage-options <redacted>'
    >>> redact_command("fastmask scan d --storage-options=@opts.json --out r")
    'fastmask scan d --storage-options=@opts.json --out r'
    """
    if isinstance(command, str):
        if not any(flag[:4] in command for flag in SECRET_FLAGS):
            return command
        import shlex

        try:
            argv = shlex.split(command)
        except ValueError:  # unbalanced quotes: keep what precedes the flag only
            cut = min(command.index(f[:4]) for f in SECRET_FLAGS if f[:4] in command)
            return command[:cut] + f"{SECRET_FLAGS[0]} {REDACTED}"
    else:
        argv = [str(a) for a in command]
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append(arg if arg.startswith("@") else REDACTED)
            hide = False
            continue
        flag, eq, value = arg.partition("=")
        if len(flag) > 4 and any(f.startswith(flag) for f in SECRET_FLAGS):  # argparse takes --storage-opt too
            if eq:
                out.append(arg if value.startswith("@") else f"{flag}={REDACTED}")
            else:
                out.append(arg)
                hide = True
            continue
        out.append(arg)
    return " ".join(out)


class FolderLockedError(EngineError):
    """Another run owns the report folder (exit code 2); the message names the owner."""


def _process_start(pid: int) -> str | None:
    # The kernel's start time of ``pid`` (Linux): tells a live owner from a reused pid.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: Any, start: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start


def describe_owner(info: dict | None) -> str:
    """``pid 123 on host h since 2026-...: fastmask validate ...`` (for messages)."""
    if not info:
        return "an unknown run (the lock file is being written or is unreadable)"
    return (f"pid {info.get('pid')} on host {info.get('host')} since {info.get('started')}"
            + (f" ({info['command']})" if info.get("command") else ""))


class FolderLock:
    """The lock of one report folder on a local (or mounted) file system."""

    def __init__(self, folder: str | os.PathLike, command: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "process_start": _process_start(os.getpid()),
                     "command": redact_command(command if command is not None else sys.argv)}
        self._fd: int | None = None
        self.took_over: dict | None = None  # the stale owner this lock replaced, if any

    def touch(self) -> None:
        """Nothing: a local lock needs no lease (the kernel's ``flock`` ends with its owner)."""

    # -- taking and releasing -----------------------------------------------------------

    def acquire(self, force: bool = False) -> "FolderLock":
        """Take the lock or raise :class:`FolderLockedError` naming the owner."""
        for _ in range(20):  # retried only when the file changes under our feet
            if self._create() or self._take_existing(force):
                return self
        raise FolderLockedError(f"cannot take the lock {self.path}: it keeps changing (another run is starting)")

    def release(self) -> None:
        """Delete the lock file (only if it is still ours) and drop the lock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._same_file(fd):
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the flock

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -- internals ----------------------------------------------------------------------

    def _create(self) -> bool:
        """A new lock file (O_EXCL); False when one exists. Raises when another run won the race."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        if _flock(fd) == "busy":  # another run flocked our new file first and took it over
            os.close(fd)
            raise FolderLockedError(self._refusal(self._read()))
        self._own(fd)
        return True

    def _take_existing(self, force: bool) -> bool:
        """The lock file exists: take it over if its owner is gone (or ``force``), else refuse."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False  # released meanwhile: try to create it again
        state = _flock(fd)
        if not self._same_file(fd):  # replaced or deleted while we opened it
            os.close(fd)
            return False
        owner = self._read()
        here = owner is not None and owner.get("host") == self.info["host"]
        running_here = here and _pid_alive(owner.get("pid"), owner.get("process_start"))
        if state == "held":
            stale = True  # the kernel drops a dead process's flock: its owner is gone
        else:  # busy, or no flock here: only the pid can tell, and only on the owner's host
            stale = state == "unsupported" and here and not running_here
        if not (stale or (force and not running_here)):
            os.close(fd)
            if force:
                raise FolderLockedError(f"{self.folder} is in use by a fastmask run that is still running on this "
                                        f"machine: {describe_owner(owner)}; stop it first (--force-unlock does "
                                        "not take a lock from a live process)")
            raise FolderLockedError(self._refusal(owner))
        self.took_over = owner or {}
        how = (f"the run that held it is gone ({describe_owner(owner)})" if stale
               else f"forced by --force-unlock from {describe_owner(owner)}")
        if state == "busy":
            # Held by a process elsewhere: a new file; that process keeps its unlinked one and
            # will not delete ours when it ends (release() checks the inode).
            os.close(fd)
            self.path.unlink(missing_ok=True)
            if not self._create():
                return False
        else:
            self._own(fd)
        log.warning("took over the lock of %s: %s", self.folder, how)
        return True

    def _own(self, fd: int) -> None:
        self._fd = fd
        data = (json.dumps(self.info, sort_keys=True) + "\n").encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)

    def _same_file(self, fd: int) -> bool:
        try:
            a, b = os.fstat(fd), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def _read(self) -> dict | None:
        try:
            info = json.loads(self.path.read_bytes() or b"null")
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _refusal(self, owner: dict | None) -> str:
        return (f"{self.folder} is in use by another fastmask run: {describe_owner(owner)}; "
                "wait for it to end or choose another --out (--force-unlock takes over a lock whose run "
                "is known to be gone)")


def _flock(fd: int) -> str:
    """``"held"`` (now ours), ``"busy"`` (another open file holds it) or ``"unsupported"``."""
    if fcntl is None:  # pragma: no cover
        return "unsupported"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "busy"
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return "unsupported"
        raise
    return "held"


def acquire_folder_lock(folder: str | os.PathLike, *, force: bool = False, command: str | None = None) -> FolderLock:
    """Take the lock of report folder ``folder`` (which must exist); see the module's docstring.

    Raises :class:`FolderLockedError` (naming the owner) when another run owns it.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> lock = acquire_folder_lock(folder, command="fastmask validate ds --out report")
    >>> acquire_folder_lock(folder)
    Traceback (most recent call last):
    fastmask.engine.lock.FolderLockedError: ... is in use by another fastmask run: pid ...
    >>> lock.release()
    >>> acquire_folder_lock(folder).release()
    """
    if is_remote(folder):
        return ObjectFolderLock(report_root(folder), command).acquire(force)
    return FolderLock(folder, command).acquire(force)


# --------------------------------------------------------------------------- object storage

#: The lease of a lock on object storage, in seconds (``$FASTMASK_LOCK_LEASE``, default
#: 600): a lock not refreshed for this long is stale. Its owner refreshes it every third
#: of it, so a run is taken over only when it is gone (or cut off from the store).
LEASE_SECONDS = float(os.environ.get("FASTMASK_LOCK_LEASE", "600") or 600)


class LockLostError(FolderLockedError):
    """The lease of a run's lock on object storage was taken over by another run: the run
    stops (exit code 3) and writes nothing more there."""

    exit_code = EXIT_RUN_FAILED


def _precondition_failed(e: BaseException) -> bool:
    # S3 answers a failed If-None-Match / If-Match with 412 PreconditionFailed; s3fs turns
    # the first into FileExistsError, the second into an OSError naming the precondition.
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, FileExistsError) or "precondition" in str(cause).lower().replace("-", ""):
            return True
        if getattr(cause, "status", None) == 412 or getattr(cause, "code", None) == 412:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _unsupported(e: BaseException) -> bool:
    # A filesystem whose pipe_file knows no conditional write (a mode or header it rejects)
    return isinstance(e, (TypeError, NotImplementedError)) or (
        isinstance(e, ValueError) and "mode" in str(e).lower())


class ObjectFolderLock:
    """The lock of a report folder on object storage (``s3://``, ``gs://``...), with a lease.

    ``acquire`` creates ``.fastmask-lock.json`` with a conditional PUT (``If-None-Match:
    *``: exactly one of two racing runs gets it); a filesystem without conditional writes
    falls back to create-then-read-back (best effort: two runs starting within the same
    instant may both believe they won). ``release`` deletes it when it is still ours.

    Example::

        lock = ObjectFolderLock(Location("s3://bucket/reports/voc-1")).acquire()
        try:
            ...
        finally:
            lock.release()
    """

    def __init__(self, folder, command: str | None = None, lease: float | None = None):
        self.folder = report_root(folder)
        self.path = self.folder / LOCK_FILE
        self.lease = float(LEASE_SECONDS if lease is None else lease)
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "process_start": _process_start(os.getpid()),
                     "command": redact_command(command if command is not None else sys.argv),
                     "token": uuid.uuid4().hex}
        self.took_over: dict | None = None
        self.conditional = True  # False: the store has no conditional writes (best effort)
        self.lost: dict | None = None  # set when another run took the lease over
        self._etag: str | None = None
        self._held = False
        self._refreshed = 0.0
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and releasing -----------------------------------------------------------

    def acquire(self, force: bool = False) -> "ObjectFolderLock":
        """Take the lock or raise :class:`FolderLockedError` naming the owner."""
        for _ in range(20):  # retried only when the lock object changes under our feet
            if self._create() or self._take_existing(force):
                self._held = True
                self._start_refresh()
                return self
        raise FolderLockedError(f"cannot take the lock {self.path}: it keeps changing (another run is starting)")

    def release(self) -> None:
        """Stop refreshing and delete the lock object if it is still ours; idempotent."""
        if not self._held:
            return
        self._held = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            owner, _etag = self._read()
            if owner is not None and owner.get("token") == self.info["token"]:
                self.path.unlink()
        except Exception:  # noqa: BLE001 - best effort on the way out; the lease ends it anyway
            log.debug("could not delete the lock %s", self.path, exc_info=True)

    def touch(self) -> None:
        """Push the lease forward (at a shard's done-marker; at most every 1/10 of the lease).

        Raises :class:`LockLostError` when another run has taken the lock over."""
        if self.lost is not None:
            raise LockLostError(self._lost_message())
        if self._held and time.monotonic() - self._refreshed > self.lease / 10:
            self.refresh()

    def refresh(self) -> None:
        """Rewrite the lock object with a new expiry (conditional on it being ours)."""
        with self._mutex:
            if not self._held or self.lost is not None:
                return
            if not self.conditional:  # best effort: check it is still ours, then rewrite it
                owner, _ = self._read()
                if owner is None or owner.get("token") != self.info["token"]:
                    self.lost = owner or {}
                    raise LockLostError(self._lost_message())
            try:
                self._etag = self._put(If_Match=self._etag)
                self._refreshed = time.monotonic()
            except Exception as e:  # noqa: BLE001 - classified below
                if not _precondition_failed(e):
                    raise
                owner, _ = self._read()
                if owner is not None and owner.get("token") == self.info["token"]:
                    return
                self.lost = owner or {}
                log.error("%s", self._lost_message())
                raise LockLostError(self._lost_message()) from None

    def __enter__(self) -> "ObjectFolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -- internals ----------------------------------------------------------------------

    def _doc(self) -> bytes:
        now = time.time()
        expires = _dt.datetime.fromtimestamp(now + self.lease, _dt.timezone.utc).isoformat(timespec="seconds")
        doc = {**self.info, "lease_seconds": self.lease, "expires": expires, "expires_epoch": round(now + self.lease, 3)}
        return (json.dumps(doc, sort_keys=True) + "\n").encode()

    def _put(self, If_Match: str | None = None, create: bool = False) -> str | None:
        """One PUT of the lock document: ``create`` only if absent, or only over ``If_Match``."""
        fs, path = self.path.fs
        kwargs: dict[str, Any] = {}
        if create:
            kwargs["mode"] = "create"
        elif If_Match is not None and self.conditional:
            kwargs["IfMatch"] = If_Match
        try:
            out = self.path._call(fs.pipe_file, path, self._doc(), raw=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - classified below
            if "IfMatch" not in kwargs or not _unsupported(e):
                raise
            # a store without If-Match: the take-over and the refresh are best effort
            self.conditional = False
            out = self.path._call(fs.pipe_file, path, self._doc(), raw=True)
        etag = out.get("ETag") if isinstance(out, dict) else None
        return etag if etag is not None else self._read()[1]

    def _read(self) -> tuple[dict | None, str | None]:
        """The lock's owner (``None`` when absent or unreadable) and its ETag."""
        fs, path = self.path.fs
        fs.invalidate_cache(path)
        try:
            data = self.path._call(fs.cat_file, path, raw=True)
            etag = (self.path._call(fs.info, path, raw=True) or {}).get("ETag")
        except FileNotFoundError:
            return None, None
        try:
            info = json.loads(data or b"null")
        except ValueError:
            return {}, etag
        return (info if isinstance(info, dict) else {}), etag

    def _create(self) -> bool:
        """A new lock object; False when one exists."""
        if self.conditional:
            try:
                self._etag = self._put(create=True)
                self._refreshed = time.monotonic()
                return True
            except Exception as e:  # noqa: BLE001 - classified below
                if _precondition_failed(e):
                    return False
                if not _unsupported(e):
                    raise
                self.conditional = False
                log.warning("%s: this store has no conditional writes; the lock is best effort", self.folder)
        # Best effort: create when absent, then read back and check the token is ours.
        if self.path.exists():
            return False
        self._etag = self._put()
        owner, self._etag = self._read()
        if owner is None or owner.get("token") != self.info["token"]:
            raise FolderLockedError(self._refusal(owner))
        self._refreshed = time.monotonic()
        return True

    def _take_existing(self, force: bool) -> bool:
        owner, etag = self._read()
        if owner is None:
            return False  # released meanwhile: try to create it again
        if owner.get("token") == self.info["token"]:  # our own create, retried after a lost answer
            self._etag, self._refreshed = etag, time.monotonic()
            return True
        here = owner.get("host") == self.info["host"]
        running_here = here and _pid_alive(owner.get("pid"), owner.get("process_start"))
        expires = owner.get("expires_epoch")
        expired = isinstance(expires, (int, float)) and expires < time.time()
        stale = expired or (here and not running_here and bool(owner))
        if not (stale or (force and not running_here)):
            if force:
                raise FolderLockedError(f"{self.folder} is in use by a fastmask run that is still running on this "
                                        f"machine: {describe_owner(owner)}; stop it first (--force-unlock does "
                                        "not take a lock from a live process)")
            raise FolderLockedError(self._refusal(owner))
        try:  # replace exactly the object we judged: another taker's new lock is never overwritten
            self._etag = self._put(If_Match=etag)
        except Exception as e:  # noqa: BLE001 - classified below
            if _precondition_failed(e):
                return False
            raise
        if not self.conditional:
            mine, self._etag = self._read()
            if mine is None or mine.get("token") != self.info["token"]:
                return False
        self._refreshed = time.monotonic()
        self.took_over = owner
        how = ((f"its lease ended at {owner.get('expires')}" if expired else "the run that held it is gone")
               + f" ({describe_owner(owner)})" if stale else f"forced by --force-unlock from {describe_owner(owner)}")
        log.warning("took over the lock of %s: %s", self.folder, how)
        return True

    def _start_refresh(self) -> None:
        def loop():
            while not self._stop.wait(self.lease / 3):
                try:
                    self.refresh()
                except LockLostError:
                    return
                except Exception:  # noqa: BLE001 - a missed refresh is retried at the next tick
                    log.debug("could not refresh the lock %s", self.path, exc_info=True)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="fastmask-lock-lease", daemon=True)
        self._thread.start()

    def _refusal(self, owner: dict | None) -> str:
        lease = f"; its lease runs until {owner['expires']}" if owner and owner.get("expires") else ""
        return (f"{self.folder} is in use by another fastmask run: {describe_owner(owner)}{lease}; "
                "wait for it to end or choose another --out (--force-unlock takes over a lock whose run "
                "is known to be gone)")

    def _lost_message(self) -> str:
        return (f"lost the lock of {self.folder}: another run took it over ({describe_owner(self.lost)}); "
                "this run stops")
