"""``numpy``: the seed's network written by hand in NumPy (no torch), CPU only.

Layout and dtype policy: see :mod:`backends.numpy_kernels`. In short, computation stays in the
requested dtype; conv stages run as banded GEMMs over window-major patch matrices and hand
channels-last activations on; canonical parameters (OIHW convs, (out, in) linears) are
converted to that internal form once, by :meth:`NumpyBackend.prepare`, and back by
:meth:`PreparedNumpyNet.parameters`.

The contract's operations are thin wrappers around a :class:`PreparedNumpyNet`, which keeps
its parameters and buffers between calls: benchmarks use it directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.numpy_kernels import (
    ConvPoolKernel,
    activate_,
    activation,
    activation_grad,
    check_loss_args,
    loss_and_grad,
    scale_by_activation_grad_,
)
from harness import Availability, Capability, NetSpec, SpecError, hookimpl
from harness.net.spec import check_dtype

Array = np.ndarray


class PreparedNumpyNet:
    """The network for one spec, dtype and parameter set, ready to run repeatedly.

    It owns copies of the parameters (``train_step`` updates them in place) and buffers
    sized for the last batch size seen. Arrays it returns are fresh, never its buffers.
    """

    def __init__(
        self, spec: NetSpec, params: dict[str, Array], dtype: str, *, blocks: tuple[int | None, ...] = ()
    ) -> None:
        """``blocks``: pooled columns per band for each conv stage (see ``ConvPoolKernel``);
        missing or None entries are chosen by the kernel's cost model."""
        spec.check_parameters(params)
        self.spec = spec
        self.dtype = np.dtype(check_dtype(dtype))
        self._convs: list[ConvPoolKernel] = []
        self._conv_params: list[tuple[Array, Array]] = []  # (OIHW weight, bias), owned copies
        c, h, w = spec.in_channels, spec.height, spec.width
        for i, (name, stage) in enumerate(zip(spec.conv_names, spec.conv_stages)):
            kernel = ConvPoolKernel(
                in_channels=c,
                height=h,
                width=w,
                out_channels=stage.out_channels,
                kernel=stage.kernel,
                pool=stage.pool,
                activation=spec.activation,
                channels_last_input=i > 0,
                dtype=self.dtype,
                block=blocks[i] if i < len(blocks) else None,
            )
            weight, bias = self._own(params[f"{name}.weight"]), self._own(params[f"{name}.bias"])
            kernel.set_parameters(weight, bias)
            self._convs.append(kernel)
            self._conv_params.append((weight, bias))
            c, h, w = stage.out_channels, kernel.hp, kernel.wp
        # The flattened features arrive in (H, W, C) order; fc1 is stored with its input rows
        # permuted to match, and every linear weight transposed to (in, out).
        self._flatten_order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        self._linears: list[tuple[Array, Array]] = []
        for i, name in enumerate(spec.linear_names):
            weight_t = np.asarray(params[f"{name}.weight"]).T
            if i == 0:
                weight_t = weight_t[self._flatten_order]
            self._linears.append((self._own(weight_t), self._own(params[f"{name}.bias"])))

    def _own(self, array: Any) -> Array:
        return np.array(array, dtype=self.dtype, order="C", copy=True)

    # -- parameters -------------------------------------------------------------------------

    def parameters(self) -> dict[str, Array]:
        """The current parameters, canonical names and layouts (fresh copies)."""
        out: dict[str, Array] = {}
        for name, (weight, bias) in zip(self.spec.conv_names, self._conv_params):
            out[f"{name}.weight"], out[f"{name}.bias"] = weight.copy(), bias.copy()
        for name, grads in zip(self.spec.linear_names, self._canonical_linear(self._linears)):
            out[f"{name}.weight"], out[f"{name}.bias"] = grads
        return out

    def _canonical_linear(self, pairs: list[tuple[Array, Array]]) -> list[tuple[Array, Array]]:
        out = []
        for i, (weight_t, bias) in enumerate(pairs):
            weight = np.empty(weight_t.shape[::-1], self.dtype)
            if i == 0:
                weight[:, self._flatten_order] = weight_t.T
            else:
                weight[...] = weight_t.T
            out.append((weight, bias.copy()))
        return out

    # -- forward ----------------------------------------------------------------------------

    def _input(self, x: Any) -> Array:
        self.spec.check_input(x, self.dtype.name)  # a float64 input to a float32 net is an error, not cast
        return x  # the first conv stage reads any strides, and never writes

    def _features(self, x: Array, layers: dict[str, Array] | None = None) -> Array:
        """Run the conv stages; return the flattened (H, W, C)-ordered features (a buffer).

        With ``layers``, every conv stage's layers and the flatten are recorded (canonical order).
        """
        h = x
        for name, kernel in zip(self.spec.conv_names, self._convs):
            h = kernel.forward(h, layers, name).transpose(0, 3, 1, 2)  # a logical NCHW view of NHWC
        features = h.transpose(0, 2, 3, 1).reshape(len(x), -1)
        if layers is not None:
            canonical = np.empty_like(features)
            canonical[:, self._flatten_order] = features  # (H, W, C) back to NCHW's (C, H, W)
            layers["flatten"] = canonical
        return features

    def _linear_layers(self, features: Array, layers: dict[str, Array] | None = None) -> list[Array]:
        """The linear layers' inputs and outputs: [features, fc1.act, ..., logits] (recorded in ``layers``)."""
        acts = [features]
        last = len(self._linears) - 1
        for i, (name, (weight_t, bias)) in enumerate(zip(self.spec.linear_names, self._linears)):
            h = np.matmul(acts[-1], weight_t)  # y = x W^T + b, with W^T stored
            h += bias
            if layers is not None:
                layers[name] = h.copy()
            if i != last:  # no activation on the logits
                activate_(self.spec.activation, h)
                if layers is not None:
                    layers[f"{name}.act"] = h.copy()
            acts.append(h)
        return acts

    def forward(self, x: Any) -> Array:
        """Logits (N, classes) in the net's dtype."""
        return self._linear_layers(self._features(self._input(x)))[-1]

    def intermediates(self, x: Any) -> dict[str, Array]:
        """Every layer's output, NCHW and canonical names in forward order, recorded as ``forward`` runs."""
        layers: dict[str, Array] = {}
        self._linear_layers(self._features(self._input(x), layers), layers)
        return {name: layers[name] for name in self.spec.layer_names()}

    # -- backward and training -----------------------------------------------------------------

    def _gradients(
        self, x: Any, target: Any, loss: str, *, input_grad: bool, need_value: bool
    ) -> tuple[float, list[tuple[Array, Array]], list[tuple[Array, Array]], Array | None]:
        """Loss and gradients in internal layout: (loss, conv grads, linear grads, d input)."""
        x = self._input(x)
        self.spec.check_target(loss, target, x.shape[0])
        acts = self._linear_layers(self._features(x))
        value, grad = loss_and_grad(loss, acts[-1], target, need_value=need_value)
        linear_grads: list[tuple[Array, Array]] = []
        for i in reversed(range(len(self._linears))):
            linear_grads.insert(0, (np.matmul(acts[i].T, grad), grad.sum(axis=0)))
            grad = np.matmul(grad, self._linears[i][0].T)
            if i > 0:  # the conv stage's backward applies its own activation's derivative
                scale_by_activation_grad_(self.spec.activation, grad, acts[i])
        conv_grads: list[tuple[Array, Array]] = []
        grad_x: Array | None = None
        for i in reversed(range(len(self._convs))):
            grad_in: Array | None = None
            if i > 0:
                grad_in = self._convs[i - 1].grad_output_buffer(len(x))  # NHWC
                target_view: Array | None = grad_in.transpose(0, 3, 1, 2)
            elif input_grad:
                grad_in = grad_x = target_view = np.empty(x.shape, self.dtype)
            else:
                target_view = None
            conv_grads.insert(0, self._convs[i].backward(grad, target_view))
            if grad_in is not None:
                grad = grad_in
        return value, conv_grads, linear_grads, grad_x

    def gradients(self, x: Any, target: Any, *, loss: str) -> tuple[float, dict[str, Array]]:
        """The loss and d loss / d every canonical parameter and ``"input"``."""
        value, conv_grads, linear_grads, grad_x = self._gradients(x, target, loss, input_grad=True, need_value=True)
        grads: dict[str, Array] = {}
        for name, (weight, bias) in zip(self.spec.conv_names, conv_grads):
            grads[f"{name}.weight"], grads[f"{name}.bias"] = weight, bias
        for name, pair in zip(self.spec.linear_names, self._canonical_linear(linear_grads)):
            grads[f"{name}.weight"], grads[f"{name}.bias"] = pair
        assert grad_x is not None
        grads["input"] = grad_x
        return value, grads

    def train_step(self, x: Any, target: Any, *, loss: str, lr: float) -> None:
        """One SGD step, p <- p - lr * dL/dp, on the net's own parameters."""
        _, conv_grads, linear_grads, _ = self._gradients(x, target, loss, input_grad=False, need_value=False)
        for kernel, params, grads in zip(self._convs, self._conv_params, conv_grads):
            for p, g in zip(params, grads):
                g *= lr
                p -= g
            kernel.set_parameters(*params)
        for params, grads in zip(self._linears, linear_grads):
            for p, g in zip(params, grads):
                g *= lr
                p -= g


