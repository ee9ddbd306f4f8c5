"""Planted-bug variants of the eager backend: the conformance suite's self-test.

Each mutant is the correct :class:`~backends.eager.EagerBackend` with exactly one realistic
defect, and names the check (``caught_by``) that must fail because of it. ``netharness
mutants`` (see :mod:`harness.commands.mutants`) runs the suite over all of them and reports the kill
rate: a mutant that passes every check is a hole in the suite.

This module is a plugin (``harness_backends`` returns every mutant), loaded only when asked
for, through a ``netharness.backends`` entry point; it is never a built-in.

Defects that live in the network itself (a kernel, a pool, the flatten, the activation's
backward) are planted in :class:`MutantNet`, so the forward pass, the intermediates, the
gradients and the training step all see the same bug, as they would in a real backend.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from backends.eager import EagerBackend, Net, PreparedEagerNet, precision_scope, to_numpy, to_tensor, torch_dtype
from harness import NetSpec, hookimpl

Params = dict[str, np.ndarray]


class Mutant(EagerBackend):
    """The eager backend with one defect; the first docstring line describes it."""

    defect = ""
    """Short kebab-case name of the defect; the backend is ``mutant-<defect>``."""
    family = ""
    """Which part of the suite the defect targets (shapes, forward, gradients, init, ...)."""
    caught_by = ""
    """The check that must fail on this mutant."""
    affects: tuple[str, ...] = ("float32", "float64")
    """The precisions the defect is in: each of them must catch it, float32 unless ``float32_hides``."""
    float32_hides = ""
    """Why float32 cannot catch this defect although it is there too (empty if float32 catches it)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"mutant-{self.defect}"

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]


# -- the network: one defect in one layer ----------------------------------------------------


MutantNet = Net
"""Mutant networks override one of :class:`Net`'s extension points (conv, act, pool, ...)."""


class NetMutant(Mutant):
    """A mutant whose networks are ``net_class`` instead of ``Net``: every path sees the defect."""

    net_class: type[Net] = MutantNet


class _TransposedKernelNet(MutantNet):
    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        layer = getattr(self, name)
        return F.conv2d(x, layer.weight.transpose(-1, -2), layer.bias)  # OIWH read as OIHW


class _FlippedKernelNet(MutantNet):
    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        layer = getattr(self, name)
        return F.conv2d(x, layer.weight.flip(-1, -2), layer.bias)  # true convolution


class _ShiftedPaddingNet(MutantNet):
    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        layer = getattr(self, name)
        return F.conv2d(x, layer.weight, layer.bias, padding=1)[..., :-2, :-2]  # crop should be [1:-1]


class _OverlappingPoolNet(MutantNet):
    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        return F.max_pool2d(x, window + 1, stride=window, ceil_mode=True)  # same shapes, other windows


class _MinPoolNet(MutantNet):
    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        return -F.max_pool2d(-x, window)


class _ChannelsLastFlattenNet(MutantNet):
    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x.permute(0, 2, 3, 1), 1)  # (row, column, channel) order


class _ReluLogitsNet(MutantNet):
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


