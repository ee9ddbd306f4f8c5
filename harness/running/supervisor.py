"""Run pytest in child processes, so a backend that kills its interpreter loses nothing else.

Each child appends to one results file (``NETHARNESS_SUPERVISED=1``, see
:class:`harness.results.ResultsWriter`) and writes a ``started`` record, on disk, before each
test. A child that dies (a segfault, ``os._exit``, the OOM killer) leaves no ``child_end``
record: its last started test that has no outcome is recorded as ``crashed``, naming the
exit status, and a new child resumes after it with every finished test deselected. The
supervisor writes the one ``run_end`` record.

Each crash, and each test that pytest-timeout stopped, counts against its backend's crash
budget (:mod:`harness.budget`), which the caller may share between steps. Once a backend's
budget is spent, its remaining tests are recorded as ``not_run``: by the child, which skips
them (a timeout spent it), or here, from the tests the child listed as collected (a crash
spent it); a child is started again only for tests of other backends.

SIGINT and SIGTERM stop the child with SIGINT (so it writes what finished) and mark the run
interrupted; the same request arriving again while the run stops is ignored
(:func:`terminate_as_interrupt`).
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.budget import NOT_RUN, CrashBudget, Incident, not_run_record, timeout_incident
from harness.childprocess import (
    COLLECTED_OPTION,
    INCIDENTS_OPTION,
    RECORD_KEY_BYTES,
    RECORD_KEY_FD_ENV,
    SKIP_FROM_OPTION,
    SUPERVISED_ENV,
    Interrupted,
    RaiseOnce,
)
from harness.results import (
    RAN,
    CheckRecord,
    append_record,
    append_records,
    is_sealed,
    read_new_records,
    read_records,
    reject_unsealed,
)

EXIT_INTERRUPTED = 130
STOP_GRACE_S = 60.0


@dataclass
class StepOutcome:
    """What one supervised pytest step did."""

    exit_code: int
    crashed: list[str] = field(default_factory=list)
    ran: dict[str, int] = field(default_factory=dict)
    """Per backend, the checks that ran (any outcome but a skip)."""
    interrupted: bool = False
    died_outside_a_test: str = ""
    not_run: list[str] = field(default_factory=list)
    """The tests recorded ``not_run`` because their backend's crash budget was spent."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and Ctrl-C raise :class:`Interrupted` once (:class:`RaiseOnce`), for the duration.

    Once one came, later ones stay ignored after the block too: the process is on its way
    out, and its exit status says it was interrupted. A SIGINT that was ignored when this
    started (a background job) stays ignored.
    """
    handler = RaiseOnce()
    signals = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signals.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        if not handler.received:
            for signum, was in previous.items():
                signal.signal(signum, was)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_step(
    pytest_args: list[str],
    results: Path,
    *,
    env: dict[str, str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    budget: CrashBudget | None = None,
) -> StepOutcome:
    """Run pytest over ``pytest_args`` (which must not name the results file), resuming after crashes.

    ``budget`` counts crashes and timeouts per backend (a fresh default one if not given);
    pass the same one to every step of a run.
    """
    budget = budget if budget is not None else CrashBudget()
    results.parent.mkdir(parents=True, exist_ok=True)
    results.touch()
    done: set[str] = set()
    outcome = StepOutcome(exit_code=0)
    key = secrets.token_bytes(RECORD_KEY_BYTES)
    with tempfile.TemporaryDirectory(prefix="netharness-skip-") as scratch:
        skip_file, incidents, collected = (Path(scratch) / name for name in ("skip.txt", "incidents.json", "tests"))
        while True:
            skip_file.write_text("\n".join(sorted(done)) + "\n", encoding="utf-8")
            budget.save(incidents)
            collected.unlink(missing_ok=True)
            offset = results.stat().st_size
            args = [*pytest_args, f"--conformance-results={results}", f"{SKIP_FROM_OPTION}={skip_file}"]
            args += [f"--crash-budget={budget.limit}", f"{INCIDENTS_OPTION}={incidents}"]
            args.append(f"{COLLECTED_OPTION}={collected}")
            watchdog = Watchdog(results, offset, per_test_timeout(pytest_args), key)
            code = _run_child(args, {**(env or {}), SUPERVISED_ENV: "1"}, outcome, watchdog, key)
            reject_unsealed(results, offset, key)
            records = read_records(results, offset)
            for record in records:
                if record.get("kind") == "check":
                    done.add(record["test_id"])
                    if record.get("outcome") in RAN:
                        outcome.ran[record["backend"]] = outcome.ran.get(record["backend"], 0) + 1
                    if record.get("outcome") == NOT_RUN:
                        outcome.not_run.append(record["test_id"])
                    timeout = timeout_incident(record)
                    if timeout is not None:
                        budget.add(timeout)
            ended = next((r for r in records if r.get("kind") == "child_end"), None)
            if outcome.interrupted:
                outcome.exit_code = EXIT_INTERRUPTED
                return outcome
            if ended is not None and ended.get("interrupted"):
                # The child was stopped by a signal the supervisor did not see (a SIGINT to the
                # process group of a run started with SIGINT ignored): the whole run stops.
                print("netharness: the pytest process was interrupted; stopping the run", file=sys.stderr, flush=True)
                outcome.interrupted = True
                outcome.exit_code = EXIT_INTERRUPTED
                return outcome
            if ended is not None:
                _record_unfinished(collected, results, done, outcome, code, seed, device)
                outcome.exit_code = code if not (outcome.crashed or outcome.not_run) else max(code, 1)
                return outcome
            started = [r for r in records if r.get("kind") == "started" and r["test_id"] not in done]
            if not started:
                outcome.died_outside_a_test = f"the pytest process died outside any test ({describe_exit(code)})"
                outcome.exit_code = max(code, 1) if code >= 0 else 1
                return outcome
            crashed = started[-1]
            how = watchdog.how() if watchdog.killed == crashed["test_id"] else describe_exit(code)
            incident = Incident(crashed["backend"], "crash", how, crashed["test_id"])
            spent = budget.add(incident)
            append_record(results, _crash_record(crashed, how, seed, device, budget.limit if spent else 0))
            done.add(crashed["test_id"])
            outcome.crashed.append(crashed["test_id"])
            outcome.ran[crashed["backend"]] = outcome.ran.get(crashed["backend"], 0) + 1
            left, stopped = _record_not_run(collected, results, done, budget, outcome, seed, device)
            going_on = "" if left == 0 else "; resuming after it"
            print(f"netharness: CRASHED: {crashed['test_id']} ({how}){going_on}", file=sys.stderr)
            for backend, count in stopped.items():
                print(f"netharness: STOPPED: {budget.reason(backend)}; {count} tests not run", file=sys.stderr)
            sys.stderr.flush()
            if left == 0:  # every test left belonged to a backend whose budget is spent
                outcome.exit_code = 1
                return outcome


def _record_not_run(
    collected: Path, results: Path, done: set[str], budget: CrashBudget, outcome: StepOutcome, seed: int, device: str
) -> tuple[int | None, dict[str, int]]:
    """Record as ``not_run`` the collected tests left of every backend whose budget is spent.

    Returns how many collected tests are still left to run (None when the child listed none:
    it died before its collection ended), and how many were recorded per backend. Tests of
    no backend (the plugin checks) have no record and are not listed; they are not rerun
    once no backend's test is left.
    """
    if not collected.exists():
        return None, {}
    tests = [json.loads(line) for line in collected.read_text(encoding="utf-8").splitlines() if line]
    left = [test for test in tests if test["test_id"] not in done]
    stopped = [test for test in left if budget.spent(test["backend"])]
    append_records(
        results, [not_run_record(test, budget.reason(test["backend"]), seed=seed, device=device) for test in stopped]
    )
    counts: dict[str, int] = {}
    for test in stopped:
        done.add(test["test_id"])
        outcome.not_run.append(test["test_id"])
        counts[test["backend"]] = counts.get(test["backend"], 0) + 1
    return len(left) - len(stopped), counts


def _record_unfinished(
    collected: Path, results: Path, done: set[str], outcome: StepOutcome, code: int, seed: int, device: str
) -> None:
    """A run counts what it collected: each collected test the child ended without is recorded ``not_run``.

    A child that ends early and cleanly (pytest.exit from backend code, a forged end record
    followed by os._exit) would otherwise leave a shorter run that reads as complete.
    """
    if not collected.exists():
        return
    tests = [json.loads(line) for line in collected.read_text(encoding="utf-8").splitlines() if line]
    left = [test for test in tests if test["test_id"] not in done]
    reason = f"the pytest process ended ({describe_exit(code)}) before this test had an outcome; the run is partial"
    append_records(results, [not_run_record(test, reason, seed=seed, device=device) for test in left])
    for test in left:
        done.add(test["test_id"])
        outcome.not_run.append(test["test_id"])
    if left:
        print(f"netharness: PARTIAL: {len(left)} collected tests have no outcome ({reason})", file=sys.stderr)


def _crash_record(started: dict[str, Any], how: str, seed: int, device: str, spent: int) -> dict[str, Any]:
    """``spent``: the budget this crash spent, or 0 when the backend's tests go on."""
    after = f"the backend's crash budget ({spent}) is spent" if spent else "the run resumed after it"
    record = CheckRecord(
        backend=started["backend"],
        check=started["check"],
        config=started["config"],
        dtype=started["dtype"],
        device=device,
        outcome="crashed",
        test_id=started["test_id"],
        seed=seed,
        reason=f"the process died while running this test ({how}); {after}",
    )
    return record.to_json()


