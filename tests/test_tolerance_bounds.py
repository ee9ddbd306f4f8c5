"""The tolerances of checks whose two sides both round: two results of one backend, and a loss over 2h.

``two_results`` compares a backend with itself (another batch size, layout, call) where
either side may take other kernels; ``loss_rounding`` bounds what the rounding of a loss
adds to a central difference. Both must hold whatever order a kernel sums in.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import oracle
from harness.conformance.compare import compare
from harness.conformance.tolerances import Tolerance, loss_rounding, two_results
from harness.net.bounds import forward_bound
from harness.net.precision import PRECISIONS
from harness.net.testdata import random_images, random_params, random_target
from harness.net.variants import SPEC_VARIANTS


def test_two_results_each_within_a_tolerance_are_within_two_results_of_each_other() -> None:
    """Adversarial pairs at the edge of the tolerance, on either side of the exact value, still pass."""
    rng = np.random.default_rng(7)
    tolerance = Tolerance(rtol=1e-3, atol=2e-3)
    exact = rng.standard_normal(1000)
    reach = (1 - 1e-9) * (tolerance.rtol * np.abs(exact) + tolerance.atol * np.max(np.abs(exact)))
    a, b = exact + reach, exact - reach
    assert compare("a", a, exact, tolerance)[1] == "" and compare("b", b, exact, tolerance)[1] == ""
    assert compare("a against b", a, b, two_results(tolerance))[1] == ""
    assert compare("b against a", b, a, two_results(tolerance))[1] == ""
    assert compare("a against b", a, b, tolerance)[1] != ""  # one tolerance is not enough
    assert "between two results" in two_results(tolerance).reason


@pytest.mark.parametrize("loss", ["sse", "cross_entropy"])
def test_loss_rounding_covers_logits_moved_to_their_bound(loss: str) -> None:
    """Logits moved by the forward bound, each in its worst direction, move the loss by at most loss_rounding."""
    spec = SPEC_VARIANTS["tanh"]
    rng = np.random.default_rng(8)
    params, x = random_params(spec, rng), random_images(spec, 3, rng)
    target = random_target(spec, loss, 3, rng)
    logits = oracle.forward(spec, params, x)
    slope = oracle.loss_grad(loss, logits, target)
    moved = forward_bound(spec, PRECISIONS["float64"]) * (np.max(np.abs(logits)) + np.abs(logits))
    worst = oracle.loss(loss, logits + np.sign(slope) * moved, target) - oracle.loss(loss, logits, target)
    assert 0 < worst <= loss_rounding(spec, params, x, target, loss)
