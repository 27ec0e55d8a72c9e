"""Draw a dashboard without Grafana: each panel laid out by ``gridPos``, from the same queries.

Timeseries panels are lines with a legend built from the series labels (``legendFormat``); stat
panels are numbers coloured by their thresholds; gauges are arcs with the threshold bands; bar
gauges are bars (``format: heatmap`` histograms are de-cumulated into buckets); tables, logs and
traces are listed as text. Panels without data say "No data", or show the backend's error.
Uses matplotlib's object API only (no pyplot), so it is safe in notebooks and threads.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle, Wedge
from matplotlib.ticker import FuncFormatter, MaxNLocator

from lab_stack.dashboards.model import Dashboard, Panel, Threshold, load
from lab_stack.dashboards.query import DashboardRun, PanelResult, Series, run
from lab_stack.provisioning import LAB_DATASOURCES, Datasource

if TYPE_CHECKING:
    from lab_stack.stack import Stack

__all__ = ["Preview", "format_value", "layout", "preview", "threshold_color"]

_BACKGROUND = "#111217"
_PANEL = "#181b1f"
_BORDER = "#2c3235"
_TEXT = "#ccccdc"
_MUTED = "#8e8e8e"
_GRID = "#2c3235"
_PALETTE = (
    "#73BF69",
    "#F2CC0C",
    "#8AB8FF",
    "#FF780A",
    "#F2495C",
    "#5794F2",
    "#B877D9",
    "#705DA0",
    "#37872D",
    "#FADE2A",
    "#447EBC",
    "#C15C17",
)
_NAMED = {
    "green": "#73BF69",
    "semi-dark-green": "#56A64B",
    "dark-green": "#37872D",
    "light-green": "#96D98D",
    "red": "#F2495C",
    "semi-dark-red": "#E02F44",
    "dark-red": "#C4162A",
    "light-red": "#FF7383",
    "yellow": "#FADE2A",
    "semi-dark-yellow": "#F2CC0C",
    "dark-yellow": "#E0B400",
    "orange": "#FF9830",
    "semi-dark-orange": "#FF780A",
    "dark-orange": "#FA6400",
    "blue": "#5794F2",
    "semi-dark-blue": "#3274D9",
    "dark-blue": "#1F60C4",
    "purple": "#B877D9",
    "dark-purple": "#8F3BB8",
    "text": _TEXT,
    "transparent": _PANEL,
}
_ROW_RATIO = 0.49  # Grafana: 30 px cells + 8 px margin against ~78 px columns


def _color(name: str) -> str:
    if name in _NAMED:
        return _NAMED[name]
    if mcolors.is_color_like(name):
        return str(name)
    return _MUTED


def threshold_color(
    value: float | None, steps: Sequence[Threshold], *, default: str = "green"
) -> str:
    """The colour Grafana gives ``value``: the highest step whose value is ≤ it (hex)."""
    chosen = default
    if value is None or math.isnan(value):
        return _MUTED
    for step in steps:
        if step.value is None or value >= step.value:
            chosen = step.color
    return _color(chosen)


_BYTES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_SI = ("", "k", "M", "G", "T", "P")


def _scaled(value: float, base: float, names: Sequence[str], decimals: int | None) -> str:
    index = 0
    while abs(value) >= base and index < len(names) - 1:
        value /= base
        index += 1
    digits = (
        decimals
        if decimals is not None
        else (0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2)
    )
    text = f"{value:.{digits}f}"
    return f"{text} {names[index]}".rstrip()


def format_value(value: float | None, unit: str = "", decimals: int | None = None) -> str:
    """``value`` in Grafana's display for ``unit`` (percent, s, bytes, Bps, reqps, short, ...)."""
    if value is None or math.isnan(value):
        return "No data"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if unit == "percent":
        return f"{value:.{1 if decimals is None else decimals}f}%"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit in ("s", "ms"):
        seconds = value / 1000 if unit == "ms" else value
        if abs(seconds) < 1e-3 and seconds:
            return f"{seconds * 1e6:.{0 if decimals is None else decimals}f} µs"
        if abs(seconds) < 1:
            return f"{seconds * 1000:.{0 if decimals is None else decimals}f} ms"
        if abs(seconds) < 60:
            return f"{seconds:.{2 if decimals is None else decimals}f} s"
        return f"{seconds / 60:.{1 if decimals is None else decimals}f} min"
    if unit in ("bytes", "decbytes"):
        return _scaled(value, 1024.0, _BYTES, decimals)
    if unit in ("mbytes", "decmbytes"):
        return _scaled(value * 1024 * 1024, 1024.0, _BYTES, decimals)
    if unit in ("Bps", "binBps", "decBps"):
        return _scaled(value, 1024.0, _BYTES, decimals) + "/s"
    if unit in ("reqps", "rps"):
        return _scaled(value, 1000.0, _SI, decimals) + " req/s"
    if unit == "ops":
        return _scaled(value, 1000.0, _SI, decimals) + " ops/s"
    if unit == "celsius":
        return f"{value:.{1 if decimals is None else decimals}f} °C"
    text = _scaled(value, 1000.0, _SI, decimals)
    return f"{text} {unit}" if unit and unit not in ("short", "none") else text


