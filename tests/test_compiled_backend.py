"""The ``compile`` backend: torch.compile of the eager Net matches eager, and compiles sparingly.

Compiling is slow on a small machine, so the tests share the backend's session-wide cache
of compiled modules: the seed spec in float32 compiles one graph per (mode, batch range).
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

import backends.compiled as compiled
from backends.compiled import CompiledBackend
from backends.eager import EagerBackend
from harness import SEED_SPEC, Capability, NetSpec, PluginError, load_backends
from harness.net.testdata import random_images, random_params, random_target

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

FORWARD_RTOL, FORWARD_ATOL = 1e-4, 1e-5  # float32, inductor may reorder sums
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-4  # summed losses: gradients are O(10)
DTYPE = "float32"
EAGER = EagerBackend()


def assert_close(
    actual: np.ndarray, expected: np.ndarray, *, rtol: float = FORWARD_RTOL, atol: float = FORWARD_ATOL, what: str = ""
) -> None:
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


@pytest.fixture(scope="module")
def compile_backend() -> CompiledBackend:
    backend = CompiledBackend()
    if not backend.availability().available:
        pytest.skip(backend.availability().reason)
    return backend


@pytest.fixture(scope="module")
def params() -> dict[str, np.ndarray]:
    return random_params(SEED_SPEC, np.random.default_rng(0), DTYPE)


def images(batch: int, seed: int = 1) -> np.ndarray:
    return random_images(SEED_SPEC, batch, np.random.default_rng(seed), DTYPE)


def graphs_compiled() -> int:
    return int(counters["stats"]["unique_graphs"])


# -- declared contract ----------------------------------------------------------------------


def test_registered_as_the_compile_plugin() -> None:
    registry = load_backends()
    backend = registry.get("compile")
    assert registry.owners["compile"] == "compile"
    assert backend.version.startswith(f"torch {torch.__version__}") and backend.version.endswith("inductor")
    assert Capability.INIT not in backend.capabilities, "compiled RNG does not reproduce eager's stream"
    assert backend.dtypes == ("float32",)


# -- numerics against eager -----------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 7, 64], ids=lambda b: f"batch{b}")
def test_forward_matches_eager(compile_backend: CompiledBackend, params: dict[str, np.ndarray], batch: int) -> None:
    x = images(batch)
    actual = compile_backend.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
    assert actual.dtype == np.float32 and actual.shape == (batch, SEED_SPEC.num_classes)
    assert_close(actual, EAGER.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE))


def test_new_parameters_are_loaded_into_the_cached_module(compile_backend: CompiledBackend) -> None:
    x = images(7)
    for seed in (10, 11):
        params = random_params(SEED_SPEC, np.random.default_rng(seed), DTYPE)
        expected = EAGER.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
        assert_close(compile_backend.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE), expected)


def test_intermediates_match_eager(compile_backend: CompiledBackend, params: dict[str, np.ndarray]) -> None:
    x = images(7)
    actual = compile_backend.intermediates(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
    expected = EAGER.intermediates(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
    assert list(actual) == list(SEED_SPEC.layer_names())
    for name in expected:
        assert_close(actual[name], expected[name], what=name)


def test_gradients_match_eager(compile_backend: CompiledBackend, params: dict[str, np.ndarray]) -> None:
    x = images(7)
    target = random_target(SEED_SPEC, "sse", 7, np.random.default_rng(2), DTYPE)
    value, grads = compile_backend.gradients(SEED_SPEC, params, x, target, loss="sse", device="cpu", dtype=DTYPE)
    expected_value, expected = EAGER.gradients(SEED_SPEC, params, x, target, loss="sse", device="cpu", dtype=DTYPE)
    assert value == pytest.approx(expected_value, rel=1e-5)
    assert sorted(grads) == sorted(expected)
    for name in expected:
        assert_close(grads[name], expected[name], rtol=GRAD_RTOL, atol=GRAD_ATOL, what=name)


def test_train_step_matches_eager_and_leaves_params_alone(
    compile_backend: CompiledBackend, params: dict[str, np.ndarray]
) -> None:
    x = images(7)
    target = random_target(SEED_SPEC, "cross_entropy", 7, np.random.default_rng(3))
    before = {name: value.copy() for name, value in params.items()}
    updated = compile_backend.train_step(
        SEED_SPEC, params, x, target, loss="cross_entropy", lr=0.05, device="cpu", dtype=DTYPE
    )
    expected = EAGER.train_step(SEED_SPEC, params, x, target, loss="cross_entropy", lr=0.05, device="cpu", dtype=DTYPE)
    for name in expected:
        assert_close(updated[name], expected[name], what=name)
        np.testing.assert_array_equal(params[name], before[name], err_msg=f"{name} was modified")
    # The cached module is reloaded each call: the same step again gives the same result.
    again = compile_backend.train_step(
        SEED_SPEC, params, x, target, loss="cross_entropy", lr=0.05, device="cpu", dtype=DTYPE
    )
    np.testing.assert_array_equal(again["fc1.weight"], updated["fc1.weight"])


def test_new_batch_sizes_do_not_recompile(compile_backend: CompiledBackend, params: dict[str, np.ndarray]) -> None:
    for batch in (1, 7, 64):  # one graph each: batch 1, 2-15 and 16+ (see the module docstring)
        compile_backend.forward(SEED_SPEC, params, images(batch), device="cpu", dtype=DTYPE)
    before = graphs_compiled()
    for batch in (2, 3, 15, 16, 33, 100, 1):
        x = images(batch)
        assert_close(
            compile_backend.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE),
            EAGER.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE),
        )
    assert graphs_compiled() == before, "a new batch size recompiled the forward"
    forward_keys = [
        k for k in compile_backend.compile_times if k.startswith(SEED_SPEC.describe()) and "float32 forward" in k
    ]
    assert 1 <= len(forward_keys) <= 3, forward_keys


def test_compile_time_is_recorded_per_cache_entry(
    compile_backend: CompiledBackend, params: dict[str, np.ndarray]
) -> None:
    compile_backend.forward(SEED_SPEC, params, images(7), device="cpu", dtype=DTYPE)
    key = f"{SEED_SPEC.describe()} [cpu float32 forward, batch 7]"
    if key not in compile_backend.compile_times:  # another test compiled the 2-15 range with another batch
        key = next(
            k for k in compile_backend.compile_times if k.startswith(f"{SEED_SPEC.describe()} [cpu float32 forward")
        )
    assert compile_backend.compile_times[key] > 0
    assert compile_backend.compile_times is compiled.COMPILE_TIMES, "shared by every backend instance, like the cache"


def test_compile_failure_is_a_one_line_plugin_error() -> None:
    def breaks_the_graph(x: torch.Tensor) -> torch.Tensor:
        torch._dynamo.graph_break()
        return x + 1

    function = torch.compile(breaks_the_graph, fullgraph=True)
    with pytest.raises(PluginError, match="torch.compile .* failed for demo: .*TORCH_LOGS") as info:
        compiled.timed_compiled_call(function, (torch.ones(2),), "demo", {})
    assert "\n" not in str(info.value)


# -- prepared nets for benchmarks -----------------------------------------------------------


def test_prepared_net_runs_on_device_tensors(compile_backend: CompiledBackend, params: dict[str, np.ndarray]) -> None:
    prepared = compile_backend.prepare(SEED_SPEC, params, device="cpu", dtype=DTYPE)
    x = images(7)
    logits = prepared.forward(torch.from_numpy(x))
    assert isinstance(logits, torch.Tensor)
    assert_close(logits.numpy(), EAGER.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE))
    target = random_target(SEED_SPEC, "cross_entropy", 7, np.random.default_rng(4))
    prepared.train_step(x, target, loss="cross_entropy", lr=0.05)
    expected = EAGER.train_step(SEED_SPEC, params, x, target, loss="cross_entropy", lr=0.05, device="cpu", dtype=DTYPE)
    assert_close(prepared.parameters()["conv1.weight"], expected["conv1.weight"])
    # compile_seconds counts exactly the calls that compiled: a spec new to the session compiles
    # its forward graph, and a second net of that spec reuses it (dynamo shares graphs).
    fresh = NetSpec(num_classes=3)
    fresh_params = random_params(fresh, np.random.default_rng(5), DTYPE)
    first, second = (compile_backend.prepare(fresh, fresh_params, device="cpu", dtype=DTYPE) for _ in range(2))
    first.forward(torch.from_numpy(random_images(fresh, 7, np.random.default_rng(6), DTYPE)))
    assert first.compile_seconds > 0 and all(fresh.describe() in label for label in first.times), first.times
    second.forward(torch.from_numpy(random_images(fresh, 7, np.random.default_rng(7), DTYPE)))
    assert second.compile_seconds == 0.0, second.times


# -- availability: a real look for the C++ compiler -----------------------------------------


def fake_compiler(directory: Path, exit_code: int) -> Path:
    path = directory / "fake-c++"
    path.write_text(f"#!/bin/sh\necho 'fake c++ 1.0'\nexit {exit_code}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_unavailable_when_cxx_names_a_missing_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    availability = CompiledBackend().availability()
    assert not availability.available
    assert availability.reason.startswith("inductor needs a C++ compiler:")
    assert "no-such-c++" in availability.reason and "set CXX" in availability.reason


def test_unavailable_when_no_compiler_is_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from torch._inductor import config

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no g++ to find
    # config.patch, not monkeypatch: undoing a monkeypatch deletes the option from torch's config.
    with config.patch({"cpp.cxx": (None, "g++")}):
        availability = CompiledBackend().availability()
    assert not availability.available
    assert "'g++' not found" in availability.reason


def test_a_compiler_that_fails_to_run_is_not_available(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXX", str(fake_compiler(tmp_path, exit_code=1)))
    availability = CompiledBackend().availability()
    assert not availability.available and "--version failed" in availability.reason
    working = tmp_path / "ok"
    working.mkdir()
    monkeypatch.setenv("CXX", str(fake_compiler(working, exit_code=0)))
    assert CompiledBackend().availability().available


def test_construction_is_cheap_and_never_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "find_cxx", lambda: pytest.fail("the constructor probed the compiler"))
    CompiledBackend()


# -- the training graph and CUDA graphs -----------------------------------------------------


def test_training_graphs_leave_max_pool_backward_to_aten(
    compile_backend: CompiledBackend, params: dict[str, np.ndarray]
) -> None:
    """Inductor's own lowering of it made the train step 1.35-1.5x slower than eager's (see the module docstring)."""
    compiled.define_max_pool2d_backward()
    compiled.define_max_pool2d_backward()  # defined once per process, whoever asks first
    x = images(7, seed=5)
    target = random_target(SEED_SPEC, "sse", 7, np.random.default_rng(5), DTYPE)
    _, grads = compile_backend.gradients(SEED_SPEC, params, x, target, loss="sse", device="cpu", dtype=DTYPE)
    _, expected = EAGER.gradients(SEED_SPEC, params, x, target, loss="sse", device="cpu", dtype=DTYPE)
    for name in expected:
        assert_close(grads[name], expected[name], rtol=GRAD_RTOL, atol=GRAD_ATOL, what=name)
    net = compiled.compiled_net(SEED_SPEC, "cpu", DTYPE, "gradients").net
    assert isinstance(net, compiled.TrainingNet)
    assert isinstance(compiled.compiled_net(SEED_SPEC, "cpu", DTYPE, "forward").net, compiled.Net)


def test_cuda_graphs_mode_is_unavailable_without_cuda_and_says_why() -> None:
    backend = CompiledBackend("reduce-overhead")
    assert backend.name == "compile-cudagraphs" and backend.version.endswith("inductor reduce-overhead")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the CPU-only behaviour cannot be seen here")
    availability = backend.availability()
    assert not availability.available and backend.devices == ()
    assert availability.reason.startswith("CUDA graphs (torch.compile mode='reduce-overhead') need a CUDA device")
    names = [b.name for b in compiled.harness_backends()]
    assert names == ["compile"], "registered only where it can run, so --strict-backends on CPU does not fail on it"


def test_cuda_graphs_mode_matches_eager_on_cuda(params: dict[str, np.ndarray]) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: CUDA graphs (mode='reduce-overhead') run on cuda only")
    backend = CompiledBackend("reduce-overhead")
    if not backend.availability().available:
        pytest.skip(backend.availability().reason)
    prepared = backend.prepare(SEED_SPEC, params, device="cuda", dtype=DTYPE)
    for batch in (1, 7):  # a second call replays: its output must not be the first call's memory
        x = images(batch)
        expected = EAGER.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
        out = prepared.forward(prepared.to_device(x))
        prepared.synchronize()
        assert_close(prepared.to_host(out), expected, rtol=1e-3, atol=1e-4)
    target = random_target(SEED_SPEC, "cross_entropy", 7, np.random.default_rng(4))
    x = images(7)
    prepared.train_step(prepared.to_device(x), prepared.to_device(target), loss="cross_entropy", lr=0.05)
    stepped = EAGER.train_step(SEED_SPEC, params, x, target, loss="cross_entropy", lr=0.05, device="cpu", dtype=DTYPE)
    assert_close(prepared.parameters()["fc1.weight"], stepped["fc1.weight"], rtol=1e-3, atol=1e-4)
