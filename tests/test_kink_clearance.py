"""Data clear of every kink takes the oracle's branch at every kink, in any summation order.

Gradient checks compare elementwise, so a backend that lands on the other side of a ReLU's 0
or of a max-pool window's runner-up than the oracle fails for a rounding difference. Here
the seed's network is computed in float32 with every conv and linear output summed in
random orders, one rounded product at a time, as a kernel with another blocking or thread
split would: on data from ``data_away_from_kinks`` every ReLU sign and every pool winner
that the gradient uses must be the oracle's.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.net.bounds import forward_bound, layer_bounds
from harness.net.precision import PRECISIONS
from harness.net.testdata import (
    as_float64,
    data_away_from_kinks,
    kink_clearance,
    pool_windows,
    random_images,
    random_params,
)
from harness.net.variants import SPEC_VARIANTS

ORDERS = 3


def summed_in_random_order(products: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each output's products (last axis) summed one at a time in one random order, rounding after every addition."""
    return np.cumsum(products[..., rng.permutation(products.shape[-1])], axis=-1)[..., -1]


def float32_layers(spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, rng: np.random.Generator) -> dict:
    """The pre-activations and pool inputs of a float32 forward pass whose sums run in random orders."""
    p = {name: value.astype(np.float32) for name, value in params.items()}
    h, out = x.astype(np.float32), {}
    for name, stage in zip(spec.conv_names, spec.conv_stages):
        w, b = p[f"{name}.weight"], p[f"{name}.bias"]
        k = w.shape[-1]
        patches = np.lib.stride_tricks.sliding_window_view(h, (k, k), axis=(2, 3))  # (N, C, H', W', k, k)
        patches = patches.transpose(0, 2, 3, 1, 4, 5).reshape(*patches.shape[:1], *patches.shape[2:4], -1)
        products = patches[:, None] * w.reshape(1, w.shape[0], 1, 1, -1)  # (N, O, H', W', C k k), rounded
        bias = np.broadcast_to(b.reshape(1, -1, 1, 1, 1), (*products.shape[:-1], 1))
        out[name] = z = summed_in_random_order(np.concatenate([products, bias], axis=-1), rng)
        act = np.maximum(z, np.float32(0))
        out[f"{name}.act"] = act
        h = pool_windows(act, stage.pool).max(axis=-1) if stage.pool > 1 else act
    h = h.reshape(len(h), -1)
    for name in spec.linear_names:
        w, b = p[f"{name}.weight"], p[f"{name}.bias"]
        products = np.concatenate([h[:, None, :] * w[None], np.broadcast_to(b[None, :, None], (len(h), len(b), 1))], -1)
        out[name] = z = summed_in_random_order(products, rng)
        h = np.maximum(z, np.float32(0))
    return out


def used_branches(spec: NetSpec, layers: dict) -> dict[str, np.ndarray]:
    """Every branch the backward pass takes: each pool window's first winner, and each used ReLU's side."""
    branches = {}
    for name, stage in zip(spec.conv_names, spec.conv_stages):
        windows = pool_windows(np.asarray(layers[f"{name}.act"]), stage.pool)
        winner = np.argmax(windows, axis=-1)
        live = np.take_along_axis(pool_windows(np.asarray(layers[name]), stage.pool), winner[..., None], -1)[..., 0] > 0
        branches[f"{name} winners"] = np.where(live, winner, -1)  # a dead window's gradient is 0 whoever wins
        branches[f"{name} relu"] = live
    for name in spec.linear_names[:-1]:
        branches[f"{name} relu"] = np.asarray(layers[name]) > 0
    return branches


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clear_data_takes_the_oracles_branches_in_any_order(seed: int) -> None:
    spec = NetSpec()
    rng = np.random.default_rng(seed)
    params, x = data_away_from_kinks(spec, 7, rng, "float32")
    assert np.all(kink_clearance(spec, params, x, "float32") >= 1)
    expected = used_branches(spec, oracle.forward_layers(spec, as_float64(params), x.astype(np.float64)))
    for _ in range(ORDERS):
        found = used_branches(spec, float32_layers(spec, params, x, rng))
        for where, branch in expected.items():
            np.testing.assert_array_equal(found[where], branch, err_msg=where)


def test_a_relu_input_at_exactly_zero_is_not_clear() -> None:
    spec = NetSpec()
    params = random_params(spec, np.random.default_rng(3))
    params = {name: np.zeros_like(v) if name.endswith(".bias") else v for name, v in params.items()}
    x = random_images(spec, 2, np.random.default_rng(4))
    x[1] = 0  # every pre-activation of sample 1 is exactly 0
    clearance = kink_clearance(spec, params, x, "float64")
    assert clearance[1] == 0 and clearance[0] > 0


def test_a_sample_with_a_near_tie_is_dropped_and_the_draw_is_deterministic() -> None:
    spec = NetSpec()
    first = data_away_from_kinks(spec, 7, np.random.default_rng(5), "float32")
    again = data_away_from_kinks(spec, 7, np.random.default_rng(5), "float32")
    np.testing.assert_array_equal(first[1], again[1])
    clearance = kink_clearance(spec, first[0], first[1], "float32")
    assert clearance.shape == (7,) and np.all(clearance >= 1)


def test_the_clearance_grows_with_the_precision() -> None:
    """A kink clear at float32's bound is clear at float64's; a reduced precision's bound leaves no data clear."""
    spec = SPEC_VARIANTS["1stage"]
    params, x = data_away_from_kinks(spec, 7, np.random.default_rng(6), "float32")
    assert np.all(kink_clearance(spec, params, x, "float64") >= kink_clearance(spec, params, x, "float32"))
    with pytest.raises(RuntimeError, match="float32 and float64 only"):
        data_away_from_kinks(NetSpec(), 7, np.random.default_rng(6), "bfloat16", attempts=2)


def test_layer_bounds_add_up_to_the_forward_bound() -> None:
    for p in PRECISIONS.values():
        bounds = layer_bounds(NetSpec(), p)
        assert bounds == sorted(bounds) and bounds[-1] == forward_bound(NetSpec(), p)