# --- layout ------------------------------------------------------------------------------------------


def layout(dashboard: Dashboard) -> list[tuple[Panel, tuple[int, int, int, int]]]:
    """Every panel with its grid cell, collapsed rows drawn expanded (their panels after them)."""
    placed: list[tuple[Panel, tuple[int, int, int, int]]] = []
    shift = 0
    index = 0
    panels = dashboard.panels
    while index < len(panels):
        panel = panels[index]
        x, y, w, h = (max(v, 0) for v in panel.grid)
        w = w or 24
        h = h or (1 if panel.type == "row" else 8)
        placed.append((panel, (x, y + shift, w, h)))
        index += 1
        if panel.type == "row" and panel.raw.get("collapsed"):
            children = []
            while index < len(panels) and panels[index].nested:
                children.append(panels[index])
                index += 1
            if children:
                top = min(max(c.grid[1], 0) for c in children)
                offset = y + shift + 1 - top
                bottom = y + shift + 1
                for child in children:
                    cx, cy, cw, ch = (max(v, 0) for v in child.grid)
                    cell = (cx, cy + offset, cw or 12, ch or 8)
                    placed.append((child, cell))
                    bottom = max(bottom, cell[1] + cell[3])
                shift += bottom - (y + shift + 1)
    return placed


# --- drawing -----------------------------------------------------------------------------------------


def _frame(ax: Axes, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    ax.add_patch(
        Rectangle(
            (0, 0), 1, 1, transform=ax.transAxes, facecolor=_PANEL, edgecolor=_BORDER, linewidth=1
        )
    )
    ax.text(
        0.012,
        0.985,
        title,
        transform=ax.transAxes,
        ha="left",
        va="top",
        color=_TEXT,
        fontsize=9,
        fontweight="bold",
        clip_on=True,
    )


def _message(ax: Axes, text: str, *, color: str = _MUTED, size: float = 11) -> None:
    wrapped = "\n".join(textwrap.wrap(text, 90)[:6])
    ax.text(
        0.5,
        0.45,
        wrapped,
        transform=ax.transAxes,
        ha="center",
        va="center",
        color=color,
        fontsize=size,
        clip_on=True,
    )


def _all_series(result: PanelResult) -> list[Series]:
    return [s for t in result.targets if not t.target.hide for s in t.series if s.points]


def _inner(
    fig: Figure,
    box: tuple[float, float, float, float],
    top: float,
    bottom: float,
    left: float = 0.06,
    right: float = 0.015,
) -> Axes:
    x0, y0, width, height = box
    return fig.add_axes(
        (
            x0 + width * left,
            y0 + height * bottom,
            width * (1 - left - right),
            height * (1 - top - bottom),
        )
    )


def _style(ax: Axes) -> None:
    ax.set_facecolor(_PANEL)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(colors=_MUTED, labelsize=7, length=0)
    ax.grid(True, color=_GRID, linewidth=0.6)


def _stacked(panel: Panel, series: list[Series]) -> list[list[float]]:
    custom = ((panel.raw.get("fieldConfig") or {}).get("defaults") or {}).get("custom") or {}
    stacking = (custom.get("stacking") or {}).get("mode", "none")
    out: list[list[float]] = []
    totals: dict[float, float] = {}
    for one in series:
        ys = []
        for t, v in one.points:
            if stacking == "normal" and not math.isnan(v):
                totals[t] = totals.get(t, 0.0) + v
                ys.append(totals[t])
            else:
                ys.append(v)
        out.append(ys)
    return out


def _timeseries(
    fig: Figure,
    box: tuple[float, float, float, float],
    panel: Panel,
    series: list[Series],
    size: tuple[float, float],
) -> None:
    width_in, height_in = size
    shown = series[:12]
    columns = max(1, int(width_in / 2.2))
    legend_in = 0.16 * math.ceil(len(shown) / columns) + 0.32
    ax = _inner(
        fig,
        box,
        top=0.3 / max(height_in, 0.5),
        bottom=min(0.6, legend_in / max(height_in, 0.5)),
        left=min(0.3, 0.85 / max(width_in, 0.5)),
    )
    _style(ax)
    for index, (one, ys) in enumerate(zip(shown, _stacked(panel, shown), strict=True)):
        xs = [t for t, _ in one.points]
        ax.plot(
            xs, ys, color=_PALETTE[index % len(_PALETTE)], linewidth=1.2, label=one.name or "value"
        )
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, panel.unit, None)))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.xaxis.set_major_locator(MaxNLocator(max(2, int(width_in / 1.6))))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: datetime.fromtimestamp(v).strftime("%H:%M:%S"))
    )
    if panel.min is not None or panel.max is not None:
        ax.set_ylim(panel.min, panel.max)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        legend = ax.legend(
            handles,
            [textwrap.shorten(lbl, 60) for lbl in labels],
            loc="upper left",
            bbox_to_anchor=(0.0, -0.22 / max((height_in - legend_in), 0.3)),
            ncol=columns,
            frameon=False,
            fontsize=7,
            handlelength=1.2,
            borderaxespad=0.0,
        )
        for text in legend.get_texts():
            text.set_color(_TEXT)


