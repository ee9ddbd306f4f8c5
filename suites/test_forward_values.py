"""Forward values agree with the float64 oracle; a mismatch names the first divergent layer."""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.backend import Backend, Capability, supports
from harness.precision import storage_dtype
from harness.pytest_plugin import Checker
from harness.testdata import as_float64, random_images, random_params

VARIANTS = [
    pytest.param(NetSpec(height=32, width=32), id="32x32"),
    pytest.param(NetSpec(in_channels=1), id="1ch"),
    pytest.param(NetSpec(num_classes=2), id="2cls"),
    pytest.param(NetSpec(num_classes=100), id="100cls"),
    pytest.param(NetSpec(activation="tanh"), id="tanh"),
    pytest.param(NetSpec(activation="sigmoid"), id="sigmoid"),
]


def check_forward(
    backend: Backend, spec: NetSpec, batch: int, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    params = random_params(spec, rng, dtype)
    x = random_images(spec, batch, rng, dtype)
    expected = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    actual = backend.forward(spec, params, x, device=device, dtype=dtype)
    if np.asarray(actual).dtype != np.dtype(storage_dtype(dtype)):
        conformance.fail(f"forward returned {np.asarray(actual).dtype} for {dtype} input and parameters")
    layers = None
    if supports(backend, Capability.INTERMEDIATES):
        layers = (backend.intermediates(spec, params, x, device=device, dtype=dtype), expected)
    conformance.close("logits", actual, expected[spec.linear_names[-1]], layers=layers)


@pytest.mark.requires("forward")
@pytest.mark.parametrize("batch", [pytest.param(b, id=f"batch{b}") for b in (1, 7, 64)])
def test_forward_values(
    backend: Backend, dtype: str, device: str, batch: int, rng: np.random.Generator, conformance: Checker
) -> None:
    check_forward(backend, NetSpec(), batch, dtype, device, rng, conformance)


@pytest.mark.requires("forward")
@pytest.mark.check("forward_values")
@pytest.mark.parametrize("spec", VARIANTS)
def test_forward_values_variants(
    backend: Backend, dtype: str, device: str, spec: NetSpec, rng: np.random.Generator, conformance: Checker
) -> None:
    check_forward(backend, spec, 7, dtype, device, rng, conformance)


@pytest.mark.requires("intermediates")
def test_intermediate_values(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Every layer's output, in forward order: the first one out of tolerance fails the check."""
    spec = NetSpec()
    params = random_params(spec, rng, dtype)
    x = random_images(spec, 7, rng, dtype)
    expected = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    actual = backend.intermediates(spec, params, x, device=device, dtype=dtype)
    assert list(actual) == list(expected), "intermediates must be keyed by the spec's layer names, in order"
    for name in expected:
        conformance.close(name, actual[name], expected[name])
