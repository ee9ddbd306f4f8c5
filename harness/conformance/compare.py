"""Comparisons that say how bad a mismatch is.

:func:`compare` measures one array against its reference under a tolerance and returns
a :class:`~harness.results.Measurement`; :func:`mismatch_message` turns a failed one into
the message a user reads: mismatched elements k/n, the greatest absolute and relative
difference and where they occur, the tolerance, the first divergent layer where known,
and a command that reproduces the failure.
"""

from __future__ import annotations

import itertools
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


SPEC_LAYOUT = "NCHW"
"""The spec's layout of every 4-D array (images, convolution and pool outputs): batch, channel, row, column."""
_USUAL_LAYOUTS = ("NHWC", "NCWH", "NWHC", "CHWN", "HWCN")
"""Other layouts, the usual first: when two fit a shape (H = W), the usual one is named."""


def layout_of(shape: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """The layout ('NHWC') in which a 4-D array of the spec's ``expected`` shape has ``shape``; '' if none."""
    if len(shape) != 4 or len(expected) != 4 or tuple(shape) == tuple(expected):
        return ""
    layouts = (*_USUAL_LAYOUTS, *("".join(p) for p in itertools.permutations(SPEC_LAYOUT)))
    for layout in layouts:
        if tuple(expected[SPEC_LAYOUT.index(axis)] for axis in layout) == tuple(shape):
            return layout
    return ""


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


def localise(
    actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], tolerance: Tolerance
) -> tuple[str, bool]:
    """Where the intermediates first go wrong, and whether the cause is a layout or an order.

    Layouts first: a layer in another layout is named, and its values are compared after
    transposing back, so a layer only laid out differently is not blamed for diverging.
    Then the first layer whose values diverge, or that holds the right values in another
    order (a flatten in another layout). Returns the text and True when it found a layout
    or a permutation (a logic bug, not rounding).
    """
    notes: list[str] = []
    laid_out: list[str] = []
    before: np.ndarray | None = None
    found = False
    divergent = ""
    for name, reference in expected.items():
        if name not in actual:
            divergent = f"first divergent layer: {name} (missing from the backend's intermediates)"
            break
        value = np.asarray(actual[name])
        if value.shape != np.shape(reference):
            note, back = layout_note(name, value, reference, tolerance)
            laid_out.append(name)
            found = found or back is not None
            if len(laid_out) == 1:
                notes.append(note)
            if back is None:
                divergent = f"first divergent layer: {name}"
                break
            value = back
        if compare(name, value, reference, tolerance)[1]:
            order = permutation_note(name, value, reference, before, tolerance)
            found = found or bool(order)
            divergent = order or f"first divergent layer: {name}"
            break
        before = np.asarray(reference)
    if len(laid_out) > 1:
        notes[0] += f" (and {len(laid_out) - 1} more layers so laid out)"
    if laid_out and not divergent:
        divergent = "their values match the reference's"
    notes.append(divergent or "first divergent layer: none (only the output differs)")
    return "; ".join(notes), found


def layout_note(
    name: str, actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance
) -> tuple[str, np.ndarray | None]:
    """For an array of the wrong shape: a sentence naming its layout, and its values put back
    in the spec's layout when a transpose matches them (else None)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    spec = "(N, C, H, W)" if expected.ndim == 4 else f"{expected.shape}"
    if actual.ndim == expected.ndim and sorted(actual.shape) == sorted(expected.shape) and actual.ndim <= 5:
        for axes in itertools.permutations(range(actual.ndim)):
            if tuple(actual.shape[a] for a in axes) != expected.shape:
                continue
            back = actual.transpose(axes)
            if not compare(name, back, expected, tolerance)[1]:
                layout = "".join(SPEC_LAYOUT[int(i)] for i in np.argsort(axes)) if expected.ndim == 4 else ""
                named = f" ({layout})" if layout else ""
                return (
                    f"{name} is {actual.shape}{named}; the spec's layout is {spec}:"
                    f" the values match after transposing to {SPEC_LAYOUT if expected.ndim == 4 else 'it'}",
                    back,
                )
        layout = layout_of(actual.shape, expected.shape)
        named = f" ({layout})" if layout else ""
        return (
            f"{name} is {actual.shape}{named}; the spec's layout is {spec}, and no transpose matches its values",
            None,
        )
    return f"{name} is {actual.shape}; the spec's is {expected.shape}", None


def permutation_note(
    name: str, actual: np.ndarray, expected: np.ndarray, before: np.ndarray | None, tolerance: Tolerance
) -> str:
    """'' unless each sample holds the reference's values in another order; then say so, with the likely layout.

    ``before`` is the reference's previous layer: a 2-D layer after a 4-D one is a flatten,
    and the flatten order that gives ``actual`` names the layout it was done in.
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape or actual.ndim < 2 or actual.size == 0:
        return ""
    rows = actual.shape[0]
    sorted_actual = np.sort(actual.reshape(rows, -1), axis=1)
    sorted_expected = np.sort(expected.reshape(rows, -1), axis=1)
    if compare(name, sorted_actual, sorted_expected, tolerance)[1]:
        return ""
    text = f"{name}: the same values in another order"
    if before is not None and before.ndim == 4 and actual.ndim == 2 and before[0].size == actual.shape[1]:
        for layout in (*_USUAL_LAYOUTS, *("".join(p) for p in itertools.permutations(SPEC_LAYOUT))):
            if layout[0] != "N" or layout == SPEC_LAYOUT:
                continue
            axes = tuple(SPEC_LAYOUT.index(axis) for axis in layout)
            if not compare(name, actual, before.transpose(axes).reshape(rows, -1), tolerance)[1]:
                return f"{text}: the flatten looks like {layout} order; the spec flattens in {SPEC_LAYOUT} order"
    return text


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