class _ReluMaskFromOutput(torch.autograd.Function):
    """ReLU whose backward builds its mask from the output with ``>=``: always true."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * (y >= 0)  # should be (x > 0)


class _ReluMaskNet(MutantNet):
    def act(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.activation != "relu":
            return super().act(x)
        out: torch.Tensor = _ReluMaskFromOutput.apply(x)
        return out


class _RangeScaledConvNet(MutantNet):
    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        # Scale the batch into [-1, 1] by a power of two (exact) for a narrow-range kernel, and back:
        # one scale for the whole batch, so one sample's inf or NaN reaches every other's.
        layer = getattr(self, name)
        largest = x.detach().abs().amax().clamp(min=1e-30)
        scale = torch.exp2(-torch.ceil(torch.log2(largest)))
        return F.conv2d(x * scale, layer.weight, layer.bias * scale) / scale


class _SeedPoolNet(MutantNet):
    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        return F.max_pool2d(x, 2)  # the seed's window, whatever the spec says


class _CeilModePoolNet(MutantNet):
    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        return F.max_pool2d(x, window, ceil_mode=True)  # a ragged edge makes a window of its own


class _Kernel5CropNet(MutantNet):
    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return super().conv(name, x)[..., : height - 4, : width - 4]  # output size of a 5x5 kernel


class _SeedHiddenActsNet(MutantNet):
    def hidden_act(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.act(x) if name in ("fc1", "fc2") else x  # only the seed's hidden layers


class _CroppedIndexMaxPool(torch.autograd.Function):
    """Max pooling whose backward scatters window indices of the cropped map into the full one."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, window: int) -> torch.Tensor:
        height, width = x.shape[-2:]
        cropped = x[..., : height // window * window, : width // window * window]
        y, index = F.max_pool2d(cropped, window, return_indices=True)  # flat index into the cropped map
        ctx.save_for_backward(index)
        ctx.size = (height, width)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        height, width = ctx.size
        flat = grad.new_zeros((*grad.shape[:2], height * width))
        flat.scatter_add_(2, index.flatten(2), grad.flatten(2))  # row stride of the cropped map, not width
        return flat.view(*grad.shape[:2], height, width), None


class _CroppedIndexPoolNet(MutantNet):
    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        out: torch.Tensor = _CroppedIndexMaxPool.apply(x, window)
        return out


class _TieRuleMaxPool(torch.autograd.Function):
    """Max pooling whose backward sends a tie's gradient by another rule than the first maximum."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, window: int, rule: str) -> torch.Tensor:
        windows = _pool_windows(x, window)
        ctx.save_for_backward(x)
        ctx.window, ctx.rule = window, rule
        return windows.amax(dim=-1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        k = ctx.window
        windows = _pool_windows(x, k)
        top = windows == windows.amax(dim=-1, keepdim=True)
        if ctx.rule == "last":
            last = top.shape[-1] - 1 - top.flip(-1).to(torch.int8).argmax(dim=-1, keepdim=True)
            share = torch.zeros_like(windows).scatter_(-1, last, 1.0)
        else:  # "split": every tied element gets an equal part
            share = top.to(windows.dtype) / top.sum(dim=-1, keepdim=True)
        routed = share * grad[..., None]
        n, c, rows, cols, _ = routed.shape
        routed = routed.view(n, c, rows, cols, k, k).permute(0, 1, 2, 4, 3, 5).reshape(n, c, rows * k, cols * k)
        full = grad.new_zeros(x.shape)
        full[..., : rows * k, : cols * k] = routed
        return full, None, None


def _pool_windows(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, H // k, W // k, k * k): each k x k window's elements in row-major order."""
    n, c, height, width = x.shape
    rows, cols = height // k, width // k
    cropped = x[..., : rows * k, : cols * k].reshape(n, c, rows, k, cols, k)
    return cropped.permute(0, 1, 2, 4, 3, 5).reshape(n, c, rows, cols, k * k)


class _TieToLastMaxNet(MutantNet):
    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        out: torch.Tensor = _TieRuleMaxPool.apply(x, window, "last")
        return out


class _TieSplitNet(MutantNet):
    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        out: torch.Tensor = _TieRuleMaxPool.apply(x, window, "split")
        return out


class _LastColumnGradient(torch.autograd.Function):
    """The identity, whose backward drops the last column (a col2im range one short)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[..., -1] = 0
        return grad


class _LastColumnGradientNet(MutantNet):
    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == self.spec.conv_names[0]:
            x = _LastColumnGradient.apply(x)
        return super().conv(name, x)


class _Bfloat16ConvNet(MutantNet):
    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            return super().conv(name, x)
        layer = getattr(self, name)  # "float32" convolutions run in bfloat16, as an autocast would
        return F.conv2d(x.bfloat16(), layer.weight.bfloat16(), layer.bias.bfloat16()).float()


class _HeightWidthSwappedPool(torch.autograd.Function):
    """Max pool whose backward decodes a window's flat argmax with the height where the width belongs."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: int) -> torch.Tensor:
        out, index = F.max_pool2d(x, k, return_indices=True)
        ctx.save_for_backward(index)
        ctx.shape = x.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        row, col = index // h, index % h  # should be index // w, index % w: equal only on square maps
        flat = (row * w + col).clamp(0, h * w - 1).flatten(2)
        grad_in = torch.zeros(n, c, h * w, dtype=grad.dtype, device=grad.device)
        grad_in.scatter_add_(2, flat, grad.flatten(2))
        return grad_in.view(n, c, h, w), None


class _SwappedPoolBackwardNet(MutantNet):
    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        if x.shape[-2] % window or x.shape[-1] % window:  # ragged maps take the general path
            return super().pool(x, window)
        return _HeightWidthSwappedPool.apply(x, window)


class FlattenOrder(NetMutant):
    """flatten in (row, column, channel) order instead of NCHW's (channel, row, column)"""

    defect, family, caught_by, net_class = "flatten-order", "shapes", "forward_values", _ChannelsLastFlattenNet


class TransposedKernel(NetMutant):
    """conv kernels read with height and width swapped"""

    defect, family, caught_by, net_class = "transposed-kernel", "forward", "forward_values", _TransposedKernelNet


class FlippedKernel(NetMutant):
    """true convolution: kernels flipped in both spatial axes"""

    defect, family, caught_by, net_class = "flipped-kernel", "forward", "forward_values", _FlippedKernelNet


class ShiftedPadding(NetMutant):
    """conv padded by 1, then cropped at the wrong offset (maps shift a pixel)"""

    defect, family, caught_by, net_class = "shifted-padding", "forward", "forward_values", _ShiftedPaddingNet


class OverlappingPool(NetMutant):
    """max-pool window off by one (3x3, stride 2, ceil mode): same shapes"""

    defect, family, caught_by, net_class = "pool-window", "forward", "forward_values", _OverlappingPoolNet


class MinPool(NetMutant):
    """pooling takes the minimum of each window"""

    defect, family, caught_by, net_class = "min-pool", "forward", "forward_values", _MinPoolNet


class ReluOnLogits(NetMutant):
    """a ReLU applied to the logits"""

    defect, family, caught_by, net_class = "relu-on-logits", "forward", "forward_values", _ReluLogitsNet


class ReluBackwardMask(NetMutant):
    """ReLU backward masks on output >= 0 (always true) instead of input > 0"""

    defect, family, caught_by, net_class = "relu-backward", "gradients", "gradients", _ReluMaskNet


class RangeScaledBatch(NetMutant):
    """conv inputs scaled into [-1, 1] by one power of two for the whole batch: an inf or NaN reaches every sample"""

    defect, family, caught_by, net_class = (
        "batch-range-scale",
        "batch",
        "nonfinite_sample_isolated",
        _RangeScaledConvNet,
    )


class SeedPoolWindow(NetMutant):
    """max pooling always 2x2, whatever the spec's pool size"""

    defect, family, caught_by, net_class = "pool-always-2", "spec fields", "forward_values", _SeedPoolNet


class CeilModePool(NetMutant):
    """max pooling in ceil mode: a ragged edge becomes a window of its own"""

    defect, family, caught_by, net_class = "ceil-mode-pool", "spec fields", "forward_values", _CeilModePoolNet


class Kernel5Crop(NetMutant):
    """conv outputs cropped to the size a 5x5 kernel gives"""

    defect, family, caught_by, net_class = "kernel-5-crop", "spec fields", "forward_values", _Kernel5CropNet


class SeedHiddenActivations(NetMutant):
    """the hidden activation applied after fc1 and fc2 only, the seed's two hidden layers"""

    defect, family, caught_by, net_class = "seed-hidden-acts", "spec fields", "forward_values", _SeedHiddenActsNet


class CroppedIndexPoolBackward(NetMutant):
    """max-pool backward scatters indices of the cropped map into the full one: wrong rows past a ragged column"""

    defect, family, caught_by, net_class = "pool-backward-stride", "spec fields", "gradients", _CroppedIndexPoolNet


class TieToLastMaximum(NetMutant):
    """a max-pool tie sends the gradient to the window's last maximum, not its first"""

    defect, family, caught_by, net_class = "tie-last-max", "gradients", "maxpool_tie_subgradient", _TieToLastMaxNet


class TieSplitEvenly(NetMutant):
    """a max-pool tie splits the gradient evenly between the tied elements"""

    defect, family, caught_by, net_class = "tie-split", "gradients", "maxpool_tie_subgradient", _TieSplitNet


class LastColumnInputGradient(NetMutant):
    """the input gradient misses the image's last column (a col2im range one short)"""

    defect, family, caught_by, net_class = "input-grad-last-column", "gradients", "gradcheck", _LastColumnGradientNet


class Bfloat16Conv(NetMutant):
    """float32 convolutions computed in bfloat16 (a silent autocast)"""

    defect, family, caught_by, net_class = "bfloat16-conv", "precision", "forward_values", _Bfloat16ConvNet
    affects = ("float32",)


class SwappedPoolBackward(NetMutant):
    """max-pool backward reads the argmax with height and width swapped, on maps the pool divides"""

    defect, family, caught_by, net_class = "pool-backward-hw", "spec fields", "gradients", _SwappedPoolBackwardNet


# -- the backend's own methods -------------------------------------------------------------


class SqueezedOutput(Mutant):
    """forward squeezes its output: a batch of 1 gives (classes,)"""

    defect, family, caught_by = "squeezed-output", "shapes", "output_shape"

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        return super().forward(spec, params, x, device=device, dtype=dtype).squeeze()


class FirstSampleGradients(Mutant):
    """parameter gradients of the first sample only, not summed over the batch"""

    defect, family, caught_by = "first-sample-gradients", "gradients", "gradients"

    def gradients(
        self, spec: NetSpec, params: Params, x: np.ndarray, target: np.ndarray, **kw: Any
    ) -> tuple[float, Params]:
        value, grads = super().gradients(spec, params, x, target, **kw)
        _, first = super().gradients(spec, params, x[:1], target[:1], **kw)
        return value, {**first, "input": grads["input"]}


class MeanGradients(Mutant):
    """loss and gradients of the batch mean where the spec sums"""

    defect, family, caught_by = "mean-gradients", "gradients", "gradients"

    def gradients(
        self, spec: NetSpec, params: Params, x: np.ndarray, target: np.ndarray, **kw: Any
    ) -> tuple[float, Params]:
        value, grads = super().gradients(spec, params, x, target, **kw)
        n = x.shape[0]
        return value / n, {name: g / n for name, g in grads.items()}


class ConvBiasGradientMean(Mutant):
    """conv bias gradients averaged over output positions instead of summed"""

    defect, family, caught_by = "conv-bias-gradient", "gradients", "gradients"

    def gradients(
        self, spec: NetSpec, params: Params, x: np.ndarray, target: np.ndarray, **kw: Any
    ) -> tuple[float, Params]:
        value, grads = super().gradients(spec, params, x, target, **kw)
        shapes = {layer.name: layer.shape for layer in spec.layers(x.shape[0])}
        for name in spec.conv_names:
            _, _, h, w = shapes[name]
            grads[f"{name}.bias"] = grads[f"{name}.bias"] / (h * w)
        return value, grads


class SigmoidDerivative(Mutant):
    """activation_grad('sigmoid') returns s instead of s(1 - s)"""

    defect, family, caught_by = "sigmoid-derivative", "gradients", "activation_derivatives"

    def activation_grad(self, name: str, x: np.ndarray) -> np.ndarray:
        if name == "sigmoid":
            return self.activation(name, x)
        return super().activation_grad(name, x)


class ChunkTail(Mutant):
    """forward in chunks of 32 rows; a partial last chunk runs as the batch's last 32 rows, and keeps their first"""

    defect, family, caught_by = "chunk-tail", "batch", "batch_independence"
    chunk = 32

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        n, chunk = len(x), self.chunk
        if n <= chunk:
            return super().forward(spec, params, x, device=device, dtype=dtype)
        whole = n - n % chunk
        parts = [
            super().forward(spec, params, x[i : i + chunk], device=device, dtype=dtype) for i in range(0, whole, chunk)
        ]
        if n % chunk:  # a full-size chunk ending at the batch's end; its LAST n % chunk rows are the tail
            parts.append(super().forward(spec, params, x[-chunk:], device=device, dtype=dtype)[: n % chunk])
        return np.concatenate(parts)


class BatchMaxSoftmax(Mutant):
    """cross-entropy shifts every row by the batch's largest logit, not its own: one NaN row poisons them all"""

    defect, family, caught_by = "batch-max-softmax", "batch", "nonfinite_sample_isolated"

    def loss_tensor(self, loss: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if loss != "cross_entropy":
            return super().loss_tensor(loss, logits, target)
        return F.cross_entropy(logits - logits.detach().max(), target, reduction="sum")


class SeedNamedSgd(Mutant):
    """the SGD update touches the seed network's layers only (conv1, conv2, fc1 to fc3)"""

    defect, family, caught_by = "sgd-seed-layers", "spec fields", "train_step"

    def sgd_update(self, net: Net, lr: float) -> None:
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.split(".")[0] in ("conv1", "conv2", "fc1", "fc2", "fc3") and p.grad is not None:
                    p.add_(p.grad, alpha=-lr)


class TanhTailDerivative(Mutant):
    """activation_grad('tanh') flushed to 0 for |x| > 12"""

    defect, family, caught_by = "tanh-tail-derivative", "activations", "activation_derivatives"
    float32_hides = "float32 tanh(x) rounds to 1 past |x| ~ 9, where 1 - tanh(x)^2 is already 0 in any float32 backend"

    def activation_grad(self, name: str, x: np.ndarray) -> np.ndarray:
        grad = super().activation_grad(name, x)
        if name == "tanh":
            grad[np.abs(x) > 12] = 0
        return grad


class StorageOrderInput(Mutant):
    """forward reads the input's buffer in storage order as if C-ordered (Fortran or channels-last arrays scramble)"""

    defect, family, caught_by = "storage-order-input", "layouts", "input_layouts"

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        flat = np.ravel(x, order="K")  # the buffer as native code would be handed it
        return super().forward(spec, params, flat.reshape(x.shape), device=device, dtype=dtype)


class NanToNumInPlace(Mutant):
    """forward sanitises its input in place with np.nan_to_num(x, copy=False): read-only input raises"""

    defect, family, caught_by = "nan-to-num-in-place", "layouts", "input_layouts"

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        if isinstance(x, np.ndarray):
            np.nan_to_num(x, copy=False)
        return super().forward(spec, params, x, device=device, dtype=dtype)


class ReusedOutputBuffer(Mutant):
    """forward returns one preallocated buffer per shape, which the next call overwrites"""

    defect, family, caught_by = "reused-output-buffer", "layouts", "outputs_not_aliased"

    def __init__(self) -> None:
        super().__init__()
        self._buffers: dict[tuple[tuple[int, ...], str], np.ndarray] = {}

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        out = super().forward(spec, params, x, device=device, dtype=dtype)
        buffer = self._buffers.setdefault((out.shape, out.dtype.str), np.empty_like(out))
        np.copyto(buffer, out)
        return buffer


class InitMutant(Mutant):
    """Re-initialises the Net with a wrong scheme."""

    family = "init"

    def reinit(self, net: Net) -> None:
        raise NotImplementedError

    def init_params(self, spec: NetSpec, *, seed: int, dtype: str) -> Params:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = Net(spec)
            self.reinit(net)
            net = net.to(torch_dtype(dtype))
        return {name: t.detach().numpy() for name, t in net.state_dict().items()}


class FanIn(InitMutant):
    """conv weights: Kaiming with mode='fan_in' instead of 'fan_out'"""

    defect, caught_by = "fan-in", "init_conv_weights"

    def reinit(self, net: Net) -> None:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


class NormalForUniform(InitMutant):
    """linear weights: Xavier normal instead of Xavier uniform"""

    defect, caught_by = "normal-for-uniform", "init_linear_weights"

    def reinit(self, net: Net) -> None:
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)


class WrongGain(InitMutant):
    """conv weights: linear gain 1 instead of ReLU's sqrt(2)"""

    defect, caught_by = "wrong-gain", "init_conv_weights"

    def reinit(self, net: Net) -> None:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="linear")


