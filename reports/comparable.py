"""What ``netharness compare`` refuses to compare, each refusal one line and exit 2.

A verdict of "no regressions" is only worth something when the two runs could have shown
one. So before anything is compared, in this order:

- every timing must be a positive, finite number of seconds (a zero median divides by zero),
  and every check's outcome one that compare knows how to judge;
- every conformance run must say its seed and device, and must have finished: a run without
  its ``run_end`` record, or one that records an interruption, is partial;
- the benchmarks must have been timed on the same clock (``--clock``: wall or cpu; a record
  that names none was timed on the wall clock): a CPU time and a wall time are not the same
  quantity, and no option relaxes this;
- the runs must agree on seed, device and backends (``--allow-different`` relaxes one or more:
  then only what both have is compared);
- the two must share at least one benchmark or one check;
- the current run must hold every check the baseline ran on the backends and devices both
  cover: a missing one was not run, so its regression could not be seen; a check recorded
  ``not_run`` (its backend's crash budget was spent) is missing too.

``--allow-partial`` relaxes the last rule and the "must have finished" one. Every relaxation
that was used is kept as a note in the comparison's output.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from reports.load import Results

if TYPE_CHECKING:  # pandas only for the annotations: the CLI imports DIFFERENCES at start-up
    import pandas as pd

DIFFERENCES = ("seed", "device", "backend")
"""What ``--allow-different`` may name."""
KINDS = ("benchmarks", "conformance")
MATCH_KEY = ["backend", "phase", "batch", "dtype", "device"]
CHECK_KEY = ["backend", "check", "config", "dtype", "device"]
ALLOW_PARTIAL = "--allow-partial"


class NotComparableError(UsageError):
    """Baseline and current results that cannot honestly be compared."""


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its results and the tidy frames made from them."""

    name: str
    """``baseline`` or ``current``."""
    results: Results
    bench: pd.DataFrame
    conf: pd.DataFrame

    @property
    def kinds(self) -> set[str]:
        """Which kinds of results this side holds: ``benchmarks``, ``conformance`` or both."""
        return {kind for kind in KINDS if getattr(self.results, kind)}

    def values(self, difference: str, kinds: Collection[str] = KINDS) -> set[str]:
        """The seeds, devices or backends this side's runs of these kinds used; empty when they do not say."""
        found: set[Any] = set()
        if "conformance" in kinds:
            for run in self.results.conformance:
                start = run.start
                found.update(start.get("backends") or {} if difference == "backend" else [start.get(difference)])
            if difference in self.conf:
                found.update(self.conf[difference].dropna())
        if "benchmarks" in kinds and difference in self.bench:
            found.update(self.bench[difference])
        return {str(value) for value in found if value is not None and str(value) != ""}


def refuse_incomparable(
    baseline: Side, current: Side, allow_different: Collection[str] = (), allow_partial: bool = False
) -> list[str]:
    """Raise :class:`NotComparableError` if the two cannot be compared; else the notes on what was allowed."""
    notes: list[str] = []
    for side in (baseline, current):
        _refuse_bad_timings(side)
        _refuse_unlabelled_runs(side)
    _refuse_different_clocks(baseline, current)
    for side in (baseline, current):
        notes.extend(_partial_runs(side, allow_partial))
    notes.extend(_differences(baseline, current, allow_different))
    _refuse_nothing_shared(baseline, current)
    notes.extend(_checks_not_run(baseline, current, allow_partial))
    notes.extend(_benchmarks_not_run(baseline, current, allow_partial))
    return notes


def common_ground(baseline: Side, current: Side) -> tuple[Side, Side]:
    """Both sides cut down to the backends and devices both ran.

    A no-op unless ``--allow-different`` let them differ: then a backend only one side ran is
    neither a regression nor a check "not run", just outside the comparison.
    """
    sides = [baseline, current]
    for column in ("backend", "device"):
        shared = baseline.values(column) & current.values(column)
        if not shared:
            continue
        sides = [
            replace(side, bench=_within(side.bench, column, shared), conf=_within(side.conf, column, shared))
            for side in sides
        ]
    return sides[0], sides[1]


