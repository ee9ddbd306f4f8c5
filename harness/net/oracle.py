"""An independent float64 reference for the Net spec: forward, losses, gradients, one SGD step.

Every backend is checked against this module, so it shares no code with any of them: it
imports only NumPy and :mod:`harness.net` (a contract in ``make lint`` keeps it so), and
writes the backward pass by hand, one layer at a time, with the chain rule (micrograd
style). It is written to be read, not to be fast: convolutions loop over the kernel offsets
and vectorise over batch and pixels.

Dtype policy (the one place it is decided): inputs, parameters and targets are cast to
float64 on entry, and every array returned is float64, whatever came in. A float32 input
is therefore computed, and answered, in float64. Nothing passed in is modified.

Data layout: NCHW activations, conv weights OIHW, linear weights (out, in), flatten in
(channel, row, column) order -- the canonical layout of :mod:`harness.contract.backend`.

Layer by layer (the conv is a cross-correlation, as in ``torch.nn.Conv2d``)::

    conv:    y[n,o,i,j] = b[o] + sum_{c,p,q} x[n,c,i+p,j+q] * w[o,c,p,q]   stride 1, no padding
    pool:    y[n,c,i,j] = max over the k x k window at (k*i, k*j)         floor mode
    linear:  y = x @ W.T + b

Losses are sums over the batch, never means::

    sse:            L = sum((logits - target)^2)                 dL/dlogits = 2 (logits - target)
    cross_entropy:  L = sum_n logsumexp(logits_n) - logits_n[y_n]  dL/dlogits = softmax - onehot(y)

Subgradient conventions, where the network is not differentiable:

- ReLU at 0: ``relu'(0) = 0`` (torch uses the same).
- Max-pool ties: when several elements of a pool window tie for the maximum, the whole
  gradient goes to the FIRST of them in row-major order within the window; the others get
  zero. torch 2.13's CPU ``max_pool2d`` does the same (checked in ``tests/test_oracle.py``).
  A window holding NaN pools to NaN, and its gradient goes to the first NaN (torch's CPU
  kernel picks the last NaN instead; results with NaN are not compared elementwise anyway).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from harness.errors import SpecError
from harness.net.spec import ACTIVATIONS, LOSSES, NetSpec

Array = np.ndarray

# -- activations -----------------------------------------------------------------------


def activation(name: str, x: Array) -> Array:
    """``name``(x) elementwise, in float64, for ``relu``, ``tanh`` and ``sigmoid``.

    The seed's formulas, rearranged so no exponential can overflow (no warnings for any
    ``x``, including +-inf); NaN stays NaN. float32 input is computed and returned as float64.
    """
    x = _as_float64(x)
    if name == "relu":
        return np.maximum(x, 0.0)  # max(0, x); np.maximum propagates NaN
    a = np.abs(x)
    if name == "sigmoid":
        # 1/(1+e^-x) = 1/(1+e^-|x|) for x >= 0, and e^-|x|/(1+e^-|x|) for x < 0; e^-|x| <= 1.
        e = np.exp(-a)
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if name == "tanh":
        # (e^x-e^-x)/(e^x+e^-x) = sign(x) (1-e^-2|x|)/(1+e^-2|x|); with m = e^-2|x| - 1 (expm1,
        # exact near 0) that is sign(x) (-m)/(2+m). copysign keeps tanh(-0) = -0.
        m = np.expm1(-2.0 * a)
        return np.copysign(-m / (2.0 + m), x)
    raise _unknown("activation", name, ACTIVATIONS)


def activation_grad(name: str, x: Array) -> Array:
    """The derivative of ``activation(name, .)`` at ``x``, elementwise, in float64.

    sigmoid' = s (1 - s), tanh' = 1 - t^2, relu' = 1 if x > 0 else 0 (relu'(0) = 0).
    NaN gives NaN for all three (torch's relu backward gives 1 there instead).
    """
    x = _as_float64(x)
    if name == "relu":
        return np.heaviside(x, 0.0)  # 0 below, 0 at 0, 1 above, NaN at NaN
    # Written with e = e^-k|x| <= 1, both derivatives are even in x and keep full relative
    # precision in the tails, where 1 - s and 1 - t^2 would cancel to a few digits or to 0.
    if name == "sigmoid":
        e = np.exp(-np.abs(x))
        return e / (1.0 + e) ** 2  # s (1 - s) = 1/(1+e) * e/(1+e)
    if name == "tanh":
        e = np.exp(-2.0 * np.abs(x))
        return 4.0 * e / (1.0 + e) ** 2  # 1 - t^2 = ((1+e)^2 - (1-e)^2) / (1+e)^2
    raise _unknown("activation", name, ACTIVATIONS)


EXACT_DIGITS = 40
"""Significant decimal digits of :func:`activation_exact`, beyond any cancellation it meets."""


class ExactActivation(NamedTuple):
    """An activation and its derivative at some x, each as float64 pairs: the exact value is hi + lo."""

    value: Array
    value_lo: Array
    derivative: Array
    derivative_lo: Array


def activation_exact(name: str, x: Array) -> ExactActivation:
    """``name``(x) and its derivative to ~40 significant digits, each as a float64 pair (hi, lo).

    ``hi`` is the exact value rounded to the nearest float64 and ``lo`` the rest, so an error
    far below one float64 ulp can be measured as ``(actual - hi) - lo``. Computed in Python's
    :mod:`decimal` (a correctly rounded ``exp`` in software arithmetic), so it is the same bits
    on every machine, whatever libm or SIMD kernels NumPy has there; the float64
    :func:`activation` is itself a few ulps off. Finite ``x`` only; slow (~0.1 ms a point).
    """
    import decimal

    x = _as_float64(x)
    if name not in ACTIVATIONS:
        raise _unknown("activation", name, ACTIVATIONS)
    out = [np.empty_like(x) for _ in range(4)]
    for i, v in enumerate(x.flat):
        if not np.isfinite(v):
            raise SpecError(f"activation_exact takes finite x, not {v!r}")
        # tanh(x) = (1 - e^-2|x|) / (1 + e^-2|x|) loses about -log10|x| digits to cancellation.
        lost = max(0, int(-np.log10(abs(v)))) if v else 0
        with decimal.localcontext(decimal.Context(prec=EXACT_DIGITS + lost + 5)):
            d = decimal.Decimal(float(v))
            if name == "relu":
                value, derivative = max(d, decimal.Decimal(0)), decimal.Decimal(int(d > 0))  # relu'(0) = 0
            elif name == "sigmoid":
                e = (-abs(d)).exp()  # e^-|x| <= 1: no overflow, no cancellation
                value, derivative = (1 / (1 + e) if d >= 0 else e / (1 + e)), e / (1 + e) ** 2  # s' = s (1 - s)
            else:
                e = (-2 * abs(d)).exp()
                value, derivative = (1 - e) / (1 + e), 4 * e / (1 + e) ** 2  # tanh' = 1 - t^2
                value = value if d >= 0 else -value
            for j, exact in enumerate((value, derivative)):
                hi = float(exact)
                out[2 * j].flat[i], out[2 * j + 1].flat[i] = hi, float(exact - decimal.Decimal(hi))
    if name == "tanh":
        out[0] = np.copysign(out[0], x)  # tanh(-0) = -0
    return ExactActivation(*out)


# -- losses ------------------------------------------------------------------------------


def loss(name: str, logits: Array, target: Array) -> float:
    """The summed loss: ``sse`` (float target (N, classes)) or ``cross_entropy`` (labels (N,))."""
    logits, target = _check_loss_args(name, logits, target)
    if name == "sse":
        return float(np.sum((logits - target) ** 2))
    # -log softmax(z)[y] = logsumexp(z) - z[y], with logsumexp(z) = m + log sum e^(z-m), m = max z
    return float(np.sum(_logsumexp(logits) - _pick(logits, target)))


def loss_grad(name: str, logits: Array, target: Array) -> Array:
    """d loss / d logits, float64 (N, classes)."""
    logits, target = _check_loss_args(name, logits, target)
    if name == "sse":
        return 2.0 * (logits - target)
    softmax = np.exp(logits - _logsumexp(logits)[:, None])
    softmax[np.arange(len(target)), target] -= 1.0
    return softmax


# -- the network -------------------------------------------------------------------------


def forward_layers(spec: NetSpec, params: dict[str, Array], x: Array) -> dict[str, Array]:
    """Every layer's float64 output, keyed by ``spec.layer_names()`` in forward order."""
    p, h = _check_network_args(spec, params, x)
    out: dict[str, Array] = {}
    for name, stage in zip(spec.conv_names, spec.conv_stages):
        out[name] = h = _conv(h, p[f"{name}.weight"], p[f"{name}.bias"])
        out[f"{name}.act"] = h = activation(spec.activation, h)
        out[f"{name}.pool"] = h = _max_pool(h, stage.pool)[0]
    out["flatten"] = h = h.reshape(len(h), -1)  # (C, H, W) order: NCHW is row-major
    last = spec.linear_names[-1]
    for name in spec.linear_names:
        out[name] = h = h @ p[f"{name}.weight"].T + p[f"{name}.bias"]
        if name != last:  # no activation on the logits
            out[f"{name}.act"] = h = activation(spec.activation, h)
    return out


def forward(spec: NetSpec, params: dict[str, Array], x: Array) -> Array:
    """The logits, float64 (N, classes)."""
    return forward_layers(spec, params, x)[spec.linear_names[-1]]


def gradients(
    spec: NetSpec, params: dict[str, Array], x: Array, target: Array, loss: str
) -> tuple[float, dict[str, Array]]:
    """The loss and d loss / d every parameter (same names and shapes) and ``"input"``."""
    p, x64 = _check_network_args(spec, params, x)
    spec.check_target(loss, target, len(x64))
    acts = forward_layers(spec, p, x64)
    names = spec.linear_names
    value = _loss_value(loss, acts[names[-1]], target)
    grads: dict[str, Array] = {}

    g = loss_grad(loss, acts[names[-1]], target)  # dL/dlogits
    for i in reversed(range(len(names))):
        name = names[i]
        if name != names[-1]:  # through the activation: dL/dz = dL/da * act'(z)
            g = g * activation_grad(spec.activation, acts[name])
        h_in = acts[f"{names[i - 1]}.act"] if i else acts["flatten"]
        w = p[f"{name}.weight"]
        # y = h W^T + b:  dW = g^T h,  db = sum_n g,  dh = g W
        grads[f"{name}.weight"] = g.T @ h_in
        grads[f"{name}.bias"] = g.sum(axis=0)
        g = g @ w

    for i in reversed(range(len(spec.conv_names))):
        name, stage = spec.conv_names[i], spec.conv_stages[i]
        if i == len(spec.conv_names) - 1:
            g = g.reshape(acts[f"{name}.pool"].shape)  # undo flatten
        g = _max_pool_backward(g, acts[f"{name}.act"], stage.pool)
        g = g * activation_grad(spec.activation, acts[name])
        h_in = acts[f"{spec.conv_names[i - 1]}.pool"] if i else x64
        grads[f"{name}.weight"], grads[f"{name}.bias"], g = _conv_backward(g, h_in, p[f"{name}.weight"])
    grads["input"] = g

    ordered = {k: grads[k] for k in spec.parameter_shapes()}
    ordered["input"] = grads["input"]
    return value, ordered


def sgd_step(
    spec: NetSpec, params: dict[str, Array], x: Array, target: Array, loss: str, lr: float
) -> dict[str, Array]:
    """One gradient-descent step, ``p - lr * dL/dp``, as new float64 arrays; ``params`` is untouched."""
    _, grads = gradients(spec, params, x, target, loss)
    return {k: _as_float64(v) - lr * grads[k] for k, v in spec.check_parameters(params).items()}


# -- layers ------------------------------------------------------------------------------


def _conv(x: Array, w: Array, b: Array) -> Array:
    """y[n,o,i,j] = b[o] + sum_{p,q} sum_c x[n,c,i+p,j+q] w[o,c,p,q]: one contraction over c per offset (p, q)."""
    n, _, height, width = x.shape
    out_ch, _, k, _ = w.shape
    ho, wo = height - k + 1, width - k + 1
    y = np.zeros((n, out_ch, ho, wo))
    for p in range(k):
        for q in range(k):
            window = x[:, :, p : p + ho, q : q + wo]  # (N, C, Ho, Wo)
            y += np.einsum("nchw,oc->nohw", window, w[:, :, p, q])
    return y + b[None, :, None, None]


def _conv_backward(g: Array, x: Array, w: Array) -> tuple[Array, Array, Array]:
    """(dW, db, dx) of :func:`_conv` given g = dL/dy.

    dW[o,c,p,q] = sum_{n,i,j} g[n,o,i,j] x[n,c,i+p,j+q];  db[o] = sum_{n,i,j} g[n,o,i,j];
    dx[n,c,i+p,j+q] += sum_o g[n,o,i,j] w[o,c,p,q].
    """
    k = w.shape[2]
    ho, wo = g.shape[2:]
    dw = np.zeros_like(w)
    dx = np.zeros_like(x)
    for p in range(k):
        for q in range(k):
            window = x[:, :, p : p + ho, q : q + wo]
            dw[:, :, p, q] = np.einsum("nohw,nchw->oc", g, window)
            dx[:, :, p : p + ho, q : q + wo] += np.einsum("nohw,oc->nchw", g, w[:, :, p, q])
    return dw, g.sum(axis=(0, 2, 3)), dx


def _pool_windows(x: Array, k: int) -> Array:
    """(N, C, Ho, Wo, k*k): each k x k window flattened row-major; floor mode drops the ragged edge."""
    n, c, height, width = x.shape
    ho, wo = height // k, width // k
    blocks = x[:, :, : ho * k, : wo * k].reshape(n, c, ho, k, wo, k)
    return blocks.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, k * k)


