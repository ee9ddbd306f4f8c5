"""The pytest plugin: backend selection, parametrization, skips, tolerances and results.

Registered through the ``pytest11`` entry point, so ``pytest suites --backend=eager`` works
in any directory once netharness is installed.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.backend import Backend, Capability, KnownDeviation, ToleranceOverride, supports
from harness.bench import measure_peak_gflops, thread_count
from harness.conformance import ConformanceError, compare, first_divergent_layer
from harness.errors import UsageError
from harness.manager import BackendRegistry, HarnessPluginManager, build_plugin_manager, collect_backends
from harness.results import CheckRecord, Measurement, ResultsWriter, git_commit
from harness.tolerances import Tolerance, default_tolerance

DEVICES = ("cpu", "cuda")
DEFAULT_RESULTS = ".netharness/conformance.jsonl"
STATE_KEY = pytest.StashKey["HarnessState"]()
META = "netharness"


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
        "--strict-backends",
        action="store_true",
        default=False,
        help="fail, instead of skip, backends that are unavailable or whose plugin failed to load (default: off)",
    )
    group.addoption(
        "--conformance-results",
        default=DEFAULT_RESULTS,
        metavar="PATH",
        help=f"JSON-lines file of per-check results, errors and headroom (default: {DEFAULT_RESULTS})",
    )


class HarnessState:
    """What one pytest session knows about backends: the registry, the selection, the options."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.device = _parse_device(config.getoption("device"))
        self.seed = _parse_seed(config.getoption("seed"))
        self.strict: bool = config.getoption("strict_backends")
        self.results_path = Path(config.getoption("conformance_results"))
        self.pm: HarnessPluginManager = build_plugin_manager()
        self.registry: BackendRegistry = collect_backends(self.pm)
        try:
            self.selected = self.registry.select(config.getoption("backend"), strict=self.strict)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        self._availability: dict[str, Any] = {}
        self._deviations: dict[str, list[KnownDeviation]] = {}
        self._overrides: dict[str, list[ToleranceOverride]] = {}
        self.writer: ResultsWriter | None = None
        if not hasattr(config, "workerinput"):
            _check_writable(self.results_path)

    def backend(self, name: str) -> Backend:
        return self.registry.backends[name]

    def availability(self, name: str) -> Any:
        if name not in self._availability:
            self._availability[name] = self.backend(name).availability()
        return self._availability[name]

    def known_deviations(self, name: str) -> list[KnownDeviation]:
        if name not in self._deviations:
            results = self.pm.hook.harness_known_deviations(backend=self.backend(name))
            self._deviations[name] = [d for group in results for d in (group or ())]
        return self._deviations[name]

    def tolerance_for(self, name: str, check: str, dtype: str) -> Tolerance:
        """The default tolerance, widened by any matching override; the widest wins."""
        if name not in self._overrides:
            results = self.pm.hook.harness_tolerance_overrides(backend=self.backend(name))
            self._overrides[name] = [o for group in results for o in (group or ())]
        tolerance = default_tolerance(check, dtype)
        for o in self._overrides[name]:
            if o.check == check and o.dtype in (None, dtype) and (o.rtol, o.atol) > (tolerance.rtol, tolerance.atol):
                tolerance = Tolerance(max(o.rtol, tolerance.rtol), max(o.atol, tolerance.atol), o.reason)
        return tolerance

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = ResultsWriter(self.results_path)
            self.writer.start(
                seed=self.seed,
                device=self.device,
                backends={n: _describe(self.backend(n)) for n in self.selected},
                plugin_failures=[str(f) for f in self.registry.failures],
                commit=git_commit(),
            )
        self.writer.write(record)


def _describe(backend: Backend) -> dict[str, Any]:
    return {"version": backend.version, "capabilities": sorted(c.value for c in backend.capabilities)}


