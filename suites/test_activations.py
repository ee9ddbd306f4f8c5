"""Activations and their derivatives: values, edge cases, properties, dtype and shape.

The seed's formulas (section 3.4): sigmoid 1/(1+e^-x), tanh (e^x-e^-x)/(e^x+e^-x),
ReLU max(0, x). Derivatives: s(1-s), 1-t^2, and 1 for x > 0 else 0 (relu'(0) = 0).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

from harness import oracle
from harness.conformance.tolerances import DERIVATIVE_UNITS, ULP_TOLERANCES
from harness.contract.backend import Backend
from harness.pytest_plugin import Checker
from harness.results import Measurement

NAMES = [pytest.param(name, id=name) for name in ("sigmoid", "tanh", "relu")]


def grid(dtype: str) -> np.ndarray:
    """Dense near 0, spread out to where the functions saturate; both signs, exact zeros."""
    x = np.concatenate([np.linspace(-20, 20, 4001), np.geomspace(1e-30, 80, 500), -np.geomspace(1e-30, 80, 500)])
    return x.astype(dtype)


@functools.cache
def exact(name: str, dtype: str) -> oracle.ExactActivation:
    """The activation and its derivative on the dtype's grid, exact to ~40 digits (once per process: it is slow).

    Exact, not the float64 oracle: the oracle's own exp and expm1 are a few float64 ulps off,
    by amounts that depend on the machine's libm and SIMD kernels, and at float64 that error
    would be charged to the backend.
    """
    return oracle.activation_exact(name, grid(dtype))


def ulp_error(actual: np.ndarray, hi: np.ndarray, lo: np.ndarray, dtype: str) -> np.ndarray:
    """|actual - (hi + lo)| in units of the dtype's spacing at the exact value hi + lo."""
    spacing = np.spacing(np.abs(hi.astype(dtype))).astype(np.float64)
    return np.abs((actual.astype(np.float64) - hi) - lo) / spacing


@pytest.mark.requires("activations")
@pytest.mark.parametrize("name", NAMES)
def test_activation_values(backend: Backend, dtype: str, name: str, conformance: Checker) -> None:
    """Values against the exact ones, measured in ULPs of the backend's dtype.

    8 ulp is the spec's accuracy contract for each function: IEEE 754 recommends but does
    not require correctly rounded tanh and exp, so no machine promises a bound for every
    libm, and the contract is one that every implementation measured meets with room.
    """
    x = grid(dtype)
    actual = backend.activation(name, x)
    reference = exact(name, dtype)
    expected = reference.value
    ulps = ulp_error(actual, expected, reference.value_lo, dtype)
    worst = int(np.argmax(ulps))
    conformance.record(
        Measurement(
            what=f"{name} ulps",
            max_abs_error=float(np.max(np.abs(actual - expected))),
            max_rel_error=float(ulps[worst]),
            rtol=ULP_TOLERANCES[dtype],
            atol=0.0,
            headroom=ULP_TOLERANCES[dtype] / ulps[worst] if ulps[worst] > 0 else np.inf,
            tolerance_reason=f"{ULP_TOLERANCES[dtype]:g} ulp",
            mismatched=int(np.sum(ulps > ULP_TOLERANCES[dtype])),
            total=x.size,
        )
    )
    if ulps[worst] > ULP_TOLERANCES[dtype]:
        conformance.fail(
            f"{name}({x[worst]!r}) = {actual[worst]!r}, expected {expected[worst]!r}: {ulps[worst]:.1f} ulp "
            f"(tolerance {ULP_TOLERANCES[dtype]:g} ulp;"
            f" {int(np.sum(ulps > ULP_TOLERANCES[dtype]))}/{x.size} points over)"
        )


