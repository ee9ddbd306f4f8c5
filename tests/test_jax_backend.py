"""The ``jax`` backend: an optional extra, x64 scoped to each call, and a fast path that reports its compiles.

The conformance suite checks its numbers (``pytest suites --backend=jax``); these tests
check what the suite cannot see: how it behaves without jax, the process-wide state it
leaves alone, and what its prepared object says about compilation.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from backends.jax_backend import JaxBackend, harness_known_deviations
from harness import SEED_SPEC, NetSpec, PluginError, build_plugin_manager, collect_backends, oracle
from harness.net.testdata import as_float64, random_images, random_params, random_target

MODULE_PATH = Path(__file__).resolve().parent.parent / "backends" / "jax_backend.py"
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (an extra)")


def as_float32(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: value.astype(np.float32) for name, value in params.items()}


def load_fresh(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A new copy of a backend module under another name, imported now (the installed one stays untouched)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_without_jax_it_is_listed_unavailable_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` now raises ImportError
    module = load_fresh(MODULE_PATH, "jax_backend_without_jax", monkeypatch)
    plugins = [("jax", module)]
    registry = collect_backends(build_plugin_manager(builtins=False, entry_points=False, extra_plugins=plugins))
    assert registry.failures == []
    availability = registry.get("jax").availability()
    assert not availability.available
    assert availability.reason.startswith("jax cannot be imported (ModuleNotFoundError")
    assert availability.reason.endswith("pip install 'netharness[jax]'")


@pytest.fixture(scope="module")
def jax_backend_() -> JaxBackend:
    return JaxBackend()


@needs_jax
def test_float64_runs_in_float64_and_leaves_the_x64_flag_as_it_was(jax_backend_: JaxBackend) -> None:
    import jax

    before = jax.config.read("jax_enable_x64")
    rng = np.random.default_rng(0)
    params, x = random_params(SEED_SPEC, rng, "float64"), random_images(SEED_SPEC, 2, rng, "float64")
    logits = jax_backend_.forward(SEED_SPEC, params, x, device="cpu", dtype="float64")
    assert logits.dtype == np.float64
    expected = oracle.forward(SEED_SPEC, params, x)
    # float32 arithmetic would err near 1e-7 of the scale; float64 stays far below it.
    assert np.max(np.abs(logits - expected)) <= 1e-12 * np.max(np.abs(expected))
    assert jax.config.read("jax_enable_x64") == before
    single = jax_backend_.forward(SEED_SPEC, as_float32(params), x.astype(np.float32), device="cpu", dtype="float32")
    assert single.dtype == np.float32


@needs_jax
def test_intermediates_come_in_the_spec_order(jax_backend_: JaxBackend) -> None:
    """jit returns a dict with its keys sorted; the contract wants the layers in forward order."""
    spec = NetSpec(activation="tanh")
    rng = np.random.default_rng(1)
    layers = jax_backend_.intermediates(
        spec, random_params(spec, rng, "float32"), random_images(spec, 3, rng, "float32"), device="cpu", dtype="float32"
    )
    assert list(layers) == list(spec.layer_names())


@needs_jax
def test_the_fast_path_reports_compile_seconds_per_phase(jax_backend_: JaxBackend) -> None:
    rng = np.random.default_rng(2)
    params = random_params(SEED_SPEC, rng, "float32")
    net = jax_backend_.prepare(SEED_SPEC, params, device="cpu", dtype="float32")
    assert net.setup_kind == "compile" and net.setup_seconds == 0.0
    x = net.to_device(random_images(SEED_SPEC, 4, rng, "float32"))
    net.forward(x)
    net.synchronize()
    after_forward = net.setup_seconds
    assert set(net.compile_seconds) == {"forward"} and after_forward > 0
    net.forward(x)  # the same shape: no new compile
    assert net.setup_seconds == after_forward
    target = random_target(SEED_SPEC, "cross_entropy", 4, rng)
    net.train_step(x, net.to_device(target), loss="cross_entropy", lr=0.01)
    net.synchronize()
    assert set(net.compile_seconds) == {"forward", "train_step"}
    assert net.setup_seconds > after_forward
    info = net.benchmark_info
    assert set(info) == {"xla_device", "compilation_cache", "compile_s_forward", "compile_s_train_step", "threads"}
    assert info["threads"] == len(os.sched_getaffinity(0))  # XLA's CPU pool: one thread per CPU it may run on


@needs_jax
def test_the_fast_path_step_matches_the_contract_step(jax_backend_: JaxBackend) -> None:
    rng = np.random.default_rng(3)
    params, x = random_params(SEED_SPEC, rng, "float64"), random_images(SEED_SPEC, 3, rng, "float64")
    target = random_target(SEED_SPEC, "sse", 3, rng)
    net = jax_backend_.prepare(SEED_SPEC, params, device="cpu", dtype="float64")
    net.train_step(net.to_device(x), net.to_device(target), loss="sse", lr=0.05)
    stepped = jax_backend_.train_step(SEED_SPEC, params, x, target, loss="sse", lr=0.05, device="cpu", dtype="float64")
    expected = oracle.sgd_step(SEED_SPEC, as_float64(params), x, target, "sse", 0.05)
    for name, value in net.parameters().items():
        np.testing.assert_allclose(value, stepped[name], rtol=1e-12, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(value, expected[name], rtol=1e-10, atol=1e-12, err_msg=name)


@needs_jax
def test_seeds_beyond_32_bits_give_other_parameters(jax_backend_: JaxBackend) -> None:
    low = jax_backend_.init_params(SEED_SPEC, seed=5, dtype="float32")
    high = jax_backend_.init_params(SEED_SPEC, seed=5 + 2**32, dtype="float32")
    assert not np.array_equal(low["conv1.weight"], high["conv1.weight"])
    again = jax_backend_.init_params(SEED_SPEC, seed=5, dtype="float32")
    assert np.array_equal(low["conv1.weight"], again["conv1.weight"])


@needs_jax
def test_a_precision_or_device_it_lacks_is_refused_with_the_reason(jax_backend_: JaxBackend) -> None:
    rng = np.random.default_rng(4)
    params, x = random_params(SEED_SPEC, rng, "float32"), random_images(SEED_SPEC, 1, rng, "float32")
    with pytest.raises(PluginError, match="computes in float32 and float64, not 'bfloat16'"):
        jax_backend_.forward(SEED_SPEC, params, x, device="cpu", dtype="bfloat16")
    if "cuda" not in jax_backend_.devices:
        with pytest.raises(PluginError, match="cannot run on 'cuda' here: jax.devices"):
            jax_backend_.forward(SEED_SPEC, params, x, device="cuda", dtype="float32")


def test_the_tanh_deviations_select_one_activation_and_one_precision_each() -> None:
    deviations = harness_known_deviations(JaxBackend())
    assert [(d.check, dict(d.select)) for d in deviations] == [
        ("activation_properties", {"activation": "tanh", "dtype": "float32"}),
        ("activation_properties", {"activation": "tanh", "dtype": "float64"}),
    ]
    assert all("tensorflow/tensorflow/issues/55390" in d.reason for d in deviations)


CACHE_PROBE = """
import numpy as np
from backends.jax_backend import JaxBackend, use_compilation_cache
from harness import SEED_SPEC
from harness.net.testdata import random_params, random_images
rng = np.random.default_rng(0)
params, x = random_params(SEED_SPEC, rng, "float32"), random_images(SEED_SPEC, 2, rng, "float32")
JaxBackend().forward(SEED_SPEC, params, x, device="cpu", dtype="float32")
print(use_compilation_cache())
"""


@needs_jax
@pytest.mark.parametrize("users_own", [False, True], ids=["default", "users_own"])
def test_compiles_persist_in_a_cache_and_the_users_own_cache_wins(tmp_path: Path, users_own: bool) -> None:
    """XLA's executables are cached on disk under XDG_CACHE_HOME, unless the user configured a cache."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "NETHARNESS_", "XDG_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    if users_own:
        env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "mine")
    root = MODULE_PATH.parent.parent
    done = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE], env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    ours, mine = tmp_path / "xdg" / "netharness" / "jax", tmp_path / "mine"
    used, unused = (mine, ours) if users_own else (ours, mine)
    assert done.stdout.strip().startswith(str(used))
    assert not unused.exists()
    if not users_own:  # the user's cache keeps the user's settings (JAX caches compiles over 1 s only)
        assert any(used.iterdir()), f"no compiled program was cached in {used}"
