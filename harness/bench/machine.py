"""Machine facts stored beside each timing: peak FLOP/s, what the device is, load and threads."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.bench.fastpath import timed_once
from harness.bench.settings import PEAK_ENV, peak_gflops_override

"""A CPU peak measured once for a whole run, passed to each process instead of re-measuring."""
PEAK_TRIALS = 7


def measure_peak_gflops(size: int = 2048, repeats: int = PEAK_TRIALS) -> float:
    """This machine's CPU float32 matmul rate: the best of ``repeats`` ``size``-cubed products, after a warm-up.

    The best, not the median: load from other processes only ever slows a trial down.
    ``$NETHARNESS_PEAK_GFLOPS`` (if set) is returned instead, so a run measures once.
    """
    given = peak_gflops_override()
    if given is not None:
        return given
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        matmul: Callable[[], Any] = lambda: torch.mm(ta, tb)  # noqa: E731
    except ImportError:
        matmul = lambda: a @ b  # noqa: E731
    matmul()
    best = min(timed_once(matmul) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def cpu_peak_method(size: int = 2048, repeats: int = PEAK_TRIALS) -> str:
    if peak_gflops_override() is not None:
        return f"${PEAK_ENV}, measured once for the run"
    return f"float32 matmul {size}x{size}x{size} (torch.mm, {thread_count()} threads), best of {repeats} trials"


CUDA_PEAK_SIZE, CUDA_PEAK_TRIALS, CUDA_PEAK_ITERATIONS = 8192, 5, 10
CUDA_PEAK_METHOD = (
    f"torch.mm {CUDA_PEAK_SIZE}x{CUDA_PEAK_SIZE}x{CUDA_PEAK_SIZE} on the GPU: float32 with TF32 off; TF32 and"
    f" bf16 (tensor cores) beside it; best of {CUDA_PEAK_TRIALS} trials of {CUDA_PEAK_ITERATIONS} products,"
    " timed with CUDA events"
)


@functools.cache
def cuda_peak_gflops() -> dict[str, float]:
    """The current GPU's matmul peaks, ``{"float32", "tf32", "bf16"}`` in GFLOP/s, measured once per process.

    Float32 runs with TF32 off; the process's matmul precision is restored afterwards.
    """
    import torch

    precision, allow_tf32 = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    n = CUDA_PEAK_SIZE
    peaks: dict[str, float] = {}
    try:
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        for name, mode, dtype in (("float32", "highest", None), ("tf32", "high", None), ("bf16", "highest", "bf16")):
            torch.set_float32_matmul_precision(mode)
            x, y = (a, b) if dtype is None else (a.bfloat16(), b.bfloat16())
            torch.mm(x, y)
            best = float("inf")
            for _ in range(CUDA_PEAK_TRIALS):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(CUDA_PEAK_ITERATIONS):
                    torch.mm(x, y)
                end.record()
                end.synchronize()
                best = min(best, start.elapsed_time(end) / 1e3 / CUDA_PEAK_ITERATIONS)
            peaks[name] = 2 * n**3 / best / 1e9
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.cuda.empty_cache()
    return peaks


def device_info(device: str) -> dict[str, Any]:
    """What the machines table should say about the device the benchmarks ran on.

    For ``pytest_benchmark_update_machine_info``: on cuda, the GPU's name, memory, compute
    capability, driver, the CUDA version torch was built with, and its matmul peaks.
    """
    info: dict[str, Any] = {"netharness_device": device}
    if device != "cuda":
        return info
    import torch

    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    peaks = cuda_peak_gflops()
    info.update(
        netharness_gpu_name=props.name,
        netharness_gpu_memory_bytes=int(props.total_memory),
        netharness_gpu_capability=f"{props.major}.{props.minor}",
        netharness_gpu_count=torch.cuda.device_count(),
        netharness_gpu_driver=nvidia_driver_version(index),
        netharness_cuda_version=torch.version.cuda,
        netharness_gpu_peak_float32_gflops=peaks["float32"],
        netharness_gpu_peak_tf32_gflops=peaks["tf32"],
        netharness_gpu_peak_bf16_gflops=peaks["bf16"],
        netharness_gpu_peak_method=CUDA_PEAK_METHOD,
    )
    return info


def nvidia_driver_version(index: int = 0) -> str:
    """The NVIDIA driver's version, from nvidia-smi; says why when it cannot be read."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "unknown (nvidia-smi not found)"
    query = [smi, "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown (nvidia-smi failed: {type(exc).__name__})"
    return done.stdout.strip() or "unknown (nvidia-smi printed nothing)"


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the OS has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def thread_count() -> int:
    """The intra-op threads torch uses (NumPy's BLAS follows OMP/OPENBLAS settings alike)."""
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1