XDIST_WORKER_ENV = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
"""What a pytest-xdist worker exports; a child that inherits it believes it is a worker (and
pytest-benchmark then times nothing), so a run started from inside a worker's test drops it."""


WATCHDOG_GRACE_S = 10.0
"""Beyond the per-test timeout (and a tenth of it), how long a test may go on before the supervisor kills it."""


def per_test_timeout(pytest_args: list[str]) -> float | None:
    """The ``--timeout=S`` the child is given (pytest-timeout's), or None."""
    for arg in pytest_args:
        if arg.startswith("--timeout="):
            try:
                return float(arg.split("=", 1)[1]) or None
            except ValueError:
                return None
    return None


class Watchdog:
    """Kills a child whose test outlives its per-test timeout by far: pytest-timeout's signal
    method cannot stop code that holds the GIL (a C call that never returns to Python)."""

    def __init__(self, results: Path, offset: int, timeout: float | None, key: bytes) -> None:
        self.results, self.offset, self.timeout, self.key = results, offset, timeout, key
        self.running: tuple[str, float] | None = None
        """The test that started last and has no outcome yet, and when it was seen to start."""
        self.killed = ""

    @property
    def limit(self) -> float:
        assert self.timeout is not None
        return self.timeout * 1.1 + WATCHDOG_GRACE_S

    def overdue(self) -> bool:
        """Read what the child wrote since the last look; True once its running test is past the limit."""
        if self.timeout is None:
            return False
        records, self.offset = read_new_records(self.results, self.offset)
        for record in (r for r in records if is_sealed(r, self.key)):
            if record.get("kind") == "started":
                self.running = (str(record.get("test_id")), time.monotonic())
            elif record.get("kind") == "check" and self.running and record.get("test_id") == self.running[0]:
                self.running = None
        return self.running is not None and time.monotonic() - self.running[1] > self.limit

    def how(self) -> str:
        return f"the test ran past --timeout={self.timeout:g} s and did not stop, so the supervisor killed it"


