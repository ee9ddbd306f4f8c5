"""Calls with state in between: arrays changed in place, fresh shapes and fresh instances.

The contract methods take plain arrays and keep nothing between calls that a caller can see.
A backend that caches what it uploaded (parameters, inputs) by the array's identity answers
the second call with the first call's values when the caller changed the same arrays in
place; a backend that picks its algorithm on a shape's first call, or per instance, answers
differently there. Each check here compares with the oracle or with the same backend, so its
verdict holds on any machine: no value is compared across different kernels or batch sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.conformance.catalogue import FULL_PRECISIONS
from harness.contract.backend import Backend, Capability, supports
from harness.net.precision import storage_dtype
from harness.net.testdata import (
    SMALL_BATCH,
    as_float64,
    data_away_from_kinks,
    random_images,
    random_params,
    random_target,
)
from harness.pytest_plugin import Checker

LEARNING_RATE = 0.01
LARGEST_BATCH = 256
"""The largest batch any check or benchmark uses (suites/bench_net.py times 1, 64 and 256)."""
FRESH_BATCH = 11
"""A batch no other check uses, so the call below is the backend's first on this shape in the run."""


def _overwrite(
    params: dict[str, np.ndarray], x: np.ndarray, new_params: dict[str, np.ndarray], new_x: np.ndarray
) -> None:
    """Write new values into the very arrays the first call was given."""
    for name, value in new_params.items():
        params[name][...] = value
    x[...] = new_x


