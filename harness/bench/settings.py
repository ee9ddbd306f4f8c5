"""The benchmarks' environment variables, each read and checked in one place.

A value that does not parse is a one-line :class:`~harness.errors.UsageError` that names the
variable and what it takes, raised before anything is timed (never a traceback, and never
a run that quietly times nothing).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from harness.errors import UsageError
from harness.net.precision import PRECISIONS
from harness.results import CLOCKS

PEAK_ENV = "NETHARNESS_PEAK_GFLOPS"
SECONDS_ENV = "NETHARNESS_BENCH_SECONDS"
PRECISIONS_ENV = "NETHARNESS_BENCH_PRECISIONS"
DEFAULT_SECONDS = 1.0
DEFAULT_PRECISIONS = ("float32", "bfloat16", "float16", "tf32")
"""Timed where a backend declares them, so reduced precision's speed sits beside float32's; float64 is never timed."""
TIMED_PRECISIONS = tuple(name for name in PRECISIONS if name != "float64")


def _positive(name: str, unit: str) -> float | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{name}={text!r} is not a positive number of {unit}; set one (or unset it)")
    return value


def peak_gflops_override() -> float | None:
    """``$NETHARNESS_PEAK_GFLOPS``: the machine's peak, measured once for a run and handed to its steps."""
    return _positive(PEAK_ENV, "GFLOP/s")


def bench_seconds() -> float:
    """``$NETHARNESS_BENCH_SECONDS``: the steady-state time aimed for per benchmark (default 1 s)."""
    value = _positive(SECONDS_ENV, "seconds")
    return DEFAULT_SECONDS if value is None else value


def bench_precisions() -> list[str]:
    """``$NETHARNESS_BENCH_PRECISIONS``: the precisions timed, a comma list (default: every one but float64)."""
    text = os.environ.get(PRECISIONS_ENV, "")
    if not text.strip():
        return list(DEFAULT_PRECISIONS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TIMED_PRECISIONS]
    if unknown or not names:
        raise UsageError(
            f"{PRECISIONS_ENV}={text!r} names {', '.join(map(repr, unknown)) or 'no precision'};"
            f" valid: {', '.join(TIMED_PRECISIONS)} (a comma list)"
        )
    return names


CLOCK_TIMERS = {"wall": "time.perf_counter", "cpu": "time.process_time"}
"""Each ``--clock`` as the dotted name pytest-benchmark's ``--benchmark-timer`` takes."""


def clock_function(clock: str) -> Callable[[], float]:
    """The function that reads ``clock``: wall time, or this process's CPU time summed over its threads.

    CPU time leaves out what waits (another process holding the core, I/O) and counts every
    thread's work, so a run on N threads reads up to N times its wall time. Work done in
    another process (a compile worker, a server) is not counted.
    """
    return time.process_time if check_clock(clock) == "cpu" else time.perf_counter


SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""What ``netharness run --clock=cpu`` sets to 1 for its benchmark steps, unless the shell set any of them.

A process's CPU time sums its threads' run time, and the kernel brings another running
thread's share up to date only at its scheduler tick (milliseconds), so with several threads
a sub-millisecond round reads 0 or a tick; and a thread waiting at a barrier for a peer the
busy machine preempted spins, which is counted as work. Measured under two busy loops on 2
cores (issue 28): eager's batch-1 forward read 0.33 to 69 ms on 2 threads."""


def single_thread_environment(environ: dict[str, str]) -> dict[str, str]:
    """The variables that make a benchmark step single-threaded, or {} when the shell chose a thread count."""
    if any(name in environ for name in SINGLE_THREAD_ENV):
        return {}
    return dict.fromkeys(SINGLE_THREAD_ENV, "1")


def check_clock(clock: str) -> str:
    """``clock`` if it is one of :data:`harness.results.CLOCKS`, else a one-line :class:`UsageError`."""
    if clock not in CLOCKS:
        raise UsageError(
            f"--clock={clock!r} is not a clock; valid: {', '.join(CLOCKS)}"
            " (wall: elapsed time; cpu: the process's CPU time, steadier on a busy machine)"
        )
    return clock


def check_environment() -> None:
    """Every variable above parses (called before a run or a benchmark session starts)."""
    peak_gflops_override()
    bench_seconds()
    bench_precisions()
