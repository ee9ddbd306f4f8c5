"""The NumPy kernels behind the ``numpy`` backend: activations, losses and the conv stage.

Data layout and dtype policy (the one place it is decided):

- Everything is computed in the requested dtype; float32 stays float32 end to end.
- The network's input arrives NCHW and is read in place. Every conv stage writes its pooled,
  activated output channels-last (NHWC), which is what the next stage reads fastest and what
  the first linear layer reads as its flattened input (so fc1's weight is stored with its input
  rows permuted from (C, H, W) to (H, W, C) order, once).
- A conv stage is one GEMM against a *banded* weight matrix. An output row segment of ``J``
  columns is a band of the ``J + k - 1`` input columns above it, so the im2col copy moves runs
  of ``J + k - 1`` contiguous values (times C, channels-last) instead of runs of ``k`` (``k*C``).
  conv1 has only 3 input channels: plain im2col there spends its time copying short runs, and
  its 6-column GEMM runs far below BLAS speed. ``J`` trades copy work for GEMM work (the band
  multiplies the flops by ``(J + k - 1) / k``) and is chosen per stage by :func:`choose_block`.
- GEMM rows are ordered window-major, ``(di, n, ip, b)``, and GEMM columns ``(dj, jp, o)``, so
  each of the p*p positions of a pooling window is one strided block of the output: max
  pooling is p*p - 1 ``np.maximum`` calls, and its backward writes each block once.
- Only the conv outputs that a pooling window reads are computed (floor mode drops the rest),
  which is all the loss depends on. ``intermediates`` records every layer from these same
  kernels as they run (``ConvPoolKernel.forward(x, layers)``); the ragged edge a pool drops
  comes from a twin kernel with a 1x1 pool, so every layer has its full shape.
- Biases ride in the GEMM: the patch matrix has a constant column of ones and the banded
  matrix a bias row, so the weight-gradient GEMM yields the bias gradient too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from harness.errors import SpecError
from harness.net.spec import ACTIVATIONS, LOSSES, NetSpec

Array = np.ndarray

# -- activations -------------------------------------------------------------------------


def _float_array(x: Any) -> Array:
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise SpecError(f"activation {name!r} is not supported; use one of {', '.join(ACTIVATIONS)}")


def activation(name: str, x: Any) -> Array:
    """``name``(x) elementwise in x's dtype; no warnings for any x (+-inf included), NaN stays NaN."""
    _check_activation(name)
    x = _float_array(x)
    if name == "relu":
        return np.maximum(x, 0)  # np.maximum propagates NaN
    if name == "tanh":
        return np.tanh(x)
    # sigmoid: 1/(1+e) for x >= 0 and e/(1+e) for x < 0, with e = e^-|x| <= 1 (cannot overflow;
    # it underflows to 0 for |x| >~ 88 in float32, which is the right answer).
    # One rounding after the exp each way (e/(1+e), not e * (1/(1+e))) keeps it monotonic.
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
        d = 1 + e
        return np.where(x >= 0, 1 / d, e / d)


def activation_grad(name: str, x: Any) -> Array:
    """The derivative of ``activation(name, .)`` at x, in x's dtype; relu'(0) = 0, NaN gives NaN.

    sigmoid' = e/(1+e)^2 and tanh' = 4e^2/(1+e^2)^2 with e = e^-|x|: even in x and accurate in
    the tails, where s(1-s) and 1-t^2 cancel to 0.
    """
    _check_activation(name)
    x = _float_array(x)
    if name == "relu":
        out = (x > 0).astype(x.dtype)
        np.copyto(out, x, where=np.isnan(x))
        return out
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
        if name == "sigmoid":
            return e / (1 + e) ** 2
        e2 = e * e
        return 4 * e2 / (1 + e2) ** 2


def activate_(name: str, z: Array) -> None:
    """Apply the activation to ``z`` in place (the network's hot path)."""
    if name == "relu":
        np.maximum(z, 0, out=z)
    elif name == "tanh":
        np.tanh(z, out=z)
    else:
        np.copyto(z, activation("sigmoid", z))


def scale_by_activation_grad_(name: str, grad: Array, y: Array) -> None:
    """grad *= act'(z), from the activation's output y = act(z), in place (as torch's backward)."""
    if name == "relu":
        grad *= y > 0  # relu'(z) = 1 iff y > 0
    elif name == "tanh":
        grad *= 1 - y * y
    else:
        grad *= y * (1 - y)


