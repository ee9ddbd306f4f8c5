"""The Net spec: a frozen, validated description of the seed's network.

The seed (``shared/seed``, section 3.1) builds::

    Conv2d(3->6, k5) ReLU MaxPool2d(2) Conv2d(6->16, k5) ReLU MaxPool2d(2)
    Flatten Linear(7*7*16 -> 120) ReLU Linear(120 -> 84) ReLU Linear(84 -> classes)

``7*7*16 = 784`` holds for 40x40 inputs: (40-4)/2 = 18, (18-4)/2 = 7. Convolutions have
stride 1 and no padding; pooling is max pooling with stride equal to its window, flooring
odd sizes. Flatten keeps the (channel, row, column) order of NCHW. There is no activation
on the logits.

Init scheme (part of the spec, see :data:`INIT_SCHEME`):

- conv weights: Kaiming normal, ``mode='fan_out'``, ReLU gain: N(0, 2 / fan_out) with
  fan_out = out_channels * kernel * kernel;
- conv biases: **0**. The seed leaves them at PyTorch's default uniform init; this spec
  chooses zero, like every other bias, so a backend's init is fully determined;
- linear weights: Xavier uniform, U(-a, a) with a = sqrt(6 / (fan_in + fan_out));
- linear biases: 0.

The init does not change with the hidden activation: the seed's gain is ReLU's.

Losses are sums over the batch, never means (see :mod:`harness.net.oracle`):

- ``sse``: sum of squared errors, L = sum((logits - target)^2), target float (N, classes);
- ``cross_entropy``: L = sum_i -log softmax(logits_i)[label_i], integer labels (N,).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import SpecError
from harness.net.precision import storage_dtype
from harness.versions import CONTRACT_CHANGES

ACTIVATIONS = ("relu", "tanh", "sigmoid")
LOSSES = ("sse", "cross_entropy")
DTYPES = ("float32", "float64")

INIT_SCHEME = {
    "conv.weight": "kaiming_normal(mode=fan_out, gain=relu): N(0, 2/fan_out)",
    "conv.bias": "zeros",
    "linear.weight": "xavier_uniform: U(-a, a), a = sqrt(6/(fan_in+fan_out))",
    "linear.bias": "zeros",
}


@dataclass(frozen=True)
class ConvStage:
    """One convolution stage: conv (stride 1, no padding), activation, max pool."""

    out_channels: int
    kernel: int = 5
    pool: int = 2


@dataclass(frozen=True)
class LayerInfo:
    """A layer of the network as the spec names it, with its output shape."""

    name: str
    kind: str  # conv, activation, pool, flatten, linear
    shape: tuple[int, ...]


_DTYPE_NOT_GIVEN: Any = object()
"""check_input's default: tells the one-argument call of plugin API 1 from ``dtype=None``."""


