"""Benchmarks: backend x phase x batch x dtype x device, with correctness in the same record.

Timed with pytest-benchmark (``netharness run`` or ``pytest suites/bench_net.py
--benchmark-enable``). Inputs are prepared and moved to the device before timing; warm-up
rounds run first; CUDA work is synchronised inside each round; compile, export and the
first call are timed once per phase, apart from steady state. Under ``pytest -n`` (xdist)
pytest-benchmark disables timing: each benchmark runs once, untimed, as a smoke test.

Beside each timing (``extra_info``): the error of the timed object against the oracle;
the device's peak FLOP/s and the fraction reached; the peak memory of one round, measured
in a child process (:func:`harness.bench.memory.peak_memory`) with its method; and the row's
stability: ``rel_iqr`` (IQR / median), ``rounds`` and the 1-minute load average at the
start and end of the benchmark (``load_start``, ``load_end``).

``--clock`` picks what the rounds are timed with (``clock`` in each record): wall time, or the
process's CPU time. The threads a backend really uses are what its prepared object reports
in ``benchmark_info["threads"]`` (``threads_source`` = ``backend``), else torch's intra-op
threads (``torch``). Every backend but eager also times eager's prepared object in the same
process, round by round interleaved with its own (``paired_baseline_s``, ``paired_s``), so its
speedup against eager does not depend on the load changing between two processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.bench.fastpath import BENCH_LOSS, BENCH_LR, Runner, prepare_runner
from harness.bench.machine import CUDA_PEAK_METHOD, cpu_peak_method, cuda_peak_gflops, load_average, thread_count
from harness.bench.memory import peak_memory
from harness.bench.settings import bench_precisions, bench_seconds, clock_function
from harness.conformance.compare import compare
from harness.contract.backend import PHASES as BENCH_PHASES
from harness.contract.backend import Backend, Capability, supports
from harness.net.testdata import as_float64, random_images, random_params, random_target
from harness.pytest_plugin import benchmark_clock, harness_state, machine_peak_gflops
from harness.results import CLOCKS

BATCHES = [pytest.param(b, id=f"batch{b}") for b in (1, 64, 256)]
PHASES = [pytest.param(p, id=p) for p in BENCH_PHASES]
DTYPES = [pytest.param(p, id=p) for p in bench_precisions()]
"""Precisions timed (where a backend declares them; ``$NETHARNESS_BENCH_PRECISIONS``), so reduced
precision's speed sits beside float32's; float64 is never timed. ``netharness run --quick`` times
float32 and bfloat16."""
TARGET_SECONDS = bench_seconds()
"""Steady-state time aimed for per benchmark; rounds = TARGET_SECONDS / first-call estimate, within [5, 200]."""
PAIRED_BASELINE = "eager"
"""The backend whose prepared object every other backend's benchmark also times, interleaved with its own."""
MIN_PAIRED_ROUNDS = 20
"""At least this many pairs, whatever their length: a median's bootstrap interval needs them."""

_RUNNERS: dict[tuple[str, int, str, str], tuple[Runner, dict[str, np.ndarray], np.ndarray, np.ndarray]] = {}
_MEMORY: dict[tuple[str, str, str], dict[tuple[str, int], tuple[int | None, str]]] = {}