class NonZeroBias(InitMutant):
    """conv biases keep PyTorch's default uniform init (the seed's own code)"""

    defect, caught_by = "nonzero-bias", "init_biases"

    def reinit(self, net: Net) -> None:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                bound = 1 / np.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound)  # type: ignore[arg-type]


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class SeededInitMutant(Mutant):
    """Initialises each layer (in the Net's order) after re-seeding torch with ``seed_for(seed, layer)``."""

    family = "init"

    def seed_for(self, seed: int, layer: int) -> int:
        raise NotImplementedError

    def init_params(self, spec: NetSpec, *, seed: int, dtype: str) -> Params:
        with _seeded(seed):
            net = Net(spec)
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for i, module in enumerate(layers):
            with _seeded(self.seed_for(seed, i)):
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.xavier_uniform_(module.weight)
        net = net.to(torch_dtype(dtype))
        return {name: to_numpy(t) for name, t in net.state_dict().items()}


class ReseededPerLayer(SeededInitMutant):
    """init re-seeds torch with the seed before every layer: all layers start with the same draws"""

    defect, caught_by = "reseeded-per-layer", "init_layers_independent"

    def seed_for(self, seed: int, layer: int) -> int:
        return seed


class SeedPlusLayer(SeededInitMutant):
    """layer i is initialised from seed + i: seed 1's conv1 draws what seed 0's conv2 drew"""

    defect, caught_by = "seed-plus-layer", "init_seeds_independent"

    def seed_for(self, seed: int, layer: int) -> int:
        return seed + layer


