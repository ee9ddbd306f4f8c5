"""The tolerances of checks whose two sides both round: two results of one backend.

``two_results`` compares a backend with itself (another batch size, layout, call) where
either side may take other kernels; it must hold whatever order each kernel sums in.
"""

from __future__ import annotations

import numpy as np

from harness.conformance.compare import compare
from harness.conformance.tolerances import Tolerance, two_results


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
