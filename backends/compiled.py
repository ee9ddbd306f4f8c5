"""``compile``: the eager :class:`~backends.eager.Net` under ``torch.compile`` (inductor).

What is compiled: ``Net.forward`` (forward, gradients, train_step) and ``Net.forward_layers``
(intermediates), both with ``fullgraph=True`` so nothing silently falls back to eager.
Gradients are autograd through the compiled module (AOTAutograd compiles the backward graph
too); the loss on the compiled logits and the SGD update (``p -= lr * grad`` with
``torch._foreach_add_``, as eager does) run eagerly.

Max-pool backward is ATen's. Where gradients are needed (gradients, train_step and the
benchmark fast path) the Net is a :class:`TrainingNet`, whose pooling is an autograd
function: its forward is ``aten.max_pool2d_with_indices``, which inductor lowers and fuses
with the ReLU before it, and its backward is the custom op ``netharness::max_pool2d_backward``,
ATen's kernel called as one opaque op. Inductor's own lowering of that backward made
compile's train step 1.35-1.5x slower than eager's on CPU (torch 2.13, profiled on a
2-core machine, one thread, batch 64: one fused kernel that recomputes the pooling window
and gathers the gradient, 16 ms a step against ATen's 3 ms).

Why the train step is not faster than eager's on CPU (measured with ``torch.profiler``,
one thread, batch 64, per step): the two convolutions' forward (~8 ms) and backward
(~15 ms) and the pooling forward are the same oneDNN/ATen kernels in both, about 80% of the
step; inductor can fuse only the ReLUs into the pooling and the ReLU backward into its
neighbours (~2-3 ms of memory passes), and it adds ~0.6 ms of guards, AOTAutograd wrappers
and layout copies around the graph. So it gains little: 0.95x eager's CPU time at batch 64,
0.94x at 256, and 1.3x at batch 1, where that fixed overhead dominates (tools/bench_backends.py
on one thread; docs/performance.md records the run).

Declared: forward, intermediates, backward and train_step, in float32, the dtype
``torch.compile`` is used for. Not declared: ``init`` (compiled random number generation
does not reproduce eager's stream), and standalone ``activations`` and ``losses``: the
activations run inside the compiled network graphs, which the forward and gradient checks
cover, and compiling each elementwise function and dtype on its own cost more than half of
the suite's time on a machine with an empty inductor cache.

Layout and dtype policy: as in ``eager`` (canonical names, NCHW, float32, the parameters
live in the module on the device); results are copied back to NumPy.

Compiled-module cache. A session-wide cache holds one compiled Net per
(spec, device, dtype, mode, compile mode), mode being the operation (``forward``,
``intermediates``, ``gradients``, ``train_step``: they differ in grad mode and in whether
the input needs a gradient, so each is its own graph anyway). Every call copies the
parameters into the cached module's tensors (``copy_`` under ``no_grad``) instead of
building a new Net.

Batch size. The modules are compiled with ``dynamic=False`` and the batch dimension of each
input is marked dynamic (``torch._dynamo.mark_dynamic(x, 0)``): only the batch is symbolic,
so the kernels keep the spec's static image sizes, and a new batch size does not recompile.
``dynamic=True`` would make H and W symbolic too. Two guards on the batch remain, so a
module has up to three graphs on CPU: batch 1 (dynamo specialises sizes 0 and 1) and,
because ATen picks its CPU convolution backend by batch size, 2-15 and 16 or more (as
measured on a 2-core machine with torch 2.13). Within a range, no batch size recompiles.

Compile time. The wall time of every call that compiled a graph is kept in
:data:`COMPILE_TIMES` (also ``backend.compile_times``), keyed by spec, device, dtype, mode
and the batch that triggered it; steady-state calls are not in it.

CUDA graphs. ``compile-cudagraphs`` is the same backend compiled with
``mode="reduce-overhead"``: inductor records each graph as a CUDA graph and replays it, so
a small batch pays one launch instead of one per kernel. It runs on cuda only, and is
registered only where torch sees a CUDA device with Triton: on a machine without one it
could never run, and ``--backend=all --strict-backends`` would fail on it. Each call starts
a new CUDA-graph step (``torch.compiler.cudagraph_mark_step_begin``), and outputs are
copied to the host before the next call reuses their memory.

Dynamo keeps one code cache per code object (``Net.forward``), shared by every spec, dtype
and mode, so its recompile limit is raised to :data:`RECOMPILE_LIMIT` and hitting it is an
error, not a silent fallback to eager. Inductor keeps its own defaults otherwise: a pool of
compile workers, one per core (``TORCHINDUCTOR_COMPILE_THREADS`` overrides), which builds a
graph's C++ kernels in parallel (on a 2-core machine, the suite's compile checks with every
cache empty took 136 s with one worker and 106 s with two), and its on-disk FX graph cache.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from backends.eager import (
    Net,
    build_net,
    fresh_net,
    loss_target,
    precision_scope,
    to_numpy,
    to_tensor,
    torch,
    torch_dtype,
    torch_loss,
)
from harness import Availability, Capability, NetSpec, PluginError, hookimpl
from harness.net.spec import SEED_SPEC, check_dtype

RECOMPILE_LIMIT = 256
MODES = ("forward", "intermediates", "gradients", "train_step")
TRAINING_MODES = ("gradients", "train_step")
COMPILE_MODES = {"compile": "default", "compile-cudagraphs": "reduce-overhead"}
"""Each backend's name and the ``torch.compile`` mode it compiles with."""

