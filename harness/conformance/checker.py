"""The ``conformance`` fixture's object: compares a backend's arrays with the reference.

Every comparison is remembered and travels with the test's report into the results file,
and a failure ends with the command that reproduces it.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.conformance.compare import ConformanceError, compare, layout_note, localise, permutation_note
from harness.conformance.tolerances import Tolerance
from harness.net.precision import diagnose
from harness.results import META, Measurement


class Checker:
    """Compares a backend's arrays with the reference and remembers every measurement."""

    def __init__(self, request: pytest.FixtureRequest, state: Any, check: str, config: dict[str, Any]) -> None:
        self.request = request
        self.state = state
        # Shared with the test's report, which pytest builds right after the call.
        self._recorded: list[dict[str, Any]] = []
        request.node.user_properties.append((f"{META}.measurements", self._recorded))
        callspec = getattr(request.node, "callspec", None)
        self.backend_name: str = callspec.params.get("backend", "") if callspec else ""
        self.dtype: str = callspec.params.get("dtype", "float64") if callspec else "float64"
        self.check = check
        self.config = config

    def tolerance(self, check: str | None = None, dtype: str | None = None) -> Tolerance:
        return self.state.tolerance_for(self.backend_name, check or self.check, dtype or self.dtype, self.config)

    def close(
        self,
        what: str,
        actual: np.ndarray,
        expected: np.ndarray,
        *,
        tolerance: Tolerance | None = None,
        layers: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None,
    ) -> Measurement:
        """Assert ``actual`` matches ``expected``; ``layers`` = (backend's, reference's) intermediates."""
        tol = tolerance or self.tolerance()
        measurement, failure = compare(what, actual, expected, tol)
        self.record(measurement)
        if failure:
            raise ConformanceError(
                f"{self.explain(what, actual, expected, failure, tol, layers)}\n  reproduce: {self.reproduce()}"
            )
        return measurement

    def explain(
        self,
        what: str,
        actual: np.ndarray,
        expected: np.ndarray,
        failure: str,
        tolerance: Tolerance,
        layers: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None,
    ) -> str:
        """The failure with what it points at: a layout or an order first (the likely cause), else
        the mismatch, what its errors look like, and the first divergent layer."""
        if layers is not None:
            where, logic = localise(layers[0], layers[1], tolerance)
        else:
            where, logic = "", False
            note = layout_note(what, actual, expected, tolerance)[0] if np.shape(actual) != np.shape(expected) else ""
            note = note or permutation_note(what, actual, expected, None, tolerance)
            if note:
                where, logic = note, True
        if logic:
            return f"{where}; {failure}"
        hint = diagnose(actual, expected, self.dtype, device=self.state.device or "cpu", layers=layers)
        return "; ".join(part for part in (failure, hint, where) if part)

    def record(self, measurement: Measurement) -> None:
        # Plain Python numbers only: under xdist the report crosses a process boundary.
        self._recorded.append({k: v.item() if isinstance(v, np.generic) else v for k, v in asdict(measurement).items()})

    def fail(self, message: str) -> None:
        raise ConformanceError(f"{message}\n  reproduce: {self.reproduce()}")

    def reproduce(self) -> str:
        node = self.request.node
        return reproduce_command(node.nodeid, self.backend_name, self.state.device, self.state.seed, node.path)


def reproduce_command(nodeid: str, backend: str, device: str | None, seed: int | None, path: Any = None) -> str:
    """The command that reruns one test (the one form, quoted for a POSIX shell).

    The installed suite is named by module when the test ran from elsewhere; a missing
    device or seed is left out, so the suite's default applies.
    """
    options = [f"--backend={backend}"]
    if device:
        options.append(f"--device={device}")
    if seed is not None:
        options.append(f"--seed={int(seed)}")
    quoted = " ".join(shlex.quote(option) for option in options)
    if path is not None and not nodeid.startswith("suites/"):
        from harness.conformance.locations import SUITES_PACKAGE, suites_dir

        try:
            inside = Path(path).resolve().parent == suites_dir()
        except Exception:  # an uninstalled suite: the node id is all there is
            inside = False
        if inside:
            test = nodeid.partition("::")[2]
            return f"pytest --pyargs {shlex.quote(f'{SUITES_PACKAGE}.{Path(path).stem}::{test}')} {quoted}"
    return f"pytest {shlex.quote(nodeid)} {quoted}"