@dataclass(frozen=True)
class NetSpec:
    """The network every backend implements. The defaults are exactly the seed's network."""

    in_channels: int = 3
    height: int = 40
    width: int = 40
    conv_stages: tuple[ConvStage, ...] = field(default=(ConvStage(6, 5, 2), ConvStage(16, 5, 2)))
    hidden: tuple[int, ...] = (120, 84)
    num_classes: int = 10
    activation: str = "relu"

    def __post_init__(self) -> None:
        _require_positive_int("in_channels", self.in_channels)
        _require_positive_int("height", self.height)
        _require_positive_int("width", self.width)
        _require_positive_int("num_classes", self.num_classes)
        if self.activation not in ACTIVATIONS:
            raise SpecError(f"activation {self.activation!r} is not supported; use one of {', '.join(ACTIVATIONS)}")
        if not self.conv_stages:
            raise SpecError("conv_stages is empty; give at least one ConvStage")
        for i, stage in enumerate(self.conv_stages, 1):
            _require_positive_int(f"conv{i} out_channels", stage.out_channels)
            _require_positive_int(f"conv{i} kernel", stage.kernel)
            _require_positive_int(f"conv{i} pool", stage.pool)
        for i, width in enumerate(self.hidden, 1):
            _require_positive_int(f"hidden width {i}", width)
        h, w = self.height, self.width
        for i, stage in enumerate(self.conv_stages, 1):
            h, w = h - stage.kernel + 1, w - stage.kernel + 1
            if h < stage.pool or w < stage.pool:
                raise SpecError(
                    f"a {self.height}x{self.width} image is too small: conv{i} (kernel {stage.kernel})"
                    f" leaves {max(h, 0)}x{max(w, 0)}, smaller than its {stage.pool}x{stage.pool} pool;"
                    f" use at least {self.minimum_image_size()}x{self.minimum_image_size()} inputs"
                )
            h, w = h // stage.pool, w // stage.pool

    # -- derived facts -------------------------------------------------------------------

    def minimum_image_size(self) -> int:
        """The smallest square input the conv/pool stack accepts."""
        size = 1
        for stage in reversed(self.conv_stages):
            size = size * stage.pool + stage.kernel - 1
        return size

    @property
    def conv_names(self) -> tuple[str, ...]:
        return tuple(f"conv{i}" for i in range(1, len(self.conv_stages) + 1))

    @property
    def linear_names(self) -> tuple[str, ...]:
        return tuple(f"fc{i}" for i in range(1, len(self.hidden) + 2))

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) after the last pool."""
        c, h, w = self.in_channels, self.height, self.width
        for stage in self.conv_stages:
            c, h, w = stage.out_channels, (h - stage.kernel + 1) // stage.pool, (w - stage.kernel + 1) // stage.pool
        return c, h, w

    @property
    def flatten_width(self) -> int:
        """784 for the seed's 3x40x40 network, 400 for 32x32 inputs."""
        return math.prod(self.feature_shape)

    @property
    def linear_widths(self) -> tuple[tuple[int, int], ...]:
        """(in_features, out_features) of each linear layer, in order."""
        widths = (self.flatten_width, *self.hidden, self.num_classes)
        return tuple(zip(widths[:-1], widths[1:]))

    def layers(self, batch: int = 1) -> tuple[LayerInfo, ...]:
        """Every layer's name, kind and output shape for a batch, in forward order.

        These names key a backend's intermediates: ``conv1``, ``conv1.act``, ``conv1.pool``,
        ..., ``flatten``, ``fc1``, ``fc1.act``, ..., and the logits under the last ``fcN``.
        """
        _require_positive_int("batch", batch)
        out: list[LayerInfo] = []
        c, h, w = self.in_channels, self.height, self.width
        for name, stage in zip(self.conv_names, self.conv_stages):
            c, h, w = stage.out_channels, h - stage.kernel + 1, w - stage.kernel + 1
            out.append(LayerInfo(name, "conv", (batch, c, h, w)))
            out.append(LayerInfo(f"{name}.act", "activation", (batch, c, h, w)))
            h, w = h // stage.pool, w // stage.pool
            out.append(LayerInfo(f"{name}.pool", "pool", (batch, c, h, w)))
        out.append(LayerInfo("flatten", "flatten", (batch, c * h * w)))
        names = self.linear_names
        for name, (_, width) in zip(names, self.linear_widths):
            out.append(LayerInfo(name, "linear", (batch, width)))
            if name != names[-1]:
                out.append(LayerInfo(f"{name}.act", "activation", (batch, width)))
        return tuple(out)

    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers())

    def output_shape(self, batch: int) -> tuple[int, int]:
        return (batch, self.num_classes)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical parameter names and shapes: conv weights OIHW, linear weights (out, in)."""
        shapes: dict[str, tuple[int, ...]] = {}
        c = self.in_channels
        for name, stage in zip(self.conv_names, self.conv_stages):
            shapes[f"{name}.weight"] = (stage.out_channels, c, stage.kernel, stage.kernel)
            shapes[f"{name}.bias"] = (stage.out_channels,)
            c = stage.out_channels
        for name, (fan_in, fan_out) in zip(self.linear_names, self.linear_widths):
            shapes[f"{name}.weight"] = (fan_out, fan_in)
            shapes[f"{name}.bias"] = (fan_out,)
        return shapes

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(shape) for shape in self.parameter_shapes().values())

    def flops(self, batch: int = 1) -> int:
        """FLOPs of one forward pass: 2 per multiply-add of the convs and linears.

        Bias adds, activations and pooling are not counted; they are under 1% of the total
        for the seed's network.
        """
        total = 0
        shapes = self.parameter_shapes()
        for layer in self.layers(batch):
            if layer.kind == "conv":
                _, cin, kh, kw = shapes[f"{layer.name}.weight"]
                total += 2 * math.prod(layer.shape) * cin * kh * kw
            elif layer.kind == "linear":
                total += 2 * math.prod(shapes[f"{layer.name}.weight"]) * batch
        return total

    def fans(self, parameter: str) -> tuple[int, int]:
        """(fan_in, fan_out) of a weight, as torch.nn.init computes them."""
        shape = self.parameter_shapes()[parameter]
        receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
        return shape[1] * receptive, shape[0] * receptive

    # -- validation of data ---------------------------------------------------------------

    def check_input(self, x: Any, dtype: Any = _DTYPE_NOT_GIVEN) -> np.ndarray:
        """Return ``x`` if it is a floating (N, C, H, W) array that fits; raise SpecError if not.

        Nothing is broadcast or cast: a wrong shape or dtype is an error, not a guess. Given
        the call's ``dtype`` (a precision name), ``x`` must be stored in that precision's
        dtype: a float64 input to a float32 call is rejected, not rounded. ``dtype=None``
        accepts any floating dtype (the oracle does). Leaving ``dtype`` out is the form of
        plugin API 1, deprecated: it would accept a float64 array in a float32 call.
        """
        if dtype is _DTYPE_NOT_GIVEN:
            warnings.warn(
                f"spec.check_input(x) without the call's dtype: {CONTRACT_CHANGES['check-input-dtype']}",
                DeprecationWarning,
                stacklevel=2,
            )
            dtype = None
        if not isinstance(x, np.ndarray):
            raise SpecError(f"input must be a numpy.ndarray, got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise SpecError(f"input dtype {x.dtype} is not floating point; convert it with x.astype(np.float32)")
        if dtype is not None:
            stored = storage_dtype(dtype)
            if x.dtype != np.dtype(stored):
                raise SpecError(
                    f"input dtype {x.dtype} does not match the call's dtype={dtype!r}, whose arrays are {stored};"
                    f" convert it with x.astype(np.{stored}) (nothing is cast silently)"
                )
        if x.ndim != 4:
            raise SpecError(
                f"input has rank {x.ndim} with shape {x.shape}; expected rank 4 (N, C, H, W)"
                f" = (batch, {self.in_channels}, {self.height}, {self.width})"
            )
        n, c, h, w = x.shape
        if n < 1:
            raise SpecError("input batch is empty; give at least one image")
        if c != self.in_channels:
            raise SpecError(
                f"input has {c} channels but the spec has in_channels={self.in_channels};"
                " change the input or build NetSpec(in_channels=...)"
            )
        if (h, w) != (self.height, self.width):
            raise SpecError(
                f"input images are {h}x{w} but the spec expects {self.height}x{self.width};"
                " resize the input or build NetSpec(height=..., width=...)"
            )
        return x

    def check_target(self, loss: str, target: Any, batch: int) -> np.ndarray:
        """Validate a loss target: float (N, classes) for sse, integer labels (N,) for cross_entropy."""
        if loss not in LOSSES:
            raise SpecError(f"loss {loss!r} is not supported; use one of {', '.join(LOSSES)}")
        if not isinstance(target, np.ndarray):
            raise SpecError(f"target must be a numpy.ndarray, got {type(target).__name__}")
        if loss == "sse":
            if target.dtype.kind != "f" or target.shape != (batch, self.num_classes):
                raise SpecError(
                    f"sse target must be a float array of shape {(batch, self.num_classes)},"
                    f" got {target.dtype} {target.shape}"
                )
        else:
            if target.dtype.kind not in "iu" or target.shape != (batch,):
                raise SpecError(
                    f"cross_entropy target must be integer labels of shape ({batch},),"
                    f" got {target.dtype} {target.shape}"
                )
            if target.size and (target.min() < 0 or target.max() >= self.num_classes):
                raise SpecError(f"cross_entropy labels must lie in [0, {self.num_classes})")
        return target

    def check_parameters(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check canonical parameters: exactly the spec's names, with the spec's shapes."""
        expected = self.parameter_shapes()
        missing = sorted(set(expected) - set(params))
        extra = sorted(set(params) - set(expected))
        if missing or extra:
            raise SpecError(f"parameters do not match the spec: missing {missing}, unexpected {extra}")
        for name, shape in expected.items():
            if tuple(np.shape(params[name])) != shape:
                raise SpecError(f"parameter {name} has shape {np.shape(params[name])}, expected {shape}")
        return params

    def describe(self) -> str:
        stages = ", ".join(f"conv{s.out_channels}k{s.kernel}p{s.pool}" for s in self.conv_stages)
        return (
            f"{self.in_channels}x{self.height}x{self.width} -> {stages} -> "
            f"{'-'.join(map(str, self.hidden))} -> {self.num_classes} ({self.activation})"
        )


def check_dtype(dtype: Any) -> str:
    """Normalise a dtype to its name; raise SpecError for anything but float32/float64."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise SpecError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    return name


def _require_positive_int(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpecError(f"{what} must be a positive integer, got {value!r}")


SEED_SPEC = NetSpec()
