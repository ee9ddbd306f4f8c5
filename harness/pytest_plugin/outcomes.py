"""Outcomes come from the harness, not from the backend.

A test's skip, xfail or exit is the harness's to decide: a capability it does not declare,
a known deviation it declared, a configuration the check does not apply to. The same control
flow raised from the backend's own code (``pytest.skip``, ``pytest.xfail``, ``pytest.exit``,
``unittest.SkipTest`` or ``SystemExit`` inside ``forward``, ``gradients``, a prepared
object, ...) would let a wrong backend pass a strict gate, so it becomes a failure that
names what was raised and where.
"""

from __future__ import annotations

import unittest
from pathlib import Path
from types import TracebackType

import pytest

import harness

CONTROL_FLOW: tuple[type[BaseException], ...] = (
    pytest.skip.Exception,
    pytest.xfail.Exception,
    pytest.exit.Exception,
    unittest.SkipTest,
    SystemExit,
)
"""What ends a test other than by passing or failing."""

_MACHINERY = ("_pytest", "pytest", "pluggy", "unittest")
"""Modules whose frames raise on another's behalf (``pytest.skip`` is raised inside _pytest)."""

_HARNESS = Path(harness.__file__).resolve().parent


def raised_by_backend(error: BaseException, suite: Path) -> str:
    """Where backend code raised ``error`` (``file:line in function``), or '' when the harness or the suite did.

    The raiser is the innermost frame outside pytest's machinery; it is the harness's own
    when its file is in the harness package or in the suite's folder (``suite``).
    """
    raiser = None
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".")[0] not in _MACHINERY:
            raiser = tb
        tb = tb.tb_next
    if raiser is None:
        return ""
    path = Path(raiser.tb_frame.f_code.co_filename).resolve()
    if path.is_relative_to(_HARNESS) or path.is_relative_to(suite.resolve()):
        return ""
    return f"{path.name}:{raiser.tb_lineno} in {raiser.tb_frame.f_code.co_name}"


def as_failure(error: BaseException, where: str, backend: str) -> str:
    """The failure message for control flow a backend raised."""
    kind = type(error).__name__
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    said = f" ({message})" if message else ""
    return (
        f"backend {backend!r} raised {kind}{said} at {where}: only the harness skips, xfails or stops a"
        " check (declare a missing capability, or a known deviation with harness_known_deviations);"
        " the check counts as failed"
    )


def is_control_flow(error: BaseException) -> bool:
    return isinstance(error, CONTROL_FLOW) and not isinstance(error, KeyboardInterrupt)

