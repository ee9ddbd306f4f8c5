"""Tidy tables built from loaded results: one row per benchmark, one row per check.

Column names carry their units (``median_s``, ``samples_per_s``); these frames are what
``results.csv`` and ``conformance.csv`` hold, and every other table is derived from them.
The benchmark frame also holds ``timings``, the raw per-round times in seconds as a NumPy
array, and ``paired_baseline_timings``/``paired_timings``, the rounds timed in turns with eager's
in the same process (empty arrays where there are none), which the statistics need and the
CSV leaves out. A record that names no ``clock`` was timed on the wall clock; one that names no
``threads_source`` holds torch's threads (``torch``), and its ``process_threads`` is its ``threads``.

Beyond what the records hold: ``results.csv`` has each benchmark's stability (``rel_iqr``,
``rounds``, ``load_start``/``load_end`` when recorded, and ``unstable``, the reasons in words;
see :mod:`reports.stability`), and ``conformance.csv`` has ``max_ulp``/``ulp_limit`` for ULP
measurements (never under ``max_rel_error``/``rtol``), ``tolerance_source`` (default,
override or known deviation) and ``tolerance_factor``, an override's ratio to the default
(see :mod:`reports.records`). In the CSV, a text cell that starts
like a formula (``=``, ``+``, ``-``, ``@``, tab, CR) is prefixed with ``'``, so a spreadsheet
shows it instead of running it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from harness.results import record_clock
from reports.escaping import csv_cell
from reports.load import OUTCOMES, Results
from reports.records import add_tolerance_columns
from reports.stability import instability, rel_iqr

RESULTS_COLUMNS = [
    "machine",
    "commit",
    "backend",
    "phase",
    "batch",
    "dtype",
    "device",
    "clock",
    "threads",
    "threads_source",
    "process_threads",
    "name",
    "median_s",
    "mean_s",
    "stddev_s",
    "min_s",
    "max_s",
    "q1_s",
    "q3_s",
    "iqr_s",
    "rounds",
    "iterations",
    "rel_iqr",
    "load_start",
    "load_end",
    "cpu_count",
    "unstable",
    "samples_per_s",
    "gflops_per_s",
    "peak_fraction",
    "peak_gflops_per_s",
    "peak_method",
    "peak_memory_bytes",
    "peak_memory_method",
    "max_abs_error",
    "max_rel_error",
    "error_within_tolerance",
    "first_call_s",
    "setup_s",
    "setup_kind",
    "artifact",
    "source",
]

CONFORMANCE_COLUMNS = [
    "machine",
    "commit",
    "backend",
    "check",
    "config",
    "dtype",
    "device",
    "outcome",
    "max_abs_error",
    "max_rel_error",
    "rtol",
    "atol",
    "max_ulp",
    "ulp_limit",
    "headroom",
    "tolerance_reason",
    "tolerance_source",
    "tolerance_factor",
    "reason",
    "exception",
    "location",
    "test_id",
    "seed",
    "duration_s",
    "source",
]

DERIVED_COLUMNS = ("max_ulp", "ulp_limit", "tolerance_source", "tolerance_factor")
RECORD_COLUMNS = [c for c in CONFORMANCE_COLUMNS[2:-1] if c not in DERIVED_COLUMNS]
"""The columns a check record holds as they are; the others are derived (:mod:`reports.records`)."""
INTEGER_COLUMNS = ("batch", "threads", "process_threads", "rounds", "iterations", "cpu_count", "peak_memory_bytes")
BENCHMARK_KEY = ["machine", "backend", "phase", "batch", "dtype", "device", "clock", "threads"]
"""What names one benchmark; rows sharing it (repeated runs on one machine) are pooled."""


def benchmark_frame(results: Results) -> pd.DataFrame:
    """One row per benchmark, in ``RESULTS_COLUMNS`` order, plus the raw ``timings``."""
    rows = []
    for run in results.benchmarks:
        peak = _number(run.machine_info.get("netharness_peak_gflops"))
        cpus = _integer((run.machine_info.get("cpu") or {}).get("count") or run.machine_info.get("cpu_count"))
        for bench in run.benchmarks:
            stats, extra = bench["stats"], bench.get("extra_info") or {}
            median, batch = _number(stats.get("median")), _integer(extra.get("batch"))
            samples_per_s = _number(extra.get("samples_per_s"))
            if math.isnan(samples_per_s) and batch is not None and median > 0:
                samples_per_s = batch / median
            spread = _number(extra.get("rel_iqr"))
            if math.isnan(spread) and median > 0:
                spread = _number(stats.get("iqr")) / median
            rounds, load_start, load_end = _integer(stats.get("rounds")), extra.get("load_start"), extra.get("load_end")
            clock = record_clock(extra)
            threads = _integer(extra.get("threads", run.machine_info.get("netharness_threads")))
            rows.append(
                {
                    "machine": run.machine,
                    "commit": run.commit,
                    "backend": str(extra.get("backend") or bench.get("group") or bench.get("name")),
                    "phase": str(extra.get("phase") or ""),
                    "batch": batch,
                    "dtype": str(extra.get("dtype") or ""),
                    "device": str(extra.get("device") or ""),
                    "clock": clock,
                    "threads": threads,
                    "threads_source": str(extra.get("threads_source") or "torch"),
                    "process_threads": _integer(extra.get("process_threads", threads)),
                    "name": str(bench.get("name") or ""),
                    "median_s": median,
                    "mean_s": _number(stats.get("mean")),
                    "stddev_s": _number(stats.get("stddev")),
                    "min_s": _number(stats.get("min")),
                    "max_s": _number(stats.get("max")),
                    "q1_s": _number(stats.get("q1")),
                    "q3_s": _number(stats.get("q3")),
                    "iqr_s": _number(stats.get("iqr")),
                    "rounds": rounds,
                    "iterations": _integer(stats.get("iterations")),
                    "rel_iqr": spread,
                    "load_start": _number(load_start),
                    "load_end": _number(load_end),
                    "cpu_count": cpus,
                    "unstable": "; ".join(instability(spread, rounds, load_start, load_end, cpus, clock)),
                    "samples_per_s": samples_per_s,
                    "gflops_per_s": _number(extra.get("gflops_per_s")),
                    "peak_fraction": _number(extra.get("peak_fraction")),
                    # The peak of the device that ran it, where the benchmark recorded one (issue 10).
                    "peak_gflops_per_s": _number(extra.get("peak_gflops_per_s", peak)),
                    "peak_method": str(extra.get("peak_method") or ""),
                    "peak_memory_bytes": _integer(extra.get("peak_memory_bytes")),
                    "peak_memory_method": str(extra.get("peak_memory_method") or ""),
                    "max_abs_error": _number(extra.get("max_abs_error")),
                    "max_rel_error": _number(extra.get("max_rel_error")),
                    "error_within_tolerance": extra.get("error_within_tolerance") is not False,
                    "first_call_s": _number(extra.get("first_call_s")),
                    "setup_s": _number(extra.get("setup_s")),
                    "setup_kind": str(extra.get("setup_kind") or ""),
                    "artifact": str(extra.get("artifact") or ""),
                    "source": str(run.path),
                    "timings": np.asarray(stats.get("data") or [], dtype=np.float64),
                    **_paired(extra),
                }
            )
    frame = pd.DataFrame(rows, columns=[*RESULTS_COLUMNS, "timings", *PAIRED_COLUMNS])
    for column in INTEGER_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    return frame


PAIRED_COLUMNS = ("paired_baseline_timings", "paired_timings")


def _paired(extra: dict[str, Any]) -> dict[str, np.ndarray]:
    """The rounds timed in turns with eager's, as two arrays of one length (both empty when unusable)."""
    try:
        base = np.asarray(extra.get("paired_baseline_s") or [], dtype=np.float64)
        mine = np.asarray(extra.get("paired_s") or [], dtype=np.float64)
    except (TypeError, ValueError):
        base = mine = np.empty(0)
    usable = base.ndim == mine.ndim == 1 and base.size == mine.size and bool(np.all(base > 0) and np.all(mine > 0))
    if not usable or extra.get("paired_baseline") not in (None, "eager"):
        base = mine = np.empty(0)
    return {"paired_baseline_timings": base, "paired_timings": mine}


