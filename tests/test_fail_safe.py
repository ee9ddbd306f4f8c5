"""Plugins that fail safely: a broken plugin or backend is marked, and the others still run.

Every case runs the real suites in a pytest subprocess, with ``eager`` as the only built-in
backend and the broken plugin found through a real ``netharness.backends`` entry point. The
runs are shared per module (each costs seconds) and every case reads the run it needs:

- plugin loading (a module that fails to import, a hook that raises, two plugins that
  register the same name): the failure fails ``test_plugin_loaded[<plugin>]`` under
  ``--strict-backends`` (exit 1) and is a skip without it (exit 0);
- bad outputs (wrong shape, wrong dtype, NaN, noise, mutated inputs): the check that catches
  each fails its records, whatever ``--strict-backends`` says (exit 1 both ways);
- a hang: ``--timeout`` fails the hung test and the run goes on.

Nothing here bets on the wall clock beyond what a timeout test must: the hung test sleeps
far past its timeout, and the timeout leaves eager's own quick tests (well under a second)
ample room on a loaded machine.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, builtins_but, install_plugin

# The module fixture runs five pytest subprocesses at once: give it room on a busy machine.
pytestmark = pytest.mark.timeout(900)

SUITES = ROOT / "suites"
FORWARD_FILES = [SUITES / "test_forward_shapes.py", SUITES / "test_forward_values.py", SUITES / "test_hygiene.py"]

IMPORT_FAILS = "import no_such_module\n"

HOOK_RAISES = """
from harness import hookimpl

@hookimpl
def harness_backends():
    raise RuntimeError("the raiser runtime exploded")
"""

TWIN = """
from backends.eager import EagerBackend
from harness import hookimpl

class Twin(EagerBackend):
    name = "twin"

    def __init__(self):
        super().__init__()
        self.version = "from {plugin}"

@hookimpl
def harness_backends():
    return [Twin()]
"""

BAD_OUTPUTS = """
import numpy as np

from backends.eager import EagerBackend
from harness import hookimpl

class WrongShape(EagerBackend):
    name = "wrongshape"

    def forward(self, spec, params, x, *, device, dtype):
        return super().forward(spec, params, x, device=device, dtype=dtype)[:, :-1]

class WrongDtype(EagerBackend):
    name = "wrongdtype"

    def forward(self, spec, params, x, *, device, dtype):
        return super().forward(spec, params, x, device=device, dtype=dtype).astype(np.float64)

class NaNOutput(EagerBackend):
    name = "nanout"

    def forward(self, spec, params, x, *, device, dtype):
        out = super().forward(spec, params, x, device=device, dtype=dtype)
        out[0, 0] = np.nan
        return out

class Noisy(EagerBackend):
    name = "noisy"

    def forward(self, spec, params, x, *, device, dtype):
        out = super().forward(spec, params, x, device=device, dtype=dtype)
        return out + (1e-3 * np.random.default_rng().standard_normal(out.shape)).astype(out.dtype)

class Mutating(EagerBackend):
    name = "mutating"

    def forward(self, spec, params, x, *, device, dtype):
        out = super().forward(spec, params, x, device=device, dtype=dtype)
        x[...] = 0
        next(iter(params.values()))[...] += 1
        return out

@hookimpl
def harness_backends():
    return [WrongShape(), WrongDtype(), NaNOutput(), Noisy(), Mutating()]
"""

HANG_SECONDS = 60
# pytest-timeout's clock covers each test's setup, call and teardown, and eager's tests in the run
# are under it too (0.3-1.1 s each, seen under load): 3 s left them, and the hung test's setup, racing it.
HANG_TIMEOUT = 10.0
HANGS = f"""
import time

from backends.eager import EagerBackend
from harness import hookimpl

class Hung(EagerBackend):
    name = "hung"
    dtypes = ("float32",)

    def forward(self, spec, params, x, *, device, dtype):
        time.sleep({HANG_SECONDS})
        return super().forward(spec, params, x, device=device, dtype=dtype)

@hookimpl
def harness_backends():
    return [Hung()]
