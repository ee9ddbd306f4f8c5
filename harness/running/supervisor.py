"""Run pytest in child processes, so a backend that kills its interpreter loses nothing else.

Each child appends to one results file (``NETHARNESS_SUPERVISED=1``, see
:class:`harness.results.ResultsWriter`) and writes a ``started`` record, on disk, before each
test. A child that dies (a segfault, ``os._exit``, the OOM killer) leaves no ``child_end``
record: its last started test that has no outcome is recorded as ``crashed``, naming the
exit status, and a new child resumes after it with every finished test deselected. The
supervisor writes the one ``run_end`` record.

SIGINT and SIGTERM stop the child with SIGINT (so it writes what finished) and mark the run
interrupted; the same request arriving again while the run stops is ignored
(:func:`terminate_as_interrupt`).
"""

from __future__ import annotations

import os
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

from harness.childprocess import SKIP_FROM_OPTION, SUPERVISED_ENV, Interrupted, RaiseOnce
from harness.results import RAN, CheckRecord, append_record, read_records

MAX_CRASHES = 50
"""Crashes in one step before the supervisor gives up on resuming it."""
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
    pytest_args: list[str], results: Path, *, env: dict[str, str] | None = None, seed: int = 0, device: str = "cpu"
) -> StepOutcome:
    """Run pytest over ``pytest_args`` (which must not name the results file), resuming after crashes."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.touch()
    done: set[str] = set()
    outcome = StepOutcome(exit_code=0)
    with tempfile.TemporaryDirectory(prefix="netharness-skip-") as scratch:
        skip_file = Path(scratch) / "skip.txt"
        while True:
            skip_file.write_text("\n".join(sorted(done)) + "\n", encoding="utf-8")
            offset = results.stat().st_size
            args = [*pytest_args, f"--conformance-results={results}", f"{SKIP_FROM_OPTION}={skip_file}"]
            code = _run_child(args, {**(env or {}), SUPERVISED_ENV: "1"}, outcome)
            records = read_records(results, offset)
            for record in records:
                if record.get("kind") == "check":
                    done.add(record["test_id"])
                    if record.get("outcome") in RAN:
                        outcome.ran[record["backend"]] = outcome.ran.get(record["backend"], 0) + 1
            ended = next((r for r in records if r.get("kind") == "child_end"), None)
            if outcome.interrupted:
                outcome.exit_code = EXIT_INTERRUPTED
                return outcome
            if ended is not None:
                outcome.exit_code = code if not outcome.crashed else max(code, 1)
                return outcome
            started = [r for r in records if r.get("kind") == "started" and r["test_id"] not in done]
            if not started or len(outcome.crashed) >= MAX_CRASHES:
                what = "outside any test" if not started else f"{MAX_CRASHES} times; not resuming again"
                outcome.died_outside_a_test = f"the pytest process died {what} ({describe_exit(code)})"
                outcome.exit_code = max(code, 1) if code >= 0 else 1
                return outcome
            crashed = started[-1]
            append_record(results, _crash_record(crashed, code, seed, device))
            done.add(crashed["test_id"])
            outcome.crashed.append(crashed["test_id"])
            outcome.ran[crashed["backend"]] = outcome.ran.get(crashed["backend"], 0) + 1
            print(
                f"netharness: CRASHED: {crashed['test_id']} ({describe_exit(code)}); resuming after it",
                file=sys.stderr,
                flush=True,
            )


def _crash_record(started: dict[str, Any], code: int, seed: int, device: str) -> dict[str, Any]:
    record = CheckRecord(
        backend=started["backend"],
        check=started["check"],
        config=started["config"],
        dtype=started["dtype"],
        device=device,
        outcome="crashed",
        test_id=started["test_id"],
        seed=seed,
        reason=f"the process died while running this test ({describe_exit(code)}); the run resumed after it",
    )
    return record.to_json()


XDIST_WORKER_ENV = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
"""What a pytest-xdist worker exports; a child that inherits it believes it is a worker (and
pytest-benchmark then times nothing), so a run started from inside a worker's test drops it."""


def _run_child(args: list[str], env: dict[str, str], outcome: StepOutcome) -> int:
    inherited = {k: v for k, v in os.environ.items() if k not in XDIST_WORKER_ENV}
    process = subprocess.Popen([sys.executable, "-m", "pytest", *args], env={**inherited, **env})
    try:
        return process.wait()
    except KeyboardInterrupt as stop:
        outcome.interrupted = True
        why = stop.args[0] if isinstance(stop, Interrupted) else "SIGINT"
        print(f"netharness: {why}: stopping; every finished check is kept", file=sys.stderr, flush=True)
        return _stop(process)


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
