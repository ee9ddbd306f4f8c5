"""What a benchmark record stores beside its timing: peak memory, the device's peak and what the device is.

Memory is measured, not asserted against a budget: the tests check only what the column
names promise (a round holds at least its input) and that a method is always stated. No
test asserts a timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import SEED_SPEC, Capability, load_backends
from harness.bench.fastpath import prepare_runner
from harness.bench.machine import PEAK_ENV, cpu_peak_method, device_info, load_average, measure_peak_gflops
from harness.bench.memory import CPU_MEMORY_METHOD, peak_memory
from harness.net.testdata import random_images, random_params, random_target

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

BATCH = 64
INPUT_BYTES = BATCH * SEED_SPEC.in_channels * SEED_SPEC.height * SEED_SPEC.width * 4  # float32


def cuda_available() -> bool:
    torch = pytest.importorskip("torch")
    return bool(torch.cuda.is_available())


# torch's, NumPy's and onnxruntime's allocators; compile allocates through torch's CPU allocator as
# eager does, and its child would spend 10-15 s compiling.
@pytest.mark.parametrize("name", ["eager", "numpy", "onnx"])
def test_a_batch64_round_holds_at_least_its_input(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's bar: tracemalloc reported 3-10 KB for rounds whose input alone is megabytes."""
    monkeypatch.setenv("NETHARNESS_ARTIFACTS", str(tmp_path))  # the child's exported models
    backend = load_backends().backends.get(name)
    if backend is None or not backend.availability().available:
        pytest.skip(f"backend {name!r} is not available here")
    measured = peak_memory(name, "cpu", "float32", [BATCH])
    phases = ["forward", "train_step"] if "train_step" in {c.value for c in backend.capabilities} else ["forward"]
    assert sorted(phase for phase, _ in measured) == sorted(phases)
    for phase in phases:
        peak, method = measured[phase, BATCH]
        assert method == CPU_MEMORY_METHOD
        assert peak is not None and peak >= INPUT_BYTES, f"{name} {phase}: {peak} bytes"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "tf32"])
def test_every_reduced_precision_is_measured(dtype: str) -> None:
    """Issue 28: the child drew its input with ``standard_normal(dtype=bfloat16)`` and died with a TypeError."""
    measured = peak_memory("eager", "cpu", dtype, [BATCH])
    for phase in ("forward", "train_step"):
        peak, method = measured[phase, BATCH]
        assert method == CPU_MEMORY_METHOD, method
        assert peak is not None and peak >= INPUT_BYTES, f"{dtype} {phase}: {peak} bytes"  # float32 storage


def test_a_round_that_raises_is_not_measured_with_its_reason_and_the_others_are() -> None:
    """One precision a backend cannot run costs only its own entries, never the child."""
    measured = peak_memory("numpy", "cpu", "bfloat16", [1])  # numpy computes in float32 and float64 only
    for peak, method in measured.values():
        assert peak is None
        assert method.startswith("not measured: the measured round raised SpecError: dtype 'bfloat16'"), method


def test_a_backend_the_child_cannot_load_is_not_measured_with_the_reason() -> None:
    measured = peak_memory("no-such-backend", "cpu", "float32", [1])
    assert set(measured) == {("forward", 1), ("train_step", 1)}
    for peak, method in measured.values():
        assert peak is None
        assert method.startswith("not measured: the measuring child process failed (exit 2:")
        assert "'no-such-backend' is not registered in a fresh process" in method


def test_cpu_peak_is_the_best_of_several_trials_or_the_runs_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PEAK_ENV, raising=False)
    assert measure_peak_gflops(size=128, repeats=3) > 0
    assert "best of 7 trials" in cpu_peak_method()
    monkeypatch.setenv(PEAK_ENV, "123.5")
    assert measure_peak_gflops() == 123.5, "a run that measured once passes its peak to every process"
    assert cpu_peak_method() == f"${PEAK_ENV}, measured once for the run"


def test_device_info_on_cpu_names_only_the_device() -> None:
    assert device_info("cpu") == {"netharness_device": "cpu"}


def test_device_info_on_cuda_names_the_gpu_and_its_peaks() -> None:
    if not cuda_available():
        pytest.skip("no CUDA device: the GPU's name, memory, driver and peaks cannot be read here")
    import torch

    precision = torch.get_float32_matmul_precision()
    info = device_info("cuda")
    assert torch.get_float32_matmul_precision() == precision, "measuring the peaks must restore the precision"
    assert info["netharness_gpu_name"] and info["netharness_gpu_memory_bytes"] > 0
    assert info["netharness_cuda_version"] == torch.version.cuda and info["netharness_gpu_driver"]
    peaks = [info[f"netharness_gpu_peak_{kind}_gflops"] for kind in ("float32", "tf32", "bf16")]
    assert all(peak > 0 for peak in peaks)


def test_load_average_is_a_number_where_the_os_has_one() -> None:
    load = load_average()
    assert load is None or load >= 0


class _Reporting:
    """A prepared object that says which file it runs."""

    benchmark_info = {"artifact": "/models/timed.onnx", "model_bytes": 1234}

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.params = params

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((x.shape[0], SEED_SPEC.num_classes), np.float32)


class _Backend:
    name, version, dtypes, devices = "reporting", "0", ("float32",), ("cpu",)
    capabilities = frozenset({Capability.FORWARD})

    def prepare(self, spec: Any, params: dict[str, np.ndarray], *, device: str, dtype: str) -> _Reporting:
        return _Reporting(params)


def test_the_record_carries_what_the_timed_object_says_about_itself() -> None:
    rng = np.random.default_rng(0)
    params = random_params(SEED_SPEC, rng, "float32")
    x, target = random_images(SEED_SPEC, 2, rng, "float32"), random_target(SEED_SPEC, "cross_entropy", 2, rng)
    runner = prepare_runner(_Backend(), SEED_SPEC, params, x, target, device="cpu", dtype="float32")  # type: ignore[arg-type]
    assert runner.info == {"artifact": "/models/timed.onnx", "model_bytes": 1234}
    assert runner.train_step is None and set(runner.first_call_s) == {"forward"}
