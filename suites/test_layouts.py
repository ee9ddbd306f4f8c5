"""Any memory layout in, fresh arrays out: strides, order and write flags change no result.

A backend that hands an array's buffer to native code, or reshapes a view it assumes is
C-contiguous, reads a Fortran-ordered or strided array in the wrong order; one that
"sanitises" its input in place fails on a read-only one. A backend that returns a buffer it
reuses hands the caller an array that the next call overwrites.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from harness import NetSpec
from harness.conformance.catalogue import FULL_PRECISIONS
from harness.conformance.tolerances import two_results
from harness.contract.backend import Backend, Capability, supports
from harness.net.testdata import SMALL_BATCH, data_away_from_kinks, random_images, random_params, random_target
from harness.pytest_plugin import Checker


def strided(a: np.ndarray) -> np.ndarray:
    """The same values, every other element of a buffer twice as long in the first axis."""
    buffer = np.zeros((2 * a.shape[0], *a.shape[1:]), a.dtype)
    buffer[::2] = a
    return buffer[::2]


def channels_last(a: np.ndarray) -> np.ndarray:
    """The same values stored (N, H, W, C), seen as (N, C, H, W); other ranks are transposed whole."""
    if a.ndim == 4:
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a.T).T


def negative_strides(a: np.ndarray) -> np.ndarray:
    """The same values read backwards from a reversed buffer: every stride is negative."""
    return np.flip(np.ascontiguousarray(np.flip(a)))


def read_only(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    b.flags.writeable = False
    return b


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "fortran": np.asfortranarray,
    "strided": strided,
    "negative_strides": negative_strides,
    "channels_last": channels_last,
    "read_only": read_only,
}
"""Each turns an array into one with the same values in another layout."""


@pytest.mark.requires("forward")
def test_input_layouts(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Images, parameters and targets in each layout of :data:`LAYOUTS` give the C-contiguous results.

    The logits (and, where declared, the loss, every gradient and the parameters after one
    SGD step) are compared with those of the same call on C-contiguous, writable arrays.
    Another layout may take another kernel, which sums in another order: each result is
    within its check's tolerance of the exact value, so the two are compared at twice it
    (:func:`~harness.conformance.tolerances.two_results`). Gradients and steps are compared at float32
    and float64, on data clear of every kink (:func:`~harness.net.testdata.data_away_from_kinks`);
    at a reduced precision a kink lies within the rounding of many values, and a gradient
    may legitimately take the other branch, so there they are only called (an exception is
    the finding). Logits and the loss are continuous across kinks and compared at every
    precision.
    """
    spec = NetSpec()
    compare_gradients = dtype in FULL_PRECISIONS
    if compare_gradients:
        params, x = data_away_from_kinks(spec, SMALL_BATCH, rng, dtype)
    else:
        params, x = random_params(spec, rng, dtype), random_images(spec, SMALL_BATCH, rng, dtype)
    target = random_target(spec, "sse", SMALL_BATCH, rng, dtype)
    run: dict[str, Any] = {"device": device, "dtype": dtype}
    expected = np.asarray(backend.forward(spec, params, x, **run), np.float64)
    grads = train = None
    if supports(backend, Capability.BACKWARD):
        grads = backend.gradients(spec, params, x, target, loss="sse", **run)  # type: ignore[attr-defined]
    if supports(backend, Capability.TRAIN_STEP):
        train = backend.train_step(spec, params, x, target, loss="sse", lr=0.01, **run)  # type: ignore[attr-defined]
    for layout, change in LAYOUTS.items():
        moved_params = {name: change(value) for name, value in params.items()}
        moved_x, moved_target = change(x), change(target)
        what = f"images, parameters and targets {layout.replace('_', ' ')}"
        try:
            out = backend.forward(spec, moved_params, moved_x, **run)
            if grads is not None:
                value, moved_grads = backend.gradients(  # type: ignore[attr-defined]
                    spec, moved_params, moved_x, moved_target, loss="sse", **run
                )
            if train is not None:
                stepped = backend.train_step(  # type: ignore[attr-defined]
                    spec, moved_params, moved_x, moved_target, loss="sse", lr=0.01, **run
                )
        except Exception as exc:  # any exception is the finding
            conformance.fail(f"with {what}, the backend raised {type(exc).__name__}: {exc}")
        logits_tolerance = two_results(conformance.tolerance("forward_values"))
        conformance.close(f"logits, {what}", out, expected, tolerance=logits_tolerance)
        if grads is not None:
            tolerance = two_results(conformance.tolerance("gradients"))
            conformance.close(f"loss, {what}", np.asarray(value), np.asarray(grads[0], np.float64), tolerance=tolerance)
            for name, reference in grads[1].items() if compare_gradients else ():
                conformance.close(
                    f"d sse/d{name}, {what}", moved_grads[name], np.asarray(reference, np.float64), tolerance=tolerance
                )
        if train is not None and compare_gradients:
            for name, reference in train.items():
                conformance.close(
                    f"{name} after a step, {what}",
                    stepped[name],
                    np.asarray(reference, np.float64),
                    tolerance=two_results(conformance.tolerance("train_step")),
                )


