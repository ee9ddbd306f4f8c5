"""Comparisons that say how bad a mismatch is.

:func:`compare` measures one array against its reference under a tolerance and returns
a :class:`~harness.results.Measurement`; :func:`mismatch_message` turns a failed one into
the message a user reads: mismatched elements k/n, the greatest absolute and relative
difference and where they occur, the tolerance, the first divergent layer where known,
and a command that reproduces the failure.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from harness.conformance.tolerances import Tolerance
from harness.results import Measurement


class ConformanceError(AssertionError):
    """A backend disagrees with the reference beyond the tolerance."""


def compare(what: str, actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> tuple[Measurement, str]:
    """Measure ``actual`` against ``expected``; return the measurement and a failure text ('' if it passes).

    Shapes must match exactly: nothing is broadcast. NaN matches nothing, not even NaN.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        measurement = Measurement(what, np.inf, np.inf, tolerance.rtol, tolerance.atol, 0.0, tolerance.reason, 1, 1)
        return measurement, f"{what}: shape {actual.shape} differs from the reference's {expected.shape}"
    diff = np.abs(actual.astype(np.float64) - expected)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    allowed = tolerance.atol * scale + tolerance.rtol * np.abs(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
        rel = np.where(np.abs(expected) > 0, diff / np.abs(expected), np.where(diff > 0, np.inf, 0.0))
    bad = ~(ratio <= 1.0)  # NaN counts as a mismatch
    worst = float(np.nanmax(ratio)) if ratio.size and not np.all(np.isnan(ratio)) else 0.0
    if np.isnan(diff).any():
        worst = np.inf
    measurement = Measurement(
        what=what,
        max_abs_error=_max_or_inf(diff),
        max_rel_error=_max_or_inf(rel),
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        headroom=(1.0 / worst) if worst > 0 else np.inf,
        tolerance_reason=tolerance.reason,
        tolerance_source=tolerance.source,
        mismatched=int(bad.sum()),
        total=int(diff.size),
    )
    if not bad.any():
        return measurement, ""
    abs_at = _where(diff)
    rel_at = _where(rel)
    text = (
        f"{what}: mismatched elements {measurement.mismatched}/{measurement.total}; "
        f"greatest absolute difference {measurement.max_abs_error:.3g} at {abs_at}"
        f" (actual {_at(actual, abs_at, expected)}, expected {_at(expected, abs_at, actual)}); "
        f"greatest relative difference {measurement.max_rel_error:.3g} at {rel_at}; tolerance {tolerance}"
    )
    return measurement, text


def first_divergent_layer(
    actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], tolerance: Tolerance
) -> str | None:
    """The first layer, in forward order, whose output is out of tolerance."""
    for name, reference in expected.items():
        if name not in actual:
            return f"{name} (missing from the backend's intermediates)"
        _, failure = compare(name, actual[name], reference, tolerance)
        if failure:
            return name
    return None


def _max_or_inf(values: np.ndarray) -> float:
    """The largest element, where NaN counts as infinitely large (0 for an empty array)."""
    return float(np.max(np.where(np.isnan(values), np.inf, values))) if values.size else 0.0


def _where(values: np.ndarray) -> tuple[int, ...]:
    if values.size == 0:
        return ()
    flat = np.where(np.isnan(values), np.inf, values)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(flat)), values.shape))


def _at(values: np.ndarray, index: tuple[int, ...], other: np.ndarray | None = None) -> str:
    """The value at ``index``, with enough significant digits to differ from ``other``'s there."""
    if not values.size:
        return "-"
    value = float(values[index])
    digits = 6
    if other is not None and other.size:
        reference = float(other[index])
        if value != reference and np.isfinite(value) and np.isfinite(reference) and reference != 0:
            relative = abs(value - reference) / abs(reference)
            digits = int(min(17, max(6, 3 - np.floor(np.log10(relative))))) if relative > 0 else 17
    return f"{value:.{digits}g}"
