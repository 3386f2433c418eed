"""Draw the benchmark charts of docs/benchmarks.md from the tables on that page.

Each chart shows the speed ratios of one table (anchor time / fastmask time: right of the
line at 1 is faster than the anchor), so the charts never disagree with the figures beside
them. Run after updating a table:

    python scripts/bench_charts.py            # writes docs/img/bench-*.png (needs matplotlib)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "docs" / "img"

#: chart name -> (section heading prefix, label columns, ratio columns, title)
CHARTS = {
    "bench-rle.png": ("## COCO RLE", [0], ["pycocotools / fastmask", "rlemasklib / fastmask"],
                      "fastmask.rle per call and in batch: anchor time / fastmask time"),
    "bench-components.png": ("## Connected components", [0, 2], ["speed-up"],
                             "connected components: anchor time / fastmask time"),
    "bench-confusion.png": ("## Confusion matrix", [0], ["speed-up"],
                            "confusion matrix: np.bincount time / fastmask time"),
    "bench-png.png": ("## PNG mask decoding", [0, 1], ["Pillow / fastmask", "pyspng / fastmask", "cv2 / fastmask"],
                      "PNG mask decoding: decoder time / fastmask time"),
}


def first_table(text: str, heading: str) -> list[list[str]]:
    """The first Markdown table below the heading that starts with ``heading``."""
    start = next(i for i, line in enumerate(text.splitlines()) if line.startswith(heading))
    rows, lines = [], text.splitlines()[start + 1:]
    for line in lines:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    return [rows[0]] + rows[2:]  # header, then the rows after the |---| line


def ratio(cell: str) -> float | None:
    """'1.25x' -> 1.25; a range '1.60-1.61x' -> its middle; anything else -> None."""
    nums = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", cell.replace(",", ""))]
    if not nums or "x" not in cell:
        return None
    return sum(nums[:2]) / len(nums[:2])


def draw(name: str, heading: str, label_cols: list[int], cols: list[str], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = first_table(PAGE.read_text(encoding="utf-8"), heading)
    header, rows = table[0], table[1:]
    idx = [header.index(c) for c in cols]
    labels = [" / ".join(r[i] for i in label_cols)[:60] for r in rows]
    series = [[ratio(r[i]) for r in rows] for i in idx]
    keep = [k for k in range(len(rows)) if any(s[k] is not None for s in series)]
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(keep) * len(cols) + 1.6))
    height = 0.8 / len(cols)
    for j, (col, s) in enumerate(zip(cols, series)):
        ys = [n + j * height for n in range(len(keep))]
        ax.barh(ys, [s[k] or 0 for k in keep], height=height, label=col)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%gx"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter(""))
    ax.set_yticks([n + (len(cols) - 1) * height / 2 for n in range(len(keep))])
    ax.set_yticklabels([labels[k] for k in keep], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("times faster than the anchor (log scale; 1 = as fast)")
    ax.set_title(title, fontsize=9)
    if len(cols) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    for name, spec in CHARTS.items():
        print(draw(name, *spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