class NaiveSigmoid(Mutant):
    """sigmoid as 1/(1+exp(-x)) in NumPy: exp overflows for large -x"""

    defect, family, caught_by = "naive-sigmoid", "activations", "activation_edge_cases"

    def activation(self, name: str, x: np.ndarray) -> np.ndarray:
        if name == "sigmoid":
            return (1 / (1 + np.exp(-x))).astype(x.dtype)
        return super().activation(name, x)


class NanSwallowingRelu(Mutant):
    """relu as np.where(x > 0, x, 0): NaN becomes 0"""

    defect, family, caught_by = "nan-to-zero", "activations", "activation_edge_cases"

    def activation(self, name: str, x: np.ndarray) -> np.ndarray:
        if name == "relu":
            return np.where(x > 0, x, 0).astype(x.dtype)
        return super().activation(name, x)


class UnstableSoftmax(Mutant):
    """cross-entropy as -log(exp(z_y) / sum exp(z)), no max subtracted"""

    defect, family, caught_by = "unstable-softmax", "losses", "cross_entropy_stability"

    def loss(self, name: str, logits: np.ndarray, target: np.ndarray) -> float:
        if name != "cross_entropy":
            return super().loss(name, logits, target)
        e = np.exp(logits)
        p = e[np.arange(len(logits)), target] / e.sum(axis=1)
        return float(-np.log(p).sum())


