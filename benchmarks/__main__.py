"""``python -m benchmarks [--quick] [name ...]``: run benchmark modules and print tables."""
from __future__ import annotations

import argparse
import compileall
import importlib
import pkgutil
import sys
from pathlib import Path


def _compile_sources(root: Path) -> None:
    """Write the bytecode of fastmask's and the benchmarks' sources, as an installed package
    has it. Every worker process a run spawns imports them; without bytecode (an editable
    install under ``PYTHONDONTWRITEBYTECODE``, as on the benchmark machine) each would
    compile them from source again: ~35-55 ms per worker, not what an installed fastmask
    costs."""
    for folder in ("fastmask", "kernels", "benchmarks"):
        if (root / folder).is_dir():
            compileall.compile_dir(root / folder, quiet=1)


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).parent
    available = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", help=f"which benchmarks (default all): {', '.join(available)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller data")
    args = parser.parse_args(argv)
    names = args.names or available
    for name in names:
        if name not in available:
            parser.error(f"unknown benchmark {name!r}; choose from {available}")
    sys.path.insert(0, str(here.parent))
    _compile_sources(here.parent)
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        module.run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
