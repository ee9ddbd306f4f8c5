"""The benchmark fast path is checked like the contract: what is timed is what conforms.

``prepare()`` returns the object the benchmarks time. Its logits, and its parameters after
one SGD step, are compared with the oracle at the same tolerances as ``forward_values`` and
``train_step``. Two calls on two inputs guard against a fast path that returns a stale or
cached result.
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
    random_images,
    random_params,
    random_target,
)
from harness.pytest_plugin import Checker

LOSSES = [pytest.param(loss, id=loss) for loss in ("sse", "cross_entropy")]
LEARNING_RATE = 0.01


def prepared(backend: Backend, spec: NetSpec, params: dict[str, np.ndarray], device: str, dtype: str) -> Any:
    prepare = getattr(backend, "prepare", None)
    if prepare is None:
        pytest.skip(f"backend {backend.name!r} has no prepare(): its benchmarks time the contract methods")
    return prepare(spec, params, device=device, dtype=dtype)


@pytest.mark.requires("forward")
@pytest.mark.parametrize("batch", [pytest.param(b, id=f"batch{b}") for b in (1, 7)])
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
    if not callable(getattr(net, "train_step", None)) or not callable(getattr(net, "parameters", None)):
        conformance.fail(
            f"backend {backend.name!r} declares train_step, but its prepare() object lacks train_step() or"
            " parameters(); the benchmarks would time a step nobody checked"
            " (see harness.contract.backend's prepare contract)"
        )
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
