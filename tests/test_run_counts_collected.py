"""A run counts what it collected, and only what the harness's recorder wrote.

A backend that wrote a forged ``child_end`` record into the results file and then called
``os._exit(0)`` at its third test made a run look complete with two checks. Now a line the
recorder did not seal with the run's key is moved out of the results file, so that exit is a
crash, the run resumes after it, and any collected test still without an outcome is recorded
``not_run``.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.contract.manager import BUILTIN_PLUGINS
from harness.running.supervisor import run_step
from tests.helpers import install_plugin

SUITE = """
import pytest
from harness import NetSpec, oracle
from harness.net.testdata import random_images, random_params

@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_forward_values(backend, dtype, device, k, rng, conformance):
    spec = NetSpec()
    params, x = random_params(spec, rng, dtype), random_images(spec, 2, rng, dtype)
    got = backend.forward(spec, params, x, device=device, dtype=dtype)
    conformance.close("logits", got, oracle.forward(spec, params, x))
"""


BACKEND = """
import ctypes, json, os, sys
from harness import Availability, Capability, hookimpl, oracle

class Misbehaving:
    name = "NAME"
    version = "1"
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float64",)
    calls = 0

    def availability(self):
        return Availability.ok()

    def forward(self, spec, params, x, *, device, dtype):
        Misbehaving.calls += 1
        misbehave(Misbehaving.calls)
        return oracle.forward(spec, params, x)

def results_file():
    return next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--conformance-results="))

@hookimpl
def harness_backends():
    return [Misbehaving()]
"""
"""A forward-only backend that computes the oracle's logits and calls ``misbehave(call number)`` first."""


