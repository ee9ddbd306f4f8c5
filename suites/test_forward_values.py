"""Forward values agree with the float64 oracle; a mismatch names the first divergent layer."""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.conformance.compare import compare
from harness.contract.backend import Backend, Capability, supports
from harness.net.precision import storage_dtype
from harness.net.testdata import SMALL_BATCH, as_float64, random_images, random_params
from harness.net.variants import EVERY_FIELD, NOT_SEED
from harness.pytest_plugin import Checker
from harness.pytest_plugin.params import variant_params

VARIANTS = variant_params(NOT_SEED)
LAYER_VARIANTS = variant_params(EVERY_FIELD)


def check_forward(
    backend: Backend, spec: NetSpec, batch: int, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    params = random_params(spec, rng, dtype)
    x = random_images(spec, batch, rng, dtype)
    expected = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    actual = backend.forward(spec, params, x, device=device, dtype=dtype)
    if np.asarray(actual).dtype != np.dtype(storage_dtype(dtype)):
        conformance.fail(f"forward returned {np.asarray(actual).dtype} for {dtype} input and parameters")
    logits = expected[spec.linear_names[-1]]
    layers = None
    # The intermediates only name the first divergent layer, so they are asked for only on a
    # mismatch: a compiling or exporting backend builds another graph for them.
    if supports(backend, Capability.INTERMEDIATES) and compare("logits", actual, logits, conformance.tolerance())[1]:
        layers = (backend.intermediates(spec, params, x, device=device, dtype=dtype), expected)
    conformance.close("logits", actual, logits, layers=layers)


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
    check_forward(backend, spec, SMALL_BATCH, dtype, device, rng, conformance)


@pytest.mark.requires("intermediates")
def test_intermediate_values(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Every layer's output, in forward order: the first one out of tolerance fails the check."""
    check_layers(backend, NetSpec(), dtype, device, rng, conformance)


@pytest.mark.requires("intermediates")
@pytest.mark.check("intermediate_values")
@pytest.mark.parametrize("spec", LAYER_VARIANTS)
def test_intermediate_values_variants(
    backend: Backend, dtype: str, device: str, spec: NetSpec, rng: np.random.Generator, conformance: Checker
) -> None:
    check_layers(backend, spec, dtype, device, rng, conformance)


def check_layers(
    backend: Backend, spec: NetSpec, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    params = random_params(spec, rng, dtype)
    x = random_images(spec, SMALL_BATCH, rng, dtype)
    expected = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    actual = backend.intermediates(spec, params, x, device=device, dtype=dtype)
    if list(actual) != list(expected):
        conformance.fail(
            f"intermediates are keyed {list(actual)}; the spec's layer names, in forward order, are {list(expected)}"
        )
    for name in expected:
        # The whole network travels along, so a layer in another layout or order is named as such.
        conformance.close(name, actual[name], expected[name], layers=(actual, expected))
