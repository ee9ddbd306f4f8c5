"""A backend is deterministic, leaves its inputs alone, and answers in NumPy of the right dtype."""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec
from harness.contract.backend import Backend
from harness.net.precision import storage_dtype
from harness.net.testdata import SMALL_BATCH, random_images, random_params, random_target
from harness.pytest_plugin import Checker


@pytest.mark.requires("forward")
def test_forward_deterministic(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """The same parameters and input give bit-identical logits, call after call."""
    spec = NetSpec()
    params = random_params(spec, rng, dtype)
    x = random_images(spec, 7, rng, dtype)
    first = backend.forward(spec, params, x, device=device, dtype=dtype)
    for attempt in range(2):
        again = backend.forward(spec, params, x, device=device, dtype=dtype)
        if not np.array_equal(first, again, equal_nan=True):
            differ = int(np.sum(first != again))
            conformance.fail(
                f"forward is not deterministic: call {attempt + 2} differs in {differ}/{first.size} logits"
            )


@pytest.mark.requires("forward")
def test_forward_output_is_finite(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Finite parameters and input give finite logits of the right type, dtype and shape."""
    spec = NetSpec()
    out = backend.forward(
        spec, random_params(spec, rng, dtype), random_images(spec, 7, rng, dtype), device=device, dtype=dtype
    )
    storage = np.dtype(storage_dtype(dtype))
    if not isinstance(out, np.ndarray) or out.dtype != storage or out.shape != spec.output_shape(7):
        conformance.fail(f"forward returned {type(out).__name__} {getattr(out, 'dtype', '')} {np.shape(out)}")
    if not np.all(np.isfinite(out)):
        conformance.fail(f"forward returned {int(np.sum(~np.isfinite(out)))}/{out.size} non-finite logits")


@pytest.mark.requires("forward")
def test_inputs_not_mutated(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """No operation writes into the parameters, images or targets it is given."""
    from harness.contract.backend import Capability, supports

    spec = NetSpec()
    params = random_params(spec, rng, dtype)
    x = random_images(spec, SMALL_BATCH, rng, dtype)
    target = random_target(spec, "cross_entropy", SMALL_BATCH, rng, dtype)
    copies = ({k: v.copy() for k, v in params.items()}, x.copy(), target.copy())
    backend.forward(spec, params, x, device=device, dtype=dtype)
    if supports(backend, Capability.BACKWARD):
        backend.gradients(spec, params, x, target, loss="cross_entropy", device=device, dtype=dtype)  # type: ignore[attr-defined]
    if supports(backend, Capability.TRAIN_STEP):
        backend.train_step(spec, params, x, target, loss="cross_entropy", lr=0.1, device=device, dtype=dtype)  # type: ignore[attr-defined]
    changed = [name for name in params if not np.array_equal(params[name], copies[0][name])]
    if changed or not np.array_equal(x, copies[1]) or not np.array_equal(target, copies[2]):
        conformance.fail(
            f"the backend modified its inputs: parameters {changed}, images {not np.array_equal(x, copies[1])}"
        )