COMPILE_TIMES: dict[str, float] = {}
"""Seconds of each call that compiled a graph, keyed ``"<spec> [<device> <dtype> <mode>, batch N]"``."""

_CACHE: dict[tuple[NetSpec, str, str, str, str], CompiledNet] = {}


# -- availability: the C++ compiler inductor runs -----------------------------------------


def cxx_candidates() -> tuple[str, ...]:
    """The C++ compilers inductor tries, in order: ``$CXX`` if set, else its ``cpp.cxx`` config."""
    env = os.environ.get("CXX")
    if env:
        return (env,)
    from torch._inductor import config

    configured = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)
    return tuple(c for c in configured if c)


def find_cxx() -> tuple[str | None, str]:
    """(path of the first working C++ compiler, "") or (None, why none works)."""
    return _probe_cxx(cxx_candidates(), os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=16)
def _probe_cxx(candidates: tuple[str, ...], search_path: str) -> tuple[str | None, str]:
    # Keyed by PATH too: `which` depends on it. Inductor itself runs `<cxx> --version`.
    problems = []
    for candidate in candidates:
        path = shutil.which(candidate, path=search_path)
        if path is None:
            problems.append(f"{candidate!r} not found")
            continue
        try:
            subprocess.run([path, "--version"], check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"{path} --version failed ({type(exc).__name__})")
            continue
        return path, ""
    tried = "; ".join(problems) or "no compiler configured"
    return None, f"{tried}; install g++ or set CXX to a working C++ compiler"


@functools.cache
def _configure_torch_compile() -> None:
    """Process-wide settings, applied once before the first compile (see the module docstring)."""
    import torch._dynamo.config as dynamo_config
    from torch._inductor import config as inductor_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)
    dynamo_config.fail_on_recompile_limit_hit = True
    cxx, _ = find_cxx()
    if cxx is not None and os.environ.get("CXX"):
        inductor_config.cpp.cxx = (None, cxx)  # honour a CXX set after torch was imported


# -- compiled modules ---------------------------------------------------------------------


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _compile_errors() -> tuple[type[BaseException], ...]:
    import torch._dynamo.exc as dynamo_exc

    return (dynamo_exc.TorchDynamoException, dynamo_exc.FailOnRecompileLimitHit)


def timed_compiled_call(fn: Callable[..., Any], args: tuple[Any, ...], label: str, times: dict[str, float]) -> Any:
    """Call a compiled ``fn``; if the call compiled a graph, record its wall time in ``times``.

    Compilation errors become one-line PluginErrors that say which module failed.
    """
    before = _graphs_compiled()
    start = time.perf_counter()
    try:
        out = fn(*args)
    except _compile_errors() as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PluginError(
            f"torch.compile (inductor) failed for {label}: {type(exc).__name__}: {first_line};"
            " rerun with TORCH_LOGS=+dynamo,+inductor for details"
        ) from exc
    if _graphs_compiled() != before:
        times[label] = times.get(label, 0.0) + time.perf_counter() - start
    return out


