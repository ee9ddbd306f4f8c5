"""Extremes whose answers are exact by construction: confident wrong predictions, and pools that divide.

The cross-entropy gradient at large logits is exact in every precision when the logits are
exactly representable and far apart: softmax is then 1 at the predicted class and 0 elsewhere
(``exp(-8192)`` is 0 in every float format), so ``dL/dlogits = softmax - onehot`` is exactly
``e_predicted - e_target`` per sample. A loss that clips probabilities (a zero gradient for a
confidently wrong prediction) or takes ``log(softmax)`` (``log(0)``: an infinite loss and NaN
gradients) fails at any precision on any machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec
from harness.contract.backend import Backend
from harness.net.precision import precision, storage_dtype
from harness.net.testdata import SMALL_BATCH, random_images, random_params, to_precision
from harness.pytest_plugin import Checker

LARGE_LOGIT = 8192.0
"""2**13: exact in float16 and bfloat16, and SMALL_BATCH of them (the loss) stays below float16's 65504."""


@pytest.mark.requires("backward")
def test_cross_entropy_gradient_at_large_logits(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """A confidently wrong prediction has a finite loss and the full gradient ``e_predicted - e_target``.

    The last layer's weights are zero and its bias puts LARGE_LOGIT on one class, so the logits
    are the bias exactly, in every precision; every target is another class. The loss is
    LARGE_LOGIT per sample and the last bias's gradient counts, per class, the samples it is
    predicted for minus those it is the target of. The tolerance is one unit roundoff of the
    precision per sample (the values are small integers, exact in every format).
    """
    spec = NetSpec()
    params = random_params(spec, rng, dtype)
    last = spec.linear_names[-1]
    predicted = int(rng.integers(spec.num_classes))
    bias = np.zeros(spec.num_classes)
    bias[predicted] = LARGE_LOGIT
    params[f"{last}.weight"] = to_precision(np.zeros(params[f"{last}.weight"].shape), dtype)
    params[f"{last}.bias"] = to_precision(bias, dtype)
    x = random_images(spec, SMALL_BATCH, rng, dtype)
    others = [c for c in range(spec.num_classes) if c != predicted]
    target = rng.choice(others, size=SMALL_BATCH).astype(np.int64)
    value, grads = backend.gradients(spec, params, x, target, loss="cross_entropy", device=device, dtype=dtype)
    bad = sorted(name for name, g in grads.items() if not np.all(np.isfinite(np.asarray(g, np.float64))))
    if not np.isfinite(value) or bad:
        conformance.fail(
            f"cross-entropy at logits {LARGE_LOGIT:g} apart gave loss {value!r} and non-finite gradients of"
            f" {bad or 'none'}; a stable cross-entropy is log-sum-exp shifted by each row's maximum"
        )
    expected = np.zeros(spec.num_classes)
    expected[predicted] = SMALL_BATCH
    np.subtract.at(expected, target, 1.0)
    got = np.asarray(grads[f"{last}.bias"], np.float64)
    allowed = SMALL_BATCH * precision(dtype).unit_roundoff
    error = float(np.max(np.abs(got - expected)))
    if error > allowed:
        conformance.fail(
            f"d(cross_entropy)/d({last}.bias) at a confidently wrong prediction is {np.round(got, 4).tolist()},"
            f" expected exactly {expected.tolist()} (largest error {error:.3g} > {allowed:.3g}); a zero"
            " gradient means probabilities were clipped, which stops learning exactly where it is most wrong"
        )
    loss_error = abs(value - LARGE_LOGIT * SMALL_BATCH) / (LARGE_LOGIT * SMALL_BATCH)
    if loss_error > SMALL_BATCH * precision(dtype).unit_roundoff:
        conformance.fail(f"cross-entropy is {value!r}, expected {LARGE_LOGIT * SMALL_BATCH:g} ({storage_dtype(dtype)})")