# -- losses (sums over the batch) ---------------------------------------------------------


def check_loss_args(name: str, logits: Array, target: Any) -> Array:
    """Validate a loss target against logits (N, classes); return it ready to use."""
    if name not in LOSSES:
        raise SpecError(f"loss {name!r} is not supported; use one of {', '.join(LOSSES)}")
    if not isinstance(logits, np.ndarray) or logits.ndim != 2 or logits.dtype.kind != "f":
        raise SpecError("logits must be a float array of shape (N, classes)")
    return NetSpec(num_classes=logits.shape[1]).check_target(name, target, logits.shape[0])


def loss_and_grad(name: str, logits: Array, target: Array, *, need_value: bool = True) -> tuple[float, Array]:
    """The summed loss and d loss / d logits, in the logits' dtype."""
    if name == "sse":
        diff = logits - target.astype(logits.dtype, copy=False)  # L = sum (z - t)^2
        value = float(np.vdot(diff, diff)) if need_value else math.nan
        diff *= 2  # dL/dz = 2 (z - t)
        return value, diff
    # L = sum_i logsumexp(z_i) - z_i[y_i];  dL/dz = softmax(z) - onehot(y)
    shifted = logits - logits.max(axis=1, keepdims=True)
    rows = np.arange(len(target))
    with np.errstate(under="ignore"):
        exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    value = float(np.sum(np.log(total[:, 0]) - shifted[rows, target])) if need_value else math.nan
    exp /= total
    exp[rows, target] -= 1
    return value, exp


# -- the conv stage ----------------------------------------------------------------------

# Cost model for choosing the band width: seconds per GEMM flop (at ~150 GFLOP/s) and per
# contiguous run copied into the patch matrix. GEMMs with few columns run slower; below
# _FULL_SPEED_COLUMNS the flop cost is scaled up accordingly. Measured on a 2-core AVX-512 VM.
_SECONDS_PER_FLOP = 1 / 150e9
_SECONDS_PER_RUN = 5e-9
_FULL_SPEED_COLUMNS = 48


def choose_block(
    channels: int, out_channels: int, kernel: int, pool: int, pooled_width: int, channels_last: bool
) -> int:
    """The pooled columns per band (a divisor of ``pooled_width``) that minimise the cost model.

    Costs are per output row of pooling windows; only their ratios matter.
    """
    best, best_cost = 1, math.inf
    for pooled_per_band in range(1, pooled_width + 1):
        if pooled_width % pooled_per_band:
            continue
        band = pool * pooled_per_band
        bands = pooled_width // pooled_per_band
        columns = band * out_channels
        flops = 2 * bands * (channels * kernel * (band + kernel - 1) + 1) * columns
        runs = bands * kernel * (1 if channels_last else channels)  # contiguous runs copied
        cost = flops * _SECONDS_PER_FLOP * max(1.0, _FULL_SPEED_COLUMNS / columns) + runs * _SECONDS_PER_RUN
        if cost < best_cost:
            best, best_cost = pooled_per_band, cost
    return best


def _view(a: Array, shape: tuple[int, ...]) -> Array:
    """Reshape that must not copy (the result is written through)."""
    return np.reshape(a, shape, copy=False)


