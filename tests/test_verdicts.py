"""What the harness reports is what happened: crashes, leaked state, idle backends, bad hooks.

The backends here are plugins in a throw-away site directory (real entry-point discovery),
computing with the oracle itself so each test is fast; the built-in backends are disabled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.contract.manager import BUILTIN_PLUGINS
from harness.running.supervisor import run_step
from tests.helpers import install_plugin

BUILTINS_OFF = ",".join(BUILTIN_PLUGINS)

PLUGIN = """
import ctypes, os
import numpy as np
from harness import Availability, Capability, hookimpl, oracle

class OracleBackend:
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float64",)
    version = "oracle"

    def __init__(self, name, misbehave=False):
        self.name, self.misbehave, self.calls = name, misbehave, 0

    def availability(self):
        return Availability.ok()

    def forward(self, spec, params, x, *, device, dtype):
        self.calls += 1
        if self.misbehave and self.calls == 2:
            MISBEHAVE
        return oracle.forward(spec, params, x).astype(dtype)

@hookimpl
def harness_backends():
    return [OracleBackend("bad", misbehave=True), OracleBackend("my-good")]
"""

SUITE = """
import numpy as np
import pytest
from harness import NetSpec, oracle
from harness.net.testdata import random_images, random_params

@pytest.mark.parametrize("k", [1, 2, 3])
def test_forward_values(backend, dtype, device, k, rng, conformance):
    spec = NetSpec()
    params, x = random_params(spec, rng, dtype), random_images(spec, 2, rng, dtype)
    got = backend.forward(spec, params, x, device=device, dtype=dtype)
    conformance.close("logits", got, oracle.forward(spec, params, x))
