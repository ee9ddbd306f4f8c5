"""The trend page's figures: small hand-written SVG, one per series, with nothing fetched and no script.

A history holds hundreds of series of up to thousands of runs; a matplotlib figure each would
take minutes and tens of megabytes, so these are plain polylines, each series thinned to at
most ``MAX_POINTS`` points (each kept point the median of its bucket, the band the bucket's
outer quartiles), with labelled axes and each step drawn as a dashed line at its commit.
Every text from the history goes through :func:`html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

from reports.numbers import tick

MAX_POINTS = 120
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 62, 12, 10, 44


def thin(values: Sequence[float], low: Sequence[float], high: Sequence[float]) -> tuple[np.ndarray, ...]:
    """(x, value, low, high): every point, or bucket medians when there are more than ``MAX_POINTS``."""
    v, lo, hi = (np.asarray(a, dtype=float) for a in (values, low, high))
    x = np.arange(len(v), dtype=float)
    if len(v) <= MAX_POINTS:
        return x, v, lo, hi
    # The buckets of np.array_split: the first ``extra`` one point longer than the rest.
    size, extra = divmod(len(v), MAX_POINTS)
    sizes = np.full(MAX_POINTS, size)
    sizes[:extra] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    cut = extra * (size + 1)
    medians = np.concatenate(
        [np.median(v[:cut].reshape(extra, size + 1), axis=1), np.median(v[cut:].reshape(-1, size), axis=1)]
    )
    return (
        starts + (sizes - 1) / 2,
        medians,
        np.minimum.reduceat(lo, starts),
        np.maximum.reduceat(hi, starts),
    )


def trend_svg(
    values: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    commits: Sequence[str],
    steps: Sequence[tuple[int, str, bool]],
    *,
    ylabel: str,
    log: bool,
    scale: float = 1.0,
) -> str:
    """One series against its runs (oldest left); ``steps`` are (index, commit, regression)."""
    x, v, lo, hi = thin(values, low, high)
    v, lo, hi = v * scale, lo * scale, hi * scale  # after thinning: a positive scale keeps medians and extremes
    n = max(len(values) - 1, 1)
    span_lo, span_hi = float(np.min(lo)), float(np.max(hi))
    if log:
        f = np.log10
        y0, y1 = math.log10(span_lo), math.log10(span_hi)
    else:
        f = np.asarray  # type: ignore[assignment]
        y0, y1 = min(0.0, span_lo), span_hi
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - (pad if log else 0), y1 + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(i: np.ndarray | float) -> np.ndarray:
        return LEFT + np.asarray(i, dtype=float) / n * plot_w

    def py(value: np.ndarray | float) -> np.ndarray:
        return TOP + (1 - (f(np.asarray(value, dtype=float)) - y0) / (y1 - y0)) * plot_h

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for value in _ticks(y0, y1, log):
        y = float(py(value))
        parts.append(f'<line x1="{LEFT - 4}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(
            f'<text class="ytick" x="{LEFT - 6}" y="{y + 3:.1f}" text-anchor="end" font-size="10">{tick(value)}</text>'
        )
    for i in sorted({0, len(values) - 1, *(s[0] for s in steps)}):
        xx = float(px(i))
        label = escape(commits[i][:10]) if i < len(commits) else ""
        parts.append(
            f'<text class="xtick" x="{xx:.1f}" y="{TOP + plot_h + 14}" text-anchor="middle" font-size="9">'
            f"{label}</text>"
        )
    if not np.allclose(lo, hi):
        band = [*zip(px(x), py(hi)), *reversed(list(zip(px(x), py(lo))))]
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in band)
        parts.append(f'<polygon points="{points}" fill="#1f77b4" fill-opacity="0.2" stroke="none"/>')
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(x), py(v)))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    if len(x) <= 30:
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="#1f77b4"/>' for a, b in zip(px(x), py(v))]
    for index, commit, regression in steps:
        xx = float(px(index - 0.5))
        colour = "#d62728" if regression else "#2ca02c"
        parts.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="{colour}" stroke-dasharray="4 3"'
            f' stroke-width="1.5"><title>step at {escape(commit)}</title></line>'
        )
    parts.append(
        f'<text class="xlabel" x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11">'
        "commit (runs oldest to newest; dashed: a step, red worse, green better)</text>"
    )
    parts.append(
        f'<text class="ylabel" x="12" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" font-size="11"'
        f' transform="rotate(-90 12 {TOP + plot_h / 2:.0f})">{escape(ylabel)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _ticks(y0: float, y1: float, log: bool) -> list[float]:
    if log:
        decades = range(math.ceil(y0), math.floor(y1) + 1)
        ticks = [10.0**d for d in decades]
        if len(ticks) < 2:
            ticks = [10**y0 * (10 ** (y1 - y0)) ** (k / 3) for k in range(1, 3)]
        return ticks
    step = 10 ** math.floor(math.log10((y1 - y0) / 4))
    for m in (1, 2, 5, 10):
        if (y1 - y0) / (m * step) <= 5:
            step *= m
            break
    start = math.ceil(y0 / step) * step
    return [start + k * step for k in range(int((y1 - start) / step) + 1)]