class MeanLoss(Mutant):
    """losses with PyTorch's default reduction='mean' instead of sums"""

    defect, family, caught_by = "mean-loss", "losses", "loss_values"

    def loss(self, name: str, logits: np.ndarray, target: np.ndarray) -> float:
        z = torch.tensor(logits)
        if name == "sse":
            return float(F.mse_loss(z, torch.tensor(target)).item())
        return float(F.cross_entropy(z, torch.tensor(target.astype(np.int64))).item())


class AscentStep(Mutant):
    """train_step climbs the gradient: p + lr * g"""

    defect, family, caught_by = "lr-sign", "training", "train_step"

    def train_step(
        self, spec: NetSpec, params: Params, x: np.ndarray, target: np.ndarray, *, lr: float, **kw: Any
    ) -> Params:
        _, grads = self.gradients(spec, params, x, target, **kw)
        return {name: p + lr * grads[name] for name, p in params.items()}


class JitteryForward(Mutant):
    """forward varies by a few ulp from call to call (unseeded noise)"""

    defect, family, caught_by = "nondeterministic", "hygiene", "forward_deterministic"

    def __init__(self) -> None:
        super().__init__()
        # Like an unordered parallel reduction: a few ulp of noise, far inside every tolerance.
        self._noise = np.random.default_rng()

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        out = super().forward(spec, params, x, device=device, dtype=dtype)
        ulps = 4 * np.finfo(out.dtype).eps * np.abs(out)
        return (out + ulps * self._noise.standard_normal(out.shape)).astype(out.dtype)


