"""Gradients at every element: random directional derivatives against central differences, in float64.

``gradient_finite_differences`` probes three coordinates of each tensor, so a gradient wrong
at one kernel tap, one border pixel or one row of a weight passes it most of the time. Here
each tensor (every parameter, and the input) is moved along a random direction ``v`` with
no zero entry, and the backend's own loss gives the directional derivative

    (L(p + h v) - L(p - h v)) / 2h  =  <dL/dp, v> + O(h^2)

which every element of the gradient enters with a continuous random weight: an error at
any element changes the right-hand side (as in torch's fast gradcheck). Two loss
evaluations per tensor, whatever its size.

The tolerance is ``gradient_finite_differences``' (truncation and rounding of the quotient),
with its ``atol`` taken relative to ``sum |dL/dp_i v_i|``, the scale of the dot product: a
cancelling sum cannot make the check flaky. To it is added what the rounding of the two loss
values may reach over 2h whatever order the backend sums in
(:func:`~harness.conformance.tolerances.loss_rounding` over h). With ``|v| = 1`` and ``h = 1e-5`` the measured
error is below 1e-8 of that scale on the correct backends; the tolerance is 1e-6 of it.
The smooth activations are used, and data whose max-pool windows are clear of ties
(``data_away_from_kinks``), so the step never crosses a kink.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.conformance.tolerances import loss_rounding
from harness.contract.backend import Backend
from harness.net.spec import NetSpec
from harness.net.testdata import SMALL_BATCH, data_away_from_kinks, random_target
from harness.net.variants import SPEC_VARIANTS
from harness.pytest_plugin import Checker
from harness.results import Measurement

STEP = 1e-5
"""h, for a unit-norm direction."""
MIN_MARGIN = 1e-5
"""How far (relative to each layer's scale) every max-pool window's winner stays ahead."""
CASES = [
    pytest.param(SPEC_VARIANTS["tanh"], "cross_entropy", id="tanh-cross_entropy"),
    pytest.param(SPEC_VARIANTS["sigmoid"], "sse", id="sigmoid-sse"),
]


@pytest.mark.requires("backward")
@pytest.mark.parametrize(("spec", "loss"), CASES)
def test_gradcheck(
    backend: Backend, dtype: str, device: str, spec: NetSpec, loss: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Along one random direction per tensor, the gradient's dot product equals the loss's slope."""
    if dtype != "float64":
        pytest.skip("directional differences need float64: float32 rounding swamps the difference quotient")
    params, x = data_away_from_kinks(spec, SMALL_BATCH, rng, dtype, min_margin=MIN_MARGIN)
    target = random_target(spec, loss, SMALL_BATCH, rng, dtype)
    _, grads = backend.gradients(spec, params, x, target, loss=loss, device=device, dtype=dtype)  # type: ignore[attr-defined]

    def loss_at(name: str, moved: np.ndarray) -> float:
        p, inputs = (params, moved) if name == "input" else ({**params, name: moved}, x)
        value, _ = backend.gradients(spec, p, inputs, target, loss=loss, device=device, dtype=dtype)  # type: ignore[attr-defined]
        return float(value)

    tolerance = conformance.tolerance("gradient_finite_differences")
    rounding = loss_rounding(spec, params, x, target, loss) / STEP  # (eps(L+) + eps(L-)) / 2h
    for name in [*params, "input"]:
        base = x if name == "input" else params[name]
        if name not in grads or np.shape(grads[name]) != base.shape:
            conformance.fail(f"d{loss}/d{name}: missing or shaped {np.shape(grads.get(name))}, expected {base.shape}")
        z = rng.standard_normal(base.shape)
        v = z / np.linalg.norm(z)
        numeric = (loss_at(name, base + STEP * v) - loss_at(name, base - STEP * v)) / (2 * STEP)
        terms = np.asarray(grads[name], np.float64) * v
        analytic, scale = float(terms.sum()), float(np.abs(terms).sum())
        error = abs(analytic - numeric)
        allowed = tolerance.rtol * abs(numeric) + tolerance.atol * scale + rounding
        conformance.record(
            Measurement(
                what=f"d{loss}/d{name} along a random direction",
                max_abs_error=error,
                max_rel_error=error / scale if scale else (np.inf if error else 0.0),
                rtol=tolerance.rtol,
                atol=tolerance.atol,
                headroom=allowed / error if error else np.inf,
                tolerance_reason=(
                    f"{tolerance.reason}; atol relative to sum|g_i v_i| = {scale:.3g};"
                    f" + {rounding:.2g} for the loss's rounding over 2h"
                ),
                mismatched=int(not error <= allowed),
                total=1,
            )
        )
        if not error <= allowed:
            conformance.fail(
                f"d{loss}/d{name} along a random unit direction over all {base.size} elements: gradient gives"
                f" {analytic:.10g}, central differences (h={STEP:g}) give {numeric:.10g}; difference {error:.3g}"
                f" > {allowed:.3g} (rtol={tolerance.rtol:g} of the slope + atol={tolerance.atol:g} of"
                f" sum|g_i v_i| = {scale:.3g} + {rounding:.2g} for the loss's rounding)"
            )
