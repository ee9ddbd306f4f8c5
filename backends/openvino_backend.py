"""``openvino`` and ``openvino-f32``: the Net built with OpenVINO's own opset, compiled by its CPU plugin.

The graph is written with OpenVINO's opset builders (``openvino.opset13``) from the spec and
the parameters; torch is not involved. ``Convolution`` (stride 1, no padding) plus a bias
``Add``, the spec's activation (``Relu``, ``Tanh``, ``Sigmoid``), ``MaxPool`` with floor
rounding, a ``Reshape`` to (N, -1) that keeps NCHW's (channel, row, column) order, and
``MatMul`` with the weight transposed plus a bias ``Add``.

Two configurations of one runtime, as two backends:

- ``openvino``: the CPU plugin's defaults, judged at the precision the plugin reports as
  its ``INFERENCE_PRECISION_HINT``. On a CPU with AVX512-BF16 or AMX that is bf16, so the
  backend declares ``bfloat16``; elsewhere f32 (``float32``), or f16 where the plugin
  says so.
- ``openvino-f32``: ``INFERENCE_PRECISION_HINT=f32`` and ``EXECUTION_MODE_HINT=ACCURACY``,
  declaring ``float32``.

Every compiled model is asked for its ``INFERENCE_PRECISION_HINT``; one that differs from
the declared precision is a PluginError, so a report never judges a precision the runtime
did not use.

Compilation, per process:

- The contract methods (``forward``, ``intermediates``) run models whose weights are
  inputs (``Parameter`` nodes named like the canonical parameters) and whose batch is
  dynamic, so each is compiled once per spec and configuration, whatever the weights or
  batch. ``forward``'s model outputs the logits only; ``intermediates``' outputs every layer.
  ``COMPILE_TIMES`` holds the seconds each compile took.
- ``prepare()`` (the benchmarks' fast path) builds the model as deployed, with the weights
  as ``Constant`` nodes that the plugin can fold and repack, and compiles it once; its
  ``setup_seconds`` (kind ``compile``) is that build and compile.

Dtype policy: arrays at the contract are float32 (bfloat16 values exactly representable in
the ``openvino`` case); the model's inputs and outputs are f32 and the plugin computes in
the inference precision. Only ``forward`` and ``intermediates`` are declared: OpenVINO is
an inference runtime. Devices: ``cpu`` (OpenVINO's GPU plugin is for Intel GPUs, not CUDA).

``import openvino`` also imports ``openvino.tools.ovc``, whose import sends a usage event to
OpenVINO's telemetry from a forked process. The backend needs only the runtime, so
:func:`_import_openvino` keeps that one module out while importing the package (it stays
importable afterwards for anyone who asks for it).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from harness import Availability, Capability, NetSpec, PluginError, hookimpl

INSTALL = "pip install 'netharness[openvino]'"
_TELEMETRY_MODULE = "openvino.tools.ovc"


def _import_openvino() -> tuple[Any, Any, Any, str]:
    """(openvino, its opset13 builders, its hint properties, the import error or "")."""
    blocked = _TELEMETRY_MODULE not in sys.modules and "openvino" not in sys.modules
    if blocked:
        sys.modules[_TELEMETRY_MODULE] = None  # type: ignore[assignment]  # makes its import fail, so it is skipped
    try:
        import openvino
        import openvino.opset13 as opset
        import openvino.properties.hint as hints
    except ImportError as exc:
        return None, None, None, f"{type(exc).__name__}: {exc}"
    finally:
        if blocked and sys.modules.get(_TELEMETRY_MODULE, 0) is None:
            del sys.modules[_TELEMETRY_MODULE]
    return openvino, opset, hints, ""


ov, ops, hints, _OPENVINO_IMPORT_ERROR = _import_openvino()

PRECISION_NAMES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}
"""OpenVINO's element type names (``Type.get_type_name()``) for the harness's precisions."""

COMPILE_TIMES: dict[str, float] = {}
"""Seconds each contract model took to compile, keyed ``"<spec> [<backend> <kind>]"``."""

_CORE: Any = None
_COMPILED: dict[tuple[NetSpec, str, str], CompiledNet] = {}


def core() -> Any:
    """The process's one ``openvino.Core``, made on first use."""
    global _CORE
    if _CORE is None:
        _CORE = ov.Core()
    return _CORE


# -- the graph --------------------------------------------------------------------------------


def _activation(name: str, h: Any) -> Any:
    return {"relu": ops.relu, "tanh": ops.tanh, "sigmoid": ops.sigmoid}[name](h)