# -- the fast path under use ----------------------------------------------------------------


class PreparedMutant(Mutant):
    """A mutant whose fast path is ``prepared_class`` instead of :class:`PreparedEagerNet`."""

    family = "fast path"
    prepared_class: type[PreparedEagerNet] = PreparedEagerNet

    def prepare(self, spec: NetSpec, params: Params, *, device: str, dtype: str) -> Any:
        return self.prepared_class(self, spec, params, device, dtype)


class _NeverZeroedGradients(PreparedEagerNet):
    def train_step(self, x: torch.Tensor, target: torch.Tensor, *, loss: str, lr: float) -> None:
        with precision_scope(self.dtype, self.device):  # no zero_grad: each step adds to the last one's
            self.backend.loss_tensor(loss, self.net(x), target).backward()
        self.backend.sgd_update(self.net, lr)


class _GrowingRate(PreparedEagerNet):
    steps = 0

    def train_step(self, x: torch.Tensor, target: torch.Tensor, *, loss: str, lr: float) -> None:
        self.steps += 1  # a warm-up schedule left on: step k uses k * lr
        super().train_step(x, target, loss=loss, lr=lr * self.steps)


class _StaleForward(PreparedEagerNet):
    def __init__(self, backend: EagerBackend, spec: NetSpec, params: Params, device: str, dtype: str) -> None:
        super().__init__(backend, spec, params, device, dtype)
        self.inference = copy.deepcopy(self.net)  # an inference copy taken once, never refreshed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), precision_scope(self.dtype, self.device):
            return self.inference(x)


class _ChunkRows(PreparedEagerNet):
    chunk = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), precision_scope(self.dtype, self.device):
            out = self.net(x[: self.chunk])
            out = torch.cat([out, torch.empty((len(x) - len(out), out.shape[1]), dtype=out.dtype)])
            for start in range(self.chunk, len(x), self.chunk):
                out[: self.chunk][: len(x) - start] = self.net(x[start : start + self.chunk])  # rows 0.., not start..
            return out


class PreparedGradientsAccumulate(PreparedMutant):
    """the fast path's train step never zeroes gradients: step k applies the sum of k gradients"""

    defect, caught_by, prepared_class = "prepared-grads-accumulate", "prepared_train_steps", _NeverZeroedGradients


class PreparedGrowingRate(PreparedMutant):
    """the fast path's step k uses k times the learning rate (a warm-up schedule left on)"""

    defect, caught_by, prepared_class = "prepared-lr-warmup", "prepared_train_steps", _GrowingRate


class PreparedStaleForward(PreparedMutant):
    """the fast path's forward runs a copy of the network taken at prepare(), never updated by its steps"""

    defect, caught_by, prepared_class = "prepared-stale-forward", "prepared_train_steps", _StaleForward


class PreparedChunkRows(PreparedMutant):
    """the fast path's forward runs batches above 32 in chunks of 32, each written over the first rows"""

    defect, caught_by, prepared_class = "prepared-chunk-rows", "prepared_forward", _ChunkRows


class MicroBatchOverwrite(Mutant):
    """gradients of batches above 128 in micro-batches of 128: the last one's parameter gradients replace the sum"""

    defect, family, caught_by = "micro-batch-overwrite", "batch", "gradients"
    micro = 128

    def gradients(
        self, spec: NetSpec, params: Params, x: np.ndarray, target: np.ndarray, **kw: Any
    ) -> tuple[float, Params]:
        if len(x) <= self.micro:
            return super().gradients(spec, params, x, target, **kw)
        value, grads = 0.0, {}
        inputs = []
        for start in range(0, len(x), self.micro):
            part, part_grads = super().gradients(
                spec, params, x[start : start + self.micro], target[start : start + self.micro], **kw
            )
            value += part
            inputs.append(part_grads.pop("input"))
            grads = part_grads  # should be accumulated: grads[name] += part_grads[name]
        return value, {**grads, "input": np.concatenate(inputs)}