def _within(frame: pd.DataFrame, column: str, shared: set[str]) -> pd.DataFrame:
    keep = frame[column].astype(str).isin(shared) | (frame[column] == "")  # "": a file that does not say
    return frame[keep].reset_index(drop=True)


def _refuse_different_clocks(baseline: Side, current: Side) -> None:
    clocks = [sorted(set(side.bench["clock"])) if "clock" in side.bench else [] for side in (baseline, current)]
    if clocks[0] and clocks[1] and clocks[0] != clocks[1]:
        raise NotComparableError(
            f"the baseline's benchmarks were timed on the {' and '.join(clocks[0])} clock, the current's on the"
            f" {' and '.join(clocks[1])} clock; rerun one with the other's --clock to compare them"
        )


def _refuse_bad_timings(side: Side) -> None:
    for run in side.results.benchmarks:
        for index, bench in enumerate(run.benchmarks):
            stats = bench["stats"]
            name = repr(bench.get("name") or f"benchmark {index}")
            median = stats["median"]
            if not (math.isfinite(median) and median > 0):
                raise NotComparableError(
                    f"results file {run.path}: benchmark {name} has a median of {median!r} s; "
                    "a timing must be a positive number of seconds"
                )
            rounds = stats.get("data") or []
            bad = next((value for value in rounds if not (math.isfinite(value) and value >= 0)), None)
            if bad is not None:
                raise NotComparableError(
                    f"results file {run.path}: benchmark {name} has a round of {bad!r} s in stats.data; "
                    "a timing must be a non-negative number of seconds"
                )
            if rounds and not statistics.median(rounds) > 0:
                raise NotComparableError(
                    f"results file {run.path}: benchmark {name} has a median round of 0 s in stats.data; "
                    "a timing must be a positive number of seconds"
                )


def _refuse_unlabelled_runs(side: Side) -> None:
    for run in side.results.conformance:
        for field in ("seed", "device"):
            if run.start.get(field) in (None, ""):
                raise NotComparableError(
                    f"results file {run.path}: its run_start record has no {field}, "
                    "so it cannot be told whether the runs are comparable"
                )


def _partial_runs(side: Side, allow_partial: bool) -> list[str]:
    reasons = side.results.partial_reasons
    if not reasons:
        return []
    more = f" (and {len(reasons) - 1} more partial files)" if len(reasons) > 1 else ""
    if not allow_partial:
        raise NotComparableError(
            f"the {side.name} run is partial: {reasons[0]}{more}; rerun it, "
            f"or pass {ALLOW_PARTIAL} to compare what it holds"
        )
    return [f"the {side.name} run is partial ({ALLOW_PARTIAL}): {reason}" for reason in reasons]


def _differences(baseline: Side, current: Side, allow_different: Collection[str]) -> list[str]:
    """Seeds, devices and backends, each compared over the kinds of results both sides hold."""
    kinds = baseline.kinds & current.kinds
    refused, notes = [], []
    for difference in DIFFERENCES:
        old, new = baseline.values(difference, kinds), current.values(difference, kinds)
        if not old or not new or old == new:  # a side that does not say cannot disagree
            continue
        described = f"{difference}s (baseline {_listing(sorted(old))}; current {_listing(sorted(new))})"
        if difference in allow_different:
            notes.append(f"{described} differ: compared anyway (--allow-different={difference})")
        else:
            refused.append((difference, described))
    if refused:
        names = ",".join(difference for difference, _ in refused)
        raise NotComparableError(
            f"baseline and current differ in {' and '.join(described for _, described in refused)}: "
            f"compare runs made alike, or pass --allow-different={names} to compare only what both have"
        )
    return notes


