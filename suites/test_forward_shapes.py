"""Forward shapes: every backend gives the spec's output and layer shapes, and rejects bad input."""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec, SpecError
from harness.conformance.compare import layout_of
from harness.contract.backend import Backend
from harness.net.precision import storage_dtype
from harness.net.testdata import SMALL_BATCH, to_precision
from harness.net.variants import EVERY_FIELD, NOT_SEED, SEED
from harness.pytest_plugin import Checker
from harness.pytest_plugin.params import variant_params

BATCHES = [pytest.param(b, id=f"batch{b}") for b in (1, 2, 7, 64)]
VARIANTS = variant_params(NOT_SEED)
LAYER_VARIANTS = variant_params([SEED, *EVERY_FIELD])


def params_for(spec: NetSpec, rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
    shapes = spec.parameter_shapes()
    return {name: to_precision(0.1 * rng.standard_normal(shape), dtype) for name, shape in shapes.items()}


def images(spec: NetSpec, batch: int, rng: np.random.Generator, dtype: str) -> np.ndarray:
    return to_precision(rng.standard_normal((batch, spec.in_channels, spec.height, spec.width)), dtype)


def check_output(out: object, spec: NetSpec, batch: int, dtype: str, conformance: Checker) -> None:
    """``out`` is a NumPy array of the spec's output shape, in the precision's storage dtype."""
    if not isinstance(out, np.ndarray):
        conformance.fail(f"forward returned {type(out).__name__}, not numpy.ndarray")
        return
    if out.shape != spec.output_shape(batch):
        conformance.fail(f"forward returned shape {out.shape}, the spec says {spec.output_shape(batch)}")
    if out.dtype != np.dtype(storage_dtype(dtype)):
        conformance.fail(f"forward returned {out.dtype} for {dtype} input, not {storage_dtype(dtype)}")


@pytest.mark.requires("forward")
@pytest.mark.parametrize("batch", BATCHES)
def test_output_shape(
    backend: Backend, dtype: str, device: str, batch: int, rng: np.random.Generator, conformance: Checker
) -> None:
    spec = NetSpec()
    out = backend.forward(
        spec, params_for(spec, rng, dtype), images(spec, batch, rng, dtype), device=device, dtype=dtype
    )
    check_output(out, spec, batch, dtype, conformance)


@pytest.mark.requires("forward")
@pytest.mark.parametrize("spec", VARIANTS)
def test_output_shape_variants(
    backend: Backend, dtype: str, device: str, spec: NetSpec, rng: np.random.Generator, conformance: Checker
) -> None:
    """The logits' shape and dtype on every spec variant, at :data:`~harness.net.testdata.SMALL_BATCH`."""
    out = backend.forward(
        spec, params_for(spec, rng, dtype), images(spec, SMALL_BATCH, rng, dtype), device=device, dtype=dtype
    )
    check_output(out, spec, SMALL_BATCH, dtype, conformance)


@pytest.mark.requires("intermediates")
@pytest.mark.parametrize("spec", LAYER_VARIANTS)
def test_intermediate_shapes(
    backend: Backend, dtype: str, device: str, spec: NetSpec, rng: np.random.Generator, conformance: Checker
) -> None:
    """Every layer's shape and dtype, on the networks that change every field the layers depend on."""
    batch = SMALL_BATCH
    layers = backend.intermediates(
        spec, params_for(spec, rng, dtype), images(spec, batch, rng, dtype), device=device, dtype=dtype
    )
    if list(layers) != list(spec.layer_names()):
        conformance.fail(
            f"intermediates are keyed {list(layers)}; the spec's layer names, in forward order, are"
            f" {list(spec.layer_names())}"
        )
    storage = np.dtype(storage_dtype(dtype))
    for layer in spec.layers(batch):
        got = layers[layer.name]
        if not isinstance(got, np.ndarray) or got.shape != layer.shape or got.dtype != storage:
            layout = layout_of(np.shape(got), layer.shape)
            named = f": {layout} order; the spec's layout is (N, C, H, W)" if layout else ""
            conformance.fail(
                f"layer {layer.name}: {type(got).__name__} {getattr(got, 'dtype', '')} {np.shape(got)},"
                f" the spec says {storage} {layer.shape}{named}"
            )


BAD_INPUTS = {
    "rank3": lambda s, d: np.zeros((s.in_channels, s.height, s.width), d),
    "rank5": lambda s, d: np.zeros((1, 1, s.in_channels, s.height, s.width), d),
    "wrong_channels": lambda s, d: np.zeros((2, s.in_channels + 1, s.height, s.width), d),
    "one_channel_for_three": lambda s, d: np.zeros((2, 1, s.height, s.width), d),
    "wrong_size": lambda s, d: np.zeros((2, s.in_channels, s.height - 8, s.width - 8), d),
    "int_dtype": lambda s, d: np.zeros((2, s.in_channels, s.height, s.width), np.int32),
    "other_float_dtype": lambda s, d: np.zeros(
        (2, s.in_channels, s.height, s.width), np.float32 if np.dtype(d) == np.float64 else np.float64
    ),
    "empty_batch": lambda s, d: np.zeros((0, s.in_channels, s.height, s.width), d),
    "not_an_array": lambda s, d: np.zeros((2, s.in_channels, s.height, s.width), d).tolist(),
}


@pytest.mark.requires("forward")
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_rejects_bad_input(
    backend: Backend, dtype: str, device: str, case: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Nothing is silently broadcast, cast or squeezed: a bad input raises the spec's error."""
    spec = NetSpec()
    bad = BAD_INPUTS[case](spec, storage_dtype(dtype))
    try:
        backend.forward(spec, params_for(spec, rng, dtype), bad, device=device, dtype=dtype)
    except SpecError:
        return
    except Exception as exc:  # any other exception is the finding
        conformance.fail(f"forward raised {type(exc).__name__} for a {case} input, not harness.SpecError: {exc}")
    conformance.fail(f"forward accepted a {case} input ({_describe(bad)}); it must raise harness.SpecError")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