def supervised_run(
    tmp_path: Path,
    fake_site: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    misbehave: str,
    *args: str,
    suite: str = SUITE,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Run ``suite`` on the backend ``name`` under the supervisor; its outcome and the check records by id."""
    source = BACKEND.replace("NAME", name) + textwrap.dedent(misbehave)
    install_plugin(fake_site, f"{name}-plugin", f"{name}_plugin", source)
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(suite))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", ",".join(BUILTIN_PLUGINS))
    monkeypatch.setenv("ONCE", str(tmp_path / "misbehaved-once"))
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "r.jsonl"
    command = [str(tmp_path / "test_suite.py"), "-p", "no:cacheprovider", "-q", f"--backend={name}", *args]
    outcome = run_step(command, results)
    checks = [json.loads(line) for line in results.read_text().splitlines()]
    return outcome, {r["test_id"].split("[")[1].rstrip("]"): r for r in checks if r.get("kind") == "check"}


def test_a_forged_end_record_is_rejected_and_the_early_exit_is_a_crash(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forge = """
        def misbehave(call):
            if call == 3:
                with open(results_file(), "a") as file:
                    file.write(json.dumps({"kind": "child_end", "time": 0, "exitstatus": 0}) + "\\n")
                os._exit(0)
    """
    outcome, found = supervised_run(tmp_path, fake_site, monkeypatch, "forger", forge)
    outcomes = [found[f"forger-float64-{k}"]["outcome"] for k in range(1, 6)]
    assert outcomes == ["passed", "passed", "crashed", "passed", "passed"]
    assert outcome.exit_code == 1 and outcome.crashed == [found["forger-float64-3"]["test_id"]]
    assert '"child_end"' in (tmp_path / "r.jsonl.rejected").read_text()


def test_forged_outcomes_are_rejected_and_the_real_ones_stand(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong backend that writes "passed" records for its own tests, sealed or not by a guess, fails."""
    forge = """
        def misbehave(call):
            with open(results_file(), "a") as file:
                for k in range(1, 6):
                    test_id = f"test_suite.py::test_forward_values[forger-float64-{k}]"
                    forged = {"kind": "check", "backend": "forger", "check": "forward_values", "config": str(k),
                              "dtype": "float64", "device": "cpu", "outcome": "passed", "test_id": test_id,
                              "seed": 0, "seal": "0" * 32}
                    file.write(json.dumps(forged) + "\\n")
            raise AssertionError("wrong logits")
    """
    outcome, found = supervised_run(tmp_path, fake_site, monkeypatch, "forger", forge)
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(r["outcome"] for r in records if r.get("kind") == "check") == ["failed"] * 5
    assert len((tmp_path / "r.jsonl.rejected").read_text().splitlines()) == 25
    assert outcome.exit_code == 1


def test_one_torn_record_is_quarantined_and_costs_no_other_record(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reports.load import load_results

    tear = """
        def misbehave(call):
            if not os.path.exists(os.environ["ONCE"]):
                open(os.environ["ONCE"], "w").close()
                with open(results_file(), "a") as file:
                    file.write('{"kind": "check", "backend": "tea')  # half a record, no newline
                os._exit(1)
    """
    outcome, _ = supervised_run(tmp_path, fake_site, monkeypatch, "tears", tear)
    assert outcome.crashed and (tmp_path / "r.jsonl.rejected").read_text() == '{"kind": "check", "backend": "tea\n'
    (run,) = load_results([tmp_path / "r.jsonl"]).conformance  # every line is whole JSON again
    assert sorted(c["outcome"] for c in run.checks) == ["crashed", "passed", "passed", "passed", "passed"]


@pytest.mark.timeout(300)
def test_a_test_that_holds_the_gil_past_its_timeout_is_killed_and_named(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-timeout's signal cannot reach code that holds the GIL; the supervisor's watchdog can."""
    deadlock = """
        def misbehave(call):
            if call == 2 and not os.path.exists(os.environ["ONCE"]):  # a mutex locked twice through PyDLL
                open(os.environ["ONCE"], "w").close()                  # deadlocks holding the GIL
                libc, mutex = ctypes.PyDLL(None), ctypes.create_string_buffer(64)
                libc.pthread_mutex_lock(mutex)
                libc.pthread_mutex_lock(mutex)
    """
    outcome, found = supervised_run(tmp_path, fake_site, monkeypatch, "deadlock", deadlock, "--timeout=1")
    stuck = found["deadlock-float64-2"]
    assert stuck["outcome"] == "crashed" and "ran past --timeout=1 s" in stuck["reason"], stuck
    assert [found[f"deadlock-float64-{k}"]["outcome"] for k in (1, 3, 4, 5)] == ["passed"] * 4
    assert outcome.crashed == [stuck["test_id"]]


def test_a_long_lived_process_a_backend_starts_does_not_hold_up_the_step(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step ends when pytest ends: a grandchild still running (one that shares the step's
    stdout, and a plain fork) is no reason to wait. Shown without a clock: both are still
    alive when the step has returned."""
    spawn = """
        def misbehave(call):
            if call == 1:
                import subprocess, time
                spawned = subprocess.Popen(["sleep", "600"])
                forked = os.fork()
                if forked == 0:
                    time.sleep(600)
                    os._exit(0)
                with open(os.environ["ONCE"], "w") as file:
                    file.write(f"{spawned.pid} {forked}")
    """
    outcome, found = supervised_run(tmp_path, fake_site, monkeypatch, "spawner", spawn)
    pids = [int(pid) for pid in (tmp_path / "misbehaved-once").read_text().split()]
    try:
        for pid in pids:
            os.kill(pid, 0)  # raises if the process is gone: the step would have waited for it
    finally:
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    assert outcome.exit_code == 0 and [r["outcome"] for r in found.values()] == ["passed"] * 5


BENCHMARK_SUITE = """
import pytest
from harness import NetSpec
from harness.net.testdata import random_images, random_params

@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_benchmark(backend, dtype, device, k, rng, benchmark):
    spec = NetSpec()
    params, x = random_params(spec, rng, dtype), random_images(spec, 2, rng, dtype)
    benchmark.pedantic(lambda: backend.forward(spec, params, x, device=device, dtype=dtype), rounds=3, iterations=1)
"""


def test_a_crash_in_a_benchmark_step_keeps_the_timings_that_finished_before_it(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-benchmark writes its JSON at the session's end, which a crashed process never reaches."""
    from harness.commands.run import merge_benchmarks

    crash = """
        def misbehave(call):
            if call == 7 and not os.path.exists(os.environ["ONCE"]):  # in benchmark 3: 3 rounds each
                open(os.environ["ONCE"], "w").close()
                os._exit(1)
    """
    step_json = tmp_path / "steps" / "bench-crasher.json"  # not the working directory: the path is kept whole
    step_json.parent.mkdir()
    options = ("--benchmark-enable", f"--benchmark-json={step_json}", "--benchmark-save-data")
    outcome, found = supervised_run(tmp_path, fake_site, monkeypatch, "crasher", crash, *options, suite=BENCHMARK_SUITE)
    outcomes = [found[f"crasher-float64-{k}"]["outcome"] for k in (1, 2, 3, 4, 5)]
    assert outcomes == ["passed", "passed", "crashed", "passed", "passed"]
    merge_benchmarks([step_json], tmp_path / "benchmarks.json")
    merged = json.loads((tmp_path / "benchmarks.json").read_text())
    timed = sorted(b["param"].rsplit("-", 1)[-1] for b in merged["benchmarks"])
    assert timed == ["1", "2", "4", "5"], timed  # 1 and 2 from the crashed process, 4 and 5 from its resumption
    assert all(len(b["stats"]["data"]) == 3 for b in merged["benchmarks"])
    assert not list(tmp_path.glob("*.finished.jsonl"))


LINGERING = """
import json, os, subprocess, sys, time
from harness import Availability, Capability, hookimpl, oracle

FORGER = '''
import json, os, sys, time
signals, results = sys.argv[1], sys.argv[2]
while not os.path.exists(os.path.join(signals, "second-started")):
    time.sleep(0.05)
with open(results, "a") as file:  # after its own step ended: no step's check sees it
    file.write(json.dumps({"kind": "check", "backend": "first", "outcome": "passed", "test_id": "forged"}) + "\\\\n")
open(os.path.join(signals, "forged"), "w").close()
'''

class Oracle:
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float32", "float64")
    version = "1"

    def __init__(self, name):
        self.name = name

    def availability(self):
        return Availability.ok()

    def forward(self, spec, params, x, *, device, dtype):
        signals = os.environ["SIGNALS"]
        if self.name == "first" and not os.path.exists(os.path.join(signals, "spawned")):
            open(os.path.join(signals, "spawned"), "w").close()
            results = os.path.join(os.environ["OUT"], "conformance.jsonl")
            subprocess.Popen([sys.executable, "-c", FORGER, signals, results], start_new_session=True)
        benchmarking = any(arg.endswith("bench_net.py") and not arg.startswith("-") for arg in sys.argv)
        if self.name == "second" and benchmarking and not os.path.exists(os.path.join(signals, "forged")):
            open(os.path.join(signals, "second-started"), "w").close()  # hold it until the line is forged
            deadline = time.monotonic() + 120
            while not os.path.exists(os.path.join(signals, "forged")) and time.monotonic() < deadline:
                time.sleep(0.05)
        return oracle.forward(spec, params, x).astype(dtype)

@hookimpl
def harness_backends():
    return [Oracle("first"), Oracle("second")]
"""


def test_a_record_written_from_outside_every_step_is_rejected_at_the_run_s_end(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process the first backend left running writes a forged conformance record during the
    second backend's benchmark step: no step's own check covers the conformance file then, the
    run's final one does."""
    import subprocess
    import sys

    install_plugin(fake_site, "lingering", "lingering_plugin", LINGERING)
    signals, out = tmp_path / "signals", tmp_path / "out"
    signals.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")]),
        "NETHARNESS_DISABLE_PLUGINS": ",".join(BUILTIN_PLUGINS),
        "SIGNALS": str(signals),
        "OUT": str(out),
    }
    netharness = Path(sys.executable).with_name("netharness")
    command = [str(netharness), "run", "--quick", "--backend=first,second", f"--out={out}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert (signals / "forged").exists(), done.stdout + done.stderr
    assert '"test_id": "forged"' in (out / "conformance.jsonl.rejected").read_text()
    records = [json.loads(line) for line in (out / "conformance.jsonl").read_text().splitlines()]
    assert all(r.get("test_id") != "forged" for r in records)
    assert "not written by the harness's recorder" in done.stderr
