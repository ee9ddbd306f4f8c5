"""Gradient descent: one SGD step matches the oracle, and training drives the loss down."""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.contract.backend import Backend, Capability, supports
from harness.net.testdata import (
    SMALL_BATCH,
    as_float64,
    data_away_from_kinks,
    init_scheme_params,
    large_batch_away_from_kinks,
    random_target,
)
from harness.net.variants import EVERY_FIELD
from harness.pytest_plugin import Checker
from harness.pytest_plugin.params import variant_params

LOSSES = [pytest.param(loss, id=loss) for loss in ("sse", "cross_entropy")]
LEARNING_RATE = 0.01
VARIANTS = variant_params(EVERY_FIELD)
LARGE_BATCH = 160
"""Above 128, where a step that splits large batches starts splitting (as suites/test_gradients.py)."""
"""The networks that change every field the layers depend on (see harness.net.variants)."""


@pytest.mark.requires("train_step")
@pytest.mark.parametrize("loss", LOSSES)
def test_train_step(
    backend: Backend, dtype: str, device: str, loss: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """New parameters p - lr * dL/dp, and the update itself, so a wrong sign or scale cannot hide in p."""
    check_train_step(backend, NetSpec(), SMALL_BATCH, dtype, device, loss, rng, conformance)


@pytest.mark.requires("train_step")
@pytest.mark.check("train_step")
@pytest.mark.parametrize("spec", VARIANTS)
def test_train_step_variants(
    backend: Backend, dtype: str, device: str, spec: NetSpec, rng: np.random.Generator, conformance: Checker
) -> None:
    """As ``train_step``, on networks that change every spec field (cross-entropy, SMALL_BATCH samples)."""
    check_train_step(backend, spec, SMALL_BATCH, dtype, device, "cross_entropy", rng, conformance)


@pytest.mark.requires("train_step")
@pytest.mark.check("train_step")
def test_train_step_large_batch(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """As ``train_step`` (cross-entropy) at a batch above 128 (see suites/test_gradients.py's LARGE_BATCH)."""
    check_train_step(backend, NetSpec(), LARGE_BATCH, dtype, device, "cross_entropy", rng, conformance)


def check_train_step(
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
    before = {name: value.copy() for name, value in params.items()}
    updated = backend.train_step(spec, params, x, target, loss=loss, lr=LEARNING_RATE, device=device, dtype=dtype)
    expected = oracle.sgd_step(spec, as_float64(params), x.astype(np.float64), target, loss, LEARNING_RATE)
    for name in spec.parameter_shapes():
        if not np.array_equal(params[name], before[name]):
            conformance.fail(f"train_step modified the parameters it was given ({name})")
        conformance.close(name, updated[name], expected[name])
        # Storing p - lr g rounds it by up to half an ulp of the new value, however small the
        # step (a vanishing gradient's step can be below it), and so does the oracle's float64
        # p - lr g: that much of the update's error is the two storages', and only the rest is
        # held to the gradients' tolerance. (At float64 a backend's g and the oracle's, a few
        # ulps apart in any summation order, can round p - lr g to neighbouring floats.)
        step = np.asarray(updated[name], np.float64) - params[name]
        expected_step = expected[name] - params[name].astype(np.float64)
        ulps = np.abs(np.spacing(np.asarray(updated[name]))).astype(np.float64) + np.abs(np.spacing(expected[name]))
        stored = 0.5 * ulps
        beyond = np.sign(step - expected_step) * np.maximum(np.abs(step - expected_step) - stored, 0.0)
        conformance.close(
            f"update of {name} (less half an ulp of each stored value)",
            expected_step + beyond,
            expected_step,
            tolerance=conformance.tolerance("gradients"),
        )


STEPS = 200
REQUIRED_DROP = 0.9
# The squared error's gradient is larger (2 (y - t) per logit, summed over the batch): a
# step size that suits cross-entropy makes it diverge, and 1e-3 sometimes kills every ReLU
# in the first steps (the loss then stalls at the targets' variance). 3e-4 converged on
# 60 of 60 seeds in a sweep, mostly within 30 steps; tools/seed_sweep.sh reruns the suite.
CONVERGENCE_LR = {"sse": 3e-4, "cross_entropy": 3e-3}


@pytest.mark.requires("train_step")
@pytest.mark.parametrize("loss", LOSSES)
def test_training_converges(
    backend: Backend, dtype: str, device: str, loss: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """On a fixed synthetic batch, the loss falls by at least 90% within 200 SGD steps.

    The seed's "iterate a few rounds and the output approaches the truth". The loss is
    measured by the oracle on the parameters the backend returns.
    """
    spec = NetSpec()
    batch = SMALL_BATCH
    x = rng.standard_normal((batch, spec.in_channels, spec.height, spec.width)).astype(dtype)
    target = random_target(spec, loss, batch, rng, dtype)
    if supports(backend, Capability.INIT):
        params = backend.init_params(spec, seed=int(rng.integers(2**31)), dtype=dtype)
    else:
        params = init_scheme_params(spec, rng, dtype)
    start = oracle.loss(loss, oracle.forward(spec, as_float64(params), x.astype(np.float64)), target)
    history = [start]
    for step in range(1, STEPS + 1):
        params = backend.train_step(
            spec, params, x, target, loss=loss, lr=CONVERGENCE_LR[loss], device=device, dtype=dtype
        )
        if step % 10 == 0:
            history.append(oracle.loss(loss, oracle.forward(spec, as_float64(params), x.astype(np.float64)), target))
            if history[-1] <= (1 - REQUIRED_DROP) * start:
                return
    trace = ", ".join(f"{v:.3g}" for v in history[::4])
    conformance.fail(
        f"{loss} fell from {start:.4g} to {history[-1]:.4g} in {STEPS} steps, not by {REQUIRED_DROP:.0%} ({trace})"
    )
