"""Speed on a busy machine (issue 28): the clock a benchmark was timed with, and speedups from
rounds timed in turns with eager in one process.

The data are synthetic and seeded (``SEED``): each round's load multiplies both sides' time
alike, as a change of load between two calls a few milliseconds apart does. Nothing here is
timed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.load import load_results
from reports.stability import instability
from reports.stats import paired_speedup_interval, speedup_frame, speedup_interval
from reports.tables import benchmark_frame, pooled
from tests.fixtures.reports import generate as G

SEED = 28
print(f"test_paired_speedup: seed {SEED}")


def loaded_rounds(rounds: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Eager at 2 ms and the backend at 1 ms per call, each round slowed 1-3x by the load, 2% noise apart."""
    rng = np.random.default_rng(SEED)
    load = rng.uniform(1.0, 3.0, rounds)
    eager = 2e-3 * load * rng.normal(1.0, 0.02, rounds)
    backend = 1e-3 * load * rng.normal(1.0, 0.02, rounds)
    return eager, backend


def frame_of(tmp_path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(G.benchmark_file("vm", rows)))
    return benchmark_frame(load_results([path]))


def test_pairs_cancel_the_load_that_separate_timings_keep() -> None:
    eager, backend = loaded_rounds()
    paired = paired_speedup_interval(eager, backend)
    separate = speedup_interval(eager[::-1], backend)  # the same times, no longer paired
    assert 1.95 < paired.low < paired.high < 2.05, paired  # the true speedup is 2; each side's noise is 2%
    assert paired.high - paired.low < (separate.high - separate.low) / 4, (paired, separate)


def test_the_report_uses_the_pairs_even_without_eager_s_own_benchmark(tmp_path: Path) -> None:
    """Eager's step may be missing (it crashed, or was not selected): the pairs still give the speedup."""
    eager, backend = loaded_rounds()
    row = G.benchmark(
        "numpy", "forward", 64, list(backend), paired_baseline="eager", paired_baseline_s=list(eager),
        paired_s=list(backend), clock="cpu", threads=4, threads_source="backend", process_threads=2,
    )  # fmt: skip
    speedups = speedup_frame(pooled(frame_of(tmp_path, [row])))
    [result] = speedups.itertuples()
    assert result.pairing == "paired" and result.clock == "cpu"
    assert 1.95 < result.ci_low < result.speedup < result.ci_high < 2.05
    assert result.threads == 4 and result.threads_source == "backend"


def test_without_pairs_the_two_benchmarks_medians_are_compared(tmp_path: Path) -> None:
    rows = [G.benchmark(name, "forward", 64, G.data(median)) for name, median in (("eager", 0.02), ("numpy", 0.01))]
    [result] = speedup_frame(pooled(frame_of(tmp_path, rows))).itertuples()
    assert result.pairing == "separate" and abs(result.speedup - 2.0) < 0.05


def test_a_record_without_clock_or_thread_source_reads_as_wall_clock_and_torch_threads(tmp_path: Path) -> None:
    frame = frame_of(tmp_path, [G.benchmark("eager", "forward", 1, G.data(0.001))])
    assert list(frame["clock"]) == ["wall"] and list(frame["threads_source"]) == ["torch"]
    assert list(frame["process_threads"]) == list(frame["threads"]) == [2]


def test_benchmarks_on_different_clocks_are_never_pooled_or_compared(tmp_path: Path) -> None:
    rows = [
        G.benchmark("eager", "forward", 64, G.data(0.02), clock="wall"),
        G.benchmark("numpy", "forward", 64, G.data(0.01), clock="cpu"),
    ]
    bench = pooled(frame_of(tmp_path, rows))
    assert sorted(bench["clock"]) == ["cpu", "wall"]
    assert speedup_frame(bench).empty


def test_the_load_does_not_make_a_cpu_clock_timing_unstable_but_its_spread_does() -> None:
    busy = (0.05, 50, 6.0, 7.0, 2)
    assert instability(*busy, "wall") and instability(*busy, "cpu") == []
    assert instability(0.25, 50, 6.0, 7.0, 2, "cpu")[0].startswith("its rounds spread by")


def test_the_clock_is_in_the_report_header_and_the_summary(tmp_path: Path) -> None:
    from harness.commands.cli import main

    eager, backend = loaded_rounds()
    rows = [
        G.benchmark("eager", "forward", 64, list(eager), clock="cpu"),
        G.benchmark(
            "numpy", "forward", 64, list(backend), clock="cpu", paired_baseline="eager",
            paired_baseline_s=list(eager), paired_s=list(backend),
        ),
    ]  # fmt: skip
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(G.benchmark_file("vm", rows)))
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 0
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "benchmarks timed on the cpu clock" in summary.splitlines()[2]
    assert '<span id="clock">benchmarks timed on the cpu clock</span>' in html
    assert "| forward float32 2.0" in summary  # the paired speedup, named by its phase and precision
    assert ">same process<" in html