def _reduced(panel: Panel, series: list[Series]) -> list[tuple[str, float | None]]:
    return [(s.name, s.reduce(panel.reducer)) for s in series]


def _stat(
    fig: Figure,
    ax: Axes,
    box: tuple[float, float, float, float],
    panel: Panel,
    series: list[Series],
) -> None:
    values = _reduced(panel, series)[:4]
    count = len(values)
    for index, (name, value) in enumerate(values):
        cx = (index + 0.5) / count
        size = 26 if count == 1 else 18
        color = threshold_color(value, panel.thresholds)
        ax.text(
            cx,
            0.5,
            format_value(value, panel.unit, panel.decimals),
            transform=ax.transAxes,
            ha="center",
            va="center",
            color=color,
            fontsize=size,
            fontweight="bold",
        )
        if count > 1 or (name and panel.raw.get("options", {}).get("textMode") == "value_and_name"):
            ax.text(
                cx,
                0.24,
                textwrap.shorten(name, 40),
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=_MUTED,
                fontsize=7,
            )
    if count == 1 and len(series[0].points) > 1:
        x0, y0, width, height = box
        spark = fig.add_axes((x0 + 0.01 * width, y0 + 0.02 * height, 0.98 * width, 0.25 * height))
        spark.set_axis_off()
        ys = [v for _, v in series[0].points]
        color = threshold_color(values[0][1], panel.thresholds)
        spark.fill_between(range(len(ys)), ys, min(ys), color=color, alpha=0.18, linewidth=0)
        spark.plot(range(len(ys)), ys, color=color, linewidth=1.0, alpha=0.8)


def _gauge_range(panel: Panel, value: float) -> tuple[float, float]:
    low = panel.min if panel.min is not None else 0.0
    if panel.max is not None:
        return low, panel.max
    if panel.unit == "percent":
        return low, 100.0
    if panel.unit == "percentunit":
        return low, 1.0
    top = max(
        [abs(value) * 1.25]
        + [t.value * 1.25 for t in panel.thresholds if t.value is not None]
        + [1.0]
    )
    return low, top


def _gauge(
    fig: Figure,
    box: tuple[float, float, float, float],
    panel: Panel,
    series: list[Series],
    height_in: float,
) -> None:
    value = _reduced(panel, series)[0][1]
    if value is None:
        return
    ax = _inner(fig, box, top=0.22 / max(height_in, 0.5) + 0.04, bottom=0.04, left=0.02, right=0.02)
    ax.set_axis_off()
    ax.set_xlim(-1.15, 1.15)
    ax.set_ylim(-0.75, 1.15)
    ax.set_aspect("equal", adjustable="box", anchor="C")
    low, high = _gauge_range(panel, value)
    span = (high - low) or 1.0
    start_angle, sweep = 210.0, 240.0

    def angle(v: float) -> float:
        fraction = min(max((v - low) / span, 0.0), 1.0)
        return start_angle - sweep * fraction

    # Threshold band (outer thin ring), then the track and the value arc.
    steps = list(panel.thresholds) or [Threshold("green", None)]
    for index, step in enumerate(steps):
        begin = low if step.value is None else max(step.value, low)
        following = steps[index + 1].value if index + 1 < len(steps) else None
        end = high if following is None else min(following, high)
        if end <= begin:
            continue
        ax.add_patch(
            Wedge(
                (0, 0),
                1.1,
                angle(end),
                angle(begin),
                width=0.07,
                facecolor=_color(step.color),
                edgecolor="none",
            )
        )
    ax.add_patch(
        Wedge(
            (0, 0),
            1.0,
            start_angle - sweep,
            start_angle,
            width=0.28,
            facecolor=_BORDER,
            edgecolor="none",
        )
    )
    color = threshold_color(value, panel.thresholds)
    ax.add_patch(
        Wedge((0, 0), 1.0, angle(value), start_angle, width=0.28, facecolor=color, edgecolor="none")
    )
    ax.text(
        0,
        0,
        format_value(value, panel.unit, panel.decimals),
        ha="center",
        va="center",
        color=color,
        fontsize=15,
        fontweight="bold",
    )


