"""The report's figures, as inline SVG text (matplotlib's object API; no pyplot, no display).

Each function returns an ``<svg>`` element with no XML prolog, DOCTYPE or namespace URLs, so
it can sit inside HTML that references nothing outside itself. Text stays text
(``svg.fonttype = none``) and element ids are salted with a constant, so the output is
deterministic. matplotlib escapes that text for XML; every label taken from the results goes
through :func:`~reports.escaping.plot_text` first, so a backend named ``a$\\x$`` is not read as
mathtext (which would fail) and one named ``_b`` is not dropped from the legend.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from reports.escaping import plot_text
from reports.matrix import check_order
from reports.numbers import tick

EXACT_HEADROOM_SHOWN_AS = 1e6
"""Where an exact match (infinite headroom) is drawn on the log axis."""

MIN_TICKS = 3
LOG_TICK_STEPS = ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), tuple(float(m) for m in range(1, 10)))
"""Tick mantissas per decade, coarsest first."""
LINE_STYLES = ("-", "--", ":", "-.")
HATCHES = ("", "//", "..", "xx")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "netharness", "font.size": 9}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


def colours(backends: Sequence[str]) -> dict[str, str]:
    """One fixed colour per backend, the same in every figure."""
    palette = matplotlib.colormaps["tab10"]
    return {name: matplotlib.colors.to_hex(palette(i % palette.N)) for i, name in enumerate(sorted(backends))}


def latency_svg(bench: pd.DataFrame) -> str:
    """Median latency against batch size, log-log, one line per backend, one panel per phase."""
    frame = bench
    phases = sorted(frame["phase"].unique())
    palette = colours(frame["backend"].unique())
    with _style():
        figure = Figure(figsize=(5.0 * len(phases), 3.6), layout="constrained")
        for axes, phase in zip(figure.subplots(1, len(phases), squeeze=False)[0], phases):
            for label, backend, variant, series in _series(frame[frame["phase"] == phase]):
                series = series.sort_values("batch")
                batch = series["batch"].astype(float)
                axes.errorbar(
                    batch,
                    series["median_s"] * 1e3,
                    yerr=_quartile_bars(series),
                    marker="o",
                    markersize=4,
                    capsize=2,
                    label=label,
                    color=palette[backend],
                    linestyle=LINE_STYLES[variant % len(LINE_STYLES)],
                )
            axes.set(
                xscale="log",
                yscale="log",
                xlabel="batch size (samples)",
                ylabel="median latency (ms)",
                title=plot_text(phase),
            )
            batches = sorted(int(b) for b in frame["batch"].dropna().unique())
            axes.xaxis.set_major_locator(FixedLocator(batches))  # the batch sizes that were run
            axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: tick(value)))
            axes.xaxis.set_minor_formatter(NullFormatter())
            _readable_log_axis(axes.yaxis, axes.get_ylim())
            axes.grid(True, which="both", alpha=0.3)
            axes.legend(fontsize=7)
        return _svg(figure)


def throughput_svg(bench: pd.DataFrame) -> str:
    """Samples per second, bars grouped by batch size, one panel per phase."""
    frame = bench
    phases = sorted(frame["phase"].unique())
    palette = colours(frame["backend"].unique())
    with _style():
        figure = Figure(figsize=(5.0 * len(phases), 3.6), layout="constrained")
        for axes, phase in zip(figure.subplots(1, len(phases), squeeze=False)[0], phases):
            part = frame[frame["phase"] == phase]
            batches = sorted(int(b) for b in part["batch"].dropna().unique())
            series = list(_series(part))
            width = 0.8 / max(1, len(series))
            for index, (label, backend, variant, rows) in enumerate(series):
                by_batch = rows.set_index(rows["batch"].astype(float))["samples_per_s"]
                heights = [float(by_batch.get(float(b), math.nan)) for b in batches]
                positions = np.arange(len(batches)) + (index - (len(series) - 1) / 2) * width
                hatch = HATCHES[variant % len(HATCHES)]
                axes.bar(positions, heights, width=width, label=label, color=palette[backend], hatch=hatch)
            axes.set_xticks(np.arange(len(batches)), [str(b) for b in batches])
            axes.set(
                yscale="log", xlabel="batch size (samples)", ylabel="throughput (samples/s)", title=plot_text(phase)
            )
            _readable_log_axis(axes.yaxis, axes.get_ylim())
            axes.grid(True, axis="y", which="both", alpha=0.3)
            axes.legend(fontsize=7)
        return _svg(figure)


def headroom_svg(conf: pd.DataFrame) -> str:
    """The smallest error headroom (tolerance / error) per check (rows) and backend (markers), log scale.

    Below 1 fails. A dot plot, so that the figure grows with the checks only, not with
    checks x backends; each backend has its own colour and marker shape, a little offset.
    """
    measured = conf.dropna(subset=["headroom"])
    worst = measured.groupby(["check", "backend"])["headroom"].min().unstack("backend")
    checks = [check for _, names in check_order(worst.index) for check in names]
    worst = worst.reindex(checks)
    backends = list(worst.columns)
    palette = colours(backends)
    with _style():
        figure = Figure(figsize=(8.0, 1.4 + 0.26 * len(checks)), layout="constrained")
        axes: Axes = figure.subplots()
        step = 0.6 / max(1, len(backends))
        for index, backend in enumerate(backends):
            values = worst[backend].to_numpy(dtype=float)
            shown = np.where(np.isinf(values), EXACT_HEADROOM_SHOWN_AS, values)
            positions = np.arange(len(checks)) + (index - (len(backends) - 1) / 2) * step
            axes.scatter(
                shown,
                positions,
                s=22,
                marker=MARKERS[index % len(MARKERS)],
                color=palette[backend],
                label=plot_text(backend),
                zorder=3,
            )
        axes.axvline(1.0, color="#b00020", linewidth=1.2, linestyle="--", label="tolerance (headroom 1)")
        axes.set_yticks(np.arange(len(checks)), [plot_text(check) for check in checks])
        axes.set_ylim(len(checks) - 0.5, -0.5)
        axes.set(
            xscale="log",
            xlabel="headroom = tolerance / observed error (no unit; "
            f"an exact match is drawn at {tick(EXACT_HEADROOM_SHOWN_AS)})",
            ylabel="check",
        )
        _readable_log_axis(axes.xaxis, axes.get_xlim())
        axes.grid(True, axis="x", which="major", alpha=0.3)
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _svg(figure)


def _series(frame: pd.DataFrame) -> Iterator[tuple[str, str, int, pd.DataFrame]]:
    """(label, backend, variant, rows) per backend, and per precision, machine and device when there are several.

    ``variant`` numbers the (machine, device, precision) triples, so that one backend's series
    on two machines or at two precisions share a colour and differ in line style or hatch.
    """
    keys = [key for key in ("machine", "device", "dtype") if key in frame]
    several = {key: frame[key].nunique() > 1 for key in keys}
    variants = {triple: i for i, triple in enumerate(sorted(set(zip(*(frame[k].astype(str) for k in keys)))))}
    for group, rows in frame.groupby(["backend", *keys], sort=True):
        backend, values = group[0], [str(v) for v in group[1:]]
        extra = [value for key, value in zip(keys, values) if several[key]]
        label = f"{backend} ({', '.join(extra)})" if extra else str(backend)
        yield plot_text(label), str(backend), variants[tuple(values)], rows


def _quartile_bars(series: pd.DataFrame) -> np.ndarray | None:
    low = (series["median_s"] - series["q1_s"]) * 1e3
    high = (series["q3_s"] - series["median_s"]) * 1e3
    if low.isna().any() or high.isna().any() or (low < 0).any() or (high < 0).any():
        return None
    return np.vstack([low.to_numpy(dtype=float), high.to_numpy(dtype=float)])


def _readable_log_axis(axis: Axis, limits: tuple[float, float]) -> None:
    """Ticks on a log axis that always carry labels, as plain numbers to 3 significant figures.

    matplotlib labels only the powers of ten (and mathtext is slow to lay out), so an axis that
    spans less than a decade would show no number at all. Ticks are taken at 1, then 1-2-5, then
    finer steps per decade, until at least ``MIN_TICKS`` fall inside the axis.
    """
    low, high = sorted(limits)
    ticks: list[float] = []
    if low > 0 and math.isfinite(low) and math.isfinite(high):
        decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for steps in LOG_TICK_STEPS:
            ticks = [m * 10.0**e for e in decades for m in steps if low <= m * 10.0**e <= high]
            if len(ticks) >= MIN_TICKS:
                break
        if len(ticks) < 2:  # a very narrow range: its ends and middle
            ticks = [low, math.sqrt(low * high), high]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda value, _: tick(value)))
    axis.set_minor_formatter(NullFormatter())


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(cast(Any, _SVG_RC)):
        yield


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # HTML parses inline SVG without namespace declarations; dropping them leaves no URL at all.
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
