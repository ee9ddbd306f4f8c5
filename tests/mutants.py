"""Broken copies of the eager backend, each with exactly one planted defect.

A plugin module: the conformance suite must fail each mutant in the check named beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from backends.eager import EagerBackend, Net, torch_dtype
from harness import NetSpec, hookimpl


class Mutant(EagerBackend):
    defect = ""
    caught_by = ""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"mutant-{self.defect}"


class InitMutant(Mutant):
    """Re-initialises the Net with a wrong scheme."""

    def reinit(self, net: Net) -> None:
        raise NotImplementedError

    def init_params(self, spec: NetSpec, *, seed: int, dtype: str) -> dict[str, np.ndarray]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = Net(spec)
            self.reinit(net)
            net = net.to(torch_dtype(dtype))
        return {name: t.detach().numpy() for name, t in net.state_dict().items()}


class FanIn(InitMutant):
    defect, caught_by = "fan-in", "init_conv_weights"

    def reinit(self, net: Net) -> None:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


class NormalForUniform(InitMutant):
    defect, caught_by = "normal-for-uniform", "init_linear_weights"

    def reinit(self, net: Net) -> None:
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)


class WrongGain(InitMutant):
    defect, caught_by = "wrong-gain", "init_conv_weights"

    def reinit(self, net: Net) -> None:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="linear")


class NonZeroBias(InitMutant):
    """The seed's own code: conv biases keep PyTorch's default uniform init."""

    defect, caught_by = "nonzero-bias", "init_biases"

    def reinit(self, net: Net) -> None:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                bound = 1 / np.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound)  # type: ignore[arg-type]


class NaiveSigmoid(Mutant):
    defect, caught_by = "naive-sigmoid", "activation_edge_cases"

    def activation(self, name: str, x: np.ndarray) -> np.ndarray:
        if name == "sigmoid":
            return (1 / (1 + np.exp(-x))).astype(x.dtype)
        return super().activation(name, x)


class ForwardMutant(Mutant):
    """Bends the parameters or the output of an otherwise correct forward pass."""

    caught_by = "forward_values"

    def bend(self, spec: NetSpec, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return params

    def bend_output(self, logits: np.ndarray) -> np.ndarray:
        return logits

    def forward(self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, **kw: Any) -> np.ndarray:
        return self.bend_output(super().forward(spec, self.bend(spec, params), x, **kw))

    def intermediates(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, **kw: Any
    ) -> dict[str, np.ndarray]:
        layers = super().intermediates(spec, self.bend(spec, params), x, **kw)
        last = spec.linear_names[-1]
        layers[last] = self.bend_output(layers[last])
        return layers


class TransposedKernel(ForwardMutant):
    defect = "transposed-kernel"

    def bend(self, spec: NetSpec, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**params, "conv1.weight": np.ascontiguousarray(params["conv1.weight"].transpose(0, 1, 3, 2))}


class ReluOnLogits(ForwardMutant):
    defect = "relu-on-logits"

    def bend_output(self, logits: np.ndarray) -> np.ndarray:
        return np.maximum(logits, 0)


class FlattenOrder(ForwardMutant):
    """Flattening (row, column, channel) instead of (channel, row, column): fc1 sees permuted columns."""

    defect = "flatten-order"

    def bend(self, spec: NetSpec, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        c, h, w = spec.feature_shape
        chw_of_hwc = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
        return {**params, "fc1.weight": np.ascontiguousarray(params["fc1.weight"][:, chw_of_hwc])}


class MeanLoss(Mutant):
    """Averages the loss over the batch where the spec sums it."""

    defect, caught_by = "mean-loss", "gradients"

    def gradients(self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, target: np.ndarray, **kw: Any):  # type: ignore[no-untyped-def]
        value, grads = super().gradients(spec, params, x, target, **kw)
        n = x.shape[0]
        return value / n, {name: g / n for name, g in grads.items()}


MUTANTS: list[type[Mutant]] = [
    FanIn,
    NormalForUniform,
    WrongGain,
    NonZeroBias,
    NaiveSigmoid,
    TransposedKernel,
    ReluOnLogits,
    FlattenOrder,
    MeanLoss,
]


@hookimpl
def harness_backends() -> list[Mutant]:
    return [cls() for cls in MUTANTS]