def _bucket_bars(series: list[Series], panel: Panel, fmt: str) -> list[tuple[str, float | None]]:
    values = _reduced(panel, series)
    if fmt != "heatmap" or not all("le" in s.labels for s in series):
        return values

    def bound(item: Series) -> float:
        le = item.labels.get("le", "+Inf")
        return math.inf if le in ("+Inf", "Inf") else float(le)

    ordered = sorted(series, key=bound)
    bars: list[tuple[str, float | None]] = []
    previous = 0.0
    for item in ordered:
        total = item.reduce(panel.reducer) or 0.0
        bars.append((item.name, max(total - previous, 0.0)))
        previous = total
    return bars


def _bargauge(
    fig: Figure,
    box: tuple[float, float, float, float],
    panel: Panel,
    series: list[Series],
    fmt: str,
    height_in: float,
) -> None:
    bars = _bucket_bars(series, panel, fmt)[:20]
    ax = _inner(fig, box, top=0.22 / max(height_in, 0.5) + 0.06, bottom=0.06, left=0.16, right=0.12)
    _style(ax)
    ax.grid(False)
    labels = [textwrap.shorten(name or "value", 24) for name, _ in bars]
    numbers = [v or 0.0 for _, v in bars]
    positions = list(range(len(bars)))[::-1]
    colors = [
        threshold_color(v, panel.thresholds) if panel.thresholds else _PALETTE[i % len(_PALETTE)]
        for i, (_, v) in enumerate(bars)
    ]
    ax.barh(positions, numbers, color=colors, height=0.7)
    ax.set_yticks(positions, labels)
    ax.tick_params(axis="y", labelcolor=_TEXT)
    ax.set_xticks([])
    top = max([*numbers, 0.0]) or 1.0
    ax.set_xlim(0, top * 1.02)
    for position, value in zip(positions, numbers, strict=True):
        ax.text(
            1.01,
            position,
            format_value(value, panel.unit, panel.decimals),
            va="center",
            ha="left",
            color=_TEXT,
            fontsize=7,
            transform=ax.get_yaxis_transform(),
        )


def _listing(ax: Axes, rows: Sequence[str], *, mono: bool = True) -> None:
    shown = rows[:14]
    ax.text(
        0.015,
        0.88,
        "\n".join(textwrap.shorten(r, 150) for r in shown),
        transform=ax.transAxes,
        ha="left",
        va="top",
        color=_TEXT,
        fontsize=7,
        family="monospace" if mono else None,
        clip_on=True,
    )


def _table_rows(panel: Panel, result: PanelResult) -> list[str]:
    rows: list[str] = []
    for target in result.targets:
        for trace in target.rows:
            rows.append(
                f"{trace['traceID'][:16]:<16}  {trace['service']:<18} "
                f"{trace['name']:<24} {trace['duration_ms']} ms"
            )
        for one in target.series:
            rows.append(
                f"{textwrap.shorten(one.name, 70):<70} "
                f"{format_value(one.reduce(panel.reducer), panel.unit, panel.decimals)}"
            )
        for stamp, line, _ in target.lines:
            rows.append(f"{datetime.fromtimestamp(stamp):%H:%M:%S}  {line}")
    return rows


