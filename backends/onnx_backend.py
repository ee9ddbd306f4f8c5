"""``onnx``: the eager Net exported with ``torch.onnx.export`` and run by onnxruntime.

Export. Once per (spec, dtype) per process, with the dynamo exporter
(``torch.onnx.export(dynamo=True)``, the default in torch 2.13: it runs offline through
onnxscript and takes a few seconds). The TorchScript exporter is not used: it cannot trace
the parameter swap below ("the stateless API can't be used with Jitted modules"). The
model is checked with ``onnx.checker.check_model`` and written atomically to
``<artifacts>/onnx/net-<hash>.onnx``, where ``<artifacts>`` is ``$NETHARNESS_ARTIFACTS`` or
``.netharness/artifacts`` under the current directory and ``<hash>`` is a short hash of
the spec, dtype and opset (:meth:`OnnxBackend.model_path`).

Weights are graph inputs, not initializers: the exported module is ``forward(x, *weights)``,
which calls the eager ``Net.forward_layers`` through ``torch.func.functional_call`` with the
given tensors in place of the parameters. So one export serves every call, whatever the
parameters; each run feeds them by their canonical names (``conv1.weight``, ...). The input
is named ``input`` and its batch axis is dynamic (``batch``). The graph returns every layer's
output, named by :meth:`NetSpec.layer_names`: ``intermediates`` fetches them all, ``forward``
only the logits.

A model is exported again only when its file is missing (or the artifacts directory
changed). Sessions (``onnxruntime.InferenceSession``) are cached per (spec, dtype,
provider), that is per (model file, provider): ``CPUExecutionProvider``, or
``CUDAExecutionProvider`` for ``device="cuda"`` where this onnxruntime has it.

Dtype policy: float32 only. onnxruntime's CPU provider has no float64 ``Conv`` kernel
("Could not find an implementation for Conv(11)"), so float64 is not declared. Inputs and
parameters are cast to float32; outputs are float32 NumPy arrays.

Only ``forward`` and ``intermediates`` are declared: the backend is export-only, with no
gradients, init or training.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from backends.eager import Net, build_net, torch
from harness import Availability, Capability, NetSpec, PluginError, SpecError, hookimpl
from harness.spec import check_dtype

try:
    import onnxruntime as ort
except ImportError as exc:  # onnx support is an optional extra: pip install netharness[onnx]
    ort = None
    _ORT_IMPORT_ERROR = str(exc)
else:
    _ORT_IMPORT_ERROR = ""

OPSET = 20
EXPORTER = "torch.onnx.export(dynamo=True)"
ARTIFACTS_ENV = "NETHARNESS_ARTIFACTS"
DEFAULT_ARTIFACTS = Path(".netharness") / "artifacts"
INPUT_NAME = "input"
BATCH_AXIS = "batch"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

EXPORT_TIMES: dict[str, float] = {}
"""Seconds each export took (export, check and write), keyed ``"<spec> [<dtype>]"``."""

_EXPORTED: set[Path] = set()
_SESSIONS: dict[tuple[Path, str], OnnxModel] = {}


def artifacts_dir() -> Path:
    """Where exported models go: ``$NETHARNESS_ARTIFACTS/onnx`` or ``.netharness/artifacts/onnx``."""
    return Path(os.environ.get(ARTIFACTS_ENV) or DEFAULT_ARTIFACTS) / "onnx"


def spec_hash(spec: NetSpec, dtype: str) -> str:
    return hashlib.sha256(repr((spec, dtype, OPSET)).encode()).hexdigest()[:12]


# -- running a model file -----------------------------------------------------------------


class OnnxModel:
    """An onnxruntime session over one model file; errors name the file."""

    def __init__(self, path: str | os.PathLike[str], provider: str = "CPUExecutionProvider") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PluginError(f"model file {self.path} does not exist; export it again or check ${ARTIFACTS_ENV}")
        import onnx

        try:
            onnx.checker.check_model(str(self.path))
        except Exception as exc:  # the checker raises parse, IO and validation errors alike
            raise PluginError(f"model file {self.path} is not a valid ONNX model: {_first_line(exc)}") from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise PluginError(f"onnxruntime cannot load model file {self.path}: {_first_line(exc)}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """Run the session; an input the graph rejects is a SpecError naming the file."""
        try:
            return self.session.run(outputs, feeds)  # type: ignore[no-any-return]
        except Exception as exc:  # onnxruntime's errors have no common base but Exception
            raise SpecError(f"model file {self.path} rejected the input: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())  # onnxruntime spreads one message over several lines
    return text or type(exc).__name__


# -- export -------------------------------------------------------------------------------


class _LayerOutputs(torch.nn.Module):  # type: ignore[misc,name-defined]
    """``Net.forward_layers`` as a tuple, in the spec's layer order."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net.forward_layers(x).values())


