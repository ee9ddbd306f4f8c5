"""The backend contract: what a backend declares, and the operations each capability needs.

A backend is any object with the attributes of :class:`Backend`. Everything else is
optional and tied to a declared capability: a backend that declares ``forward`` has a
``forward`` method, one that declares ``backward`` has ``gradients``, and so on (see
:data:`CAPABILITY_METHODS`). A NumPy-only backend simply lists ``cpu`` as its only device;
an export-only backend declares ``forward`` and nothing else. No stubs are needed, and the
conformance suite skips what a backend does not declare, naming the capability.

Every operation takes the canonical currency and returns it:

- parameters are ``dict[str, numpy.ndarray]`` keyed by :meth:`NetSpec.parameter_shapes`
  names (``conv1.weight`` OIHW, ``fc1.weight`` as (out, in), ...);
- inputs are NumPy arrays (N, C, H, W); outputs are NumPy arrays back on the host, in the
  precision's storage dtype: float64 for ``float64``, float32 for every other precision
  (bfloat16 and float16 values travel as float32 values that hold them exactly);
- ``device`` is ``"cpu"`` or ``"cuda"``; ``dtype`` is a precision: ``"float64"``,
  ``"float32"``, ``"tf32"``, ``"bfloat16"`` or ``"float16"`` (:mod:`harness.net.precision`).

Optional operations, by capability:

``forward``
    ``forward(spec, params, x, *, device, dtype) -> logits (N, classes)``
``intermediates``
    ``intermediates(spec, params, x, *, device, dtype) -> dict[layer name, array]`` in
    forward order, keyed by :meth:`NetSpec.layer_names` (the last entry is the logits).
``backward``
    ``gradients(spec, params, x, target, *, loss, device, dtype) -> (loss value, grads)``
    where ``grads`` maps every parameter name and ``"input"`` to d loss / d that.
``init``
    ``init_params(spec, *, seed, dtype) -> params``: the backend's own initialiser. The
    same seed gives the same parameters.
``activations``
    ``activation(name, x) -> array`` and ``activation_grad(name, x) -> array`` (the
    elementwise derivative), for ``relu``, ``tanh`` and ``sigmoid``; same dtype and shape
    as ``x``, which is never modified.
``losses``
    ``loss(name, logits, target) -> float`` for ``sse`` and ``cross_entropy`` (sums).
``train_step``
    ``train_step(spec, params, x, target, *, loss, lr, device, dtype) -> new params``: one
    gradient-descent step, ``p - lr * dL/dp``. ``params`` is not modified.

``init_params``, ``activation``, ``activation_grad`` and ``loss`` take no device: compute
them where the answer does not depend on the machine (every built-in backend uses the CPU;
``--device`` does not move them).

Benchmarking (optional, any backend): ``prepare(spec, params, *, device, dtype)`` returns
an object that holds its own copy of the parameters, so the benchmarks time steady state:

- ``forward(x)``: the logits for an input already on the device (any array type);
- ``train_step(x, target, *, loss, lr)``: one SGD step on its own parameters (needed only
  if the backend declares ``train_step``);
- ``to_device(array)`` (optional): moves an input once, outside the timed region; without
  it, inputs are passed as NumPy arrays;
- ``synchronize()`` (optional): waits for queued device work; called inside each round;
- ``to_host(output) -> numpy.ndarray`` (optional): brings ``forward``'s output back to the
  host; without it, ``numpy.asarray`` is used;
- ``parameters() -> dict[str, numpy.ndarray]`` (needed with ``train_step``): the object's
  current parameters, canonical names and layouts;
- ``setup_seconds`` and ``setup_kind`` (optional): compile or export time, and which;
- ``benchmark_info`` (optional): a dict stored in each benchmark record; its ``threads``, a
  positive int, is the intra-op threads the object runs on (added with issue 28: without it,
  torch's thread count stands in, and the record says so in ``threads_source``).

The fast path is what the benchmarks time, so the suite checks it too: ``prepared_forward``
compares ``forward(x)`` with the oracle at every batch the benchmarks time, and
``prepared_train_step`` compares ``parameters()`` after one ``train_step`` with the oracle's
SGD step, at the same tolerances as the contract methods; ``prepared_train_steps`` takes
several steps in a row (each must start where the last ended: gradients zeroed, no momentum,
a constant rate) and then ``forward``, which must use the updated parameters. Each benchmark
record's error is measured on the very object that was timed.

No method may cache anything by an array's identity: a caller may change the same arrays in
place between two calls (``arrays_changed_in_place``).

A backend may declare ``api_version`` (an int), the plugin API version it was written for
(``harness.API_VERSION`` is this harness's); docs/plugin-api-changelog.md lists what each
version changed, and a check an older backend fails because of such a change says which.

A backend without ``prepare`` is timed through its contract methods, conversions included,
and its benchmark records say so.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from harness.errors import PluginError
from harness.net.precision import PRECISIONS
from harness.versions import API_VERSION, FIRST_VERSION

PHASES = ("forward", "train_step")
"""What a prepared fast path does, timed and checked: ``forward`` and ``train_step`` (see ``prepare``)."""


class Capability(enum.StrEnum):
    """What a backend can do. The conformance suite checks exactly what is declared."""

    FORWARD = "forward"
    INTERMEDIATES = "intermediates"
    BACKWARD = "backward"
    INIT = "init"
    ACTIVATIONS = "activations"
    LOSSES = "losses"
    TRAIN_STEP = "train_step"


CAPABILITY_METHODS: dict[Capability, tuple[str, ...]] = {
    Capability.FORWARD: ("forward",),
    Capability.INTERMEDIATES: ("intermediates",),
    Capability.BACKWARD: ("gradients",),
    Capability.INIT: ("init_params",),
    Capability.ACTIVATIONS: ("activation", "activation_grad"),
    Capability.LOSSES: ("loss",),
    Capability.TRAIN_STEP: ("train_step",),
}


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; ``reason`` says why not (empty when it can)."""

    available: bool
    reason: str = ""

    @classmethod
    def ok(cls) -> Availability:
        return cls(True, "")

    @classmethod
    def missing(cls, reason: str) -> Availability:
        return cls(False, reason)


