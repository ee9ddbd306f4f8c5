"""The crash budget inside a pytest process: count timeouts, and do not run a spent backend's tests.

Registered in every pytest process (an xdist worker too, which runs tests but records nothing).
Each timeout of a backend's test counts against its budget (:mod:`harness.budget`); a
process that :mod:`harness.running.supervisor` started begins with the run's incidents so far
(crashes are counted there, since a crash ends the process). Once a backend's budget is
spent, each of its remaining tests is skipped before its fixtures are set up, and recorded as
``not_run`` with the reason. Under the supervisor, the process also lists the tests it
collected, so that after a crash that spends a budget the supervisor can record that
backend's remaining tests itself instead of starting a process only to skip them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.budget import NOT_RUN_KEY, NOT_RUN_PREFIX, CrashBudget, timeout_incident
from harness.pytest_plugin.recorder import is_recorded, outcome_of, reason_of
from harness.results import META


def parse_crash_budget(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise pytest.UsageError(f"--crash-budget must be a positive integer, got {value!r}")
    return limit


class BudgetKeeper:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        limit = parse_crash_budget(str(config.getoption("crash_budget")))
        incidents = config.getoption("netharness_incidents")
        self.budget = CrashBudget.load(Path(incidents), limit) if incidents else CrashBudget(limit)
        self.xdist_controller = getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")
        """Under ``pytest -n`` the workers run the tests, and each keeps its own count; this process none."""
        self.stopped_here: dict[str, int] = {}
        """The backends stopped in this session (a budget handed in may name others), and their tests not run."""

    def stopped(self) -> dict[str, str]:
        """The backends this session stopped, and why."""
        return {backend: self.budget.reason(backend) for backend in self.stopped_here}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """List the backends' tests this process will run, for the supervisor (--netharness-collected)."""
        path = self.config.getoption("netharness_collected")
        if not path or hasattr(self.config, "workerinput"):
            return
        lines = []
        for item in session.items:
            meta: Any = dict(item.user_properties).get(META)
            if meta is not None:
                lines.append(json.dumps({"test_id": item.nodeid, **meta}) + "\n")
        Path(path).write_text("".join(lines), encoding="utf-8")

    @pytest.hookimpl(tryfirst=True)  # before any fixture: a spent backend's code is not called again
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        meta: Any = dict(item.user_properties).get(META)
        if meta is None or not self.budget.spent(meta["backend"]):
            return
        item.user_properties.append((NOT_RUN_KEY, True))
        self.stopped_here[meta["backend"]] = self.stopped_here.get(meta["backend"], 0) + 1
        pytest.skip(f"{NOT_RUN_PREFIX}{self.budget.reason(meta['backend'])}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count a timeout, judged from the very outcome and reason its check record gets."""
        meta: Any = dict(report.user_properties).get(META)
        if meta is None or not is_recorded(report) or self.xdist_controller:
            return
        record = {"backend": meta["backend"], "test_id": report.nodeid, "outcome": outcome_of(report)}
        incident = timeout_incident({**record, "reason": reason_of(report)})
        if incident is not None and self.budget.add(incident):
            self.stopped_here.setdefault(incident.backend, 0)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for backend, count in self.stopped_here.items():
            reason = self.budget.reason(backend)
            terminalreporter.write_line(f"netharness: STOPPED: {reason}; {count} tests not run", red=True)