# -- state between calls --------------------------------------------------------------------


class ParametersCachedById(Mutant):
    """uploads parameters only when their arrays are new objects: values changed in place are never seen"""

    defect, family, caught_by = "params-cached-by-id", "state", "arrays_changed_in_place"

    def __init__(self) -> None:
        super().__init__()
        self._uploaded: dict[tuple[NetSpec, str, str], tuple[int, ...]] = {}

    def _net(self, spec: NetSpec, params: Params, device: str, dtype: str) -> Net:
        key, ids = (spec, device, dtype), tuple(id(params[name]) for name in sorted(params))
        if key in self._nets and self._uploaded.get(key) == ids:
            net = self._nets[key]
            for tensor in net.parameters():
                tensor.grad = None
            return net
        self._uploaded[key] = ids
        return super()._net(spec, params, device, dtype)


class InputCachedById(Mutant):
    """forward keeps the tensor of each input array it has seen, keyed by id(): an input changed in place is stale"""

    defect, family, caught_by = "input-cached-by-id", "state", "arrays_changed_in_place"

    def __init__(self) -> None:
        super().__init__()
        self._inputs: dict[int, tuple[np.ndarray, torch.Tensor]] = {}

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        spec.check_input(x, dtype)
        seen = self._inputs.get(id(x))
        if seen is None or seen[0] is not x:
            seen = self._inputs[id(x)] = (x, to_tensor(x, device, dtype))
        net = self._net(spec, params, device, dtype)
        with torch.no_grad(), precision_scope(dtype, device):
            return to_numpy(net(seen[1]))


class FirstCallPerShape(Mutant):
    """the first forward on each input shape takes another algorithm (autotuning): its logits differ by an ulp"""

    defect, family, caught_by = "first-call-algorithm", "hygiene", "forward_deterministic_fresh"

    def __init__(self) -> None:
        super().__init__()
        self._shapes: set[tuple[int, ...]] = set()

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        out = super().forward(spec, params, x, device=device, dtype=dtype)
        if x.shape in self._shapes:
            return out
        self._shapes.add(x.shape)
        return np.nextafter(out, np.inf).astype(out.dtype)


class Float64Gradients(Mutant):
    """gradients of a float32 call come back in float64 (computed in float32, returned upcast)"""

    defect, family, caught_by = "float64-gradients", "shapes", "returned_dtypes"
    affects = ("float32",)

    def gradients(
        self, spec: NetSpec, params: Params, x: np.ndarray, target: np.ndarray, **kw: Any
    ) -> tuple[float, Params]:
        value, grads = super().gradients(spec, params, x, target, **kw)
        return value, {name: g.astype(np.float64) for name, g in grads.items()}


