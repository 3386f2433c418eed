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

The storage-specific part is :class:`FolderLock` (``acquire`` / ``release``); an
object-store backend implements the same two methods with a conditional create (e.g. a
PUT that fails when the key exists) and a lease instead of ``flock``.

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
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the O_EXCL creation and the pid decide
    fcntl = None

from .errors import EngineError
from .sink import LOCK_FILE

log = logging.getLogger("fastmask.engine")

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
                     "command": command if command is not None else " ".join(sys.argv)}
        self._fd: int | None = None
        self.took_over: dict | None = None  # the stale owner this lock replaced, if any

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
    return FolderLock(folder, command).acquire(force)
