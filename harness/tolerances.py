"""The one visible table of conformance tolerances.

A comparison passes when, for every element,

    |actual - expected| <= atol * max|expected| + rtol * |expected|

``atol`` is relative to the largest magnitude in the expected array, so one tolerance
fits logits and gradients alike, whatever their scale. A check not in the table uses its
dtype's ``*`` row. Backends widen a tolerance through the ``harness_tolerance_overrides``
hook, with a reason that the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str = "default"

    def __str__(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g}*max|expected| ({self.reason})"


# (check, dtype) -> tolerance. float32 backends are compared with a float64 oracle, so the
# float32 rows allow a few thousand ULPs of accumulated rounding over ~1e4-term sums.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("*", "float64"): Tolerance(rtol=1e-9, atol=1e-10),
    ("*", "float32"): Tolerance(rtol=1e-4, atol=2e-5),
    ("gradients", "float32"): Tolerance(rtol=1e-3, atol=1e-4),
    ("train_step", "float32"): Tolerance(rtol=1e-4, atol=1e-5),
    # Finite differences carry O(h^2) truncation and O(eps/h) rounding error.
    ("gradient_finite_differences", "float64"): Tolerance(rtol=1e-5, atol=1e-6),
}


def default_tolerance(check: str, dtype: str) -> Tolerance:
    return TOLERANCES.get((check, dtype)) or TOLERANCES[("*", dtype)]


# Activation values are compared elementwise in units in the last place of the backend's
# dtype, against the float64 oracle: a correctly rounded result is within 0.5 ulp.
ULP_TOLERANCES: dict[str, float] = {"float32": 8.0, "float64": 8.0}