def _check_writable(path: Path) -> None:
    """Fail at start-up, not mid-run, if the results file cannot be written (nothing is truncated)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise pytest.UsageError(f"cannot write --conformance-results {path}: {exc.strerror or exc}") from None


def _parse_device(value: str) -> str:
    if value not in DEVICES:
        raise pytest.UsageError(f"unknown device {value!r} for --device; valid devices: {', '.join(DEVICES)}")
    return value


def _parse_seed(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise pytest.UsageError(f"--seed must be a non-negative integer, got {value!r}") from None
    if seed < 0:
        raise pytest.UsageError(f"--seed must be a non-negative integer, got {value!r}")
    return seed


def harness_state(config: pytest.Config) -> HarnessState:
    return config.stash[STATE_KEY]


# -- session ------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*capabilities): skip backends that do not declare these capabilities")
    config.addinivalue_line("markers", "check(name): the conformance check this test implements")
    if config.option.help or getattr(config.option, "version", False):
        return
    state = config.stash[STATE_KEY] = HarnessState(config)
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ResultsRecorder(state), "netharness-results")


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = harness_state(config)
    lines = [f"netharness: seed={state.seed} device={state.device} results={state.results_path}"]
    for name in state.selected:
        backend, availability = state.backend(name), state.availability(name)
        status = "available" if availability.available else f"UNAVAILABLE: {availability.reason}"
        lines.append(f"  backend {name} ({backend.version}): {status}")
    lines.extend(f"  {failure}" for failure in state.registry.failures)
    return lines


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None and state.writer is not None:
        state.writer.finish(exitstatus=int(exitstatus), interrupted=int(exitstatus) == 2)


PEAK_KEY = pytest.StashKey[float]()


def machine_peak_gflops(config: pytest.Config) -> float:
    """This machine's float32 matmul peak, measured once per run (only when benchmarks time)."""
    if PEAK_KEY not in config.stash:
        config.stash[PEAK_KEY] = measure_peak_gflops()
    return config.stash[PEAK_KEY]


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Store the peak, thread count and commit with pytest-benchmark's machine info."""
    machine_info["netharness_peak_gflops"] = machine_peak_gflops(config)
    machine_info["netharness_threads"] = thread_count()
    machine_info["netharness_commit"] = git_commit()


