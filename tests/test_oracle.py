"""harness.net.oracle checked against two outside references: torch float64 autograd, and central
finite differences. The torch network is built here from torch.nn.functional, independently of
backends/, so a bug in a backend cannot hide a bug in the oracle or the other way round."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness import oracle
from harness.errors import SpecError
from harness.net.spec import ConvStage, NetSpec

# float64 against float64: the two differ only in summation order, a few ulps per sum of <= 784 terms.
RTOL_F64 = 1e-10
# Entries far below the layer's scale carry the absolute rounding error of the whole sum.
ATOL_F64_SCALE = 1e-12
# Central differences with step 1e-6: truncation ~h^2 |f'''| ~ 1e-12, rounding ~eps |L| / h ~ 1e-9.
FD_STEP = 1e-6
FD_RTOL = 1e-5
FD_ATOL = 1e-7
# Overflow, division by zero and invalid operations raise; underflow to a subnormal or to 0 is
# the correct answer (e^-710, tanh(1e-300)^2), and numpy ignores it by default too.
RAISE_BUT_UNDERFLOW = {"over": "raise", "divide": "raise", "invalid": "raise", "under": "ignore"}
# Activations elementwise against torch's libm-based kernels.
RTOL_ACT = 8 * 2.0**-53
# torch's backward computes 1 - t^2 and s (1 - s), which cancel in the tails: absolute error ~eps.
ATOL_TORCH_ACT_GRAD = 4 * 2.0**-52

VARIANTS = {
    "default": NetSpec(),
    "32x32": NetSpec(height=32, width=32),
    "1channel": NetSpec(in_channels=1),
    "2classes": NetSpec(num_classes=2),
    "100classes": NetSpec(num_classes=100),
    "tanh": NetSpec(activation="tanh"),
    "sigmoid": NetSpec(activation="sigmoid"),
}


def make_params(spec: NetSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random parameters at roughly the init scale, with NON-zero biases so their gradients matter."""
    params = {}
    for name, shape in spec.parameter_shapes().items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        params[name] = rng.normal(size=shape) * (1.0 / math.sqrt(fan_in) if len(shape) > 1 else 0.1)
    return params


