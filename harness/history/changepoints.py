"""Steps in a series: where a number changed level, by how much, and how surely.

Candidates come from ruptures' kernel change-point detection with a linear kernel (the
least-squares cost: a change in mean) solved exactly by PELT in ruptures' C code, on the
series in log space divided by a robust estimate of its noise (the median absolute
difference of neighbours), with a penalty of ``PENALTY x log n``. Each candidate is then
tested against its neighbouring segments with Welch's t-test on the logarithms: its size is
the ratio of the geometric means after and before, with a 95% interval, and its p-value says
how surely the level moved. A candidate is a step when p < ``alpha`` and the ratio is at
least ``min_change`` away from 1.

The segment finder needs two points on each side, so the newest commit, with one run, is
tested on its own: its points against the segment before them, with a prediction interval
(one point) or Welch's test (several). That is the step CI asks about.

Timings are worse when they grow; headroom is worse when it shrinks: ``worse_when`` says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ruptures
from scipy import stats

from harness.history.settings import ALPHA

PENALTY = 3.0
"""The change-point penalty per step, in units of log n times the noise variance (tools/history_detector.py)."""
MIN_SEGMENT = 2
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Step:
    index: int
    """The first point at the new level."""
    commit: str
    before: float
    """Geometric mean of the segment before (seconds, or headroom)."""
    after: float
    ratio: float
    """after / before."""
    low: float
    high: float
    """The 95% interval of the ratio."""
    p_value: float
    regression: bool
    """True when the number moved the worse way."""


def find_steps(
    values: Sequence[float],
    commits: Sequence[str],
    *,
    worse_when: str = "higher",
    alpha: float = ALPHA,
    min_change: float = 0.05,
    penalty: float = PENALTY,
) -> list[Step]:
    """The steps of one series of positive numbers (one per run, oldest first)."""
    y = np.log(np.asarray(values, dtype=float))
    n = len(y)
    if n < 3 or not np.all(np.isfinite(y)):
        return []
    # The newest commit's runs, when too few to form a segment, are left to the tail test.
    if np.ptp(y) == 0:
        return []  # one value throughout (an exact headroom, a fixed timer): nothing can have stepped
    tail = _trailing_commit_runs(commits)
    body = n - tail if tail < MIN_SEGMENT else n
    sigma = noise(y[:body])
    breaks = []
    if body >= 2 * MIN_SEGMENT:
        pen = penalty * math.log(body)
        # Centred before scaling: a series without noise (sigma at its floor) would otherwise be
        # numbers so large that the cost's rounding error alone outweighs the penalty.
        z = (y[:body] - np.median(y[:body])) / sigma
        found = ruptures.KernelCPD(kernel="linear", min_size=MIN_SEGMENT).fit(z).predict(pen=pen)
        breaks = [int(b) for b in found[:-1]]
    bounds = [0, *breaks, body]
    steps = []
    for i, start in enumerate(breaks, start=1):
        step = _test(y, bounds[i - 1], start, bounds[i + 1], commits, worse_when)
        if step and step.p_value < alpha and _big_enough(step.ratio, min_change):
            steps.append(step)
    if body < n and body - bounds[-2] >= 3:
        step = _test(y, bounds[-2], body, n, commits, worse_when)
        if step and step.p_value < alpha and _big_enough(step.ratio, min_change):
            steps.append(step)
    return steps


def noise(y: np.ndarray) -> float:
    """The noise's standard deviation, from the median absolute difference of neighbours (steps barely move it)."""
    differences = np.abs(np.diff(y))
    sigma = MAD_TO_SIGMA * float(np.median(differences)) / math.sqrt(2) if len(differences) else 0.0
    return max(sigma, 1e-9)


def _trailing_commit_runs(commits: Sequence[str]) -> int:
    last = commits[-1]
    count = 0
    for commit in reversed(commits):
        if commit != last:
            break
        count += 1
    return count


def _big_enough(ratio: float, min_change: float) -> bool:
    return abs(math.log(ratio)) >= math.log1p(min_change)


def _test(y: np.ndarray, lo: int, mid: int, hi: int, commits: Sequence[str], worse_when: str) -> Step | None:
    before, after = y[lo:mid], y[mid:hi]
    if len(before) < 1 or len(after) < 1 or len(before) + len(after) < 3:
        return None
    difference = float(after.mean() - before.mean())
    if len(after) == 1 or len(before) == 1:
        # A prediction interval: is the lone point where the other segment's points fall?
        many, one = (before, after) if len(after) == 1 else (after, before)
        spread = float(many.std(ddof=1)) * math.sqrt(1 + 1 / len(many))
        df: float = len(many) - 1
    else:
        va, vb = after.var(ddof=1) / len(after), before.var(ddof=1) / len(before)
        spread = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(after) - 1) + vb**2 / (len(before) - 1)) if va + vb > 0 else 1.0
    if spread == 0:
        p_value, half = (0.0 if difference else 1.0), 0.0
    else:
        t = difference / spread
        p_value = float(2 * stats.t.sf(abs(t), df))
        half = float(stats.t.ppf(0.975, df)) * spread
    ratio = math.exp(difference)
    return Step(
        index=mid,
        commit=commits[mid],
        before=math.exp(float(before.mean())),
        after=math.exp(float(after.mean())),
        ratio=ratio,
        low=math.exp(difference - half),
        high=math.exp(difference + half),
        p_value=p_value,
        regression=(ratio > 1) if worse_when == "higher" else (ratio < 1),
    )
