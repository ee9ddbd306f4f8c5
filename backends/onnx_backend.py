"""``onnx``: the eager Net exported with ``torch.onnx.export`` and run by onnxruntime, as deployed.

Two models per (spec, dtype), each exported once (``torch.onnx.export(dynamo=True)``,
offline through onnxscript, under a second), fully checked and written atomically under
``$NETHARNESS_ARTIFACTS/onnx/`` (default ``.netharness/artifacts/onnx/``). A file's name
carries :func:`spec_hash`: the spec, dtype and opset, and :func:`exporter_fingerprint`, the
source of the code that builds the exported Net and the exporter's versions. So a later run
in the same folder reuses a model only if nothing that made it has changed:

- **The deployed model** (``net-<hash>.onnx``, :meth:`OnnxBackend.model_path`), what a user
  ships: the plain Net exported with its weights as initializers (canonical names) and the
  logits as the only output. It serves ``forward`` and the benchmarks. Other weights are
  written into copies of its graph (initializers replaced by name, shapes checked), which
  costs milliseconds, not an export. ``prepare`` writes the model it runs, weights included,
  to ``net-<hash>-w<digest>.onnx``: the artifact a benchmark record links.
- **The layers model** (``net-<hash>-layers.onnx``) serves ``intermediates`` only: every
  layer's output, and the weights as graph inputs (``Net.forward_layers`` through
  ``torch.func.functional_call``), so one export serves every call. The TorchScript
  exporter cannot trace that parameter swap, so it is not used.

Sessions run with onnxruntime's default graph optimizations (``ORT_ENABLE_ALL``: constant
folding, Conv+ReLU fusion, weight pre-packing), which initializers allow; so the checks of
``forward`` and of the fast path check the optimized graph, and an onnxruntime fusion bug
fails a check. Intra-op threads follow torch's, so a benchmark's ``threads`` holds for onnx
too. The input is named ``input``, its batch axis ``batch`` (dynamic). Sessions
are cached per model and provider (``CPUExecutionProvider``, or ``CUDAExecutionProvider``
for ``device="cuda"`` where this onnxruntime has it), other weights in a small LRU cache.

Dtype policy: float32 only (onnxruntime's CPU provider has no float64 ``Conv``); inputs and
parameters are cast to float32, outputs are float32 NumPy arrays. Only ``forward`` and
``intermediates`` are declared: no gradients, init or training.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.metadata
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from backends.eager import Net, build_net, torch
from harness import Availability, Capability, NetSpec, PluginError, SpecError, hookimpl
from harness.net.spec import check_dtype

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
WEIGHTED_SESSIONS = 8
"""Deployed models with other weights kept open at once (the conformance suite cycles through a few)."""

EXPORT_TIMES: dict[str, float] = {}
"""Seconds each export took (export, check and write), keyed ``"<spec> [<dtype> <kind>]"``."""

_SESSIONS: dict[tuple[Path, str], OnnxModel] = {}
_WEIGHTED: OrderedDict[tuple[Path, str, str], OnnxModel] = OrderedDict()


def artifacts_dir() -> Path:
    """Where exported models go: ``$NETHARNESS_ARTIFACTS/onnx`` or ``.netharness/artifacts/onnx``."""
    return Path(os.environ.get(ARTIFACTS_ENV) or DEFAULT_ARTIFACTS) / "onnx"


def spec_hash(spec: NetSpec, dtype: str) -> str:
    return hashlib.sha256(repr((spec, dtype, OPSET, exporter_fingerprint())).encode()).hexdigest()[:12]


@functools.cache
def exporter_fingerprint() -> str:
    """A hash of what an exported model depends on besides its spec.

    The source of the modules that define the exported network (the Net, its spec and this
    module's wrappers), and the versions of torch, onnx and onnxscript.
    """
    digest = hashlib.sha256()
    for module in ("backends.eager", "harness.net.spec", __name__):
        digest.update(Path(str(sys.modules[module].__file__)).read_bytes())
    for distribution in ("torch", "onnx", "onnxscript"):
        try:
            digest.update(f"{distribution} {importlib.metadata.version(distribution)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{distribution} missing".encode())
    return digest.hexdigest()[:12]


def weights_digest(params: dict[str, np.ndarray]) -> str:
    """A short hash of the parameters as float32, in canonical order."""
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(params[name], dtype=np.float32).tobytes())
    return digest.hexdigest()[:12]


# -- running a model ----------------------------------------------------------------------


class OnnxModel:
    """An onnxruntime session over one model (a file, or bytes labelled by ``path``); errors name it."""

    def __init__(
        self, path: str | os.PathLike[str], provider: str = "CPUExecutionProvider", model_bytes: bytes | None = None
    ) -> None:
        self.path = Path(path)
        if model_bytes is None:
            _check_model_file(self.path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as deployed
        # torch's intra-op threads (a benchmark's `threads`): the physical cores by default, as onnxruntime's own.
        options.intra_op_num_threads = torch.get_num_threads()
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        try:
            source = model_bytes if model_bytes is not None else str(self.path)
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as exc:
            raise PluginError(f"onnxruntime cannot load model file {self.path}: {_one_line(exc)}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.threads = int(self.session.get_session_options().intra_op_num_threads)
        """The session's intra-op threads, as it holds them (a benchmark record's ``threads``)."""

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """Run the session; an input the graph rejects is a SpecError naming the file."""
        try:
            return self.session.run(outputs, feeds)  # type: ignore[no-any-return]
        except Exception as exc:  # onnxruntime's errors have no common base but Exception
            raise SpecError(f"model file {self.path} rejected the input: {_one_line(exc)}") from exc


def _check_model_file(path: Path) -> None:
    if not path.is_file():
        raise PluginError(f"model file {path} does not exist; export it again or check ${ARTIFACTS_ENV}")
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # the checker raises parse, IO and validation errors alike
        raise PluginError(f"model file {path} is not a valid ONNX model: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
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


def export_model(spec: NetSpec, params: dict[str, np.ndarray], dtype: str, path: Path, kind: str = "deployed") -> float:
    """Export the deployed model (weights as initializers, logits only) or the layers model to ``path``.

    Returns the seconds it took: export, full check and atomic write.
    """
    import onnx

    start = time.perf_counter()
    net = build_net(spec, params, "cpu", dtype).eval()
    names = list(spec.parameter_shapes())
    weights = tuple(p.detach() for p in net.parameters())
    example = torch.zeros((2, spec.in_channels, spec.height, spec.width), dtype=weights[0].dtype)
    batch = {0: torch.export.Dim.DYNAMIC}
    module: Any
    args: tuple[Any, ...]
    dynamic: tuple[Any, ...]
    if kind == "deployed":
        module, args = net, (example,)
        dynamic, inputs, outputs = (batch,), [INPUT_NAME], [spec.layer_names()[-1]]
    else:
        module, args = _WeightsAsInputs(net, names), (example, *weights)
        dynamic, inputs, outputs = (batch, tuple(None for _ in weights)), [INPUT_NAME, *names], list(spec.layer_names())
    try:
        with tempfile.TemporaryDirectory() as scratch, _quiet_exporter(), torchlib_registry_built_once():
            exported = os.path.join(scratch, "model.onnx")
            torch.onnx.export(
                module,
                args,
                exported,
                dynamo=True,
                dynamic_shapes=dynamic,
                input_names=inputs,
                output_names=outputs,
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
            model = onnx.load(exported)
        _name_batch_axis(model)
        onnx.checker.check_model(model, full_check=True)
        if kind == "deployed":
            _check_initializers(model, spec, path)
        _write_atomically(model.SerializeToString(), path)  # parallel workers may export the same spec
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"exporting {spec.describe()} ({dtype}, {kind}) to {path} failed: {_one_line(exc)}") from exc
    return time.perf_counter() - start


def _name_batch_axis(model: Any) -> None:
    """Call the exporter's symbolic batch dimension (``s77`` or so) ``batch``."""
    symbol = model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = BATCH_AXIS