def make_target(spec: NetSpec, loss: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if loss == "sse":
        return rng.normal(size=(n, spec.num_classes))
    return rng.integers(0, spec.num_classes, size=n)


# -- torch reference ---------------------------------------------------------------------

TORCH_ACT = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def torch_layers(spec: NetSpec, params: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
    act = TORCH_ACT[spec.activation]
    out: dict[str, torch.Tensor] = {}
    h = x
    for name, stage in zip(spec.conv_names, spec.conv_stages):
        out[name] = h = F.conv2d(h, params[f"{name}.weight"], params[f"{name}.bias"])
        out[f"{name}.act"] = h = act(h)
        out[f"{name}.pool"] = h = F.max_pool2d(h, stage.pool)
    out["flatten"] = h = torch.flatten(h, 1)
    for name in spec.linear_names:
        out[name] = h = F.linear(h, params[f"{name}.weight"], params[f"{name}.bias"])
        if name != spec.linear_names[-1]:
            out[f"{name}.act"] = h = act(h)
    return out


def torch_loss(loss: str, logits: torch.Tensor, target: np.ndarray) -> torch.Tensor:
    if loss == "sse":
        return F.mse_loss(logits, torch.from_numpy(target), reduction="sum")
    return F.cross_entropy(logits, torch.from_numpy(target), reduction="sum")


def torch_gradients(spec, params, x, target, loss):
    tparams = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    layers = torch_layers(spec, tparams, tx)
    value = torch_loss(loss, layers[spec.linear_names[-1]], target)
    value.backward()
    grads = {k: v.grad.numpy() for k, v in tparams.items()}
    grads["input"] = tx.grad.numpy()
    return {k: v.detach().numpy() for k, v in layers.items()}, value.item(), grads


def assert_close(actual, expected, what, rtol=RTOL_F64):
    expected = np.asarray(expected)
    atol = ATOL_F64_SCALE * max(float(np.max(np.abs(expected))), 1.0)
    assert np.asarray(actual).shape == expected.shape, what
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=f"{what} (rtol={rtol}, atol={atol})")


# -- against torch -----------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 7], ids=lambda n: f"batch{n}")
@pytest.mark.parametrize("loss", ["sse", "cross_entropy"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_torch(variant, loss, batch):
    spec = VARIANTS[variant]
    rng = np.random.default_rng(1234)
    params = make_params(spec, rng)
    x = rng.normal(size=(batch, spec.in_channels, spec.height, spec.width))
    target = make_target(spec, loss, batch, rng)
    ref_layers, ref_loss, ref_grads = torch_gradients(spec, params, x, target, loss)

    layers = oracle.forward_layers(spec, params, x)
    assert list(layers) == list(spec.layer_names())
    for name in spec.layer_names():
        assert layers[name].dtype == np.float64, name
        assert_close(layers[name], ref_layers[name], f"layer {name}")
    assert_close(oracle.forward(spec, params, x), ref_layers[spec.linear_names[-1]], "logits")

    value, grads = oracle.gradients(spec, params, x, target, loss)
    assert math.isclose(value, ref_loss, rel_tol=RTOL_F64), (value, ref_loss)
    assert math.isclose(oracle.loss(loss, layers[spec.linear_names[-1]], target), ref_loss, rel_tol=RTOL_F64)
    assert list(grads) == [*spec.parameter_shapes(), "input"]
    for name, ref in ref_grads.items():
        assert grads[name].dtype == np.float64, name
        assert_close(grads[name], ref, f"d{loss}/d{name}")

    lr = 0.01
    before = {k: v.copy() for k, v in params.items()}
    stepped = oracle.sgd_step(spec, params, x, target, loss, lr)
    for name in params:
        np.testing.assert_array_equal(params[name], before[name], err_msg=f"sgd_step modified {name}")
        assert_close(stepped[name], params[name] - lr * ref_grads[name], f"sgd_step {name}")


def test_float32_input_is_computed_in_float64():
    spec = NetSpec()
    rng = np.random.default_rng(7)
    params = {k: v.astype(np.float32) for k, v in make_params(spec, rng).items()}
    x = rng.normal(size=(2, 3, 40, 40)).astype(np.float32)
    logits = oracle.forward(spec, params, x)
    assert logits.dtype == np.float64
    expected = oracle.forward(spec, {k: v.astype(np.float64) for k, v in params.items()}, x.astype(np.float64))
    np.testing.assert_array_equal(logits, expected)


# -- against finite differences ---------------------------------------------------------


# tanh and sigmoid, not relu: a central difference straddling relu's kink at 0 is wrong by O(1).
# The max pools are still kinked where two window elements tie; random inputs keep ties at
# distances far above FD_STEP, so no sampled difference crosses one.
@pytest.mark.parametrize("loss", ["sse", "cross_entropy"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_matches_finite_differences(activation, loss):
    spec = NetSpec(activation=activation)
    rng = np.random.default_rng(2024)
    params = make_params(spec, rng)
    x = rng.normal(size=(2, spec.in_channels, spec.height, spec.width))
    target = make_target(spec, loss, 2, rng)
    _, grads = oracle.gradients(spec, params, x, target, loss)

    def loss_at(name: str, index: tuple[int, ...], delta: float) -> float:
        p = {k: v.copy() for k, v in params.items()}
        xx = x.copy()
        (xx if name == "input" else p[name])[index] += delta
        return oracle.loss(loss, oracle.forward(spec, p, xx), target)

    for name in [*spec.parameter_shapes(), "input"]:
        shape = x.shape if name == "input" else params[name].shape
        for flat in rng.choice(math.prod(shape), size=min(4, math.prod(shape)), replace=False):
            index = np.unravel_index(flat, shape)
            fd = (loss_at(name, index, FD_STEP) - loss_at(name, index, -FD_STEP)) / (2 * FD_STEP)
            assert math.isclose(grads[name][index], fd, rel_tol=FD_RTOL, abs_tol=FD_ATOL), (
                f"d{loss}/d{name}{index}: oracle {grads[name][index]!r}, central difference {fd!r}"
                f" (rtol={FD_RTOL}, atol={FD_ATOL})"
            )


# -- activations -------------------------------------------------------------------------

SPECIAL = np.array(
    [
        0.0,
        -0.0,
        1e-300,
        -1e-300,
        1e-10,
        -1e-10,
        0.5,
        -0.5,
        1.0,
        -1.0,
        20.0,
        -20.0,
        40.0,
        -40.0,
        709.0,
        -709.0,
        710.0,
        -710.0,
        1e300,
        -1e300,
        np.inf,
        -np.inf,
        np.nan,
    ]
)


def _activation_inputs() -> np.ndarray:
    return np.concatenate([SPECIAL, np.random.default_rng(5).normal(scale=5.0, size=200)])


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_activation_matches_torch(name):
    x = _activation_inputs()
    t = torch.tensor(x, requires_grad=True)
    y = TORCH_ACT[name](t)
    (dy,) = torch.autograd.grad(y.sum(), t)
    with np.errstate(**RAISE_BUT_UNDERFLOW):
        value = oracle.activation(name, x)
        grad = oracle.activation_grad(name, x)
    assert value.dtype == grad.dtype == np.float64
    # atol: torch computes sigmoid(-710) as 1/(1+inf) = 0, the oracle as the subnormal e^-710.
    np.testing.assert_allclose(value, y.detach().numpy(), rtol=RTOL_ACT, atol=1e-300, equal_nan=True)
    np.testing.assert_array_equal(np.signbit(value[:2]), [False, name == "tanh"])  # tanh(-0) = -0
    finite = ~np.isnan(x)
    np.testing.assert_allclose(grad[finite], dy.numpy()[finite], rtol=RTOL_ACT, atol=ATOL_TORCH_ACT_GRAD)
    # The oracle's own convention at NaN (torch's relu backward says 1 there).
    assert np.isnan(value[~finite]).all() and np.isnan(grad[~finite]).all()


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_activation_matches_high_precision(name):
    """Values and derivatives to a few ulps of 50-digit mpmath, tails included."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    x = _activation_inputs()
    x = x[np.isfinite(x)]

    def exact(v: float) -> tuple[float, float]:
        # 1 - t^2 and 1 - s would need hundreds of digits in the tails; sech^2 and s(x) s(-x) do not.
        m = mpmath.mpf(v)
        if name == "tanh":
            return float(mpmath.tanh(m)), float(mpmath.sech(m) ** 2)
        return float(1 / (1 + mpmath.exp(-m))), float(1 / (1 + mpmath.exp(-m)) / (1 + mpmath.exp(m)))

    expected = np.array([exact(float(v)) for v in x])
    np.testing.assert_allclose(oracle.activation(name, x), expected[:, 0], rtol=RTOL_ACT, atol=1e-320)
    np.testing.assert_allclose(oracle.activation_grad(name, x), expected[:, 1], rtol=RTOL_ACT, atol=1e-320)


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_exact_activation_is_the_correctly_rounded_value_and_its_remainder(name):
    """activation_exact's hi is 60-digit mpmath rounded to float64; hi + lo is it to ~1e-32, derivatives too."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    x = _activation_inputs()
    x = np.concatenate([x[np.isfinite(x)], [1e-30, -1e-30, 2e-300, 79.5, -79.5]])
    exact = oracle.activation_exact(name, x)

    def reference(v: float) -> tuple[Any, Any]:
        m = mpmath.mpf(v)
        if name == "relu":
            return max(m, 0), mpmath.mpf(int(v > 0))
        if name == "tanh":
            return mpmath.tanh(m), mpmath.sech(m) ** 2
        return 1 / (1 + mpmath.exp(-m)), 1 / (1 + mpmath.exp(-m)) / (1 + mpmath.exp(m))

    for i, v in enumerate(x):
        for hi, lo, want in zip(
            (exact.value[i], exact.derivative[i]), (exact.value_lo[i], exact.derivative_lo[i]), reference(float(v))
        ):
            assert hi == float(want), (name, v)
            if abs(want) > 1e-280:  # below, lo is subnormal or 0 (tanh'(709) underflows float64)
                assert abs(mpmath.mpf(hi) + mpmath.mpf(lo) - want) <= 1e-31 * abs(want), (name, v)
    if name == "tanh":
        assert np.signbit(oracle.activation_exact(name, np.array([-0.0])).value[0])  # tanh(-0) = -0
    # The float64 oracle agrees to a few ulps: the exact reference is for what those ulps decide.
    np.testing.assert_allclose(oracle.activation(name, x), exact.value, rtol=4 * np.finfo(float).eps, atol=1e-320)


def test_exact_activation_takes_finite_x_only():
    with pytest.raises(SpecError, match="finite"):
        oracle.activation_exact("tanh", np.array([np.inf]))


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_activation_matches_seed_formulas(name):
    x = np.linspace(-15, 15, 301)
    seed = {
        "relu": np.maximum(0, x),
        "tanh": (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x)),
        "sigmoid": 1 / (1 + np.exp(-x)),
    }[name]
    np.testing.assert_allclose(oracle.activation(name, x), seed, rtol=1e-14, atol=1e-16)


def test_activation_limits_and_kinks():
    with np.errstate(**RAISE_BUT_UNDERFLOW):
        assert oracle.activation("sigmoid", np.array([-np.inf, np.inf])).tolist() == [0.0, 1.0]
        assert oracle.activation("tanh", np.array([-np.inf, np.inf])).tolist() == [-1.0, 1.0]
        assert oracle.activation_grad("relu", np.array([-1.0, 0.0, -0.0, 1.0])).tolist() == [0.0, 0.0, 0.0, 1.0]
        assert np.isnan(oracle.activation("relu", np.array([np.nan])))[0]


def test_activation_float32_returns_float64_and_leaves_input_alone():
    x = np.array([-1.5, 0.0, 2.0], dtype=np.float32)
    before = x.copy()
    for name in ("relu", "tanh", "sigmoid"):
        assert oracle.activation(name, x).dtype == np.float64
        assert oracle.activation_grad(name, x).dtype == np.float64
    np.testing.assert_array_equal(x, before)


# -- max-pool ties ------------------------------------------------------------------------


def _pool_only_network() -> tuple[NetSpec, dict[str, np.ndarray]]:
    """A 1x4x4 image through an identity 1x1 conv, relu, a 2x2 max pool and a sum: logits = sum of the pools."""
    spec = NetSpec(in_channels=1, height=4, width=4, conv_stages=(ConvStage(1, 1, 2),), hidden=(), num_classes=1)
    params = {
        "conv1.weight": np.ones((1, 1, 1, 1)),
        "conv1.bias": np.zeros(1),
        "fc1.weight": np.ones((1, 4)),
        "fc1.bias": np.zeros(1),
    }
    return spec, params


def test_max_pool_tie_gradient_goes_to_first_in_row_major_order():
    spec, params = _pool_only_network()
    # Windows: all four tie; tie on the anti-diagonal; tie on the bottom row; a single max.
    x = np.array([[3.0, 3.0, 1.0, 2.0], [3.0, 3.0, 2.0, 1.0], [1.0, 0.5, 1.0, 4.0], [2.0, 2.0, 0.0, 1.0]]).reshape(
        1, 1, 4, 4
    )
    target = np.zeros((1, 1))
    value, grads = oracle.gradients(spec, params, x, target, "sse")
    logit = 3.0 + 2.0 + 2.0 + 4.0
    assert value == logit**2
    expected = np.zeros((4, 4))
    expected[0, 0] = expected[0, 3] = expected[3, 0] = expected[2, 3] = 2 * logit  # dL/dlogit = 2 logit
    np.testing.assert_array_equal(grads["input"][0, 0], expected)
    # torch CPU max_pool2d routes ties the same way.
    _, _, ref = torch_gradients(spec, params, x, target, "sse")
    np.testing.assert_array_equal(ref["input"][0, 0], expected)


def test_max_pool_floor_mode_drops_the_ragged_edge():
    spec = NetSpec(in_channels=1, height=5, width=5, conv_stages=(ConvStage(1, 1, 2),), hidden=(), num_classes=1)
    _, params = _pool_only_network()
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    layers = oracle.forward_layers(spec, params, x)
    np.testing.assert_array_equal(layers["conv1.pool"][0, 0], [[6.0, 8.0], [16.0, 18.0]])
    _, grads = oracle.gradients(spec, params, x, np.zeros((1, 1)), "sse")
    assert (grads["input"][0, 0, 4, :] == 0).all() and (grads["input"][0, 0, :, 4] == 0).all()


# -- losses -------------------------------------------------------------------------------


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4], [5e3, 5e3, 5e3]])
    labels = np.array([1, 2, 0])
    with np.errstate(**RAISE_BUT_UNDERFLOW):
        value = oracle.loss("cross_entropy", logits, labels)
        grad = oracle.loss_grad("cross_entropy", logits, labels)
    expected = 1e4 + math.log(2) + math.log(3)  # row 0: 1e4 - 0; row 1: log 2; row 2: log 3
    assert math.isclose(value, expected, rel_tol=RTOL_F64)
    ref = F.cross_entropy(torch.tensor(logits, requires_grad=True), torch.from_numpy(labels), reduction="sum")
    assert math.isclose(value, ref.item(), rel_tol=RTOL_F64)
    np.testing.assert_allclose(grad, [[1, -1, 0], [0, 0.5, -0.5], [-2 / 3, 1 / 3, 1 / 3]], rtol=RTOL_F64, atol=1e-300)


@pytest.mark.parametrize("loss", ["sse", "cross_entropy"])
def test_loss_and_grad_match_torch(loss):
    rng = np.random.default_rng(11)
    logits = rng.normal(scale=3.0, size=(9, 5))
    target = rng.normal(size=(9, 5)) if loss == "sse" else rng.integers(0, 5, size=9)
    t = torch.tensor(logits, requires_grad=True)
    ref = torch_loss(loss, t, target)
    ref.backward()
    assert math.isclose(oracle.loss(loss, logits, target), ref.item(), rel_tol=RTOL_F64)
    assert_close(oracle.loss_grad(loss, logits, target), t.grad.numpy(), f"d{loss}/dlogits")


# -- validation and independence ------------------------------------------------------------


def test_bad_arguments_raise_spec_error():
    spec = NetSpec()
    rng = np.random.default_rng(3)
    params = make_params(spec, rng)
    x = rng.normal(size=(2, 3, 40, 40))
    with pytest.raises(SpecError):
        oracle.forward(spec, params, x[:, :1])
    with pytest.raises(SpecError):
        oracle.forward(spec, {k: v for k, v in params.items() if k != "fc3.bias"}, x)
    with pytest.raises(SpecError):
        oracle.gradients(spec, params, x, np.array([0, 10]), "cross_entropy")
    with pytest.raises(SpecError):
        oracle.gradients(spec, params, x, np.zeros((2, 10)), "mae")
    with pytest.raises(SpecError):
        oracle.activation("gelu", x)
    with pytest.raises(SpecError):
        oracle.loss("sse", np.zeros((2, 10)), np.zeros((2, 9)))
