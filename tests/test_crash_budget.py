"""The crash budget: a backend that keeps crashing or hanging is stopped, and the run goes on.

The backends are plugins in a throw-away site directory (real entry-point discovery),
computing with the oracle so each test is fast; the built-in backends are disabled. Each
run is a real subprocess run: ``netharness run``, the supervisor, or plain pytest.

A crash is ``os.kill(os.getpid(), signal.SIGSEGV)``. A hang sleeps far past ``--timeout``
(pytest-timeout's signal method then fails the test); the oracle's own tests take
milliseconds, so the timeout leaves them ample room on a loaded machine. Nothing else here
depends on the wall clock: every count is of records and processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.budget import CrashBudget, Incident, not_run_record, timeout_incident
from harness.commands.cli import build_parser, main
from harness.contract.manager import BUILTIN_PLUGINS
from harness.results import CheckRecord, run_start_record
from harness.running.supervisor import run_step
from reports.load import load_results
from reports.model import report_data
from reports.verdicts import verdict_line, verdicts
from tests.helpers import install_plugin

NETHARNESS = Path(sys.executable).with_name("netharness")
BUILTINS_OFF = ",".join(BUILTIN_PLUGINS)
HANG_SECONDS = 600
HANG_TIMEOUT = 10.0

PLUGIN = """
import json, os, signal, sys, time
from pathlib import Path
from harness import Availability, Capability, hookimpl, oracle

if os.environ.get("NETHARNESS_SUPERVISED") == "1":  # one line per pytest process the supervisor starts
    with open(os.environ["CHILD_LOG"], "a") as log:
        log.write(json.dumps(sys.argv) + "\\n")


def crash():
    os.kill(os.getpid(), signal.SIGSEGV)


def first_time(name):
    \"\"\"True the first time in this whole test (a marker file outlives each process).\"\"\"
    marker = Path(os.environ["MARKERS"]) / name
    if marker.exists():
        return False
    marker.write_text("")
    return True


class OracleBackend:
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    version = "oracle"

    def __init__(self, name, dtypes=("float64",)):
        self.name, self.dtypes = name, dtypes

    def availability(self):
        return Availability.ok()

    def forward(self, spec, params, x, *, device, dtype):
        self.misbehave()
        return oracle.forward(spec, params, x).astype(dtype)

    def misbehave(self):
        pass


class Bad(OracleBackend):
    \"\"\"Crashes on every test.\"\"\"

    def misbehave(self):
        crash()


class Late(OracleBackend):
    \"\"\"Crashes on its first conformance test, then passes them; crashes on every benchmark.\"\"\"

    def misbehave(self):
        if os.environ.get("NETHARNESS_BENCH_SECONDS") or first_time("late"):
            crash()


class Hung(OracleBackend):
    \"\"\"Crashes on its first test (unless told it already did), then hangs on every one.\"\"\"

    def misbehave(self):
        if first_time("hung-crashed"):
            crash()
        time.sleep(HANG_SECONDS)


@hookimpl
def harness_backends():
    return [Bad("bad"), Late("late", ("float32", "float64")), Hung("hung"), OracleBackend("my-good")]
""".replace("HANG_SECONDS", str(HANG_SECONDS))

SUITE = """
import pytest
from harness import NetSpec, oracle
from harness.net.testdata import random_images, random_params

@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_forward_values(backend, dtype, device, k, rng, conformance):
    spec = NetSpec()
    params, x = random_params(spec, rng, dtype), random_images(spec, 2, rng, dtype)
    got = backend.forward(spec, params, x, device=device, dtype=dtype)
    conformance.close("logits", got, oracle.forward(spec, params, x))
"""


@pytest.fixture
def project(tmp_path: Path, fake_site: Path) -> dict[str, str]:
    """The plugin installed, the suite written, and the environment that finds them."""
    install_plugin(fake_site, "budget-backends", "budget_backends", PLUGIN)
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    (tmp_path / "markers").mkdir()
    return {
        "PYTHONPATH": os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")]),
        "NETHARNESS_DISABLE_PLUGINS": BUILTINS_OFF,
        "CHILD_LOG": str(tmp_path / "children.jsonl"),
        "MARKERS": str(tmp_path / "markers"),
        "NETHARNESS_PEAK_GFLOPS": "100",  # no matmul peak to measure: these benchmarks only crash
        "PYTHONUNBUFFERED": "1",
    }


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def checks(path: Path, backend: str) -> dict[str, dict[str, Any]]:
    """A backend's check records by test id (relative to the suites or the test directory)."""
    return {r["test_id"].split("/")[-1]: r for r in records(path) if r["kind"] == "check" and r["backend"] == backend}


