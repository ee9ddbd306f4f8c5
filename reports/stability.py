"""Whether a timing can be trusted, said in words, as pyperf does.

A benchmark is *unstable* when any of these holds:

- its rounds spread widely: the interquartile range is more than ``REL_IQR_LIMIT`` (10%) of
  the median (``rel_iqr``: the benchmark's own figure when it recorded one, else
  ``stats.iqr / stats.median``, or the raw timings' when several runs are pooled);
- too few rounds were timed (fewer than ``MIN_ROUNDS``) for a median and an interval to mean much;
- the machine was busy: the load average at the start or the end of the benchmark exceeded
  ``LOAD_PER_CPU_LIMIT`` per CPU. Without a load figure, or without the CPU count, the load is
  unknown and judged on nothing. A benchmark timed on the ``cpu`` clock is not judged on the
  load: the time its process waited for a core is not in its figures (the spread still is).

A speedup is *clear* only when its 95% interval lies wholly above 1 (faster) or below 1
(slower); an interval that spans 1, or no interval at all, is never shown as a win or a loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reports.numbers import as_float, percent, sig

REL_IQR_LIMIT = 0.10
MIN_ROUNDS = 10
LOAD_PER_CPU_LIMIT = 1.0


def rel_iqr(timings: np.ndarray) -> float:
    """Interquartile range / median of raw timings; NaN without any."""
    values = np.asarray(timings, dtype=np.float64)
    if values.size == 0:
        return math.nan
    median = float(np.median(values))
    if median <= 0:
        return math.nan
    q1, q3 = np.percentile(values, [25, 75])
    return float((q3 - q1) / median)


def instability(
    rel_iqr_value: Any, rounds: Any, load_start: Any, load_end: Any, cpus: Any, clock: str = "wall"
) -> list[str]:
    """Why a timing is unstable, each reason a phrase; empty when it looks stable."""
    reasons = []
    spread = as_float(rel_iqr_value)
    if spread > REL_IQR_LIMIT:
        reasons.append(
            f"its rounds spread by {percent(spread)} of the median (interquartile range; "
            f"above {percent(REL_IQR_LIMIT)} is noisy)"
        )
    count = as_float(rounds)
    if not math.isnan(count) and count < MIN_ROUNDS:
        reasons.append(f"only {int(count)} round{'s' if count != 1 else ''} were timed (fewer than {MIN_ROUNDS})")
    cpu_count = as_float(cpus)
    if cpu_count > 0 and clock != "cpu":
        busy = [
            f"{sig(load)} at the {when}"
            for when, load in (("start", as_float(load_start)), ("end", as_float(load_end)))
            if load / cpu_count > LOAD_PER_CPU_LIMIT
        ]
        if busy:
            reasons.append(f"the machine was busy (load average {' and '.join(busy)}, on {int(cpu_count)} CPUs)")
    return reasons


def load_text(load_start: Any, load_end: Any) -> str:
    """'1.20 → 2.30', or 'unknown' when the benchmark recorded no load."""
    start, end = as_float(load_start), as_float(load_end)
    if math.isnan(start) and math.isnan(end):
        return "unknown"
    return f"{sig(start)} → {sig(end)}"


def speedup_verdict(low: Any, high: Any) -> str:
    """'faster' or 'slower' only when the 95% interval excludes 1; else 'no clear difference'."""
    lo, hi = as_float(low), as_float(high)
    if lo > 1:
        return "faster"
    if hi < 1:
        return "slower"
    return "no clear difference"
