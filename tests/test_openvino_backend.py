"""The ``openvino`` backends: an optional extra, the precision the runtime reports, models compiled once.

The conformance suite checks their numbers (``pytest suites --backend=openvino,openvino-f32``);
these tests check how they behave without openvino, which precision each one declares and
why, that the contract models are compiled once per spec, and that importing the backend
sends no telemetry.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from backends import openvino_backend
from backends.openvino_backend import OpenvinoBackend, OpenvinoF32Backend
from harness import SEED_SPEC, NetSpec, PluginError, build_plugin_manager, collect_backends
from harness.net.testdata import random_images, random_params

ROOT = Path(__file__).resolve().parent.parent
needs_openvino = pytest.mark.skipif(openvino_backend.ov is None, reason="openvino is not installed (an extra)")


def load_fresh(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A new copy of a backend module under another name, imported now (the installed one stays untouched)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_without_openvino_both_are_listed_unavailable_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    module = load_fresh(ROOT / "backends" / "openvino_backend.py", "openvino_backend_without_openvino", monkeypatch)
    plugins = [("openvino", module)]
    registry = collect_backends(build_plugin_manager(builtins=False, entry_points=False, extra_plugins=plugins))
    assert registry.failures == []
    assert registry.names() == ["openvino", "openvino-f32"]
    for name in registry.names():
        availability = registry.get(name).availability()
        assert not availability.available
        assert availability.reason.startswith("openvino cannot be imported (ModuleNotFoundError")
        assert availability.reason.endswith("pip install 'netharness[openvino]'")


@needs_openvino
def test_importing_the_backend_sends_no_telemetry_and_leaves_the_converter_importable() -> None:
    """``import openvino`` imports ``openvino.tools.ovc``, which sends a usage event; the backend skips it."""
    probe = (
        "import sys, importlib.util\n"
        "import backends.openvino_backend\n"
        "print(sorted(m for m in sys.modules if m.startswith(('openvino_telemetry', 'openvino.tools.ovc'))))\n"
        "print(importlib.util.find_spec('openvino.tools.ovc') is not None)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


@needs_openvino
def test_the_default_declares_the_precision_openvino_reports() -> None:
    hints = openvino_backend.hints
    reported = openvino_backend.core().get_property("CPU", hints.inference_precision).get_type_name()
    backend = OpenvinoBackend()
    assert backend.dtypes == (openvino_backend.PRECISION_NAMES[reported],)
    assert backend.version.endswith(f"inference precision {backend.dtypes[0]}")
    assert OpenvinoF32Backend().dtypes == ("float32",)


@needs_openvino
@pytest.mark.parametrize("configured", [OpenvinoBackend(), OpenvinoF32Backend()], ids=lambda b: b.name)
def test_contract_models_compile_once_per_spec_whatever_the_weights_and_batch(configured: OpenvinoBackend) -> None:
    backend = configured
    spec = NetSpec(num_classes=3)  # a spec no other test compiles
    dtype = backend.dtypes[0]
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        params = random_params(spec, rng, dtype)
        logits = backend.forward(spec, params, random_images(spec, batch, rng, dtype), device="cpu", dtype=dtype)
        assert logits.shape == (batch, 3) and logits.dtype == np.float32
    compiled = [key for key in openvino_backend._COMPILED if key[0] == spec and key[1] == backend.name]
    assert compiled == [(spec, backend.name, "logits")]
    assert any(label.endswith(f"[{backend.name} logits]") for label in openvino_backend.COMPILE_TIMES)


@needs_openvino
def test_the_f32_configuration_compiles_for_float32_accuracy() -> None:
    backend = OpenvinoF32Backend()
    params = random_params(SEED_SPEC, np.random.default_rng(1), "float32")
    net = backend.prepare(SEED_SPEC, params, device="cpu", dtype="float32")
    assert net.setup_kind == "compile" and net.setup_seconds > 0
    assert net.benchmark_info["inference_precision"] == "float32"
    assert net.benchmark_info["execution_mode"] == "ACCURACY"


@needs_openvino
def test_the_benchmarked_model_runs_on_torchs_threads_and_reports_them() -> None:
    """Issue 28: the threads column showed torch's count for backends with their own pool."""
    import torch

    params = random_params(SEED_SPEC, np.random.default_rng(1), "float32")
    net = OpenvinoF32Backend().prepare(SEED_SPEC, params, device="cpu", dtype="float32")
    assert net.benchmark_info["threads"] == torch.get_num_threads() >= 1


@needs_openvino
def test_a_compiled_precision_other_than_the_declared_one_is_refused() -> None:
    f32 = OpenvinoF32Backend().properties
    model = openvino_backend.contract_model(SEED_SPEC, "logits")
    with pytest.raises(PluginError, match="with inference precision f32, but the backend declares bfloat16"):
        openvino_backend.CompiledNet(model, f32, "bfloat16", "the test's Net")


@needs_openvino
def test_a_precision_or_device_it_lacks_is_refused_with_the_reason() -> None:
    backend = OpenvinoF32Backend()
    rng = np.random.default_rng(2)
    params, x = random_params(SEED_SPEC, rng, "float32"), random_images(SEED_SPEC, 1, rng, "float32")
    with pytest.raises(PluginError, match="computes in float32 .OpenVINO's inference precision., not 'float64'"):
        backend.forward(SEED_SPEC, params, x, device="cpu", dtype="float64")
    with pytest.raises(PluginError, match="runs on cpu only, not 'cuda'"):
        backend.forward(SEED_SPEC, params, x, device="cuda", dtype="float32")
