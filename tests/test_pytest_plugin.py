"""The pytest plugin, run the way users run it: pytest in a subprocess, real entry points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.eager import EagerBackend
from harness.contract.manager import BUILTIN_PLUGINS
from tests.helpers import EXAMPLE_BACKEND, ROOT, install_plugin

SUITES = ROOT / "suites"
SHAPES = SUITES / "test_forward_shapes.py"

UNAVAILABLE_PLUGIN = """
from harness import Availability, Capability, hookimpl

class Sleepy:
    name = "sleepy"
    version = "0"
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float32",)
    def availability(self):
        return Availability.missing("the sleepy runtime is not installed")
    def forward(self, spec, params, x, *, device, dtype):
        raise AssertionError("never called")

@hookimpl
def harness_backends():
    return [Sleepy()]
"""


def run(pytester: pytest.Pytester, site: Path | None, *args: str) -> pytest.RunResult:
    """Run pytest in a subprocess with eager as the only built-in backend, to keep it fast."""
    pytester._monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", ",".join(sorted(set(BUILTIN_PLUGINS) - {"eager"})))
    if site is not None:
        pytester._monkeypatch.setenv("PYTHONPATH", f"{site}:{ROOT}")
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"), *args
    )


def test_help_lists_options_with_defaults(pytester: pytest.Pytester) -> None:
    result = run(pytester, None, "--help")
    result.stdout.fnmatch_lines(
        [
            "netharness conformance and benchmarks:",
            "*--backend=NAME*",
            "*(default: all registered backends)*",
            "*--device=cpu|cuda*(default: cpu)*",
            "*--seed=INT*",
            "*--clock=wall|cpu*",
            "*--strict-backends*",
            "*--crash-budget=K*after K crashes or timeouts of one backend*",
        ]
    )


def test_unknown_backend_is_a_usage_error_listing_valid_names(pytester: pytest.Pytester) -> None:
    result = run(pytester, None, str(SHAPES), "--backend=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: unknown backend 'nope' for --backend; valid names: all, eager*"])


def test_a_clock_that_is_not_one_is_a_usage_error_naming_both(pytester: pytest.Pytester) -> None:
    result = run(pytester, None, str(SHAPES), "--clock=sundial")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --clock='sundial' is not a clock; valid: wall, cpu *"])


def test_the_cpu_clock_times_the_benchmarks_with_process_time(pytester: pytest.Pytester) -> None:
    """pytest-benchmark is handed the process's CPU clock, and each record names it."""
    pytester._monkeypatch.setenv("NETHARNESS_BENCH_SECONDS", "0.01")
    pytester._monkeypatch.setenv("NETHARNESS_PEAK_GFLOPS", "10")
    out = pytester.path / "bench.json"
    bench = ROOT / "suites" / "bench_net.py"
    result = run(
        pytester, None, str(bench), "--clock=cpu", "--benchmark-enable", f"--benchmark-json={out}",
        "-k", "forward and float32 and batch1", "-q",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-2000:]
    document = json.loads(out.read_text())
    [record] = document["benchmarks"]
    assert record["options"]["timer"] == "process_time"
    assert record["extra_info"]["clock"] == "cpu" and document["machine_info"]["netharness_clock"] == "cpu"
    assert record["extra_info"]["threads_source"] == "torch"  # eager reports none: torch's stand in
    assert "paired_s" not in record["extra_info"]  # eager is the baseline: nothing to pair it with