def _run_child(args: list[str], env: dict[str, str], outcome: StepOutcome, watchdog: Watchdog, key: bytes) -> int:
    inherited = {k: v for k, v in os.environ.items() if k not in XDIST_WORKER_ENV}
    key_pipe, key_end = os.pipe()  # the key never appears in the child's environment or arguments
    os.write(key_end, key)
    os.close(key_end)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            env={**inherited, **env, RECORD_KEY_FD_ENV: str(key_pipe)},
            preexec_fn=_die_with_parent,
            pass_fds=(key_pipe,),
        )
    finally:
        os.close(key_pipe)
    try:
        while True:
            try:
                return process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if watchdog.overdue() and watchdog.running is not None:
                    watchdog.killed = watchdog.running[0]
                    print(f"netharness: {watchdog.killed} is stuck past its timeout; killing it", file=sys.stderr)
                    process.kill()
    except KeyboardInterrupt as stop:
        outcome.interrupted = True
        why = stop.args[0] if isinstance(stop, Interrupted) else "SIGINT"
        print(f"netharness: {why}: stopping; every finished check is kept", file=sys.stderr, flush=True)
        return _stop(process)


def _die_with_parent() -> None:
    """In the child, before pytest starts: SIGKILL it when the supervisor dies (Linux's parent-death
    signal), so a ``kill -9`` of the supervisor leaves no pytest process running beside the next run."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def _stop(process: subprocess.Popen[bytes]) -> int:
    """Ask the child to stop as Ctrl-C would (it writes what finished); kill it if it will not."""
    deadline = time.monotonic() + STOP_GRACE_S
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    while process.poll() is None and time.monotonic() < deadline:
        try:
            process.wait(timeout=1.0)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            continue
    if process.poll() is None:
        process.kill()
    return process.wait()