def derivative_error_unit(name: str, x: np.ndarray, dtype: str) -> np.ndarray:
    """eps * (|f'(x)| + |y df'/dy|), y = f(x): the rounding error of f' computed from the stored output.

    tanh' = 1 - y^2 and sigmoid' = y (1 - y) are computed from y, as torch's backward does, and
    y's own rounding (relative eps) moves them by |y df'/dy| eps: 2 y^2 eps for tanh, |1 - 2y| y
    eps for sigmoid. That is all the precision a tail has, and no more is allowed: near
    sigmoid's 0 the derivative keeps its relative precision, and near 1 (sigmoid) or +-1
    (tanh) its absolute error is a few eps. So float32 tanh' may be 0 past |x| ~ 9 (where
    tanh(x) rounds to 1), but a derivative flushed to 0 at |x| ~ 12 fails in float64, and
    sigmoid's fails in both precisions. relu' is exact.
    """
    y = oracle.activation(name, x)
    conditioning = {"tanh": 2 * y * y, "sigmoid": np.abs(1 - 2 * y) * y, "relu": np.zeros_like(y)}[name]
    return float(np.finfo(dtype).eps) * (np.abs(oracle.activation_grad(name, x)) + conditioning)


@pytest.mark.requires("activations")
@pytest.mark.parametrize("name", NAMES)
def test_activation_derivatives(backend: Backend, dtype: str, name: str, conformance: Checker) -> None:
    """The elementwise derivative against the exact one, elementwise, in units of its rounding error."""
    x = grid(dtype)
    x64 = x.astype(np.float64)
    actual = np.asarray(backend.activation_grad(name, x))
    reference = exact(name, dtype)
    expected = reference.derivative
    if actual.shape != x.shape:
        conformance.fail(f"{name}' returned shape {actual.shape} for {x.shape}")
    error = np.abs((actual.astype(np.float64) - expected) - reference.derivative_lo)
    unit = derivative_error_unit(name, x64, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        units = np.where(unit > 0, error / unit, np.where(error > 0, np.inf, 0.0))
    units = np.where(np.isnan(units), np.inf, units)
    worst = int(np.argmax(units))
    over = int(np.sum(units > DERIVATIVE_UNITS))
    conformance.record(
        Measurement(
            what=f"{name}' in units of eps (|f'| + |y df'/dy|)",
            max_abs_error=float(np.max(np.where(np.isnan(error), np.inf, error))),
            max_rel_error=float(units[worst]),
            rtol=DERIVATIVE_UNITS,
            atol=0.0,
            headroom=DERIVATIVE_UNITS / units[worst] if units[worst] > 0 else np.inf,
            tolerance_reason=f"{DERIVATIVE_UNITS:g} eps (|f'| + |y df'/dy|)",
            mismatched=over,
            total=x.size,
        )
    )
    if over:
        # Where the unit is 0 (relu' at a kink, where every rounding-free answer is exact), any
        # error is infinitely many units: say the value is wrong, not "inf units".
        size = (
            f"is {units[worst]:.3g} units of eps (|f'| + |y df'/dy|) = {unit[worst]:.3g}"
            if unit[worst] > 0
            else "where the derivative is exact (no rounding allowed: the unit of eps there is 0)"
        )
        conformance.fail(
            f"{name}'({x[worst]!r}) = {actual[worst]!r}, expected {expected[worst]!r}: error {error[worst]:.3g}"
            f" {size} (tolerance {DERIVATIVE_UNITS:g} units; {over}/{x.size} points over)"
        )


INF = np.inf
# (x, f(x)) and (x, f'(x)) pairs; lists, not dicts, because 0.0 == -0.0 as a key.
EDGES = {
    "sigmoid": [(0.0, 0.5), (-0.0, 0.5), (INF, 1.0), (-INF, 0.0), (1e4, 1.0), (-1e4, 0.0)],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (1e4, 1.0), (-1e4, -1.0)],
    "relu": [(0.0, 0.0), (INF, INF), (-INF, 0.0), (1e4, 1e4), (-1e4, 0.0)],
}
EDGE_GRADS = {
    "sigmoid": [(INF, 0.0), (-INF, 0.0), (1e4, 0.0), (-1e4, 0.0), (0.0, 0.25)],
    "tanh": [(INF, 0.0), (-INF, 0.0), (1e4, 0.0), (-1e4, 0.0), (0.0, 1.0)],
    "relu": [(INF, 1.0), (-INF, 0.0), (1e4, 1.0), (-1e4, 0.0), (0.0, 0.0)],
}