class ConvPoolKernel:
    """conv (stride 1, no padding) + bias + activation + max pool, with preallocated buffers.

    ``forward`` reads a logical NCHW array (any strides: the first stage gets the caller's
    NCHW input, later stages an NHWC buffer seen through a transpose) and returns the stage's
    output as an NHWC buffer that the next call overwrites.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        height: int,
        width: int,
        out_channels: int,
        kernel: int,
        pool: int,
        activation: str,
        channels_last_input: bool,
        dtype: np.dtype[Any],
        block: int | None = None,
    ) -> None:
        c, k, p, o = in_channels, kernel, pool, out_channels
        self.in_shape = (c, height, width)
        self.out_channels, self.kernel, self.pool, self.activation = o, k, p, activation
        self.dtype = dtype
        self.channels_last_input = channels_last_input
        self.hp, self.wp = (height - k + 1) // p, (width - k + 1) // p
        self.j2 = block or choose_block(c, o, k, p, self.wp, channels_last_input)
        self.band = p * self.j2  # output columns per band: J
        self.bands = self.wp // self.j2  # bands per output row
        self.win = self.band + k - 1  # input columns per band
        # Patch-matrix columns follow the input's memory order, so the copy moves long runs.
        self.k_axes = ("h", "w", "c") if channels_last_input else ("c", "h", "w")
        sizes = {"c": c, "h": k, "w": self.win}
        self.k_shape = tuple(sizes[a] for a in self.k_axes)
        self.k_size = math.prod(self.k_shape)
        self.columns = self.band * o
        # band_pos[o, c, kh, kw, dj, jp]: where weight[o, c, kh, kw] sits in the banded matrix
        # for output column j = p*jp + dj of a band, which reads input column w = j + kw.
        oo, cc, hh, kk, dj, jp = np.ix_(*(np.arange(n) for n in (o, c, k, k, p, self.j2)))
        index = {"c": cc, "h": hh, "w": p * jp + dj + kk}
        row = (index[self.k_axes[0]] * self.k_shape[1] + index[self.k_axes[1]]) * self.k_shape[2]
        row = row + index[self.k_axes[2]]
        self.band_pos = row * self.columns + (dj * self.j2 + jp) * o + oo
        self.banded = np.zeros((self.k_size + 1, self.columns), dtype)
        self._batch = 0
        self._buffers: dict[str, Array] = {}
        self._parameters: tuple[Array, Array] | None = None

    # -- parameters ------------------------------------------------------------------------

    def set_parameters(self, weight: Array, bias: Array) -> None:
        """Write OIHW ``weight`` and ``bias`` into the banded matrix (its zeros stay zero)."""
        flat = self.banded.reshape(-1)
        flat[self.band_pos] = weight[..., None, None]
        self.banded[self.k_size] = np.tile(bias, self.band)
        self._parameters = (weight, bias)  # for the twin that computes a pool's ragged edge

    def parameter_gradients(self, banded_grad: Array) -> tuple[Array, Array]:
        """Fold the banded matrix's gradient back onto OIHW weight and bias gradients."""
        weight = banded_grad.reshape(-1)[self.band_pos].sum(axis=(4, 5))
        bias = banded_grad[self.k_size].reshape(self.band, self.out_channels).sum(axis=0)
        return weight, bias

    # -- buffers ---------------------------------------------------------------------------

    def _allocate(self, n: int) -> None:
        if n == self._batch:
            return
        p, o, dt = self.pool, self.out_channels, self.dtype
        rows = (p, n, self.hp, self.bands)
        blocks = (*rows, p, self.j2, o)  # conv output, window-major: (di, n, ip, b, dj, jp, o)
        pooled = (n, self.hp, self.bands, self.j2, o)  # == NHWC (n, hp, wp, o)
        patches = np.empty((*rows, self.k_size + 1), dt)
        patches[..., -1] = 1  # the bias column
        self._buffers = {
            "patches": patches,
            "conv": np.empty(blocks, dt),
            "pooled": np.empty(pooled, dt),
            "out": np.empty(pooled, dt),
            "grad_pooled": np.empty(pooled, dt),
            "grad_conv": np.empty(blocks, dt),
            "grad_banded": np.empty_like(self.banded),
            "is_max": np.empty(pooled, bool),
            "taken": np.empty(pooled, bool),
            "grad_out": np.empty(pooled, dt),  # for the next stage's backward to write into
        }
        self._batch = n

    def grad_output_buffer(self, n: int) -> Array:
        """An NHWC buffer shaped like ``forward``'s output, for d loss / d output."""
        self._allocate(n)
        return _view(self._buffers["grad_out"], self.output_shape(n))

    def output_shape(self, n: int) -> tuple[int, int, int, int]:
        """The NHWC shape of ``forward``'s output for a batch of ``n``."""
        return (n, self.hp, self.wp, self.out_channels)

    def _rows(self) -> int:
        return self.pool * self._batch * self.hp * self.bands

    # -- forward ---------------------------------------------------------------------------

    def forward(self, x: Array, layers: dict[str, Array] | None = None, name: str = "") -> Array:
        """x: logical (N, C, H, W) view, any strides. Returns the NHWC output buffer.

        With ``layers``, the stage's conv, activation and pool outputs are recorded in it as
        fresh NCHW arrays under ``name``, ``name.act`` and ``name.pool``.
        """
        n = x.shape[0]
        self._allocate(n)
        b, p = self._buffers, self.pool
        sn, sc, sh, sw = x.strides
        k_strides = {"c": sc, "h": sh, "w": sw}
        windows = as_strided(
            x,
            shape=(p, n, self.hp, self.bands, *self.k_shape),
            strides=(sh, sn, p * sh, self.band * sw, *(k_strides[a] for a in self.k_axes)),
            writeable=False,
        )
        patches = b["patches"]
        np.copyto(_view(patches[..., : self.k_size], windows.shape), windows)
        rows = self._rows()
        conv = b["conv"]
        # A non-finite input gives NaN in its own sample's rows: the answer, not an error to warn of.
        with np.errstate(invalid="ignore", over="ignore"):
            np.matmul(_view(patches, (rows, self.k_size + 1)), self.banded, out=_view(conv, (rows, self.columns)))
        if layers is not None:
            layers[name] = self._nchw(conv)
        if self.activation != "relu":
            activate_(self.activation, conv)  # pool the activations, as the seed does
        if layers is not None:
            # relu is applied after pooling below, so its activations are computed here to be seen.
            layers[f"{name}.act"] = activation("relu", layers[name]) if self.activation == "relu" else self._nchw(conv)
        pooled = b["pooled"]
        corners = [conv[di, :, :, :, dj] for di in range(p) for dj in range(p)]
        if len(corners) == 1:
            np.copyto(pooled, corners[0])
        else:
            np.maximum(corners[0], corners[1], out=pooled)
            for corner in corners[2:]:
                np.maximum(pooled, corner, out=pooled)
        if self.activation != "relu":
            out = pooled
        else:
            # relu is monotonic, so relu(max(z)) = max(relu(z)), on a quarter of the values; the
            # gradient routing agrees too, since relu' is 0 wherever relu's outputs tie at 0.
            out = b["out"]
            np.maximum(pooled, 0, out=out)
        result = _view(out, self.output_shape(n))
        if layers is not None:
            layers[f"{name}.pool"] = np.ascontiguousarray(result.transpose(0, 3, 1, 2))
            self._record_ragged_edge(x, layers, name)
        return result

    def _nchw(self, conv: Array) -> Array:
        """A fresh NCHW copy of the window-major conv buffer (the region the pools read).

        conv[di, n, ip, b, dj, jp, o] is output (n, o) at row p*ip + di, column p*(b*J2 + jp) + dj.
        """
        n, p = self._batch, self.pool
        nchw = conv.transpose(1, 6, 2, 0, 3, 5, 4)
        return np.ascontiguousarray(nchw).reshape(n, self.out_channels, self.hp * p, self.wp * p)

    def _record_ragged_edge(self, x: Array, layers: dict[str, Array], name: str) -> None:
        """Complete the conv and activation maps where floor-mode pooling left them uncomputed."""
        _, height, width = self.in_shape
        full = (height - self.kernel + 1, width - self.kernel + 1)
        if full == (self.hp * self.pool, self.wp * self.pool):
            return
        assert self._parameters is not None, "set_parameters() was never called"
        c, _, _ = self.in_shape
        twin = ConvPoolKernel(
            in_channels=c,
            height=height,
            width=width,
            out_channels=self.out_channels,
            kernel=self.kernel,
            pool=1,
            activation=self.activation,
            channels_last_input=self.channels_last_input,
            dtype=self.dtype,
        )
        twin.set_parameters(*self._parameters)
        edge: dict[str, Array] = {}
        twin.forward(x, edge, name)
        for key in (name, f"{name}.act"):
            covered = layers[key]
            layers[key] = edge[key]
            layers[key][:, :, : covered.shape[2], : covered.shape[3]] = covered

    # -- backward --------------------------------------------------------------------------

    def backward(self, grad_out: Array, grad_x: Array | None) -> tuple[Array, Array]:
        """Gradients of the last ``forward``: returns (d weight OIHW, d bias).

        ``grad_out`` is d loss / d output (N, hp, wp, O). If ``grad_x`` (a logical NCHW view
        shaped like the input) is given, d loss / d input is written into it.
        """
        b, p, n = self._buffers, self.pool, self._batch
        pooled, conv = b["pooled"], b["conv"]
        grad = _view(grad_out, pooled.shape)
        if self.activation == "relu":
            grad_pooled = b["grad_pooled"]
            np.greater(b["out"], 0, out=b["is_max"])
            np.multiply(grad, b["is_max"], out=grad_pooled)
        else:
            grad_pooled = grad
        # Route each window's gradient to its first maximum in row-major order (torch's rule).
        is_max, taken, grad_conv = b["is_max"], b["taken"], b["grad_conv"]
        corners = [(di, dj) for di in range(p) for dj in range(p)]
        for i, (di, dj) in enumerate(corners):
            target = grad_conv[di, :, :, :, dj]
            if i == len(corners) - 1:
                if i == 0:
                    np.copyto(target, grad_pooled)
                    break
                np.logical_not(taken, out=is_max)
            else:
                np.equal(conv[di, :, :, :, dj], pooled, out=is_max)
                if i == 0:
                    np.copyto(taken, is_max)
                else:
                    np.greater(is_max, taken, out=is_max)  # is_max and not taken
                    np.logical_or(taken, is_max, out=taken)
            np.multiply(grad_pooled, is_max, out=target)
        if self.activation != "relu":
            scale_by_activation_grad_(self.activation, grad_conv, conv)
        rows = self._rows()
        patches = _view(b["patches"], (rows, self.k_size + 1))
        grad_conv2 = _view(grad_conv, (rows, self.columns))
        grad_banded = b["grad_banded"]
        np.matmul(patches.T, grad_conv2, out=grad_banded)
        if grad_x is not None:
            self._input_gradient(grad_conv2, grad_x, n)
        return self.parameter_gradients(grad_banded)

    def _input_gradient(self, grad_conv: Array, grad_x: Array, n: int) -> None:
        """col2im: add d patches = d conv @ banded^T back onto the input entries each was read from.

        Neighbouring bands overlap by k - 1 input columns, so each band's ``win`` columns are
        cut into pieces of at most ``band`` columns: the same piece of every band is then one
        ``np.add`` that never writes an element twice. A batched GEMM produces the pieces laid
        out so that those adds run over whole rows of bands (``bands * band`` columns).
        """
        p, band, win, hp, bands = self.pool, self.band, self.win, self.hp, self.bands
        w_axis = self.k_axes.index("w")
        outer_shape, inner_shape = self.k_shape[:w_axis], self.k_shape[w_axis + 1 :]
        inner = math.prod(inner_shape)  # C for an NHWC input, 1 for NCHW
        pieces = -(-win // band)
        # banded^T cut into pieces: (outer * piece, J*O, band * inner), zero-padded past win
        outer = math.prod(outer_shape)
        padded = np.zeros((outer, pieces * band, inner, self.columns), self.dtype)
        padded[:, :win] = self.banded[: self.k_size].reshape(outer, win, inner, self.columns)
        by_piece = padded.reshape(outer, pieces, band, inner, self.columns).transpose(0, 1, 4, 2, 3)
        by_piece = by_piece.reshape(outer * pieces, self.columns, band * inner)
        rows = n * hp * bands
        shape = (p, by_piece.shape[0], rows, band * inner)
        if self._buffers.get("grad_pieces", np.empty(0)).shape != shape:
            self._buffers["grad_pieces"] = np.empty(shape, self.dtype)
        grad_pieces = self._buffers["grad_pieces"]
        np.matmul(grad_conv.reshape(p, 1, rows, self.columns), by_piece, out=grad_pieces)
        # -> (piece, n, inner, hp, di, band index, column in band), matching the input's axes
        grad_pieces = grad_pieces.reshape(p, outer * pieces, n, hp, bands, band, inner).transpose(1, 2, 6, 3, 0, 4, 5)
        grad_x[...] = 0
        sn, sc, sh, sw = grad_x.strides
        for i, index in enumerate(np.ndindex(*outer_shape)):
            at = dict(zip(self.k_axes, index))  # kh, and c when the input is NCHW
            channels = slice(at["c"], at["c"] + 1) if "c" in at else slice(None)
            kh = at["h"]
            for q in range(pieces):
                width = min(band, win - q * band)
                source = grad_pieces[i * pieces + q, ..., :width]
                if width == band:  # whole pieces of all bands: one contiguous run of columns
                    target = grad_x[:, channels, kh : kh + p * hp, q * band : (q + bands) * band]
                    target = _view(target, source.shape)
                else:
                    target = as_strided(
                        grad_x[:, channels, kh:, q * band :],
                        shape=source.shape,
                        strides=(sn, sc, p * sh, sh, band * sw, sw),
                    )
                np.add(target, source, out=target)