def _snapshot(result: Any) -> Any:
    if isinstance(result, dict):
        return {name: np.array(value, copy=True) for name, value in result.items()}
    if isinstance(result, tuple):
        return tuple(_snapshot(item) for item in result)
    return np.array(result, copy=True)


def _changed(first: Any, kept: Any, path: str = "") -> list[str]:
    """Where ``first`` no longer equals its copy ``kept`` (NaN equal to NaN)."""
    if isinstance(kept, dict):
        return [where for name in kept for where in _changed(first[name], kept[name], f"{path}[{name!r}]")]
    if isinstance(kept, tuple):
        return [where for i, item in enumerate(kept) for where in _changed(first[i], item, f"{path}[{i}]")]
    return [] if np.array_equal(np.asarray(first), kept, equal_nan=True) else [path or "the result"]


@pytest.mark.requires("forward")
def test_outputs_not_aliased(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """A result keeps its values through the next call on other inputs: no buffer is handed out twice.

    Every declared operation is called on one input, its result copied, then called on
    another input of the same shapes; the first result must still equal its copy. A result
    must not share memory with the arrays it was computed from either.
    """
    spec = NetSpec()
    first_params, second_params = random_params(spec, rng, dtype), random_params(spec, rng, dtype)
    first_x, second_x = (random_images(spec, SMALL_BATCH, rng, dtype) for _ in range(2))
    first_t, second_t = (random_target(spec, "sse", SMALL_BATCH, rng, dtype) for _ in range(2))
    run: dict[str, Any] = {"device": device, "dtype": dtype}
    calls: dict[str, Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], Any]] = {
        "forward": lambda p, x, t: backend.forward(spec, p, x, **run)
    }
    if supports(backend, Capability.INTERMEDIATES):
        calls["intermediates"] = lambda p, x, t: backend.intermediates(spec, p, x, **run)  # type: ignore[attr-defined]
    if supports(backend, Capability.BACKWARD):
        calls["gradients"] = lambda p, x, t: backend.gradients(spec, p, x, t, loss="sse", **run)  # type: ignore[attr-defined]
    if supports(backend, Capability.TRAIN_STEP):
        calls["train_step"] = lambda p, x, t: backend.train_step(spec, p, x, t, loss="sse", lr=0.01, **run)  # type: ignore[attr-defined]
    if supports(backend, Capability.ACTIVATIONS):
        for name in ("relu", "tanh", "sigmoid"):
            calls[f"activation({name!r})"] = lambda p, x, t, n=name: backend.activation(n, x)  # type: ignore[attr-defined]
            calls[f"activation_grad({name!r})"] = lambda p, x, t, n=name: backend.activation_grad(n, x)  # type: ignore[attr-defined]
    for operation, call in calls.items():
        first = call(first_params, first_x, first_t)
        kept = _snapshot(first)
        for array in _arrays(first):
            sources = [first_x, first_t, *first_params.values()]
            if any(np.shares_memory(array, source) for source in sources):
                conformance.fail(f"{operation} returned an array that shares memory with its own inputs")
        call(second_params, second_x, second_t)
        changed = _changed(first, kept)
        if changed:
            conformance.fail(
                f"{operation}'s result {', '.join(changed)} changed when {operation} was called again on other"
                " inputs: the backend returned a buffer it reuses; return a fresh array (or a copy)"
            )


def _arrays(result: Any) -> list[np.ndarray]:
    if isinstance(result, dict):
        return [a for value in result.values() for a in _arrays(value)]
    if isinstance(result, tuple):
        return [a for item in result for a in _arrays(item)]
    return [result] if isinstance(result, np.ndarray) else []
