"""What the benchmarks time, and the facts stored beside each timing.

:func:`prepare_runner` turns any backend into zero-argument callables whose inputs are
already on the device, so a timed round holds only the work being measured (and, on CUDA,
the synchronisation that makes the timing true).
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.backend import Backend, Capability, supports
from harness.spec import NetSpec

PHASES = ("forward", "train_step")
BENCH_LOSS = "cross_entropy"
BENCH_LR = 1e-3


@dataclass
class Runner:
    """Zero-argument callables for the timed region, plus what preparing them cost."""

    forward: Callable[[], Any]
    train_step: Callable[[], Any] | None
    synchronize: Callable[[], None]
    first_call_s: float
    setup_s: float
    setup_kind: str
    prepared: bool


def _no_sync() -> None:
    return None


def prepare_runner(
    backend: Backend,
    spec: NetSpec,
    params: dict[str, np.ndarray],
    x: np.ndarray,
    target: np.ndarray,
    *,
    device: str,
    dtype: str,
) -> Runner:
    """Prepare ``backend`` for timing; the first forward call (compile, export, caches) is timed here."""
    start = time.perf_counter()
    prepare = getattr(backend, "prepare", None)
    if prepare is None:
        forward: Callable[[], Any] = lambda: backend.forward(spec, params, x, device=device, dtype=dtype)  # type: ignore[attr-defined] # noqa: E731
        step = None
        if supports(backend, Capability.TRAIN_STEP):
            step = lambda: backend.train_step(  # type: ignore[attr-defined] # noqa: E731
                spec, params, x, target, loss=BENCH_LOSS, lr=BENCH_LR, device=device, dtype=dtype
            )
        forward()
        return Runner(forward, step, _no_sync, time.perf_counter() - start, 0.0, "none", prepared=False)
    net = prepare(spec, params, device=device, dtype=dtype)
    to_device = getattr(net, "to_device", lambda array: array)
    x_dev, target_dev = to_device(x), to_device(target)
    sync: Callable[[], None] = getattr(net, "synchronize", _no_sync)
    forward = lambda: net.forward(x_dev)  # noqa: E731
    step = None
    if supports(backend, Capability.TRAIN_STEP) and hasattr(net, "train_step"):
        step = lambda: net.train_step(x_dev, target_dev, loss=BENCH_LOSS, lr=BENCH_LR)  # noqa: E731
    forward()
    sync()
    first_call = time.perf_counter() - start
    setup_s = float(getattr(net, "setup_seconds", getattr(net, "compile_seconds", getattr(net, "export_seconds", 0.0))))
    kind = getattr(
        net,
        "setup_kind",
        "compile" if hasattr(net, "compile_seconds") else "export" if hasattr(net, "export_seconds") else "none",
    )
    return Runner(forward, step, sync, first_call, setup_s, kind, prepared=True)


def peak_memory_bytes(fn: Callable[[], Any], device: str) -> tuple[int | None, str]:
    """Peak memory of one call: the CUDA allocator's high-water mark, or Python-tracked allocations on CPU.

    tracemalloc sees NumPy's buffers but not torch's or onnxruntime's CPU allocators, so a
    CPU figure for those backends is a lower bound, and is labelled so.
    """
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return int(peak), "tracemalloc (NumPy and Python allocations only)"


def thread_count() -> int:
    """The intra-op threads torch uses (NumPy's BLAS follows OMP/OPENBLAS settings alike)."""
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1


def measure_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matmul rate: the best of a few ``size``-cubed products."""
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
    best = min(_timed(matmul) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
