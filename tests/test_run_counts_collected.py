"""A run counts what it collected: a child that ends early, however cleanly, leaves its tests not run.

A backend that wrote a forged ``child_end`` record into the results file and then called
``os._exit(0)`` at its third test made a run look complete with two checks; now every
collected test without an outcome is recorded ``not_run`` and the step fails.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from harness.contract.manager import BUILTIN_PLUGINS
from harness.running.supervisor import run_step
from tests.helpers import install_plugin

FORGER = """
import json, os, sys
import numpy as np
from harness import Availability, Capability, hookimpl, oracle

class Forger:
    name = "forger"
    version = "1"
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float64",)
    calls = 0

    def availability(self):
        return Availability.ok()

    def forward(self, spec, params, x, *, device, dtype):
        Forger.calls += 1
        if Forger.calls == 3:
            results = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--conformance-results="))
            with open(results, "a") as file:
                file.write(json.dumps({"kind": "child_end", "time": 0, "exitstatus": 0}) + "\\n")
            os._exit(0)
        return oracle.forward(spec, params, x)

@hookimpl
def harness_backends():
    return [Forger()]
"""

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


def test_a_forged_end_record_and_an_early_exit_leave_the_rest_not_run(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(fake_site, "forger-plugin", "forger_plugin", FORGER)
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", ",".join(BUILTIN_PLUGINS))
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "r.jsonl"
    outcome = run_step([str(tmp_path / "test_suite.py"), "-p", "no:cacheprovider", "-q", "--backend=forger"], results)
    checks = [json.loads(line) for line in results.read_text().splitlines()]
    found = {r["test_id"].split("[")[1]: r for r in checks if r.get("kind") == "check"}
    assert [found[f"forger-float64-{k}]"]["outcome"] for k in range(1, 6)] == ["passed"] * 2 + ["not_run"] * 3
    assert "before this test had an outcome; the run is partial" in found["forger-float64-4]"]["reason"]
    assert outcome.exit_code == 1 and len(outcome.not_run) == 3


TEARS = """
import os, sys
from harness import Availability, Capability, hookimpl, oracle

class Tears:
    name = "tears"
    version = "1"
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float64",)

    def availability(self):
        return Availability.ok()

    def forward(self, spec, params, x, *, device, dtype):
        if os.environ.get("TORN_ONCE") and not os.path.exists(os.environ["TORN_ONCE"]):
            open(os.environ["TORN_ONCE"], "w").close()
            results = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--conformance-results="))
            with open(results, "a") as file:
                file.write('{"kind": "check", "backend": "tea')  # half a record, no newline
            os._exit(1)
        return oracle.forward(spec, params, x)

@hookimpl
def harness_backends():
    return [Tears()]
"""


def test_one_torn_record_is_quarantined_and_costs_no_other_record(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reports.load import load_results

    install_plugin(fake_site, "tears-plugin", "tears_plugin", TEARS)
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", ",".join(BUILTIN_PLUGINS))
    monkeypatch.setenv("TORN_ONCE", str(tmp_path / "torn-once"))
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "r.jsonl"
    outcome = run_step([str(tmp_path / "test_suite.py"), "-p", "no:cacheprovider", "-q", "--backend=tears"], results)
    assert outcome.crashed and (tmp_path / "r.jsonl.torn").read_text() == '{"kind": "check", "backend": "tea\n'
    (run,) = load_results([results]).conformance  # every line is whole JSON again
    assert sorted(c["outcome"] for c in run.checks) == ["crashed", "passed", "passed", "passed", "passed"]


DEADLOCK = """
import ctypes, os
from harness import Availability, Capability, hookimpl, oracle

class Deadlock:
    name = "deadlock"
    version = "1"
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float64",)
    calls = 0

    def availability(self):
        return Availability.ok()

    def forward(self, spec, params, x, *, device, dtype):
        Deadlock.calls += 1
        once = os.environ["DEADLOCK_ONCE"]
        if Deadlock.calls == 2 and not os.path.exists(once):  # a mutex locked twice through PyDLL holds the GIL
            open(once, "w").close()
            libc, mutex = ctypes.PyDLL(None), ctypes.create_string_buffer(64)
            libc.pthread_mutex_lock(mutex)
            libc.pthread_mutex_lock(mutex)
        return oracle.forward(spec, params, x)

@hookimpl
def harness_backends():
    return [Deadlock()]
"""


@pytest.mark.timeout(300)
def test_a_test_that_holds_the_gil_past_its_timeout_is_killed_and_named(
    tmp_path: Path, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-timeout's signal cannot reach code that holds the GIL; the supervisor's watchdog can."""
    install_plugin(fake_site, "deadlock-plugin", "deadlock_plugin", DEADLOCK)
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", ",".join(BUILTIN_PLUGINS))
    monkeypatch.setenv("DEADLOCK_ONCE", str(tmp_path / "deadlocked-once"))
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "r.jsonl"
    args = [str(tmp_path / "test_suite.py"), "-p", "no:cacheprovider", "-q", "--backend=deadlock", "--timeout=1"]
    outcome = run_step(args, results)
    checks = [json.loads(line) for line in results.read_text().splitlines()]
    found = {r["test_id"].split("[")[1]: r for r in checks if r.get("kind") == "check"}
    stuck = found["deadlock-float64-2]"]
    assert stuck["outcome"] == "crashed" and "ran past --timeout=1 s" in stuck["reason"], stuck
    assert [found[f"deadlock-float64-{k}]"]["outcome"] for k in (1, 3, 4, 5)] == ["passed"] * 4
    assert outcome.crashed == [stuck["test_id"]]
