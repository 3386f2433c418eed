"""Progress display: a tqdm bar on stderr, or periodic log lines when there is no terminal.

The bar counts items (with items/s and ETA). It is off with ``quiet=True`` and when
stderr is not a terminal (CI logs, redirected output); then, unless quiet, an INFO line
on the ``fastmask.engine`` logger every ``log_every`` seconds tells how far the run is.
"""
from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger("fastmask.engine")


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class Progress:
    """Thread-safe item counter shown as a tqdm bar (or log lines).

    Example::

        with Progress(total=10_000, initial=2_000, quiet=False, desc="validate") as p:
            p.update(500)
    """

    def __init__(self, total: int, *, initial: int = 0, quiet: bool = False, desc: str = "",
                 log_every: float = 30.0):
        self.total, self.count, self.quiet = total, initial, quiet
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._start_count = initial
        self._next_log = self._t0 + log_every
        self._log_every = log_every
        self.bar = None
        if not quiet and stderr_is_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="item", desc=desc or None,
                            file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    @property
    def enabled(self) -> bool:
        return self.bar is not None

    def update(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.count += n
            if self.bar is not None:
                self.bar.update(n)
            elif not self.quiet:
                now = time.monotonic()
                if now >= self._next_log:
                    self._next_log = now + self._log_every
                    rate = (self.count - self._start_count) / max(now - self._t0, 1e-9)
                    left = (self.total - self.count) / rate if rate > 0 else float("inf")
                    log.info("%d/%d items (%.1f%%), %.0f items/s, ETA %s", self.count, self.total,
                             100.0 * self.count / max(self.total, 1), rate, _fmt_eta(left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _fmt_eta(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    s = int(seconds)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"
