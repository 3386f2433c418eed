"""Timing helpers shared by the benchmark modules (medians, ratios, tables)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], *, repeat: int = 7, number: int = 1, warmup: int = 1) -> float:
    """Median wall time of one call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    for _ in range(warmup):
        fn()
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - t0) / number)
    return statistics.median(rounds)


def fmt_time(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


class Table:
    """Collects rows ``(case, ours, theirs, anchor name)`` and prints them with ratios."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[tuple[str, float, float | None, str, str]] = []

    def add(self, case: str, ours: float, theirs: float | None = None, anchor: str = "", note: str = "") -> None:
        self.rows.append((case, ours, theirs, anchor, note))

    def print(self) -> None:
        print(f"\n## {self.title}\n")
        print("| case | fastmask | anchor | anchor time | speed-up | note |")
        print("|---|---:|---|---:|---:|---|")
        for case, ours, theirs, anchor, note in self.rows:
            if theirs is None:
                print(f"| {case} | {fmt_time(ours)} | {anchor} | | | {note} |")
            else:
                print(f"| {case} | {fmt_time(ours)} | {anchor} | {fmt_time(theirs)} | {theirs / ours:.2f}x | {note} |")


def paired_medians(
    ours: Callable[[], object], theirs: Callable[[], object], repeat: int = 9, warmup: int = 1
) -> tuple[float, float]:
    """Medians of ``ours`` and ``theirs`` timed back to back in each round.

    Both sides see the same machine load (the box is shared and noisy), so
    their ratio is steadier than two separately timed medians.
    """
    for _ in range(warmup):
        ours()
        theirs()
    to, tt = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ours()
        t1 = time.perf_counter()
        theirs()
        t2 = time.perf_counter()
        to.append(t1 - t0)
        tt.append(t2 - t1)
    return statistics.median(to), statistics.median(tt)
