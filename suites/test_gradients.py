"""Gradients agree with the oracle for both losses, and with central finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.conformance.compare import compare
from harness.conformance.tolerances import Tolerance, loss_rounding
from harness.contract.backend import Backend, Capability, supports
from harness.net.testdata import (
    SMALL_BATCH,
    as_float64,
    data_away_from_kinks,
    distinct_values_per_window,
    large_batch_away_from_kinks,
    random_images,
    random_params,
    random_target,
    tied_pool_data,
)
from harness.net.variants import EVERY_FIELD, POOLS_DIVIDE
from harness.pytest_plugin import Checker
from harness.pytest_plugin.params import variant_params

LOSSES = [pytest.param(loss, id=loss) for loss in ("sse", "cross_entropy")]
VARIANTS = variant_params((*EVERY_FIELD, *POOLS_DIVIDE))
"""Every other spec field, sigmoid's backward inside the network, and a non-square input every pool
divides (see harness.net.variants); tanh's
is in gradient_finite_differences and gradcheck (a compiling backend pays a graph per network)."""


@pytest.mark.requires("backward")
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch", [pytest.param(b, id=f"batch{b}") for b in (1, SMALL_BATCH)])
def test_gradients(
    backend: Backend, dtype: str, device: str, loss: str, batch: int, rng: np.random.Generator, conformance: Checker
) -> None:
    """The loss value and the gradient of every parameter and of the input."""
    check_gradients(backend, NetSpec(), batch, dtype, device, loss, rng, conformance)


@pytest.mark.requires("backward")
@pytest.mark.check("gradients")
@pytest.mark.parametrize("spec", VARIANTS)
def test_gradients_variants(
    backend: Backend, dtype: str, device: str, spec: NetSpec, rng: np.random.Generator, conformance: Checker
) -> None:
    """As ``gradients``, on networks that change every spec field (cross-entropy, SMALL_BATCH samples)."""
    check_gradients(backend, spec, SMALL_BATCH, dtype, device, "cross_entropy", rng, conformance)


LARGE_BATCH = 160
"""Above 128, where a backward that splits large batches (micro-batching, chunked accumulation)
starts splitting; not a multiple of 32 or 64, so the last chunk is ragged."""


@pytest.mark.requires("backward")
@pytest.mark.check("gradients")
def test_gradients_large_batch(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """As ``gradients`` (cross-entropy) at a batch above 128: every sample's gradient is in the sum."""
    check_gradients(backend, NetSpec(), LARGE_BATCH, dtype, device, "cross_entropy", rng, conformance)


def check_gradients(
    backend: Backend,
    spec: NetSpec,
    batch: int,
    dtype: str,
    device: str,
    loss: str,
    rng: np.random.Generator,
    conformance: Checker,
) -> None:
    if batch > SMALL_BATCH:
        params, x = large_batch_away_from_kinks(spec, batch, rng, dtype)
    else:
        params, x = data_away_from_kinks(spec, batch, rng, dtype)
    target = random_target(spec, loss, batch, rng, dtype)
    value, grads = backend.gradients(spec, params, x, target, loss=loss, device=device, dtype=dtype)
    expected_value, expected = oracle.gradients(spec, as_float64(params), x.astype(np.float64), target, loss)
    missing = sorted(set(expected) - set(grads))
    if missing:
        conformance.fail(f"gradients are missing for {missing}")
    conformance.close("loss", np.asarray(value), np.asarray(expected_value))
    for name, reference in expected.items():
        conformance.close(f"d{loss}/d{name}", grads[name], reference)


