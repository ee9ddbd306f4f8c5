"""The numpy backend against the eager backend (PyTorch), operation by operation.

Both compute in the same dtype and differ only in summation order, so the tolerances are
tight: float64 agrees to ~1e-10 relative, float32 to ~1e-4 (a few hundred ulps of sums over
up to ~8e4 terms). Entries far below an array's scale carry the absolute rounding error of
the whole sum, hence the second, scale-relative term.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.eager import EagerBackend
from backends.numpy_backend import NumpyBackend, PreparedNumpyNet
from harness import Capability, ConvStage, NetSpec, SpecError
from harness.contract.backend import check_backend
from harness.net.testdata import tied_pool_data

ROOT = Path(__file__).resolve().parent.parent
# |actual - expected| <= RTOL * |expected| + ATOL_SCALE * max|expected|
TOLERANCES = {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-5)}
DTYPES = [pytest.param(d, id=d) for d in ("float64", "float32")]
BATCHES = [pytest.param(b, id=f"batch{b}") for b in (1, 7)]
LOSSES = [pytest.param(name, id=name) for name in ("sse", "cross_entropy")]
SPECS = [
    pytest.param(NetSpec(), id="seed"),
    pytest.param(NetSpec(height=32, width=32), id="32x32"),
    pytest.param(NetSpec(in_channels=1), id="1ch"),
    pytest.param(NetSpec(num_classes=100), id="100cls"),
    pytest.param(NetSpec(activation="tanh"), id="tanh"),
    pytest.param(NetSpec(activation="sigmoid"), id="sigmoid"),
    # odd sizes: floor-mode pooling drops a row and a column; other kernel and pool sizes
    pytest.param(NetSpec(height=41, width=43, conv_stages=(ConvStage(4, 3, 3), ConvStage(5, 4, 2))), id="odd"),
    pytest.param(
        NetSpec(height=12, width=9, conv_stages=(ConvStage(4, 1, 1), ConvStage(3, 2, 1)), hidden=()), id="k1p1"
    ),
]

NUMPY = NumpyBackend()
EAGER = EagerBackend()


@pytest.fixture(autouse=True, scope="module")
def single_threaded_torch():
    """Correctness only: one torch thread gives the same answers, and on a busy machine
    torch's spinning worker threads make each small call up to 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str, what: str) -> None:
    rtol, atol_scale = TOLERANCES[dtype]
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {dtype}"
    diff = np.abs(actual.astype(np.float64) - expected)
    allowed = rtol * np.abs(expected) + atol_scale * np.max(np.abs(expected))
    bad = diff > allowed
    if np.any(bad):
        worst = np.unravel_index(np.argmax(diff - allowed), diff.shape)
        raise AssertionError(
            f"{what} ({dtype}): {int(bad.sum())}/{bad.size} elements differ; worst at {worst}:"
            f" {actual[worst]!r} vs {expected[worst]!r} (abs diff {diff[worst]:.3g},"
            f" tolerance rtol={rtol:g} + {atol_scale:g}*max|expected|)"
        )


def problem(spec: NetSpec, dtype: str, batch: int, loss: str = "sse", seed: int = 0):
    rng = np.random.default_rng(seed)
    params = NUMPY.init_params(spec, seed=seed, dtype=dtype)
    # nonzero biases, so that a bias bug shows
    for name in spec.parameter_shapes():
        if name.endswith(".bias"):
            params[name] = (0.1 * rng.standard_normal(params[name].shape)).astype(dtype)
    x = rng.standard_normal((batch, spec.in_channels, spec.height, spec.width)).astype(dtype)
    if loss == "sse":
        target = rng.standard_normal((batch, spec.num_classes)).astype(dtype)
    else:
        target = rng.integers(0, spec.num_classes, batch)
    return params, x, target


# -- the contract ----------------------------------------------------------------------------


def test_declares_the_full_contract() -> None:
    check_backend(NUMPY, "numpy")
    assert NUMPY.name == "numpy"
    assert NUMPY.version == f"numpy {np.__version__}"
    assert NUMPY.capabilities == frozenset(Capability)
    assert NUMPY.devices == ("cpu",)
    assert NUMPY.dtypes == ("float32", "float64")
    assert NUMPY.availability().available


