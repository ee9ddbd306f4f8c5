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


FLOAT16_MAX = 65504.0
BEYOND_FLOAT16 = 2.0**20
"""What every layer's largest output is scaled to: 16 times float16's largest value, and far
inside bfloat16's and float32's (3.4e38), with room for a product of two such values' logs."""


def beyond_float16_range(
    spec: NetSpec, rng: np.random.Generator, dtype: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parameters and images whose every conv and linear layer peaks near BEYOND_FLOAT16 (ReLU network).

    Each layer's weight and bias are scaled in turn so that its largest output, given the
    layers before it, is BEYOND_FLOAT16; ReLU and max pooling keep the magnitude, so every
    activation and pool beyond float16's range too. Scaling changes no relative error, so the
    forward's derived bound applies unchanged.
    """
    from harness import oracle
    from harness.net.testdata import as_float64

    params = as_float64(random_params(spec, rng, "float64"))
    x = random_images(spec, SMALL_BATCH, rng, "float64")
    for name in (*spec.conv_names, *spec.linear_names):
        peak = float(np.max(np.abs(oracle.forward_layers(spec, params, x)[name])))
        for part in ("weight", "bias"):
            params[f"{name}.{part}"] = params[f"{name}.{part}"] * (BEYOND_FLOAT16 / peak)
    return {k: to_precision(v, dtype) for k, v in params.items()}, to_precision(x, dtype)


@pytest.mark.requires("forward")
def test_forward_beyond_float16_range(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Every layer peaks past float16's range (65504): each precision wider than float16 must hold it.

    A backend that declares bfloat16 (or float32) but stores or computes a layer in float16
    overflows to inf there; at float16 itself the data are out of range by construction, and
    the check is skipped. Compared with the oracle at ``forward_values``' tolerance, which is
    relative to the logits' scale.
    """
    from harness import oracle
    from harness.net.testdata import as_float64

    if dtype == "float16":
        pytest.skip("the data exceed float16's range by construction: the check is for wider precisions")
    spec = NetSpec()
    params, x = beyond_float16_range(spec, rng, dtype)
    out = backend.forward(spec, params, x, device=device, dtype=dtype)
    expected = oracle.forward(spec, as_float64(params), x.astype(np.float64))
    if not np.all(np.isfinite(out)):
        conformance.fail(
            f"{int(np.sum(~np.isfinite(out)))}/{out.size} logits are not finite with every layer near"
            f" {BEYOND_FLOAT16:g} (beyond float16's {FLOAT16_MAX:g}, within {dtype}'s range): a layer is stored"
            " or computed in float16"
        )
    conformance.close(
        f"logits with every layer near {BEYOND_FLOAT16:g}",
        out,
        expected,
        tolerance=conformance.tolerance("forward_values"),
    )
