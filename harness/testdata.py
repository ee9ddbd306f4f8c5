"""Random inputs, parameters and targets for checks and benchmarks, from a seeded generator.

Arrays are drawn in float64 and rounded once to the requested precision (a bfloat16 or
float16 value travels as a float32 that holds it exactly); the oracle is then fed the
rounded values (cast back to float64), so a comparison measures only the backend's
arithmetic, never the rounding of its inputs.
"""

from __future__ import annotations

import math

import numpy as np

from harness.precision import PRECISIONS
from harness.spec import NetSpec

SMALL_BATCH = 7
"""The batch of every check that needs several samples but no particular number of them.

The gradient, gradcheck, subgradient, train-step, convergence, fast-path train-step,
non-finite, layout and hygiene checks use it, and so do the variants' forward, shape and
per-layer checks (finite differences use one sample: see that check). One size for all of
them, so a backend that compiles for each input shape (XLA compiles every batch size anew)
compiles each operation once for the suite, not once per check. Seven is odd and more than
one chunk of 4, so a kernel that handles the samples in groups of 2 or 4 has a ragged last
group here. The sizes that can break a shape (1, above all) and the chunk
edges of large batches are the seed's own cases (``output_shape``, ``batch_independence``).
"""


def to_precision(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` rounded to the precision ``dtype``, in its storage dtype (any NumPy dtype passes through)."""
    if dtype in PRECISIONS:
        return PRECISIONS[dtype].round(values)
    return np.asarray(values).astype(dtype)


def random_params(spec: NetSpec, rng: np.random.Generator, dtype: str = "float64") -> dict[str, np.ndarray]:
    """Parameters on the init scheme's scale (weights ~ N(0, 2/fan_in)), with non-zero biases.

    Biases are drawn too, so a backend that drops or misplaces a bias cannot pass.
    """
    params: dict[str, np.ndarray] = {}
    for name, shape in spec.parameter_shapes().items():
        if name.endswith(".weight"):
            fan_in, _ = spec.fans(name)
            params[name] = to_precision(rng.normal(0.0, math.sqrt(2.0 / fan_in), shape), dtype)
        else:
            params[name] = to_precision(rng.normal(0.0, 0.1, shape), dtype)
    return params


def random_images(spec: NetSpec, batch: int, rng: np.random.Generator, dtype: str = "float64") -> np.ndarray:
    return to_precision(rng.standard_normal((batch, spec.in_channels, spec.height, spec.width)), dtype)


def random_target(spec: NetSpec, loss: str, batch: int, rng: np.random.Generator, dtype: str = "float64") -> np.ndarray:
    """Integer labels for cross_entropy, a float (N, classes) array for sse."""
    if loss == "cross_entropy":
        return rng.integers(0, spec.num_classes, size=batch).astype(np.int64)
    return to_precision(rng.standard_normal((batch, spec.num_classes)), dtype)


def as_float64(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: value.astype(np.float64) for name, value in params.items()}


def kink_margin(spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray) -> float:
    """How far, relative to each layer's scale, the data lies from the network's kinks.

    ReLU is not differentiable at 0 and max pooling switches its winner where a window's two
    largest values meet. A float32 backend that lands on the other side of a kink than the
    float64 oracle routes a whole gradient differently, so gradient checks use data whose
    margin exceeds the float32 rounding error.
    """
    from harness import oracle  # the oracle is only needed here; keep testdata importable alone

    layers = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    margins = [np.inf]
    if spec.activation == "relu":
        pre_activation = [*spec.conv_names, *spec.linear_names[:-1]]
        margins += [float(np.min(np.abs(layers[n])) / np.max(np.abs(layers[n]))) for n in pre_activation]
    for name, stage in zip(spec.conv_names, spec.conv_stages):
        act = layers[f"{name}.act"]
        k = stage.pool
        if k == 1:  # a 1x1 window has one element: nothing to tie with
            continue
        n, c, h, w = act.shape
        windows = act[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k)
        windows = windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // k, w // k, k * k)
        top_two = np.sort(windows, axis=-1)[..., -2:]
        gaps = top_two[..., 1] - top_two[..., 0]
        scale = float(np.max(np.abs(act))) or 1.0
        # ReLU zeros tie harmlessly: their gradient is zero whichever wins.
        gaps = np.where(top_two[..., 1] <= 0, np.inf, gaps)
        margins.append(float(np.min(gaps)) / scale)
    return min(margins)


def data_away_from_kinks(
    spec: NetSpec, batch: int, rng: np.random.Generator, dtype: str, min_margin: float = 2e-6, attempts: int = 100
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw parameters and images until every kink is at least ``min_margin`` away (deterministic for a seed)."""
    for _ in range(attempts):
        params = random_params(spec, rng, dtype)
        x = random_images(spec, batch, rng, dtype)
        if kink_margin(spec, params, x) >= min_margin:
            return params, x
    raise RuntimeError(f"no data {min_margin} away from every kink in {attempts} draws; lower min_margin")


def init_scheme_params(spec: NetSpec, rng: np.random.Generator, dtype: str = "float64") -> dict[str, np.ndarray]:
    """Parameters drawn from the spec's init scheme, for backends without an initialiser.

    Conv weights N(0, 2/fan_out), linear weights U(-a, a) with a = sqrt(6/(fan_in+fan_out)),
    biases 0: the starting point a training run of the seed's network has.
    """
    params: dict[str, np.ndarray] = {}
    for name, shape in spec.parameter_shapes().items():
        fan_in, fan_out = spec.fans(name) if name.endswith(".weight") else (0, 0)
        if name.endswith(".bias"):
            params[name] = to_precision(np.zeros(shape), dtype)
        elif len(shape) == 4:
            params[name] = to_precision(rng.normal(0.0, math.sqrt(2.0 / fan_out), shape), dtype)
        else:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            params[name] = to_precision(rng.uniform(-bound, bound, shape), dtype)
    return params
