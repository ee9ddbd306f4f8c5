"""Reading the history back as series, and the steps in each.

A series is one machine fingerprint and one configuration, ordered by run time: a benchmark's
per-run median (with its quartiles), or a check's headroom. Each table is read with one
query, in storage order (a sequential scan: reading in series order through the index costs
a random lookup per row), as the driver's plain tuples; the rows are then grouped into series
and put in time order with NumPy. Labels come from one row per series, runs from one query.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Select, func, select
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
        with engine.connect() as connection:
            known = _Runs(connection)
            return [*_benchmark_series(connection, known), *_headroom_series(connection, known)]
    except SQLAlchemyError as exc:
        raise HistoryError(describe_failure(url, exc)) from None


class _Runs:
    """Every run's commit, time order, machine, seed and report, as arrays indexed by run id.

    Read first: a run's rows are committed with it, so every run here has all its rows in the
    queries that follow, and rows of a run committed since are left out (:func:`_grouped`).
    """

    def __init__(self, connection: Connection) -> None:
        r, m = runs.c, machines.c
        rows = _fetch(
            connection,
            select(r.id, r.time, r.commit, r.report, r.seed, m.fingerprint, m.node)
            .join_from(runs, machines, r.machine_id == m.id)
            .order_by(r.time, r.id),
        )
        size = max((row[0] for row in rows), default=0) + 1
        self.present = np.zeros(size, dtype=bool)
        self.rank = np.zeros(size, dtype=np.int64)
        """The run's place in time order (run time, then id)."""
        self.machine = np.zeros(size, dtype=np.int64)
        """The run's machine, numbered in fingerprint order."""
        self.commit = np.empty(size, dtype=object)
        self.time = np.zeros(size)
        self.report = np.empty(size, dtype=object)
        self.seed: list[int | None] = [None] * size
        fingerprints = sorted({row[5] for row in rows})
        number = {fingerprint: i for i, fingerprint in enumerate(fingerprints)}
        self.fingerprints = fingerprints
        self.nodes = [""] * len(fingerprints)
        for rank, (run_id, time, commit, report, seed, fingerprint, node) in enumerate(rows):
            self.present[run_id], self.rank[run_id] = True, rank
            self.time[run_id], self.machine[run_id] = time, number[fingerprint]
            self.commit[run_id], self.report[run_id], self.seed[run_id] = commit, report, seed
            self.nodes[number[fingerprint]] = node


def _fetch(connection: Connection, query: Select[Any]) -> list[tuple[Any, ...]]:
    """All rows of a query without parameters, as the driver's plain tuples (no per-row Row objects)."""
    compiled = query.compile(dialect=connection.dialect)
    assert not compiled.params, "only parameter-free queries are fetched raw"
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(compiled))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _grouped(known: _Runs, keys: Sequence[str], run_ids: Sequence[int]) -> Iterator[tuple[str, int, np.ndarray]]:
    """(series key, machine number, row positions in time order) for every series, in fingerprint and key order."""
    names = sorted(set(keys))
    code = {name: i for i, name in enumerate(names)}
    key_codes = np.fromiter(map(code.__getitem__, keys), dtype=np.int64, count=len(keys))
    ids = np.fromiter(run_ids, dtype=np.int64, count=len(run_ids))
    # Rows of a run appended after the runs were read (a writer between two queries) are left out.
    known_run = known.present[np.minimum(ids, len(known.present) - 1)] & (ids < len(known.present))
    safe = np.where(known_run, ids, 0)
    machine = known.machine[safe]
    order = np.lexsort((ids, known.rank[safe], key_codes, machine))
    order = order[known_run[order]]
    group = np.stack([machine[order], key_codes[order]])
    starts = np.flatnonzero(np.any(group[:, 1:] != group[:, :-1], axis=0)) + 1
    for positions in np.split(order, starts) if len(order) else []:
        yield names[key_codes[positions[0]]], int(machine[positions[0]]), positions


def _benchmark_series(connection: Connection, known: _Runs) -> Iterator[Series]:
    b = benchmarks.c
    labels = {
        row[0]: row[1:]
        for row in _fetch(
            connection,
            select(b.series, b.backend, b.phase, b.batch, b.dtype, b.device, b.clock, b.threads).where(
                b.id.in_(select(func.min(b.id)).group_by(b.series))
            ),
        )
    }
    rows = _fetch(connection, select(b.series, b.run_id, b.median_s, b.q1_s, b.q3_s))
    if not rows:
        return
    keys, run_ids, medians, q1s, q3s = zip(*rows)
    ids = np.asarray(run_ids, dtype=np.int64)
    median = np.asarray(medians, dtype=float)
    q1 = np.asarray(q1s, dtype=float)  # None (no quartiles) becomes NaN
    q3 = np.asarray(q3s, dtype=float)
    low, high = np.where(np.isnan(q1), median, q1), np.where(np.isnan(q3), median, q3)
    for key, machine, at in _grouped(known, keys, run_ids):
        backend, phase, batch, dtype, device, clock, threads = labels[key]
        with_threads = f", {threads} threads" if threads is not None else ""
        label = f"{backend} {phase} batch {batch} {dtype} {device} ({clock} clock{with_threads})"
        yield _series("benchmark", known, machine, key, backend, label, ids[at], median[at], low[at], high[at])


def _headroom_series(connection: Connection, known: _Runs) -> Iterator[Series]:
    c = checks.c
    labels = {
        row[0]: row[1:]
        for row in _fetch(
            connection,
            select(c.series, c.backend, c.check_name, c.config, c.dtype, c.device).where(
                c.id.in_(select(func.min(c.id)).group_by(c.series))
            ),
        )
    }
    rows = _fetch(connection, select(c.series, c.run_id, c.headroom).where(c.headroom.is_not(None)))
    if not rows:
        return
    keys, run_ids, headrooms = zip(*rows)
    ids = np.asarray(run_ids, dtype=np.int64)
    value = np.clip(np.asarray(headrooms, dtype=float), 1 / HEADROOM_CAP, HEADROOM_CAP)
    value[np.isnan(value)] = 1.0
    for key, machine, at in _grouped(known, keys, run_ids):
        backend, check, config, dtype, device = labels[key]
        seed = known.seed[int(ids[at[0]])]
        label = f"{backend} {check} [{config}] {dtype} {device} (seed {seed})"
        yield _series("headroom", known, machine, key, backend, label, ids[at], value[at], value[at], value[at])


def _series(
    kind: str,
    known: _Runs,
    machine: int,
    key: str,
    backend: str,
    label: str,
    ids: np.ndarray,
    values: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
) -> Series:
    return Series(
        kind,
        known.nodes[machine],
        known.fingerprints[machine],
        key,
        backend,
        label,
        commits=known.commit[ids].tolist(),
        times=known.time[ids].tolist(),
        values=values.tolist(),
        low=low.tolist(),
        high=high.tolist(),
        reports=known.report[ids].tolist(),
    )


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