class NumpyBackend:
    """The network by hand in NumPy: an implementation independent of torch."""

    name = "numpy"
    capabilities = frozenset(Capability)
    devices = ("cpu",)
    dtypes = ("float32", "float64")

    def __init__(self) -> None:
        self.version = f"numpy {np.__version__}"

    def availability(self) -> Availability:
        return Availability.ok()

    def prepare(self, spec: NetSpec, params: dict[str, Array], *, device: str, dtype: str) -> PreparedNumpyNet:
        """A reusable net holding copies of ``params``: the fast path for repeated calls."""
        _check_device(device)
        return PreparedNumpyNet(spec, params, dtype)

    # -- forward ----------------------------------------------------------------------------

    def forward(self, spec: NetSpec, params: dict[str, Array], x: Array, *, device: str, dtype: str) -> Array:
        return self.prepare(spec, params, device=device, dtype=dtype).forward(x)

    def intermediates(
        self, spec: NetSpec, params: dict[str, Array], x: Array, *, device: str, dtype: str
    ) -> dict[str, Array]:
        return self.prepare(spec, params, device=device, dtype=dtype).intermediates(x)

    # -- backward and training ----------------------------------------------------------------

    def gradients(
        self,
        spec: NetSpec,
        params: dict[str, Array],
        x: Array,
        target: Array,
        *,
        loss: str,
        device: str,
        dtype: str,
    ) -> tuple[float, dict[str, Array]]:
        return self.prepare(spec, params, device=device, dtype=dtype).gradients(x, target, loss=loss)

    def train_step(
        self,
        spec: NetSpec,
        params: dict[str, Array],
        x: Array,
        target: Array,
        *,
        loss: str,
        lr: float,
        device: str,
        dtype: str,
    ) -> dict[str, Array]:
        net = self.prepare(spec, params, device=device, dtype=dtype)
        net.train_step(x, target, loss=loss, lr=lr)
        return net.parameters()

    # -- init, activations, losses ------------------------------------------------------------

    def init_params(self, spec: NetSpec, *, seed: int, dtype: str) -> dict[str, Array]:
        """Kaiming-normal (fan_out, relu gain) convs, Xavier-uniform linears, zero biases.

        Draws come from ``numpy.random.default_rng(seed)`` in float64, in parameter order, and
        are then cast: float32 and float64 parameters from one seed agree.
        """
        rng = np.random.default_rng(seed)
        dt = np.dtype(check_dtype(dtype))
        params: dict[str, Array] = {}
        for name, shape in spec.parameter_shapes().items():
            if name.endswith(".bias"):
                params[name] = np.zeros(shape, dt)
                continue
            fan_in, fan_out = spec.fans(name)
            if len(shape) == 4:  # N(0, 2 / fan_out)
                values = rng.normal(0.0, np.sqrt(2.0 / fan_out), shape)
            else:  # U(-a, a), a = sqrt(6 / (fan_in + fan_out))
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                values = rng.uniform(-bound, bound, shape)
            params[name] = values.astype(dt)
        return params

    def activation(self, name: str, x: Array) -> Array:
        return activation(name, x)

    def activation_grad(self, name: str, x: Array) -> Array:
        return activation_grad(name, x)

    def loss(self, name: str, logits: Array, target: Array) -> float:
        target = check_loss_args(name, logits, target)
        return loss_and_grad(name, logits, target)[0]


def _check_device(device: str) -> None:
    if device != "cpu":
        raise SpecError(f"the numpy backend runs on cpu only, not {device!r}; pass device='cpu'")


@hookimpl
def harness_backends() -> list[NumpyBackend]:
    return [NumpyBackend()]
