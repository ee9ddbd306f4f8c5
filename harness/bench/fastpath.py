"""What the benchmarks time: the fast path of any backend, ready to be timed.

:func:`prepare_runner` turns any backend into zero-argument callables whose inputs are
already on the device, so a timed round holds only the work being measured (and, on CUDA,
the synchronisation that makes the timing true). What is stored beside each timing lives
beside this module: peak memory (:mod:`harness.bench.memory`) and machine facts
(:mod:`harness.bench.machine`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.contract.backend import Backend, Capability, supports
from harness.net.spec import NetSpec

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
            raise AttributeError(
                "the prepared object has no parameters(); see harness.contract.backend's prepare() contract"
            )
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
        first = {"forward": timed_once(forward)}
        if step is not None:
            first["train_step"] = timed_once(step)
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


def timed_once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
