"""Charts of a run folder: PNG files (matplotlib) or plain HTML bars (no dependency).

A run folder (``fastmask validate|coverage|evaluate --out DIR``) is turned into a list of
chart descriptions by :func:`charts_for_run`; :func:`render_png` draws one with
matplotlib (the ``plots`` extra: ``pip install 'fastmask-seg[plots]'``) and
:func:`render_html` draws a simpler HTML/CSS version that needs nothing (the HTML
report's fallback). :func:`write_plots` writes every chart of a run as
``DIR/plots/<name>.png`` (what ``--plots`` does).

Charts per job:

* ``validate``: findings per rule and severity; class frequency (pixels, images).
* ``coverage``: class frequency; per-class coverage histograms (images per fixed bin of
  the per-image fraction); per-shard histograms when the run has several shards (drift).
* ``evaluate``: per-class IoU and Dice; the row-normalized confusion matrix; per-image
  mIoU histogram. Panoptic runs: per-class PQ / SQ / RQ.

matplotlib is imported lazily and only through its object API with the Agg canvas (no
``pyplot``, no global backend change), so a notebook's backend is left alone.

Example::

    from fastmask.plots import write_plots
    write_plots("coverage-report/")   # -> [.../plots/class_frequency.png, ...]
"""
from __future__ import annotations

import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: at most this many classes in one chart (the largest ones; the title says how many more)
MAX_CLASSES = 40
#: at most this many panels in the small-multiples histogram charts
MAX_PANELS = 24