def _max_pool(x: Array, k: int) -> tuple[Array, Array]:
    """(pooled, index of the max within each window). np.argmax takes the FIRST max (or first NaN)."""
    windows = _pool_windows(x, k)
    first = np.argmax(windows, axis=-1)
    return np.take_along_axis(windows, first[..., None], axis=-1)[..., 0], first


def _max_pool_backward(g: Array, x: Array, k: int) -> Array:
    """dL/dx of :func:`_max_pool`: each window's gradient goes to its first max, the rest get 0."""
    first = _max_pool(x, k)[1]
    n, c, ho, wo = g.shape
    routed = np.zeros((n, c, ho, wo, k * k))
    np.put_along_axis(routed, first[..., None], g[..., None], axis=-1)
    dx = np.zeros_like(x)
    dx[:, :, : ho * k, : wo * k] = (
        routed.reshape(n, c, ho, wo, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho * k, wo * k)
    )
    return dx


# -- helpers -----------------------------------------------------------------------------


def _as_float64(x: Array) -> Array:
    return np.asarray(x, dtype=np.float64)


def _logsumexp(z: Array) -> Array:
    m = z.max(axis=1)
    return m + np.log(np.sum(np.exp(z - m[:, None]), axis=1))


def _pick(logits: Array, labels: Array) -> Array:
    return logits[np.arange(len(labels)), labels]


