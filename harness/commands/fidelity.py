"""``netharness fidelity``: does the harness's timing agree with an independent timer?

One configuration is timed in one process, alternately, by the harness itself (its
benchmark test run by pytest-benchmark, via ``pytest.main``) and by
``torch.utils.benchmark.Timer.blocked_autorange`` on the very runner the harness prepared.
Both medians are printed with their ratio; they should agree within 10%. Each trial's pair is
printed too, with the rounds the harness timed: it times at most 200 (``suites/bench_net.py``),
so a call much shorter than ``--seconds``/200 is timed over less than ``--seconds``, while
``blocked_autorange`` always fills it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.contract.manager import load_backends
from harness.errors import UsageError

AGREEMENT = 0.10


@dataclass
class Trial:
    """One alternation: the harness's median and rounds, then torch's median on the same runner."""

    harness_median_s: float
    harness_rounds: int
    torch_median_s: float


@dataclass
class Fidelity:
    trials: list[Trial]

    @property
    def harness_median_s(self) -> float:
        return statistics.median(t.harness_median_s for t in self.trials)

    @property
    def torch_median_s(self) -> float:
        return statistics.median(t.torch_median_s for t in self.trials)

    @property
    def ratio(self) -> float:
        return self.harness_median_s / self.torch_median_s

    @property
    def agrees(self) -> bool:
        return abs(self.ratio - 1) <= AGREEMENT


def harness_median(bench_file: Path, test_id: str, backend: str, device: str, seconds: float) -> tuple[float, int]:
    """Time one configuration exactly as the benchmark suite does: pytest-benchmark, in this process.

    Returns the median and the number of timed rounds.
    """
    import json
    import os
    import tempfile

    import pytest

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        os.environ["NETHARNESS_BENCH_SECONDS"] = str(seconds)
        code = pytest.main(
            [
                f"{bench_file}::{test_id}",
                f"--backend={backend}",
                f"--device={device}",
                "--benchmark-enable",
                f"--benchmark-json={out}",
                f"--conformance-results={Path(tmp) / 'checks.jsonl'}",
                "-p",
                "no:cacheprovider",
                "-q",
            ]
        )
        if code != 0 or not out.exists():
            raise UsageError(f"the harness benchmark {test_id} did not run (pytest exit code {code})")
        stats = json.loads(out.read_text())["benchmarks"][0]["stats"]
        return float(stats["median"]), int(stats["rounds"])


def same_runner(backend: str, batch: int, device: str) -> Any:
    """The prepared runner the benchmark module made, so both timers time the very same object."""
    import sys

    module = next(m for name, m in sys.modules.items() if name.endswith("bench_net") and hasattr(m, "_RUNNERS"))
    return module._RUNNERS[(backend, batch, "float32", device)][0]


def torch_blocked_autorange(fn: Callable[[], Any], seconds: float) -> float:
    import torch
    from torch.utils import benchmark

    # Timer runs single-threaded unless told otherwise; the harness runs with torch's default.
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=seconds)
    return float(measurement.median)


def measure(backend_name: str, phase: str, batch: int, device: str, trials: int, seconds: float) -> Fidelity:
    registry = load_backends()
    if backend_name not in registry.backends:
        raise UsageError(f"unknown backend {backend_name!r}; valid names: {', '.join(registry.names())}")
    bench_file = Path.cwd() / "suites" / "bench_net.py"
    if not bench_file.exists():
        raise UsageError(f"no {bench_file}; run netharness fidelity from the netharness checkout")
    test_id = f"test_benchmark[{backend_name}-{phase}-float32-batch{batch}]"
    done: list[Trial] = []
    for trial in range(trials):  # alternated, so drift in the machine's speed hits both alike
        print(f"netharness fidelity: trial {trial + 1}/{trials}", flush=True)
        median, rounds = harness_median(bench_file, test_id, backend_name, device, seconds)
        runner = same_runner(backend_name, batch, device)
        work = runner.forward if phase == "forward" else runner.train_step

        def one_round(work: Any = work, runner: Any = runner) -> None:
            work()
            runner.synchronize()

        done.append(Trial(median, rounds, torch_blocked_autorange(one_round, seconds)))
    return Fidelity(done)


def run_fidelity(backend: str, phase: str, batch: int, device: str, trials: int, seconds: float) -> int:
    result = measure(backend, phase, batch, device, trials, seconds)
    print(f"configuration: {backend} {phase} float32 batch{batch} {device}")
    for number, trial in enumerate(result.trials, 1):
        print(
            f"trial {number}: harness {trial.harness_median_s * 1e3:.4f} ms ({trial.harness_rounds} rounds),"
            f" torch {trial.torch_median_s * 1e3:.4f} ms"
        )
    print(f"harness median:                    {result.harness_median_s * 1e3:9.4f} ms")
    print(f"torch blocked_autorange median:    {result.torch_median_s * 1e3:9.4f} ms")
    verdict = "agree" if result.agrees else "DISAGREE"
    print(f"ratio harness/torch: {result.ratio:.3f} ({verdict} within {AGREEMENT:.0%})")
    return 0 if result.agrees else 1
