"""Peak memory of one timed round, measured in a child process so nothing else is counted."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from typing import Any

import numpy as np

from harness.bench.fastpath import BENCH_LOSS, BENCH_LR, ContractPath, fast_path_adapters
from harness.contract.backend import PHASES, Backend, Capability, supports
from harness.net.precision import PRECISIONS
from harness.net.spec import NetSpec

MEMORY_TIMEOUT_S = 600
MEMORY_MARK = "netharness-peak-memory: "
CPU_MEMORY_METHOD = (
    "resident-set high-water mark (Linux VmHWM) of a child process while it creates the input, moves it"
    " to the device and runs one round, above its resident set with the prepared model; after a warm-up"
    " round on another prepared object"
)
CUDA_MEMORY_METHOD = (
    "torch.cuda.max_memory_allocated in a child process while it moves the input to the device and runs"
    " one round, above the prepared model's allocation; after a warm-up round on another prepared object"
)


def peak_memory(
    backend: str, device: str, dtype: str, batches: Iterable[int]
) -> dict[tuple[str, int], tuple[int | None, str]]:
    """Peak memory of one round of each phase at each batch: ``{(phase, batch): (bytes or None, method)}``.

    Measured in one fresh child process per call, which loads ``backend`` by name (so a
    backend only registered in this process is "not measured"). The child sees torch's,
    onnxruntime's and NumPy's allocations alike because it watches the resident set, not
    one allocator. Where nothing honest is available the bytes are None and the method
    says "not measured" and why.
    """
    wanted = sorted(set(batches))
    code = "import sys; from harness.bench.memory import memory_child; sys.exit(memory_child(sys.argv[1:]))"
    command = [sys.executable, "-c", code, backend, device, dtype, *map(str, wanted)]
    reason = ""
    try:
        with tempfile.TemporaryDirectory(prefix="netharness-memory-") as scratch:
            env = {**os.environ, "NETHARNESS_ARTIFACTS": scratch}  # the child's exports stay out of the report
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=MEMORY_TIMEOUT_S, check=False, env=env
            )
    except subprocess.TimeoutExpired:
        reason = f"not measured: the measuring child process ran past {MEMORY_TIMEOUT_S} s"
    else:
        marked = [line for line in done.stdout.splitlines() if line.startswith(MEMORY_MARK)]
        if done.returncode == 0 and marked:
            measured = json.loads(marked[-1][len(MEMORY_MARK) :])
            return {(key.split("/")[0], int(key.split("/")[1])): (v[0], v[1]) for key, v in measured.items()}
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        reason = f"not measured: the measuring child process failed (exit {done.returncode}: {last})"
    return {(phase, batch): (None, reason) for phase in PHASES for batch in wanted}


def memory_child(argv: list[str]) -> int:
    """The child of :func:`peak_memory`: ``BACKEND DEVICE DTYPE BATCH...``; prints one marked JSON line."""
    from harness.contract.manager import load_backends

    name, device, dtype, *batches = argv
    registry = load_backends()
    if name not in registry.backends:
        print(f"backend {name!r} is not registered in a fresh process", file=sys.stderr)
        return 2
    backend = registry.backends[name]
    results: dict[str, tuple[int | None, str]] = {}
    for batch in map(int, batches):
        for phase in PHASES:
            if phase == "forward" or supports(backend, Capability.TRAIN_STEP):
                try:
                    results[f"{phase}/{batch}"] = one_round_peak(backend, phase, batch, device, dtype)
                except Exception as exc:  # noqa: BLE001 - the backend's failure is this entry's reason, not the child's end
                    why = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                    results[f"{phase}/{batch}"] = (None, f"not measured: the measured round raised {why}")
    print(MEMORY_MARK + json.dumps(results), flush=True)
    return 0


def one_round_peak(backend: Backend, phase: str, batch: int, device: str, dtype: str) -> tuple[int | None, str]:
    """See :data:`CPU_MEMORY_METHOD` and :data:`CUDA_MEMORY_METHOD`.

    The warm-up object pays for what a process does once (compiling, kernel caches, thread
    pools) and is dropped; the measured object is new, so allocators it owns (an
    onnxruntime session's arena) grow in the measured round as they would in a program.
    """
    spec = NetSpec()
    rng = np.random.default_rng([batch, 2024])
    shape = (batch, spec.in_channels, spec.height, spec.width)

    precision = PRECISIONS[dtype]

    def round_on(net: Any) -> None:
        to_device, _, sync = fast_path_adapters(net)
        # In the contract's storage dtype (float32 for bfloat16, float16 and tf32), rounded to the precision
        # as every input the backend is given: no float64 temporary.
        x = to_device(precision.round(rng.standard_normal(shape, dtype=np.dtype(precision.storage))))
        if phase == "forward":
            net.forward(x)
        else:
            labels = rng.integers(0, spec.num_classes, size=batch).astype(np.int64)
            net.train_step(x, to_device(labels), loss=BENCH_LOSS, lr=BENCH_LR)
        sync()

    def prepared() -> Any:
        from harness.net.testdata import random_params

        params = random_params(spec, rng, dtype)
        prepare = getattr(backend, "prepare", None)
        if prepare is None:
            return ContractPath(backend, spec, params, device=device, dtype=dtype)
        return prepare(spec, params, device=device, dtype=dtype)

    round_on(prepared())
    gc.collect()
    net = prepared()
    _release_free_memory()
    if device == "cuda":
        import torch

        if not isinstance(fast_path_adapters(net)[0](np.zeros(1, dtype=precision.storage)), torch.Tensor):
            return None, "not measured: its inputs on cuda are not torch tensors, so torch.cuda's counters miss it"
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        round_on(net)
        return int(torch.cuda.max_memory_allocated() - baseline), CUDA_MEMORY_METHOD
    if not _reset_high_water_mark():
        return None, "not measured: resetting the resident-set high-water mark needs Linux's /proc/self/clear_refs"
    baseline = _status_bytes("VmRSS")
    round_on(net)
    return max(0, _status_bytes("VmHWM") - baseline), CPU_MEMORY_METHOD


def _release_free_memory() -> None:
    """Give freed heap pages back to the OS (glibc), so the measured round must fault in what it uses."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: freed pages may stay resident, and the peak reads low
        pass


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:  # "5": VmHWM := VmRSS (Linux 4.0+)
            handle.write("5")
    except OSError:
        return False
    return True


def _status_bytes(field_name: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field_name}")


# -- the device's peak FLOP/s, what the device is, and the machine's load --------------------