def outcomes(found: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in found.values():
        counts[record["outcome"]] = counts.get(record["outcome"], 0) + 1
    return counts


def children(log: Path, backend: str) -> list[list[str]]:
    """The argument lists of the supervised pytest processes started for ``backend``."""
    started = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [argv for argv in started if f"--backend={backend}" in argv]


# -- netharness run ---------------------------------------------------------------------------


@pytest.fixture
def main_job(tmp_path: Path, project: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``netharness run --quick --crash-budget=2`` on bad, late and my-good."""
    out = tmp_path / "out"
    command = [str(NETHARNESS), "run", "--quick", "--crash-budget=2", "--backend=bad,late,my-good", "--out", str(out)]
    done = subprocess.run(
        command, cwd=tmp_path, env={**os.environ, **project}, capture_output=True, text=True, timeout=600
    )
    return done, out


@pytest.mark.timeout(900)  # seven pytest processes and a report, on a machine that may be busy
def test_a_backend_that_crashes_on_every_test_is_stopped_after_its_budget_and_the_others_run(
    main_job: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    done, out = main_job
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    conformance, bench = out / "conformance.jsonl", out / "benchmark-checks.jsonl"
    # bad: two processes, each ended by a crash; then every test left is recorded as not run,
    # with no process started for them, and its benchmark step is not started at all.
    started = children(tmp_path / "children.jsonl", "bad")
    assert len(started) == 2 and all(argv[1].endswith("suites") for argv in started), started  # no benchmark step
    bad, good = checks(conformance, "bad"), checks(conformance, "my-good")
    assert outcomes(bad)["crashed"] == 2 and outcomes(bad)["not_run"] > 0, outcomes(bad)
    reason = "backend 'bad' crashed 2 times (--crash-budget=2); last: killed by SIGSEGV in "
    crashed = [r for r in bad.values() if r["outcome"] == "crashed"]
    assert reason + crashed[-1]["test_id"] in records(conformance)[-1]["stopped_backends"]["bad"]
    assert all(r["reason"].startswith(f"not run: {reason}") for r in bad.values() if r["outcome"] == "not_run")
    [step] = checks(bench, "bad").values()
    assert step["outcome"] == "not_run" and step["reason"].endswith("; the benchmarks step was not started")
    # Nothing lost: bad has a record for every test my-good ran, and my-good's are all its own.
    assert {(r["check"], r["config"]) for r in bad.values()} == {(r["check"], r["config"]) for r in good.values()}
    assert not {"crashed", "not_run"} & set(outcomes(good)), outcomes(good)
    assert "my-good" not in records(conformance)[-1]["stopped_backends"]
    # late: a crash in its conformance step and one in its benchmarks spend one budget of 2.
    late = checks(conformance, "late")
    assert outcomes(late)["crashed"] == 1 and "not_run" not in outcomes(late), outcomes(late)
    late_bench = list(checks(bench, "late").values())  # in file order: skips, the crash, then the rest not run
    crash = [r["outcome"] for r in late_bench].index("crashed")
    assert "the backend's crash budget (2) is spent" in late_bench[crash]["reason"]
    assert {r["outcome"] for r in late_bench[:crash]} <= {"skipped"}, late_bench
    assert [r["outcome"] for r in late_bench[crash + 1 :]] == ["not_run"] * (len(late_bench) - crash - 1) != []
    assert len(children(tmp_path / "children.jsonl", "late")) == 2 + 1  # conformance: a crash, then to the end
    # The run's end: every crash, and why each backend stopped.
    end = records(conformance)[-1]
    assert end["kind"] == "run_end" and end["exitstatus"] == 1 and not end["interrupted"]
    assert len(end["crashed"]) == 2 + 1 + 1 and end["crash_budget"] == 2
    assert end["stopped_backends"]["late"].startswith("backend 'late' crashed 2 times (--crash-budget=2); last: ")
    assert "bench_net.py::test_benchmark[late-" in end["stopped_backends"]["late"]
    # The verdict lines, summary.md and report.html show both as partial, with the reason.
    lines = {line.split(":")[0].strip(): line for line in done.stdout.split("netharness: verdict")[1].splitlines()}
    assert lines["bad"].strip().startswith("bad: partial: 2 failures, ") and "not run" in lines["bad"]
    assert f"stopped: {reason}" in lines["bad"]
    assert lines["late"].strip().startswith("late: partial: ") and "1 crashed" in lines["late"]
    assert "stopped: backend 'late' crashed 2 times" in lines["late"]
    assert "partial" not in lines["my-good"] and "stopped" not in lines["my-good"]
    summary = (out / "summary.md").read_text()
    assert "| not run |" in summary and "Stopped by the crash budget" in summary
    assert "stopped: backend &#39;bad&#39; crashed 2 times" in (out / "report.html").read_text()


# -- the supervisor: crashes and timeouts share one budget ------------------------------------


def test_crashes_and_timeouts_count_against_one_budget(
    tmp_path: Path, project: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """hung crashes on its first test and hangs on the second: with a budget of 2, its process
    (started again after the crash) records its last two tests as not run itself."""
    for name, value in project.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "r.jsonl"
    budget = CrashBudget(2)
    args = [str(tmp_path / "test_suite.py"), "-p", "no:cacheprovider", "-q", f"--timeout={HANG_TIMEOUT:g}"]
    outcome = run_step([*args, "--backend=hung,my-good"], results, budget=budget)
    hung = checks(results, "hung")
    assert [hung[f"test_suite.py::test_forward_values[hung-float64-{k}]"]["outcome"] for k in (1, 3, 4)] == [
        "crashed",
        "not_run",
        "not_run",
    ]
    timed_out = hung["test_suite.py::test_forward_values[hung-float64-2]"]
    assert timed_out["outcome"] in ("failed", "error")  # the timeout falls in the call, or in a slow setup
    assert f"Timeout (>{HANG_TIMEOUT}s) from pytest-timeout" in timed_out["reason"]
    expected = (
        f"backend 'hung' crashed once and timed out once (--crash-budget=2); last: timed out after {HANG_TIMEOUT} s"
        " in test_suite.py::test_forward_values[hung-float64-2]"
    )
    assert budget.stopped() == {"hung": expected}
    assert hung["test_suite.py::test_forward_values[hung-float64-3]"]["reason"] == f"not run: {expected}"
    assert outcome.not_run == [f"test_suite.py::test_forward_values[hung-float64-{k}]" for k in (3, 4)]
    assert outcome.crashed == ["test_suite.py::test_forward_values[hung-float64-1]"] and outcome.exit_code == 1
    assert set(outcomes(checks(results, "my-good"))) == {"passed"} and len(checks(results, "my-good")) == 4
    assert len(children(tmp_path / "children.jsonl", "hung,my-good")) == 2


def test_plain_pytest_keeps_a_budget_for_timeouts(tmp_path: Path, project: dict[str, str]) -> None:
    (tmp_path / "markers" / "hung-crashed").write_text("")  # hung hangs from its first test
    results = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "pytest", str(tmp_path / "test_suite.py"), "-p", "no:cacheprovider"]
    command += [f"--conformance-results={results}", f"--timeout={HANG_TIMEOUT:g}", "--crash-budget=1"]
    done = subprocess.run(
        [*command, "--backend=hung,my-good"],
        cwd=tmp_path,
        env={**os.environ, **project},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    hung = checks(results, "hung")
    assert [hung[f"test_suite.py::test_forward_values[hung-float64-{k}]"]["outcome"] for k in (2, 3, 4)] == [
        "not_run"
    ] * 3
    reason = f"backend 'hung' timed out once (--crash-budget=1); last: timed out after {HANG_TIMEOUT} s in "
    assert records(results)[-1]["stopped_backends"]["hung"].startswith(reason)
    assert "netharness: STOPPED: backend 'hung' timed out once" in done.stdout and "3 tests not run" in done.stdout
    assert set(outcomes(checks(results, "my-good"))) == {"passed"}
    # The report reads it: hung is partial, with the reason; my-good conforms.
    found = {v.backend: v for v in verdicts(report_data(load_results([results])))}
    assert found["hung"].status == "partial: 1 failure, 3 not run" and found["hung"].state == "failed"
    assert f"stopped: {reason}" in verdict_line(found["hung"])
    assert found["my-good"].status == "conforms"


# -- the option -------------------------------------------------------------------------------


def test_the_budget_defaults_to_5() -> None:
    assert build_parser().parse_args(["run"]).crash_budget == 5
    assert CrashBudget().limit == 5


@pytest.mark.parametrize("value", ["0", "-1", "many", "2.5", ""])
def test_a_budget_that_is_not_a_positive_integer_is_a_one_line_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"--crash-budget={value}", "--out", "/nonexistent/never-made"]) == 2
    err = capsys.readouterr().err
    assert err == f"netharness: error: argument --crash-budget: expected a positive integer, got {value!r}" + (
        " (see netharness run --help)\n"
    )


# -- the budget and the report, on records as the writers write them ---------------------------


def test_a_budget_counts_per_backend_and_says_why() -> None:
    budget = CrashBudget(2)
    assert not budget.add(Incident("a", "crash", "killed by SIGSEGV", "t1"))
    assert not budget.add(Incident("b", "crash", "exit status 1", "t2"))
    assert budget.stopped() == {}
    assert budget.add(Incident("a", "timeout", "timed out after 5.0 s", "t3"))
    assert budget.spent("a") and not budget.spent("b")
    assert budget.stopped() == {
        "a": "backend 'a' crashed once and timed out once (--crash-budget=2); last: timed out after 5.0 s in t3"
    }


def test_only_a_pytest_timeout_counts_as_a_timeout() -> None:
    record = {
        "backend": "a",
        "test_id": "t",
        "outcome": "failed",
        "reason": "Failed: Timeout (>2.5s) from pytest-timeout.",
    }
    assert timeout_incident(record) == Incident("a", "timeout", "timed out after 2.5 s", "t")
    assert timeout_incident({**record, "outcome": "error"}) is not None  # in setup
    assert timeout_incident({**record, "outcome": "passed"}) is None
    assert timeout_incident({**record, "reason": "AssertionError: Timeout (>2.5s) expected"}) is None


def write_run(path: Path, outcomes_by_test: dict[str, str], stopped: dict[str, str] | None) -> Path:
    """A conformance file as the writers make it: backend x's tests with the outcomes given."""
    lines = [run_start_record(seed=0, device="cpu", backends={"x": {"version": "1"}}, plugin_failures=[], commit="c")]
    for config, outcome in outcomes_by_test.items():
        test = {"test_id": f"suites/t.py::test_forward_values[x-{config}]", "backend": "x"}
        test.update(check="forward_values", config=config, dtype="float32")
        if outcome == "not_run":
            lines.append(not_run_record(test, "backend 'x' crashed once (--crash-budget=1)", seed=0, device="cpu"))
        else:
            lines.append(CheckRecord(**test, device="cpu", outcome=outcome, seed=0).to_json())
    if stopped is not None:
        lines.append(
            {"kind": "run_end", "time": 1.0, "exitstatus": 1, "interrupted": False, "stopped_backends": stopped}
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_check_not_run_is_never_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reports.matrix import build_matrix

    stopped = {"x": "backend 'x' crashed once (--crash-budget=1)"}
    current = write_run(tmp_path / "current.jsonl", {"float32-a": "passed", "float32-b": "not_run"}, stopped)
    data = report_data(load_results([current]))
    [verdict] = verdicts(data)
    assert verdict.status == "partial: 1 not run" and verdict.state == "failed" and verdict.ran == 1
    [(_, [(_, [cell])])] = build_matrix(data.conf).families
    assert (cell.state, cell.text, cell.note) == ("none", "1/2 passed", "1 not run")
    # compare: a check not run in the current is missing (refused unless partial runs are allowed) ...
    baseline = write_run(tmp_path / "baseline.jsonl", {"float32-a": "passed", "float32-b": "passed"}, {})
    assert main(["compare", str(baseline), str(current)]) == 2
    assert "the current run lacks 1 check the baseline ran" in capsys.readouterr().err
    # ... and, when allowed, is reported as not run, never as a pass.
    main(["compare", str(baseline), str(current), "--allow-partial"])
    out = capsys.readouterr().out
    assert "x forward_values float32-b float32 cpu  passed    not_run  not run in the current" in out, out


def test_a_malformed_stopped_backends_is_an_error_naming_the_line(tmp_path: Path) -> None:
    from reports.load import ResultsFileError

    path = write_run(tmp_path / "r.jsonl", {"float32-a": "passed"}, {"x": 3})  # type: ignore[dict-item]
    with pytest.raises(ResultsFileError, match=r"line 3 \(run_end\) has stopped_backends that is not"):
        load_results([path])
