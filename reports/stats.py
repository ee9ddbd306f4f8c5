"""The statistics behind the report and the comparison.

Speedup against eager is the ratio of median per-round times, ``median(eager) /
median(backend)`` (above 1: faster than eager), with a percentile bootstrap interval: both
sets of raw timings are resampled with replacement, independently, ``BOOTSTRAP_RESAMPLES``
times, from a fresh ``numpy.random.default_rng(BOOTSTRAP_SEED)`` for each comparison, so every
interval is reproducible on its own and does not depend on which others were computed.

Where a backend's benchmark also timed eager in the same process, interleaved round by round
(``paired_*``, see ``suites/bench_net.py``), its speedup comes from those pairs instead:
the median of the per-round ratios ``eager_i / backend_i``, with a bootstrap that resamples
whole rounds (both sides of a round together), so a change of load that slowed both in a round
cancels. ``pairing`` says which: ``paired`` or ``separate`` (two processes' timings). A paired
speedup's ``unstable`` judges the per-round ratios (their spread, their count, the load on
the wall clock), which are what it is made of; its ``baseline_unstable`` is empty.

Each speedup carries its ``verdict`` (``faster`` or ``slower`` only when the interval excludes
1: :func:`~reports.stability.speedup_verdict`), and why the backend's timing and eager's are
unstable, if they are (``unstable``, ``baseline_unstable``; empty when stable).

A slowdown is significant when a one-sided Mann-Whitney U test says the current timings are
stochastically greater than the baseline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from reports.stability import instability, rel_iqr, speedup_verdict

BOOTSTRAP_SEED = 20240607
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
BASELINE_BACKEND = "eager"
SPEEDUP_KEY = ["machine", "device", "dtype", "clock", "process_threads", "phase", "batch"]
"""What a backend and eager share to be compared: the process's torch threads, not the threads a
backend reports it uses (a backend with its own pool is compared as it runs)."""
_CHUNK_ELEMENTS = 4_000_000  # bounds the memory of one block of resamples


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def bootstrap_medians(timings: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """The median of each of ``resamples`` resamples (with replacement) of ``timings``."""
    n = timings.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    medians = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        picks = rng.integers(0, n, size=(stop - start, n))
        medians[start:stop] = np.median(timings[picks], axis=1)
    return medians


def speedup_interval(
    baseline: np.ndarray,
    other: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """``median(baseline) / median(other)`` with its percentile bootstrap interval.

    With no raw timings on either side the interval is NaN and only the estimate is given.
    """
    baseline, other = np.asarray(baseline, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if baseline.size == 0 or other.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    estimate = float(np.median(baseline) / np.median(other))
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(baseline, rng, resamples) / bootstrap_medians(other, rng, resamples)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high))


def paired_speedup_interval(
    baseline: np.ndarray,
    other: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """The median of the per-round ratios ``baseline_i / other_i``, with a percentile bootstrap over rounds."""
    ratios = np.asarray(baseline, dtype=np.float64) / np.asarray(other, dtype=np.float64)
    if ratios.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    medians = bootstrap_medians(ratios, np.random.default_rng(seed), resamples)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(medians, [tail, 1.0 - tail])
    return Interval(float(np.median(ratios)), float(low), float(high))


def speedup_frame(bench: pd.DataFrame) -> pd.DataFrame:
    """Speedup of every backend against eager at the same machine, device, dtype, threads, phase, batch.

    ``bench`` is pooled (:func:`reports.tables.pooled`), as every function of the report takes it.
    """
    return _speedups(bench, SPEEDUP_KEY, "backend", BASELINE_BACKEND, "eager_median_s", paired=True)


PRECISION_KEY = ["machine", "device", "clock", "threads", "phase", "batch", "backend"]
BASELINE_PRECISION = "float32"


def precision_speedup_frame(bench: pd.DataFrame) -> pd.DataFrame:
    """Speedup of each reduced precision against the same backend's float32, at the same configuration."""
    return _speedups(bench, PRECISION_KEY, "dtype", BASELINE_PRECISION, "float32_median_s")


def _speedups(
    bench: pd.DataFrame, key: list[str], axis: str, baseline: str, baseline_column: str, paired: bool = False
) -> pd.DataFrame:
    """Within each ``key`` group, every row's speedup against the row whose ``axis`` is ``baseline``.

    ``paired``: a row with rounds timed in turns with the baseline uses them (and needs no
    baseline row: a baseline whose own step was lost still has its paired rounds).
    """
    other = "dtype" if axis == "backend" else "backend"
    ordered = [*key, axis] if other in key else [*key, other, axis]
    ordered = list(dict.fromkeys([*ordered, "threads", "threads_source"]))  # the backend's threads, and their source
    columns = [
        *ordered,
        baseline_column,
        "median_s",
        "speedup",
        "ci_low",
        "ci_high",
        "verdict",
        "unstable",
        "baseline_unstable",
        "pairing",
    ]
    if bench.empty or any(name not in bench for name in ordered):
        return pd.DataFrame(columns=columns)
    # Already pooled; a timed object whose results were wrong has no speed to compare, either way.
    frame = bench[bench["error_within_tolerance"].astype(bool)] if "error_within_tolerance" in bench else bench
    rows = []
    for _, group in frame.groupby(key, dropna=False, sort=True):
        base = group[group[axis] == baseline]
        for _, row in group[group[axis] != baseline].iterrows():
            pairs = row["paired_baseline_timings"] if paired and "paired_timings" in row else np.empty(0)
            if pairs.size:
                interval = paired_speedup_interval(pairs, row["paired_timings"])
                base_median, median = float(np.median(pairs)), float(np.median(row["paired_timings"]))
                estimate, pairing = interval.estimate, "paired"
                # What the speedup is made of is the per-round ratios: their spread, count and load judge it.
                ratios = pairs / row["paired_timings"]
                where = (row["load_start"], row["load_end"], row["cpu_count"], row["clock"])
                unstable, base_unstable = "; ".join(instability(rel_iqr(ratios), ratios.size, *where)), ""
            elif not base.empty:
                interval = speedup_interval(base["timings"].iloc[0], row["timings"])
                base_median, median = float(base["median_s"].iloc[0]), float(row["median_s"])
                base_unstable, unstable = str(base["unstable"].iloc[0]), str(row["unstable"])
                estimate, pairing = interval.estimate, "separate"
                if math.isnan(estimate):  # no raw timings: the medians pytest-benchmark reported
                    estimate = base_median / median
            else:
                continue
            rows.append(
                [
                    *(row[name] for name in ordered),
                    base_median,
                    median,
                    estimate,
                    interval.low,
                    interval.high,
                    speedup_verdict(interval.low, interval.high),
                    unstable,
                    base_unstable,
                    pairing,
                ]
            )
    result = pd.DataFrame(rows, columns=columns)
    for column in ("batch", "threads", "process_threads"):
        if column in result:
            result[column] = result[column].astype("Int64")
    return result


def slowdown_p_value(baseline: np.ndarray, current: np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value that ``current`` timings are greater (slower) than ``baseline``."""
    baseline, current = np.asarray(baseline, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if baseline.size == 0 or current.size == 0:
        return math.nan
    return float(mannwhitneyu(current, baseline, alternative="greater").pvalue)


def speedup_p_value(baseline: np.ndarray, current: np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value that ``current`` timings are smaller (faster) than ``baseline``."""
    return slowdown_p_value(current, baseline)
