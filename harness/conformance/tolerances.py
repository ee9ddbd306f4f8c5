"""Conformance tolerances, derived from each precision's arithmetic (see ``docs/tolerances.md``).

A comparison passes when, for every element,

    |actual - expected| <= atol * max|expected| + rtol * |expected|

``atol`` is relative to the largest magnitude in the expected array, so one tolerance fits
logits and gradients alike, whatever their scale. Both are the derived bound of
:mod:`harness.net.precision` for the check's family, at the configuration's spec and batch,
plus the float64 oracle's own bound, times :data:`harness.net.precision.SAFETY`. The
finite-difference check keeps its own row (its error is truncation, not rounding).
Backends widen a tolerance through the ``harness_tolerance_overrides`` hook, with a reason
that the report shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.net.bounds import backward_bound, forward_bound
from harness.net.precision import PRECISIONS, SAFETY, gamma
from harness.net.spec import NetSpec
from harness.net.variants import SEED, SPEC_VARIANTS


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str = "default"
    source: str = "default"
    """``default`` (derived), or ``override`` (widened by a backend's hook)."""

    def __str__(self) -> str:
        return f"rtol={self.rtol:.3g}, atol={self.atol:.3g}*max|expected| ({self.reason})"


FORWARD_CHECKS = ("forward_values", "intermediate_values", "prepared_forward")
BACKWARD_CHECKS = ("gradients", "maxpool_tie_subgradient", "relu_subgradient_at_zero")
LOSS_CHECKS = ("loss_values", "cross_entropy_stability")
DEFAULT_BATCH = 8
"""The batch the bounds assume where a check's configuration names none (the suite's largest below 64)."""

# Finite differences carry O(h^2) truncation and O(eps/h) rounding error, not accumulation.
FIXED: dict[tuple[str, str], Tolerance] = {
    ("gradient_finite_differences", "float64"): Tolerance(rtol=1e-5, atol=1e-6),
}


def derived_bound(check: str, dtype: str, spec: NetSpec, batch: int) -> float:
    """The relative error bound of ``check`` in precision ``dtype``, before the safety factor."""
    p = PRECISIONS[dtype]
    if check in BACKWARD_CHECKS or check == "gradient_finite_differences":
        return backward_bound(spec, p, batch)
    if check in LOSS_CHECKS:
        return forward_bound(spec, p) + gamma(batch * spec.num_classes, p.accumulate_roundoff) + p.unit_roundoff
    # forward checks, and the new parameters of a training step: p - lr * g is stored once
    # more, and at the suite's learning rates lr * |g| stays below |p| / 10, so the
    # gradient's error enters at a tenth of its size.
    if check in ("train_step", "prepared_train_step"):
        return p.unit_roundoff + forward_bound(spec, p) + backward_bound(spec, p, batch) / 10
    return forward_bound(spec, p)


def default_tolerance(check: str, dtype: str, config: Mapping[str, Any] | None = None) -> Tolerance:
    """The tolerance of ``check`` at ``dtype`` (a precision name) for a test's configuration."""
    if (check, dtype) in FIXED:
        return FIXED[(check, dtype)]
    config = config or {}
    spec = SPEC_VARIANTS.get(str(config.get("variant", SEED)), SPEC_VARIANTS[SEED])
    batch = int(config.get("batch", DEFAULT_BATCH))
    bound = derived_bound(check, dtype, spec, batch) + derived_bound(check, "float64", spec, batch)
    return Tolerance(rtol=SAFETY * bound, atol=SAFETY * bound)


def loss_rounding(spec: NetSpec, params: Mapping[str, Any], x: Any, target: Any, loss: str) -> float:
    """How far a correct float64 backend's loss may lie from the exact one, whatever order it sums in.

    In the tolerance model the logits are within ``B (max|z| + |z|)`` of exact (``B`` the
    float64 forward bound), and the loss moves by at most ``|dL/dz|`` times that; its own
    sum and rounding add ``gamma_{N classes} + u`` of the sum of its terms, which is the loss
    itself (every term is non-negative). A central difference ``(L(p+h) - L(p-h)) / 2h`` of
    a backend's loss is off by up to this over ``h`` from rounding alone, evaluated at ``p``
    (it changes by a relative O(h) between ``p + h`` and ``p - h``).
    """
    from harness.net import oracle

    p = PRECISIONS["float64"]
    logits = oracle.forward(spec, {k: np.asarray(v, np.float64) for k, v in params.items()}, np.asarray(x, np.float64))
    slope = np.abs(oracle.loss_grad(loss, logits, target))
    moved = forward_bound(spec, p) * float(np.sum(slope * (np.max(np.abs(logits)) + np.abs(logits))))
    own = (gamma(logits.size, p.accumulate_roundoff) + p.unit_roundoff) * abs(oracle.loss(loss, logits, target))
    return SAFETY * (moved + own)


def two_results(tolerance: Tolerance) -> Tolerance:
    """The tolerance between two results that are each within ``tolerance`` of one exact value.

    A check that compares a backend with itself (another batch size, another layout, another
    call) has no exact value at hand, and its two results may take different kernels that
    round differently. If each is within ``r |e| + t max|e|`` of the exact ``e``, they are
    within ``2r/(1-r) |b| + 2t/((1-r)(1-r-t)) max|b|`` of each other, written relative to
    either one, ``b``: about twice the tolerance.
    """
    r, t = tolerance.rtol, tolerance.atol
    if r + t >= 1:
        return Tolerance(rtol=math.inf, atol=math.inf, reason=tolerance.reason, source=tolerance.source)
    return Tolerance(
        rtol=2 * r / (1 - r),
        atol=2 * t / ((1 - r) * (1 - r - t)),
        reason=f"{tolerance.reason}, between two results",
        source=tolerance.source,
    )


# Activation values are compared elementwise in units in the last place of the backend's
# precision, against the exact value (oracle.activation_exact): a correctly rounded result is
# within 0.5 ulp, and 8 is the spec's accuracy contract for tanh, sigmoid and relu.
ULP_TOLERANCES: dict[str, float] = dict.fromkeys(PRECISIONS, 8.0)

DERIVATIVE_UNITS = 8.0
"""activation_derivatives' tolerance, in units of eps times (|f'| + |y df'/dy|) at each point
(8, like the values' 8 ulp): a bound on the rounding of a correctly rounded derivative."""