def conformance_frame(results: Results) -> pd.DataFrame:
    """One row per machine x backend x check x config; a repeated record keeps the last one read."""
    rows = []
    for run in results.conformance:
        for check in run.checks:
            rows.append(
                {
                    "machine": run.machine,
                    "commit": run.commit,
                    **{column: check.get(column) for column in RECORD_COLUMNS},
                    "recorded_source": check.get("tolerance_source"),
                    "source": str(run.path),
                }
            )
    frame = pd.DataFrame(rows, columns=["machine", "commit", *RECORD_COLUMNS, "recorded_source", "source"])
    for column in ("max_abs_error", "max_rel_error", "rtol", "atol", "headroom", "duration_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    for column in ("tolerance_reason", "reason", "exception", "location", "test_id", "dtype", "device"):
        frame[column] = frame[column].fillna("").astype(str)
    key = ["machine", "backend", "check", "config", "dtype", "device"]
    frame = frame.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
    return add_tolerance_columns(frame)[CONFORMANCE_COLUMNS]


def results_csv(bench: pd.DataFrame) -> str:
    return _csv(bench[RESULTS_COLUMNS])


def conformance_csv(conf: pd.DataFrame) -> str:
    return _csv(conf[CONFORMANCE_COLUMNS])


def _csv(frame: pd.DataFrame) -> str:
    """The frame as CSV, its text cells safe to open in a spreadsheet; numeric columns (-1.5 too) stay numbers."""
    text = frame.select_dtypes(exclude="number").columns
    safe = frame.assign(**{column: frame[column].map(csv_cell).map(_one_line_ending) for column in text})
    return safe.to_csv(index=False, lineterminator="\n")


def _one_line_ending(value: Any) -> Any:
    """A lone CR as LF: the csv module quotes a cell holding the line terminator ("\\n") but not a CR,
    which a spreadsheet reads as a new row whose first cell could be a formula."""
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


def outcome_counts(conf: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Counts of each outcome per backend (or per ``by``), every outcome a column."""
    by = by or ["backend"]
    counts = conf.groupby([*by, "outcome"]).size().unstack("outcome", fill_value=0)
    return counts.reindex(columns=list(OUTCOMES), fill_value=0).astype(int)


def pooled(bench: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark key: medians of the numbers, raw timings concatenated."""
    if bench.empty:
        return bench
    numbers = [c for c in RESULTS_COLUMNS if c.endswith(("_s", "_bytes", "_fraction")) and c in bench]
    grouped = bench.groupby(BENCHMARK_KEY, dropna=False, sort=True)
    frame = grouped[numbers].median()
    for column in ("setup_kind", "artifact", "source", "commit", "peak_memory_method", "peak_method"):
        frame[column] = grouped[column].last()
    frame["threads_source"] = grouped["threads_source"].last()
    frame["process_threads"] = grouped["process_threads"].max()
    frame["error_within_tolerance"] = grouped["error_within_tolerance"].all()  # one wrong run makes it wrong
    frame["timings"] = grouped["timings"].agg(lambda arrays: np.concatenate(list(arrays)))
    for column in PAIRED_COLUMNS:  # both sides of every run, or none at all: pairs stay aligned
        frame[column] = grouped[column].agg(lambda arrays: np.concatenate(list(arrays)))
    frame["rounds"] = grouped["rounds"].sum()
    # Pooled runs: the spread of all their rounds together; the busiest load any of them saw.
    recorded = grouped["rel_iqr"].max()
    frame["rel_iqr"] = [
        rel_iqr(timings) if runs > 1 and timings.size else spread
        for timings, spread, runs in zip(frame["timings"], recorded, grouped.size())
    ]
    for column in ("load_start", "load_end", "cpu_count"):
        frame[column] = grouped[column].max()
    frame = frame.reset_index()
    frame["unstable"] = [
        "; ".join(instability(*values))
        for values in zip(
            frame["rel_iqr"],
            frame["rounds"],
            frame["load_start"],
            frame["load_end"],
            frame["cpu_count"],
            frame["clock"],
        )
    ]
    return frame


def wide(bench: pd.DataFrame, value: str, scale: float = 1.0) -> pd.DataFrame:
    """``value`` for each machine/device/phase/batch (rows) and backend (columns); ``bench`` is pooled."""
    frame = bench
    table = frame.pivot_table(
        index=["machine", "device", "phase", "batch"], columns="backend", values=value, aggfunc="median"
    )
    table.columns.name = None
    return table * scale


def setup_table(bench: pd.DataFrame) -> pd.DataFrame:
    """Compile/export time and the first call against a steady-state call, per pooled benchmark."""
    frame = bench
    table = frame[
        [
            "machine",
            "device",
            "backend",
            "phase",
            "batch",
            "setup_kind",
            "setup_s",
            "first_call_s",
            "median_s",
            "artifact",
        ]
    ].copy()
    table["first_call_over_median"] = table["first_call_s"] / table["median_s"]
    return table.sort_values(["machine", "device", "backend", "phase", "batch"]).reset_index(drop=True)


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _integer(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
