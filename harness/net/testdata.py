"""Random inputs, parameters and targets for checks and benchmarks, from a seeded generator.

Arrays are drawn in float64 and rounded once to the requested precision (a bfloat16 or
float16 value travels as a float32 that holds it exactly); the oracle is then fed the
rounded values (cast back to float64), so a comparison measures only the backend's
arithmetic, never the rounding of its inputs.
"""

from __future__ import annotations

import math

import numpy as np

from harness.net.precision import PRECISIONS
from harness.net.spec import NetSpec

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
    from harness.net import oracle  # the oracle is only needed here; keep testdata importable alone

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
        top_two = np.sort(pool_windows(act, k), axis=-1)[..., -2:]
        gaps = top_two[..., 1] - top_two[..., 0]
        scale = float(np.max(np.abs(act))) or 1.0
        # ReLU zeros tie harmlessly: their gradient is zero whichever wins.
        gaps = np.where(top_two[..., 1] <= 0, np.inf, gaps)
        margins.append(float(np.min(gaps)) / scale)
    return min(margins)


def pool_windows(values: np.ndarray, k: int) -> np.ndarray:
    """The (N, C, H // k, W // k, k * k) windows of a k x k max pool, each window's elements in row-major order."""
    n, c, h, w = values.shape
    windows = values[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k)
    return windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // k, w // k, k * k)


def distinct_values_per_window(values: np.ndarray, k: int) -> int:
    """The most distinct values any one k x k pool window of ``values`` holds (1: every window is a tie)."""
    windows = np.sort(pool_windows(np.asarray(values, dtype=np.float64), k), axis=-1)
    if windows.size == 0:
        return 0
    changes = ~(windows[..., 1:] == windows[..., :-1])  # NaN is distinct from everything
    return int(changes.sum(axis=-1).max()) + 1


def tied_pool_data(spec: NetSpec, dtype: str, seed: int = 7) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parameters and one image under which every pool window of every stage is an exact tie.

    Exact by construction, on any machine: every product and partial sum before each pool is
    a multiple of 1/8 no larger than fan_in / 12 + 1/2 in magnitude (13 for the seed's conv2),
    so it is exact in float32 and float64 (and, for the seed's network, in bfloat16 and
    float16), whatever the summation order, blocking or thread split of the kernel. A
    convolution that is not a sum of products (Winograd, FFT) can still round.

    - The image is 0 except in its last channel, which is random; the first convolution's
      weights on that channel are 0 and its biases 1/2. So every product is +-0 and the first
      convolution's output is exactly 1/2 everywhere, while d loss / d conv1.weight (the last
      channel) and d loss / d input (the others) still depend on where each window's gradient
      went.
    - Every later convolution sees 1/2 everywhere (ReLU and pooling keep it); its weights are
      -1/4, 0 and 1/4 in equal numbers per output channel (so they sum to 0) and its biases
      1/2: its output is exactly 1/2 everywhere too.
    - The linear layers are random (after the last pool nothing can tie).

    For ReLU networks (``spec.activation``), whose hidden activation is exact at 1/2.
    """
    rng = np.random.default_rng(seed)
    params = random_params(spec, rng, dtype)
    x = np.zeros((1, spec.in_channels, spec.height, spec.width))
    for index, name in enumerate(spec.conv_names):
        weight = params[f"{name}.weight"].astype(np.float64)
        if index == 0:
            if spec.in_channels > 1:  # one channel: the image stays 0 and the input gradient judges alone
                weight[:, -1] = 0.0
                x[:, -1] = rng.standard_normal(x[:, -1].shape)
        else:
            per_channel = weight[0].size
            third = per_channel // 3
            for out_channel in range(weight.shape[0]):
                steps = np.repeat([1.0, -1.0, 0.0], [third, third, per_channel - 2 * third])
                weight[out_channel] = 0.25 * rng.permutation(steps).reshape(weight[out_channel].shape)
        params[f"{name}.weight"] = to_precision(weight, dtype)
        params[f"{name}.bias"] = to_precision(np.full(params[f"{name}.bias"].shape, 0.5), dtype)
    return params, to_precision(x, dtype)


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
