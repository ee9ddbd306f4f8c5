"""The benchmark fast path is checked like the contract: what is timed is what conforms.

``prepare()`` returns the object the benchmarks time. Its logits, and its parameters after
one SGD step, are compared with the oracle at the same tolerances as ``forward_values`` and
``train_step``. Two calls on two inputs guard against a fast path that returns a stale or
cached result.

The fast path is also checked under use, as the benchmarks use it: several train steps in a
row against the oracle's steps (a second step must be computed like the first: gradients
zeroed, no momentum, a constant learning rate), the forward after those steps (it must follow
the parameters they updated), and the forward at every batch the benchmarks time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.bench.fastpath import fast_path_adapters
from harness.contract.backend import Backend
from harness.net.testdata import (
    SMALL_BATCH,
    as_float64,
    data_away_from_kinks,
    kink_clearance,
    random_images,
    random_params,
    random_target,
)
from harness.pytest_plugin import Checker
from harness.versions import CONTRACT_CHANGES

LOSSES = [pytest.param(loss, id=loss) for loss in ("sse", "cross_entropy")]
LEARNING_RATE = 0.01
BENCHMARK_BATCHES = (64, 256)
"""The batches suites/bench_net.py times beyond 1 (tests/test_fast_path_guards.py holds the two equal)."""
STEPS = 3
"""Train steps in a row: the second shows state carried from the first, the third a trend (a growing rate)."""
STEPS_BATCH = 3
"""Few samples, so that three steps' data all lie away from the kinks in a few draws."""
STEP_RATES = {"sse": 1e-4, "cross_entropy": 1e-2}
"""Rates at which three steps stay away from the kinks from random parameters (the squared error's
gradient is larger: at 1e-3 three steps already blow its logits up a thousandfold)."""


def prepared(backend: Backend, spec: NetSpec, params: dict[str, np.ndarray], device: str, dtype: str) -> Any:
    prepare = getattr(backend, "prepare", None)
    if prepare is None:
        pytest.skip(f"backend {backend.name!r} has no prepare(): its benchmarks time the contract methods")
    return prepare(spec, params, device=device, dtype=dtype)


@pytest.mark.requires("forward")
@pytest.mark.parametrize("batch", [pytest.param(b, id=f"batch{b}") for b in (1, 7, *BENCHMARK_BATCHES)])
def test_prepared_forward(
    backend: Backend, dtype: str, device: str, batch: int, rng: np.random.Generator, conformance: Checker
) -> None:
    spec = NetSpec()
    params = random_params(spec, rng, dtype)
    net = prepared(backend, spec, params, device, dtype)
    to_device, to_host, synchronize = fast_path_adapters(net)
    tolerance = conformance.tolerance()  # forward_values' overrides govern it too
    for call in (1, 2):
        x = random_images(spec, batch, rng, dtype)
        out = net.forward(to_device(x))
        synchronize()
        expected = oracle.forward(spec, as_float64(params), x.astype(np.float64))
        conformance.close(f"prepared logits, call {call}", np.asarray(to_host(out)), expected, tolerance=tolerance)


@pytest.mark.requires("train_step")
@pytest.mark.parametrize("loss", LOSSES)
def test_prepared_train_step(
    backend: Backend, dtype: str, device: str, loss: str, rng: np.random.Generator, conformance: Checker
) -> None:
    spec = NetSpec()
    params, x = data_away_from_kinks(spec, SMALL_BATCH, rng, dtype)
    target = random_target(spec, loss, SMALL_BATCH, rng, dtype)
    net = prepared(backend, spec, params, device, dtype)
    require_train_step(backend, net, conformance)
    to_device, _, synchronize = fast_path_adapters(net)
    net.train_step(to_device(x), to_device(target), loss=loss, lr=LEARNING_RATE)
    synchronize()
    after = {name: np.asarray(value) for name, value in net.parameters().items()}
    expected = oracle.sgd_step(spec, as_float64(params), x.astype(np.float64), target, loss, LEARNING_RATE)
    tolerance = conformance.tolerance()  # train_step's overrides govern it too
    for name in spec.parameter_shapes():
        if name not in after:
            conformance.fail(f"parameters() of the prepared object has no {name!r}")
        conformance.close(f"prepared {name}", after[name], expected[name], tolerance=tolerance)