@pytest.mark.requires("activations")
@pytest.mark.parametrize("name", NAMES)
def test_activation_edge_cases(backend: Backend, dtype: str, name: str, conformance: Checker) -> None:
    """±0, large ±x, ±inf and NaN: exact limits, NaN propagates, no overflow warning or exception.

    A naive ``1/(1+exp(-x))`` overflows at x = -1e4 and fails here. The sign of tanh's zero
    is checked (tanh is odd); relu(-0) may be either zero.
    """
    big = float(np.finfo(dtype).max)
    cases = [*EDGES[name], (big, big if name == "relu" else 1.0), (-big, -1.0 if name == "tanh" else 0.0)]
    x = np.array([point for point, _ in cases] + [np.nan], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        try:
            values = backend.activation(name, x)
            grads = backend.activation_grad(
                name, np.array([point for point, _ in EDGE_GRADS[name]] + [np.nan], dtype=dtype)
            )
        except (FloatingPointError, RuntimeWarning, OverflowError) as exc:
            conformance.fail(f"{name} raised or warned on extreme inputs {x.tolist()}: {type(exc).__name__}: {exc}")
            return
    for (point, expected), got in zip(cases, values[:-1].tolist()):
        if got != expected or (name == "tanh" and np.signbit(got) != np.signbit(expected)):
            conformance.fail(f"{name}({point!r}) = {got!r}, expected {expected!r}")
    if not np.isnan(values[-1]):
        conformance.fail(f"{name}(nan) = {values[-1]!r}: NaN must propagate, not be swallowed")
    if name != "relu" and not np.isnan(grads[-1]):
        conformance.fail(f"{name}'(nan) = {grads[-1]!r}: NaN must propagate")
    for (point, expected), got in zip(EDGE_GRADS[name], grads[:-1].tolist()):
        if got != expected:
            conformance.fail(f"{name}'({point!r}) = {got!r}, expected {expected!r}")


@pytest.mark.requires("activations")
@pytest.mark.parametrize("name", NAMES)
def test_activation_properties(backend: Backend, dtype: str, name: str, conformance: Checker) -> None:
    """Range, monotonicity, sigma(x) + sigma(-x) = 1, tanh odd, relu the identity for x > 0."""
    x = np.sort(grid(dtype))
    y = backend.activation(name, x)
    if np.any(np.diff(y) < 0):
        i = int(np.argmax(np.diff(y) < 0))
        conformance.fail(f"{name} is not monotonic: f({x[i]!r}) = {y[i]!r} > f({x[i + 1]!r}) = {y[i + 1]!r}")
    low, high = {"sigmoid": (0, 1), "tanh": (-1, 1), "relu": (0, np.inf)}[name]
    if np.any(y < low) or np.any(y > high):
        conformance.fail(f"{name} leaves its range [{low}, {high}]: min {y.min()!r}, max {y.max()!r}")
    mirrored = backend.activation(name, -x)
    if name == "sigmoid":
        conformance.close("sigmoid(x) + sigmoid(-x) - 1", y.astype(np.float64) + mirrored, np.ones_like(y, np.float64))
    elif name == "tanh" and not np.array_equal(mirrored, -y):
        conformance.fail("tanh is not odd: tanh(-x) != -tanh(x)")
    elif name == "relu" and not np.array_equal(y[x > 0], x[x > 0]):
        conformance.fail("relu(x) != x for some x > 0")


@pytest.mark.requires("activations")
@pytest.mark.parametrize("name", NAMES)
def test_activation_preserves_dtype_shape_and_input(
    backend: Backend, dtype: str, name: str, conformance: Checker
) -> None:
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5)).astype(dtype)
    before = x.copy()
    for what, fn in (("activation", backend.activation), ("activation_grad", backend.activation_grad)):
        y = fn(name, x)
        if not isinstance(y, np.ndarray) or y.dtype != x.dtype or y.shape != x.shape:
            conformance.fail(
                f"{what}({name}) returned {type(y).__name__} {getattr(y, 'dtype', '')} {np.shape(y)}"
                f" for {dtype} {x.shape}"
            )
        if not np.array_equal(x, before):
            conformance.fail(f"{what}({name}) modified its input")
