"""The eager backend's Net is the seed's network, initialised exactly as the seed does it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backends.eager import EagerBackend, Net, build_net
from harness import NetSpec, oracle
from harness.net.testdata import random_images, random_params


def seed_model(num_classes: int) -> nn.Sequential:
    """The code block of the seed's section 3.1, verbatim."""
    model = nn.Sequential(
        nn.Conv2d(in_channels=3, out_channels=6, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2),
        nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 16, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.constant_(m.bias, 0)
    return model


SEED_NAMES = {"0": "conv1", "3": "conv2", "7": "fc1", "9": "fc2", "11": "fc3"}


def test_init_draws_exactly_what_the_seed_code_draws() -> None:
    """Same torch seed, same draws: every weight and linear bias equal; conv biases are the spec's 0."""
    torch.manual_seed(1234)
    reference = {f"{SEED_NAMES[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in seed_model(10).state_dict().items()}
    torch.manual_seed(1234)
    ours = Net(NetSpec()).state_dict()
    assert list(ours) == list(reference)
    for name, value in ours.items():
        if name.startswith("conv") and name.endswith("bias"):
            assert torch.count_nonzero(value) == 0, "the spec sets conv biases to 0"
            assert torch.count_nonzero(reference[name]) > 0, "the seed leaves PyTorch's default uniform"
        else:
            assert torch.equal(value, reference[name]), name


def test_forward_matches_the_seed_model_on_the_same_weights() -> None:
    torch.manual_seed(5)
    seed = seed_model(10).double()
    net = Net(NetSpec()).double()
    net.load_state_dict({f"{SEED_NAMES[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in seed.state_dict().items()})
    x = torch.randn(4, 3, 40, 40, dtype=torch.float64)
    torch.testing.assert_close(net(x), seed(x), rtol=0, atol=0)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_hidden_activation_follows_the_spec(activation: str) -> None:
    """Every layer, the conv stages' activations included, against the oracle's from the same input.

    The reference is computed independently of the net (not from the net's own pre-activations),
    so a wrong function, a missing activation or one in the wrong place all fail.
    """
    spec = NetSpec(activation=activation)
    rng = np.random.default_rng(0)
    params, x = random_params(spec, rng), random_images(spec, 2, rng)
    net = build_net(spec, params, "cpu", "float64")
    with torch.no_grad():
        layers = {name: t.numpy() for name, t in net.forward_layers(torch.from_numpy(x)).items()}
    expected = oracle.forward_layers(spec, params, x)
    assert list(layers) == list(expected)
    for name, reference in expected.items():
        np.testing.assert_allclose(layers[name], reference, rtol=1e-10, atol=1e-12, err_msg=name)
    assert "fc3.act" not in layers


def test_backend_round_trips_canonical_parameters() -> None:
    backend = EagerBackend()
    params = backend.init_params(NetSpec(), seed=3, dtype="float64")
    assert all(v.dtype == np.float64 for v in params.values())
    again = backend.init_params(NetSpec(), seed=3, dtype="float64")
    assert all(np.array_equal(params[k], again[k]) for k in params)
    new = backend.train_step(
        NetSpec(),
        params,
        np.zeros((1, 3, 40, 40)),
        np.array([1]),
        loss="cross_entropy",
        lr=0.0,
        device="cpu",
        dtype="float64",
    )
    assert all(np.array_equal(params[k], new[k]) for k in params), "lr=0 must leave parameters unchanged"


def test_inputs_are_not_shared_or_mutated() -> None:
    backend = EagerBackend()
    spec = NetSpec()
    params = backend.init_params(spec, seed=0, dtype="float32")
    before = {k: v.copy() for k, v in params.items()}
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40)).astype(np.float32)
    x_before = x.copy()
    backend.train_step(spec, params, x, np.array([0, 1]), loss="cross_entropy", lr=0.1, device="cpu", dtype="float32")
    assert np.array_equal(x, x_before)
    assert all(np.array_equal(params[k], before[k]) for k in params)
