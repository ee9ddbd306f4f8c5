"""Everything one report is built from, computed once and shared by the HTML and the summary."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.load import Results
from reports.stats import BASELINE_BACKEND, precision_speedup_frame, speedup_frame
from reports.tables import benchmark_frame, conformance_frame, pooled


@dataclass(frozen=True)
class ReportData:
    results: Results
    bench: pd.DataFrame
    pooled: pd.DataFrame
    """``bench`` pooled once (:func:`reports.tables.pooled`): what every table, plot and speedup reads."""
    conf: pd.DataFrame
    speedups: pd.DataFrame
    speedup_note: str
    """Why there are no speedups, when there are none ('' otherwise)."""
    precision_speedups: pd.DataFrame
    """Each reduced precision against the same backend's float32."""


def report_data(results: Results) -> ReportData:
    bench = benchmark_frame(results)
    conf = conformance_frame(results)
    pooled_bench = pooled(bench)
    speedups = speedup_frame(pooled_bench)
    note = ""
    if bench.empty:
        note = "no benchmark results"
    elif BASELINE_BACKEND not in set(bench["backend"]) and speedups.empty:
        note = f"no {BASELINE_BACKEND} benchmark results, and speedups are measured against {BASELINE_BACKEND}"
    elif speedups.empty:
        note = f"no other backend was benchmarked at a configuration {BASELINE_BACKEND} was benchmarked at"
    return ReportData(results, bench, pooled_bench, conf, speedups, note, precision_speedup_frame(pooled_bench))
