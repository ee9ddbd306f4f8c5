"""The derived error bounds of the spec's network at a precision.

The tolerance model (``docs/tolerances.md``): a layer that sums ``k`` products in an
accumulator of unit roundoff ``u_a`` and stores its output with unit roundoff ``u_s``
errs, relative to its output's scale, by at most

    gamma_k(u_a) + u_s,    gamma_k(u) = k u / (1 - k u)           (Higham, Thm 3.1)

and these add up along the network (every layer of the spec is at most 1-Lipschitz in
relative terms at this network's scale; pooling and ReLU are exact). A check's bound is
that sum times :data:`~harness.net.precision.SAFETY`, calibrated once on the correct backends and stated there.
"""

from __future__ import annotations

from harness.net.precision import Precision, gamma
from harness.net.spec import NetSpec


def forward_lengths(spec: NetSpec) -> list[int]:
    """The dot-product length of each conv and linear layer: in_channels * k * k, or fan_in."""
    lengths, channels = [], spec.in_channels
    for stage in spec.conv_stages:
        lengths.append(channels * stage.kernel * stage.kernel)
        channels = stage.out_channels
    lengths += [fan_in for fan_in, _ in spec.linear_widths]
    return lengths


def backward_lengths(spec: NetSpec, batch: int) -> list[int]:
    """Per layer, the longest sum of the backward pass: the weight gradient's (batch x output
    positions) or the input gradient's (out_channels * k * k, or fan_out)."""
    lengths = []
    for layer in spec.layers():
        if layer.kind == "conv":
            stage = spec.conv_stages[spec.conv_names.index(layer.name)]
            positions = layer.shape[-2] * layer.shape[-1]  # shapes are (1, C, H, W)
            lengths.append(max(batch * positions, stage.out_channels * stage.kernel * stage.kernel))
        elif layer.kind == "linear":
            lengths.append(max(batch, layer.shape[-1]))
    return lengths


def layer_bounds(spec: NetSpec, p: Precision) -> list[float]:
    """The derived relative error bound of each conv and linear layer's output, in forward order.

    Each sums that layer's term and every earlier one: how far a correct backend's values
    may lie from the exact ones where they reach that layer's kinks (its ReLU's 0, its
    max-pool windows).
    """
    bounds, total = [], 0.0
    for k in forward_lengths(spec):
        total += gamma(k, p.accumulate_roundoff) + p.layer_roundoff
        bounds.append(total)
    return bounds


def forward_bound(spec: NetSpec, p: Precision) -> float:
    """The derived relative error bound of the logits (and of every layer's output)."""
    return layer_bounds(spec, p)[-1]


def backward_bound(spec: NetSpec, p: Precision, batch: int) -> float:
    """The derived relative error bound of the gradients: the forward pass's, then the backward's."""
    back = sum(gamma(k, p.accumulate_roundoff) + p.layer_roundoff for k in backward_lengths(spec, batch))
    return forward_bound(spec, p) + back
