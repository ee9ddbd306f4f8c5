"""What the benchmarks time, and the facts stored beside each timing.

:func:`prepare_runner` turns any backend into zero-argument callables whose inputs are
already on the device, so a timed round holds only the work being measured (and, on CUDA,
the synchronisation that makes the timing true). Beside each timing: the peak memory of
one round (:func:`peak_memory`, measured in a child process), the device's peak FLOP/s
(:func:`measure_peak_gflops`, :func:`cuda_peak_gflops`), what the device is
(:func:`device_info`) and how loaded the machine was (:func:`load_average`).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.backend import Backend, Capability, supports
from harness.spec import NetSpec

PHASES = ("forward", "train_step")
BENCH_LOSS = "cross_entropy"
BENCH_LR = 1e-3


@dataclass
class Runner:
    """Zero-argument callables for the timed region, plus what preparing them cost.

    ``output()`` and ``parameters()`` read the very object that is timed, so a benchmark's
    error is measured on what ran: the logits of ``forward`` and the parameters that
    ``train_step`` updates, brought back to the host as NumPy arrays.
    """

    forward: Callable[[], Any]
    train_step: Callable[[], Any] | None
    synchronize: Callable[[], None]
    to_host: Callable[[Any], np.ndarray]
    parameters: Callable[[], dict[str, np.ndarray]] | None
    first_call_s: dict[str, float]
    """Per phase: the first call, compile or export included."""
    setup_s: dict[str, float]
    """Per phase: the compile or export time the backend reported for that phase's first call."""
    setup_kind: str
    prepared: bool
    info: dict[str, Any] = field(default_factory=dict)
    """What the prepared object says about itself (its ``benchmark_info``: e.g. ``artifact``,
    the file it runs, and ``model_bytes``), stored in each record's extra_info."""

    def current_parameters(self) -> dict[str, np.ndarray]:
        """The parameters the timed object holds now, on the host."""
        if self.parameters is None:
            raise AttributeError("the prepared object has no parameters(); see harness.backend's prepare() contract")
        return {name: np.asarray(value) for name, value in self.parameters().items()}

    def output(self) -> np.ndarray:
        """The logits of one forward call on the timed object."""
        value = self.forward()
        self.synchronize()
        return np.asarray(self.to_host(value))


def _no_sync() -> None:
    return None


def fast_path_adapters(net: Any) -> tuple[Callable[[Any], Any], Callable[[Any], np.ndarray], Callable[[], None]]:
    """A prepared object's ``to_device``, ``to_host`` and ``synchronize``, or their defaults."""
    return (
        getattr(net, "to_device", lambda array: array),
        getattr(net, "to_host", np.asarray),
        getattr(net, "synchronize", _no_sync),
    )


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
    """Prepare ``backend`` for timing; the first call of each phase (compile, export, caches) is timed here."""
    prepare = getattr(backend, "prepare", None)
    trains = supports(backend, Capability.TRAIN_STEP)
    if prepare is None:
        forward: Callable[[], Any] = lambda: backend.forward(spec, params, x, device=device, dtype=dtype)  # type: ignore[attr-defined] # noqa: E731
        step = None
        if trains:
            step = lambda: backend.train_step(  # type: ignore[attr-defined] # noqa: E731
                spec, params, x, target, loss=BENCH_LOSS, lr=BENCH_LR, device=device, dtype=dtype
            )
        first = {"forward": _timed(forward)}
        if step is not None:
            first["train_step"] = _timed(step)
        setup = dict.fromkeys(first, 0.0)
        return Runner(forward, step, _no_sync, np.asarray, lambda: params, first, setup, "none", prepared=False)
    start = time.perf_counter()
    net = prepare(spec, params, device=device, dtype=dtype)
    to_device, to_host, sync = fast_path_adapters(net)
    x_dev, target_dev = to_device(x), to_device(target)
    forward = lambda: net.forward(x_dev)  # noqa: E731
    step = None
    if trains and hasattr(net, "train_step"):
        step = lambda: net.train_step(x_dev, target_dev, loss=BENCH_LOSS, lr=BENCH_LR)  # noqa: E731
    forward()
    sync()
    first_call = {"forward": time.perf_counter() - start}
    setup = {"forward": setup_seconds(net)}
    if step is not None:
        start = time.perf_counter()
        step()
        sync()
        first_call["train_step"] = time.perf_counter() - start
        setup["train_step"] = setup_seconds(net) - setup["forward"]
    kind = getattr(
        net,
        "setup_kind",
        "compile" if hasattr(net, "compile_seconds") else "export" if hasattr(net, "export_seconds") else "none",
    )
    parameters = getattr(net, "parameters", None)
    if parameters is None and step is None:  # forward only: the parameters never change
        parameters = lambda: params  # noqa: E731
    info = dict(getattr(net, "benchmark_info", None) or {})
    return Runner(forward, step, sync, to_host, parameters, first_call, setup, kind, prepared=True, info=info)