def build_layers(spec: NetSpec, x: Any, weights: dict[str, Any]) -> dict[str, Any]:
    """Every layer's output node, keyed by ``spec.layer_names()``, from ``x`` and weight nodes."""
    out: dict[str, Any] = {}
    h = x
    channel_axes = ops.constant(np.array([0, 2, 3], np.int64))  # bias (C,) -> (1, C, 1, 1)
    for name, stage in zip(spec.conv_names, spec.conv_stages):
        h = ops.convolution(h, weights[f"{name}.weight"], [1, 1], [0, 0], [0, 0], [1, 1])
        out[name] = h = ops.add(h, ops.unsqueeze(weights[f"{name}.bias"], channel_axes))
        out[f"{name}.act"] = h = _activation(spec.activation, h)
        window = [stage.pool, stage.pool]
        pooled = ops.max_pool(h, window, [1, 1], [0, 0], [0, 0], window, rounding_type="floor")
        out[f"{name}.pool"] = h = pooled.output(0)  # output 1 holds the indices
    out["flatten"] = h = ops.reshape(h, ops.constant(np.array([0, -1], np.int64)), special_zero=True)
    last = len(spec.linear_names) - 1
    for i, name in enumerate(spec.linear_names):
        h = ops.matmul(h, weights[f"{name}.weight"], transpose_a=False, transpose_b=True)  # x W^T
        out[name] = h = ops.add(h, weights[f"{name}.bias"])
        if i != last:  # no activation on the logits
            out[f"{name}.act"] = h = _activation(spec.activation, h)
    return out


def _input(spec: NetSpec) -> Any:
    return ops.parameter(ov.PartialShape([-1, spec.in_channels, spec.height, spec.width]), ov.Type.f32, name="input")


def contract_model(spec: NetSpec, kind: str) -> Any:
    """The model of ``kind`` (``logits`` or ``layers``) with the weights as named inputs and a dynamic batch."""
    x = _input(spec)
    weights = {
        name: ops.parameter(list(shape), ov.Type.f32, name=name) for name, shape in spec.parameter_shapes().items()
    }
    layers = build_layers(spec, x, weights)
    names = list(spec.layer_names()) if kind == "layers" else [spec.layer_names()[-1]]
    return ov.Model([_output(layers[n]) for n in names], [x, *weights.values()], f"net-{kind}")


def deployed_model(spec: NetSpec, params: dict[str, np.ndarray]) -> Any:
    """The model as deployed: the weights as constants, the logits the only output, a dynamic batch."""
    x = _input(spec)
    weights = {name: ops.constant(np.ascontiguousarray(value, np.float32)) for name, value in params.items()}
    return ov.Model([_output(build_layers(spec, x, weights)[spec.layer_names()[-1]])], [x], "net")


def _output(node: Any) -> Any:
    return node if isinstance(node, ov.Output) else node.output(0)


# -- compiled models --------------------------------------------------------------------------


class CompiledNet:
    """A compiled model and one infer request on it; ``precision`` is what the plugin reports it uses."""

    def __init__(self, model: Any, properties: dict[str, Any], declared: str, label: str) -> None:
        start = time.perf_counter()
        self.compiled = core().compile_model(model, "CPU", properties)
        self.seconds = time.perf_counter() - start
        self.request = self.compiled.create_infer_request()
        reported = self.compiled.get_property(hints.inference_precision).get_type_name()
        self.precision = PRECISION_NAMES.get(reported, reported)
        if self.precision != declared:
            raise PluginError(
                f"OpenVINO compiled {label} with inference precision {reported}, but the backend declares"
                f" {declared}; the CPU plugin's default precision changed since the backend was built"
            )
        mode = self.compiled.get_property(hints.execution_mode)
        self.execution_mode = str(getattr(mode, "name", mode))
        self.threads = int(self.compiled.get_property(ov.properties.inference_num_threads))
        """The intra-op threads the compiled model runs on, as the plugin reports them."""

    def run(self, feeds: dict[str, np.ndarray] | list[Any]) -> list[np.ndarray]:
        """The outputs, in the model's order, as float32 arrays the caller owns."""
        result = self.request.infer(feeds, share_inputs=True, share_outputs=False)
        return [np.asarray(result[output]) for output in self.compiled.outputs]


class PreparedOpenvinoNet:
    """The deployed model (weights as constants) compiled once, for timing steady state.

    ``forward`` takes a float32 NumPy array or an ``openvino.Tensor`` (``to_device``) and
    returns the logits as a NumPy array. ``setup_seconds`` is building and compiling it.
    """

    setup_kind = "compile"

    def __init__(self, spec: NetSpec, params: dict[str, np.ndarray], properties: dict[str, Any], declared: str):
        start = time.perf_counter()
        self.spec, self.dtype = spec, declared
        self.params = {name: np.array(value, np.float32) for name, value in params.items()}
        self.net = CompiledNet(deployed_model(spec, self.params), properties, declared, "the deployed Net")
        self.setup_seconds = time.perf_counter() - start

    @property
    def benchmark_info(self) -> dict[str, Any]:
        """Facts a benchmark record stores beside its timing."""
        return {
            "compile_s": self.net.seconds,
            "inference_precision": self.net.precision,
            "execution_mode": self.net.execution_mode,
            "threads": self.net.threads,
        }

    def to_device(self, array: np.ndarray) -> Any:
        return ov.Tensor(np.ascontiguousarray(array, np.float32), shared_memory=True)

    def forward(self, x: Any) -> np.ndarray:
        if isinstance(x, np.ndarray):
            x = self.to_device(self.spec.check_input(x, self.dtype))
        return self.net.run([x])[0]

    def parameters(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.params.items()}