def define_max_pool2d_backward() -> None:
    """Define ``netharness::max_pool2d_backward``, ATen's max-pool backward as one op that inductor calls, never lowers.

    Once per process, before any tracing (dynamo cannot trace a definition).
    """
    try:
        torch.ops.netharness.max_pool2d_backward  # noqa: B018
        return
    except (AttributeError, RuntimeError):  # not defined yet in this process
        pass

    @torch.library.custom_op("netharness::max_pool2d_backward", mutates_args=())
    def max_pool2d_backward(grad: torch.Tensor, x: torch.Tensor, indices: torch.Tensor, window: int) -> torch.Tensor:
        size = [window, window]
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, size, size, [0, 0], [1, 1], False, indices)

    @max_pool2d_backward.register_fake  # type: ignore[misc]
    def _(grad: torch.Tensor, x: torch.Tensor, indices: torch.Tensor, window: int) -> torch.Tensor:
        return torch.empty_like(x)  # ATen's result takes the input's memory format


class _PoolWithAtenBackward(torch.autograd.Function):  # type: ignore[misc,name-defined]
    """Max pooling whose forward inductor lowers and whose backward is ATen's (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, window: int) -> torch.Tensor:
        out, indices = torch.ops.aten.max_pool2d_with_indices(x, [window, window], [window, window])
        ctx.save_for_backward(x, indices)
        ctx.window = window
        return out  # type: ignore[no-any-return]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, indices = ctx.saved_tensors
        return torch.ops.netharness.max_pool2d_backward(grad, x, indices, ctx.window), None


class TrainingNet(Net):
    """The eager Net with ATen's max-pool backward, for every compiled graph that needs gradients."""

    def __init__(self, spec: NetSpec = SEED_SPEC) -> None:
        super().__init__(spec)
        define_max_pool2d_backward()

    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        return _PoolWithAtenBackward.apply(x, window)  # type: ignore[no-any-return]


class CompiledNet:
    """A Net and its compiled forward (and forward_layers), with the batch marked dynamic."""

    def __init__(self, net: Net, label: str, times: dict[str, float], compile_mode: str = "default") -> None:
        _configure_torch_compile()
        self.net = net
        self.label = label
        self.times = times
        self.compile_mode = compile_mode
        self._forward = torch.compile(net, dynamic=False, fullgraph=True, mode=compile_mode)
        self._layers: Callable[..., Any] | None = None
        self._tensors = dict(net.named_parameters())

    def load(self, params: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for name, tensor in self._tensors.items():
                tensor.copy_(torch.as_tensor(np.array(params[name])))  # a copy: the caller's may be read-only

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        torch._dynamo.mark_dynamic(x, 0)
        self.step_begin()
        return timed_compiled_call(self._forward, (x,), self._label(x), self.times)  # type: ignore[no-any-return]

    def layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._layers is None:
            self._layers = torch.compile(self.net.forward_layers, dynamic=False, fullgraph=True, mode=self.compile_mode)
        torch._dynamo.mark_dynamic(x, 0)
        self.step_begin()
        return timed_compiled_call(self._layers, (x,), self._label(x), self.times)  # type: ignore[no-any-return]

    def step_begin(self) -> None:
        """Under CUDA graphs, a new step: the previous call's outputs may be overwritten from here on."""
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()

    def sgd_update(self, lr: float) -> None:
        """p <- p - lr * dL/dp, after ``backward()``: one foreach kernel, as eager's update."""
        params: list[torch.Tensor] = list(self._tensors.values())
        grads: list[torch.Tensor] = [p.grad for p in params if p.grad is not None]
        assert len(grads) == len(params), "backward() did not reach every parameter"
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-lr)

    def parameters_numpy(self) -> dict[str, np.ndarray]:
        # Copies: the cached module's tensors are overwritten by the next call.
        return {name: to_numpy(t).copy() for name, t in self.net.state_dict().items()}

    def _label(self, x: torch.Tensor) -> str:
        return f"{self.label}, batch {x.shape[0]}]"


