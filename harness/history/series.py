"""Reading the history back as series, and the steps in each.

A series is one machine fingerprint and one configuration, ordered by run time: a benchmark's
per-run median (with its quartiles), or a check's headroom. Each kind is read with one query,
ordered so that a series' points arrive together; nothing is read row by row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from harness.history.changepoints import Step, find_steps
from harness.history.schema import benchmarks, checks, machines, runs
from harness.history.settings import ALPHA, DEFAULT_MIN_CHANGE, DEFAULT_MIN_HEADROOM_CHANGE
from harness.history.store import HistoryError, describe_failure

HEADROOM_CAP = 1e6
"""An exact match (infinite headroom) counts as this much, and a headroom is at least its inverse."""


@dataclass
class Series:
    kind: str
    """``benchmark`` (seconds per call, worse when higher) or ``headroom`` (worse when lower)."""
    node: str
    fingerprint: str
    key: str
    backend: str
    label: str
    commits: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    """The first quartile (benchmarks; the value itself for headroom)."""
    high: list[float] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)

    @property
    def worse_when(self) -> str:
        return "higher" if self.kind == "benchmark" else "lower"


@dataclass
class Analysed:
    series: Series
    steps: list[Step]

    @property
    def open_regression(self) -> Step | None:
        """The last step, when it made the number worse: the series still sits at the worse level."""
        return self.steps[-1] if self.steps and self.steps[-1].regression else None

    @property
    def newest_commit_regressed(self) -> bool:
        step = self.open_regression
        return step is not None and step.commit == self.series.commits[-1]


def load_series(engine: Engine, url: str) -> list[Series]:
    try:
        return [*_benchmark_series(engine), *_headroom_series(engine)]
    except SQLAlchemyError as exc:
        raise HistoryError(describe_failure(url, exc)) from None


def _benchmark_series(engine: Engine) -> Iterator[Series]:
    b, r, m = benchmarks.c, runs.c, machines.c
    query = (
        select(m.node, m.fingerprint, b.series, b.backend, b.phase, b.batch, b.dtype, b.device, b.clock, b.threads,
               r.commit, r.time, b.median_s, b.q1_s, b.q3_s, r.report)
        .join_from(benchmarks, runs, b.run_id == r.id)
        .join(machines, r.machine_id == m.id)
        .order_by(m.fingerprint, b.series, r.time, r.id)
    )  # fmt: skip
    current: Series | None = None
    with engine.connect() as connection:
        for row in connection.execute(query):
            if current is None or (current.fingerprint, current.key) != (row.fingerprint, row.series):
                if current is not None:
                    yield current
                threads = f", {row.threads} threads" if row.threads is not None else ""
                label = (
                    f"{row.backend} {row.phase} batch {row.batch} {row.dtype} {row.device} ({row.clock} clock{threads})"
                )
                current = Series("benchmark", row.node, row.fingerprint, row.series, row.backend, label)
            current.commits.append(row.commit)
            current.times.append(row.time)
            current.values.append(row.median_s)
            current.low.append(row.q1_s if row.q1_s is not None else row.median_s)
            current.high.append(row.q3_s if row.q3_s is not None else row.median_s)
            current.reports.append(row.report)
    if current is not None:
        yield current


def _headroom_series(engine: Engine) -> Iterator[Series]:
    c, r, m = checks.c, runs.c, machines.c
    query = (
        select(m.node, m.fingerprint, c.series, c.backend, c.check_name, c.config, c.dtype, c.device, r.seed,
               r.commit, r.time, c.headroom, r.report)
        .join_from(checks, runs, c.run_id == r.id)
        .join(machines, r.machine_id == m.id)
        .where(c.headroom.is_not(None))
        .order_by(m.fingerprint, c.series, r.time, r.id)
    )  # fmt: skip
    current: Series | None = None
    with engine.connect() as connection:
        for row in connection.execute(query):
            if current is None or (current.fingerprint, current.key) != (row.fingerprint, row.series):
                if current is not None:
                    yield current
                label = f"{row.backend} {row.check_name} [{row.config}] {row.dtype} {row.device} (seed {row.seed})"
                current = Series("headroom", row.node, row.fingerprint, row.series, row.backend, label)
            value = min(max(float(row.headroom), 1 / HEADROOM_CAP), HEADROOM_CAP) if not math.isnan(row.headroom) else 1
            current.commits.append(row.commit)
            current.times.append(row.time)
            current.values.append(value)
            current.low.append(value)
            current.high.append(value)
            current.reports.append(row.report)
    if current is not None:
        yield current


def analyse(
    series: list[Series],
    *,
    alpha: float = ALPHA,
    min_change: float = DEFAULT_MIN_CHANGE,
    min_headroom_change: float = DEFAULT_MIN_HEADROOM_CHANGE,
) -> list[Analysed]:
    """The steps of every series."""
    analysed = []
    for one in series:
        change = min_change if one.kind == "benchmark" else min_headroom_change
        steps = find_steps(one.values, one.commits, worse_when=one.worse_when, alpha=alpha, min_change=change)
        analysed.append(Analysed(one, steps))
    return analysed
