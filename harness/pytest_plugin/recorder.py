"""The results file's writer side: one record per backend x check x config, as each test ends.

Registered on the controller only; under xdist, workers forward their reports here. Before
each test of a backend a ``started`` record is written, so a supervisor that finds the
process dead knows which test killed it (see :mod:`harness.running.supervisor`). Under xdist, a
worker that dies is reported by xdist; that report is recorded as ``crashed``.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.budget import NOT_RUN, NOT_RUN_KEY, not_run_record
from harness.conformance.catalogue import CHECKS
from harness.conformance.causes import FAILING
from harness.conformance.checker import reproduce_command
from harness.pytest_plugin.state import harness_state
from harness.results import META, RAN, CheckRecord, Measurement, first_line


class ResultsRecorder:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.ran: Counter[str] = Counter()
        self.crashed: list[str] = []
        self.recorded = 0
        self.failing: list[dict[str, Any]] = []
        self.not_checks: Counter[str] = Counter()
        """Tests pytest counts that record no check (plugin_loaded, tests outside the suite), by outcome."""
        self.collected: dict[str, dict[str, Any]] = {}
        """The backends' tests this session collected (under xdist, its workers did), by id: what the run owes."""
        self.outcomes: set[str] = set()
        """The ids of the tests that have a record."""

    def _state(self) -> Any:
        return harness_state(self.config)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            meta: Any = dict(item.user_properties).get(META)
            if meta is not None:
                self.collected[item.nodeid] = meta

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist the controller collects nothing itself: each worker reports the ids it collected."""
        for nodeid in ids:
            meta = self.collected.get(nodeid) or self._meta_of_crash(nodeid)
            if meta is not None and meta["check"] in CHECKS:
                self.collected[nodeid] = meta

    def record_unfinished(self, exitstatus: int) -> int:
        """A run counts what it collected: record ``not_run`` for each collected test still without an outcome.

        A session that ends early (``pytest -x``, xdist's "maximum crashed workers reached", a
        ``pytest.exit``) would otherwise leave a shorter run that reads as complete. Returns
        how many were recorded.
        """
        state = self._state()
        reason = (
            f"the pytest session ended (exit status {exitstatus}) before this test had an outcome; the run is partial"
        )
        left = [(nodeid, meta) for nodeid, meta in self.collected.items() if nodeid not in self.outcomes]
        for nodeid, meta in left:
            self.outcomes.add(nodeid)
            state.write(not_run_record({"test_id": nodeid, **meta}, reason, seed=state.seed, device=state.device))
        return len(left)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Mark the test as started, on disk, before it runs: if it kills the process, this names it."""
        meta: Any = dict(item.user_properties).get(META)
        if meta is not None:
            self._state().write({"kind": "started", "test_id": item.nodeid, **meta})

    @pytest.hookimpl(tryfirst=True)  # written before the terminal shows the outcome
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props: dict[str, Any] = dict(report.user_properties)
        meta = props.get(META)
        if meta is None and report.failed and "crashed" in str(report.longrepr):
            meta = self._meta_of_crash(report.nodeid)
            if meta is not None:
                self._write(report, meta, "crashed", first_line(str(report.longrepr), "the process died"), [])
            return
        if not is_recorded(report):
            return
        if meta is None:
            self.not_checks[outcome_of(report)] += 1
            return
        measurements = [Measurement(**m) for m in props.get(f"{META}.measurements", [])]
        raised = props.get(f"{META}.exception") or {}
        self._write(report, meta, outcome_of(report), reason_of(report), measurements, raised)

    def _write(
        self,
        report: pytest.TestReport,
        meta: dict[str, Any],
        outcome: str,
        reason: str,
        measurements: list[Any],
        raised: dict[str, str] | None = None,
    ) -> None:
        state = self._state()
        record = CheckRecord(
            backend=meta["backend"],
            check=meta["check"],
            config=meta["config"],
            dtype=meta["dtype"],
            device=state.device,
            outcome=outcome,
            test_id=report.nodeid,
            seed=state.seed,
            reason=reason,
            duration_s=report.duration,
            measurements=measurements,
            exception=(raised or {}).get("type", ""),
            location=(raised or {}).get("location", ""),
        )
        self.recorded += 1
        self.outcomes.add(report.nodeid)
        if outcome in RAN:
            self.ran[meta["backend"]] += 1
        if outcome == "crashed":
            self.crashed.append(report.nodeid)
        written = record.to_json()
        if outcome in FAILING:
            command = reproduce_command(report.nodeid, meta["backend"], state.device, state.seed)
            self.failing.append({**written, "reproduce": command})
        state.write(written)

    def _meta_of_crash(self, nodeid: str) -> dict[str, Any] | None:
        """Backend, check and config from a test id alone (a crashed worker sends nothing else)."""
        if "[" not in nodeid:
            return None
        function, _, params = nodeid.partition("::")[2].partition("[")
        params = params.rstrip("]")
        state = self._state()
        backend = max((n for n in state.selected if params == n or params.startswith(n + "-")), key=len, default=None)
        if backend is None:
            return None
        rest = params[len(backend) :].lstrip("-")
        dtype = rest.split("-")[0] if rest.split("-")[0].startswith("float") else ""
        name = function.removeprefix("test_")
        check = name if name in CHECKS else max((c for c in CHECKS if name.startswith(c)), key=len, default=name)
        return {"backend": backend, "dtype": dtype, "check": check, "config": rest or "default"}

    def zero_check_backends(self) -> list[str]:
        return [name for name in self._state().selected if self.ran[name] == 0]


def is_recorded(report: pytest.TestReport) -> bool:
    """Whether a backend's test's report is the one its check record is written from."""
    return report.when == "call" or (report.when == "setup" and not report.passed)


NOT_THE_BACKEND = frozenset(
    {"harness", "suites", "numpy", "torch", "jax", "jaxlib", "scipy", "onnxruntime", "openvino", "pytest", "_pytest"}
    | {"pluggy", "tensorflow", "keras"}
    | set(sys.stdlib_module_names)
)
"""Top-level modules whose frames are never the place to look: the harness, the suite, the libraries."""


def raised_at(excinfo: pytest.ExceptionInfo[BaseException]) -> dict[str, str]:
    """The exception's type, and its innermost frame in the backend's own code ('file.py:123 function').

    The innermost frame outside :data:`NOT_THE_BACKEND`; the innermost frame of all if every
    frame is in one of those.
    """
    entries = list(excinfo.traceback)
    chosen = entries[-1] if entries else None
    for entry in reversed(entries):
        module = str(entry.frame.f_globals.get("__name__", "")).split(".")[0]
        if module and module not in NOT_THE_BACKEND:
            chosen = entry
            break
    location = f"{Path(str(chosen.path)).name}:{chosen.lineno + 1} {chosen.name}" if chosen is not None else ""
    return {"type": excinfo.type.__name__, "location": location}


def outcome_of(report: pytest.TestReport) -> str:
    if report.skipped and any(key == NOT_RUN_KEY for key, _ in report.user_properties):
        return NOT_RUN
    xfail = hasattr(report, "wasxfail")
    if report.passed:
        return "xpassed" if xfail else "passed"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "error" if report.when == "setup" else "failed"


def reason_of(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.failed:
        text = report.longreprtext.strip().splitlines()
        sections = [i for i, line in enumerate(text) if line.startswith("---") and line.strip("- ") == "reproduce"]
        text = text[: sections[-1]] if sections else text  # the plugin's own addition, not the failure
        errors = [line for line in text if line.startswith("E ")]
        return (errors[0][1:].strip() if errors else (text[-1] if text else ""))[:500]
    return ""