"""


def make_project(tmp_path: Path, fake_site: Path, misbehave: str) -> tuple[Path, dict[str, str]]:
    source = PLUGIN.replace("MISBEHAVE", misbehave)
    if "torch" in misbehave:
        source = "import torch\n" + source
    install_plugin(fake_site, "oracle-backends", "oracle_backends", source)
    suite = tmp_path / "test_suite.py"
    suite.write_text(textwrap.dedent(SUITE))
    env = {"PYTHONPATH": os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")]), "PYTHONUNBUFFERED": "1"}
    return suite, {**env, "NETHARNESS_DISABLE_PLUGINS": BUILTINS_OFF}


def checks(path: Path) -> dict[str, dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["test_id"].split("::")[-1]: r for r in records if r["kind"] == "check"}


CRASHES = {
    "exit-0": "os._exit(0)",
    "exit-1": "os._exit(1)",
    "segfault": "ctypes.string_at(0)",
}


@pytest.mark.parametrize("misbehave", list(CRASHES.values()), ids=list(CRASHES))
def test_a_crash_is_recorded_and_loses_no_other_result(
    tmp_path: Path, fake_site: Path, misbehave: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite, env = make_project(tmp_path, fake_site, misbehave)
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "r.jsonl"
    outcome = run_step([str(suite), "-p", "no:cacheprovider", "-q"], results, env=env)
    recorded = checks(results)
    crashed = [name for name, r in recorded.items() if r["outcome"] == "crashed"]
    assert crashed == ["test_forward_values[bad-float64-2]"], recorded
    assert outcome.crashed == [f"test_suite.py::{crashed[0]}"] and outcome.exit_code != 0
    assert "the process died while running this test" in recorded[crashed[0]]["reason"]
    # Every other test of both backends ran, after the crash as before it.
    assert {name for name, r in recorded.items() if r["outcome"] == "passed"} == {
        *(f"test_forward_values[bad-float64-{k}]" for k in (1, 3)),
        *(f"test_forward_values[my-good-float64-{k}]" for k in (1, 2, 3)),
    }


def test_a_crash_under_xdist_is_recorded_as_crashed(tmp_path: Path, fake_site: Path) -> None:
    pytest.importorskip("xdist")
    suite, env = make_project(tmp_path, fake_site, "os._exit(1)")
    results = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "pytest", str(suite), "-n", "2", "-p", "no:cacheprovider", "-q"]
    run = subprocess.run(
        [*command, f"--conformance-results={results}"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    recorded = checks(results)
    outcomes = sorted(r["outcome"] for r in recorded.values())
    assert len(recorded) == 6 and outcomes.count("crashed") >= 1, recorded
    assert all(r["outcome"] == "passed" for name, r in recorded.items() if "my-good" in name)
    assert {r["backend"] for r in recorded.values() if r["outcome"] == "crashed"} == {"bad"}


def test_when_xdist_gives_up_every_test_without_an_outcome_is_not_run(tmp_path: Path, fake_site: Path) -> None:
    """xdist's "maximum crashed workers reached" ends the session early; the tests it never
    ran are recorded not_run (the run is partial), not left out of a run that reads as complete."""
    pytest.importorskip("xdist")
    suite, env = make_project(tmp_path, fake_site, "os._exit(1)")
    results = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "pytest", str(suite), "-n", "1", "--max-worker-restart=0", "-p", "no:randomly"]
    run = subprocess.run(
        [*command, "-p", "no:cacheprovider", "-q", f"--conformance-results={results}"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode != 0, run.stdout + run.stderr
    recorded = checks(results)
    assert len(recorded) == 6, (recorded, run.stdout)  # every collected test has a record
    not_run = [r for r in recorded.values() if r["outcome"] == "not_run"]
    assert not_run and all("before this test had an outcome" in r["reason"] for r in not_run), recorded
    assert [r["outcome"] for r in recorded.values()].count("crashed") == 1


LEAKS = {
    "numpy-errstate": ("np.seterr(all='raise')", "numpy error state"),
    # torch is imported by the plugin before any test (as the built-in backends do), so the
    # snapshot knows its thread count.
    "torch-threads": ("torch.set_num_threads(1)", "torch threads"),
    "environment": ("os.environ.__setitem__('OMP_NUM_THREADS', '1')", "OMP_NUM_THREADS"),
    # A backend that reseeds a global generator changes what every later draw in the process is.
    "numpy-global-seed": ("np.random.seed(0)", "numpy global random state"),
    "python-random-seed": ("__import__('random').seed(0)", "python random state"),
    "torch-manual-seed": ("torch.manual_seed(0)", "torch global generator"),
}


@pytest.mark.parametrize(("misbehave", "named"), list(LEAKS.values()), ids=list(LEAKS))
def test_leaked_global_state_fails_the_test_that_leaked_it_and_is_restored(
    tmp_path: Path, fake_site: Path, misbehave: str, named: str
) -> None:
    if "torch" in misbehave:
        pytest.importorskip("torch")
    suite, env = make_project(tmp_path, fake_site, misbehave)
    results = tmp_path / "r.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", f"--conformance-results={results}"],
        cwd=tmp_path,
        env={**os.environ, **env, "OMP_NUM_THREADS": "2"},  # not the 1 the leaks set, whatever make test sets
        capture_output=True,
        text=True,
        timeout=240,
    )
    recorded = checks(results)
    failed = {name: r for name, r in recorded.items() if r["outcome"] == "failed"}
    assert list(failed) == ["test_forward_values[bad-float64-2]"], run.stdout
    assert "changed process-wide state" in failed["test_forward_values[bad-float64-2]"]["reason"]
    assert named in run.stdout
    assert sum(r["outcome"] == "passed" for r in recorded.values()) == 5


def test_strict_fails_a_backend_that_ran_no_check(tmp_path: Path, fake_site: Path) -> None:
    suite, env = make_project(tmp_path, fake_site, "pass")
    (tmp_path / "test_suite.py").write_text(
        "import pytest\n\n@pytest.mark.requires('backward')\ndef test_gradients(backend, dtype):\n    pass\n"
    )
    base = [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", "--backend=my-good"]
    base.append(f"--conformance-results={tmp_path / 'r.jsonl'}")
    lenient = subprocess.run(base, cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True)
    strict = subprocess.run(
        [*base, "--strict-backends"], cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert lenient.returncode == 0, lenient.stdout
    assert strict.returncode == 1, strict.stdout
    assert "backend 'my-good' ran no check" in strict.stdout


def test_a_device_that_does_not_exist_is_a_usage_error(tmp_path: Path, fake_site: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    suite, env = make_project(tmp_path, fake_site, "pass")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", "--device=cuda"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 4
    assert "--device=cuda: this machine has no CUDA device" in run.stderr
    cli = subprocess.run(
        [Path(sys.executable).with_name("netharness"), "run", "--quick", "--device=cuda", "--out", str(tmp_path / "o")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1, cli.stderr
    assert "no CUDA device" in cli.stderr


def test_same_seed_gives_every_backend_the_same_data_whatever_its_name(tmp_path: Path, fake_site: Path) -> None:
    suite, env = make_project(tmp_path, fake_site, "pass")
    results = tmp_path / "r.jsonl"
    subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", f"--conformance-results={results}"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        check=True,
    )
    recorded = checks(results)
    for k in (1, 2, 3):
        bad = recorded[f"test_forward_values[bad-float64-{k}]"]
        good = recorded[f"test_forward_values[my-good-float64-{k}]"]
        assert bad["config"] == good["config"] == f"float64-{k}"
        # Same data, same arithmetic: the very same error, to the last bit.
        assert bad["max_abs_error"] == good["max_abs_error"]


SLOW_SUITE = """
import os, time

