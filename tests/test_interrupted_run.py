"""Nothing is lost when a run is interrupted: every finished check is on disk, and the report says PARTIAL.

The conformance suite runs in a pytest subprocess; once the results file holds a few check
records it is stopped, with Ctrl-C (SIGINT) or killed outright (SIGKILL), and the report is
built from what is left.

The results file is the source of truth. pytest prints a test's outcome just *after* its
record is written, so the printed outcomes may lag the records by one, and the signal lands
wherever the child happens to be: every assertion here holds whatever the interleaving. No
assertion waits on the wall clock either; a child that never gets there is ended by the
per-test timeout (pyproject's 300 s), and the ``finally`` kills it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, builtins_but

NETHARNESS = Path(sys.executable).with_name("netharness")
ENOUGH_CHECKS = 10
AS_FROM_A_TERMINAL = (
    "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " sys.exit(pytest.main(sys.argv[1:]))"
)
"""pytest, with Ctrl-C raising KeyboardInterrupt as in a terminal, even where this test
process inherited SIGINT ignored (a background job of a shell without job control is
started so, and Python leaves an ignored SIGINT ignored in its children)."""


def complete_records(path: Path) -> list[dict[str, Any]]:
    """The records on complete lines; a line still being written is left for the next look."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]  # the text after the last newline is not a record yet
    return [json.loads(line) for line in lines]


def check_count(records: list[dict[str, Any]]) -> int:
    return sum(r["kind"] == "check" for r in records)


def start_suite_and_stop(tmp_path: Path, stop: signal.Signals) -> tuple[int, str, list[dict[str, Any]]]:
    """Run the suite on eager, send ``stop`` once ENOUGH_CHECKS are recorded; the exit status and stdout."""
    results = tmp_path / "r.jsonl"
    stdout = tmp_path / "stdout.txt"
    env = {**os.environ, "NETHARNESS_DISABLE_PLUGINS": builtins_but("eager"), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", AS_FROM_A_TERMINAL, str(ROOT / "suites"), "--backend=eager"]
    command += [f"--conformance-results={results}", "-p", "no:cacheprovider", "-v"]
    with stdout.open("w") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while check_count(complete_records(results)) < ENOUGH_CHECKS:
                assert process.poll() is None, f"pytest ended before it was stopped:\n{stdout.read_text()}"
                time.sleep(0.05)
            seen = complete_records(results)
            process.send_signal(stop)
            code = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return code, stdout.read_text(), seen


def check_file(results: Path, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every line is a whole JSON record, and every record seen before the stop is still there."""
    text = results.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    assert records[: len(seen)] == seen
    assert records[0]["kind"] == "run_start"
    assert check_count(records) >= ENOUGH_CHECKS
    # One run: no second start, and nothing after an end (other kinds of record may sit between).
    assert [r["kind"] for r in records].count("run_start") == 1
    assert all(r["kind"] != "run_end" for r in records[:-1])
    return records


def recorded_test_ids(records: list[dict[str, Any]]) -> list[str]:
    """The tests with a check record, in file order, relative to suites/."""
    return [r["test_id"].split("suites/", 1)[-1] for r in records if r["kind"] == "check"]


def check_partial_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [str(NETHARNESS), "report", str(tmp_path / "r.jsonl"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "netharness: PARTIAL RUN:" in done.stdout
    assert "PARTIAL RUN" in (out / "summary.md").read_text()
    assert "PARTIAL RUN" in (out / "report.html").read_text()


def finished_test_ids(stdout: str) -> set[str]:
    """The eager tests whose outcome pytest printed (``-v``: ``<id> PASSED  [ 3%]``)."""
    outcomes = (" PASSED", " FAILED", " SKIPPED", " XFAIL", " XPASS", " ERROR")
    finished = set()
    for line in stdout.splitlines():
        test_id = line.split(" ", 1)[0]
        if "[eager" in test_id and any(outcome in line for outcome in outcomes):
            finished.add(test_id.split("suites/", 1)[-1])
    return finished


def test_ctrl_c_keeps_every_finished_check_and_marks_the_run_interrupted(tmp_path: Path) -> None:
    code, stdout, seen = start_suite_and_stop(tmp_path, signal.SIGINT)
    assert code == pytest.ExitCode.INTERRUPTED, stdout
    records = check_file(tmp_path / "r.jsonl", seen)
    assert records[-1]["kind"] == "run_end" and records[-1]["interrupted"] is True, records[-1]
    recorded = recorded_test_ids(records)
    finished = finished_test_ids(stdout)
    # Every test pytest reported as finished has its record.
    assert finished <= set(recorded), sorted(finished - set(recorded))
    # And pytest exits cleanly on Ctrl-C, so every outcome it printed is in stdout: only the last
    # record's can be missing (the signal may land between writing that record and printing it).
    assert set(recorded[:-1]) <= finished, sorted(set(recorded[:-1]) - finished)
    check_partial_report(tmp_path)


def test_killed_run_keeps_every_finished_check_and_reports_partial(tmp_path: Path) -> None:
    code, stdout, seen = start_suite_and_stop(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL, stdout
    records = check_file(tmp_path / "r.jsonl", seen)
    assert all(r["kind"] != "run_end" for r in records)
    # Records are written (and fsynced) before pytest prints an outcome, so even a kill loses none.
    finished = finished_test_ids(stdout)
    assert finished <= set(recorded_test_ids(records)), sorted(finished - set(recorded_test_ids(records)))
    check_partial_report(tmp_path)


def test_a_ctrl_c_inside_a_frame_without_a_line_number_is_still_reported() -> None:
    """Python gives no line for a Ctrl-C that lands while a with-statement enters; pytest's
    Ctrl-C report crashed on such a frame, and the plugin drops it first."""
    import types

    from harness.pytest_plugin import pytest_keyboard_interrupt

    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        interrupt = exc
    assert interrupt.__traceback__ is not None
    odd = types.TracebackType(None, sys._getframe(), 10**6, -1)  # an instruction past the code: no line
    assert odd.tb_lineno is None
    interrupt.__traceback__.tb_next = odd
    excinfo = pytest.ExceptionInfo.from_exception(interrupt)
    pytest_keyboard_interrupt(excinfo)
    assert "KeyboardInterrupt" in str(excinfo.getrepr(funcargs=True))
    assert len(excinfo.traceback) == 1


def test_a_stop_request_after_the_session_ended_raises_nowhere() -> None:
    """SIGTERM right after a step's "N passed": the child's end record is written, and the
    supervisor's SIGINT that follows must not surface as a traceback from wherever the
    interpreter is tearing down (it did, from jax's garbage-collection callback)."""
    script = (
        "import gc, os, signal, sys\n"
        "from harness.childprocess import honour_stop_requests, ignore_stop_requests\n"
        "honour_stop_requests()\n"
        "ignore_stop_requests()\n"
        "gc.callbacks.append(lambda *args: None)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "gc.collect()\n"
        "print('still here')\n"
    )
    env = {**os.environ, "NETHARNESS_SUPERVISED": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "still here\n", done.stderr
    assert "Traceback" not in done.stderr