def _check_initializers(model: Any, spec: NetSpec, path: Path) -> None:
    """Every parameter must be an initializer of its canonical name and shape, or weights cannot be swapped in."""
    found = {init.name: tuple(init.dims) for init in model.graph.initializer}
    wrong = [name for name, shape in spec.parameter_shapes().items() if found.get(name) != tuple(shape)]
    if wrong:
        raise PluginError(
            f"the deployed model {path} does not hold {', '.join(wrong)} as initializers of the spec's shapes"
            f" (found {sorted(found)}); the exporter changed how it names weights"
        )


def with_weights(template: Any, params: dict[str, np.ndarray]) -> Any:
    """A copy of the deployed model ``template`` (a ModelProto) whose initializers hold ``params`` (float32)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(template)
    for init in model.graph.initializer:
        if init.name in params:
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(params[init.name], dtype=np.float32), init.name))
    return model


def initializers_of(model: Any, names: list[str]) -> dict[str, np.ndarray]:
    """The named initializers of a ModelProto, as NumPy arrays."""
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer if init.name in names}


_TORCHLIB_REGISTRIES: dict[Any, Any] = {}


@contextlib.contextmanager
def torchlib_registry_built_once() -> Iterator[None]:
    """Exports in this block build torch.onnx's table of ATen-to-ONNX functions once per opset.

    Every ``torch.onnx.export(dynamo=True)`` builds that table anew
    (``ONNXRegistry.from_torchlib``: it reads and parses the source of about 500 onnxscript
    functions), about half of a 0.7 s export on a 2-core machine. In this block it is built
    once per set of arguments and each export gets a copy of its own (the mapping and its
    lists copied, the functions shared), so an export that registers custom ops changes only
    its copy, and the models are byte for byte what a fresh table gives. The class is
    restored on leaving; where torch's private layout differs, exports build it as before.
    """
    try:
        from torch.onnx._internal.exporter import _registration

        registry_class = _registration.ONNXRegistry
        original = registry_class.__dict__["from_torchlib"]
        build = original.__func__
    except (ImportError, AttributeError, KeyError):
        yield
        return

    def from_torchlib(cls: Any, *args: Any, **kwargs: Any) -> Any:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _TORCHLIB_REGISTRIES:
            _TORCHLIB_REGISTRIES[key] = build(cls, *args, **kwargs)
        built = _TORCHLIB_REGISTRIES[key]
        if not isinstance(getattr(built, "functions", None), dict):
            return build(cls, *args, **kwargs)
        registry = copy.copy(built)
        registry.functions = {target: list(decompositions) for target, decompositions in built.functions.items()}
        return registry

    setattr(registry_class, "from_torchlib", classmethod(from_torchlib))  # noqa: B010 (a method, for mypy)
    try:
        yield
    finally:
        setattr(registry_class, "from_torchlib", original)  # noqa: B010


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


def _write_atomically(data: bytes, path: Path) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


# -- prepared models for benchmarks -------------------------------------------------------


class PreparedOnnxModel:
    """The deployed model with its weights as initializers, written to ``model_path``, for timing.

    ``forward(x)`` binds only the input (a NumPy array, or an OrtValue from ``to_device``)
    and returns the logits as a NumPy array. ``parameters()`` reads the weights back from
    the very model it runs. ``setup_seconds`` is what preparing it cost: the export, if this
    prepare ran it, plus writing the weights and opening the optimized session.
    ``benchmark_info`` holds the export's time (whichever prepare ran it), the session's,
    the file and its size.
    """

    setup_kind = "export"

    def __init__(self, model: OnnxModel, proto: Any, spec: NetSpec, device: str, seconds: dict[str, Any]):
        self.model, self.proto, self.spec, self.device = model, proto, spec, device
        self.model_path, self.logits_name = model.path, spec.layer_names()[-1]
        self.export_seconds = seconds["export_s"]
        self.setup_seconds = seconds["session_s"] + (self.export_seconds if seconds["exported_here"] else 0.0)
        self.benchmark_info = {**seconds, "model_bytes": model.path.stat().st_size, "artifact": str(model.path)}
        if model.threads > 0:  # 0 would be onnxruntime's own choice, which the session does not say
            self.benchmark_info["threads"] = model.threads
        self.binding = model.session.io_binding()

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
            raise SpecError(f"model file {self.model.path} rejected the input: {_one_line(exc)}") from exc
        return self.binding.copy_outputs_to_cpu()[0]  # type: ignore[no-any-return]

    def parameters(self) -> dict[str, np.ndarray]:
        return initializers_of(self.proto, list(self.spec.parameter_shapes()))


# -- the backend --------------------------------------------------------------------------


class OnnxBackend:
    """torch.onnx export of the eager Net, run by onnxruntime as deployed; see the module docstring."""

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
        """The deployed model's graph for (spec, dtype) under the current artifacts dir (exported weights)."""
        return (artifacts_dir() / f"net-{spec_hash(spec, check_dtype(dtype))}.onnx").absolute()

    def layers_model_path(self, spec: NetSpec, dtype: str = "float32") -> Path:
        """The layers model (weights as inputs, every layer an output) that serves ``intermediates``."""
        return (artifacts_dir() / f"net-{spec_hash(spec, check_dtype(dtype))}-layers.onnx").absolute()

    def weighted_model_path(self, spec: NetSpec, dtype: str, params: dict[str, np.ndarray]) -> Path:
        """Where ``prepare`` writes the deployed model holding ``params``: the file a benchmark runs."""
        name = f"net-{spec_hash(spec, check_dtype(dtype))}-w{weights_digest(params)}.onnx"
        return (artifacts_dir() / name).absolute()

    def load_session(self, path: str | os.PathLike[str], device: str = "cpu") -> OnnxModel:
        """Open any model file; a missing or corrupt file is a PluginError that names it."""
        return OnnxModel(path, self._provider(device))

    def prepare(self, spec: NetSpec, params: dict[str, np.ndarray], *, device: str, dtype: str) -> PreparedOnnxModel:
        """The deployed model with ``params`` as initializers, written to its own file and opened once.

        Its ``setup_seconds`` is what this call paid: the export, if this call ran it, then
        writing the weights and opening the optimized session.
        """
        spec.check_parameters(params)
        dtype, provider = self._dtype(dtype), self._provider(device)
        exported_here = _needs_export(self.model_path(spec, dtype))
        template = self._exported(spec, params, dtype, "deployed")
        start = time.perf_counter()
        proto = with_weights(_template_proto(template), params)
        path = self.weighted_model_path(spec, dtype, params)
        _write_atomically(proto.SerializeToString(), path)
        model = OnnxModel(path, provider)
        seconds = {
            "export_s": EXPORT_TIMES.get(_export_label(spec, dtype, "deployed")),  # None: an earlier run exported it
            "exported_here": exported_here,
            "session_s": time.perf_counter() - start,
        }
        return PreparedOnnxModel(model, proto, spec, device, seconds)

    # -- forward ----------------------------------------------------------------------

    def forward(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> np.ndarray:
        spec.check_input(x, dtype)
        spec.check_parameters(params)
        model = self._deployed(spec, params, self._dtype(dtype), self._provider(device))
        return model.run({INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}, [spec.layer_names()[-1]])[0]

    def intermediates(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> dict[str, np.ndarray]:
        spec.check_input(x, dtype)
        spec.check_parameters(params)
        dtype, provider = self._dtype(dtype), self._provider(device)
        path = self._exported(spec, params, dtype, "layers")
        if (path, provider) not in _SESSIONS:
            _SESSIONS[path, provider] = OnnxModel(path, provider)
        feeds = {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}
        feeds.update({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in params.items()})
        names = list(spec.layer_names())
        return dict(zip(names, _SESSIONS[path, provider].run(feeds, names)))

    # -- helpers --------------------------------------------------------------------------

    def _exported(self, spec: NetSpec, params: dict[str, np.ndarray], dtype: str, kind: str) -> Path:
        """The model file of ``kind``, exported unless a run with the same code exported it here."""
        path = self.model_path(spec, dtype) if kind == "deployed" else self.layers_model_path(spec, dtype)
        if _needs_export(path):
            EXPORT_TIMES[_export_label(spec, dtype, kind)] = export_model(spec, params, dtype, path, kind)
            _PROTOS.pop(path, None)
            for stale in [k for k in _SESSIONS if k[0] == path]:
                del _SESSIONS[stale]
            for old in [k for k in _WEIGHTED if k[0] == path]:
                del _WEIGHTED[old]
        return path

    def _deployed(self, spec: NetSpec, params: dict[str, np.ndarray], dtype: str, provider: str) -> OnnxModel:
        """A session over the deployed model holding ``params`` (kept in memory, LRU-cached)."""
        template = self._exported(spec, params, dtype, "deployed")
        key = (template, provider, weights_digest(params))
        if key in _WEIGHTED:
            _WEIGHTED.move_to_end(key)
            return _WEIGHTED[key]
        proto = with_weights(_template_proto(template), params)
        _WEIGHTED[key] = OnnxModel(template, provider, model_bytes=proto.SerializeToString())
        while len(_WEIGHTED) > WEIGHTED_SESSIONS:
            _WEIGHTED.popitem(last=False)
        return _WEIGHTED[key]

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


_PROTOS: dict[Path, Any] = {}


def _needs_export(path: Path) -> bool:
    """No file: its name carries the hash of everything that made it (:func:`spec_hash`)."""
    return not path.is_file()


def _template_proto(path: Path) -> Any:
    """The deployed model file as a ModelProto, read once per export."""
    if path not in _PROTOS:
        import onnx

        _PROTOS[path] = onnx.load(str(path))
    return _PROTOS[path]


def _export_label(spec: NetSpec, dtype: str, kind: str) -> str:
    return f"{spec.describe()} [{dtype} {kind}]"


@hookimpl
def harness_backends() -> list[OnnxBackend]:
    return [OnnxBackend()]