def _loss_value(name: str, logits: Array, target: Array) -> float:
    """:func:`loss`, reachable from :func:`gradients`, whose ``loss`` argument shadows it."""
    return loss(name, logits, target)


def _check_network_args(spec: NetSpec, params: dict[str, Array], x: Array) -> tuple[dict[str, Array], Array]:
    spec.check_parameters(params)
    x = spec.check_input(x, None)  # the oracle takes any floating dtype and computes in float64
    return {k: _as_float64(v) for k, v in params.items()}, _as_float64(x)


def _check_loss_args(name: str, logits: Array, target: Array) -> tuple[Array, Array]:
    if name not in LOSSES:
        raise _unknown("loss", name, LOSSES)
    logits = _as_float64(logits)
    if logits.ndim != 2:
        raise SpecError(f"logits must have shape (N, classes), got {logits.shape}")
    n, classes = logits.shape
    target = np.asarray(target)
    if name == "sse":
        if target.dtype.kind != "f" or target.shape != logits.shape:
            raise SpecError(f"sse target must be float with shape {logits.shape}, got {target.dtype} {target.shape}")
        return logits, target.astype(np.float64)
    if target.dtype.kind not in "iu" or target.shape != (n,):
        raise SpecError(f"cross_entropy target must be integer labels, shape ({n},), got {target.dtype} {target.shape}")
    if n and (target.min() < 0 or target.max() >= classes):
        raise SpecError(f"cross_entropy labels must lie in [0, {classes})")
    return logits, target


def _unknown(what: str, name: str, choices: tuple[str, ...]) -> SpecError:
    return SpecError(f"{what} {name!r} is not supported; use one of {', '.join(choices)}")