def compiled_net(spec: NetSpec, device: str, dtype: str, mode: str, compile_mode: str = "default") -> CompiledNet:
    """The session-wide compiled Net for (spec, device, dtype, mode, compile mode); built on first use."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    key = (spec, device, dtype, mode, compile_mode)
    if key not in _CACHE:
        net_class = TrainingNet if mode in TRAINING_MODES else Net
        net = fresh_net(spec, net_class).to(device=device, dtype=torch_dtype(dtype))
        suffix = "" if compile_mode == "default" else f" {compile_mode}"
        _CACHE[key] = CompiledNet(
            net, f"{spec.describe()} [{device} {dtype} {mode}{suffix}", COMPILE_TIMES, compile_mode
        )
    return _CACHE[key]


# -- prepared nets for benchmarks ---------------------------------------------------------


class PreparedCompiledNet:
    """One compiled Net with its own parameters, for timing steady state on the device.

    ``forward`` and ``train_step`` take device tensors (see ``to_device``; NumPy arrays are
    copied to the device first) and return device tensors without synchronising. ``train_step`` updates
    this object's parameters in place. Both run one :class:`TrainingNet`; its forward under
    ``no_grad`` is not the graph of the ``forward`` contract method (a plain :class:`Net`), so
    what checks this object is ``prepared_forward`` and ``prepared_train_step``.
    ``compile_seconds`` sums the calls that compiled; inductor's FX graph cache makes it
    small when the same graph was compiled before, in this process or an earlier one.
    """

    setup_kind = "compile"

    def __init__(
        self, spec: NetSpec, params: dict[str, np.ndarray], *, device: str, dtype: str, compile_mode: str = "default"
    ) -> None:
        self.spec, self.device, self.dtype = spec, device, check_dtype(dtype)
        self.times: dict[str, float] = {}
        net = build_net(spec, params, device, self.dtype, TrainingNet)
        self.compiled = CompiledNet(net, f"prepared {spec.describe()}", self.times, compile_mode)

    @property
    def compile_seconds(self) -> float:
        return sum(self.times.values())

    @property
    def setup_seconds(self) -> float:
        return self.compile_seconds

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        """Inputs and sse targets in the prepared dtype; integer labels as int64."""
        if array.dtype.kind in "iu":
            return to_tensor(array.astype(np.int64), self.device)
        return to_tensor(array, self.device, self.dtype)

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        with torch.no_grad(), precision_scope(self.dtype, self.device):
            return self.compiled(self._input(x))

    def train_step(
        self, x: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, *, loss: str, lr: float
    ) -> torch.Tensor:
        """One SGD step on this object's parameters; returns the loss (before the step)."""
        x = self._input(x)
        if isinstance(target, np.ndarray):
            target = loss_target(loss, self.spec.check_target(loss, target, x.shape[0]), self.device, self.dtype)
        self.compiled.net.zero_grad(set_to_none=True)
        with precision_scope(self.dtype, self.device):
            value = torch_loss(loss, self.compiled(x), target)
            value.backward()
        self.compiled.sgd_update(lr)
        return value.detach()

    def parameters(self) -> dict[str, np.ndarray]:
        return self.compiled.parameters_numpy()

    def to_host(self, output: torch.Tensor) -> np.ndarray:
        return to_numpy(output)

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _input(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            return to_tensor(self.spec.check_input(x, self.dtype), self.device, self.dtype)
        return x


# -- the backend --------------------------------------------------------------------------


class CompiledBackend:
    """``torch.compile`` (inductor) of the eager Net; see the module docstring for the cache.

    ``CompiledBackend("reduce-overhead")`` is ``compile-cudagraphs``: the same, replayed as
    CUDA graphs, on cuda only.
    """

    capabilities = frozenset(
        {
            Capability.FORWARD,
            Capability.INTERMEDIATES,
            Capability.BACKWARD,
            Capability.TRAIN_STEP,
        }
    )
    dtypes = ("float32",)

    def __init__(self, compile_mode: str = "default") -> None:
        self.name = next(name for name, mode in COMPILE_MODES.items() if mode == compile_mode)
        self.compile_mode = compile_mode
        suffix = "" if compile_mode == "default" else f" {compile_mode}"
        self.version = f"torch {torch.__version__} inductor{suffix}" if torch is not None else "torch missing"
        self.compile_times = COMPILE_TIMES
        cuda = torch is not None and _cuda_with_triton()
        if compile_mode == "reduce-overhead":
            self.devices: tuple[str, ...] = ("cuda",) if cuda else ()
        else:
            self.devices = ("cpu", "cuda") if cuda else ("cpu",)

    def availability(self) -> Availability:
        if torch is None:
            return Availability.missing("torch cannot be imported")
        if self.compile_mode == "reduce-overhead" and not _cuda_with_triton():
            return Availability.missing(
                "CUDA graphs (torch.compile mode='reduce-overhead') need a CUDA device with Triton;"
                " torch sees none here (torch.cuda.is_available() is False or Triton is missing)"
            )
        cxx, why = find_cxx()
        if cxx is None:
            return Availability.missing(f"inductor needs a C++ compiler: {why}")
        return Availability.ok()

    def prepare(self, spec: NetSpec, params: dict[str, np.ndarray], *, device: str, dtype: str) -> PreparedCompiledNet:
        params = spec.check_parameters(params)
        return PreparedCompiledNet(spec, params, device=device, dtype=dtype, compile_mode=self.compile_mode)

    # -- forward ----------------------------------------------------------------------

    def forward(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> np.ndarray:
        module = self._loaded(spec, params, device, dtype, "forward", x)
        with torch.no_grad(), precision_scope(dtype, device):
            return to_numpy(module(to_tensor(x, device, dtype)))

    def intermediates(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> dict[str, np.ndarray]:
        module = self._loaded(spec, params, device, dtype, "intermediates", x)
        with torch.no_grad(), precision_scope(dtype, device):
            return {name: to_numpy(t) for name, t in module.layers(to_tensor(x, device, dtype)).items()}

    # -- backward and training ------------------------------------------------------------

    def gradients(
        self,
        spec: NetSpec,
        params: dict[str, np.ndarray],
        x: np.ndarray,
        target: np.ndarray,
        *,
        loss: str,
        device: str,
        dtype: str,
    ) -> tuple[float, dict[str, np.ndarray]]:
        spec.check_target(loss, target, spec.check_input(x, dtype).shape[0])
        module = self._loaded(spec, params, device, dtype, "gradients", x)
        module.net.zero_grad(set_to_none=True)
        inputs = to_tensor(x, device, dtype).requires_grad_(True)
        with precision_scope(dtype, device):
            value = torch_loss(loss, module(inputs), loss_target(loss, target, device, dtype))
            value.backward()
        grads = {name: _grad(p) for name, p in module.net.named_parameters()}
        grads["input"] = _grad(inputs)
        return float(value.item()), grads

    def train_step(
        self,
        spec: NetSpec,
        params: dict[str, np.ndarray],
        x: np.ndarray,
        target: np.ndarray,
        *,
        loss: str,
        lr: float,
        device: str,
        dtype: str,
    ) -> dict[str, np.ndarray]:
        spec.check_target(loss, target, spec.check_input(x, dtype).shape[0])
        module = self._loaded(spec, params, device, dtype, "train_step", x)
        module.net.zero_grad(set_to_none=True)
        with precision_scope(dtype, device):
            logits = module(to_tensor(x, device, dtype))
            torch_loss(loss, logits, loss_target(loss, target, device, dtype)).backward()
        module.sgd_update(lr)
        return module.parameters_numpy()

    # -- helpers --------------------------------------------------------------------------

    def _loaded(
        self, spec: NetSpec, params: dict[str, np.ndarray], device: str, dtype: str, mode: str, x: np.ndarray
    ) -> CompiledNet:
        spec.check_input(x, dtype)
        spec.check_parameters(params)
        module = compiled_net(spec, device, check_dtype(dtype), mode, self.compile_mode)
        module.load(params)
        return module


def _grad(tensor: torch.Tensor) -> np.ndarray:
    assert tensor.grad is not None, "backward() did not reach every parameter"
    return to_numpy(tensor.grad).copy()


def _cuda_with_triton() -> bool:
    if not torch.cuda.is_available():
        return False
    from torch.utils._triton import has_triton  # inductor's GPU code generator

    return bool(has_triton())


@hookimpl
def harness_backends() -> list[CompiledBackend]:
    backends = [CompiledBackend()]
    if torch is not None and _cuda_with_triton():  # registered only where it can run: see "CUDA graphs" above
        backends.append(CompiledBackend("reduce-overhead"))
    return backends