class ContractPath:
    """A fast path made of the backend's contract methods, for a backend whose own would bypass them.

    ``train_step`` advances this object's copy of the parameters, so state carries across
    rounds as with any prepared object.
    """

    setup_kind = "none"
    setup_seconds = 0.0

    def __init__(self, backend: Any, spec: NetSpec, params: dict[str, np.ndarray], *, device: str, dtype: str):
        self.backend, self.spec, self.device, self.dtype = backend, spec, device, dtype
        self.params = {name: np.array(value, copy=True) for name, value in params.items()}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.backend.forward(self.spec, self.params, x, device=self.device, dtype=self.dtype)  # type: ignore[no-any-return]

    def train_step(self, x: np.ndarray, target: np.ndarray, *, loss: str, lr: float) -> None:
        self.params = self.backend.train_step(
            self.spec, self.params, x, target, loss=loss, lr=lr, device=self.device, dtype=self.dtype
        )

    def parameters(self) -> dict[str, np.ndarray]:
        return self.params


def setup_seconds(net: Any) -> float:
    """The compile or export time a prepared object reports so far (0 when it reports none)."""
    return float(getattr(net, "setup_seconds", getattr(net, "compile_seconds", getattr(net, "export_seconds", 0.0))))


# -- peak memory of one round, in a child process ----------------------------------------

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
    code = "import sys; from harness.bench import memory_child; sys.exit(memory_child(sys.argv[1:]))"
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
    from harness.manager import load_backends

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
                results[f"{phase}/{batch}"] = one_round_peak(backend, phase, batch, device, dtype)
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

    def round_on(net: Any) -> None:
        to_device, _, sync = fast_path_adapters(net)
        x = to_device(rng.standard_normal(shape, dtype=np.dtype(dtype)))  # no float64 temporary
        if phase == "forward":
            net.forward(x)
        else:
            labels = rng.integers(0, spec.num_classes, size=batch).astype(np.int64)
            net.train_step(x, to_device(labels), loss=BENCH_LOSS, lr=BENCH_LR)
        sync()

    def prepared() -> Any:
        from harness.testdata import random_params

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

        if not isinstance(fast_path_adapters(net)[0](np.zeros(1, dtype=dtype)), torch.Tensor):
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

PEAK_ENV = "NETHARNESS_PEAK_GFLOPS"
"""A CPU peak measured once for a whole run, passed to each process instead of re-measuring."""
PEAK_TRIALS = 7


def measure_peak_gflops(size: int = 2048, repeats: int = PEAK_TRIALS) -> float:
    """This machine's CPU float32 matmul rate: the best of ``repeats`` ``size``-cubed products, after a warm-up.

    The best, not the median: load from other processes only ever slows a trial down.
    ``$NETHARNESS_PEAK_GFLOPS`` (if set) is returned instead, so a run measures once.
    """
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV])
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


def cpu_peak_method(size: int = 2048, repeats: int = PEAK_TRIALS) -> str:
    if os.environ.get(PEAK_ENV):
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


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