def test_slow(backend, dtype):
    with open(os.environ["CHILD_PID_FILE"], "w") as file:
        file.write(str(os.getpid()))
    time.sleep(120)
"""

SUPERVISE = """
import os, signal, sys
from pathlib import Path
from harness.running.supervisor import run_step, terminate_as_interrupt

# Ignored, as a shell without job control starts `netharness run ... &`; else as a terminal does.
ignored = os.environ["SIGINT_AT_START"] == "ignored"
signal.signal(signal.SIGINT, signal.SIG_IGN if ignored else signal.default_int_handler)

with terminate_as_interrupt():
    outcome = run_step([sys.argv[1], "-p", "no:cacheprovider", "--backend=my-good"], Path(sys.argv[2]))
sys.exit(outcome.exit_code)
"""


def start_slow_supervised_run(
    tmp_path: Path, fake_site: Path, sigint: str, **popen: Any
) -> tuple[subprocess.Popen[str], int, Path]:
    """The supervisor (:data:`SUPERVISE`) over a test that sleeps, once its child runs that test.

    Returns the supervisor's process, the pytest child's pid and the results file.
    """
    import time

    suite, env = make_project(tmp_path, fake_site, "pass")
    suite.write_text(SLOW_SUITE)
    script, results, pid_file = tmp_path / "supervise.py", tmp_path / "r.jsonl", tmp_path / "child.pid"
    script.write_text(SUPERVISE)
    process = subprocess.Popen(
        [sys.executable, str(script), str(suite), str(results)],
        cwd=tmp_path,
        env={**os.environ, **env, "CHILD_PID_FILE": str(pid_file), "SIGINT_AT_START": sigint},
        text=True,
        **popen,
    )
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the test never started")
        time.sleep(0.05)
    return process, int(pid_file.read_text()), results


def child_gone_and_ended(child: int, results: Path) -> None:
    with pytest.raises(ProcessLookupError):  # the pytest child is gone, not orphaned
        os.kill(child, 0)
    kinds = [json.loads(line)["kind"] for line in results.read_text().splitlines()]
    assert kinds[-1] == "child_end" and "started" in kinds


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_sigterm_stops_the_child_and_marks_the_run_interrupted(tmp_path: Path, fake_site: Path, sigint: str) -> None:
    """The child writes what finished and ends, also when the supervisor was started with SIGINT ignored."""
    import signal

    process, child, results = start_slow_supervised_run(tmp_path, fake_site, sigint)
    try:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 130
    finally:
        if process.poll() is None:
            process.kill()
    child_gone_and_ended(child, results)


def test_a_stop_request_sent_again_to_the_whole_process_group_is_still_a_clean_stop(
    tmp_path: Path, fake_site: Path
) -> None:
    """``timeout`` and many CI runners signal the process, then its whole group: the supervisor
    sees SIGTERM twice and its pytest child sees it too. The run still stops cleanly: exit
    130, no traceback, the child gone and its end record written."""
    import signal

    process, child, results = start_slow_supervised_run(
        tmp_path, fake_site, "default", stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        process.send_signal(signal.SIGTERM)
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "netharness: SIGTERM: stopping; every finished check is kept" in stderr
    child_gone_and_ended(child, results)


def test_each_stop_signal_after_the_first_is_ignored() -> None:
    import signal

    from harness.childprocess import Interrupted, RaiseOnce

    handler = RaiseOnce()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(Interrupted, match="SIGTERM"):
            handler(signal.SIGTERM, None)
        handler(signal.SIGTERM, None)  # the same request again, as `timeout` sends it to the group
        handler(signal.SIGINT, None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # the OS drops the next ones
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_main_job_stopped_by_timeout_still_writes_a_partial_report(tmp_path: Path, fake_site: Path) -> None:
    """As ``timeout`` stops it: SIGTERM to the main job mid-step, then to its whole process group
    (here again and again, until it ends: none of those may break off writing the report)."""
    import signal
    import time

    _, env = make_project(tmp_path, fake_site, "__import__('time').sleep(120)")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [Path(sys.executable).with_name("netharness"), "run", "--quick", "--backend=my-good,bad", "--out", str(out)],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while '"backend": "bad", "check"' not in _read(out / "conformance.jsonl"):
            assert process.poll() is None and time.monotonic() < deadline, "bad's conformance never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        while process.poll() is None:  # and again to the group, until it ends (the report is written meanwhile)
            os.killpg(process.pid, signal.SIGTERM)
            time.sleep(0.01)
        output = process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, output
    # No traceback through the harness. pytest itself may print "Exception ignored in" noise from
    # its capture machinery when the stop lands in a test's setup, as a Ctrl-C there does.
    assert not re.search(r'File "[^"]*/(harness|reports)/[^"]*"', output), output
    assert "PARTIAL RUN" in (out / "report.html").read_text()
    records = [json.loads(line) for line in (out / "conformance.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "run_end" and records[-1]["interrupted"] is True
    assert any(r.get("backend") == "my-good" and r.get("outcome") == "passed" for r in records)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_supervisor_killed_outright_takes_its_pytest_child_with_it(tmp_path: Path, fake_site: Path) -> None:
    """kill -9 of the supervisor: its child gets the parent-death signal instead of running on beside the next run."""
    import signal
    import time

    process, child, _ = start_slow_supervised_run(tmp_path, fake_site, "default")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # waiting for an event, not timing anything: the bound only ends a hang
    os.kill(child, signal.SIGKILL)
    pytest.fail("the pytest child outlived its supervisor")


def test_a_group_sigint_to_a_run_started_with_sigint_ignored_stops_the_whole_run(
    tmp_path: Path, fake_site: Path
) -> None:
    """A script's `netharness run ... &` ignores SIGINT, its child does not: a Ctrl-C to the group
    stops the child, and the supervisor must then stop too and say interrupted, not carry on."""
    import signal

    process, child, results = start_slow_supervised_run(tmp_path, fake_site, "ignored")
    try:
        os.kill(child, signal.SIGINT)  # what the group's SIGINT does to the child; the supervisor ignores its own
        assert process.wait(timeout=90) == 130
    finally:
        if process.poll() is None:
            process.kill()
    child_gone_and_ended(child, results)
