"""Nothing is lost when a run is interrupted: every finished check is on disk, and the report says PARTIAL.

The conformance suite runs in a pytest subprocess; once the results file holds a few check
records it is stopped, with Ctrl-C (SIGINT) or killed outright (SIGKILL), and the report is
built from what is left.
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

from tests.conftest import ROOT

NETHARNESS = Path(sys.executable).with_name("netharness")
ENOUGH_CHECKS = 10


def complete_records(path: Path) -> list[dict[str, Any]]:
    """The records on complete lines; a line still being written is left for the next look."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]  # the text after the last newline is not a record yet
    return [json.loads(line) for line in lines]


def start_suite_and_stop(tmp_path: Path, stop: signal.Signals) -> tuple[int, str, list[dict[str, Any]]]:
    """Run the suite on eager, send ``stop`` once ENOUGH_CHECKS are recorded; the exit status and stdout."""
    results = tmp_path / "r.jsonl"
    stdout = tmp_path / "stdout.txt"
    env = {**os.environ, "NETHARNESS_DISABLE_PLUGINS": "compile,numpy,onnx", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "pytest", str(ROOT / "suites"), "--backend=eager"]
    command += [f"--conformance-results={results}", "-p", "no:cacheprovider", "-v"]
    with stdout.open("w") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while sum(r["kind"] == "check" for r in complete_records(results)) < ENOUGH_CHECKS:
                assert process.poll() is None, f"pytest ended before it was stopped:\n{stdout.read_text()}"
                assert time.monotonic() < deadline, f"no {ENOUGH_CHECKS} checks in 60 s:\n{stdout.read_text()}"
                time.sleep(0.05)
            seen = complete_records(results)
            process.send_signal(stop)
            code = process.wait(timeout=60)
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
    assert sum(r["kind"] == "check" for r in records) >= ENOUGH_CHECKS
    return records


def check_partial_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [str(NETHARNESS), "report", str(tmp_path / "r.jsonl"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
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
    assert [r["kind"] for r in records[1:-1]] == ["check"] * (len(records) - 2)
    # Every test pytest reported as finished has its record.
    recorded = {r["test_id"].split("suites/", 1)[-1] for r in records if r["kind"] == "check"}
    finished = finished_test_ids(stdout)
    assert len(finished) >= ENOUGH_CHECKS
    assert finished <= recorded, sorted(finished - recorded)
    check_partial_report(tmp_path)


def test_killed_run_keeps_every_finished_check_and_reports_partial(tmp_path: Path) -> None:
    code, stdout, seen = start_suite_and_stop(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL, stdout
    records = check_file(tmp_path / "r.jsonl", seen)
    assert all(r["kind"] != "run_end" for r in records)
    # Records are written (and fsynced) before pytest prints an outcome, so even a kill loses none.
    recorded = {r["test_id"].split("suites/", 1)[-1] for r in records if r["kind"] == "check"}
    assert finished_test_ids(stdout) <= recorded
    check_partial_report(tmp_path)