def test_imports_neither_torch_nor_the_oracle() -> None:
    for path in (ROOT / "backends" / "numpy_backend.py", ROOT / "backends" / "numpy_kernels.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith("torch"), f"{path.name} imports {name}"
                assert "oracle" not in name, f"{path.name} imports {name}"


def test_is_registered_as_a_builtin_plugin() -> None:
    from backends import numpy_backend

    (backend,) = numpy_backend.harness_backends()
    assert isinstance(backend, NumpyBackend)


# -- against eager ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", SPECS)
def test_forward_and_intermediates_match_eager(spec: NetSpec, dtype: str, batch: int) -> None:
    params, x, _ = problem(spec, dtype, batch)
    expected = EAGER.intermediates(spec, params, x, device="cpu", dtype=dtype)
    actual = NUMPY.intermediates(spec, params, x, device="cpu", dtype=dtype)
    assert list(actual) == list(expected) == list(spec.layer_names())
    for name in expected:
        assert_close(actual[name], expected[name], dtype, f"layer {name}")
    logits = NUMPY.forward(spec, params, x, device="cpu", dtype=dtype)
    assert_close(logits, expected[spec.linear_names[-1]], dtype, "forward")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", SPECS)
def test_gradients_and_train_step_match_eager(spec: NetSpec, dtype: str, batch: int, loss: str) -> None:
    params, x, target = problem(spec, dtype, batch, loss)
    value, grads = NUMPY.gradients(spec, params, x, target, loss=loss, device="cpu", dtype=dtype)
    expected_value, expected_grads = EAGER.gradients(spec, params, x, target, loss=loss, device="cpu", dtype=dtype)
    assert isinstance(value, float)
    assert value == pytest.approx(expected_value, rel=TOLERANCES[dtype][0])
    assert set(grads) == set(expected_grads) == {*spec.parameter_shapes(), "input"}
    for name, expected in expected_grads.items():
        assert_close(grads[name], expected, dtype, f"d{loss}/d{name}")
    # SGD from eager's gradients (eager's own optimizer is checked below: building one is slow)
    stepped = NUMPY.train_step(spec, params, x, target, loss=loss, lr=0.05, device="cpu", dtype=dtype)
    assert list(stepped) == list(spec.parameter_shapes())
    for name, p in params.items():
        assert_close(stepped[name], p - 0.05 * expected_grads[name], dtype, f"train_step {name}")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_train_step_matches_eager_sgd(dtype: str, loss: str) -> None:
    spec = NetSpec()
    params, x, target = problem(spec, dtype, 7, loss)
    stepped = NUMPY.train_step(spec, params, x, target, loss=loss, lr=0.05, device="cpu", dtype=dtype)
    expected = EAGER.train_step(spec, params, x, target, loss=loss, lr=0.05, device="cpu", dtype=dtype)
    assert list(stepped) == list(expected)
    for name in expected:
        assert_close(stepped[name], expected[name], dtype, f"train_step {name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_send_the_gradient_to_the_first_maximum(dtype: str) -> None:
    """torch's rule: a tied window's gradient goes to its first maximum in row-major order.

    :func:`~harness.net.testdata.tied_pool_data` makes every window of both pools an exact
    four-way tie in any summation order, so the verdict holds whatever kernel NumPy's BLAS
    picks on this machine.
    """
    spec = NetSpec()
    params, x = tied_pool_data(spec, dtype)
    target = np.array([3])
    _, grads = NUMPY.gradients(spec, params, x, target, loss="cross_entropy", device="cpu", dtype=dtype)
    _, expected = EAGER.gradients(spec, params, x, target, loss="cross_entropy", device="cpu", dtype=dtype)
    for name in expected:
        assert_close(grads[name], expected[name], dtype, f"d/d{name}")
    # Only first corners (even rows) carry gradient: pooled2 rows 0-6 take conv2 rows 0, 2, ...,
    # 12, which read pooled1 rows 0-16, which take conv1 rows 0, 2, ..., 32, which read input
    # rows 0-36. Any other rule would reach rows 37-39.
    tied = grads["input"][0]
    assert np.any(tied[:, 36]) and not np.any(tied[:, 37:]) and not np.any(tied[:, :, 37:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_prepared_net_repeats_train_steps_like_the_contract(dtype: str) -> None:
    spec = NetSpec()
    params, x, target = problem(spec, dtype, 5, "cross_entropy")
    net = NUMPY.prepare(spec, params, device="cpu", dtype=dtype)
    assert isinstance(net, PreparedNumpyNet)
    expected = params
    for _ in range(3):
        net.train_step(x, target, loss="cross_entropy", lr=0.01)
        _, grads = EAGER.gradients(spec, expected, x, target, loss="cross_entropy", device="cpu", dtype=dtype)
        expected = {name: p - 0.01 * grads[name] for name, p in expected.items()}
    current = net.parameters()
    for name in expected:
        assert_close(current[name], expected[name], dtype, f"after 3 steps: {name}")
    # buffers follow the batch size; results are fresh arrays, not views of the net's buffers
    first = net.forward(x[:2])
    kept = first.copy()
    wide = net.forward(np.concatenate([x, x]))
    assert_close(wide[:5], EAGER.forward(spec, current, x, device="cpu", dtype=dtype), dtype, "forward batch 10")
    np.testing.assert_array_equal(first, kept)
    current["fc1.bias"][:] = 123.0
    assert not np.any(net.parameters()["fc1.bias"] == 123.0)


def test_float32_stays_float32() -> None:
    spec = NetSpec()
    params, x, target = problem(spec, "float32", 4, "sse")
    net = NUMPY.prepare(spec, params, device="cpu", dtype="float32")
    assert net.forward(x).dtype == np.float32
    _, grads = net.gradients(x, target, loss="sse")
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    net.train_step(x, target, loss="sse", lr=0.01)
    assert {p.dtype for p in net.parameters().values()} == {np.dtype(np.float32)}
    for kernel in net._convs:
        assert kernel.banded.dtype == np.float32
        assert {b.dtype for b in kernel._buffers.values()} <= {np.dtype(np.float32), np.dtype(bool)}
    # float64 parameters are cast to the requested dtype, not the other way round
    wide = {k: v.astype(np.float64) for k, v in params.items()}
    assert NUMPY.forward(spec, wide, x, device="cpu", dtype="float32").dtype == np.float32


@pytest.mark.parametrize(("given", "asked"), [("float64", "float32"), ("float32", "float64")])
def test_an_input_of_another_dtype_is_rejected_not_cast(given: str, asked: str) -> None:
    spec = NetSpec()
    params, x, _ = problem(spec, asked, 2)
    with pytest.raises(SpecError, match=f"input dtype {given} does not match the call's dtype='{asked}'"):
        NUMPY.forward(spec, params, x.astype(given), device="cpu", dtype=asked)


@pytest.mark.parametrize("spec", [SPECS[0], SPECS[-2]])
def test_intermediates_are_recorded_from_the_kernels_forward_runs(spec: NetSpec) -> None:
    """A defect planted in conv2's kernel shows in conv2 onwards, and the logits are forward's, bit for bit."""
    params, x, _ = problem(spec, "float64", 3)
    net = NUMPY.prepare(spec, params, device="cpu", dtype="float64")
    net._convs[1].banded[0, 0] += 1.0  # one weight of conv2, in the banded matrix only
    layers = net.intermediates(x)
    expected = EAGER.intermediates(spec, params, x, device="cpu", dtype="float64")
    assert list(layers) == list(spec.layer_names())
    for name in ("conv1", "conv1.act", "conv1.pool"):
        assert_close(layers[name], expected[name], "float64", name)
    assert not np.allclose(layers["conv2"], expected["conv2"])
    np.testing.assert_array_equal(layers[spec.linear_names[-1]], net.forward(x))


def test_inputs_are_never_modified() -> None:
    spec = NetSpec()
    for loss in ("sse", "cross_entropy"):
        params, x, target = problem(spec, "float32", 3, loss)
        saved = ({k: v.copy() for k, v in params.items()}, x.copy(), target.copy())
        NUMPY.forward(spec, params, x, device="cpu", dtype="float32")
        NUMPY.intermediates(spec, params, x, device="cpu", dtype="float32")
        NUMPY.gradients(spec, params, x, target, loss=loss, device="cpu", dtype="float32")
        NUMPY.train_step(spec, params, x, target, loss=loss, lr=0.1, device="cpu", dtype="float32")
        NUMPY.loss(loss, NUMPY.forward(spec, params, x, device="cpu", dtype="float32"), target)
        net = NUMPY.prepare(spec, params, device="cpu", dtype="float32")
        net.train_step(x, target, loss=loss, lr=0.1)
        for name, value in saved[0].items():
            np.testing.assert_array_equal(params[name], value, err_msg=name)
        np.testing.assert_array_equal(x, saved[1])
        np.testing.assert_array_equal(target, saved[2])


def test_no_floating_point_warnings_on_the_hot_path() -> None:
    spec = NetSpec()
    params, x, target = problem(spec, "float32", 8, "cross_entropy")
    net = NUMPY.prepare(spec, params, device="cpu", dtype="float32")
    with np.errstate(all="raise"):
        net.forward(x)
        net.gradients(x, target, loss="cross_entropy")
        net.train_step(x, target, loss="cross_entropy", lr=0.01)


def test_rejects_what_does_not_fit() -> None:
    spec = NetSpec()
    params, x, target = problem(spec, "float32", 2, "cross_entropy")
    with pytest.raises(SpecError, match="channels"):
        NUMPY.forward(spec, params, x[:, :1], device="cpu", dtype="float32")
    with pytest.raises(SpecError, match="missing"):
        NUMPY.forward(spec, {k: v for k, v in params.items() if k != "fc1.bias"}, x, device="cpu", dtype="float32")
    with pytest.raises(SpecError, match="labels"):
        NUMPY.gradients(spec, params, x, target + 10, loss="cross_entropy", device="cpu", dtype="float32")
    with pytest.raises(SpecError, match="cpu"):
        NUMPY.forward(spec, params, x, device="cuda", dtype="float32")
    with pytest.raises(SpecError, match="dtype"):
        NUMPY.forward(spec, params, x, device="cpu", dtype="float16")
    with pytest.raises(SpecError, match="loss"):
        NUMPY.loss("mse", np.zeros((2, 10), np.float32), np.zeros((2, 10), np.float32))


# -- losses, activations, init -----------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_matches_eager(dtype: str, loss: str) -> None:
    rng = np.random.default_rng(4)
    logits = (10 * rng.standard_normal((7, 10))).astype(dtype)
    target = rng.standard_normal((7, 10)).astype(dtype) if loss == "sse" else rng.integers(0, 10, 7)
    value = NUMPY.loss(loss, logits, target)
    assert isinstance(value, float)
    assert value == pytest.approx(EAGER.loss(loss, logits, target), rel=TOLERANCES[dtype][0])


EDGE_X = [-np.inf, -1e4, -1000.0, -100.0, -88.0, -20.0, -1.0, -0.0, 0.0]
EDGE_X += [1e-8, 1.0, 20.0, 88.0, 100.0, 1000.0, 1e4, np.inf]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_activation_edge_cases_raise_nothing(name: str, dtype: str) -> None:
    x = np.array([*EDGE_X, np.nan, np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
    before = x.copy()
    with np.errstate(all="raise"):
        y = NUMPY.activation(name, x)
        dy = NUMPY.activation_grad(name, x)
    np.testing.assert_array_equal(x, before)
    for out in (y, dy):
        assert out.dtype == x.dtype and out.shape == x.shape
        assert np.isnan(out[len(EDGE_X)]), f"{name}: NaN must give NaN"
    finite = ~np.isnan(x)
    assert not np.any(np.isnan(y[finite])) and not np.any(np.isnan(dy[finite]))
    at = dict(zip(EDGE_X, zip(y.tolist(), dy.tolist())))
    limits = {"relu": (0.0, np.inf), "tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}[name]
    assert (at[-np.inf][0], at[np.inf][0]) == limits
    assert at[-1e4][1] == at[1e4][1] == 0.0 if name != "relu" else at[1e4][1] == 1.0
    if name == "relu":
        assert at[0.0] == (0.0, 0.0)  # relu'(0) = 0
    if name == "sigmoid":
        assert at[-1000.0][0] == 0.0 and at[1000.0][0] == 1.0 and at[0.0] == (0.5, 0.25)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_activations_match_eager(name: str, dtype: str) -> None:
    x = np.concatenate([np.linspace(-12, 12, 2000), [0.0, -0.0]]).astype(dtype).reshape(-1, 7)
    assert_close(NUMPY.activation(name, x), EAGER.activation(name, x), dtype, name)
    # torch's derivatives, from outputs (1 - t^2, s(1 - s)), cancel to ~eps in the tails
    assert_close(NUMPY.activation_grad(name, x), EAGER.activation_grad(name, x), dtype, f"{name}'")


def test_init_params() -> None:
    spec = NetSpec()
    a = NUMPY.init_params(spec, seed=7, dtype="float64")
    b = NUMPY.init_params(spec, seed=7, dtype="float64")
    c = NUMPY.init_params(spec, seed=8, dtype="float64")
    single = NUMPY.init_params(spec, seed=7, dtype="float32")
    assert list(a) == list(spec.parameter_shapes())
    for name, shape in spec.parameter_shapes().items():
        assert a[name].shape == shape and a[name].dtype == np.float64 and single[name].dtype == np.float32
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(single[name], a[name].astype(np.float32))
        if name.endswith(".bias"):
            assert not np.any(a[name]), f"{name} must be zero"
            continue
        assert not np.array_equal(a[name], c[name]), f"{name}: seeds 7 and 8 agree"
        fan_in, fan_out = spec.fans(name)
        if name.startswith("conv"):  # N(0, 2/fan_out); loose, the statistics suite is rigorous
            assert np.std(a[name]) == pytest.approx(np.sqrt(2 / fan_out), rel=0.2)
            assert abs(np.mean(a[name])) < 0.2 * np.sqrt(2 / fan_out)
        else:  # U(-bound, bound)
            bound = np.sqrt(6 / (fan_in + fan_out))
            assert np.max(np.abs(a[name])) <= bound
            assert np.max(np.abs(a[name])) > 0.9 * bound
            assert np.std(a[name]) == pytest.approx(bound / np.sqrt(3), rel=0.2)
