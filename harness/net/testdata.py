"""Random inputs, parameters and targets for checks and benchmarks, from a seeded generator.

Arrays are drawn in float64 and rounded once to the requested precision (a bfloat16 or
float16 value travels as a float32 that holds it exactly); the oracle is then fed the
rounded values (cast back to float64), so a comparison measures only the backend's
arithmetic, never the rounding of its inputs.
"""

from __future__ import annotations

import math

import numpy as np

from harness.net.bounds import layer_bounds
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


ACTIVATION_SLOPE = {"relu": 1.0, "tanh": 1.0, "sigmoid": 0.25}
"""The largest slope of each activation: how much of an error in z reaches f(z)."""
ACTIVATION_ULPS = 8.0
"""An activation's own rounding, in ulps of its output: the accuracy ``activation_values`` demands."""


def kink_clearance(
    spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, dtype: str, min_margin: float = 0.0
) -> np.ndarray:
    """Per sample: the distance of its nearest kink, in units of what rounding may move it by (>= 1: clear).

    ReLU is not differentiable at 0, and max pooling switches its winner where a window's two
    largest values meet. A backend that lands on the other side of a kink than the oracle
    routes a whole gradient element differently, which no rounding bound covers. The tolerance
    model (``docs/tolerances.md``) puts a correct backend's layer output, and the oracle's,
    within ``B_l (max|z| + |z|)`` of the exact value, ``B_l`` being the derived bound of the
    layers up to that one (:func:`~harness.net.bounds.layer_bounds`) in ``dtype`` plus in
    float64, in whatever order a kernel sums. A kink is clear when its distance exceeds that
    movement of every value that meets there (and ``min_margin`` of the layer's scale): then
    a backend whose values stay within their bound takes the oracle's branch on any machine.

    The kinks that matter: a ReLU's 0 where its gradient is used (every element of a linear
    layer or an unpooled conv, each pooling window's winner), and each window's gap between
    its two largest values. Windows whose largest value is a ReLU's 0 tie harmlessly: their
    gradient is zero whichever wins. Scales are maxima over the whole of ``x``, so a sample
    clear here is clear in any batch drawn from ``x``.
    """
    from harness.net import oracle  # the oracle is only needed here; keep testdata importable alone

    layers = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    names = [*spec.conv_names, *spec.linear_names]
    both = zip(layer_bounds(spec, PRECISIONS[dtype]), layer_bounds(spec, PRECISIONS["float64"]))
    bounds = {name: ours + oracles for name, (ours, oracles) in zip(names, both)}
    act_rounding = ACTIVATION_ULPS * 2 * (PRECISIONS[dtype].unit_roundoff + PRECISIONS["float64"].unit_roundoff)
    relu = spec.activation == "relu"
    clearance = np.full(len(x), np.inf)

    def nearest(ratio: np.ndarray) -> np.ndarray:
        return np.minimum(clearance, ratio.reshape(len(x), -1).min(axis=1, initial=np.inf))

    with np.errstate(divide="ignore", invalid="ignore"):
        for name, stage in zip(spec.conv_names, spec.conv_stages):
            z = layers[name]
            scale = float(np.max(np.abs(z))) or 1.0
            moved = bounds[name] * (scale + np.abs(z))  # how far rounding may move each z
            if stage.pool == 1:  # no pool: every element's ReLU kink is used
                if relu:
                    clearance = nearest(np.abs(z) / (moved + min_margin * scale))
                continue
            windows, moves = pool_windows(z, stage.pool), pool_windows(moved, stage.pool)
            order = np.argsort(windows, axis=-1)[..., -2:]  # the activation is monotonic: z's order is f(z)'s
            top, top_moved = np.take_along_axis(windows, order, -1), np.take_along_axis(moves, order, -1)
            if relu:  # the winner's ReLU kink
                clearance = nearest(np.abs(top[..., 1]) / (top_moved[..., 1] + min_margin * scale))
            act = oracle.activation(spec.activation, top)
            act_scale = float(np.max(np.abs(layers[f"{name}.act"]))) or 1.0
            allowed = ACTIVATION_SLOPE[spec.activation] * top_moved.sum(-1) + act_rounding * np.abs(act).sum(-1)
            ratio = (act[..., 1] - act[..., 0]) / (allowed + min_margin * act_scale)
            if relu:
                ratio = np.where(top[..., 1] <= 0, np.inf, ratio)  # ReLU zeros tie harmlessly
            clearance = nearest(ratio)
        for name in spec.linear_names[:-1] if relu else ():
            z = layers[name]
            scale = float(np.max(np.abs(z))) or 1.0
            clearance = nearest(np.abs(z) / (bounds[name] * (scale + np.abs(z)) + min_margin * scale))
    return np.where(np.isnan(clearance), 0.0, clearance)


CANDIDATE_ROUNDS = 4
"""Batches of candidate images drawn for one set of parameters before the parameters are drawn again."""


def data_away_from_kinks(
    spec: NetSpec, batch: int, rng: np.random.Generator, dtype: str, min_margin: float = 0.0, attempts: int = 20
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parameters and ``batch`` images whose every kink is clear (:func:`kink_clearance`); deterministic for a seed.

    Images are drawn a batch at a time and the clear ones kept, in the order drawn, until
    there are ``batch`` of them; parameters that leave too few clear are drawn again. Only
    float32 and float64 clear: a reduced precision's bound is wider than most gaps.
    """
    for _ in range(attempts):
        params = random_params(spec, rng, dtype)
        images = random_images(spec, batch, rng, dtype)
        for _ in range(CANDIDATE_ROUNDS):
            clear = np.flatnonzero(kink_clearance(spec, params, images, dtype, min_margin) >= 1)
            if len(clear) >= batch:
                return params, images[clear[:batch]]
            images = np.concatenate([images, random_images(spec, batch, rng, dtype)])
    raise RuntimeError(
        f"no {batch} images clear of every kink at {dtype}'s error bound in {attempts} draws of parameters;"
        " gradients are compared at float32 and float64 only"
    )


def large_batch_away_from_kinks(
    spec: NetSpec, batch: int, rng: np.random.Generator, dtype: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A batch of ``batch`` images away from every kink: SMALL_BATCH such images, repeated in turn.

    Drawing a large batch whose every element clears the margin takes thousands of draws;
    the samples of a batch are independent in the forward, so repeating a kink-free batch
    keeps its margin. SMALL_BATCH (7) does not divide 64 or 128, so a chunk boundary at a
    multiple of them falls inside a repetition, and sample i and sample i - 128 differ.
    """
    params, x = data_away_from_kinks(spec, SMALL_BATCH, rng, dtype)
    return params, np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))


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