"""


@dataclass
class Run:
    """One finished pytest subprocess and its conformance results file."""

    returncode: int
    stdout: str
    stderr: str
    results: Path

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.results.read_text().splitlines()]

    def checks(self, backend: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["kind"] == "check" and r["backend"] == backend]

    def failed(self) -> set[str]:
        """The short summary's FAILED test ids, relative to suites/."""
        lines = self.stdout.split("short test summary info")[-1].splitlines()
        return {line.split()[1].split("suites/")[-1] for line in lines if line.startswith("FAILED ")}

    def start(self) -> dict[str, Any]:
        first = self.records()[0]
        assert first["kind"] == "run_start"
        return first


def start_pytest(workdir: Path, name: str, site: Path, *args: str | Path) -> tuple[subprocess.Popen[str], Path]:
    """pytest in a subprocess, as users run it, with eager the only built-in backend."""
    results = workdir / f"{name}.jsonl"
    env = {**os.environ, "NETHARNESS_DISABLE_PLUGINS": builtins_but("eager"), "PYTHONPATH": f"{site}:{ROOT}"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={ROOT}"]
    command += ["-c", str(ROOT / "pyproject.toml"), f"--conformance-results={results}", "-rfEs", *map(str, args)]
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, results


def make_site(workdir: Path, name: str, plugins: dict[str, str]) -> Path:
    site = workdir / name
    site.mkdir()
    for plugin, source in plugins.items():
        install_plugin(site, f"{plugin}-dist", f"{plugin}_backend", source, plugin)
    return site


LOAD_PLUGINS = {
    "broken": IMPORT_FAILS,
    "raiser": HOOK_RAISES,
    "twin_a": TWIN.format(plugin="twin_a"),
    "twin_b": TWIN.format(plugin="twin_b"),
}
LOAD_ARGS = (
    SUITES / "test_plugins.py",
    SUITES / "test_forward_shapes.py",
    "-k",
    "plugin_loaded or (test_output_shape and batch1 and not variants)",
)
# Float32 only, and inputs_not_mutated (slow: it runs gradients and a train step) only where it matters.
OUTPUTS_ARGS = (
    *FORWARD_FILES,
    "-k",
    "float32 and ((test_output_shape and batch7 and not variants) or (test_forward_values and batch1 and not variants)"
    " or forward_output_is_finite or forward_deterministic or (inputs_not_mutated and mutating))",
)
HANG_ARGS = (
    SUITES / "test_forward_shapes.py",
    "-k",
    "test_output_shape and batch1 and not variants",
    "--backend=hung,eager",  # hung first, so eager's tests run after the hang
    f"--timeout={HANG_TIMEOUT:g}",
    "--strict-backends",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every run of this module, started together: each one mostly waits on imports and collection."""
    workdir = tmp_path_factory.mktemp("fail-safe")
    load = make_site(workdir, "load-site", LOAD_PLUGINS)
    outputs = make_site(workdir, "outputs-site", {"bad_outputs": BAD_OUTPUTS})
    hang = make_site(workdir, "hang-site", {"hung": HANGS})
    started = {
        "load_strict": start_pytest(workdir, "load_strict", load, *LOAD_ARGS, "--strict-backends"),
        "load_lenient": start_pytest(workdir, "load_lenient", load, *LOAD_ARGS),
        "outputs_strict": start_pytest(workdir, "outputs_strict", outputs, *OUTPUTS_ARGS, "--strict-backends"),
        "outputs_lenient": start_pytest(workdir, "outputs_lenient", outputs, *OUTPUTS_ARGS),
        "hang": start_pytest(workdir, "hang", hang, *HANG_ARGS),
    }
    finished = {}
    try:
        for name, (process, results) in started.items():
            stdout, stderr = process.communicate()  # the module's timeout bounds a run that never ends
            finished[name] = Run(process.returncode, stdout, stderr, results)
    finally:
        for process, _ in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return finished


@pytest.fixture(scope="module")
def load_strict(runs: dict[str, Run]) -> Run:
    return runs["load_strict"]


@pytest.fixture(scope="module")
def load_lenient(runs: dict[str, Run]) -> Run:
    return runs["load_lenient"]


@pytest.fixture(scope="module")
def outputs_strict(runs: dict[str, Run]) -> Run:
    return runs["outputs_strict"]


@pytest.fixture(scope="module")
def outputs_lenient(runs: dict[str, Run]) -> Run:
    return runs["outputs_lenient"]


@pytest.fixture(scope="module")
def hang_run(runs: dict[str, Run]) -> Run:
    return runs["hang"]


def assert_all_passed(run: Run, backend: str = "eager") -> None:
    checks = run.checks(backend)
    assert checks, f"no {backend} records:\n{run.stdout}"
    assert {r["outcome"] for r in checks} == {"passed"}, [r for r in checks if r["outcome"] != "passed"]
    assert re.search(rf"^  backend {backend} \(.*\): available$", run.stdout, re.MULTILINE), run.stdout


# -- plugins that fail to load --------------------------------------------------------------


LOAD_CASES = [
    pytest.param("broken", "ModuleNotFoundError: No module named 'no_such_module'", id="import-fails"),
    pytest.param("raiser", "harness_backends raised RuntimeError: the raiser runtime exploded", id="hook-raises"),
]


@pytest.mark.parametrize(("plugin", "cause"), LOAD_CASES)
def test_plugin_failure_is_marked_and_others_run(load_strict: Run, load_lenient: Run, plugin: str, cause: str) -> None:
    failure = f"plugin {plugin!r} failed: {cause}"
    # Strict: test_plugin_loaded[plugin] fails naming the cause; exit 1.
    assert load_strict.returncode == pytest.ExitCode.TESTS_FAILED, load_strict.stdout
    assert f"test_plugins.py::test_plugin_loaded[{plugin}]" in load_strict.failed()
    assert f"\n{failure} (--strict-backends)\n" in load_strict.stdout
    assert f"  {failure}" in load_strict.stdout  # the header
    assert failure in load_strict.start()["plugin_failures"]
    assert_all_passed(load_strict)
    # Lenient: the same failure is a skip with its cause; exit 0.
    assert load_lenient.returncode == pytest.ExitCode.OK, load_lenient.stdout
    assert failure in load_lenient.stdout.split("short test summary info")[1]
    assert failure in load_lenient.start()["plugin_failures"]
    assert_all_passed(load_lenient)
    assert "Traceback" not in load_strict.stdout + load_strict.stderr


def test_duplicate_backend_name_names_both_plugins_and_the_first_still_runs(
    load_strict: Run, load_lenient: Run
) -> None:
    # Entry points load in directory order, which the file system decides: read which came first.
    [failure] = [f for f in load_strict.start()["plugin_failures"] if "registered twice" in f]
    first, second = (
        ("twin_a", "twin_b") if "by plugin 'twin_a' and by plugin 'twin_b'" in failure else ("twin_b", "twin_a")
    )
    assert failure == (
        f"plugin {second!r} failed: backend name 'twin' is registered twice: by plugin {first!r} and by plugin"
        f" {second!r}; disable one with NETHARNESS_DISABLE_PLUGINS={second}"
    )
    assert f"test_plugins.py::test_plugin_loaded[{second}]" in load_strict.failed()
    assert f"\n{failure} (--strict-backends)\n" in load_strict.stdout
    assert f"test_plugins.py::test_plugin_loaded[{first}]" not in load_strict.failed()
    # The first registration is the one that runs, and it passes.
    assert f"backend twin (from {first}): available" in load_strict.stdout
    assert load_strict.start()["backends"]["twin"]["version"] == f"from {first}"
    assert_all_passed(load_strict, "twin")
    assert_all_passed(load_strict)
    assert load_strict.returncode == pytest.ExitCode.TESTS_FAILED
    assert load_lenient.returncode == pytest.ExitCode.OK


# -- backends whose outputs are wrong ----------------------------------------------------------


OUTPUT_CASES = [
    pytest.param(
        "wrongshape",
        "output_shape",
        "test_forward_shapes.py",
        "forward returned shape (7, 9), the spec says (7, 10)",
        id="shape",
    ),
    pytest.param(
        "wrongdtype", "output_shape", "test_forward_shapes.py", "forward returned float64 for float32 input", id="dtype"
    ),
    pytest.param("nanout", "forward_output_is_finite", "test_hygiene.py", "1/70 non-finite logits", id="nan"),
    pytest.param("noisy", "forward_deterministic", "test_hygiene.py", "forward is not deterministic", id="noise"),
    pytest.param(
        "mutating",
        "inputs_not_mutated",
        "test_hygiene.py",
        "the backend modified its inputs: parameters ['conv1.weight'], images True",
        id="mutates-inputs",
    ),
]


@pytest.mark.parametrize(("broken", "check", "suite", "fragment"), OUTPUT_CASES)
def test_backend_with_bad_output_is_caught_and_others_pass(
    outputs_strict: Run, outputs_lenient: Run, broken: str, check: str, suite: str, fragment: str
) -> None:
    for run in (outputs_strict, outputs_lenient):
        [record] = [r for r in run.checks(broken) if r["check"] == check]
        assert record["outcome"] == "failed"
        assert fragment in record["reason"], record["reason"]
        assert any(test.startswith(f"{suite}::test_{check}[{broken}-float32") for test in run.failed())
        assert fragment in run.stdout
        assert_all_passed(run)
        # A failing check fails the run whether or not backends are strict.
        assert run.returncode == pytest.ExitCode.TESTS_FAILED
    assert outputs_strict.start()["backends"][broken]["version"].startswith("torch")


def test_every_broken_backend_is_marked_failed_in_the_report(outputs_strict: Run, load_strict: Run) -> None:
    out = outputs_strict.results.parent / "report"
    script = Path(sys.executable).with_name("netharness")
    done = subprocess.run(
        [str(script), "report", str(outputs_strict.results), str(load_strict.results), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = (out / "summary.md").read_text()
    for backend in ("wrongshape", "wrongdtype", "nanout", "noisy", "mutating"):
        row = next(line for line in summary.splitlines() if line.startswith(f"| {backend} |"))
        assert int(row.split("|")[3]) > 0, row  # the failed column
        assert f"- **{backend}** `" in summary
    eager = next(line for line in summary.splitlines() if line.startswith("| eager |"))
    assert [int(cell) for cell in eager.split("|")[2:5]][1:] == [0, 0], eager  # no failures, no errors
    html = (out / "report.html").read_text()
    assert "No module named &#39;no_such_module&#39;" in html or "No module named 'no_such_module'" in html
    assert "the raiser runtime exploded" in html


def test_nan_output_is_reported_as_an_infinite_error(outputs_strict: Run) -> None:
    [record] = [r for r in outputs_strict.checks("nanout") if r["check"] == "forward_values"]
    assert record["outcome"] == "failed" and record["headroom"] == 0.0
    assert math.isinf(record["max_abs_error"]) or math.isnan(record["max_abs_error"]), record["reason"]


# -- a backend that hangs ---------------------------------------------------------------------


def test_hung_backend_times_out_and_others_still_run(hang_run: Run) -> None:
    [record] = hang_run.checks("hung")
    assert record["outcome"] == "failed"
    # pytest-timeout's own message: the timeout stopped it. The call's duration is the timeout less
    # the setup's share, whatever that was on this machine, but always short of the hang itself.
    assert f"Timeout (>{HANG_TIMEOUT}s)" in record["reason"], record["reason"]
    assert record["duration_s"] < HANG_SECONDS
    assert hang_run.failed() == {"test_forward_shapes.py::test_output_shape[hung-float32-batch1]"}
    assert "Failed: Timeout" in hang_run.stdout
    assert_all_passed(hang_run)
    checks = [r for r in hang_run.records() if r["kind"] == "check"]
    backends = [r["backend"] for r in checks]
    assert backends[0] == "hung" and set(backends[1:]) == {"eager"}, backends  # eager ran after the hang
    assert hang_run.returncode == pytest.ExitCode.TESTS_FAILED
    assert hang_run.records()[-1]["kind"] == "run_end"


def test_default_timeout_is_300s_and_the_command_line_overrides_it(load_strict: Run, hang_run: Run) -> None:
    assert "timeout: 300.0s" in load_strict.stdout  # pyproject's [tool.pytest.ini_options] timeout
    assert f"timeout: {HANG_TIMEOUT}s" in hang_run.stdout
    assert "timeout: 300.0s" not in hang_run.stdout