@runtime_checkable
class Backend(Protocol):
    """What every backend declares. Operations are optional; see the module docstring."""

    name: str
    """Unique, short, lower case (``[a-z0-9][a-z0-9_.-]*``): it is what ``--backend`` takes."""

    version: str
    """Versions of what the backend runs on, e.g. ``"torch 2.13.0"``."""

    capabilities: frozenset[Capability]
    devices: tuple[str, ...]
    """Devices it can run on, from ``("cpu", "cuda")``."""

    dtypes: tuple[str, ...]
    """Precisions it computes in, from ``("float64", "float32", "tf32", "bfloat16", "float16")``
    (:mod:`harness.net.precision`); arrays are float32 for all but float64."""

    def availability(self) -> Availability:
        """Whether it can run on this machine, and why not. Must not raise."""
        ...


BACKEND_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
"""What a backend name may be: it reaches command lines, file names, test ids and the report."""


def check_backend(backend: Any, plugin_name: str) -> None:
    """Raise PluginError if ``backend`` does not meet the contract it declares."""
    missing_attrs = [
        a for a in ("name", "version", "capabilities", "devices", "dtypes", "availability") if not hasattr(backend, a)
    ]
    if missing_attrs:
        raise PluginError(
            f"plugin {plugin_name!r} returned {type(backend).__name__}, which lacks {', '.join(missing_attrs)};"
            " see docs/writing-a-backend.md"
        )
    if not isinstance(backend.name, str) or not BACKEND_NAME.fullmatch(backend.name) or backend.name == "all":
        raise PluginError(
            f"plugin {plugin_name!r} returned a backend named {str(backend.name)[:80]!r}; a name must match"
            f" {BACKEND_NAME.pattern} (lower-case letters, digits, '_', '.', '-'; at most 64; not 'all')"
        )
    unknown = [c for c in backend.capabilities if not isinstance(c, Capability)]
    if unknown:
        raise PluginError(
            f"backend {backend.name!r} (plugin {plugin_name!r}) declares unknown capabilities {unknown};"
            f" use harness.Capability members: {', '.join(c.value for c in Capability)}"
        )
    for capability in backend.capabilities:
        for method in CAPABILITY_METHODS[capability]:
            if not callable(getattr(backend, method, None)):
                raise PluginError(
                    f"backend {backend.name!r} (plugin {plugin_name!r}) declares {capability.value!r}"
                    f" but has no {method}() method; add it or drop the capability"
                )
    declared = getattr(backend, "api_version", FIRST_VERSION)
    if not isinstance(declared, int) or isinstance(declared, bool) or not FIRST_VERSION <= declared <= API_VERSION:
        raise PluginError(
            f"backend {backend.name!r} (plugin {plugin_name!r}) declares api_version={declared!r}; this netharness"
            f" implements plugin API {API_VERSION} (versions {FIRST_VERSION} to {API_VERSION}: see"
            " docs/plugin-api-changelog.md); upgrade netharness, or declare the version the backend was written for"
        )
    bad_devices = set(backend.devices) - {"cpu", "cuda"}
    bad_dtypes = set(backend.dtypes) - set(PRECISIONS)
    if bad_devices or bad_dtypes:
        raise PluginError(
            f"backend {backend.name!r} (plugin {plugin_name!r}) declares unknown devices {sorted(bad_devices)}"
            f" or dtypes {sorted(bad_dtypes)}; use cpu/cuda and precisions {', '.join(PRECISIONS)}"
        )


def supports(backend: Backend, capability: Capability | str) -> bool:
    return Capability(capability) in backend.capabilities


def describe_capabilities(backend: Backend) -> str:
    return ",".join(c.value for c in Capability if c in backend.capabilities)


@dataclass(frozen=True)
class ToleranceOverride:
    """A backend's request to widen the tolerance of one named check, with its reason.

    Overrides merge per component: for each matching test, the widest rtol and the widest
    atol of all matching overrides (and the default) apply.
    """

    check: str
    rtol: float
    atol: float
    reason: str
    dtype: str | None = None
    """Only for this dtype; ``None`` means every dtype (shorthand for ``select={"dtype": ...}``)."""
    select: Mapping[str, Any] = field(default_factory=dict)
    """Only for configurations with these parameters, e.g. ``{"activation": "tanh", "batch": 7}``;
    keys: dtype, device, loss, activation, variant, phase, batch (see :mod:`harness.conformance.selectors`)."""


@dataclass(frozen=True)
class KnownDeviation:
    """A check a backend is known to fail: the selected tests run as strict xfails with this reason."""

    check: str
    reason: str
    dtype: str | None = None
    select: Mapping[str, Any] = field(default_factory=dict)
    """Only for configurations with these parameters; see :class:`ToleranceOverride`."""
