"""Forward shapes: every backend gives the spec's output and layer shapes, and rejects bad input."""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec, SpecError
from harness.backend import Backend
from harness.precision import storage_dtype
from harness.testdata import to_precision

BATCHES = [pytest.param(b, id=f"batch{b}") for b in (1, 2, 7, 64)]
VARIANTS = [
    pytest.param(NetSpec(), id="seed"),
    pytest.param(NetSpec(height=32, width=32), id="32x32"),
    pytest.param(NetSpec(in_channels=1), id="1ch"),
    pytest.param(NetSpec(num_classes=2), id="2cls"),
    pytest.param(NetSpec(num_classes=100), id="100cls"),
]


def params_for(spec: NetSpec, rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
    shapes = spec.parameter_shapes()
    return {name: to_precision(0.1 * rng.standard_normal(shape), dtype) for name, shape in shapes.items()}


def images(spec: NetSpec, batch: int, rng: np.random.Generator, dtype: str) -> np.ndarray:
    return to_precision(rng.standard_normal((batch, spec.in_channels, spec.height, spec.width)), dtype)


@pytest.mark.requires("forward")
@pytest.mark.parametrize("batch", BATCHES)
def test_output_shape(backend: Backend, dtype: str, device: str, batch: int, rng: np.random.Generator) -> None:
    spec = NetSpec()
    out = backend.forward(
        spec, params_for(spec, rng, dtype), images(spec, batch, rng, dtype), device=device, dtype=dtype
    )
    assert isinstance(out, np.ndarray), f"forward returned {type(out).__name__}, not numpy.ndarray"
    assert out.shape == spec.output_shape(batch), (
        f"forward returned shape {out.shape}, the spec says {spec.output_shape(batch)}"
    )
    assert out.dtype == np.dtype(storage_dtype(dtype)), f"forward returned {out.dtype} for {dtype} input"


@pytest.mark.requires("forward")
@pytest.mark.parametrize("spec", VARIANTS)
@pytest.mark.parametrize("batch", [pytest.param(b, id=f"batch{b}") for b in (1, 7)])
def test_output_shape_variants(
    backend: Backend, dtype: str, device: str, spec: NetSpec, batch: int, rng: np.random.Generator
) -> None:
    out = backend.forward(
        spec, params_for(spec, rng, dtype), images(spec, batch, rng, dtype), device=device, dtype=dtype
    )
    assert out.shape == spec.output_shape(batch), (
        f"forward returned shape {out.shape}, the spec says {spec.output_shape(batch)}"
    )
    assert out.dtype == np.dtype(storage_dtype(dtype)), f"forward returned {out.dtype} for {dtype} input"


@pytest.mark.requires("intermediates")
@pytest.mark.parametrize("spec", VARIANTS)
def test_intermediate_shapes(
    backend: Backend, dtype: str, device: str, spec: NetSpec, rng: np.random.Generator
) -> None:
    batch = 2
    layers = backend.intermediates(
        spec, params_for(spec, rng, dtype), images(spec, batch, rng, dtype), device=device, dtype=dtype
    )
    assert list(layers) == list(spec.layer_names()), "intermediates must be keyed by the spec's layer names, in order"
    for layer in spec.layers(batch):
        assert layers[layer.name].shape == layer.shape, f"layer {layer.name}"
        assert layers[layer.name].dtype == np.dtype(storage_dtype(dtype)), f"layer {layer.name}"


BAD_INPUTS = {
    "rank3": lambda s, d: np.zeros((s.in_channels, s.height, s.width), d),
    "rank5": lambda s, d: np.zeros((1, 1, s.in_channels, s.height, s.width), d),
    "wrong_channels": lambda s, d: np.zeros((2, s.in_channels + 1, s.height, s.width), d),
    "one_channel_for_three": lambda s, d: np.zeros((2, 1, s.height, s.width), d),
    "wrong_size": lambda s, d: np.zeros((2, s.in_channels, s.height - 8, s.width - 8), d),
    "int_dtype": lambda s, d: np.zeros((2, s.in_channels, s.height, s.width), np.int32),
    "empty_batch": lambda s, d: np.zeros((0, s.in_channels, s.height, s.width), d),
    "not_an_array": lambda s, d: np.zeros((2, s.in_channels, s.height, s.width), d).tolist(),
}


@pytest.mark.requires("forward")
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_rejects_bad_input(backend: Backend, dtype: str, device: str, case: str, rng: np.random.Generator) -> None:
    """Nothing is silently broadcast, cast or squeezed: a bad input raises the spec's error."""
    spec = NetSpec()
    with pytest.raises(SpecError):
        bad = BAD_INPUTS[case](spec, storage_dtype(dtype))
        backend.forward(spec, params_for(spec, rng, dtype), bad, device=device, dtype=dtype)