def _draw_panel(
    fig: Figure,
    box: tuple[float, float, float, float],
    panel: Panel,
    result: PanelResult | None,
    size: tuple[float, float],
) -> None:
    height_in = size[1]
    ax = fig.add_axes(box)
    if panel.type == "row":
        ax.set_axis_off()
        ax.text(
            0.002,
            0.5,
            f"▾ {panel.title}",
            transform=ax.transAxes,
            ha="left",
            va="center",
            color=_TEXT,
            fontsize=11,
            fontweight="bold",
        )
        return
    _frame(ax, panel.title)
    if panel.type == "text":
        content = str((panel.raw.get("options") or {}).get("content") or "")
        _listing(ax, [re.sub(r"^#+\s*", "", line) for line in content.splitlines()], mono=False)
        return
    if result is None:
        _message(ax, f"{panel.type} panel")
        return
    series = _all_series(result)
    if not result.has_data:
        if result.errors:
            _message(ax, "Query error: " + "; ".join(result.errors), color=_NAMED["red"], size=8)
        else:
            _message(ax, "No data")
        return
    fmt = next((t.target.format for t in result.targets if t.target.format), "")
    lines = [line for t in result.targets for line in t.lines]
    rows = [row for t in result.targets for row in t.rows]
    if panel.type in ("logs", "table", "traces") or lines or rows:
        _listing(ax, _table_rows(panel, result))
    elif panel.type == "stat":
        _stat(fig, ax, box, panel, series)
    elif panel.type == "gauge":
        _gauge(fig, box, panel, series, height_in)
    elif panel.type in ("bargauge", "piechart", "barchart", "histogram"):
        _bargauge(fig, box, panel, series, fmt, height_in)
    else:
        _timeseries(fig, box, panel, series, size)


def _key(panel: Panel) -> tuple[int | None, str, str, tuple[int, int, int, int]]:
    return (panel.id, panel.title, panel.row, panel.grid)


@dataclass
class Preview:
    """A drawn dashboard: the matplotlib figure and the PNG written; shows itself in Jupyter."""

    figure: Figure
    path: Path
    run: DashboardRun

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()


def preview(
    source: Dashboard | str | Path | Mapping[str, Any],
    *,
    stack: Stack | None = None,
    results: DashboardRun | None = None,
    out: str | Path | None = None,
    urls: Mapping[str, str] | None = None,
    datasources: Sequence[Datasource] = LAB_DATASOURCES,
    window: float = 300.0,
    end: float | None = None,
    variables: Mapping[str, str | Sequence[str]] | None = None,
    width: float = 16.0,
    dpi: int = 100,
) -> Preview:
    """Draw ``source`` as Grafana would lay it out, from its queries run against the stack.

    Args:
        source: the dashboard (file, JSON text, document or loaded :class:`Dashboard`).
        stack: where to run the queries (or pass ``results`` of an earlier :func:`run`).
        out: the PNG to write (default: ``<file>.preview.png`` beside a file, else
            ``<uid>.preview.png`` in the working folder).
        width: figure width in inches (24 grid columns across).

    Returns:
        A :class:`Preview`; the last expression of a notebook cell displays it.
    """
    dashboard = source if isinstance(source, Dashboard) else load(source)
    if results is None:
        results = run(
            dashboard,
            stack=stack,
            urls=urls,
            datasources=datasources,
            window=window,
            end=end,
            variables=variables,
        )
    cells = layout(dashboard)
    column = width / 24
    row_height = column * _ROW_RATIO
    grid_rows = max((y + h for _, (_, y, _, h) in cells), default=1)
    header = 0.45
    height = grid_rows * row_height + header
    fig = Figure(figsize=(width, height), dpi=dpi, facecolor=_BACKGROUND)
    fig.text(
        0.008,
        1 - 0.28 / height,
        dashboard.title or "(untitled dashboard)",
        ha="left",
        va="center",
        color=_TEXT,
        fontsize=13,
        fontweight="bold",
    )
    window_text = (
        f"{datetime.fromtimestamp(results.window.start):%Y-%m-%d %H:%M:%S} → "
        f"{datetime.fromtimestamp(results.window.end):%H:%M:%S}"
    )
    fig.text(
        0.992, 1 - 0.28 / height, window_text, ha="right", va="center", color=_MUTED, fontsize=8
    )
    by_panel = {_key(r.panel): r for r in results.panels}
    gap = 0.04  # inches between panels
    for panel, (x, y, w, h) in cells:
        left = (x * column + gap) / width
        bottom = (height - header - (y + h) * row_height + gap) / height
        box = (left, bottom, (w * column - 2 * gap) / width, (h * row_height - 2 * gap) / height)
        _draw_panel(fig, box, panel, by_panel.get(_key(panel)), (w * column, h * row_height))
    if out is None:
        if dashboard.source and dashboard.source != "<dashboard>":
            source_path = Path(dashboard.source)
            out = source_path.with_name(source_path.stem + ".preview.png")
        else:
            out = Path(f"{dashboard.uid or 'dashboard'}.preview.png")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor=_BACKGROUND)
    return Preview(fig, path, results)
