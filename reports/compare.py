"""Comparing a current run against a baseline: timing regressions and conformance changes.

A benchmark regresses only when both hold: its current median is slower than the baseline's
by more than ``threshold`` (a fraction), and a one-sided Mann-Whitney U test on the raw
per-round timings gives ``p < alpha`` that the current timings are greater. A big but noisy
difference, or a small but certain one, is reported without failing.

A check regresses when it fails (or errors) now and did not before, including a check the
baseline did not run. A check that failed before and passes now is an improvement. A check
recorded ``not_run`` (its backend's crash budget was spent) counts as not run, never as a pass.

Inputs that cannot be compared (partial runs, other seeds, devices or backends, nothing in
common, a zero median) are refused first, by :mod:`reports.comparable`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.comparable import CHECK_KEY, MATCH_KEY, Side, common_ground, refuse_incomparable
from reports.load import Results
from reports.stats import slowdown_p_value, speedup_p_value
from reports.tables import benchmark_frame, conformance_frame, pooled

BAD = ("failed", "error", "crashed")
_WORST_FIRST = ("crashed", "error", "failed", "xpassed", "not_run", "xfailed", "passed", "skipped")
REGRESSION = "REGRESSION"


@dataclass(frozen=True)
class BenchmarkChange:
    benchmark: str
    machine: str
    baseline_median_s: float
    current_median_s: float
    change: float
    """current / baseline - 1: positive is slower."""
    p_value: float
    verdict: str


@dataclass(frozen=True)
class ConformanceChange:
    check: str
    baseline: str
    current: str
    verdict: str


@dataclass
class Comparison:
    benchmarks: list[BenchmarkChange] = field(default_factory=list)
    conformance: list[ConformanceChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def benchmark_regressions(self) -> int:
        return sum(change.verdict == REGRESSION for change in self.benchmarks)

    @property
    def conformance_regressions(self) -> int:
        return sum(change.verdict == REGRESSION for change in self.conformance)


def compare_results(
    baseline: Results,
    current: Results,
    threshold: float,
    alpha: float,
    allow_different: Collection[str] = (),
    allow_partial: bool = False,
) -> Comparison:
    """Compare, or raise :class:`~reports.comparable.NotComparableError` with the one-line reason."""
    old, new = (
        Side(name, results, benchmark_frame(results), conformance_frame(results))
        for name, results in (("baseline", baseline), ("current", current))
    )
    comparison = Comparison(notes=refuse_incomparable(old, new, allow_different, allow_partial))
    old, new = common_ground(old, new)
    _compare_benchmarks(pooled(old.bench), pooled(new.bench), threshold, alpha, comparison)
    _compare_conformance(old.conf, new.conf, comparison)
    return comparison


def verdict(change: float, slower_p: float, faster_p: float, threshold: float, alpha: float) -> str:
    if math.isnan(slower_p):
        return "slower, untested (no raw timings)" if change > threshold else "untested (no raw timings)"
    if change > threshold:
        return REGRESSION if slower_p < alpha else "slower, not significant"
    if change < -threshold and faster_p < alpha:
        return "improved"
    if change > 0 and slower_p < alpha:
        return "slower, within threshold"
    return "ok"


def _compare_benchmarks(
    base: pd.DataFrame, cur: pd.DataFrame, threshold: float, alpha: float, comparison: Comparison
) -> None:
    if base.empty or cur.empty:
        side = "baseline" if base.empty else "current"
        if not (base.empty and cur.empty):
            comparison.notes.append(f"no benchmark results in the {side}: timings not compared")
        return
    base_groups = dict(tuple(base.groupby(MATCH_KEY, dropna=False)))
    cur_groups = dict(tuple(cur.groupby(MATCH_KEY, dropna=False)))
    only_base, only_cur = len(base_groups.keys() - cur_groups.keys()), len(cur_groups.keys() - base_groups.keys())
    if only_base or only_cur:
        comparison.notes.append(f"benchmarks only in the baseline: {only_base}; only in the current: {only_cur}")
    for key in sorted(base_groups.keys() & cur_groups.keys(), key=str):
        name = "{} {} batch {} {} {}".format(*key)
        for machine, old, new in _machine_pairs(base_groups[key], cur_groups[key], comparison, name):
            old_median, new_median = float(np.median(old["timings"])), float(np.median(new["timings"]))
            if not (old["timings"].size and new["timings"].size):
                old_median, new_median = float(old["median_s"]), float(new["median_s"])
            change = new_median / old_median - 1.0
            slower_p = slowdown_p_value(old["timings"], new["timings"])
            faster_p = speedup_p_value(old["timings"], new["timings"])
            comparison.benchmarks.append(
                BenchmarkChange(
                    name,
                    machine,
                    old_median,
                    new_median,
                    change,
                    slower_p,
                    verdict(change, slower_p, faster_p, threshold, alpha),
                )
            )


def _machine_pairs(
    base: pd.DataFrame, cur: pd.DataFrame, comparison: Comparison, name: str
) -> Iterator[tuple[str, pd.Series, pd.Series]]:
    """Pair rows on the same machine; with one machine on each side, pair those whatever their names."""
    shared = sorted(set(base["machine"]) & set(cur["machine"]))
    if shared:
        for machine in shared:
            yield machine, _one(base[base["machine"] == machine]), _one(cur[cur["machine"] == machine])
    elif base["machine"].nunique() == 1 and cur["machine"].nunique() == 1:
        yield f"{base['machine'].iloc[0]} -> {cur['machine'].iloc[0]}", _one(base), _one(cur)
    else:
        comparison.notes.append(f"{name}: no machine in common between baseline and current, not compared")


def _one(rows: pd.DataFrame) -> pd.Series:
    """One row per machine: several (different thread counts) are pooled."""
    if len(rows) == 1:
        return rows.iloc[0]
    row = rows.iloc[0].copy()
    row["timings"] = np.concatenate(list(rows["timings"]))
    row["median_s"] = float(rows["median_s"].median())
    return row


def _compare_conformance(base: pd.DataFrame, cur: pd.DataFrame, comparison: Comparison) -> None:
    if cur.empty:
        if not base.empty:
            comparison.notes.append("no conformance results in the current: checks not compared")
        return
    old, new = _worst_outcomes(base), _worst_outcomes(cur)
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key, "absent"), new.get(key, "absent")
        if before == after:
            continue
        name = "{} {} {} {} {}".format(*key)
        if after in BAD and before not in BAD:
            outcome = REGRESSION
        elif before in BAD and after in ("passed", "xfailed"):
            outcome = "improved"
        elif after in ("absent", "not_run"):
            outcome = "not run in the current"
        else:
            outcome = "changed"
        comparison.conformance.append(ConformanceChange(name, before, after, outcome))


def _worst_outcomes(conf: pd.DataFrame) -> dict[tuple[str, ...], str]:
    """The worst outcome of each check over every machine."""
    worst: dict[tuple[str, ...], str] = {}
    for row in conf.itertuples():
        key = tuple(str(getattr(row, column)) for column in CHECK_KEY)
        outcome = str(row.outcome)
        if key not in worst or _rank(outcome) < _rank(worst[key]):
            worst[key] = outcome
    return worst


def _rank(outcome: str) -> int:
    return _WORST_FIRST.index(outcome) if outcome in _WORST_FIRST else 0


def format_comparison(comparison: Comparison, threshold: float, alpha: float) -> str:
    lines = [f"Timings: a regression is > {threshold:.0%} slower (median) with Mann-Whitney U p < {alpha:g}."]
    if comparison.benchmarks:
        header = ("benchmark", "machine", "baseline ms", "current ms", "change", "p (slower)", "verdict")
        rows = [
            (
                c.benchmark,
                c.machine,
                f"{c.baseline_median_s * 1e3:.4g}",
                f"{c.current_median_s * 1e3:.4g}",
                f"{c.change:+.1%}",
                "—" if math.isnan(c.p_value) else f"{c.p_value:.2g}",
                c.verdict,
            )
            for c in comparison.benchmarks
        ]
        lines.extend(_table(header, rows))
    else:
        lines.append("No benchmark present in both.")
    lines.append("")
    if comparison.conformance:
        lines.append("Conformance changes:")
        changes = [(c.check, c.baseline, c.current, c.verdict) for c in comparison.conformance]
        lines.extend(_table(("check", "baseline", "current", "verdict"), changes))
    else:
        lines.append("Conformance: no changes.")
    lines.extend(f"note: {note}" for note in comparison.notes)
    timing, checks = comparison.benchmark_regressions, comparison.conformance_regressions
    if timing or checks:
        lines.append(f"netharness compare: {timing} timing regression(s), {checks} conformance regression(s)")
    else:
        lines.append("netharness compare: no regressions")
    return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