def _refuse_nothing_shared(baseline: Side, current: Side) -> None:
    shared_benchmarks = _keys(baseline.bench, MATCH_KEY) & _keys(current.bench, MATCH_KEY)
    shared_checks = _keys(baseline.conf, CHECK_KEY) & _keys(current.conf, CHECK_KEY)
    if not shared_benchmarks and not shared_checks:
        counts = "; ".join(
            f"{side.name}: {_count(_keys(side.bench, MATCH_KEY), 'benchmark')}, "
            f"{_count(_keys(side.conf, CHECK_KEY), 'check')}"
            for side in (baseline, current)
        )
        raise NotComparableError(f"baseline and current share no benchmark and no check: nothing to compare ({counts})")


def _checks_not_run(baseline: Side, current: Side, allow_partial: bool) -> list[str]:
    """Baseline checks missing from the current, on the backends and devices both ran."""
    if current.conf.empty:
        return []
    ran = ("conformance",)
    backends = baseline.values("backend", ran) & current.values("backend", ran)
    devices = baseline.values("device", ran) & current.values("device", ran)
    wanted = baseline.conf[baseline.conf["backend"].isin(backends) & baseline.conf["device"].isin(devices)]
    wanted = wanted[wanted["outcome"] != "not_run"]
    ran = current.conf[current.conf["outcome"] != "not_run"]  # a check not run (crash budget) is missing
    missing = sorted(_keys(wanted, CHECK_KEY) - _keys(ran, CHECK_KEY))
    if not missing:
        return []
    described = (
        f"the current run lacks {_count(missing, 'check')} the baseline ran (first: {_listing(missing[0], ' ')})"
    )
    if not allow_partial:
        raise NotComparableError(
            f"{described}, so it looks partial; rerun it, or pass {ALLOW_PARTIAL} to compare what it holds"
        )
    return [f"{described}: compared anyway ({ALLOW_PARTIAL})"]


def _benchmarks_not_run(baseline: Side, current: Side, allow_partial: bool) -> list[str]:
    """Baseline benchmarks missing from the current, on the backends and devices both ran.

    A backend whose timings vanished (or a current run with none at all) is a run that did
    not measure what it should have, not a run without regressions.
    """
    if baseline.bench.empty:
        return []
    backends = baseline.values("backend", ("benchmarks",)) & current.values("backend")
    devices = baseline.values("device", ("benchmarks",)) & current.values("device")
    wanted = baseline.bench[baseline.bench["backend"].isin(backends) & baseline.bench["device"].isin(devices)]
    missing = sorted(_keys(wanted, MATCH_KEY) - _keys(current.bench, MATCH_KEY))
    if not missing:
        return []
    gone = sorted(backends - current.values("backend", ("benchmarks",)))
    vanished = f"; no timing at all of {', '.join(gone)}" if gone else ""
    described = (
        f"the current run lacks {_count(missing, 'benchmark')} the baseline timed"
        f" (first: {_listing(missing[0], ' ')}){vanished}"
    )
    if not allow_partial:
        raise NotComparableError(
            f"{described}, so it looks partial; rerun it, or pass {ALLOW_PARTIAL} to compare what it holds"
        )
    return [f"{described}: compared anyway ({ALLOW_PARTIAL})"]


def _keys(frame: pd.DataFrame, columns: list[str]) -> set[tuple[str, ...]]:
    if frame.empty:
        return set()
    return {tuple(str(value) for value in row) for row in frame[columns].itertuples(index=False)}


def _count(items: Collection[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _listing(values: Iterable[str], separator: str = ", ") -> str:
    """Plain values as they are; anything with spaces, commas or control characters quoted (one line, always)."""
    return separator.join(value if _plain(value) else repr(value) for value in values)


def _plain(value: str) -> bool:
    return value.isprintable() and not any(char.isspace() or char in ",;'\"" for char in value)