SEVERITY_ORDER = ("error", "warning", "info")
SEVERITY_COLORS = {"error": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


class PlotsUnavailable(ImportError):
    """matplotlib is not installed (the ``plots`` extra)."""


@dataclass
class BarChart:
    """Bars per category; several series side by side (or stacked), optionally log-scaled."""

    name: str
    title: str
    categories: list[str]
    series: dict[str, list[float]]
    xlabel: str = ""
    stacked: bool = False
    log: bool = False
    colors: dict[str, str] = field(default_factory=dict)
    limits: tuple[float, float] | None = None
    percent: bool = False


@dataclass
class HeatMap:
    """A square matrix of fractions in [0, 1] (NaN = empty row), rows and columns labelled."""

    name: str
    title: str
    labels: list[str]
    matrix: list[list[float]]
    xlabel: str = ""
    ylabel: str = ""


@dataclass
class Histograms:
    """Small multiples: one panel per label, bars over ``bins`` (or one line per series)."""

    name: str
    title: str
    bins: list[str]
    panels: list[tuple[str, dict[str, list[float]]]]
    ylabel: str = ""
    note: str = ""


Chart = BarChart | HeatMap | Histograms


def matplotlib_available() -> bool:
    """True when matplotlib can be imported (``pip install 'fastmask-seg[plots]'``).

    >>> isinstance(matplotlib_available(), bool)
    True
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


#: How to get matplotlib: the package's ``plots`` extra, from PyPI or from a source checkout.
INSTALL_HINT = "pip install 'fastmask-seg[plots]' (in a source checkout: pip install -e '.[plots]')"


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable(f"plots need matplotlib: {INSTALL_HINT}") from None
    return matplotlib


# --------------------------------------------------------------------------- reading a run


def read_run(run_dir: str | os.PathLike) -> dict:
    """The run's ``run.json`` as a dict; ``FileNotFoundError`` naming the folder when absent."""
    from .engine.sink import read_json, report_root

    p = report_root(run_dir) / "run.json"  # a local folder, or a URL's Location
    if not p.is_file():
        raise FileNotFoundError(f"{run_dir}: not a fastmask report folder (no run.json)")
    return read_json(p)


def read_table(run_dir: str | os.PathLike, name: str, columns: list[str] | None = None):
    """A table of the run as a ``pyarrow.Table`` (parts concatenated), or None when absent.

    ``columns``: read only those that exist (large runs: skip the list and JSON columns).
    """
    import pyarrow.dataset as pads

    from .engine.sink import is_remote, report_root

    root = report_root(run_dir)
    if is_remote(root):
        return _read_remote_table(root / name, columns)
    p = root / name
    if not p.is_dir() or not any(p.glob("*.parquet")):
        return None
    ds = pads.dataset(p, format="parquet")  # hidden temporaries (.part-*.tmp) are ignored
    cols = None if columns is None else [c for c in columns if c in ds.schema.names]
    return ds.to_table(columns=cols)


def _read_remote_table(folder, columns: list[str] | None):
    """A table on object storage: its parts (one request each) concatenated, or None."""
    import pyarrow as pa

    from .engine.sink import read_part

    names = [n for n in folder.iterdir() if n.endswith(".parquet") and not n.startswith((".", "_"))]
    if not names:
        return None
    tables = [read_part(folder / n) for n in names]
    table = pa.concat_tables(tables, promote_options="default")
    return table if columns is None else table.select([c for c in columns if c in table.column_names])


def class_names(run: dict) -> dict[int, str]:
    """Class id -> name from the run's label map (empty when it has none)."""
    lm = run.get("labelmap") or {}
    out = {}
    for lab in lm.get("labels", []) or []:
        try:
            out[int(lab["id"])] = str(lab.get("name") or "")
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _label(cid: Any, names: dict[int, str]) -> str:
    try:
        name = names.get(int(cid), "")
    except (TypeError, ValueError):
        name = ""
    return f"{cid} {name}".strip()


def _cap(rows: list[dict], key: str, n: int = MAX_CLASSES) -> tuple[list[dict], str]:
    """The ``n`` rows with the largest ``key`` (kept in class order) and a title suffix."""
    if len(rows) <= n:
        return rows, ""
    keep = sorted(rows, key=lambda r: -(r.get(key) or 0))[:n]
    ids = {id(r) for r in keep}
    return [r for r in rows if id(r) in ids], f" (largest {n} of {len(rows)} classes)"


def _finite(v: Any) -> float:
    return float("nan") if v is None else float(v)


# --------------------------------------------------------------------------- charts per job


def _frequency_chart(classes: list[dict], names: dict[int, str]) -> BarChart | None:
    rows = [r for r in classes if (r.get("pixels") or 0) > 0 or (r.get("images") or 0) > 0]
    if not rows:
        return None
    # largest first: the chart reads as a ranking (ties by class id)
    rows = sorted(rows, key=lambda r: (-(r.get("pixels") or 0), -(r.get("images") or 0), r["class_id"]))
    rows, note = _cap(rows, "pixels")
    total = sum(r.get("pixels") or 0 for r in classes) or 1
    return BarChart(
        name="class_frequency", title=f"Class frequency{note}",
        categories=[_label(r["class_id"], names) for r in rows],
        series={"share of pixels (%)": [100.0 * (r.get("pixels") or 0) / total for r in rows],
                "images containing the class": [float(r.get("images") or 0) for r in rows]},
        xlabel="share of labelled pixels (%) / images",
    )


def _findings_chart(tables: list) -> BarChart | None:
    counts: dict[str, dict[str, int]] = {}
    for t in tables:
        if t is None or t.num_rows == 0:
            continue
        g = t.group_by(["rule", "severity"]).aggregate([([], "count_all")])
        for rule, sev, n in zip(g.column("rule").to_pylist(), g.column("severity").to_pylist(),
                                g.column("count_all").to_pylist()):
            counts.setdefault(str(rule), {}).setdefault(str(sev), 0)
            counts[str(rule)][str(sev)] += n
    if not counts:
        return None
    rules = sorted(counts, key=lambda r: (-sum(counts[r].values()), r))
    sevs = [s for s in SEVERITY_ORDER if any(s in c for c in counts.values())]
    sevs += sorted({s for c in counts.values() for s in c} - set(sevs))
    return BarChart(
        name="findings", title=f"Findings per rule ({sum(sum(c.values()) for c in counts.values())} in all)",
        categories=rules, series={s: [float(counts[r].get(s, 0)) for r in rules] for s in sevs},
        xlabel="findings", stacked=True, colors={s: SEVERITY_COLORS.get(s, "#7f7f7f") for s in sevs},
    )


def _coverage_charts(run: dict, classes: list[dict], names: dict[int, str]) -> list[Chart]:
    from .jobs.coverage import BIN_LABELS

    out: list[Chart] = []
    rows = sorted((r for r in classes if r.get("images")), key=lambda r: (-r["images"], r["class_id"]))
    note = f"{len(rows) - MAX_PANELS} more classes not shown" if len(rows) > MAX_PANELS else ""
    rows = rows[:MAX_PANELS]
    if rows:
        out.append(Histograms(
            name="coverage_histograms", title="Coverage per image: images per bin of the class's pixel fraction",
            bins=list(BIN_LABELS),
            panels=[(_label(r["class_id"], names), {"images": [float(v) for v in r["histogram"]]}) for r in rows],
            ylabel="images", note=note))
    shards = (run.get("summary") or {}).get("shards") or []
    if len(shards) > 1 and rows:
        panels = []
        for r in rows:
            series = {}
            for k, shard in enumerate(shards):
                h = shard.get(str(r["class_id"]))
                if h and sum(h):
                    series[f"shard {k}"] = [100.0 * v / sum(h) for v in h]
            panels.append((_label(r["class_id"], names), series))
        out.append(Histograms(
            name="coverage_by_shard", title="Coverage per shard (% of the shard's images with the class, per bin)",
            bins=list(BIN_LABELS), panels=panels, ylabel="% of images", note=note))
    return out


def _evaluate_charts(run: dict, classes: list[dict] | None, items, names: dict[int, str]) -> list[Chart]:
    summary = run.get("summary") or {}
    out: list[Chart] = []
    pan = summary.get("panoptic")
    if pan:
        per = pan.get("per_class") or {}
        cats = sorted(per, key=lambda c: int(c) if str(c).lstrip("-").isdigit() else 0)
        if cats:
            # keep the categories with the most segments (matched, missed and spurious)
            rows = [{"c": c, "n": sum(per[c].get(k) or 0 for k in ("tp", "fp", "fn"))} for c in cats]
            rows, note = _cap(rows, "n")
            cats = [r["c"] for r in rows]
            out.append(BarChart(
                name="panoptic_quality", title=f"Panoptic quality per class{note}",
                categories=[_label(c, names) for c in cats],
                series={k.upper(): [100.0 * _finite(per[c].get(k)) for c in cats] for k in ("pq", "sq", "rq")},
                xlabel="%", limits=(0, 100), percent=True))
        return out
    if classes:
        rows = [r for r in classes if r.get("tp") or r.get("fp") or r.get("fn")]
        rows, note = _cap(rows, "tp")
        if rows:
            out.append(BarChart(
                name="class_scores", title=f"IoU and Dice per class (summed over images){note}",
                categories=[_label(r["class_id"], names) for r in rows],
                series={"IoU": [100.0 * _finite(r.get("iou")) for r in rows],
                        "Dice": [100.0 * _finite(r.get("dice")) for r in rows]},
                xlabel="%", limits=(0, 100), percent=True))
    cm = summary.get("confusion_matrix")
    if cm:
        n = len(cm)
        ids = [i for i in range(n) if sum(cm[i]) or sum(row[i] for row in cm)]
        note = ""
        if len(ids) > MAX_CLASSES:
            ids = sorted(sorted(ids, key=lambda i: -sum(cm[i]))[:MAX_CLASSES])
            note = f" (largest {MAX_CLASSES} classes)"
        matrix = []
        for i in ids:
            s = sum(cm[i])
            matrix.append([cm[i][j] / s if s else float("nan") for j in ids])
        if ids:
            out.append(HeatMap(
                name="confusion_matrix", title=f"Confusion matrix, rows normalized{note}",
                labels=[_label(i, names) for i in ids], matrix=matrix,
                xlabel="prediction", ylabel="ground truth"))
    if items is not None and "miou" in items.column_names:
        vals = [v for v in items.column("miou").to_pylist() if v is not None and not math.isnan(v)]
        if vals:
            counts = [0] * 10
            for v in vals:
                counts[min(int(v * 10), 9)] += 1
            out.append(Histograms(
                name="image_miou", title=f"Per-image mIoU ({len(vals)} images; mean {100 * sum(vals) / len(vals):.1f}%)",
                bins=[f"{10 * k}-{10 * k + 10}%" for k in range(10)],
                panels=[("", {"images": [float(c) for c in counts]})], ylabel="images"))
    return out


def charts_for_run(run_dir: str | os.PathLike) -> list[Chart]:
    """The charts that describe a run folder (see the module docstring), in display order.

    >>> # charts_for_run("report/") -> [BarChart(name='findings', ...), ...]
    """
    run = read_run(run_dir)
    job = run.get("job")
    names = class_names(run)
    classes_t = read_table(run_dir, "classes")
    classes = classes_t.to_pylist() if classes_t is not None else []
    charts: list[Chart] = []
    if job == "validate":
        c = _findings_chart([read_table(run_dir, t, ["rule", "severity"]) for t in ("findings", "dataset_findings")])
        if c:
            charts.append(c)
        c = _frequency_chart(classes, names)
        if c:
            charts.append(c)
    elif job == "coverage":
        c = _frequency_chart(classes, names)
        if c:
            charts.append(c)
        charts += _coverage_charts(run, classes, names)
    elif job == "evaluate":
        charts += _evaluate_charts(run, classes, read_table(run_dir, "items"), names)
    return charts


# --------------------------------------------------------------------------- matplotlib


def _figure(width: float, height: float):
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _draw_bars(chart: BarChart):
    from matplotlib.ticker import MaxNLocator

    n = len(chart.categories)
    keys = list(chart.series)
    # a series with a different unit (images next to %) gets its own panel
    split = not chart.stacked and len(keys) > 1 and not chart.percent
    panels = [[k] for k in keys] if split else [keys]
    legend = not split and (len(keys) > 1 or chart.stacked)
    fig = _figure(3.6 * len(panels) + 2.5 + (1.8 if legend else 0.0), max(2.4, 0.24 * n * (1 if chart.stacked or split else len(keys) * 0.7) + 1.4))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    ys = list(range(n))
    for ax, group in zip(axes, panels):
        left = [0.0] * n
        h = 0.8 / (1 if chart.stacked else len(group))
        for k, key in enumerate(group):
            vals = [0.0 if v is None or math.isnan(v) else v for v in chart.series[key]]
            color = chart.colors.get(key, SERIES_COLORS[(keys.index(key)) % len(SERIES_COLORS)])
            if chart.stacked:
                ax.barh(ys, vals, left=left, height=0.7, color=color, label=key)
                left = [a + b for a, b in zip(left, vals)]
            else:
                off = (k - (len(group) - 1) / 2) * h
                ax.barh([y + off for y in ys], vals, height=h, color=color, label=key)
            missing = [y for y, v in zip(ys, chart.series[key]) if v is None or math.isnan(v)]
            for y in missing:
                ax.text(0, y, " n/a", va="center", fontsize=7, color="#555")
        if chart.log:
            ax.set_xscale("log")
        if chart.limits:
            ax.set_xlim(*chart.limits)
        elif not chart.log:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(group[0] if split else chart.xlabel)
        ax.grid(axis="x", alpha=0.3)
        if legend:
            # outside the axes, right of the plot: a legend inside covers bars
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels(chart.categories, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(chart.title, fontsize=11)
    fig.tight_layout()
    return fig


def _draw_heatmap(chart: HeatMap):
    import numpy as np

    n = len(chart.labels)
    size = min(12.0, max(4.0, 0.38 * n + 2.5))
    fig = _figure(size + 1.2, size)
    ax = fig.subplots()
    m = np.array(chart.matrix, dtype=float).reshape(n, n)
    im = ax.imshow(np.ma.masked_invalid(m), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fs = 8 if n <= 20 else 6
    ax.set_xticklabels(chart.labels, rotation=60, ha="right", fontsize=fs)
    ax.set_yticklabels(chart.labels, fontsize=fs)
    ax.set_xlabel(chart.xlabel)
    ax.set_ylabel(chart.ylabel)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if not math.isnan(m[i, j]) and m[i, j] > 0:
                    ax.text(j, i, f"{100 * m[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    ax.set_title(chart.title, fontsize=10)
    fig.tight_layout()
    return fig


def _draw_histograms(chart: Histograms):
    from matplotlib.ticker import MaxNLocator

    n = len(chart.panels)
    cols = 1 if n == 1 else min(4, n)
    rows = math.ceil(n / cols)
    fig = _figure(3.0 * cols + 1.0 if n > 1 else 7.0, 2.3 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False)
    xs = list(range(len(chart.bins)))
    for k, (label, series) in enumerate(chart.panels):
        ax = axes[k // cols][k % cols]
        if len(series) == 1:
            (vals,) = series.values()
            ax.bar(xs, vals, color=SERIES_COLORS[0], width=0.8)
        else:
            for s, (key, vals) in enumerate(series.items()):
                ax.plot(xs, vals, marker="o", markersize=2, linewidth=1, alpha=0.7,
                        color=SERIES_COLORS[s % len(SERIES_COLORS)] if len(series) <= 6 else None)
        ax.set_title(label, fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels(chart.bins, rotation=60, ha="right", fontsize=6)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.yaxis.set_major_locator(MaxNLocator(integer=len(series) == 1))
        if k % cols == 0:
            ax.set_ylabel(chart.ylabel, fontsize=8)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    title = chart.title + (f" — {chart.note}" if chart.note else "")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def render_png(chart: Chart) -> bytes:
    """PNG bytes of one chart (matplotlib, Agg canvas); :class:`PlotsUnavailable` without it.

    >>> png = render_png(BarChart("x", "t", ["a"], {"n": [1.0]}))  # doctest: +SKIP
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"                          # doctest: +SKIP
    True
    """
    _require_matplotlib()
    if isinstance(chart, BarChart):
        fig = _draw_bars(chart)
    elif isinstance(chart, HeatMap):
        fig = _draw_heatmap(chart)
    elif isinstance(chart, Histograms):
        fig = _draw_histograms(chart)
    else:
        raise TypeError(f"not a chart: {type(chart).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_plots(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write every chart of a run folder as PNG into ``out_dir`` (default ``run_dir/plots``).

    Returns the paths written, in display order. Raises :class:`PlotsUnavailable` when
    matplotlib is missing (before writing anything), ``FileNotFoundError`` when
    ``run_dir`` holds no ``run.json``.

    >>> # write_plots("coverage-report/") -> [PosixPath('coverage-report/plots/class_frequency.png'), ...]
    """
    _require_matplotlib()
    charts = charts_for_run(run_dir)
    from .engine.sink import is_remote, report_root

    out = report_root(out_dir) if out_dir is not None else report_root(run_dir) / "plots"
    if is_remote(out):  # object storage: each chart one upload, visible whole or not at all
        for chart in charts:
            (out / f"{chart.name}.png").write_bytes(render_png(chart))
        return [out / f"{chart.name}.png" for chart in charts]
    from .storage import write_local_atomic
    paths = []
    for chart in charts:
        p = out / f"{chart.name}.png"
        write_local_atomic(p, render_png(chart), durable=False)  # the one local write path
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- HTML fallback


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _ok(v: Any) -> bool:
    return v is not None and not math.isnan(v)


def _fmt(v: float, percent: bool) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    if percent:
        return f"{v:.1f}%"
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def render_html(chart: Chart) -> str:
    """A dependency-free HTML/CSS rendering of a chart (bars as sized ``<div>``, heat map as a table).

    >>> "width:100.0%" in render_html(BarChart("x", "t", ["a"], {"n": [3.0]}))
    True
    """
    parts = [f'<div class="chart" data-chart="{_e(chart.name)}"><div class="chart-title">{_e(chart.title)}</div>']
    if isinstance(chart, BarChart):
        keys = list(chart.series)
        if chart.stacked:
            totals = [sum(v for v in vals if _ok(v) and v > 0) for vals in zip(*chart.series.values())]
            top = max(totals + [0]) or 1
            parts.append('<table class="bars">')
            for c, cat in enumerate(chart.categories):
                segs = "".join(
                    f'<span class="seg" title="{_e(k)}: {_e(_fmt(chart.series[k][c], False))}" '
                    f'style="width:{100 * chart.series[k][c] / top:.1f}%;background:{chart.colors.get(k, SERIES_COLORS[i % 6])}"></span>'
                    for i, k in enumerate(keys) if _ok(chart.series[k][c]) and chart.series[k][c] > 0)
                parts.append(f'<tr><th>{_e(cat)}</th><td class="track">{segs}</td>'
                             f'<td class="num">{_e(_fmt(totals[c], False))}</td></tr>')
            parts.append("</table>")
            parts.append('<div class="legend">' + " ".join(
                f'<span><i style="background:{chart.colors.get(k, SERIES_COLORS[i % 6])}"></i>{_e(k)}</span>'
                for i, k in enumerate(keys)) + "</div>")
        else:
            for i, k in enumerate(keys):
                vals = chart.series[k]
                top = (chart.limits[1] if chart.limits else max([v for v in vals if _ok(v)] + [0])) or 1
                color = chart.colors.get(k, SERIES_COLORS[i % 6])
                parts.append(f'<div class="series-name">{_e(k)}</div><table class="bars">')
                for cat, v in zip(chart.categories, vals):
                    w = 0.0 if v is None or math.isnan(v) else 100.0 * max(v, 0) / top
                    parts.append(f'<tr><th>{_e(cat)}</th><td class="track"><span class="seg" '
                                 f'style="width:{w:.1f}%;background:{color}"></span></td>'
                                 f'<td class="num">{_e(_fmt(v, chart.percent))}</td></tr>')
                parts.append("</table>")
    elif isinstance(chart, HeatMap):
        parts.append('<table class="heat"><tr><th>' + _e(f"{chart.ylabel} \\ {chart.xlabel}") + "</th>"
                     + "".join(f"<th>{_e(lab)}</th>" for lab in chart.labels) + "</tr>")
        for lab, row in zip(chart.labels, chart.matrix):
            cells = []
            for v in row:
                if v is None or math.isnan(v):
                    cells.append('<td class="nan">·</td>')
                else:
                    shade = int(255 - 200 * v)
                    fg = "#fff" if v > 0.5 else "#000"
                    cells.append(f'<td style="background:rgb({shade},{shade + (255 - shade) // 3},255);color:{fg}">'
                                 f"{100 * v:.0f}</td>")
            parts.append(f"<tr><th>{_e(lab)}</th>{''.join(cells)}</tr>")
        parts.append("</table>")
    elif isinstance(chart, Histograms):
        parts.append('<div class="multiples">')
        for label, series in chart.panels:
            top = max([v for vals in series.values() for v in vals if _ok(v)] + [0]) or 1
            parts.append(f'<div class="panel"><div class="panel-title">{_e(label)}</div><div class="cols">')
            for b, bin_label in enumerate(chart.bins):
                v = max([vals[b] for vals in series.values() if _ok(vals[b])] + [0])
                parts.append(f'<span class="col" title="{_e(bin_label)}: {_e(_fmt(v, False))}">'
                             f'<span style="height:{100 * v / top:.0f}%"></span></span>')
            parts.append(f'</div><div class="axis">{_e(chart.bins[0])} … {_e(chart.bins[-1])}</div></div>')
        parts.append("</div>")
        if chart.note:
            parts.append(f'<div class="note">{_e(chart.note)}</div>')
    parts.append("</div>")
    return "".join(parts)