@pytest.mark.requires("backward")
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_finite_differences(
    backend: Backend, dtype: str, device: str, loss: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Backend gradients against central differences of the backend's own loss, in float64.

    The spec uses tanh here: central differences straddling a ReLU kink would measure the
    kink, not the gradient. Three coordinates of every parameter and of the input are sampled.
    One sample, not SMALL_BATCH: the loss sums over the batch, so each sample more adds its
    rounding error to every difference quotient, while an input pixel's derivative involves
    one sample only (at batch 7 the smallest headroom over 20 seeds fell from 13 to 1.4).

    At h = 1e-6 the quotient's error is mostly the rounding of the two loss values, which
    depends on the order the backend's kernels sum in: the tolerance adds what that rounding
    may reach in any order (:func:`~harness.conformance.tolerances.loss_rounding` over h) to
    the fixed row, which covers the O(h^2) truncation.
    """
    if dtype != "float64":
        pytest.skip("finite differences need float64: float32 rounding swamps the difference quotient")
    spec = NetSpec(activation="tanh")
    params = random_params(spec, rng, dtype)
    x = random_images(spec, 1, rng, dtype)
    target = random_target(spec, loss, 1, rng, dtype)
    _, grads = backend.gradients(spec, params, x, target, loss=loss, device=device, dtype=dtype)

    def loss_at(p: dict[str, np.ndarray], inputs: np.ndarray) -> float:
        value, _ = backend.gradients(spec, p, inputs, target, loss=loss, device=device, dtype=dtype)
        return value

    step = 1e-6
    fixed = conformance.tolerance("gradient_finite_differences")
    rounding = loss_rounding(spec, params, x, target, loss) / step  # (eps(L+) + eps(L-)) / 2h
    for name in [*params, "input"]:
        base = x if name == "input" else params[name]
        coords = [tuple(int(rng.integers(n)) for n in base.shape) for _ in range(3)]
        numeric, analytic = [], []
        for coord in coords:
            values = []
            for sign in (+1, -1):
                moved = base.copy()
                moved[coord] += sign * step
                if name == "input":
                    values.append(loss_at(params, moved))
                else:
                    values.append(loss_at({**params, name: moved}, x))
            numeric.append((values[0] - values[1]) / (2 * step))  # (L(p+h) - L(p-h)) / 2h
            analytic.append(grads[name][coord])
        scale = float(np.max(np.abs(numeric)))
        tolerance = Tolerance(
            rtol=fixed.rtol,
            atol=fixed.atol + (rounding / scale if scale else 0.0),  # atol is relative to max|expected|
            reason=f"{fixed.reason}; + {rounding:.2g} for the loss's rounding over 2h",
            source=fixed.source,
        )
        conformance.close(f"d{loss}/d{name} at {coords}", np.array(analytic), np.array(numeric), tolerance=tolerance)


@pytest.mark.requires("backward")
def test_maxpool_tie_subgradient(backend: Backend, dtype: str, device: str, conformance: Checker) -> None:
    """Max-pool ties: the gradient goes to the first maximum of the window, in row-major order.

    :func:`~harness.net.testdata.tied_pool_data` makes every pool window of both stages a
    four-way tie that is exact by construction: every product and partial sum before each
    pool is a small multiple of a power of two, so any summation order, blocking or thread
    split gives the same bits. Any other tie rule (last element, split evenly) moves the
    gradient and changes d loss / d input and d loss / d conv1.weight.
    """
    spec = NetSpec()
    params, x = tied_pool_data(spec, dtype)
    expected_layers = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    for name in spec.conv_names:
        assert distinct_values_per_window(expected_layers[f"{name}.act"], 2) == 1, f"{name}: the data does not tie"
    if supports(backend, Capability.INTERMEDIATES):
        layers = backend.intermediates(spec, params, x, device=device, dtype=dtype)
        for name in spec.conv_names:
            found = distinct_values_per_window(np.asarray(layers.get(f"{name}.act", expected_layers[f"{name}.act"])), 2)
            if found > 1:
                conformance.fail(
                    f"ties broken upstream at {name} by rounding ({found} distinct values in one pool window): "
                    "every value before this pool is exact in any summation order, so the convolution is "
                    "not a sum of products (a Winograd or FFT kernel?) or the values are wrong"
                )
    target = np.array([3])
    _, grads = backend.gradients(spec, params, x, target, loss="cross_entropy", device=device, dtype=dtype)
    _, expected = oracle.gradients(spec, as_float64(params), x.astype(np.float64), target, "cross_entropy")
    tolerance = conformance.tolerance("gradients")
    for name in ("input", "conv1.weight", "conv2.weight", "conv1.bias"):
        measurement, failure = compare(f"d/d{name} under ties", grads[name], expected[name], tolerance)
        conformance.record(measurement)
        if failure:
            conformance.fail(
                f"{failure}; the inputs of both pools are exact four-way ties on any machine, so the gradient "
                "does not go to each window's first maximum (row-major), as the spec's tie rule says"
            )


@pytest.mark.requires("backward")
def test_relu_subgradient_at_zero(backend: Backend, dtype: str, device: str, conformance: Checker) -> None:
    """ReLU's subgradient at exactly 0 is 0 (as in torch).

    A zero image with zero biases, the spec's init, makes every pre-activation exactly 0, so
    a backward pass that uses relu'(0) = 1 (a mask of x >= 0) sends gradient where none goes.
    Exact by construction: every product is +-0 and so is every partial sum, in any order,
    so every machine's pre-activations are exactly 0 (asserted on the oracle's). Every
    gradient is then exactly 0 but fc3's bias (a sum of softmax - onehot over the batch).
    """
    spec = NetSpec()
    params = random_params(spec, np.random.default_rng(11), dtype)
    for name in params:
        if name.endswith(".bias"):
            params[name] = np.zeros_like(params[name])
    x = np.zeros((SMALL_BATCH, spec.in_channels, spec.height, spec.width), dtype)
    target = np.arange(1, 3 * SMALL_BATCH, 3) % spec.num_classes
    layers = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    for name in [*spec.conv_names, *spec.linear_names[:-1]]:
        assert not np.any(layers[name]), f"{name}: the data's pre-activations are not all exactly 0"
    _, grads = backend.gradients(spec, params, x, target, loss="cross_entropy", device=device, dtype=dtype)
    _, expected = oracle.gradients(spec, as_float64(params), x.astype(np.float64), target, "cross_entropy")
    for name, reference in expected.items():
        conformance.close(f"d/d{name} at relu(0)", grads[name], reference, tolerance=conformance.tolerance("gradients"))
