"""The pytest plugin: options, backend parametrization, skips, state isolation and results.

Registered through the ``pytest11`` entry point, so ``pytest suites --backend=eager`` works
in any directory once netharness is installed. It is lazy: until a test asks for a
netharness fixture (or a netharness option is given), nothing is imported beyond NumPy and
no file is written, so installing netharness costs other pytest runs nothing.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.bench.finished import BenchmarkKeeper
from harness.bench.settings import CLOCK_TIMERS, SINGLE_THREAD_ENV, check_clock, check_environment
from harness.budget import DEFAULT_CRASH_BUDGET
from harness.childprocess import (
    COLLECTED_OPTION,
    INCIDENTS_OPTION,
    SKIP_FROM_OPTION,
    honour_stop_requests,
    ignore_stop_requests,
)
from harness.conformance.catalogue import CHECKS, FULL_PRECISIONS, unjudged_families
from harness.conformance.causes import cause_lines, root_causes
from harness.conformance.checker import Checker, reproduce_command
from harness.conformance.compare import ConformanceError
from harness.conformance.selectors import configuration
from harness.contract.backend import Backend, Capability, supports
from harness.errors import UsageError
from harness.pytest_plugin import isolation, outcomes
from harness.pytest_plugin.budget import BudgetKeeper
from harness.pytest_plugin.recorder import ResultsRecorder, raised_at
from harness.pytest_plugin.state import DEFAULT_RESULTS, STATE_KEY, HarnessState, harness_state
from harness.results import DEFAULT_CLOCK, META

RECORDER_KEY = pytest.StashKey[ResultsRecorder]()
BUDGET_KEY = pytest.StashKey[BudgetKeeper]()
PEAK_KEY = pytest.StashKey[float]()

__all__ = ["Checker", "benchmark_clock", "harness_state"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netharness", "netharness conformance and benchmarks")
    group.addoption(
        "--backend",
        action="append",
        default=[],
        metavar="NAME[,NAME...]",
        help="backends to test: a name, a comma list, or 'all'; repeatable (default: all registered backends)",
    )
    group.addoption("--device", default="cpu", metavar="cpu|cuda", help="device to run backends on (default: cpu)")
    group.addoption("--seed", default="0", metavar="INT", help="seed for every random input and parameter (default: 0)")
    group.addoption(
        "--clock",
        default=DEFAULT_CLOCK,
        metavar="wall|cpu",
        help="what the benchmarks time: wall (elapsed) or cpu (the process's CPU time, every thread summed;"
        f" steadier on a busy machine); recorded in each benchmark (default: {DEFAULT_CLOCK})",
    )
    group.addoption(
        "--strict-backends",
        action="store_true",
        default=False,
        help="fail backends that are unavailable, whose plugin failed to load, or that ran no check (default: off)",
    )
    group.addoption(
        "--conformance-results",
        default=DEFAULT_RESULTS,
        metavar="PATH",
        help=f"JSON-lines file of per-check results, errors and headroom (default: {DEFAULT_RESULTS})",
    )
    group.addoption(
        "--crash-budget",
        default=str(DEFAULT_CRASH_BUDGET),
        metavar="K",
        help="after K crashes or timeouts of one backend, record its remaining tests as not run"
        f" (default: {DEFAULT_CRASH_BUDGET}; under -n, per worker)",
    )
    group.addoption(
        SKIP_FROM_OPTION,
        default=None,
        metavar="PATH",
        help="deselect the test ids listed in PATH, one per line (used by netharness to resume after a crash)",
    )
    group.addoption(
        INCIDENTS_OPTION,
        default=None,
        metavar="PATH",
        help="the crashes and timeouts so far, per backend (used by netharness to keep one crash budget per run)",
    )
    group.addoption(
        COLLECTED_OPTION,
        default=None,
        metavar="PATH",
        help="write the backends' collected tests to PATH (used by netharness to record tests not run)",
    )


def _options_given(config: pytest.Config) -> bool:
    """Whether the command line asked for netharness (so the header is worth building)."""
    defaults = {"backend": [], "device": "cpu", "seed": "0", "strict_backends": False, "clock": DEFAULT_CLOCK}
    defaults["crash_budget"] = str(DEFAULT_CRASH_BUDGET)
    defaults["conformance_results"] = DEFAULT_RESULTS
    return any(config.getoption(name) != default for name, default in defaults.items())


# -- session ------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*capabilities): skip backends that do not declare these capabilities")
    config.addinivalue_line("markers", "check(name): the conformance check this test implements")
    _spare_benchmark_storage(config.option)
    if config.option.help or getattr(config.option, "version", False):
        return
    _time_with_clock(config)
    honour_stop_requests()
    keeper = config.stash[BUDGET_KEY] = BudgetKeeper(config)
    config.pluginmanager.register(keeper, "netharness-crash-budget")
    if not hasattr(config, "workerinput"):
        recorder = config.stash[RECORDER_KEY] = ResultsRecorder(config)
        config.pluginmanager.register(recorder, "netharness-results")
        config.pluginmanager.register(BenchmarkKeeper(config), "netharness-finished-benchmarks")
    if _options_given(config):
        try:
            check_environment()
        except UsageError as error:
            raise pytest.UsageError(str(error)) from None
        harness_state(config)  # a bad option is a usage error before anything runs


def _time_with_clock(config: pytest.Config) -> None:
    """Check ``--clock`` and hand pytest-benchmark its timer (before its own configure reads the option).

    ``--clock=wall`` (the default) leaves ``--benchmark-timer`` as it is, so a project that
    times with its own timer keeps it; :func:`benchmark_clock` then names that timer.
    """
    try:
        clock = check_clock(config.getoption("clock"))
    except UsageError as error:
        raise pytest.UsageError(str(error)) from None
    timer = getattr(config.option, "benchmark_timer", None)
    if clock == DEFAULT_CLOCK or timer is None:  # timer None: pytest-benchmark is not loaded, nothing is timed
        return
    if timer not in (CLOCK_TIMERS[clock], CLOCK_TIMERS[DEFAULT_CLOCK]):
        raise pytest.UsageError(f"--clock={clock} and --benchmark-timer={timer} disagree; give one of them")
    config.option.benchmark_timer = CLOCK_TIMERS[clock]


def benchmark_clock(config: pytest.Config) -> str:
    """The clock pytest-benchmark times with: ``wall``, ``cpu``, or the dotted name of another timer."""
    timer = str(getattr(config.option, "benchmark_timer", None) or CLOCK_TIMERS[DEFAULT_CLOCK])
    return next((clock for clock, name in CLOCK_TIMERS.items() if name == timer), timer)


def _spare_benchmark_storage(option: Any) -> None:
    """Keep pytest-benchmark (a netharness dependency) from creating ``./.benchmarks`` in every run.

    It creates its storage folder at start-up even when nothing is saved. Unless a run
    saves or compares (or names a storage itself), the folder goes to the temporary directory.
    """
    storage = getattr(option, "benchmark_storage", None)
    uses_storage = any(
        getattr(option, name, None) for name in ("benchmark_save", "benchmark_autosave", "benchmark_compare")
    )
    if storage == "file://./.benchmarks" and not uses_storage:
        option.benchmark_storage = f"file://{Path(tempfile.gettempdir()) / 'netharness-unused-benchmark-storage'}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return []
    lines = [f"netharness: seed={state.seed} device={state.device} results={state.results_path}"]
    if benchmark_clock(config) == "cpu":
        from harness.bench.machine import thread_count

        threads = thread_count()
        if threads > 1:
            lines.append(
                f"netharness: WARNING: --clock=cpu on {threads} intra-op threads: the CPU time of several threads"
                " is only as fine as the scheduler's tick, and threads waiting for a preempted peer spin, which counts"
                f" as work; set {SINGLE_THREAD_ENV[0]}=1 (netharness run does) for a fine and steady CPU clock"
            )
    for name in state.selected:
        backend, availability = state.backend(name), state.availability(name)
        status = "available" if availability.available else f"UNAVAILABLE: {availability.reason}"
        lines.append(f"  backend {name} ({backend.version}): {status}")
    lines.extend(f"  {failure}" for failure in state.registry.failures)
    return lines


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state, recorder = config.stash.get(STATE_KEY, None), config.stash.get(RECORDER_KEY, None)
    if state is None or recorder is None:
        ignore_stop_requests()
        return
    if state.strict and int(exitstatus) in (0, 1) and not session.shouldstop and not session.shouldfail:
        if (recorder.zero_check_backends() or unjudged(state)) and int(exitstatus) == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    stopped = config.stash[BUDGET_KEY].stopped()
    if (recorder.crashed or stopped) and int(session.exitstatus) == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    interrupted = int(exitstatus) == pytest.ExitCode.INTERRUPTED  # already partial, and says so
    if not interrupted and recorder.record_unfinished(int(session.exitstatus)) and int(session.exitstatus) == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state.writer is not None:
        state.writer.finish(exitstatus=int(session.exitstatus), interrupted=interrupted, stopped_backends=stopped)
    ignore_stop_requests()


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n N --dist loadgroup``, one group per backend and network (:mod:`harness.pytest_plugin.scheduling`)."""
    state = config.stash.get(STATE_KEY, None)
    if state is None or config.getvalue("dist") != "loadgroup":
        return None
    from harness.pytest_plugin.scheduling import BackendGroupScheduling

    return BackendGroupScheduling(config, log, backends=state.selected)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state, recorder = config.stash.get(STATE_KEY, None), config.stash.get(RECORDER_KEY, None)
    if state is None or recorder is None:
        return
    for nodeid in recorder.crashed:
        terminalreporter.write_line(f"netharness: CRASHED: {nodeid} (the process running it died)", red=True)
    if state.strict:
        for name, families in unjudged(state).items():
            terminalreporter.write_line(
                f"netharness: backend {name!r} declares {', '.join(families)} but only precisions that cannot judge"
                " them (they run at float32 and float64); declare float32 too (--strict-backends fails the run)",
                red=True,
            )
    if recorder.not_checks:
        counted = ", ".join(f"{count} {outcome}" for outcome, count in sorted(recorder.not_checks.items()))
        terminalreporter.write_line(
            f"netharness: {recorder.recorded} check results recorded; pytest's counts below also hold {counted}"
            " test(s) that are no backend's check (plugin_loaded: one per installed plugin), so they differ"
        )
    if recorder.failing:
        terminalreporter.write_line("netharness: failures by root cause (one line each: --tb=line or --tb=short):")
        for line in cause_lines(root_causes(recorder.failing)):
            terminalreporter.write_line(line)
    if state.strict and state.writer is not None:
        for name in recorder.zero_check_backends():
            terminalreporter.write_line(
                f"netharness: backend {name!r} ran no check (every one was skipped or deselected;"
                " --strict-backends fails the run)",
                red=True,
            )