def require_train_step(backend: Backend, net: Any, conformance: Checker) -> None:
    missing = [m for m in ("train_step", "parameters") if not callable(getattr(net, m, None))]
    if missing:
        conformance.fail(
            f"backend {backend.name!r} declares train_step, but its prepare() object lacks {' and '.join(missing)}();"
            f" {CONTRACT_CHANGES['prepared-parameters']}; the benchmarks would time a step nobody checked"
            " (see docs/plugin-api-changelog.md)"
        )


def steps_away_from_kinks(
    spec: NetSpec, loss: str, rng: np.random.Generator, dtype: str, attempts: int = 100
) -> tuple[dict[str, np.ndarray], list[tuple[np.ndarray, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Parameters, STEPS + 1 batches (inputs, targets), and the oracle's parameters after each step.

    Drawn until each step's batch is clear of every kink of the parameters it meets
    (:func:`~harness.net.testdata.kink_clearance`), so that rounding cannot route a gradient or a max-pool winner
    differently from the oracle at any step. The last batch is for the forward, which is
    continuous at the kinks and needs no margin.
    """
    lr = STEP_RATES[loss]
    for _ in range(attempts):
        params = random_params(spec, rng, dtype)
        batches = [
            (random_images(spec, STEPS_BATCH, rng, dtype), random_target(spec, loss, STEPS_BATCH, rng, dtype))
            for _ in range(STEPS + 1)
        ]
        trajectory, current = [], as_float64(params)
        for x, target in batches[:STEPS]:
            if np.min(kink_clearance(spec, current, x, dtype)) < 1:
                break
            current = oracle.sgd_step(spec, current, x.astype(np.float64), target, loss, lr)
            trajectory.append(current)
        else:
            return params, batches, trajectory
    raise RuntimeError(f"no data clear of every kink at {dtype}'s bound over {STEPS} steps in {attempts} draws")


@pytest.mark.requires("train_step")
@pytest.mark.parametrize("loss", LOSSES)
def test_prepared_train_steps(
    backend: Backend, dtype: str, device: str, loss: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """STEPS prepared train steps in a row, each on new data, against the oracle's steps.

    Each step must start from the parameters the last one left and apply exactly
    p - lr * dL/dp: gradients left over from an earlier step, momentum, or a rate that
    changes from step to step make the second or third step differ. The prepared forward
    then must compute with the parameters the steps updated, not a copy taken at prepare().
    """
    spec = NetSpec()
    params, batches, trajectory = steps_away_from_kinks(spec, loss, rng, dtype)
    net = prepared(backend, spec, params, device, dtype)
    require_train_step(backend, net, conformance)
    to_device, to_host, synchronize = fast_path_adapters(net)
    tolerance = conformance.tolerance()  # train_step's overrides govern it too
    for step, ((x, target), expected) in enumerate(zip(batches, trajectory), start=1):
        net.train_step(to_device(x), to_device(target), loss=loss, lr=STEP_RATES[loss])
        synchronize()
        after = {name: np.asarray(value) for name, value in net.parameters().items()}
        for name in spec.parameter_shapes():
            if name not in after:
                conformance.fail(f"parameters() of the prepared object has no {name!r}")
            conformance.close(
                f"prepared {name} after step {step} of {STEPS}", after[name], expected[name], tolerance=tolerance
            )
    x = batches[-1][0]
    out = net.forward(to_device(x))
    synchronize()
    conformance.close(
        f"prepared logits after {STEPS} prepared train steps (forward must use the updated parameters)",
        np.asarray(to_host(out)),
        oracle.forward(spec, trajectory[-1], x.astype(np.float64)),
        tolerance=conformance.tolerance("prepared_forward"),
    )
