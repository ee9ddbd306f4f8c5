"""``eager``: the seed's network as a PyTorch ``nn.Module``, run eagerly.

Layout and dtype policy: parameters live in the module as torch tensors in the requested
precision (float64, float32, bfloat16 or float16; tf32 is float32 with TF32 allowed, on
CUDA) on the requested device; canonical NumPy parameters map 1:1 to the module's
``state_dict`` (``conv1.weight`` OIHW, ``fc1.weight`` (out, in)). Inputs are NumPy arrays
copied to the device, C-contiguous whatever their layout; outputs come back as NumPy arrays
in the precision's storage dtype (float32 for every precision but float64). On CUDA,
float32 runs with TF32 off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from harness import API_VERSION, Availability, Capability, NetSpec, hookimpl
from harness.bench.fastpath import ContractPath
from harness.net.spec import SEED_SPEC

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as exc:  # pragma: no cover - torch is a hard dependency of netharness
    torch = None  # type: ignore[assignment]
    _TORCH_IMPORT_ERROR = str(exc)
    nn = None  # type: ignore[assignment]
else:
    _TORCH_IMPORT_ERROR = ""


_TORCH_ACTIVATIONS: dict[str, Callable[[Any], Any]] = (
    {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid} if torch is not None else {}
)


class Net(nn.Module):  # type: ignore[misc,name-defined]
    """The seed's network (section 3.1) for any valid :class:`NetSpec`, initialised as the seed does.

    Modules are named after the canonical parameters, so ``state_dict()`` keys are the
    canonical names.
    """

    def __init__(self, spec: NetSpec = SEED_SPEC) -> None:
        super().__init__()
        self.spec = spec
        self.activation = _TORCH_ACTIVATIONS[spec.activation]
        in_channels = spec.in_channels
        for name, stage in zip(spec.conv_names, spec.conv_stages):
            setattr(self, name, nn.Conv2d(in_channels, stage.out_channels, kernel_size=stage.kernel))
            in_channels = stage.out_channels
        for name, (fan_in, fan_out) in zip(spec.linear_names, spec.linear_widths):
            setattr(self, name, nn.Linear(fan_in, fan_out))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The seed's init loop, plus zero conv biases (the spec's stated choice)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)  # type: ignore[arg-type]
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_layers(x)[self.spec.linear_names[-1]]

    # Extension points: a subclass that overrides one of these changes the forward pass,
    # the intermediates, the gradients, the training step and the benchmark fast path alike.

    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The convolution ``name`` (stride 1, no padding)."""
        return getattr(self, name)(x)  # type: ignore[no-any-return]

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden activation (the spec's ``activation``)."""
        return self.activation(x)  # type: ignore[no-any-return]

    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        """Max pooling with stride equal to the window, flooring odd sizes."""
        return F.max_pool2d(x, window)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW to (N, C*H*W), in (channel, row, column) order."""
        return torch.flatten(x, 1)

    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The fully connected layer ``name``."""
        return getattr(self, name)(x)  # type: ignore[no-any-return]

    def hidden_act(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The activation after the hidden linear layer ``name``: ``act``."""
        return self.act(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """What the last layer's output becomes: itself (no activation on the logits)."""
        return x

    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output keyed by the spec's layer names, logits last."""
        out: dict[str, torch.Tensor] = {}
        for name, stage in zip(self.spec.conv_names, self.spec.conv_stages):
            x = out[name] = self.conv(name, x)
            x = out[f"{name}.act"] = self.act(x)
            x = out[f"{name}.pool"] = self.pool(x, stage.pool)
        x = out["flatten"] = self.flatten(x)
        last = self.spec.linear_names[-1]
        for name in self.spec.linear_names:
            x = self.linear(name, x)
            if name != last:
                out[name] = x
                x = out[f"{name}.act"] = self.hidden_act(name, x)
        out[last] = self.logits(x)
        return out


TORCH_DTYPES = {
    "float32": "float32",
    "float64": "float64",
    "tf32": "float32",  # float32 storage; TF32 matmuls and convolutions (CUDA only)
    "bfloat16": "bfloat16",
    "float16": "float16",
}
"""The torch dtype of each precision. Arrays at the contract are float64 for float64 and
float32 for every other precision (bfloat16 and float16 values exactly representable)."""


def torch_dtype(dtype: str) -> torch.dtype:
    return getattr(torch, TORCH_DTYPES[dtype])


@contextmanager
def precision_scope(dtype: str, device: str) -> Iterator[None]:
    """TF32 on exactly when the precision is tf32, on CUDA; the previous flags are restored.

    cuDNN and cuBLAS default to TF32 for float32 on recent NVIDIA GPUs; float32 here means
    float32 arithmetic, so TF32 is a configuration of its own.
    """
    if device != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def to_tensor(array: np.ndarray, device: str, dtype: str | None = None) -> torch.Tensor:
    """A C-contiguous copy of a NumPy array on ``device`` (never sharing the caller's memory).

    Any layout goes in (Fortran order, strides, negative strides, read-only); the tensor is
    always C-contiguous, so a compiled graph's stride guards see one layout.
    """
    tensor = torch.tensor(np.ascontiguousarray(array), device=device)
    return tensor if dtype is None else tensor.to(torch_dtype(dtype))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A host copy; bfloat16 and float16 come back as float32 (every value exactly)."""
    tensor = tensor.detach()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def _grad(tensor: torch.Tensor) -> torch.Tensor:
    assert tensor.grad is not None, "backward() left no gradient"
    return tensor.grad


def fresh_net(spec: NetSpec, net_class: type[Net] | None = None) -> Net:
    """A new ``net_class`` whose initial draws, overwritten by the caller, leave torch's global generator alone.

    Constructing a module draws its default init from the global generator: a forward that
    builds one would change what every later ``torch.rand`` in the process draws.
    """
    with torch.random.fork_rng(devices=[]):
        return (net_class or Net)(spec)


def build_net(
    spec: NetSpec, params: dict[str, np.ndarray], device: str, dtype: str, net_class: type[Net] | None = None
) -> Net:
    """A ``net_class`` (default :class:`Net`) holding ``params`` (copied) in ``dtype`` on ``device``."""
    spec.check_parameters(params)
    net = fresh_net(spec, net_class).to(device=device, dtype=torch_dtype(dtype))
    with torch.no_grad():
        state = {name: torch.as_tensor(np.array(value)) for name, value in params.items()}
        net.load_state_dict(state)
    return net


def torch_loss(loss: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The spec's losses, both summed over the batch."""
    if loss == "sse":
        return ((logits - target) ** 2).sum()
    return F.cross_entropy(logits, target, reduction="sum")


def loss_target(loss: str, target: np.ndarray, device: str, dtype: str) -> torch.Tensor:
    if loss == "sse":
        return to_tensor(target, device, dtype)
    return to_tensor(target.astype(np.int64), device)


class PreparedEagerNet:
    """A Net holding its own copy of the parameters, for timing steady state on a device.

    ``to_device`` moves an input once, outside any timed region; ``forward`` and
    ``train_step`` take device tensors and do not synchronise (``synchronize`` does).
    """

    setup_kind = "none"
    setup_seconds = 0.0

    def __init__(self, backend: EagerBackend, spec: NetSpec, params: dict[str, np.ndarray], device: str, dtype: str):
        self.backend, self.spec, self.device, self.dtype = backend, spec, device, dtype
        self.net = build_net(spec, params, device, dtype, backend.net_class)

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        return to_tensor(array, self.device, None if array.dtype.kind in "iu" else self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), precision_scope(self.dtype, self.device):
            return self.net(x)

    def train_step(self, x: torch.Tensor, target: torch.Tensor, *, loss: str, lr: float) -> None:
        self.net.zero_grad(set_to_none=True)
        with precision_scope(self.dtype, self.device):
            self.backend.loss_tensor(loss, self.net(x), target).backward()
        self.backend.sgd_update(self.net, lr)

    def parameters(self) -> dict[str, np.ndarray]:
        return {name: to_numpy(t).copy() for name, t in self.net.state_dict().items()}

    def to_host(self, output: torch.Tensor) -> np.ndarray:
        return to_numpy(output)

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


SUBCLASS_DTYPES: tuple[str, ...] = ("float32", "float64")
"""What a subclass of eager that declares no ``dtypes`` is tested at: the full precisions only."""


class EagerBackend:
    """PyTorch eager mode: the reference implementation the seed describes.

    One Net per (spec, device, dtype) is kept and given each call's parameters by copying
    them in, so a call does not pay for constructing and initialising a module.

    To test one change inside the Net ("eager with one change"), subclass and override an
    extension point; the network's contract methods (forward, intermediates, gradients,
    train_step, init) and the benchmark fast path follow it (``activation()`` and
    ``activation_grad()`` test torch's own elementwise functions, not ``Net.act``):

    - ``net_class``: a :class:`Net` subclass overriding ``conv``, ``act``, ``pool``,
      ``flatten``, ``linear`` or ``logits`` (see ``docs/example-eager-variant/``);
    - ``loss_tensor(loss, logits, target)``: the loss as a torch scalar;
    - ``sgd_update(net, lr)``: the update applied after ``backward()``.

    A subclass that overrides a contract method itself (``forward``, ``train_step``) gets a
    fast path that calls those methods, so the benchmarks never time code that the suite
    did not check.
    """

    name = "eager"
    capabilities = frozenset(Capability)
    dtypes: tuple[str, ...] = ("float32", "float64", "bfloat16", "float16")
    """Precisions; ``tf32`` is added where CUDA is present (it means nothing on the CPU).

    Not inherited: a subclass that declares no ``dtypes`` of its own gets
    :data:`SUBCLASS_DTYPES` (plugin API 2), since reduced precisions are a claim about
    kernels its author may have replaced."""
    net_class: type[Net] = Net
    api_version = API_VERSION

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "dtypes" not in cls.__dict__:
            cls.dtypes = SUBCLASS_DTYPES

    def __init__(self) -> None:
        self.version = f"torch {torch.__version__}" if torch is not None else "torch missing"
        cuda = torch is not None and torch.cuda.is_available()
        self.devices = ("cpu", "cuda") if cuda else ("cpu",)
        if cuda and type(self).dtypes == EagerBackend.dtypes:
            self.dtypes = (*EagerBackend.dtypes, "tf32")
        self._nets: dict[tuple[NetSpec, str, str], Net] = {}

    def _net(self, spec: NetSpec, params: dict[str, np.ndarray], device: str, dtype: str) -> Net:
        """The cached Net for this configuration, holding a copy of ``params`` and no gradients."""
        spec.check_parameters(params)
        key = (spec, device, dtype)
        if key not in self._nets:
            self._nets[key] = fresh_net(spec, self.net_class).to(device=device, dtype=torch_dtype(dtype))
        net = self._nets[key]
        with torch.no_grad():
            for name, tensor in net.named_parameters():
                tensor.copy_(torch.as_tensor(np.array(params[name])))  # a copy: read-only or negative strides
                tensor.grad = None
        return net

    def availability(self) -> Availability:
        if torch is None:
            return Availability.missing(f"torch cannot be imported: {_TORCH_IMPORT_ERROR}")
        return Availability.ok()

    def prepare(self, spec: NetSpec, params: dict[str, np.ndarray], *, device: str, dtype: str) -> Any:
        """The benchmark fast path: see :class:`PreparedEagerNet`.

        If a subclass overrides a contract method the fast path would bypass, the fast path
        calls the contract methods instead (:class:`harness.bench.fastpath.ContractPath`).
        """
        if any(getattr(type(self), m) is not getattr(EagerBackend, m) for m in ("forward", "train_step")):
            return ContractPath(self, spec, params, device=device, dtype=dtype)
        return PreparedEagerNet(self, spec, params, device, dtype)

    def loss_tensor(self, loss: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Extension point: the loss as a torch scalar (sums over the batch)."""
        return torch_loss(loss, logits, target)

    def sgd_update(self, net: Net, lr: float) -> None:
        """Extension point: p <- p - lr * dL/dp for every parameter, after ``backward()``."""
        params: list[torch.Tensor] = list(net.parameters())
        with torch.no_grad():
            torch._foreach_add_(params, [_grad(p) for p in params], alpha=-lr)

    # -- forward ----------------------------------------------------------------------

    def forward(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> np.ndarray:
        spec.check_input(x, dtype)
        net = self._net(spec, params, device, dtype)
        with torch.no_grad(), precision_scope(dtype, device):
            return to_numpy(net(to_tensor(x, device, dtype)))

    def intermediates(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> dict[str, np.ndarray]:
        spec.check_input(x, dtype)
        net = self._net(spec, params, device, dtype)
        with torch.no_grad(), precision_scope(dtype, device):
            return {name: to_numpy(t) for name, t in net.forward_layers(to_tensor(x, device, dtype)).items()}

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
        spec.check_input(x, dtype)
        spec.check_target(loss, target, x.shape[0])
        net = self._net(spec, params, device, dtype)
        inputs = to_tensor(x, device, dtype).requires_grad_(True)
        with precision_scope(dtype, device):
            value = self.loss_tensor(loss, net(inputs), loss_target(loss, target, device, dtype))
            value.backward()
        grads = {name: to_numpy(_grad(p)).copy() for name, p in net.named_parameters()}
        grads["input"] = to_numpy(_grad(inputs))
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
        spec.check_input(x, dtype)
        spec.check_target(loss, target, x.shape[0])
        net = self._net(spec, params, device, dtype)
        with precision_scope(dtype, device):
            logits = net(to_tensor(x, device, dtype))
            self.loss_tensor(loss, logits, loss_target(loss, target, device, dtype)).backward()
        self.sgd_update(net, lr)
        return {name: to_numpy(t).copy() for name, t in net.state_dict().items()}  # the cached net lives on

    # -- init, activations, losses ------------------------------------------------------

    def init_params(self, spec: NetSpec, *, seed: int, dtype: str) -> dict[str, np.ndarray]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self.net_class(spec).to(torch_dtype(dtype))
        return {name: to_numpy(t) for name, t in net.state_dict().items()}

    def activation(self, name: str, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return to_numpy(_TORCH_ACTIVATIONS[name](torch.tensor(x)))

    def activation_grad(self, name: str, x: np.ndarray) -> np.ndarray:
        inputs = torch.tensor(x, requires_grad=True)
        _TORCH_ACTIVATIONS[name](inputs).backward(torch.ones_like(inputs))
        assert inputs.grad is not None
        return to_numpy(inputs.grad)

    def loss(self, name: str, logits: np.ndarray, target: np.ndarray) -> float:
        dtype = logits.dtype.name
        with torch.no_grad():
            return float(self.loss_tensor(name, torch.tensor(logits), loss_target(name, target, "cpu", dtype)).item())


@hookimpl
def harness_backends() -> list[EagerBackend]:
    return [EagerBackend()]