def machine_peak_gflops(config: pytest.Config) -> float:
    """This machine's float32 matmul peak, measured once per run (only when benchmarks time)."""
    from harness.bench.machine import measure_peak_gflops

    if PEAK_KEY not in config.stash:
        config.stash[PEAK_KEY] = measure_peak_gflops()
    return config.stash[PEAK_KEY]


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Store the peak, thread count and commit with pytest-benchmark's machine info (netharness runs only)."""
    if STATE_KEY not in config.stash:
        return
    from harness.bench.machine import device_info, thread_count
    from harness.results import BENCHMARK_FORMAT, git_commit

    machine_info.update(device_info(harness_state(config).device))
    machine_info["netharness_peak_gflops"] = machine_peak_gflops(config)
    machine_info["netharness_threads"] = thread_count()
    machine_info["netharness_clock"] = benchmark_clock(config)
    machine_info["netharness_format"] = BENCHMARK_FORMAT
    machine_info["netharness_commit"] = git_commit()


# -- parametrization ------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # the backend's id comes first in every test id
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = {"backend", "plugin_name"} & set(metafunc.fixturenames)
    if not wanted:
        return
    state = harness_state(metafunc.config)
    if "plugin_name" in wanted:
        names = sorted({*state.registry.owners.values(), *(f.plugin for f in state.registry.failures)})
        metafunc.parametrize("plugin_name", names)
    if "backend" not in wanted:
        return
    if not state.selected:
        raise pytest.UsageError("no backend selected: every selected plugin failed to load (see the header)")
    if "dtype" in metafunc.fixturenames:
        info = CHECKS.get(check_name(metafunc.definition))
        every = info is None or info.at_every_precision
        pairs = [
            pytest.param(n, d, id=f"{n}-{d}")
            for n in state.selected
            for d in state.backend(n).dtypes
            if every or d in FULL_PRECISIONS
        ]
        if not every:  # a backend none of whose precisions can run this family: recorded, never silently empty
            pairs += [
                pytest.param(n, d, id=f"{n}-{d}", marks=pytest.mark.skip(reason=_unjudged_reason(info)))
                for n in state.selected
                if not set(state.backend(n).dtypes) & set(FULL_PRECISIONS)
                for d in state.backend(n).dtypes
            ]
        metafunc.parametrize(("backend", "dtype"), pairs, indirect=["backend"])
    else:
        metafunc.parametrize("backend", state.selected, indirect=True)