# -- parametrization ------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash.get(STATE_KEY, None)
    if state is None:
        return
    if "plugin_name" in metafunc.fixturenames:
        names = sorted({*state.registry.owners.values(), *(f.plugin for f in state.registry.failures)})
        metafunc.parametrize("plugin_name", names)
    if "backend" not in metafunc.fixturenames:
        return
    if not state.selected:
        raise pytest.UsageError("no backend selected: every selected plugin failed to load (see the header)")
    if "dtype" in metafunc.fixturenames:
        pairs = [pytest.param(n, d, id=f"{n}-{d}") for n in state.selected for d in state.backend(n).dtypes]
        metafunc.parametrize(("backend", "dtype"), pairs, indirect=["backend"])
    else:
        metafunc.parametrize("backend", state.selected, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return
    for item in items:
        params = getattr(item, "callspec", None)
        if params is None or "backend" not in params.params:
            continue
        name, dtype = params.params["backend"], params.params.get("dtype", "")
        check = check_name(item)
        item.user_properties.append(
            (META, {"backend": name, "dtype": dtype, "check": check, "config": _config_id(params.id, name)})
        )
        for deviation in state.known_deviations(name):
            if deviation.check == check and deviation.dtype in (None, dtype):
                item.add_marker(pytest.mark.xfail(reason=f"known deviation: {deviation.reason}", strict=True))


def check_name(item: pytest.Item) -> str:
    marker = item.get_closest_marker("check")
    if marker is not None:
        return str(marker.args[0])
    return getattr(item, "originalname", item.name).removeprefix("test_")


def _config_id(callspec_id: str, backend: str) -> str:
    parts = [p for p in callspec_id.split("-") if p != backend]
    return "-".join(parts) or "default"


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
        pytest.skip(f"backend {name!r} does not run on {state.device} here (its devices: {', '.join(backend.devices)})")
    return backend


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    return harness_state(request.config).device


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    return harness_state(request.config).seed


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded by --seed and the test's check and config, not its backend.

    Every backend sees the same data for the same check, so results compare across backends.
    """
    state = harness_state(request.config)
    callspec = getattr(request.node, "callspec", None)
    backend_name = callspec.params.get("backend", "") if callspec else ""
    config = _config_id(callspec.id, backend_name) if callspec else ""
    key = zlib.crc32(f"{check_name(request.node)}[{config}]".encode())
    return np.random.default_rng([state.seed, key])


class Checker:
    """Compares a backend's arrays with the reference and remembers every measurement."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.state = harness_state(request.config)
        # Shared with the test's report, which pytest builds right after the call.
        self._recorded: list[dict[str, Any]] = []
        request.node.user_properties.append((f"{META}.measurements", self._recorded))
        callspec = getattr(request.node, "callspec", None)
        self.backend_name: str = callspec.params.get("backend", "") if callspec else ""
        self.dtype: str = callspec.params.get("dtype", "float64") if callspec else "float64"
        self.check = check_name(request.node)

    def tolerance(self, check: str | None = None, dtype: str | None = None) -> Tolerance:
        return self.state.tolerance_for(self.backend_name, check or self.check, dtype or self.dtype)

    def close(
        self,
        what: str,
        actual: np.ndarray,
        expected: np.ndarray,
        *,
        tolerance: Tolerance | None = None,
        layers: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None,
    ) -> Measurement:
        """Assert ``actual`` matches ``expected``; ``layers`` = (backend's, reference's) intermediates."""
        tol = tolerance or self.tolerance()
        measurement, failure = compare(what, actual, expected, tol)
        self.record(measurement)
        if failure:
            if layers is not None:
                divergent = first_divergent_layer(layers[0], layers[1], tol)
                failure += f"; first divergent layer: {divergent or 'none (only the output differs)'}"
            raise ConformanceError(f"{failure}\n  reproduce: {self.reproduce()}")
        return measurement

    def record(self, measurement: Measurement) -> None:
        # Plain Python numbers only: under xdist the report crosses a process boundary.
        self._recorded.append({k: v.item() if isinstance(v, np.generic) else v for k, v in asdict(measurement).items()})

    def fail(self, message: str) -> None:
        raise ConformanceError(f"{message}\n  reproduce: {self.reproduce()}")

    def reproduce(self) -> str:
        node = self.request.node
        return (
            f"pytest '{node.nodeid}' --backend={self.backend_name} --device={self.state.device}"
            f" --seed={self.state.seed}"
        )


@pytest.fixture
def conformance(request: pytest.FixtureRequest) -> Checker:
    """Compare against the oracle; every measurement goes into the results file."""
    return Checker(request)


# -- results ----------------------------------------------------------------------------------


class ResultsRecorder:
    """Writes one record per backend x check x config as each test finishes.

    Registered on the controller only: under xdist, workers forward their reports here.
    """

    def __init__(self, state: HarnessState) -> None:
        self.state = state

    @pytest.hookimpl(tryfirst=True)  # written before the terminal shows the outcome
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props: dict[str, Any] = dict(report.user_properties)
        meta = props.get(META)
        if meta is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        record = CheckRecord(
            backend=meta["backend"],
            check=meta["check"],
            config=meta["config"],
            dtype=meta["dtype"],
            device=self.state.device,
            outcome=_outcome(report),
            test_id=report.nodeid,
            seed=self.state.seed,
            reason=_reason(report),
            duration_s=report.duration,
            measurements=[Measurement(**m) for m in props.get(f"{META}.measurements", [])],
        )
        self.state.write(record.to_json())


def _outcome(report: pytest.TestReport) -> str:
    xfail = hasattr(report, "wasxfail")
    if report.passed:
        return "xpassed" if xfail else "passed"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "error" if report.when == "setup" else "failed"


def _reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.failed:
        text = report.longreprtext.strip().splitlines()
        errors = [line for line in text if line.startswith("E ")]
        return (errors[0][1:].strip() if errors else (text[-1] if text else ""))[:500]
    return ""
