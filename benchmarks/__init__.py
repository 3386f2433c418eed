"""Benchmarks: fastmask against the anchor libraries, same data, same process.

Run all with ``python -m benchmarks`` (or ``bash scripts/bench.sh``); run some
with ``python -m benchmarks rle components``. Each ``bench_<name>.py`` module
exposes ``run(quick: bool) -> None`` which prints its own table of medians and
ratios through :mod:`benchmarks._timing`.
"""