@pytest.mark.requires("forward")
def test_arrays_changed_in_place(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Every contract method, and the fast path, follow arrays the caller changed in place between calls.

    The same parameter and input arrays are passed twice, with new values written into them
    in between; the second call must match the oracle on the new values (a cache keyed by
    ``id()`` or by the buffer's address returns the first call's answer).
    """
    spec = NetSpec()
    params, x = _data(spec, rng, dtype)
    new_params, new_x = _data(spec, rng, dtype)
    target = random_target(spec, "cross_entropy", SMALL_BATCH, rng, dtype)
    run = {"device": device, "dtype": dtype}

    calls: dict[str, Callable[[], dict[str, np.ndarray]]] = {
        "forward": lambda: {"logits": backend.forward(spec, params, x, **run)},
    }
    if supports(backend, Capability.INTERMEDIATES):
        calls["intermediates"] = lambda: dict(backend.intermediates(spec, params, x, **run))
    # Gradients are compared elementwise at the full precisions only (catalogue.KINK_SENSITIVE_FAMILIES).
    full = dtype in FULL_PRECISIONS
    if full and supports(backend, Capability.BACKWARD):
        calls["gradients"] = lambda: dict(backend.gradients(spec, params, x, target, loss="cross_entropy", **run)[1])
    if full and supports(backend, Capability.TRAIN_STEP):
        calls["train_step"] = lambda: dict(
            backend.train_step(spec, params, x, target, loss="cross_entropy", lr=LEARNING_RATE, **run)
        )
    originals = ({k: v.copy() for k, v in params.items()}, x.copy())
    for method, call in calls.items():
        _overwrite(params, x, *originals)
        call()
        _overwrite(params, x, new_params, new_x)
        second = call()
        expected = _expected(method, spec, params, x, target)
        for name, reference in expected.items():
            conformance.close(
                f"{method} {name}, after the arrays of the first call were changed in place",
                np.asarray(second[name]),
                reference,
                tolerance=conformance.tolerance(_check_of(method)),
            )

    prepare = getattr(backend, "prepare", None)
    if prepare is not None:
        from harness.bench.fastpath import fast_path_adapters

        _overwrite(params, x, *originals)
        net = prepare(spec, params, **run)
        to_device, to_host, synchronize = fast_path_adapters(net)
        net.forward(to_device(x))
        synchronize()
        x[...] = new_x
        out = net.forward(to_device(x))
        synchronize()
        conformance.close(
            "prepared logits, after the input of the first call was changed in place",
            np.asarray(to_host(out)),
            oracle.forward(spec, as_float64(originals[0]), new_x.astype(np.float64)),
            tolerance=conformance.tolerance("prepared_forward"),
        )


def _data(spec: NetSpec, rng: np.random.Generator, dtype: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Data clear of the kinks where gradients are compared (the full precisions), any data elsewhere."""
    if dtype in FULL_PRECISIONS:
        return data_away_from_kinks(spec, SMALL_BATCH, rng, dtype)
    return random_params(spec, rng, dtype), random_images(spec, SMALL_BATCH, rng, dtype)


def _check_of(method: str) -> str:
    return {"forward": "forward_values", "intermediates": "intermediate_values"}.get(method, method)


def _expected(
    method: str, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, target: np.ndarray
) -> dict[str, np.ndarray]:
    p64, x64 = as_float64(params), x.astype(np.float64)
    if method == "forward":
        return {"logits": oracle.forward(spec, p64, x64)}
    if method == "intermediates":
        return dict(oracle.forward_layers(spec, p64, x64))
    if method == "gradients":
        return dict(oracle.gradients(spec, p64, x64, target, "cross_entropy")[1])
    return dict(oracle.sgd_step(spec, p64, x64, target, "cross_entropy", LEARNING_RATE))


@pytest.mark.requires("forward")
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c) for c in ("fresh-shape", "fresh-instance", f"batch{LARGEST_BATCH}")]
)
def test_forward_deterministic_fresh(
    backend: Backend, dtype: str, device: str, case: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Bit-identical logits where algorithm selection happens: a shape's first call, a new instance, the largest batch.

    ``forward_deterministic`` repeats a call the backend has already made; this one makes the
    first call on a batch size no other check uses, on a new instance of the backend's class
    where it can be made without arguments, and at the largest batch, and repeats it.
    """
    spec = NetSpec()
    batch = LARGEST_BATCH if case.startswith("batch") else FRESH_BATCH
    params = random_params(spec, rng, dtype)
    x = random_images(spec, batch, rng, dtype)
    runner: Any = backend
    if case == "fresh-instance":
        try:
            runner = type(backend)()
        except TypeError:
            pytest.skip(f"{type(backend).__name__}() needs arguments: a fresh instance cannot be made here")
        if getattr(runner, "name", None) != backend.name:
            pytest.skip(f"{type(backend).__name__}() is not the backend {backend.name!r} (a factory class)")
    first = runner.forward(spec, params, x, device=device, dtype=dtype)
    again = runner.forward(spec, params, x, device=device, dtype=dtype)
    if not np.array_equal(first, again, equal_nan=True):
        differ = int(np.sum(first != again))
        conformance.fail(
            f"forward is not deterministic ({case}, batch {batch}): the second call differs from the first"
            f" in {differ}/{first.size} logits"
        )


@pytest.mark.requires("forward")
def test_returned_dtypes(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Every array a backend returns is a NumPy array in the call's storage dtype.

    Logits, intermediates, gradients, the parameters after a train step, and the fast path's
    logits and parameters: a float32 call answered in float64 is a different contract, even
    when its values are close.
    """
    spec = NetSpec()
    params, x = random_params(spec, rng, dtype), random_images(spec, SMALL_BATCH, rng, dtype)
    target = random_target(spec, "cross_entropy", SMALL_BATCH, rng, dtype)
    run = {"device": device, "dtype": dtype}
    returned: dict[str, Any] = {"forward": backend.forward(spec, params, x, **run)}
    if supports(backend, Capability.INTERMEDIATES):
        for name, value in backend.intermediates(spec, params, x, **run).items():
            returned[f"intermediates[{name!r}]"] = value
    if supports(backend, Capability.BACKWARD):
        _, grads = backend.gradients(spec, params, x, target, loss="cross_entropy", **run)
        returned.update({f"gradients[{name!r}]": value for name, value in grads.items()})
    if supports(backend, Capability.TRAIN_STEP):
        updated = backend.train_step(spec, params, x, target, loss="cross_entropy", lr=LEARNING_RATE, **run)
        returned.update({f"train_step[{name!r}]": value for name, value in updated.items()})
    prepare = getattr(backend, "prepare", None)
    if prepare is not None:
        from harness.bench.fastpath import fast_path_adapters

        net = prepare(spec, params, **run)
        to_device, to_host, synchronize = fast_path_adapters(net)
        out = net.forward(to_device(x))
        synchronize()
        returned["prepared forward (after to_host)"] = to_host(out)
        if supports(backend, Capability.TRAIN_STEP) and callable(getattr(net, "parameters", None)):
            net.train_step(to_device(x), to_device(target), loss="cross_entropy", lr=LEARNING_RATE)
            synchronize()
            returned.update({f"prepared parameters()[{k!r}]": v for k, v in net.parameters().items()})
    storage = np.dtype(storage_dtype(dtype))
    wrong = [
        f"{what}: {type(value).__name__} {getattr(value, 'dtype', '')}"
        for what, value in returned.items()
        if not isinstance(value, np.ndarray) or value.dtype != storage
    ]
    if wrong:
        conformance.fail(
            f"{len(wrong)}/{len(returned)} returned arrays are not numpy.ndarray of {storage} (the storage of"
            f" dtype={dtype!r}): {'; '.join(wrong[:6])}"
        )