class ClippedProbabilities(Mutant):
    """cross-entropy as -log(clip(softmax(z), 1e-7, 1)): a confidently wrong prediction gets a zero gradient"""

    defect, family, caught_by = "clipped-probabilities", "losses", "cross_entropy_gradient_at_large_logits"

    def loss_tensor(self, loss: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if loss != "cross_entropy":
            return super().loss_tensor(loss, logits, target)
        p = F.softmax(logits, dim=1).clamp(1e-7, 1.0)
        return -torch.log(p.gather(1, target[:, None])).sum()


class LogOfSoftmax(Mutant):
    """cross-entropy as -log(softmax(z)): a probability that underflows to 0 gives an infinite loss and NaN gradients"""

    defect, family, caught_by = "log-of-softmax", "losses", "cross_entropy_gradient_at_large_logits"

    def loss_tensor(self, loss: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if loss != "cross_entropy":
            return super().loss_tensor(loss, logits, target)
        return -torch.log(F.softmax(logits, dim=1).gather(1, target[:, None])).sum()


class HashSeededInit(SeededInitMutant):
    """each layer is seeded from hash((seed, layer name)): str hashes change from process to process"""

    defect, caught_by = "init-hash-seeded", "init_reproducible_across_processes"

    def seed_for(self, seed: int, layer: int) -> int:
        return hash((seed, f"layer{layer}")) % 2**31


class StreamInitMutant(Mutant):
    """Draws every weight from standard-normal or standard-uniform streams, laid out as TensorFlow stores them."""

    family = "init"

    def stream(self, seed: int, layer: int, size: int, law: str) -> torch.Tensor:
        raise NotImplementedError

    def init_params(self, spec: NetSpec, *, seed: int, dtype: str) -> Params:
        params: Params = {}
        layers = [*spec.conv_names, *spec.linear_names]
        for i, name in enumerate(layers):
            shape = spec.parameter_shapes()[f"{name}.weight"]
            fan_in, fan_out = spec.fans(f"{name}.weight")
            tf_shape = (*shape[2:], shape[1], shape[0])  # HWIO for a kernel, (in, out) for a matrix
            if name in spec.conv_names:
                w = self.stream(seed, i, int(np.prod(shape)), "normal") * np.sqrt(2.0 / fan_out)
            else:
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                w = (2 * self.stream(seed, i, int(np.prod(shape)), "uniform") - 1) * bound
            order = (len(shape) - 1, len(shape) - 2, *range(len(shape) - 2))  # back to OIHW, (out, in)
            weight = w.reshape(tf_shape).permute(*order).contiguous()
            params[f"{name}.weight"] = weight.to(torch_dtype(dtype)).numpy()
            params[f"{name}.bias"] = np.zeros(spec.parameter_shapes()[f"{name}.bias"], np.dtype(weight.numpy().dtype))
        return {k: v.astype(np.float64 if dtype == "float64" else np.float32) for k, v in params.items()}


def _draws(seed: int, size: int, law: str, skip: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = torch.empty(skip + size, dtype=torch.float64)
    values.normal_(generator=generator) if law == "normal" else values.uniform_(generator=generator)
    return values[skip:]


class StreamPerLayerInLayout(StreamInitMutant):
    """every layer restarts the seed's stream, in TensorFlow's layout: the canonical layout hides the reuse"""

    defect, caught_by = "stream-per-layer-tf-layout", "init_values_not_shared"

    def stream(self, seed: int, layer: int, size: int, law: str) -> torch.Tensor:
        return _draws(seed, size, law)


class ShiftedSeedStream(StreamInitMutant):
    """seed s reads one fixed stream from draw 2s on: seed s + 1 is seed s shifted by two values"""

    defect, caught_by = "seed-shifted-stream", "init_values_not_shared"
    period = 4096

    def stream(self, seed: int, layer: int, size: int, law: str) -> torch.Tensor:
        # Each layer its own stream (layer + 1000 apart), so the layers pass; the seed only shifts it.
        return _draws(1000 * layer + seed // self.period, size, law, skip=2 * (seed % self.period))


class Float16ForBfloat16(Mutant):
    """declares bfloat16 but computes it in float16: more mantissa, and a range that ends at 65504"""

    defect, family, caught_by = "float16-for-bfloat16", "precision", "forward_beyond_float16_range"
    dtypes = ("float32", "float64", "bfloat16")
    affects = ("bfloat16",)

    def forward(self, spec: NetSpec, params: Params, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
        return super().forward(spec, params, x, device=device, dtype="float16" if dtype == "bfloat16" else dtype)


MUTANTS: list[type[Mutant]] = [
    SqueezedOutput,
    FlattenOrder,
    TransposedKernel,
    FlippedKernel,
    ShiftedPadding,
    OverlappingPool,
    MinPool,
    ReluOnLogits,
    FirstSampleGradients,
    MeanGradients,
    ConvBiasGradientMean,
    SigmoidDerivative,
    ReluBackwardMask,
    FanIn,
    NormalForUniform,
    WrongGain,
    NonZeroBias,
    NaiveSigmoid,
    NanSwallowingRelu,
    UnstableSoftmax,
    MeanLoss,
    AscentStep,
    JitteryForward,
    ChunkTail,
    RangeScaledBatch,
    BatchMaxSoftmax,
    ReseededPerLayer,
    SeedPlusLayer,
    SeedPoolWindow,
    CeilModePool,
    Kernel5Crop,
    SeedHiddenActivations,
    CroppedIndexPoolBackward,
    SeedNamedSgd,
    LastColumnInputGradient,
    TieToLastMaximum,
    TieSplitEvenly,
    TanhTailDerivative,
    StorageOrderInput,
    NanToNumInPlace,
    ReusedOutputBuffer,
    Bfloat16Conv,
    SwappedPoolBackward,
    PreparedGradientsAccumulate,
    PreparedGrowingRate,
    PreparedStaleForward,
    PreparedChunkRows,
    MicroBatchOverwrite,
    ParametersCachedById,
    InputCachedById,
    FirstCallPerShape,
    Float64Gradients,
    ClippedProbabilities,
    LogOfSoftmax,
    HashSeededInit,
    Float16ForBfloat16,
    StreamPerLayerInLayout,
    ShiftedSeedStream,
]


def mutant_names() -> list[str]:
    return [f"mutant-{cls.defect}" for cls in MUTANTS]


@hookimpl
def harness_backends() -> list[Mutant]:
    return [cls() for cls in MUTANTS]