@pytest.mark.parametrize("option", ["--device=tpu", "--seed=-3", "--seed=x", "--backend="])
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, option: str) -> None:
    result = run(pytester, None, str(SHAPES), option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert len([line for line in result.stderr.lines if line.startswith("ERROR")]) == 1


def test_ids_read_well_and_seed_is_in_the_header(pytester: pytest.Pytester) -> None:
    result = run(pytester, None, str(SHAPES), "--backend=eager", "--seed=17", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        ["*test_output_shape[[]eager-float32-batch7[]]", "*test_output_shape[[]eager-float64-batch64[]]"]
    )
    header = run(pytester, None, str(SHAPES), "--backend=eager", "--seed=17", "--collect-only")
    header.stdout.fnmatch_lines(["netharness: seed=17 device=cpu*", "*backend eager (torch *): available"])


def test_unavailable_backend_is_skipped_with_reason_or_failed_when_strict(
    pytester: pytest.Pytester, fake_site: Path
) -> None:
    install_plugin(fake_site, "sleepy-dist", "sleepy_backend", UNAVAILABLE_PLUGIN, "sleepy")
    args = (str(SHAPES), "--backend=sleepy", "-k", "test_output_shape and batch1", "-rs")
    lenient = run(pytester, fake_site, *args)
    assert lenient.ret == 0
    lenient.stdout.fnmatch_lines(["*backend 'sleepy' is not available: the sleepy runtime is not installed*"])
    strict = run(pytester, fake_site, *args, "--strict-backends")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*not available: the sleepy runtime is not installed (--strict-backends)*"])


def test_plugin_that_fails_to_import_is_reported_and_others_run(pytester: pytest.Pytester, fake_site: Path) -> None:
    install_plugin(fake_site, "broken-dist", "broken_backend", "import no_such_runtime\n", "broken")
    args = (str(SHAPES), str(SUITES / "test_plugins.py"), "--backend=eager", "-k", "batch1 or plugin", "-rs")
    lenient = run(pytester, fake_site, *args)
    lenient.stdout.fnmatch_lines(["*plugin 'broken' failed: ModuleNotFoundError: No module named 'no_such_runtime'*"])
    collected = [line for line in run(pytester, fake_site, *args, "--collect-only", "-q").stdout.lines if "::" in line]
    assert "test_plugin_loaded[broken]" in " ".join(collected) and any("[eager-" in line for line in collected)
    lenient.assert_outcomes(passed=len(collected) - 1, skipped=1)  # all of eager's, and the broken plugin skipped
    assert lenient.ret == 0
    strict = run(pytester, fake_site, *args, "--strict-backends")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*test_plugin_loaded[[]broken[]]*", "*No module named*(--strict-backends)"])
    assert strict.parseoutcomes()["passed"] >= 2  # eager still ran


EXPECTED_SKIPS = ("does not declare capability", "has no prepare()", "does not declare precision")


def test_third_party_backend_from_the_docs_passes_the_shape_suite(
    pytester: pytest.Pytester, fake_site: Path, tmp_path: Path
) -> None:
    """The exact example of docs/writing-a-backend.md, found through its entry point."""
    source = (EXAMPLE_BACKEND / "netharness_example_backend.py").read_text()
    entry = (EXAMPLE_BACKEND / "pyproject.toml").read_text().split('[project.entry-points."netharness.backends"]')[1]
    entry_name, module = (part.strip().strip('"') for part in entry.strip().splitlines()[0].split("="))
    install_plugin(fake_site, "netharness-example-backend", module, source, entry_name)
    results = tmp_path / "results.jsonl"
    result = run(
        pytester,
        fake_site,
        str(SUITES),
        "--backend=functional",
        "--strict-backends",
        f"--conformance-results={results}",
        "-rs",
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*backend functional (torch *): available*"])
    records = [json.loads(line) for line in results.read_text().splitlines()]
    checks = [r for r in records if r["kind"] == "check"]
    assert {r["backend"] for r in checks} == {"functional"}
    assert any(r["outcome"] == "passed" and r["check"] == "output_shape" for r in checks)
    skipped = [r for r in checks if r["outcome"] == "skipped"]
    unexpected = [r["reason"] for r in skipped if not any(why in r["reason"] for why in EXPECTED_SKIPS)]
    assert not unexpected, unexpected


def test_results_file_has_one_record_per_test(pytester: pytest.Pytester, tmp_path: Path) -> None:
    results = tmp_path / "out" / "c.jsonl"
    result = run(
        pytester,
        None,
        str(SHAPES),
        "--backend=eager",
        "-k",
        "test_output_shape and not variants",
        f"--conformance-results={results}",
    )
    assert result.ret == 0
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert lines[0]["kind"] == "run_start" and lines[0]["seed"] == 0
    assert lines[-1]["kind"] == "run_end" and lines[-1]["interrupted"] is False
    checks = [r for r in lines if r["kind"] == "check"]
    assert sorted(r["config"] for r in checks) == sorted(
        f"{d}-batch{b}" for d in EagerBackend.dtypes for b in (1, 2, 7, 64)
    )


def test_example_backend_docs_stay_in_sync() -> None:
    doc = (ROOT / "docs" / "writing-a-backend.md").read_text()
    toml = (EXAMPLE_BACKEND / "pyproject.toml").read_text()
    assert '[project.entry-points."netharness.backends"]\nfunctional = "netharness_example_backend"' in doc
    assert '[project.entry-points."netharness.backends"]\nfunctional = "netharness_example_backend"' in toml


DEVIATING_PLUGIN = """
from harness import KnownDeviation, ToleranceOverride, hookimpl
from backends.eager import EagerBackend

@hookimpl
def harness_known_deviations(backend):
    if backend.name != "eager":
        return []
    return [KnownDeviation(check="forward_values", reason="stale entry: it passes", dtype="float64")]

@hookimpl
def harness_tolerance_overrides(backend):
    if backend.name != "eager":
        return []
    return [ToleranceOverride(check="forward_values", rtol=1e-2, atol=1e-3, dtype="float32", reason="uses TF32")]
"""


def test_known_deviation_that_passes_fails_and_overrides_are_recorded(
    pytester: pytest.Pytester, fake_site: Path, tmp_path: Path
) -> None:
    install_plugin(fake_site, "deviating-dist", "deviating_plugin", DEVIATING_PLUGIN, "deviating")
    results = tmp_path / "r.jsonl"
    args = (str(SUITES / "test_forward_values.py"), "--backend=eager", "-k", "test_forward_values and batch1")
    result = run(pytester, fake_site, *args, f"--conformance-results={results}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*XPASS(strict)*known deviation: stale entry: it passes (declared by plugin*"])
    records = {r["config"]: r for r in map(json.loads, results.read_text().splitlines()) if r["kind"] == "check"}
    assert records["float64-batch1"]["outcome"] == "failed"
    assert records["float32-batch1"]["outcome"] == "passed"
    # The deviating plugin declared these for eager, which another plugin owns: the reason says who.
    declared = "(declared by plugin 'deviating', which does not own 'eager')"
    assert records["float32-batch1"]["tolerance_reason"] == f"uses TF32 {declared}"
    assert records["float32-batch1"]["rtol"] == 1e-2


def test_conformance_runs_in_parallel_under_xdist_with_every_record(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Workers send their measurements to the controller, which alone writes the results file."""
    results = tmp_path / "xdist.jsonl"
    suite = str(SUITES / "test_activations.py")
    result = run(pytester, None, suite, "--backend=eager", "-n", "2", f"--conformance-results={results}")
    assert result.ret == 0, result.stdout.str()
    checks = [r for r in map(json.loads, results.read_text().splitlines()) if r["kind"] == "check"]
    assert len(checks) == result.parseoutcomes()["passed"]
    values = [r for r in checks if r["check"] == "activation_values"]
    assert values and all(r["headroom"] is not None and r["measurements"] for r in values)


CRASHING_PLUGIN = """
from harness import Availability, Capability, hookimpl

class Broken:
    name = "broken"
    version = "0"
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float32",)
    def availability(self):
        return Availability.ok()
    def forward(self, spec, params, x, *, device, dtype):
        spec.check_input(x, dtype)
        raise ZeroDivisionError("a bug inside the backend")

@hookimpl
def harness_backends():
    return [Broken()]
"""


def test_an_exception_inside_a_backend_ends_with_the_command_that_reproduces_it(
    pytester: pytest.Pytester, fake_site: Path
) -> None:
    install_plugin(fake_site, "broken-backend", "broken_backend", CRASHING_PLUGIN)
    test = "test_output_shape[broken-float32-batch1]"
    result = run(pytester, fake_site, str(SHAPES), "--backend=broken", "--seed=3", "-k", test)
    result.assert_outcomes(failed=1)
    lines = result.stdout.str().splitlines()
    error = lines.index("E       ZeroDivisionError: a bug inside the backend")
    command = f"pytest 'suites/test_forward_shapes.py::{test}' --backend=broken --device=cpu --seed=3"
    assert command in lines[error:], "\n".join(lines)