class _WeightsAsInputs(torch.nn.Module):  # type: ignore[misc,name-defined]
    """``forward(x, *weights)``: the Net's layers with ``weights`` in place of its parameters."""

    def __init__(self, net: Net, names: list[str]) -> None:
        super().__init__()
        self.layers = _LayerOutputs(net)
        self.names = names

    def forward(self, x: torch.Tensor, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        swapped = {f"net.{name}": w for name, w in zip(self.names, weights)}
        return torch.func.functional_call(self.layers, swapped, (x,), strict=True)  # type: ignore[no-any-return]


def export_model(spec: NetSpec, params: dict[str, np.ndarray], dtype: str, path: Path) -> float:
    """Export the Net with weights as inputs to ``path``; return the seconds it took."""
    import onnx

    start = time.perf_counter()
    net = build_net(spec, params, "cpu", dtype)
    names = list(spec.parameter_shapes())
    weights = tuple(p.detach() for p in net.parameters())
    example = torch.zeros((2, spec.in_channels, spec.height, spec.width), dtype=weights[0].dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    try:
        with _quiet_exporter():
            torch.onnx.export(
                _WeightsAsInputs(net, names),
                (example, *weights),
                tmp_name,
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim.DYNAMIC}, tuple(None for _ in weights)),
                input_names=[INPUT_NAME, *names],
                output_names=list(spec.layer_names()),
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
        model = onnx.load(tmp_name)
        _name_batch_axis(model)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private
        os.replace(tmp_name, path)  # atomic: parallel workers may export the same spec
    except Exception as exc:
        raise PluginError(f"exporting {spec.describe()} ({dtype}) to {path} failed: {_first_line(exc)}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return time.perf_counter() - start


def _name_batch_axis(model: Any) -> None:
    """Call the exporter's symbolic batch dimension (``s77`` or so) ``batch``."""
    symbol = model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = BATCH_AXIS


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter prints progress and logs a warning per missing torchvision op.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# -- prepared models for benchmarks -------------------------------------------------------


class PreparedOnnxModel:
    """A session with the weights bound once (IOBinding), for timing steady state.

    ``forward(x)`` binds only the input (a NumPy array, or an OrtValue from ``to_device``)
    and returns the logits as a NumPy array. ``export_seconds`` is what exporting this model
    took in this process.
    """

    setup_kind = "export"

    def __init__(
        self, model: OnnxModel, spec: NetSpec, params: dict[str, np.ndarray], device: str, export_seconds: float
    ):
        self.model, self.spec, self.device = model, spec, device
        self.export_seconds = export_seconds
        self.logits_name = spec.layer_names()[-1]
        self.binding = model.session.io_binding()
        for name, value in params.items():
            array = np.ascontiguousarray(value, dtype=np.float32)
            self.binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))

    @property
    def setup_seconds(self) -> float:
        return self.export_seconds

    def to_device(self, array: np.ndarray) -> Any:
        """A float32 copy of ``array`` on the session's device (an OrtValue off the CPU)."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        return array if self.device == "cpu" else ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)

    def forward(self, x: Any) -> np.ndarray:
        if isinstance(x, np.ndarray):
            self.binding.bind_cpu_input(INPUT_NAME, np.ascontiguousarray(x, dtype=np.float32))
        else:
            self.binding.bind_ortvalue_input(INPUT_NAME, x)
        self.binding.bind_output(self.logits_name, self.device)
        try:
            self.model.session.run_with_iobinding(self.binding)
        except Exception as exc:
            raise SpecError(f"model file {self.model.path} rejected the input: {_first_line(exc)}") from exc
        return self.binding.copy_outputs_to_cpu()[0]  # type: ignore[no-any-return]


# -- the backend --------------------------------------------------------------------------


class OnnxBackend:
    """torch.onnx export of the eager Net, run by onnxruntime; see the module docstring."""

    name = "onnx"
    capabilities = frozenset({Capability.FORWARD, Capability.INTERMEDIATES})
    dtypes = ("float32",)
    opset = OPSET
    exporter = EXPORTER

    def __init__(self) -> None:
        self.version = f"onnxruntime {ort.__version__}, opset {OPSET}" if ort is not None else "onnxruntime missing"
        cuda = ort is not None and PROVIDERS["cuda"] in ort.get_available_providers()
        self.devices: tuple[str, ...] = ("cpu", "cuda") if cuda else ("cpu",)
        self.export_times = EXPORT_TIMES

    def availability(self) -> Availability:
        if torch is None:
            return Availability.missing("torch cannot be imported")
        if ort is None:
            return Availability.missing(
                f"onnxruntime cannot be imported ({_ORT_IMPORT_ERROR}); pip install netharness[onnx]"
            )
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401  (the dynamo exporter translates through it)
        except ImportError as exc:
            return Availability.missing(
                f"the ONNX exporter needs onnx and onnxscript ({exc}); pip install netharness[onnx]"
            )
        return Availability.ok()

    def model_path(self, spec: NetSpec, dtype: str = "float32") -> Path:
        """Where the model file for (spec, dtype) is, or will be, under the current artifacts dir."""
        return (artifacts_dir() / f"net-{spec_hash(spec, check_dtype(dtype))}.onnx").absolute()

    def load_session(self, path: str | os.PathLike[str], device: str = "cpu") -> OnnxModel:
        """Open any model file; a missing or corrupt file is a PluginError that names it."""
        return OnnxModel(path, self._provider(device))

    def prepare(self, spec: NetSpec, params: dict[str, np.ndarray], *, device: str, dtype: str) -> PreparedOnnxModel:
        model = self._model(spec, params, device, dtype)
        return PreparedOnnxModel(model, spec, params, device, EXPORT_TIMES[_export_label(spec, dtype)])

    # -- forward ----------------------------------------------------------------------

    def forward(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> np.ndarray:
        return self._run(spec, params, x, device, dtype, [spec.layer_names()[-1]])[0]

    def intermediates(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> dict[str, np.ndarray]:
        names = list(spec.layer_names())
        return dict(zip(names, self._run(spec, params, x, device, dtype, names)))

    # -- helpers --------------------------------------------------------------------------

    def _run(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, device: str, dtype: str, outputs: list[str]
    ) -> list[np.ndarray]:
        spec.check_input(x)
        model = self._model(spec, params, device, dtype)
        feeds = {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}
        feeds.update({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in params.items()})
        return model.run(feeds, outputs)

    def _model(self, spec: NetSpec, params: dict[str, np.ndarray], device: str, dtype: str) -> OnnxModel:
        spec.check_parameters(params)
        dtype = self._dtype(dtype)
        provider = self._provider(device)
        path = self.model_path(spec, dtype)
        if path not in _EXPORTED or not path.is_file():
            EXPORT_TIMES[_export_label(spec, dtype)] = export_model(spec, params, dtype, path)
            _EXPORTED.add(path)
            _SESSIONS.pop((path, "CPUExecutionProvider"), None)
            _SESSIONS.pop((path, "CUDAExecutionProvider"), None)
        if (path, provider) not in _SESSIONS:
            _SESSIONS[path, provider] = OnnxModel(path, provider)
        return _SESSIONS[path, provider]

    def _dtype(self, dtype: str) -> str:
        name = check_dtype(dtype)
        if name not in self.dtypes:
            raise PluginError(
                f"the onnx backend runs float32 only, not {name}: onnxruntime's CPU provider has no float64 Conv"
            )
        return name

    def _provider(self, device: str) -> str:
        if device not in self.devices:
            available = ", ".join(ort.get_available_providers()) if ort is not None else "none"
            raise PluginError(
                f"the onnx backend cannot run on {device!r}: it needs onnxruntime's {PROVIDERS.get(device, device)}"
                f" (available: {available}); install onnxruntime-gpu for cuda"
            )
        return PROVIDERS[device]


def _export_label(spec: NetSpec, dtype: str) -> str:
    return f"{spec.describe()} [{dtype}]"


@hookimpl
def harness_backends() -> list[OnnxBackend]:
    return [OnnxBackend()]
