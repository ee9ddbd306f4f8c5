"""The crash budget: after K crashes or timeouts of one backend, its remaining tests are not run.

Without it, a backend that kills its interpreter on every test costs one restart of its pytest
process per test (:mod:`harness.running.supervisor` resumes after each crash), and one that hangs
waits out the per-test timeout on every test. An *incident* is a test of the backend that
crashed its process, or that pytest-timeout stopped: its signal method fails the test with
"Timeout (>Ns) from pytest-timeout"; its thread method ends the process, which is a crash.

Once a backend has had ``limit`` incidents its budget is *spent*: each of its remaining tests
gets a check record with the outcome ``not_run`` and the reason (which never counts as a
pass), and the other backends go on. ``netharness run`` keeps one budget per backend for the
whole run, across its conformance and benchmark steps, and hands the incidents so far to
each pytest process it starts; a plain pytest session keeps one of its own (under
``pytest -n``, one per worker).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.results import CheckRecord

DEFAULT_CRASH_BUDGET = 5
NOT_RUN = "not_run"
"""The outcome of a test that was not run because its backend's budget was spent."""
NOT_RUN_PREFIX = "not run: "
NOT_RUN_KEY = "netharness.not_run"
"""The user property that marks a test skipped as not run (:mod:`harness.pytest_plugin.budget`), for its record."""
_TIMEOUT = re.compile(r"Timeout \(>([0-9.]+)s\) from pytest-timeout")
"""pytest-timeout's failure message (its PYTEST_FAILURE_MESSAGE), as the recorded reason holds it."""


@dataclass(frozen=True)
class Incident:
    """One crash or timeout of a backend's test."""

    backend: str
    kind: str
    """``crash`` or ``timeout``."""
    what: str
    """What happened, in words: ``killed by SIGSEGV``, ``timed out after 10 s``."""
    test_id: str


def timeout_incident(record: Mapping[str, Any]) -> Incident | None:
    """The incident a check record shows when pytest-timeout stopped its test; None otherwise."""
    if record.get("outcome") not in ("failed", "error"):
        return None
    found = _TIMEOUT.search(str(record.get("reason") or ""))
    if found is None:
        return None
    return Incident(str(record["backend"]), "timeout", f"timed out after {found.group(1)} s", str(record["test_id"]))


class CrashBudget:
    """The incidents of each backend, and whether its budget of ``limit`` is spent."""

    def __init__(self, limit: int = DEFAULT_CRASH_BUDGET, incidents: Iterable[Incident] = ()) -> None:
        if limit < 1:
            raise ValueError(f"a crash budget is a positive integer, got {limit}")
        self.limit = limit
        self._incidents: dict[str, list[Incident]] = {}
        for incident in incidents:
            self.add(incident)

    def add(self, incident: Incident) -> bool:
        """Count ``incident``; True if it is the one that spends its backend's budget."""
        found = self._incidents.setdefault(incident.backend, [])
        found.append(incident)
        return len(found) == self.limit

    def spent(self, backend: str) -> bool:
        return len(self._incidents.get(backend, ())) >= self.limit

    def reason(self, backend: str) -> str:
        """Why ``backend``'s remaining tests are not run: how often it crashed or timed out, and the last time."""
        incidents = self._incidents.get(backend, [])
        kinds = [("crashed", "crash"), ("timed out", "timeout")]
        counts = [(verb, sum(i.kind == kind for i in incidents)) for verb, kind in kinds]
        happened = " and ".join(f"{verb} {_times(count)}" for verb, count in counts if count)
        last = f"; last: {incidents[-1].what} in {incidents[-1].test_id}" if incidents else ""
        return f"backend {backend!r} {happened or 'had no incident'} (--crash-budget={self.limit}){last}"

    def stopped(self) -> dict[str, str]:
        """Every backend whose budget is spent, with the reason."""
        return {backend: self.reason(backend) for backend in self._incidents if self.spent(backend)}

    def save(self, path: Path) -> None:
        """Write the incidents for a pytest process to read (:meth:`load`)."""
        incidents = [asdict(i) for found in self._incidents.values() for i in found]
        path.write_text(json.dumps(incidents), encoding="utf-8")

    @classmethod
    def load(cls, path: Path, limit: int) -> CrashBudget:
        return cls(limit, (Incident(**i) for i in json.loads(path.read_text(encoding="utf-8"))))


def not_run_record(test: Mapping[str, Any], reason: str, *, seed: int, device: str) -> dict[str, Any]:
    """The check record of a test not run because its backend's budget was spent.

    ``test`` names it: ``test_id``, ``backend``, ``check``, ``config`` and ``dtype``.
    """
    record = CheckRecord(
        backend=str(test["backend"]),
        check=str(test["check"]),
        config=str(test["config"]),
        dtype=str(test.get("dtype") or ""),
        device=device,
        outcome=NOT_RUN,
        test_id=str(test["test_id"]),
        seed=seed,
        reason=f"{NOT_RUN_PREFIX}{reason}",
    )
    return record.to_json()


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