# -- the backends -----------------------------------------------------------------------------


class OpenvinoBackend:
    """OpenVINO's CPU plugin with its default configuration; see the module docstring."""

    name = "openvino"
    capabilities = frozenset({Capability.FORWARD, Capability.INTERMEDIATES})
    devices = ("cpu",)

    def __init__(self) -> None:
        self.dtypes: tuple[str, ...] = ("float32",)
        self.version = "openvino missing"
        self._query_error = ""
        if ov is None:
            return
        try:  # construction must not fail; a plugin that cannot answer shows in availability()
            self.dtypes = (self._declared_precision(),)
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raises
            self._query_error = f"{type(exc).__name__}: {exc}"
        self.version = f"openvino {ov.get_version().split('-')[0]}, CPU, inference precision {self.dtypes[0]}"

    @property
    def properties(self) -> dict[str, Any]:
        """What ``compile_model`` is given: nothing, so the CPU plugin's defaults apply."""
        return {}

    def _declared_precision(self) -> str:
        reported = core().get_property("CPU", hints.inference_precision).get_type_name()
        return PRECISION_NAMES.get(reported, reported)

    def availability(self) -> Availability:
        if ov is None:
            return Availability.missing(f"openvino cannot be imported ({_OPENVINO_IMPORT_ERROR}); {INSTALL}")
        if self._query_error:
            return Availability.missing(f"OpenVINO's CPU plugin cannot be queried ({self._query_error})")
        return Availability.ok()

    def prepare(self, spec: NetSpec, params: dict[str, np.ndarray], *, device: str, dtype: str) -> PreparedOpenvinoNet:
        """The benchmarked object: compiled with torch's intra-op threads, as onnx's sessions are, so a
        benchmark compares the backends on the same threads (the plugin reports the count it used)."""
        import torch

        spec.check_parameters(params)
        properties = {**self.properties, ov.properties.inference_num_threads: torch.get_num_threads()}
        return PreparedOpenvinoNet(spec, params, properties, self._check(device, dtype))

    def forward(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> np.ndarray:
        return self._run(spec, params, x, "logits", device, dtype)[0]

    def intermediates(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> dict[str, np.ndarray]:
        return dict(zip(spec.layer_names(), self._run(spec, params, x, "layers", device, dtype)))

    def _run(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, kind: str, device: str, dtype: str
    ) -> list[np.ndarray]:
        declared = self._check(device, dtype)
        spec.check_input(x, dtype)
        spec.check_parameters(params)
        feeds = {"input": np.ascontiguousarray(x, np.float32)}
        feeds.update({name: np.ascontiguousarray(params[name], np.float32) for name in spec.parameter_shapes()})
        return self._compiled(spec, kind, declared).run(feeds)

    def _compiled(self, spec: NetSpec, kind: str, declared: str) -> CompiledNet:
        """The contract model of ``kind`` for ``spec``, compiled on first use in this process."""
        key = (spec, self.name, kind)
        if key not in _COMPILED:
            label = f"{spec.describe()} [{self.name} {kind}]"
            _COMPILED[key] = CompiledNet(contract_model(spec, kind), self.properties, declared, label)
            COMPILE_TIMES[label] = _COMPILED[key].seconds
        return _COMPILED[key]

    def _check(self, device: str, dtype: str) -> str:
        if device not in self.devices:
            raise PluginError(f"the {self.name} backend runs on cpu only, not {device!r}")
        if dtype not in self.dtypes:
            raise PluginError(
                f"the {self.name} backend computes in {self.dtypes[0]} (OpenVINO's inference precision), not {dtype!r}"
            )
        return dtype


class OpenvinoF32Backend(OpenvinoBackend):
    """OpenVINO's CPU plugin asked for float32 accuracy: ``INFERENCE_PRECISION_HINT=f32``, ``ACCURACY`` mode."""

    name = "openvino-f32"

    @property
    def properties(self) -> dict[str, Any]:
        return {hints.inference_precision: ov.Type.f32, hints.execution_mode: hints.ExecutionMode.ACCURACY}

    def _declared_precision(self) -> str:
        return "float32"


@hookimpl
def harness_backends() -> list[OpenvinoBackend]:
    return [OpenvinoBackend(), OpenvinoF32Backend()]