def runner_for(
    backend: Backend, batch: int, dtype: str, device: str
) -> tuple[Runner, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One prepared runner per configuration for the session: both phases share its first call."""
    key = (backend.name, batch, dtype, device)
    if key not in _RUNNERS:
        spec = NetSpec()
        rng = np.random.default_rng([batch, 2024])
        params = random_params(spec, rng, dtype)
        x = random_images(spec, batch, rng, dtype)
        target = random_target(spec, BENCH_LOSS, batch, rng, dtype)
        _RUNNERS[key] = (
            prepare_runner(backend, spec, params, x, target, device=device, dtype=dtype),
            params,
            x,
            target,
        )
    return _RUNNERS[key]


def memory_of(
    request: pytest.FixtureRequest, backend: Backend, phase: str, batch: int, device: str, dtype: str
) -> tuple[int | None, str]:
    """Peak memory of one round: one child process per backend, for every batch this session benchmarks."""
    key = (backend.name, device, dtype)
    if key not in _MEMORY:
        batches = {
            item.callspec.params["batch"]  # type: ignore[attr-defined]
            for item in request.session.items
            if getattr(item, "originalname", "") == "test_benchmark"
            and item.callspec.params.get("backend") == backend.name  # type: ignore[attr-defined]
        }
        _MEMORY[key] = peak_memory(backend.name, device, dtype, batches | {batch})
    return _MEMORY[key].get((phase, batch), (None, "not measured: the child process did not report it"))


def device_peak(request: pytest.FixtureRequest, device: str) -> dict[str, Any]:
    """The peak FLOP/s of the device that ran the benchmark, with how it was measured."""
    if device == "cuda":
        peaks = cuda_peak_gflops()
        return {
            "peak_gflops_per_s": peaks["float32"],
            "peak_tf32_gflops_per_s": peaks["tf32"],
            "peak_bf16_gflops_per_s": peaks["bf16"],
            "peak_method": CUDA_PEAK_METHOD,
        }
    return {"peak_gflops_per_s": machine_peak_gflops(request.config), "peak_method": cpu_peak_method()}


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def backend_threads(runner: Runner) -> tuple[int, str]:
    """The intra-op threads the timed object uses, and where the figure came from.

    ``backend``: its prepared object reported it (``benchmark_info["threads"]``); ``torch``:
    it did not, and torch's intra-op thread count in this process stands in for it.
    """
    reported = runner.info.get("threads")
    if isinstance(reported, int) and not isinstance(reported, bool) and reported > 0:
        return reported, "backend"
    return thread_count(), "torch"


def paired_rounds(
    request: pytest.FixtureRequest,
    backend: Backend,
    phase: str,
    dtype: str,
    batch: int,
    device: str,
    one_round: Any,
    clock: Any,
) -> dict[str, Any]:
    """Eager's prepared object and ``backend``'s, timed in turns in this process: ``{paired_*: ...}``.

    Each round times one call of each, the order alternating, so a change of load falls on
    both alike and the per-round ratio keeps little of it. Empty when ``backend`` is eager
    itself, or eager is not registered or cannot run this configuration. Eager's own step
    still times it apart, so a backend that crashes here loses none of eager's figures.
    """
    if backend.name == PAIRED_BASELINE:
        return {}
    baseline = harness_state(request.config).registry.backends.get(PAIRED_BASELINE)
    capability = Capability.FORWARD if phase == "forward" else Capability.TRAIN_STEP
    if (
        baseline is None
        or dtype not in baseline.dtypes
        or device not in baseline.devices
        or not supports(baseline, capability)
        or not baseline.availability().available
    ):
        return {}
    base_runner = runner_for(baseline, batch, dtype, device)[0]
    base_work = base_runner.forward if phase == "forward" else base_runner.train_step
    assert base_work is not None

    def base_round() -> None:
        base_work()
        base_runner.synchronize()

    for _ in range(2):
        base_round()
        one_round()
    estimate = max(min(_seconds(base_round) + _seconds(one_round) for _ in range(3)), 1e-6)
    rounds = int(min(200, max(MIN_PAIRED_ROUNDS, TARGET_SECONDS / estimate)))
    times: dict[str, list[float]] = {"base": [], "mine": []}
    for index in range(rounds):
        order = (("base", base_round), ("mine", one_round))
        for name, work in order if index % 2 == 0 else order[::-1]:
            start = clock()
            work()
            times[name].append(clock() - start)
    return {"paired_baseline": PAIRED_BASELINE, "paired_baseline_s": times["base"], "paired_s": times["mine"]}


def max_errors(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    diff = np.abs(np.asarray(actual, np.float64) - expected)
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(diff.max()), float(diff.max() / scale)


def timed_results(runner: Runner, phase: str, x: np.ndarray, target: np.ndarray) -> dict[str, tuple[Any, Any]]:
    """What the timed object computes at this configuration, beside the oracle's: ``{what: (actual, expected)}``.

    forward: its logits, on the parameters it holds now. train_step: the parameters after
    one more step of its own, against the oracle's step from the parameters it held before.
    """
    spec = NetSpec()
    x64 = x.astype(np.float64)
    if phase == "forward":
        return {"logits": (runner.output(), oracle.forward(spec, as_float64(runner.current_parameters()), x64))}
    assert runner.train_step is not None
    before = as_float64(runner.current_parameters())
    runner.train_step()
    runner.synchronize()
    after = runner.current_parameters()
    expected = oracle.sgd_step(spec, before, x64, target, BENCH_LOSS, BENCH_LR)
    return {name: (after[name], expected[name]) for name in expected}


def judge_timed_object(
    request: pytest.FixtureRequest, backend: Backend, phase: str, dtype: str, batch: int, device: str, results: Any
) -> tuple[float, float, str]:
    """The largest absolute and relative errors, and the first failure ('' if every result is within
    the tolerance of the check that governs this phase: ``prepared_forward`` or ``prepared_train_step``)."""
    check = "prepared_forward" if phase == "forward" else "prepared_train_step"
    config = {"device": device, "variant": "seed", "activation": "relu", "phase": phase, "batch": batch}
    tolerance = harness_state(request.config).tolerance_for(backend.name, check, dtype, config)
    errors, failures = [], []
    for what, (actual, expected) in results.items():
        errors.append(max_errors(actual, expected))
        failure = compare(f"the timed {phase}'s {what} at batch {batch}", actual, expected, tolerance)[1]
        if failure:
            failures.append(failure)
    return max(e[0] for e in errors), max(e[1] for e in errors), (failures[0] if failures else "")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("bench_dtype", DTYPES)
@pytest.mark.parametrize("phase", PHASES)
def test_benchmark(
    backend: Backend,
    phase: str,
    bench_dtype: str,
    batch: int,
    device: str,
    benchmark: Any,
    request: pytest.FixtureRequest,
) -> None:
    dtype = bench_dtype
    if dtype not in backend.dtypes:
        pytest.skip(f"backend {backend.name!r} does not declare precision {dtype}")
    capability = Capability.FORWARD if phase == "forward" else Capability.TRAIN_STEP
    if not supports(backend, capability):
        pytest.skip(f"backend {backend.name!r} does not declare capability {capability.value!r}")
    runner, _params, x, target = runner_for(backend, batch, dtype, device)
    work = runner.forward if phase == "forward" else runner.train_step
    assert work is not None

    def one_round() -> None:
        work()
        runner.synchronize()

    clock = benchmark_clock(request.config)
    load_start = load_average()
    rounds = 1  # untimed (--benchmark-disable, xdist): pedantic runs one round, a smoke test
    if not benchmark.disabled:
        estimate = max(min(_seconds(one_round) for _ in range(3)), 1e-6)
        rounds = int(min(200, max(5, TARGET_SECONDS / estimate)))
    benchmark.group = f"{phase} {dtype} {device} batch{batch}"
    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=max(2, rounds // 10))
    paired: dict[str, Any] = {}
    if not benchmark.disabled and clock in CLOCKS:  # pairs on another project's timer would not match its rounds
        paired = paired_rounds(request, backend, phase, dtype, batch, device, one_round, clock_function(clock))
    load = (load_start, load_average())

    info = benchmark.extra_info
    threads, threads_source = backend_threads(runner)
    facts = {name: value for name, value in runner.info.items() if name != "threads"}
    info.update(
        backend=backend.name,
        version=backend.version,
        phase=phase,
        batch=batch,
        dtype=dtype,
        device=device,
        clock=clock,
        threads=threads,
        threads_source=threads_source,
        process_threads=thread_count(),
        **paired,
        first_call_s=runner.first_call_s[phase],
        setup_s=runner.setup_s[phase],
        setup_kind=runner.setup_kind,
        prepared=runner.prepared,
        **facts,  # e.g. the artifact the timed object runs (the report links it) and its size
    )
    if "artifact" in info:
        info["artifact"] = str(Path(info["artifact"]).resolve())
    results = timed_results(runner, phase, x, target)  # judged timed or not: a smoke run checks it too
    info["max_abs_error"], info["max_rel_error"], failure = judge_timed_object(
        request, backend, phase, dtype, batch, device, results
    )
    info["error_within_tolerance"] = not failure
    if benchmark.stats is not None:
        record_timing(request, benchmark, backend, phase, dtype, batch, device, load)
    if failure:  # the timing is kept, but it is the timing of a wrong result: no speed is claimed for it
        pytest.fail(f"the benchmarked object is wrong: {failure}", pytrace=False)


def record_timing(
    request: pytest.FixtureRequest,
    benchmark: Any,
    backend: Backend,
    phase: str,
    dtype: str,
    batch: int,
    device: str,
    load: tuple[float | None, float | None],
) -> None:
    """What stands beside a timing: throughput, stability, load, the device's peak and the peak memory."""
    load_start, load_end = load
    info = benchmark.extra_info
    stats = benchmark.stats.stats
    median = stats.median
    flops = NetSpec().flops(batch) * (1 if phase == "forward" else 3)  # backward ~ 2x forward
    info.update(samples_per_s=batch / median, gflops_per_s=flops / median / 1e9)
    info.update(rel_iqr=stats.iqr / median, rounds=stats.rounds, load_start=load_start, load_end=load_end)
    info.update(device_peak(request, device))
    peak = info["peak_gflops_per_s"]
    info["peak_fraction"] = (flops / median / 1e9) / peak if peak else None
    info["peak_memory_bytes"], info["peak_memory_method"] = memory_of(request, backend, phase, batch, device, dtype)