def _unjudged_reason(info: Any) -> str:
    return (
        f"not judged: {info.family} checks run at float32 and float64 only (at a coarser precision an element"
        " near a kink takes the other branch) and this backend declares neither"
    )


def unjudged(state: HarnessState) -> dict[str, list[str]]:
    """Per selected backend, the declared families none of its precisions can judge (see the catalogue)."""
    found = {}
    for name in state.selected:
        backend = state.backend(name)
        families = unjudged_families(backend.capabilities, backend.dtypes)
        if families:
            found[name] = families
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_listed(config, items)
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return
    for item in items:
        params = getattr(item, "callspec", None)
        # An empty parameter set (a check no declared precision runs) holds pytest's placeholder.
        if params is None or not isinstance(params.params.get("backend"), str):
            continue
        name, dtype = params.params["backend"], params.params.get("dtype", "")
        check = check_name(item)
        item.user_properties.append(
            (META, {"backend": name, "dtype": dtype, "check": check, "config": config_id(params.id, name)})
        )
        deviation = state.deviation_for(name, check, configuration(params.params, state.device))
        if deviation is not None:
            item.add_marker(pytest.mark.xfail(reason=f"known deviation: {deviation.reason}", strict=True))


def _deselect_listed(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = config.getoption("netharness_skip_from")
    if not path:
        return
    listed = set(Path(path).read_text(encoding="utf-8").splitlines())
    kept = [item for item in items if item.nodeid not in listed]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in listed])
        items[:] = kept


