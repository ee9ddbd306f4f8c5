from __future__ import annotations

import numpy as np
import pytest

from harness import ConvStage, NetSpec, SpecError
from harness.net.spec import check_dtype


def test_default_is_the_seed_network() -> None:
    spec = NetSpec()
    assert (spec.in_channels, spec.height, spec.width, spec.num_classes) == (3, 40, 40, 10)
    assert [(s.out_channels, s.kernel, s.pool) for s in spec.conv_stages] == [(6, 5, 2), (16, 5, 2)]
    assert spec.hidden == (120, 84)
    assert spec.activation == "relu"


def test_flatten_width() -> None:
    assert NetSpec().flatten_width == 7 * 7 * 16 == 784
    assert NetSpec(height=32, width=32).flatten_width == 400


def test_parameter_shapes_and_count() -> None:
    shapes = NetSpec().parameter_shapes()
    assert shapes == {
        "conv1.weight": (6, 3, 5, 5),
        "conv1.bias": (6,),
        "conv2.weight": (16, 6, 5, 5),
        "conv2.bias": (16,),
        "fc1.weight": (120, 784),
        "fc1.bias": (120,),
        "fc2.weight": (84, 120),
        "fc2.bias": (84,),
        "fc3.weight": (10, 84),
        "fc3.bias": (10,),
    }
    # Computed by hand: 456 + 2416 + 94200 + 10164 + 850
    assert NetSpec().parameter_count == 456 + 2416 + 94200 + 10164 + 850


def test_layer_shapes() -> None:
    layers = {layer.name: layer.shape for layer in NetSpec().layers(batch=7)}
    assert layers["conv1"] == (7, 6, 36, 36)
    assert layers["conv1.pool"] == (7, 6, 18, 18)
    assert layers["conv2"] == (7, 16, 14, 14)
    assert layers["conv2.pool"] == (7, 16, 7, 7)
    assert layers["flatten"] == (7, 784)
    assert layers["fc3"] == (7, 10)
    assert list(layers)[-1] == "fc3" and "fc3.act" not in layers


def test_flops_by_hand() -> None:
    conv1 = 2 * 6 * 36 * 36 * 3 * 25
    conv2 = 2 * 16 * 14 * 14 * 6 * 25
    linear = 2 * (784 * 120 + 120 * 84 + 84 * 10)
    assert NetSpec().flops(batch=1) == conv1 + conv2 + linear
    assert NetSpec().flops(batch=64) == 64 * NetSpec().flops(batch=1)


def test_fans_follow_torch() -> None:
    assert NetSpec().fans("conv1.weight") == (3 * 25, 6 * 25)
    assert NetSpec().fans("fc1.weight") == (784, 120)


def test_spec_is_frozen() -> None:
    with pytest.raises(AttributeError):
        NetSpec().num_classes = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"height": 12, "width": 12}, "too small"),
        ({"height": 40, "width": 15}, "use at least 16x16"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"in_channels": -1}, "in_channels"),
        ({"activation": "gelu"}, "use one of relu, tanh, sigmoid"),
        ({"conv_stages": ()}, "conv_stages is empty"),
        ({"conv_stages": (ConvStage(0),)}, "conv1 out_channels"),
        ({"hidden": (120, 0)}, "hidden width 2"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
    ],
)
def test_invalid_specs_say_what_to_change(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment) as info:
        NetSpec(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.zeros((3, 40, 40), np.float32), "rank 3"),
        (np.zeros((2, 1, 40, 40), np.float32), "1 channels but the spec has in_channels=3"),
        (np.zeros((2, 3, 32, 32), np.float32), "32x32 but the spec expects 40x40"),
        (np.zeros((2, 3, 40, 40), np.int64), "not floating point"),
        (np.zeros((0, 3, 40, 40), np.float32), "empty"),
        ([[0.0]], "numpy.ndarray"),
    ],
)
def test_invalid_inputs_rejected(x: object, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        NetSpec().check_input(x, None)


def test_valid_input_passes_through_unchanged() -> None:
    x = np.ones((2, 3, 40, 40), np.float64)
    assert NetSpec().check_input(x, None) is x


def test_targets_are_checked() -> None:
    spec = NetSpec()
    spec.check_target("cross_entropy", np.array([0, 9]), 2)
    spec.check_target("sse", np.zeros((2, 10)), 2)
    with pytest.raises(SpecError, match="lie in"):
        spec.check_target("cross_entropy", np.array([0, 10]), 2)
    with pytest.raises(SpecError, match="shape"):
        spec.check_target("sse", np.zeros((2, 9)), 2)
    with pytest.raises(SpecError, match="use one of"):
        spec.check_target("hinge", np.zeros(2), 2)


def test_parameters_are_checked() -> None:
    spec = NetSpec()
    params = {name: np.zeros(shape) for name, shape in spec.parameter_shapes().items()}
    spec.check_parameters(params)
    params["fc1.weight"] = np.zeros((784, 120))
    with pytest.raises(SpecError, match="fc1.weight has shape"):
        spec.check_parameters(params)
    del params["fc1.weight"]
    with pytest.raises(SpecError, match="missing"):
        spec.check_parameters(params)


def test_dtypes() -> None:
    assert check_dtype(np.float32) == "float32"
    assert check_dtype("float64") == "float64"
    with pytest.raises(SpecError, match="float16"):
        check_dtype("float16")
    with pytest.raises(SpecError):
        check_dtype("banana")