def check_name(item: pytest.Item) -> str:
    marker = item.get_closest_marker("check")
    if marker is not None:
        return str(marker.args[0])
    return getattr(item, "originalname", item.name).removeprefix("test_")


def config_id(callspec_id: str, backend: str) -> str:
    """The test's configuration without its backend: ``float32-batch7`` for ``eager-float32-batch7``.

    The backend's parameter is always first (``pytest_generate_tests`` runs first), so its
    name is cut off as a prefix, whatever characters the name holds.
    """
    rest = callspec_id[len(backend) :] if callspec_id.startswith(backend) else callspec_id
    return rest.lstrip("-") or "default"


# -- isolation -------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail a backend's test that leaves process-wide state changed, and put the state back."""
    if not any(key == META for key, _ in item.user_properties):
        return (yield)
    saved = isolation.snapshot()
    try:
        result = yield
    except BaseException as error:
        _fail_on_backend_control_flow(item, error)
        raise
    finally:
        changed = isolation.restore(saved)
    if changed:
        backend = item.callspec.params["backend"]  # type: ignore[attr-defined]
        pytest.fail(
            f"backend {backend!r} changed process-wide state and did not restore it: {'; '.join(changed)}."
            " Every backend shares this process: scope such settings to your own calls (the state was restored)",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Backend code run by a fixture (its availability, say) cannot skip the test either."""
    if not any(key == META for key, _ in item.user_properties):
        return (yield)
    try:
        return (yield)
    except BaseException as error:
        _fail_on_backend_control_flow(item, error)
        raise


def _fail_on_backend_control_flow(item: pytest.Item, error: BaseException) -> None:
    """Turn a skip, xfail or exit that backend code raised into a failure (:mod:`.outcomes`)."""
    if not outcomes.is_control_flow(error):
        return
    where = outcomes.raised_by_backend(error, item.path.parent)
    if where:
        backend = item.callspec.params["backend"]  # type: ignore[attr-defined]
        raise ConformanceError(outcomes.as_failure(error, where, backend)) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failure the checker did not word (an exception inside a backend, a plain assert)
    ends with the command that reproduces it too, as every checker failure does."""
    report = yield
    if not report.failed or not any(key == META for key, _ in item.user_properties):
        return report
    if call.excinfo is not None:  # what was raised and where, for grouping failures by root cause
        report.user_properties.append((f"{META}.exception", raised_at(call.excinfo)))
    longrepr = report.longrepr
    if "reproduce: " in str(longrepr):
        return report
    backend = item.callspec.params["backend"]  # type: ignore[attr-defined]
    state = harness_state(item.config)
    command = reproduce_command(item.nodeid, backend, state.device, state.seed, item.path)
    if hasattr(longrepr, "addsection"):
        longrepr.addsection("reproduce", command)
    else:
        report.longrepr = f"{longrepr}\n  reproduce: {command}"
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Drop traceback entries without a line number before pytest reports a Ctrl-C.

    A Ctrl-C that lands while Python 3.11 enters a ``with`` block leaves a frame whose
    ``tb_lineno`` is None; pytest's report of the interrupt then crashes on it (a TypeError,
    exit status 1 instead of 2; pytest-xdist#1196 shows the same crash), so an interrupted
    run would not say it was interrupted.
    """
    traceback = excinfo.traceback
    kept = traceback.filter(lambda entry: entry._rawentry.tb_lineno is not None)
    if len(kept) != len(traceback):
        excinfo.traceback = kept


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test: skipped (or failed under --strict-backends) if it cannot run."""
    state = harness_state(request.config)
    name: str = request.param
    availability = state.availability(name)
    if not availability.available:
        message = f"backend {name!r} is not available: {availability.reason}"
        if state.strict:
            pytest.fail(f"{message} (--strict-backends)", pytrace=False)
        pytest.skip(message)
    backend = state.backend(name)
    for marker in request.node.iter_markers("requires"):
        for capability in marker.args:
            if not supports(backend, capability):
                pytest.skip(f"backend {name!r} does not declare capability {Capability(capability).value!r}")
    if state.device not in backend.devices:
        message = f"backend {name!r} does not run on {state.device} here (its devices: {', '.join(backend.devices)})"
        if state.strict:
            pytest.fail(f"{message} (--strict-backends)", pytrace=False)
        pytest.skip(message)
    return backend


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    return harness_state(request.config).device


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    return harness_state(request.config).seed


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded by --seed and the test's check and config, never its backend.

    Every backend sees the same data for the same check, so results compare across backends.
    """
    state = harness_state(request.config)
    callspec = getattr(request.node, "callspec", None)
    backend_name = callspec.params.get("backend", "") if callspec else ""
    config = config_id(callspec.id, backend_name) if callspec else ""
    key = zlib.crc32(f"{check_name(request.node)}[{config}]".encode())
    return np.random.default_rng([state.seed, key])


@pytest.fixture
def conformance(request: pytest.FixtureRequest) -> Checker:
    """Compare against the oracle; every measurement goes into the results file."""
    state = harness_state(request.config)
    callspec = getattr(request.node, "callspec", None)
    config = configuration(callspec.params, state.device) if callspec else {}
    return Checker(request, state, check_name(request.node), config)
